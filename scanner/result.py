"""The `result.json` document: corpus statistics of one scan, as pydantic models.

`build_result` turns a `ScanOutcome` into a `ScanResult`. The fields that
checks and other tools read (documents, bytes, tokens, ngrams, top_ngrams,
features, shards, errors, synthetic_share, contamination, indicators, groups)
keep their names and meaning within one `SCHEMA_VERSION`. The other fields
(settings, sources, warnings, timing) describe how the numbers were made.

Keys of `ngrams`, `top_ngrams`, `top_ngrams_error_bound` and the per-order
indicators are n-gram orders written as strings ("1", "2", ...), because JSON
object keys are strings.
"""

from __future__ import annotations

import importlib.metadata
import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scanner.bundle import CONTAMINATION_COUNTERS, FEATURES, GROUP_COUNTERS, Bundle
from scanner.formats import ReadReport
from scanner.indicators import corpus_indicators, group_indicators
from scanner.lineage import Lineage, lineage_of
from scanner.storage import redact_url

if TYPE_CHECKING:
    # The runner imports Ray; results are also built and read where Ray is not needed.
    from scanner.runner import ScanOutcome
from scanner.share import SyntheticShare, synthetic_share

SCHEMA_VERSION = 1
MAX_ERROR_SAMPLES = 20
FEATURE_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NgramStats(_Model):
    """Counts of the n-grams of one order."""

    total: int = Field(description="n-grams counted, repeats included (exact)")
    distinct: float = Field(description="HyperLogLog estimate of the distinct n-grams")
    distinct_rse: float = Field(description="relative standard error of `distinct`: 1.04 / sqrt(2**precision)")


class TopNgram(_Model):
    """One frequent n-gram and its Count-Min count, an upper bound of the true count."""

    ngram: str
    count: int


class FeatureSummary(_Model):
    """Quantiles and moments of one per-document feature, None where no document has a value."""

    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None
    variance: float | None = Field(description="population variance (divided by count)")
    min: float | None
    max: float | None
    count: int = Field(description="documents with a value for this feature")


class ShardFailure(_Model):
    """A shard that raised in every attempt, so its records are missing from the result."""

    shard_id: str
    url: str
    error: str


class ShardCounts(_Model):
    """Planned, completed and failed shards."""

    total: int
    completed: int
    failed: int
    failures: list[ShardFailure]


class ErrorSample(_Model):
    """One skipped record: why, where (object and line, offset or row group) and the reader's message."""

    reason: str
    location: str
    detail: str


class ErrorSummary(_Model):
    """Records that the readers skipped as malformed, over all completed shards."""

    count: int = Field(description="skipped records")
    by_reason: dict[str, int]
    samples: list[ErrorSample] = Field(description=f"the first {MAX_ERROR_SAMPLES} skipped records, by shard id")


class Indicators(_Model):
    """Diversity and collapse indicators, computed as `scanner.indicators` describes.

    `distinct_ratio` per order is distinct n-grams / total n-grams, a HyperLogLog
    estimate with relative standard error `distinct_ratio_rse`, capped at 1 and
    None for an order without n-grams. Every other indicator has its standard
    error or bound beside it, and is None when the corpus or group has no data
    for it. `methods` (corpus level only) states each method in words.
    """

    distinct_ratio: dict[str, float | None]
    distinct_ratio_rse: float
    unigram_entropy_bits: float | None
    unigram_entropy_se: float | None
    hapax_share: float | None
    hapax_share_se: float | None
    hapax_token_share: float | None
    hapax_token_share_se: float | None
    type_sample: int = Field(description="word types in the sample behind entropy and hapax_share")
    tail_mass: float | None
    tail_mass_error_bound: float | None
    zipf_exponent: float | None
    zipf_exponent_se: float | None
    near_duplicate_rate: float | None
    near_duplicate_rate_se: float | None
    near_duplicate_sample: int = Field(description="documents in the sample behind near_duplicate_rate")
    compression_ratio: float | None
    compression_ratio_se: float | None
    compression_sample: int
    profile_divergence_bits: float | None
    profile_divergence_se: float | None
    profile_divergence_bias: float | None
    methods: dict[str, str] | None = None


class DatasetContamination(_Model):
    """Matches of the scanned documents against one registered dataset."""

    documents: int = Field(description="documents scanned, empty ones included: the denominator of both shares")
    near_duplicate_documents: int
    near_duplicate_share: float = Field(
        description="share of documents whose estimated Jaccard similarity with a registered document is "
        "at or above near_duplicate_threshold"
    )
    long_ngram_documents: int
    long_ngram_share: float = Field(description="share of documents that contain a registered long n-gram")
    registered_documents: int
    ngram_order: int = Field(description="word n-gram order of the long n-grams")
    long_ngrams: int = Field(description="long n-grams of the scanned documents, repeats included")
    ngram_false_positive_rate: float = Field(
        description="chance that the Bloom filter reports an n-gram it does not contain: fill ** hashes"
    )
    target_false_positive_rate: float = Field(description="the rate the filter was sized for")
    mean_long_ngrams: float = Field(description="long n-grams per document")
    document_false_match_bound: float = Field(
        description="1 - (1 - rate) ** mean_long_ngrams: the chance that a document of that many n-grams, "
        "none registered, is flagged"
    )
    false_match_share_bound: float = Field(
        description="rate * long_ngrams / documents, capped at 1: an upper bound of the expected share of "
        "documents flagged by false positives alone"
    )


class Contamination(_Model):
    """Overlap of the scanned documents with the datasets of a registry."""

    registry: dict[str, DatasetContamination]
    registry_url: str
    near_duplicate_threshold: float


class GroupCounts(_Model):
    """Counters of one `--group-by` group, and its synthetic share when the scan had a profile."""

    documents: int
    empty_documents: int
    bytes: int
    tokens: int
    synthetic_share: SyntheticShare | None = None
    lineage: Lineage | None = None
    indicators: Indicators | None = None
    contamination: Contamination | None = None


class InputSize(_Model):
    """Objects and bytes (as stored, compressed or not) that the plan covered."""

    objects: int
    bytes: int


class ScanResult(_Model):
    """Everything `result.json` holds."""

    schema_version: Literal[1] = SCHEMA_VERSION
    scanner_version: str

    status: Literal["complete", "incomplete"] = Field(
        description="incomplete when a shard failed or skipped records exceed max_errors"
    )
    problems: list[str] = Field(description="why the status is incomplete, one sentence each")

    documents: int = Field(description="records with text, empty ones included")
    empty_documents: int = Field(description="documents without any token")
    bytes: int = Field(description="UTF-8 bytes of the text as decoded from the source, before normalization")
    tokens: int = Field(description="word tokens")
    ngrams: dict[str, NgramStats]
    top_ngrams: dict[str, list[TopNgram]]
    top_ngrams_error_bound: dict[str, float] = Field(
        description=(
            "Count-Min overestimate e * N / width that each listed count stays within with probability >= 1 - 1/e. "
            "All orders share one sketch, so N counts the n-grams of every order and the bound is the same for each"
        )
    )
    features: dict[str, FeatureSummary]
    shards: ShardCounts
    errors: ErrorSummary
    synthetic_share: SyntheticShare | None = Field(None, description="null unless the scan had a --profile")
    lineage: Lineage | None = Field(None, description="human, per-generator and unattributed shares; null without --profile")
    contamination: Contamination | None = Field(None, description="null unless the scan had a --registry")
    indicators: Indicators
    group_by: Literal["none", "snapshot", "domain"]
    groups: dict[str, GroupCounts]

    input: InputSize
    sources: list[str] = Field(description="sources as given, with URL passwords hidden")
    storage: dict = Field(description="storage options with secret values hidden")
    read: dict = Field(description="read settings (format, fields)")
    settings: dict = Field(description="sketch settings, which must be equal for bundles to merge")
    max_errors: int | None = Field(description="skipped records tolerated before the status is incomplete")
    read_counters: dict[str, int] = Field(description="reader events that are not skips, such as blank lines")
    warnings: list[str]
    dropped_warnings: int = Field(description="warnings beyond the list's cap, counted but not listed")
    truncated_objects: list[str] = Field(
        description="objects that ended early, so records after that point are missing"
    )
    storage_retries: int = Field(
        0,
        description="S3 requests that botocore retried after an error or a dropped connection: those of the "
        "driver (listing, planning) and those of the completed shards' reads"
    )
    resumed_shards: int = Field(description="shards taken from checkpoints of an earlier run")
    seconds: float = Field(description="wall-clock time of the scan, planning included")

    def to_json(self) -> str:
        """Serialize as indented JSON text."""
        return self.model_dump_json(indent=2)


def build_result(outcome: ScanOutcome) -> ScanResult:
    """Summarize a scan outcome as a `ScanResult`.

    Works without a bundle (every shard failed, or the plan was empty): the
    counters are then zero and the feature values None.
    """
    config = outcome.config
    settings = outcome.bundle.settings if outcome.bundle is not None else config.sketch
    bundle = outcome.bundle if outcome.bundle is not None else Bundle(settings=settings)
    report = merged_report(outcome.summaries)
    errors = ErrorSummary(
        count=report.skipped_total,
        by_reason=dict(sorted(report.skipped.items())),
        samples=[ErrorSample(**sample) for sample in report.samples[:MAX_ERROR_SAMPLES]],
    )
    shards = ShardCounts(
        total=len(outcome.plan.shards),
        completed=len(outcome.summaries),
        failed=len(outcome.failures),
        failures=[ShardFailure(**failure) for failure in outcome.failures],
    )
    ngrams = ngram_stats(bundle)
    problems = _problems(shards, errors, config.max_errors, bundle.documents, config.read.text_field)

    return ScanResult(
        scanner_version=scanner_version(),
        status="incomplete" if problems else "complete",
        problems=problems,
        documents=bundle.documents,
        empty_documents=bundle.empty_documents,
        bytes=bundle.bytes,
        tokens=bundle.tokens,
        ngrams=ngrams,
        top_ngrams={str(order): bundle.top_ngrams(order, config.top_ngrams) for order in settings.orders},
        top_ngrams_error_bound=_error_bounds(bundle),
        features={name: feature_summary(bundle, name) for name in FEATURES},
        shards=shards,
        errors=errors,
        indicators=Indicators(**corpus_indicators(bundle, _human_probability(outcome.profile))),
        group_by=config.group_by,
        synthetic_share=(share := _share(bundle, outcome.profile)),
        lineage=lineage_of(share),
        groups=_with_group_contamination(_groups(bundle, outcome.profile), bundle, outcome),
        contamination=_contamination(bundle.contamination, bundle.documents, outcome),
        input=InputSize(objects=outcome.plan.total_objects, bytes=outcome.plan.total_bytes),
        sources=[redact_url(source) for source in config.sources],
        storage=config.storage.redacted(),
        read=config.read.model_dump(mode="json"),
        settings=settings.model_dump(mode="json"),
        max_errors=config.max_errors,
        read_counters=dict(sorted(report.counters.items())),
        warnings=report.warnings,
        dropped_warnings=report.dropped_warnings,
        truncated_objects=sorted({summary["url"] for summary in outcome.summaries if summary["report"]["truncated"]}),
        storage_retries=outcome.driver_storage_retries
        + sum(summary.get("storage_retries", 0) for summary in outcome.summaries),
        resumed_shards=outcome.resumed_shards,
        seconds=round(outcome.seconds, 3),
    )


def merged_report(summaries: list[dict]) -> ReadReport:
    """Merge the read reports of shard summaries, in shard id order so samples are reproducible."""
    merged = ReadReport()
    for summary in sorted(summaries, key=lambda item: item["shard_id"]):
        merged = merged.merge(ReadReport.from_dict(summary["report"]))
    return merged


def ngram_stats(bundle: Bundle) -> dict[str, NgramStats]:
    """Return the exact total and the estimated distinct count of each order's n-grams.

    The distinct estimate is capped at the total, which it cannot exceed.
    """
    settings = bundle.settings
    rse = 1.04 / math.sqrt(1 << settings.hll_precision)
    stats = {}
    for order in settings.orders:
        total = int(bundle.ngram_totals[order - settings.min_order])
        stats[str(order)] = NgramStats(total=total, distinct=min(bundle.distinct_ngrams(order), total), distinct_rse=rse)
    return stats


def feature_summary(bundle: Bundle, name: str) -> FeatureSummary:
    """Return the quantiles (within the sketch's relative accuracy) and exact moments of one feature."""
    moments = bundle.moments[name].summary()
    quantiles = {key: _finite(bundle.quantiles[name].quantile(q)) for key, q in FEATURE_QUANTILES.items()}
    return FeatureSummary(
        **quantiles,
        mean=_finite(moments["mean"]),
        variance=_finite(moments["variance"]),
        min=_finite(moments["min"]),
        max=_finite(moments["max"]),
        count=moments["count"],
    )


def scanner_version() -> str:
    """Return the installed version of the corpus-scanner distribution, or "unknown" when not installed."""
    try:
        return importlib.metadata.version("corpus-scanner")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _problems(
    shards: ShardCounts, errors: ErrorSummary, max_errors: int | None, documents: int, text_field: str
) -> list[str]:
    problems = []
    if documents == 0 and errors.count > 0:
        reasons = ", ".join(f"{reason} {count}" for reason, count in errors.by_reason.items())
        problems.append(
            f"every one of the {errors.count} records was skipped ({reasons}) and no document was scanned; "
            f"check --text-field (now {text_field!r}) and --format"
        )
    if shards.failed:
        problems.append(
            f"{shards.failed} of {shards.total} shards failed, so their records are missing; see shards.failures"
        )
    if max_errors is not None and errors.count > max_errors:
        problems.append(
            f"{errors.count} records were skipped, more than max_errors {max_errors}; see errors.by_reason"
        )
    return problems


def _error_bounds(bundle: Bundle) -> dict[str, float]:
    bound = bundle.countmin.error_bound(int(bundle.ngram_totals.sum()))
    return {str(order): bound for order in bundle.settings.orders}


def _share(bundle: Bundle, profile) -> SyntheticShare | None:
    if profile is None or bundle.likelihood is None:
        return None
    return synthetic_share(bundle.likelihood, profile, bundle.profile_digest)


def _groups(bundle: Bundle, profile) -> dict[str, GroupCounts]:
    groups = {}
    for name, counters in bundle.groups.items():
        values = {counter: int(value) for counter, value in zip(GROUP_COUNTERS, counters)}
        sketch = bundle.group_likelihood.get(name)
        share = None
        if profile is not None and sketch is not None:
            share = synthetic_share(sketch, profile, bundle.profile_digest)
        indicators = None
        if name in bundle.group_diversity:
            indicators = Indicators(
                **group_indicators(bundle, bundle.group_diversity[name], _human_probability(profile))
            )
        groups[name] = GroupCounts(**values, synthetic_share=share, lineage=lineage_of(share), indicators=indicators)
    return groups


def _human_probability(profile) -> np.ndarray | None:
    return None if profile is None else profile.human_probability


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _contamination(counters: dict, documents: int, outcome: ScanOutcome) -> Contamination | None:
    """Return the shares of `documents` that match each registered dataset, from the bundle's counters."""
    config = outcome.config
    if outcome.registry is None:
        return None
    datasets = {}
    for name, summary in outcome.registry.items():
        values = dict(zip(CONTAMINATION_COUNTERS, (int(value) for value in counters.get(name, (0, 0, 0)))))
        rate = summary["ngram_false_positive_rate"]
        mean_ngrams = values["long_ngrams"] / documents if documents else 0.0
        datasets[name] = DatasetContamination(
            documents=documents,
            near_duplicate_documents=values["near_duplicate_documents"],
            near_duplicate_share=values["near_duplicate_documents"] / documents if documents else 0.0,
            long_ngram_documents=values["long_ngram_documents"],
            long_ngram_share=values["long_ngram_documents"] / documents if documents else 0.0,
            registered_documents=summary["registered_documents"],
            ngram_order=summary["ngram_order"],
            long_ngrams=values["long_ngrams"],
            ngram_false_positive_rate=rate,
            target_false_positive_rate=summary["target_false_positive_rate"],
            mean_long_ngrams=mean_ngrams,
            document_false_match_bound=-math.expm1(mean_ngrams * math.log1p(-rate)),
            false_match_share_bound=min(1.0, rate * values["long_ngrams"] / documents) if documents else 0.0,
        )
    return Contamination(
        registry=datasets,
        registry_url=redact_url(config.registry),
        near_duplicate_threshold=config.near_duplicate_threshold,
    )


def _with_group_contamination(
    groups: dict[str, GroupCounts], bundle: Bundle, outcome: ScanOutcome
) -> dict[str, GroupCounts]:
    for name, counts in groups.items():
        counters = bundle.group_contamination.get(name, {})
        counts.contamination = _contamination(counters, counts.documents, outcome)
    return groups
