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

A block longer than its Content-Length leaves stray bytes before the next
`WARC/` line. FastWARC skips them and reads the next record. The reader
counts each such record in `counters["stray_bytes_after_record"]` and warns
with the offset of the stray bytes: the byte offset in an uncompressed file,
or the offset of the gzip member that contains them. NOTE: zstd and LZ4 files,
and gzip files with several records in one member, are not checked.

A wrong Content-Length can also hide whole records: inside a block that is
declared too long, or among the stray bytes after one. Each `WARC-Type:` header
line found there is counted as a skipped record, with reason
"record_inside_block" or "record_inside_stray_bytes", so that every record of
the file is a document, a non-document record or a counted skip.
"""

from __future__ import annotations

import re
import zlib
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
_GZIP_MAGIC = b"\x1f\x8b"
# Raw bytes kept for the stray-byte check. A record beyond this size is not checked.
_MAX_CHECKED_RECORD_BYTES = 64 << 20
# Header bytes decompressed from a gzip member to find where the WARC header ends.
_MAX_HEADER_BYTES = 1 << 16
# The WARC-Type field of a record header, at the start of a line. It marks a record even
# when a wrong Content-Length made the reader consume the version line before it.
_EMBEDDED_RECORD = re.compile(rb"(?m)^WARC-Type: ?[a-z]+\r?$")


def read_warc(raw: BinaryIO, path: str, options: ReadOptions, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """Yield the documents of one WARC or WET object (any compression FastWARC detects)."""
    builder = BatchBuilder(options.batch_bytes)
    stream = _RecentBytes(raw)
    records = ArchiveIterator(stream, parse_http=False, quirks_mode=True, fsspec_args=False)
    previous: tuple[int, int] | None = None
    index = 0
    while True:
        location = f"{path}#record {index}"
        try:
            record = next(records)
        except StopIteration:
            if previous is not None and not report.truncated:
                _check_stray_bytes(stream, *previous, stream.position, path, report)
            break
        except OSError as error:
            report.skip("invalid_warc_record", location, str(error))
            report.truncated = True
            report.warn(f"{location}: invalid WARC record ({error}); the rest of the file was not read")
            break

        if previous is not None and not report.truncated:
            _check_stray_bytes(stream, *previous, record.stream_pos, path, report)
        stream.release(record.stream_pos)
        previous = (record.stream_pos, record.content_length)

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
    _report_swallowed_records(block, location, report)
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


def _report_swallowed_records(block: bytes, location: str, report: ReadReport) -> None:
    """Count WARC records found inside a block.

    A Content-Length larger than the real block makes the reader take the next
    records as part of this one. Their documents cannot be recovered reliably,
    so each is counted as skipped with reason "record_inside_block", and the
    block itself is still scanned as one document.
    """
    swallowed = len(_EMBEDDED_RECORD.findall(block))
    for _ in range(swallowed):
        report.skip(
            "record_inside_block",
            location,
            "a WARC record header inside this record's block: its Content-Length is too large",
        )


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


class _RecentBytes:
    """A read-only stream that keeps the raw bytes read since the last `release` position."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._retained = bytearray()
        self.position = raw.tell()
        self._retained_start: int | None = self.position

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if self._retained_start is not None:
            self._retained += data
            if len(self._retained) > _MAX_CHECKED_RECORD_BYTES:
                self._retained = bytearray()
                self._retained_start = None
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def release(self, position: int) -> None:
        """Drop the kept bytes before `position`, where the next record starts."""
        if self._retained_start is not None and self._retained_start <= position <= self.position:
            del self._retained[: position - self._retained_start]
        else:
            self._retained = bytearray()
        self._retained_start = position

    def window(self, start: int, end: int) -> bytes | None:
        """Return the bytes [start, end), or None when they are no longer kept."""
        if self._retained_start is None or not self._retained_start <= start <= end <= self.position:
            return None
        return bytes(self._retained[start - self._retained_start : end - self._retained_start])


def _check_stray_bytes(
    stream: _RecentBytes, start: int, content_length: int, next_start: int, path: str, report: ReadReport
) -> None:
    """Warn when the record at `start` is followed by more than its CRLF CRLF before `next_start`."""
    if next_start <= start:
        return
    data = stream.window(start, next_start)
    if data is None:
        return
    if data.startswith(_GZIP_MAGIC):
        _check_gzip_member(data, start, content_length, path, report)
        return
    if not data.startswith(b"WARC/"):
        # zstd and LZ4 frames: their offsets do not map to the uncompressed stream.
        return

    header_end = _header_end(data)
    if header_end is None:
        return
    block_end = header_end + content_length
    stray = data[block_end:].rstrip(b"\r\n")
    if len(data) < block_end or not stray:
        return
    report.count("stray_bytes_after_record")
    report.warn(
        f"{path}@offset {start + block_end}: skipped {len(stray)} stray bytes after the block of the record "
        f"at offset {start} (Content-Length {content_length}) before the next WARC record"
    )
    for _ in _EMBEDDED_RECORD.finditer(stray):
        report.skip(
            "record_inside_stray_bytes",
            f"{path}@offset {start + block_end}",
            "a WARC record header among bytes the reader skipped; a Content-Length is wrong",
        )


def _check_gzip_member(data: bytes, start: int, content_length: int, path: str, report: ReadReport) -> None:
    """Warn when a gzip member contains bytes after its record's block and CRLF CRLF that are not another record.

    The cheap test compares the member's ISIZE trailer (its uncompressed size
    modulo 2**32) with header + block + 4. Only a member that fails it is
    decompressed, to tell stray bytes from further records in the same member.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = decompressor.decompress(data, _MAX_HEADER_BYTES)
    except zlib.error:
        return
    header_end = _header_end(head)
    if not head.startswith(b"WARC/") or header_end is None or len(data) < 18:
        return
    member_size = int.from_bytes(data[-4:], "little")
    if member_size - header_end - content_length - len(b"\r\n\r\n") <= 0:
        return

    try:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, _MAX_CHECKED_RECORD_BYTES)
    except zlib.error:
        return
    tail = member[header_end + content_length :]
    if len(member) < header_end + content_length or tail.lstrip(b"\r\n").startswith(b"WARC/"):
        return
    next_record = tail.find(b"WARC/")
    stray = (tail if next_record < 0 else tail[:next_record]).strip(b"\r\n")
    if not stray:
        return
    report.count("stray_bytes_after_record")
    report.warn(
        f"{path}@offset {start}: skipped {len(stray)} stray bytes in the gzip member at this offset, "
        f"after the block of its record (Content-Length {content_length})"
    )


def _header_end(data: bytes) -> int | None:
    """Return the offset just after the blank line that ends a WARC header, or None."""
    ends = [(data.find(marker), len(marker)) for marker in (b"\r\n\r\n", b"\n\n")]
    found = [position + length for position, length in ends if position >= 0]
    return min(found) if found else None
