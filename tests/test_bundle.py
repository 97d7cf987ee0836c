"""Bundles: merges that never depend on split or order, and a safe file format."""

import functools

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from scanner.accumulator import ShardAccumulator
from scanner.bundle import Bundle, BundleMismatchError, merge_all
from scanner.codec import FrameError
from scanner.settings import SketchSettings

SETTINGS = SketchSettings(hll_precision=10, countmin_blocks_log2=8, heavy_hitter_capacity=32)
WORDS = "the of and a to in is was he for it with as his on be at by alpha beta café 日本".split()


def random_documents(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(0, 30))) for _ in range(count)]


DOCUMENTS = random_documents(240, 0)


def shard_bundle(documents: list[str], shard_id: str, settings: SketchSettings = SETTINGS) -> Bundle:
    accumulator = ShardAccumulator(settings, shard_id)
    accumulator.add_texts(pa.array(documents, type=pa.large_string()))
    return accumulator.finish()


@functools.lru_cache(maxsize=None)
def fixed_shards() -> tuple[Bundle, ...]:
    return tuple(shard_bundle(DOCUMENTS[i : i + 30], f"shard-{i:03d}") for i in range(0, 240, 30))


def merge_as_tree(bundles: list[Bundle], shape: list[int]) -> Bundle:
    """Merge by repeatedly joining the pair at position shape[i] % (len - 1)."""
    pending = list(bundles)
    for choice in shape:
        if len(pending) == 1:
            break
        index = choice % (len(pending) - 1)
        pending[index : index + 2] = [pending[index].merge(pending[index + 1])]
    while len(pending) > 1:
        pending[0:2] = [pending[0].merge(pending[1])]
    return pending[0]


@hypothesis_settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(8)), shape=st.lists(st.integers(0, 100), min_size=7, max_size=7))
def test_merge_order_and_tree_never_change_bytes(order, shape):
    shards = fixed_shards()
    reference = merge_all(list(shards)).to_bytes()

    merged = merge_as_tree([shards[index] for index in order], shape)

    assert merged.to_bytes() == reference


@hypothesis_settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 239), min_size=1, max_size=6, unique=True))
def test_split_never_changes_split_free_statistics(cuts):
    bounds = [0, *sorted(cuts), 240]
    parts = [DOCUMENTS[low:high] for low, high in zip(bounds, bounds[1:])]
    whole = shard_bundle(DOCUMENTS, "whole")

    merged = merge_all([shard_bundle(part, f"part-{index}") for index, part in enumerate(parts)])

    assert (merged.documents, merged.empty_documents, merged.bytes, merged.tokens) == (
        whole.documents,
        whole.empty_documents,
        whole.bytes,
        whole.tokens,
    )
    assert np.array_equal(merged.ngram_totals, whole.ngram_totals)
    assert np.array_equal(merged.hll_registers, whole.hll_registers)
    for name, sketch in whole.quantiles.items():
        assert merged.quantiles[name] == sketch, name


def test_round_trip_keeps_every_field():
    bundle = merge_all(list(fixed_shards()))

    restored = Bundle.from_bytes(bundle.to_bytes())

    assert restored.to_bytes() == bundle.to_bytes()
    assert restored.top_ngrams(1, 5) == bundle.top_ngrams(1, 5)
    assert restored.moments["doc_tokens"].summary() == bundle.moments["doc_tokens"].summary()


def test_truncated_file_is_rejected():
    data = fixed_shards()[0].to_bytes()

    with pytest.raises(FrameError, match="truncated"):
        Bundle.from_bytes(data[: len(data) // 2])


def test_flipped_byte_is_rejected():
    data = bytearray(fixed_shards()[0].to_bytes())
    data[len(data) // 2] ^= 0x01

    with pytest.raises(FrameError, match="checksum"):
        Bundle.from_bytes(bytes(data))


def test_other_file_is_rejected():
    with pytest.raises(FrameError, match="magic"):
        Bundle.from_bytes(b"PAR1" + bytes(100))


def test_sketch_of_another_kind_is_rejected():
    from scanner.sketches.hll import HyperLogLog

    with pytest.raises(FrameError, match="expected a 'bundle'"):
        Bundle.from_bytes(HyperLogLog(8).to_bytes())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 1}, "seed: 1548623910 != 1"),
        ({"hll_precision": 12}, "hll_precision: 10 != 12"),
        ({"keep_punctuation": True}, "keep_punctuation: False != True"),
        ({"max_order": 4}, "max_order: 5 != 4"),
    ],
)
def test_merge_names_the_differing_setting(change, message):
    other = shard_bundle(DOCUMENTS[:10], "other", SETTINGS.model_copy(update=change))

    with pytest.raises(BundleMismatchError, match=message):
        fixed_shards()[0].merge(other)


def test_merge_refuses_a_shard_twice():
    shard = fixed_shards()[0]

    with pytest.raises(BundleMismatchError, match="shard-000"):
        shard.merge(shard)


def test_empty_shard_bundle_merges():
    empty = shard_bundle([], "empty")

    merged = empty.merge(fixed_shards()[0])

    assert merged.documents == fixed_shards()[0].documents
