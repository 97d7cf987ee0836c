"""`submit` and `jobs` against a real Ray head with its dashboard on 127.0.0.1, and a moto S3 server.

The head runs `ray start --head --block` in the background on free ports chosen
here, never Ray's defaults, and is stopped by the PID of that process and its
children. Argument and runtime-environment checks need no cluster and run first.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil
import pytest

from scanner import jobs

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAD_START_TIMEOUT_S = 90
JOB_TIMEOUT_S = 300

# The variables that tests/conftest.py sets to keep Ray and botocore on this machine.
# The job's runtime environment carries them to its driver too.
LOOPBACK_VARIABLES = (
    "RAY_AUTH_MODE",
    "RAY_USAGE_STATS_ENABLED",
    "RAY_USAGE_STATS_REPORT_URL",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "AWS_EC2_METADATA_DISABLED",
    "NUMBA_CACHE_DIR",
)
DOCUMENTS = [
    "alpha beta gamma delta",
    "beta gamma delta epsilon zeta",
    "gamma delta",
    "delta epsilon zeta eta theta iota",
]


def run_cli(*arguments: str, timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scanner", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def free_ports(count: int) -> list[int]:
    """Ports that were free on 127.0.0.1 a moment ago, all different."""
    sockets = []
    try:
        for _ in range(count):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            sockets.append(listener)
        return [listener.getsockname()[1] for listener in sockets]
    finally:
        for listener in sockets:
            listener.close()


def write_runtime_env(path: pathlib.Path, fields: dict) -> str:
    path.write_text(json.dumps(fields), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------
# Without a cluster


def test_command_gets_address_auto():
    command = jobs.prepare_command(["--", "scan", "s3://bucket/crawl/", "--out", "s3://bucket/out"])

    assert command[-2:] == ["--address", "auto"]
    assert command[0] == "scan"


def test_command_keeps_given_address():
    command = jobs.prepare_command(["scan", "s3://b/p/", "--out", "s3://b/o", "--address", "10.0.0.5:6379"])

    assert command.count("--address") == 1
    assert "auto" not in command


def test_command_plan_has_no_address():
    assert jobs.prepare_command(["plan", "s3://b/p/"]) == ["plan", "s3://b/p/"]


@pytest.mark.parametrize("command", [[], ["--"], ["jobs", "list", "--address", "x"], ["scan", "--out", "o"]])
def test_command_invalid(command):
    with pytest.raises(jobs.JobsError):
        jobs.prepare_command(command)


def test_command_redacts_secret_options():
    command = [
        "scan", "s3://b/", "--storage-option", "secret=abc", "--storage-option=key=def", "--storage-option", "region_name=x",
    ]

    redacted = jobs.redact_command(command)

    assert redacted[3] == "secret=***"
    assert redacted[4] == "--storage-option=key=***"
    assert redacted[6] == "region_name=x"


def test_runtime_env_merge_adds_env_vars():
    default = {"py_modules": ["/a"], "env_vars": {"A": "1", "B": "2"}}

    merged = jobs.merge_runtime_env(default, {"env_vars": {"B": "3", "C": "4"}, "py_modules": ["/b"]})

    assert merged["env_vars"] == {"A": "1", "B": "3", "C": "4"}
    assert merged["py_modules"] == ["/b"]
    assert default["env_vars"] == {"A": "1", "B": "2"}


def test_default_runtime_env_ships_packages():
    modules = [pathlib.Path(path) for path in jobs.default_runtime_env()["py_modules"]]

    assert [module.name for module in modules] == ["scanner", "kernels"]
    assert all((module / "__init__.py").is_file() for module in modules)


def test_runtime_env_file_yaml(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("env_vars:\n  LEVEL: '1'\npip: [requests]\n", encoding="utf-8")

    assert jobs.load_runtime_env_file(str(path)) == {"env_vars": {"LEVEL": "1"}, "pip": ["requests"]}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("working_directory: /tmp\n", "working_directory"),
        ("env_vars: {THREADS: 4}\n", "env_vars.THREADS"),
        ("env_vars: [A]\n", "env_vars"),
        ("py_modules: /tmp/x\n", "py_modules"),
        ("- pip\n", "mapping"),
        ("env_vars: {A: '1'\n", "YAML"),
        ('{"pip": ["a"], "conda": "base"}', "conda"),
    ],
)
def test_submit_rejects_runtime_env(tmp_path, text, named):
    path = tmp_path / "env.yaml"
    path.write_text(text, encoding="utf-8")

    # No cluster listens here; the file is checked before the first connection.
    completed = run_cli("submit", "--address", f"http://127.0.0.1:{free_ports(1)[0]}", "--runtime-env", str(path),
                        "--", "plan", "s3://b/p/", timeout=60)

    assert completed.returncode == 2, completed.stderr
    assert named in completed.stderr


def test_submit_missing_runtime_env_file(tmp_path):
    completed = run_cli("submit", "--address", "http://127.0.0.1:9", "--runtime-env", str(tmp_path / "nope.yaml"),
                        "--", "plan", "s3://b/p/", timeout=60)

    assert completed.returncode == 2
    assert "cannot read --runtime-env" in completed.stderr


def test_jobs_unreachable_address():
    port = free_ports(1)[0]

    completed = run_cli("jobs", "list", "--address", f"http://127.0.0.1:{port}", timeout=60)

    assert completed.returncode == 2
    assert f"cannot reach the Ray dashboard at --address 'http://127.0.0.1:{port}'" in completed.stderr


def test_submit_unreachable_address():
    completed = run_cli("submit", "--address", f"127.0.0.1:{free_ports(1)[0]}", "--", "plan", "s3://b/p/", timeout=60)

    assert completed.returncode == 2
    assert "cannot reach the Ray dashboard" in completed.stderr


# ---------------------------------------------------------------------------
# Against a Ray head


def _dashboard_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop_process_tree(process: subprocess.Popen) -> None:
    """Terminate the `ray start` process, which stops the processes it started, then any that remain, by PID."""
    try:
        root = psutil.Process(process.pid)
        children = root.children(recursive=True)
        root.terminate()
    except psutil.NoSuchProcess:
        return
    psutil.wait_procs([root], timeout=15)
    remaining = [child for child in children if child.is_running()]
    for child in remaining:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(remaining, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def ray_head(s3_endpoint) -> str:
    """Dashboard URL of a Ray head started here; the S3 fixture comes first, so the head inherits its keys."""
    ray_executable = pathlib.Path(sys.executable).with_name("ray")
    if not ray_executable.is_file():
        pytest.skip(f"`ray` not found next to {sys.executable}: these tests need `ray start` from ray[default]")

    (gcs, dashboard, client, node_manager, object_manager, metrics, agent_listen, agent_grpc, env_agent,
     *worker_ports) = free_ports(9 + 24)
    # A short directory, because Ray's Unix socket paths must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="rayjobs-", dir="/tmp")
    environment = dict(os.environ)
    # Without PYTHONPATH the job finds the scanner packages only through its runtime environment.
    environment.pop("PYTHONPATH", None)
    environment["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    command = [
        str(ray_executable), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs),
        "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
        "--node-manager-port", str(node_manager),
        "--object-manager-port", str(object_manager),
        "--metrics-export-port", str(metrics),
        "--dashboard-agent-listen-port", str(agent_listen),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(env_agent),
        "--worker-port-list", ",".join(map(str, worker_ports)),
        "--num-cpus", "2",
        "--object-store-memory", str(200 * 1024 * 1024),
        "--temp-dir", temp_dir,
        "--disable-usage-stats",
    ]
    log_path = pathlib.Path(temp_dir) / "ray-start.log"
    with open(log_path, "w") as log:
        try:
            process = subprocess.Popen(command, env=environment, cwd=temp_dir, stdout=log, stderr=subprocess.STDOUT)
        except OSError as error:
            pytest.skip(f"`ray start` cannot run here: {error}")

    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while not _dashboard_ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                pytest.skip(f"`ray start --head` did not serve the dashboard within {HEAD_START_TIMEOUT_S} s:\n{output}")
            time.sleep(1)
        yield url
    finally:
        _stop_process_tree(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def loopback_runtime_env(tmp_path_factory) -> str:
    """A --runtime-env file that carries the loopback variables to the job's driver and workers."""
    path = tmp_path_factory.mktemp("runtime-env") / "runtime-env.yaml"
    variables = {name: os.environ[name] for name in LOOPBACK_VARIABLES if name in os.environ}
    return write_runtime_env(path, {"env_vars": variables})


@pytest.fixture
def crawl(s3_client, s3_bucket) -> str:
    """An S3 prefix with two JSONL objects of known documents."""
    for index, documents in enumerate((DOCUMENTS[:2], DOCUMENTS[2:])):
        body = "".join(json.dumps({"text": text}) + "\n" for text in documents)
        s3_client.put_object(Bucket=s3_bucket, Key=f"crawl/part-{index}.jsonl", Body=body.encode())
    return f"s3://{s3_bucket}/crawl/"


def read_s3_json(s3_client, url: str) -> dict:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def wait_for_status(address: str, job_id: str, statuses: set[str]) -> str:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        completed = run_cli("jobs", "status", job_id, "--address", address, timeout=60)
        assert completed.returncode == 0, completed.stderr
        status = next(line.split()[-1] for line in completed.stdout.splitlines() if line.startswith("status:"))
        if status in statuses:
            return status
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not reach {statuses} within {JOB_TIMEOUT_S} s")


def test_submit_scan_writes_result_to_s3(ray_head, loopback_runtime_env, s3_endpoint, s3_client, s3_bucket, crawl):
    out = f"s3://{s3_bucket}/scans/run-1"

    completed = run_cli(
        "submit", "--address", ray_head, "--runtime-env", loopback_runtime_env, "--",
        "scan", crawl, "--out", out, "--endpoint-url", s3_endpoint, "--num-workers", "2", "--no-progress",
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "documents:        4 (0 empty)" in completed.stdout
    result = read_s3_json(s3_client, f"{out}/result.json")
    assert result["documents"] == len(DOCUMENTS)
    assert result["tokens"] == sum(len(text.split()) for text in DOCUMENTS)
    assert result["shards"]["completed"] == 2


def test_submit_local_out(ray_head, loopback_runtime_env, s3_endpoint, crawl, tmp_path):
    # The head runs on this machine, so a local --out is readable here.
    out = tmp_path / "scan"

    completed = run_cli(
        "submit", "--address", ray_head, "--runtime-env", loopback_runtime_env, "--",
        "scan", crawl, "--out", str(out), "--endpoint-url", s3_endpoint, "--num-workers", "1", "--no-progress",
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads((out / "result.json").read_text())["documents"] == len(DOCUMENTS)


def test_submit_failed_scan_exit_code(ray_head, loopback_runtime_env, s3_endpoint, s3_bucket):
    completed = run_cli(
        "submit", "--address", ray_head, "--runtime-env", loopback_runtime_env, "--",
        "scan", f"s3://{s3_bucket}/empty/", "--out", f"s3://{s3_bucket}/out", "--endpoint-url", s3_endpoint,
    )

    # The scan in the job exits 2 because the prefix contains no objects, and submit passes that code on.
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert f"s3://{s3_bucket}/empty/" in completed.stdout
    assert "FAILED" in completed.stderr


def test_no_wait_then_jobs_commands(ray_head, loopback_runtime_env, s3_endpoint, s3_client, s3_bucket, crawl):
    out = f"s3://{s3_bucket}/scans/run-2"

    submitted = run_cli(
        "submit", "--address", ray_head, "--runtime-env", loopback_runtime_env, "--no-wait", "--",
        "scan", crawl, "--out", out, "--endpoint-url", s3_endpoint, "--no-progress",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.startswith("raysubmit_")

    assert wait_for_status(ray_head, job_id, {"SUCCEEDED", "FAILED", "STOPPED"}) == "SUCCEEDED"
    listing = run_cli("jobs", "list", "--address", ray_head, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert any(line.startswith(job_id) and "SUCCEEDED" in line for line in listing.stdout.splitlines())
    logs = run_cli("jobs", "logs", job_id, "--address", ray_head, timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert "documents:        4 (0 empty)" in logs.stdout
    followed = run_cli("jobs", "logs", job_id, "--follow", "--address", ray_head, timeout=60)
    assert "documents:        4 (0 empty)" in followed.stdout
    status = run_cli("jobs", "status", job_id, "--address", ray_head, timeout=60)
    assert "exit code:     0" in status.stdout
    assert read_s3_json(s3_client, f"{out}/result.json")["documents"] == len(DOCUMENTS)


def test_jobs_stop_long_running(ray_head):
    from ray.job_submission import JobSubmissionClient

    # No corpus-scanner command runs for a known long time, so Ray's own client submits a sleep.
    client = JobSubmissionClient(ray_head)
    job_id = client.submit_job(entrypoint="python -c 'import time; time.sleep(600)'")
    assert wait_for_status(ray_head, job_id, {"RUNNING", "FAILED", "SUCCEEDED"}) == "RUNNING"

    stopped = run_cli("jobs", "stop", job_id, "--address", ray_head, timeout=120)

    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"job {job_id} STOPPED"
    assert client.get_job_status(job_id).value == "STOPPED"


def test_jobs_unknown_id(ray_head):
    for arguments in (("status",), ("logs",), ("stop",)):
        completed = run_cli("jobs", *arguments, "raysubmit_unknown", "--address", ray_head, timeout=60)

        assert completed.returncode == 2, arguments
        assert "unknown job id 'raysubmit_unknown'" in completed.stderr


def test_job_imports_shipped_packages(ray_head):
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_head)
    job_id = client.submit_job(
        entrypoint="python -c 'import kernels, scanner; print(scanner.__file__); print(kernels.__file__)'",
        runtime_env=jobs.default_runtime_env(),
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while client.get_job_status(job_id).value not in jobs.TERMINAL_STATUSES and time.monotonic() < deadline:
        time.sleep(1)

    lines = client.get_job_logs(job_id).splitlines()
    assert client.get_job_status(job_id).value == "SUCCEEDED", lines
    # The head runs without PYTHONPATH, and Ray unpacks py_modules under its session directory.
    paths = [line for line in lines if line.endswith("__init__.py")]
    assert len(paths) == 2
    assert all("runtime_resources" in path for path in paths), paths


def test_dependency_requirements_without_ray():
    requirements = jobs.dependency_requirements()

    assert any(requirement.startswith("numba") for requirement in requirements)
    assert not any(requirement.lower().startswith("ray") for requirement in requirements)
    assert not any(requirement.startswith("pytest") for requirement in requirements)


def test_submit_refuses_credentials_in_the_command():
    command = ["scan", "s3://bucket/crawl/", "--out", "s3://bucket/out", "--storage-option", "secret=visible-secret-123"]

    with pytest.raises(jobs.JobsError) as raised:
        jobs.prepare_command(command)

    assert "must not carry credentials" in str(raised.value)
    assert "visible-secret-123" not in str(raised.value)
