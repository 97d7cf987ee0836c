"""The monitor configuration: a YAML file validated by pydantic models.

A configuration names what to watch (`sources`), how to scan it (`scan`, the
options of `corpus-scanner scan` by their long names with underscores), when
(`schedule`), where the run history goes (`history`), which rules raise alerts
(`alerts`) and where alerts go (`notify`). `load_monitor_config` raises
`MonitorConfigError` with one line per problem, each naming the field path
(for example `alerts[1].runs`), the rejected value and the fix.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import re
import zoneinfo
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from scanner.config import ScanConfig
from scanner.settings import parse_orders
from scanner.storage import StorageOptions, is_secret_key, redact_url

MIB = 1 << 20

# Per-run values that alert rules can test, besides the distinct_ratio_N columns.
INDICATOR_METRICS = (
    "unigram_entropy_bits",
    "hapax_share",
    "hapax_token_share",
    "tail_mass",
    "zipf_exponent",
    "near_duplicate_rate",
    "compression_ratio",
    "profile_divergence_bits",
)
MAX_NGRAM_ORDER = 8
DISTINCT_RATIO_METRICS = tuple(f"distinct_ratio_{order}" for order in range(1, MAX_NGRAM_ORDER + 1))
METRICS = (
    "synthetic_share",
    "contamination",
    "failed_shards",
    "skipped_records",
    "documents",
    *INDICATOR_METRICS,
    *DISTINCT_RATIO_METRICS,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ScalarOption = bool | int | float | str


class MonitorConfigError(ValueError):
    """An invalid or unreadable monitor configuration; the message names each field and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceEntry(_Model):
    """A prefix to watch, optionally split into snapshot prefixes by a template.

    Without `snapshot`, every object under `prefix` that no earlier run scanned
    is new. With `snapshot`, only objects under `prefix/<snapshot name>/` count,
    where the name matches the template: `{field}` stands for one or more
    characters other than "/", and the rest is literal text, for example
    `CC-MAIN-{year}-{week}`. `match` is an optional glob that object keys below
    the snapshot prefix must match, for example `segments/*/wet/*.warc.wet.gz`.
    """

    prefix: str = Field(min_length=1)
    snapshot: str | None = None
    match: str | None = None

    @field_validator("snapshot")
    @classmethod
    def _check_template(cls, template: str | None) -> str | None:
        if template is None:
            return None
        if not template or "/" in template.strip("/"):
            raise ValueError(
                "a snapshot template is one path segment with {field} placeholders, for example CC-MAIN-{year}-{week}"
            )
        return template.strip("/")

    def snapshot_pattern(self) -> re.Pattern[str] | None:
        """Return the regular expression of the snapshot template, or None without a template."""
        if self.snapshot is None:
            return None
        parts, position = [], 0
        for placeholder in _PLACEHOLDER.finditer(self.snapshot):
            parts.append(re.escape(self.snapshot[position : placeholder.start()]))
            parts.append(f"(?P<{placeholder.group(1)}>[^/]+)")
            position = placeholder.end()
        parts.append(re.escape(self.snapshot[position:]))
        return re.compile("".join(parts))


class ScanOptions(_Model):
    """The options of `corpus-scanner scan` that a monitor run passes on, by their long names."""

    format: Literal["auto", "jsonl", "parquet", "warc", "wet", "arc", "text"] = "auto"
    text_field: str = "text"
    url_field: str | None = None
    date_field: str | None = None
    lines_as_documents: bool = False
    ngram_orders: str | int = "1-5"
    top_ngrams: int = 50
    profile: str | None = None
    registry: str | None = None
    near_duplicate_threshold: float = 0.8
    hll_precision: int | None = None
    seed: int | None = None
    heavy_hitter_capacity: int | None = None
    keep_punctuation: bool = False
    group_by: Literal["none", "snapshot", "domain"] = "none"
    address: str | None = None
    num_workers: int | None = None
    endpoint_url: str | None = None
    anon: bool = False
    storage_option: dict[str, ScalarOption] = {}
    shard_size_mb: float = Field(256.0, gt=0)
    max_errors: int | None = None

    @field_validator("ngram_orders")
    @classmethod
    def _check_orders(cls, value: str | int) -> str:
        try:
            parse_orders(str(value))
        except ValueError as error:
            raise ValueError(f"{error}, for example 1-5") from None
        return str(value)

    def storage(self) -> StorageOptions:
        """Return the storage options of the scan, with secret-looking option values kept as secrets."""
        return StorageOptions(
            endpoint_url=self.endpoint_url, anon=self.anon, options=_typed_options(self.storage_option)
        )


class HistoryStorage(_Model):
    """Storage options for the history location, when they differ from the scan's."""

    endpoint_url: str | None = None
    anon: bool = False
    storage_option: dict[str, ScalarOption] = {}

    def storage(self) -> StorageOptions:
        return StorageOptions(
            endpoint_url=self.endpoint_url, anon=self.anon, options=_typed_options(self.storage_option)
        )


class Schedule(_Model):
    """When `monitor serve` starts a run: a cron expression in a time zone.

    Five fields (minute to weekday) as in crontab, or six with a trailing
    seconds field, as croniter reads them.
    """

    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(
                "invalid cron expression: use 5 fields (minute hour day month weekday), for example '0 3 * * *', "
                "or 6 with seconds last, for example '*/10 * * * * *'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone: use an IANA name such as UTC or Europe/Berlin") from None
        return value

    def next_run(self, after: dt.datetime) -> dt.datetime:
        """Return the first scheduled time after `after`, an aware datetime, in the schedule's time zone."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        return croniter(self.cron, after.astimezone(zone)).get_next(dt.datetime)


class AlertRule(_Model):
    """One alert rule on a per-run metric: exactly one of above, below, rise or fall.

    `above`/`below` compare the run's value with a threshold. `rise`/`fall`
    compare it with the value `runs` successful runs earlier (runs without a
    value, such as runs with no new objects, are left out) and fire when it
    changed by more than the given amount.
    """

    metric: str
    above: float | None = None
    below: float | None = None
    rise: float | None = Field(None, gt=0)
    fall: float | None = Field(None, gt=0)
    runs: int | None = Field(None, ge=1, le=1000)
    name: str | None = None

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(
                f"unknown metric: use one of {', '.join(METRICS[: len(METRICS) - len(DISTINCT_RATIO_METRICS)])} "
                f"or distinct_ratio_1 to distinct_ratio_{MAX_NGRAM_ORDER}"
            )
        return value

    @model_validator(mode="after")
    def _check_one_condition(self) -> AlertRule:
        conditions = [key for key in ("above", "below", "rise", "fall") if getattr(self, key) is not None]
        if len(conditions) != 1:
            raise ValueError(
                "give exactly one of above, below, rise or fall, for example {metric: synthetic_share, above: 0.25}"
            )
        if conditions[0] in ("rise", "fall") and self.runs is None:
            raise ValueError(f"{conditions[0]} needs runs: how many runs back to compare with, for example runs: 3")
        if conditions[0] in ("above", "below") and self.runs is not None:
            raise ValueError(f"runs applies to rise and fall only; remove it from this {conditions[0]} rule")
        return self

    @property
    def condition(self) -> str:
        """The rule's kind: above, below, rise or fall."""
        return next(key for key in ("above", "below", "rise", "fall") if getattr(self, key) is not None)

    @property
    def threshold(self) -> float:
        return float(getattr(self, self.condition))

    def describe(self) -> str:
        """Return the rule as a short phrase, such as 'synthetic_share rise > 0.05 over 3 runs'."""
        if self.name:
            return self.name
        if self.condition in ("above", "below"):
            sign = ">" if self.condition == "above" else "<"
            return f"{self.metric} {sign} {self.threshold:g}"
        return f"{self.metric} {self.condition} > {self.threshold:g} over {self.runs} runs"


class Notify(_Model):
    """Notification settings for fired alerts, besides the log and the exit code."""

    log: bool = True
    webhook: str | None = None
    webhook_env: str | None = Field(
        None, description="environment variable that contains the webhook URL, for URLs that contain a token"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300)
    webhook_attempts: int = Field(3, ge=1, le=10)

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(value)
        return value

    @model_validator(mode="after")
    def _check_one_webhook(self) -> Notify:
        if self.webhook is not None and self.webhook_env is not None:
            raise ValueError("give webhook or webhook_env, not both")
        return self

    def webhook_url(self) -> str | None:
        """Return the webhook URL, from the configuration or from the environment variable `webhook_env`.

        Raises MonitorConfigError when the variable is unset or is not an http(s) URL.
        """
        if self.webhook_env is None:
            return self.webhook
        value = os.environ.get(self.webhook_env)
        if not value:
            raise MonitorConfigError(
                f"invalid notify.webhook_env: the environment variable {self.webhook_env} is not set; "
                "set it to the webhook URL"
            )
        try:
            return _check_http_url(value)
        except ValueError as error:
            raise MonitorConfigError(f"invalid notify.webhook_env {self.webhook_env}: {error}") from None


class MonitorConfig(_Model):
    """Everything `corpus-scanner monitor` needs."""

    name: str = Field(min_length=1, max_length=200)
    sources: list[SourceEntry] = Field(min_length=1)
    scan: ScanOptions = ScanOptions()
    schedule: Schedule | None = None
    history: str = Field(min_length=1, description="Parquet dataset of the runs, a local directory or a prefix")
    history_storage: HistoryStorage | None = None
    output: str | None = Field(
        None, description="where each run writes its scan output, under OUTPUT/<run id>; None: HISTORY/scans"
    )
    max_object_attempts: int = Field(
        3, ge=1, le=100, description="runs that try an object whose shards fail before it is left out"
    )
    alerts: list[AlertRule] = []
    notify: Notify = Notify()

    @field_validator("sources", mode="before")
    @classmethod
    def _prefixes_as_entries(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"prefix": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def output_root(self) -> str:
        return self.output or self.history.rstrip("/") + "/scans"

    def history_storage_options(self) -> StorageOptions:
        """Return the storage of the history: `history_storage`, else the scan's endpoint and options, not anonymous."""
        if self.history_storage is not None:
            return self.history_storage.storage()
        scan_storage = self.scan.storage()
        return StorageOptions(endpoint_url=scan_storage.endpoint_url, options=scan_storage.options)

    def scan_config(self, sources: list[str], out: str) -> ScanConfig:
        """Build the `ScanConfig` of one run over `sources`, writing to `out`.

        Raises MonitorConfigError naming the `scan.` field when a value is invalid.
        """
        return build_scan_config(self.scan, sources, out)


def build_scan_config(options: ScanOptions, sources: list[str], out: str) -> ScanConfig:
    """Turn monitor scan options into a `ScanConfig`; raise MonitorConfigError naming the invalid field."""
    min_order, max_order = parse_orders(options.ngram_orders)
    sketch: dict[str, Any] = {
        "min_order": min_order,
        "max_order": max_order,
        "keep_punctuation": options.keep_punctuation,
    }
    for name in ("hll_precision", "seed", "heavy_hitter_capacity"):
        if getattr(options, name) is not None:
            sketch[name] = getattr(options, name)
    try:
        storage = options.storage()
    except ValidationError as error:
        # StorageOptions' fields carry the scan option's name: endpoint_url, anon, options.
        raise MonitorConfigError(_describe(error, lambda location: _scan_field_path(("storage", *location)))) from None
    fields: dict[str, Any] = {
        "sources": sources,
        "out": out,
        "read": {
            "format": options.format,
            "text_field": options.text_field,
            "url_field": options.url_field,
            "date_field": options.date_field,
            "lines_as_documents": options.lines_as_documents,
        },
        "sketch": sketch,
        "storage": storage,
        "group_by": options.group_by,
        "address": options.address,
        "num_workers": options.num_workers,
        "max_errors": options.max_errors,
        "target_shard_bytes": max(1, int(options.shard_size_mb * MIB)),
        "top_ngrams": options.top_ngrams,
        "profile": options.profile,
    }
    if options.registry is not None:
        fields["registry"] = options.registry
        fields["near_duplicate_threshold"] = options.near_duplicate_threshold
    try:
        return ScanConfig.model_validate(fields)
    except ValidationError as error:
        raise MonitorConfigError(_describe(error, _scan_field_path)) from None


def load_monitor_config(path: str | os.PathLike) -> MonitorConfig:
    """Read and validate a monitor configuration file; raise MonitorConfigError naming each invalid field."""
    location = pathlib.Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MonitorConfigError(f"monitor configuration {str(location)!r} not found: check the path") from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise MonitorConfigError(
            f"cannot read monitor configuration {str(location)!r} ({type(error).__name__}): give a UTF-8 YAML file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MonitorConfigError(f"invalid YAML in {str(location)!r}: {error}") from None
    if not isinstance(data, dict):
        raise MonitorConfigError(
            f"invalid monitor configuration {str(location)!r}: expected a mapping with name, sources and history"
        )
    return parse_monitor_config(data)


def parse_monitor_config(data: dict) -> MonitorConfig:
    """Validate configuration data, including the scan options; raise MonitorConfigError naming each field."""
    try:
        config = MonitorConfig.model_validate(data)
    except ValidationError as error:
        raise MonitorConfigError(_describe(error, _config_field_path)) from None
    # Builds the scan configuration once with a placeholder source, so invalid scan values fail at load time.
    config.scan_config(["placeholder"], config.output_root)
    try:
        config.history_storage_options()
    except ValidationError as error:
        raise MonitorConfigError(_describe(error, lambda location: "history_storage." + ".".join(map(str, location)))) from None
    return config


def _typed_options(options: dict[str, ScalarOption]) -> dict[str, ScalarOption | SecretStr]:
    return {key: SecretStr(str(value)) if is_secret_key(key) else value for key, value in options.items()}


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"invalid URL {redact_url(value)!r}: use an http:// or https:// URL")
    return value


_SCAN_FIELD_FOR_LOCATION = {
    ("read",): "scan",
    ("sketch",): "scan.ngram_orders",
    ("sketch", "min_order"): "scan.ngram_orders",
    ("sketch", "max_order"): "scan.ngram_orders",
    ("storage", "endpoint_url"): "scan.endpoint_url",
    ("storage", "anon"): "scan.anon",
    ("storage", "options"): "scan.storage_option",
    ("target_shard_bytes",): "scan.shard_size_mb",
    ("sources",): "sources",
    ("out",): "output",
}


def _scan_field_path(location: tuple) -> str:
    for length in (len(location), 2):
        if location[:length] in _SCAN_FIELD_FOR_LOCATION:
            return _SCAN_FIELD_FOR_LOCATION[location[:length]]
    # ScanConfig's read.* and sketch.* fields carry the option's own name.
    if location[0] in ("read", "sketch") and len(location) > 1:
        return f"scan.{location[1]}"
    return f"scan.{location[0]}"


def _config_field_path(location: tuple) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "configuration"


def _describe(error: ValidationError, field_path) -> str:
    lines = []
    for item in error.errors():
        path = field_path(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        secret = "storage" in path or "webhook" in path
        if secret or isinstance(value, (dict, list)) or value is None:
            lines.append(f"invalid {path}: {message}")
        else:
            display_value = redact_url(value) if isinstance(value, str) else value
            lines.append(f"invalid {path} {display_value!r}: {message}")
    return "\n".join(lines)
