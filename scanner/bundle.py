"""Sketch bundles: everything one shard (or a merge of shards) contributes.

A bundle contains the counters (documents, empty documents, bytes, tokens), the
n-gram totals per order, per-group counters for `--group-by`, a HyperLogLog per order, one Count-Min sketch over
the n-grams of all orders, the heavy-hitter candidates, and a quantile sketch
and exact moments per document feature, together with the `SketchSettings`
that produced them and the ids of the shards inside.

Merging is associative and commutative and gives identical bytes for any split
or order of the same shards. It refuses bundles whose settings differ, naming
the setting and both values, and bundles that share a shard id, because a
shard merged twice would be counted twice.

On disk a bundle is one `scanner.codec` frame of kind "bundle": settings,
counters, shard ids, feature moments and heavy-hitter orders in the JSON
header, the sketch arrays in the payload.
"""

from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from scanner.codec import decode_frame, encode_frame
from scanner.settings import SketchSettings
from scanner.sketches.countmin import CountMinSketch
from scanner.sketches.diversity import DiversitySketch
from scanner.sketches.heavy_hitters import HeavyHitterCandidates
from scanner.sketches.hll import estimate_from_registers
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sketches.moments import Moments
from scanner.sketches.quantiles import QuantileSketch

_KIND = "bundle"

GROUP_COUNTERS = ("documents", "empty_documents", "bytes", "tokens")
# Per registered dataset: documents flagged as near duplicates, documents with a registered long
# n-gram, and the long n-grams of all documents (for the false-match bound).
CONTAMINATION_COUNTERS = ("near_duplicate_documents", "long_ngram_documents", "long_ngrams")
FEATURES = ("doc_tokens", "doc_bytes", "type_token_ratio", "repeated_ngram_share", "unigram_entropy")


class BundleMismatchError(ValueError):
    """Two bundles cannot merge: their settings differ or they share shards."""


@dataclass
class Bundle:
    """Mergeable statistics of one or more shards."""

    settings: SketchSettings
    shard_ids: tuple[str, ...] = ()
    documents: int = 0
    empty_documents: int = 0
    bytes: int = 0
    tokens: int = 0
    ngram_totals: np.ndarray = None  # int64 per order
    hll_registers: np.ndarray = None  # uint8 (orders, 2**precision)
    countmin: CountMinSketch = None
    heavy_hitters: HeavyHitterCandidates = field(default_factory=HeavyHitterCandidates)
    quantiles: dict[str, QuantileSketch] = None
    moments: dict[str, Moments] = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int64 GROUP_COUNTERS
    likelihood: LikelihoodSketch | None = None  # scores against the profile, when the scan has one
    group_likelihood: dict[str, LikelihoodSketch] = field(default_factory=dict)
    profile_digest: str | None = None
    diversity: DiversitySketch = None  # type and document samples behind the indicators
    group_diversity: dict[str, DiversitySketch] = field(default_factory=dict)
    contamination: dict[str, np.ndarray] = field(default_factory=dict)  # dataset -> int64 CONTAMINATION_COUNTERS
    group_contamination: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # group -> dataset -> same
    registry_digest: str | None = None

    def __post_init__(self):
        settings = self.settings
        orders = len(settings.orders)
        if self.ngram_totals is None:
            self.ngram_totals = np.zeros(orders, dtype=np.int64)
        if self.hll_registers is None:
            self.hll_registers = np.zeros((orders, 1 << settings.hll_precision), dtype=np.uint8)
        if self.countmin is None:
            self.countmin = CountMinSketch(settings.countmin_blocks_log2, settings.countmin_depth)
        if self.quantiles is None:
            self.quantiles = {name: QuantileSketch(settings.quantile_relative_accuracy) for name in FEATURES}
        if self.moments is None:
            self.moments = {name: Moments() for name in FEATURES}
        self.shard_ids = tuple(sorted(self.shard_ids))
        self.groups = {name: np.asarray(self.groups[name], dtype=np.int64) for name in sorted(self.groups)}
        self.group_likelihood = {name: self.group_likelihood[name] for name in sorted(self.group_likelihood)}
        if self.diversity is None:
            self.diversity = DiversitySketch((settings.min_order, settings.max_order), settings.seed)
        self.group_diversity = {name: self.group_diversity[name] for name in sorted(self.group_diversity)}
        self.contamination = _sorted_counters(self.contamination)
        self.group_contamination = {
            name: _sorted_counters(self.group_contamination[name]) for name in sorted(self.group_contamination)
        }

    def merge(self, other: "Bundle") -> "Bundle":
        """Return the merge of two bundles; neither input changes."""
        difference = self.settings.mismatch(other.settings)
        if difference is not None:
            raise BundleMismatchError(f"cannot merge bundles made with different settings: {difference}")
        if self.profile_digest != other.profile_digest:
            raise BundleMismatchError(
                "cannot merge bundles scored with different reference profiles: "
                f"profile {self.profile_digest} != {other.profile_digest}"
            )
        shared = set(self.shard_ids) & set(other.shard_ids)
        if shared:
            raise BundleMismatchError(
                f"cannot merge bundles that both contain shard {sorted(shared)[0]!r} "
                f"({len(shared)} shared shards): each shard must be merged once"
            )
        return Bundle(
            settings=self.settings,
            shard_ids=self.shard_ids + other.shard_ids,
            documents=self.documents + other.documents,
            empty_documents=self.empty_documents + other.empty_documents,
            bytes=self.bytes + other.bytes,
            tokens=self.tokens + other.tokens,
            ngram_totals=self.ngram_totals + other.ngram_totals,
            hll_registers=np.maximum(self.hll_registers, other.hll_registers),
            countmin=self.countmin.merge(other.countmin),
            heavy_hitters=self.heavy_hitters.merge(other.heavy_hitters),
            quantiles={name: self.quantiles[name].merge(other.quantiles[name]) for name in FEATURES},
            moments={name: self.moments[name].merge(other.moments[name]) for name in FEATURES},
            groups=_merge_groups(self.groups, other.groups),
            likelihood=None if self.likelihood is None else self.likelihood.merge(other.likelihood),
            group_likelihood=_merge_sketches(self.group_likelihood, other.group_likelihood),
            profile_digest=self.profile_digest,
            diversity=self.diversity.merge(other.diversity),
            group_diversity=_merge_sketches(self.group_diversity, other.group_diversity),
            **_merge_contamination(self, other),
        )

    def distinct_ngrams(self, order: int) -> float:
        """HyperLogLog estimate of the distinct n-grams of `order`."""
        row = order - self.settings.min_order
        return estimate_from_registers(self.hll_registers[row], self.settings.hll_precision)

    def top_ngrams(self, order: int, limit: int = 50) -> list[dict]:
        """The most frequent n-grams of `order` with their Count-Min counts.

        N-grams whose count does not exceed the Count-Min error bound are left out:
        the sketch cannot tell them from n-grams seen once. On a small or diverse
        corpus the lists of long n-grams can therefore be short or empty.
        """
        bound = self.countmin.error_bound(int(self.ngram_totals.sum()))
        return [item for item in self.heavy_hitters.top(order, self.countmin, limit) if item["count"] > bound]

    def to_bytes(self) -> bytes:
        heavy_meta, heavy_arrays = self.heavy_hitters.to_frame_parts()
        meta = {
            "settings": self.settings.model_dump(mode="json"),
            "shard_ids": list(self.shard_ids),
            "documents": self.documents,
            "empty_documents": self.empty_documents,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "heavy_hitters": heavy_meta,
            "moments": {name: self.moments[name].to_dict() for name in FEATURES},
            "quantiles": {},
            "groups": list(self.groups),
            "profile_digest": self.profile_digest,
            "likelihood": None,
            "group_likelihood": {},
            "diversity": None,
            "group_diversity": {},
        }
        arrays = {
            "ngram_totals": self.ngram_totals,
            "hll_registers": self.hll_registers,
            "countmin": self.countmin.table.astype(np.uint64),
            "groups": np.array(list(self.groups.values()), dtype=np.int64).reshape(len(self.groups), len(GROUP_COUNTERS)),
        }
        for name in FEATURES:
            quantile_meta, quantile_arrays = self.quantiles[name].to_frame_parts()
            meta["quantiles"][name] = quantile_meta
            for key, array in quantile_arrays.items():
                arrays[f"quantiles/{name}/{key}"] = array
        for key, array in heavy_arrays.items():
            arrays[f"heavy_hitters/{key}"] = array
        if self.likelihood is not None:
            meta["likelihood"], parts = self.likelihood.to_frame_parts()
            arrays.update({f"likelihood/{key}": array for key, array in parts.items()})
        for index, (name, sketch) in enumerate(self.group_likelihood.items()):
            sketch_meta, parts = sketch.to_frame_parts()
            meta["group_likelihood"][name] = sketch_meta
            arrays.update({f"group_likelihood/{index}/{key}": array for key, array in parts.items()})
        meta["diversity"], parts = self.diversity.to_frame_parts()
        arrays.update({f"diversity/{key}": array for key, array in parts.items()})
        for index, (name, sketch) in enumerate(self.group_diversity.items()):
            sketch_meta, parts = sketch.to_frame_parts()
            meta["group_diversity"][name] = sketch_meta
            arrays.update({f"group_diversity/{index}/{key}": array for key, array in parts.items()})
        _add_contamination_parts(self, meta, arrays)
        return encode_frame(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Bundle":
        meta, arrays = decode_frame(data, _KIND)
        settings = _settings_of(meta["settings"])
        heavy_arrays = {
            key.removeprefix("heavy_hitters/"): array
            for key, array in arrays.items()
            if key.startswith("heavy_hitters/")
        }
        quantiles = {}
        for name in FEATURES:
            prefix = f"quantiles/{name}/"
            parts = {key.removeprefix(prefix): array for key, array in arrays.items() if key.startswith(prefix)}
            quantiles[name] = QuantileSketch.from_frame_parts(meta["quantiles"][name], parts)
        likelihood = None
        if meta["likelihood"] is not None:
            likelihood = LikelihoodSketch.from_frame_parts(meta["likelihood"], _with_prefix(arrays, "likelihood/"))
        group_likelihood = {
            name: LikelihoodSketch.from_frame_parts(sketch_meta, _with_prefix(arrays, f"group_likelihood/{index}/"))
            for index, (name, sketch_meta) in enumerate(meta["group_likelihood"].items())
        }
        return cls(
            settings=settings,
            shard_ids=tuple(meta["shard_ids"]),
            documents=meta["documents"],
            empty_documents=meta["empty_documents"],
            bytes=meta["bytes"],
            tokens=meta["tokens"],
            ngram_totals=arrays["ngram_totals"],
            hll_registers=arrays["hll_registers"],
            countmin=CountMinSketch(settings.countmin_blocks_log2, settings.countmin_depth, arrays["countmin"]),
            heavy_hitters=HeavyHitterCandidates.from_frame_parts(meta["heavy_hitters"], heavy_arrays),
            quantiles=quantiles,
            moments={name: Moments.from_dict(meta["moments"][name]) for name in FEATURES},
            groups=dict(zip(meta["groups"], arrays["groups"])),
            likelihood=likelihood,
            group_likelihood=group_likelihood,
            profile_digest=meta["profile_digest"],
            diversity=DiversitySketch.from_frame_parts(meta["diversity"], _with_prefix(arrays, "diversity/")),
            group_diversity={
                name: DiversitySketch.from_frame_parts(sketch_meta, _with_prefix(arrays, f"group_diversity/{index}/"))
                for index, (name, sketch_meta) in enumerate(meta["group_diversity"].items())
            },
            **_contamination_from_parts(meta, arrays),
        )


def _settings_of(stored: dict) -> SketchSettings:
    """Validate the settings stored in a bundle; raise BundleMismatchError naming each unsupported one."""
    try:
        return SketchSettings.model_validate(stored)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])} {item.get('input')!r}: {item['msg']}"
            for item in error.errors()
        )
        raise BundleMismatchError(
            f"cannot use a bundle made with settings this scanner does not support: {problems}"
        ) from None


def _with_prefix(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key.removeprefix(prefix): array for key, array in arrays.items() if key.startswith(prefix)}


def _merge_sketches(
    first: dict[str, LikelihoodSketch], second: dict[str, LikelihoodSketch]
) -> dict[str, LikelihoodSketch]:
    merged = dict(first)
    for name, sketch in second.items():
        merged[name] = merged[name].merge(sketch) if name in merged else sketch
    return merged


def _merge_groups(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    merged = dict(first)
    for name, counters in second.items():
        merged[name] = merged[name] + counters if name in merged else counters
    return merged


def merge_all(bundles: list[Bundle]) -> Bundle:
    """Merge bundles pairwise as a balanced tree; the list must not be empty."""
    if not bundles:
        raise ValueError("merge_all needs at least one bundle")
    level = list(bundles)
    while len(level) > 1:
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


def _sorted_counters(counters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(counters[name], dtype=np.int64) for name in sorted(counters)}


def _merge_contamination(first: Bundle, second: Bundle) -> dict:
    """Return the contamination fields of the merge of two bundles; raise when their registries differ."""
    if first.registry_digest != second.registry_digest:
        raise BundleMismatchError(
            "cannot merge bundles matched against different registries: "
            f"registry {first.registry_digest} != {second.registry_digest}"
        )
    groups = dict(first.group_contamination)
    for name, counters in second.group_contamination.items():
        groups[name] = _merge_groups(groups[name], counters) if name in groups else counters
    return {
        "contamination": _merge_groups(first.contamination, second.contamination),
        "group_contamination": groups,
        "registry_digest": first.registry_digest,
    }


def _add_contamination_parts(bundle: Bundle, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Store the contamination counters as arrays (datasets, counters) and (groups, datasets, counters)."""
    if bundle.registry_digest is None:
        return
    datasets = list(bundle.contamination)
    groups = list(bundle.group_contamination)
    shape = (len(datasets), len(CONTAMINATION_COUNTERS))
    meta["contamination"] = {"registry_digest": bundle.registry_digest, "datasets": datasets, "groups": groups}
    arrays["contamination"] = np.array(list(bundle.contamination.values()), dtype=np.int64).reshape(shape)
    group_arrays = [
        [bundle.group_contamination[group].get(name, np.zeros(shape[1], dtype=np.int64)) for name in datasets]
        for group in groups
    ]
    arrays["group_contamination"] = np.array(group_arrays, dtype=np.int64).reshape((len(groups), *shape))


def _contamination_from_parts(meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    stored = meta.get("contamination")
    if stored is None:
        return {}
    datasets = stored["datasets"]
    return {
        "contamination": dict(zip(datasets, arrays["contamination"])),
        "group_contamination": {
            group: dict(zip(datasets, values)) for group, values in zip(stored["groups"], arrays["group_contamination"])
        },
        "registry_digest": stored["registry_digest"],
    }
