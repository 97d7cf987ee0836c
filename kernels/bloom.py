"""A Bloom filter of long word n-grams, as uint64 words of bits.

Long n-grams are hashed with a rolling polynomial over the token hashes instead of
the chained hash of `kernels.hashing`. The hash of the next position then costs two
multiplications instead of n chained steps. Measured in `benchmarks/registry_match.py`,
the chained 13-gram hash took most of the matching time. For tokens t_0 .. t_{n-1}:

    p = sum over i of t_i * B**(n - 1 - i)  (mod 2**64), B = PRIME1 of XXH64 (odd)
    h = avalanche(p XOR seed XOR n)

Token hashes are XXH64 values, so two different n-grams give the same p only by
chance. The difference of two such sums is a polynomial in B whose coefficients are
differences of independent 64-bit hashes.

An n-gram's 64-bit hash h sets or tests
`num_hashes` bits at (h1 + i * h2) mod num_bits for i = 0 .. num_hashes - 1,
with h1 and h2 drawn from h and from avalanche(h XOR salt). This double hashing
keeps the false-positive rate of independent hash functions for large filters
(Kirsch and Mitzenmacher, "Less Hashing, Same Performance", 2006): about
(1 - exp(-k n / m))^k for n items in m bits with k hashes.

A filter of fewer than 2**32 bits maps a hash into [0, num_bits) by multiplying
its top 32 bits by num_bits and keeping the top 32 bits of the product (Lemire,
"A fast alternative to the modulo reduction", 2016). Two 64-bit divisions per
n-gram took about as long as the n-gram hash itself. Larger filters use the
modulo.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import PRIME1, avalanche

_SECOND_HASH_SALT = np.uint64(0x6A09E667F3BCC908)
_U1 = np.uint64(1)
_U6 = np.uint64(6)
_U63 = np.uint64(63)


_U32 = np.uint64(32)
_SMALL_FILTER_BITS = np.uint64(1 << 32)


@kernel(leaf=True)
def _reduce(hashed, num_bits):
    """Map a hash into [0, num_bits)."""
    if num_bits < _SMALL_FILTER_BITS:
        return ((hashed >> _U32) * num_bits) >> _U32
    return hashed % num_bits


@kernel(leaf=True)
def _probe_start(hashed, num_bits):
    """Return (first position, step) of a hash's probe sequence."""
    return _reduce(hashed, num_bits), _reduce(avalanche(hashed ^ _SECOND_HASH_SALT), num_bits) | _U1


@kernel(leaf=True)
def bloom_add(bits, num_bits, num_hashes, hashed):
    """Set the bits of one hash; `num_bits` is a uint64."""
    position, step = _probe_start(hashed, num_bits)
    step = step % num_bits if step >= num_bits else step
    for _ in range(num_hashes):
        bits[position >> _U6] |= _U1 << (position & _U63)
        position = position + step
        if position >= num_bits:
            position -= num_bits


@kernel(leaf=True)
def bloom_contains(bits, num_bits, num_hashes, hashed):
    """Return True when every bit of the hash is set: the item was added, or a false positive."""
    position, step = _probe_start(hashed, num_bits)
    step = step % num_bits if step >= num_bits else step
    for _ in range(num_hashes):
        if (bits[position >> _U6] >> (position & _U63)) & _U1 == 0:
            return False
        position = position + step
        if position >= num_bits:
            position -= num_bits
    return True


@kernel(leaf=True)
def _power(base, exponent):
    result = np.uint64(1)
    for _ in range(exponent):
        result = result * base
    return result


@kernel
def _document_ngram_hashes(token_hashes, first, stop, order, seed, out):
    """Write the rolling hashes of the n-grams of `order` tokens in [first, stop) to `out`; return their number."""
    count = stop - first - order + 1
    if count <= 0:
        return 0
    top = _power(PRIME1, order - 1)
    salt = seed ^ np.uint64(order)
    rolling = np.uint64(0)
    for index in range(first, first + order):
        rolling = rolling * PRIME1 + token_hashes[index]
    out[0] = avalanche(rolling ^ salt)
    for position in range(1, count):
        rolling = (rolling - token_hashes[first + position - 1] * top) * PRIME1 + token_hashes[first + position + order - 1]
        out[position] = avalanche(rolling ^ salt)
    return count


@kernel
def ngram_hashes(token_hashes, document_offsets, order, seed):
    """Return the rolling hashes of every n-gram of `order` tokens, document by document, as uint64."""
    documents = document_offsets.shape[0] - 1
    total = 0
    for document in range(documents):
        tokens = document_offsets[document + 1] - document_offsets[document]
        if tokens >= order:
            total += tokens - order + 1
    out = np.empty(total, dtype=np.uint64)
    position = 0
    for document in range(documents):
        position += _document_ngram_hashes(
            token_hashes, document_offsets[document], document_offsets[document + 1], order, seed, out[position:]
        )
    return out


@kernel
def bloom_add_ngrams(bits, num_bits, num_hashes, token_hashes, document_offsets, order, seed):
    """Add every n-gram of `order` tokens of every document; return the number added, repeats included."""
    hashes = ngram_hashes(token_hashes, document_offsets, order, seed)
    for index in range(hashes.shape[0]):
        bloom_add(bits, num_bits, num_hashes, hashes[index])
    return hashes.shape[0]


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
    longest = 0
    for document in range(documents):
        longest = max(longest, document_offsets[document + 1] - document_offsets[document])
    buffer = np.empty(max(longest, 1), dtype=np.uint64)
    for document in range(documents):
        count = _document_ngram_hashes(
            token_hashes, document_offsets[document], document_offsets[document + 1], order, seed, buffer
        )
        ngrams[document] = count
        for index in range(count):
            if bloom_contains(bits, num_bits, num_hashes, buffer[index]):
                matched[document] = True
                break
    return matched, ngrams
