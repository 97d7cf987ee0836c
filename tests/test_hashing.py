"""Token and n-gram hashes against independent references and golden values."""

import numpy as np
import pytest
import xxhash

from kernels.hashing import ngram_hash, xxh64_bytes, xxh64_words
from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.tokens import token_hashes_of, tokenize_batch

SETTINGS = SketchSettings()
MASK = (1 << 64) - 1
GOLDEN_NGRAM_HASHES = [
    2641034448292145342,
    12409543432904628300,
    7355743060267748351,
    1689406819522471148,
    11577070112040710753,
]
PRIME1, PRIME2, PRIME3, PRIME4, PRIME5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)


def rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK


def reference_ngram_hash(token_hashes: list[int], seed: int) -> int:
    """The documented n-gram hash in plain Python integers."""
    state = (seed + PRIME5) & MASK
    for token in token_hashes:
        lane = rotl((token * PRIME2) & MASK, 31) * PRIME1 & MASK
        state = (rotl(state ^ lane, 27) * PRIME1 + PRIME4) & MASK
    value = (state + len(token_hashes)) & MASK
    value = ((value ^ (value >> 33)) * PRIME2) & MASK
    value = ((value ^ (value >> 29)) * PRIME3) & MASK
    return value ^ (value >> 32)


@pytest.mark.parametrize("length", [0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 200])
@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1, SETTINGS.seed])
def test_bytes_hash_matches_xxhash(length, seed):
    data = np.random.default_rng(length).integers(0, 256, length + 4).astype(np.uint8)

    got = int(xxh64_bytes(data, 2, length, np.uint64(seed)))

    assert got == xxhash.xxh64(data[2 : 2 + length].tobytes(), seed=seed).intdigest()


@pytest.mark.parametrize("count", range(0, 10))
def test_words_hash_matches_xxhash_of_little_endian_words(count):
    words = np.random.default_rng(count).integers(0, 2**63, count + 2, dtype=np.uint64)

    got = int(xxh64_words(words, 1, count, np.uint64(SETTINGS.seed)))

    expected = xxhash.xxh64(words[1 : 1 + count].astype("<u8").tobytes(), seed=SETTINGS.seed)
    assert got == expected.intdigest()


def test_token_hash_golden_values():
    hashes = token_hashes_of(["hello", "World", "the"], SETTINGS)

    assert hashes.tolist() == [8907648580571848514, 39658248286086630, 11727313407561228806]


def test_token_hash_is_xxh64_of_folded_bytes():
    hashes = token_hashes_of(["Café"], SETTINGS)

    assert int(hashes[0]) == xxhash.xxh64("café".encode(), seed=SETTINGS.seed).intdigest()


@pytest.mark.parametrize("order", range(1, 9))
@pytest.mark.parametrize("seed", [0, SETTINGS.seed, 2**64 - 1])
def test_ngram_hash_matches_reference(order, seed):
    words = np.random.default_rng(order).integers(0, 2**64, order + 3, dtype=np.uint64, endpoint=False)

    got = int(ngram_hash(words, 2, order, np.uint64(seed)))

    assert got == reference_ngram_hash(words[2 : 2 + order].tolist(), seed)


def test_ngram_hash_golden_values():
    tokens = tokenize_batch(TextBatch.from_strings(["The quick brown fox jumps"]), SETTINGS)
    seed = np.uint64(SETTINGS.seed)

    hashes = [int(ngram_hash(tokens.hashes, 0, order, seed)) for order in range(1, 6)]

    assert hashes == GOLDEN_NGRAM_HASHES


def test_ngram_hash_depends_on_token_order():
    tokens = tokenize_batch(TextBatch.from_strings(["cat dog", "dog cat"]), SETTINGS)
    seed = np.uint64(SETTINGS.seed)

    forward = ngram_hash(tokens.hashes, 0, 2, seed)
    backward = ngram_hash(tokens.hashes, 2, 2, seed)

    assert forward != backward


def test_ngram_hash_depends_on_seed():
    tokens = tokenize_batch(TextBatch.from_strings(["cat dog"]), SETTINGS)

    assert ngram_hash(tokens.hashes, 0, 2, np.uint64(1)) != ngram_hash(tokens.hashes, 0, 2, np.uint64(2))


def test_ngram_hash_depends_on_order_of_same_prefix():
    tokens = tokenize_batch(TextBatch.from_strings(["cat dog"]), SETTINGS)
    seed = np.uint64(SETTINGS.seed)

    assert ngram_hash(tokens.hashes, 0, 1, seed) != ngram_hash(tokens.hashes, 0, 2, seed)


def test_fused_kernel_uses_the_ngram_hash():
    import pyarrow as pa

    from scanner.accumulator import ShardAccumulator

    accumulator = ShardAccumulator(SETTINGS, "shard")
    accumulator.add_texts(pa.array(["The quick brown fox jumps"] * 20))
    candidates = accumulator.finish().heavy_hitters.candidates

    tokens = tokenize_batch(TextBatch.from_strings(["The quick brown fox jumps"]), SETTINGS)
    expected = int(ngram_hash(tokens.hashes, 0, 5, np.uint64(SETTINGS.seed)))
    assert candidates[5] == {expected: "the quick brown fox jumps"}
