"""Scan time of a corpus of many small files, with shard packing on and off.

Run: .venv/bin/python benchmarks/small_files.py [--files 400] [--kilobytes 100] [--workers 1] [--runs 3]

The corpus is plain JSONL of English-like text from `scanner.samples.MarkovCorpus`,
`files` files of about `kilobytes` KB each, written once under benchmarks/data/
(ignored by git) and reused. Each run is `run_scan` on a new embedded local Ray
with `workers` workers and the default settings, timed from start to merged
bundle, so Ray's start is included. One unmeasured run per mode comes first, then
the modes alternate, so both see the same background load. The benchmark stops
when the two modes give different bundles.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import time

from scanner.config import ScanConfig
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus

DATA = pathlib.Path(__file__).resolve().parent / "data"
WORDS_PER_KILOBYTE = 160  # JSONL of MarkovCorpus text has about 6 bytes per word
DOCUMENTS_PER_FILE = 25


def build_corpus(files: int, kilobytes: int) -> pathlib.Path:
    directory = DATA / f"small-files-{files}x{kilobytes}k"
    if len(list(directory.glob("part-*.jsonl"))) == files:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    generator = MarkovCorpus(seed=0)
    mean_words = max(5, kilobytes * WORDS_PER_KILOBYTE // DOCUMENTS_PER_FILE)
    for index in range(files):
        documents = generator.documents(DOCUMENTS_PER_FILE, mean_words=mean_words)
        lines = "".join(json.dumps({"text": text}) + "\n" for text in documents)
        (directory / f"part-{index:05d}.jsonl").write_text(lines)
    return directory


def timed_scan(corpus: pathlib.Path, out: pathlib.Path, workers: int, pack: bool) -> tuple[float, int, bytes]:
    """Scan once; return the seconds, the number of tasks (one checkpoint each) and the bundle bytes."""
    shutil.rmtree(out, ignore_errors=True)
    config = ScanConfig(sources=[str(corpus)], out=str(out), num_workers=workers, pack_shards=pack)
    started = time.perf_counter()
    outcome = run_scan(config, progress_enabled=False)
    seconds = time.perf_counter() - started
    if outcome.failures:
        raise RuntimeError(f"benchmark scan had failed shards: {outcome.failures[:3]}")
    tasks = len(list(pathlib.Path(config.resolved_state_dir).rglob("*.json")))
    return seconds, tasks, outcome.bundle.to_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--kilobytes", type=int, default=100, help="approximate size of each file in KB")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per mode")
    parser.add_argument("--out", default="/tmp/corpus-scanner-small-files")
    arguments = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    corpus = build_corpus(arguments.files, arguments.kilobytes)
    size = sum(path.stat().st_size for path in corpus.iterdir()) / 1e6
    print(f"corpus: {arguments.files} JSONL files, {size:.1f} MB")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {arguments.workers} workers")

    modes = {"packing on": True, "packing off (--no-pack)": False}
    out = pathlib.Path(arguments.out)
    bundles = {name: timed_scan(corpus, out / "warm-up", arguments.workers, pack)[2] for name, pack in modes.items()}
    if len(set(bundles.values())) != 1:
        raise RuntimeError("the scans with packing on and off gave different bundles")

    seconds: dict[str, list[float]] = {name: [] for name in modes}
    tasks: dict[str, int] = {}
    for run in range(arguments.runs):
        for name, pack in modes.items():
            elapsed, tasks[name], _ = timed_scan(corpus, out / f"run-{run}", arguments.workers, pack)
            seconds[name].append(elapsed)

    print()
    print("| mode | tasks | seconds per run | median seconds | MB/s (median) |")
    print("|---|---|---|---|---|")
    for name in modes:
        median = statistics.median(seconds[name])
        runs = ", ".join(f"{value:.1f}" for value in seconds[name])
        print(f"| {name} | {tasks[name]} | {runs} | {median:.1f} | {size / median:.1f} |")


if __name__ == "__main__":
    main()
