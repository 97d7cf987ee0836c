"""Per-document features against direct Python computations."""

import collections
import math

import numpy as np
import pyarrow as pa
import pytest

from kernels.features import document_features
from scanner.accumulator import ShardAccumulator
from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.tokens import tokenize_batch

SETTINGS = SketchSettings()
DOCUMENTS = ["a b a c a b", "one", "x y z x y z x y z", "", "the the the the"]


def python_features(tokens: list[str], order: int):
    if not tokens:
        return math.nan, math.nan, math.nan
    counts = collections.Counter(tokens)
    ratio = len(counts) / len(tokens)
    entropy = -sum(c / len(tokens) * math.log2(c / len(tokens)) for c in counts.values())
    ngrams = [tuple(tokens[i : i + order]) for i in range(len(tokens) - order + 1)]
    repeated = 1 - len(set(ngrams)) / len(ngrams) if ngrams else math.nan
    return ratio, repeated, entropy


@pytest.fixture(scope="module")
def features():
    tokens = tokenize_batch(TextBatch.from_strings(DOCUMENTS), SETTINGS)
    return document_features(tokens.hashes, tokens.document_offsets, 3, np.uint64(SETTINGS.seed))


@pytest.mark.parametrize("index", range(len(DOCUMENTS)))
def test_features_match_python(features, index):
    expected = python_features(DOCUMENTS[index].split(), 3)

    got = tuple(float(array[index]) for array in features)

    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_accumulator_counts_documents_and_bytes():
    accumulator = ShardAccumulator(SETTINGS, "shard")
    accumulator.add_texts(pa.array(DOCUMENTS + ["héllo"]))

    bundle = accumulator.finish()

    assert bundle.documents == 6
    assert bundle.empty_documents == 1
    assert bundle.bytes == sum(len(text.encode()) for text in DOCUMENTS + ["héllo"])
    assert bundle.tokens == sum(len(text.split()) for text in DOCUMENTS) + 1
    assert bundle.moments["doc_tokens"].count == 6
    assert bundle.moments["type_token_ratio"].count == 5


def test_ngram_totals_per_order():
    accumulator = ShardAccumulator(SETTINGS, "shard")
    accumulator.add_texts(pa.array(["a b c d", "e f", ""]))

    bundle = accumulator.finish()

    assert bundle.ngram_totals.tolist() == [6, 4, 2, 1, 0]
