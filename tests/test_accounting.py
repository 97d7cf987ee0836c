"""Every record of every real sample file is a document, a record that is not a
document (counted by kind), or a skip (counted by reason), so none is lost silently.

The expected record counts do not come from the readers. They are the record
counts of `SOURCES.md` for web archives, the non-blank lines of JSON Lines files,
`num_rows` of the Parquet metadata, and one document per plain text file.
"""

import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.formats import ReadOptions, ReadReport, detect_format, iter_record_batches
from scanner.formats.compression import iter_decompressed
from scanner.formats.detect import HEAD_BYTES

# Records that are read but are not documents: WARC and ARC records of other types,
# HTTP responses other than 2xx, payloads that are not text, and null Parquet values.
NOT_DOCUMENTS = ("non_document_records", "non_success_responses", "non_text_payloads", "null_text")

# Record counts from SOURCES.md (FastWARC's where warcio and FastWARC disagree).
ARCHIVE_RECORDS = {
    "allenai-dolma/sample-0000.warc.gz": 48,
    "allenai-dolma/sample-0001.warc.gz": 34,
    "chatnoir-resiliparse/block-sized-records.warc.gz": 3,
    "chatnoir-resiliparse/clipped.warc.gz": 1,
    "chatnoir-resiliparse/clueweb-quirk.warc.gz": 30,
    "chatnoir-resiliparse/warcfile.warc.gz": 50,
    "chatnoir-resiliparse/warcfile.warc.lz4": 50,
    "commoncrawl-whirlwind-python/whirlwind.warc.gz": 4,
    "commoncrawl-whirlwind-python/whirlwind.warc.wat.gz": 2,
    "commoncrawl-whirlwind-python/whirlwind.warc.wet": 2,
    "commoncrawl-whirlwind-python/whirlwind.warc.wet.gz": 2,
    "iipc-jwarc/cc.warc.gz": 1,
    "iipc-jwarc/gzip_extra_sl.warc.gz": 1,
    "iipc-webarchive-commons/IAH-20080430204825-00000-blackbook-truncated.arc": 9,
    "iipc-webarchive-commons/IAH-urls-wget.warc.gz": 36,
    "iipc-webarchive-commons/mutliple-headers.warc": 1,
    "tensorflow-datasets/cc_0.warc.wet": 7,
    "tensorflow-datasets/cc_1.warc.wet": 4,
    "webrecorder-warcio/bad.arc": 4,
    "webrecorder-warcio/example-bad-non-chunked.warc.gz": 6,
    "webrecorder-warcio/example-bad.warc.gz.bad": 6,
    "webrecorder-warcio/example-digest.warc": 4,
    "webrecorder-warcio/example-iana.org-chunked.warc": 3,
    "webrecorder-warcio/example-resource.warc.gz": 3,
    "webrecorder-warcio/example-space-in-target-uri.warc.gz": 2,
    "webrecorder-warcio/example-space-in-url.arc": 2,
    "webrecorder-warcio/example-trunc.warc": 4,
    "webrecorder-warcio/example-wget-bad-target-uri.warc.gz": 6,
    "webrecorder-warcio/example-wrong-chunks.warc.gz": 2,
    "webrecorder-warcio/example.arc": 2,
    "webrecorder-warcio/example.arc.gz": 2,
    "webrecorder-warcio/example.warc": 6,
    "webrecorder-warcio/example.warc.gz": 6,
    "webrecorder-warcio/post-test.warc.gz": 6,
}


def sample_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and path.name != "SOURCES.md")


def read_all(path: pathlib.Path, options: ReadOptions) -> tuple[int, ReadReport]:
    report = ReadReport()
    batches = iter_record_batches(lambda: open(path, "rb"), str(path), options, report)
    return sum(batch.num_rows for batch in batches), report


def expected_records(path: pathlib.Path, relative: str) -> tuple[int, ReadOptions] | None:
    """Return the record count of a sample file and the options to read it, or None to leave it out."""
    detected = detect_format(path.read_bytes()[:HEAD_BYTES], str(path))
    if detected.format in ("warc", "wet", "arc"):
        return ARCHIVE_RECORDS[relative], ReadOptions()
    if detected.format == "jsonl":
        with open(path, "rb") as raw:
            data = b"".join(iter_decompressed(raw, detected.compression))
        data = data.removeprefix(b"\xef\xbb\xbf")
        return sum(1 for line in data.split(b"\n") if line.strip()), ReadOptions()
    if detected.format == "parquet":
        try:
            schema = pq.ParquetFile(path).schema_arrow
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return 1, ReadOptions()  # one corrupt_parquet skip for the whole file
        strings = [field.name for field in schema if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)]
        if not strings:
            return None  # no text column: `scan` stops with a usage error before reading
        return rows, ReadOptions(text_field=strings[0])
    return 1, ReadOptions()  # plain text: the whole object is one document


def test_every_record_is_accounted_for(real_corpora):
    checked, mismatches = 0, []
    for path in sample_files(real_corpora):
        relative = path.relative_to(real_corpora).as_posix()
        expected = expected_records(path, relative)
        if expected is None:
            continue
        records, options = expected
        documents, report = read_all(path, options)
        not_documents = sum(report.counters.get(kind, 0) for kind in NOT_DOCUMENTS)
        accounted = documents + report.skipped_total + not_documents
        checked += 1
        if accounted != records:
            mismatches.append(f"{relative}: {records} records, {documents} documents, {not_documents} not documents, skips {report.skipped}")

    assert checked >= 75
    assert mismatches == []


@pytest.mark.parametrize("relative", ["tensorflow-datasets/cc_0.warc.wet", "webrecorder-warcio/bad.arc"])
def test_malformed_archives_are_accounted_for_with_skips(real_corpora, relative):
    path = real_corpora / relative
    records, options = expected_records(path, relative)

    documents, report = read_all(path, options)

    assert report.skipped_total > 0
    assert documents + report.skipped_total + sum(report.counters.get(kind, 0) for kind in NOT_DOCUMENTS) == records
