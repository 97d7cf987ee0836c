"""Packing small shards into fewer Ray tasks: the pack rule, equal statistics with packing
on and off, resuming from pack checkpoints, and a pack with an unreadable member.

Real components: a local Ray started by each scan, local files. The pack rule tests call
the pure function `plan_packs` on planned shards without Ray.
"""

import itertools
import json
import logging
import pathlib
import random
import shutil

import pytest
from test_reliability_faults import statistics

import scanner.runner
from scanner.bundle import Bundle, merge_all
from scanner.checkpoints import Checkpoint, CheckpointStore, select_checkpoints
from scanner.config import ScanConfig
from scanner import packing
from scanner.packing import MAX_PACK_SHARDS, TASKS_PER_WORKER, pack_id_for, pack_limit_bytes, plan_packs
from scanner.plan import Shard, build_plan
from scanner.result import build_result
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus
from scanner.settings import SketchSettings
from scanner.shard_task import CRASH_AFTER_CHECKPOINT_VARIABLE, scan_shard, scan_shards
from scanner.sources import list_objects

SKETCH = SketchSettings(hll_precision=12, countmin_blocks_log2=12)
FILES = 80
DOCUMENTS_PER_FILE = 12
# Caps the pack size, so the small test corpus (about 750 KB) makes several packs.
PACK_BYTES = 64 << 10
SUMMARY_COUNTERS = ("documents", "empty_documents", "bytes", "tokens", "estimated_bytes", "url", "report")


def make_shards(sizes: list[int]) -> list[Shard]:
    return [
        Shard(
            shard_id=f"{index:016x}-part-{index:04d}.jsonl",
            url=f"file:///corpus/part-{index:04d}.jsonl",
            size=size,
            etag=None,
            mtime=None,
            format="jsonl",
            compression=None,
            estimated_bytes=size,
        )
        for index, size in enumerate(sizes)
    ]


def flattened(packs) -> list[Shard]:
    return [shard for pack in packs for shard in pack]


# The pack rule.


def test_few_shards_not_packed():
    shards = make_shards([1_000] * (TASKS_PER_WORKER * 2))

    packs = plan_packs(shards, workers=2, max_pack_bytes=1 << 30, min_pack_bytes=0)

    assert packs == [(shard,) for shard in shards]


def test_packs_keep_order_and_every_shard():
    shards = make_shards([random.Random(1).randrange(1, 50_000) for _ in range(500)])

    packs = plan_packs(shards, workers=1, max_pack_bytes=1 << 30, min_pack_bytes=0)

    assert flattened(packs) == shards
    assert 1 < len(packs) < len(shards)


def test_packs_within_byte_limit_and_full():
    sizes = [random.Random(2).randrange(1, 50_000) for _ in range(500)]
    shards = make_shards(sizes)
    limit = pack_limit_bytes(sum(sizes), 2, 1 << 30, 0)

    packs = plan_packs(shards, workers=2, max_pack_bytes=1 << 30, min_pack_bytes=0)

    for pack, following in itertools.pairwise(packs):
        pack_bytes = sum(shard.estimated_bytes for shard in pack)
        assert pack_bytes <= limit
        # Greedy: the next shard did not fit.
        assert pack_bytes + following[0].estimated_bytes > limit
    assert sum(shard.estimated_bytes for shard in packs[-1]) <= limit


def test_at_least_tasks_per_worker_packs():
    for workers in (1, 2, 4, 8):
        sizes = [random.Random(workers).randrange(1, 10_000) for _ in range(TASKS_PER_WORKER * workers * 10)]

        packs = plan_packs(make_shards(sizes), workers=workers, max_pack_bytes=1 << 30, min_pack_bytes=0)

        assert len(packs) >= TASKS_PER_WORKER * workers, f"{workers} workers"
        assert len(packs) < len(sizes), f"{workers} workers"


def test_target_shard_bytes_caps_packs():
    shards = make_shards([1_000] * 1_000)

    packs = plan_packs(shards, workers=1, max_pack_bytes=10_000)

    assert max(sum(shard.estimated_bytes for shard in pack) for pack in packs) == 10_000
    assert len(packs) == 100


def test_min_pack_bytes_raises_limit():
    shards = make_shards([10_000] * 100)

    packs = plan_packs(shards, workers=1, max_pack_bytes=1 << 30, min_pack_bytes=500_000)

    assert pack_limit_bytes(1_000_000, 1, 1 << 30, 500_000) == 500_000
    assert [len(pack) for pack in packs] == [50, 50]


def test_large_shard_is_packed_alone():
    sizes = [100] * 100
    sizes[40] = 10**9
    shards = make_shards(sizes)

    packs = plan_packs(shards, workers=1, max_pack_bytes=1 << 20, min_pack_bytes=0)

    assert (shards[40],) in packs
    assert flattened(packs) == shards


def test_empty_shards_capped_per_pack():
    shards = make_shards([0] * (MAX_PACK_SHARDS * 3 + 1))

    packs = plan_packs(shards, workers=1, max_pack_bytes=1 << 20)

    assert [len(pack) for pack in packs] == [MAX_PACK_SHARDS] * 3 + [1]


def test_invalid_pack_arguments_rejected():
    shards = make_shards([1] * 10)
    with pytest.raises(ValueError, match="invalid worker count 0"):
        plan_packs(shards, workers=0, max_pack_bytes=1)
    with pytest.raises(ValueError, match="invalid maximum pack size 0"):
        plan_packs(shards, workers=1, max_pack_bytes=0)


def test_pack_id_depends_on_ids_not_order():
    first = pack_id_for(["b", "a", "c"])

    assert first == pack_id_for(["a", "b", "c"])
    assert first != pack_id_for(["a", "b"])
    assert first.startswith("pack-")
    assert len(first) == len("pack-") + 16


def test_overlapping_checkpoints_chosen_once():
    summaries = {name: {"shard_id": name} for name in "abcde"}
    pack = Checkpoint(pack_id_for("abc"), tuple(summaries[name] for name in "abc"))
    alone = [Checkpoint(name, (summaries[name],)) for name in "abcd"]
    unplanned = Checkpoint(pack_id_for("de"), (summaries["d"], summaries["e"]))

    chosen = select_checkpoints([*alone, pack, unplanned], planned_ids=set("abcd"))

    assert sorted(checkpoint.checkpoint_id for checkpoint in chosen) == sorted([pack.checkpoint_id, "d"])


# One task's pack bundle.


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    """Small plain JSONL files, about 9 KB each, with dates in four months."""
    directory = tmp_path_factory.mktemp("small-files")
    generator = MarkovCorpus(seed=21, filler_words=5_000)
    for index in range(FILES):
        documents = generator.documents(DOCUMENTS_PER_FILE, mean_words=120)
        lines = []
        for offset, text in enumerate(documents):
            record = {"id": index * DOCUMENTS_PER_FILE + offset, "text": text, "date": f"2024-{1 + offset % 4:02d}-15"}
            lines.append(json.dumps(record))
        (directory / f"part-{index:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_pack_bundle_equals_merged_bundles(corpus, tmp_path):
    config = ScanConfig(sources=[str(corpus)], out=str(tmp_path / "out"), sketch=SKETCH, group_by="snapshot")
    shards = build_plan(list_objects(config.sources, config.storage), config.storage).shards[:10]

    alone = [scan_shard(shard, config) for shard in shards]
    summaries, pack_bytes = scan_shards(shards, config)

    assert pack_bytes == merge_all([Bundle.from_bytes(bundle) for _, bundle in alone]).to_bytes()
    for packed, single in zip(summaries, alone):
        for key in (*SUMMARY_COUNTERS, "shard_id", "byte_range", "row_groups", "storage_retries"):
            assert packed[key] == single[0][key], key
    assert set(summaries[0]) == set(alone[0][0])


# Scans with packing on and off.


def run(sources, out, **options):
    """Scan with the library API; return the outcome and its result.json document."""
    options = {"sketch": SKETCH, "target_shard_bytes": PACK_BYTES, **options}
    config = ScanConfig(sources=[str(source) for source in sources], out=str(out), **options)
    outcome = run_scan(config, progress_enabled=False)
    return outcome, json.loads(build_result(outcome).to_json())


def per_shard(outcome) -> dict[str, dict]:
    return {
        summary["shard_id"]: {key: summary[key] for key in SUMMARY_COUNTERS} for summary in outcome.summaries
    }


def checkpoint_files(outcome) -> list[pathlib.Path]:
    return sorted(pathlib.Path(outcome.config.resolved_state_dir).rglob("*.json"))


def assert_each_shard_once(outcome) -> None:
    planned = sorted(shard.shard_id for shard in outcome.plan.shards)
    assert sorted(summary["shard_id"] for summary in outcome.summaries) == planned
    assert list(outcome.bundle.shard_ids) == planned


@pytest.fixture(scope="module")
def unpacked(corpus, tmp_path_factory):
    """Outcome and result.json document of a scan without packing, one worker."""
    return run([corpus], tmp_path_factory.mktemp("unpacked"), num_workers=1, pack_shards=False)


def test_packing_gives_equal_statistics(corpus, unpacked, tmp_path, caplog):
    unpacked_outcome, unpacked_result = unpacked
    with caplog.at_level(logging.INFO, logger="scanner.runner"):
        packed_outcome, packed_result = run([corpus], tmp_path / "packed", num_workers=1)

    assert packed_result["shards"]["completed"] == FILES
    assert statistics(packed_result) == statistics(unpacked_result)
    assert per_shard(packed_outcome) == per_shard(unpacked_outcome)
    assert_each_shard_once(packed_outcome)
    packs = checkpoint_files(packed_outcome)
    assert len(checkpoint_files(unpacked_outcome)) == FILES
    assert 1 < len(packs) < FILES // 4
    assert all(path.name.startswith("pack-") for path in packs)
    assert f"packed {FILES} shards into {len(packs)} tasks" in caplog.text


def test_packing_off_below_tasks_per_worker(corpus, unpacked, tmp_path, monkeypatch):
    # 80 shards and 5 workers: not more than 16 shards per worker. The rule runs on
    # the driver, so a larger TASKS_PER_WORKER here spares starting 20 workers.
    monkeypatch.setattr(packing, "TASKS_PER_WORKER", 16)
    outcome, result = run([corpus], tmp_path / "out", num_workers=5)

    assert len(checkpoint_files(outcome)) == FILES
    assert statistics(result) == statistics(unpacked[1])


def test_pack_worker_killed_merged_once(corpus, unpacked, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    # Ray starts its workers after this, so they inherit the variable.
    monkeypatch.setenv(CRASH_AFTER_CHECKPOINT_VARIABLE, str(markers))

    outcome, result = run([corpus], tmp_path / "out", num_workers=1)

    packs = checkpoint_files(outcome)
    assert sorted(marker.name for marker in markers.iterdir()) == sorted(path.stem for path in packs)
    assert result["shards"]["failed"] == 0
    assert statistics(result) == statistics(unpacked[1])
    assert_each_shard_once(outcome)


# Resuming from pack checkpoints.


def test_resume_after_lost_packs(corpus, unpacked, tmp_path):
    first, _ = run([corpus], tmp_path / "first", num_workers=1)
    shards_directory = checkpoint_files(first)[0].parent
    packs = sorted(shards_directory.glob("pack-*.json"))
    assert len(packs) >= 4
    # A scan stopped before these packs finished leaves no checkpoint for them. Every second pack
    # is lost, so the remaining shards are not one consecutive run.
    lost = packs[::2]
    for path in lost:
        path.unlink()
        path.with_suffix(".bundle").unlink()
    kept_shards = sum(len(json.loads(path.read_text())["shards"]) for path in packs[1::2])

    for workers in (1, 2, 3):
        state = tmp_path / f"state-{workers}"
        shutil.copytree(pathlib.Path(first.config.resolved_state_dir), state)

        outcome, result = run(
            [corpus], tmp_path / f"resumed-{workers}", num_workers=workers, state_dir=str(state), resume=True
        )

        assert outcome.resumed_shards == kept_shards, f"{workers} workers"
        assert statistics(result) == statistics(unpacked[1]), f"{workers} workers"
        assert per_shard(outcome) == per_shard(unpacked[0]), f"{workers} workers"
        assert_each_shard_once(outcome)


def test_resume_over_overlapping_checkpoints(corpus, unpacked, tmp_path):
    state = tmp_path / "state"
    run([corpus], tmp_path / "alone", num_workers=1, state_dir=str(state), pack_shards=False)
    run([corpus], tmp_path / "packed", num_workers=1, state_dir=str(state))

    outcome, result = run([corpus], tmp_path / "resumed", num_workers=2, state_dir=str(state), resume=True)

    assert outcome.resumed_shards == FILES
    assert statistics(result) == statistics(unpacked[1])
    assert_each_shard_once(outcome)


def test_pack_checkpoint_with_wrong_id_rejected(corpus, tmp_path):
    outcome, _ = run([corpus], tmp_path / "out", num_workers=1)
    pack = checkpoint_files(outcome)[0]
    summary = json.loads(pack.read_text())
    summary["shards"] = summary["shards"][1:]
    pack.write_text(json.dumps(summary))

    with pytest.raises(ValueError, match="is not a shard summary"):
        CheckpointStore(outcome.config.resolved_state_dir, outcome.config).completed()


# A pack with an unreadable shard.


def test_unreadable_shard_in_pack_fails_alone(corpus, unpacked, tmp_path, monkeypatch, caplog):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    broken = copy / "part-013.jsonl"
    real_build_plan = scanner.runner.build_plan

    def build_plan_then_delete(*args, **kwargs):
        # Planning reads each object's first bytes, so the file goes after that.
        plan = real_build_plan(*args, **kwargs)
        broken.unlink()
        return plan

    monkeypatch.setattr(scanner.runner, "build_plan", build_plan_then_delete)
    with caplog.at_level(logging.INFO, logger="scanner.runner"):
        outcome, result = run([copy], tmp_path / "out", num_workers=1, task_retries=1)

    assert result["shards"]["failed"] == 1
    assert result["shards"]["completed"] == FILES - 1
    [failure] = result["shards"]["failures"]
    assert failure["url"].endswith("part-013.jsonl")
    assert "FileNotFoundError" in failure["error"]
    assert result["documents"] == (FILES - 1) * DOCUMENTS_PER_FILE
    assert caplog.text.count("so each shard runs again alone") == 1
    assert by_file(outcome) == {name: row for name, row in by_file(unpacked[0]).items() if name != broken.name}


def by_file(outcome) -> dict[str, dict]:
    """Per-shard counters by file name, for scans of copies of one corpus."""
    return {
        row["url"].rsplit("/", 1)[-1]: {key: row[key] for key in ("documents", "empty_documents", "bytes", "tokens")}
        for row in per_shard(outcome).values()
    }
