"""The fingerprint audit: do two datasets differ in their n-gram distributions beyond chance?

`corpus-scanner audit --baseline SRC... --candidate SRC... --out DIR` scans both
datasets on Ray, like a scan, and writes DIR/audit.json.

Method. Every shard task tokenizes its documents as `scan` does and hashes
the word n-grams of the audited orders (default 1-2) into `buckets` buckets.
Each document goes to one of `blocks` blocks per dataset, chosen by the XXH64
hash of its case-folded text. The task returns the bucket counts summed per
block (`scanner.sketches.ngram_blocks`) and a normal scan bundle, whose
heavy-hitter candidates keep the text of frequent n-grams. Merging adds the
tables, so the result does not depend on how shards split or merge.

The driver pools each side's blocks into one bucket distribution and reports
their Jensen-Shannon divergence in bits as `divergence`. The p-value comes
from a permutation test on the 2 x `blocks` block tables: each of
`permutations` random relabelings (seeded, so the result is reproducible)
assigns `blocks` of them to each side and recomputes the divergence, and
p = (1 + relabelings at or above the observed divergence) / (1 + permutations).
The datasets are reported as different when p <= alpha.

Assumptions. Documents are independent draws, so blocks of one dataset are
independent, and n-grams inside one document may depend on each other (a
block contains whole documents). Under the null hypothesis that both datasets
come from one distribution, blocks of equal expected size are exchangeable, so
the false-positive rate is alpha up to Monte-Carlo error when both datasets
have about the same number of documents. NOTE: the observed split gives each
side exactly its dataset's documents while relabelings do not, so even then
the blocks are exchangeable only approximately. The measurements below show no
excess of false positives. With very unequal dataset sizes the blocks of the smaller side hold fewer
documents and are noisier, so exchangeability holds only approximately and
`audit.json` warns. Duplicated documents fall into one block, which keeps the
blocks independent, but near-duplicates do not.

Error. The p-value's Monte-Carlo resolution is 1 / (1 + permutations).
`divergence` is a plug-in estimate and is biased upward by sampling noise, so
`null_divergence` gives the mean divergence under relabeling for comparison.
Buckets merge n-grams that collide, which can hide a difference but never
creates one. `benchmarks/audit_power.py` measures power and false-positive
rate on number sequences from two Markov chains whose two-digit token
frequencies differ by total variation 0.02, with documents of 100 to 300
tokens, orders 1-2, 4,096 buckets, 32 blocks and 999 permutations. At
alpha 0.05 (200 power and 500 null repeats per size): with 200 documents per
side, power 0.77 and false-positive rate 0.024 (95% interval 0.014-0.041).
With 400 documents per side, the documented sample size, power 1.00 (0.98-1.00)
and false-positive rate 0.050 (0.034-0.073).

`top_ngrams` lists the heavy-hitter candidates of both sides (see
`scanner.sketches.heavy_hitters`) ranked by their own term of the
Jensen-Shannon divergence between the n-gram frequencies of the two sides.
Their counts are Count-Min estimates, upper bounds within
`top_ngrams_error_bound`, and an n-gram that is rare on both sides cannot be
listed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scanner.accumulator import ShardAccumulator
from scanner.allocator import release_free_memory
from scanner.batch import TextBatch
from scanner.bundle import Bundle
from scanner.codec import decode_frame, encode_frame
from scanner.config import ReadSettings
from scanner.formats import ReadReport
from scanner.plan import Shard, build_plan, read_shard
from scanner.settings import SketchSettings
from scanner.sketches.ngram_blocks import NgramBlocks
from scanner.sources import list_objects
from scanner.storage import StorageOptions, filesystem_for, redact_url, url_for

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
SCHEMA_VERSION = 1
SIDES = ("baseline", "candidate")
# Mixed into the sketch seed to choose a document's block, so blocks do not follow token hashes.
_BLOCK_SEED_SALT = 0xB10C_5EED_A0D1_7000
_SIDE_KIND = "audit_side"
# Relabelings evaluated per matrix product, bounded so one product needs at most 32 MiB.
_PERMUTATION_CELLS = 1 << 22


class AuditSettings(BaseModel):
    """Parameters of the block table and the permutation test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    buckets: int = Field(4096, ge=16, le=1 << 20, description="hash buckets of the n-gram distribution")
    blocks: int = Field(32, ge=2, le=4096, description="document blocks per dataset, the units that are permuted")
    permutations: int = Field(999, ge=19, le=1_000_000, description="random relabelings of the permutation test")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="significance level of the decision")
    permutation_seed: int = Field(0, ge=0, lt=2**64, description="seed of the relabelings")
    top_ngrams: int = Field(20, ge=1, le=10_000, description="n-grams listed in top_ngrams")


class AuditConfig(BaseModel):
    """Everything `corpus-scanner audit` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: list[str] = Field(min_length=1, description="sources of the reference dataset")
    candidate: list[str] = Field(min_length=1, description="sources of the dataset compared with it")
    out: str = Field(description="output directory, local or in object storage")
    read: ReadSettings = ReadSettings()
    sketch: SketchSettings = SketchSettings(min_order=1, max_order=2)
    storage: StorageOptions = StorageOptions()
    audit: AuditSettings = AuditSettings()
    address: str | None = Field(None, description="Ray cluster address; None starts an embedded local Ray")
    num_workers: int | None = Field(None, ge=1, le=4096, description="parallel shard tasks; None: CPUs")
    target_shard_bytes: int = Field(256 << 20, gt=0)
    task_retries: int = Field(3, ge=0, le=20, description="retries of a shard whose worker crashed")

    @field_validator("baseline", "candidate")
    @classmethod
    def _check_sources(cls, sources: list[str]) -> list[str]:
        if any(not source.strip() for source in sources):
            raise ValueError("a source is empty: give a path, glob, URL or @manifest file")
        return sources


class EmptyDatasetError(ValueError):
    """A dataset has no n-grams of the audited orders, so there is nothing to compare."""


class AuditFailedError(RuntimeError):
    """Shards failed, so the audit would compare incomplete datasets."""


@dataclass
class AuditSide:
    """Summary of one dataset: a scan bundle for the n-gram texts, and the block table."""

    bundle: Bundle
    blocks: NgramBlocks

    def merge(self, other: AuditSide) -> AuditSide:
        return AuditSide(self.bundle.merge(other.bundle), self.blocks.merge(other.blocks))

    def to_bytes(self) -> bytes:
        arrays = {
            "bundle": np.frombuffer(self.bundle.to_bytes(), dtype=np.uint8),
            "blocks": np.frombuffer(self.blocks.to_bytes(), dtype=np.uint8),
        }
        return encode_frame(_SIDE_KIND, {}, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditSide:
        _, arrays = decode_frame(data, _SIDE_KIND)
        return cls(Bundle.from_bytes(arrays["bundle"].tobytes()), NgramBlocks.from_bytes(arrays["blocks"].tobytes()))


class AuditAccumulator:
    """Working state of one shard of one side, fed text batch by text batch."""

    def __init__(self, sketch: SketchSettings, audit: AuditSettings, shard_id: str):
        self.sketch = sketch
        self.scan = ShardAccumulator(sketch, shard_id)
        self.blocks = NgramBlocks(audit.blocks, audit.buckets)

    def add_batch(self, batch: TextBatch) -> None:
        tokens = self.scan.add_batch(batch)
        self.blocks.update(
            tokens,
            batch.offsets,
            self.sketch.min_order,
            self.sketch.max_order,
            self.sketch.seed,
            block_seed(self.sketch),
        )

    def finish(self) -> AuditSide:
        return AuditSide(self.scan.finish(), self.blocks)


def block_seed(sketch: SketchSettings) -> int:
    """Return the seed of the content hash that chooses a document's block."""
    return sketch.seed ^ _BLOCK_SEED_SALT


def audit_shard(shard: Shard, config: AuditConfig) -> tuple[dict, bytes]:
    """Read one shard on a worker; return (summary, `AuditSide` bytes). Storage and reader errors propagate."""
    started = time.perf_counter()
    report = ReadReport()
    for warning in shard.warnings:
        report.warn(f"{shard.url}: {warning}")
    accumulator = AuditAccumulator(config.sketch, config.audit, shard.shard_id)
    batches = read_shard(shard, config.storage, config.read.options(), report)
    for batch in batches:
        if batch.num_rows:
            accumulator.add_batch(TextBatch.from_arrow(batch.column("text")))
    side = accumulator.finish()
    summary = {
        "shard_id": shard.shard_id,
        "url": shard.url,
        "documents": side.bundle.documents,
        "seconds": round(time.perf_counter() - started, 6),
        "report": report.to_dict(),
    }
    data = side.to_bytes()
    del accumulator, side
    release_free_memory()
    return summary, data


def merge_side_bytes(*parts: bytes) -> bytes:
    """Merge serialized `AuditSide`s into one."""
    merged = AuditSide.from_bytes(parts[0])
    for part in parts[1:]:
        merged = merged.merge(AuditSide.from_bytes(part))
    data = merged.to_bytes()
    del merged
    release_free_memory()
    return data


# ---------------------------------------------------------------- the statistic


def jensen_shannon_bits(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the Jensen-Shannon divergence in bits between count vectors, row by row (the last axis)."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    p = first / first.sum(axis=-1, keepdims=True)
    q = second / second.sum(axis=-1, keepdims=True)
    return _jensen_shannon_terms(p, q).sum(axis=-1)


def _jensen_shannon_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Return each category's term of the Jensen-Shannon divergence (bits) of frequencies p and q."""
    m = 0.5 * (p + q)
    safe_m = np.where(m > 0, m, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log2(p / safe_m), 0.0)
        right = np.where(q > 0, q * np.log2(q / safe_m), 0.0)
    return 0.5 * (left + right)


@dataclass(frozen=True)
class PermutationTest:
    """Outcome of the block permutation test."""

    divergence: float  # observed Jensen-Shannon divergence, bits
    p_value: float
    null_divergence: float  # mean divergence over the relabelings
    null_divergence_q95: float  # 95th percentile of the divergence over the relabelings
    permutations: int


def permutation_test(baseline: np.ndarray, candidate: np.ndarray, permutations: int, seed: int) -> PermutationTest:
    """Test whether two (blocks, buckets) tables of equal shape come from one distribution.

    Raises ValueError when the shapes differ, and EmptyDatasetError when a side has no n-grams.
    """
    baseline = np.asarray(baseline, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if baseline.shape != candidate.shape:
        raise ValueError(f"block tables of shapes {baseline.shape} and {candidate.shape} cannot be compared")
    for name, table in zip(SIDES, (baseline, candidate)):
        if table.sum() == 0:
            raise EmptyDatasetError(f"the {name} dataset has no n-grams: check its sources, --text-field and --ngram-orders")

    observed = float(jensen_shannon_bits(baseline.sum(axis=0), candidate.sum(axis=0)))
    blocks = baseline.shape[0]
    table = np.concatenate([baseline, candidate])
    total = table.sum(axis=0)
    rng = np.random.default_rng(seed)
    chunk = max(1, _PERMUTATION_CELLS // table.shape[1])
    null = np.empty(permutations, dtype=np.float64)
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        # Ranks of uniform keys: each row takes a uniformly random set of `blocks` blocks as the baseline.
        ranks = np.argsort(rng.random((size, 2 * blocks)), axis=1)
        labels = (ranks < blocks).astype(np.float64)
        relabeled = labels @ table
        null[start : start + size] = jensen_shannon_bits(relabeled, total - relabeled)

    # Relative tolerance so that a relabeling equal to the observed one counts as at or above it.
    exceed = int(np.count_nonzero(null >= observed * (1.0 - 1e-9)))
    return PermutationTest(
        divergence=observed,
        p_value=(1 + exceed) / (1 + permutations),
        null_divergence=float(null.mean()),
        null_divergence_q95=float(np.quantile(null, 0.95)),
        permutations=permutations,
    )


def contributing_ngrams(baseline: Bundle, candidate: Bundle, limit: int) -> list[dict]:
    """Rank the heavy-hitter candidates of both sides by their term of the divergence; return the top `limit`.

    Frequencies are Count-Min counts over each side's n-grams of all audited orders.
    N-grams with the same frequency on both sides contribute nothing and are not listed.
    """
    totals = [float(baseline.ngram_totals.sum()), float(candidate.ngram_totals.sum())]
    rows = []
    for order in baseline.settings.orders:
        texts = dict(baseline.heavy_hitters.candidates.get(order, {}))
        for key, text in candidate.heavy_hitters.candidates.get(order, {}).items():
            if key not in texts or text < texts[key]:
                texts[key] = text
        if not texts:
            continue
        keys = np.fromiter(texts.keys(), dtype=np.uint64, count=len(texts))
        counts = [baseline.countmin.query(keys), candidate.countmin.query(keys)]
        p = counts[0] / max(totals[0], 1.0)
        q = counts[1] / max(totals[1], 1.0)
        terms = _jensen_shannon_terms(p, q)
        for index, text in enumerate(texts.values()):
            if terms[index] <= 0.0:
                continue
            rows.append(
                {
                    "ngram": text,
                    "order": order,
                    "baseline_count": int(counts[0][index]),
                    "candidate_count": int(counts[1][index]),
                    "baseline_frequency": float(p[index]),
                    "candidate_frequency": float(q[index]),
                    "more_frequent_in": "candidate" if q[index] > p[index] else "baseline",
                    "contribution": float(terms[index]),
                }
            )
    rows.sort(key=lambda row: (-row["contribution"], row["order"], row["ngram"]))
    return rows[:limit]


# ---------------------------------------------------------------- running on Ray


@dataclass
class AuditOutcome:
    """Merged sides of an audit, with per-side shard summaries."""

    config: AuditConfig
    sides: dict[str, AuditSide]
    summaries: dict[str, list[dict]] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def plan_sides(config: AuditConfig) -> dict[str, list[Shard]]:
    """List and plan both datasets. Raises SourceError when a source matches nothing."""
    plans = {}
    for side in SIDES:
        objects = list_objects(getattr(config, side), config.storage)
        plan = build_plan(
            objects, config.storage, declared_format=config.read.format, target_shard_bytes=config.target_shard_bytes
        )
        plans[side] = plan.shards
        logger.info("audit %s planned: %d objects, %d shards, %d bytes", side, plan.total_objects, len(plan.shards), plan.total_bytes)
    return plans


def run_audit(config: AuditConfig) -> AuditOutcome:
    """Scan both datasets on Ray and return their merged sides.

    Raises SourceError when a source matches nothing and AuditFailedError when a shard fails.
    """
    # Imported here because it imports Ray, which argument errors do not need.
    from scanner.runner import start_ray

    started = time.monotonic()
    plans = plan_sides(config)
    started_ray = start_ray(config.address, config.num_workers)
    try:
        outcome = _execute(config, plans)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    outcome.seconds = time.monotonic() - started
    logger.info("audit scans finished in %.1f s", outcome.seconds)
    return outcome


def _execute(config: AuditConfig, plans: dict[str, list[Shard]]) -> AuditOutcome:
    import ray

    from scanner.runner import _TreeMerge

    scan_task = ray.remote(num_returns=2)(audit_shard)
    merge_task = ray.remote(merge_side_bytes)
    merges = {side: _TreeMerge(merge_task) for side in SIDES}
    summaries: dict[str, list[dict]] = {side: [] for side in SIDES}
    failures = []
    queue = [(side, shard) for side in SIDES for shard in plans[side]]
    workers = config.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    options = {"max_retries": config.task_retries, "retry_exceptions": [OSError, TimeoutError]}
    in_flight: dict = {}

    while queue or in_flight:
        while queue and len(in_flight) < 2 * workers:
            side, shard = queue.pop(0)
            summary_ref, side_ref = scan_task.options(**options).remote(shard, config)
            in_flight[summary_ref] = (side, shard, side_ref)
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for summary_ref in ready:
            side, shard, side_ref = in_flight.pop(summary_ref)
            try:
                summary = ray.get(summary_ref)
            except Exception as error:  # noqa: BLE001 - every task failure is reported with its shard
                logger.error("%s shard %s (%s) failed: %s", side, shard.shard_id, shard.url, error)
                failures.append(f"{side} shard {shard.shard_id} ({shard.url}): {type(error).__name__}")
                continue
            merges[side].add(side_ref)
            summaries[side].append(summary)

    if failures:
        raise AuditFailedError(
            f"{len(failures)} shards failed, so the datasets cannot be compared: " + "; ".join(failures[:5])
        )
    sides = {}
    for side in SIDES:
        reference = merges[side].result_reference()
        if reference is None:
            raise EmptyDatasetError(f"the {side} dataset has no shards to read: its sources contain only empty objects")
        sides[side] = AuditSide.from_bytes(ray.get(reference))
    for side in SIDES:
        summaries[side].sort(key=lambda summary: summary["shard_id"])
    return AuditOutcome(config, sides, summaries, {side: len(plans[side]) for side in SIDES})


# ---------------------------------------------------------------- audit.json


def build_audit_result(outcome: AuditOutcome) -> dict:
    """Run the permutation test on the merged sides and return the content of audit.json.

    Raises EmptyDatasetError when a side has no n-grams.
    """
    config = outcome.config
    settings = config.audit
    baseline, candidate = outcome.sides["baseline"], outcome.sides["candidate"]
    test = permutation_test(baseline.blocks.counts, candidate.blocks.counts, settings.permutations, settings.permutation_seed)
    differ = test.p_value <= settings.alpha
    warnings = _warnings(outcome)
    for message in warnings:
        logger.warning("%s", message)
    return {
        "schema_version": SCHEMA_VERSION,
        "divergence": test.divergence,
        "divergence_unit": "bits",
        "null_divergence": test.null_divergence,
        "null_divergence_q95": test.null_divergence_q95,
        "p_value": test.p_value,
        "alpha": settings.alpha,
        "differ": differ,
        "decision": (
            f"the datasets differ (p = {test.p_value:.4f} <= alpha {settings.alpha})"
            if differ
            else f"no difference detected (p = {test.p_value:.4f} > alpha {settings.alpha})"
        ),
        "method": {
            "statistic": "Jensen-Shannon divergence (bits) between the pooled hashed n-gram distributions",
            "test": "permutation test over document blocks chosen by a hash of each document's text",
            "ngram_orders": [config.sketch.min_order, config.sketch.max_order],
            "buckets": settings.buckets,
            "blocks_per_side": settings.blocks,
            "permutations": test.permutations,
            "permutation_seed": settings.permutation_seed,
            "p_value_resolution": 1.0 / (1 + test.permutations),
        },
        "baseline": _side_summary(outcome, "baseline"),
        "candidate": _side_summary(outcome, "candidate"),
        "top_ngrams": contributing_ngrams(baseline.bundle, candidate.bundle, settings.top_ngrams),
        "top_ngrams_error_bound": {
            side: outcome.sides[side].bundle.countmin.error_bound(int(outcome.sides[side].bundle.ngram_totals.sum()))
            for side in SIDES
        },
        "warnings": warnings,
        "seconds": round(outcome.seconds, 3),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _side_summary(outcome: AuditOutcome, side: str) -> dict:
    bundle = outcome.sides[side].bundle
    blocks = outcome.sides[side].blocks
    report = ReadReport()
    for summary in outcome.summaries[side]:
        report = report.merge(ReadReport.from_dict(summary["report"]))
    return {
        "sources": [redact_url(source) for source in getattr(outcome.config, side)],
        "documents": bundle.documents,
        "empty_documents": bundle.empty_documents,
        "tokens": bundle.tokens,
        "ngrams": int(bundle.ngram_totals.sum()),
        "bytes": bundle.bytes,
        "shards": outcome.shards[side],
        "nonempty_blocks": int(np.count_nonzero(blocks.documents)),
        "skipped_records": report.skipped_total,
        "skipped_by_reason": dict(sorted(report.skipped.items())),
        "read_warnings": report.warnings,
    }


def _warnings(outcome: AuditOutcome) -> list[str]:
    blocks = outcome.config.audit.blocks
    documents = {side: outcome.sides[side].bundle.documents for side in SIDES}
    warnings = []
    for side in SIDES:
        if documents[side] < 2 * blocks:
            warnings.append(
                f"the {side} dataset has {documents[side]} documents for {blocks} blocks: "
                "many blocks are empty or hold one document, so the test has little power; lower --blocks"
            )
    smaller, larger = sorted(documents.values())
    if smaller > 0 and larger > 2 * smaller:
        warnings.append(
            f"the datasets have {documents['baseline']} and {documents['candidate']} documents: with sizes this "
            "unequal the blocks are only approximately exchangeable, so the p-value is approximate; "
            "subsample the larger dataset for an exact test"
        )
    return warnings


def write_audit(result: dict, out: str, storage: StorageOptions) -> str:
    """Write `result` as OUT/audit.json (local or object storage); return the file's URL."""
    fs, root = filesystem_for(out, storage)
    root = root.rstrip("/") or "/"
    path = f"{root}/{AUDIT_FILE}"
    data = (json.dumps(result, indent=2, allow_nan=False) + "\n").encode("utf-8")
    if isinstance(fs, LocalFileSystem):
        os.makedirs(root, exist_ok=True)
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    else:
        fs.pipe_file(path, data)
    return url_for(fs, path)


def format_audit_summary(result: dict, location: str) -> str:
    """Return the short summary printed after an audit."""
    lines = [
        f"decision:        {result['decision']}",
        f"divergence:      {result['divergence']:.6f} bits "
        f"(under relabeling: mean {result['null_divergence']:.6f}, 95th percentile {result['null_divergence_q95']:.6f})",
        f"p-value:         {result['p_value']:.4f} ({result['method']['permutations']} permutations)",
    ]
    for side in SIDES:
        counts = result[side]
        lines.append(
            f"{side + ':':<17}{counts['documents']:,} documents, {counts['tokens']:,} tokens, "
            f"{counts['skipped_records']:,} skipped records"
        )
    top = result["top_ngrams"][:5]
    if top:
        lines.append("top n-grams:     " + ", ".join(
            f"{row['ngram']!r} ({row['baseline_count']:,} vs {row['candidate_count']:,})" for row in top
        ))
    lines.extend(f"warning: {message}" for message in result["warnings"])
    lines.append(f"output:          {location}")
    return "\n".join(lines)
