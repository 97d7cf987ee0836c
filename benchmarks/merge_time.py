"""Merge time of shard bundles against the number of shards and against shard size.

Run: PYTHONPATH=. .venv/bin/python benchmarks/merge_time.py

A scan's driver merges one bundle per shard, `MERGE_FAN_IN` at a time, as Ray
tasks (`scanner.runner._merge_bytes`). This benchmark runs the same merge
function in one process, in the same tree order, over bundles that
`ShardAccumulator` made from distinct text, so the time is the merge work of a
scan without Ray's scheduling. Two series:

- shards of 1 MB of text, 8 to 64 of them: merge time against the number of shards;
- 8 shards of 1, 4 and 16 MB of text: merge time against the corpus bytes.

Each bundle is encoded as a shard task returns it, so decoding and encoding
are measured too. The text is the gzip JSONL corpus of benchmarks/peers.py,
which is built on first use. Every time is the best of three runs.
"""

import argparse
import gzip
import json
import platform
import sys
import pathlib
import time

import pyarrow as pa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from peers import build_corpus, jsonl_path  # noqa: E402

from scanner.accumulator import ShardAccumulator  # noqa: E402
from scanner.bundle import Bundle  # noqa: E402
from scanner.runner import MERGE_FAN_IN, _merge_bytes  # noqa: E402
from scanner.settings import SketchSettings  # noqa: E402

SHARD_COUNTS = (8, 16, 32, 64)
SHARD_MEGABYTES = (1, 4, 16)
REPEATS = 3


def corpus_texts(megabytes: float) -> list[str]:
    """Return documents of the peers corpus with at least `megabytes` MB of text in all."""
    texts, size = [], 0
    for entry in build_corpus(megabytes):
        with gzip.open(jsonl_path(entry), "rt", encoding="utf-8") as handle:
            for line in handle:
                text = json.loads(line)["text"]
                texts.append(text)
                size += len(text.encode())
                if size >= megabytes * 1e6:
                    return texts
    return texts


def shard_bundles(texts: list[str], count: int, megabytes: float) -> tuple[list[bytes], int]:
    """Scan `count` shards of distinct text of about `megabytes` MB each; return their encoded bundles and documents."""
    settings = SketchSettings()
    bundles, position = [], 0
    for index in range(count):
        shard, size = [], 0
        while size < megabytes * 1e6:
            if position == len(texts):
                raise RuntimeError(f"the corpus has too little text for {count} shards of {megabytes} MB")
            shard.append(texts[position])
            size += len(texts[position].encode())
            position += 1
        accumulator = ShardAccumulator(settings, f"shard-{index:04d}", group_indicators=False)
        accumulator.add_texts(pa.array(shard, type=pa.string()))
        bundles.append(accumulator.finish().to_bytes())
    return bundles, position


def tree_merge(parts: list[bytes]) -> bytes:
    """Merge encoded bundles `MERGE_FAN_IN` at a time, level by level, as the scan's driver does."""
    while len(parts) > 1:
        parts = [
            _merge_bytes(*parts[start : start + MERGE_FAN_IN]) if len(parts[start : start + MERGE_FAN_IN]) > 1
            else parts[start]
            for start in range(0, len(parts), MERGE_FAN_IN)
        ]
    return parts[0]


def timed_merge(parts: list[bytes]) -> tuple[float, bytes]:
    """Return the best time of `REPEATS` tree merges of `parts` and the merged bundle."""
    best, merged = float("inf"), b""
    for _ in range(REPEATS):
        started = time.perf_counter()
        merged = tree_merge(parts)
        best = min(best, time.perf_counter() - started)
    return best, merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    needed = max(max(SHARD_COUNTS), MERGE_FAN_IN * max(SHARD_MEGABYTES))
    texts = corpus_texts(needed * 1.05)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; merge fan-in {MERGE_FAN_IN}")
    tree_merge(shard_bundles(texts, 2, 0.2)[0])

    print("\n| shards | MB of text per shard | corpus MB | bundle bytes, one shard | merge seconds | "
          "ms per shard | merged bundle bytes |")
    print("|---|---|---|---|---|---|---|")
    rows = [(count, 1) for count in SHARD_COUNTS] + [(MERGE_FAN_IN, size) for size in SHARD_MEGABYTES if size != 1]
    for count, megabytes in rows:
        parts, documents = shard_bundles(texts, count, megabytes)
        seconds, merged = timed_merge(parts)
        if Bundle.from_bytes(merged).documents != documents:
            raise RuntimeError(f"the merge of {count} shards lost documents: expected {documents}")
        bytes_per_bundle = sum(len(part) for part in parts) / len(parts)
        print(f"| {count} | {megabytes} | {count * megabytes} | {bytes_per_bundle:,.0f} | {seconds:.3f} | "
              f"{1000 * seconds / count:.1f} | {len(merged):,} |", flush=True)


if __name__ == "__main__":
    main()
