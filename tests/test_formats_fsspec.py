"""Readers accept fsspec file objects, as the runner passes for object storage."""

import fsspec
import pyarrow as pa
import pytest

from scanner.formats import RECORD_SCHEMA, ReadOptions, ReadReport, iter_record_batches

CASES = [
    ("allenai-olmo/c4-sample.02.json.gz", {}, 10),
    ("commoncrawl-whirlwind-python/whirlwind.warc.wet.gz", {}, 1),
    ("webrecorder-warcio/example.arc.gz", {}, 1),
    ("apache-parquet-testing/data/hadoop_lz4_compressed_larger.parquet", {"text_field": "a"}, 10000),
]


@pytest.mark.parametrize(("relative_path", "options", "documents"), CASES)
def test_fsspec_memory_file(real_corpora, relative_path, options, documents):
    filesystem = fsspec.filesystem("memory")
    target = f"/corpus/{relative_path}"
    filesystem.pipe(target, (real_corpora / relative_path).read_bytes())
    report = ReadReport()

    batches = list(
        iter_record_batches(lambda: filesystem.open(target, "rb"), f"memory://{target}", ReadOptions(**options), report)
    )

    assert pa.Table.from_batches(batches, schema=RECORD_SCHEMA).num_rows == documents


def test_fsspec_memory_byte_range():
    filesystem = fsspec.filesystem("memory")
    lines = b"".join(b'{"text": "line %d"}\n' % index for index in range(100))
    filesystem.pipe("/corpus/range.jsonl", lines)
    middle = len(lines) // 2
    texts = []
    for byte_range in ((0, middle), (middle, len(lines))):
        report = ReadReport()
        batches = iter_record_batches(
            lambda: filesystem.open("/corpus/range.jsonl", "rb"), "memory://range.jsonl", ReadOptions(), report, byte_range=byte_range
        )
        texts.extend(text for batch in batches for text in batch.column("text").to_pylist())

    assert texts == [f"line {index}" for index in range(100)]
