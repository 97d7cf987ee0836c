"""JSONL reading: real Dolma and C4 shards, compression, malformed lines, byte ranges."""

import bz2
import gzip
import json
import lzma
import random

import lz4.frame
import pyarrow as pa
import pytest
import zstandard

from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches

DOLMA_GZ = "allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
DOLMA_MISNAMED_ZST = "allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.zst"


def read(path, options=None, **shard):
    """Read one file completely; return the records as a table and the report."""
    report = ReadReport()
    batches = list(
        iter_record_batches(lambda: open(path, "rb"), str(path), options or ReadOptions(), report, **shard)
    )
    table = pa.Table.from_batches(batches, schema=RECORD_SCHEMA)
    return table, report


def write_lines(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join(lines))
    return path


def json_line(text, **fields):
    return (json.dumps({"text": text, **fields}) + "\n").encode()


# Real files


def test_jsonl_dolma_gzip_count(real_corpora):
    table, report = read(real_corpora / DOLMA_GZ)

    assert table.num_rows == 697
    assert report.skipped == {}
    assert report.truncated is False


def test_jsonl_dolma_empty_texts_are_documents(real_corpora):
    table, _ = read(real_corpora / DOLMA_GZ)
    empty = sum(1 for text in table.column("text").to_pylist() if text == "")

    assert empty == 27


def test_jsonl_misnamed_zst_read_as_plain(real_corpora):
    table, report = read(real_corpora / DOLMA_MISNAMED_ZST)

    assert table.num_rows == 697
    assert report.skipped == {}
    assert any("zstd" in warning for warning in report.warnings)


def test_jsonl_misnamed_zst_same_texts_as_gzip(real_corpora):
    gzip_table, _ = read(real_corpora / DOLMA_GZ)
    plain_table, _ = read(real_corpora / DOLMA_MISNAMED_ZST)

    assert plain_table.column("text").to_pylist() == gzip_table.column("text").to_pylist()


def test_jsonl_dolma_created_field_is_date(real_corpora):
    table, _ = read(real_corpora / DOLMA_GZ)

    assert table.column("date").null_count == 0
    assert str(table.column("date")[0].as_py().year) == "2019"


@pytest.mark.parametrize(
    ("relative_path", "documents"),
    [
        ("allenai-dolma/cc_en_head-0091.jsonl.gz", 10),
        ("allenai-dolma/cc_en_head-0174.jsonl.gz", 10),
        ("allenai-olmo/c4-sample.02.json.gz", 10),
        ("allenai-olmo/c4-sample.03.json.gz", 10),
        ("allenai-olmo/c4_100_domains_5_www.theguardian.com_00000000.jsonl.gz", 10),
    ],
)
def test_jsonl_real_document_counts(real_corpora, relative_path, documents):
    table, report = read(real_corpora / relative_path)

    assert table.num_rows == documents
    assert report.skipped == {}


def test_jsonl_c4_url_and_date(real_corpora):
    table, _ = read(real_corpora / "allenai-olmo/c4-sample.02.json.gz")
    first = table.slice(0, 1).to_pylist()[0]

    assert first["url"].startswith("http://www.hollistonreporter.com/")
    assert first["date"].isoformat() == "2019-04-25T10:18:53+00:00"


def test_jsonl_zstd_without_text_field(real_corpora):
    table, report = read(real_corpora / "allenai-dolma/test.jsonl.zst")

    assert table.num_rows == 0
    assert report.skipped == {"missing_text_field": 1}


def test_jsonl_blns_list_text_is_skipped(real_corpora):
    path = real_corpora / "eleutherai-lm_dataformat/blns-1.jsonl.zst"
    table, report = read(path)

    assert table.num_rows == 3
    assert report.skipped == {"non_string_text": 1}
    assert report.samples[0]["location"] == f"{path}:line 2"


def test_jsonl_schema_exact(real_corpora):
    report = ReadReport()
    path = real_corpora / "allenai-olmo/c4-sample.02.json.gz"
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), ReadOptions(), report))

    assert all(batch.schema.equals(RECORD_SCHEMA) for batch in batches)


def test_jsonl_batches_follow_batch_bytes(real_corpora):
    report = ReadReport()
    path = real_corpora / DOLMA_GZ
    options = ReadOptions(batch_bytes=200_000)
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), options, report))
    sizes = [sum(len(text.encode()) for text in batch.column("text").to_pylist()) for batch in batches]
    longest_line = 144_424

    assert len(batches) > 5
    assert all(size >= 200_000 for size in sizes[:-1])
    assert all(size < 200_000 + longest_line for size in sizes)


def test_jsonl_record_is_line_byte_offset(tmp_path):
    lines = [json_line("a"), b"\n", json_line("bb"), json_line("ccc")]
    table, _ = read(write_lines(tmp_path, lines))

    expected = [0, len(lines[0]) + len(lines[1]), len(lines[0]) + len(lines[1]) + len(lines[2])]
    assert table.column("record").to_pylist() == expected


# Line policy


def test_jsonl_bom_stripped(tmp_path):
    path = write_lines(tmp_path, [b"\xef\xbb\xbf" + json_line("first"), json_line("second")])
    table, report = read(path)

    assert table.column("text").to_pylist() == ["first", "second"]
    assert report.skipped == {}


def test_jsonl_blank_lines_counted_not_skipped(tmp_path):
    path = write_lines(tmp_path, [json_line("a"), b"\n", b"   \n", b"\t\r\n", json_line("b")])
    table, report = read(path)

    assert table.num_rows == 2
    assert report.counters["blank_lines"] == 3
    assert report.skipped == {}


def test_jsonl_nan_accepted_and_counted(tmp_path):
    path = write_lines(
        tmp_path,
        [b'{"text": "a", "score": NaN}\n', json_line("b"), b'{"text": "c", "score": -Infinity}\n'],
    )
    table, report = read(path)

    assert table.column("text").to_pylist() == ["a", "b", "c"]
    assert report.counters["nonstandard_json_constants"] == 2
    assert any(f"{path}:line 1" in warning for warning in report.warnings)
    assert any(f"{path}:line 3" in warning for warning in report.warnings)


def test_jsonl_nan_text_is_non_string(tmp_path):
    table, report = read(write_lines(tmp_path, [b'{"text": NaN}\n']))

    assert table.num_rows == 0
    assert report.skipped == {"non_string_text": 1}


def test_jsonl_skip_reasons_with_line_numbers(tmp_path):
    path = write_lines(
        tmp_path,
        [
            json_line("ok"),
            b'{"text": "unterminated}\n',
            b"[1, 2]\n",
            b'{"text": null}\n',
            b'{"body": "no text key"}\n',
            b'{"text": 5}\n',
            json_line("ok again"),
        ],
    )
    table, report = read(path)
    locations = {sample["reason"]: sample["location"] for sample in report.samples}

    assert table.column("text").to_pylist() == ["ok", "ok again"]
    assert locations["invalid_json"] == f"{path}:line 2"
    assert locations["not_an_object"] == f"{path}:line 3"
    assert locations["null_text"] == f"{path}:line 4"
    assert locations["missing_text_field"] == f"{path}:line 5"
    assert locations["non_string_text"] == f"{path}:line 6"


def test_jsonl_invalid_utf8_replaced_and_counted(tmp_path):
    path = write_lines(tmp_path, [b'{"text": "caf\xe9 ok"}\n', json_line("clean")])
    table, report = read(path)

    assert table.column("text").to_pylist() == ["caf\ufffd ok", "clean"]
    assert report.counters["decode_replacements"] == 1


def test_jsonl_oversized_line_skipped(tmp_path):
    path = write_lines(tmp_path, [json_line("small"), json_line("x" * 5000), json_line("after")])
    table, report = read(path, ReadOptions(max_record_bytes=1000))

    assert table.column("text").to_pylist() == ["small", "after"]
    assert report.skipped == {"record_too_large": 1}
    assert report.samples[0]["location"] == f"{path}:line 2"


def test_jsonl_last_line_without_newline(tmp_path):
    path = write_lines(tmp_path, [json_line("a"), b'{"text": "last"}'])
    table, _ = read(path)

    assert table.column("text").to_pylist() == ["a", "last"]


def test_jsonl_crlf_line_ends(tmp_path):
    path = write_lines(tmp_path, [b'{"text": "a"}\r\n', b'{"text": "b"}\r\n'])
    table, report = read(path)

    assert table.column("text").to_pylist() == ["a", "b"]
    assert report.skipped == {}


def test_jsonl_dotted_text_field(tmp_path):
    path = write_lines(tmp_path, [b'{"meta": {"body": "nested"}}\n'])
    table, _ = read(path, ReadOptions(text_field="meta.body"))

    assert table.column("text").to_pylist() == ["nested"]


def test_jsonl_explicit_url_and_date_fields(tmp_path):
    path = write_lines(tmp_path, [json_line("a", link="http://x.example/", fetched=1_600_000_000)])
    table, _ = read(path, ReadOptions(url_field="link", date_field="fetched"))
    row = table.to_pylist()[0]

    assert row["url"] == "http://x.example/"
    assert row["date"].isoformat() == "2020-09-13T12:26:40+00:00"


def test_jsonl_declared_text_format_reads_whole_file(real_corpora):
    table, _ = read(real_corpora / "allenai-olmo/c4-sample.02.json.gz", ReadOptions(format="text"))

    assert table.num_rows == 1


# JSON edge cases from JSONTestSuite, each wrapped as the text value of one line


def wrap_string_case(real_corpora, tmp_path, name):
    """Turn a JSONTestSuite file holding `["..."]` into the JSONL line `{"text": "..."}`."""
    content = (real_corpora / "nst-jsontestsuite" / name).read_bytes().strip()
    assert content.startswith(b"[")
    assert content.endswith(b"]")
    return write_lines(tmp_path, [b'{"text": ' + content[1:-1] + b"}\n"], name=name + "l")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("y_string_accepted_surrogate_pairs.json", "\U0001f639\U0001f48d"),
        ("y_string_null_escape.json", "\u0000"),
        ("y_string_u+2028_line_sep.json", "\u2028"),
        ("y_string_u+2029_par_sep.json", "\u2029"),
        ("y_string_nonCharacterInUTF-8_U+FFFF.json", "\uffff"),
    ],
)
def test_jsonl_valid_string_cases(real_corpora, tmp_path, name, expected):
    table, report = read(wrap_string_case(real_corpora, tmp_path, name))

    assert table.column("text").to_pylist() == [expected]
    assert report.skipped == {}


@pytest.mark.parametrize(
    "name", ["i_string_1st_surrogate_but_2nd_missing.json", "i_string_invalid_lonely_surrogate.json"]
)
def test_jsonl_lone_surrogate_replaced(real_corpora, tmp_path, name):
    table, report = read(wrap_string_case(real_corpora, tmp_path, name))

    assert table.num_rows == 1
    assert "\ufffd" in table.column("text")[0].as_py()
    assert report.counters["lone_surrogates"] == 1


@pytest.mark.parametrize(
    "name",
    [
        "i_string_invalid_utf-8.json",
        "i_string_truncated-utf-8.json",
        "i_string_lone_utf8_continuation_byte.json",
        "i_string_overlong_sequence_2_bytes.json",
    ],
)
def test_jsonl_invalid_utf8_string_cases(real_corpora, tmp_path, name):
    table, report = read(wrap_string_case(real_corpora, tmp_path, name))

    assert table.num_rows == 1
    assert "\ufffd" in table.column("text")[0].as_py()
    assert report.counters["decode_replacements"] == 1


@pytest.mark.parametrize(
    "name",
    [
        "n_object_trailing_comma.json",
        "n_structure_100000_opening_arrays.json",
        "n_structure_incomplete_UTF8_BOM.json",
        "i_string_UTF-16LE_with_BOM.json",
        "i_string_utf16LE_no_BOM.json",
    ],
)
def test_jsonl_rejected_documents_are_invalid_json(real_corpora, name):
    table, report = read(real_corpora / "nst-jsontestsuite" / name)

    assert table.num_rows == 0
    assert report.skipped == {"invalid_json": 1}


def test_jsonl_unescaped_newline_splits_record(real_corpora):
    _, report = read(real_corpora / "nst-jsontestsuite/n_string_unescaped_newline.json")

    assert report.skipped == {"invalid_json": 2}


def test_jsonl_bom_only_file_is_blank(real_corpora):
    table, report = read(real_corpora / "nst-jsontestsuite/n_structure_UTF8_BOM_no_data.json", ReadOptions(format="jsonl"))

    assert table.num_rows == 0
    assert report.skipped == {}
    assert report.counters["blank_lines"] == 1


def test_jsonl_bom_before_object_is_parsed(real_corpora):
    _, report = read(real_corpora / "nst-jsontestsuite/i_structure_UTF-8_BOM_empty_object.json")

    assert report.skipped == {"missing_text_field": 1}


def test_jsonl_duplicate_key_last_value_wins(tmp_path):
    table, _ = read(write_lines(tmp_path, [b'{"text": "first", "text": "second"}\n']))

    assert table.column("text").to_pylist() == ["second"]


@pytest.mark.parametrize("name", ["i_number_huge_exp.json", "i_number_too_big_pos_int.json"])
def test_jsonl_huge_numbers_do_not_break_line(real_corpora, tmp_path, name):
    number = (real_corpora / "nst-jsontestsuite" / name).read_bytes().strip()[1:-1]
    table, report = read(write_lines(tmp_path, [b'{"text": "t", "n": ' + number + b"}\n"]))

    assert table.column("text").to_pylist() == ["t"]
    assert report.skipped == {}


# Compression


def sample_lines(count=300):
    """Lines of random hexadecimal words, which compress poorly, so a cut stream keeps many lines."""
    rng = random.Random(7)
    lines = []
    for index in range(count):
        words = " ".join(f"{rng.getrandbits(32):08x}" for _ in range(rng.randint(0, 40)))
        lines.append(json_line(f"document {index} {words}"))
    return lines


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".gz", gzip.compress),
        (".zst", zstandard.ZstdCompressor().compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".lz4", lz4.frame.compress),
    ],
)
def test_jsonl_compressed_round_trip(tmp_path, suffix, compress):
    lines = sample_lines()
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(compress(b"".join(lines)))
    table, report = read(path)

    assert table.num_rows == len(lines)
    assert table.column("text").to_pylist() == [json.loads(line)["text"] for line in lines]
    assert report.truncated is False


@pytest.mark.parametrize(
    "compress", [gzip.compress, zstandard.ZstdCompressor().compress, bz2.compress, lzma.compress]
)
def test_jsonl_concatenated_members(tmp_path, compress):
    lines = sample_lines(50)
    path = tmp_path / "data.jsonl.compressed"
    path.write_bytes(compress(b"".join(lines[:20])) + compress(b"".join(lines[20:])))
    table, report = read(path)

    assert table.num_rows == 50
    assert report.truncated is False


def test_jsonl_gzip_zero_padding_accepted(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(sample_lines(5))) + b"\0" * 512)
    table, report = read(path)

    assert table.num_rows == 5
    assert report.truncated is False
    assert report.skipped == {}


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".zst", zstandard.ZstdCompressor(write_content_size=False).compress)],
)
def test_jsonl_truncated_stream(tmp_path, suffix, compress):
    lines = sample_lines(2000)
    compressed = compress(b"".join(lines))
    path = tmp_path / f"cut.jsonl{suffix}"
    path.write_bytes(compressed[: len(compressed) // 2])
    table, report = read(path)
    texts = table.column("text").to_pylist()

    assert report.truncated is True
    assert report.skipped == {"truncated_stream": 1}
    assert 0 < len(texts) < len(lines)
    assert texts == [json.loads(line)["text"] for line in lines[: len(texts)]]


def test_jsonl_corrupt_gzip_member_stops_cleanly(real_corpora):
    table, report = read(real_corpora / "iipc-webarchive-commons/double-single-inflate-error.gz", ReadOptions(format="jsonl"))

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"corrupt_stream": 1}


def test_jsonl_byte_range_on_compressed_rejected(real_corpora):
    with pytest.raises(ValueError, match="uncompressed"):
        read(real_corpora / DOLMA_GZ, byte_range=(0, 100))


# Byte-range shards


def shard_records(path, boundaries, options=None):
    """Read the shards [b0, b1), [b1, b2), ... and return their records and merged report."""
    records = []
    merged = ReadReport()
    for start, end in zip(boundaries, boundaries[1:]):
        table, report = read(path, options, byte_range=(start, end))
        records.extend(zip(table.column("record").to_pylist(), table.column("text").to_pylist()))
        merged = merged.merge(report)
    return records, merged


def sharding_fixture(tmp_path):
    rng = random.Random(11)
    lines = []
    for index in range(400):
        kind = rng.random()
        if kind < 0.05:
            lines.append(b"\n")
        elif kind < 0.08:
            lines.append(b'{"text": broken\n')
        else:
            lines.append(json_line(f"line {index} " + "x" * rng.randint(0, 300)))
    return write_lines(tmp_path, lines)


def test_jsonl_three_byte_ranges_equal_whole_file(tmp_path):
    path = sharding_fixture(tmp_path)
    size = path.stat().st_size
    whole, whole_report = read(path)
    expected = list(zip(whole.column("record").to_pylist(), whole.column("text").to_pylist()))

    records, merged = shard_records(path, [0, size // 3, 2 * size // 3, size])

    assert records == expected
    assert merged.skipped == whole_report.skipped
    assert merged.counters == whole_report.counters


def test_jsonl_byte_ranges_at_every_kind_of_boundary(tmp_path):
    path = sharding_fixture(tmp_path)
    data = path.read_bytes()
    size = len(data)
    whole, _ = read(path)
    expected = list(zip(whole.column("record").to_pylist(), whole.column("text").to_pylist()))
    line_start = data.index(b"\n", 1000) + 1
    newline = data.index(b"\n", 5000)

    cases = [
        [0, line_start, size],  # boundary exactly at a line start
        [0, line_start - 1, size],  # boundary on a newline byte
        [0, newline + 2, size],  # boundary one byte into a line
        [0, 0, size // 2, size],  # an empty first range
        [0, size // 2, size, size],  # an empty last range
        [0, 1, 2, size],  # ranges inside the first line
    ]
    rng = random.Random(5)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, size), 2))
        cases.append([0, *cuts, size])

    for boundaries in cases:
        records, _ = shard_records(path, boundaries)
        assert records == expected, f"boundaries {boundaries}"


def test_jsonl_byte_range_locations_use_offsets(tmp_path):
    path = write_lines(tmp_path, [json_line("a"), b"not json\n", json_line("b")])
    start = len(json_line("a"))
    _, report = read(path, byte_range=(start, path.stat().st_size))

    assert report.samples[0]["location"] == f"{path}@offset {start}"
