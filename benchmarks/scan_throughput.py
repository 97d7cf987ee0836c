"""End-to-end scan throughput on gzip JSONL against the decompression limit, and worker memory.

Run: .venv/bin/python benchmarks/scan_throughput.py [--compressed-megabytes 500] [--workers 2]

The corpus is gzip JSONL of English-like text from `scanner.samples.MarkovCorpus`,
written once to benchmarks/data/ (ignored by git) and reused. The benchmark
measures, in one run:

- the limit: reading and gunzipping every file with `workers` processes in
  parallel, once with zlib and once with isal, doing nothing with the text;
- the scan: `run_scan` on an embedded local Ray with `workers` workers and the
  default settings, wall time from start to merged bundle;
- worker memory: the peak resident set size of each Ray worker process during
  the scan, sampled every 50 ms, for the full corpus and for a tenth of it.
"""

import argparse
import gzip
import os
import pathlib
import platform
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import psutil

from scanner.config import ScanConfig
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus, write_jsonl_gz

DATA = pathlib.Path(__file__).resolve().parent / "data" / "scan-corpus"
FILE_DOCUMENTS = 20_000


def build_corpus(compressed_megabytes: int) -> list[pathlib.Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    files = sorted(DATA.glob("part-*.jsonl.gz"))
    total = sum(path.stat().st_size for path in files)
    generator = MarkovCorpus(seed=len(files))
    while total < compressed_megabytes * 1_000_000:
        path = DATA / f"part-{len(files):04d}.jsonl.gz"
        write_jsonl_gz(path, generator.documents(FILE_DOCUMENTS, mean_words=350), len(files) * FILE_DOCUMENTS)
        files.append(path)
        total += path.stat().st_size
    chosen, size = [], 0
    for path in files:
        if size >= compressed_megabytes * 1_000_000:
            break
        chosen.append(path)
        size += path.stat().st_size
    return chosen


def _gunzip(arguments: tuple[str, str]) -> int:
    path, library = arguments
    opener = gzip.open
    if library == "isal":
        from isal import igzip

        opener = igzip.open
    size = 0
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(chunk)
    return size


def decompression_limit(files: list[pathlib.Path], workers: int, library: str) -> tuple[float, int]:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        sizes = list(pool.map(_gunzip, [(str(path), library) for path in files]))
    return time.perf_counter() - started, sum(sizes)


class WorkerMemory:
    """Samples the memory of Ray worker processes while a scan runs.

    `peaks` is the peak resident set size (RSS) per worker process. With
    `private=True`, `private_peaks` is the peak unique set size (USS): the
    memory that only that process uses, whereas RSS also counts the pages of
    Ray's shared object store that the worker touched. Reading USS parses the
    process's memory map, which costs a fair part of a core.
    """

    def __init__(self, private: bool = False):
        self.private = private
        self.peaks: dict[int, int] = {}
        self.private_peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    if "ray::" in child.name() or "default_worker" in " ".join(child.cmdline()):
                        memory = child.memory_full_info() if self.private else child.memory_info()
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), memory.rss)
                        if self.private:
                            self.private_peaks[child.pid] = max(self.private_peaks.get(child.pid, 0), memory.uss)
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed_scan(files: list[pathlib.Path], workers: int, out: pathlib.Path) -> tuple[float, int, dict[int, int]]:
    config = ScanConfig(sources=[str(path) for path in files], out=str(out), num_workers=workers)
    with WorkerMemory() as memory:
        started = time.perf_counter()
        outcome = run_scan(config, progress_enabled=False)
        seconds = time.perf_counter() - started
    if outcome.failures:
        raise RuntimeError(f"benchmark scan had failed shards: {outcome.failures[:3]}")
    return seconds, outcome.bundle.bytes, memory.peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressed-megabytes", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="/tmp/corpus-scanner-benchmark")
    arguments = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    files = build_corpus(arguments.compressed_megabytes)
    compressed = sum(path.stat().st_size for path in files) / 1e6
    print(f"corpus: {len(files)} gzip JSONL files, {compressed:.0f} MB compressed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {arguments.workers} workers")

    rows = []
    for library in ("zlib", "isal"):
        seconds, text_bytes = decompression_limit(files, arguments.workers, library)
        rows.append((f"decompress only ({library})", seconds, text_bytes))
    scan_seconds, scanned_bytes, peaks = timed_scan(files, arguments.workers, pathlib.Path(arguments.out) / "full")
    rows.append(("corpus-scanner scan", scan_seconds, scanned_bytes))

    tenth = files[: max(1, len(files) // 10)]
    _, _, small_peaks = timed_scan(tenth, arguments.workers, pathlib.Path(arguments.out) / "tenth")

    limit = min(seconds for label, seconds, _ in rows if label.startswith("decompress"))
    print()
    print("| step | seconds | MB/s of decompressed JSONL | share of the isal limit |")
    print("|---|---|---|---|")
    uncompressed = rows[0][2] / 1e6
    for label, seconds, _ in rows:
        print(f"| {label} | {seconds:.1f} | {uncompressed / seconds:.1f} | {limit / seconds:.0%} |")
    print()
    top = sorted(peaks.values(), reverse=True)[: arguments.workers]
    small_top = sorted(small_peaks.values(), reverse=True)[: arguments.workers]
    print(f"peak worker RSS, full corpus ({compressed:.0f} MB gz): {[round(p / 2**20) for p in top]} MiB")
    print(f"peak worker RSS, a tenth ({sum(p.stat().st_size for p in tenth) / 1e6:.0f} MB gz): "
          f"{[round(p / 2**20) for p in small_top]} MiB")


if __name__ == "__main__":
    main()
