"""Seeded 64-bit hashes of tokens and word n-grams, in integer arithmetic so
every platform gives the same values.

- A token's hash is XXH64 (Collet, xxHash specification v0.8) of its
  case-folded UTF-8 bytes with the scan's seed.
- An n-gram's hash chains XXH64's 8-byte input step over the n token hashes
  and ends with XXH64's avalanche:

      state = seed + PRIME5
      for t in tokens: state = rotl(state ^ round(0, t), 27) * PRIME1 + PRIME4
      hash = avalanche(state + n)

  This is XXH64's path for inputs under 32 bytes with the length added at the
  end instead of the start, so the hash of an (n+1)-gram continues from the
  state of its n-gram prefix: the kernel gets all orders at one position for the
  cost of the longest. It depends on the order of the tokens and on n.

`tests/test_hashing.py` checks token hashes against the `xxhash` package and
n-gram hashes against a pure-Python reference, both with golden values.
"""

import numpy as np

from kernels._jit import kernel

PRIME1 = np.uint64(0x9E3779B185EBCA87)
PRIME2 = np.uint64(0xC2B2AE3D27D4EB4F)
PRIME3 = np.uint64(0x165667B19E3779F9)
PRIME4 = np.uint64(0x85EBCA77C2B2AE63)
PRIME5 = np.uint64(0x27D4EB2F165667C5)

_U1 = np.uint64(1)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U11 = np.uint64(11)
_U12 = np.uint64(12)
_U16 = np.uint64(16)
_U18 = np.uint64(18)
_U23 = np.uint64(23)
_U24 = np.uint64(24)
_U27 = np.uint64(27)
_U29 = np.uint64(29)
_U31 = np.uint64(31)
_U32 = np.uint64(32)
_U33 = np.uint64(33)
_U40 = np.uint64(40)
_U48 = np.uint64(48)
_U56 = np.uint64(56)
_U64 = np.uint64(64)
_ZERO = np.uint64(0)


@kernel(leaf=True)
def rotl64(value, bits):
    return (value << bits) | (value >> (_U64 - bits))


@kernel(leaf=True)
def _round(accumulator, lane):
    accumulator = accumulator + lane * PRIME2
    accumulator = rotl64(accumulator, _U31)
    return accumulator * PRIME1


@kernel(leaf=True)
def _merge_round(accumulator, value):
    accumulator = accumulator ^ _round(_ZERO, value)
    return accumulator * PRIME1 + PRIME4


@kernel(leaf=True)
def avalanche(value):
    """XXH64's final mix: every input bit affects every output bit."""
    value = value ^ (value >> _U33)
    value = value * PRIME2
    value = value ^ (value >> _U29)
    value = value * PRIME3
    return value ^ (value >> _U32)


@kernel(leaf=True)
def _read_u64(data, position):
    return (
        np.uint64(data[position])
        | (np.uint64(data[position + 1]) << _U8)
        | (np.uint64(data[position + 2]) << _U16)
        | (np.uint64(data[position + 3]) << _U24)
        | (np.uint64(data[position + 4]) << _U32)
        | (np.uint64(data[position + 5]) << _U40)
        | (np.uint64(data[position + 6]) << _U48)
        | (np.uint64(data[position + 7]) << _U56)
    )


@kernel(leaf=True)
def _read_u32(data, position):
    return (
        np.uint64(data[position])
        | (np.uint64(data[position + 1]) << _U8)
        | (np.uint64(data[position + 2]) << _U16)
        | (np.uint64(data[position + 3]) << _U24)
    )


@kernel(leaf=True)
def xxh64_bytes(data, start, length, seed):
    """XXH64 of `data[start:start + length]` (a uint8 array) with a uint64 seed."""
    position = start
    end = start + length
    if length >= 32:
        v1 = seed + PRIME1 + PRIME2
        v2 = seed + PRIME2
        v3 = seed
        v4 = seed - PRIME1
        limit = end - 32
        while position <= limit:
            v1 = _round(v1, _read_u64(data, position))
            v2 = _round(v2, _read_u64(data, position + 8))
            v3 = _round(v3, _read_u64(data, position + 16))
            v4 = _round(v4, _read_u64(data, position + 24))
            position += 32
        hashed = rotl64(v1, _U1) + rotl64(v2, _U7) + rotl64(v3, _U12) + rotl64(v4, _U18)
        hashed = _merge_round(hashed, v1)
        hashed = _merge_round(hashed, v2)
        hashed = _merge_round(hashed, v3)
        hashed = _merge_round(hashed, v4)
    else:
        hashed = seed + PRIME5

    hashed = hashed + np.uint64(length)
    while position + 8 <= end:
        hashed = hashed ^ _round(_ZERO, _read_u64(data, position))
        hashed = rotl64(hashed, _U27) * PRIME1 + PRIME4
        position += 8
    if position + 4 <= end:
        hashed = hashed ^ (_read_u32(data, position) * PRIME1)
        hashed = rotl64(hashed, _U23) * PRIME2 + PRIME3
        position += 4
    while position < end:
        hashed = hashed ^ (np.uint64(data[position]) * PRIME5)
        hashed = rotl64(hashed, _U11) * PRIME1
        position += 1
    return avalanche(hashed)


@kernel(leaf=True)
def ngram_step(state, token_hash):
    """Advance an n-gram hash state by one token hash."""
    state = state ^ _round(_ZERO, token_hash)
    return rotl64(state, _U27) * PRIME1 + PRIME4


@kernel(leaf=True)
def ngram_start(seed):
    return seed + PRIME5


@kernel(leaf=True)
def ngram_finish(state, order):
    """Return the hash of the n-gram of `order` tokens whose chained state is `state`."""
    return avalanche(state + np.uint64(order))


@kernel(leaf=True)
def ngram_hash(token_hashes, start, order, seed):
    """Hash of the n-gram token_hashes[start:start + order]."""
    state = ngram_start(seed)
    for index in range(start, start + order):
        state = ngram_step(state, token_hashes[index])
    return ngram_finish(state, order)


@kernel(leaf=True)
def xxh64_words(words, start, count, seed):
    """XXH64 of `words[start:start + count]` (uint64) read as little-endian bytes.

    This is the n-gram hash: `words` contains token hashes and `count` is n.
    """
    position = start
    end = start + count
    if count >= 4:
        v1 = seed + PRIME1 + PRIME2
        v2 = seed + PRIME2
        v3 = seed
        v4 = seed - PRIME1
        while position + 4 <= end:
            v1 = _round(v1, words[position])
            v2 = _round(v2, words[position + 1])
            v3 = _round(v3, words[position + 2])
            v4 = _round(v4, words[position + 3])
            position += 4
        hashed = rotl64(v1, _U1) + rotl64(v2, _U7) + rotl64(v3, _U12) + rotl64(v4, _U18)
        hashed = _merge_round(hashed, v1)
        hashed = _merge_round(hashed, v2)
        hashed = _merge_round(hashed, v3)
        hashed = _merge_round(hashed, v4)
    else:
        hashed = seed + PRIME5

    hashed = hashed + np.uint64(count) * _U8
    while position < end:
        hashed = hashed ^ _round(_ZERO, words[position])
        hashed = rotl64(hashed, _U27) * PRIME1 + PRIME4
        position += 1
    return avalanche(hashed)


@kernel
def hash_bytes_batch(data, offsets, seed):
    """XXH64 of each `data[offsets[i]:offsets[i + 1]]`, as a uint64 array."""
    count = offsets.shape[0] - 1
    out = np.empty(count, dtype=np.uint64)
    for index in range(count):
        out[index] = xxh64_bytes(data, offsets[index], offsets[index + 1] - offsets[index], seed)
    return out
