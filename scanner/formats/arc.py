"""Read ARC files (the Internet Archive format before WARC), version 1 and 2.

FastWARC 2.0 rejects ARC input, so this module parses it. Each record is one
header line and a body of the declared length:

    v1: URL IP-address Archive-date Content-type Archive-length
    v2: URL IP-address Archive-date Content-type Result-code Checksum Location Offset Filename Archive-length

The first record (`filedesc://...`) describes the file, and the first word of
its body is the version. Fields are split from the right, because URLs may
contain spaces. Blank lines between records are optional. The archive date
is read from its first 14 digits (YYYYMMDDhhmmss).

Records of http(s) URLs hold a full HTTP response and go through the same
decoding as WARC responses. Other records are decoded by their Content-type,
and dns: and filedesc records are counted in `counters["non_document_records"]`.

Malformed input: a header whose length is not a non-negative integer is
skipped with reason "invalid_arc_length", and a line that is not a header is
skipped with reason "invalid_arc_header". In both cases the reader then
discards lines until the next line that parses as a header. A body shorter
than its declared length sets `report.truncated` and is skipped with reason
"truncated_record". `record` numbers the header lines in file order from 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from scanner.formats.batches import BatchBuilder, parse_date
from scanner.formats.compression import CorruptStreamError, StreamError
from scanner.formats.options import ReadOptions
from scanner.formats.payload import content_text, response_text
from scanner.formats.report import ReadReport

# Header lines longer than this are not headers (a real one is well under 1 KiB plus the URL).
MAX_HEADER_BYTES = 16 << 10

_ARCHIVE_DATE = re.compile(rb"^\d{14}\d*$")


@dataclass(frozen=True)
class ArcHeader:
    url: str
    archive_date: bytes
    content_type: str
    length_field: bytes


def read_arc(chunks: Iterator[bytes], path: str, options: ReadOptions, report: ReadReport) -> Iterator[pa.RecordBatch]:
    """Yield the documents of one ARC object from its decompressed chunks."""
    reader = _ChunkReader(chunks)
    builder = BatchBuilder(options.batch_bytes)
    version = 1
    index = 0
    resyncing = False
    record_cut = False

    while True:
        offset = reader.offset
        line = reader.readline(MAX_HEADER_BYTES)
        if not line:
            break
        if not line.strip():
            continue
        location = f"{path}#record {index} (offset {offset})"

        header = parse_arc_header(line, version)
        if header is None:
            if not resyncing:
                report.skip("invalid_arc_header", location, f"not an ARC header line: {line[:80]!r}")
                resyncing = True
            continue
        resyncing = False
        record = index
        index += 1

        length = _parse_length(header.length_field)
        if length is None:
            report.skip("invalid_arc_length", location, f"invalid Archive-length {header.length_field[:40]!r}")
            resyncing = True
            continue
        if length > options.max_record_bytes:
            report.skip("record_too_large", location, f"Archive-length {length} > max_record_bytes {options.max_record_bytes}")
            reader.discard(length)
            continue

        body = reader.read(length)
        if len(body) < length:
            report.truncated = True
            report.skip("truncated_record", location, f"read {len(body)} of {length} bytes (Archive-length)")
            record_cut = True
            break

        if header.url.startswith("filedesc://"):
            version = _file_version(body)
            report.count("non_document_records")
            continue
        text = _record_text(header, body, location, report)
        if text is not None:
            batch = builder.add(text, header.url, parse_date(header.archive_date.decode("ascii")), record)
            if batch is not None:
                yield batch

    if reader.error is not None:
        report.truncated = True
        report.warn(f"{path}: {reader.error}; the rest of the file was not read")
        if not record_cut:
            reason = "corrupt_stream" if isinstance(reader.error, CorruptStreamError) else "truncated_stream"
            report.skip(reason, f"{path}@offset {reader.offset}", str(reader.error))
    yield from builder.drain()


def parse_arc_header(line: bytes, version: int) -> ArcHeader | None:
    """Parse one ARC header line, or return None when it is not one."""
    fields = line.rstrip(b"\r\n").rsplit(b" ", 9 if version == 2 else 4)
    if len(fields) != (10 if version == 2 else 5):
        return None
    url, _ip, archive_date, content_type = fields[0], fields[1], fields[2], fields[3]
    if not url or not _ARCHIVE_DATE.match(archive_date):
        return None
    return ArcHeader(
        url=url.decode("utf-8", errors="replace"),
        archive_date=archive_date,
        content_type=content_type.decode("latin-1"),
        length_field=fields[-1],
    )


def _parse_length(field: bytes) -> int | None:
    if not field.isdigit():
        return None
    return int(field)


def _file_version(body: bytes) -> int:
    first_word = body.split(None, 1)[:1]
    return 2 if first_word == [b"2"] else 1


def _record_text(header: ArcHeader, body: bytes, location: str, report: ReadReport) -> str | None:
    scheme = header.url.split(":", 1)[0].lower()
    if scheme == "dns":
        report.count("non_document_records")
        return None
    if scheme in ("http", "https"):
        return response_text(body, report, location)
    return content_text(body, header.content_type, report)


class _ChunkReader:
    """Line and block reads over an iterator of byte chunks, tracking the stream offset.

    A StreamError from the chunks ends the data, and is kept in `error`.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._position = 0
        self._exhausted = False
        self.offset = 0
        self.error: StreamError | None = None

    def _fill(self) -> bool:
        """Append the next chunk to the buffer. Return False at the end of the data."""
        if self._exhausted:
            return False
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._exhausted = True
            return False
        except StreamError as error:
            self.error = error
            self._exhausted = True
            return False
        self._buffer = self._buffer[self._position :] + chunk
        self._position = 0
        return True

    def readline(self, limit: int) -> bytes:
        """Return the next line with its b"\\n", at most `limit` bytes, or b"" at the end."""
        while True:
            newline = self._buffer.find(b"\n", self._position, self._position + limit)
            available = len(self._buffer) - self._position
            if newline >= 0 or available >= limit or not self._fill():
                break
        end = newline + 1 if newline >= 0 else self._position + min(limit, len(self._buffer) - self._position)
        return self._take(end - self._position)

    def read(self, size: int) -> bytes:
        """Return the next `size` bytes, or fewer at the end of the data."""
        pieces = []
        remaining = size
        while remaining > 0:
            if len(self._buffer) == self._position and not self._fill():
                break
            piece = self._take(min(remaining, len(self._buffer) - self._position))
            pieces.append(piece)
            remaining -= len(piece)
        return b"".join(pieces)

    def discard(self, size: int) -> None:
        """Skip `size` bytes without keeping them in memory."""
        remaining = size
        while remaining > 0:
            step = min(remaining, 1 << 20)
            taken = len(self.read(step))
            if taken == 0:
                return
            remaining -= taken

    def _take(self, size: int) -> bytes:
        data = self._buffer[self._position : self._position + size]
        self._position += size
        self.offset += size
        return data
