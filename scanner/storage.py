"""Storage options and the fsspec filesystem they open.

The driver sends the `StorageOptions` model to Ray workers, and each worker
calls `filesystem_for` itself, so no open connection or event loop crosses a
process boundary. Secret-looking option values are kept as `SecretStr`, so
`repr`, `str`, `model_dump_json` and `redacted()` never show them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any, Union
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

logger = logging.getLogger(__name__)

# SecretStr comes last so that pydantic keeps plain strings as str.
OptionValue = Union[bool, int, float, str, SecretStr]

# Option keys whose values are credentials: matched anywhere in the key, case-insensitively.
_SECRET_KEY_PATTERN = re.compile(r"key|secret|token|password|passwd|credential", re.IGNORECASE)
_OPTION_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_INT_PATTERN = re.compile(r"[+-]?\d+")
_FLOAT_PATTERN = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")
REDACTED = "***"

# Timeouts in seconds and botocore attempts (first try included) for S3 requests.
# botocore's "standard" retry mode retries HTTP 500, 502, 503 and 504, throttling errors
# such as SlowDown, and dropped or refused connections. It waits
# random() * min(scale * 2 ** (attempt - 1), 20) seconds between attempts: exponential
# backoff with full jitter, where scale is 1 for throttling and 0.05 otherwise (botocore
# 1.43, `botocore.retries.standard.ExponentialBackoff`). s3fs 2026.9.0 wraps each call in
# up to 5 attempts of its own (`S3FileSystem.retries`, set by `--storage-option retries=N`).
# Those have no jitter and cover timeouts, SlowDown and a body that broke off mid-read.
S3_CONNECT_TIMEOUT_S = 10
S3_READ_TIMEOUT_S = 60
S3_MAX_ATTEMPTS = 4

# Options that `filesystem_for` moves into the botocore client for s3://.
_S3_CLIENT_OPTIONS = ("region_name", "verify")

_LOCAL_PROTOCOLS = (None, "file", "local")

_RETRY_COUNTER_ID = "corpus-scanner-storage-retries"
_S3_PROTOCOLS = ("s3", "s3a")


class UnwritableLocationError(Exception):
    """A local output or state directory that cannot be written: read-only, full or not permitted."""


def check_local_directory_writable(path: str, role: str) -> None:
    """Create the local directory `path` and write and remove a probe file in it.

    `role` names the option in the message, such as "--state-dir". Raises
    UnwritableLocationError naming the path, the reason and the fix.
    """
    probe = os.path.join(path, f".write-probe-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"probe")
            handle.flush()
            os.fsync(handle.fileno())
        os.remove(probe)
    except OSError as error:
        raise unwritable_error(path, role, error) from None


def unwritable_error(path: str, role: str, error: OSError) -> UnwritableLocationError:
    """Return the error for a failed write under `path`, with the system's reason and the fix."""
    reason = error.strerror or str(error)
    return UnwritableLocationError(
        f"cannot write to the {role} directory {path}: {reason} (errno {error.errno}); "
        f"free space there or give a writable {role}"
    )


class StorageOptions(BaseModel):
    """How to reach object storage: endpoint, anonymous access and extra fsspec options.

    `options` are keyword arguments for the fsspec filesystem. For s3:// they are
    those of `s3fs.S3FileSystem`, plus connect_timeout, read_timeout (seconds),
    max_attempts and addressing_style for botocore's Config, region_name and
    verify for the botocore client, and retries for the attempts of s3fs's own
    retry loop.
    """

    # hide_input_in_errors keeps rejected values, which may be credentials, out of error messages.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    endpoint_url: str | None = None
    anon: bool = False
    options: dict[str, OptionValue] = {}

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"invalid endpoint URL {redact_url(value)!r}: "
                "use an http:// or https:// URL with a host, for example http://127.0.0.1:9000"
            )
        if parts.username is not None or parts.password is not None:
            # botocore ignores credentials in the endpoint URL, and they would show up in logs.
            raise ValueError(
                f"invalid endpoint URL {redact_url(value)!r}: remove the user:password@ part and "
                "pass keys with --storage-option key=... --storage-option secret=... or the AWS environment"
            )
        return value

    @field_validator("options")
    @classmethod
    def _hide_secret_values(cls, value: dict[str, OptionValue]) -> dict[str, OptionValue]:
        hidden: dict[str, OptionValue] = {}
        for key, item in value.items():
            if is_secret_key(key) and not isinstance(item, SecretStr):
                item = SecretStr(str(item))
            hidden[key] = item
        return hidden

    @classmethod
    def from_cli(
        cls,
        endpoint_url: str | None = None,
        anon: bool = False,
        storage_options: Iterable[str] = (),
    ) -> StorageOptions:
        """Build options from `--endpoint-url`, `--anon` and repeated `--storage-option KEY=VALUE`.

        Raises ValueError when a KEY=VALUE pair is invalid or a key is given twice.
        """
        options: dict[str, OptionValue] = {}
        for text in storage_options:
            key, value = parse_storage_option(text)
            if key in options:
                raise ValueError(
                    f"--storage-option {key} is given twice: keep one {key}=VALUE"
                )
            options[key] = value
        return cls(endpoint_url=endpoint_url, anon=anon, options=options)

    def redacted(self) -> dict[str, Any]:
        """Return a plain dict for logs and plans, with secret values and URL passwords hidden."""
        options = {
            key: REDACTED if isinstance(value, SecretStr) else value
            for key, value in sorted(self.options.items())
        }
        endpoint = redact_url(self.endpoint_url) if self.endpoint_url else None
        return {"endpoint_url": endpoint, "anon": self.anon, "options": options}

    def plain_options(self) -> dict[str, bool | int | float | str]:
        """Return `options` with secrets unwrapped, ready to pass to a filesystem."""
        return {
            key: value.get_secret_value() if isinstance(value, SecretStr) else value
            for key, value in self.options.items()
        }

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return self.redacted().items()


def is_secret_key(key: str) -> bool:
    """Return True for option keys that name credentials (key, secret, token, password)."""
    return _SECRET_KEY_PATTERN.search(key) is not None


def parse_storage_option(text: str) -> tuple[str, OptionValue]:
    """Parse one `--storage-option KEY=VALUE` into a key and a typed value.

    "true"/"false" become booleans, integers become int and decimals become float,
    except for secret-looking keys, whose values stay strings. Raises ValueError
    naming the text and the expected form.
    """
    key, separator, raw_value = text.partition("=")
    key = key.strip()
    if not separator:
        raise ValueError(
            f"invalid --storage-option {text!r}: expected KEY=VALUE, "
            "for example --storage-option requester_pays=true"
        )
    if not _OPTION_KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"invalid --storage-option key {key!r}: a key is a keyword argument name of the "
            "fsspec filesystem, for example --storage-option requester_pays=true"
        )
    if is_secret_key(key):
        return key, SecretStr(raw_value)
    return key, _parse_scalar(raw_value)


def _parse_scalar(raw_value: str) -> bool | int | float | str:
    value = raw_value.strip()
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if _INT_PATTERN.fullmatch(value):
        return int(value)
    if _FLOAT_PATTERN.fullmatch(value):
        return float(value)
    return raw_value


def redact_url(url: str) -> str:
    """Return `url` with the password of any `user:password@` part replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def protocol_of(url: str) -> str | None:
    """Return the protocol of `url` ("s3", "gs", ...), or None for a local path or file:// URL."""
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol in _LOCAL_PROTOCOLS:
        return None
    return protocol


def filesystem_for(url: str, storage: StorageOptions) -> tuple[fsspec.AbstractFileSystem, str]:
    """Open the filesystem for `url` and return it with the path inside that filesystem.

    Local paths and file:// URLs give the local filesystem and an absolute path.
    s3:// gives s3fs with bounded timeouts and retries. Without keys in `options`
    s3fs finds credentials through the standard AWS chain (environment, config
    files, instance role). Other protocols get `fsspec.filesystem(protocol, **options)`.
    fsspec caches instances, so repeated calls with the same options are cheap.
    """
    protocol, path = fsspec.core.split_protocol(url)
    if protocol in _LOCAL_PROTOCOLS:
        return LocalFileSystem(), os.path.abspath(os.path.expanduser(path))

    if protocol in _S3_PROTOCOLS:
        fs = _s3_filesystem(storage)
    else:
        if storage.endpoint_url or storage.anon:
            logger.warning(
                "--endpoint-url and --anon apply to s3:// only and are ignored for %s://. "
                "Pass the filesystem's own arguments with --storage-option",
                protocol,
            )
        fs = fsspec.filesystem(protocol, **storage.plain_options())
    return fs, fs._strip_protocol(url)


def _s3_filesystem(storage: StorageOptions) -> fsspec.AbstractFileSystem:
    options = storage.plain_options()
    config_kwargs: dict[str, Any] = {
        "connect_timeout": options.pop("connect_timeout", S3_CONNECT_TIMEOUT_S),
        "read_timeout": options.pop("read_timeout", S3_READ_TIMEOUT_S),
        # botocore's Config reads "max_attempts" as retries after the first try, and
        # "total_max_attempts" as attempts including it (botocore 1.43 `Config` docstring).
        "retries": {"total_max_attempts": options.pop("max_attempts", S3_MAX_ATTEMPTS), "mode": "standard"},
    }
    if "addressing_style" in options:
        config_kwargs["s3"] = {"addressing_style": options.pop("addressing_style")}

    client_kwargs: dict[str, Any] = {}
    for name in _S3_CLIENT_OPTIONS:
        if name in options:
            client_kwargs[name] = options.pop(name)
    if storage.endpoint_url:
        client_kwargs["endpoint_url"] = storage.endpoint_url
    # A class attribute of S3FileSystem, not a constructor argument.
    s3fs_attempts = options.pop("retries", None)

    fs = fsspec.filesystem(
        "s3",
        anon=storage.anon,
        client_kwargs=client_kwargs,
        config_kwargs=config_kwargs,
        **options,
    )
    if s3fs_attempts is not None:
        # NOTE: fsspec caches filesystems by constructor arguments, so two option sets that
        # differ only in retries share one instance, and the last call's value applies.
        fs.retries = max(1, int(s3fs_attempts))
    _count_retries(fs)
    return fs


class _RetryCounter:
    """Counts the S3 request retries that botocore makes in this process.

    botocore emits "request-created" once per attempt and stores the attempt
    number (1 for the first try) in the request context, so every attempt
    above 1 is one retry. Not counted: retries made by the s3fs loop around a
    call, which start a new call at attempt 1, and the one resend that aiohttp
    makes by itself when a reused keep-alive connection turns out closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retries = 0

    def __call__(self, request, operation_name: str, **_) -> None:
        attempt = request.context.get("retries", {}).get("attempt", 1)
        if attempt > 1:
            with self._lock:
                self._retries += 1
            logger.info("retrying S3 %s, attempt %d", operation_name, attempt)

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries


_retry_counter = _RetryCounter()


def storage_retry_count() -> int:
    """Return the S3 request retries made in this process so far (see `_RetryCounter`)."""
    return _retry_counter.retries


def _count_retries(fs: fsspec.AbstractFileSystem) -> None:
    """Register the retry counter on the botocore client of `fs`, once per client.

    botocore's event system is the library's hook for observing requests.
    fsspec returns the same cached filesystem, and so the same client, for
    equal options, and `unique_id` makes a second registration a no-op.
    """
    # NOTE: s3fs creates a new client when it reconnects (for example after a
    # fork); the first `filesystem_for` call after that registers the counter again.
    fs.s3.meta.events.register("request-created.s3", _retry_counter, unique_id=_RETRY_COUNTER_ID)


def url_for(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Return the full URL of `path` in `fs`: an absolute path for local files, else protocol://path."""
    if isinstance(fs, LocalFileSystem):
        return os.path.abspath(path)
    return fs.unstrip_protocol(path)
