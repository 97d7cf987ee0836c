"""Monitoring end to end: configuration errors, run-once over snapshots on S3, alerts, serve and the reports.

Everything runs for real: moto's S3 server on 127.0.0.1, the embedded local
Ray that each scan starts, a webhook server on 127.0.0.1 and headless Chromium.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import boto3
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scanner.cli import main
from scanner.demo import HUMAN_SOURCE, MIN_NUMBER_DOCUMENTS, number_chains, number_profile_config, write_number_corpus
from scanner.history import HistoryStore
from scanner.monitor_config import parse_monitor_config
from scanner.profile_build import build_profile
from scanner.storage import StorageOptions
from s3server import DUMMY_KEY_ID, DUMMY_SECRET, REGION

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNAPSHOT_DOCUMENTS = 400
# True synthetic shares of the three snapshots. The rules below fire at the third one only.
SNAPSHOT_SHARES = (0.0, 0.1, 0.6)
DOMAINS = ("example.com", "example.org")  # registered domains, the group keys
CHART_BLUE = (0, 114, 178)  # scanner.charts.PALETTE[0]


def write_config(path: pathlib.Path, config: dict) -> pathlib.Path:
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- configuration errors


VALID = {"name": "watch", "sources": ["/tmp/corpus/"], "history": "/tmp/history"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"history": None}, "history"),
        ({"sources": []}, "sources"),
        ({"alerts": [{"metric": "synthetic_shares", "above": 0.2}]}, "alerts[0].metric"),
        ({"alerts": [{"metric": "synthetic_share", "above": 0.2}, {"metric": "synthetic_share", "rise": 0.1}]}, "alerts[1]"),
        ({"alerts": [{"metric": "failed_shards", "above": 0, "below": 3}]}, "alerts[0]"),
        ({"schedule": {"cron": "every day"}}, "schedule.cron"),
        ({"schedule": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}, "schedule.timezone"),
        ({"scan": {"text_feld": "body"}}, "scan.text_feld"),
        ({"scan": {"ngram_orders": "9-12"}}, "scan.ngram_orders"),
        ({"scan": {"hll_precision": 30}}, "scan.hll_precision"),
        ({"scan": {"group_by": "month"}}, "scan.group_by"),
        ({"scan": {"endpoint_url": "127.0.0.1:9000"}}, "scan.endpoint_url"),
        ({"notify": {"webhook": "ftp://hooks.example.org/x"}}, "notify.webhook"),
        ({"max_object_attempts": 0}, "max_object_attempts"),
        ({"sources": [{"prefix": "s3://b/crawl/", "snapshot": "a/b"}]}, "sources[0].snapshot"),
    ],
)
def test_config_error_names_field(tmp_path, capsys, change, expected):
    config = {**VALID, **change}
    config = {key: value for key, value in config.items() if value is not None}
    path = write_config(tmp_path / "monitor.yaml", config)

    code = main(["monitor", "run-once", str(path)])

    assert code == 2
    assert f"invalid {expected}" in capsys.readouterr().err


def test_config_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "monitor.yaml"
    path.write_text("name: [unclosed\n")

    assert main(["monitor", "history", str(path)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_config_passes_the_registry_to_the_scan(tmp_path):
    config = parse_monitor_config({**VALID, "scan": {"registry": "/tmp/registry", "near_duplicate_threshold": 0.9}})

    scan = config.scan_config(["/tmp/corpus/a.jsonl"], str(tmp_path / "out"))

    assert scan.registry == "/tmp/registry"
    assert scan.near_duplicate_threshold == 0.9


def test_serve_without_schedule(tmp_path, capsys):
    path = write_config(tmp_path / "monitor.yaml", VALID)

    assert main(["monitor", "serve", str(path)]) == 2
    assert "invalid schedule" in capsys.readouterr().err


def test_config_snapshot_template():
    config = parse_monitor_config({**VALID, "sources": [{"prefix": "s3://b/cc/", "snapshot": "CC-MAIN-{year}-{week}"}]})
    pattern = config.sources[0].snapshot_pattern()

    assert pattern.fullmatch("CC-MAIN-2024-22")
    assert not pattern.fullmatch("CC-MAIN-2024")
    assert not pattern.fullmatch("other")


# ---------------------------------------------------------------- run-once over three snapshots on S3


class WebhookServer:
    """An HTTP server on 127.0.0.1 that stores the JSON body of every POST."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                bodies.append({"path": self.path, "type": self.headers["Content-Type"],
                               "body": json.loads(self.rfile.read(length))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/token-123"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def number_profile(tmp_path_factory):
    """A reference profile of the number chains (human and two teachers), built on a local Ray."""
    directory = tmp_path_factory.mktemp("numbers")
    corpus = write_number_corpus(directory, MIN_NUMBER_DOCUMENTS)
    path = directory / "numbers.profile"
    build_profile(number_profile_config(corpus, path, num_workers=2)).save(str(path))
    return path


def snapshot_lines(share: float, seed: int) -> list[bytes]:
    """Return JSONL lines of a snapshot whose true share of teacher-a documents is `share`."""
    chains = number_chains()
    rng = np.random.default_rng(seed)
    generated = round(share * SNAPSHOT_DOCUMENTS)
    texts = chains["teacher-a"].documents(generated, rng) if generated else []
    texts += chains[HUMAN_SOURCE].documents(SNAPSHOT_DOCUMENTS - generated, rng)
    order = rng.permutation(len(texts))
    return [
        json.dumps({"text": texts[index], "url": f"https://www.{DOMAINS[number % 2]}/doc/{seed}-{number}"}).encode() + b"\n"
        for number, index in enumerate(order)
    ]


def parquet_without_text_column() -> bytes:
    """A Parquet file whose text is in `body`, so a scan with text_field `text` fails its shard."""
    sink = io.BytesIO()
    pq.write_table(pa.table({"body": ["a document in the wrong column"]}), sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def monitored(s3_endpoint, number_profile, tmp_path_factory):
    """Three snapshots added one after another, each followed by `monitor run-once`, then two more runs."""
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION,
        aws_access_key_id=DUMMY_KEY_ID, aws_secret_access_key=DUMMY_SECRET,
    )
    bucket = "monitor-test"
    client.create_bucket(Bucket=bucket)
    # Neither matches the snapshot template, so no run may scan them.
    client.put_object(Bucket=bucket, Key="crawl/README.txt", Body=b"not a snapshot")
    client.put_object(Bucket=bucket, Key="crawl/other/part-0.jsonl", Body=b'{"text": "outside"}\n')

    webhook = WebhookServer()
    directory = tmp_path_factory.mktemp("monitor")
    config = {
        "name": "crawl-watch",
        "sources": [{"prefix": f"s3://{bucket}/crawl/", "snapshot": "snap-{number}", "match": "*.jsonl*"}],
        "scan": {
            "profile": str(number_profile), "endpoint_url": s3_endpoint, "group_by": "domain",
            "num_workers": 2, "ngram_orders": "1-3", "format": "auto",
        },
        "history": f"s3://{bucket}/monitor/crawl-watch/",
        "max_object_attempts": 2,
        "alerts": [
            {"metric": "synthetic_share", "above": 0.4},
            {"metric": "synthetic_share", "rise": 0.3, "runs": 1},
            {"metric": "failed_shards", "above": 0},
        ],
        "notify": {"webhook": webhook.url, "webhook_timeout_seconds": 5},
    }
    path = write_config(directory / "monitor.yaml", config)

    codes, keys = [], []
    for number, share in enumerate(SNAPSHOT_SHARES, start=1):
        lines = snapshot_lines(share, seed=number)
        half = len(lines) // 2
        new_keys = [f"crawl/snap-{number}/part-0.jsonl", f"crawl/snap-{number}/part-1.jsonl.gz"]
        client.put_object(Bucket=bucket, Key=new_keys[0], Body=b"".join(lines[:half]))
        client.put_object(Bucket=bucket, Key=new_keys[1], Body=gzip.compress(b"".join(lines[half:])))
        if number == 3:
            # The object's name matches, but its shard fails: no `text` column.
            new_keys.append(f"crawl/snap-{number}/part-2.jsonl.parquet")
            client.put_object(Bucket=bucket, Key=new_keys[-1], Body=parquet_without_text_column())
        keys.append(new_keys)
        codes.append(main(["monitor", "run-once", str(path)]))

    # Run 4 retries the object whose shard failed; run 5 leaves it out after max_object_attempts (2).
    codes.append(main(["monitor", "run-once", str(path)]))
    codes.append(main(["monitor", "run-once", str(path)]))
    webhook.close()

    storage = StorageOptions(endpoint_url=s3_endpoint)
    rows = HistoryStore(config["history"], storage).read_runs()
    results = [
        json.loads(client.get_object(Bucket=bucket, Key=row["result_url"].removeprefix(f"s3://{bucket}/") + "/result.json")["Body"].read())
        if row["result_url"] else None
        for row in rows
    ]
    return {
        "client": client, "bucket": bucket, "config": path, "codes": codes, "keys": keys, "rows": rows,
        "results": results, "webhook": webhook.bodies, "directory": directory,
    }


def test_run_once_history_rows(monitored):
    rows = monitored["rows"]

    assert len(rows) == 5
    assert [row["status"] for row in rows] == ["ok", "ok", "incomplete", "incomplete", "no_new_objects"]
    assert [row["objects"] for row in rows] == [2, 2, 3, 1, 0]
    assert [row["snapshots"] for row in rows[:3]] == [["snap-1"], ["snap-2"], ["snap-3"]]
    assert rows[4]["objects_left_out"] == 1
    assert [row["run_id"] for row in rows] == sorted(row["run_id"] for row in rows)


def test_run_once_scans_only_new_objects(monitored):
    bucket = monitored["bucket"]
    scanned = [sorted(result["sources"]) for result in monitored["results"][:4]]
    expected = [sorted(f"s3://{bucket}/{key}" for key in keys) for keys in monitored["keys"]]
    broken = f"s3://{bucket}/crawl/snap-3/part-2.jsonl.parquet"

    assert scanned[:3] == expected
    assert scanned[3] == [broken]
    assert monitored["results"][4] is None


def test_run_once_documents_and_shares(monitored):
    rows = monitored["rows"]

    assert [row["documents"] for row in rows[:3]] == [SNAPSHOT_DOCUMENTS] * 3
    for row, truth in zip(rows[:3], SNAPSHOT_SHARES):
        # The interval covers the truth, with 0.05 slack for the 400-document snapshots.
        assert row["synthetic_share_low"] - 0.05 <= truth <= row["synthetic_share_high"] + 0.05
        assert abs(row["synthetic_share"] - truth) < 0.15
    assert sorted(group["name"] for group in rows[2]["groups"]) == sorted(DOMAINS)
    assert all(group["estimate"] is not None for group in rows[2]["groups"])
    assert rows[0]["unigram_entropy_bits"] > 0
    assert rows[0]["contamination"] is None


def test_alerts_fire_at_third_run_only(monitored):
    rows = monitored["rows"]
    fired = [sorted(alert.split(":")[0] for alert in row["alerts"]) for row in rows]

    assert fired[0] == []
    assert fired[1] == []
    assert fired[2] == ["failed_shards > 0", "synthetic_share > 0.4", "synthetic_share rise > 0.3 over 1 runs"]
    assert fired[3] == ["failed_shards > 0"]
    assert monitored["codes"] == [0, 0, 4, 4, 0]


def test_webhook_receives_alerts(monitored):
    bodies = monitored["webhook"]
    third_run = monitored["rows"][2]["run_id"]

    assert len(bodies) == 4
    assert all(item["type"] == "application/json" for item in bodies)
    assert all(item["path"] == "/hooks/token-123" for item in bodies)
    first = [item["body"] for item in bodies if item["body"]["run_id"] == third_run]
    assert sorted(body["metric"] for body in first) == ["failed_shards", "synthetic_share", "synthetic_share"]
    above = next(body for body in first if body["condition"] == "above" and body["metric"] == "synthetic_share")
    assert above["monitor"] == "crawl-watch"
    assert above["value"] > above["threshold"] == 0.4
    assert above["result_url"].endswith(third_run)


def test_history_command_prints_runs(monitored, capsys):
    assert main(["monitor", "history", str(monitored["config"])]) == 0
    output = capsys.readouterr().out

    for row in monitored["rows"]:
        assert row["run_id"] in output
    assert "no_new_objects" in output
    assert "alert in " + monitored["rows"][2]["run_id"] in output


# ---------------------------------------------------------------- a failed run changes nothing


def write_local_corpus(directory: pathlib.Path, files: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        lines = [json.dumps({"text": f"document {index} line {line} about the weather"}) for line in range(20)]
        (directory / f"part-{index}.jsonl").write_text("\n".join(lines) + "\n")


def test_failed_run_objects_retried(tmp_path):
    corpus = tmp_path / "corpus"
    write_local_corpus(corpus, 3)
    config = {
        "name": "local", "sources": [str(corpus)], "history": str(tmp_path / "history"),
        "scan": {"profile": str(tmp_path / "missing.profile"), "num_workers": 1, "ngram_orders": "1-2"},
    }
    path = write_config(tmp_path / "monitor.yaml", config)
    store = HistoryStore(config["history"], StorageOptions())

    failed_code = main(["monitor", "run-once", str(path)])
    after_failure = store.read_runs()
    objects_written = (tmp_path / "history" / "objects").exists()
    del config["scan"]["profile"]
    write_config(path, config)
    retried_code = main(["monitor", "run-once", str(path)])
    rows = store.read_runs()

    assert failed_code == 2
    assert [row["status"] for row in after_failure] == ["failed"]
    assert "missing.profile" in after_failure[0]["error"]
    assert not objects_written
    assert retried_code == 0
    assert [row["status"] for row in rows] == ["failed", "ok"]
    assert rows[1]["objects"] == 3
    assert rows[1]["documents"] == 60


# ---------------------------------------------------------------- serve


def end_process_tree(process: subprocess.Popen) -> None:
    """Kill a process and every process it started, by PID, if any is still running."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for item in [*children]:
        try:
            item.kill()
        except psutil.NoSuchProcess:
            pass
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)
    psutil.wait_procs(children, timeout=30)


def test_serve_runs_on_schedule_and_stops_on_sigterm(tmp_path):
    corpus = tmp_path / "corpus"
    write_local_corpus(corpus, 2)
    config = {
        "name": "served", "sources": [str(corpus)], "history": str(tmp_path / "history"),
        "scan": {"num_workers": 1, "ngram_orders": "1-2"},
        "schedule": {"cron": "*/3 * * * * *", "timezone": "Europe/Berlin"},
    }
    path = write_config(tmp_path / "monitor.yaml", config)
    store = HistoryStore(config["history"], StorageOptions())
    environment = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "scanner", "monitor", "serve", str(path), "--log-level", "info"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(store.read_runs()) < 2 and process.poll() is None:
            time.sleep(1)
        rows = store.read_runs()
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(timeout=90)
        stop_seconds = time.monotonic() - started
        stderr = process.stderr.read().decode()
    finally:
        end_process_tree(process)

    assert len(rows) >= 2, stderr[-3000:]
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "no_new_objects"
    assert code == 0, stderr[-3000:]
    assert "next run at" in stderr
    assert "stopped on SIGTERM" in stderr
    assert stop_seconds < 75


# ---------------------------------------------------------------- reports in headless Chromium


def chromium_or_skip() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip("Chromium is not installed: install it with `apt-get install -y chromium` to run this test")
    return path


def render(html_path: pathlib.Path, screenshot: pathlib.Path, height: int) -> str:
    """Take a screenshot of a local page in headless Chromium; return Chromium's log (stderr)."""
    command = [
        chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--enable-logging=stderr", "--v=0", f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
        f"--window-size=1280,{height}", f"--screenshot={screenshot}", html_path.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, timeout=120, check=False)
    return completed.stderr.decode(errors="replace")


def pixels_near(image, colour: tuple[int, int, int], tolerance: int) -> int:
    array = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(array - np.array(colour)).max(axis=2) <= tolerance).sum())


def console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def test_trend_report_renders_charts(monitored, tmp_path_factory):
    from PIL import Image

    artifacts = tmp_path_factory.mktemp("trend-report")
    page = artifacts / "trends.html"
    screenshot = artifacts / "trends.png"

    assert main(["monitor", "report", str(monitored["config"]), "--out", str(page)]) == 0
    html = page.read_text()
    log = render(page, screenshot, height=3000)
    image = Image.open(screenshot)

    assert "<script" not in html
    assert html.count("<svg") >= 6
    assert "Synthetic share per group" in html
    assert console_messages(log) == []
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    # Lines, markers and the interval band of the charts are drawn in the first palette colour.
    assert pixels_near(image, CHART_BLUE, tolerance=8) > 500


def test_scan_report_group_share_chart(monitored, tmp_path_factory):
    from PIL import Image

    artifacts = tmp_path_factory.mktemp("scan-report")
    client, bucket = monitored["client"], monitored["bucket"]
    key = monitored["rows"][2]["result_url"].removeprefix(f"s3://{bucket}/") + "/report.html"
    page = artifacts / "report.html"
    page.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    screenshot = artifacts / "report.png"
    html = page.read_text()
    # Keep the group section only, so the chart is inside the screenshot whatever the page's length.
    start = html.index("<h2>Groups by domain</h2>")
    section = artifacts / "groups.html"
    section.write_text(html[: html.index("<h1>")] + html[start:])

    log = render(section, screenshot, height=900)
    image = Image.open(screenshot)
    bar_colour = tuple(round(0.75 * channel + 0.25 * 255) for channel in CHART_BLUE)

    assert "Synthetic share per domain" in html
    assert console_messages(log) == []
    assert pixels_near(image, bar_colour, tolerance=6) > 500


def test_missing_local_source_exits_2(tmp_path, capsys):
    config = {"name": "watch", "sources": [str(tmp_path / "no-such-dir")], "history": str(tmp_path / "history")}
    path = write_config(tmp_path / "monitor.yaml", config)

    code = main(["monitor", "run-once", str(path)])

    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    rows = HistoryStore(str(tmp_path / "history"), StorageOptions()).read_runs()
    assert [row["status"] for row in rows] == ["failed"]
