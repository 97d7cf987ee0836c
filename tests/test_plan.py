"""Shard planning: format detection, splitting rules, stable ids and the plan file."""

from __future__ import annotations

import gzip
import json
import logging
import pathlib
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from scanner.plan import (
    Plan,
    Shard,
    build_plan,
    group_row_groups,
    read_row_group_sizes,
    shard_id_for,
    split_byte_ranges,
)
from scanner.sources import ObjectInfo, list_objects
from scanner.storage import StorageOptions, filesystem_for


LOCAL = StorageOptions()
KIB = 1 << 10


def _jsonl_bytes(records: int) -> bytes:
    lines = [json.dumps({"id": index, "text": f"document number {index} " * 8}) for index in range(records)]
    return ("\n".join(lines) + "\n").encode()


def _parquet_bytes(tmp_path: pathlib.Path, row_groups: int, rows_per_group: int = 200) -> bytes:
    # Fixed-width rows without compression give row groups of equal byte size.
    texts = [f"row {index:08d} " * 20 for index in range(row_groups * rows_per_group)]
    path = tmp_path / "build.parquet"
    table = pa.table({"text": texts})
    pq.write_table(table, path, row_group_size=rows_per_group, use_dictionary=False, compression="none")
    return path.read_bytes()


def _plan_local(paths: list[pathlib.Path], **options) -> Plan:
    return build_plan(list_objects([str(path) for path in paths], LOCAL), LOCAL, **options)


# Splitting rules


def test_small_file_is_one_whole_shard(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "small.jsonl"
    path.write_bytes(_jsonl_bytes(10))
    plan = _plan_local([path])
    assert len(plan.shards) == 1
    assert plan.shards[0].byte_range is None
    assert plan.shards[0].estimated_bytes == path.stat().st_size


def test_large_plain_jsonl_split_by_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "large.jsonl"
    path.write_bytes(_jsonl_bytes(5000))
    size = path.stat().st_size
    target = 256 * KIB

    plan = _plan_local([path], target_shard_bytes=target)
    ranges = [shard.byte_range for shard in plan.shards]

    assert len(ranges) == -(-size // target)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == size
    assert all(previous[1] == current[0] for previous, current in zip(ranges, ranges[1:]))
    assert all(end - start <= target for start, end in ranges)
    assert all(shard.format == "jsonl" for shard in plan.shards)


def test_large_plain_text_split_by_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "large.txt"
    path.write_bytes(b"a line of plain text\n" * 20000)
    plan = _plan_local([path], target_shard_bytes=100 * KIB)
    assert len(plan.shards) == 5
    assert plan.shards[0].format == "text"


def test_compressed_file_never_split(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "large.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl_bytes(5000), compresslevel=1))
    plan = _plan_local([path], target_shard_bytes=4 * KIB)
    assert path.stat().st_size > 4 * KIB
    assert len(plan.shards) == 1
    assert plan.shards[0].compression == "gzip"
    assert plan.shards[0].byte_range is None


def test_warc_never_split(real_corpora: pathlib.Path) -> None:
    path = real_corpora / "webrecorder-warcio" / "example-iana.org-chunked.warc"
    plan = _plan_local([path], target_shard_bytes=KIB)
    assert len(plan.shards) == 1
    assert plan.shards[0].format == "warc"


def test_parquet_split_by_row_groups(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(_parquet_bytes(tmp_path, row_groups=10))
    sizes = read_row_group_sizes(*filesystem_for(str(path), LOCAL))
    target = sizes[0] * 3

    plan = _plan_local([path], target_shard_bytes=target)
    runs = [shard.row_groups for shard in plan.shards]

    assert len(sizes) == 10
    assert len(set(sizes)) == 1
    assert runs[0][0] == 0
    assert runs[-1][1] == 10
    assert all(previous[1] == current[0] for previous, current in zip(runs, runs[1:]))
    assert all(shard.estimated_bytes <= target for shard in plan.shards)
    assert len(runs) == 4


def test_parquet_below_target_is_whole_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(_parquet_bytes(tmp_path, row_groups=3))
    plan = _plan_local([path])
    assert len(plan.shards) == 1
    assert plan.shards[0].row_groups is None
    assert plan.shards[0].format == "parquet"


def test_parquet_on_s3_split_like_local(
    tmp_path: pathlib.Path, s3_storage: StorageOptions, s3_bucket: str
) -> None:
    data = _parquet_bytes(tmp_path, row_groups=8)
    local_path = tmp_path / "data.parquet"
    local_path.write_bytes(data)
    fs, _ = filesystem_for(f"s3://{s3_bucket}", s3_storage)
    fs.pipe({f"{s3_bucket}/tables/data.parquet": data})
    target = read_row_group_sizes(*filesystem_for(str(local_path), LOCAL))[0] * 2

    local_plan = _plan_local([local_path], target_shard_bytes=target)
    s3_plan = build_plan(
        list_objects([f"s3://{s3_bucket}/tables/"], s3_storage), s3_storage, target_shard_bytes=target
    )

    assert [shard.row_groups for shard in s3_plan.shards] == [shard.row_groups for shard in local_plan.shards]
    assert len(s3_plan.shards) == 4
    assert s3_plan.shards[0].etag is not None


def test_bad_parquet_footer_warns(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    plan = _plan_local([path])
    assert len(plan.shards) == 1
    assert any("Parquet footer" in warning for warning in plan.shards[0].warnings)


def test_zero_byte_object_is_empty_shard(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    plan = _plan_local([path])
    assert len(plan.shards) == 1
    assert plan.shards[0].estimated_bytes == 0


@pytest.mark.parametrize(
    ("sizes", "target", "expected"),
    [
        ([], 10, []),
        ([5], 10, [(0, 1)]),
        ([5, 5, 5], 10, [(0, 2), (2, 3)]),
        ([30, 1, 1], 10, [(0, 1), (1, 3)]),
        ([1, 30, 1], 10, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_group_row_groups_cases(sizes: list[int], target: int, expected: list[tuple[int, int]]) -> None:
    assert group_row_groups(sizes, target) == expected


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        (10, 10, [(0, 10)]),
        (11, 10, [(0, 5), (5, 11)]),
        (30, 10, [(0, 10), (10, 20), (20, 30)]),
        (0, 10, [(0, 0)]),
    ],
)
def test_split_byte_ranges_cases(size: int, target: int, expected: list[tuple[int, int]]) -> None:
    assert split_byte_ranges(size, target) == expected


# Detection


def test_misnamed_compression_warns(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(_jsonl_bytes(5))
    (shard,) = _plan_local([path]).shards
    assert shard.compression is None
    assert shard.format == "jsonl"
    assert shard.warnings


def test_declared_format_overrides_detection(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(_jsonl_bytes(5))
    (shard,) = _plan_local([path], declared_format="text").shards
    assert shard.format == "text"


def test_invalid_declared_format_raises(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(ValueError, match="'csv'"):
        _plan_local([path], declared_format="csv")


def test_invalid_target_size_raises(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(ValueError, match="target shard size 0"):
        _plan_local([path], target_shard_bytes=0)


def test_real_corpora_every_file_planned(real_corpora: pathlib.Path) -> None:
    objects = list_objects([str(real_corpora)], LOCAL)
    plan = build_plan(objects, LOCAL, target_shard_bytes=64 * KIB)
    planned_urls = {shard.url for shard in plan.shards}
    formats = {shard.format for shard in plan.shards}

    assert planned_urls == {info.url for info in objects}
    assert plan.total_objects == len(objects)
    assert formats == {"arc", "jsonl", "parquet", "text", "warc", "wet"}


@pytest.mark.parametrize(
    ("relative_path", "record_format", "compression"),
    [
        ("webrecorder-warcio/example.warc.gz", "warc", "gzip"),
        ("webrecorder-warcio/example.arc", "arc", None),
        ("commoncrawl-whirlwind-python/whirlwind.warc.wet.gz", "wet", "gzip"),
        ("allenai-dolma/cc_en_head-0091.jsonl.gz", "jsonl", "gzip"),
        ("allenai-dolma/test.jsonl.zst", "jsonl", "zstd"),
        ("chatnoir-resiliparse/warcfile.warc.lz4", "warc", "lz4"),
        ("apache-parquet-testing/data/nullable.impala.parquet", "parquet", None),
    ],
)
def test_real_corpora_formats(
    real_corpora: pathlib.Path, relative_path: str, record_format: str, compression: str | None
) -> None:
    (shard,) = _plan_local([real_corpora / relative_path]).shards
    assert shard.format == record_format
    assert shard.compression == compression


def test_misnamed_zst_split_with_warning(real_corpora: pathlib.Path) -> None:
    # A plain JSONL file named .jsonl.zst: detection finds it uncompressed, so it may be split.
    path = real_corpora / "allenai-dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.zst"
    plan = _plan_local([path], target_shard_bytes=512 * KIB)
    assert len(plan.shards) > 1
    assert all(shard.compression is None for shard in plan.shards)
    assert all(shard.warnings for shard in plan.shards)


# Determinism, ids and the plan file


def test_plan_deterministic(real_corpora: pathlib.Path) -> None:
    objects = list_objects([str(real_corpora)], LOCAL)
    first = build_plan(objects, LOCAL, target_shard_bytes=64 * KIB)
    again = build_plan(list(reversed(objects)), LOCAL, target_shard_bytes=64 * KIB, threads=1)
    assert first.to_json() == again.to_json()


def test_shard_ids_unique(real_corpora: pathlib.Path) -> None:
    plan = build_plan(list_objects([str(real_corpora)], LOCAL), LOCAL, target_shard_bytes=64 * KIB)
    ids = [shard.shard_id for shard in plan.shards]
    assert len(ids) == len(set(ids))


def test_shard_id_stable_and_file_name_safe() -> None:
    info = ObjectInfo(url="s3://bucket/crawl/CC MAIN+00001.warc.gz", size=100, etag="abc", mtime=1.5)
    shard_id = shard_id_for(info)
    assert shard_id == shard_id_for(ObjectInfo(url=info.url, size=100, etag="abc", mtime=1.5))
    assert re.fullmatch(r"[0-9a-f]{16}-[A-Za-z0-9._-]+", shard_id)
    assert shard_id.endswith("CC_MAIN_00001.warc.gz")


def test_shard_id_pinned_value() -> None:
    # Resume can reuse saved work only while shard ids stay the same, so this value changes only on purpose.
    info = ObjectInfo(url="s3://bucket/a.jsonl", size=10, etag="e1", mtime=None)
    assert shard_id_for(info, byte_range=(0, 5)) == "beb93aeb797365da-a.jsonl.b0"


def test_shard_id_changes_with_version() -> None:
    info = ObjectInfo(url="s3://bucket/a.jsonl", size=10, etag="e1", mtime=1.0)
    rewritten = ObjectInfo(url="s3://bucket/a.jsonl", size=10, etag="e2", mtime=1.0)
    assert shard_id_for(info) != shard_id_for(rewritten)


def test_shard_id_uses_mtime_without_etag() -> None:
    info = ObjectInfo(url="/data/a.jsonl", size=10, etag=None, mtime=1.0)
    touched = ObjectInfo(url="/data/a.jsonl", size=10, etag=None, mtime=2.0)
    assert shard_id_for(info) != shard_id_for(touched)


def test_shard_id_differs_per_part() -> None:
    info = ObjectInfo(url="s3://bucket/a.parquet", size=10, etag="e1", mtime=None)
    ids = {
        shard_id_for(info),
        shard_id_for(info, row_groups=(0, 2)),
        shard_id_for(info, row_groups=(2, 4)),
        shard_id_for(info, byte_range=(0, 2)),
    }
    assert len(ids) == 4


def test_plan_json_round_trip(real_corpora: pathlib.Path, tmp_path: pathlib.Path) -> None:
    parquet = tmp_path / "data.parquet"
    parquet.write_bytes(_parquet_bytes(tmp_path, row_groups=4))
    objects = list_objects([str(real_corpora), str(parquet)], LOCAL)
    plan = build_plan(objects, LOCAL, target_shard_bytes=16 * KIB)

    restored = Plan.from_json(plan.to_json())

    assert restored == plan
    assert any(shard.byte_range is not None for shard in restored.shards)
    assert any(shard.row_groups is not None for shard in restored.shards)


def test_plan_json_is_plain_json(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n")
    document = json.loads(_plan_local([path]).to_json())
    assert document["schema_version"] == 1
    assert document["shards"][0]["url"] == str(path)


def test_plan_from_json_rejects_wrong_totals(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n")
    document = json.loads(_plan_local([path]).to_json())
    document["total_bytes"] += 1
    with pytest.raises(ValidationError, match="do not match"):
        Plan.from_json(json.dumps(document))


def test_shard_rejects_both_ranges() -> None:
    with pytest.raises(ValidationError, match="both byte_range and row_groups"):
        Shard(
            shard_id="x",
            url="/a",
            size=1,
            etag=None,
            mtime=None,
            format="jsonl",
            compression=None,
            byte_range=(0, 1),
            row_groups=(0, 1),
            estimated_bytes=1,
        )


def test_format_table_lists_every_shard(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "large.jsonl"
    path.write_bytes(_jsonl_bytes(2000))
    plan = _plan_local([path], target_shard_bytes=64 * KIB)
    table = plan.format_table()
    assert table.startswith("1 objects,")
    for shard in plan.shards:
        assert shard.shard_id in table


# Credentials


def test_plan_output_hides_credentials(
    s3_endpoint: str, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "plan-secret-value-5f3a"
    storage = StorageOptions.from_cli(
        endpoint_url=s3_endpoint, storage_options=["key=testing", f"secret={secret}"]
    )
    fs, _ = filesystem_for(f"s3://{s3_bucket}", storage)
    fs.pipe({f"{s3_bucket}/c/a.jsonl": _jsonl_bytes(3)})

    with caplog.at_level(logging.DEBUG, logger="scanner"):
        plan = build_plan(list_objects([f"s3://{s3_bucket}/c/"], storage), storage)

    assert len(plan.shards) == 1
    for text in (plan.to_json(), plan.format_table(), repr(plan), repr(storage), caplog.text):
        assert secret not in text
