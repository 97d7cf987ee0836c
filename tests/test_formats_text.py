"""Plain-text reading: whole files, one document per line, invalid UTF-8, byte ranges."""

import gzip

import pyarrow as pa
import pytest

from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches

LINES = ReadOptions(lines_as_documents=True)


def read(path, options=None, **shard):
    report = ReadReport()
    batches = list(
        iter_record_batches(lambda: open(path, "rb"), str(path), options or ReadOptions(), report, **shard)
    )
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), report


def test_text_whole_file_is_one_document(real_corpora):
    path = real_corpora / "eleutherai-lm_dataformat/blns.txt"
    table, report = read(path)

    assert table.num_rows == 1
    assert table.column("text")[0].as_py() == path.read_bytes().decode("utf-8")
    assert table.column("record").to_pylist() == [0]
    assert report.counters == {}


def test_text_lines_as_documents(real_corpora):
    path = real_corpora / "eleutherai-lm_dataformat/blns.txt"
    raw_lines = path.read_bytes().split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    blank = sum(1 for line in raw_lines if not line.strip())
    table, report = read(path, LINES)

    assert len(raw_lines) == 742
    assert table.num_rows == 742 - blank
    assert report.counters["blank_lines"] == blank


def test_text_lines_keep_unicode_line_separators(tmp_path):
    path = tmp_path / "separators.txt"
    path.write_bytes("one\u2028still one\u2029still one\rstill one\ntwo\n".encode())
    table, _ = read(path, LINES)

    assert table.column("text").to_pylist() == ["one\u2028still one\u2029still one\rstill one", "two"]


def test_text_invalid_utf8_whole_file(real_corpora):
    path = real_corpora / "nlohmann-json_test_data/UTF-8-test.txt"
    table, report = read(path)

    assert table.num_rows == 1
    assert "\ufffd" in table.column("text")[0].as_py()
    assert report.counters["decode_replacements"] == 1


def test_text_invalid_utf8_counted_per_line(real_corpora):
    path = real_corpora / "nlohmann-json_test_data/UTF-8-test.txt"
    invalid_lines = 0
    for line in path.read_bytes().split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            invalid_lines += 1
    table, report = read(path, LINES)

    assert invalid_lines > 10
    assert report.counters["decode_replacements"] == invalid_lines
    assert table.num_rows > 250


def test_text_valid_prefix_before_first_invalid_byte(real_corpora):
    path = real_corpora / "nlohmann-json_test_data/UTF-8-test.txt"
    table, _ = read(path)
    valid_prefix = path.read_bytes()[:4461].decode("utf-8")

    assert table.column("text")[0].as_py().startswith(valid_prefix)


def test_text_bom_stripped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\n")
    whole, _ = read(path)
    lines, _ = read(path, LINES)

    assert whole.column("text").to_pylist() == ["hello\n"]
    assert lines.column("text").to_pylist() == ["hello"]


def test_text_multi_member_gzip(real_corpora):
    table, _ = read(real_corpora / "iipc-webarchive-commons/hi-2.gz")

    assert table.column("text").to_pylist() == ["hi\nhi\n"]


def test_text_gzip_lines(tmp_path):
    path = tmp_path / "lines.txt.gz"
    path.write_bytes(gzip.compress(b"alpha\n\nbeta\n"))
    table, report = read(path, LINES)

    assert table.column("text").to_pylist() == ["alpha", "beta"]
    assert report.counters["blank_lines"] == 1


def test_text_document_too_large(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 5000)
    table, report = read(path, ReadOptions(max_record_bytes=1000))

    assert table.num_rows == 0
    assert report.skipped == {"record_too_large": 1}


def test_text_truncated_gzip_document_skipped(tmp_path):
    compressed = gzip.compress(bytes(range(256)) * 400)
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    table, report = read(path)

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"truncated_stream": 1}


def test_text_byte_ranges_equal_whole_file(real_corpora, tmp_path):
    path = real_corpora / "eleutherai-lm_dataformat/blns.txt"
    size = path.stat().st_size
    whole, _ = read(path, LINES)
    expected = list(zip(whole.column("record").to_pylist(), whole.column("text").to_pylist()))

    records = []
    boundaries = [0, size // 3, 2 * size // 3, size]
    for start, end in zip(boundaries, boundaries[1:]):
        table, _ = read(path, LINES, byte_range=(start, end))
        records.extend(zip(table.column("record").to_pylist(), table.column("text").to_pylist()))

    assert records == expected


def test_text_byte_range_needs_lines_as_documents(real_corpora):
    with pytest.raises(ValueError, match="lines_as_documents"):
        read(real_corpora / "eleutherai-lm_dataformat/blns.txt", byte_range=(0, 100))


def test_binary_object_is_skipped_not_scanned(tmp_path):
    path = tmp_path / "archive.bin"
    path.write_bytes(b"ustar\x00\x00" + bytes(range(256)) * 20)

    table, report = read(path)

    assert table.num_rows == 0
    assert report.skipped == {"binary_content": 1}
