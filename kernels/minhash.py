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
    buffer = np.empty(longest, dtype=np.uint64)
    for index in range(documents.shape[0]):
        document = documents[index]
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        count = tokens - order + 1
        hashes = buffer[:count]
        for start in range(count):
            hashes[start] = ngram_hash(token_hashes, first + start, order, seed)
        hashes.sort()
        distinct = 1
        for position in range(1, count):
            if hashes[position] != hashes[position - 1]:
                distinct += 1
        out[index] = distinct
    return out
