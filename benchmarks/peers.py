"""corpus-scanner against datatrove, Apache DataSketches and the decompression limit, in one run.

Run: PYTHONPATH=. .venv/bin/python benchmarks/peers.py [--megabytes 200] [--memory-scale]

The corpus is English-like text from `scanner.samples.MarkovCorpus`, written
once to benchmarks/data/peers/ (ignored by git) as gzip JSONL and as Parquet
files that hold the same documents, and reused by later runs. A larger
`--megabytes` adds files; a smaller one uses the first files. The benchmark
measures, on 1 and on 2 workers (processes, Ray workers or datatrove tasks):

- corpus-scanner: `run_scan` on an embedded local Ray, on the JSONL and on the
  Parquet files. It uses the default sketch settings (n-gram orders 1 to 5, all
  sketches) and a reference profile, so the synthetic-share likelihood runs too.
  The profile is built once from two small MarkovCorpus sets and cached: it
  makes the scan do the scoring work, and its estimate means nothing here.
  The embedded Ray is started and stopped by each scan, which costs several
  seconds. So the JSONL scan runs once more on a Ray that was started before
  it and warmed by a scan of a few files, as on a running cluster;
- datatrove: `DocStats` and `WordStats`, the blocks whose statistics overlap
  with ours (documents, characters, words, type-token ratio). They run after a
  `JsonlReader` on a `LocalPipelineExecutor` with 1 and 2 tasks. They get the
  first `--peer-files` JSONL files only, because they are about two orders of
  magnitude slower. Its English word tokenizer is a blank spaCy pipeline, which needs no
  download; hub access is switched off all the same;
- plain Python and Apache DataSketches: `run_datasketches` from
  kernel_throughput.py over the same peer files, one file per process;
- the limits: gunzipping the JSONL files with zlib and with isal, and decoding
  the text column of the Parquet files, doing nothing with the text;
- peak memory (RSS and private USS) of each Ray worker during one more
  2-worker JSONL scan, run apart from the timed scans because sampling costs
  CPU time, and, with `--memory-scale`, during the same scan of a corpus ten
  times larger.

Every MB/s figure divides the UTF-8 bytes of the documents' text by the wall
time, so rows on the same files compare directly. The table and a PNG plot
(benchmarks/peers.png) are written at the end, and the raw numbers to
benchmarks/data/peers/results.json.
"""

import os

# Before any import that could reach a hub or the network: datatrove, spaCy and
# huggingface_hub stay offline, and Ray and HTTP clients stay on this machine.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "AWS_EC2_METADATA_DISABLED": "true",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1,localhost,::1",
    "NO_PROXY": "127.0.0.1,localhost,::1",
}.items():
    os.environ.setdefault(_name, _value)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kernel_throughput import run_datasketches  # noqa: E402
from scan_throughput import WorkerMemory, decompression_limit  # noqa: E402

from scanner.config import ScanConfig  # noqa: E402
from scanner.profile_build import ProfileBuildConfig, build_profile  # noqa: E402
from scanner.runner import run_scan, start_ray  # noqa: E402
from scanner.samples import MarkovCorpus, write_jsonl_gz  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data" / "peers"
MANIFEST = DATA / "manifest.json"
PROFILE = DATA / "profile.csp"
PLOT = HERE / "peers.png"
FILE_DOCUMENTS = 2_000
MEAN_WORDS = 400
PROFILE_DOCUMENTS = 1_500
WORKER_COUNTS = (1, 2)
RUNNING = "corpus-scanner, gzip JSONL, Ray already running"


def _write_file(index: int) -> dict:
    """Write part `index` as gzip JSONL and as Parquet, and return its manifest entry."""
    generator = MarkovCorpus(seed=10_000 + index)
    texts = generator.documents(FILE_DOCUMENTS, mean_words=MEAN_WORDS)
    first_id = index * FILE_DOCUMENTS
    jsonl = DATA / f"part-{index:04d}.jsonl.gz"
    parquet = DATA / f"part-{index:04d}.parquet"
    write_jsonl_gz(jsonl, texts, first_id)
    ids = list(range(first_id, first_id + len(texts)))
    table = pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "text": pa.array(texts, type=pa.string()),
            "url": pa.array([f"https://site{number % 37}.example.org/page/{number}" for number in ids]),
        }
    )
    pq.write_table(table, parquet, compression="zstd")
    return {"index": index, "text_bytes": sum(len(text.encode()) for text in texts)}


def build_corpus(megabytes: float) -> list[dict]:
    """Return the manifest entries of the first files that hold at least `megabytes` MB of text."""
    DATA.mkdir(parents=True, exist_ok=True)
    entries = json.loads(MANIFEST.read_text())["files"] if MANIFEST.exists() else []
    chosen, size = [], 0
    for entry in entries:
        if size >= megabytes * 1e6:
            return chosen
        chosen.append(entry)
        size += entry["text_bytes"]
    missing = []
    estimate = entries[0]["text_bytes"] if entries else 5e6
    while size + len(missing) * estimate < megabytes * 1e6:
        missing.append(len(entries) + len(missing))
    if missing:
        print(f"writing {len(missing)} corpus files of {FILE_DOCUMENTS:,} documents to {DATA}", flush=True)
        with ProcessPoolExecutor(2) as pool:
            written = list(pool.map(_write_file, missing))
        entries += written
        chosen += written
        MANIFEST.write_text(json.dumps({"file_documents": FILE_DOCUMENTS, "files": entries}, indent=1))
    return chosen


def jsonl_path(entry: dict) -> pathlib.Path:
    return DATA / f"part-{entry['index']:04d}.jsonl.gz"


def parquet_path(entry: dict) -> pathlib.Path:
    return DATA / f"part-{entry['index']:04d}.parquet"


def text_megabytes(entries: list[dict]) -> float:
    return sum(entry["text_bytes"] for entry in entries) / 1e6


def build_benchmark_profile() -> str:
    """Build the reference profile once from two small MarkovCorpus sets, and return its path."""
    if PROFILE.exists():
        return str(PROFILE)
    references = DATA / "references"
    references.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name, seed in (("human", 1_001), ("synthetic", 1_002)):
        path = references / f"{name}.jsonl.gz"
        write_jsonl_gz(path, MarkovCorpus(seed=seed).documents(PROFILE_DOCUMENTS, mean_words=MEAN_WORDS))
        sets[name] = str(path)
    config = ProfileBuildConfig(
        human=[sets["human"]], synthetic={"markov": [sets["synthetic"]]}, out=str(PROFILE), num_workers=2
    )
    build_profile(config).save(str(PROFILE))
    return str(PROFILE)


def scan(paths: list[pathlib.Path], workers: int, profile: str, out: pathlib.Path) -> float:
    """Scan `paths` on an embedded Ray with `workers` workers, and return seconds."""
    shutil.rmtree(out, ignore_errors=True)
    config = ScanConfig(sources=[str(path) for path in paths], out=str(out), num_workers=workers, profile=profile)
    started = time.perf_counter()
    outcome = run_scan(config, progress_enabled=False)
    seconds = time.perf_counter() - started
    _check(outcome)
    return seconds


def scan_memory(paths: list[pathlib.Path], workers: int, profile: str, out: pathlib.Path) -> dict[str, list[int]]:
    """Scan `paths` like `scan`, and return the peak memory per worker instead of the time.

    The result is {"rss": [...], "uss": [...]}: the `workers` highest peaks of each,
    in bytes. Reading a process's USS parses its memory map, which takes a fair
    part of a core, so timed scans run without sampling.
    """
    shutil.rmtree(out, ignore_errors=True)
    config = ScanConfig(sources=[str(path) for path in paths], out=str(out), num_workers=workers, profile=profile)
    with WorkerMemory(private=True) as memory:
        outcome = run_scan(config, progress_enabled=False)
    _check(outcome)
    return {
        "rss": sorted(memory.peaks.values(), reverse=True)[:workers],
        "uss": sorted(memory.private_peaks.values(), reverse=True)[:workers],
    }


def _check(outcome) -> None:
    if outcome.failures:
        raise RuntimeError(f"benchmark scan had failed shards: {outcome.failures[:3]}")
    if outcome.bundle.likelihood is None:
        raise RuntimeError("benchmark scan computed no likelihood: the profile was not used")


def scan_on_running_ray(paths: list[pathlib.Path], workers: int, profile: str, out: pathlib.Path) -> float:
    """Scan `paths` on a local Ray started and warmed beforehand, and return seconds."""
    start_ray(None, workers)
    try:
        # Every worker process starts and imports the scanner once, as on a cluster that already ran a scan.
        scan(paths[: 2 * workers], workers, profile, out / "warm-up")
        return scan(paths, workers, profile, out / "timed")
    finally:
        ray.shutdown()


def _decode_parquet(path: str) -> int:
    size = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
        size += batch.column(0).nbytes
    return size


def parquet_limit(paths: list[pathlib.Path], workers: int) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_parquet, [str(path) for path in paths]))
    return time.perf_counter() - started


def _datasketches_file(path: str) -> int:
    from isal import igzip

    with igzip.open(path, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    run_datasketches(texts)
    return len(texts)


def datasketches_pipeline(paths: list[pathlib.Path], workers: int) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_datasketches_file, [str(path) for path in paths]))
    return time.perf_counter() - started


def datatrove_pipeline(paths: list[pathlib.Path], tasks: int, scratch: pathlib.Path) -> float:
    """Run datatrove's document and word statistics on `paths` with `tasks` local tasks, and return seconds."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.stats import DocStats, WordStats

    inputs = scratch / f"input-{tasks}"
    inputs.mkdir(parents=True)
    for path in paths:
        (inputs / path.name).symlink_to(path)
    output = scratch / f"stats-{tasks}"
    executor = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(inputs), glob_pattern="*.jsonl.gz"),
            DocStats(str(output / "doc"), groups_to_compute=["summary"]),
            WordStats(str(output / "word"), groups_to_compute=["summary"]),
        ],
        tasks=tasks,
        workers=tasks,
        logging_dir=str(scratch / f"logs-{tasks}"),
        skip_completed=False,
    )
    started = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - started
    counted = datatrove_document_count(output / "word")
    if counted == 0:
        raise RuntimeError(f"datatrove wrote no word statistics under {output / 'word'}")
    return seconds


def datatrove_document_count(folder: pathlib.Path) -> int:
    """Documents that datatrove's word statistics counted, summed over tasks (0 when none were written)."""
    total = 0
    for path in folder.glob("summary/n_words/*.json"):
        total += json.loads(path.read_text())["summary"]["n"]
    return total


def plot(rows: list[dict], memory: list[tuple[float, list[int]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    tools = sorted({row["tool"] for row in rows}, key=lambda tool: [row["tool"] for row in rows].index(tool))
    for tool in tools:
        points = sorted((row["workers"], row["mb_per_s"]) for row in rows if row["tool"] == tool)
        left.plot([w for w, _ in points], [r for _, r in points], marker="o", label=tool)
    left.set_yscale("log")
    left.set_xticks(list(WORKER_COUNTS))
    left.set_xlabel("workers (processes, Ray workers or datatrove tasks)")
    left.set_ylabel("MB of text per second (log scale)")
    left.set_title("Throughput against workers")
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)
    if memory:
        sizes = [size for size, _ in memory]
        for kind, style, name in (("rss", "-", "RSS"), ("uss", "--", "private (USS)")):
            for worker in range(max(len(peaks[kind]) for _, peaks in memory)):
                values = [
                    peaks[kind][worker] / 2**20 if worker < len(peaks[kind]) else float("nan") for _, peaks in memory
                ]
                right.plot(sizes, values, style, marker="o", label=f"Ray worker {worker + 1}, {name}")
        right.set_xscale("log")
        right.set_ylim(bottom=0)
        right.legend(fontsize=7)
    right.set_xlabel("corpus size, MB of text (log scale)")
    right.set_ylabel("peak memory per worker, MiB")
    right.set_title("corpus-scanner worker memory, 2 workers, gzip JSONL")
    right.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200, help="MB of text in the corpus")
    parser.add_argument("--peer-files", type=int, default=4, help="JSONL files given to datatrove and DataSketches")
    parser.add_argument("--memory-scale", action="store_true", help="also scan a corpus 10 times larger for memory")
    parser.add_argument("--out", default=str(pathlib.Path(tempfile.gettempdir()) / "corpus-scanner-peers"))
    arguments = parser.parse_args()
    if arguments.megabytes <= 0:
        parser.error(f"--megabytes {arguments.megabytes} is not positive: give the corpus size in MB, e.g. 200")
    if arguments.peer_files < 2:
        parser.error(f"--peer-files {arguments.peer_files} is below 2: 2 tasks need at least 2 files")

    out = pathlib.Path(arguments.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    entries = build_corpus(arguments.megabytes)
    if len(entries) < arguments.peer_files:
        entries = build_corpus(text_megabytes(entries) + (arguments.peer_files - len(entries)) * 5)
    profile = build_benchmark_profile()
    jsonl = [jsonl_path(entry) for entry in entries]
    parquet = [parquet_path(entry) for entry in entries]
    peers = entries[: arguments.peer_files]
    corpus_mb, peer_mb = text_megabytes(entries), text_megabytes(peers)
    gz_mb = sum(path.stat().st_size for path in jsonl) / 1e6
    print(f"corpus: {len(entries)} files, {corpus_mb:.1f} MB of text ({gz_mb:.1f} MB gzip JSONL); "
          f"datatrove and DataSketches get the first {len(peers)} files, {peer_mb:.1f} MB of text", flush=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)

    rows = []

    def record(tool: str, workers: int, seconds: float, megabytes: float) -> None:
        rows.append({"tool": tool, "workers": workers, "seconds": seconds, "megabytes": megabytes,
                     "mb_per_s": megabytes / seconds})
        print(f"  {tool}, {workers} worker(s): {seconds:.1f} s, {megabytes / seconds:.1f} MB/s", flush=True)

    memory = []
    for workers in WORKER_COUNTS:
        for library in ("zlib", "isal"):
            seconds, _ = decompression_limit(jsonl, workers, library)
            record(f"gunzip only ({library})", workers, seconds, corpus_mb)
        record("Parquet decoding only", workers, parquet_limit(parquet, workers), corpus_mb)
        record("corpus-scanner, gzip JSONL", workers, scan(jsonl, workers, profile, out / f"scan-jsonl-{workers}"),
               corpus_mb)
        record("corpus-scanner, Parquet", workers, scan(parquet, workers, profile, out / f"scan-parquet-{workers}"),
               corpus_mb)
        record(RUNNING, workers, scan_on_running_ray(jsonl, workers, profile, out / f"scan-running-{workers}"),
               corpus_mb)
        peer_jsonl = [jsonl_path(entry) for entry in peers]
        record("datatrove DocStats + WordStats, gzip JSONL", workers,
               datatrove_pipeline(peer_jsonl, workers, out / "datatrove"), peer_mb)
        record("Python + DataSketches, gzip JSONL", workers, datasketches_pipeline(peer_jsonl, workers), peer_mb)

    memory.append((corpus_mb, scan_memory(jsonl, 2, profile, out / "memory")))
    if arguments.memory_scale:
        large = build_corpus(10 * arguments.megabytes)
        large_mb = text_megabytes(large)
        memory.append((large_mb, scan_memory([jsonl_path(entry) for entry in large], 2, profile, out / "memory-large")))

    rate = {(row["tool"], row["workers"]): row["mb_per_s"] for row in rows}
    print()
    print("| tool | workers | MB of text | seconds | MB/s | tool / corpus-scanner (JSONL) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        reference = rate[("corpus-scanner, gzip JSONL", row["workers"])]
        print(f"| {row['tool']} | {row['workers']} | {row['megabytes']:.1f} | {row['seconds']:.1f} | "
              f"{row['mb_per_s']:.2f} | {row['mb_per_s'] / reference:.3g} |")
    print()
    for workers in WORKER_COUNTS:
        scanner_jsonl = rate[("corpus-scanner, gzip JSONL", workers)]
        scanner_parquet = rate[("corpus-scanner, Parquet", workers)]
        print(f"{workers} worker(s): corpus-scanner / datatrove "
              f"{scanner_jsonl / rate[('datatrove DocStats + WordStats, gzip JSONL', workers)]:.0f}x, "
              f"/ DataSketches {scanner_jsonl / rate[('Python + DataSketches, gzip JSONL', workers)]:.1f}x, "
              f"share of the isal limit {scanner_jsonl / rate[('gunzip only (isal)', workers)]:.1%}, "
              f"of the zlib limit {scanner_jsonl / rate[('gunzip only (zlib)', workers)]:.1%}, "
              f"of the Parquet decoding limit {scanner_parquet / rate[('Parquet decoding only', workers)]:.1%}")
    for workers in WORKER_COUNTS:
        print(f"{workers} worker(s), Ray already running: corpus-scanner / datatrove "
              f"{rate[(RUNNING, workers)] / rate[('datatrove DocStats + WordStats, gzip JSONL', workers)]:.0f}x, "
              f"share of the isal limit {rate[(RUNNING, workers)] / rate[('gunzip only (isal)', workers)]:.1%}")
    for tool in ("corpus-scanner, gzip JSONL", "corpus-scanner, Parquet", RUNNING):
        print(f"{tool}: speedup from 1 to 2 workers {rate[(tool, 2)] / rate[(tool, 1)]:.2f}x")
    for size, peaks in memory:
        print(f"peak memory per Ray worker, {size:.0f} MB of text, 2 workers: "
              f"RSS {[round(p / 2**20) for p in peaks['rss']]} MiB, "
              f"private (USS) {[round(p / 2**20) for p in peaks['uss']]} MiB")

    plot(rows, memory)
    (DATA / "results.json").write_text(json.dumps({"rows": rows, "memory": memory}, indent=1))
    print(f"plot: {PLOT}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
