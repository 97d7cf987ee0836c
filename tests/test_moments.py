"""Moments: values against numpy, and merges that do not depend on order."""

import math

import numpy as np

from scanner.sketches.moments import Moments


def moments_of(values: np.ndarray) -> Moments:
    moments = Moments()
    moments.update_batch(values)
    return moments


def test_values_match_numpy():
    values = np.random.default_rng(0).normal(1e6, 3.0, 100_000)

    summary = moments_of(values).summary()

    assert summary["count"] == values.size
    assert math.isclose(summary["mean"], values.mean(), rel_tol=1e-12)
    assert math.isclose(summary["variance"], values.var(), rel_tol=1e-9)
    assert summary["min"] == values.min()
    assert summary["max"] == values.max()


def test_merge_order_gives_identical_state():
    parts = [np.random.default_rng(seed).exponential(seed + 1.0, 1_000) for seed in range(6)]
    sketches = [moments_of(part) for part in parts]

    left_to_right = sketches[0]
    for sketch in sketches[1:]:
        left_to_right = left_to_right.merge(sketch)
    right_to_left = sketches[-1]
    for sketch in reversed(sketches[:-1]):
        right_to_left = sketch.merge(right_to_left)
    paired = sketches[0].merge(sketches[5]).merge(sketches[2].merge(sketches[3])).merge(
        sketches[4].merge(sketches[1])
    )

    assert left_to_right.to_dict() == right_to_left.to_dict() == paired.to_dict()


def test_merged_variance_matches_numpy():
    parts = [np.random.default_rng(seed).normal(seed * 100.0, 1.0, 5_000) for seed in range(4)]
    merged = moments_of(parts[0])
    for part in parts[1:]:
        merged = merged.merge(moments_of(part))

    assert math.isclose(merged.variance, np.concatenate(parts).var(), rel_tol=1e-9)


def test_nan_is_ignored():
    assert moments_of(np.array([1.0, np.nan, 3.0])).count == 2


def test_empty_moments_round_trip():
    assert Moments.from_dict(Moments().to_dict()).to_dict() == Moments().to_dict()


def test_round_trip():
    moments = moments_of(np.array([0.1, 0.2, 0.7]))

    assert Moments.from_dict(moments.to_dict()) == moments
