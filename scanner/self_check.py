"""Measuring a profile's estimator at known mixtures of its own held-out documents.

The held-out reference documents are split into two folds by their split unit.
For each fold, the estimator is calibrated on the other fold and run on targets
drawn from this fold at known shares: each target is a multinomial sample of
`TARGET_DOCUMENTS` documents from the fold's human histogram and the equal-weight
mixture of its generators' histograms, with a multinomial bootstrap of the
target. The profile stores the bias, RMSE and interval coverage per share, so a
user sees how well the estimate can do on text like the references before
trusting it on a corpus. Each fold calibrates on half the held-out documents,
so the figures are somewhat worse than those of the full profile. They cannot
show the error on text of another domain.
"""

import logging

import numpy as np

from scanner.estimate import estimate_share

SHARES = (0.0, 0.05, 0.1, 0.25, 0.5)
TARGET_DOCUMENTS = 500
REPEATS = 10
TARGET_REPLICATES = 50


def _draw_target(rng: np.random.Generator, probabilities: np.ndarray, documents: int) -> tuple[np.ndarray, np.ndarray]:
    shape = probabilities.shape
    flat = probabilities.reshape(-1)
    target = rng.multinomial(documents, flat)
    replicates = rng.multinomial(documents, target / target.sum(), size=TARGET_REPLICATES)
    return target.reshape(shape), replicates.reshape((TARGET_REPLICATES, *shape))


def _normalized(histogram: np.ndarray) -> np.ndarray:
    total = histogram.sum()
    return histogram / total if total > 0 else np.full(histogram.shape, 1.0 / histogram.size)


def self_check(folds: list[dict[str, np.ndarray]], seed: int = 0) -> dict:
    """Return bias, RMSE and coverage per share, from two folds of calibration arrays.

    Each fold is a dict of the arrays that `profile_build.calibration_arrays`
    returns. Folds with too few documents to estimate are skipped, and the
    result gives the number of runs it used.
    """
    rng = np.random.default_rng(seed)
    errors: dict[float, list[float]] = {share: [] for share in SHARES}
    covered: dict[float, list[bool]] = {share: [] for share in SHARES}
    estimate_logger = logging.getLogger("scanner.estimate")
    previous_level = estimate_logger.level
    estimate_logger.setLevel(logging.ERROR)
    try:
        for validation, calibration in ((folds[0], folds[1]), (folds[1], folds[0])):
            human = _normalized(validation["human_histogram"].astype(np.float64))
            machine = np.mean(
                [_normalized(histogram.astype(np.float64)) for histogram in validation["generator_histograms"]],
                axis=0,
            )
            for share in SHARES:
                mixture = (1.0 - share) * human + share * machine
                for _ in range(REPEATS):
                    target, replicates = _draw_target(rng, mixture, TARGET_DOCUMENTS)
                    try:
                        estimate = estimate_share(
                            target,
                            replicates,
                            calibration["human_histogram"],
                            calibration["human_replicates"],
                            calibration["generator_histograms"],
                            calibration["generator_replicates"],
                        )
                    except ValueError:
                        continue
                    errors[share].append(estimate.share.estimate - share)
                    covered[share].append(estimate.share.low <= share <= estimate.share.high)
    finally:
        estimate_logger.setLevel(previous_level)

    rows = []
    for share in SHARES:
        values = np.array(errors[share])
        rows.append(
            {
                "share": share,
                "runs": int(values.size),
                "bias": float(values.mean()) if values.size else None,
                "rmse": float(np.sqrt(np.mean(values**2))) if values.size else None,
                "coverage": float(np.mean(covered[share])) if values.size else None,
            }
        )
    return {"target_documents": TARGET_DOCUMENTS, "repeats_per_fold": REPEATS, "results": rows}
