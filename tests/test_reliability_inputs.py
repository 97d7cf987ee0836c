"""Bad input: each case has its right value as the expectation, from real sample files where they exist.

Cases already covered elsewhere are listed in docs/reliability.md with their test names.
"""

import gzip
import json
import re
import subprocess
import sys
import threading
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.batch import TextBatch
from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches
from scanner.formats.compression import RAW_CHUNK_BYTES
from scanner.settings import SketchSettings
from scanner.tokens import tokenize_batch

DOLMA_GZ = "allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
DOLMA_DOCUMENTS = 697
WHIRLWIND_WARC = "commoncrawl-whirlwind-python/whirlwind.warc.gz"
# Start offsets of the four gzip members of the whirlwind WARC: warcinfo, request, response, metadata.
WHIRLWIND_MEMBERS = (0, 516, 1023, 18374)
READ_TIMEOUT_S = 30
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def read(path, options=None):
    """Read one file completely; return the records as a table and the report."""
    report = ReadReport()
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), options or ReadOptions(), report))
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), report


def read_within(path, seconds=READ_TIMEOUT_S, options=None):
    """Read in a thread and fail if the read does not end within `seconds`."""
    outcome = {}

    def run():
        outcome["value"] = read(path, options)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"reading {path} did not end within {seconds} s"
    return outcome["value"]


def tokens_of(texts):
    return tokenize_batch(TextBatch.from_strings(texts), SketchSettings()).texts()


def dolma_lines(real_corpora):
    return gzip.decompress((real_corpora / DOLMA_GZ).read_bytes()).splitlines(keepends=True)


# Case 1: a .warc.gz whose last gzip member is cut off


def test_warc_cut_last_member_after_document(real_corpora, tmp_path):
    data = (real_corpora / WHIRLWIND_WARC).read_bytes()
    path = tmp_path / "cut-metadata.warc.gz"
    path.write_bytes(data[: WHIRLWIND_MEMBERS[3] + 100])
    full, _ = read(real_corpora / WHIRLWIND_WARC)
    table, report = read_within(path)

    assert report.truncated is True
    assert table.column("text").to_pylist() == full.column("text").to_pylist()
    assert report.skipped_total == 1


def test_warc_cut_last_member_inside_document(real_corpora, tmp_path):
    data = (real_corpora / WHIRLWIND_WARC).read_bytes()
    path = tmp_path / "cut-response.warc.gz"
    path.write_bytes(data[: (WHIRLWIND_MEMBERS[2] + WHIRLWIND_MEMBERS[3]) // 2])
    table, report = read_within(path)

    assert report.truncated is True
    assert table.num_rows == 0
    assert report.skipped_total == 1
    assert set(report.skipped) <= {"truncated_record", "invalid_warc_record"}


# Case 2: a WARC block one byte longer than its Content-Length


def resource_record(text, url, stray=b""):
    block = text.encode()
    head = (
        "WARC/1.0\r\n"
        "WARC-Type: resource\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=len(url))}>\r\n"
        "WARC-Date: 2024-01-02T03:04:05Z\r\n"
        f"WARC-Target-URI: {url}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    ).encode()
    return head + block + stray + b"\r\n\r\n", len(head) + len(block)


STRAY_TEXTS = [f"document number {index} of five" for index in range(5)]


def stray_byte_records():
    return [resource_record(text, f"http://e.example/{index}", b"X" if index == 1 else b"") for index, text in enumerate(STRAY_TEXTS)]


def test_warc_stray_byte_uncompressed(tmp_path):
    records = stray_byte_records()
    path = tmp_path / "stray.warc"
    path.write_bytes(b"".join(record for record, _ in records))
    stray_offset = len(records[0][0]) + records[1][1]
    table, report = read(path)

    assert table.column("text").to_pylist() == STRAY_TEXTS
    assert report.counters["stray_bytes_after_record"] == 1
    assert any(f"@offset {stray_offset}: skipped 1 stray bytes" in warning for warning in report.warnings)
    assert report.skipped == {}


def test_warc_stray_byte_gzip_member(tmp_path):
    members = [gzip.compress(record) for record, _ in stray_byte_records()]
    path = tmp_path / "stray.warc.gz"
    path.write_bytes(b"".join(members))
    table, report = read(path)

    assert table.column("text").to_pylist() == STRAY_TEXTS
    assert report.counters["stray_bytes_after_record"] == 1
    assert any(f"@offset {len(members[0])}: skipped 1 stray bytes" in warning for warning in report.warnings)


@pytest.mark.parametrize(
    "relative_path",
    [WHIRLWIND_WARC, "allenai-dolma/sample-0000.warc.gz", "webrecorder-warcio/example.warc", "chatnoir-resiliparse/warcfile.warc.lz4"],
)
def test_warc_well_formed_has_no_stray_warning(real_corpora, relative_path):
    _, report = read(real_corpora / relative_path)

    assert "stray_bytes_after_record" not in report.counters


# Cases 3 and 4: legacy charsets and chunked bodies, checked on the tokens that reach the counts


def test_warc_charset_tokens_have_no_replacement(real_corpora):
    table, _ = read(real_corpora / "chatnoir-resiliparse/warcfile.warc.gz")
    tokens = [token for document in tokens_of(table.column("text").to_pylist()) for token in document]

    assert table.num_rows == 16
    assert tokens
    assert not any("\ufffd" in token for token in tokens)


def test_warc_euc_jp_tokens_have_kana(real_corpora):
    table, _ = read(real_corpora / "chatnoir-resiliparse/clueweb-quirk.warc.gz")
    documents = tokens_of(table.column("text").to_pylist())

    assert len(documents) == 29
    assert not any("\ufffd" in token for document in documents for token in document)
    assert all(any(re.fullmatch("[\u3040-\u30ff]", token) for token in document) for document in documents)


def http_chunked(body, size):
    pieces = [b"%x\r\n%s\r\n" % (len(body[start : start + size]), body[start : start + size]) for start in range(0, len(body), size)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"".join(pieces) + b"0\r\n\r\n"


def test_warc_chunked_sizes_not_tokens(tmp_path):
    text = "alpha beta gamma delta epsilon zeta eta theta " * 40
    block = http_chunked(text.encode(), size=0xAB)
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n"
        "WARC-Date: 2024-01-02T03:04:05Z\r\nWARC-Target-URI: http://chunked.example/\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n"
    ).encode()
    path = tmp_path / "chunked.warc"
    path.write_bytes(head + block + b"\r\n\r\n")
    table, _ = read(path)

    assert table.column("text").to_pylist() == [text]
    assert tokens_of(table.column("text").to_pylist()) == tokens_of([text])
    assert "ab" not in tokens_of(table.column("text").to_pylist())[0]


def test_warc_real_chunked_tokens(real_corpora):
    table, _ = read(real_corpora / "webrecorder-warcio/example-iana.org-chunked.warc")
    tokens = tokens_of(table.column("text").to_pylist())[0]

    # The one chunk of this body declares its size as "001c37", and "0" ends the chunks.
    assert table.num_rows == 1
    assert "internet" in tokens
    assert "001c37" not in tokens
    assert tokens[-1] != "0"


# Case 5: JSONL starting with a UTF-8 byte-order mark


@pytest.mark.parametrize("compress", [lambda data: data, gzip.compress], ids=["plain", "gzip"])
def test_jsonl_bom_keeps_all_records(real_corpora, tmp_path, compress):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(compress(b"\xef\xbb\xbf" + b"".join(dolma_lines(real_corpora))))
    table, report = read(path)

    assert table.num_rows == DOLMA_DOCUMENTS
    assert report.skipped == {}
    assert table.column("record").to_pylist()[0] == 0


# Case 6: blank and whitespace-only lines between records


def test_jsonl_blank_lines_between_real_records(real_corpora, tmp_path):
    lines = dolma_lines(real_corpora)
    blanks = [b"\n", b"   \n", b"\t\r\n"]
    mixed = [piece for index, line in enumerate(lines) for piece in (line, blanks[index % 3])]
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(mixed)))
    table, report = read(path)
    expected, _ = read(real_corpora / DOLMA_GZ)

    assert table.num_rows == DOLMA_DOCUMENTS
    assert report.counters["blank_lines"] == DOLMA_DOCUMENTS
    assert report.skipped == {}
    assert table.column("text").to_pylist() == expected.column("text").to_pylist()


# Case 7: one JSONL line of several MB, bigger than a read block

LONG_LINE_BYTES = 6 * RAW_CHUNK_BYTES


def long_line_file(tmp_path):
    long_text = ("word " * (LONG_LINE_BYTES // 5)).strip()
    lines = [json.dumps({"text": "before"}), json.dumps({"text": long_text}), json.dumps({"text": "after"})]
    path = tmp_path / "long.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path, long_text


def test_jsonl_long_line_read_whole(tmp_path):
    path, long_text = long_line_file(tmp_path)
    table, report = read(path)

    assert table.column("text").to_pylist() == ["before", long_text, "after"]
    assert report.skipped == {}


def test_jsonl_long_line_over_limit_reported(tmp_path):
    path, _ = long_line_file(tmp_path)
    table, report = read(path, ReadOptions(max_record_bytes=RAW_CHUNK_BYTES))

    assert table.column("text").to_pylist() == ["before", "after"]
    assert report.skipped == {"record_too_large": 1}
    assert report.samples[0]["location"] == f"{path}:line 2"
    assert f"> max_record_bytes {RAW_CHUNK_BYTES}" in report.samples[0]["detail"]


def test_scan_max_record_mb_reported(tmp_path):
    path, _ = long_line_file(tmp_path)
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "scanner", "scan", str(path), "--out", str(out), "--max-record-mb", "1",
         "--max-errors", "0", "--num-workers", "1", "--no-progress", "--log-level", "warning"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    result = json.loads((out / "result.json").read_text())

    assert completed.returncode == 3, completed.stderr
    assert result["documents"] == 2
    assert result["errors"]["by_reason"] == {"record_too_large": 1}
    assert result["errors"]["samples"][0]["location"] == f"{path}:line 2"


def test_scan_invalid_max_record_mb_exits_2(tmp_path):
    from scanner import cli

    assert cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--max-record-mb", "0"]) == 2


# Case 8: bare NaN or Infinity, one policy per line


def test_jsonl_nan_line_among_real_records(real_corpora, tmp_path):
    lines = dolma_lines(real_corpora)
    nan_line = b'{"text": "with a nan score", "score": NaN, "other": -Infinity}\n'
    path = tmp_path / "nan.jsonl"
    path.write_bytes(b"".join(lines[:100]) + nan_line + b"".join(lines[100:]))
    table, report = read(path)

    assert table.num_rows == DOLMA_DOCUMENTS + 1
    assert report.counters["nonstandard_json_constants"] == 1
    assert any(f"{path}:line 101" in warning for warning in report.warnings)
    assert report.skipped == {}


@pytest.mark.parametrize("name", ["n_number_NaN.json", "n_number_infinity.json"])
def test_jsonl_bare_constant_array_skipped_alone(real_corpora, tmp_path, name):
    path = tmp_path / "constants.jsonl"
    path.write_bytes(b'{"text": "first"}\n' + (real_corpora / "nst-jsontestsuite" / name).read_bytes().strip() + b'\n{"text": "last"}\n')
    table, report = read(path)

    assert table.column("text").to_pylist() == ["first", "last"]
    assert report.skipped == {"not_an_object": 1}
    assert report.samples[0]["location"] == f"{path}:line 2"


# Case 9: Parquet batches stay bounded when row sizes are skewed, nulls are counted, and
# row i is row i. Every batch contains at most batch_bytes of text. The skewed tests check
# that at a small scale: 1 MiB batches and a run of 1 MiB rows inside a row group of small
# rows, where the average row size underestimates the run about 30 times. The last test
# of this section reads a row group of more than 2 GiB of strings.

SKEWED_ROWS = 3000
HUGE_ROWS = range(1000, 1040)
HUGE_ROW_BYTES = 1 << 20


def skewed_text(index):
    if index % 7 == 3:
        return None
    filler = "y" * HUGE_ROW_BYTES if index in HUGE_ROWS else "x" * 50
    return f"{index:06d}{filler}"


@pytest.fixture(scope="module")
def skewed_parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("parquet") / "skewed.parquet"
    texts = [skewed_text(index) for index in range(SKEWED_ROWS)]
    pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), path, row_group_size=SKEWED_ROWS)
    return path


def parquet_batches(path, batch_bytes):
    report = ReadReport()
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), ReadOptions(batch_bytes=batch_bytes), report))
    return batches, report


def test_parquet_skewed_batches_bounded(skewed_parquet):
    batches, _ = parquet_batches(skewed_parquet, HUGE_ROW_BYTES)
    largest = max(sum(len(text) for text in batch.column("text").to_pylist()) for batch in batches)

    assert pq.ParquetFile(skewed_parquet).metadata.num_row_groups == 1
    assert largest <= HUGE_ROW_BYTES + 6


def test_parquet_skewed_rows_keep_index(skewed_parquet):
    batches, _ = parquet_batches(skewed_parquet, HUGE_ROW_BYTES)
    records = [record for batch in batches for record in batch.column("record").to_pylist()]
    texts = [text for batch in batches for text in batch.column("text").to_pylist()]

    assert records == [index for index in range(SKEWED_ROWS) if skewed_text(index) is not None]
    assert all(int(text[:6]) == record for text, record in zip(texts, records))


def test_parquet_skewed_nulls_counted(skewed_parquet):
    _, report = parquet_batches(skewed_parquet, HUGE_ROW_BYTES)

    assert report.counters["null_text"] == sum(1 for index in range(SKEWED_ROWS) if index % 7 == 3)
    assert report.skipped == {}


def test_parquet_large_string_map_rejected(real_corpora):
    path = real_corpora / "apache-parquet-testing/data/large_string_map.brotli.parquet"
    column = pq.ParquetFile(path).schema_arrow.names[0]

    with pytest.raises(ValueError, match="expected a string or binary column"):
        read(path, ReadOptions(text_field=column))


# Case 13: text without spaces, and NFC against NFD


def test_cjk_jsonl_tokens_per_character(tmp_path):
    path = tmp_path / "cjk.jsonl"
    path.write_text(json.dumps({"text": "我爱北京天安门"}) + "\n" + json.dumps({"text": "東京へ行きます"}) + "\n", encoding="utf-8")
    table, _ = read(path)

    assert tokens_of(table.column("text").to_pylist()) == [
        ["我", "爱", "北", "京", "天", "安", "门"],
        ["東", "京", "へ", "行", "き", "ま", "す"],
    ]


def test_nfc_and_nfd_files_same_tokens(tmp_path):
    import unicodedata

    text = "Ångström café naïve Émile über 東京"
    paths = {}
    for form in ("NFC", "NFD"):
        paths[form] = tmp_path / f"{form}.jsonl"
        paths[form].write_text(json.dumps({"text": unicodedata.normalize(form, text)}, ensure_ascii=False) + "\n", encoding="utf-8")
    nfc, _ = read(paths["NFC"])
    nfd, _ = read(paths["NFD"])

    assert nfc.column("text").to_pylist() != nfd.column("text").to_pylist()
    assert tokens_of(nfc.column("text").to_pylist()) == tokens_of(nfd.column("text").to_pylist())
    assert tokens_of(nfc.column("text").to_pylist())[0][:3] == ["ångström", "café", "naïve"]


def test_parquet_2_gib_row_group_bounded(tmp_path):
    # 2,200 values of 1 MiB in ONE row group: 2.3 GB of strings, past the 2 GiB that
    # 32-bit string offsets can address. Writing takes about 20 s and 5 GB of memory.
    path = tmp_path / "big.parquet"
    value = ("abcdefghij " * 100_000)[: 1 << 20]
    nulls = {7, 1_000, 2_199}
    values = pa.array([None if row in nulls else value for row in range(2_200)], type=pa.large_string())
    with pq.ParquetWriter(path, pa.schema([("text", pa.large_string())]), compression="none", use_dictionary=False) as writer:
        writer.write_table(pa.table({"text": values}), row_group_size=len(values))
    del values
    assert pq.ParquetFile(path).metadata.num_row_groups == 1

    report = ReadReport()
    options = ReadOptions(batch_bytes=8 << 20)
    records, largest = [], 0
    for batch in iter_record_batches(lambda: open(path, "rb"), str(path), options, report):
        records += batch.column("record").to_pylist()
        largest = max(largest, batch.column("text").nbytes)

    assert records == [row for row in range(2_200) if row not in nulls]
    assert report.counters["null_text"] == len(nulls)
    assert largest <= options.batch_bytes + (1 << 20) + 64
