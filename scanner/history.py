"""The monitor's run history: a Parquet dataset on local disk or in object storage.

Layout under HISTORY:

    runs/<run id>.parquet      one row per run (`RUN_SCHEMA`)
    objects/<run id>.parquet   the objects a successful run tried (`OBJECT_SCHEMA`)
    scans/<run id>/            each run's scan output, unless the configuration sets `output`

Every file is written whole: local files under a temporary name and then
renamed, object-store files with one PUT. A run writes its objects file first
and its row last, so the row marks the commit. Objects files without a run
row, or with a row whose status is `failed`, do not count as scanned, so the
next run scans their objects again. Run ids start with the UTC
start time, so sorting them sorts the runs by time.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from scanner.monitor_config import DISTINCT_RATIO_METRICS, INDICATOR_METRICS
from scanner.storage import StorageOptions, filesystem_for, redact_url, url_for

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
OBJECTS_DIR = "objects"

# Run statuses. `ok` and `incomplete` (some shards failed) are successful runs;
# `no_new_objects` ran no scan; `failed` changed nothing but the history.
STATUS_OK = "ok"
STATUS_INCOMPLETE = "incomplete"
STATUS_NO_NEW_OBJECTS = "no_new_objects"
STATUS_FAILED = "failed"
SUCCESSFUL_STATUSES = (STATUS_OK, STATUS_INCOMPLETE)

OBJECT_SCANNED = "scanned"
OBJECT_FAILED = "failed"

_SHARE_STRUCT = pa.struct(
    [
        ("name", pa.string()),
        ("documents", pa.int64()),
        ("estimate", pa.float64()),
        ("low", pa.float64()),
        ("high", pa.float64()),
    ]
)

RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("monitor", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("error", pa.string()),
        ("objects", pa.int64()),
        ("object_bytes", pa.int64()),
        ("objects_left_out", pa.int64()),
        ("snapshots", pa.list_(pa.string())),
        ("documents", pa.int64()),
        ("tokens", pa.int64()),
        ("synthetic_share", pa.float64()),
        ("synthetic_share_low", pa.float64()),
        ("synthetic_share_high", pa.float64()),
        ("generators", pa.list_(_SHARE_STRUCT)),
        ("groups", pa.list_(_SHARE_STRUCT)),
        ("contamination", pa.float64()),
        ("contamination_json", pa.string()),
        ("failed_shards", pa.int64()),
        ("skipped_records", pa.int64()),
        *[(name, pa.float64()) for name in INDICATOR_METRICS],
        *[(name, pa.float64()) for name in DISTINCT_RATIO_METRICS],
        ("alerts", pa.list_(pa.string())),
        ("result_url", pa.string()),
        ("scanner_version", pa.string()),
    ]
)

OBJECT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("url", pa.string()),
        ("version", pa.string()),
        ("size", pa.int64()),
        ("status", pa.string()),
    ]
)


class HistoryError(RuntimeError):
    """The history location cannot be read or written."""


@dataclass
class ObjectState:
    """Record of earlier runs for one object URL: the version scanned last and failed attempts per version."""

    scanned_version: str | None = None
    failed_attempts: dict[str, int] = field(default_factory=dict)


class HistoryStore:
    """Reads and appends the run history at one location."""

    def __init__(self, url: str, storage: StorageOptions):
        self.fs, root = filesystem_for(url, storage)
        self.root = root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)
        self.display_url = redact_url(url_for(self.fs, self.root))

    def read_runs(self) -> list[dict]:
        """Return every committed run row, oldest first. Unreadable files are logged and skipped."""
        table = self._read_dataset(RUNS_DIR, RUN_SCHEMA)
        rows = table.to_pylist()
        rows.sort(key=lambda row: row["run_id"])
        return rows

    def runs_table(self) -> pa.Table:
        """Return the committed runs as one table, oldest first."""
        return pa.Table.from_pylist(self.read_runs(), schema=RUN_SCHEMA)

    def object_states(self, runs: Iterable[dict]) -> dict[str, ObjectState]:
        """Return, per object URL, the version scanned last and the failed attempts per version.

        Only objects files of successful runs in `runs` count.
        """
        successful = {row["run_id"] for row in runs if row["status"] in SUCCESSFUL_STATUSES}
        table = self._read_dataset(OBJECTS_DIR, OBJECT_SCHEMA)
        states: dict[str, ObjectState] = {}
        for row in sorted(table.to_pylist(), key=lambda item: item["run_id"]):
            if row["run_id"] not in successful:
                continue
            state = states.setdefault(row["url"], ObjectState())
            if row["status"] == OBJECT_SCANNED:
                state.scanned_version = row["version"]
            else:
                state.failed_attempts[row["version"]] = state.failed_attempts.get(row["version"], 0) + 1
        return states

    def append_run(self, row: dict, objects: list[dict] | None = None) -> None:
        """Write a run's objects file (if any), then its row, each as a whole file.

        Raises HistoryError when a write fails; a row that was not written
        leaves the run uncommitted, so its objects count as not scanned.
        """
        run_id = row["run_id"]
        try:
            if objects:
                table = pa.Table.from_pylist([{**item, "run_id": run_id} for item in objects], schema=OBJECT_SCHEMA)
                self._write(f"{OBJECTS_DIR}/{run_id}.parquet", _parquet_bytes(table))
            self._write(f"{RUNS_DIR}/{run_id}.parquet", _parquet_bytes(pa.Table.from_pylist([row], schema=RUN_SCHEMA)))
        except OSError as error:
            raise HistoryError(f"cannot write run {run_id} to the history at {self.display_url}: {error}") from error
        logger.info("history %s: appended run %s (%s)", self.display_url, run_id, row["status"])

    def _read_dataset(self, directory: str, schema: pa.Schema) -> pa.Table:
        path = f"{self.root}/{directory}"
        self.fs.invalidate_cache(path)
        try:
            names = sorted(name for name in self.fs.find(path) if name.endswith(".parquet"))
        except FileNotFoundError:
            names = []
        except OSError as error:
            raise HistoryError(f"cannot list the history at {self.display_url}: {error}") from error

        tables, unreadable = [], 0
        for name in names:
            try:
                table = pq.read_table(io.BytesIO(self.fs.cat_file(name)))
                tables.append(table.select(schema.names).cast(schema))
            except (OSError, pa.ArrowException, KeyError) as error:
                unreadable += 1
                logger.error("history file %s is unreadable and was skipped: %s", redact_url(name), error)
        if unreadable:
            logger.warning("skipped %d unreadable files under %s/%s", unreadable, self.display_url, directory)
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables)

    def _write(self, relative_path: str, data: bytes) -> None:
        path = f"{self.root}/{relative_path}"
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
