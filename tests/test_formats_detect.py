"""Format and compression detection: content decides, the file name is a hint."""

import bz2
import gzip
import lzma

import pytest
import zstandard

from scanner.formats.detect import HEAD_BYTES, detect_format

REAL_FILES = [
    ("allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "jsonl", "gzip"),
    ("allenai-dolma/test.jsonl.zst", "jsonl", "zstd"),
    ("allenai-olmo/c4-sample.02.json.gz", "jsonl", "gzip"),
    ("eleutherai-lm_dataformat/blns-1.jsonl.zst", "jsonl", "zstd"),
    ("eleutherai-lm_dataformat/blns.txt", "text", None),
    ("nlohmann-json_test_data/UTF-8-test.txt", "text", None),
    ("apache-parquet-testing/data/delta_byte_array.parquet", "parquet", None),
    ("apache-parquet-testing/bad_data/PARQUET-1481.parquet", "parquet", None),
    ("webrecorder-warcio/example.warc", "warc", None),
    ("webrecorder-warcio/example.warc.gz", "warc", "gzip"),
    ("webrecorder-warcio/example-bad.warc.gz.bad", "warc", "gzip"),
    ("chatnoir-resiliparse/warcfile.warc.lz4", "warc", "lz4"),
    ("commoncrawl-whirlwind-python/whirlwind.warc.wat.gz", "warc", "gzip"),
    ("commoncrawl-whirlwind-python/whirlwind.warc.wet", "wet", None),
    ("commoncrawl-whirlwind-python/whirlwind.warc.wet.gz", "wet", "gzip"),
    ("tensorflow-datasets/cc_0.warc.wet", "wet", None),
    ("webrecorder-warcio/example.arc", "arc", None),
    ("webrecorder-warcio/example.arc.gz", "arc", "gzip"),
    ("webrecorder-warcio/bad.arc", "arc", None),
    ("iipc-webarchive-commons/IAH-20080430204825-00000-blackbook-truncated.arc", "arc", None),
    ("iipc-webarchive-commons/hi-2.gz", "text", "gzip"),
]


@pytest.mark.parametrize(("relative_path", "expected_format", "expected_compression"), REAL_FILES)
def test_detect_real_file(real_corpora, relative_path, expected_format, expected_compression):
    path = real_corpora / relative_path
    detected = detect_format(path.read_bytes()[:HEAD_BYTES], str(path))

    assert detected.format == expected_format
    assert detected.compression == expected_compression


def test_detect_misnamed_zst_is_plain(real_corpora):
    path = real_corpora / "allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.zst"
    detected = detect_format(path.read_bytes()[:HEAD_BYTES], str(path))

    assert detected.format == "jsonl"
    assert detected.compression is None
    assert len(detected.warnings) == 1
    assert "zstd" in detected.warnings[0]


def test_detect_correct_name_has_no_warning(real_corpora):
    path = real_corpora / "allenai-olmo/c4-sample.02.json.gz"
    detected = detect_format(path.read_bytes()[:HEAD_BYTES], str(path))

    assert detected.warnings == ()


def test_detect_wet_content_without_wet_name(real_corpora):
    head = (real_corpora / "commoncrawl-whirlwind-python/whirlwind.warc.wet").read_bytes()[:HEAD_BYTES]

    assert detect_format(head, "s3://bucket/part-0001").format == "wet"


def test_detect_content_overrides_wrong_name(real_corpora):
    head = (real_corpora / "apache-parquet-testing/data/delta_byte_array.parquet").read_bytes()[:HEAD_BYTES]
    detected = detect_format(head, "data/part-0.jsonl")

    assert detected.format == "parquet"
    assert any("jsonl" in warning for warning in detected.warnings)


def test_detect_declared_format_keeps_compression():
    head = gzip.compress(b'{"text": "a"}\n')
    detected = detect_format(head, "x.jsonl.gz", declared="text")

    assert detected.format == "text"
    assert detected.compression == "gzip"


def test_detect_invalid_declared_format():
    with pytest.raises(ValueError, match="csv"):
        detect_format(b"", "x", declared="csv")


@pytest.mark.parametrize(
    ("compress", "expected"),
    [
        (gzip.compress, "gzip"),
        (bz2.compress, "bz2"),
        (lzma.compress, "xz"),
        (zstandard.ZstdCompressor().compress, "zstd"),
    ],
)
def test_detect_compression_without_extension(compress, expected):
    detected = detect_format(compress(b'{"text": "hello"}\n'), "s3://bucket/object")

    assert detected.compression == expected
    assert detected.format == "jsonl"


def test_detect_jsonl_versus_text_by_content():
    assert detect_format(b'{"text": "a"}\n{"text": "b"}\n', "object").format == "jsonl"
    assert detect_format(b"Just some words.\nMore words.\n", "object").format == "text"


def test_detect_text_name_keeps_braces_as_text():
    assert detect_format(b"{not json at all}\n", "notes.txt").format == "text"
