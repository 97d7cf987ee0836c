"""result.json, the Parquet tables, report.html and output writing, from real bundles without Ray."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.accumulator import ShardAccumulator
from scanner.config import ScanConfig
from scanner.formats import ReadReport
from scanner.output import write_outputs
from scanner.plan import Plan, Shard
from scanner.report import render_report
from scanner.result import MAX_ERROR_SAMPLES, ScanResult, build_result, ngram_stats
from scanner.runner import ScanOutcome
from scanner.settings import SketchSettings
from scanner.storage import StorageOptions
from scanner.tables import build_tables

SETTINGS = SketchSettings(min_order=1, max_order=3, hll_precision=10, countmin_blocks_log2=8, heavy_hitter_capacity=32)
DESIGN_FIELDS = (
    "schema_version", "documents", "empty_documents", "bytes", "tokens", "ngrams", "top_ngrams", "features",
    "shards", "errors", "synthetic_share", "contamination", "indicators", "groups",
)


def make_shard(name: str, size: int = 100) -> Shard:
    return Shard(
        shard_id=f"id-{name}", url=f"/data/{name}", size=size, etag=None, mtime=None,
        format="jsonl", compression=None, estimated_bytes=size,
    )


def shard_summary(shard: Shard, documents: list[str], report: ReadReport | None = None,
                  groups: list[str] | None = None, settings: SketchSettings = SETTINGS):
    """Scan `documents` as one shard; return its bundle and the summary the runner would return."""
    accumulator = ShardAccumulator(settings, shard.shard_id)
    codes = None
    if groups is not None:
        names = sorted(set(groups))
        codes = (np.array([names.index(group) for group in groups], dtype=np.int64), names)
    accumulator.add_texts(pa.array(documents, type=pa.large_string()), codes)
    bundle = accumulator.finish()
    summary = {
        "shard_id": shard.shard_id, "url": shard.url, "byte_range": None, "row_groups": None,
        "estimated_bytes": shard.estimated_bytes, "documents": bundle.documents,
        "empty_documents": bundle.empty_documents, "bytes": bundle.bytes, "tokens": bundle.tokens,
        "seconds": 0.5, "report": (report or ReadReport()).to_dict(),
    }
    return bundle, summary


def make_outcome(shard_documents: dict[str, list[str]], failed: tuple[str, ...] = (),
                 reports: dict[str, ReadReport] | None = None, groups: dict[str, list[str]] | None = None,
                 **config_fields) -> ScanOutcome:
    """An outcome as the runner builds it: completed shards merged, failed shards listed."""
    shards = [make_shard(name) for name in [*shard_documents, *failed]]
    plan = Plan(declared_format="auto", target_shard_bytes=1 << 20, total_objects=len(shards),
                total_bytes=100 * len(shards), shards=shards)
    config = ScanConfig(sources=["/data"], out="/unused", sketch=SETTINGS, **config_fields)
    outcome = ScanOutcome(config=config, plan=plan, bundle=None, seconds=1.25)
    for shard in shards[: len(shard_documents)]:
        name = shard.url.rsplit("/", 1)[-1]
        bundle, summary = shard_summary(
            shard, shard_documents[name], (reports or {}).get(name), (groups or {}).get(name)
        )
        outcome.bundle = bundle if outcome.bundle is None else outcome.bundle.merge(bundle)
        outcome.summaries.append(summary)
    for shard in shards[len(shard_documents):]:
        outcome.failures.append({"shard_id": shard.shard_id, "url": shard.url, "error": "OSError: unreadable"})
    return outcome


def skips(reason: str, count: int, prefix: str) -> ReadReport:
    report = ReadReport()
    for line in range(count):
        report.skip(reason, f"{prefix}:line {line + 1}", "bad line")
    return report


SMALL = {"a.jsonl": ["the cat sat", "", "the cat ran"], "b.jsonl": ["the dog sat"]}


def test_counters_match_documents():
    result = build_result(make_outcome(SMALL))

    assert result.documents == 4
    assert result.empty_documents == 1
    assert result.tokens == 9
    assert result.bytes == len("the cat sat") + len("the cat ran") + len("the dog sat")


def test_ngram_totals_are_exact_per_order():
    result = build_result(make_outcome(SMALL))

    assert list(result.ngrams) == ["1", "2", "3"]
    assert result.ngrams["1"].total == 9
    assert result.ngrams["2"].total == 6
    assert result.ngrams["3"].total == 3


def test_distinct_ngrams_estimate_small_counts():
    result = build_result(make_outcome(SMALL))

    # the, cat, sat, ran, dog: HyperLogLog's linear counting is exact to rounding at this size.
    assert result.ngrams["1"].distinct == pytest.approx(5, abs=0.5)
    assert result.ngrams["1"].distinct_rse == pytest.approx(1.04 / math.sqrt(2**10))


def test_distinct_ratio_is_distinct_over_total():
    result = build_result(make_outcome(SMALL))

    stats = result.ngrams["1"]
    assert result.indicators.distinct_ratio["1"] == pytest.approx(stats.distinct / stats.total)


def test_top_ngrams_rank_by_count():
    result = build_result(make_outcome(SMALL))

    top = result.top_ngrams["1"]
    assert top[0].ngram == "the"
    assert top[0].count == 3
    assert [item.count for item in top] == sorted((item.count for item in top), reverse=True)


def test_top_ngrams_respect_limit():
    documents = {"a.jsonl": [" ".join(f"word{index}" for index in range(40))]}

    result = build_result(make_outcome(documents, top_ngrams=5))

    assert len(result.top_ngrams["1"]) == 5


def test_features_summarize_doc_tokens():
    documents = {"a.jsonl": [" ".join(["word"] * count) for count in range(1, 101)]}

    features = build_result(make_outcome(documents)).features["doc_tokens"]

    assert features.count == 100
    assert features.p50 == pytest.approx(50, rel=0.02)
    assert features.p90 == pytest.approx(90, rel=0.02)
    assert features.mean == pytest.approx(50.5)
    assert features.min == 1
    assert features.max == 100


def test_errors_merge_over_shards():
    reports = {"a.jsonl": skips("invalid_json", 15, "a"), "b.jsonl": skips("invalid_json", 10, "b")}
    reports["b.jsonl"].skip("missing_text_field", "b:line 99", "no text")

    errors = build_result(make_outcome(SMALL, reports=reports)).errors

    assert errors.count == 26
    assert errors.by_reason == {"invalid_json": 25, "missing_text_field": 1}
    assert len(errors.samples) == MAX_ERROR_SAMPLES
    assert errors.samples[0].location == "a:line 1"


def test_skips_without_limit_keep_status_complete():
    reports = {"a.jsonl": skips("invalid_json", 3, "a")}

    result = build_result(make_outcome(SMALL, reports=reports, max_errors=None))

    assert result.status == "complete"
    assert result.problems == []


def test_skips_beyond_max_errors_make_result_incomplete():
    reports = {"a.jsonl": skips("invalid_json", 3, "a")}

    result = build_result(make_outcome(SMALL, reports=reports, max_errors=2))

    assert result.status == "incomplete"
    assert "max_errors 2" in result.problems[0]


def test_failed_shards_are_listed():
    result = build_result(make_outcome(SMALL, failed=("c.parquet",), max_errors=None))

    assert result.shards.total == 3
    assert result.shards.completed == 2
    assert result.shards.failed == 1
    assert result.shards.failures[0].url == "/data/c.parquet"
    assert result.status == "incomplete"


def test_all_shards_failed_gives_empty_result():
    result = build_result(make_outcome({}, failed=("a.jsonl", "b.jsonl")))

    assert result.documents == 0
    assert result.ngrams["1"].total == 0
    assert result.indicators.distinct_ratio["1"] is None
    assert result.features["doc_tokens"].p50 is None
    assert result.top_ngrams["2"] == []


def test_groups_count_documents():
    groups = {"a.jsonl": ["x.org", "y.org", "x.org"], "b.jsonl": ["y.org"]}

    result = build_result(make_outcome(SMALL, groups=groups, group_by="domain"))

    assert set(result.groups) == {"x.org", "y.org"}
    assert result.groups["x.org"].documents == 2
    assert result.groups["x.org"].empty_documents == 0
    assert result.groups["y.org"].empty_documents == 1
    assert result.groups["y.org"].tokens == 3


def test_truncated_objects_are_listed():
    truncated = ReadReport()
    truncated.truncated = True

    result = build_result(make_outcome(SMALL, reports={"b.jsonl": truncated}))

    assert result.truncated_objects == ["/data/b.jsonl"]


def test_json_has_design_fields():
    document = json.loads(build_result(make_outcome(SMALL)).to_json())

    for field in DESIGN_FIELDS:
        assert field in document, field
    assert document["schema_version"] == 1
    assert document["synthetic_share"] is None


def test_json_round_trips():
    result = build_result(make_outcome({}, failed=("a.jsonl",)))

    text = result.to_json()

    assert "NaN" not in text
    assert ScanResult.model_validate_json(text) == result


def test_storage_secrets_stay_out_of_result():
    storage = StorageOptions.from_cli(None, False, ["secret=hunter2-value", "key=AKIDEXAMPLE"])

    text = build_result(make_outcome(SMALL, storage=storage)).to_json()

    assert "hunter2-value" not in text
    assert "AKIDEXAMPLE" not in text


def test_shards_table_lists_failures():
    outcome = make_outcome(SMALL, failed=("c.parquet",))

    rows = build_tables(outcome, build_result(outcome))["shards"].to_pylist()

    assert [row["status"] for row in rows] == ["completed", "completed", "failed"]
    assert rows[2]["error"] == "OSError: unreadable"
    assert rows[2]["documents"] is None
    assert rows[0]["documents"] == 3


def test_top_ngrams_table_ranks_from_one():
    outcome = make_outcome(SMALL)

    rows = build_tables(outcome, build_result(outcome))["top_ngrams"].to_pylist()

    assert rows[0] == {"order": 1, "rank": 1, "ngram": "the", "count": 3}


def test_report_escapes_ngrams():
    result = build_result(make_outcome(SMALL))
    result.top_ngrams["1"][0].ngram = "<script>alert(1)</script>"

    page = render_report(result)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_escapes_failure_messages():
    outcome = make_outcome(SMALL, failed=("c.parquet",))
    outcome.failures[0]["error"] = 'ValueError: column "<img src=x onerror=alert(1)>"'

    page = render_report(build_result(outcome))

    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_report_loads_nothing_external():
    page = render_report(build_result(make_outcome(SMALL)))

    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page


def test_outputs_written_locally(tmp_path):
    outcome = make_outcome(SMALL)
    result = build_result(outcome)

    location = write_outputs(outcome, result, str(tmp_path / "out"), StorageOptions())

    assert location == str(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "result.json").read_text())["documents"] == 4
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
    assert pq.read_table(tmp_path / "out" / "tables" / "groups.parquet").num_rows == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["report.html", "result.json", "tables"]


def test_outputs_written_to_s3(s3_endpoint, s3_client, s3_bucket):
    outcome = make_outcome(SMALL)
    result = build_result(outcome)

    write_outputs(outcome, result, f"s3://{s3_bucket}/scans/first", StorageOptions(endpoint_url=s3_endpoint))

    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="scans/first/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert keys == [
        "scans/first/report.html",
        "scans/first/result.json",
        "scans/first/tables/features.parquet",
        "scans/first/tables/groups.parquet",
        "scans/first/tables/shards.parquet",
        "scans/first/tables/top_ngrams.parquet",
    ]
    body = s3_client.get_object(Bucket=s3_bucket, Key="scans/first/result.json")["Body"].read()
    assert json.loads(body)["tokens"] == 9


def test_distinct_estimate_is_capped_at_the_total():
    accumulator = ShardAccumulator(SketchSettings(min_order=1, max_order=2), "capped")
    accumulator.add_texts(pa.array(["a b c d"]))
    bundle = accumulator.finish()
    bundle.hll_registers[:] = 20  # registers of a far larger set than 4 unigrams

    stats = ngram_stats(bundle)

    assert bundle.distinct_ngrams(1) > 4
    assert stats["1"].distinct == 4
    assert stats["2"].distinct == 3
