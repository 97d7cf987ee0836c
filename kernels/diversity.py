"""Kernels of the diversity sketch: a sample of word types with exact counts, and
the per-group HyperLogLog and unigram Count-Min updates.

Type sample: distinct sampling with an adaptive threshold (Gibbons, "Distinct
Sampling for Highly-Accurate Answers to Distinct Values Queries", VLDB 2001). A
word type belongs to the sample at level L when the top L bits of its hash are
zero. Each type is therefore in it with probability 2**-L, whatever its
frequency. Every occurrence of a sampled type is counted. When the table has more than
`capacity` types, L rises by one and the types that no longer qualify leave.
Because L only rises, a type still in the sample was sampled from its first
occurrence on, so its count is exact.

The sample is keyed by token hash, so the test costs one shift per token;
`unigram_hashes` maps its keys to the order-1 n-gram hashes that key the
heavy hitters, so the two can be matched.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import ngram_finish, ngram_start, ngram_step
from kernels.ngrams import countmin_update, hll_update


@kernel(leaf=True)
def in_sample(hashed, level):
    """True when `hashed` belongs to the type sample at `level`."""
    if level == 0:
        return True
    return (hashed >> np.uint64(64 - level)) == np.uint64(0)


@kernel(leaf=True)
def _insert(keys, counts, hashed, amount):
    """Add `amount` to the count of `hashed`; return 1 when the key is new."""
    mask = keys.shape[0] - 1
    slot = np.int64((hashed * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & mask
    while counts[slot] > 0:
        if keys[slot] == hashed:
            counts[slot] += amount
            return 0
        slot = (slot + 1) & mask
    keys[slot] = hashed
    counts[slot] = amount
    return 1


@kernel
def _raise_level(keys, counts, level, capacity):
    """Raise the level until at most `capacity` types remain; rebuild the table."""
    size = 0
    for slot in range(keys.shape[0]):
        if counts[slot] > 0:
            size += 1
    while size > capacity and level < 64:
        level += 1
        size = 0
        for slot in range(keys.shape[0]):
            if counts[slot] > 0:
                if in_sample(keys[slot], level):
                    size += 1
    kept_keys = np.empty(size, dtype=np.uint64)
    kept_counts = np.empty(size, dtype=np.int64)
    kept = 0
    for slot in range(keys.shape[0]):
        if counts[slot] > 0 and in_sample(keys[slot], level):
            kept_keys[kept] = keys[slot]
            kept_counts[kept] = counts[slot]
            kept += 1
    counts[:] = 0
    for index in range(kept):
        _insert(keys, counts, kept_keys[index], kept_counts[index])
    return level, kept


@kernel
def type_sample_update(token_hashes, document_offsets, documents, keys, counts, level, size, capacity):
    """Count the sampled word types of the listed documents.

    `documents` (int64) lists the documents to count. `keys` and `counts` are an
    open-addressing table of at least 2 * capacity + 1 slots (a power of two)
    that contains `size` types at `level`. Returns the new (level, size).
    """
    for index in range(documents.shape[0]):
        document = documents[index]
        for position in range(document_offsets[document], document_offsets[document + 1]):
            hashed = token_hashes[position]
            if not in_sample(hashed, level):
                continue
            size += _insert(keys, counts, hashed, 1)
            if size > capacity:
                level, size = _raise_level(keys, counts, level, capacity)
    return level, size


@kernel
def merge_type_samples(keys, counts, level, capacity):
    """Combine concatenated (key, count) lists at `level`: sum equal keys, then raise
    the level until at most `capacity` types remain. Returns sorted (keys, counts, level)."""
    order = np.argsort(keys, kind="mergesort")
    merged_keys = np.empty(keys.shape[0], dtype=np.uint64)
    merged_counts = np.empty(keys.shape[0], dtype=np.int64)
    size = 0
    for index in range(order.shape[0]):
        key = keys[order[index]]
        if not in_sample(key, level):
            continue
        if size > 0 and merged_keys[size - 1] == key:
            merged_counts[size - 1] += counts[order[index]]
        else:
            merged_keys[size] = key
            merged_counts[size] = counts[order[index]]
            size += 1
    while size > capacity and level < 64:
        level += 1
        kept = 0
        for index in range(size):
            if in_sample(merged_keys[index], level):
                merged_keys[kept] = merged_keys[index]
                merged_counts[kept] = merged_counts[index]
                kept += 1
        size = kept
    return merged_keys[:size].copy(), merged_counts[:size].copy(), level


@kernel
def group_ngram_update(
    token_hashes, document_offsets, documents, min_order, max_order, seed, registers, precision, countmin_table, countmin_depth
):
    """Feed the n-grams of the listed documents to a group's HyperLogLogs (one row
    per order) and its unigrams to the group's Count-Min table."""
    start = ngram_start(seed)
    for index in range(documents.shape[0]):
        document = documents[index]
        stop = document_offsets[document + 1]
        for position in range(document_offsets[document], stop):
            longest = min(max_order, stop - position)
            state = start
            for order in range(1, longest + 1):
                state = ngram_step(state, token_hashes[position + order - 1])
                if order < min_order:
                    continue
                hashed = ngram_finish(state, order)
                hll_update(registers, order - min_order, precision, hashed)
                if order == 1:
                    countmin_update(countmin_table, countmin_depth, hashed)


@kernel
def insert_types(keys, counts, new_keys, new_counts):
    """Insert (key, count) pairs into an empty-enough type table; return how many were new."""
    added = 0
    for index in range(new_keys.shape[0]):
        added += _insert(keys, counts, new_keys[index], new_counts[index])
    return added


@kernel
def unigram_hashes(token_hashes, seed):
    """Return the order-1 n-gram hash of each token hash."""
    out = np.empty(token_hashes.shape[0], dtype=np.uint64)
    start = ngram_start(seed)
    for index in range(token_hashes.shape[0]):
        out[index] = ngram_finish(ngram_step(start, token_hashes[index]), 1)
    return out
