"""Likelihood scores and the synthetic-share sketch: exact scores, exact merges, stable replicates."""

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from kernels.likelihood import (
    POISSON_ONE_THRESHOLDS,
    accumulate_scores,
    bootstrap_weights,
    score_documents,
)
from kernels.vocabulary import build_vocabulary_table
from scanner.codec import FrameError
from scanner.sketches.likelihood import LikelihoodSketch


class Profile:
    """A random reference profile and its score parameters, computed in plain Python."""

    def __init__(self, vocabulary_size: int, generators: int, seed: int):
        rng = np.random.default_rng(seed)
        self.words = rng.choice(2**62, vocabulary_size, replace=False).astype(np.uint64) * np.uint64(2) + np.uint64(1)
        self.p = rng.uniform(0.02, 0.6, vocabulary_size)
        self.q = rng.uniform(0.02, 0.6, (generators, vocabulary_size))
        self.table_keys, self.table_slots = build_vocabulary_table(self.words)
        self.deltas = np.log(self.q / self.p) - np.log((1 - self.q) / (1 - self.p))
        self.bases = np.log((1 - self.q) / (1 - self.p)).sum(axis=1)
        self.human_deltas = np.log(self.p) - np.log(1 - self.p)
        self.human_base = float(np.log(1 - self.p).sum())

    def score(self, documents: list[list[int]]):
        tokens = np.array([token for document in documents for token in document], dtype=np.uint64)
        offsets = np.zeros(len(documents) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(document) for document in documents])
        return score_documents(
            tokens,
            offsets,
            self.table_keys,
            self.table_slots,
            self.deltas,
            self.bases,
            self.human_deltas,
            self.human_base,
        )

    def direct_scores(self, document: list[int]) -> tuple[list[float], float]:
        """Return (r_g for each g, l) from the full sums over the vocabulary."""
        present = {int(token) for token in document}
        ratios = []
        for q_g in self.q:
            total = 0.0
            for word, p_w, q_w in zip(self.words.tolist(), self.p, q_g):
                if word in present:
                    total += math.log(q_w / p_w)
                else:
                    total += math.log((1 - q_w) / (1 - p_w))
            ratios.append(total)
        human = 0.0
        for word, p_w in zip(self.words.tolist(), self.p):
            human += math.log(p_w) if word in present else math.log(1 - p_w)
        return ratios, human


def random_documents(profile: Profile, count: int, seed: int) -> list[list[int]]:
    """Documents mixing vocabulary words (often repeated) with words outside the vocabulary."""
    rng = np.random.default_rng(seed)
    outside = (rng.choice(2**62, 50, replace=False) * 2).astype(np.uint64).tolist()
    words = profile.words.tolist()
    documents = []
    for _ in range(count):
        length = int(rng.integers(0, 40))
        document = []
        for _ in range(length):
            pool = words if rng.random() < 0.6 else outside
            document.append(pool[int(rng.integers(0, min(len(pool), 12)))])
        documents.append(document)
    documents.append([])
    documents.append(outside[:5])
    return documents


def mixture_terms(r: np.ndarray, points: int) -> np.ndarray:
    """Return the (documents, points) float terms log((1 - a) + a exp(r_mix)) of each document."""
    r_mix = np.logaddexp.reduce(r, axis=1) - math.log(r.shape[1])
    r_mix = np.clip(r_mix, -50.0, 50.0)
    shares = np.arange(points) / (points - 1)
    return np.log((1 - shares)[None, :] + shares[None, :] * np.exp(r_mix)[:, None])


def random_scores(documents: int, generators: int, seed: int):
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 8.0, (documents, generators))
    l_per_word = rng.uniform(-1.2, 0.1, documents)
    ids = rng.integers(0, 2**63, documents, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    words_present = rng.integers(0, 3, documents)
    return r, l_per_word, ids, words_present


SMALL = {"bins": 16, "r_range": (-20.0, 20.0), "l_bins": 8, "l_range": (-1.0, 0.0), "curve_points": 11, "replicates": 8}


@pytest.mark.parametrize("generators", [1, 3])
def test_scores_match_direct_formula(generators):
    profile = Profile(vocabulary_size=40, generators=generators, seed=generators)
    documents = random_documents(profile, 30, seed=7)

    r, l, words_present = profile.score(documents)

    assert r.shape == (len(documents), generators)
    for index, document in enumerate(documents):
        ratios, human = profile.direct_scores(document)
        np.testing.assert_allclose(r[index], ratios, rtol=1e-9, atol=1e-9, err_msg=f"document {index}")
        assert l[index] == pytest.approx(human, rel=1e-9, abs=1e-9), f"document {index}"
        expected_present = len(set(document) & set(profile.words.tolist()))
        assert words_present[index] == expected_present, f"document {index}"


def test_repeated_words_count_once():
    profile = Profile(vocabulary_size=20, generators=3, seed=1)
    word, other = int(profile.words[0]), int(profile.words[5])

    r, l, words_present = profile.score([[word, other], [word, word, other, word, other]])

    assert np.array_equal(r[0], r[1])
    assert l[0] == l[1]
    assert words_present.tolist() == [2, 2]


def test_document_without_vocabulary_scores_bases():
    profile = Profile(vocabulary_size=20, generators=3, seed=2)
    outside = [2, 4, 6]

    r, l, words_present = profile.score([[], outside])

    for index in range(2):
        assert np.array_equal(r[index], profile.bases)
        assert l[index] == profile.human_base
        assert words_present[index] == 0


def test_score_documents_rejects_mismatched_profile():
    profile = Profile(vocabulary_size=20, generators=3, seed=3)
    tokens = profile.words[:4].copy()
    offsets = np.array([0, 4], dtype=np.int64)

    with pytest.raises(ValueError, match="bases"):
        score_documents(
            tokens,
            offsets,
            profile.table_keys,
            profile.table_slots,
            profile.deltas,
            profile.bases[:2],
            profile.human_deltas,
            profile.human_base,
        )
    with pytest.raises(ValueError, match="human_deltas"):
        score_documents(
            tokens,
            offsets,
            profile.table_keys,
            profile.table_slots,
            profile.deltas,
            profile.bases,
            profile.human_deltas[:10],
            profile.human_base,
        )
    with pytest.raises(ValueError, match="slots"):
        score_documents(
            tokens,
            offsets,
            profile.table_keys,
            profile.table_slots,
            profile.deltas[:, :10],
            profile.bases,
            profile.human_deltas[:10],
            profile.human_base,
        )


def test_histogram_bins_and_overflow():
    sketch = LikelihoodSketch(1, bins=8, r_range=(-4.0, 4.0), replicates=0)
    values = np.array([-4.5, -4.0, -3.5, -0.5, 0.0, 3.999, 4.0, 100.0, -100.0])

    sketch.update(values[:, None], np.full(values.size, -0.5), np.arange(values.size, dtype=np.uint64), np.ones(9))

    expected = np.zeros(10, dtype=np.int64)
    for index in [0, 1, 1, 4, 5, 8, 9, 9, 0]:
        expected[index] += 1
    assert np.array_equal(sketch.histogram[0], expected)


def test_histogram_row_is_argmax_generator():
    sketch = LikelihoodSketch(3, bins=8, r_range=(-4.0, 4.0), replicates=0)
    r = np.array([[1.5, -2.0, 0.0], [-1.0, -3.5, -0.5], [2.0, 2.0, 1.0], [-9.0, -7.0, 9.0]])

    sketch.update(r, np.full(4, -0.5), np.arange(4, dtype=np.uint64), np.ones(4))

    expected = np.zeros((3, 10), dtype=np.int64)
    expected[0, 6] = 1  # 1.5 is the largest
    expected[2, 4] = 1  # -0.5 is the largest
    expected[0, 7] = 1  # a tie goes to the lower generator index
    expected[2, 9] = 1  # 9.0 overflows
    assert np.array_equal(sketch.histogram, expected)


def test_l_histogram_bins_and_overflow():
    sketch = LikelihoodSketch(1, l_bins=4, l_range=(-1.0, 0.0), replicates=0)
    values = np.array([-1.5, -1.0, -0.75, -0.5, -0.01, 0.0, 0.3])

    sketch.update(np.zeros((values.size, 1)), values, np.arange(values.size, dtype=np.uint64), np.ones(7))

    assert sketch.l_histogram.tolist() == [1, 1, 1, 1, 1, 2]


def test_curve_matches_float_sum():
    r, l_per_word, ids, words_present = random_scores(500, 3, seed=4)
    r[:5] = 80.0  # r_mix is clipped to 50
    r[5:10] = -80.0  # r_mix is clipped to -50
    sketch = LikelihoodSketch(3, curve_points=21, replicates=0)

    sketch.update(r, l_per_word, ids, words_present)

    expected = mixture_terms(r, 21).sum(axis=0)
    assert np.all(np.abs(sketch.curve_values() - expected) <= 1e-6 * len(r))
    assert sketch.curve_values()[0] == 0.0
    assert sketch.mixture_shares()[-1] == 1.0


def test_curve_terms_are_rounded_to_nearest():
    r, l_per_word, ids, words_present = random_scores(40, 2, seed=12)
    terms = mixture_terms(r, 21)

    for index in range(len(r)):
        sketch = LikelihoodSketch(2, curve_points=21, replicates=0)
        sketch.update(r[index : index + 1], l_per_word[index : index + 1], ids[index : index + 1], words_present[:1])
        error = np.abs(sketch.curve_values() - terms[index])
        assert error.max() <= 2**-25 + 1e-12, f"document {index}"


def test_replicate_equals_weighted_documents():
    r, l_per_word, ids, words_present = random_scores(300, 3, seed=5)
    sketch = LikelihoodSketch(3, **SMALL)
    sketch.update(r, l_per_word, ids, words_present)
    weights = bootstrap_weights(ids, SMALL["replicates"], np.uint64(0))

    for replicate in range(SMALL["replicates"]):
        repeated = np.repeat(np.arange(len(r)), weights[:, replicate])
        plain = LikelihoodSketch(3, **{**SMALL, "replicates": 0})
        plain.update(r[repeated], l_per_word[repeated], ids[repeated], words_present[repeated])
        assert np.array_equal(sketch.replicate_histograms[replicate], plain.histogram), f"replicate {replicate}"
        assert np.array_equal(sketch.replicate_curve[replicate], plain.curve), f"replicate {replicate}"


def test_replicate_weights_are_poisson_one():
    ids = np.arange(100_000, dtype=np.uint64)
    weights = bootstrap_weights(ids, 20, np.uint64(3)).astype(np.float64)
    count = weights.size

    # Poisson(1) has mean 1, variance 1 and fourth central moment 4, so the sample
    # mean has standard error sqrt(1 / n) and the sample variance about sqrt(3 / n).
    assert abs(weights.mean() - 1.0) <= 5 * math.sqrt(1 / count)
    assert abs(weights.var() - 1.0) <= 5 * math.sqrt(3 / count)
    assert abs(np.mean(weights == 0) - math.exp(-1)) <= 5 * math.sqrt(0.25 / count)


def test_replicate_weights_are_uncorrelated():
    weights = bootstrap_weights(np.arange(100_000, dtype=np.uint64), 4, np.uint64(0)).astype(np.float64)

    correlation = np.corrcoef(weights.T)

    for first in range(4):
        for second in range(first + 1, 4):
            assert abs(correlation[first, second]) <= 5 / math.sqrt(100_000), (first, second)


def test_replicate_weights_depend_on_seed():
    ids = np.arange(1_000, dtype=np.uint64)

    assert not np.array_equal(bootstrap_weights(ids, 4, np.uint64(0)), bootstrap_weights(ids, 4, np.uint64(1)))


def test_poisson_thresholds_follow_cdf():
    cumulative = 0.0
    for k, threshold in enumerate(POISSON_ONE_THRESHOLDS.tolist()[:12]):
        cumulative += math.exp(-1) / math.factorial(k)
        assert threshold / 2**64 == pytest.approx(cumulative, rel=1e-12), k
    assert POISSON_ONE_THRESHOLDS[-1] == np.uint64(2**64 - 1)
    assert np.all(np.diff(POISSON_ONE_THRESHOLDS.astype(object)) > 0)


def test_empty_documents_are_counted():
    r, l_per_word, ids, _ = random_scores(10, 1, seed=6)
    sketch = LikelihoodSketch(1, **SMALL)

    sketch.update(r, l_per_word, ids, np.array([0, 1, 5, 0, 0, 2, 1, 1, 0, 3]))

    assert sketch.documents == 10
    assert sketch.empty_documents == 4


def build_sketch(r, l_per_word, ids, words_present, parts) -> LikelihoodSketch:
    sketch = LikelihoodSketch(r.shape[1], **SMALL)
    for part in parts:
        sketch.update(r[part], l_per_word[part], ids[part], words_present[part])
    return sketch


SCORES = random_scores(120, 3, seed=8)


@hypothesis_settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 119), max_size=5, unique=True),
    permutation=st.permutations(range(120)),
    merge_order=st.permutations(range(6)),
)
def test_split_and_order_never_change_bytes(cuts, permutation, merge_order):
    r, l_per_word, ids, words_present = SCORES
    reference = build_sketch(r, l_per_word, ids, words_present, [np.arange(120)]).to_bytes()
    bounds = [0, *sorted(cuts), 120]
    shuffled = np.array(permutation)
    parts = [shuffled[low:high] for low, high in itertools.pairwise(bounds)]

    one_sketch = build_sketch(r, l_per_word, ids, words_present, parts)
    shard_sketches = [build_sketch(r, l_per_word, ids, words_present, [part]) for part in parts]
    merged = None
    for index in merge_order:
        if index < len(shard_sketches):
            merged = shard_sketches[index] if merged is None else shard_sketches[index].merge(merged)

    assert one_sketch.to_bytes() == reference
    assert merged.to_bytes() == reference


def test_merge_is_commutative_and_associative():
    r, l_per_word, ids, words_present = SCORES
    a, b, c = (build_sketch(r, l_per_word, ids, words_present, [np.arange(low, low + 40)]) for low in (0, 40, 80))

    assert a.merge(b).to_bytes() == b.merge(a).to_bytes()
    assert a.merge(b).merge(c).to_bytes() == a.merge(b.merge(c)).to_bytes()


def test_frame_round_trip():
    r, l_per_word, ids, words_present = SCORES
    sketch = build_sketch(r, l_per_word, ids, words_present, [np.arange(120)])

    restored = LikelihoodSketch.from_bytes(sketch.to_bytes())

    assert restored == sketch
    assert restored.to_bytes() == sketch.to_bytes()
    assert restored.parameters() == sketch.parameters()
    assert restored.documents == 120


def test_frame_parts_carry_every_parameter():
    sketch = LikelihoodSketch(
        2, bins=5, r_range=(-3.0, 7.5), l_bins=3, l_range=(-2.0, -0.5), curve_points=4, replicates=2, seed=2**64 - 1
    )

    meta, _ = sketch.to_frame_parts()

    assert meta["generators"] == 2
    assert meta["bins"] == 5
    assert meta["r_range"] == [-3.0, 7.5]
    assert meta["l_bins"] == 3
    assert meta["l_range"] == [-2.0, -0.5]
    assert meta["curve_points"] == 4
    assert meta["replicates"] == 2
    assert meta["seed"] == 2**64 - 1


def test_frame_with_wrong_array_shape_is_rejected():
    meta, arrays = LikelihoodSketch(2, **SMALL).to_frame_parts()
    arrays["curve"] = np.zeros(3, dtype=np.int64)

    with pytest.raises(ValueError, match="curve"):
        LikelihoodSketch.from_frame_parts(meta, arrays)


def test_frame_of_other_kind_is_rejected():
    from scanner.sketches.quantiles import QuantileSketch

    with pytest.raises(FrameError, match="likelihood"):
        LikelihoodSketch.from_bytes(QuantileSketch().to_bytes())


@pytest.mark.parametrize(
    "name, value",
    [
        ("generators", 2),
        ("bins", 17),
        ("r_range", (-20.0, 21.0)),
        ("l_bins", 9),
        ("l_range", (-2.0, 0.0)),
        ("curve_points", 12),
        ("replicates", 9),
        ("seed", 1),
    ],
)
def test_merge_rejects_different_parameter(name, value):
    parameters = {"generators": 3, **SMALL}
    first = LikelihoodSketch(**parameters)
    second = LikelihoodSketch(**{**parameters, name: value})

    expected = f"different {name}: {getattr(first, name)!r} and {getattr(second, name)!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        first.merge(second)


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"generators": 0}, "generators 0 is out of range"),
        ({"generators": 1.5}, "generators must be an integer"),
        ({"generators": 1, "bins": 0}, "bins 0 is out of range"),
        ({"generators": 1, "r_range": (1.0, 1.0)}, "r_range"),
        ({"generators": 1, "r_range": (0.0, math.inf)}, "r_range"),
        ({"generators": 1, "l_range": "low"}, "l_range must be a pair"),
        ({"generators": 1, "curve_points": 1}, "curve_points 1 is out of range"),
        ({"generators": 1, "replicates": -1}, "replicates -1 is out of range"),
        ({"generators": 1, "seed": 2**64}, "seed .* is out of range"),
        ({"generators": True}, "generators must be an integer"),
    ],
)
def test_constructor_rejects_invalid_parameter(parameters, message):
    with pytest.raises(ValueError, match=message):
        LikelihoodSketch(**parameters)


def test_update_rejects_invalid_input():
    sketch = LikelihoodSketch(2, **SMALL)
    r, l_per_word, ids, words_present = random_scores(4, 2, seed=9)

    with pytest.raises(ValueError, match=r"expected \(documents, 2\)"):
        sketch.update(r[:, :1], l_per_word, ids, words_present)
    with pytest.raises(ValueError, match="l_per_word has shape"):
        sketch.update(r, l_per_word[:3], ids, words_present)
    with pytest.raises(ValueError, match="non-finite"):
        sketch.update(np.where(r > 0, np.nan, r), l_per_word, ids, words_present)
    with pytest.raises(ValueError, match="non-negative"):
        sketch.update(r, l_per_word, np.array([-1, 2, 3, 4]), words_present)
    assert sketch.documents == 0


def test_accumulate_rejects_mismatched_arrays():
    r, l_per_word, ids, _ = random_scores(4, 2, seed=10)
    sketch = LikelihoodSketch(2, **SMALL)

    with pytest.raises(ValueError, match="rep_curve"):
        accumulate_scores(
            r,
            l_per_word,
            ids,
            sketch.histogram,
            sketch.l_histogram,
            sketch.curve,
            sketch.replicate_histograms,
            sketch.replicate_curve[:, :3],
            -20.0,
            20.0,
            -1.0,
            0.0,
            np.uint64(0),
        )
