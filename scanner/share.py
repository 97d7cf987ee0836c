"""The synthetic share of a scanned corpus, from its merged likelihood sketch and the profile.

The calibrated estimate fits the corpus's histogram of document scores as a
mixture of the score histograms of held-out human and generated reference
documents (`scanner.estimate.estimate_share`). The plain maximum-likelihood
estimate of the word-occurrence mixture (Liang et al., ICML 2024) is reported
beside it as a diagnostic, because it is biased when the references are small
or off-topic.
"""

from pydantic import BaseModel, ConfigDict, Field

from scanner.estimate import estimate_from_curve_replicates, estimate_share, plain_mle
from scanner.profile import ReferenceProfile
from scanner.sketches.likelihood import LikelihoodSketch


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShareValue(_Model):
    """A share in [0, 1] with its confidence interval.

    `ci95` is [0, 1] when the fit test rejects the profile, because the bootstrap
    interval then rests on a model the corpus does not follow. `model_ci95` keeps
    that interval (widened for the extra variance) for reference.
    """

    estimate: float
    ci95: tuple[float, float]
    model_ci95: tuple[float, float]
    standard_error: float


class FitReport(_Model):
    """Whether the references explain the corpus's scores."""

    p_value: float = Field(description="combined p-value of the score and word fit tests (Bonferroni)")
    score_test_p_value: float
    word_test_p_value: float | None
    zero_share_p_value: float = Field(description="p-value of the hypothesis that the share is 0")
    interval_widening: float = Field(description="factor the intervals were widened by for a poor fit; 1 for a good fit")
    warning: str | None


class SyntheticShare(_Model):
    """The `synthetic_share` section of result.json; `ci95` follows the rule of `ShareValue`."""

    estimate: float
    ci95: tuple[float, float]
    model_ci95: tuple[float, float]
    standard_error: float
    generators: dict[str, ShareValue]
    plain_mle: float = Field(description="uncalibrated maximum-likelihood share (biased; a diagnostic)")
    plain_mle_ci95: tuple[float, float]
    documents: int
    documents_without_vocabulary: int
    method: str = "score-mixture calibrated on held-out references, bootstrap interval"
    profile: str = Field(description="digest of the reference profile")
    fit: FitReport


def synthetic_share(sketch: LikelihoodSketch, profile: ReferenceProfile, digest: str) -> SyntheticShare | None:
    """Estimate the share from a merged sketch; return None when the sketch contains no document."""
    if sketch.documents == 0:
        return None
    calibration = profile.calibration
    estimate = estimate_share(
        sketch.histogram,
        sketch.replicate_histograms,
        calibration["human_histogram"],
        calibration["human_replicates"],
        calibration["generator_histograms"],
        calibration["generator_replicates"],
        U=sketch.l_histogram,
        Uh=calibration["human_l_histogram"],
        Um=calibration["generator_l_histograms"],
    )
    low, high = estimate_from_curve_replicates(sketch.replicate_curves())
    rejected = estimate.warning is not None

    def reported(value) -> tuple[float, float]:
        # A rejected fit gives no supported precision: a bootstrap interval pinned at a
        # boundary was seen as [1, 1] for text of another domain whose true share was 0.
        return (0.0, 1.0) if rejected else (value.low, value.high)

    generators = {
        name: ShareValue(
            estimate=value.estimate,
            ci95=reported(value),
            model_ci95=(value.low, value.high),
            standard_error=value.standard_error,
        )
        for name, value in zip(profile.generators, estimate.generators)
    }
    return SyntheticShare(
        estimate=estimate.share.estimate,
        ci95=reported(estimate.share),
        model_ci95=(estimate.share.low, estimate.share.high),
        standard_error=estimate.share.standard_error,
        generators=generators,
        plain_mle=plain_mle(sketch.curve_values()),
        plain_mle_ci95=(low, high),
        documents=sketch.documents,
        documents_without_vocabulary=sketch.empty_documents,
        profile=digest,
        fit=FitReport(
            p_value=estimate.p_value,
            score_test_p_value=estimate.score_fit.p_value,
            word_test_p_value=None if estimate.word_fit is None else estimate.word_fit.p_value,
            zero_share_p_value=estimate.zero_share_p_value,
            interval_widening=estimate.interval_widening,
            warning=estimate.warning,
        ),
    )
