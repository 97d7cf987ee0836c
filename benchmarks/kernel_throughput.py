"""Single-core throughput of the per-shard kernel against hashing alone and datasketches.

Run: .venv/bin/python benchmarks/kernel_throughput.py [--megabytes 128]

The corpus is English-like text from `scanner.samples.MarkovCorpus` (seed 0),
held in memory as an Arrow string array and fed in 8 MB batches, as the
readers do. Numba kernels run on one thread, so every figure is for one core.
Each measurement runs after a warm-up call, so compilation is excluded.

Measured, in the same run:
- full: `ShardAccumulator` with the default sketch settings (tokenize, hash
  n-grams of orders 1 to 5, HyperLogLog, Count-Min, heavy-hitter candidates,
  per-document features into quantile sketches and moments), and the same with
  other Count-Min sizes, to show what the table size costs;
- tokenize: case folding, tokenizing and token hashing only;
- hashing: tokenize plus the n-gram hashes of orders 1 to 5, no sketches;
- datasketches: the same statistics per item from Python with Apache
  DataSketches (regex tokens, n-gram strings, hll_sketch, count_min_sketch,
  frequent_strings_sketch, kll_floats_sketch), on the first few MB only,
  because it is about two orders of magnitude slower.
"""

import argparse
import collections
import math
import platform
import re
import time

import numba
import numpy as np
import pyarrow as pa

from kernels.hashing import ngram_finish, ngram_start, ngram_step
from scanner.accumulator import ShardAccumulator
from scanner.batch import TextBatch
from scanner.samples import MarkovCorpus
from scanner.settings import SketchSettings
from scanner.tokens import TokenScratch, tokenize_batch

BATCH_BYTES = 8 << 20


@numba.njit(nogil=True, cache=True)
def _hash_ngrams(token_hashes, document_offsets, max_order, seed):
    checksum = np.uint64(0)
    start = ngram_start(seed)
    for document in range(document_offsets.shape[0] - 1):
        stop = document_offsets[document + 1]
        for position in range(document_offsets[document], stop):
            state = start
            for order in range(1, min(max_order, stop - position) + 1):
                state = ngram_step(state, token_hashes[position + order - 1])
                checksum ^= ngram_finish(state, order)
    return checksum


def build_corpus(megabytes: int) -> list[pa.Array]:
    generator = MarkovCorpus(seed=0)
    batches, current, size = [], [], 0
    total = 0
    while total < megabytes * 1_000_000:
        for text in generator.documents(2_000):
            current.append(text)
            size += len(text)
            total += len(text)
            if size >= BATCH_BYTES:
                batches.append(pa.array(current, type=pa.large_string()))
                current, size = [], 0
    if current:
        batches.append(pa.array(current, type=pa.large_string()))
    return batches


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_full(batches, settings: SketchSettings):
    accumulator = ShardAccumulator(settings, "benchmark")
    for texts in batches:
        accumulator.add_texts(texts)
    return accumulator.finish()


def run_tokenize(batches, settings, with_ngrams: bool):
    scratch = TokenScratch()
    for texts in batches:
        tokens = tokenize_batch(TextBatch.from_arrow(texts), settings, scratch)
        if with_ngrams:
            _hash_ngrams(tokens.hashes, tokens.document_offsets, settings.max_order, np.uint64(settings.seed))


WORD = re.compile(r"\w+")


def run_datasketches(texts: list[str]) -> None:
    import datasketches

    hlls = [datasketches.hll_sketch(14, datasketches.tgt_hll_type.HLL_8) for _ in range(5)]
    countmin = datasketches.count_min_sketch(4, 1 << 18)
    frequent = [datasketches.frequent_strings_sketch(10) for _ in range(5)]
    features = [datasketches.kll_floats_sketch(200) for _ in range(5)]
    for text in texts:
        tokens = WORD.findall(text.lower())
        for order in range(1, 6):
            for start in range(len(tokens) - order + 1):
                ngram = " ".join(tokens[start : start + order])
                hlls[order - 1].update(ngram)
                countmin.update(ngram)
                frequent[order - 1].update(ngram)
        counts = collections.Counter(tokens)
        length = max(len(tokens), 1)
        trigrams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
        values = [
            len(tokens),
            len(text.encode()),
            len(counts) / length,
            1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0,
            -sum(c / length * math.log2(c / length) for c in counts.values()),
        ]
        for sketch, value in zip(features, values):
            sketch.update(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=128, help="corpus size in MB (at least 100 for the record)")
    parser.add_argument("--datasketches-megabytes", type=float, default=4.0, help="text given to the datasketches pipeline")
    arguments = parser.parse_args()

    batches = build_corpus(arguments.megabytes)
    total_bytes = sum(texts.nbytes - 8 * (len(texts) + 1) for texts in batches)
    megabytes = total_bytes / 1e6
    print(f"corpus: {megabytes:.1f} MB of text, {sum(len(b) for b in batches)} documents, {len(batches)} batches")
    print(f"machine: {platform.processor() or platform.machine()}, numba {numba.__version__}, one thread")

    default = SketchSettings()
    run_full(batches[:1], default)
    run_tokenize(batches[:1], default, with_ngrams=True)

    rows = []
    for blocks_log2 in (12, 14, 15, 16, 18):
        settings = SketchSettings(countmin_blocks_log2=blocks_log2)
        run_full(batches[:1], settings)
        seconds = timed(lambda: run_full(batches, settings))
        label = f"full, Count-Min 2^{blocks_log2} blocks ({(64 << blocks_log2) >> 10} KiB)"
        if blocks_log2 == default.countmin_blocks_log2:
            label += " [default]"
        rows.append((label, megabytes / seconds))
    rows.append(("tokenize only", megabytes / timed(lambda: run_tokenize(batches, default, False))))
    rows.append(("hashing alone (tokenize + n-gram hashes 1-5)", megabytes / timed(lambda: run_tokenize(batches, default, True))))

    sample, size = [], 0
    for text in batches[0].to_pylist():
        sample.append(text)
        size += len(text.encode())
        if size >= arguments.datasketches_megabytes * 1e6:
            break
    rows.append((f"datasketches per item ({size / 1e6:.1f} MB)", size / 1e6 / timed(lambda: run_datasketches(sample))))

    full_default = next(rate for label, rate in rows if "[default]" in label)
    print()
    print("| pipeline | MB/s (one core) | full kernel / pipeline |")
    print("|---|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:.1f} | {full_default / rate:.2f} |")


if __name__ == "__main__":
    main()
