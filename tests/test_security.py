"""Security: no unpickling of stored files, no credentials in outputs, strict configuration, paths inside --out."""

import hashlib
import io
import json
import logging
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from scanner.audit import AuditConfig
from scanner.bundle import Bundle
from scanner.checkpoints import CheckpointStore, scan_key
from scanner.codec import FrameError
from scanner.config import ScanConfig
from scanner.history import HistoryStore
from scanner.monitor_config import MonitorConfigError, load_monitor_config
from scanner.profile import ReferenceProfile
from scanner.profile_build import ProfileBuildConfig
from scanner.registry import ARRAY_FILES, RegistryBuildConfig, RegistryError, load_registry
from scanner.storage import StorageOptions

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENVIRONMENT_SECRET = "EnvSecretKey-7f3a9c2e51d0"
OPTION_SECRET = "OptionSecretKey-c41e8b77a2f6"


class WritesMarker:
    """Unpickling this object writes `path`: a stand-in for code that a stored file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (pathlib.Path(self.path).write_text, ("unpickled",))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker-written-by-unpickling"


@pytest.fixture
def payload(marker):
    data = pickle.dumps(WritesMarker(marker))
    # The payload works: loading it with pickle writes the marker. Undo that before the test.
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    return data


# (a) no stored file is unpickled


def test_bundle_pickle_rejected(payload, marker):
    with pytest.raises(FrameError, match="not a corpus-scanner sketch file"):
        Bundle.from_bytes(payload)

    assert not marker.exists()


def test_checkpoint_pickle_rejected(payload, marker, tmp_path):
    config = ScanConfig(sources=[str(tmp_path)], out=str(tmp_path / "out"), resume=True)
    shards = tmp_path / "out" / "state" / f"scan-{scan_key(config)}" / "shards"
    shards.mkdir(parents=True)
    (shards / "abc.bundle").write_bytes(payload)
    (shards / "abc.json").write_bytes(payload)
    store = CheckpointStore(config.resolved_state_dir, config)

    with pytest.raises(ValueError, match="is not a shard summary"):
        store.completed()
    with pytest.raises(FrameError):
        Bundle.from_bytes(store.load_bundle_bytes("abc"))
    assert not marker.exists()


def test_profile_pickle_rejected(payload, marker, tmp_path):
    path = tmp_path / "crafted.profile"
    path.write_bytes(payload)

    with pytest.raises(FrameError):
        ReferenceProfile.load(str(path))
    assert not marker.exists()


def write_registry(root, manifest_bytes=None, array_bytes=None):
    """Write a registry with one dataset "crafted"; arrays get the checksums the manifest lists."""
    dataset = root / "datasets" / "crafted"
    dataset.mkdir(parents=True)
    (root / "registry.json").write_text(
        json.dumps({"format": "corpus-scanner-registry", "format_version": 1, "datasets": ["crafted"]})
    )
    files = {}
    for name in ARRAY_FILES:
        data = array_bytes if array_bytes is not None else _npy(np.zeros(4, dtype=np.uint64))
        (dataset / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    manifest = {"name": "crafted", "documents": 1, "tokenizer": {}, "minhash": {}, "bloom": {}, "files": files}
    (dataset / "manifest.json").write_bytes(manifest_bytes if manifest_bytes is not None else json.dumps(manifest).encode())


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_registry_manifest_pickle_rejected(payload, marker, tmp_path):
    write_registry(tmp_path, manifest_bytes=payload)

    with pytest.raises(RegistryError, match="is not valid JSON"):
        load_registry(str(tmp_path))
    assert not marker.exists()


def test_registry_index_pickle_rejected(payload, marker, tmp_path):
    write_registry(tmp_path)
    (tmp_path / "registry.json").write_bytes(payload)

    with pytest.raises(RegistryError, match="is not valid JSON"):
        load_registry(str(tmp_path))
    assert not marker.exists()


def test_registry_pickled_array_rejected(payload, marker, tmp_path):
    write_registry(tmp_path, array_bytes=payload)

    with pytest.raises(RegistryError, match="is not a plain .npy array"):
        load_registry(str(tmp_path))
    assert not marker.exists()


def test_registry_object_npy_rejected(marker, tmp_path):
    object_array = np.array([WritesMarker(marker)], dtype=object)
    write_registry(tmp_path, array_bytes=_npy(object_array))

    with pytest.raises(RegistryError, match="is not a plain .npy array"):
        load_registry(str(tmp_path))
    assert not marker.exists()


def test_history_pickle_skipped(payload, marker, tmp_path, caplog):
    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)
    (runs / "20240101T000000.000000Z-abcdef.parquet").write_bytes(payload)
    store = HistoryStore(str(tmp_path / "history"), StorageOptions())

    with caplog.at_level(logging.ERROR, logger="scanner.history"):
        rows = store.read_runs()

    assert rows == []
    assert "unreadable and was skipped" in caplog.text
    assert not marker.exists()


# (b) credentials never reach logs, outputs or error messages


def run_cli(arguments, environment, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "scanner", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment,
    )


def secret_environment():
    environment = dict(os.environ)
    environment["AWS_ACCESS_KEY_ID"] = "testing"
    environment["AWS_SECRET_ACCESS_KEY"] = ENVIRONMENT_SECRET
    return environment


def files_containing(directory, secrets):
    found = []
    for path in pathlib.Path(directory).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(str(path), secret) for secret in secrets if secret.encode() in data]
    return found


@pytest.fixture
def s3_corpus(s3_client, s3_bucket):
    lines = "".join(json.dumps({"text": f"document {index} about storage"}) + "\n" for index in range(20))
    s3_client.put_object(Bucket=s3_bucket, Key="corpus/part.jsonl", Body=lines.encode())
    return f"s3://{s3_bucket}/corpus/"


def test_scan_outputs_hold_no_secret(s3_endpoint, s3_corpus, tmp_path):
    out = tmp_path / "out"
    completed = run_cli(
        ["scan", s3_corpus, "--out", str(out), "--endpoint-url", s3_endpoint,
         "--storage-option", "key=testing", "--storage-option", f"secret={OPTION_SECRET}",
         "--num-workers", "1", "--no-progress", "--log-level", "debug"],
        secret_environment(),
    )
    secrets = (ENVIRONMENT_SECRET, OPTION_SECRET)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["documents"] == 20
    assert [secret for secret in secrets if secret in completed.stdout + completed.stderr] == []
    assert files_containing(out, secrets) == []


def test_failed_scan_holds_no_secret(s3_endpoint, tmp_path):
    out = tmp_path / "out"
    completed = run_cli(
        ["scan", "s3://no-such-bucket-for-this-test/corpus/", "--out", str(out), "--endpoint-url", s3_endpoint,
         "--storage-option", "key=testing", "--storage-option", f"secret={OPTION_SECRET}",
         "--num-workers", "1", "--no-progress", "--log-level", "debug"],
        secret_environment(),
    )
    secrets = (ENVIRONMENT_SECRET, OPTION_SECRET)

    assert completed.returncode in (1, 2)
    assert completed.stderr.strip()
    assert [secret for secret in secrets if secret in completed.stdout + completed.stderr] == []
    assert files_containing(tmp_path, secrets) == []


def test_invalid_storage_option_error_hides_secret(tmp_path):
    from scanner import cli

    arguments = ["scan", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--storage-option", f"secret={OPTION_SECRET}", "--storage-option", f"secret={OPTION_SECRET}"]
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    logging.getLogger().addHandler(handler)
    try:
        from contextlib import redirect_stderr, redirect_stdout

        with redirect_stderr(output), redirect_stdout(output):
            code = cli.main(arguments)
    finally:
        logging.getLogger().removeHandler(handler)

    assert code == 2
    assert "given twice" in output.getvalue()
    assert OPTION_SECRET not in output.getvalue()


def test_storage_repr_hides_secret():
    storage = StorageOptions.from_cli(storage_options=[f"secret={OPTION_SECRET}", f"session_token={OPTION_SECRET}"])

    assert OPTION_SECRET not in repr(storage)
    assert OPTION_SECRET not in storage.model_dump_json()
    assert OPTION_SECRET not in json.dumps(storage.redacted())


def test_scan_config_json_hides_secret(tmp_path):
    storage = StorageOptions.from_cli(storage_options=[f"secret={OPTION_SECRET}"])
    config = ScanConfig(sources=[str(tmp_path)], out=str(tmp_path), storage=storage)

    assert OPTION_SECRET not in config.model_dump_json()
    assert OPTION_SECRET not in repr(config)


# (c) configuration models reject unknown fields


def scan_fields(tmp_path):
    return {"sources": [str(tmp_path)], "out": str(tmp_path / "out")}


@pytest.mark.parametrize(
    "extra",
    [
        {"unknown": 1},
        {"read": {"text_feild": "body"}},
        {"sketch": {"precision": 12}},
        {"storage": {"endpoint": "http://127.0.0.1:9"}},
    ],
    ids=["top", "read", "sketch", "storage"],
)
def test_scan_config_rejects_unknown(tmp_path, extra):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ScanConfig.model_validate({**scan_fields(tmp_path), **extra})


def test_profile_build_config_rejects_unknown(tmp_path):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ProfileBuildConfig.model_validate(
            {"human": [str(tmp_path)], "synthetic": {"g": [str(tmp_path)]}, "out": str(tmp_path / "p"), "bogus": 1}
        )


def test_registry_build_config_rejects_unknown(tmp_path):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RegistryBuildConfig.model_validate({"name": "d", "sources": [str(tmp_path)], "out": str(tmp_path), "bogus": 1})


def test_audit_config_rejects_unknown(tmp_path):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AuditConfig.model_validate(
            {"baseline": [str(tmp_path)], "candidate": [str(tmp_path)], "out": str(tmp_path), "bogus": 1}
        )


MONITOR_YAML = """
name: watch
sources: ["{source}"]
history: "{history}"
"""


@pytest.mark.parametrize(
    ("addition", "field"),
    [("extra_field: 1\n", "extra_field"), ("scan:\n  text_feild: body\n", "scan.text_feild"),
     ("schedule:\n  cron: '0 3 * * *'\n  every: 1\n", "schedule.every")],
    ids=["top", "scan", "schedule"],
)
def test_monitor_config_rejects_unknown(tmp_path, addition, field):
    path = tmp_path / "monitor.yaml"
    path.write_text(MONITOR_YAML.format(source=tmp_path, history=tmp_path / "history") + addition)

    with pytest.raises(MonitorConfigError, match=field.replace(".", r"\.")):
        load_monitor_config(path)


def test_monitor_config_valid_baseline(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text(MONITOR_YAML.format(source=tmp_path, history=tmp_path / "history"))

    assert load_monitor_config(path).name == "watch"


# (d) output paths stay inside --out


def listing(directory):
    return sorted(str(path) for path in pathlib.Path(directory).rglob("*"))


def test_registry_name_with_parent_rejected(tmp_path):
    from scanner import cli

    work = tmp_path / "work"
    (work / "corpus").mkdir(parents=True)
    (work / "corpus" / "a.jsonl").write_text('{"text": "a b c d e f g h"}\n')
    before = listing(tmp_path)

    code = cli.main(["registry", "build", "--name", "../escaped", str(work / "corpus"), "--out", str(work / "registry")])

    assert code == 2
    assert listing(tmp_path) == before


def test_registry_listed_parent_name_rejected(tmp_path):
    write_registry(tmp_path / "registry")
    (tmp_path / "registry" / "registry.json").write_text(
        json.dumps({"format": "corpus-scanner-registry", "format_version": 1, "datasets": ["../../outside"]})
    )

    with pytest.raises(RegistryError, match="invalid dataset name"):
        load_registry(str(tmp_path / "registry"))


def test_group_names_stay_inside_out(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    urls = ["http://../../escaped/", "http://..%2F..%2Fescaped/", "file:///../../escaped", "http://a/../../b"]
    with open(corpus / "docs.jsonl", "w", encoding="utf-8") as handle:
        for index, url in enumerate(urls * 5):
            handle.write(json.dumps({"text": f"document {index}", "url": url, "date": "../../2024-01-01"}) + "\n")
    out = tmp_path / "nested" / "out"
    before = listing(tmp_path)

    completed = run_cli(
        ["scan", str(corpus), "--out", str(out), "--group-by", "domain", "--num-workers", "1", "--no-progress"],
        dict(os.environ),
    )
    created = sorted(set(listing(tmp_path)) - set(before))

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [path for path in created if not path.startswith(str(out))] == [str(tmp_path / "nested")]
    assert not list(tmp_path.rglob("escaped*"))


def test_monitor_name_with_parent_stays_in_history(tmp_path):
    from scanner import cli

    (tmp_path / "watched").mkdir()
    path = tmp_path / "monitor.yaml"
    path.write_text(
        MONITOR_YAML.format(source=tmp_path / "watched", history=tmp_path / "state" / "history").replace(
            "name: watch", "name: ../../escaped"
        )
    )
    before = listing(tmp_path)

    code = cli.main(["monitor", "run-once", str(path)])
    created = sorted(set(listing(tmp_path)) - set(before))

    assert code == 0
    assert created
    assert [item for item in created if not item.startswith(str(tmp_path / "state"))] == []


# (e) deploy manifests keep Ray ports off public addresses (see also tests/test_deploy.py)


def test_manifests_no_host_network_or_ingress():
    sys.path.insert(0, str(ROOT / "tests"))
    from test_deploy import manifest_objects, walk

    objects = list(manifest_objects())
    exposed = []
    for name, item in objects:
        if item["kind"] in ("Ingress", "Route", "Gateway"):
            exposed.append((name, item["kind"]))
        for mapping in walk(item):
            if mapping.get("hostNetwork") or "hostPort" in mapping:
                exposed.append((name, "host network or port"))

    assert objects
    assert exposed == []
