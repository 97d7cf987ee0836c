"""Synthetic share end to end: a profile from labelled references, then scans of held-out text."""

import hashlib
import json
import random

import pytest

from scanner.config import ScanConfig
from scanner.profile import ProfileMismatchError, ReferenceProfile
from scanner.profile_build import ProfileBuildConfig, build_profile
from scanner.result import build_result
from scanner.runner import run_scan
from scanner.settings import SketchSettings
from scanner.storage import StorageOptions

OPEN_MODELS = ("gpt2-xl", "opt-2.7b", "gpt-neo-2.7B", "gpt-j-6B", "gpt-neox-20b")
TRUE_SHARE = 0.25


def reference_side(doc_group: str) -> bool:
    return int(hashlib.sha256(doc_group.encode()).hexdigest(), 16) % 2 == 0


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


@pytest.fixture(scope="module")
def labelled(labelled_corpora, tmp_path_factory):
    """Reference and target files split by source document, with model prefixes dropped."""
    directory = tmp_path_factory.mktemp("labelled")
    reference = {"human": [], "open": []}
    target_human, target_model, seen = [], [], set()
    for line in (labelled_corpora / "xsum.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["generator"] != "human" and row["generator"] not in OPEN_MODELS:
            continue
        # Model rows continue the first words of their human pair; drop that span on both sides.
        text = " ".join(row["text"].split()[max(row["shared_prefix_words"], 30) :])
        if not text:
            continue
        record = {"text": text, "doc_group": row["doc_group"]}
        kind = "human" if row["generator"] == "human" else "open"
        if reference_side(row["doc_group"]):
            reference[kind].append(record)
        elif kind == "open":
            target_model.append(record)
        elif row["doc_group"] not in seen:
            seen.add(row["doc_group"])
            target_human.append(record)

    models = round(TRUE_SHARE / (1 - TRUE_SHARE) * len(target_human))
    target = target_human + random.Random(0).sample(target_model, models)
    write_jsonl(directory / "reference-human.jsonl", reference["human"])
    write_jsonl(directory / "reference-open.jsonl", reference["open"])
    write_jsonl(directory / "target.jsonl", target)
    return directory, models / len(target)


@pytest.fixture(scope="module")
def profile_path(labelled):
    directory, _ = labelled
    config = ProfileBuildConfig(
        human=[str(directory / "reference-human.jsonl")],
        synthetic={"open": [str(directory / "reference-open.jsonl")]},
        out=str(directory / "open.profile"),
        group_field="doc_group",
        num_workers=2,
    )
    profile = build_profile(config)
    profile.save(config.out)
    return config.out


def scan_target(labelled, profile_path, out, **options):
    directory, _ = labelled
    config = ScanConfig(sources=[str(directory / "target.jsonl")], out=str(out), profile=profile_path, **options)
    return run_scan(config, progress_enabled=False)


def test_profile_round_trip(profile_path):
    profile = ReferenceProfile.load(profile_path)

    assert ReferenceProfile.from_bytes(profile.to_bytes()).to_bytes() == profile.to_bytes()
    assert profile.generators == ["open"]
    assert len(profile.words) > 100
    assert profile.build["documents"]["human"]["calibration"] > 100


def test_profile_stores_a_self_check(profile_path):
    check = ReferenceProfile.load(profile_path).build["self_check"]

    assert [row["share"] for row in check["results"]] == [0.0, 0.05, 0.1, 0.25, 0.5]
    assert all(row["runs"] > 0 for row in check["results"])
    assert all(0.0 <= row["coverage"] <= 1.0 for row in check["results"])


def test_profile_rejects_other_tokenizer_settings(profile_path):
    from scanner.scoring import ProfileScorer

    with pytest.raises(ProfileMismatchError, match="keep_punctuation"):
        ProfileScorer(ReferenceProfile.load(profile_path), SketchSettings(keep_punctuation=True))


def test_interval_covers_the_true_share(labelled, profile_path, tmp_path):
    _, truth = labelled

    share = build_result(scan_target(labelled, profile_path, tmp_path / "out", num_workers=2)).synthetic_share

    # NOTE: 333 target documents of open-model text give a wide interval; the accuracy
    # targets need the labelled benchmark, which is not written yet.
    assert share.ci95[0] <= truth <= share.ci95[1]
    assert share.ci95[1] - share.ci95[0] < 0.9


def test_one_two_workers_and_s3_agree(labelled, profile_path, tmp_path, s3_endpoint, s3_client, s3_bucket):
    directory, _ = labelled
    s3_client.put_object(Bucket=s3_bucket, Key="target.jsonl", Body=(directory / "target.jsonl").read_bytes())

    one = scan_target(labelled, profile_path, tmp_path / "one", num_workers=1)
    two = scan_target(labelled, profile_path, tmp_path / "two", num_workers=2)
    remote = run_scan(
        ScanConfig(
            sources=[f"s3://{s3_bucket}/target.jsonl"],
            out=str(tmp_path / "remote"),
            profile=profile_path,
            num_workers=2,
            storage=StorageOptions(endpoint_url=s3_endpoint),
        ),
        progress_enabled=False,
    )

    shares = [build_result(outcome).synthetic_share.model_dump() for outcome in (one, two, remote)]
    assert shares[0] == shares[1] == shares[2]
    assert one.bundle.likelihood.to_bytes() == remote.bundle.likelihood.to_bytes()


def test_group_share_matches_the_whole_corpus(labelled, profile_path, tmp_path):
    result = build_result(scan_target(labelled, profile_path, tmp_path / "out", num_workers=2, group_by="domain"))

    group = result.groups["unknown"]

    assert group.documents == result.documents
    assert group.synthetic_share.estimate == result.synthetic_share.estimate
    assert group.synthetic_share.ci95 == result.synthetic_share.ci95


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("3.14 is pi. Next", ["3.14 is pi.", "Next"]),
        ("日本語。次の文", ["日本語。", "次の文"]),
        ("   ", []),
    ],
)
def test_split_sentences(text, sentences):
    from scanner.scoring import split_sentences

    assert split_sentences(text) == sentences


def test_sentence_unit_scores_each_sentence(labelled, tmp_path):
    from scanner.scoring import split_sentences

    directory, _ = labelled
    config = ProfileBuildConfig(
        human=[str(directory / "reference-human.jsonl")],
        synthetic={"open": [str(directory / "reference-open.jsonl")]},
        out=str(tmp_path / "sentences.profile"),
        group_field="doc_group",
        unit="sentence",
        num_workers=2,
    )
    build_profile(config).save(config.out)

    outcome = scan_target(labelled, config.out, tmp_path / "out", num_workers=2)

    texts = [json.loads(line)["text"] for line in (directory / "target.jsonl").read_text().splitlines()]
    assert ReferenceProfile.load(config.out).unit == "sentence"
    assert outcome.bundle.likelihood.documents == sum(len(split_sentences(text)) for text in texts)
    assert build_result(outcome).synthetic_share is not None


def test_report_shows_the_share(labelled, profile_path, tmp_path):
    from scanner.report import render_report

    result = build_result(scan_target(labelled, profile_path, tmp_path / "out", num_workers=2))

    page = render_report(result)

    assert "<h2>Synthetic share</h2>" in page
    assert f"{result.synthetic_share.estimate:.3f}" in page
    lineage = page[page.index("<h3>Lineage</h3>") :]
    assert f"{result.lineage.human.estimate:.3f}" in lineage


def test_lineage_restates_the_share_per_group(labelled, profile_path, tmp_path):
    result = build_result(scan_target(labelled, profile_path, tmp_path / "out", num_workers=2, group_by="domain"))

    assert result.lineage.human.estimate == pytest.approx(1 - result.synthetic_share.estimate)
    assert result.groups["unknown"].lineage == result.lineage
    parts = result.lineage.human.estimate + result.lineage.unattributed_synthetic.estimate
    parts += sum(part.estimate for part in result.lineage.generators.values())
    assert parts == pytest.approx(1.0, abs=1e-9)
