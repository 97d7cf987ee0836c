"""The scan pipeline on a real local Ray and a real S3 endpoint on 127.0.0.1."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

from scanner.bundle import Bundle
from scanner.config import ScanConfig
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus, write_jsonl_gz
from scanner.settings import SketchSettings
from scanner.storage import StorageOptions

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKETCH = SketchSettings(hll_precision=12, countmin_blocks_log2=12)


def statistics_of(bundle: Bundle) -> bytes:
    """Bundle bytes without shard ids, which name the storage location."""
    bundle.shard_ids = ()
    return bundle.to_bytes()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("corpus")
    generator = MarkovCorpus(seed=3, filler_words=5_000)
    for index in range(6):
        write_jsonl_gz(directory / f"part-{index:02d}.jsonl.gz", generator.documents(150, mean_words=80), index * 150)
    return directory


def scan(sources, out, **options):
    config = ScanConfig(sources=[str(source) for source in sources], out=str(out), sketch=SKETCH, **options)
    return run_scan(config, progress_enabled=False)


def test_one_and_two_workers_agree(corpus, tmp_path):
    one = scan([corpus], tmp_path / "one", num_workers=1)
    two = scan([corpus], tmp_path / "two", num_workers=2)

    assert one.bundle.documents == 900
    assert one.failures == []
    assert two.failures == []
    assert one.bundle.to_bytes() == two.bundle.to_bytes()


def test_local_and_s3_agree(corpus, tmp_path, s3_endpoint, s3_client, s3_bucket):
    for path in sorted(corpus.iterdir()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"crawl/{path.name}", Body=path.read_bytes())
    storage = StorageOptions(endpoint_url=s3_endpoint)

    local = scan([corpus], tmp_path / "local", num_workers=2)
    remote = scan([f"s3://{s3_bucket}/crawl/"], tmp_path / "remote", num_workers=2, storage=storage)

    assert remote.failures == []
    assert len(remote.summaries) == 6
    assert statistics_of(local.bundle) == statistics_of(remote.bundle)


def test_checkpoints_in_object_storage(corpus, tmp_path, s3_endpoint, s3_client, s3_bucket):
    storage = StorageOptions(endpoint_url=s3_endpoint)
    state = f"s3://{s3_bucket}/state"

    first = scan([corpus], tmp_path / "first", num_workers=2, storage=storage, state_dir=state)
    resumed = scan([corpus], tmp_path / "second", num_workers=2, storage=storage, state_dir=state, resume=True)

    assert resumed.resumed_shards == 6
    assert resumed.bundle.to_bytes() == first.bundle.to_bytes()


def test_many_objects_under_one_prefix(tmp_path, s3_endpoint, s3_client, s3_bucket):
    lines = [json.dumps({"text": f"document number {index} of the listing test"}) for index in range(1_050)]
    for index, line in enumerate(lines):
        s3_client.put_object(Bucket=s3_bucket, Key=f"many/{index:05d}.jsonl", Body=line.encode() + b"\n")

    outcome = scan(
        [f"s3://{s3_bucket}/many/"],
        tmp_path / "out",
        num_workers=2,
        storage=StorageOptions(endpoint_url=s3_endpoint),
    )

    assert len(outcome.plan.shards) == 1_050
    assert outcome.bundle.documents == 1_050
    assert outcome.failures == []


def test_failed_shard_is_reported_and_others_merged(corpus, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ok.jsonl").write_text('{"text": "fine document"}\n')
    (broken / "bad.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")

    outcome = scan([broken], tmp_path / "out", num_workers=1)

    assert outcome.bundle.documents == 1
    skipped = sum(summary["report"]["skipped"].get("corrupt_parquet", 0) for summary in outcome.summaries)
    assert skipped + len(outcome.failures) >= 1


DRIVER = """
import sys
from scanner.config import ScanConfig
from scanner.result import build_result
from scanner.runner import run_scan
from scanner.settings import SketchSettings
config = ScanConfig(sources=[sys.argv[1]], out=sys.argv[2], num_workers=1, resume=True,
                    sketch=SketchSettings(hll_precision=12, countmin_blocks_log2=12),
                    pack_shards=sys.argv[4:] != ["no-pack"])
outcome = run_scan(config, progress_enabled=False)
open(sys.argv[3], "wb").write(outcome.bundle.to_bytes())
open(sys.argv[3] + ".json", "w").write(build_result(outcome).to_json())
"""

# Fields of result.json that describe the run, not the corpus.
RUN_DETAILS = ("seconds", "storage_retries", "resumed_shards", "scanner_version")


def result_statistics(bundle_path: pathlib.Path) -> dict:
    """The result.json statistics that the driver wrote beside the bundle, without the run details."""
    result = json.loads(pathlib.Path(f"{bundle_path}.json").read_text())
    return {key: value for key, value in result.items() if key not in RUN_DETAILS}


def assert_each_shard_once(bundle_path: pathlib.Path, shards: int) -> None:
    bundle = Bundle.from_bytes(bundle_path.read_bytes())
    result = json.loads(pathlib.Path(f"{bundle_path}.json").read_text())
    assert len(bundle.shard_ids) == len(set(bundle.shard_ids)) == shards
    assert result["shards"]["completed"] == shards
    assert result["shards"]["failed"] == 0


def run_driver(corpus, out, bundle_path, environment, pack=True):
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(corpus), str(out), str(bundle_path), *([] if pack else ["no-pack"])],
        env=environment,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def end_process_tree(process: subprocess.Popen) -> None:
    """Kill the driver and the local Ray processes it started, by PID."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=30)


def test_resume_after_driver_killed(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    generator = MarkovCorpus(seed=5, filler_words=5_000)
    for index in range(12):
        write_jsonl_gz(corpus / f"part-{index:02d}.jsonl.gz", generator.documents(400, mean_words=300), index * 400)
    environment = dict(os.environ)

    # Each shard in a task of its own, so that the driver dies with some shards
    # checkpointed and others not; tests/test_packing.py resumes lost packs.
    clean = run_driver(corpus, tmp_path / "clean", tmp_path / "clean.bundle", environment, pack=False)
    assert clean.wait(timeout=600) == 0, clean.stderr.read().decode()[-2000:]

    interrupted = run_driver(corpus, tmp_path / "resumed", tmp_path / "unused.bundle", environment, pack=False)
    shards = tmp_path / "resumed" / "state"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(shards.rglob("*.json"))) < 3:
        time.sleep(0.1)
    end_process_tree(interrupted)
    done_before_kill = len(list(shards.rglob("*.json")))
    assert 3 <= done_before_kill < 12

    resumed = run_driver(corpus, tmp_path / "resumed", tmp_path / "resumed.bundle", environment, pack=False)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]

    assert (tmp_path / "resumed.bundle").read_bytes() == (tmp_path / "clean.bundle").read_bytes()
    assert result_statistics(tmp_path / "resumed.bundle") == result_statistics(tmp_path / "clean.bundle")
    assert_each_shard_once(tmp_path / "resumed.bundle", 12)
    assert json.loads((tmp_path / "resumed.bundle.json").read_text())["resumed_shards"] == done_before_kill


def test_crashed_worker_task_is_retried(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    generator = MarkovCorpus(seed=7, filler_words=5_000)
    for index in range(4):
        write_jsonl_gz(corpus / f"part-{index:02d}.jsonl.gz", generator.documents(3_000, mean_words=300), index * 3_000)
    environment = dict(os.environ)

    clean = run_driver(corpus, tmp_path / "clean", tmp_path / "clean.bundle", environment)
    assert clean.wait(timeout=600) == 0, clean.stderr.read().decode()[-2000:]

    driver = run_driver(corpus, tmp_path / "crash", tmp_path / "crash.bundle", environment)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        for child in psutil.Process(driver.pid).children(recursive=True):
            try:
                if "scan_shard" in " ".join(child.cmdline()):
                    child.kill()
                    killed = child.pid
                    break
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    assert killed is not None, "no shard task was seen running"
    assert driver.wait(timeout=600) == 0, driver.stderr.read().decode()[-2000:]

    crashed = Bundle.from_bytes((tmp_path / "crash.bundle").read_bytes())
    assert crashed.documents == 12_000
    assert crashed.to_bytes() == (tmp_path / "clean.bundle").read_bytes()
    assert result_statistics(tmp_path / "crash.bundle") == result_statistics(tmp_path / "clean.bundle")
    assert_each_shard_once(tmp_path / "crash.bundle", 4)
