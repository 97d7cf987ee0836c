"""Test harness: keeps Ray, botocore and HTTP clients on this machine.

The variables are set here, before any test imports Ray or starts an S3 server,
and not in the product's defaults: a user's scan must reach real object storage.
"""

import os
import pathlib
import tempfile

import pytest

_LOOPBACK_ONLY = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1,localhost,::1",
    "NO_PROXY": "127.0.0.1,localhost,::1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(_LOOPBACK_ONLY)
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(pathlib.Path(tempfile.gettempdir()) / "corpus-scanner-numba-cache")
)

pytest_plugins = ["s3server"]

# The sample corpora live beside the checkout; CORPUS_SCANNER_SHARED points elsewhere.
SHARED_CORPORA = (
    pathlib.Path(os.environ["CORPUS_SCANNER_SHARED"]) / "corpora"
    if os.environ.get("CORPUS_SCANNER_SHARED")
    else pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
)


@pytest.fixture(scope="session")
def real_corpora() -> pathlib.Path:
    """The real sample files beside the checkout; skips when they are absent."""
    path = SHARED_CORPORA / "real"
    if not path.is_dir():
        pytest.skip(f"sample corpora not found at {path}: these tests need ../shared/corpora")
    return path


@pytest.fixture(scope="session")
def labelled_corpora() -> pathlib.Path:
    """Labelled human and model-generated texts; skips when they are absent."""
    path = SHARED_CORPORA / "fast-detect-gpt"
    if not path.is_dir():
        pytest.skip(f"labelled corpora not found at {path}: these tests need ../shared/corpora")
    return path
