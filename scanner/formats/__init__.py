"""Turn the bytes of one stored object into batches of text records.

`iter_record_batches` is the entry point: it detects the format and
compression from the content (see `detect`), reads the records with the
format's reader, and yields Arrow batches with the schema RECORD_SCHEMA:

    text    large_string, not null   document text as decoded from the source
    url     string, nullable
    date    timestamp[s, UTC], nullable
    record  int64, not null          the record's id within its object

`record` does not depend on how an object is split into shards:
- JSONL and plain-text lines: the byte offset of the line start in the
  decompressed stream;
- whole-object text documents: 0;
- Parquet: the absolute row index;
- WARC, WET and ARC: the record index in the file, from 0.

Malformed records are skipped and counted in the caller's `ReadReport`. A
reader raises only for configuration errors (ValueError), such as a missing
Parquet text column or a byte range on a compressed object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import pyarrow as pa

from scanner.formats.batches import RECORD_SCHEMA
from scanner.formats.compression import iter_decompressed
from scanner.formats.detect import HEAD_BYTES, DetectedFormat, detect_format
from scanner.formats.lines import iter_lines, read_chunks, seek_first_line
from scanner.formats.options import ReadOptions
from scanner.formats.report import ReadReport

__all__ = [
    "RECORD_SCHEMA",
    "DetectedFormat",
    "ReadOptions",
    "ReadReport",
    "detect_format",
    "iter_record_batches",
]


def iter_record_batches(
    open_binary: Callable[[], BinaryIO],
    path: str,
    options: ReadOptions,
    report: ReadReport,
    *,
    byte_range: tuple[int, int] | None = None,
    row_groups: tuple[int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield record batches of about `options.batch_bytes` of text from one object.

    `open_binary` returns a new seekable binary file object over the raw
    (still compressed) object. `byte_range=(start, end)` reads the lines that
    start in [start, end) of an uncompressed JSONL or line-per-document text
    object. `row_groups=(first, stop)` reads those Parquet row groups.
    Skips, warnings and counters go to `report`.

    Raises ValueError when the options do not fit the object (for example a
    byte range on a compressed object, or a missing Parquet text column).
    """
    with open_binary() as raw:
        head = raw.read(HEAD_BYTES)
        raw.seek(0)
        detected = detect_format(head, path, options.format)
        for warning in detected.warnings:
            report.warn(f"{path}: {warning}")
        _check_ranges(detected, path, options, byte_range, row_groups)
        yield from _read(raw, detected, path, options, report, byte_range, row_groups)


def _read(
    raw: BinaryIO,
    detected: DetectedFormat,
    path: str,
    options: ReadOptions,
    report: ReadReport,
    byte_range: tuple[int, int] | None,
    row_groups: tuple[int, int] | None,
) -> Iterator[pa.RecordBatch]:
    # The readers import their libraries (FastWARC, Resiliparse) only when a file needs them.
    if detected.format == "parquet":
        from scanner.formats.parquet import read_parquet

        yield from read_parquet(raw, path, options, report, row_groups)
    elif detected.format in ("warc", "wet"):
        from scanner.formats.warc import read_warc

        yield from read_warc(raw, path, options, report)
    elif detected.format == "arc":
        from scanner.formats.arc import read_arc

        yield from read_arc(iter_decompressed(raw, detected.compression), path, options, report)
    elif detected.format == "text" and not options.lines_as_documents:
        from scanner.formats.text import read_text_document

        yield from read_text_document(iter_decompressed(raw, detected.compression), path, options, report)
    else:
        yield from _read_lines(raw, detected, path, options, report, byte_range)


def _read_lines(
    raw: BinaryIO,
    detected: DetectedFormat,
    path: str,
    options: ReadOptions,
    report: ReadReport,
    byte_range: tuple[int, int] | None,
) -> Iterator[pa.RecordBatch]:
    """Read JSONL or line-per-document text, from the whole object or from a byte range."""
    if byte_range is None:
        lines = iter_lines(iter_decompressed(raw, detected.compression), max_line_bytes=options.max_record_bytes)
    else:
        start, end = byte_range
        first_offset, first_bytes = seek_first_line(raw, start)
        lines = iter_lines(
            read_chunks(raw, first_bytes),
            max_line_bytes=options.max_record_bytes,
            first_offset=first_offset,
            first_number=1 if first_offset == 0 else None,
            end=end,
        )

    if detected.format == "jsonl":
        from scanner.formats.jsonl import read_jsonl_lines

        yield from read_jsonl_lines(lines, path, options, report)
    else:
        from scanner.formats.text import read_text_lines

        yield from read_text_lines(lines, path, options, report)


def _check_ranges(
    detected: DetectedFormat,
    path: str,
    options: ReadOptions,
    byte_range: tuple[int, int] | None,
    row_groups: tuple[int, int] | None,
) -> None:
    if byte_range is not None and row_groups is not None:
        raise ValueError(f"invalid shard of {path}: give byte_range or row_groups, not both")
    if row_groups is not None and detected.format != "parquet":
        raise ValueError(f"invalid shard of {path}: row_groups apply to Parquet, but the object is {detected.format}")
    if byte_range is None:
        return

    start, end = byte_range
    if not 0 <= start <= end:
        raise ValueError(f"invalid byte_range {byte_range} for {path}: expected 0 <= start <= end")
    if detected.compression is not None:
        raise ValueError(
            f"invalid shard of {path}: byte ranges need an uncompressed object, but it is {detected.compression}; "
            "read the whole object instead"
        )
    line_based = detected.format == "jsonl" or (detected.format == "text" and options.lines_as_documents)
    if not line_based:
        raise ValueError(
            f"invalid shard of {path}: byte ranges apply to JSONL and to text read with lines_as_documents, "
            f"but the object is {detected.format}"
        )
