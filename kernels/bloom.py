"""A Bloom filter of long word n-grams, as uint64 words of bits.

An n-gram's 64-bit hash h (`kernels.hashing.ngram_hash`) sets or tests
`num_hashes` bits at (h1 + i * h2) mod num_bits for i = 0 .. num_hashes - 1,
with h1 = h and h2 = avalanche(h XOR salt) | 1. This double hashing keeps the
false-positive rate of independent hash functions for large filters
(Kirsch and Mitzenmacher, "Less Hashing, Same Performance", 2006): about
(1 - exp(-k n / m))^k for n items in m bits with k hashes.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import avalanche, ngram_hash

_SECOND_HASH_SALT = np.uint64(0x6A09E667F3BCC908)
_U1 = np.uint64(1)
_U6 = np.uint64(6)
_U63 = np.uint64(63)


@kernel(leaf=True)
def _second_hash(hashed):
    return avalanche(hashed ^ _SECOND_HASH_SALT) | _U1


@kernel(leaf=True)
def bloom_add(bits, num_bits, num_hashes, hashed):
    """Set the bits of one hash; `num_bits` is a uint64."""
    step = _second_hash(hashed)
    position = hashed % num_bits
    step = step % num_bits
    for _ in range(num_hashes):
        bits[position >> _U6] |= _U1 << (position & _U63)
        position = position + step
        if position >= num_bits:
            position -= num_bits


@kernel(leaf=True)
def bloom_contains(bits, num_bits, num_hashes, hashed):
    """Return True when every bit of the hash is set: the item was added, or a false positive."""
    step = _second_hash(hashed)
    position = hashed % num_bits
    step = step % num_bits
    for _ in range(num_hashes):
        if (bits[position >> _U6] >> (position & _U63)) & _U1 == 0:
            return False
        position = position + step
        if position >= num_bits:
            position -= num_bits
    return True


@kernel
def bloom_add_ngrams(bits, num_bits, num_hashes, token_hashes, document_offsets, order, seed):
    """Add every n-gram of `order` tokens of every document; return the number added, repeats included."""
    documents = document_offsets.shape[0] - 1
    added = 0
    for document in range(documents):
        first = document_offsets[document]
        stop = document_offsets[document + 1]
        for start in range(first, stop - order + 1):
            bloom_add(bits, num_bits, num_hashes, ngram_hash(token_hashes, start, order, seed))
            added += 1
    return added


@kernel
def bloom_match_documents(bits, num_bits, num_hashes, token_hashes, document_offsets, order, seed):
    """Return (matched, ngrams) per document.

    `matched` is True when some n-gram of `order` tokens tests positive, and
    `ngrams` counts the document's n-grams of that order. A document shorter
    than `order` tokens has no n-gram and never matches.
    """
    documents = document_offsets.shape[0] - 1
    matched = np.zeros(documents, dtype=np.bool_)
    ngrams = np.zeros(documents, dtype=np.int64)
    for document in range(documents):
        first = document_offsets[document]
        stop = document_offsets[document + 1]
        ngrams[document] = max(0, stop - first - order + 1)
        for start in range(first, stop - order + 1):
            if bloom_contains(bits, num_bits, num_hashes, ngram_hash(token_hashes, start, order, seed)):
                matched[document] = True
                break
    return matched, ngrams


@kernel
def ngram_hashes(token_hashes, document_offsets, order, seed):
    """Return the hashes of every n-gram of `order` tokens, document by document, as uint64."""
    documents = document_offsets.shape[0] - 1
    total = 0
    for document in range(documents):
        tokens = document_offsets[document + 1] - document_offsets[document]
        if tokens >= order:
            total += tokens - order + 1
    out = np.empty(total, dtype=np.uint64)
    position = 0
    for document in range(documents):
        for start in range(document_offsets[document], document_offsets[document + 1] - order + 1):
            out[position] = ngram_hash(token_hashes, start, order, seed)
            position += 1
    return out
