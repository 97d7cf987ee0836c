"""The Parquet tables beside `result.json`, for analysis with pandas, DuckDB or Spark.

    tables/top_ngrams.parquet  order, rank (1 = most frequent), ngram, count
    tables/groups.parquet      group, documents, empty_documents, bytes, tokens
    tables/shards.parquet      one row per planned shard: shard_id, url, part, status
                               ("completed", "failed" or "missing"), estimated_bytes,
                               documents, empty_documents, bytes, tokens, seconds,
                               skipped, truncated, error
    tables/features.parquet    feature, count, p50, p90, p99, mean, variance, min, max

Counter columns of a shard that did not complete are null. Counts in
top_ngrams are Count-Min upper bounds, as in `result.json`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.formats import ReadReport
from scanner.result import ScanResult

if TYPE_CHECKING:
    from scanner.runner import ScanOutcome

TOP_NGRAMS_SCHEMA = pa.schema(
    [("order", pa.int32()), ("rank", pa.int32()), ("ngram", pa.string()), ("count", pa.int64())]
)
GROUPS_SCHEMA = pa.schema(
    [
        ("group", pa.string()),
        ("documents", pa.int64()),
        ("empty_documents", pa.int64()),
        ("bytes", pa.int64()),
        ("tokens", pa.int64()),
    ]
)
SHARDS_SCHEMA = pa.schema(
    [
        ("shard_id", pa.string()),
        ("url", pa.string()),
        ("part", pa.string()),
        ("status", pa.string()),
        ("estimated_bytes", pa.int64()),
        ("documents", pa.int64()),
        ("empty_documents", pa.int64()),
        ("bytes", pa.int64()),
        ("tokens", pa.int64()),
        ("seconds", pa.float64()),
        ("skipped", pa.int64()),
        ("truncated", pa.bool_()),
        ("error", pa.string()),
    ]
)
FEATURES_SCHEMA = pa.schema(
    [("feature", pa.string()), ("count", pa.int64())]
    + [(name, pa.float64()) for name in ("p50", "p90", "p99", "mean", "variance", "min", "max")]
)


def build_tables(outcome: ScanOutcome, result: ScanResult) -> dict[str, pa.Table]:
    """Return the tables by name ("top_ngrams", "groups", "shards", "features")."""
    return {
        "top_ngrams": top_ngrams_table(result),
        "groups": groups_table(result),
        "shards": shards_table(outcome),
        "features": features_table(result),
    }


def top_ngrams_table(result: ScanResult) -> pa.Table:
    rows = [
        {"order": int(order), "rank": rank, "ngram": item.ngram, "count": item.count}
        for order, items in result.top_ngrams.items()
        for rank, item in enumerate(items, start=1)
    ]
    return pa.Table.from_pylist(rows, schema=TOP_NGRAMS_SCHEMA)


def groups_table(result: ScanResult) -> pa.Table:
    rows = [{"group": name, **counts.model_dump()} for name, counts in result.groups.items()]
    return pa.Table.from_pylist(rows, schema=GROUPS_SCHEMA)


def features_table(result: ScanResult) -> pa.Table:
    rows = [{"feature": name, **summary.model_dump()} for name, summary in result.features.items()]
    return pa.Table.from_pylist(rows, schema=FEATURES_SCHEMA)


def shards_table(outcome: ScanOutcome) -> pa.Table:
    """Return a table with one row per planned shard, in plan order, with its counters or its error."""
    summaries = {summary["shard_id"]: summary for summary in outcome.summaries}
    failures = {failure["shard_id"]: failure for failure in outcome.failures}
    rows = []
    for shard in outcome.plan.shards:
        row = {
            "shard_id": shard.shard_id,
            "url": shard.url,
            "part": shard.part_label(),
            "estimated_bytes": shard.estimated_bytes,
        }
        summary = summaries.get(shard.shard_id)
        failure = failures.get(shard.shard_id)
        if summary is not None:
            report = ReadReport.from_dict(summary["report"])
            row.update(
                status="completed",
                documents=summary["documents"],
                empty_documents=summary["empty_documents"],
                bytes=summary["bytes"],
                tokens=summary["tokens"],
                seconds=summary["seconds"],
                skipped=report.skipped_total,
                truncated=report.truncated,
            )
        elif failure is not None:
            row.update(status="failed", error=failure["error"])
        else:
            row.update(status="missing")
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SHARDS_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialize a table as one Parquet file (zstd) in memory."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
