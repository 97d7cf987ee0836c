"""Heavy hitters: every n-gram above N / (k + 1) is found, with readable text."""

import collections

import numpy as np
import pyarrow as pa
import pytest

from scanner.accumulator import ShardAccumulator
from scanner.bundle import merge_all
from scanner.settings import SketchSettings
from scanner.sketches.heavy_hitters import HeavyHitterCandidates

SETTINGS = SketchSettings(heavy_hitter_capacity=64, min_order=1, max_order=3, countmin_blocks_log2=12)


def zipf_documents(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{index}" for index in range(5_000)]
    documents = []
    for _ in range(count):
        ranks = np.minimum(rng.zipf(1.3, rng.integers(5, 60)), len(words)) - 1
        documents.append(" ".join(words[rank] for rank in ranks))
    return documents


def true_counts(documents: list[str], order: int) -> collections.Counter:
    counts = collections.Counter()
    for document in documents:
        tokens = document.split()
        counts.update(" ".join(tokens[i : i + order]) for i in range(len(tokens) - order + 1))
    return counts


def bundle_of(documents: list[str], shard_id: str):
    accumulator = ShardAccumulator(SETTINGS, shard_id)
    for start in range(0, len(documents), 500):
        accumulator.add_texts(pa.array(documents[start : start + 500]))
    return accumulator.finish()


@pytest.fixture(scope="module")
def documents():
    return zipf_documents(6_000, 0)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_item_above_threshold_is_found(documents, order):
    bundle = bundle_of(documents, "shard")
    counts = true_counts(documents, order)
    threshold = sum(counts.values()) / (SETTINGS.heavy_hitter_capacity + 1)

    found = {item["ngram"] for item in bundle.top_ngrams(order, limit=10_000)}

    missing = [ngram for ngram, count in counts.items() if count > threshold and ngram not in found]
    assert missing == []


@pytest.mark.parametrize("order", [1, 2])
def test_found_across_shards_after_merge(documents, order):
    shards = [documents[i : i + 1_500] for i in range(0, len(documents), 1_500)]
    merged = merge_all([bundle_of(part, f"shard-{index}") for index, part in enumerate(shards)])
    counts = true_counts(documents, order)
    threshold = sum(counts.values()) / (SETTINGS.heavy_hitter_capacity + 1)

    found = {item["ngram"] for item in merged.top_ngrams(order, limit=10_000)}

    missing = [ngram for ngram, count in counts.items() if count > threshold and ngram not in found]
    assert missing == []


def test_top_counts_are_upper_bounds_and_sorted(documents):
    bundle = bundle_of(documents, "shard")
    counts = true_counts(documents, 2)

    top = bundle.top_ngrams(2, limit=20)

    assert all(item["count"] >= counts[item["ngram"]] for item in top)
    assert [item["count"] for item in top] == sorted((item["count"] for item in top), reverse=True)


def test_top_text_is_case_folded_tokens():
    accumulator = ShardAccumulator(SETTINGS, "shard")
    accumulator.add_texts(pa.array(["The Cat, the cat! THE CAT sat."] * 50))

    top = accumulator.finish().top_ngrams(2, limit=1)

    assert top == [{"ngram": "the cat", "count": 150}]


def test_large_corpus_top_lists_exclude_rare():
    # About 1.2 million n-grams, most of orders 3 to 5 seen once: the setting where
    # a Count-Min layout with correlated rows gave once-seen n-grams heavy counts.
    settings = SketchSettings()
    documents = zipf_documents(30_000, 11)
    accumulator = ShardAccumulator(settings, "large")
    for start in range(0, len(documents), 5_000):
        accumulator.add_texts(pa.array(documents[start : start + 5_000]))
    bundle = accumulator.finish()

    for order in (2, 3, 4, 5):
        counts = true_counts(documents, order)
        for item in bundle.top_ngrams(order, limit=20):
            assert counts[item["ngram"]] >= item["count"] / 2, (order, item, counts[item["ngram"]])


def test_counts_within_the_error_bound_are_left_out():
    # A small, diverse corpus in a small table: every 3-gram is rare, and without the
    # cut its top list would show once-seen 3-grams with inflated counts.
    settings = SketchSettings(countmin_blocks_log2=6, heavy_hitter_capacity=64)
    documents = zipf_documents(400, 5)
    accumulator = ShardAccumulator(settings, "small")
    accumulator.add_texts(pa.array(documents))
    bundle = accumulator.finish()
    bound = bundle.countmin.error_bound(int(bundle.ngram_totals.sum()))

    listed = {order: bundle.top_ngrams(order, limit=50) for order in (1, 3)}
    unfiltered = bundle.heavy_hitters.top(3, bundle.countmin, 50)

    assert listed[1], "frequent words stay above the bound"
    assert all(item["count"] > bound for items in listed.values() for item in items)
    assert any(item["count"] <= bound for item in unfiltered), "the corpus must produce noise-level candidates"


def test_candidate_union_keeps_smaller_text():
    # Key 7 is a hash collision: the union keeps the text that sorts first, in any order.
    first = HeavyHitterCandidates({1: {3: "the", 7: "zebra"}, 2: {9: "of the"}})
    second = HeavyHitterCandidates({1: {7: "\u00e9clair", 5: "and"}, 3: {2: "one of the"}})
    third = HeavyHitterCandidates({1: {7: "apple", 3: "the"}})

    merged = first.merge(second).merge(third)

    assert merged.candidates == {
        1: {3: "the", 5: "and", 7: "apple"},
        2: {9: "of the"},
        3: {2: "one of the"},
    }
    assert third.merge(second.merge(first)).to_bytes() == merged.to_bytes()


def test_candidate_union_orders_by_code_point():
    merged = HeavyHitterCandidates({1: {7: "\u00e9t\u00e9"}}).merge(HeavyHitterCandidates({1: {7: "\u00e9tz"}}))
    assert merged.candidates[1][7] == min("\u00e9t\u00e9", "\u00e9tz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda arrays: arrays.update({"keys/1": arrays["keys/1"][::-1].copy()}), "keys are not strictly ascending"),
        (lambda arrays: arrays.update({"text_offsets/1": arrays["text_offsets/1"][:-1]}), "array shapes"),
        (lambda arrays: arrays["text/1"].__setitem__(0, 0xFF), "not UTF-8"),
        (lambda arrays: arrays["text_offsets/1"].__setitem__(1, 1), "starts inside a UTF-8 character"),
    ],
)
def test_inconsistent_candidate_arrays_rejected(change, message):
    meta, arrays = HeavyHitterCandidates({1: {3: "\u00e9a", 8: "b"}}).to_frame_parts()
    arrays = {name: array.copy() for name, array in arrays.items()}
    change(arrays)

    with pytest.raises(ValueError, match=message):
        HeavyHitterCandidates.from_frame_parts(meta, arrays)
