"""Read Parquet files with pyarrow, one row group at a time, only the needed columns.

`record` is the absolute row index in the file, so row i keeps the same id
however the row groups are split between shards. Null text values are not
documents. They are counted in `counters["null_text"]` and not in
`skipped`, because a null is a valid Parquet value, not a malformed record.
Binary text columns are decoded as UTF-8 with U+FFFD replacement, and the
affected values are counted in `counters["decode_replacements"]`.

Each yielded batch contains at most `batch_bytes` of text, or one row when
that row alone is larger.

A file that pyarrow cannot open, or a row group it cannot decode, is skipped
with reason "corrupt_parquet" and the error message. The read then goes on
with the next row group. A text, URL or date column that does not exist, or
a text column that is not a string type, raises ValueError, because that is
a configuration error and no row of the file can be read.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scanner.formats.batches import RECORD_SCHEMA, parse_date
from scanner.formats.options import DEFAULT_DATE_FIELDS, DEFAULT_URL_FIELDS, ReadOptions
from scanner.formats.report import ReadReport

# Bounds on rows per batch when sizing batches from the row-group statistics.
MIN_BATCH_ROWS = 16
MAX_BATCH_ROWS = 1 << 16

_TIMESTAMP_TYPE = pa.timestamp("s", tz="UTC")


def read_parquet(
    raw: BinaryIO,
    path: str,
    options: ReadOptions,
    report: ReadReport,
    row_groups: tuple[int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield the documents of the row groups [first, stop) of one Parquet file (all when None)."""
    try:
        parquet_file = pq.ParquetFile(raw)
    except (pa.ArrowException, OSError) as error:
        report.skip("corrupt_parquet", path, f"cannot open the Parquet file: {error}")
        return

    names = parquet_file.schema_arrow.names
    text_column = _text_column(parquet_file, path, options.text_field)
    url_column = _optional_column(names, path, options.url_field, DEFAULT_URL_FIELDS, "url_field")
    date_column = _optional_column(names, path, options.date_field, DEFAULT_DATE_FIELDS, "date_field")
    columns = [name for name in (text_column, url_column, date_column) if name is not None]
    columns = list(dict.fromkeys(columns))

    metadata = parquet_file.metadata
    first, stop = _row_group_range(row_groups, metadata.num_row_groups, path)
    group_starts = [0, *accumulate(metadata.row_group(group).num_rows for group in range(metadata.num_row_groups))]

    for group in range(first, stop):
        row = group_starts[group]
        batch_rows = _batch_rows(metadata, group, text_column, options.batch_bytes)
        try:
            batches = parquet_file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=False)
            for batch in batches:
                converted = _convert(batch, row, text_column, url_column, date_column, report)
                row += batch.num_rows
                yield from split_by_text_bytes(converted, options.batch_bytes)
        except (pa.ArrowException, OSError) as error:
            report.skip("corrupt_parquet", f"{path}#row group {group}", f"rows from {row}: {error}")


def _text_column(parquet_file: pq.ParquetFile, path: str, name: str) -> str:
    schema = parquet_file.schema_arrow
    if name not in schema.names:
        raise ValueError(
            f"text column {name!r} not found in {path}; columns: {schema.names}. "
            "Set the text field to the column that holds the document text."
        )
    column_type = schema.field(name).type
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    if not _is_string_like(column_type):
        raise ValueError(
            f"text column {name!r} in {path} has type {column_type}, expected a string or binary column. "
            "Set the text field to the column that holds the document text."
        )
    return name


def _optional_column(
    names: list[str], path: str, requested: str | None, defaults: tuple[str, ...], option: str
) -> str | None:
    if requested is not None:
        if requested not in names:
            raise ValueError(f"{option} column {requested!r} not found in {path}; columns: {names}")
        return requested
    return next((name for name in defaults if name in names), None)


def _row_group_range(row_groups: tuple[int, int] | None, count: int, path: str) -> tuple[int, int]:
    if row_groups is None:
        return 0, count
    first, stop = row_groups
    if not 0 <= first <= stop <= count:
        raise ValueError(f"invalid row_groups {row_groups} for {path}, which has {count} row groups")
    return first, stop


def _batch_rows(metadata: pq.FileMetaData, group: int, text_column: str, batch_bytes: int) -> int:
    """Estimate the rows per batch that hold about `batch_bytes` of text, from the column statistics."""
    row_group = metadata.row_group(group)
    if row_group.num_rows == 0:
        return MIN_BATCH_ROWS
    text_bytes = 0
    for index in range(row_group.num_columns):
        chunk = row_group.column(index)
        if chunk.path_in_schema == text_column:
            text_bytes = chunk.total_uncompressed_size
    bytes_per_row = max(1, text_bytes // row_group.num_rows)
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, batch_bytes // bytes_per_row))


def split_by_text_bytes(batch: pa.RecordBatch, batch_bytes: int) -> Iterator[pa.RecordBatch]:
    """Yield zero-copy slices of `batch` with at most `batch_bytes` of text each.

    The rows per read come from the row group's average text size, so a run of
    rows far above the average could make one read many times `batch_bytes`.
    A single row larger than `batch_bytes` is yielded alone.
    """
    if batch.num_rows == 0:
        return
    offsets = np.frombuffer(batch.column(0).buffers()[1], dtype=np.int64)
    offsets = offsets[batch.column(0).offset : batch.column(0).offset + batch.num_rows + 1]
    if offsets[-1] - offsets[0] <= batch_bytes:
        yield batch
        return

    start = 0
    while start < batch.num_rows:
        # The first row past the budget that starts at this slice's first row, and at least one row.
        stop = int(np.searchsorted(offsets, offsets[start] + batch_bytes, side="right")) - 1
        stop = max(stop, start + 1)
        yield batch.slice(start, stop - start)
        start = stop


def _convert(
    batch: pa.RecordBatch,
    first_row: int,
    text_column: str,
    url_column: str | None,
    date_column: str | None,
    report: ReadReport,
) -> pa.RecordBatch:
    text = _as_large_string(batch.column(text_column), report)
    valid = pc.is_valid(text)
    null_count = len(text) - pc.sum(valid).as_py() if len(text) else 0
    if null_count:
        report.count("null_text", null_count)

    records = pa.array(range(first_row, first_row + batch.num_rows), type=pa.int64())
    url = _as_url(batch.column(url_column), report) if url_column else pa.nulls(batch.num_rows, pa.string())
    date = _as_timestamp(batch.column(date_column), report) if date_column else pa.nulls(batch.num_rows, _TIMESTAMP_TYPE)
    arrays = [text, url, date, records]
    if null_count:
        arrays = [pc.filter(array, valid) for array in arrays]
    return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def _is_string_like(column_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(column_type)
        or pa.types.is_large_string(column_type)
        or pa.types.is_binary(column_type)
        or pa.types.is_large_binary(column_type)
        or pa.types.is_string_view(column_type)
        or pa.types.is_binary_view(column_type)
    )


def _as_large_string(column: pa.Array, report: ReadReport) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
        return column.cast(pa.large_string())
    try:
        # Casting binary to a string type validates UTF-8.
        return column.cast(pa.large_string())
    except pa.ArrowInvalid:
        pass

    values = []
    for value in column.to_pylist():
        if value is None:
            values.append(None)
            continue
        try:
            values.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            report.count("decode_replacements")
            values.append(value.decode("utf-8", errors="replace"))
    return pa.array(values, type=pa.large_string())


def _as_url(column: pa.Array, report: ReadReport) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        report.warn(f"URL column of type {column.type} cannot be read as text; URLs are left empty")
        return pa.nulls(len(column), pa.string())


def _as_timestamp(column: pa.Array, report: ReadReport) -> pa.Array:
    column_type = column.type
    if pa.types.is_timestamp(column_type) or pa.types.is_date(column_type):
        # Arrow stores timestamps as UTC instants, so a cast only changes the unit and the label.
        return column.cast(_TIMESTAMP_TYPE, safe=False)
    if pa.types.is_dictionary(column_type):
        column = column.dictionary_decode()
    if _is_string_like(column.type) or pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        raw_values = [value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value for value in column.to_pylist()]
        values = [parse_date(value) for value in raw_values]
        invalid = sum(1 for value, parsed in zip(raw_values, values) if value is not None and parsed is None)
        if invalid:
            report.count("invalid_dates", invalid)
        return pa.array(values, type=pa.int64()).cast(_TIMESTAMP_TYPE)
    report.warn(f"date column of type {column_type} cannot be read as a date; dates are left empty")
    return pa.nulls(len(column), _TIMESTAMP_TYPE)
