"""Registry of generated datasets: Bloom filter, build, scan with --registry, on a real local Ray and moto S3.

The target corpus plants contamination at known rates. It contains exact
copies of registered documents and lightly edited copies (a word swap, a
deletion, changed whitespace and case). It also contains heavily edited copies
(each word replaced with chance 1/6), unrelated documents that embed a 20-word
passage of a registered document, and unrelated documents. The truth is
computed exactly from the tokens: Jaccard similarity of 5-word shingle sets,
and shared 13-grams.
"""

import json
import pathlib
import random
import shutil

import numpy as np
import pytest
import ray

from kernels.bloom import bloom_add_ngrams, bloom_match_documents
from scanner.bundle import Bundle, BundleMismatchError
from scanner.cli import main
from scanner.registry import bloom_size, texts_to_tokens
from scanner.settings import SketchSettings

THRESHOLD = 0.8
SHINGLE_ORDER = 5
NGRAM_ORDER = 13
GROUPS = ("example.com", "example.org")  # registered domains, the groups of --group-by domain


class Words:
    """Random documents over a vocabulary of made-up words."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self.vocabulary = [
            "".join(self.random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(self.random.randint(3, 9)))
            for _ in range(8_000)
        ]

    def words(self, count: int) -> list[str]:
        return [self.random.choice(self.vocabulary) for _ in range(count)]

    def document(self) -> str:
        return " ".join(self.words(self.random.randint(150, 300)))

    def light_edit(self, text: str) -> str:
        """Swap two neighbours, delete a word, and change case and whitespace."""
        words = text.split()
        position = self.random.randrange(len(words) - 1)
        words[position], words[position + 1] = words[position + 1], words[position]
        del words[self.random.randrange(len(words))]
        for _ in range(5):
            position = self.random.randrange(len(words))
            words[position] = words[position].upper()
        separators = [self.random.choice((" ", "  ", "\n", "\t ")) for _ in words]
        return "".join(word + separator for word, separator in zip(words, separators)).strip()

    def heavy_edit(self, text: str) -> str:
        """Replace each word with chance 1/6: about 0.25 Jaccard similarity, but some 13-grams survive."""
        return " ".join(self.words(1)[0] if self.random.random() < 1 / 6 else word for word in text.split())

    def with_passage(self, text: str) -> str:
        words = text.split()
        start = self.random.randrange(len(words) - 20)
        return " ".join(self.words(100) + words[start : start + 20] + self.words(100))


def write_jsonl(path: pathlib.Path, texts: list[str], urls: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    urls = urls or [f"https://{GROUPS[0]}/{index}" for index in range(len(texts))]
    path.write_text("".join(json.dumps({"text": text, "url": url}) + "\n" for text, url in zip(texts, urls)))


def token_lists(texts: list[str]) -> list[list[str]]:
    return texts_to_tokens(texts, SketchSettings()).texts()


def shingles(tokens: list[str], order: int) -> set[tuple[str, ...]]:
    if len(tokens) < order:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[start : start + order]) for start in range(len(tokens) - order + 1)}


def ngrams(tokens: list[str], order: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[start : start + order]) for start in range(len(tokens) - order + 1)}


def true_flags(registered: list[str], targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return, per target, whether its best Jaccard is >= THRESHOLD and whether it shares a 13-gram."""
    registered_shingles = [shingles(tokens, SHINGLE_ORDER) for tokens in token_lists(registered)]
    owners: dict[tuple, set[int]] = {}
    for index, items in enumerate(registered_shingles):
        for item in items:
            owners.setdefault(item, set()).add(index)
    registered_ngrams = set().union(*(ngrams(tokens, NGRAM_ORDER) for tokens in token_lists(registered)))

    near, long_ngram = [], []
    for tokens in token_lists(targets):
        items = shingles(tokens, SHINGLE_ORDER)
        candidates = set().union(*(owners.get(item, set()) for item in items)) if items else set()
        best = max(
            (len(items & registered_shingles[c]) / len(items | registered_shingles[c]) for c in candidates),
            default=0.0,
        )
        near.append(best >= THRESHOLD)
        long_ngram.append(bool(ngrams(tokens, NGRAM_ORDER) & registered_ngrams))
    return np.array(near), np.array(long_ngram)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two registered datasets and a target with planted copies; returns paths and the true shares."""
    root = tmp_path_factory.mktemp("registry-corpora")
    words = Words(seed=11)
    first = [words.document() for _ in range(200)]
    second = [words.document() for _ in range(120)]
    write_jsonl(root / "first" / "part-0.jsonl", first[:100])
    write_jsonl(root / "first" / "part-1.jsonl", first[100:])
    write_jsonl(root / "second" / "part-0.jsonl", second)

    planted = (
        first[:120]  # exact copies
        + [words.light_edit(text) for text in first[120:200]]
        + [words.heavy_edit(text) for text in second[:40]]
        + [words.with_passage(text) for text in second[40:80]]
        + second[80:120]  # exact copies of the second dataset
    )
    target = planted + [words.document() for _ in range(1_000)]
    words.random.shuffle(target)
    urls = [f"https://{GROUPS[index % 2]}/{index}" for index in range(len(target))]
    for part in range(3):
        write_jsonl(root / "target" / f"part-{part}.jsonl", target[part::3], urls[part::3])

    truth = {}
    for name, registered in (("first", first), ("second", second)):
        near, long_ngram = true_flags(registered, target)
        group_of = np.array([index % 2 for index in range(len(target))])
        truth[name] = {
            "near": near.mean(),
            "long": long_ngram.mean(),
            "near_count": int(near.sum()),
            "long_count": int(long_ngram.sum()),
            "groups": {
                GROUPS[code]: (near[group_of == code].mean(), long_ngram[group_of == code].mean()) for code in (0, 1)
            },
        }
    return root, truth


@pytest.fixture(scope="module")
def ray_cluster(s3_endpoint):
    """One local Ray for the module, started after the S3 fixture put its dummy keys in the environment."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 << 20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def registry(corpora, ray_cluster, tmp_path_factory) -> str:
    root, _ = corpora
    directory = tmp_path_factory.mktemp("registry") / "registry"
    for name in ("first", "second"):
        assert main(["registry", "build", "--name", name, str(root / name), "--out", str(directory)]) == 0
    return str(directory)


def scan(sources, out, registry, *options) -> dict:
    arguments = ["scan", *map(str, sources), "--out", str(out), "--registry", registry, "--no-progress"]
    assert main([*arguments, "--group-by", "domain", *options]) == 0
    return json.loads((pathlib.Path(out) / "result.json").read_text())


def without_registry_url(groups: dict) -> dict:
    return {
        name: {**counts, "contamination": {**counts["contamination"], "registry_url": None}}
        for name, counts in groups.items()
    }


def test_bloom_false_positive_rate_as_stated():
    rng = np.random.default_rng(5)
    items = 20_000
    num_bits, num_hashes = bloom_size(items, 0.01)
    bits = np.zeros(num_bits // 64, dtype=np.uint64)
    inserted = rng.integers(0, 2**63, size=items + 1, dtype=np.uint64)
    bloom_add_ngrams(bits, np.uint64(num_bits), num_hashes, inserted, np.array([0, items + 1]), 2, np.uint64(1))
    queries = 200_000
    absent = rng.integers(0, 2**63, size=2 * queries, dtype=np.uint64)
    offsets = np.arange(0, 2 * queries + 1, 2, dtype=np.int64)

    matched, counted = bloom_match_documents(bits, np.uint64(num_bits), num_hashes, absent, offsets, 2, np.uint64(1))
    stated = (np.unpackbits(bits.view(np.uint8)).sum() / num_bits) ** num_hashes
    measured = matched.mean()
    standard_error = np.sqrt(stated * (1 - stated) / queries)

    assert np.all(counted == 1)
    assert stated < 0.012
    assert abs(measured - stated) <= 4 * standard_error


def test_bloom_finds_every_inserted_ngram():
    rng = np.random.default_rng(6)
    tokens = rng.integers(0, 2**63, size=500, dtype=np.uint64)
    num_bits, num_hashes = bloom_size(500, 1e-6)
    bits = np.zeros(num_bits // 64, dtype=np.uint64)
    bloom_add_ngrams(bits, np.uint64(num_bits), num_hashes, tokens, np.array([0, 500]), 13, np.uint64(2))
    # Every window of 13 tokens as its own document.
    windows = np.concatenate([tokens[start : start + 13] for start in range(488)])
    offsets = np.arange(0, windows.shape[0] + 1, 13, dtype=np.int64)

    matched, _ = bloom_match_documents(bits, np.uint64(num_bits), num_hashes, windows, offsets, 13, np.uint64(2))

    assert matched.all()


def contaminated_bundle(shard: str, counters: list[int], digest: str = "d1") -> Bundle:
    values = np.array(counters, dtype=np.int64)
    return Bundle(
        settings=SketchSettings(),
        shard_ids=(shard,),
        contamination={"first": values, "second": 2 * values},
        group_contamination={"example.com": {"first": values, "second": values}},
        registry_digest=digest,
    )


def test_bundle_contamination_merges_and_round_trips():
    merged = contaminated_bundle("a", [1, 2, 30]).merge(contaminated_bundle("b", [4, 5, 60]))
    restored = Bundle.from_bytes(merged.to_bytes())

    assert restored.registry_digest == "d1"
    assert restored.contamination["first"].tolist() == [5, 7, 90]
    assert restored.contamination["second"].tolist() == [10, 14, 180]
    assert restored.group_contamination["example.com"]["second"].tolist() == [5, 7, 90]
    assert restored.to_bytes() == merged.to_bytes()


def test_bundle_merge_rejects_other_registry():
    with pytest.raises(BundleMismatchError, match="different registries"):
        contaminated_bundle("a", [1, 2, 3]).merge(contaminated_bundle("b", [1, 2, 3], digest="d2"))


def test_planted_edits_keep_their_class(corpora):
    _, truth = corpora
    # 120 exact and 80 lightly edited copies of the first dataset are near duplicates. The heavy edits
    # and the embedded passages of the second are not, but they contain its 13-grams.
    assert truth["first"]["near_count"] == 200
    assert truth["first"]["long_count"] == 200
    assert truth["second"]["near_count"] == 40
    assert truth["second"]["long_count"] == 120


def test_shares_match_truth(corpora, registry, tmp_path):
    root, truth = corpora
    result = scan([root / "target"], tmp_path / "out", registry)
    contamination = result["contamination"]

    assert contamination["near_duplicate_threshold"] == THRESHOLD
    for name in ("first", "second"):
        measured = contamination["registry"][name]
        assert measured["documents"] == 1_320
        assert abs(measured["near_duplicate_share"] - truth[name]["near"]) <= 0.01, name
        assert abs(measured["long_ngram_share"] - truth[name]["long"]) <= 0.01, name
        for group, (near, long_ngram) in truth[name]["groups"].items():
            measured_group = result["groups"][group]["contamination"]["registry"][name]
            assert abs(measured_group["near_duplicate_share"] - near) <= 0.01, (name, group)
            assert abs(measured_group["long_ngram_share"] - long_ngram) <= 0.01, (name, group)


def test_no_false_matches_beyond_rate(corpora, registry, tmp_path):
    root, truth = corpora
    result = scan([root / "target"], tmp_path / "out", registry)

    for name in ("first", "second"):
        measured = result["contamination"]["registry"][name]
        false_long = measured["long_ngram_documents"] - truth[name]["long_count"]
        expected_false = measured["false_match_share_bound"] * measured["documents"]
        assert measured["ngram_false_positive_rate"] <= 2e-6
        assert measured["false_match_share_bound"] < 0.001
        # The bound allows a fraction of one false document; a second one would break the stated rate.
        assert 0 <= false_long <= max(1, round(3 * expected_false)), name
        assert measured["near_duplicate_documents"] == truth[name]["near_count"], name


def test_groups_sum_to_corpus(corpora, registry, tmp_path):
    root, _ = corpora
    result = scan([root / "target"], tmp_path / "out", registry)

    for name in ("first", "second"):
        for counter in ("near_duplicate_documents", "long_ngram_documents", "long_ngrams", "documents"):
            total = sum(group["contamination"]["registry"][name][counter] for group in result["groups"].values())
            assert total == result["contamination"]["registry"][name][counter], (name, counter)


def test_one_and_two_workers_agree(corpora, registry, tmp_path):
    root, _ = corpora
    one = scan([root / "target"], tmp_path / "one", registry, "--num-workers", "1")
    two = scan([root / "target"], tmp_path / "two", registry, "--num-workers", "2")

    assert one["shards"]["completed"] == 3
    assert one["contamination"] == two["contamination"]
    assert one["groups"] == two["groups"]


def test_local_and_s3_registry_agree(corpora, registry, ray_cluster, tmp_path, s3_endpoint, s3_client, s3_bucket):
    root, _ = corpora
    for path in sorted((root / "target").iterdir()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"target/{path.name}", Body=path.read_bytes())
    s3_registry = f"s3://{s3_bucket}/registry"
    for name in ("first", "second"):
        arguments = ["registry", "build", "--name", name, str(root / name), "--out", s3_registry]
        assert main([*arguments, "--endpoint-url", s3_endpoint]) == 0

    local = scan([root / "target"], tmp_path / "local", registry)
    remote = scan(
        [f"s3://{s3_bucket}/target/"], tmp_path / "remote", s3_registry, "--endpoint-url", s3_endpoint
    )

    keys = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="registry/")["Contents"]
    assert {item["Key"] for item in keys} >= {"registry/registry.json", "registry/datasets/first/bloom.npy"}
    assert remote["contamination"]["registry_url"] == s3_registry
    assert remote["contamination"]["registry"] == local["contamination"]["registry"]
    assert without_registry_url(remote["groups"]) == without_registry_url(local["groups"])


def test_extended_registry_reports_each_dataset(corpora, ray_cluster, tmp_path):
    root, truth = corpora
    directory = str(tmp_path / "registry")
    assert main(["registry", "build", "--name", "first", str(root / "first"), "--out", directory]) == 0
    alone = scan([root / "target"], tmp_path / "alone", directory)
    assert main(["registry", "build", "--name", "second", str(root / "second"), "--out", directory]) == 0
    extended = scan([root / "target"], tmp_path / "extended", directory)

    assert list(alone["contamination"]["registry"]) == ["first"]
    assert list(extended["contamination"]["registry"]) == ["first", "second"]
    assert extended["contamination"]["registry"]["first"] == alone["contamination"]["registry"]["first"]
    second = extended["contamination"]["registry"]["second"]
    assert abs(second["near_duplicate_share"] - truth["second"]["near"]) <= 0.01


def test_report_has_contamination_section(corpora, registry, tmp_path):
    root, _ = corpora
    scan([root / "target"], tmp_path / "out", registry)
    page = (tmp_path / "out" / "report.html").read_text()

    assert "<h2>Contamination</h2>" in page
    assert "<td>second</td>" in page


def test_name_clash_is_rejected(corpora, registry, capsys):
    root, _ = corpora
    code = main(["registry", "build", "--name", "first", str(root / "first"), "--out", registry])

    assert code == 2
    assert "--replace" in capsys.readouterr().err


def test_replace_rebuilds_dataset(corpora, ray_cluster, tmp_path):
    root, _ = corpora
    directory = str(tmp_path / "registry")
    assert main(["registry", "build", "--name", "first", str(root / "first"), "--out", directory]) == 0
    arguments = ["registry", "build", "--name", "first", str(root / "second"), "--out", directory, "--replace"]

    assert main(arguments) == 0
    manifest = json.loads((tmp_path / "registry" / "datasets" / "first" / "manifest.json").read_text())
    assert manifest["documents"] == 120


def test_missing_registry_is_rejected(corpora, tmp_path, capsys):
    root, _ = corpora
    arguments = ["scan", str(root / "target"), "--out", str(tmp_path / "out"), "--registry", str(tmp_path / "none")]

    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "registry.json" in error
    assert "registry build" in error


@pytest.mark.parametrize(
    "file_name, content",
    [
        ("registry.json", b"{not json"),
        ("registry.json", b'{"format": "something else", "datasets": []}'),
        ("datasets/first/manifest.json", b'{"name": "first"}'),
        ("registry.json", b'{"format": "corpus-scanner-registry", "format_version": 1, "datasets": ["../up"]}'),
    ],
)
def test_corrupt_manifest_is_rejected(corpora, registry, tmp_path, capsys, file_name, content):
    root, _ = corpora
    copy = tmp_path / "registry"
    shutil.copytree(registry, copy)
    (copy / file_name).write_bytes(content)
    arguments = ["scan", str(root / "target"), "--out", str(tmp_path / "out"), "--registry", str(copy)]

    assert main(arguments) == 2
    assert file_name in capsys.readouterr().err


def test_corrupt_array_fails_shards(corpora, registry, ray_cluster, tmp_path):
    root, _ = corpora
    copy = tmp_path / "registry"
    shutil.copytree(registry, copy)
    bloom = copy / "datasets" / "second" / "bloom.npy"
    data = bytearray(bloom.read_bytes())
    data[-1] ^= 0xFF
    bloom.write_bytes(bytes(data))
    arguments = ["scan", str(root / "target"), "--out", str(tmp_path / "out"), "--registry", str(copy)]

    assert main([*arguments, "--no-progress"]) == 3
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["shards"]["failed"] == 3
    assert "bloom.npy does not match the checksum" in result["shards"]["failures"][0]["error"]


def test_invalid_bands_are_rejected(corpora, tmp_path, capsys):
    root, _ = corpora
    arguments = ["registry", "build", "--name", "x", str(root / "first"), "--out", str(tmp_path / "r")]

    assert main([*arguments, "--bands", "5"]) == 2
    assert "invalid --bands 5" in capsys.readouterr().err


def test_invalid_name_is_rejected(corpora, tmp_path, capsys):
    root, _ = corpora
    arguments = ["registry", "build", "--name", "../up", str(root / "first"), "--out", str(tmp_path / "r")]

    assert main(arguments) == 2
    assert "invalid --name '../up'" in capsys.readouterr().err


def test_tokenizer_mismatch_is_rejected(corpora, registry, tmp_path, capsys):
    root, _ = corpora
    arguments = ["scan", str(root / "target"), "--out", str(tmp_path / "out"), "--registry", registry]

    assert main([*arguments, "--seed", "7"]) == 2
    assert "seed" in capsys.readouterr().err
