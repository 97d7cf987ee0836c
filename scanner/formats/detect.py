"""Detect the record format and compression of an object from its first bytes.

Content decides and the file name is only a hint: magic bytes give the
compression, and the decompressed head gives the record format. The name
decides only between JSONL and plain text, which the content cannot always
tell apart, and only when the content shows no stronger signal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, get_args

from scanner.formats.compression import (
    COMPRESSION_EXTENSIONS,
    Compression,
    decompress_head,
    sniff_compression,
)

RecordFormat = Literal["jsonl", "parquet", "warc", "wet", "arc", "text"]
RECORD_FORMATS: tuple[str, ...] = get_args(RecordFormat)

# Raw bytes from the start of an object that `detect_format` inspects. Callers may pass more.
HEAD_BYTES = 64 << 10

_FORMAT_EXTENSIONS: dict[str, RecordFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".warc": "warc",
    ".wat": "warc",
    ".wet": "wet",
    ".arc": "arc",
    ".txt": "text",
    ".text": "text",
}

_UTF8_BOM = b"\xef\xbb\xbf"

# ARC v1 header line: URL IP-address 14-digit-date MIME-type length.
_ARC_HEADER = re.compile(rb"^\S+ \S+ \d{14}\d* \S+ -?\w+\r?\n")


@dataclass(frozen=True)
class DetectedFormat:
    """Record format and compression of one object, with notes on mismatches."""

    format: RecordFormat
    compression: Compression
    warnings: tuple[str, ...] = ()


def detect_format(head: bytes, path: str, declared: str = "auto") -> DetectedFormat:
    """Detect the format of an object from its first bytes and its name.

    `head` is the start of the raw (still compressed) object, and HEAD_BYTES of it are enough.
    `declared` other than "auto" forces the record format, but the compression
    is still detected from the content. Raises ValueError for an unknown
    `declared` value.
    """
    if declared != "auto" and declared not in RECORD_FORMATS:
        raise ValueError(
            f"invalid format {declared!r}: use one of auto, {', '.join(RECORD_FORMATS)}"
        )

    warnings: list[str] = []
    name_compression, name_format = _hints_from_name(path)
    compression = sniff_compression(head)
    if name_compression is not None and compression != name_compression:
        actual = compression or "uncompressed"
        warnings.append(f"{name_compression} file name but the content is {actual}; reading it as {actual}")

    payload, payload_warning = decompress_head(head[:HEAD_BYTES], compression)
    if payload_warning:
        warnings.append(payload_warning)

    if declared != "auto":
        return DetectedFormat(format=declared, compression=compression, warnings=tuple(warnings))  # type: ignore[arg-type]

    record_format = _format_from_content(payload, path, name_format)
    if name_format is not None and not _formats_agree(name_format, record_format):
        warnings.append(f"{name_format} file name but the content is {record_format}; reading it as {record_format}")
    return DetectedFormat(format=record_format, compression=compression, warnings=tuple(warnings))


def _hints_from_name(path: str) -> tuple[Compression, RecordFormat | None]:
    """Return the compression and record format that the file name suggests."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    compression: Compression = None
    for extension, codec in COMPRESSION_EXTENSIONS.items():
        if name.endswith(extension):
            compression = codec
            name = name[: -len(extension)]
            break

    for extension, record_format in _FORMAT_EXTENSIONS.items():
        if name.endswith(extension):
            return compression, record_format
    return compression, None


def _format_from_content(payload: bytes, path: str, name_format: RecordFormat | None) -> RecordFormat:
    if payload.startswith(b"PAR1"):
        return "parquet"

    text_start = payload[len(_UTF8_BOM) :] if payload.startswith(_UTF8_BOM) else payload
    if text_start.startswith(b"WARC/"):
        return "wet" if _looks_like_wet(text_start, path) else "warc"
    if text_start.startswith(b"filedesc://") or _ARC_HEADER.match(text_start):
        return "arc"

    # JSONL and plain text look alike: a known name decides between them.
    if name_format in ("jsonl", "text"):
        return name_format
    if _looks_like_jsonl(text_start):
        return "jsonl"
    if not payload and name_format is not None:
        return name_format
    return "text"


def _looks_like_wet(payload: bytes, path: str) -> bool:
    if b"WARC-Type: conversion" in payload:
        return True
    warcinfo_filename = re.search(rb"WARC-Filename: *(\S+)", payload)
    if warcinfo_filename and b".wet" in warcinfo_filename.group(1).lower():
        return True
    return ".wet" in path.rsplit("/", 1)[-1].lower()


def _looks_like_jsonl(payload: bytes) -> bool:
    """Return True when the first non-blank line is a JSON object (or starts one)."""
    stripped = payload.lstrip()
    if not stripped.startswith(b"{"):
        return False
    first_line, newline, _ = stripped.partition(b"\n")
    if not newline:
        # The head ends inside the first line, so its opening brace is the only evidence.
        return True
    try:
        return isinstance(json.loads(first_line), dict)
    except ValueError:
        return False


def _formats_agree(name_format: RecordFormat, content_format: RecordFormat) -> bool:
    # A ".warc" name on a WET file (as in "x.warc.wet") is not a mismatch.
    web_archive = {"warc", "wet"}
    return name_format == content_format or {name_format, content_format} <= web_archive
