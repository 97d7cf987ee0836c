"""pytest fixtures for a real S3 endpoint: moto's server on 127.0.0.1.

Register in tests/conftest.py with `pytest_plugins = ["s3server"]`. moto speaks
the S3 HTTP protocol, so s3fs and botocore run unchanged against it.

The fixture puts dummy keys in os.environ for the whole session. Processes that
start after it (a local Ray cluster, for example) inherit them. Processes that
started earlier need the keys in `StorageOptions.options` (key=..., secret=...).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from scanner.storage import StorageOptions

DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"
REGION = "us-east-1"

_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
    "AWS_DEFAULT_REGION": REGION,
    # Keep botocore away from the user's own profiles and credentials.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_AWS_VARIABLES_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL (http://127.0.0.1:PORT) of a moto S3 server that lives for the session."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs one line per request, which floods captured output in listing tests.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in _AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        for name in _AWS_VARIABLES_TO_CLEAR:
            patch.delenv(name, raising=False)

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_storage(s3_endpoint: str) -> StorageOptions:
    """Storage options for the moto endpoint that take keys from the standard AWS chain."""
    return StorageOptions(endpoint_url=s3_endpoint)


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """Name of a new, empty bucket on the moto endpoint, unique to the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    """A boto3 S3 client for the moto endpoint, for putting test objects in place."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )
