"""Ray jobs: run corpus-scanner commands on a Ray cluster through the Jobs API, and follow them.

`submit` turns a corpus-scanner command line into a job entrypoint
(`python -m scanner COMMAND ...`) and sends it with a runtime environment
that carries this installation's `scanner` and `kernels` packages as
`py_modules`. The cluster's `python` must have Ray and the other
dependencies installed, as the image in deploy/ has, unless the runtime
environment installs them (`--install-dependencies`, or `pip` in a
`--runtime-env` file).

The job's driver runs on the cluster, so the command's paths (sources,
`--out`, `--profile`) are read and written there. Object storage URLs work
the same from anywhere, which makes them the usual choice for `--out`.

Every address here is the HTTP address of the Ray dashboard (default port
8265), which serves the Jobs API, not the GCS address that `scan --address`
takes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import logging
import os
import pathlib
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import urlsplit

import yaml

from scanner.storage import REDACTED, is_secret_key

logger = logging.getLogger(__name__)

DISTRIBUTION = "corpus-scanner"
DEFAULT_DASHBOARD_PORT = 8265
CONNECT_TIMEOUT_S = 10.0
STATUS_POLL_S = 1.0
STOP_TIMEOUT_S = 60.0
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})

# Commands that make no sense inside a job: they talk to a cluster themselves.
_CLIENT_COMMANDS = frozenset({"submit", "jobs"})

# Environment variables with which Ray's client overrides the address it is given.
_RAY_ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")

# Value types that `validate_runtime_env` checks before Ray's own validation, by field.
_LIST_OF_STRINGS_FIELDS = ("py_modules", "excludes", "java_jars")
_STRING_FIELDS = ("working_dir", "py_executable", "image_uri", "worker_process_setup_hook")


class JobsError(ValueError):
    """Invalid job arguments, an unreachable cluster or an unknown job id: exit code 2 in the command line."""


# ---------------------------------------------------------------------------
# Runtime environment


def default_runtime_env() -> dict[str, Any]:
    """Return the runtime environment that ships this installation's packages to the job."""
    return {
        "py_modules": [_package_directory("scanner"), _package_directory("kernels")],
        "excludes": ["__pycache__", "*.pyc"],
    }


def _package_directory(name: str) -> str:
    # find_spec locates the package without importing it, so numba is not loaded for a submission.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise JobsError(f"package {name!r} not found: install {DISTRIBUTION} before submitting jobs")
    return str(pathlib.Path(list(spec.submodule_search_locations)[0]).resolve())


def dependency_requirements() -> list[str]:
    """Return the pip requirements of the installed distribution, without extras and without Ray.

    The cluster already runs Ray, and another Ray version installed into the job
    environment would break the connection to it.
    """
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise JobsError(
            f"--install-dependencies needs the installed {DISTRIBUTION} distribution, which was not found: "
            "install the package with pip, or list the requirements under `pip` in a --runtime-env file"
        ) from None
    kept = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        name = requirement.split(";")[0].strip()
        if name.lower().startswith("ray"):
            continue
        kept.append(name)
    return kept


def load_runtime_env_file(path: str) -> dict[str, Any]:
    """Read a runtime environment from a YAML or JSON file and validate it. Raises JobsError."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise JobsError(f"cannot read --runtime-env {path!r}: {error.strerror or error}") from None
    try:
        # YAML 1.2 is a superset of JSON, so one parser reads both.
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise JobsError(f"invalid --runtime-env {path!r}: not valid YAML or JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JobsError(
            f"invalid --runtime-env {path!r}: expected a mapping of runtime environment fields, "
            f"for example `env_vars: {{NAME: value}}`, got a {type(data).__name__}"
        )
    validate_runtime_env(data, f"--runtime-env {path!r}")
    return data


def validate_runtime_env(env: dict[str, Any], source: str) -> None:
    """Raise JobsError naming the field when `env` is not a valid Ray runtime environment."""
    from ray.runtime_env import RuntimeEnv

    known = sorted(field for field in RuntimeEnv.known_fields if not field.startswith("_"))
    for field, value in env.items():
        if not isinstance(field, str) or field not in RuntimeEnv.known_fields:
            raise JobsError(
                f"invalid {source}: unknown field {field!r}; Ray's runtime environment fields are {', '.join(known)}"
            )
        _check_field_type(field, value, source)

    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as error:
        raise JobsError(f"invalid {source}: {error}") from None


def _check_field_type(field: str, value: Any, source: str) -> None:
    if field == "env_vars":
        if not isinstance(value, dict):
            raise JobsError(f"invalid {source}: field 'env_vars' must be a mapping of NAME: value")
        for name, variable in value.items():
            if not isinstance(name, str) or not isinstance(variable, str):
                # Values are left out of the message, because they may be credentials.
                raise JobsError(
                    f"invalid {source}: env_vars.{name} must be a string; quote the value, for example {name}: \"1\""
                )
    elif field in _LIST_OF_STRINGS_FIELDS:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise JobsError(f"invalid {source}: field {field!r} must be a list of strings")
    elif field in _STRING_FIELDS:
        if not isinstance(value, str):
            raise JobsError(f"invalid {source}: field {field!r} must be a string")
    elif field in ("pip", "uv"):
        is_list = isinstance(value, list) and all(isinstance(item, str) for item in value)
        if not (is_list or isinstance(value, (str, dict))):
            raise JobsError(
                f"invalid {source}: field {field!r} must be a list of requirements, a requirements file "
                "or a mapping with `packages`"
            )


def merge_runtime_env(default: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `default` with the fields of `override`: env_vars are merged by name, other fields replaced."""
    merged = dict(default)
    for field, value in override.items():
        if field == "env_vars":
            merged["env_vars"] = {**default.get("env_vars", {}), **value}
        else:
            merged[field] = value
    return merged


def describe_runtime_env(env: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `env` for logs, with the values of env_vars replaced by ***."""
    described = dict(env)
    if "env_vars" in described:
        described["env_vars"] = {name: REDACTED for name in described["env_vars"]}
    return described


# ---------------------------------------------------------------------------
# Entrypoint


def prepare_command(command: Sequence[str]) -> list[str]:
    """Check a corpus-scanner command line and return it as the job will run it. Raises JobsError.

    A command with an `--address` option but none given gets `--address auto`,
    so the job's driver joins the cluster that runs the job instead of starting
    an embedded Ray inside it.
    """
    from scanner.cli import build_parser

    command = list(command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise JobsError(
            "missing command: give it after --, for example `submit --address URL -- scan s3://b/p/ --out s3://b/out`"
        )
    if command[0] in _CLIENT_COMMANDS:
        raise JobsError(
            f"invalid command {command[0]!r}: `submit` runs scan, plan, profile and other commands, not {command[0]}"
        )

    try:
        arguments = build_parser().parse_args(command)
    except SystemExit:
        # argparse has printed the usage and the error of the command.
        raise JobsError(
            f"invalid command after --: {shlex.join(redact_command(command))}; see the message above"
        ) from None

    if hasattr(arguments, "address") and arguments.address is None:
        command += ["--address", "auto"]
    out = getattr(arguments, "out", None)
    if isinstance(out, str) and ("://" not in out or out.startswith("file://")):
        logger.warning("--out %s is a local path: the job writes it on the cluster node that runs its driver", out)
    secrets = [item.partition("=")[0] for item in _storage_options(command) if is_secret_key(item.partition("=")[0])]
    if secrets:
        # The cluster keeps the entrypoint in its job table, where anyone who can list jobs reads it.
        raise JobsError(
            f"invalid --storage-option {secrets[0]}=...: a submitted command must not carry credentials, because "
            "the cluster stores it with the job. Give the cluster's nodes their credentials (an instance role or "
            "their environment) and remove the option"
        )
    return command


def entrypoint_for(command: Sequence[str]) -> str:
    """Return the shell command that runs a corpus-scanner command line on the cluster."""
    return shlex.join(["python", "-m", "scanner", *command])


def _storage_options(command: Sequence[str]) -> Iterator[str]:
    for index, item in enumerate(command):
        if item == "--storage-option" and index + 1 < len(command):
            yield command[index + 1]
        elif item.startswith("--storage-option="):
            yield item.partition("=")[2]


def redact_command(command: Sequence[str]) -> list[str]:
    """Return the command with the values of secret-looking --storage-option keys replaced by ***."""
    redacted = []
    after_option = False
    for item in command:
        if after_option:
            item = _redact_option(item)
        elif item.startswith("--storage-option="):
            item = "--storage-option=" + _redact_option(item.partition("=")[2])
        redacted.append(item)
        after_option = item == "--storage-option"
    return redacted


def _redact_option(text: str) -> str:
    key, separator, _ = text.partition("=")
    return f"{key}={REDACTED}" if separator and is_secret_key(key) else text


def redact_entrypoint(entrypoint: str) -> str:
    """Return a job entrypoint with secret-looking --storage-option values replaced by ***."""
    try:
        return shlex.join(redact_command(shlex.split(entrypoint)))
    except ValueError:
        return entrypoint


# ---------------------------------------------------------------------------
# Client


def dashboard_url(address: str) -> str:
    """Return the http(s) URL of a dashboard address given as URL or HOST:PORT. Raises JobsError."""
    url = address if "://" in address else f"http://{address}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JobsError(
            f"invalid --address {address!r}: expected the Ray dashboard URL, for example http://127.0.0.1:8265"
        )
    try:
        parts.port
    except ValueError:
        raise JobsError(f"invalid --address {address!r}: the port is not a number") from None
    return url.rstrip("/")


@contextmanager
def _explicit_address() -> Iterator[None]:
    # Ray's client prefers RAY_API_SERVER_ADDRESS and RAY_ADDRESS over its argument.
    # --address is explicit, so both are hidden while the client resolves it.
    saved = {name: os.environ.pop(name) for name in _RAY_ADDRESS_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """Return a JobSubmissionClient for the dashboard at `address`. Raises JobsError when it is unreachable."""
    from ray.job_submission import JobSubmissionClient

    url = dashboard_url(address)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else DEFAULT_DASHBOARD_PORT)
    if parts.port is None:
        url = f"{url}:{port}"
    unreachable = (
        f"cannot reach the Ray dashboard at --address {address!r}: {{reason}}. Check that the head node runs "
        "with the dashboard (`ray start --head --include-dashboard true`) and that the port is the dashboard "
        f"port (default {DEFAULT_DASHBOARD_PORT}), not the GCS port"
    )
    # requests waits without a limit for a host that drops packets, so a plain connect comes first.
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        raise JobsError(unreachable.format(reason=error.strerror or error)) from None

    with _explicit_address():
        try:
            return JobSubmissionClient(url)
        except (ConnectionError, RuntimeError) as error:
            raise JobsError(unreachable.format(reason=error)) from None


def job_details(client, job_id: str):
    """Return the JobDetails of a job. Raises JobsError when the cluster does not know the id."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as error:
        if "404" in str(error) or "does not exist" in str(error):
            raise JobsError(
                f"unknown job id {job_id!r}: `corpus-scanner jobs list --address URL` lists the cluster's jobs"
            ) from None
        raise


def submit(client, entrypoint: str, runtime_env: dict[str, Any], command: Sequence[str]) -> str:
    """Submit a job and return its submission id."""
    metadata = {"submitted_by": DISTRIBUTION, "command": shlex.join(redact_command(command))}
    logger.info(
        "submitting job: %s, runtime environment %s",
        redact_entrypoint(entrypoint),
        json.dumps(describe_runtime_env(runtime_env)),
    )
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata)
    except (FileNotFoundError, ValueError) as error:
        raise JobsError(f"invalid runtime environment: {error}") from None
    logger.info("submitted job %s", job_id)
    return job_id


def wait_for_job(client, job_id: str, follow_logs: bool, stream: IO[str] | None = None):
    """Wait until the job ends and return its JobDetails. With `follow_logs`, copy its logs to `stream` meanwhile."""
    stream = stream or sys.stdout
    if follow_logs:
        asyncio.run(_copy_logs(client, job_id, stream))
    while True:
        details = job_details(client, job_id)
        if status_name(details) in TERMINAL_STATUSES:
            return details
        time.sleep(STATUS_POLL_S)


async def _copy_logs(client, job_id: str, stream: IO[str]) -> None:
    try:
        async for lines in client.tail_job_logs(job_id):
            stream.write(lines)
            stream.flush()
    except RuntimeError as error:
        # The log stream can close early, for example when the dashboard restarts. The status poll still ends the wait.
        logger.warning("log stream of job %s ended early: %s", job_id, error)


def stop(client, job_id: str, timeout: float = STOP_TIMEOUT_S):
    """Request a job to stop and wait up to `timeout` seconds for it to end; return its JobDetails."""
    details = job_details(client, job_id)
    if status_name(details) in TERMINAL_STATUSES:
        return details
    client.stop_job(job_id)
    logger.info("stop requested for job %s", job_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        details = job_details(client, job_id)
        if status_name(details) in TERMINAL_STATUSES:
            return details
        time.sleep(STATUS_POLL_S)
    return details


def status_name(details) -> str:
    """Return the job status as its plain name, such as SUCCEEDED."""
    return str(getattr(details.status, "value", details.status))


def exit_code_for_job(details) -> int:
    """Return 0 for a job that succeeded; else the driver's exit code 1 to 3 when the driver reported one, else 1."""
    if status_name(details) == "SUCCEEDED":
        return 0
    code = getattr(details, "driver_exit_code", None)
    return code if code in (1, 2, 3) else 1


# ---------------------------------------------------------------------------
# Output


def format_job_table(jobs: Sequence[Any]) -> str:
    """Return one line per job, newest first: submission id, status, start time and entrypoint."""
    rows = sorted(jobs, key=lambda job: job.start_time or 0, reverse=True)
    lines = [f"{'SUBMISSION ID':<30} {'STATUS':<10} {'STARTED (UTC)':<20} ENTRYPOINT"]
    for job in rows:
        job_id = job.submission_id or job.job_id or "-"
        started = _utc(job.start_time)
        lines.append(f"{job_id:<30} {status_name(job):<10} {started:<20} {redact_entrypoint(job.entrypoint)}")
    return "\n".join(lines)


def format_job_status(details) -> str:
    """Return the status of one job in `field: value` lines."""
    lines = [
        f"submission id: {details.submission_id or '-'}",
        f"job id:        {details.job_id or '-'}",
        f"status:        {details.status}",
        f"message:       {details.message or '-'}",
        f"entrypoint:    {redact_entrypoint(details.entrypoint)}",
        f"started (UTC): {_utc(details.start_time)}",
        f"ended (UTC):   {_utc(details.end_time)}",
    ]
    if details.driver_exit_code is not None:
        lines.append(f"exit code:     {details.driver_exit_code}")
    return "\n".join(lines)


def _utc(milliseconds: int | None) -> str:
    if not milliseconds:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(milliseconds / 1000))


# ---------------------------------------------------------------------------
# Commands


def add_job_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the `submit` and `jobs` subcommands to the corpus-scanner parser."""
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument(
        "--address",
        required=True,
        help="HTTP address of the Ray dashboard, which serves the Jobs API, "
        f"for example http://127.0.0.1:{DEFAULT_DASHBOARD_PORT}",
    )

    submit_parser = commands.add_parser(
        "submit",
        parents=[address, common],
        help="run a corpus-scanner command as a Ray job on a cluster",
        description=(
            "Run a corpus-scanner command as a Ray job through the Jobs API, with this installation's scanner and "
            "kernels packages in its runtime environment. Paths in the command refer to the cluster, so --out is "
            "usually in object storage. Without --no-wait, print the job's logs and exit with its exit status."
        ),
        usage="%(prog)s --address URL [--runtime-env FILE] [--install-dependencies] [--no-wait] -- COMMAND ...",
    )
    submit_parser.add_argument(
        "--runtime-env",
        metavar="FILE",
        help="YAML or JSON file of Ray runtime environment fields, merged into the default: env_vars are added "
        "by name, other fields replace the default's",
    )
    submit_parser.add_argument(
        "--install-dependencies",
        action="store_true",
        help="have Ray pip-install this package's dependencies (except Ray) for the job, "
        "for a cluster image without them",
    )
    submit_parser.add_argument("--no-wait", action="store_true", help="print the submission id and exit at once")
    submit_parser.add_argument("command", nargs=argparse.REMAINDER, help="the corpus-scanner command, after --")
    submit_parser.set_defaults(handler=_submit_command)

    jobs_parser = commands.add_parser(
        "jobs", help="list, inspect and stop Ray jobs", description="List, inspect and stop jobs on a Ray cluster."
    )
    job_commands = jobs_parser.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    listing = job_commands.add_parser("list", parents=[address, common], help="list the cluster's jobs, newest first")
    listing.set_defaults(handler=_list_command)
    status = job_commands.add_parser("status", parents=[address, common], help="print the status of a job")
    status.add_argument("job_id", metavar="JOB_ID", help="submission id, as printed by submit")
    status.set_defaults(handler=_status_command)
    logs = job_commands.add_parser("logs", parents=[address, common], help="print the logs of a job")
    logs.add_argument("job_id", metavar="JOB_ID", help="submission id, as printed by submit")
    logs.add_argument("--follow", action="store_true", help="keep printing new log lines until the job ends")
    logs.set_defaults(handler=_logs_command)
    stopping = job_commands.add_parser(
        "stop", parents=[address, common], help=f"stop a job and wait up to {STOP_TIMEOUT_S:.0f} s for it to end"
    )
    stopping.add_argument("job_id", metavar="JOB_ID", help="submission id, as printed by submit")
    stopping.set_defaults(handler=_stop_command)


def _submit_command(args: argparse.Namespace) -> int:
    command = prepare_command(args.command)
    entrypoint = entrypoint_for(command)
    runtime_env = default_runtime_env()
    if args.install_dependencies:
        runtime_env["pip"] = dependency_requirements()
    if args.runtime_env:
        runtime_env = merge_runtime_env(runtime_env, load_runtime_env_file(args.runtime_env))
    validate_runtime_env(runtime_env, "runtime environment")

    client = connect(args.address)
    job_id = submit(client, entrypoint, runtime_env, command)
    if args.no_wait:
        print(job_id)
        return 0

    print(f"submitted job {job_id}; its logs follow", file=sys.stderr)
    try:
        details = wait_for_job(client, job_id, follow_logs=True)
    except KeyboardInterrupt:
        print(
            f"stopped waiting; job {job_id} keeps running. "
            f"`corpus-scanner jobs stop {job_id} --address {args.address}` stops it",
            file=sys.stderr,
        )
        raise
    print(f"job {job_id} {status_name(details)}: {details.message or ''}".rstrip(": "), file=sys.stderr)
    return exit_code_for_job(details)


def _list_command(args: argparse.Namespace) -> int:
    client = connect(args.address)
    print(format_job_table(client.list_jobs()))
    return 0


def _status_command(args: argparse.Namespace) -> int:
    client = connect(args.address)
    print(format_job_status(job_details(client, args.job_id)))
    return 0


def _logs_command(args: argparse.Namespace) -> int:
    client = connect(args.address)
    job_details(client, args.job_id)
    if args.follow:
        asyncio.run(_copy_logs(client, args.job_id, sys.stdout))
    else:
        print(client.get_job_logs(args.job_id), end="")
    return 0


def _stop_command(args: argparse.Namespace) -> int:
    client = connect(args.address)
    details = stop(client, args.job_id)
    status = status_name(details)
    if status not in TERMINAL_STATUSES:
        print(f"job {args.job_id} is still {status} {STOP_TIMEOUT_S:.0f} s after the stop request", file=sys.stderr)
        return 1
    print(f"job {args.job_id} {status}")
    return 0
