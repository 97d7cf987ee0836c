"""Token and n-gram hashes: XXH64, checked against the xxhash package and golden values."""

import numpy as np
import pytest
import xxhash

from kernels.hashing import xxh64_bytes, xxh64_words
from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.tokens import token_hashes_of, tokenize_batch

SETTINGS = SketchSettings()


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


def test_trigram_hash_golden_value():
    tokens = tokenize_batch(TextBatch.from_strings(["The quick brown fox"]), SETTINGS)

    assert int(xxh64_words(tokens.hashes, 0, 3, np.uint64(SETTINGS.seed))) == 2930345127550791846


def test_ngram_hash_depends_on_token_order():
    tokens = tokenize_batch(TextBatch.from_strings(["cat dog", "dog cat"]), SETTINGS)
    seed = np.uint64(SETTINGS.seed)

    forward = xxh64_words(tokens.hashes, 0, 2, seed)
    backward = xxh64_words(tokens.hashes, 2, 2, seed)

    assert forward != backward


def test_ngram_hash_depends_on_seed():
    tokens = tokenize_batch(TextBatch.from_strings(["cat dog"]), SETTINGS)

    assert xxh64_words(tokens.hashes, 0, 2, np.uint64(1)) != xxh64_words(tokens.hashes, 0, 2, np.uint64(2))
