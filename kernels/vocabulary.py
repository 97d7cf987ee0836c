"""Per-document occurrence counts over a fixed vocabulary of token hashes.

The vocabulary is an open-addressing table from token hash to slot number,
built once by `build_vocabulary_table`. Counting is exact: a token is counted
for slot s only when its full 64-bit hash equals the slot's key.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import avalanche


@kernel
def build_vocabulary_table(vocabulary_hashes):
    """Return (table_keys, table_slots) for the given distinct token hashes.

    Slot i belongs to vocabulary_hashes[i]; empty table entries have slot -1.
    """
    size = 16
    while size < 2 * vocabulary_hashes.shape[0]:
        size *= 2
    keys = np.zeros(size, dtype=np.uint64)
    slots = np.full(size, -1, dtype=np.int64)
    mask = np.uint64(size - 1)
    for index in range(vocabulary_hashes.shape[0]):
        value = vocabulary_hashes[index]
        position = np.int64(avalanche(value) & mask)
        while slots[position] >= 0:
            if keys[position] == value:
                raise ValueError("vocabulary hashes must be distinct")
            position = (position + 1) & (size - 1)
        keys[position] = value
        slots[position] = index
    return keys, slots


@kernel(leaf=True)
def lookup_slot(table_keys, table_slots, value):
    """Return the vocabulary slot of a token hash, or -1 when it is not in the vocabulary."""
    size = table_keys.shape[0]
    position = np.int64(avalanche(value) & np.uint64(size - 1))
    while table_slots[position] >= 0:
        if table_keys[position] == value:
            return table_slots[position]
        position = (position + 1) & (size - 1)
    return -1


@kernel
def vocabulary_counts(token_hashes, document_offsets, table_keys, table_slots, vocabulary_size):
    """Count each vocabulary word in each document.

    Returns CSR arrays (indptr, slots, counts): document d's nonzero counts are
    slots[indptr[d]:indptr[d + 1]] with counts[...], slots ascending.
    """
    documents = document_offsets.shape[0] - 1
    dense = np.zeros(vocabulary_size, dtype=np.int64)
    touched = np.empty(vocabulary_size, dtype=np.int64)
    indptr = np.zeros(documents + 1, dtype=np.int64)
    capacity = max(16, token_hashes.shape[0])
    slots = np.empty(capacity, dtype=np.int64)
    counts = np.empty(capacity, dtype=np.int64)

    written = 0
    for document in range(documents):
        distinct = 0
        for index in range(document_offsets[document], document_offsets[document + 1]):
            slot = lookup_slot(table_keys, table_slots, token_hashes[index])
            if slot < 0:
                continue
            if dense[slot] == 0:
                touched[distinct] = slot
                distinct += 1
            dense[slot] += 1
        found = np.sort(touched[:distinct])
        for index in range(distinct):
            slot = found[index]
            slots[written] = slot
            counts[written] = dense[slot]
            dense[slot] = 0
            written += 1
        indptr[document + 1] = written
    return indptr, slots[:written], counts[:written]


@kernel
def document_distinct_tokens(token_hashes, document_offsets):
    """List each document's distinct token hashes.

    Returns (hashes, first_tokens, document_ids): one entry per (document, distinct
    token) pair, with the index of the token's first occurrence in the document,
    so that document frequencies are a count over `hashes`.
    """
    documents = document_offsets.shape[0] - 1
    total = token_hashes.shape[0]
    hashes = np.empty(total, dtype=np.uint64)
    first_tokens = np.empty(total, dtype=np.int64)
    document_ids = np.empty(total, dtype=np.int64)
    longest = 1
    for document in range(documents):
        longest = max(longest, document_offsets[document + 1] - document_offsets[document])
    size = 16
    while size < 2 * longest:
        size *= 2
    keys = np.zeros(size, dtype=np.uint64)
    stamps = np.full(size, -1, dtype=np.int64)

    written = 0
    for document in range(documents):
        mask = np.uint64(size - 1)
        for index in range(document_offsets[document], document_offsets[document + 1]):
            value = token_hashes[index]
            slot = np.int64(avalanche(value) & mask)
            while stamps[slot] == document and keys[slot] != value:
                slot = (slot + 1) & (size - 1)
            if stamps[slot] != document:
                stamps[slot] = document
                keys[slot] = value
                hashes[written] = value
                first_tokens[written] = index
                document_ids[written] = document
                written += 1
    return hashes[:written], first_tokens[:written], document_ids[:written]


@kernel
def vocabulary_totals(token_hashes, document_offsets, table_keys, table_slots, vocabulary_size, document_groups, groups):
    """Count the vocabulary words of all documents, one row per group: returns (groups, vocabulary_size) int64.

    `document_groups` (int64) gives each document's row.
    """
    totals = np.zeros((groups, vocabulary_size), dtype=np.int64)
    for document in range(document_offsets.shape[0] - 1):
        row = document_groups[document]
        for index in range(document_offsets[document], document_offsets[document + 1]):
            slot = lookup_slot(table_keys, table_slots, token_hashes[index])
            if slot >= 0:
                totals[row, slot] += 1
    return totals
