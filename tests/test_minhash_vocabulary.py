"""MinHash Jaccard estimates and exact vocabulary counts."""

import collections

import numpy as np
import pytest

from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.sketches.minhash import MinHasher
from scanner.sketches.vocabulary import Vocabulary
from scanner.tokens import tokenize_batch

SETTINGS = SketchSettings()


def shingles(text: str, order: int) -> set:
    tokens = text.split()
    return {tuple(tokens[i : i + order]) for i in range(len(tokens) - order + 1)}


@pytest.mark.parametrize("overlap", [0, 100, 300, 500])
def test_jaccard_estimate_within_four_standard_errors(overlap):
    words = [f"w{index}" for index in range(2_000)]
    first = " ".join(words[:600])
    second = " ".join(words[600 - overlap : 1200 - overlap])
    hasher = MinHasher(num_perm=256, shingle_order=3, seed=4)
    tokens = tokenize_batch(TextBatch.from_strings([first, second]), SETTINGS)

    signatures = hasher.signatures(tokens.hashes, tokens.document_offsets)

    a, b = shingles(first, 3), shingles(second, 3)
    truth = len(a & b) / len(a | b)
    standard_error = max(np.sqrt(truth * (1 - truth) / 256), 1 / 256)
    assert abs(MinHasher.jaccard(signatures[0], signatures[1]) - truth) <= 4 * standard_error


def test_jaccard_unbiased_any_length():
    # Short documents leave most bins empty, so their positions come from densification.
    rng = np.random.default_rng(11)
    texts, truths = [], []
    for _ in range(300):
        size = int(rng.integers(3, 400))
        shared = int(rng.integers(0, size + 1))
        base = rng.choice(100_000, size=2 * size, replace=False)
        first = [f"w{value}" for value in base[:size]]
        second = first[:shared] + [f"w{value}" for value in base[size : 2 * size - shared]]
        texts += [" ".join(first), " ".join(second)]
        a, b = shingles(texts[-2], 1), shingles(texts[-1], 1)
        truths.append(len(a & b) / len(a | b))
    hasher = MinHasher(num_perm=128, shingle_order=1, seed=2)
    tokens = tokenize_batch(TextBatch.from_strings(texts), SETTINGS)

    signatures = hasher.signatures(tokens.hashes, tokens.document_offsets)

    estimates = np.array([MinHasher.jaccard(signatures[2 * i], signatures[2 * i + 1]) for i in range(len(truths))])
    truths = np.array(truths)
    errors = estimates - truths
    standard_errors = np.maximum(np.sqrt(truths * (1 - truths) / 128), 1 / 128)
    assert abs(errors.mean()) < 0.01
    assert np.mean(np.abs(errors) <= 4 * standard_errors) >= 0.98


def test_identical_documents_have_identical_signatures():
    hasher = MinHasher(num_perm=64)
    tokens = tokenize_batch(TextBatch.from_strings(["Same text here.", "same TEXT here"]), SETTINGS)

    signatures = hasher.signatures(tokens.hashes, tokens.document_offsets)

    assert MinHasher.jaccard(signatures[0], signatures[1]) == 1.0


def test_short_document_is_one_shingle():
    hasher = MinHasher(num_perm=16, shingle_order=5)
    tokens = tokenize_batch(TextBatch.from_strings(["two words", "other words"]), SETTINGS)

    signatures = hasher.signatures(tokens.hashes, tokens.document_offsets)

    assert MinHasher.jaccard(signatures[0], signatures[1]) == 0.0


def test_vocabulary_counts_match_counter():
    documents = ["the cat and the hat", "no match here", "Cat cat CAT"]
    vocabulary = Vocabulary.from_words(["the", "cat", "hat"], SETTINGS)
    tokens = tokenize_batch(TextBatch.from_strings(documents), SETTINGS)

    indptr, slots, counts = vocabulary.counts(tokens.hashes, tokens.document_offsets)

    words = ["the", "cat", "hat"]
    for document, text in enumerate(documents):
        expected = collections.Counter(word for word in text.lower().split() if word in words)
        got = {
            words[slot]: int(count)
            for slot, count in zip(slots[indptr[document] : indptr[document + 1]], counts[indptr[document] : indptr[document + 1]])
        }
        assert got == dict(expected), text


def test_vocabulary_rejects_multi_token_words():
    with pytest.raises(ValueError, match="not exactly one token"):
        Vocabulary.from_words(["two words"], SETTINGS)
