"""A registry of known model-generated datasets: build, load and match.

A registry is a directory, local or in object storage, that contains many
named datasets:

    DIR/registry.json                        format, version and the dataset names
    DIR/datasets/NAME/manifest.json          parameters, counts and SHA-256 of each array
    DIR/datasets/NAME/signatures.npy         (documents, num_perm) uint64 MinHash signatures
    DIR/datasets/NAME/band_keys.npy          (bands, documents) uint64 LSH band hashes, sorted per band
    DIR/datasets/NAME/band_documents.npy     (bands, documents) int64 document of each band hash
    DIR/datasets/NAME/bloom.npy              uint64 words of a Bloom filter of long word n-grams

Arrays are `.npy` files read with `allow_pickle=False`, and every file is
checked against the SHA-256 in its manifest. `registry build` writes a
dataset's files first and `registry.json` last, so a build that fails never
lists a half-written dataset.

A scan flags a document as a near duplicate of a dataset when its MinHash
signature agrees with a registered document's signature in at least
`threshold * num_perm` positions (the estimated Jaccard similarity of their
word-shingle sets is at or above the threshold). LSH bands find the candidates,
so a pair of similarity s is checked with probability 1 - (1 - s**rows)**bands:
above 0.999 at s = 0.8 with the default 32 bands of 4 rows. A document
contains a registered long n-gram when one of its word n-grams of the
dataset's order tests positive in the Bloom filter. That test has false
positives at the filter's rate per n-gram, and never false negatives.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from kernels.bloom import bloom_add_ngrams, bloom_match_documents, ngram_hashes
from kernels.minhash import band_hashes, near_duplicate_flags
from scanner.batch import TextBatch
from scanner.config import ReadSettings
from scanner.formats import ReadReport
from scanner.plan import Shard, build_plan, read_shard
from scanner.settings import SketchSettings
from scanner.sketches.hll import HyperLogLog
from scanner.sketches.minhash import MinHasher
from scanner.sources import list_objects
from scanner.storage import StorageOptions, filesystem_for, redact_url
from scanner.tokens import Tokens, tokenize_batch

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
FORMAT = "corpus-scanner-registry"
FORMAT_VERSION = 1
ARRAY_FILES = ("signatures.npy", "band_keys.npy", "band_documents.npy", "bloom.npy")
# The tokenizer settings that a scan must share with the registry, because the hashes depend on them.
TOKENIZER_FIELDS = ("seed", "keep_punctuation", "tokenizer", "normalization")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Relative standard errors of the HyperLogLog distinct estimate added to the Bloom filter's size.
_DISTINCT_MARGIN = 3.0


class RegistryError(ValueError):
    """A registry is missing, invalid, or does not fit the request."""


class RegistryBuildConfig(BaseModel):
    """Everything `corpus-scanner registry build` needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="dataset name inside the registry")
    sources: list[str] = Field(min_length=1, description="paths, globs, URLs or @manifest files of the dataset")
    out: str = Field(description="registry directory, local or in object storage")
    replace: bool = Field(False, description="replace a dataset of the same name")
    read: ReadSettings = ReadSettings()
    sketch: SketchSettings = SketchSettings()
    storage: StorageOptions = StorageOptions()
    ngram_order: int = Field(13, ge=2, le=64, description="word n-gram order of the Bloom filter")
    false_positive_rate: float = Field(
        1e-6, gt=0.0, lt=0.5, description="target false-positive rate of the Bloom filter per n-gram"
    )
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash functions per signature")
    bands: int = Field(32, ge=1, le=1024, description="LSH bands; num_perm / bands rows each")
    shingle_order: int = Field(5, ge=1, le=8, description="word n-gram order of the MinHash shingles")
    address: str | None = None
    num_workers: int | None = Field(None, ge=1, le=4096)
    target_shard_bytes: int = Field(256 << 20, gt=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"invalid dataset name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return name

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, bands: int, info: ValidationInfo) -> int:
        num_perm = info.data.get("num_perm")
        if num_perm is not None and num_perm % bands:
            raise ValueError(
                f"{bands} bands do not divide {num_perm} MinHash functions: choose a divisor of num_perm, "
                "for example 32 bands of 128 functions"
            )
        return bands


@dataclass
class RegisteredDataset:
    """One dataset of a registry: its manifest and, once loaded, its arrays."""

    name: str
    manifest: dict
    signatures: np.ndarray | None = None
    band_keys: np.ndarray | None = None
    band_documents: np.ndarray | None = None
    bloom: np.ndarray | None = None

    @property
    def minhash(self) -> dict:
        return self.manifest["minhash"]

    @property
    def bloom_parameters(self) -> dict:
        return self.manifest["bloom"]

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "signatures.npy": self.signatures,
            "band_keys.npy": self.band_keys,
            "band_documents.npy": self.band_documents,
            "bloom.npy": self.bloom,
        }


@dataclass
class Registry:
    """The datasets of one registry directory, and a digest of its manifests."""

    url: str
    datasets: dict[str, RegisteredDataset]
    digest: str

    def check_settings(self, settings: SketchSettings) -> None:
        """Raise RegistryError when a scan tokenizes differently from a dataset's build."""
        for dataset in self.datasets.values():
            for name, built in dataset.manifest["tokenizer"].items():
                scanning = getattr(settings, name)
                if scanning != built:
                    raise RegistryError(
                        f"registry dataset {dataset.name!r} was built with {name}={built!r} but the scan uses "
                        f"{name}={scanning!r}: scan with the registry's setting or rebuild the dataset"
                    )

    def summary(self) -> dict[str, dict]:
        """Return, per dataset, what a result reports besides the counters."""
        return {
            name: {
                "registered_documents": dataset.manifest["documents"],
                "ngram_order": dataset.bloom_parameters["ngram_order"],
                "ngram_false_positive_rate": dataset.bloom_parameters["false_positive_rate"],
                "target_false_positive_rate": dataset.bloom_parameters["target_false_positive_rate"],
            }
            for name, dataset in self.datasets.items()
        }


# Files


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _read_json(fs, path: str, url: str, label: str) -> tuple[dict, bytes]:
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise RegistryError(
            f"{label} {url} not found: build the registry with "
            "`corpus-scanner registry build --name NAME SOURCE... --out DIR`"
        ) from None
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RegistryError(f"{label} {url} is not valid JSON ({error}): rebuild it with `registry build`") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{label} {url} is not a JSON object: rebuild it with `registry build`")
    return value, data


def _registry_names(fs, root: str, url: str) -> tuple[list[str], bytes]:
    index, data = _read_json(fs, f"{root}/{REGISTRY_FILE}", f"{url}/{REGISTRY_FILE}", "registry manifest")
    names = index.get("datasets")
    if index.get("format") != FORMAT or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RegistryError(
            f"registry manifest {url}/{REGISTRY_FILE} is not a corpus-scanner registry "
            f"(expected format {FORMAT!r} and a list of dataset names): check the path, or rebuild it"
        )
    invalid = [name for name in names if not _NAME_PATTERN.fullmatch(name)]
    if invalid:
        raise RegistryError(
            f"registry manifest {url}/{REGISTRY_FILE} lists an invalid dataset name {invalid[0]!r}: rebuild it"
        )
    if index.get("format_version") != FORMAT_VERSION:
        raise RegistryError(
            f"registry format version {index.get('format_version')!r} in {url}/{REGISTRY_FILE} is not supported "
            f"(this build reads version {FORMAT_VERSION}): rebuild the registry"
        )
    return names, data


def _check_manifest(manifest: dict, url: str) -> None:
    required = {"name": str, "documents": int, "tokenizer": dict, "minhash": dict, "bloom": dict, "files": dict}
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise RegistryError(
                f"dataset manifest {url} lacks a valid {key!r}: rebuild the dataset with `registry build --replace`"
            )
    missing = [name for name in ARRAY_FILES if name not in manifest["files"]]
    if missing:
        raise RegistryError(f"dataset manifest {url} lists no checksum for {missing[0]}: rebuild the dataset")


def load_registry(url: str, storage: StorageOptions = StorageOptions(), arrays: bool = True) -> Registry:
    """Read a registry's manifests and, with `arrays`, every dataset's arrays.

    Raises RegistryError when a file is missing, is not valid, or does not
    match the checksum in its manifest.
    """
    url = url.rstrip("/")
    fs, root = filesystem_for(url, storage)
    root = root.rstrip("/")
    names, index_bytes = _registry_names(fs, root, url)
    if not names:
        raise RegistryError(f"registry {url} has no datasets: add one with `registry build --name NAME`")

    digest = hashlib.sha256(index_bytes)
    datasets = {}
    for name in sorted(names):
        manifest_url = f"{url}/datasets/{name}/manifest.json"
        manifest, manifest_bytes = _read_json(fs, f"{root}/datasets/{name}/manifest.json", manifest_url, "dataset manifest")
        _check_manifest(manifest, manifest_url)
        digest.update(manifest_bytes)
        dataset = RegisteredDataset(name=name, manifest=manifest)
        if arrays:
            _load_arrays(dataset, fs, f"{root}/datasets/{name}", f"{url}/datasets/{name}")
        datasets[name] = dataset
    return Registry(url=url, datasets=datasets, digest=digest.hexdigest()[:16])


def _load_arrays(dataset: RegisteredDataset, fs, directory: str, url: str) -> None:
    loaded = {}
    for file_name in ARRAY_FILES:
        try:
            data = fs.cat_file(f"{directory}/{file_name}")
        except FileNotFoundError:
            raise RegistryError(f"registry file {url}/{file_name} not found: rebuild the dataset") from None
        if hashlib.sha256(data).hexdigest() != dataset.manifest["files"][file_name]:
            raise RegistryError(
                f"registry file {url}/{file_name} does not match the checksum in its manifest: "
                "it is corrupt or from another build; rebuild the dataset with `registry build --replace`"
            )
        try:
            loaded[file_name] = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as error:
            # Raised for pickled data and object arrays, which are never loaded.
            raise RegistryError(
                f"registry file {url}/{file_name} is not a plain .npy array ({error}): rebuild the dataset"
            ) from None
    dataset.signatures = loaded["signatures.npy"]
    dataset.band_keys = loaded["band_keys.npy"]
    dataset.band_documents = loaded["band_documents.npy"]
    dataset.bloom = loaded["bloom.npy"]


def check_name_available(config: RegistryBuildConfig) -> None:
    """Raise RegistryError when the registry lists the name already and `replace` is off, or when it is invalid."""
    fs, root = filesystem_for(config.out.rstrip("/"), config.storage)
    if not fs.exists(f"{root.rstrip('/')}/{REGISTRY_FILE}"):
        return
    names, _ = _registry_names(fs, root.rstrip("/"), config.out.rstrip("/"))
    if config.name in names and not config.replace:
        raise RegistryError(
            f"registry {redact_url(config.out)} has a dataset named {config.name!r} already: "
            "choose another --name, or pass --replace to rebuild it"
        )


def save_dataset(dataset: RegisteredDataset, config: RegistryBuildConfig) -> None:
    """Write the dataset's arrays and manifest, then list it in registry.json."""
    url = config.out.rstrip("/")
    fs, root = filesystem_for(url, config.storage)
    root = root.rstrip("/")
    directory = f"{root}/datasets/{dataset.name}"
    fs.makedirs(directory, exist_ok=True)

    checksums = {}
    for file_name, array in dataset.arrays().items():
        data = _npy_bytes(array)
        checksums[file_name] = hashlib.sha256(data).hexdigest()
        fs.pipe_file(f"{directory}/{file_name}", data)
    dataset.manifest["files"] = checksums
    fs.pipe_file(f"{directory}/manifest.json", json.dumps(dataset.manifest, indent=2, sort_keys=True).encode())

    names = []
    if fs.exists(f"{root}/{REGISTRY_FILE}"):
        names, _ = _registry_names(fs, root, url)
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "datasets": sorted(set(names) | {dataset.name})}
    # NOTE: two builds that add datasets to one registry at the same time can lose one name here.
    fs.pipe_file(f"{root}/{REGISTRY_FILE}", json.dumps(index, indent=2).encode())


# Building


def _documents(shard: Shard, config: RegistryBuildConfig, report: ReadReport):
    """Yield the tokens of each record batch of a shard, documents without tokens removed."""
    batches = read_shard(shard, config.storage, config.read.options(), report)
    for batch in batches:
        if not batch.num_rows:
            continue
        tokens = tokenize_batch(TextBatch.from_arrow(batch.column("text")), config.sketch)
        counts = np.diff(tokens.document_offsets)
        yield tokens, counts


def shard_signatures(shard: Shard, config: RegistryBuildConfig) -> dict:
    """First pass over one shard: MinHash signatures and a distinct count of the long n-grams."""
    report = ReadReport()
    hasher = MinHasher(config.num_perm, config.shingle_order, config.sketch.seed)
    distinct = HyperLogLog(14)
    parts, empty, ngrams = [], 0, 0
    for tokens, counts in _documents(shard, config, report):
        signatures = hasher.signatures(tokens.hashes, tokens.document_offsets)
        parts.append(signatures[counts > 0])
        empty += int(np.count_nonzero(counts == 0))
        hashes = ngram_hashes(tokens.hashes, tokens.document_offsets, config.ngram_order, np.uint64(config.sketch.seed))
        distinct.update_batch(hashes)
        ngrams += int(hashes.shape[0])
    signatures = np.concatenate(parts) if parts else np.zeros((0, config.num_perm), dtype=np.uint64)
    return {
        "signatures": signatures,
        "empty_documents": empty,
        "ngrams": ngrams,
        "hll": distinct.registers,
        "report": report.to_dict(),
    }


def shard_bloom(shard: Shard, config: RegistryBuildConfig, num_bits: int, num_hashes: int) -> np.ndarray:
    """Second pass over one shard: a Bloom filter of its long n-grams, to be merged by bitwise OR."""
    bits = np.zeros(num_bits // 64, dtype=np.uint64)
    for tokens, _ in _documents(shard, config, ReadReport()):
        bloom_add_ngrams(
            bits,
            np.uint64(num_bits),
            num_hashes,
            tokens.hashes,
            tokens.document_offsets,
            config.ngram_order,
            np.uint64(config.sketch.seed),
        )
    return bits


def bloom_size(distinct: float, false_positive_rate: float) -> tuple[int, int]:
    """Return (bits, hashes) of a Bloom filter for `distinct` items at the target rate.

    m = -n ln(p) / ln(2)**2 bits and k = (m / n) ln 2 hashes minimize the rate
    (1 - exp(-k n / m))**k; the bits are rounded up to whole uint64 words.
    """
    items = max(1.0, distinct)
    bits = math.ceil(-items * math.log(false_positive_rate) / math.log(2) ** 2)
    bits = max(64, -(-bits // 64) * 64)
    hashes = max(1, round(bits / items * math.log(2)))
    return bits, hashes


def band_index(signatures: np.ndarray, bands: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (band_keys, band_documents), each (bands, documents), with the keys sorted per band."""
    rows = signatures.shape[1] // bands
    keys = band_hashes(np.ascontiguousarray(signatures), bands, rows, np.uint64(seed)).T
    order = np.argsort(keys, axis=1, kind="stable")
    return np.ascontiguousarray(np.take_along_axis(keys, order, axis=1)), np.ascontiguousarray(order.astype(np.int64))


def build_dataset(config: RegistryBuildConfig) -> RegisteredDataset:
    """Read the dataset's sources on Ray and return its arrays and manifest (the caller saves them)."""
    # Imported here because Ray is needed to build, not to load or match.
    import ray

    from scanner.profile_build import _run_tasks
    from scanner.runner import start_ray

    check_name_available(config)
    objects = list_objects(config.sources, config.storage)
    plan = build_plan(
        objects, config.storage, declared_format=config.read.format, target_shard_bytes=config.target_shard_bytes
    )
    logger.info("registry build of %r planned: %d objects, %d shards", config.name, plan.total_objects, len(plan.shards))

    started_ray = start_ray(config.address, config.num_workers)
    try:
        limit = 2 * (config.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
        parts = _run_tasks(shard_signatures, [(shard, config) for shard in plan.shards], limit)
        first = _merge_first_pass(parts, config)
        num_bits, num_hashes = bloom_size(first["distinct"], config.false_positive_rate)
        logger.info(
            "registry build of %r: %d documents, about %.0f distinct %d-grams, Bloom filter of %d bits and %d hashes",
            config.name, first["documents"], first["distinct"], config.ngram_order, num_bits, num_hashes,
        )
        bloom = _or_bloom_tasks(plan.shards, config, num_bits, num_hashes, limit)
    finally:
        if started_ray:
            ray.shutdown()

    band_keys, band_documents = band_index(first["signatures"], config.bands, config.sketch.seed)
    bits_set = int(np.unpackbits(bloom.view(np.uint8)).sum())
    manifest = {
        "name": config.name,
        "format_version": FORMAT_VERSION,
        "sources": [redact_url(source) for source in config.sources],
        "read": config.read.model_dump(mode="json"),
        "documents": first["documents"],
        "empty_documents": first["empty_documents"],
        "skipped_records": first["report"].skipped_total,
        "tokenizer": {name: getattr(config.sketch, name) for name in TOKENIZER_FIELDS},
        "minhash": {
            "num_perm": config.num_perm,
            "bands": config.bands,
            "rows": config.num_perm // config.bands,
            "shingle_order": config.shingle_order,
            "seed": config.sketch.seed,
        },
        "bloom": {
            "ngram_order": config.ngram_order,
            "num_bits": num_bits,
            "num_hashes": num_hashes,
            "bits_set": bits_set,
            "ngrams": first["ngrams"],
            "distinct_ngrams_estimate": float(first["distinct"]),
            "target_false_positive_rate": config.false_positive_rate,
            # The rate of this filter: the chance that all k bits of an absent n-gram are set.
            "false_positive_rate": (bits_set / num_bits) ** num_hashes,
        },
        "files": {},
    }
    return RegisteredDataset(
        name=config.name,
        manifest=manifest,
        signatures=first["signatures"],
        band_keys=band_keys,
        band_documents=band_documents,
        bloom=bloom,
    )


def _merge_first_pass(parts: list[dict], config: RegistryBuildConfig) -> dict:
    distinct = HyperLogLog(14)
    report = ReadReport()
    for part in parts:
        distinct = distinct.merge(HyperLogLog(14, part["hll"]))
        report = report.merge(ReadReport.from_dict(part["report"]))
    signatures = np.concatenate([part["signatures"] for part in parts]) if parts else np.zeros((0, config.num_perm))
    if signatures.shape[0] == 0:
        raise RegistryError(
            f"no document with words in the sources of dataset {config.name!r} "
            f"({', '.join(redact_url(source) for source in config.sources)}): check --text-field (now "
            f"{config.read.text_field!r}) and --format"
        )
    if report.skipped_total:
        logger.warning("registry build of %r skipped %d malformed records", config.name, report.skipped_total)
    return {
        "signatures": signatures.astype(np.uint64),
        "documents": int(signatures.shape[0]),
        "empty_documents": sum(part["empty_documents"] for part in parts),
        "ngrams": sum(part["ngrams"] for part in parts),
        "distinct": distinct.estimate() * (1.0 + _DISTINCT_MARGIN * distinct.relative_standard_error),
        "report": report,
    }


def _or_bloom_tasks(shards: list[Shard], config: RegistryBuildConfig, num_bits: int, num_hashes: int, limit: int):
    """Run `shard_bloom` over the shards and OR the filters as they arrive, so the driver keeps two at most."""
    import ray

    remote = ray.remote(shard_bloom)
    bloom = np.zeros(num_bits // 64, dtype=np.uint64)
    pending = []
    queue = list(shards)
    while queue or pending:
        while queue and len(pending) < limit:
            pending.append(remote.remote(queue.pop(0), config, num_bits, num_hashes))
        ready, pending = ray.wait(pending, num_returns=1)
        for reference in ready:
            np.bitwise_or(bloom, ray.get(reference), out=bloom)
    return bloom


# Matching during a scan


class RegistryMatcher:
    """Matcher of a batch's documents against every dataset of a registry."""

    def __init__(self, registry: Registry, threshold: float):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"invalid near-duplicate threshold {threshold}: use a value in (0, 1]")
        self.registry = registry
        self.threshold = threshold
        self.names = sorted(registry.datasets)
        self._hashers: dict[tuple, MinHasher] = {}

    def match(self, tokens: Tokens) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Return, per dataset, (near-duplicate flags, long n-gram flags, long n-grams per document)."""
        has_tokens = np.diff(tokens.document_offsets) > 0
        signatures: dict[tuple, np.ndarray] = {}
        matches = {}
        for name in self.names:
            dataset = self.registry.datasets[name]
            minhash = dataset.minhash
            key = (minhash["num_perm"], minhash["shingle_order"], minhash["seed"])
            if key not in signatures:
                if key not in self._hashers:
                    self._hashers[key] = MinHasher(*key)
                signatures[key] = self._hashers[key].signatures(tokens.hashes, tokens.document_offsets)
            near = self._near_duplicates(dataset, signatures[key], has_tokens)
            bloom = dataset.bloom_parameters
            long_ngram, ngrams = bloom_match_documents(
                dataset.bloom,
                np.uint64(bloom["num_bits"]),
                bloom["num_hashes"],
                tokens.hashes,
                tokens.document_offsets,
                bloom["ngram_order"],
                np.uint64(dataset.manifest["tokenizer"]["seed"]),
            )
            matches[name] = (near, long_ngram, ngrams)
        return matches

    def _near_duplicates(self, dataset: RegisteredDataset, signatures: np.ndarray, has_tokens: np.ndarray):
        minhash = dataset.minhash
        query_bands = band_hashes(signatures, minhash["bands"], minhash["rows"], np.uint64(minhash["seed"]))
        # The tolerance keeps a float product such as 0.7 * 10 = 7.000000000000001 from rounding up to 8.
        min_matches = math.ceil(self.threshold * minhash["num_perm"] - 1e-9)
        return near_duplicate_flags(
            signatures, query_bands, has_tokens, dataset.band_keys, dataset.band_documents, dataset.signatures,
            min_matches,
        )


def texts_to_tokens(texts: list[str], settings: SketchSettings) -> Tokens:
    """Tokenize a list of strings as a scan would (for tests and small tools)."""
    return tokenize_batch(TextBatch.from_arrow(pa.array(texts, type=pa.large_string())), settings)
