"""Quantile sketch: relative error and exact merges."""

import math

import numpy as np
import pytest

from scanner.sketches.quantiles import QuantileSketch

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def exact_quantile(values: np.ndarray, q: float) -> float:
    return float(np.sort(values)[math.floor(q * (values.size - 1))])


@pytest.mark.parametrize(
    "distribution",
    [
        lambda rng: rng.lognormal(5, 2, 100_000),
        lambda rng: rng.uniform(0, 1, 100_000),
        lambda rng: rng.integers(1, 10_000, 100_000).astype(float),
        lambda rng: rng.pareto(1.2, 100_000) + 1e-3,
    ],
    ids=["lognormal", "uniform", "integers", "pareto"],
)
@pytest.mark.parametrize("accuracy", [0.01, 0.05])
def test_relative_error_within_bound(distribution, accuracy):
    values = distribution(np.random.default_rng(2))
    sketch = QuantileSketch(accuracy)
    sketch.update_batch(values)

    for q in QUANTILES:
        exact = exact_quantile(values, q)
        assert abs(sketch.quantile(q) - exact) <= accuracy * exact * (1 + 1e-9), f"q={q}"


def test_zeros_are_exact():
    sketch = QuantileSketch()
    sketch.update_batch(np.array([0.0, 0.0, 0.0, 5.0]))

    assert sketch.quantile(0.5) == 0.0


def test_nan_values_are_ignored():
    sketch = QuantileSketch()
    sketch.update_batch(np.array([np.nan, 1.0, 2.0]))

    assert sketch.count == 2


def test_negative_values_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        QuantileSketch().update_batch(np.array([-1.0]))


def test_empty_sketch_returns_nan():
    assert math.isnan(QuantileSketch().quantile(0.5))


def test_merge_equals_single_sketch():
    values = np.random.default_rng(3).lognormal(3, 1, 10_000)
    whole, left, right = QuantileSketch(), QuantileSketch(), QuantileSketch()
    whole.update_batch(values)
    left.update_batch(values[:3_000])
    right.update_batch(values[3_000:])

    assert left.merge(right) == whole


def test_merge_rejects_other_accuracy():
    with pytest.raises(ValueError, match="relative accuracy 0.01 and 0.02"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


def test_round_trip():
    sketch = QuantileSketch()
    sketch.update_batch(np.arange(1, 1000, dtype=float))

    assert QuantileSketch.from_bytes(sketch.to_bytes()) == sketch
