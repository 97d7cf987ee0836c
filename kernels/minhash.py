"""MinHash signatures of documents over word-shingle sets.

A document's shingles are its word n-grams of order `shingle_order` (a document
shorter than that has one shingle: all its tokens). Function j hashes a
shingle as avalanche(shingle_hash XOR salt_j), the XXH64 finalizer of a salted
value; the signature keeps the minimum of each function. Two documents agree in
one position with probability equal to the Jaccard similarity of their shingle
sets (Broder, 1997), so the share of equal positions estimates it with standard
error sqrt(J (1 - J) / k) for k functions.
"""

import numpy as np

from kernels._jit import kernel
from kernels.features import count_distinct
from kernels.hashing import avalanche, ngram_hash

EMPTY_SIGNATURE_VALUE = np.uint64(0xFFFFFFFFFFFFFFFF)


@kernel
def minhash_signatures(token_hashes, document_offsets, shingle_order, salts, seed):
    """Return a (documents, len(salts)) uint64 array of MinHash signatures.

    A document without tokens gets all positions set to 2**64 - 1.
    """
    documents = document_offsets.shape[0] - 1
    functions = salts.shape[0]
    signatures = np.full((documents, functions), EMPTY_SIGNATURE_VALUE, dtype=np.uint64)
    for document in range(documents):
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        for start in range(first, first + tokens - order + 1):
            shingle = ngram_hash(token_hashes, start, order, seed)
            for function in range(functions):
                value = avalanche(shingle ^ salts[function])
                if value < signatures[document, function]:
                    signatures[document, function] = value
    return signatures


@kernel
def distinct_shingles(token_hashes, document_offsets, documents, shingle_order, seed):
    """Return the number of distinct shingles (as `minhash_signatures` forms them) of each listed document."""
    out = np.zeros(documents.shape[0], dtype=np.int64)

    longest = 0
    for index in range(documents.shape[0]):
        longest = max(longest, document_offsets[documents[index] + 1] - document_offsets[documents[index]])
    size = 16
    while size < 2 * longest:
        size *= 2
    shingles = np.empty(max(longest, 1), dtype=np.uint64)
    table_keys = np.zeros(size, dtype=np.uint64)
    table_counts = np.zeros(size, dtype=np.int64)
    used_slots = np.empty(max(longest, 1), dtype=np.int64)

    for index in range(documents.shape[0]):
        document = documents[index]
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        count = tokens - order + 1

        for start in range(count):
            shingles[start] = ngram_hash(token_hashes, first + start, order, seed)
        mask = 15
        while mask + 1 < 2 * count:
            mask = 2 * mask + 1
        distinct = count_distinct(shingles, 0, count, table_keys, table_counts, used_slots, mask)
        for slot in range(distinct):
            table_counts[used_slots[slot]] = 0
        out[index] = distinct
    return out
