"""HyperLogLog accuracy, merging and format."""

import datasketches
import numpy as np
import pytest

from scanner.codec import FrameError
from scanner.sketches.hll import HyperLogLog


def random_hashes(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, count, dtype=np.uint64, endpoint=False)


@pytest.mark.parametrize("cardinality", [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000])
def test_estimate_within_three_standard_errors(cardinality):
    seeds = range(3) if cardinality >= 1_000_000 else range(20)
    for seed in seeds:
        sketch = HyperLogLog(14)
        sketch.update_batch(random_hashes(cardinality, seed))

        error = sketch.estimate() / cardinality - 1

        assert abs(error) <= 3 * sketch.relative_standard_error, f"seed {seed}: relative error {error:.4f}"


@pytest.mark.parametrize("precision", [4, 8, 12, 18])
def test_estimate_at_other_precisions(precision):
    sketch = HyperLogLog(precision)
    sketch.update_batch(random_hashes(50_000, precision))

    error = sketch.estimate() / 50_000 - 1

    assert abs(error) <= 3 * sketch.relative_standard_error


def test_mean_error_over_seeds_is_unbiased():
    errors = []
    for seed in range(200):
        sketch = HyperLogLog(10)
        sketch.update_batch(random_hashes(5_000, 1000 + seed))
        errors.append(sketch.estimate() / 5_000 - 1)

    standard_error_of_mean = HyperLogLog(10).relative_standard_error / np.sqrt(len(errors))
    assert abs(np.mean(errors)) <= 4 * standard_error_of_mean


def test_duplicates_do_not_count():
    sketch = HyperLogLog()
    values = random_hashes(1_000, 7)
    sketch.update_batch(np.concatenate([values] * 5))

    assert abs(sketch.estimate() / 1_000 - 1) <= 3 * sketch.relative_standard_error


@pytest.mark.parametrize("cardinality", [1_000, 100_000])
def test_close_to_datasketches(cardinality):
    values = random_hashes(cardinality, 11)
    ours = HyperLogLog(14)
    ours.update_batch(values)
    theirs = datasketches.hll_sketch(14, datasketches.tgt_hll_type.HLL_8)
    for value in values.tolist():
        theirs.update(value)

    combined_error = np.sqrt(2) * ours.relative_standard_error

    assert abs(ours.estimate() / theirs.get_estimate() - 1) <= 4 * combined_error


def test_merge_equals_union():
    values = random_hashes(20_000, 3)
    whole, left, right = HyperLogLog(), HyperLogLog(), HyperLogLog()
    whole.update_batch(values)
    left.update_batch(values[:12_000])
    right.update_batch(values[8_000:])

    assert left.merge(right) == whole


def test_merge_rejects_other_precision():
    with pytest.raises(ValueError, match="precision 14 and 12"):
        HyperLogLog(14).merge(HyperLogLog(12))


@pytest.mark.parametrize("precision", [3, 19])
def test_precision_out_of_range(precision):
    with pytest.raises(ValueError, match="use 4 to 18"):
        HyperLogLog(precision)


def test_round_trip():
    sketch = HyperLogLog(12)
    sketch.update_batch(random_hashes(1_000, 5))

    assert HyperLogLog.from_bytes(sketch.to_bytes()) == sketch


def test_corrupted_file_is_rejected():
    data = bytearray(HyperLogLog(12).to_bytes())
    data[40] ^= 0xFF

    with pytest.raises(FrameError, match="checksum"):
        HyperLogLog.from_bytes(bytes(data))
