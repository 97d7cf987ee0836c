"""Power and false-positive rate of the audit's block permutation test.

Run: PYTHONPATH=. .venv/bin/python benchmarks/audit_power.py [--sizes 200,300,400]
     [--power-repeats 200] [--null-repeats 500] [--permutations 999] [--alpha 0.05]

Data: number sequences (tokens "0" to "99", 100 to 300 per document) from the
demo's human Markov chain and from a teacher copy of it. The teacher's
transitions into ten tokens are raised until its stationary token frequencies
are at total variation 0.02 from the human ones. For each size (documents per side):

- power: the share of repeats in which human against teacher samples give
  p <= alpha;
- false-positive rate: the share of repeats in which two independent human
  samples give p <= alpha.

Each repeat draws fresh documents, builds both block tables in this process
with the audit's kernel (no Ray) and runs `permutation_test` with the repeat
number as its seed. Rates come with 95% Wilson score intervals. The default
audit settings apply: orders 1-2, 4,096 buckets, 32 blocks per side.
"""

import argparse
import datetime
import math
import platform
import sys
import time

import numpy as np

from scanner.audit import AuditSettings, block_seed, permutation_test
from scanner.batch import TextBatch
from scanner.demo import NUMBER_SEED, NumberChain
from scanner.settings import SketchSettings
from scanner.sketches.ngram_blocks import NgramBlocks
from scanner.tokens import tokenize_batch

SKETCH = SketchSettings(min_order=1, max_order=2)
DISTANCE = 0.02
FAVOURED = range(20, 40, 2)


def block_table(texts: list[str], settings: AuditSettings) -> np.ndarray:
    batch = TextBatch.from_strings(texts)
    blocks = NgramBlocks(settings.blocks, settings.buckets)
    blocks.update(
        tokenize_batch(batch, SKETCH), batch.offsets, SKETCH.min_order, SKETCH.max_order, SKETCH.seed, block_seed(SKETCH)
    )
    return blocks.counts


def count_rejections(first: NumberChain, second: NumberChain, documents: int, repeats: int, settings, seed: int) -> int:
    """Return how many of `repeats` independent sample pairs the test rejects at `settings.alpha`."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for repeat in range(repeats):
        baseline = block_table(first.documents(documents, rng), settings)
        candidate = block_table(second.documents(documents, rng), settings)
        test = permutation_test(baseline, candidate, settings.permutations, seed=repeat)
        rejected += test.p_value <= settings.alpha
    return rejected


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the 95% Wilson score interval of a binomial proportion."""
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,300,400", help="documents per side, comma-separated")
    parser.add_argument("--power-repeats", type=int, default=200)
    parser.add_argument("--null-repeats", type=int, default=500)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()

    settings = AuditSettings(permutations=args.permutations, alpha=args.alpha)
    human = NumberChain.human(NUMBER_SEED)
    teacher = human.biased_to_distance(FAVOURED, DISTANCE)
    print(f"date {datetime.date.today()}, Python {platform.python_version()}, {platform.machine()}", file=sys.stderr)
    print(
        f"| documents per side | power ({args.power_repeats} repeats) | 95% interval "
        f"| false-positive rate ({args.null_repeats} repeats) | 95% interval | seconds |"
    )
    print("|---|---|---|---|---|---|")
    for documents in (int(size) for size in args.sizes.split(",")):
        started = time.perf_counter()
        detected = count_rejections(human, teacher, documents, args.power_repeats, settings, seed=documents)
        false_alarms = count_rejections(human, human, documents, args.null_repeats, settings, seed=10_000 + documents)
        low, high = wilson_interval(detected, args.power_repeats)
        null_low, null_high = wilson_interval(false_alarms, args.null_repeats)
        print(
            f"| {documents} | {detected / args.power_repeats:.3f} | {low:.3f}-{high:.3f} "
            f"| {false_alarms / args.null_repeats:.3f} | {null_low:.3f}-{null_high:.3f} "
            f"| {time.perf_counter() - started:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
