"""Parquet reading: a generated web-text shard, real edge-case files, corrupt files."""

import datetime as dt
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches

PARQUET_TESTING = "apache-parquet-testing"


def read(path, options=None, **shard):
    report = ReadReport()
    batches = list(
        iter_record_batches(lambda: open(path, "rb"), str(path), options or ReadOptions(), report, **shard)
    )
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), report


@pytest.fixture
def web_shard(real_corpora, tmp_path):
    """A FineWeb-like shard (text, url, date) built from the C4 samples, in 3 row groups of 8 rows.

    Rows 3 and 17 have null text.
    """
    rows = []
    for name in ("c4-sample.02.json.gz", "c4-sample.03.json.gz"):
        with gzip.open(real_corpora / "allenai-olmo" / name, "rt", encoding="utf-8") as lines:
            rows.extend(json.loads(line) for line in lines if line.strip())
    rows.extend(rows[:4])
    texts = [None if index in (3, 17) else row["text"] for index, row in enumerate(rows)]
    table = pa.table({"text": texts, "url": [row["url"] for row in rows], "date": [row["date"] for row in rows]})
    path = tmp_path / "shard.parquet"
    pq.write_table(table, path, row_group_size=8)
    return path, texts


def test_parquet_web_shard_rows(web_shard):
    path, texts = web_shard
    table, report = read(path)

    assert table.num_rows == 22
    assert table.column("text").to_pylist() == [text for text in texts if text is not None]
    assert report.counters["null_text"] == 2
    assert report.skipped == {}


def test_parquet_record_is_absolute_row(web_shard):
    path, _ = web_shard
    table, _ = read(path)

    assert table.column("record").to_pylist() == [row for row in range(24) if row not in (3, 17)]


def test_parquet_url_and_date_columns(web_shard):
    path, _ = web_shard
    row = read(path)[0].to_pylist()[0]

    assert row["url"].startswith("http://www.hollistonreporter.com/")
    assert row["date"] == dt.datetime(2019, 4, 25, 10, 18, 53, tzinfo=dt.timezone.utc)


def test_parquet_row_group_shards_equal_whole(web_shard):
    path, _ = web_shard
    whole, whole_report = read(path)

    parts = [read(path, row_groups=(first, first + 1)) for first in range(3)]
    records = [record for table, _ in parts for record in table.column("record").to_pylist()]
    null_text = sum(report.counters.get("null_text", 0) for _, report in parts)

    assert records == whole.column("record").to_pylist()
    assert null_text == whole_report.counters["null_text"]


def test_parquet_row_group_range_starts_at_its_row(web_shard):
    path, _ = web_shard
    table, _ = read(path, row_groups=(1, 3))

    assert table.column("record")[0].as_py() == 8


def test_parquet_invalid_row_group_range(web_shard):
    path, _ = web_shard
    with pytest.raises(ValueError, match="row_groups"):
        read(path, row_groups=(2, 5))


def test_parquet_batches_follow_batch_bytes(tmp_path):
    path = tmp_path / "uniform.parquet"
    pq.write_table(pa.table({"text": [f"{index:04d}" + "x" * 996 for index in range(200)]}), path)
    report = ReadReport()
    options = ReadOptions(batch_bytes=20_000)
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), options, report))
    sizes = [sum(len(text) for text in batch.column("text").to_pylist()) for batch in batches]

    assert len(batches) >= 5
    assert max(sizes) <= 2 * options.batch_bytes
    assert all(batch.schema.equals(RECORD_SCHEMA) for batch in batches)


def test_parquet_missing_text_column_names_columns(web_shard):
    path, _ = web_shard
    with pytest.raises(ValueError, match="'body' not found") as error:
        read(path, ReadOptions(text_field="body"))

    assert "['text', 'url', 'date']" in str(error.value)


def test_parquet_missing_explicit_url_column(web_shard):
    path, _ = web_shard
    with pytest.raises(ValueError, match="'link' not found"):
        read(path, ReadOptions(url_field="link"))


def test_parquet_non_string_text_column(real_corpora):
    with pytest.raises(ValueError, match="type int32"):
        read(real_corpora / PARQUET_TESTING / "data/int32_with_null_pages.parquet", ReadOptions(text_field="int32_field"))


def test_parquet_timestamp_date_column(tmp_path):
    instant = dt.datetime(2024, 5, 31, 1, 16, 46, 500000)
    table = pa.table(
        {
            "text": ["a", "b"],
            "timestamp": pa.array([instant, None], type=pa.timestamp("us")),
        }
    )
    path = tmp_path / "dates.parquet"
    pq.write_table(table, path)
    dates = read(path)[0].column("date").to_pylist()

    assert dates == [dt.datetime(2024, 5, 31, 1, 16, 46, tzinfo=dt.timezone.utc), None]


def test_parquet_binary_text_invalid_utf8(tmp_path):
    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"text": pa.array([b"ok", b"caf\xe9"], type=pa.binary())}), path)
    table, report = read(path)

    assert table.column("text").to_pylist() == ["ok", "caf\ufffd"]
    assert report.counters["decode_replacements"] == 1


# Real edge-case files


def test_parquet_delta_byte_array_nulls(real_corpora):
    path = real_corpora / PARQUET_TESTING / "data/delta_byte_array.parquet"
    nulls = pq.read_table(path, columns=["c_salutation"]).column(0).null_count
    table, report = read(path, ReadOptions(text_field="c_salutation"))

    assert nulls > 0
    assert table.num_rows == 1000 - nulls
    assert report.counters["null_text"] == nulls


def test_parquet_hadoop_lz4_rows(real_corpora):
    table, report = read(real_corpora / PARQUET_TESTING / "data/hadoop_lz4_compressed_larger.parquet", ReadOptions(text_field="a"))

    assert table.num_rows == 10000
    assert report.skipped == {}


def test_parquet_binary_column_from_malformed_dictionary(real_corpora):
    table, _ = read(real_corpora / PARQUET_TESTING / "data/nation.dict-malformed.parquet", ReadOptions(text_field="name"))

    assert table.num_rows == 25


def test_parquet_corrupt_schema_skipped(real_corpora):
    path = real_corpora / PARQUET_TESTING / "bad_data/PARQUET-1481.parquet"
    table, report = read(path)

    assert table.num_rows == 0
    assert report.skipped == {"corrupt_parquet": 1}
    assert "Invalid physical column type" in report.samples[0]["detail"]


def test_parquet_corrupt_page_skipped(real_corpora):
    path = real_corpora / PARQUET_TESTING / "bad_data/ARROW-RS-GH-6229-DICTHEADER.parquet"
    table, report = read(path, ReadOptions(text_field="name"))

    assert table.num_rows == 0
    assert report.skipped == {"corrupt_parquet": 1}
    assert report.samples[0]["location"] == f"{path}#row group 0"
