"""Reporting of compressed-stream faults, shared by the line-based readers."""

from __future__ import annotations

from scanner.formats.compression import CorruptStreamError
from scanner.formats.lines import Line
from scanner.formats.report import ReadReport


def report_stream_error(report: ReadReport, line: Line, location: str) -> None:
    """Record a stream that ended early or became unreadable at `line`.

    Sets `report.truncated`, because the records after the fault are missing.
    The incomplete line is never counted as a document. It is skipped with
    reason "truncated_stream" when any of its bytes were read. A corrupt
    stream is always skipped with reason "corrupt_stream", because its
    undecodable bytes held at least part of a record.
    """
    assert line.error is not None
    report.truncated = True
    report.warn(f"{location}: {line.error}; the rest of the object was not read")
    if isinstance(line.error, CorruptStreamError):
        report.skip("corrupt_stream", location, str(line.error))
    elif line.size:
        report.skip("truncated_stream", location, str(line.error))
