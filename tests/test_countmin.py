"""Count-Min: never under the true count, and within its stated bound."""

import numpy as np
import pytest

from scanner.sketches.countmin import CountMinSketch


def zipf_stream(items: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**64, items, dtype=np.uint64, endpoint=False)
    ranks = np.minimum(rng.zipf(1.1, length), items) - 1
    return keys[ranks]


@pytest.fixture(scope="module")
def stream():
    return zipf_stream(200_000, 2_000_000, 1)


@pytest.fixture(scope="module")
def counted(stream):
    sketch = CountMinSketch(blocks_log2=12, depth=4)
    sketch.update_batch(stream)
    keys, counts = np.unique(stream, return_counts=True)
    return sketch, keys, counts


def test_never_underestimates(counted):
    sketch, keys, counts = counted

    estimates = sketch.query(keys)

    assert np.all(estimates >= counts)


def test_share_beyond_bound_is_below_one_over_e(counted, stream):
    sketch, keys, counts = counted

    excess = sketch.query(keys).astype(np.float64) - counts
    share_beyond = np.mean(excess > sketch.error_bound(stream.size))

    assert share_beyond <= 1 / np.e


def test_heavy_items_are_nearly_exact(counted, stream):
    sketch, keys, counts = counted
    heavy = counts >= 10_000

    excess = sketch.query(keys[heavy]).astype(np.float64) - counts[heavy]

    assert np.all(excess <= sketch.error_bound(stream.size))


def test_merge_adds_and_stays_above_true_counts(stream):
    left, right = CountMinSketch(10, 4), CountMinSketch(10, 4)
    left.update_batch(stream[:700_000])
    right.update_batch(stream[700_000:])
    keys, counts = np.unique(stream, return_counts=True)

    merged = left.merge(right)

    assert np.all(merged.query(keys) >= counts)


def test_merge_is_commutative(stream):
    left, right = CountMinSketch(8, 2), CountMinSketch(8, 2)
    left.update_batch(stream[:1000])
    right.update_batch(stream[1000:3000])

    assert left.merge(right).to_bytes() == right.merge(left).to_bytes()


def test_merge_rejects_other_shape():
    with pytest.raises(ValueError, match="depth=4 and blocks_log2=10, depth=2"):
        CountMinSketch(10, 4).merge(CountMinSketch(10, 2))


def test_invalid_depth():
    with pytest.raises(ValueError, match="use 2 or 4"):
        CountMinSketch(10, 3)


@pytest.mark.parametrize("depth", [2, 4])
def test_twin_in_one_block_not_inflated(depth):
    frequent = np.uint64(0x0123_4567_89AB_CDEF)
    # Same block A and the same slots for every row; only block B differs.
    twin = frequent ^ np.uint64(1 << 30)
    sketch = CountMinSketch(blocks_log2=15, depth=depth)
    sketch.update_batch(np.full(10_000, frequent, dtype=np.uint64))
    sketch.update_batch(np.array([twin], dtype=np.uint64))

    assert sketch.query(np.array([twin], dtype=np.uint64))[0] == 1


def test_rare_items_rarely_inherit_a_heavy_count():
    rng = np.random.default_rng(9)
    heavy = rng.integers(0, 2**64, 1_000, dtype=np.uint64, endpoint=False)
    rare = rng.integers(0, 2**64, 1_000_000, dtype=np.uint64, endpoint=False)
    sketch = CountMinSketch(blocks_log2=15, depth=4)
    sketch.update_batch(np.repeat(heavy, 1_000))
    sketch.update_batch(rare)

    inflated = np.count_nonzero(sketch.query(rare) >= 1_000)

    # Each row lands on a heavy counter with probability about 4,000 / 2**19, so all
    # four rows do for about 1e6 * (4e3 / 2**19)**4 = 0.003 of a million items.
    assert inflated <= 2


def test_round_trip(stream):
    sketch = CountMinSketch(8, 4)
    sketch.update_batch(stream[:10_000])

    assert CountMinSketch.from_bytes(sketch.to_bytes()) == sketch
