"""Options for turning the bytes of one object into records."""

from __future__ import annotations

from dataclasses import dataclass

from scanner.formats.detect import RECORD_FORMATS

# Field names tried, in order, when ReadOptions leaves the URL or date field unset.
DEFAULT_URL_FIELDS = ("url",)
DEFAULT_DATE_FIELDS = ("date", "timestamp", "created")


@dataclass(frozen=True)
class ReadOptions:
    """How to read records from one object.

    format: "auto" (detect from content) or a record format that overrides detection.
    text_field: JSONL key or Parquet column with the document text. A dotted name
        ("meta.text") reaches into nested JSON objects when no key has the full name.
    url_field, date_field: JSONL key or Parquet column. None tries DEFAULT_URL_FIELDS
        and DEFAULT_DATE_FIELDS, and leaves the value null when none is present.
    lines_as_documents: plain text only. One document per line instead of per file.
    batch_bytes: target UTF-8 text bytes per yielded batch.
    max_record_bytes: a JSONL line, text document or archive record body larger
        than this is skipped with reason "record_too_large".
    """

    format: str = "auto"
    text_field: str = "text"
    url_field: str | None = None
    date_field: str | None = None
    lines_as_documents: bool = False
    batch_bytes: int = 8 << 20
    max_record_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.format != "auto" and self.format not in RECORD_FORMATS:
            raise ValueError(f"invalid format {self.format!r}: use one of auto, {', '.join(RECORD_FORMATS)}")
        if not self.text_field:
            raise ValueError("invalid text_field '': name the JSONL key or Parquet column with the text")
        if self.batch_bytes <= 0:
            raise ValueError(f"invalid batch_bytes {self.batch_bytes}: use a positive number of bytes")
        if self.max_record_bytes <= 0:
            raise ValueError(f"invalid max_record_bytes {self.max_record_bytes}: use a positive number of bytes")
