"""The fingerprint audit: block sketches, the permutation test, its power and level, and the command.

Data: number sequences from the demo's human Markov chain (tokens "0" to "99")
and a teacher copy whose stationary token frequencies are at total variation
0.02 from the human ones. The repeated power and level checks call the
driver-side statistic on block tables built in process, without Ray. One test
runs the whole command on an embedded local Ray.
"""

import gzip
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scanner import cli
from scanner.audit import (
    AuditAccumulator,
    AuditSettings,
    AuditSide,
    EmptyDatasetError,
    block_seed,
    contributing_ngrams,
    permutation_test,
)
from scanner.batch import TextBatch
from scanner.demo import NUMBER_SEED, NumberChain
from scanner.settings import SketchSettings
from scanner.sketches.ngram_blocks import NgramBlocks
from scanner.tokens import tokenize_batch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKETCH = SketchSettings(min_order=1, max_order=2)
SETTINGS = AuditSettings()
# The documented sample size: 400 documents of 100 to 300 tokens per side.
DOCUMENTS = 400
DISTANCE = 0.02
FAVOURED = range(20, 40, 2)
ALPHA = 0.05
POWER_REPEATS = 30
NULL_REPEATS = 100


@pytest.fixture(scope="module")
def chains() -> tuple[NumberChain, NumberChain]:
    human = NumberChain.human(NUMBER_SEED)
    return human, human.biased_to_distance(FAVOURED, DISTANCE)


def block_table(texts: list[str], settings: AuditSettings = SETTINGS) -> np.ndarray:
    batch = TextBatch.from_strings(texts)
    blocks = NgramBlocks(settings.blocks, settings.buckets)
    blocks.update(
        tokenize_batch(batch, SKETCH), batch.offsets, SKETCH.min_order, SKETCH.max_order, SKETCH.seed, block_seed(SKETCH)
    )
    return blocks.counts


def side_of(texts: list[str], shard_id: str) -> AuditSide:
    accumulator = AuditAccumulator(SKETCH, SETTINGS, shard_id)
    accumulator.add_batch(TextBatch.from_strings(texts))
    return accumulator.finish()


def write_jsonl(directory: pathlib.Path, texts: list[str], files: int = 2) -> None:
    directory.mkdir(parents=True)
    for part in range(files):
        with gzip.open(directory / f"part-{part}.jsonl.gz", "wt", encoding="utf-8") as handle:
            for text in texts[part::files]:
                handle.write(json.dumps({"text": text}) + "\n")


def test_teacher_at_set_distance(chains):
    human, teacher = chains

    distance = 0.5 * np.abs(teacher.stationary() - human.stationary()).sum()

    assert distance == pytest.approx(DISTANCE, abs=1e-6)


def test_blocks_count_every_ngram():
    texts = ["1 2 3", "4 5", "6"]

    counts = block_table(texts)

    # Unigrams and bigrams: 3 + 2, 2 + 1, 1 + 0.
    assert counts.sum() == 9


def test_block_follows_document_text():
    settings = AuditSettings(blocks=8, buckets=64)

    alone = block_table(["7 8 9"], settings)
    among_others = block_table(["1 2", "7 8 9", "3 4 5 6"], settings) - block_table(["1 2", "3 4 5 6"], settings)

    assert np.array_equal(alone, among_others)


def test_side_merge_ignores_order(chains):
    human, _ = chains
    rng = np.random.default_rng(1)
    parts = [side_of(human.documents(30, rng), f"shard-{index}") for index in range(4)]

    left = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3]))
    right = parts[3].merge(parts[1]).merge(parts[0]).merge(parts[2])

    assert left.to_bytes() == right.to_bytes()


def test_side_bytes_round_trip(chains):
    human, _ = chains
    side = side_of(human.documents(20, np.random.default_rng(2)), "shard-0")

    restored = AuditSide.from_bytes(side.to_bytes())

    assert restored.blocks == side.blocks
    assert restored.bundle.documents == 20


def test_permutation_test_is_seeded(chains):
    human, teacher = chains
    rng = np.random.default_rng(3)
    baseline = block_table(human.documents(100, rng))
    candidate = block_table(teacher.documents(100, rng))

    first = permutation_test(baseline, candidate, 199, seed=5)
    second = permutation_test(baseline, candidate, 199, seed=5)

    assert first == second


def test_permutation_test_rejects_empty_side():
    baseline = np.ones((4, 16), dtype=np.int64)

    with pytest.raises(EmptyDatasetError, match="candidate dataset has no n-grams"):
        permutation_test(baseline, np.zeros_like(baseline), 99, seed=0)


def test_power_at_documented_size(chains):
    human, teacher = chains
    rng = np.random.default_rng(2026)
    detected = 0
    for repeat in range(POWER_REPEATS):
        baseline = block_table(human.documents(DOCUMENTS, rng))
        candidate = block_table(teacher.documents(DOCUMENTS, rng))
        test = permutation_test(baseline, candidate, SETTINGS.permutations, seed=repeat)
        detected += test.p_value <= ALPHA

    assert detected / POWER_REPEATS >= 0.9


def test_null_false_positive_rate(chains):
    human, _ = chains
    rng = np.random.default_rng(2027)
    rejected = 0
    for repeat in range(NULL_REPEATS):
        baseline = block_table(human.documents(DOCUMENTS, rng))
        candidate = block_table(human.documents(DOCUMENTS, rng))
        test = permutation_test(baseline, candidate, SETTINGS.permutations, seed=repeat)
        rejected += test.p_value <= ALPHA

    assert rejected / NULL_REPEATS <= ALPHA


@pytest.fixture(scope="module")
def audit_run(chains, tmp_path_factory):
    """One `corpus-scanner audit` of human against teacher documents, on an embedded local Ray."""
    human, teacher = chains
    rng = np.random.default_rng(11)
    data = tmp_path_factory.mktemp("audit-data")
    write_jsonl(data / "baseline", human.documents(DOCUMENTS, rng), files=3)
    write_jsonl(data / "candidate", teacher.documents(DOCUMENTS, rng), files=2)
    out = tmp_path_factory.mktemp("audit-out") / "run"
    completed = subprocess.run(
        [
            sys.executable, "-m", "scanner", "audit",
            "--baseline", str(data / "baseline"), "--candidate", str(data / "candidate"),
            "--out", str(out), "--num-workers", "2", "--log-level", "warning",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return completed, out


def test_cli_exits_0(audit_run):
    completed, _ = audit_run

    assert completed.returncode == 0, completed.stderr


def test_cli_writes_audit_fields(audit_run):
    _, out = audit_run

    result = json.loads((out / "audit.json").read_text())

    assert isinstance(result["divergence"], float)
    assert result["divergence"] > result["null_divergence"]
    assert result["p_value"] <= ALPHA
    assert result["differ"] is True
    assert result["alpha"] == ALPHA
    assert result["method"]["permutations"] == 999
    assert result["baseline"]["documents"] == DOCUMENTS
    assert result["candidate"]["documents"] == DOCUMENTS
    assert result["baseline"]["shards"] == 3
    assert result["candidate"]["tokens"] > 100 * DOCUMENTS


def test_cli_top_ngram_is_favoured(audit_run):
    _, out = audit_run

    top = json.loads((out / "audit.json").read_text())["top_ngrams"]
    first = top[0]

    assert len(top) == 20
    assert first["more_frequent_in"] == "candidate"
    assert int(first["ngram"].split()[-1]) in FAVOURED
    assert first["candidate_count"] > first["baseline_count"]
    assert first["contribution"] >= top[-1]["contribution"]


def test_cli_prints_summary(audit_run):
    completed, out = audit_run

    assert "decision:        the datasets differ" in completed.stdout
    assert str(out / "audit.json") in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--alpha", "1.5"], "invalid --alpha 1.5"),
        (["--blocks", "1"], "invalid --blocks 1"),
        (["--permutations", "5"], "invalid --permutations 5"),
        (["--buckets", "8"], "invalid --buckets 8"),
        (["--ngram-orders", "3-1"], "invalid n-gram orders '3-1'"),
    ],
)
def test_cli_invalid_option_exits_2(tmp_path, capsys, arguments, message):
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"text": "1 2 3"}) + "\n")

    code = cli.main(["audit", "--baseline", str(source), "--candidate", str(source), "--out", str(tmp_path / "out"), *arguments])

    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_source_exits_2(tmp_path, capsys):
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"text": "1 2 3"}) + "\n")
    missing = tmp_path / "absent"

    code = cli.main(["audit", "--baseline", str(source), "--candidate", str(missing), "--out", str(tmp_path / "out")])

    assert code == 2
    assert f"source {str(missing)!r} matched no objects" in capsys.readouterr().err


def test_cli_missing_candidate_exits_2(tmp_path):
    code = cli.main(["audit", "--baseline", str(tmp_path), "--out", str(tmp_path / "out")])

    assert code == 2


def test_identical_sides_list_no_contributing_ngrams(chains):
    human, _ = chains
    texts = human.documents(100, np.random.default_rng(3))
    side = side_of(texts, "same")

    assert contributing_ngrams(side.bundle, side.bundle, 20) == []
