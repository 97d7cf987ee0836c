"""Recurring monitoring: scan the objects that are new since the last run, keep a history, raise alerts.

`run_once` lists the watched prefixes and leaves out the objects that an
earlier successful run scanned: same URL and ETag, or same size and
modification time where the storage has no ETag. It scans the rest on Ray and
appends one row to the history. A run with no new objects appends a row with status
`no_new_objects` and starts no scan. A run that fails appends a row with
status `failed`, records no objects, and so the next run tries the same
objects again. Objects in failed shards are tried again by later runs, up to
`max_object_attempts` runs per object version.

`serve` starts `run-once` in a child process at each scheduled time, so a
crashed run or a Ray failure never stops the scheduler, and each run gets a
fresh embedded Ray.

Exit codes of `monitor run-once` (for cron):
    0  the run finished and no alert fired (also: no new objects).
    1  the run failed; the history has a `failed` row and the objects are retried next time.
    2  invalid configuration, or a scan option that is invalid at run time (a missing profile).
    3  the run finished, no alert fired, but shards failed or records were skipped beyond max_errors.
    4  at least one alert fired.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import posixpath
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from scanner.alerts import Alert, evaluate_rules, send_webhook
from scanner.history import (
    OBJECT_FAILED,
    OBJECT_SCANNED,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    STATUS_NO_NEW_OBJECTS,
    STATUS_OK,
    HistoryStore,
    ObjectState,
)
from scanner.monitor_config import (
    DISTINCT_RATIO_METRICS,
    INDICATOR_METRICS,
    MonitorConfig,
    MonitorConfigError,
    SourceEntry,
)
from scanner.result import ScanResult, scanner_version
from scanner.sources import ObjectInfo, list_location
from scanner.storage import StorageOptions, filesystem_for, redact_url, url_for

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INCOMPLETE = 3
EXIT_ALERT = 4

# Seconds `serve` waits for a run to end after forwarding SIGTERM to it, before it kills the run.
RUN_STOP_GRACE_S = 60.0
# Maximum sleep in seconds between checks for a stop request while `serve` waits.
_WAIT_STEP_S = 0.5


@dataclass(frozen=True)
class WatchedObject:
    """A listed object, its version tag and the snapshot it belongs to (None without a template)."""

    info: ObjectInfo
    snapshot: str | None

    @property
    def version(self) -> str:
        """The ETag, or size and modification time where the storage reports no ETag."""
        if self.info.etag:
            return f"etag:{self.info.etag}"
        return f"size:{self.info.size},mtime:{self.info.mtime}"


@dataclass
class RunReport:
    """Outcome of one `run_once`: the history row, the alerts that fired and the exit code."""

    row: dict
    alerts: list[Alert] = field(default_factory=list)
    exit_code: int = EXIT_OK


def run_once(config: MonitorConfig, progress_enabled: bool | None = False) -> RunReport:
    """Scan the new objects, append a history row, evaluate the alert rules and send notifications.

    Raises the scan's own error after appending a `failed` row: `UsageError`
    for invalid scan options found at run time, other exceptions for failures.
    """
    from scanner.cli import run_and_write

    webhook = config.notify.webhook_url()
    history = HistoryStore(config.history, config.history_storage_options())
    earlier = history.read_runs()
    states = history.object_states(earlier)
    row = _new_row(config.name)
    logger.info("monitor %s: run %s starting, history %s", config.name, row["run_id"], history.display_url)

    try:
        watched = list_watched_objects(config.sources, config.scan.storage())
        new, left_out = select_new_objects(watched, states, config.max_object_attempts)
        row["objects_left_out"] = left_out
        if not new:
            logger.info("monitor %s: no new objects among %d listed; no scan", config.name, len(watched))
            row["status"] = STATUS_NO_NEW_OBJECTS
            _finish(row)
            history.append_run(row)
            return RunReport(row=row)

        row["objects"] = len(new)
        row["object_bytes"] = sum(item.info.size for item in new)
        row["snapshots"] = sorted({item.snapshot for item in new if item.snapshot is not None})
        logger.info("monitor %s: %d new objects (%d bytes) to scan", config.name, len(new), row["object_bytes"])
        out = f"{config.output_root.rstrip('/')}/{row['run_id']}"
        scan_config = config.scan_config([item.info.url for item in new], out)
        result, location = run_and_write(scan_config, progress_enabled)
    except BaseException as error:
        _record_failure(history, row, error)
        raise

    fill_row_from_result(row, result, location)
    failed_urls = {failure.url for failure in result.shards.failures}
    objects = [
        {
            "url": item.info.url,
            "version": item.version,
            "size": item.info.size,
            "status": OBJECT_FAILED if item.info.url in failed_urls else OBJECT_SCANNED,
        }
        for item in new
    ]
    alerts = evaluate_rules(config.name, config.alerts, earlier, row)
    row["alerts"] = [f"{alert.rule}: {alert.message}" for alert in alerts]
    _finish(row)
    history.append_run(row, objects)

    notify(config, alerts, webhook, row["result_url"])
    if alerts:
        exit_code = EXIT_ALERT
    elif row["status"] == STATUS_INCOMPLETE:
        exit_code = EXIT_INCOMPLETE
    else:
        exit_code = EXIT_OK
    logger.info(
        "monitor %s: run %s %s: %d documents, %d alerts", config.name, row["run_id"], row["status"],
        row["documents"], len(alerts),
    )
    return RunReport(row=row, alerts=alerts, exit_code=exit_code)


def list_watched_objects(sources: list[SourceEntry], storage: StorageOptions) -> list[WatchedObject]:
    """List the objects under every watched prefix, without duplicates, sorted by URL."""
    found: dict[str, WatchedObject] = {}
    for entry in sources:
        for item in _list_entry(entry, storage):
            found.setdefault(item.info.url, item)
    return [found[url] for url in sorted(found)]


def _check_local_prefix(prefix: str) -> None:
    """Reject a local source that does not exist: in object storage an empty prefix
    is normal before the first snapshot, but a missing local path is a typo that
    would make every run find nothing."""
    if "://" in prefix and not prefix.startswith("file://"):
        return
    path = prefix.removeprefix("file://")
    if not any(character in path for character in "*?[") and not os.path.exists(path):
        raise MonitorConfigError(f"source {prefix!r} does not exist: check the path in sources")


def _list_entry(entry: SourceEntry, storage: StorageOptions) -> list[WatchedObject]:
    _check_local_prefix(entry.prefix)
    pattern = entry.snapshot_pattern()
    if pattern is None:
        return _matching(list_location(entry.prefix, storage), entry.prefix, entry.match, None)

    fs, root = filesystem_for(entry.prefix, storage)
    fs.invalidate_cache(root)
    try:
        children = fs.ls(root, detail=True)
    except FileNotFoundError:
        logger.warning("prefix %s does not exist yet; no snapshots", redact_url(entry.prefix))
        return []
    watched = []
    for child in sorted(children, key=lambda info: info["name"]):
        name = posixpath.basename(child["name"].rstrip("/"))
        if child.get("type") != "directory" or not pattern.fullmatch(name):
            continue
        snapshot_url = url_for(fs, child["name"].rstrip("/"))
        watched += _matching(list_location(snapshot_url, storage), snapshot_url, entry.match, name)
    return watched


def _matching(objects: list[ObjectInfo], base: str, match: str | None, snapshot: str | None) -> list[WatchedObject]:
    base = base.rstrip("/") + "/"
    selected = []
    for info in objects:
        relative = info.url[len(base) :] if info.url.startswith(base) else posixpath.basename(info.url)
        if match is None or fnmatch.fnmatchcase(relative, match):
            selected.append(WatchedObject(info=info, snapshot=snapshot))
    return selected


def select_new_objects(
    watched: list[WatchedObject], states: dict[str, ObjectState], max_attempts: int
) -> tuple[list[WatchedObject], int]:
    """Return the objects to scan and how many were left out after `max_attempts` failed runs."""
    new, left_out = [], 0
    for item in watched:
        state = states.get(item.info.url)
        if state is not None and state.scanned_version == item.version:
            continue
        attempts = state.failed_attempts.get(item.version, 0) if state is not None else 0
        if attempts >= max_attempts:
            left_out += 1
            continue
        new.append(item)
    if left_out:
        logger.warning(
            "%d objects left out: their shards failed in %d runs (max_object_attempts); "
            "fix or replace them, and a new version is scanned again",
            left_out,
            max_attempts,
        )
    return new, left_out


def fill_row_from_result(row: dict, result: ScanResult, location: str) -> None:
    """Copy the per-run numbers of a scan result into a history row."""
    row["status"] = STATUS_INCOMPLETE if result.problems else STATUS_OK
    row["documents"] = result.documents
    row["tokens"] = result.tokens
    row["failed_shards"] = result.shards.failed
    row["skipped_records"] = result.errors.count
    row["result_url"] = location
    row["scanner_version"] = result.scanner_version

    share = result.synthetic_share
    if share is not None:
        row["synthetic_share"] = share.estimate
        row["synthetic_share_low"], row["synthetic_share_high"] = share.ci95
        row["generators"] = [
            {"name": name, "documents": None, "estimate": value.estimate, "low": value.ci95[0], "high": value.ci95[1]}
            for name, value in sorted(share.generators.items())
        ]
    row["groups"] = [
        {
            "name": name,
            "documents": group.documents,
            "estimate": None if group.synthetic_share is None else group.synthetic_share.estimate,
            "low": None if group.synthetic_share is None else group.synthetic_share.ci95[0],
            "high": None if group.synthetic_share is None else group.synthetic_share.ci95[1],
        }
        for name, group in sorted(result.groups.items())
    ]

    contamination = result.model_dump(mode="json").get("contamination")
    row["contamination"] = contamination_level(contamination)
    row["contamination_json"] = None if contamination is None else json.dumps(contamination, sort_keys=True)

    for name in INDICATOR_METRICS:
        row[name] = getattr(result.indicators, name, None)
    for order, ratio in result.indicators.distinct_ratio.items():
        column = f"distinct_ratio_{order}"
        if column in DISTINCT_RATIO_METRICS:
            row[column] = ratio


def contamination_level(contamination: object) -> float | None:
    """Return the largest near_duplicate_share or long_ngram_share over the registered datasets.

    Reads `result.json`'s `contamination` defensively: null, a shape other than
    {"registry": {name: {...}}} or non-numeric values give None or are left out.
    """
    if not isinstance(contamination, dict):
        return None
    registry = contamination.get("registry", contamination)
    if not isinstance(registry, dict):
        return None
    values = []
    for entry in registry.values():
        if not isinstance(entry, dict):
            continue
        for key in ("near_duplicate_share", "long_ngram_share"):
            value = entry.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                values.append(float(value))
    return max(values) if values else None


def notify(config: MonitorConfig, alerts: list[Alert], webhook: str | None, result_url: str | None) -> None:
    """Log each alert (unless notify.log is false) and POST each one to the webhook."""
    for alert in alerts:
        if config.notify.log:
            logger.warning("ALERT monitor %s run %s: %s: %s", alert.monitor, alert.run_id, alert.rule, alert.message)
        if webhook:
            send_webhook(
                webhook, alert, result_url, config.notify.webhook_timeout_seconds, config.notify.webhook_attempts
            )


def _new_row(monitor: str) -> dict:
    started = dt.datetime.now(dt.timezone.utc)
    run_id = started.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:6]
    return {
        "run_id": run_id,
        "monitor": monitor,
        "started_at": started,
        "status": STATUS_FAILED,
        "objects": 0,
        "object_bytes": 0,
        "objects_left_out": 0,
        "snapshots": [],
        "alerts": [],
        "generators": [],
        "groups": [],
    }


def _finish(row: dict) -> None:
    row["finished_at"] = dt.datetime.now(dt.timezone.utc)


def _record_failure(history: HistoryStore, row: dict, error: BaseException) -> None:
    """Append a `failed` row for a run that raised; log, but do not raise, when that write fails too."""
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        message = f"interrupted ({type(error).__name__})"
    else:
        message = f"{type(error).__name__}: {error}"
    row["status"] = STATUS_FAILED
    row["error"] = message[:2000]
    _finish(row)
    logger.error("monitor run %s failed: %s", row["run_id"], message)
    try:
        history.append_run(row)
    except Exception as write_error:  # noqa: BLE001 - the run's own error is raised by the caller
        logger.error("could not record the failed run %s: %s", row["run_id"], write_error)


class _StopRequest:
    """Set by SIGTERM or SIGINT; `serve` checks it between short sleeps."""

    def __init__(self):
        self.requested = False
        self.signal_name: str | None = None

    def install(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._handle)

    def _handle(self, number, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(number).name

    def sleep_until(self, moment: dt.datetime) -> bool:
        """Sleep until `moment`; return False as soon as a stop is requested."""
        while not self.requested:
            remaining = moment.timestamp() - time.time()
            if remaining <= 0:
                return True
            time.sleep(min(remaining, _WAIT_STEP_S))
        return False


def serve(config: MonitorConfig, config_path: str, log_level: str) -> int:
    """Start `monitor run-once` at every scheduled time until SIGTERM or SIGINT; return 0 after a clean stop.

    The schedule is read once at start. Each run reads the configuration file
    again, so other edits apply from the next run on. A run still going when a
    stop is requested gets SIGTERM and up to RUN_STOP_GRACE_S seconds to end.
    """
    from scanner.monitor_config import MonitorConfigError

    if config.schedule is None:
        raise MonitorConfigError(
            "invalid schedule: monitor serve needs one; add for example schedule: {cron: '0 3 * * *', timezone: UTC}"
        )
    stop = _StopRequest()
    stop.install()
    logger.info(
        "monitor %s serving: cron %r in %s, pid %d",
        config.name, config.schedule.cron, config.schedule.timezone, os.getpid(),
    )
    runs = failures = 0
    while not stop.requested:
        next_time = config.schedule.next_run(dt.datetime.now(dt.timezone.utc))
        logger.info("monitor %s: next run at %s", config.name, next_time.isoformat())
        if not stop.sleep_until(next_time):
            break
        code = _run_child(config_path, log_level, stop)
        runs += 1
        if code in (EXIT_OK, EXIT_INCOMPLETE, EXIT_ALERT):
            logger.info("monitor %s: run %d ended with exit code %d", config.name, runs, code)
        else:
            failures += 1
            logger.error("monitor %s: run %d failed with exit code %d; waiting for the next run", config.name, runs, code)
    logger.info(
        "monitor %s stopped on %s after %d runs (%d failed)", config.name, stop.signal_name, runs, failures
    )
    return EXIT_OK


def _run_child(config_path: str, log_level: str, stop: _StopRequest) -> int:
    command = [sys.executable, "-m", "scanner", "monitor", "run-once", config_path, "--log-level", log_level]
    process = subprocess.Popen(command)
    logger.info("run started as pid %d", process.pid)
    deadline = None
    while True:
        try:
            return process.wait(timeout=_WAIT_STEP_S)
        except subprocess.TimeoutExpired:
            pass
        if stop.requested and deadline is None:
            logger.info("stop requested: sending SIGTERM to run pid %d", process.pid)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + RUN_STOP_GRACE_S
        elif deadline is not None and time.monotonic() > deadline:
            logger.error("run pid %d did not end within %.0f s of SIGTERM; killing it", process.pid, RUN_STOP_GRACE_S)
            process.kill()
            return process.wait()


def format_history(rows: list[dict]) -> str:
    """Return the history as a fixed-width text table, oldest run first."""
    headers = [
        "run_id", "started (UTC)", "status", "objects", "documents", "share [95% interval]",
        "contamination", "failed", "entropy", "near-dup", "alerts",
    ]
    lines = []
    for row in rows:
        share = row.get("synthetic_share")
        share_text = "-" if share is None else (
            f"{share:.3f} [{row['synthetic_share_low']:.3f}, {row['synthetic_share_high']:.3f}]"
        )
        lines.append(
            [
                row["run_id"],
                row["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
                row["status"],
                str(row["objects"] or 0),
                _optional(row.get("documents"), "{:,}"),
                share_text,
                _optional(row.get("contamination"), "{:.3f}"),
                _optional(row.get("failed_shards"), "{}"),
                _optional(row.get("unigram_entropy_bits"), "{:.3f}"),
                _optional(row.get("near_duplicate_rate"), "{:.3f}"),
                str(len(row.get("alerts") or [])),
            ]
        )
    widths = [max(len(header), *(len(line[index]) for line in lines)) for index, header in enumerate(headers)]
    rendered = ["  ".join(header.ljust(width) for header, width in zip(headers, widths))]
    rendered += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in lines]
    for row in rows:
        for alert in row.get("alerts") or []:
            rendered.append(f"alert in {row['run_id']}: {alert}")
        if row.get("error"):
            rendered.append(f"error in {row['run_id']}: {row['error']}")
    return "\n".join(rendered)


def _optional(value, template: str) -> str:
    return "-" if value is None else template.format(value)
