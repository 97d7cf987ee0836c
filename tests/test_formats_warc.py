"""WARC, WET and ARC reading: real archives, charsets, HTTP codings, truncation, ARC quirks."""

import datetime as dt
import gzip
import re
import uuid

import pyarrow as pa
import pytest

from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches
from scanner.formats.arc import parse_arc_header

CJK = re.compile("[\u4e00-\u9fff]")
KANA = re.compile("[\u3040-\u30ff]")
CYRILLIC = re.compile("[\u0400-\u04ff]")


def read(path, options=None):
    report = ReadReport()
    batches = list(iter_record_batches(lambda: open(path, "rb"), str(path), options or ReadOptions(), report))
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), report


def texts_of(table):
    return table.column("text").to_pylist()


# WET


@pytest.mark.parametrize("name", ["whirlwind.warc.wet", "whirlwind.warc.wet.gz"])
def test_wet_conversion_record(real_corpora, name):
    table, report = read(real_corpora / "commoncrawl-whirlwind-python" / name)
    row = table.to_pylist()[0]

    assert table.num_rows == 1
    assert len(row["text"].encode("utf-8")) == 4456
    assert row["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert row["date"] == dt.datetime(2024, 5, 18, 1, 58, 10, tzinfo=dt.timezone.utc)
    assert row["record"] == 1
    assert report.counters["non_document_records"] == 1


def test_wet_lying_content_length_ends(real_corpora):
    table, report = read(real_corpora / "tensorflow-datasets/cc_1.warc.wet")

    # 4 records (SOURCES.md): the warcinfo, one conversion whose version line the
    # warcinfo's block took, one inside the cut block of another, and that cut one.
    assert table.num_rows == 0
    assert report.truncated is True
    assert report.counters["non_document_records"] == 1
    assert report.skipped == {"truncated_record": 1, "record_inside_block": 1, "record_inside_stray_bytes": 1}


def test_wet_records_lost_to_wrong_lengths_are_counted(real_corpora):
    table, report = read(real_corpora / "tensorflow-datasets/cc_0.warc.wet")

    # 7 records (SOURCES.md): every one is a document, a non-document record or a skip.
    assert table.num_rows == 4
    assert report.counters["non_document_records"] == 1
    assert report.skipped == {"record_inside_block": 1, "record_inside_stray_bytes": 1}


# WARC


@pytest.mark.parametrize("name", ["example.warc", "example.warc.gz"])
def test_warc_example_records(real_corpora, name):
    table, report = read(real_corpora / "webrecorder-warcio" / name)

    assert table.num_rows == 1
    assert texts_of(table)[0].startswith("Example Domain")
    assert table.column("url").to_pylist() == ["http://example.com/"]
    assert report.counters["non_document_records"] == 5


def test_warc_whirlwind_response_html(real_corpora):
    table, report = read(real_corpora / "commoncrawl-whirlwind-python/whirlwind.warc.gz")

    assert table.num_rows == 1
    assert "Escopete" in texts_of(table)[0]
    assert "<div" not in texts_of(table)[0]
    assert report.counters["non_document_records"] == 3


def test_warc_wat_has_no_documents(real_corpora):
    table, report = read(real_corpora / "commoncrawl-whirlwind-python/whirlwind.warc.wat.gz")

    assert table.num_rows == 0
    assert report.counters["non_document_records"] == 2


def test_warc_chunked_body_decoded(real_corpora):
    table, _ = read(real_corpora / "webrecorder-warcio/example-iana.org-chunked.warc")
    text = texts_of(table)[0]

    assert text.startswith("Internet Assigned Numbers Authority")
    assert re.search(r"^[0-9a-f]{1,6}\r?$", text, re.MULTILINE) is None


def test_warc_wget_angle_bracket_uri(real_corpora):
    table, _ = read(real_corpora / "webrecorder-warcio/example-wget-bad-target-uri.warc.gz")
    urls = table.column("url").to_pylist()

    assert "http://example.com/" in urls
    assert not any(url.startswith("<") for url in urls)


def test_warc_resource_record_is_document(real_corpora):
    table, _ = read(real_corpora / "webrecorder-warcio/example-resource.warc.gz")

    assert table.num_rows == 1
    assert texts_of(table)[0].startswith("Example Domain")


@pytest.mark.parametrize(
    ("relative_path", "records"),
    [
        ("allenai-dolma/sample-0000.warc.gz", 48),
        ("allenai-dolma/sample-0001.warc.gz", 34),
        ("iipc-webarchive-commons/IAH-urls-wget.warc.gz", 36),
        ("webrecorder-warcio/post-test.warc.gz", 6),
    ],
)
def test_warc_every_record_accounted(real_corpora, relative_path, records):
    table, report = read(real_corpora / relative_path)
    not_documents = sum(
        report.counters.get(key, 0) for key in ("non_document_records", "non_text_payloads", "non_success_responses")
    )

    assert table.num_rows + not_documents + sum(report.skipped.values()) == records


def test_warc_non_utf8_charsets(real_corpora):
    table, report = read(real_corpora / "chatnoir-resiliparse/warcfile.warc.gz")
    texts = texts_of(table)
    by_url = dict(zip(table.column("url").to_pylist(), texts))

    assert table.num_rows == 16
    assert not any("\ufffd" in text for text in texts)
    assert "decode_replacements" not in report.counters
    assert CYRILLIC.search(by_url["http://01spb.ru/company/"])
    assert CJK.search(by_url["http://041696.com/15477/list_6_4.html"])
    assert CJK.search(by_url["http://0760.jxtdw.com/area/sanxiang/"])


def test_warc_lz4_same_as_gzip(real_corpora):
    gzip_table, _ = read(real_corpora / "chatnoir-resiliparse/warcfile.warc.gz")
    lz4_table, _ = read(real_corpora / "chatnoir-resiliparse/warcfile.warc.lz4")

    assert texts_of(lz4_table) == texts_of(gzip_table)


def test_warc_clueweb_euc_jp(real_corpora):
    table, _ = read(real_corpora / "chatnoir-resiliparse/clueweb-quirk.warc.gz")
    texts = texts_of(table)

    assert table.num_rows == 29
    assert not any("\ufffd" in text for text in texts)
    assert all(KANA.search(text) for text in texts)


def test_warc_clipped_gzip_is_truncated(real_corpora):
    table, report = read(real_corpora / "chatnoir-resiliparse/clipped.warc.gz")

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"truncated_record": 1}
    assert "88275" in report.samples[0]["detail"]


def test_warc_cut_uncompressed_is_truncated(real_corpora, tmp_path):
    data = (real_corpora / "webrecorder-warcio/example.warc").read_bytes()
    cut = data.index(b"Example Domain") + 100
    path = tmp_path / "cut.warc"
    path.write_bytes(data[:cut])
    table, report = read(path)

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"truncated_record": 1}


@pytest.mark.parametrize(
    "relative_path",
    [
        "webrecorder-warcio/example-trunc.warc",
        "webrecorder-warcio/example-wrong-chunks.warc.gz",
        "webrecorder-warcio/example-bad-non-chunked.warc.gz",
        "chatnoir-resiliparse/block-sized-records.warc.gz",
        "tensorflow-datasets/cc_0.warc.wet",
    ],
)
def test_warc_malformed_files_end(real_corpora, relative_path):
    table, _ = read(real_corpora / relative_path)

    assert table.num_rows >= 0


# Generated WARC responses: charsets and HTTP codings


def warc_record(block, url, warc_type="response", content_type="application/http; msgtype=response"):
    head = (
        "WARC/1.0\r\n"
        f"WARC-Type: {warc_type}\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
        "WARC-Date: 2024-01-02T03:04:05Z\r\n"
        f"WARC-Target-URI: {url}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(block)}\r\n\r\n"
    )
    return head.encode() + block + b"\r\n\r\n"


def http_response(body, headers, status="200 OK"):
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunk(body, size=50):
    pieces = [b"%x\r\n%s\r\n" % (len(body[start : start + size]), body[start : start + size]) for start in range(0, len(body), size)]
    return b"".join(pieces) + b"0\r\n\r\n"


JAPANESE = "日本語のテキストです。今日は良い天気ですね。ひらがなとカタカナと漢字を含む文章を書きます。" * 8
RUSSIAN = "Пожарная безопасность зданий и сооружений требует внимательного подхода к каждому объекту. " * 8
CHINESE = "上海特舟实业有限公司是一家专业从事工业产品生产和销售的企业，欢迎新老客户来电咨询。" * 8


def html_page(text, head=""):
    return f"<html><head>{head}<title>t</title></head><body><p>{text}</p></body></html>"


@pytest.fixture
def generated_warc(tmp_path):
    shift_jis = html_page(JAPANESE, '<meta charset="Shift_JIS">').encode("shift_jis")
    records = [
        warc_record(
            http_response(
                chunk(gzip.compress(shift_jis)),
                ["Content-Type: text/html", "Content-Encoding: gzip", "Transfer-Encoding: chunked"],
            ),
            "http://sjis.example/",
        ),
        warc_record(
            http_response(html_page(RUSSIAN).encode("windows-1251"), ["Content-Type: text/html; charset=windows-1251"]),
            "http://cp1251.example/",
        ),
        warc_record(
            http_response(
                html_page(CHINESE, '<meta http-equiv="Content-Type" content="text/html; charset=gbk">').encode("gbk"),
                ["Content-Type: text/html"],
            ),
            "http://gbk.example/",
        ),
        warc_record(http_response(html_page(JAPANESE).encode("euc_jp"), ["Content-Type: text/html"]), "http://eucjp.example/"),
        warc_record(
            http_response(html_page(RUSSIAN).encode("windows-1251"), ["Content-Type: text/html; charset=utf-8"]),
            "http://mislabelled.example/",
        ),
        warc_record(http_response(b"<html>gone</html>", ["Content-Type: text/html"], status="404 Not Found"), "http://404.example/"),
        warc_record(http_response(b"\x89PNG\r\n\x1a\n", ["Content-Type: image/png"]), "http://png.example/"),
        warc_record(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http://x/", warc_type="request", content_type="application/http; msgtype=request"),
    ]
    path = tmp_path / "generated.warc.gz"
    path.write_bytes(b"".join(gzip.compress(record) for record in records))
    return path


def test_warc_generated_charsets(generated_warc):
    table, report = read(generated_warc)
    by_url = dict(zip(table.column("url").to_pylist(), texts_of(table)))

    assert JAPANESE[:40] in by_url["http://sjis.example/"]
    assert RUSSIAN[:40] in by_url["http://cp1251.example/"]
    assert CHINESE[:40] in by_url["http://gbk.example/"]
    assert JAPANESE[:40] in by_url["http://eucjp.example/"]
    assert RUSSIAN[:40] in by_url["http://mislabelled.example/"]
    assert not any("\ufffd" in text for text in by_url.values())


def test_warc_generated_counters(generated_warc):
    table, report = read(generated_warc)

    assert table.num_rows == 5
    assert report.counters["charset_mismatches"] == 1
    assert report.counters["non_success_responses"] == 1
    assert report.counters["non_text_payloads"] == 1
    assert report.counters["non_document_records"] == 1


def test_warc_generated_record_index_and_date(generated_warc):
    table, _ = read(generated_warc)

    assert table.column("record").to_pylist() == [0, 1, 2, 3, 4]
    assert table.column("date")[0].as_py() == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


# ARC


@pytest.mark.parametrize("name", ["example.arc", "example.arc.gz"])
def test_arc_example(real_corpora, name):
    table, report = read(real_corpora / "webrecorder-warcio" / name)
    row = table.to_pylist()[0]

    assert table.num_rows == 1
    assert row["text"].startswith("Example Domain")
    assert row["url"] == "http://example.com/"
    assert row["date"] == dt.datetime(2014, 2, 16, 5, 2, 21, tzinfo=dt.timezone.utc)
    assert report.counters["non_document_records"] == 1


def test_arc_heritrix_without_separators(real_corpora):
    table, report = read(real_corpora / "iipc-webarchive-commons/IAH-20080430204825-00000-blackbook-truncated.arc")
    not_documents = report.counters["non_document_records"] + report.counters["non_text_payloads"]

    assert table.num_rows + not_documents == 9
    assert "http://www.archive.org/robots.txt" in table.column("url").to_pylist()
    assert report.skipped == {}
    assert report.truncated is False


def test_arc_invalid_lengths_skipped(real_corpora):
    table, report = read(real_corpora / "webrecorder-warcio/bad.arc")

    assert table.num_rows == 0
    assert report.skipped["invalid_arc_length"] == 3


def test_arc_header_url_with_spaces():
    line = b"http://example.com/a b c.html 93.184.216.119 20140216050221 text/html 1591\n"
    header = parse_arc_header(line, version=1)

    assert header.url == "http://example.com/a b c.html"
    assert header.content_type == "text/html"
    assert header.length_field == b"1591"


def test_arc_url_with_spaces_read(real_corpora, tmp_path):
    data = (real_corpora / "webrecorder-warcio/example.arc").read_bytes()
    spaced = data.replace(b"http://example.com/ 93.184", b"http://example.com/a b.html 93.184")
    path = tmp_path / "spaced.arc"
    path.write_bytes(spaced)
    table, _ = read(path)

    assert table.column("url").to_pylist() == ["http://example.com/a b.html"]


def test_arc_short_body_is_truncated(real_corpora):
    table, report = read(real_corpora / "webrecorder-warcio/example-space-in-url.arc")

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"truncated_record": 1}


def test_warc_cut_inside_header_is_flagged(real_corpora, tmp_path):
    data = (real_corpora / "webrecorder-warcio/example.warc").read_bytes()
    response_header = data.index(b"WARC-Type: response")
    path = tmp_path / "cut-header.warc"
    path.write_bytes(data[: response_header + 60])
    table, report = read(path)

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"invalid_warc_record": 1}


def test_warc_record_too_large_skipped(real_corpora):
    table, report = read(real_corpora / "commoncrawl-whirlwind-python/whirlwind.warc.gz", ReadOptions(max_record_bytes=1000))

    assert table.num_rows == 0
    assert report.skipped == {"record_too_large": 1}


def test_warc_byte_range_rejected(real_corpora):
    path = real_corpora / "webrecorder-warcio/example.warc"
    report = ReadReport()
    with pytest.raises(ValueError, match="byte ranges"):
        list(iter_record_batches(lambda: open(path, "rb"), str(path), ReadOptions(), report, byte_range=(0, 100)))


def test_arc_truncated_gzip_ends(real_corpora, tmp_path):
    data = gzip.decompress((real_corpora / "webrecorder-warcio/example.arc.gz").read_bytes())
    compressed = gzip.compress(data)
    path = tmp_path / "cut.arc.gz"
    path.write_bytes(compressed[: len(compressed) - 200])
    table, report = read(path)

    assert table.num_rows == 0
    assert report.truncated is True
    assert report.skipped == {"truncated_record": 1}


def test_warc_surrogate_reference_replaced(tmp_path):
    page = b"<html><body><p>before &#xD800; after</p></body></html>"
    path = tmp_path / "surrogate.warc"
    path.write_bytes(warc_record(http_response(page, ["Content-Type: text/html; charset=utf-8"]), "http://s.example/"))
    table, _ = read(path)

    assert texts_of(table) == ["before \ufffd after"]
