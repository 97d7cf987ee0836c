"""Diversity and collapse indicators: accuracy against exact values, exact merges,
and a planted collapse across snapshots on a real local Ray."""

import collections
import json
import math
import zlib

import numpy as np
import pyarrow as pa
import pytest

from scanner.accumulator import ShardAccumulator
from scanner.batch import TextBatch
from scanner.config import ScanConfig
from scanner.indicators import corpus_indicators, indicators_of
from scanner.profile import ReferenceProfile
from scanner.report import render_report
from scanner.result import build_result
from scanner.runner import run_scan
from scanner.samples import MarkovCorpus
from scanner.scoring import ProfileScorer, content_ids
from scanner.settings import SketchSettings
from scanner.sketches.diversity import COMPRESSION_SAMPLING, MINHASH_PERMUTATIONS, SHINGLE_ORDER
from scanner.sketches.minhash import MinHasher
from scanner.tokens import tokenize_batch

SETTINGS = SketchSettings(hll_precision=12, countmin_blocks_log2=12)


def accumulate(documents, settings=SETTINGS, batch=500, scorer=None, shard_id="shard"):
    accumulator = ShardAccumulator(settings, shard_id, scorer)
    for start in range(0, len(documents), batch):
        accumulator.add_texts(pa.array(documents[start : start + batch], type=pa.large_string()))
    return accumulator.finish()


def exact_word_counts(documents, settings=SETTINGS) -> collections.Counter:
    """Counts of each word, keyed by its token hash, from the tokenizer's own output."""
    tokens = tokenize_batch(TextBatch.from_strings(documents), settings)
    return collections.Counter(tokens.hashes.tolist())


@pytest.fixture(scope="module")
def diverse():
    return MarkovCorpus(seed=1, filler_words=60_000).documents(2_500, mean_words=250)


@pytest.fixture(scope="module")
def diverse_bundle(diverse):
    return accumulate(diverse)


def test_sampled_types_have_exact_counts(diverse, diverse_bundle):
    sketch = diverse_bundle.diversity
    exact = exact_word_counts(diverse)
    assert sketch.type_level > 0, "the corpus must be large enough to force sampling"
    assert sketch.type_keys.size > 1000
    for key, count in zip(sketch.type_keys.tolist(), sketch.type_counts.tolist()):
        assert exact[key] == count
    expected = [key for key in exact if key >> (64 - sketch.type_level) == 0]
    assert sorted(expected) == sketch.type_keys.tolist()


def test_entropy_and_hapax_match_exact_values(diverse, diverse_bundle):
    exact = exact_word_counts(diverse)
    tokens = sum(exact.values())
    distinct = len(exact)
    entropy = -sum(c / tokens * math.log2(c / tokens) for c in exact.values()) + (distinct - 1) / (2 * tokens * math.log(2))
    hapax = sum(1 for c in exact.values() if c == 1) / distinct
    hapax_tokens = sum(1 for c in exact.values() if c == 1) / tokens

    result = corpus_indicators(diverse_bundle, None)

    assert result["unigram_entropy_se"] > 0
    assert abs(result["unigram_entropy_bits"] - entropy) <= 3 * result["unigram_entropy_se"] + 0.01
    assert abs(result["hapax_share"] - hapax) <= 4 * result["hapax_share_se"]
    assert abs(result["hapax_token_share"] - hapax_tokens) <= 4 * result["hapax_token_share_se"]


def test_tail_mass_and_zipf_exponent(diverse_bundle, diverse):
    exact = exact_word_counts(diverse)
    tokens = sum(exact.values())
    top = sorted(exact.values(), reverse=True)[:100]
    result = corpus_indicators(diverse_bundle, None)

    true_tail = 1 - sum(top) / tokens
    assert true_tail - result["tail_mass_error_bound"] - 1e-9 <= result["tail_mass"] <= true_tail + 1e-9
    slope = -np.polyfit(np.log(np.arange(1, 101)), np.log(top), 1)[0]
    assert result["zipf_exponent"] == pytest.approx(slope, abs=0.02)


def test_zipf_exponent_of_zipf_text():
    rng = np.random.default_rng(4)
    ranks = np.arange(1, 20_001)
    probabilities = ranks ** -1.0 / np.sum(ranks ** -1.0)
    words = [f"w{index}x" for index in range(ranks.size)]
    picks = rng.choice(ranks.size, size=400_000, p=probabilities)
    documents = [" ".join(words[i] for i in picks[start : start + 400]) for start in range(0, picks.size, 400)]

    result = corpus_indicators(accumulate(documents), None)

    assert result["zipf_exponent"] == pytest.approx(1.0, abs=0.05)


def test_near_duplicate_rate_with_planted_copies():
    rng = np.random.default_rng(5)
    originals = MarkovCorpus(seed=2, filler_words=20_000).documents(1_600, mean_words=200)
    copied = originals[:200]
    edited = []
    for text in originals[200:400]:
        words = text.split()
        index = int(rng.integers(0, len(words) - 1))
        words[index], words[index + 1] = words[index + 1], words[index]
        edited.append(" ".join(words).upper() if index % 2 else "  ".join(words))
    documents = originals + copied + edited
    order = rng.permutation(len(documents))
    documents = [documents[i] for i in order]
    truth = 800 / len(documents)

    result = corpus_indicators(accumulate(documents), None)

    assert result["near_duplicate_sample"] >= 1000
    assert abs(result["near_duplicate_rate"] - truth) <= 3 * result["near_duplicate_rate_se"] + 0.02


def test_document_sample_same_for_any_batch_size(diverse):
    # Copies share a (minimum, id) pair, so the sample counts them in its multiplicity.
    # Batches larger than the sample make the sketch pick documents before it computes
    # their signatures; small batches never do.
    documents = diverse[:1_500] + diverse[:300]

    def sample(batch):
        sketch = accumulate(documents, batch=batch).diversity
        return {name: array.tobytes() for name, array in sketch.to_frame_parts()[1].items()}

    one_batch, small_batches = sample(len(documents)), sample(100)

    assert one_batch == small_batches
    assert sum(np.frombuffer(one_batch["multiplicity"], dtype=np.int64)) > 1_024


def test_no_near_duplicates_in_distinct_text(diverse_bundle):
    result = corpus_indicators(diverse_bundle, None)
    assert result["near_duplicate_rate"] <= 0.005


def test_compression_ratio_sampled_mean(diverse, diverse_bundle):
    batch = TextBatch.from_strings(diverse)
    ids = content_ids(batch)
    ratios = []
    for document in np.flatnonzero(ids % np.uint64(COMPRESSION_SAMPLING) == 0).tolist():
        text = batch.data[batch.offsets[document] : batch.offsets[document + 1]].tobytes()
        ratios.append(len(zlib.compress(text, 6)) / len(text))

    result = corpus_indicators(diverse_bundle, None)

    assert result["compression_sample"] == len(ratios) > 30
    assert result["compression_ratio"] == pytest.approx(np.mean(ratios), rel=1e-12)
    assert result["compression_ratio_se"] == pytest.approx(np.std(ratios, ddof=1) / math.sqrt(len(ratios)), rel=1e-9)


def test_diversity_sketch_merges_exactly_in_any_split(diverse):
    whole = accumulate(diverse).diversity
    parts = [accumulate(diverse[start : start + 700], shard_id=f"s{start}").diversity for start in range(0, 2_500, 700)]
    left = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3]))
    right = parts[3].merge(parts[2]).merge(parts[1]).merge(parts[0])

    def frame(sketch):
        meta, arrays = sketch.to_frame_parts()
        return json.dumps(meta, sort_keys=True), {name: array.tobytes() for name, array in arrays.items()}

    assert frame(left) == frame(right)
    # The samples do not depend on how the documents were split into shards. The
    # compression moments do, in their last bits, because each batch contributes
    # its own float64 mean (see scanner.sketches.moments).
    assert frame(left)[1] == frame(whole)[1]
    assert left.compression.count == whole.compression.count
    assert left.compression.mean == pytest.approx(whole.compression.mean, rel=1e-12)


def narrow_documents(reference: list[str], count: int, seed: int) -> list[str]:
    """Return text resampled from a narrow generator.

    The generator uses only the 200 most frequent words of `reference`, with their
    frequencies. It writes a pool of 30 documents that repeat a 40-word passage
    three times, as a degenerate model loops. Each output is a copy of a pool
    document with one word dropped."""
    frequencies = collections.Counter(word for text in reference for word in text.lower().split())
    head = frequencies.most_common(200)
    words = [word for word, _ in head]
    weights = np.array([count for _, count in head], dtype=np.float64)
    rng = np.random.default_rng(seed)
    pool = [list(rng.choice(words, size=40, p=weights / weights.sum())) * 3 for _ in range(30)]
    out = []
    for _ in range(count):
        chosen = list(pool[int(rng.integers(0, len(pool)))])
        del chosen[int(rng.integers(0, len(chosen)))]
        out.append(" ".join(chosen))
    return out


SHARES = (0.0, 0.25, 0.5, 0.75)


@pytest.fixture(scope="module")
def collapse_scan(tmp_path_factory):
    directory = tmp_path_factory.mktemp("snapshots")
    human = MarkovCorpus(seed=7, filler_words=30_000)
    reference = human.documents(400, mean_words=150)
    rng = np.random.default_rng(8)
    for month, share in enumerate(SHARES, start=1):
        narrow = round(400 * share)
        documents = human.documents(400 - narrow, mean_words=150) + narrow_documents(reference, narrow, month)
        documents = [documents[i] for i in rng.permutation(len(documents))]
        with open(directory / f"snapshot-{month}.jsonl", "w", encoding="utf-8") as handle:
            for number, text in enumerate(documents):
                handle.write(json.dumps({"id": number, "text": text, "date": f"2025-{month:02d}-15"}) + "\n")
    out = tmp_path_factory.mktemp("out")
    config = ScanConfig(sources=[str(directory)], out=str(out), sketch=SETTINGS, group_by="snapshot", num_workers=2)
    return build_result(run_scan(config, progress_enabled=False))


# Direction of each indicator as more narrow text is mixed in, and the smallest
# change from the first to the last snapshot that the test accepts.
COLLAPSE = {
    "distinct_ratio_3": (-1, 0.15),
    "unigram_entropy_bits": (-1, 0.5),
    "hapax_token_share": (-1, 0.01),
    "tail_mass": (-1, 0.1),
    "near_duplicate_rate": (+1, 0.3),
    "compression_ratio": (-1, 0.02),
}


def indicator_value(indicators, name: str) -> float:
    if name == "distinct_ratio_3":
        return indicators.distinct_ratio["3"]
    return getattr(indicators, name)


@pytest.mark.parametrize("name", sorted(COLLAPSE))
def test_indicators_follow_a_planted_collapse(collapse_scan, name):
    direction, size = COLLAPSE[name]
    groups = [collapse_scan.groups[f"2025-{month:02d}"] for month in range(1, len(SHARES) + 1)]
    values = [indicator_value(group.indicators, name) for group in groups]

    steps = np.diff(values) * direction
    assert np.all(steps > 0), f"{name} does not move monotonically: {values}"
    assert (values[-1] - values[0]) * direction >= size, f"{name} moves too little: {values}"


def test_methods_and_group_without_narrow_text(collapse_scan):
    assert collapse_scan.indicators.methods is not None
    assert set(collapse_scan.indicators.methods) >= {"unigram_entropy_bits", "near_duplicate_rate"}
    assert collapse_scan.groups["2025-01"].indicators.near_duplicate_rate <= 0.01


def test_profile_divergence_rises_with_narrow_text():
    human = MarkovCorpus(seed=12, filler_words=10_000)
    reference = human.documents(800, mean_words=150)
    exact = collections.Counter(word for text in reference for word in text.lower().replace(",", " ").replace(".", " ").split())
    words = [word for word, _ in exact.most_common(300)]
    counts = np.array([exact[word] for word in words], dtype=np.float64)
    human_probability = np.clip(counts / counts.sum(), 1e-6, 0.5)
    profile = ReferenceProfile(
        words=words,
        generators=["narrow"],
        human_probability=human_probability,
        generator_probability=np.full((1, len(words)), 0.01),
        tokenizer={"keep_punctuation": False},
        grid={"bins": 20, "score_range": [-30.0, 30.0], "replicates": 4},
    )
    settings = SETTINGS
    scorer = ProfileScorer(profile, settings)

    divergences = []
    for share in SHARES:
        narrow = round(600 * share)
        documents = human.documents(600 - narrow, mean_words=150) + narrow_documents(reference, narrow, 3)
        result = corpus_indicators(accumulate(documents, scorer=scorer), profile.human_probability)
        divergences.append((result["profile_divergence_bits"], result["profile_divergence_se"]))

    values = [value for value, _ in divergences]
    assert np.all(np.diff(values) > 0), values
    assert values[-1] - values[0] > 10 * max(se for _, se in divergences)


def test_indicators_of_an_empty_sketch_are_none():
    empty = accumulate([""]).diversity
    result = indicators_of(empty, np.empty(0, dtype=np.uint64), {1: (0.0, 0)}, 0.01, None, 0.0, None)
    assert result["unigram_entropy_bits"] is None
    assert result["near_duplicate_rate"] is None
    assert result["compression_ratio"] is None
    assert result["distinct_ratio"] == {"1": None}


def test_kernel_minima_are_the_minhash_keys(diverse, diverse_bundle):
    settings = SETTINGS
    minhasher = MinHasher(MINHASH_PERMUTATIONS, SHINGLE_ORDER, settings.seed)
    batch = TextBatch.from_strings(diverse)
    tokens = tokenize_batch(batch, settings)
    first = minhasher.first_values(tokens.hashes, tokens.document_offsets)
    ids = content_ids(batch)
    pairs = sorted(set(zip(first.tolist(), ids.tolist())))[: diverse_bundle.diversity.document_capacity]

    sketch = diverse_bundle.diversity
    assert list(zip(sketch.minima.tolist(), sketch.ids.tolist())) == pairs
    assert np.array_equal(sketch.signatures, minhasher.signatures(tokens.hashes, tokens.document_offsets)[
        [ids.tolist().index(i) for i in sketch.ids.tolist()]
    ])


def test_report_lists_corpus_and_group_indicators(collapse_scan):
    page = render_report(collapse_scan)

    section = page[page.index("Diversity and collapse indicators") :]
    entropy = f"{collapse_scan.indicators.unigram_entropy_bits:,.4g}"
    assert "unigram entropy (bits)" in section
    assert entropy in section
    for month in range(1, len(SHARES) + 1):
        near = collapse_scan.groups[f"2025-{month:02d}"].indicators.near_duplicate_rate
        assert f"<td>2025-{month:02d}</td>" in section
        assert f"{near:,.4g}" in section


def test_group_sketches_only_when_asked_for(diverse):
    groups = (np.arange(500, dtype=np.int64) % 3, ["a.example", "b.example", "c.example"])
    texts = pa.array(diverse[:500], type=pa.large_string())
    with_groups = ShardAccumulator(SETTINGS, "with")
    without_groups = ShardAccumulator(SETTINGS, "without", group_indicators=False)
    with_groups.add_texts(texts, groups)
    without_groups.add_texts(texts, groups)

    assert sorted(with_groups.finish().group_diversity) == ["a.example", "b.example", "c.example"]
    bundle = without_groups.finish()
    assert bundle.group_diversity == {}
    assert sorted(bundle.groups) == ["a.example", "b.example", "c.example"]
