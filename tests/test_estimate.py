"""Synthetic-share estimates on simulated corpora with known shares.

Each simulated document has one log-likelihood ratio per generator: noise
N(0, 1) plus `separation` under the generator that wrote it and
`RELATED_SHIFT * separation` under the other generators. Its histogram cell
is the best generator g* and the bin of that ratio on K = 60 bins, and its
word likelihood is another normal variable, correlated with the first ratio.
Calibration sets have 500 documents per class, targets 2,000 documents, and
replicates are Poisson(1) reweightings of the simulated documents (B = 200
target replicates, C = 100 calibration replicates).

At these sizes, with a per-document AUC of about 0.85, the estimator meets
the product's targets: |bias| <= 0.02, RMSE <= 0.04, 95th percentile of
|error| <= 0.08, and 95% intervals that cover the true share in >= 90% of
runs, pooled over the shares. Run with 200 seeds per share, this file's
simulation gave a coverage of 0.905 to 0.98 per share and 0.93 pooled, so
the pooled check has some margin and the per-share check is looser. With one
generator and 300 calibration documents per class the RMSE reached 0.040 at
a share of 0.25, and with 500 target documents it reached 0.050 (40 seeds
per share).
"""

import dataclasses
import functools
import logging

import numpy as np
import pytest

from scanner.estimate import (
    FIT_ALPHA,
    estimate_from_curve_replicates,
    estimate_share,
    fit_score_mixture,
    fit_test,
    plain_mle,
    word_fit_test,
    zero_share_test,
)

BINS = 60
WORD_BINS = 40
SCORE_EDGES = np.linspace(-3.0, 5.0, BINS - 1)
WORD_EDGES = np.linspace(-3.5, 4.5, WORD_BINS - 1)
RELATED_SHIFT = 0.3
WORD_CORRELATION = 0.3
SHARES = (0.0, 0.05, 0.1, 0.25, 0.5)


@dataclasses.dataclass(frozen=True)
class Scenario:
    generators: int
    separation: float
    seeds: int
    calibration_documents: int = 500
    target_documents: int = 2000
    target_replicates: int = 200
    calibration_replicates: int = 100


SCENARIOS = {
    1: Scenario(generators=1, separation=1.5, seeds=40),
    3: Scenario(generators=3, separation=1.8, seeds=40),
}


# Simulation


def simulate_documents(rng, source, count, scenario, score_shift=0.0, word_shift=0.0):
    """Return the (g*, bin) cell and the word-likelihood bin of `count` documents.

    `source` 0 is human and j >= 1 is generator j. `score_shift` and
    `word_shift` move the documents away from the references.
    """
    generators = scenario.generators
    noise = rng.normal(size=(count, generators))
    means = np.zeros(generators)
    if source > 0:
        means[:] = RELATED_SHIFT * scenario.separation
        means[source - 1] = scenario.separation
    ratios = means + noise + score_shift
    cells = ratios.argmax(axis=1) * BINS + np.digitize(ratios.max(axis=1), SCORE_EDGES)

    word_mean = 0.0 if source == 0 else 0.7 + 0.1 * source
    independent = np.sqrt(1.0 - WORD_CORRELATION**2) * rng.normal(size=count)
    words = word_mean + word_shift + WORD_CORRELATION * noise[:, 0] + independent
    return cells, np.digitize(words, WORD_EDGES)


def poisson_replicates(rng, cells, cell_count, replicates):
    """Histograms (replicates, cell_count) of the documents under Poisson(1) weights."""
    weights = rng.poisson(1.0, size=(replicates, cells.size)).astype(np.float64)
    order = np.argsort(cells, kind="stable")
    present, starts = np.unique(cells[order], return_index=True)
    histograms = np.zeros((replicates, cell_count))
    histograms[:, present] = np.add.reduceat(weights[:, order], starts, axis=1)
    return histograms


def simulate_corpus(seed, scenario, share, human_score_shift=0.0, human_word_shift=0.0):
    """Return the estimator inputs for one simulated calibration set and target."""
    rng = np.random.default_rng([scenario.generators, round(share * 1000), seed])
    generators = scenario.generators
    cell_count = generators * BINS

    calibration, calibration_replicates, calibration_words = [], [], []
    for source in range(generators + 1):
        cells, words = simulate_documents(rng, source, scenario.calibration_documents, scenario)
        calibration.append(np.bincount(cells, minlength=cell_count))
        calibration_replicates.append(poisson_replicates(rng, cells, cell_count, scenario.calibration_replicates))
        calibration_words.append(np.bincount(words, minlength=WORD_BINS))

    mix = [1.0 - share] + [share / generators] * generators
    sources = rng.choice(generators + 1, size=scenario.target_documents, p=mix)
    target_cells, target_words = [], []
    for source in range(generators + 1):
        shifts = (human_score_shift, human_word_shift) if source == 0 else (0.0, 0.0)
        cells, words = simulate_documents(rng, source, int(np.sum(sources == source)), scenario, *shifts)
        target_cells.append(cells)
        target_words.append(words)
    target_cells = np.concatenate(target_cells)

    shape = (generators, BINS)
    return {
        "T": np.bincount(target_cells, minlength=cell_count).reshape(shape),
        "T_rep": poisson_replicates(rng, target_cells, cell_count, scenario.target_replicates).reshape(
            scenario.target_replicates, *shape
        ),
        "H": calibration[0].reshape(shape),
        "H_rep": calibration_replicates[0].reshape(scenario.calibration_replicates, *shape),
        "M": np.stack(calibration[1:]).reshape(generators, *shape),
        "M_rep": np.stack(calibration_replicates[1:], axis=1).reshape(
            scenario.calibration_replicates, generators, *shape
        ),
        "U": np.bincount(np.concatenate(target_words), minlength=WORD_BINS),
        "Uh": calibration_words[0],
        "Um": np.stack(calibration_words[1:]),
    }


def estimate(corpus, **options):
    return estimate_share(
        corpus["T"],
        corpus["T_rep"],
        corpus["H"],
        corpus["H_rep"],
        corpus["M"],
        corpus["M_rep"],
        U=corpus["U"],
        Uh=corpus["Uh"],
        Um=corpus["Um"],
        **options,
    )


@dataclasses.dataclass
class Runs:
    """Estimates of every seed and share of one scenario, in arrays indexed [share, seed]."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    generator_estimate: np.ndarray  # [share, seed, generator]
    score_p_value: np.ndarray
    word_p_value: np.ndarray
    p_value: np.ndarray
    warnings: list[str]


@functools.cache
def simulated_runs(generators: int) -> Runs:
    scenario = SCENARIOS[generators]
    shape = (len(SHARES), scenario.seeds)
    runs = Runs(
        estimate=np.zeros(shape),
        low=np.zeros(shape),
        high=np.zeros(shape),
        generator_estimate=np.zeros((*shape, generators)),
        score_p_value=np.zeros(shape),
        word_p_value=np.zeros(shape),
        p_value=np.zeros(shape),
        warnings=[],
    )
    handler = _ListHandler()
    logger = logging.getLogger("scanner.estimate")
    logger.addHandler(handler)
    try:
        for i, share in enumerate(SHARES):
            for seed in range(scenario.seeds):
                result = estimate(simulate_corpus(seed, scenario, share))
                runs.estimate[i, seed] = result.share.estimate
                runs.low[i, seed] = result.share.low
                runs.high[i, seed] = result.share.high
                runs.generator_estimate[i, seed] = [interval.estimate for interval in result.generators]
                runs.score_p_value[i, seed] = result.score_fit.p_value
                runs.word_p_value[i, seed] = result.word_fit.p_value
                runs.p_value[i, seed] = result.p_value
    finally:
        logger.removeHandler(handler)
    runs.warnings = handler.messages
    return runs


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Return P(positive > negative) + P(positive == negative) / 2 from midranks."""
    _, inverse, counts = np.unique(np.concatenate([positives, negatives]), return_inverse=True, return_counts=True)
    midranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positive_rank_sum = midranks[: positives.size].sum()
    return (positive_rank_sum - positives.size * (positives.size + 1) / 2) / (positives.size * negatives.size)


# The simulation itself


@pytest.mark.parametrize("generators", [1, 3])
def test_simulated_documents_overlap(generators):
    scenario = SCENARIOS[generators]
    rng = np.random.default_rng(0)
    human, _ = simulate_documents(rng, 0, 4000, scenario)
    machine, _ = simulate_documents(rng, 1, 4000, scenario)

    separability = auc(machine % BINS, human % BINS)

    assert 0.75 <= separability <= 0.9


# Accuracy on simulated corpora


@pytest.mark.parametrize("generators", [1, 3])
@pytest.mark.parametrize("share_index", range(len(SHARES)))
def test_share_error_within_targets(generators, share_index):
    runs = simulated_runs(generators)
    errors = runs.estimate[share_index] - SHARES[share_index]

    assert abs(errors.mean()) <= 0.02
    assert np.sqrt(np.mean(errors**2)) <= 0.04
    assert np.quantile(np.abs(errors), 0.95) <= 0.08


@pytest.mark.parametrize("generators", [1, 3])
def test_share_interval_coverage(generators):
    runs = simulated_runs(generators)
    truth = np.array(SHARES)[:, None]
    covered = (runs.low <= truth) & (truth <= runs.high)

    assert covered.mean() >= 0.9
    assert covered.mean(axis=1).min() >= 0.75


@pytest.mark.parametrize("share_index", range(len(SHARES)))
def test_generator_shares_recovered(share_index):
    runs = simulated_runs(3)
    errors = runs.generator_estimate[share_index] - SHARES[share_index] / 3

    assert np.all(np.abs(errors.mean(axis=0)) <= 0.02)
    assert np.all(np.sqrt(np.mean(errors**2, axis=0)) <= 0.04)


@pytest.mark.parametrize("generators", [1, 3])
def test_em_converges_on_every_fit(generators):
    messages = simulated_runs(generators).warnings

    assert [message for message in messages if "did not converge" in message] == []


# Fit tests


@pytest.mark.parametrize("generators", [1, 3])
def test_fit_warning_false_alarm_rate(generators):
    runs = simulated_runs(generators)

    assert np.mean(runs.p_value < FIT_ALPHA) <= 0.03


@pytest.mark.parametrize("test", ["score_p_value", "word_p_value"])
def test_fit_test_false_alarm_rate(test):
    p_values = np.concatenate([getattr(simulated_runs(generators), test).ravel() for generators in (1, 3)])

    assert np.mean(p_values < FIT_ALPHA) <= 0.03


@pytest.mark.parametrize("generators", [1, 3])
def test_fit_p_values_roughly_uniform(generators):
    runs = simulated_runs(generators)

    for p_values in (runs.score_p_value, runs.word_p_value):
        assert 0.03 <= np.mean(p_values < 0.1) <= 0.2
        assert 0.35 <= np.mean(p_values < 0.5) <= 0.65


@pytest.mark.parametrize("generators", [1, 3])
def test_shifted_corpus_fails_fit(generators):
    scenario = SCENARIOS[generators]
    for seed in range(5):
        corpus = simulate_corpus(100 + seed, scenario, 0.1, human_score_shift=-1.0)

        result = estimate(corpus)

        assert result.score_fit.p_value < FIT_ALPHA
        assert result.p_value < FIT_ALPHA
        assert result.warning is not None
        assert "another domain" in result.warning
        assert result.interval_widening > 1.0


def test_word_mismatch_fails_word_test():
    scenario = SCENARIOS[1]
    for seed in range(5):
        corpus = simulate_corpus(200 + seed, scenario, 0.1, human_word_shift=0.8)

        result = estimate(corpus)

        assert result.word_fit.p_value < FIT_ALPHA
        assert result.p_value < FIT_ALPHA
        assert result.warning is not None


def test_failed_fit_widens_interval(monkeypatch):
    corpus = simulate_corpus(300, SCENARIOS[1], 0.25, human_score_shift=-1.0)

    widened = estimate(corpus)
    monkeypatch.setattr("scanner.estimate.FIT_ALPHA", 0.0)
    unwidened = estimate(corpus)

    assert widened.warning is not None
    assert unwidened.warning is None
    assert widened.share.low <= unwidened.share.low
    assert widened.share.high > unwidened.share.high
    assert widened.share.estimate == unwidened.share.estimate


def test_fit_test_accepts_its_own_mixture():
    corpus = simulate_corpus(400, SCENARIOS[3], 0.25)
    weights = fit_score_mixture(corpus["T"], corpus["H"], corpus["M"])

    result = fit_test(corpus["T"], corpus["H"], corpus["M"], weights, replicates=200)

    assert result.p_value > FIT_ALPHA
    assert result.replicates == 200
    assert 0.3 < result.dispersion < 3.0


def test_word_fit_test_without_replicates():
    corpus = simulate_corpus(500, SCENARIOS[1], 0.25)
    weights = fit_score_mixture(corpus["T"], corpus["H"], corpus["M"])

    result = word_fit_test(corpus["U"], corpus["Uh"], corpus["Um"], weights, replicates=200)

    assert 0.0 < result.p_value <= 1.0
    assert result.statistic >= 0.0


# The mixture fit on exact histograms


def expected_histograms(generators, documents=400_000):
    """Class histograms (G + 1, G, K) with many documents, human first."""
    scenario = Scenario(generators=generators, separation=1.8, seeds=1)
    rng = np.random.default_rng(7)
    histograms = []
    for source in range(generators + 1):
        cells, _ = simulate_documents(rng, source, documents, scenario)
        histograms.append(np.bincount(cells, minlength=generators * BINS).reshape(generators, BINS))
    return np.stack(histograms).astype(np.float64)


@pytest.mark.parametrize("min_cell_documents", [0, 100])
def test_fit_recovers_exact_mixture(min_cell_documents):
    classes = expected_histograms(3)
    weights = np.array([0.55, 0.05, 0.3, 0.1])
    target = np.einsum("j,jgk->gk", weights, classes / classes.sum(axis=(1, 2), keepdims=True)) * 10_000

    fitted = fit_score_mixture(target, classes[0], classes[1:], min_cell_documents=min_cell_documents)

    np.testing.assert_allclose(fitted, weights, atol=1e-5)


def test_fit_gives_exact_zero_for_human_target():
    classes = expected_histograms(3)

    fitted = fit_score_mixture(classes[0], classes[0], classes[1:])

    assert fitted.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_zero_share_test_on_human_and_mixed_targets():
    scenario = SCENARIOS[1]
    human = simulate_corpus(600, scenario, 0.0)
    mixed = simulate_corpus(600, scenario, 0.25)

    human_p_value = zero_share_test(human["T"], human["H"], human["M"], replicates=200)
    mixed_p_value = zero_share_test(mixed["T"], mixed["H"], mixed["M"], replicates=200)

    assert human_p_value > 0.025
    assert mixed_p_value < 0.01


def test_estimate_is_deterministic():
    corpus = simulate_corpus(700, SCENARIOS[3], 0.1)

    first = estimate(corpus, test_replicates=100)
    second = estimate(corpus, test_replicates=100)

    assert first == second


def test_estimate_without_word_histograms():
    corpus = simulate_corpus(800, SCENARIOS[1], 0.1)

    result = estimate_share(
        corpus["T"], corpus["T_rep"], corpus["H"], corpus["H_rep"], corpus["M"], corpus["M_rep"], test_replicates=100
    )

    assert result.word_fit is None
    assert result.p_value == result.score_fit.p_value
    assert len(result.generators) == 1
    assert result.share.low <= result.share.estimate <= result.share.high


# The uncalibrated estimator


def test_plain_mle_finds_parabola_vertex():
    grid = np.linspace(0.0, 1.0, 101)

    assert plain_mle(-50.0 * (grid - 0.3137) ** 2) == pytest.approx(0.3137, abs=1e-12)


def test_plain_mle_on_mixture_likelihood():
    rng = np.random.default_rng(0)
    ratios = np.concatenate([rng.normal(-0.72, 1.2, 3000), rng.normal(0.72, 1.2, 1000)])
    excess = np.expm1(ratios)
    grid = np.linspace(0.0, 1.0, 51)
    curve = np.log1p(grid[:, None] * excess[None, :]).sum(axis=1)

    # The curve is concave, so its maximum is the root of the decreasing derivative.
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.sum(excess / (1.0 + middle * excess)) > 0:
            low = middle
        else:
            high = middle

    assert 0.0 < low < 1.0
    assert plain_mle(curve) == pytest.approx(low, abs=1e-3)


def test_plain_mle_at_grid_ends():
    grid = np.linspace(0.0, 1.0, 21)

    assert plain_mle(-grid) == 0.0
    assert plain_mle(grid) == 1.0
    assert plain_mle(np.where(grid < 1.0, -((grid - 0.2) ** 2), -np.inf)) == pytest.approx(0.2)


def test_curve_replicate_interval_contains_estimate():
    rng = np.random.default_rng(1)
    ratios = np.concatenate([rng.normal(-0.72, 1.2, 1500), rng.normal(0.72, 1.2, 500)])
    grid = np.linspace(0.0, 1.0, 51)
    terms = np.log((1.0 - grid[:, None]) + grid[:, None] * np.exp(ratios[None, :]))
    weights = rng.poisson(1.0, size=(200, ratios.size))

    low, high = estimate_from_curve_replicates(weights @ terms.T)

    assert low <= plain_mle(terms.sum(axis=1)) <= high
    assert high - low < 0.2


# Input validation


def valid_inputs(generators=2, bins=5, replicates=4, calibration_replicates=3):
    return {
        "T": np.ones((generators, bins), dtype=np.int64),
        "T_rep": np.ones((replicates, generators, bins)),
        "H": np.ones((generators, bins), dtype=np.int64),
        "H_rep": np.ones((calibration_replicates, generators, bins)),
        "M": np.ones((generators, generators, bins), dtype=np.int64),
        "M_rep": np.ones((calibration_replicates, generators, generators, bins)),
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("T", np.ones(5), r"T has shape \(5,\), expected \(G, K\)"),
        ("H", np.ones((2, 4)), r"H has shape \(2, 4\), expected \(G=2, K=5\)"),
        ("M", np.ones((1, 2, 5)), r"M has shape \(1, 2, 5\), expected \(G=2, G=2, K=5\)"),
        ("T_rep", np.ones((4, 2, 6)), r"T_rep has shape \(4, 2, 6\), expected \(B, G=2, K=5\)"),
        ("H_rep", np.ones((3, 5)), r"H_rep has shape \(3, 5\), expected \(C, G=2, K=5\)"),
        ("M_rep", np.ones((2, 2, 2, 5)), r"M_rep has shape \(2, 2, 2, 5\), expected \(C=3, G=2, G=2, K=5\)"),
        ("T_rep", np.ones((1, 2, 5)), r"T_rep has 1 replicate, expected B >= 2"),
        ("H", -np.ones((2, 5)), r"H contains negative or non-finite values"),
        ("T_rep", np.full((4, 2, 5), np.nan), r"T_rep contains negative or non-finite values"),
        ("M", np.zeros((2, 2, 5)), r"M\[0\] counts no document"),
        ("T", np.zeros((2, 5)), r"T counts no document"),
        ("H", np.full((2, 5), "1"), r"H has dtype <U1, expected integer or float document counts"),
    ],
)
def test_estimate_share_rejects_invalid_input(name, value, message):
    inputs = valid_inputs()
    inputs[name] = value

    with pytest.raises(ValueError, match=message):
        estimate_share(**inputs)


def test_estimate_share_rejects_partial_word_histograms():
    with pytest.raises(ValueError, match="U, Uh and Um must be given together"):
        estimate_share(**valid_inputs(), U=np.ones(4))


def test_estimate_share_rejects_mismatched_um():
    with pytest.raises(ValueError, match=r"Um has shape \(3, 4\), expected \(G=2, K2=4\)"):
        estimate_share(**valid_inputs(), U=np.ones(4), Uh=np.ones(4), Um=np.ones((3, 4)))


def test_estimate_share_rejects_invalid_confidence():
    with pytest.raises(ValueError, match="confidence is 95.0, expected a level strictly between 0 and 1"):
        estimate_share(**valid_inputs(), confidence=95)


def test_fit_test_rejects_invalid_weights():
    inputs = valid_inputs()

    with pytest.raises(ValueError, match=r"weights has shape \(2,\), expected \(G \+ 1,\) = \(3,\)"):
        fit_test(inputs["T"], inputs["H"], inputs["M"], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be non-negative and sum to 1"):
        fit_test(inputs["T"], inputs["H"], inputs["M"], [0.5, 0.5, 0.5])


def test_word_fit_test_rejects_invalid_replicates():
    with pytest.raises(ValueError, match=r"weight_replicates has shape \(4, 2\), expected \(B, G \+ 1\) = \(B, 3\)"):
        word_fit_test(np.ones(4), np.ones(4), np.ones((2, 4)), [0.4, 0.3, 0.3], np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"Um has shape \(4,\), expected \(G, K2=4\)"):
        word_fit_test(np.ones(4), np.ones(4), np.ones(4), [0.5, 0.5])


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        (np.ones((2, 3)), r"curve has shape \(2, 3\), expected \(P,\)"),
        (np.ones(1), r"curve has shape \(1,\), expected \(P,\) with P >= 2"),
        (np.array([0.0, np.nan, 1.0]), "curve contains NaN or \\+inf"),
        (np.full(3, -np.inf), "curve is -inf at every grid point"),
    ],
)
def test_plain_mle_rejects_invalid_curve(curve, message):
    with pytest.raises(ValueError, match=message):
        plain_mle(curve)


def test_curve_replicates_reject_invalid_shape():
    with pytest.raises(ValueError, match=r"curve_rep has shape \(5,\), expected \(B, P\)"):
        estimate_from_curve_replicates(np.ones(5))
    with pytest.raises(ValueError, match=r"curve_rep\[1\] is -inf at every grid point"):
        estimate_from_curve_replicates(np.array([[0.0, 1.0], [-np.inf, -np.inf]]))


def test_small_calibration_keeps_enough_cells():
    # 80 human and 60 generated calibration documents, perfectly separated, and a
    # pure-human target: a 100-document cell threshold left one cell and a share of 0.5.
    human = np.zeros((1, 12), dtype=np.int64)
    human[0, :6] = [10, 15, 20, 15, 10, 10]
    machine = np.zeros((1, 1, 12), dtype=np.int64)
    machine[0, 0, 6:] = [10, 10, 10, 10, 10, 10]
    target = human * 5
    rng = np.random.default_rng(0)
    target_replicates = rng.poisson(target[None].repeat(50, axis=0)).astype(np.int64)
    human_replicates = rng.poisson(human[None].repeat(50, axis=0)).astype(np.int64)
    machine_replicates = rng.poisson(machine[None].repeat(50, axis=0)).astype(np.int64)

    estimate = estimate_share(target, target_replicates, human, human_replicates, machine, machine_replicates)

    assert estimate.cells >= 4
    assert estimate.share.estimate < 0.05
