"""Diversity and collapse indicators, for the corpus and for each group.

When model output feeds back into a crawl, text loses variety. Distinct n-grams,
entropy and rare words fall, and the most frequent words take more of the text.
Near-duplicates become common, and text compresses better and drifts away from
older human text. Each indicator below comes with its error. "Unigrams" are word
tokens, `K` is the number of distinct words and `N` the number of tokens.

- `distinct_ratio[n]`: distinct n-grams / n-grams of order n. The distinct count
  is a HyperLogLog estimate (precision 14 for the corpus, 10 for a group), so
  the ratio has its relative standard error `distinct_ratio_rse`.
- `unigram_entropy_bits`: Shannon entropy of the word distribution, with the
  Miller-Madow correction (K - 1) / (2 N ln 2). Frequent words (Count-Min
  estimate at least `HEAVY_BOUND_FACTOR` times its error bound) contribute
  their own term; all other words are estimated from the type sample with the
  Horvitz-Thompson weight 2**level. `unigram_entropy_se` is the standard error
  of that sample term (Poisson sampling variance); the frequent-word terms carry
  the Count-Min overestimate, a bias below 1% of their count at the default sizes.
- `hapax_share`: share of distinct words seen exactly once, from the type
  sample (every type has the same chance to be in it, and sampled counts are
  exact). Standard error sqrt(p (1 - p) / sample size). When a crawl mixes in
  narrow text while its size stays fixed, the human part shrinks and this
  share can rise, so it is not by itself a collapse signal;
- `hapax_token_share`: words seen once over all tokens, the share of text made
  of rare words, which falls when narrow text is mixed in. Horvitz-Thompson
  estimate from the type sample with its Poisson sampling standard error.
- `tail_mass`: share of tokens outside the `TOP_RANKS` most frequent words.
  Count-Min estimates are upper bounds, so the value is a lower bound within
  `tail_mass_error_bound` (TOP_RANKS Count-Min error bounds over N).
- `zipf_exponent`: s in count ~ rank**-s, least squares of log count on log rank
  over ranks 1 to `TOP_RANKS`; `zipf_exponent_se` is the regression's standard
  error, which ignores the dependence between ranks.
- `near_duplicate_rate`: share of documents with another document at estimated
  Jaccard similarity (64-permutation MinHash over word 5-gram shingles) at or
  above `NEAR_DUPLICATE_JACCARD`. It is measured on the document sample of the
  diversity sketch, by comparing every pair in the sample; documents with equal
  text always count. Each sampled document is weighted by the inverse of its
  inclusion probability, which grows with its number of shingles. A pair at
  similarity J is in the sample together with probability at least J, so the
  rate is exact for exact copies and underestimated by at most a factor J for
  a pair at similarity J. Standard error sqrt(p (1 - p) / n_eff), with n_eff
  the effective sample size of the weights.
- `compression_ratio`: mean over documents of zlib (level 6) bytes over text
  bytes, on the documents whose content id is 0 modulo 32, with the standard
  error of that mean.
- `profile_divergence_bits`: Jensen-Shannon divergence (base 2) between the
  corpus frequencies of the reference profile's vocabulary and the profile's
  human frequencies, both normalized over that vocabulary. Present only with
  `--profile`. `profile_divergence_se` and `profile_divergence_bias` come from
  200 multinomial resamples of the vocabulary counts (seeded), which treat
  tokens as independent and so understate the error of clustered text.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.diversity import unigram_hashes
from scanner.sketches.countmin import CountMinSketch
from scanner.sketches.diversity import (
    GROUP_COUNTMIN_BLOCKS_LOG2,
    GROUP_COUNTMIN_DEPTH,
    GROUP_HLL_PRECISION,
    DiversitySketch,
)
from scanner.sketches.hll import estimate_from_registers

TOP_RANKS = 100
HEAVY_BOUND_FACTOR = 2
NEAR_DUPLICATE_JACCARD = 0.8
PROFILE_RESAMPLES = 200

METHODS = {
    "distinct_ratio": "HyperLogLog distinct n-grams / n-grams per order; relative standard error distinct_ratio_rse",
    "unigram_entropy_bits": (
        "Shannon entropy of words with the Miller-Madow correction; frequent words from Count-Min, "
        "the rest from a hash sample of word types with exact counts (Horvitz-Thompson); "
        "unigram_entropy_se is the sampling standard error"
    ),
    "hapax_share": "share of distinct words seen once, in a hash sample of word types with exact counts; binomial standard error",
    "hapax_token_share": "tokens of words seen once over all tokens, from the same type sample (Horvitz-Thompson)",
    "tail_mass": f"share of tokens outside the {TOP_RANKS} most frequent words; a lower bound within tail_mass_error_bound",
    "zipf_exponent": f"least-squares slope of log count on log rank over ranks 1 to {TOP_RANKS}; regression standard error",
    "near_duplicate_rate": (
        f"share of documents with a MinHash Jaccard estimate of at least {NEAR_DUPLICATE_JACCARD} to another document, "
        "on a document sample coordinated by MinHash; exact for exact copies, at most a factor J low at similarity J"
    ),
    "compression_ratio": "mean zlib level 6 bytes / text bytes over a 1-in-32 content-hash sample of documents",
    "profile_divergence_bits": (
        "Jensen-Shannon divergence (bits) between corpus and profile human frequencies over the profile vocabulary; "
        "standard error and bias from multinomial resampling"
    ),
}


def indicators_of(
    sketch: DiversitySketch,
    heavy_keys: np.ndarray,
    distinct: dict[int, tuple[float, int]],
    distinct_rse: float,
    heavy_counts: np.ndarray | None,
    countmin_bound: float,
    human_probability: np.ndarray | None,
) -> dict:
    """Compute every indicator from one sketch.

    `distinct` maps an order to (distinct estimate, total n-grams). `heavy_keys`
    are unigram hashes of frequent words. `heavy_counts` are their Count-Min
    estimates in this corpus or group, or None when unigrams were not counted.
    `countmin_bound` is the Count-Min error bound of one estimate.
    """
    tokens = sketch.tokens
    result: dict = {
        "distinct_ratio": {
            str(order): (min(1.0, estimate / total) if total else None) for order, (estimate, total) in distinct.items()
        },
        "distinct_ratio_rse": distinct_rse,
    }
    result |= _word_distribution(sketch, heavy_keys, heavy_counts, countmin_bound, tokens)
    result |= _near_duplicates(sketch)
    count = sketch.compression.count
    result["compression_ratio"] = sketch.compression.mean if count else None
    result["compression_ratio_se"] = math.sqrt(sketch.compression.variance / (count - 1)) if count > 1 else None
    result["compression_sample"] = count
    result |= _profile_divergence(sketch.vocabulary_counts, human_probability)
    return result


def corpus_indicators(bundle, human_probability: np.ndarray | None) -> dict:
    """Indicators of the whole corpus, from the bundle's own n-gram sketches."""
    settings = bundle.settings
    distinct = {
        order: (bundle.distinct_ngrams(order), int(bundle.ngram_totals[row]))
        for row, order in enumerate(settings.orders)
    }
    keys, counts = _heavy_unigrams(bundle, bundle.countmin)
    total = int(bundle.ngram_totals[0]) if settings.min_order == 1 else 0
    result = indicators_of(
        bundle.diversity,
        keys,
        distinct,
        1.04 / math.sqrt(1 << settings.hll_precision),
        counts,
        bundle.countmin.error_bound(total),
        human_probability,
    )
    result["methods"] = METHODS
    return result


def group_indicators(bundle, sketch: DiversitySketch, human_probability: np.ndarray | None) -> dict:
    """Indicators of one group, from the group's sketch and the corpus's frequent words."""
    settings = bundle.settings
    distinct = {
        order: (estimate_from_registers(sketch.hll_registers[row], GROUP_HLL_PRECISION), int(sketch.ngram_totals[row]))
        for row, order in enumerate(settings.orders)
    }
    countmin = CountMinSketch(GROUP_COUNTMIN_BLOCKS_LOG2, GROUP_COUNTMIN_DEPTH, sketch.countmin_table)
    keys, counts = _heavy_unigrams(bundle, countmin)
    total = int(sketch.ngram_totals[0]) if settings.min_order == 1 else 0
    return indicators_of(
        sketch,
        keys,
        distinct,
        1.04 / math.sqrt(1 << GROUP_HLL_PRECISION),
        counts,
        countmin.error_bound(total),
        human_probability,
    )


def _heavy_unigrams(bundle, countmin: CountMinSketch) -> tuple[np.ndarray, np.ndarray | None]:
    if bundle.settings.min_order != 1:
        return np.empty(0, dtype=np.uint64), None
    items = bundle.heavy_hitters.candidates.get(1, {})
    keys = np.fromiter(items.keys(), dtype=np.uint64, count=len(items))
    return keys, countmin.query(keys).astype(np.float64)


def _word_distribution(sketch, heavy_keys, heavy_counts, countmin_bound, tokens) -> dict:
    empty = {
        "unigram_entropy_bits": None,
        "unigram_entropy_se": None,
        "hapax_share": None,
        "hapax_share_se": None,
        "hapax_token_share": None,
        "hapax_token_share_se": None,
        "type_sample": int(sketch.type_keys.size),
        "tail_mass": None,
        "tail_mass_error_bound": None,
        "zipf_exponent": None,
        "zipf_exponent_se": None,
    }
    if tokens == 0 or sketch.type_keys.size == 0:
        return empty
    result = dict(empty)
    weight = float(2**sketch.type_level)
    sample_counts = sketch.type_counts.astype(np.float64)
    sample_keys = unigram_hashes(sketch.type_keys, np.uint64(sketch.seed))

    # Frequent words: their own entropy terms (exact count when the word is also sampled).
    heavy = np.empty(0, dtype=np.uint64)
    heavy_values = np.empty(0)
    if heavy_counts is not None and heavy_keys.size:
        confident = heavy_counts >= HEAVY_BOUND_FACTOR * max(countmin_bound, 1.0)
        heavy = heavy_keys[confident]
        heavy_values = heavy_counts[confident]
        order = np.argsort(sample_keys)
        position = np.minimum(np.searchsorted(sample_keys, heavy, sorter=order), sample_keys.size - 1)
        sampled = sample_keys[order[position]] == heavy
        heavy_values = np.where(sampled, sample_counts[order[position]], heavy_values)
    p_heavy = np.minimum(heavy_values / tokens, 1.0)
    entropy = float(-(p_heavy * np.log2(np.where(p_heavy > 0, p_heavy, 1.0))).sum())

    rest = ~np.isin(sample_keys, heavy)
    p_rest = sample_counts[rest] / tokens
    terms = -p_rest * np.log2(p_rest)
    entropy += weight * float(terms.sum())
    distinct_words = sketch.type_keys.size * weight
    entropy += (distinct_words - 1) / (2 * tokens * math.log(2))
    result["unigram_entropy_bits"] = entropy
    result["unigram_entropy_se"] = math.sqrt(max(weight * weight - weight, 0.0) * float(np.square(terms).sum()))

    hapaxes = int(np.count_nonzero(sketch.type_counts == 1))
    once = hapaxes / sketch.type_keys.size
    result["hapax_share"] = once
    result["hapax_share_se"] = 0.0 if sketch.type_level == 0 else math.sqrt(once * (1 - once) / sketch.type_keys.size)
    result["hapax_token_share"] = min(1.0, weight * hapaxes / tokens)
    result["hapax_token_share_se"] = math.sqrt(max(weight * weight - weight, 0.0) * hapaxes) / tokens

    if heavy_counts is not None and heavy_keys.size:
        ranked = np.sort(heavy_counts)[::-1][:TOP_RANKS]
        ranked = ranked[ranked >= 1]
        result["tail_mass"] = max(0.0, 1.0 - float(ranked.sum()) / tokens)
        result["tail_mass_error_bound"] = min(1.0, ranked.size * countmin_bound / tokens)
        if ranked.size >= 3:
            x = np.log(np.arange(1, ranked.size + 1))
            y = np.log(ranked)
            slope, intercept = np.polyfit(x, y, 1)
            residuals = y - (slope * x + intercept)
            spread = float(np.square(x - x.mean()).sum())
            result["zipf_exponent"] = float(-slope)
            result["zipf_exponent_se"] = math.sqrt(float(np.square(residuals).sum()) / (ranked.size - 2) / spread)
    return result


def _near_duplicates(sketch: DiversitySketch) -> dict:
    documents = int(sketch.multiplicity.sum())
    if documents == 0:
        return {"near_duplicate_rate": None, "near_duplicate_rate_se": None, "near_duplicate_sample": 0}
    duplicated = sketch.multiplicity >= 2
    signatures = sketch.signatures
    permutations = signatures.shape[1]
    needed = math.ceil(NEAR_DUPLICATE_JACCARD * permutations)
    for start in range(0, signatures.shape[0], 128):
        block = signatures[start : start + 128]
        agreement = (block[:, None, :] == signatures[None, :, :]).sum(axis=2)
        rows = np.arange(block.shape[0])
        agreement[rows, start + rows] = 0
        close = agreement >= needed
        duplicated[start : start + block.shape[0]] |= close.any(axis=1)
    # Weight each entry by its inverse inclusion probability: a document with more
    # shingles has a smaller minimum and is more likely to be in the sample.
    weights = sketch.multiplicity.astype(np.float64)
    if sketch.minima.size >= sketch.document_capacity:
        threshold = float(sketch.minima[-1]) / 2.0**64
        inclusion = -np.expm1(sketch.shingles * np.log1p(-min(threshold, 1 - 1e-16)))
        weights = weights / np.maximum(inclusion, 1e-300)
    rate = float(weights[duplicated].sum() / weights.sum())
    effective = float(weights.sum() ** 2 / np.square(weights).sum())
    return {
        "near_duplicate_rate": rate,
        "near_duplicate_rate_se": math.sqrt(rate * (1 - rate) / effective),
        "near_duplicate_sample": documents,
    }


def _profile_divergence(counts: np.ndarray, human_probability: np.ndarray | None) -> dict:
    empty = {"profile_divergence_bits": None, "profile_divergence_se": None, "profile_divergence_bias": None}
    if human_probability is None or counts.size == 0 or counts.sum() == 0:
        return empty
    reference = np.asarray(human_probability, dtype=np.float64)
    reference = reference / reference.sum()
    total = int(counts.sum())
    point = _jensen_shannon(counts / total, reference)
    rng = np.random.default_rng(0x5EED)
    replicates = np.array(
        [_jensen_shannon(rng.multinomial(total, counts / total) / total, reference) for _ in range(PROFILE_RESAMPLES)]
    )
    return {
        "profile_divergence_bits": point,
        "profile_divergence_se": float(replicates.std(ddof=1)),
        "profile_divergence_bias": float(replicates.mean() - point),
    }


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    middle = 0.5 * (p + q)

    def divergence(a: np.ndarray) -> float:
        present = a > 0
        return float((a[present] * np.log2(a[present] / middle[present])).sum())

    return 0.5 * divergence(p) + 0.5 * divergence(q)
