"""Mergeable state behind the diversity and collapse indicators.

A `DiversitySketch` covers the whole corpus or one `--group-by` group. It keeps:

- a sample of word types with exact counts (`kernels.diversity`): each type is
  in it with probability 2**-level, at most `type_capacity` types;
- a sample of documents for the near-duplicate rate. It keeps the
  `document_capacity` documents with the smallest MinHash key, the minimum of
  their salted shingle hashes, with ties broken by content id. Each entry keeps the document's MinHash
  signature, its number of distinct shingles and its multiplicity (documents
  with equal text share one entry). Near-duplicates have equal keys with
  probability equal to their Jaccard similarity, so a sampled document's
  near-duplicates tend to be sampled too. A document with n distinct shingles
  is in the sample with probability 1 - (1 - t)**n for the sample's threshold
  t (as a fraction of 2**64), which the estimator corrects for;
- exact moments of the compression ratio (zlib level 6 output bytes over
  input bytes) of the documents whose content id is 0 modulo
  `COMPRESSION_SAMPLING`;
- when the scan has a reference profile, the corpus counts of the profile's
  vocabulary words;
- for a group sketch only, a HyperLogLog per n-gram order (precision
  `GROUP_HLL_PRECISION`) and a small Count-Min table of unigrams, because the
  corpus-wide sketches of the bundle cannot be split by group.

Every part merges exactly (maximum, sums, union with a deterministic cut), so
any split or merge order gives the same state and bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from kernels.diversity import group_ngram_update, insert_types, merge_type_samples, type_sample_update
from kernels.ngrams import CM_BLOCK_SLOTS
from scanner.sketches.minhash import MinHasher
from scanner.sketches.moments import Moments

TYPE_CAPACITY = 16384
GROUP_TYPE_CAPACITY = 4096
DOCUMENT_CAPACITY = 1024
GROUP_DOCUMENT_CAPACITY = 256
MINHASH_PERMUTATIONS = 64
SHINGLE_ORDER = 5
COMPRESSION_SAMPLING = 32
GROUP_HLL_PRECISION = 10
GROUP_COUNTMIN_BLOCKS_LOG2 = 10
GROUP_COUNTMIN_DEPTH = 4
_EMPTY_MINIMUM = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class DocumentContext:
    """Per-batch values that the corpus sketch and every group sketch share."""

    token_hashes: np.ndarray
    document_offsets: np.ndarray
    minima: np.ndarray  # uint64 MinHash key; all ones for documents without tokens
    content_ids: np.ndarray  # uint64
    compression: np.ndarray  # float64 ratio for sampled documents, NaN otherwise


def document_context(batch, tokens, content_ids: np.ndarray, minima: np.ndarray) -> DocumentContext:
    """Collect what the diversity sketches need from one tokenized batch.

    `minima` are the documents' MinHash keys, which the n-gram kernel
    computes in its pass (`kernels.ngrams.update_ngram_sketches`).
    """
    compression = np.full(batch.documents, np.nan)
    for document in np.flatnonzero(content_ids % np.uint64(COMPRESSION_SAMPLING) == 0).tolist():
        text = batch.data[batch.offsets[document] : batch.offsets[document + 1]].tobytes()
        if text:
            compression[document] = len(zlib.compress(text, 6)) / len(text)
    return DocumentContext(tokens.hashes, tokens.document_offsets, minima, content_ids, compression)


class DiversitySketch:
    """Type sample, document sample, compression moments and, for groups, n-gram sketches."""

    def __init__(self, orders: tuple[int, int], seed: int, group: bool = False, vocabulary_size: int = 0):
        self.min_order, self.max_order = orders
        self.seed = seed
        self.group = group
        self.type_capacity = GROUP_TYPE_CAPACITY if group else TYPE_CAPACITY
        self.document_capacity = GROUP_DOCUMENT_CAPACITY if group else DOCUMENT_CAPACITY
        self.type_level = 0
        self.type_keys = np.empty(0, dtype=np.uint64)
        self.type_counts = np.empty(0, dtype=np.int64)
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        self._table_size = 0
        self.minima = np.empty(0, dtype=np.uint64)
        self.ids = np.empty(0, dtype=np.uint64)
        self.multiplicity = np.empty(0, dtype=np.int64)
        self.shingles = np.empty(0, dtype=np.int64)
        self.signatures = np.empty((0, MINHASH_PERMUTATIONS), dtype=np.uint64)
        self.compression = Moments()
        self.vocabulary_counts = np.zeros(vocabulary_size, dtype=np.int64)
        orders_count = self.max_order - self.min_order + 1
        self.tokens = 0
        self.ngram_totals = np.zeros(orders_count, dtype=np.int64)
        if group:
            self.hll_registers = np.zeros((orders_count, 1 << GROUP_HLL_PRECISION), dtype=np.uint8)
            self.countmin_table = np.zeros((1 << GROUP_COUNTMIN_BLOCKS_LOG2, CM_BLOCK_SLOTS), dtype=np.uint32)
        else:
            self.hll_registers = None
            self.countmin_table = None

    # Accumulation, inside one shard.

    def add(
        self,
        context: DocumentContext,
        documents: np.ndarray,
        minhasher: MinHasher,
        vocabulary_counts: np.ndarray | None = None,
    ) -> None:
        """Add the listed documents (indices into the batch) of one batch, and their
        counts of the profile's vocabulary words when the scan has a profile."""
        documents = np.ascontiguousarray(documents, dtype=np.int64)
        lengths = np.diff(context.document_offsets)[documents]
        self.tokens += int(lengths.sum())
        orders = np.arange(self.min_order, self.max_order + 1)
        self.ngram_totals += np.maximum(lengths[:, None] - orders[None, :] + 1, 0).sum(axis=0)
        self._add_types(context, documents)
        self._add_documents(context, documents, minhasher)
        self.compression.update_batch(context.compression[documents])
        if vocabulary_counts is not None and self.vocabulary_counts.size:
            self.vocabulary_counts += vocabulary_counts
        if self.group:
            group_ngram_update(
                context.token_hashes,
                context.document_offsets,
                documents,
                self.min_order,
                self.max_order,
                np.uint64(self.seed),
                self.hll_registers,
                GROUP_HLL_PRECISION,
                self.countmin_table,
                GROUP_COUNTMIN_DEPTH,
            )

    def _add_types(self, context: DocumentContext, documents: np.ndarray) -> None:
        if self._table is None:
            slots = 1 << (4 * self.type_capacity - 1).bit_length()
            keys, counts = np.zeros(slots, dtype=np.uint64), np.zeros(slots, dtype=np.int64)
            self._table = (keys, counts)
            self._table_size = insert_types(keys, counts, self.type_keys, self.type_counts)
        keys, counts = self._table
        self.type_level, self._table_size = type_sample_update(
            context.token_hashes,
            context.document_offsets,
            documents,
            keys,
            counts,
            self.type_level,
            self._table_size,
            self.type_capacity,
        )

    def _add_documents(self, context: DocumentContext, documents: np.ndarray, minhasher: MinHasher) -> None:
        minima = context.minima[documents]
        ids = context.content_ids[documents]
        chosen = minima != _EMPTY_MINIMUM
        if self.minima.size >= self.document_capacity:
            last = (self.minima[-1], self.ids[-1])
            chosen &= (minima < last[0]) | ((minima == last[0]) & (ids <= last[1]))
        chosen &= self._within_capacity(minima, ids, chosen)
        if not chosen.any():
            return
        picked = documents[chosen]
        signatures = minhasher.signatures_of(context.token_hashes, context.document_offsets, picked)
        shingles = minhasher.distinct_shingles_of(context.token_hashes, context.document_offsets, picked)
        self._keep_documents(
            np.concatenate([self.minima, minima[chosen]]),
            np.concatenate([self.ids, ids[chosen]]),
            np.concatenate([self.multiplicity, np.ones(picked.size, dtype=np.int64)]),
            np.concatenate([self.shingles, shingles]),
            np.concatenate([self.signatures, signatures]),
        )

    def _within_capacity(self, minima: np.ndarray, ids: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """Mark the chosen documents that `_keep_documents` would keep, so that only they get signatures.

        The sample keeps the `document_capacity` smallest distinct (minimum, id) pairs of
        itself and the batch, so a pair at or after the next distinct pair is dropped anyway.
        """
        if self.minima.size + int(np.count_nonzero(chosen)) <= self.document_capacity:
            return chosen
        all_minima = np.concatenate([self.minima, minima[chosen]])
        all_ids = np.concatenate([self.ids, ids[chosen]])
        order = np.lexsort((all_ids, all_minima))
        all_minima, all_ids = all_minima[order], all_ids[order]
        first = np.ones(all_ids.size, dtype=bool)
        first[1:] = (all_ids[1:] != all_ids[:-1]) | (all_minima[1:] != all_minima[:-1])
        starts = np.flatnonzero(first)
        if starts.size <= self.document_capacity:
            return chosen
        cut = starts[self.document_capacity]
        limit_minimum, limit_id = all_minima[cut], all_ids[cut]
        return (minima < limit_minimum) | ((minima == limit_minimum) & (ids < limit_id))

    def _keep_documents(self, minima, ids, multiplicity, shingles, signatures) -> None:
        """Keep the `document_capacity` smallest (minimum, id) entries, equal ids combined."""
        order = np.lexsort((ids, minima))
        minima, ids, multiplicity = minima[order], ids[order], multiplicity[order]
        shingles, signatures = shingles[order], signatures[order]
        first = np.ones(ids.size, dtype=bool)
        first[1:] = (ids[1:] != ids[:-1]) | (minima[1:] != minima[:-1])
        starts = np.flatnonzero(first)
        multiplicity = np.add.reduceat(multiplicity, starts) if starts.size else multiplicity
        keep = starts[: self.document_capacity]
        self.minima = minima[keep]
        self.ids = ids[keep]
        self.multiplicity = multiplicity[: keep.size]
        self.shingles = shingles[keep]
        self.signatures = signatures[keep]

    def finish(self) -> "DiversitySketch":
        """Move the type table into sorted arrays; the sketch can merge and serialize afterwards."""
        if self._table is not None:
            keys, counts = self._table
            used = counts > 0
            self.type_keys, self.type_counts, self.type_level = merge_type_samples(
                keys[used], counts[used], self.type_level, self.type_capacity
            )
            self._table = None
        return self

    # Merging and storage.

    def parameters(self) -> dict:
        return {
            "orders": [self.min_order, self.max_order],
            "seed": self.seed,
            "group": self.group,
            "vocabulary_size": int(self.vocabulary_counts.size),
        }

    def merge(self, other: "DiversitySketch") -> "DiversitySketch":
        if self.parameters() != other.parameters():
            raise ValueError(f"cannot merge diversity sketches: {self.parameters()} != {other.parameters()}")
        first, second = self.finish(), other.finish()
        merged = DiversitySketch((self.min_order, self.max_order), self.seed, self.group, self.vocabulary_counts.size)
        level = max(first.type_level, second.type_level)
        merged.type_keys, merged.type_counts, merged.type_level = merge_type_samples(
            np.concatenate([first.type_keys, second.type_keys]),
            np.concatenate([first.type_counts, second.type_counts]),
            level,
            merged.type_capacity,
        )
        merged._keep_documents(
            np.concatenate([first.minima, second.minima]),
            np.concatenate([first.ids, second.ids]),
            np.concatenate([first.multiplicity, second.multiplicity]),
            np.concatenate([first.shingles, second.shingles]),
            np.concatenate([first.signatures, second.signatures]),
        )
        merged.compression = first.compression.merge(second.compression)
        merged.vocabulary_counts = first.vocabulary_counts + second.vocabulary_counts
        merged.tokens = first.tokens + second.tokens
        merged.ngram_totals = first.ngram_totals + second.ngram_totals
        if self.group:
            merged.hll_registers = np.maximum(first.hll_registers, second.hll_registers)
            merged.countmin_table = first.countmin_table.astype(np.uint64) + second.countmin_table.astype(np.uint64)
        return merged

    def to_frame_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        self.finish()
        meta = self.parameters() | {
            "type_level": self.type_level,
            "tokens": self.tokens,
            "compression": self.compression.to_dict(),
        }
        arrays = {
            "type_keys": self.type_keys,
            "type_counts": self.type_counts,
            "minima": self.minima,
            "ids": self.ids,
            "multiplicity": self.multiplicity,
            "shingles": self.shingles,
            "signatures": self.signatures,
            "vocabulary_counts": self.vocabulary_counts,
            "ngram_totals": self.ngram_totals,
        }
        if self.group:
            arrays["hll_registers"] = self.hll_registers
            arrays["countmin"] = self.countmin_table.astype(np.uint64)
        return meta, arrays

    @classmethod
    def from_frame_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "DiversitySketch":
        sketch = cls(tuple(meta["orders"]), meta["seed"], meta["group"], meta["vocabulary_size"])
        expected = sketch.to_frame_parts()[1]
        for name, empty in expected.items():
            if name not in arrays:
                raise ValueError(f"diversity sketch frame is missing the array {name!r}")
            array = arrays[name]
            fixed_shape = name in ("vocabulary_counts", "ngram_totals", "hll_registers", "countmin")
            if array.dtype != empty.dtype or array.ndim != empty.ndim or (fixed_shape and array.shape != empty.shape):
                raise ValueError(f"diversity sketch array {name!r} is {array.dtype} {array.shape}, expected {empty.dtype}")
        sketch.type_level = int(meta["type_level"])
        sketch.tokens = int(meta["tokens"])
        sketch.compression = Moments.from_dict(meta["compression"])
        sketch.type_keys, sketch.type_counts = arrays["type_keys"].copy(), arrays["type_counts"].copy()
        sketch.minima, sketch.ids = arrays["minima"].copy(), arrays["ids"].copy()
        sketch.multiplicity, sketch.signatures = arrays["multiplicity"].copy(), arrays["signatures"].copy()
        sketch.shingles = arrays["shingles"].copy()
        sketch.vocabulary_counts = arrays["vocabulary_counts"].copy()
        sketch.ngram_totals = arrays["ngram_totals"].copy()
        if sketch.group:
            sketch.hll_registers = arrays["hll_registers"].copy()
            sketch.countmin_table = arrays["countmin"].copy()
        return sketch

