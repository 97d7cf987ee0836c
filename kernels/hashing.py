"""Seeded 64-bit hashes of tokens and word n-grams.

Both are XXH64 (Collet, xxHash specification v0.8), written in integer
arithmetic so every platform gives the same values:

- a token's hash is XXH64 of its case-folded UTF-8 bytes;
- an n-gram's hash is XXH64 of its n token hashes written as little-endian
  64-bit words, so it depends on the order of the tokens and on n.

`tests/test_hashing.py` checks both against the `xxhash` package and against
golden values.
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


@kernel
def rotl64(value, bits):
    return (value << bits) | (value >> (_U64 - bits))


@kernel
def _round(accumulator, lane):
    accumulator = accumulator + lane * PRIME2
    accumulator = rotl64(accumulator, _U31)
    return accumulator * PRIME1


@kernel
def _merge_round(accumulator, value):
    accumulator = accumulator ^ _round(_ZERO, value)
    return accumulator * PRIME1 + PRIME4


@kernel
def avalanche(value):
    """XXH64's final mix: every input bit affects every output bit."""
    value = value ^ (value >> _U33)
    value = value * PRIME2
    value = value ^ (value >> _U29)
    value = value * PRIME3
    return value ^ (value >> _U32)


@kernel
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


@kernel
def _read_u32(data, position):
    return (
        np.uint64(data[position])
        | (np.uint64(data[position + 1]) << _U8)
        | (np.uint64(data[position + 2]) << _U16)
        | (np.uint64(data[position + 3]) << _U24)
    )


@kernel
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


@kernel
def xxh64_words(words, start, count, seed):
    """XXH64 of `words[start:start + count]` (uint64) read as little-endian bytes.

    This is the n-gram hash: `words` holds token hashes and `count` is n.
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
