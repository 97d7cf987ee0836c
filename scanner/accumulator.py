"""Turning the text batches of one shard, or of the shards of a pack, into a sketch bundle.

`ShardAccumulator` owns the working state of a shard: HyperLogLog registers,
a uint32 Count-Min table, the heavy-hitter candidate tables and the text of
their items,
and the feature sketches. Each `add_batch` runs the kernels once over the
batch; `finish` returns the shard's `Bundle`. A pack's shards go through one
accumulator, with `finish_shard` between them, and its bundle equals the merge
of the bundles that the shards would give alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kernels.features import document_features
from kernels.ngrams import CM_BLOCK_SLOTS, countmin_query_batch, update_ngram_sketches
from kernels.vocabulary import vocabulary_totals
from kernels.texts import gather_ngram_texts
from scanner.batch import TextBatch
from scanner.bundle import CONTAMINATION_COUNTERS, FEATURES, Bundle
from scanner.settings import SketchSettings
from scanner.sketches.countmin import CountMinSketch
from scanner.sketches.heavy_hitters import HeavyHitterCandidates
from scanner.sketches.moments import Moments
from scanner.sketches.quantiles import QuantileSketch
from scanner.scoring import ProfileScorer
from scanner.sketches.diversity import MINHASH_PERMUTATIONS, SHINGLE_ORDER, DiversitySketch, document_context
from scanner.sketches.likelihood import LikelihoodSketch
from scanner.sketches.minhash import MinHasher
from scanner.scoring import content_ids
from scanner.tokens import Tokens, TokenScratch, tokenize_batch

if TYPE_CHECKING:
    from scanner.registry import RegistryMatcher


@dataclass
class _FinishedShards:
    """The sketches of a pack's finished shards whose state depends on where a shard ends.

    A shard's Count-Min updates are conservative and its heavy-hitter candidate
    test compares with the n-grams counted so far, so a shard that continued
    the counts of the previous one would give other counts and candidates. The
    group Count-Min tables of the diversity sketches are conservative too. So
    each shard starts these sketches empty, and `add` merges them here as
    `Bundle.merge` merges bundles.
    """

    countmin_table: np.ndarray  # uint64
    candidates: HeavyHitterCandidates
    ngram_totals: np.ndarray
    diversity: DiversitySketch
    group_diversity: dict[str, DiversitySketch]

    def add(self, shard: "_FinishedShards") -> None:
        np.add(self.countmin_table, shard.countmin_table, out=self.countmin_table)
        self.candidates = self.candidates.merge(shard.candidates)
        self.ngram_totals += shard.ngram_totals
        self.diversity = self.diversity.merge(shard.diversity)
        for name, sketch in shard.group_diversity.items():
            previous = self.group_diversity.get(name)
            self.group_diversity[name] = sketch if previous is None else previous.merge(sketch)


class ShardAccumulator:
    """Sketch state of one shard, or of the shards of one pack, fed batch by batch.

    `shard_ids` is the id of the shard, or the ids of all shards of a pack; the
    bundle from `finish` lists each of them. Call `finish_shard` after each
    shard of a pack but the last.
    """

    def __init__(
        self,
        settings: SketchSettings,
        shard_ids: str | Sequence[str],
        scorer: ProfileScorer | None = None,
        matcher: "RegistryMatcher | None" = None,
        group_indicators: bool = True,
        token_scratch: TokenScratch | None = None,
    ):
        """`token_scratch` may be shared by accumulators that are never fed at the same time."""
        self.settings = settings
        self.shard_ids = (shard_ids,) if isinstance(shard_ids, str) else tuple(shard_ids)
        self.scorer = scorer
        self.likelihood = scorer.new_sketch() if scorer else None
        self.group_likelihood: dict[str, LikelihoodSketch] = {}
        self.matcher = matcher
        counters = len(CONTAMINATION_COUNTERS)
        self.contamination = {name: np.zeros(counters, dtype=np.int64) for name in matcher.names} if matcher else {}
        self.group_contamination: dict[str, dict[str, np.ndarray]] = {}
        orders = len(settings.orders)
        self.documents = 0
        self.empty_documents = 0
        self.bytes = 0
        self.tokens = 0
        self.ngram_totals = np.zeros(orders, dtype=np.int64)
        self.hll_registers = np.zeros((orders, 1 << settings.hll_precision), dtype=np.uint8)
        self.countmin_table = np.zeros((1 << settings.countmin_blocks_log2, CM_BLOCK_SLOTS), dtype=np.uint32)

        # Candidate tables are filled to half their size at most, and keep at most a
        # quarter after an eviction: 8k slots hold 4k candidates between evictions.
        table_size = 1 << (8 * settings.heavy_hitter_capacity - 1).bit_length()
        self.candidate_keys = np.zeros((orders, table_size), dtype=np.uint64)
        self.candidate_used = np.zeros((orders, table_size), dtype=np.uint8)
        self.candidate_positions = np.full((orders, table_size), -1, dtype=np.int64)
        self.candidate_sizes = np.zeros(orders, dtype=np.int64)
        self.candidate_texts: list[dict[int, str]] = [{} for _ in range(orders)]
        self.heavy_hitter_overflow = 0
        self.groups: dict[str, np.ndarray] = {}

        self.token_scratch = token_scratch or TokenScratch()
        self.minhasher = MinHasher(MINHASH_PERMUTATIONS, SHINGLE_ORDER, settings.seed)
        self.diversity = self._new_diversity(group=False)
        # Indicators per group cost a few hundred KiB per group in memory and in the bundle:
        # fine for months of a crawl, too much for thousands of domains.
        self.group_indicators = group_indicators
        self.group_diversity: dict[str, DiversitySketch] = {}
        self.quantiles = {name: QuantileSketch(settings.quantile_relative_accuracy) for name in FEATURES}
        self.moments = {name: Moments() for name in FEATURES}
        self._finished_shards: _FinishedShards | None = None

    def add_texts(self, texts: pa.Array | pa.ChunkedArray, groups: tuple[np.ndarray, list[str]] | None = None) -> None:
        """Add an Arrow string array of documents (no nulls), with optional group codes and names."""
        self.add_batch(TextBatch.from_arrow(texts), groups)

    def add_batch(self, batch: TextBatch, groups: tuple[np.ndarray, list[str]] | None = None) -> Tokens:
        """Add one batch; return its tokens, which stay valid until the next call."""
        settings = self.settings
        tokens = tokenize_batch(batch, settings, self.token_scratch)
        tokens_per_document = np.diff(tokens.document_offsets)

        self.documents += batch.documents
        self.empty_documents += int(np.count_nonzero(tokens_per_document == 0))
        self.bytes += int(batch.source_bytes.sum())
        self.tokens += int(tokens.hashes.shape[0])

        minima = np.empty(batch.documents, dtype=np.uint64)
        self.heavy_hitter_overflow += update_ngram_sketches(
            tokens.hashes,
            tokens.document_offsets,
            settings.min_order,
            settings.max_order,
            np.uint64(settings.seed),
            self.hll_registers,
            settings.hll_precision,
            self.countmin_table,
            settings.countmin_depth,
            self.candidate_keys,
            self.candidate_used,
            self.candidate_positions,
            self.candidate_sizes,
            settings.heavy_hitter_capacity,
            self.ngram_totals,
            self.minhasher.shingle_order,
            self.minhasher.salts[0],
            minima,
        )
        self._record_new_heavy_hitter_texts(tokens)
        if groups is not None:
            self._count_groups(groups, tokens_per_document, batch.source_bytes)
        ids = content_ids(batch)
        if self.scorer is not None:
            self._score(batch, tokens, groups, ids)
        if self.matcher is not None:
            self._match_registry(tokens, groups)

        self._add_diversity(batch, tokens, groups, minima, ids)

        ratio, repeated, entropy = document_features(
            tokens.hashes, tokens.document_offsets, settings.repeat_order, np.uint64(settings.seed)
        )
        values = {
            "doc_tokens": tokens_per_document.astype(np.float64),
            "doc_bytes": batch.source_bytes.astype(np.float64),
            "type_token_ratio": ratio,
            "repeated_ngram_share": repeated,
            "unigram_entropy": entropy,
        }
        for name in FEATURES:
            self.quantiles[name].update_batch(values[name])
            self.moments[name].update_batch(values[name])
        return tokens

    def _new_diversity(self, group: bool) -> DiversitySketch:
        vocabulary = len(self.scorer.vocabulary) if self.scorer else 0
        return DiversitySketch((self.settings.min_order, self.settings.max_order), self.settings.seed, group, vocabulary)

    def _add_diversity(self, batch: TextBatch, tokens, groups, minima: np.ndarray, ids: np.ndarray) -> None:
        context = document_context(batch, tokens, ids, minima)
        if not self.group_indicators:
            groups = None
        codes, names = groups if groups is not None else (np.zeros(batch.documents, dtype=np.int64), [])
        totals = None
        if self.scorer is not None:
            # One pass counts the profile's words for the corpus and for every group.
            keys, slots = self.scorer.vocabulary.tables
            totals = vocabulary_totals(
                tokens.hashes, tokens.document_offsets, keys, slots, len(self.scorer.vocabulary),
                np.ascontiguousarray(codes, dtype=np.int64), max(len(names), 1),
            )
        self.diversity.add(
            context, np.arange(batch.documents, dtype=np.int64), self.minhasher,
            None if totals is None else totals.sum(axis=0),
        )
        if groups is None:
            return
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        for code, name in enumerate(names):
            members = order[bounds[code] : bounds[code + 1]]
            if members.size == 0:
                continue
            sketch = self.group_diversity.get(name)
            if sketch is None:
                sketch = self.group_diversity[name] = self._new_diversity(group=True)
            sketch.add(context, members, self.minhasher, None if totals is None else totals[code])

    def _score(self, batch: TextBatch, tokens, groups, document_ids: np.ndarray) -> None:
        r, human, present, ids, owners = self.scorer.score_units(batch, tokens, self.settings, document_ids)
        self.likelihood.update(r, human, ids, present)
        if groups is None:
            return
        codes, names = groups
        codes = codes[owners]
        for code, name in enumerate(names):
            members = codes == code
            if not members.any():
                continue
            sketch = self.group_likelihood.get(name)
            if sketch is None:
                sketch = self.group_likelihood[name] = self.scorer.new_sketch()
            sketch.update(r[members], human[members], ids[members], present[members])

    def _match_registry(self, tokens, groups) -> None:
        """Count the documents that match each registered dataset, in total and per group."""
        for name, flags in self.matcher.match(tokens).items():
            values = np.stack([flag.astype(np.int64) for flag in flags], axis=1)
            self.contamination[name] += values.sum(axis=0)
            if groups is None:
                continue
            codes, names = groups
            for column in range(len(CONTAMINATION_COUNTERS)):
                sums = np.bincount(codes, weights=values[:, column], minlength=len(names)).astype(np.int64)
                for code, group in enumerate(names):
                    per_dataset = self.group_contamination.setdefault(group, {})
                    if name not in per_dataset:
                        per_dataset[name] = np.zeros(len(CONTAMINATION_COUNTERS), dtype=np.int64)
                    per_dataset[name][column] += sums[code]

    def _count_groups(self, groups, tokens_per_document: np.ndarray, source_bytes: np.ndarray) -> None:
        codes, names = groups
        if codes.shape[0] != tokens_per_document.shape[0]:
            raise ValueError(f"{codes.shape[0]} group codes for {tokens_per_document.shape[0]} documents")
        size = len(names)
        counters = np.stack(
            [
                np.bincount(codes, minlength=size),
                np.bincount(codes, weights=(tokens_per_document == 0), minlength=size).astype(np.int64),
                np.bincount(codes, weights=source_bytes, minlength=size).astype(np.int64),
                np.bincount(codes, weights=tokens_per_document, minlength=size).astype(np.int64),
            ],
            axis=1,
        )
        for code, name in enumerate(names):
            previous = self.groups.get(name)
            self.groups[name] = counters[code] if previous is None else previous + counters[code]

    def _record_new_heavy_hitter_texts(self, tokens) -> None:
        """Store the text of the candidates that entered in this batch."""
        rows, slots = np.nonzero((self.candidate_positions >= 0) & (self.candidate_used > 0))
        if rows.size:
            orders = (rows + self.settings.min_order).astype(np.int64)
            data, offsets = gather_ngram_texts(
                tokens.folded, tokens.starts, tokens.lengths, self.candidate_positions[rows, slots], orders
            )
            texts = pa.LargeStringArray.from_buffers(
                rows.size, pa.py_buffer(offsets), pa.py_buffer(data)
            ).to_pylist()
            keys = self.candidate_keys[rows, slots].tolist()
            for row, key, text in zip(rows.tolist(), keys, texts):
                self.candidate_texts[row][key] = text
        self.candidate_positions.fill(-1)

    def finish_shard(self) -> None:
        """End the current shard of a pack: keep its shard-local sketches, and start empty ones for the next shard.

        Every other sketch adds up, or takes maxima, the same whether shards
        share it or are merged later, so it carries on across shards.
        """
        self._keep_shard_local_sketches()
        self.ngram_totals = np.zeros_like(self.ngram_totals)
        self.countmin_table.fill(0)
        self.candidate_keys.fill(0)
        self.candidate_used.fill(0)
        self.candidate_positions.fill(-1)
        self.candidate_sizes.fill(0)
        self.candidate_texts = [{} for _ in self.settings.orders]
        self.diversity = self._new_diversity(group=False)
        self.group_diversity = {}

    def _keep_shard_local_sketches(self) -> None:
        shard = _FinishedShards(
            countmin_table=self.countmin_table.astype(np.uint64),
            candidates=HeavyHitterCandidates(self._heavy_hitter_candidates()),
            ngram_totals=self.ngram_totals.copy(),
            diversity=self.diversity.finish(),
            group_diversity={name: sketch.finish() for name, sketch in self.group_diversity.items()},
        )
        if self._finished_shards is None:
            self._finished_shards = shard
        else:
            self._finished_shards.add(shard)

    def _heavy_hitter_candidates(self) -> dict[int, dict[int, str]]:
        """Return the current shard's candidates to keep, by order: hash -> text."""
        settings = self.settings
        candidates = {}
        for row, order in enumerate(settings.orders):
            keys = self.candidate_keys[row][self.candidate_used[row] > 0]
            estimates = countmin_query_batch(self.countmin_table, settings.countmin_depth, keys)
            threshold = self.ngram_totals[row] / (settings.heavy_hitter_capacity + 1)
            guaranteed = estimates.astype(np.float64) >= threshold
            # The guarantee covers items above N / (k + 1) only. The k / 4 items with the
            # highest estimates are kept as well, so the top list of a short or diverse
            # corpus is not empty. Ties break by hash, so the choice is deterministic.
            ranking = np.lexsort((keys, -estimates.astype(np.float64)))
            leading = np.zeros(keys.size, dtype=bool)
            leading[ranking[: settings.heavy_hitter_capacity // 4]] = True
            kept = keys[guaranteed | leading].tolist()
            texts = self.candidate_texts[row]
            candidates[order] = {key: texts[key] for key in kept}
        return candidates

    def finish(self) -> Bundle:
        """Return the bundle of the accumulated shards; the accumulator must not be used afterwards."""
        self._keep_shard_local_sketches()
        settings = self.settings
        finished = self._finished_shards
        return Bundle(
            settings=settings,
            shard_ids=self.shard_ids,
            documents=self.documents,
            empty_documents=self.empty_documents,
            bytes=self.bytes,
            tokens=self.tokens,
            ngram_totals=finished.ngram_totals,
            hll_registers=self.hll_registers.copy(),
            countmin=CountMinSketch(settings.countmin_blocks_log2, settings.countmin_depth, finished.countmin_table),
            heavy_hitters=finished.candidates,
            quantiles=self.quantiles,
            moments=self.moments,
            groups=self.groups,
            likelihood=self.likelihood,
            group_likelihood=self.group_likelihood,
            profile_digest=self.scorer.digest if self.scorer else None,
            diversity=finished.diversity,
            group_diversity=finished.group_diversity,
            contamination=self.contamination,
            group_contamination=self.group_contamination,
            registry_digest=self.matcher.registry.digest if self.matcher else None,
        )
