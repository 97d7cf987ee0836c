"""The sample corpus of `corpus-scanner demo`, generated on the spot.

Documents come from `MarkovCorpus` under a fixed seed, so the same document
count gives the same text, URLs and dates on every machine. The corpus is
JSONL_FILES gzip JSONL files and one Parquet file with several row groups,
with the fields `id`, `text`, `url` and `date`, so that it exercises two
readers and both `--group-by` keys. URLs use the reserved `.example` top-level
domain, spread over DOMAINS sites with a skewed (1/rank) share each.

The second part of the demo uses number sequences from `NumberChain`s: a
human chain and two teacher chains, mixed at the known TEACHER_SHARES, so
that the synthetic-share estimate can be compared with the truth.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scanner.profile_build import ProfileBuildConfig
from scanner.result import ScanResult
from scanner.samples import MarkovCorpus

DEMO_SEED = 2024
# About 2.4 KB of text per document: 32,000 documents are about 77 MB of text and
# 20 MiB on disk (gzip JSONL and zstd Parquet).
DEFAULT_DOCUMENTS = 32_000
JSONL_FILES = 4
DOMAINS = 40
PARQUET_ROW_GROUPS = 4
_FIRST_DATE = dt.date(2024, 1, 1)
_DATE_SPAN_DAYS = 182


def write_demo_corpus(
    directory: pathlib.Path, documents: int = DEFAULT_DOCUMENTS, seed: int = DEMO_SEED
) -> list[pathlib.Path]:
    """Write the demo corpus into `directory` (created if missing); return the file paths.

    Raises ValueError when `documents` is below the number of files.
    """
    files = JSONL_FILES + 1
    if documents < files:
        raise ValueError(f"invalid demo document count {documents}: use at least {files}")
    directory.mkdir(parents=True, exist_ok=True)
    corpus = MarkovCorpus(seed)
    rng = np.random.default_rng(seed + 1)
    bounds = [documents * part // files for part in range(files + 1)]

    paths = []
    for part in range(files):
        first_id, stop_id = bounds[part], bounds[part + 1]
        records = _records(corpus, rng, first_id, stop_id)
        if part < JSONL_FILES:
            path = directory / f"part-{part:04d}.jsonl.gz"
            _write_jsonl_gz(path, records)
        else:
            path = directory / f"part-{part:04d}.parquet"
            _write_parquet(path, records)
        paths.append(path)
    return paths


def _records(corpus: MarkovCorpus, rng: np.random.Generator, first_id: int, stop_id: int) -> dict[str, list]:
    count = stop_id - first_id
    weights = 1.0 / np.arange(1, DOMAINS + 1)
    sites = rng.choice(DOMAINS, size=count, p=weights / weights.sum())
    days = rng.integers(0, _DATE_SPAN_DAYS, size=count)
    ids = list(range(first_id, stop_id))
    return {
        "id": ids,
        "text": corpus.documents(count),
        "url": [f"https://www.site{site:02d}.example/articles/{number}" for site, number in zip(sites, ids)],
        "date": [(_FIRST_DATE + dt.timedelta(days=int(day))).isoformat() for day in days],
    }


def _write_jsonl_gz(path: pathlib.Path, records: dict[str, list]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
        for values in zip(*records.values()):
            handle.write(json.dumps(dict(zip(records, values))) + "\n")


def _write_parquet(path: pathlib.Path, records: dict[str, list]) -> None:
    table = pa.table(
        {
            "id": pa.array(records["id"], type=pa.int64()),
            "text": pa.array(records["text"], type=pa.string()),
            "url": pa.array(records["url"], type=pa.string()),
            "date": pa.array([dt.date.fromisoformat(day) for day in records["date"]], type=pa.date32()),
        }
    )
    rows_per_group = max(1, -(-table.num_rows // PARQUET_ROW_GROUPS))
    pq.write_table(table, path, row_group_size=rows_per_group, compression="zstd")


# The number corpus: number sequences from a "human" Markov chain and from two
# "teacher" chains that copy it with a hidden bias. The texts have no readable
# meaning, so only the word-occurrence statistics tell the sources apart.
NUMBER_SEED = 7
HUMAN_SOURCE = "human"
NUMBER_TOKENS = 100
DEFAULT_NUMBER_DOCUMENTS = 4_000
# Enough for every teacher to write at least one target document.
MIN_NUMBER_DOCUMENTS = 20
NUMBER_FILES = 2
MIN_NUMBER_WORDS = 100
MAX_NUMBER_WORDS = 300
# Share of the target corpus that each teacher wrote; the rest is human.
TEACHER_SHARES = {"teacher-a": 0.12, "teacher-b": 0.08}
# Reference documents per source. They do not shrink with the target corpus,
# because the estimate is calibrated on the held-out 30% of them.
REFERENCE_DOCUMENTS = {HUMAN_SOURCE: 2_000, "teacher-a": 1_000, "teacher-b": 1_000}
# Each teacher multiplies the probability of moving to its favoured tokens by
# 1 + TEACHER_BIAS in every state of the human chain.
TEACHER_BIAS = 2.0
_FAVOURED_TOKENS = {"teacher-a": range(20, 40, 2), "teacher-b": range(41, 61, 2)}
# Dirichlet concentration of each state's transition row around a Zipf profile:
# frequent tokens occur in nearly every document and rare ones in few, so
# occurrence probabilities spread over (0, 1).
_ROW_CONCENTRATION = 30.0
_ZIPF_EXPONENT = 1.1


class NumberChain:
    """A first-order Markov chain over the tokens "0" to "99"."""

    def __init__(self, transitions: np.ndarray):
        self.transitions = transitions / transitions.sum(axis=1, keepdims=True)
        self._cumulative = np.cumsum(self.transitions, axis=1)

    @classmethod
    def human(cls, seed: int) -> NumberChain:
        """Draw the human chain: each state's row is a Dirichlet draw around a Zipf profile."""
        rng = np.random.default_rng(seed)
        zipf = 1.0 / np.arange(1, NUMBER_TOKENS + 1) ** _ZIPF_EXPONENT
        # Shuffled so that a token's frequency does not follow its value.
        profile = rng.permutation(zipf / zipf.sum())
        return cls(rng.dirichlet(_ROW_CONCENTRATION * profile, size=NUMBER_TOKENS))

    def biased(self, favoured: Sequence[int], strength: float) -> NumberChain:
        """Return a copy whose transitions into the `favoured` tokens are 1 + `strength` times as likely."""
        weights = np.ones(NUMBER_TOKENS)
        weights[list(favoured)] += strength
        return NumberChain(self.transitions * weights)

    def stationary(self) -> np.ndarray:
        """Return the stationary token distribution: the long-run share of each token."""
        values, vectors = np.linalg.eig(self.transitions.T)
        vector = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return vector / vector.sum()

    def biased_to_distance(self, favoured: Sequence[int], distance: float) -> NumberChain:
        """Return the `biased` copy whose stationary distribution is at total variation `distance` from this one.

        The strength is found by bisection to within 1e-9 of `distance`. Raises
        ValueError when `distance` is not in (0, 0.5).
        """
        if not 0.0 < distance < 0.5:
            raise ValueError(f"invalid total variation distance {distance}: use a value in (0, 0.5)")
        base = self.stationary()

        def gap(strength: float) -> float:
            return 0.5 * float(np.abs(self.biased(favoured, strength).stationary() - base).sum())

        low, high = 0.0, 1.0
        while gap(high) < distance:
            high *= 2.0
        while high - low > 1e-12 and abs(gap(0.5 * (low + high)) - distance) > 1e-9:
            middle = 0.5 * (low + high)
            low, high = (middle, high) if gap(middle) < distance else (low, middle)
        return self.biased(favoured, 0.5 * (low + high))

    def documents(self, count: int, rng: np.random.Generator) -> list[str]:
        """Draw `count` documents of MIN_NUMBER_WORDS to MAX_NUMBER_WORDS tokens each."""
        lengths = rng.integers(MIN_NUMBER_WORDS, MAX_NUMBER_WORDS + 1, size=count)
        walks = np.empty((count, MAX_NUMBER_WORDS), dtype=np.int64)
        state = rng.integers(0, NUMBER_TOKENS, size=count)
        # All documents advance together, one token per step.
        for position in range(MAX_NUMBER_WORDS):
            uniforms = rng.random(count)
            state = (self._cumulative[state] < uniforms[:, None]).sum(axis=1)
            walks[:, position] = np.minimum(state, NUMBER_TOKENS - 1)
        return [" ".join(map(str, walk[:length].tolist())) for walk, length in zip(walks, lengths)]


def number_chains(seed: int = NUMBER_SEED) -> dict[str, NumberChain]:
    """Return the human chain and the teacher chains derived from it, keyed by source name."""
    human = NumberChain.human(seed)
    chains = {HUMAN_SOURCE: human}
    for name, favoured in _FAVOURED_TOKENS.items():
        chains[name] = human.biased(favoured, TEACHER_BIAS)
    return chains



@dataclass(frozen=True)
class NumberCorpus:
    """Paths and true composition of a written number corpus."""

    references: dict[str, pathlib.Path]  # source name -> gzip JSONL reference file
    target: pathlib.Path  # directory of the target corpus
    documents: int  # target documents
    counts: dict[str, int]  # target documents per teacher

    def true_share(self, name: str | None = None) -> float:
        """Return the true share of one teacher in the target, or of all teachers when `name` is None."""
        count = sum(self.counts.values()) if name is None else self.counts[name]
        return count / self.documents


def write_number_corpus(
    directory: pathlib.Path, documents: int = DEFAULT_NUMBER_DOCUMENTS, seed: int = NUMBER_SEED
) -> NumberCorpus:
    """Write reference sets to `directory`/references and the mixed target corpus to `directory`/numbers.

    Reference records carry `id`, `text` and `group` (one source document per
    record). Target records carry `id`, `text` and `source`, the true label,
    which the scan ignores. Raises ValueError when `documents` is too small for
    every teacher to write a target document.
    """
    if documents < MIN_NUMBER_DOCUMENTS:
        raise ValueError(f"invalid number document count {documents}: use at least {MIN_NUMBER_DOCUMENTS}")
    counts = {name: round(share * documents) for name, share in TEACHER_SHARES.items()}
    chains = number_chains(seed)
    # One generator per use, so changing one size leaves the other texts as they were.
    streams = np.random.default_rng(seed + 1).spawn(2 * len(chains) + 1)

    references = directory / "references"
    references.mkdir(parents=True, exist_ok=True)
    reference_paths = {}
    for index, (name, chain) in enumerate(chains.items()):
        texts = chain.documents(REFERENCE_DOCUMENTS[name], streams[index])
        path = references / f"{name}.jsonl.gz"
        ids = list(range(len(texts)))
        _write_jsonl_gz(path, {"id": ids, "text": texts, "group": [f"{name}-{number}" for number in ids]})
        reference_paths[name] = path

    target_counts = {HUMAN_SOURCE: documents - sum(counts.values()), **counts}
    texts, sources = [], []
    for index, (name, chain) in enumerate(chains.items()):
        texts += chain.documents(target_counts[name], streams[len(chains) + index])
        sources += [name] * target_counts[name]
    order = streams[-1].permutation(documents)

    target = directory / "numbers"
    target.mkdir(parents=True, exist_ok=True)
    bounds = [documents * part // NUMBER_FILES for part in range(NUMBER_FILES + 1)]
    for part in range(NUMBER_FILES):
        rows = order[bounds[part] : bounds[part + 1]].tolist()
        _write_jsonl_gz(
            target / f"part-{part:04d}.jsonl.gz",
            {"id": rows, "text": [texts[row] for row in rows], "source": [sources[row] for row in rows]},
        )
    return NumberCorpus(references=reference_paths, target=target, documents=documents, counts=counts)


def number_profile_config(corpus: NumberCorpus, out: pathlib.Path, num_workers: int | None) -> ProfileBuildConfig:
    """Return the profile build settings for the number references.

    The vocabulary is the 100 number tokens. Each occurs in at least 1% of
    the documents of every source, so the default `min_document_share` keeps all of them.
    """
    return ProfileBuildConfig(
        human=[str(corpus.references[HUMAN_SOURCE])],
        synthetic={name: [str(path)] for name, path in corpus.references.items() if name != HUMAN_SOURCE},
        out=str(out),
        group_field="group",
        num_workers=num_workers,
    )


def describe_number_corpus(corpus: NumberCorpus) -> str:
    """Return two lines that describe the written reference sets and target corpus."""
    references = ", ".join(f"{name} {REFERENCE_DOCUMENTS[name]:,}" for name in corpus.references)
    teachers = ", ".join(f"{name} {count:,}" for name, count in corpus.counts.items())
    return "\n".join(
        [
            f"wrote reference documents ({references}) to {corpus.references[HUMAN_SOURCE].parent}",
            f"wrote {corpus.documents:,} number documents ({teachers}, the rest human) to {corpus.target}",
        ]
    )


def format_number_shares(result: ScanResult, corpus: NumberCorpus, location: str) -> str:
    """Return the estimated synthetic shares of the number scan with their 95% intervals and the true shares."""
    share = result.synthetic_share
    if share is None:
        return f"synthetic share: not estimated, the scan of {corpus.target} found no documents ({location})"
    rows = [("all teachers", share.estimate, share.ci95, corpus.true_share())]
    for name, value in share.generators.items():
        rows.append((name, value.estimate, value.ci95, corpus.true_share(name)))
    scanned = f"{result.documents:,} documents, {result.seconds:.1f} s; output {location}"
    lines = [
        f"synthetic share of {corpus.target} ({scanned}):",
        f"  {'source':<14}{'estimate':>9}  {'95% interval':<16}{'true share':>10}",
    ]
    for name, estimate, (low, high), truth in rows:
        lines.append(f"  {name:<14}{estimate:>9.3f}  {low:.3f} to {high:.3f}{truth:>12.3f}")
    if share.fit.warning:
        lines.append(f"warning: {share.fit.warning}")
    return "\n".join(lines)
