"""Read plain text: one document per object, or one per line with `lines_as_documents`.

Text is decoded as UTF-8 with U+FFFD replacement, and the documents affected
are counted in `counters["decode_replacements"]`. A UTF-8 BOM at the start of
the object is removed. `record` is the byte offset of the document start in
the decompressed stream, which is 0 for a whole-object document.

Per line, blank lines are not documents (counted in `counters["blank_lines"]`)
and one trailing b"\\r" is removed. A whole-object document is kept even when
it is empty. A document larger than `max_record_bytes` is skipped with reason
"record_too_large". A whole object with more than 8 NUL bytes in its first
8 KiB is not text (an archive, an image): it is skipped with reason
"binary_content".
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from scanner.formats.batches import BatchBuilder
from scanner.formats.compression import StreamError
from scanner.formats.jsonl import line_location
from scanner.formats.lines import Line
from scanner.formats.options import ReadOptions
from scanner.formats.report import ReadReport
from scanner.formats.streams import report_stream_error

_UTF8_BOM = b"\xef\xbb\xbf"
_BINARY_PROBE_BYTES = 8192
_BINARY_NUL_BYTES = 8


def read_text_lines(
    lines: Iterator[Line], path: str, options: ReadOptions, report: ReadReport
) -> Iterator[pa.RecordBatch]:
    """Yield one document per non-blank line."""
    builder = BatchBuilder(options.batch_bytes)
    for line in lines:
        location = line_location(path, line)
        if line.error is not None:
            report_stream_error(report, line, location)
            break
        if line.data is None:
            report.skip("record_too_large", location, f"{line.size} bytes > max_record_bytes {options.max_record_bytes}")
            continue

        data = line.data[:-1] if line.data.endswith(b"\r") else line.data
        if line.offset == 0 and data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM) :]
        if not data.strip():
            report.count("blank_lines")
            continue
        batch = builder.add(decode_utf8(data, report), None, None, line.offset)
        if batch is not None:
            yield batch
    yield from builder.drain()


def read_text_document(
    chunks: Iterator[bytes], path: str, options: ReadOptions, report: ReadReport
) -> Iterator[pa.RecordBatch]:
    """Yield the whole decompressed object as one document, byte for byte."""
    pieces: list[bytes] = []
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > options.max_record_bytes:
                report.skip("record_too_large", f"{path}@offset 0", f"more than max_record_bytes {options.max_record_bytes}")
                return
            pieces.append(chunk)
    except StreamError as error:
        partial = Line(offset=0, number=1, size=size, data=None, error=error)
        report_stream_error(report, partial, f"{path}@offset 0")
        return

    data = b"".join(pieces)
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if data[:_BINARY_PROBE_BYTES].count(b"\x00") > _BINARY_NUL_BYTES:
        # Text has no NUL bytes, or one in a test file; archives, images and executables have many.
        report.skip("binary_content", f"{path}@offset 0", "NUL bytes near the start: the object is not text")
        return
    builder = BatchBuilder(options.batch_bytes)
    builder.add(decode_utf8(data, report), None, None, 0)
    yield from builder.drain()


def decode_utf8(data: bytes, report: ReadReport) -> str:
    """Decode UTF-8, replacing invalid bytes with U+FFFD and counting the affected documents."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        report.count("decode_replacements")
        return data.decode("utf-8", errors="replace")
