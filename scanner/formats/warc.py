"""Read WARC and WET files with FastWARC.

Documents are `conversion` records (WET plain text, UTF-8), `response`
records with an HTML or plain-text HTTP body, and `resource` records of type
text/html or text/plain. Other record types (warcinfo, request, metadata,
revisit, continuation, unknown) are counted in
`counters["non_document_records"]`.

`record` is the index of the record among all records of the file, from 0,
so it does not depend on which records are documents. `url` comes from
WARC-Target-URI without the `<...>` that some wget versions add, and `date`
from WARC-Date.

A record of any type whose body is shorter than its Content-Length (a file
cut off inside a record) is skipped with reason "truncated_record" and sets
`report.truncated`. A record without Content-Length, which is what FastWARC
yields for a file cut off inside a WARC header, is skipped with reason
"invalid_warc_record" and sets `report.truncated` too. FastWARC runs in
quirks mode, so WARC headers with bare LF line ends are read. An OSError
from FastWARC ends the read with reason "invalid_warc_record".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecord

from scanner.formats.batches import BatchBuilder, parse_date
from scanner.formats.options import ReadOptions
from scanner.formats.payload import content_text, response_text
from scanner.formats.report import ReadReport
from scanner.formats.text import decode_utf8

_DOCUMENT_TYPES = ("response", "resource", "conversion")


def read_warc(raw: BinaryIO, path: str, options: ReadOptions, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """Yield the documents of one WARC or WET object (any compression FastWARC detects)."""
    builder = BatchBuilder(options.batch_bytes)
    records = ArchiveIterator(raw, parse_http=False, quirks_mode=True, fsspec_args=False)
    index = 0
    while True:
        location = f"{path}#record {index}"
        try:
            record = next(records)
        except StopIteration:
            break
        except OSError as error:
            report.skip("invalid_warc_record", location, str(error))
            report.truncated = True
            report.warn(f"{location}: invalid WARC record ({error}); the rest of the file was not read")
            break

        text = _record_text(record, location, options, report)
        if text is not None:
            batch = builder.add(text, _target_uri(record), _record_date(record, report), index)
            if batch is not None:
                yield batch
        index += 1
    yield from builder.drain()


def _record_text(record: WarcRecord, location: str, options: ReadOptions, report: ReadReport) -> str | None:
    """Return the document text of one record, or None after counting why there is none."""
    if record.headers.get("Content-Length") is None:
        # FastWARC yields a record whose header was cut off with no Content-Length.
        report.truncated = True
        report.skip("invalid_warc_record", location, "WARC header without Content-Length (cut off or invalid)")
        return None

    record_type = (record.headers.get("WARC-Type") or "").strip().lower()
    declared_length = record.content_length
    if record_type not in _DOCUMENT_TYPES:
        _drain_record(record, location, report)
        return None
    if declared_length > options.max_record_bytes:
        report.skip("record_too_large", location, f"Content-Length {declared_length} > max_record_bytes {options.max_record_bytes}")
        return None

    block = record.reader.read()
    if len(block) < declared_length:
        _report_cut_record(len(block), declared_length, location, report)
        return None

    content_type = record.headers.get("Content-Type")
    if record_type == "conversion":
        text = decode_utf8(block, report)
    elif record_type == "response" and (content_type or "").lower().startswith("application/http"):
        text = response_text(block, report, location)
    else:
        text = content_text(block, content_type, report)
    return text


def _drain_record(record: WarcRecord, location: str, report: ReadReport) -> None:
    """Read a non-document record to its end, so that a file cut inside it is noticed."""
    size = 0
    while chunk := record.reader.read(1 << 20):
        size += len(chunk)
    if size < record.content_length:
        _report_cut_record(size, record.content_length, location, report)
    else:
        report.count("non_document_records")


def _report_cut_record(size: int, declared_length: int, location: str, report: ReadReport) -> None:
    report.truncated = True
    report.skip("truncated_record", location, f"read {size} of {declared_length} bytes (Content-Length)")


def _record_date(record: WarcRecord, report: ReadReport) -> int | None:
    value = record.headers.get("WARC-Date")
    date = parse_date(value)
    if value and date is None:
        report.count("invalid_dates")
    return date


def _target_uri(record: WarcRecord) -> str | None:
    uri = record.headers.get("WARC-Target-URI")
    if uri is None:
        return None
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):
        uri = uri[1:-1].strip()
    return uri or None
