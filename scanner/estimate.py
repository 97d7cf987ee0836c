"""Estimate the share of model-generated documents in a corpus from histograms.

A scan keeps mergeable summaries only, so every estimator here works from
histograms and curves, never from per-document scores.

Histograms (numpy arrays of document counts, G generators, K score bins
including under- and overflow):

- ``T`` (G, K): target documents by their best generator g* (highest
  log-likelihood ratio) and the bin of that ratio, with ``T_rep`` (B, G, K)
  under B Poisson(1) reweightings of the documents.
- ``H`` (G, K) and ``M`` (G, G, K): the same histogram of held-out human
  documents and of each generator's held-out documents (``M[j]`` for
  generator j). Their replicates ``H_rep`` (C, G, K) and ``M_rep``
  (C, G, G, K) resampled whole source documents.
- ``U`` (K2,), ``Uh`` (K2,) and ``Um`` (G, K2): histograms of the per-word
  human log-likelihood of the target, the human references and each
  generator's references.

The model is a multinomial mixture of the normalized calibration histograms,
human first: ``T ~ w_0 * H / |H| + sum_j w_j * M[j] / |M[j]|``. The synthetic
share is ``1 - w_0`` and the share of generator j is ``w_j``.

Calibration sets of a few hundred documents leave most of the G * K cells
with a handful of documents, and fitting the mixture to such noisy
histograms is biased towards mixing the classes: averaging the independent
noise of several histograms fits the target better than any one of them.
Two steps reduce the bias:

1. Adjacent bins of each g* are merged until every cell holds at least
   `MIN_CELL_DOCUMENTS` calibration documents, all classes together. Merging
   is a linear map, so the merged target is still the same mixture of the
   merged classes.
2. `estimate_share` subtracts the bootstrap estimate of the remaining bias,
   the mean of the replicate fits minus the fit (Efron and Tibshirani,
   "Bootstrap Methods for Standard Errors, Confidence Intervals, and Other
   Measures of Statistical Accuracy", Statistical Science 1(1), 1986). The
   percentile interval is shifted to match.

In the simulation of tests/test_estimate.py (500 calibration documents per
class, 60 bins, per-document AUC about 0.85, 2,000 target documents) the
mean error at a true share of 0 was +0.035 with one generator and +0.070 with
three when fitted on single bins, +0.011 and +0.026 on merged cells, and
+0.009 and +0.013 after the correction (100 to 200 seeds). Part of what
remains comes from the floor at 0, below which no estimate can go.

`plain_mle` is the uncalibrated estimator of Liang et al., "Monitoring
AI-Modified Content at Scale" (ICML 2024), kept as a diagnostic.
"""

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

MIN_CELL_DOCUMENTS = 100
"""Calibration documents (all classes together) that each merged cell must hold.

To first order the mixing bias is proportional to the number of cells
divided by the calibration documents per class. With a fixed minimum it
therefore stays about the same for any calibration size, and the bootstrap
correction removes most of the rest. 0 keeps every bin as its own cell.

NOTE: 100 was chosen on the simulation in tests/test_estimate.py and has not
been checked on real reference profiles.
"""

CELLS_PER_COMPONENT = 4
"""Cells each mixture component needs at least; a small calibration set lowers the threshold to keep them."""

MAX_DESIGN_EFFECT = 20.0
"""Largest design effect the fit tests apply to a class's calibration documents."""

PROBABILITY_FLOOR = 1e-12
"""Smallest cell probability of a normalized calibration histogram.

A cell that no calibration document of a class reached gets this probability
instead of 0, so target documents in it keep a finite likelihood. A cell that
every class missed has the same probability under every class and does not
move the weights. The floor is far below 1 / (documents of any realistic
calibration set), so it does not change the fit elsewhere.
"""

EM_TOLERANCE = 1e-9
"""EM stops when max_i (dL/dw_i) / N - 1 is at most this.

L is the log-likelihood and N the target's document count. This gap is zero
exactly at the optimum of the concave likelihood (Karush-Kuhn-Tucker
conditions), and L(optimum) - L(w) <= N * gap.
"""

EM_MAX_STEPS = 20_000

DROP_THRESHOLD = 1e-4
"""EM sets a weight below this to exactly 0 while the likelihood pushes it down.

EM shrinks a weight whose optimum is 0 only geometrically, so without this a
share of 0 would come out as a small positive number. A dropped weight whose
likelihood gradient later points up is restored once, so an optimum that is
a small positive weight is still found.
"""

FIT_ALPHA = 0.01
"""Combined fit-test p-value below which `estimate_share` warns and widens intervals."""

TEST_REPLICATES = 500
"""Parametric bootstrap draws of each test. The smallest p-value is 1 / (draws + 1)."""


@dataclass(frozen=True)
class ShareInterval:
    """A bias-corrected share with its bootstrap interval.

    `fitted` is the maximum-likelihood value before the correction and `bias`
    the bootstrap estimate of its bias (mean of the replicate fits minus
    `fitted`). `estimate` is `fitted - bias` and the interval is the
    percentile interval of the replicate fits shifted by `-2 * bias`, both
    clipped to [0, 1].
    """

    estimate: float
    low: float
    high: float
    standard_error: float
    fitted: float
    bias: float


@dataclass(frozen=True)
class FitTest:
    """Goodness of fit of a histogram to the fitted mixture of its references.

    `statistic` is the calibration-aware Pearson statistic (see `fit_test`),
    `p_value` comes from a parametric bootstrap with `replicates` draws, and
    `dispersion` is the statistic divided by the mean of its bootstrap null
    distribution: about 1 when the mixture explains the histogram.
    """

    statistic: float
    p_value: float
    dispersion: float
    replicates: int


@dataclass(frozen=True)
class ShareEstimate:
    """Synthetic share of a corpus, per-generator shares and the fit diagnostics.

    `weights` are the fitted mixture weights before bias correction, human
    first, on `cells` merged cells, and `replicates` is B.
    `zero_share_p_value` tests a share of exactly 0. `p_value` combines the
    score and word fit tests by Bonferroni. When it is below `FIT_ALPHA`,
    `warning` is set and the intervals are widened by `interval_widening`.
    Otherwise `interval_widening` is 1 and `warning` is None.
    """

    share: ShareInterval
    generators: tuple[ShareInterval, ...]
    weights: tuple[float, ...]
    confidence: float
    replicates: int
    cells: int
    zero_share_p_value: float
    score_fit: FitTest
    word_fit: FitTest | None
    p_value: float
    interval_widening: float
    warning: str | None


# Input checks


def _check_counts(name: str, array, names: tuple[str, ...], shape: tuple[int | None, ...]) -> np.ndarray:
    """Return `array` as float64 after checking its shape and that it contains counts.

    `shape` gives the expected size of each axis, None where any size >= 1 is valid.
    """
    values = np.asarray(array)
    expected = "(" + ", ".join(label if size is None else f"{label}={size}" for label, size in zip(names, shape)) + ")"
    wrong_shape = values.ndim != len(shape) or any(
        actual < 1 if size is None else actual != size for actual, size in zip(values.shape, shape)
    )
    if wrong_shape:
        raise ValueError(f"{name} has shape {values.shape}, expected {expected}")
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"{name} has dtype {values.dtype}, expected integer or float document counts")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} contains negative or non-finite values, expected document counts")
    return values


def _check_not_empty(name: str, histograms: np.ndarray, count_axes: tuple[int, ...]) -> None:
    """Raise ValueError naming the first histogram in `histograms` that counts no document."""
    totals = np.atleast_1d(histograms.sum(axis=count_axes))
    empty = np.argwhere(totals <= 0)
    if empty.size:
        index = "".join(f"[{i}]" for i in empty[0]) if histograms.ndim > len(count_axes) else ""
        raise ValueError(f"{name}{index} counts no document, so the mixture cannot be fitted")


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is {confidence}, expected a level strictly between 0 and 1, such as 0.95")
    return confidence


def _check_positive_integer(name: str, value: int, example: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} is {value}, expected a positive integer such as {example}")
    return int(value)


def _check_minimum(min_cell_documents: float) -> float:
    if not np.isfinite(min_cell_documents) or min_cell_documents < 0:
        raise ValueError(
            f"min_cell_documents is {min_cell_documents}, expected a number >= 0 such as {MIN_CELL_DOCUMENTS}"
        )
    return float(min_cell_documents)


def _check_weights(weights, classes: int) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64)
    if values.shape != (classes,):
        raise ValueError(f"weights has shape {values.shape}, expected (G + 1,) = ({classes},)")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.isclose(values.sum(), 1.0):
        raise ValueError("weights must be non-negative and sum to 1, as fit_score_mixture returns them")
    return values


def _check_score_histograms(T, H, M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    target = np.asarray(T)
    if target.ndim != 2 or 0 in target.shape:
        raise ValueError(f"T has shape {target.shape}, expected (G, K) with G >= 1 generators and K >= 1 bins")
    generators, bins = target.shape
    target = _check_counts("T", target, ("G", "K"), (generators, bins))
    human = _check_counts("H", H, ("G", "K"), (generators, bins))
    machine = _check_counts("M", M, ("G", "G", "K"), (generators, generators, bins))
    _check_not_empty("T", target, (0, 1))
    _check_not_empty("H", human, (0, 1))
    _check_not_empty("M", machine, (1, 2))
    return target, human, machine


def _check_word_histograms(U, Uh, Um, generators: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    words = np.asarray(U)
    if words.ndim != 1 or words.size == 0:
        raise ValueError(f"U has shape {words.shape}, expected (K2,) with K2 >= 1 bins")
    bins = words.size
    if generators is None:
        machine = np.asarray(Um)
        if machine.ndim != 2 or machine.shape[0] < 1:
            raise ValueError(f"Um has shape {machine.shape}, expected (G, K2={bins}) with G >= 1 generators")
        generators = machine.shape[0]
    words = _check_counts("U", words, ("K2",), (bins,))
    human = _check_counts("Uh", Uh, ("K2",), (bins,))
    machine = _check_counts("Um", Um, ("G", "K2"), (generators, bins))
    _check_not_empty("U", words, (0,))
    _check_not_empty("Uh", human, (0,))
    _check_not_empty("Um", machine, (1,))
    return words, human, machine


# Cells


def _cell_starts(pooled: np.ndarray, minimum: float) -> np.ndarray:
    """Return the first flattened bin of each merged cell of `pooled` (blocks, bins).

    Within each block (one g*), bins are merged from the left until the cell
    contains `minimum` documents, and cells never span two blocks. The last
    cell of a block joins the one before it when it stays below `minimum`.
    """
    blocks, bins = pooled.shape
    starts: list[int] = []
    for block in range(blocks):
        offset = block * bins
        block_starts = [offset]
        documents = 0.0
        for k in range(bins):
            documents += pooled[block, k]
            if documents >= minimum and k < bins - 1:
                block_starts.append(offset + k + 1)
                documents = 0.0
        if documents < minimum and len(block_starts) > 1:
            block_starts.pop()
        starts.extend(block_starts)
    return np.asarray(starts, dtype=np.intp)


def _merge_cells(histograms: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum the flattened bins (last axis) of `histograms` into the cells beginning at `starts`."""
    return np.add.reduceat(histograms, starts, axis=-1)


@dataclass(frozen=True)
class _Cells:
    """Target (N_cells,) and calibration (G + 1, N_cells) histograms on merged cells, human first."""

    target: np.ndarray
    calibration: np.ndarray
    starts: np.ndarray


def _effective_minimum(calibration: np.ndarray, minimum: float) -> float:
    """Lower the cell threshold so that a small calibration set still gives enough cells.

    Each of the J mixture components needs several cells to be identifiable: with
    300 calibration documents, 3 components and a threshold of 100, only 3 cells
    were left and the fit returned 0.67 for a true share of 0.20. The threshold is
    therefore at most the calibration documents / (CELLS_PER_COMPONENT * J).
    """
    components = calibration.shape[0]
    return min(minimum, float(calibration.sum()) / (CELLS_PER_COMPONENT * components))


def _score_cells(target: np.ndarray, human: np.ndarray, machine: np.ndarray, minimum: float) -> _Cells:
    generators, bins = target.shape
    calibration = np.concatenate([human.reshape(1, -1), machine.reshape(generators, -1)], axis=0)
    minimum = _effective_minimum(calibration, minimum)
    starts = _cell_starts(calibration.sum(axis=0).reshape(generators, bins), minimum)
    return _Cells(_merge_cells(target.reshape(-1), starts), _merge_cells(calibration, starts), starts)


def _word_cells(words: np.ndarray, human: np.ndarray, machine: np.ndarray, minimum: float) -> _Cells:
    calibration = np.concatenate([human[None], machine], axis=0)
    minimum = _effective_minimum(calibration, minimum)
    starts = _cell_starts(calibration.sum(axis=0)[None], minimum)
    return _Cells(_merge_cells(words, starts), _merge_cells(calibration, starts), starts)


# Mixture fit


def _component_probabilities(calibration: np.ndarray) -> np.ndarray:
    """Normalize class histograms (..., J, C) into cell probabilities (..., C, J).

    Cells are floored at `PROBABILITY_FLOOR`. A class histogram that counts no
    document (possible in a bootstrap replicate) becomes the floor everywhere,
    so EM gives that class a weight of 0.
    """
    totals = calibration.sum(axis=-1, keepdims=True)
    probabilities = np.maximum(calibration / np.where(totals > 0, totals, 1.0), PROBABILITY_FLOOR)
    return np.swapaxes(probabilities, -1, -2)


def _em_step(
    counts: np.ndarray, components: np.ndarray, weights: np.ndarray, restored: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the EM update of `weights` (R, J) and the gradient ratios at `weights`.

    ratio_i = sum_c counts_c * f_ic / p_c / N is the gradient of the
    log-likelihood divided by N, and EM multiplies w_i by it, which keeps the
    weights on the simplex because sum_i w_i * ratio_i = 1. Zero weights
    follow `DROP_THRESHOLD`, and `restored` (updated in place) marks the
    weights that were restored once.
    """
    mixture = np.einsum("rcj,rj->rc", components, weights)
    ratio = np.einsum("rc,rcj->rj", counts / mixture, components) / counts.sum(axis=1, keepdims=True)
    updated = weights * ratio

    restore = (weights == 0) & (ratio > 1.0 + EM_TOLERANCE) & ~restored
    updated[restore] = DROP_THRESHOLD
    restored |= restore
    drop = (updated < DROP_THRESHOLD) & (ratio < 1.0) & ~restored
    updated[drop] = 0.0
    return updated / updated.sum(axis=1, keepdims=True), ratio


def _log_likelihood(counts: np.ndarray, components: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (counts * np.log(np.einsum("rcj,rj->rc", components, weights))).sum(axis=1)


def _extrapolate(start: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the SQUAREM point of two EM steps start -> first -> second (rows of weights).

    The step length is the third SQUAREM rule of Varadhan and Roland
    (Scandinavian Journal of Statistics 35:335-353, 2008), at least one EM
    step. Rows whose point leaves the simplex fall back to `second`, and a
    weight that EM set to 0 stays 0.
    """
    step = first - start
    curvature = second - first - step
    step_norm = (step * step).sum(axis=1)
    curvature_norm = (curvature * curvature).sum(axis=1)
    length = np.where(curvature_norm > 0, -np.sqrt(step_norm / np.where(curvature_norm > 0, curvature_norm, 1.0)), -1.0)
    length = np.minimum(length, -1.0)[:, None]

    point = start - 2.0 * length * step + length**2 * curvature
    point = np.where(second == 0, 0.0, point)
    valid = np.all(point >= 0, axis=1) & (point.sum(axis=1) > 0)
    totals = np.where(valid, point.sum(axis=1), 1.0)[:, None]
    return np.where(valid[:, None], point / totals, second)


def _fit_weights(counts: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """Fit mixture weights (R, J) of R histograms (R, C) to class histograms (R, J, C) by EM.

    Every row starts from equal weights. EM is accelerated by SQUAREM: each
    cycle takes two EM steps, extrapolates (`_extrapolate`) and takes one EM
    step from there, keeping the second EM step instead when that lowers the
    likelihood. A row stops when max_i ratio_i - 1 <= `EM_TOLERANCE` (see
    `_em_step`): at the optimum of the concave likelihood ratio_i = 1 where
    w_i > 0 and ratio_i <= 1 where w_i = 0. Rows stop independently, so a
    row's result does not depend on the other rows.
    """
    components = _component_probabilities(calibration)
    rows, _, classes = components.shape
    weights = np.full((rows, classes), 1.0 / classes)
    restored = np.zeros((rows, classes), dtype=bool)
    pending = np.arange(rows)

    for _ in range(0, EM_MAX_STEPS, 3):
        if pending.size == 0:
            break
        row_counts, row_components = counts[pending], components[pending]
        row_restored = restored[pending]
        start = weights[pending]
        first, ratio = _em_step(row_counts, row_components, start, row_restored)
        converged = ratio.max(axis=1) - 1.0 <= EM_TOLERANCE
        second, _ = _em_step(row_counts, row_components, first, row_restored)
        restored_before_third = row_restored.copy()
        third, _ = _em_step(row_counts, row_components, _extrapolate(start, first, second), row_restored)
        worse = _log_likelihood(row_counts, row_components, third) < _log_likelihood(row_counts, row_components, second)
        third[worse] = second[worse]
        row_restored[worse] = restored_before_third[worse]

        weights[pending[~converged]] = third[~converged]
        restored[pending] = row_restored
        pending = pending[~converged]

    if pending.size:
        logger.warning(
            "EM did not converge within %d steps on %d of %d histograms, so their weights are the last iterate",
            EM_MAX_STEPS,
            pending.size,
            rows,
        )
    return weights


def fit_score_mixture(T, H, M, *, min_cell_documents: float = MIN_CELL_DOCUMENTS) -> np.ndarray:
    """Fit the maximum-likelihood mixture weights (G + 1,) of T, human first, by EM.

    The weights are non-negative and sum to 1, and the synthetic share is
    `1 - weights[0]`. Bins are merged into cells first (`MIN_CELL_DOCUMENTS`).
    These weights are not bias-corrected: `estimate_share` does that with
    the bootstrap replicates. Raises ValueError when a shape does not match
    T's (G, K) or a histogram counts no document.
    """
    target, human, machine = _check_score_histograms(T, H, M)
    cells = _score_cells(target, human, machine, _check_minimum(min_cell_documents))
    return _fit_weights(cells.target[None], cells.calibration[None])[0]


# Tests of the fit


def _pearson_statistic(counts: np.ndarray, calibration: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return the calibration-aware Pearson statistic (R,) of histograms (R, C).

    `calibration` (R, J, C) are the class histograms and `weights` (R, J) the
    mixture weights. The residual of cell c is counts_c - N * p_c, with p the
    mixture of the normalized calibration histograms. Its variance is taken
    as N * q_c + N^2 * sum_j w_j^2 * pi_jc / n_j: the multinomial noise of the
    target plus the noise of the n_j calibration documents of class j. pi_j
    pools class j's calibration documents with the target documents that
    the weights assign to class j, so a cell that only the target reached
    still has a variance, and q = sum_j w_j * pi_j. Cells without documents add 0.
    """
    documents = counts.sum(axis=1)
    class_documents = calibration.sum(axis=2)
    components = _component_probabilities(calibration)
    mixture = np.einsum("rcj,rj->rc", components, weights)

    assigned = counts[:, :, None] * components * weights[:, None, :] / mixture[:, :, None]
    pooled_totals = class_documents + documents[:, None] * weights
    pooled = (calibration + np.swapaxes(assigned, 1, 2)) / np.where(pooled_totals > 0, pooled_totals, 1.0)[:, :, None]

    safe_class_documents = np.where(class_documents > 0, class_documents, 1.0)
    calibration_weights = np.where(class_documents > 0, weights**2 / safe_class_documents, 0.0)
    variance = documents[:, None] * np.einsum("rjc,rj->rc", pooled, weights)
    variance += documents[:, None] ** 2 * np.einsum("rjc,rj->rc", pooled, calibration_weights)

    residual = counts - documents[:, None] * mixture
    contribution = np.where(variance > 0, residual**2 / np.where(variance > 0, variance, 1.0), 0.0)
    return contribution.sum(axis=1)


def _null_classes(counts: np.ndarray, calibration: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return class distributions (J, C) for the bootstrap null of the fit tests.

    Each pools the class's calibration documents with the target documents
    that the weights assign to it (one EM step of the model that also fits
    the class distributions). Every cell that contains a document, in the
    target or in the calibration, therefore has a positive probability.
    """
    components = _component_probabilities(calibration)
    mixture = components @ weights
    assigned = counts[:, None] * components * weights[None, :] / mixture[:, None]
    pooled = calibration + assigned.T
    return pooled / pooled.sum(axis=1, keepdims=True)


def _draw_histograms(rng: np.random.Generator, totals, probabilities: np.ndarray, draws: int) -> np.ndarray:
    """Draw (draws, J, C) multinomial histograms, class j with totals[j] documents rounded to an integer."""
    probabilities = probabilities / probabilities.sum(axis=-1, keepdims=True)
    sizes = np.rint(np.atleast_1d(totals)).astype(np.int64)
    return rng.multinomial(sizes, probabilities, size=(draws, sizes.size)).astype(np.float64)


def _bootstrap_result(observed: float, null: np.ndarray) -> FitTest:
    p_value = (1.0 + np.count_nonzero(null >= observed)) / (null.size + 1.0)
    null_mean = float(null.mean())
    dispersion = observed / null_mean if null_mean > 0 else 1.0
    return FitTest(statistic=observed, p_value=float(p_value), dispersion=float(dispersion), replicates=null.size)


def _draw_null(cells: _Cells, weights: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw target (draws, C) and calibration (draws, J, C) histograms from the fit tests' null model."""
    classes = _null_classes(cells.target, cells.calibration, weights)
    rng = np.random.default_rng(seed)
    calibration = _draw_histograms(rng, cells.calibration.sum(axis=1), classes, draws)
    target = _draw_histograms(rng, cells.target.sum(), (weights @ classes)[None], draws)[:, 0]
    return target, calibration


def _score_fit_test(cells: _Cells, weights: np.ndarray, draws: int, seed: int) -> FitTest:
    observed = float(_pearson_statistic(cells.target[None], cells.calibration[None], weights[None])[0])
    null_target, null_calibration = _draw_null(cells, weights, draws, seed)
    null_weights = _fit_weights(null_target, null_calibration)
    return _bootstrap_result(observed, _pearson_statistic(null_target, null_calibration, null_weights))


def fit_test(
    T,
    H,
    M,
    weights,
    *,
    min_cell_documents: float = MIN_CELL_DOCUMENTS,
    replicates: int = TEST_REPLICATES,
    seed: int = 0,
) -> FitTest:
    """Test whether the mixture with `weights` explains the target score histogram T.

    `weights` must come from `fit_score_mixture` with the same
    `min_cell_documents`. The statistic is a Pearson chi-square on the merged
    cells whose cell variances include the noise of the calibration
    histograms (`_pearson_statistic`). A test that took the calibration
    probabilities as exact would reject far too often, because a few hundred
    calibration documents per class are noisier than a target of thousands.
    In the simulation of tests/test_estimate.py such a test rejected 63 of
    100 corpora drawn from the mixture at p < 0.01.

    The statistic has no simple asymptotic distribution, so the p-value
    comes from a parametric bootstrap that redoes the fit. Each draw takes
    calibration histograms of the same sizes and a target of the same
    document count from the null model (`_null_classes` mixed by `weights`).
    It then refits the weights by EM and recomputes the statistic. The draws
    come from `numpy.random.default_rng(seed)`, so the result is deterministic.
    """
    target, human, machine = _check_score_histograms(T, H, M)
    weights = _check_weights(weights, target.shape[0] + 1)
    draws = _check_positive_integer("replicates", replicates, TEST_REPLICATES)
    cells = _score_cells(target, human, machine, _check_minimum(min_cell_documents))
    return _score_fit_test(cells, weights, draws, seed)


def _word_fit_test(cells: _Cells, weights: np.ndarray, weight_replicates: np.ndarray, draws: int, seed: int) -> FitTest:
    observed = float(_pearson_statistic(cells.target[None], cells.calibration[None], weights[None])[0])
    null_target, null_calibration = _draw_null(cells, weights, draws, seed)
    null_weights = weight_replicates[np.arange(draws) % weight_replicates.shape[0]]
    return _bootstrap_result(observed, _pearson_statistic(null_target, null_calibration, null_weights))


def word_fit_test(
    U,
    Uh,
    Um,
    weights,
    weight_replicates=None,
    *,
    min_cell_documents: float = MIN_CELL_DOCUMENTS,
    replicates: int = TEST_REPLICATES,
    seed: int = 1,
) -> FitTest:
    """Test whether the score-fitted `weights` also explain the word-likelihood histogram U.

    U (K2,) is compared with the mixture of Uh (K2,) and Um (G, K2) with the
    given weights, which are not refitted, so a corpus whose scores and word
    likelihoods point to different shares fails. The statistic and the
    bootstrap are those of `fit_test`. Bootstrap draw r evaluates the
    statistic with `weight_replicates[r mod B]` (B, G + 1), the replicate
    fits of the weights, so the null distribution includes the noise of the
    weights. Without replicates the weights count as exact.

    NOTE: the null draws take the word histogram as independent of the
    weights' noise. Where a document's score and word likelihood are
    correlated within a class, the true null spread is smaller, so the test
    should be conservative there.
    """
    words, human, machine = _check_word_histograms(U, Uh, Um)
    classes = machine.shape[0] + 1
    weights = _check_weights(weights, classes)
    draws = _check_positive_integer("replicates", replicates, TEST_REPLICATES)
    if weight_replicates is None:
        replicate_weights = weights[None]
    else:
        replicate_weights = np.asarray(weight_replicates, dtype=np.float64)
        if replicate_weights.ndim != 2 or replicate_weights.shape[0] < 1 or replicate_weights.shape[1] != classes:
            raise ValueError(
                f"weight_replicates has shape {replicate_weights.shape}, expected (B, G + 1) = (B, {classes})"
            )
    cells = _word_cells(words, human, machine, _check_minimum(min_cell_documents))
    return _word_fit_test(cells, weights, replicate_weights, draws, seed)


def _zero_share_p_value(cells: _Cells, fitted_share: float, draws: int, seed: int) -> float:
    if fitted_share <= 0.0:
        return 1.0
    human = cells.calibration[0] + cells.target
    classes = np.concatenate([human[None], cells.calibration[1:]], axis=0)
    rng = np.random.default_rng(seed)
    null_calibration = _draw_histograms(rng, cells.calibration.sum(axis=1), classes, draws)
    null_target = _draw_histograms(rng, cells.target.sum(), human[None], draws)[:, 0]
    null_shares = 1.0 - _fit_weights(null_target, null_calibration)[:, 0]
    return float((1.0 + np.count_nonzero(null_shares >= fitted_share)) / (draws + 1.0))


def zero_share_test(
    T,
    H,
    M,
    *,
    min_cell_documents: float = MIN_CELL_DOCUMENTS,
    replicates: int = TEST_REPLICATES,
    seed: int = 2,
) -> float:
    """Return the p-value of a synthetic share of exactly 0.

    The statistic is the fitted share. The null draws take the target and the
    human calibration histogram from the human distribution that pools both
    (its maximum-likelihood estimate when the share is 0), the generator
    histograms from their own calibration histograms, and refit by EM.
    """
    target, human, machine = _check_score_histograms(T, H, M)
    draws = _check_positive_integer("replicates", replicates, TEST_REPLICATES)
    cells = _score_cells(target, human, machine, _check_minimum(min_cell_documents))
    weights = _fit_weights(cells.target[None], cells.calibration[None])[0]
    return _zero_share_p_value(cells, 1.0 - weights[0], draws, seed)


# Share estimate with intervals


def _bootstrap_interval(fitted: float, replicates: np.ndarray, confidence: float) -> ShareInterval:
    bias = float(replicates.mean()) - fitted
    estimate = float(np.clip(fitted - bias, 0.0, 1.0))
    tail = (1.0 - confidence) / 2.0
    low, high = np.clip(np.quantile(replicates, [tail, 1.0 - tail]) - 2.0 * bias, 0.0, 1.0)
    return ShareInterval(
        estimate=estimate,
        low=float(min(low, estimate)),
        high=float(max(high, estimate)),
        standard_error=float(replicates.std(ddof=1)),
        fitted=float(fitted),
        bias=bias,
    )


def _widen(interval: ShareInterval, factor: float) -> ShareInterval:
    """Scale the distance of each bound from the estimate by `factor`, within [0, 1]."""
    if factor <= 1.0:
        return interval
    low = interval.estimate - factor * (interval.estimate - interval.low)
    high = interval.estimate + factor * (interval.high - interval.estimate)
    return ShareInterval(
        estimate=interval.estimate,
        low=float(max(low, 0.0)),
        high=float(min(high, 1.0)),
        standard_error=interval.standard_error * factor,
        fitted=interval.fitted,
        bias=interval.bias,
    )


def _fit_warning(p_value: float, widening: float) -> str:
    if widening > 1.0:
        action = (
            f"Its intervals were widened by a factor of {widening:.2f} for the extra variance, "
            "which does not remove the bias of a mismatched profile."
        )
    else:
        action = "Its intervals were not widened, because the score histogram shows no extra variance."
    return (
        f"The reference profile does not explain this corpus (fit p-value {p_value:.3g} < {FIT_ALPHA}). Its "
        "documents may come from another domain or from a generator that is not in the profile, so the "
        f"synthetic share is unreliable. {action}"
    )


def _check_replicates(T_rep, H_rep, M_rep, generators: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the target replicates (B, G, K) and calibration replicates (C, G + 1, G * K), human first."""
    target_replicates = _check_counts("T_rep", T_rep, ("B", "G", "K"), (None, generators, bins))
    human_replicates = _check_counts("H_rep", H_rep, ("C", "G", "K"), (None, generators, bins))
    calibration_count = human_replicates.shape[0]
    machine_replicates = _check_counts(
        "M_rep", M_rep, ("C", "G", "G", "K"), (calibration_count, generators, generators, bins)
    )
    if target_replicates.shape[0] < 2:
        raise ValueError("T_rep has 1 replicate, expected B >= 2 (200 or more for stable percentiles)")
    _check_not_empty("T_rep", target_replicates, (1, 2))
    calibration_replicates = np.concatenate(
        [
            human_replicates.reshape(calibration_count, 1, -1),
            machine_replicates.reshape(calibration_count, generators, -1),
        ],
        axis=1,
    )
    return target_replicates, calibration_replicates


def _design_effects(cells: _Cells, calibration_replicates: np.ndarray) -> np.ndarray:
    """Estimate each class's design effect (J,) from its calibration replicates.

    The fit tests model a class's calibration histogram as a multinomial of its
    n documents. References that repeat a source document (several truncations
    of one article, say) vary more than that, and the replicates, which resample
    whole source documents, show how much. The design effect of a class is the
    median over its cells of (replicate variance of the cell's share) /
    (multinomial variance p (1 - p) / n), at least 1 and at most
    MAX_DESIGN_EFFECT; with fewer than 10 replicates it is 1.
    """
    classes = cells.calibration.shape[0]
    if calibration_replicates.shape[0] < 10:
        return np.ones(classes)
    merged = _merge_cells(calibration_replicates, cells.starts)
    totals = merged.sum(axis=2, keepdims=True)
    shares = merged / np.where(totals > 0, totals, 1.0)
    observed_variance = shares.var(axis=0)
    documents = cells.calibration.sum(axis=1)
    probabilities = cells.calibration / np.where(documents > 0, documents, 1.0)[:, None]
    multinomial_variance = probabilities * (1.0 - probabilities) / np.where(documents > 0, documents, 1.0)[:, None]
    effects = np.ones(classes)
    for index in range(classes):
        usable = multinomial_variance[index] > 0
        if usable.any():
            ratio = float(np.median(observed_variance[index, usable] / multinomial_variance[index, usable]))
            effects[index] = min(MAX_DESIGN_EFFECT, max(1.0, ratio))
    return effects


def _effective_cells(cells: _Cells, effects: np.ndarray) -> _Cells:
    """Scale each class's calibration histogram to its effective number of documents (n / effect)."""
    return _Cells(cells.target, cells.calibration / effects[:, None], cells.starts)


def _fit_replicates(cells: _Cells, target_replicates: np.ndarray, calibration_replicates: np.ndarray) -> np.ndarray:
    """Fit the weights (B, G + 1) of target replicate b against calibration replicate b mod C."""
    replicate_count = target_replicates.shape[0]
    pairing = np.arange(replicate_count) % calibration_replicates.shape[0]
    return _fit_weights(
        _merge_cells(target_replicates.reshape(replicate_count, -1), cells.starts),
        _merge_cells(calibration_replicates, cells.starts)[pairing],
    )


def estimate_share(
    T,
    T_rep,
    H,
    H_rep,
    M,
    M_rep,
    confidence: float = 0.95,
    *,
    U=None,
    Uh=None,
    Um=None,
    min_cell_documents: float = MIN_CELL_DOCUMENTS,
    test_replicates: int = TEST_REPLICATES,
) -> ShareEstimate:
    """Estimate the synthetic share and per-generator shares with intervals and fit tests.

    The fit uses the full histograms on merged cells (`fit_score_mixture`).
    Replicate b refits `T_rep[b]` against `H_rep[b mod C]` and
    `M_rep[b mod C]`, so the intervals include the calibration noise. Each
    share is bias-corrected with the replicates (`ShareInterval`), and the
    standard error is the standard deviation of the replicate fits. B of 200
    or more keeps the percentiles stable. When `zero_share_test` does not
    reject a share of 0 at level (1 - confidence) / 2, the share's interval
    is extended down to 0, because near 0 the bootstrap misjudges the bias
    of a fit that cannot go below 0.

    The score histogram is tested with `fit_test`. When U, Uh and Um are
    given, the word histogram is tested with `word_fit_test` as well and the
    p-values are combined by Bonferroni (twice the smaller). When the
    combined p-value is below `FIT_ALPHA`, the references do not explain the
    corpus. Then `warning` explains this, and each interval is widened about
    its estimate by sqrt(score-test dispersion), at least 1. That is the
    quasi-likelihood correction for extra variance, and it cannot correct the
    bias of a corpus unlike the references.
    """
    confidence = _check_confidence(confidence)
    minimum = _check_minimum(min_cell_documents)
    draws = _check_positive_integer("test_replicates", test_replicates, TEST_REPLICATES)
    target, human, machine = _check_score_histograms(T, H, M)
    generators, bins = target.shape
    target_replicates, calibration_replicates = _check_replicates(T_rep, H_rep, M_rep, generators, bins)
    word_inputs = (U, Uh, Um)
    if any(value is None for value in word_inputs) and not all(value is None for value in word_inputs):
        raise ValueError("U, Uh and Um must be given together, or none of them")
    words = None if U is None else _check_word_histograms(U, Uh, Um, generators)

    cells = _score_cells(target, human, machine, minimum)
    weights = _fit_weights(cells.target[None], cells.calibration[None])[0]
    replicate_weights = _fit_replicates(cells, target_replicates, calibration_replicates)

    share = _bootstrap_interval(1.0 - weights[0], 1.0 - replicate_weights[:, 0], confidence)
    zero_p_value = _zero_share_p_value(cells, 1.0 - weights[0], draws, seed=2)
    if zero_p_value > (1.0 - confidence) / 2.0:
        share = dataclasses.replace(share, low=0.0)
    per_generator = [
        _bootstrap_interval(weights[j], replicate_weights[:, j], confidence) for j in range(1, generators + 1)
    ]

    # The tests see each class with its effective number of calibration documents,
    # so references that repeat source documents do not make them reject too often.
    effects = _design_effects(cells, calibration_replicates)
    score_fit = _score_fit_test(_effective_cells(cells, effects), weights, draws, seed=0)
    word_fit = None
    p_value = score_fit.p_value
    if words is not None:
        word_cells = _effective_cells(_word_cells(*words, minimum), effects)
        word_fit = _word_fit_test(word_cells, weights, replicate_weights, draws, seed=1)
        p_value = min(1.0, 2.0 * min(score_fit.p_value, word_fit.p_value))

    warning = None
    widening = 1.0
    if p_value < FIT_ALPHA:
        widening = float(np.sqrt(max(1.0, score_fit.dispersion)))
        warning = _fit_warning(p_value, widening)
        logger.warning("%s", warning)
        share = _widen(share, widening)
        per_generator = [_widen(interval, widening) for interval in per_generator]

    return ShareEstimate(
        share=share,
        generators=tuple(per_generator),
        weights=tuple(float(value) for value in weights),
        confidence=confidence,
        replicates=target_replicates.shape[0],
        cells=int(cells.starts.size),
        zero_share_p_value=zero_p_value,
        score_fit=score_fit,
        word_fit=word_fit,
        p_value=float(p_value),
        interval_widening=widening,
        warning=warning,
    )


# Uncalibrated estimator of Liang et al.


def _check_curve_values(name: str, curves: np.ndarray) -> None:
    if np.any(np.isnan(curves)) or np.any(np.isposinf(curves)):
        raise ValueError(f"{name} contains NaN or +inf, expected log-likelihoods (finite or -inf)")
    unbounded = np.all(np.isneginf(curves), axis=-1)
    if np.any(unbounded):
        row = "" if curves.ndim == 1 else f"[{int(np.argmax(unbounded))}]"
        raise ValueError(f"{name}{row} is -inf at every grid point, so it has no maximum")


def _refined_maximum(values: np.ndarray) -> float:
    last = values.size - 1
    best = int(np.argmax(values))
    if values.size < 3:
        return best / last

    center = min(max(best, 1), last - 1)
    left, middle, right = values[center - 1 : center + 2]
    curvature = left - 2.0 * middle + right
    if not np.isfinite(curvature) or curvature >= 0:
        return best / last
    vertex = center + 0.5 * (left - right) / curvature
    vertex = min(max(vertex, best - 1.0, 0.0), best + 1.0, float(last))
    return vertex / last


def plain_mle(curve) -> float:
    """Return the share that maximizes a mixture log-likelihood curve on the grid a_k = k / (P - 1).

    `curve` (P,) contains L(a_k) = sum over documents of log((1 - a_k) + a_k * exp(r)).
    The best grid point (the first one on ties) is refined to the vertex of
    the parabola through it and its two neighbours (the two nearest points
    at either end of the grid), kept within one grid step of it and within
    [0, 1]. Without a concave parabola, for example next to a -inf value,
    the grid point is returned. This estimator takes the scores as exact
    likelihood ratios, so it is biased when the word models are not the
    true distributions; `estimate_share` is the calibrated estimate.
    """
    values = np.asarray(curve, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"curve has shape {values.shape}, expected (P,) with P >= 2 grid points")
    _check_curve_values("curve", values)
    return _refined_maximum(values)


def estimate_from_curve_replicates(curve_rep, confidence: float = 0.95) -> tuple[float, float]:
    """Return the percentile interval (low, high) of `plain_mle` over curve replicates (B, P).

    A diagnostic: it has the bias of `plain_mle` and ignores calibration noise.
    """
    confidence = _check_confidence(confidence)
    curves = np.asarray(curve_rep, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[0] < 1 or curves.shape[1] < 2:
        raise ValueError(f"curve_rep has shape {curves.shape}, expected (B, P) with B >= 1 and P >= 2")
    _check_curve_values("curve_rep", curves)
    estimates = np.array([_refined_maximum(row) for row in curves])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)
