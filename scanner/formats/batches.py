"""The record batch schema that every reader yields, and a builder that fills it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pyarrow as pa

RECORD_SCHEMA = pa.schema(
    [
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("date", pa.timestamp("s", tz="UTC")),
        pa.field("record", pa.int64(), nullable=False),
    ]
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class BatchBuilder:
    """Collect records and cut them into Arrow batches of about `batch_bytes` of UTF-8 text."""

    def __init__(self, batch_bytes: int) -> None:
        self.batch_bytes = max(1, batch_bytes)
        self._reset()

    def _reset(self) -> None:
        self._texts: list[str] = []
        self._urls: list[str | None] = []
        self._dates: list[int | None] = []
        self._records: list[int] = []
        self._text_bytes = 0

    def add(self, text: str, url: str | None, date: int | None, record: int) -> pa.RecordBatch | None:
        """Add one record (`date` in epoch seconds). Return a full batch when one is ready."""
        self._texts.append(text)
        self._urls.append(url)
        self._dates.append(date)
        self._records.append(record)
        # str.isascii() is O(1) in CPython, so only non-ASCII text pays for encoding.
        self._text_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))
        if self._text_bytes >= self.batch_bytes:
            return self.flush()
        return None

    def flush(self) -> pa.RecordBatch | None:
        """Return the collected records as a batch, or None when there are none."""
        if not self._records:
            return None
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(self._texts, type=pa.large_string()),
                pa.array(self._urls, type=pa.string()),
                pa.array(self._dates, type=pa.int64()).cast(pa.timestamp("s", tz="UTC")),
                pa.array(self._records, type=pa.int64()),
            ],
            schema=RECORD_SCHEMA,
        )
        self._reset()
        return batch

    def drain(self) -> Iterator[pa.RecordBatch]:
        """Yield the last, partial batch if there is one."""
        batch = self.flush()
        if batch is not None:
            yield batch


def replace_lone_surrogates(text: str) -> tuple[str, int]:
    """Replace unpaired UTF-16 surrogates (from JSON escapes like "\\ud800") with U+FFFD.

    Arrow strings must be valid UTF-8, and a lone surrogate has no UTF-8 form.
    Returns the text and the number of replacements.
    """
    return _LONE_SURROGATE.subn("\ufffd", text)


def parse_date(value: object) -> int | None:
    """Convert a date value from a record to epoch seconds (UTC), or None if it is not a date.

    Accepts ISO 8601 strings (a missing offset means UTC), 14-digit archive
    timestamps ("20140216050221", extra digits ignored), datetimes, and numbers
    of epoch seconds. Numbers above 1e11 are read as milliseconds and above
    1e14 as microseconds, because no corpus has dates past the year 5138.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return _datetime_to_epoch(value)
    if isinstance(value, (int, float)):
        return _number_to_epoch(float(value))
    if not isinstance(value, str):
        return None

    text = value.strip()
    if len(text) >= 14 and text[:14].isdigit():
        try:
            parsed = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return None
        return _datetime_to_epoch(parsed)
    try:
        return _datetime_to_epoch(dt.datetime.fromisoformat(text))
    except ValueError:
        return None


def _number_to_epoch(seconds: float) -> int | None:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    if abs(seconds) > 1e14:
        seconds /= 1e6
    elif abs(seconds) > 1e11:
        seconds /= 1e3
    return int(seconds)


def _datetime_to_epoch(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return int((value - _EPOCH).total_seconds())
