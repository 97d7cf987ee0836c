"""The corpus-scanner command line, end to end on the embedded local Ray in a subprocess.

Each scan subprocess starts Ray (about 5 s), so the scan tests share a few runs
through module-scoped fixtures. Argument errors and `plan` run in process.
"""

import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner import cli
from scanner.accumulator import ShardAccumulator
from scanner.formats import ReadReport
from scanner.plan import Plan, Shard
from scanner.runner import ScanOutcome
from scanner.samples import MarkovCorpus

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOLMA_FILE = "allenai-dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
MARKUP = "<script>alert(1)</script>"
SYNTHETIC_DOCUMENTS = 200
# 400 target documents: 48 of teacher-a and 32 of teacher-b.
DEMO_NUMBER_DOCUMENTS = 400
SHARE_ROW = re.compile(
    r"  (?P<source>all teachers|teacher-[ab]) +(?P<estimate>[0-9.]+)"
    r"  (?P<low>[0-9.]+) to (?P<high>[0-9.]+) +(?P<truth>[0-9.]+)"
)


def run_cli(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scanner", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def synthetic_scan(tmp_path_factory):
    """Scan of a JSONL file with markup and one invalid line, next to a Parquet file without a text column."""
    corpus = tmp_path_factory.mktemp("corpus")
    texts = MarkovCorpus(seed=5).documents(SYNTHETIC_DOCUMENTS - 1, mean_words=60)
    lines = [json.dumps({"text": text}) for text in texts]
    # Repeated so that its n-grams are among the most frequent.
    lines.append(json.dumps({"text": " ".join([MARKUP] * 100)}))
    lines.append("{not json")
    with gzip.open(corpus / "docs.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    # The reader rejects the file because it has no "text" column, and the error lists the columns.
    pq.write_table(pa.table({MARKUP: ["a", "b"]}), corpus / "broken.parquet")

    out = tmp_path_factory.mktemp("out") / "scan"
    completed = run_cli(
        "scan", str(corpus), "--out", str(out), "--keep-punctuation", "--num-workers", "2",
        "--ngram-orders", "1-3", "--no-progress", "--log-level", "warning",
    )
    return completed, out


@pytest.fixture(scope="module")
def dolma_scan(real_corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("dolma") / "out"
    completed = run_cli(
        "scan", str(real_corpora / DOLMA_FILE), "--out", str(out), "--num-workers", "2",
        "--no-progress", "--max-errors", "0",
    )
    return completed, out


def test_failed_shard_exits_3(synthetic_scan):
    completed, _ = synthetic_scan

    assert completed.returncode == 3, completed.stderr


def test_failed_shard_listed_in_result(synthetic_scan):
    _, out = synthetic_scan

    result = json.loads((out / "result.json").read_text())

    assert result["shards"]["total"] == 2
    assert result["shards"]["failed"] == 1
    assert result["shards"]["failures"][0]["url"].endswith("broken.parquet")
    assert "text column 'text' not found" in result["shards"]["failures"][0]["error"]
    assert result["status"] == "incomplete"


def test_completed_shard_still_counted(synthetic_scan):
    _, out = synthetic_scan

    result = json.loads((out / "result.json").read_text())

    assert result["documents"] == SYNTHETIC_DOCUMENTS
    assert result["errors"]["by_reason"] == {"invalid_json": 1}
    assert list(result["ngrams"]) == ["1", "2", "3"]


def test_summary_printed_after_scan(synthetic_scan):
    completed, out = synthetic_scan

    assert f"documents:        {SYNTHETIC_DOCUMENTS:,}" in completed.stdout
    assert "1 completed, 1 failed, 2 planned" in completed.stdout
    assert "skipped records:  1 (invalid_json 1)" in completed.stdout
    assert str(out) in completed.stdout


def test_shards_table_marks_failure(synthetic_scan):
    _, out = synthetic_scan

    rows = pq.read_table(out / "tables" / "shards.parquet").to_pylist()

    assert sorted(row["status"] for row in rows) == ["completed", "failed"]


def test_report_escapes_document_markup(synthetic_scan):
    _, out = synthetic_scan

    page = (out / "report.html").read_text(encoding="utf-8")

    # The document's markup reaches the page as n-grams ("< script >") and in the failure message.
    assert "&lt; script &gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "< script >" not in page
    assert "<script" not in page


def test_dolma_file_counts(dolma_scan):
    completed, out = dolma_scan

    result = json.loads((out / "result.json").read_text())

    assert completed.returncode == 0, completed.stderr
    # The file contains 697 documents, 27 of them with empty text.
    assert result["documents"] == 697
    assert result["empty_documents"] == 27
    assert result["errors"]["count"] == 0
    assert result["shards"] == {"total": 1, "completed": 1, "failed": 0, "failures": []}


def test_dolma_outputs_written(dolma_scan):
    _, out = dolma_scan

    tables = sorted(path.name for path in (out / "tables").iterdir())

    assert tables == ["features.parquet", "groups.parquet", "shards.parquet", "top_ngrams.parquet"]
    assert (out / "report.html").is_file()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    completed = run_cli(
        "demo", "--out", str(out), "--documents", "100", "--number-documents", str(DEMO_NUMBER_DOCUMENTS),
        "--num-workers", "2", "--no-progress",
    )
    return completed, out


def share_rows(stdout: str) -> dict[str, tuple[float, float, float, float]]:
    """Parse the demo's share table: source -> (estimate, low, high, true share)."""
    rows = {}
    for line in stdout.splitlines():
        match = SHARE_ROW.fullmatch(line)
        if match:
            rows[match["source"]] = tuple(float(match[key]) for key in ("estimate", "low", "high", "truth"))
    return rows


def test_demo_exits_0(demo_run):
    completed, _ = demo_run

    assert completed.returncode == 0, completed.stderr


def test_demo_scans_text_corpus(demo_run):
    _, out = demo_run

    corpus = sorted(path.name for path in (out / "corpus").iterdir())
    assert corpus == [f"part-{index:04d}.jsonl.gz" for index in range(4)] + ["part-0004.parquet"]
    result = json.loads((out / "result.json").read_text())
    assert result["documents"] == 100
    assert result["group_by"] == "domain"
    assert all(name.endswith(".example") for name in result["groups"])


def test_demo_writes_number_corpus(demo_run):
    _, out = demo_run

    references = sorted(path.name for path in (out / "references").iterdir())
    assert references == ["human.jsonl.gz", "teacher-a.jsonl.gz", "teacher-b.jsonl.gz"]
    with gzip.open(out / "references" / "teacher-a.jsonl.gz", "rt") as handle:
        record = json.loads(handle.readline())
    assert record["group"] == "teacher-a-0"
    assert all(word.isdigit() for word in record["text"].split())
    sources = []
    for path in sorted((out / "numbers").iterdir()):
        with gzip.open(path, "rt") as handle:
            sources += [json.loads(line)["source"] for line in handle]
    assert len(sources) == DEMO_NUMBER_DOCUMENTS
    assert sources.count("teacher-a") == round(0.12 * DEMO_NUMBER_DOCUMENTS)
    assert sources.count("teacher-b") == round(0.08 * DEMO_NUMBER_DOCUMENTS)


def test_demo_prints_number_shares(demo_run):
    completed, out = demo_run

    assert f"wrote profile {out / 'numbers.profile'}: 100 words, generators teacher-a, teacher-b" in completed.stdout
    assert f"synthetic share of {out / 'numbers'} ({DEMO_NUMBER_DOCUMENTS:,} documents" in completed.stdout
    assert "warning:" not in completed.stdout
    assert list(share_rows(completed.stdout)) == ["all teachers", "teacher-a", "teacher-b"]


@pytest.mark.parametrize(("source", "truth"), [("all teachers", 0.2), ("teacher-a", 0.12), ("teacher-b", 0.08)])
def test_demo_interval_covers_truth(demo_run, source, truth):
    completed, _ = demo_run

    estimate, low, high, printed_truth = share_rows(completed.stdout)[source]

    assert printed_truth == truth
    assert low <= truth <= high
    assert low <= estimate <= high


def test_demo_share_matches_result_json(demo_run):
    completed, out = demo_run

    share = json.loads((out / "numbers-scan" / "result.json").read_text())["synthetic_share"]

    estimate, low, high, _ = share_rows(completed.stdout)["all teachers"]
    assert estimate == round(share["estimate"], 3)
    assert (low, high) == (round(share["ci95"][0], 3), round(share["ci95"][1], 3))


def test_missing_source_exits_2(tmp_path):
    missing = tmp_path / "no-such-dir"

    completed = run_cli("scan", str(missing), "--out", str(tmp_path / "out"))

    assert completed.returncode == 2
    assert f"source '{missing}' matched no objects" in completed.stderr
    assert "check that the path exists" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_bad_ngram_orders_exit_2(tmp_path, capsys):
    code = cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--ngram-orders", "5-2"])

    assert code == 2
    assert "invalid n-gram orders '5-2'" in capsys.readouterr().err


def test_bad_storage_option_exits_2(tmp_path, capsys):
    code = cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--storage-option", "anonymous"])

    assert code == 2
    assert "invalid --storage-option 'anonymous': expected KEY=VALUE" in capsys.readouterr().err


def test_invalid_setting_names_option(tmp_path, capsys):
    code = cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--hll-precision", "30"])

    assert code == 2
    assert "invalid --hll-precision 30: Input should be less than or equal to 18" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys):
    assert cli.main(["registry", "build"]) == 2


def test_profile_build_without_sources_exits_2(capsys):
    assert cli.main(["profile", "build"]) == 2


def test_help_lists_only_built_commands(capsys):
    code = cli.main(["--help"])
    text = capsys.readouterr().out

    assert code == 0
    for command in ("scan", "plan", "demo", "profile", "registry", "audit", "submit", "jobs", "monitor"):
        assert command in text


def test_unexpected_error_exits_1(tmp_path, monkeypatch, capsys):
    def fail(config, progress_enabled=None):
        raise RuntimeError("worker pool exploded")

    monkeypatch.setattr("scanner.runner.run_scan", fail)
    code = cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--log-level", "error"])

    assert code == 1
    assert "corpus-scanner: error: scan failed: RuntimeError: worker pool exploded" in capsys.readouterr().err


def test_plan_prints_table(real_corpora, capsys):
    code = cli.main(["plan", str(real_corpora / DOLMA_FILE), "--log-level", "warning"])
    text = capsys.readouterr().out

    assert code == 0
    assert text.startswith("1 objects")
    assert "jsonl   gzip" in text


def test_plan_prints_json(real_corpora, capsys):
    code = cli.main(["plan", str(real_corpora / "allenai-dolma"), "--json", "--log-level", "warning"])
    plan = json.loads(capsys.readouterr().out)

    assert code == 0
    assert plan["total_objects"] == 7
    assert len(plan["shards"]) == 7


def test_plan_missing_source_exits_2(tmp_path, capsys):
    code = cli.main(["plan", str(tmp_path / "absent")])

    assert code == 2
    assert "matched no objects" in capsys.readouterr().err


def outcome_with_skips(config, skipped: int):
    """The outcome of a one-shard scan whose reader skipped `skipped` records, built without Ray."""
    shard = Shard(
        shard_id="id-a", url="/data/a.jsonl", size=10, etag=None, mtime=None,
        format="jsonl", compression=None, estimated_bytes=10,
    )
    accumulator = ShardAccumulator(config.sketch, shard.shard_id)
    accumulator.add_texts(pa.array(["one small document"], type=pa.large_string()))
    bundle = accumulator.finish()
    report = ReadReport()
    for line in range(skipped):
        report.skip("invalid_json", f"/data/a.jsonl:line {line + 2}", "bad line")
    summary = {
        "shard_id": shard.shard_id, "url": shard.url, "byte_range": None, "row_groups": None,
        "estimated_bytes": 10, "documents": 1, "empty_documents": 0, "bytes": bundle.bytes,
        "tokens": bundle.tokens, "seconds": 0.1, "report": report.to_dict(),
    }
    plan = Plan(declared_format="auto", target_shard_bytes=1 << 20, total_objects=1, total_bytes=10, shards=[shard])
    return ScanOutcome(config=config, plan=plan, bundle=bundle, summaries=[summary])


@pytest.mark.parametrize(
    ("max_errors", "expected"),
    [(None, 0), ("2", 0), ("1", 3), ("0", 3)],
)
def test_max_errors_decides_exit_code(tmp_path, monkeypatch, max_errors, expected):
    monkeypatch.setattr("scanner.runner.run_scan", lambda config, progress_enabled=None: outcome_with_skips(config, 2))
    limit = [] if max_errors is None else ["--max-errors", max_errors]

    code = cli.main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--log-level", "error", *limit])

    assert code == expected
    assert json.loads((tmp_path / "out" / "result.json").read_text())["errors"]["count"] == 2


def test_output_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "taken").write_text("not a directory")

    code = cli.main(["scan", str(tmp_path / "data.jsonl"), "--out", str(tmp_path / "taken")])

    assert code == 2
    assert "it is a file" in capsys.readouterr().err


def test_unreachable_ray_address_exits_2(tmp_path, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "data.jsonl").write_text('{"text": "a"}\n')

    code = cli.main(
        ["scan", str(tmp_path / "data.jsonl"), "--out", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"]
    )

    assert code == 2
    assert "cannot reach the Ray cluster" in capsys.readouterr().err


def test_misspelled_text_field_exits_3(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"text": "a b"}\n{"text": "c"}\n')

    completed = run_cli("scan", str(tmp_path / "data.jsonl"), "--out", str(tmp_path / "out"), "--text-field", "body")

    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert completed.returncode == 3
    assert result["documents"] == 0
    assert "check --text-field (now 'body')" in result["problems"][0]


def test_log_level_default_per_command():
    parser = cli.build_parser()

    scan = parser.parse_args(["scan", "corpus", "--out", "out"])
    demo = parser.parse_args(["demo"])

    assert scan.log_level is None
    assert getattr(scan, "default_log_level", "info") == "info"
    assert demo.default_log_level == "warning"


def test_scan_ignores_local_scanner_folder(tmp_path):
    # Ray adds the driver's current directory to the workers' import path; a stale
    # `scanner` package there must not replace the installed one in the workers.
    shadow = tmp_path / "scanner"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('stale scanner package imported')\n")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "one two three"}\n{"text": "four five"}\n')

    program = pathlib.Path(sys.executable).parent / "corpus-scanner"
    completed = subprocess.run(
        [str(program), "scan", "corpus.jsonl", "--out", "out", "--num-workers", "1", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["documents"] == 2


def test_relative_local_paths_made_absolute(tmp_path, monkeypatch):
    # Ray workers run in the package's parent directory, so relative paths must not reach them.
    from scanner.config import ScanConfig

    monkeypatch.chdir(tmp_path)
    config = ScanConfig(sources=["data"], out="out", state_dir="state", profile="p.csp", registry="reg")

    assert config.out == str(tmp_path / "out")
    assert config.state_dir == str(tmp_path / "state")
    assert config.profile == str(tmp_path / "p.csp")
    assert config.registry == str(tmp_path / "reg")
    assert ScanConfig(sources=["data"], out="s3://bucket/out").out == "s3://bucket/out"
