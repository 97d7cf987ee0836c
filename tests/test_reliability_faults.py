"""Faults and determinism: flaky storage, crashed workers, foreign checkpoints, unwritable
directories, and equal statistics for any worker count, shard order and storage.

Real components throughout: a local Ray, moto's S3 server on 127.0.0.1 behind the
fault proxy of tests/faultproxy.py. The only mocks simulate a full disk or a
read-only directory, and each is marked as a simulation where it is used.
"""

import builtins
import errno
import json
import os
import pathlib
import random
import shutil

import pytest

import scanner.runner
from faultproxy import FaultProxy
from scanner.bundle import Bundle, BundleMismatchError, merge_all
from scanner.checkpoints import CheckpointStore, scan_key
from scanner.cli import exit_code_for, main
from scanner.config import ScanConfig
from scanner.result import build_result
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus, write_jsonl_gz
from scanner.settings import SketchSettings
from scanner.shard_task import CRASH_AFTER_CHECKPOINT_VARIABLE
from scanner.storage import StorageOptions

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKETCH = SketchSettings(hll_precision=12, countmin_blocks_log2=12)
FILES = 6
DOCUMENTS_PER_FILE = 150

# Fields of result.json that describe the run, not the corpus: left out when two runs are compared.
RUN_DETAILS = ("seconds", "storage", "sources", "storage_retries", "resumed_shards", "scanner_version")


def statistics(result: dict) -> dict:
    """The corpus statistics of a result.json document: everything but the run details."""
    return {key: value for key, value in result.items() if key not in RUN_DETAILS}


def without_locations(result: dict) -> dict:
    """Statistics without the fields that name object URLs, for comparing local files with S3."""
    compared = statistics(result)
    compared.pop("truncated_objects")
    compared.pop("warnings")
    compared["errors"] = {key: value for key, value in compared["errors"].items() if key != "samples"}
    return compared


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("corpus")
    generator = MarkovCorpus(seed=11, filler_words=5_000)
    for index in range(FILES):
        write_jsonl_gz(
            directory / f"part-{index:02d}.jsonl.gz",
            generator.documents(DOCUMENTS_PER_FILE, mean_words=80),
            index * DOCUMENTS_PER_FILE,
        )
    return directory


def run(sources, out, **options):
    """Scan with the library API; return the outcome and its result.json document."""
    config = ScanConfig(sources=[str(source) for source in sources], out=str(out), sketch=SKETCH, **options)
    outcome = run_scan(config, progress_enabled=False)
    return outcome, json.loads(build_result(outcome).to_json())


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory):
    """The result.json document of a clean local scan with two workers."""
    _, result = run([corpus], tmp_path_factory.mktemp("clean"), num_workers=2)
    return result


@pytest.fixture
def s3_corpus(corpus, s3_client, s3_bucket) -> str:
    for path in sorted(corpus.iterdir()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"crawl/{path.name}", Body=path.read_bytes())
    return f"s3://{s3_bucket}/crawl/"


def assert_each_shard_once(outcome) -> None:
    planned = sorted(shard.shard_id for shard in outcome.plan.shards)
    summarized = sorted(summary["shard_id"] for summary in outcome.summaries)
    assert summarized == planned
    assert list(outcome.bundle.shard_ids) == planned


# Storage that returns errors or drops connections.


def test_s3_faults_match_clean_run(clean, s3_corpus, s3_endpoint, tmp_path):
    with FaultProxy(s3_endpoint, fault_rate=0.25, seed=3) as proxy:
        storage = StorageOptions(endpoint_url=proxy.url)
        outcome, result = run([s3_corpus], tmp_path / "out", num_workers=2, storage=storage)

    assert result["shards"]["failed"] == 0
    assert without_locations(result) == without_locations(clean)
    assert_each_shard_once(outcome)
    for kind in ("slowdown", "internal", "drop"):
        assert proxy.injected[kind] >= 1, f"no {kind} fault was injected in {proxy.requests} requests"
    # Each error response costs one botocore retry, except the last attempt of a call whose every
    # attempt failed: s3fs calls again, and botocore counts from 1. With 4 attempts that is at most
    # 1 in 4. A dropped keep-alive connection is often resent by aiohttp itself, unseen by botocore.
    error_responses = proxy.injected["slowdown"] + proxy.injected["internal"]
    assert result["storage_retries"] <= sum(proxy.injected.values())
    assert result["storage_retries"] >= error_responses * 3 // 4


def test_s3_object_never_readable_fails_cleanly(s3_corpus, s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    broken_key = "crawl/part-03.jsonl.gz"
    real_build_plan = scanner.runner.build_plan

    with FaultProxy(s3_endpoint) as proxy:

        def build_plan_then_break_object(*args, **kwargs):
            # Planning reads each object's first bytes, so the object breaks after that.
            plan = real_build_plan(*args, **kwargs)
            proxy.fail_keys = (f"/{s3_bucket}/{broken_key}",)
            return plan

        monkeypatch.setattr(scanner.runner, "build_plan", build_plan_then_break_object)
        storage = StorageOptions(endpoint_url=proxy.url, options={"max_attempts": 2, "retries": 2})
        outcome, result = run([s3_corpus], tmp_path / "out", num_workers=2, storage=storage, task_retries=1)

    assert exit_code_for(build_result(outcome)) == 3
    assert result["shards"]["failed"] == 1
    assert result["shards"]["completed"] == FILES - 1
    assert result["shards"]["failures"][0]["url"].endswith(broken_key)
    assert "OSError" in result["shards"]["failures"][0]["error"]
    assert result["documents"] == (FILES - 1) * DOCUMENTS_PER_FILE
    # Per task attempt, at most: HEAD in 2 s3fs calls of 2 botocore attempts, and the ranged GET in
    # 2 s3fs reads of 2 calls of 2 attempts. task_retries=1 gives two task attempts.
    assert 1 <= proxy.injected["internal"] <= 2 * (2 * 2 + 2 * 2 * 2)


def test_s3_object_unreadable_from_planning_fails_alone(s3_corpus, s3_endpoint, s3_bucket, tmp_path):
    broken_key = "crawl/part-03.jsonl.gz"
    with FaultProxy(s3_endpoint) as proxy:
        proxy.fail_keys = (f"/{s3_bucket}/{broken_key}",)
        storage = StorageOptions(endpoint_url=proxy.url, options={"max_attempts": 2, "retries": 2})
        outcome, result = run([s3_corpus], tmp_path / "out", num_workers=2, storage=storage, task_retries=1)

    assert exit_code_for(build_result(outcome)) == 3
    assert result["shards"]["failed"] == 1
    assert result["shards"]["failures"][0]["url"].endswith(broken_key)
    assert result["documents"] == (FILES - 1) * DOCUMENTS_PER_FILE


# Ray workers that die.


def test_worker_killed_after_checkpoint_merged_once(clean, corpus, tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    # Ray starts its workers after this, so they inherit the variable.
    monkeypatch.setenv(CRASH_AFTER_CHECKPOINT_VARIABLE, str(markers))

    outcome, result = run([corpus], tmp_path / "out", num_workers=2)

    assert len(list(markers.iterdir())) == FILES, "every shard's worker should have died once after its checkpoint"
    assert result["shards"]["failed"] == 0
    assert statistics(result) == statistics(clean)
    assert_each_shard_once(outcome)


def test_crash_hook_is_inert_without_variable(corpus, tmp_path, monkeypatch):
    monkeypatch.delenv(CRASH_AFTER_CHECKPOINT_VARIABLE, raising=False)

    outcome, result = run([corpus], tmp_path / "out", num_workers=1, task_retries=0)

    assert result["shards"]["failed"] == 0
    assert result["documents"] == FILES * DOCUMENTS_PER_FILE


# Checkpoints and bundles made with other settings.


def test_resume_with_other_seed_reuses_nothing(corpus, tmp_path):
    state = tmp_path / "state"
    run([corpus], tmp_path / "first", num_workers=2, state_dir=str(state))
    other_seed = SKETCH.model_copy(update={"seed": 1})

    config = ScanConfig(
        sources=[str(corpus)], out=str(tmp_path / "second"), sketch=other_seed, num_workers=2,
        state_dir=str(state), resume=True,
    )
    resumed = run_scan(config, progress_enabled=False)
    fresh = run_scan(config.model_copy(update={"resume": False, "state_dir": str(tmp_path / "fresh")}), False)

    assert resumed.resumed_shards == 0
    assert resumed.bundle.settings.seed == 1
    assert resumed.bundle.to_bytes() == fresh.bundle.to_bytes()


def test_resume_over_foreign_checkpoints_is_refused(corpus, tmp_path, capsys):
    state = tmp_path / "state"
    out = tmp_path / "out"
    common = [str(corpus), "--state-dir", str(state), "--num-workers", "2", "--no-progress", "--hll-precision", "12"]
    assert main(["scan", *common, "--out", str(tmp_path / "first"), "--seed", "7"]) == 0
    # Put the seed-7 checkpoints where a scan with the default seed looks for its own.
    config = ScanConfig(sources=[str(corpus)], out=str(out), sketch=SketchSettings(hll_precision=12))
    [seed_7_directory] = list(state.iterdir())
    shutil.copytree(seed_7_directory, state / f"scan-{scan_key(config)}")
    capsys.readouterr()

    code = main(["scan", *common, "--out", str(out), "--resume"])

    error = capsys.readouterr().err
    assert code == 2
    assert "seed: 7 != " in error
    assert "Traceback" not in error
    assert not (out / "result.json").exists()


def test_checkpoint_of_other_settings_fails_to_load(corpus, tmp_path):
    outcome, _ = run([corpus], tmp_path / "out", num_workers=2)
    store = CheckpointStore(outcome.config.resolved_state_dir, outcome.config)
    shard_id = outcome.summaries[0]["shard_id"]
    other = ScanConfig(sources=[str(corpus)], out=str(tmp_path / "out"), sketch=SKETCH.model_copy(update={"hll_precision": 10}))

    assert Bundle.from_bytes(store.load_bundle_bytes(shard_id)).documents == DOCUMENTS_PER_FILE
    store.settings = other.sketch
    with pytest.raises(BundleMismatchError, match="hll_precision: 12 != 10"):
        store.load_bundle_bytes(shard_id)


def test_bundle_with_other_normalization_is_refused(corpus, tmp_path):
    outcome, _ = run([corpus], tmp_path / "out", num_workers=2)
    # A future or past normalization cannot be built through the validated model, so construct it.
    foreign_settings = SketchSettings.model_construct(**{**SKETCH.model_dump(), "normalization": "nfc-v0"})
    foreign = Bundle(settings=foreign_settings, shard_ids=("foreign",))

    with pytest.raises(BundleMismatchError, match="normalization: 'nfkc-casefold-zw-v1' != 'nfc-v0'"):
        outcome.bundle.merge(foreign)
    with pytest.raises(BundleMismatchError, match="normalization 'nfc-v0'"):
        Bundle.from_bytes(foreign.to_bytes())


# Unwritable state and output directories.


def assert_one_line_error(capsys, code: int, path: pathlib.Path, reason: str) -> None:
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(error) == 1, error
    assert str(path) in error[0]
    assert reason in error[0]


def test_read_only_state_directory_is_reported(corpus, tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o555)
    if os.access(state, os.W_OK):
        pytest.skip("running as root, so chmod does not make a directory read-only here")

    code = main(["scan", str(corpus), "--out", str(tmp_path / "out"), "--state-dir", str(state), "--no-progress"])

    assert_one_line_error(capsys, code, state, "Permission denied")


def test_read_only_output_directory_is_reported(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):
        pytest.skip("running as root, so chmod does not make a directory read-only here")

    code = main(["scan", str(corpus), "--out", str(out), "--state-dir", str(tmp_path / "state"), "--no-progress"])

    assert_one_line_error(capsys, code, out, "Permission denied")


def full_disk_under(directory: pathlib.Path):
    """An `os.fsync` that fails with ENOSPC for files under `directory`.

    A simulation: no small filesystem can be mounted here without root, so the
    write call raises as a full disk would, and nothing else changes.
    """
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}").startswith(str(directory)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    return fsync


def test_full_state_directory_is_reported(corpus, tmp_path, capsys, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setattr(os, "fsync", full_disk_under(state))

    code = main(["scan", str(corpus), "--out", str(tmp_path / "out"), "--state-dir", str(state), "--no-progress"])

    assert_one_line_error(capsys, code, state, "No space left on device")


def test_full_output_directory_is_reported(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fsync", full_disk_under(out))

    code = main(["scan", str(corpus), "--out", str(out), "--state-dir", str(tmp_path / "state"), "--no-progress"])

    assert_one_line_error(capsys, code, out, "No space left on device")


# Determinism.


def shuffled_plans(seed: int):
    """A `build_plan` that returns the real plan with its shards, and so their submission order, shuffled."""
    real_build_plan = scanner.runner.build_plan

    def build_plan(*args, **kwargs):
        plan = real_build_plan(*args, **kwargs)
        random.Random(seed).shuffle(plan.shards)
        return plan

    return build_plan


def test_worker_counts_and_shard_orders_agree(clean, corpus, tmp_path, monkeypatch):
    results = {}
    for workers in (1, 4):
        _, results[f"{workers} workers"] = run([corpus], tmp_path / f"w{workers}", num_workers=workers)
    for seed in (1, 2):
        monkeypatch.setattr(scanner.runner, "build_plan", shuffled_plans(seed))
        _, results[f"shuffled {seed}"] = run([corpus], tmp_path / f"s{seed}", num_workers=2)

    for name, result in results.items():
        assert statistics(result) == statistics(clean), name


def test_checkpoints_merge_in_any_order(corpus, tmp_path):
    outcome, _ = run([corpus], tmp_path / "out", num_workers=2)
    store = CheckpointStore(outcome.config.resolved_state_dir, outcome.config)
    shards = [Bundle.from_bytes(store.load_bundle_bytes(shard_id)) for shard_id in outcome.bundle.shard_ids]
    generator = random.Random(5)

    for _ in range(5):
        generator.shuffle(shards)
        assert merge_all(shards).to_bytes() == outcome.bundle.to_bytes()


def test_local_and_s3_statistics_agree(clean, s3_corpus, s3_endpoint, tmp_path):
    _, result = run([s3_corpus], tmp_path / "out", num_workers=2, storage=StorageOptions(endpoint_url=s3_endpoint))

    assert result["storage_retries"] == 0
    assert without_locations(result) == without_locations(clean)


def read_only_under(directory: pathlib.Path):
    """Return an `open` that rejects writes under `directory` as a read-only directory would.

    A simulation: when the tests run as root, chmod does not make a directory
    read-only, and the chmod tests above skip.
    """
    real_open = builtins.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and str(file).startswith(str(directory)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, mode, *args, **kwargs)

    return guarded_open


@pytest.mark.parametrize("which", ["state", "out"])
def test_unwritable_directory_is_reported_simulated(corpus, tmp_path, capsys, monkeypatch, which):
    state, out = tmp_path / "state", tmp_path / "out"
    monkeypatch.setattr(builtins, "open", read_only_under(state if which == "state" else out))

    code = main(["scan", str(corpus), "--out", str(out), "--state-dir", str(state), "--no-progress"])

    assert_one_line_error(capsys, code, state if which == "state" else out, "Permission denied")
