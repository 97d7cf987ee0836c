"""Building a reference profile from human and generated reference corpora, on Ray.

`corpus-scanner profile build --human SRC... --synthetic NAME=SRC... --out FILE`
runs two distributed passes over the references:

1. Each shard task reads its documents, drops the first `skip_leading_words`
   words of each (generated references often continue a human prefix), and
   assigns each document to the fit part or the held-out calibration part by a
   hash of its split unit. The unit is the value of `group_field` when given
   (read through the reader's URL column), so that all documents of one source
   document land on the same side; otherwise each document is its own unit.
   The task returns document frequencies of the fit part's words.
2. After the driver selects the vocabulary and word probabilities, each shard
   task scores its held-out documents and returns a `LikelihoodSketch`, whose
   bootstrap replicates weight documents by a hash of their split unit, so
   resampling takes whole source documents.

Vocabulary selection keeps words that occur in at least `min_document_share`
of the fit documents of the human set and of at least one generator, and ranks
them by the largest log-odds z-score between human and any generator.
Probabilities are document frequencies smoothed with add-`smoothing`.
"""

import hashlib
import logging

import numpy as np
import pyarrow as pa
import ray
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kernels.vocabulary import document_distinct_tokens
from scanner.batch import TextBatch
from scanner.config import ReadSettings
from scanner.formats import ReadReport, iter_record_batches
from scanner.plan import Shard, build_plan
from scanner.profile import ReferenceProfile, tokenizer_settings
from scanner.runner import start_ray
from scanner.scoring import ProfileScorer, sentence_units
from scanner.self_check import self_check
from scanner.settings import SketchSettings
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sources import list_objects
from scanner.storage import StorageOptions, filesystem_for
from scanner.tokens import tokenize_batch

logger = logging.getLogger(__name__)

HUMAN = "human"


class ProfileBuildConfig(BaseModel):
    """Everything `corpus-scanner profile build` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    human: list[str] = Field(min_length=1, description="sources of human-written reference documents")
    synthetic: dict[str, list[str]] = Field(min_length=1, description="generator name -> its sources")
    out: str
    read: ReadSettings = ReadSettings()
    sketch: SketchSettings = SketchSettings()
    storage: StorageOptions = StorageOptions()
    group_field: str | None = Field(None, description="field naming the source document of each record")
    skip_leading_words: int = Field(0, ge=0, le=10_000)
    unit: Literal["document", "sentence"] = Field("document", description="what one score belongs to")
    calibration_share: float = Field(0.3, gt=0.0, lt=1.0)
    vocabulary_size: int = Field(2_000, ge=10, le=200_000)
    min_document_share: float = Field(0.01, gt=0.0, lt=1.0)
    smoothing: float = Field(0.5, gt=0.0, le=10.0)
    split_seed: int = Field(0, ge=0)
    histogram_bins: int = Field(200, ge=10, le=10_000)
    score_range: tuple[float, float] = (-30.0, 30.0)
    replicates: int = Field(100, ge=10, le=2_000)
    address: str | None = None
    num_workers: int | None = Field(None, ge=1)

    @field_validator("synthetic")
    @classmethod
    def _check_names(cls, synthetic: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, sources in synthetic.items():
            if not name or name == HUMAN or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError(
                    f"invalid generator name {name!r}: use letters, digits, '-', '_' or '.', and not 'human'"
                )
            if not sources:
                raise ValueError(f"generator {name!r} has no sources: give NAME=SOURCE")
        return synthetic

    def read_settings(self) -> ReadSettings:
        if self.group_field is None:
            return self.read
        return self.read.model_copy(update={"url_field": self.group_field})


def split_unit_hash(unit: str, seed: int) -> int:
    """Return a 64-bit hash of a split unit, the same on every machine."""
    digest = hashlib.blake2b(unit.encode(), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little")


def is_calibration(unit_hash: int, share: float) -> bool:
    return unit_hash / 2.0**64 < share


def _skip_words(text: str, count: int) -> str:
    if count == 0:
        return text
    return " ".join(text.split()[count:])


def _documents(shard: Shard, config: ProfileBuildConfig, report: ReadReport):
    """Yield (texts, split-unit hashes, calibration flags) per record batch of a shard.

    With `unit="sentence"` the texts are the documents' sentences, and each
    sentence carries the split unit and side of its document.
    """
    fs, path = filesystem_for(shard.url, config.storage)
    batches = iter_record_batches(
        lambda: fs.open(path, "rb"),
        shard.url,
        config.read_settings().options(),
        report,
        byte_range=shard.byte_range,
        row_groups=shard.row_groups,
    )
    for batch in batches:
        texts = [_skip_words(text, config.skip_leading_words) for text in batch.column("text").to_pylist()]
        units = batch.column("url").to_pylist() if config.group_field else [None] * len(texts)
        records = batch.column("record").to_pylist()
        hashes = [
            split_unit_hash(unit if unit is not None else f"{shard.url}#{record}", config.split_seed)
            for unit, record in zip(units, records)
        ]
        flags = np.array([is_calibration(value, config.calibration_share) for value in hashes], dtype=bool)
        hashes = np.array(hashes, dtype=np.uint64)
        if config.unit == "sentence":
            texts, owners = sentence_units(texts)
            hashes, flags = hashes[owners], flags[owners]
        yield texts, hashes, flags


def reference_statistics(shard: Shard, config: ProfileBuildConfig) -> dict:
    """Count the document frequency of each word in the fit part of one shard."""
    report = ReadReport()
    counts: dict[int, int] = {}
    texts_of: dict[int, str] = {}
    fit_documents = calibration_documents = 0
    for texts, _, flags in _documents(shard, config, report):
        calibration_documents += int(flags.sum())
        fit_texts = [text for text, held_out in zip(texts, flags) if not held_out]
        fit_documents += len(fit_texts)
        if not fit_texts:
            continue
        tokens = tokenize_batch(TextBatch.from_arrow(pa.array(fit_texts, type=pa.large_string())), config.sketch)
        hashes, first_tokens, _ = document_distinct_tokens(tokens.hashes, tokens.document_offsets)
        unique, first_index, frequency = np.unique(hashes, return_index=True, return_counts=True)
        for value, position, count in zip(unique.tolist(), first_tokens[first_index].tolist(), frequency.tolist()):
            counts[value] = counts.get(value, 0) + count
            if value not in texts_of:
                start = tokens.starts[position]
                texts_of[value] = tokens.folded[start : start + tokens.lengths[position]].tobytes().decode()
    return {
        "fit_documents": fit_documents,
        "calibration_documents": calibration_documents,
        "counts": counts,
        "texts": texts_of,
        "report": report.to_dict(),
    }


def select_vocabulary(
    human_counts: np.ndarray,
    human_documents: int,
    generator_counts: np.ndarray,
    generator_documents: np.ndarray,
    size: int,
    min_document_share: float,
    smoothing: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose vocabulary words; return (indices, p (V,), q (G, V)).

    `human_counts` (W,) and `generator_counts` (G, W) are document frequencies of
    W candidate words. A word qualifies when it occurs in at least
    `min_document_share` of the human documents and of some generator's
    documents; qualifying words are ranked by the largest |log-odds ratio| / its
    standard error over generators, and ties break by index.
    """
    generator_documents = np.asarray(generator_documents, dtype=np.float64)[:, None]
    p_all = (human_counts + smoothing) / (human_documents + 2 * smoothing)
    q_all = (generator_counts + smoothing) / (generator_documents + 2 * smoothing)

    frequent_human = human_counts >= max(1.0, min_document_share * human_documents)
    frequent_generator = generator_counts >= np.maximum(1.0, min_document_share * generator_documents)
    eligible = frequent_human & frequent_generator.any(axis=0)

    log_odds = np.log(q_all) - np.log1p(-q_all) - (np.log(p_all) - np.log1p(-p_all))
    variance = (
        1.0 / (human_counts + smoothing)
        + 1.0 / (human_documents - human_counts + smoothing)
        + 1.0 / (generator_counts + smoothing)
        + 1.0 / (generator_documents - generator_counts + smoothing)
    )
    score = np.max(np.abs(log_odds) / np.sqrt(variance), axis=0)
    candidates = np.flatnonzero(eligible)
    order = np.lexsort((candidates, -score[candidates]))
    chosen = np.sort(candidates[order[:size]])
    return chosen, p_all[chosen], q_all[:, chosen]


def _run_tasks(function, arguments: list[tuple], limit: int) -> list:
    """Run `function` as Ray tasks over `arguments`, at most `limit` at once, keeping the order."""
    remote = ray.remote(function)
    results: list = [None] * len(arguments)
    pending: dict = {}
    position = 0
    while position < len(arguments) or pending:
        while position < len(arguments) and len(pending) < limit:
            pending[remote.remote(*arguments[position])] = position
            position += 1
        ready, _ = ray.wait(list(pending), num_returns=1)
        for reference in ready:
            results[pending.pop(reference)] = ray.get(reference)
    return results


def _plan_class(sources: list[str], config: ProfileBuildConfig) -> list[Shard]:
    objects = list_objects(sources, config.storage)
    return build_plan(objects, config.storage, declared_format=config.read.format).shards


def _merge_counts(statistics: list[dict]) -> tuple[dict[int, int], dict[int, str], int, int, ReadReport]:
    counts: dict[int, int] = {}
    texts: dict[int, str] = {}
    fit = held_out = 0
    report = ReadReport()
    for part in statistics:
        fit += part["fit_documents"]
        held_out += part["calibration_documents"]
        report = report.merge(ReadReport.from_dict(part["report"]))
        for key, count in part["counts"].items():
            counts[key] = counts.get(key, 0) + count
        for key, text in part["texts"].items():
            texts.setdefault(key, text)
    return counts, texts, fit, held_out, report


def build_profile(config: ProfileBuildConfig) -> ReferenceProfile:
    """Run both passes on Ray and return the profile (the caller saves it)."""
    classes = {HUMAN: config.human, **config.synthetic}
    shards = {name: _plan_class(sources, config) for name, sources in classes.items()}
    logger.info("profile build planned: %s", {name: len(parts) for name, parts in shards.items()})

    started_ray = start_ray(config.address, config.num_workers)
    try:
        limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        statistics = {
            name: _merge_counts(_run_tasks(reference_statistics, [(shard, config) for shard in parts], limit))
            for name, parts in shards.items()
        }
        profile = _profile_from_counts(statistics, config)
        calibration = _calibrate(profile, shards, config, limit)
    finally:
        if started_ray:
            ray.shutdown()
    profile.calibration = calibration
    return profile


def _profile_from_counts(statistics: dict, config: ProfileBuildConfig) -> ReferenceProfile:
    generators = list(config.synthetic)
    human_counts, texts, human_fit, human_held_out, _ = statistics[HUMAN]
    for name in generators:
        texts.update({key: text for key, text in statistics[name][1].items() if key not in texts})
    candidates = np.array(sorted(set(human_counts).union(*(statistics[name][0] for name in generators))), dtype=np.uint64)
    if candidates.size == 0:
        raise ValueError("the reference documents contain no words: check --text-field and the sources")

    def counts_of(counts: dict[int, int]) -> np.ndarray:
        return np.array([counts.get(key, 0) for key in candidates.tolist()], dtype=np.float64)

    generator_documents = np.array([statistics[name][2] for name in generators], dtype=np.float64)
    for name, documents in zip([HUMAN, *generators], [human_fit, *generator_documents]):
        if documents < 10:
            raise ValueError(
                f"reference set {name!r} has {int(documents)} fit documents; at least 10 are needed "
                "(add documents or lower --calibration-share)"
            )
    chosen, p, q = select_vocabulary(
        counts_of(human_counts),
        human_fit,
        np.stack([counts_of(statistics[name][0]) for name in generators]),
        generator_documents,
        config.vocabulary_size,
        config.min_document_share,
        config.smoothing,
    )
    if chosen.size == 0:
        raise ValueError(
            "no word is frequent enough in both the human and the generated references: "
            "lower --min-document-share or add documents"
        )
    words = [texts[key] for key in candidates[chosen].tolist()]
    build = {
        "documents": {
            name: {"fit": int(statistics[name][2]), "calibration": int(statistics[name][3])}
            for name in [HUMAN, *generators]
        },
        "vocabulary_size": len(words),
        "min_document_share": config.min_document_share,
        "smoothing": config.smoothing,
        "calibration_share": config.calibration_share,
        "group_field": config.group_field,
        "split_seed": config.split_seed,
        "unit": config.unit,
    }
    grid = {
        "bins": config.histogram_bins,
        "score_range": list(config.score_range),
        "replicates": config.replicates,
    }
    return ReferenceProfile(
        words=words,
        generators=generators,
        human_probability=p,
        generator_probability=q,
        tokenizer=tokenizer_settings(config.sketch),
        skip_leading_words=config.skip_leading_words,
        unit=config.unit,
        grid=grid,
        build=build,
    )


def calibration_scores(
    shard: Shard, config: ProfileBuildConfig, profile_bytes: bytes, fold: int | None = None
) -> bytes:
    """Score the held-out documents of one shard; return a LikelihoodSketch frame.

    A document's bootstrap id is the hash of its split unit, so every replicate
    takes or leaves a whole source document. With `fold` (0 or 1), only the
    documents whose split-unit hash has that lowest bit are scored.
    """
    scorer = ProfileScorer(ReferenceProfile.from_bytes(profile_bytes), config.sketch)
    sketch = scorer.new_sketch()
    report = ReadReport()
    for texts, unit_hashes, flags in _documents(shard, config, report):
        if fold is not None:
            flags = flags & ((unit_hashes & np.uint64(1)) == np.uint64(fold))
        held_out = [text for text, keep in zip(texts, flags) if keep]
        if not held_out:
            continue
        tokens = tokenize_batch(TextBatch.from_arrow(pa.array(held_out, type=pa.large_string())), config.sketch)
        r, human, present = scorer.score(tokens)
        sketch.update(r, human, unit_hashes[flags], present)
    return sketch.to_bytes()


def _merged_sketch(frames: list[bytes], scorer_sketch: LikelihoodSketch) -> LikelihoodSketch:
    merged = scorer_sketch
    for frame in frames:
        merged = merged.merge(LikelihoodSketch.from_bytes(frame))
    return merged


def _calibrate(profile: ReferenceProfile, shards: dict[str, list[Shard]], config: ProfileBuildConfig, limit: int):
    """Return the calibration arrays of the profile, from its held-out documents."""
    scorer = ProfileScorer(profile, config.sketch)
    profile_bytes = profile.to_bytes()
    generators = list(config.synthetic)
    folds: list[dict[str, LikelihoodSketch]] = [{}, {}]
    for name, parts in shards.items():
        for fold in (0, 1):
            arguments = [(shard, config, profile_bytes, fold) for shard in parts]
            folds[fold][name] = _merged_sketch(_run_tasks(calibration_scores, arguments, limit), scorer.new_sketch())
        if folds[0][name].documents + folds[1][name].documents == 0:
            raise ValueError(
                f"reference set {name!r} has no held-out documents for calibration: "
                "add documents or raise --calibration-share"
            )
    sketches = {name: folds[0][name].merge(folds[1][name]) for name in shards}
    fold_arrays = [calibration_arrays(fold, generators) for fold in folds]
    if all(fold[name].documents > 0 for fold in folds for name in shards):
        profile.build["self_check"] = self_check(fold_arrays)
    else:
        profile.build["self_check"] = None
        logger.warning("a held-out fold has no documents of some reference set: the profile self-check is skipped")
    return calibration_arrays(sketches, generators)


def calibration_arrays(sketches: dict[str, LikelihoodSketch], generators: list[str]) -> dict[str, np.ndarray]:
    """Return a profile's calibration arrays from the merged sketches of its held-out documents."""
    return {
        "human_histogram": sketches[HUMAN].histogram,
        "human_replicates": sketches[HUMAN].replicate_histograms,
        "human_l_histogram": sketches[HUMAN].l_histogram,
        "generator_histograms": np.stack([sketches[name].histogram for name in generators]),
        "generator_replicates": np.stack([sketches[name].replicate_histograms for name in generators], axis=1),
        "generator_l_histograms": np.stack([sketches[name].l_histogram for name in generators]),
    }
