"""Hashed n-gram counts per document block, for the two-sample audit.

Each document goes to one of `blocks` blocks, chosen by the XXH64 hash of its
case-folded bytes, so identical documents always land in the same block. Each
word n-gram of the orders [min_order, max_order] adds one to the bucket
`hash % buckets` of that block, where `hash` is the scanner's n-gram hash
(`kernels.hashing`), so a heavy-hitter key maps to its bucket the same way.
N-grams never cross documents.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import ngram_finish, ngram_start, ngram_step, xxh64_bytes


@kernel
def add_block_counts(token_hashes, document_offsets, folded, byte_offsets, min_order, max_order, seed, block_seed, counts):
    """Add the bucket counts of each document's n-grams to its block's row of `counts`.

    `counts` is int64 (blocks, buckets). Document d has the tokens
    `token_hashes[document_offsets[d]:document_offsets[d + 1]]` and the bytes
    `folded[byte_offsets[d]:byte_offsets[d + 1]]`. Returns the number of
    documents added to each block (int64, blocks).
    """
    blocks = counts.shape[0]
    buckets = np.uint64(counts.shape[1])
    documents_per_block = np.zeros(blocks, dtype=np.int64)
    for document in range(document_offsets.shape[0] - 1):
        start = byte_offsets[document]
        content_hash = xxh64_bytes(folded, start, byte_offsets[document + 1] - start, block_seed)
        block = np.int64(content_hash % np.uint64(blocks))
        documents_per_block[block] += 1

        stop = document_offsets[document + 1]
        for position in range(document_offsets[document], stop):
            state = ngram_start(seed)
            for order in range(1, max_order + 1):
                if position + order > stop:
                    break
                state = ngram_step(state, token_hashes[position + order - 1])
                if order >= min_order:
                    bucket = np.int64(ngram_finish(state, order) % buckets)
                    counts[block, bucket] += 1
    return documents_per_block
