"""The sample corpus of `corpus-scanner demo`, generated on the spot.

Documents come from `MarkovCorpus` under a fixed seed, so the same document
count gives the same text, URLs and dates on every machine. The corpus is
JSONL_FILES gzip JSONL files and one Parquet file with several row groups,
with the fields `id`, `text`, `url` and `date`, so that it exercises two
readers and both `--group-by` keys. URLs use the reserved `.example` top-level
domain, spread over DOMAINS sites with a skewed (1/rank) share each.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
