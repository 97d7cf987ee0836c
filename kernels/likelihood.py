"""Per-document log-likelihood scores against a reference profile, and their
mergeable accumulation for the synthetic-share estimate.

A profile gives, for a vocabulary of V words, the human occurrence
probabilities p_w and, for each of G generators, q_gw. A document is the set
of vocabulary words it contains (a word counts once however often it occurs).
With d_gw = log(q_gw / p_w) - log((1 - q_gw) / (1 - p_w)) and
B_g = sum_w log((1 - q_gw) / (1 - p_w)), the log-likelihood ratio of generator
g against human text is r_g = B_g + sum over present words of d_gw. With
e_w = log(p_w) - log(1 - p_w) and C = sum_w log(1 - p_w), the human
log-likelihood is l = C + sum over present words of e_w.

`accumulate_scores` adds a batch of scores to integer arrays, so sums are
exact and merging shards by addition gives the same bytes in any order:

- the score histogram: per document, the bin of max_g r_g in the row of its
  argmax generator (ties go to the lower generator index);
- the histogram of l / V;
- the log-likelihood curve of the two-component mixture,
  sum over documents of log((1 - a_k) + a_k exp(r_mix)) at a_k = k / (K - 1),
  with r_mix = log(mean_g exp(r_g)) clipped to [-R_MIX_LIMIT, R_MIX_LIMIT] so
  exp stays finite. Each document's term is rounded to the nearest multiple
  of 2**-24 (CURVE_SCALE) before it is added, so its error is at most 2**-25;
- Poisson bootstrap replicates of the score histogram and of the curve.

Replicate b weights a document by a Poisson(1) count drawn from its 64-bit id
alone: h = avalanche(id ^ salt_b) with salt_b = avalanche(avalanche(seed + PRIME5) ^ b),
then the inverse CDF of Poisson(1) applied to h / 2**64 by comparing h with
the integer thresholds floor(2**64 * P(N <= k)). The same document therefore
gets the same weights however shards are split, retried or merged.

NOTE: exact equality across machines also needs the same results from the
platform's exp and log. A result that differs in the last place changes a
rounded curve term only when it sits on a rounding boundary, which is rare
but possible on a mixed cluster.
"""

from decimal import Decimal, localcontext

import numpy as np

from kernels._jit import kernel
from kernels.hashing import PRIME5, avalanche
from kernels.vocabulary import lookup_slot

CURVE_SCALE = float(2**24)
R_MIX_LIMIT = 50.0


def _poisson_one_thresholds() -> np.ndarray:
    """Return floor(2**64 * P(N <= k)) for N ~ Poisson(1) and k = 0, 1, ...

    The table ends at the first threshold that no longer grows (it reaches
    2**64 - 1 near k = 20). Decimal arithmetic at 50 digits makes it the same
    on every platform.
    """
    top = 2**64 - 1
    thresholds = []
    with localcontext() as context:
        context.prec = 50
        term = Decimal(-1).exp()
        cumulative = Decimal(0)
        k = 0
        while True:
            cumulative += term
            threshold = min(int(cumulative * 2**64), top)
            if thresholds and threshold == thresholds[-1]:
                break
            thresholds.append(threshold)
            k += 1
            term /= k
    return np.array(thresholds, dtype=np.uint64)


POISSON_ONE_THRESHOLDS = _poisson_one_thresholds()
_POISSON_TABLE_SIZE = POISSON_ONE_THRESHOLDS.shape[0]


@kernel(leaf=True)
def replicate_salt(replicate, seed):
    """Return the salt of bootstrap replicate `replicate` under a uint64 seed."""
    return avalanche(avalanche(seed + PRIME5) ^ np.uint64(replicate))


@kernel(leaf=True)
def poisson_one_weight(document_id, salt):
    """Return a Poisson(1) draw for a document id and a replicate salt.

    The largest possible draw is the length of POISSON_ONE_THRESHOLDS, which
    the tail probability of Poisson(1) makes practically unreachable.
    """
    uniform = avalanche(document_id ^ salt)
    count = 0
    while count < _POISSON_TABLE_SIZE and uniform >= POISSON_ONE_THRESHOLDS[count]:
        count += 1
    return count


@kernel
def bootstrap_weights(document_ids, replicates, seed):
    """Return the (documents, replicates) int64 Poisson(1) weights that `accumulate_scores` uses."""
    weights = np.empty((document_ids.shape[0], replicates), dtype=np.int64)
    for replicate in range(replicates):
        salt = replicate_salt(replicate, seed)
        for document in range(document_ids.shape[0]):
            weights[document, replicate] = poisson_one_weight(document_ids[document], salt)
    return weights


@kernel(leaf=True)
def grid_bin(value, low, high, bins):
    """Return the bin of a finite value on [low, high) cut into `bins` equal bins.

    Bin 0 is the underflow (value < low), bins 1..bins the grid and bins + 1
    the overflow (value >= high). Values within rounding of an inner edge may
    land in the neighbouring bin.
    """
    if value < low:
        return 0
    if value >= high:
        return bins + 1
    index = np.int64((value - low) * bins / (high - low))
    if index >= bins:
        index = bins - 1
    return index + 1


@kernel
def score_documents(token_hashes, document_offsets, table_keys, table_slots, deltas, bases, human_deltas, human_base):
    """Score each document against a profile and return (r, l, words_present).

    `deltas` is the (G, V) float64 array of d_gw, `bases` the (G,) array of B_g,
    `human_deltas` the (V,) array of e_w and `human_base` is C. Vocabulary slots
    come from `kernels.vocabulary.build_vocabulary_table` and must be below V.
    Returns r as (documents, G) float64, l as (documents,) float64 and the
    number of distinct vocabulary words of each document (int64).
    """
    generators = deltas.shape[0]
    vocabulary_size = deltas.shape[1]
    if bases.shape[0] != generators:
        raise ValueError("score_documents: bases must have one value per row of deltas")
    if human_deltas.shape[0] != vocabulary_size:
        raise ValueError("score_documents: human_deltas must have one value per column of deltas")
    if table_slots.shape[0] > 0 and table_slots.max() >= vocabulary_size:
        raise ValueError("score_documents: the vocabulary table has slots beyond the columns of deltas")

    # One row per word puts a word's G + 1 deltas next to each other, so a lookup touches one or two cache lines.
    word_deltas = np.empty((vocabulary_size, generators + 1), dtype=np.float64)
    for slot in range(vocabulary_size):
        for generator in range(generators):
            word_deltas[slot, generator] = deltas[generator, slot]
        word_deltas[slot, generators] = human_deltas[slot]

    documents = document_offsets.shape[0] - 1
    ratios = np.empty((documents, generators), dtype=np.float64)
    human_likelihoods = np.empty(documents, dtype=np.float64)
    words_present = np.zeros(documents, dtype=np.int64)
    sums = np.empty(generators + 1, dtype=np.float64)
    # last_document[slot] is the last document that counted the word, so no reset is needed between documents.
    last_document = np.full(vocabulary_size, -1, dtype=np.int64)

    for document in range(documents):
        sums[:] = 0.0
        present = 0
        for index in range(document_offsets[document], document_offsets[document + 1]):
            slot = lookup_slot(table_keys, table_slots, token_hashes[index])
            if slot < 0 or last_document[slot] == document:
                continue
            last_document[slot] = document
            present += 1
            for column in range(generators + 1):
                sums[column] += word_deltas[slot, column]
        for generator in range(generators):
            ratios[document, generator] = bases[generator] + sums[generator]
        human_likelihoods[document] = human_base + sums[generators]
        words_present[document] = present
    return ratios, human_likelihoods, words_present


@kernel(leaf=True)
def mixture_log_ratio(ratios, document):
    """Return log(mean_g exp(r_g)) of one document's row, clipped to [-R_MIX_LIMIT, R_MIX_LIMIT]."""
    generators = ratios.shape[1]
    largest = ratios[document, 0]
    for generator in range(1, generators):
        largest = max(largest, ratios[document, generator])
    total = 0.0
    for generator in range(generators):
        total += np.exp(ratios[document, generator] - largest)
    value = largest + np.log(total / generators)
    if value < -R_MIX_LIMIT:
        return -R_MIX_LIMIT
    if value > R_MIX_LIMIT:
        return R_MIX_LIMIT
    return value


@kernel
def accumulate_scores(
    r, l_per_word, document_ids, hist, l_hist, curve, rep_hist, rep_curve, r_lo, r_hi, l_lo, l_hi, seed
):
    """Add a batch of document scores to the histograms, the curve and their replicates, in place.

    r is (documents, G) float64, l_per_word and document_ids (uint64) are
    (documents,). hist is (G, bins + 2) int64, l_hist (l_bins + 2,) int64,
    curve (K,) int64 in units of 2**-24, rep_hist (B, G, bins + 2) and
    rep_curve (B, K) int64. All scores must be finite. The score grid is
    [r_lo, r_hi) and the l / V grid [l_lo, l_hi); seed is a uint64.
    """
    documents = r.shape[0]
    generators = r.shape[1]
    bins = hist.shape[1] - 2
    l_bins = l_hist.shape[0] - 2
    points = curve.shape[0]
    replicates = rep_hist.shape[0]
    if hist.shape[0] != generators or bins < 1 or l_bins < 1 or points < 2:
        raise ValueError("accumulate_scores: hist must be (G, bins + 2), l_hist (l_bins + 2,) and curve (K >= 2,)")
    if l_per_word.shape[0] != documents or document_ids.shape[0] != documents:
        raise ValueError("accumulate_scores: l_per_word and document_ids must have one value per row of r")
    if rep_hist.shape[1] != generators or rep_hist.shape[2] != bins + 2:
        raise ValueError("accumulate_scores: rep_hist must be (replicates, G, bins + 2)")
    if rep_curve.shape[0] != replicates or rep_curve.shape[1] != points:
        raise ValueError("accumulate_scores: rep_curve must be (replicates, curve points)")

    salts = np.empty(replicates, dtype=np.uint64)
    for replicate in range(replicates):
        salts[replicate] = replicate_salt(replicate, seed)
    shares = np.empty(points, dtype=np.float64)
    for point in range(points):
        shares[point] = point / (points - 1)
    terms = np.empty(points, dtype=np.int64)

    for document in range(documents):
        best = 0
        for generator in range(1, generators):
            if r[document, generator] > r[document, best]:
                best = generator
        score_bin = grid_bin(r[document, best], r_lo, r_hi, bins)
        hist[best, score_bin] += 1
        l_hist[grid_bin(l_per_word[document], l_lo, l_hi, l_bins)] += 1

        likelihood_ratio = np.exp(mixture_log_ratio(r, document))
        for point in range(points):
            share = shares[point]
            term = np.log((1.0 - share) + share * likelihood_ratio)
            terms[point] = np.int64(np.floor(term * CURVE_SCALE + 0.5))
            curve[point] += terms[point]

        for replicate in range(replicates):
            weight = poisson_one_weight(document_ids[document], salts[replicate])
            if weight == 0:
                continue
            rep_hist[replicate, best, score_bin] += weight
            if weight == 1:
                for point in range(points):
                    rep_curve[replicate, point] += terms[point]
            else:
                for point in range(points):
                    rep_curve[replicate, point] += weight * terms[point]
