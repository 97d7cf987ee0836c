"""Per-document features, computed from a document's token hashes.

For each document with at least one token:

- type-token ratio: distinct tokens / tokens;
- repeated n-gram share: 1 - distinct n-grams / n-grams, for n = `repeat_order`
  (NaN when the document has fewer than n tokens);
- unigram entropy in bits: -sum over distinct tokens of p log2 p, with p the
  token's share of the document (the plug-in estimate, no bias correction),
  computed as log2 N - (1 / N) sum c log2 c over the token counts c, with
  c log2 c read from a table for small c: one logarithm per document instead of
  one per distinct token (measured 3.6 against 2.6 ns per byte of text for
  this kernel).

Documents without tokens get NaN for all three.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import ngram_hash

_XLOGX_SIZE = 4096
_XLOGX = np.zeros(_XLOGX_SIZE)
_XLOGX[1:] = np.arange(1, _XLOGX_SIZE) * np.log2(np.arange(1, _XLOGX_SIZE))


@kernel(leaf=True)
def count_distinct(values, first, stop, table_keys, table_counts, used_slots, mask):
    """Count each value of values[first:stop] in the first mask + 1 slots of a table.

    Returns the number of distinct values; `used_slots[:distinct]` lists the
    slots in use, and the caller clears them. Sizing the table to the document
    (mask + 1 >= 2 x its tokens) keeps a short document's probes in L1 cache
    even when the batch contains a long one. Values are XXH64 outputs, whose low
    bits are already uniform, so they index the table without further mixing.
    """
    distinct = 0
    for index in range(first, stop):
        value = values[index]
        slot = np.int64(value & np.uint64(mask))
        while table_counts[slot] > 0 and table_keys[slot] != value:
            slot = (slot + 1) & mask
        if table_counts[slot] == 0:
            table_keys[slot] = value
            used_slots[distinct] = slot
            distinct += 1
        table_counts[slot] += 1
    return distinct


@kernel
def document_features(token_hashes, document_offsets, repeat_order, seed):
    """Return (type_token_ratio, repeated_ngram_share, unigram_entropy) per document."""
    documents = document_offsets.shape[0] - 1
    ratio = np.full(documents, np.nan)
    repeated = np.full(documents, np.nan)
    entropy = np.full(documents, np.nan)

    longest = 0
    for document in range(documents):
        length = document_offsets[document + 1] - document_offsets[document]
        if length > longest:
            longest = length
    table_size = 16
    while table_size < 2 * longest:
        table_size *= 2
    table_keys = np.zeros(table_size, dtype=np.uint64)
    table_counts = np.zeros(table_size, dtype=np.int64)
    used_slots = np.empty(max(longest, 1), dtype=np.int64)
    ngram_hashes = np.empty(max(longest, 1), dtype=np.uint64)

    for document in range(documents):
        first = document_offsets[document]
        stop = document_offsets[document + 1]
        tokens = stop - first
        if tokens == 0:
            continue

        size = 16
        while size < 2 * tokens:
            size *= 2
        mask = size - 1
        distinct = count_distinct(token_hashes, first, stop, table_keys, table_counts, used_slots, mask)
        ratio[document] = distinct / tokens
        weighted = 0.0
        for index in range(distinct):
            slot = used_slots[index]
            count = table_counts[slot]
            weighted += _XLOGX[count] if count < _XLOGX_SIZE else count * np.log2(count)
            table_counts[slot] = 0
        entropy[document] = max(np.log2(tokens) - weighted / tokens, 0.0)

        ngrams = tokens - repeat_order + 1
        if ngrams <= 0:
            continue
        for index in range(ngrams):
            ngram_hashes[index] = ngram_hash(token_hashes, first + index, repeat_order, seed)
        distinct = count_distinct(ngram_hashes, 0, ngrams, table_keys, table_counts, used_slots, mask)
        repeated[document] = 1.0 - distinct / ngrams
        for index in range(distinct):
            table_counts[used_slots[index]] = 0

    return ratio, repeated, entropy
