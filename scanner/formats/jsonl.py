"""Read JSON Lines: one JSON object per line, the document text in one field.

Record ids: `record` is the byte offset of the line start in the
decompressed stream, not the line number. A shard that starts inside an
uncompressed file cannot count the lines before it without reading them,
but its byte offsets are exact. Whole files use the offset too, so a document keeps the same
`record` however the file is sharded. Skip locations give the 1-based line
number when the read began at the start of the file, else the byte offset.

Per-line policy:
- a UTF-8 BOM at the start of the file is removed;
- blank or whitespace-only lines are not records: counted in `counters["blank_lines"]`;
- invalid UTF-8 is decoded with U+FFFD replacement, and the lines affected
  are counted in `counters["decode_replacements"]`;
- lines that are not valid JSON are skipped with reason "invalid_json". This
  includes nesting too deep for Python's parser;
- bare NaN, Infinity and -Infinity are accepted as Python's `json` accepts
  them. Each such line is counted in `counters["nonstandard_json_constants"]`
  and named in a warning with its line number;
- a value that is not an object is skipped with reason "not_an_object";
- a missing text field, a JSON null and a non-string value are skipped with
  reasons "missing_text_field", "null_text" and "non_string_text";
- duplicate keys keep the last value, as Python's `json` does;
- unpaired surrogate escapes ("\\ud800") become U+FFFD, counted in
  `counters["lone_surrogates"]`, because Arrow strings must be valid UTF-8;
- a line longer than `max_record_bytes` is skipped with reason "record_too_large";
- a stream that ends inside a compressed member stops the read:
  `report.truncated` is set and the incomplete last line is skipped with
  reason "truncated_stream". A corrupt compressed stream does the same with
  reason "corrupt_stream".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from scanner.formats.batches import BatchBuilder, parse_date, replace_lone_surrogates
from scanner.formats.lines import Line
from scanner.formats.options import DEFAULT_DATE_FIELDS, DEFAULT_URL_FIELDS, ReadOptions
from scanner.formats.report import ReadReport
from scanner.formats.streams import report_stream_error

_UTF8_BOM = b"\xef\xbb\xbf"
_MISSING = object()


def read_jsonl_lines(
    lines: Iterator[Line], path: str, options: ReadOptions, report: ReadReport
) -> Iterator[pa.RecordBatch]:
    """Turn the lines of one JSONL object (or byte range) into record batches."""
    builder = BatchBuilder(options.batch_bytes)
    decoder = _LineDecoder()
    for line in lines:
        location = line_location(path, line)
        if line.error is not None:
            report_stream_error(report, line, location)
            break
        if line.data is None:
            report.skip("record_too_large", location, f"{line.size} bytes > max_record_bytes {options.max_record_bytes}")
            continue

        parsed = _parse_line(line, location, options, report, decoder)
        if parsed is None:
            continue
        batch = builder.add(*parsed, record=line.offset)
        if batch is not None:
            yield batch
    yield from builder.drain()


def line_location(path: str, line: Line) -> str:
    """Return "path:line N" when the line number is known, else "path@offset N"."""
    if line.number is not None:
        return f"{path}:line {line.number}"
    return f"{path}@offset {line.offset}"


def _parse_line(
    line: Line, location: str, options: ReadOptions, report: ReadReport, decoder: _LineDecoder
) -> tuple[str, str | None, int | None] | None:
    """Return (text, url, date) for one line, or None after counting why it is not a record."""
    data = line.data
    assert data is not None
    if line.offset == 0 and data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if not data or data.isspace():
        report.count("blank_lines")
        return None

    obj = decoder.decode(data, location, report)
    if obj is _MISSING:
        return None
    if not isinstance(obj, dict):
        report.skip("not_an_object", location, f"JSON {type(obj).__name__} instead of an object")
        return None

    text = _lookup(obj, options.text_field)
    if text is _MISSING:
        report.skip("missing_text_field", location, f"no {options.text_field!r} key; keys: {sorted(obj)[:20]}")
        return None
    if text is None:
        report.skip("null_text", location, f"{options.text_field!r} is null")
        return None
    if not isinstance(text, str):
        report.skip("non_string_text", location, f"{options.text_field!r} is a JSON {type(text).__name__}")
        return None

    url = _field_value(obj, options.url_field, DEFAULT_URL_FIELDS)
    url = url if isinstance(url, str) else None
    date = _date_value(obj, options.date_field, report)
    if b"\\u" in data:
        text, replaced = replace_lone_surrogates(text)
        if url is not None:
            url, replaced_in_url = replace_lone_surrogates(url)
            replaced += replaced_in_url
        if replaced:
            report.count("lone_surrogates")
    return text, url, date


class _LineDecoder:
    """One JSON decoder for all lines of a read: building a decoder per line cost
    about as much as parsing a 2 KB line."""

    def __init__(self) -> None:
        self._constants: list[str] = []
        self._decoder = json.JSONDecoder(parse_constant=self._accept_constant)

    def _accept_constant(self, name: str) -> float:
        self._constants.append(name)
        return float(name)

    def decode(self, data: bytes, location: str, report: ReadReport) -> Any:
        """Parse one line, or return _MISSING after recording why it is not JSON."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            report.count("decode_replacements")

        self._constants.clear()
        try:
            obj = self._decoder.decode(text)
        except RecursionError:
            report.skip("invalid_json", location, "nesting is too deep to parse")
            return _MISSING
        except ValueError as error:
            report.skip("invalid_json", location, str(error))
            return _MISSING

        if self._constants:
            report.count("nonstandard_json_constants")
            report.warn(f"{location}: accepted non-standard JSON constant {self._constants[0]}")
        return obj


def _lookup(obj: dict[str, Any], field: str) -> Any:
    """Return obj[field], or follow a dotted name ("meta.text") into nested objects."""
    value = obj.get(field, _MISSING)
    if value is not _MISSING or "." not in field:
        return value
    current: Any = obj
    for part in field.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _field_value(obj: dict[str, Any], field: str | None, defaults: tuple[str, ...]) -> Any:
    if field is not None:
        value = _lookup(obj, field)
        return None if value is _MISSING else value
    for name in defaults:
        if name in obj:
            return obj[name]
    return None


def _date_value(obj: dict[str, Any], field: str | None, report: ReadReport) -> int | None:
    value = _field_value(obj, field, DEFAULT_DATE_FIELDS)
    if value is None:
        return None
    date = parse_date(value)
    if date is None:
        report.count("invalid_dates")
    return date
