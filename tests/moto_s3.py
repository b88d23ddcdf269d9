"""A real S3 server (moto's ThreadedMotoServer) on 127.0.0.1 for the transfer and loading tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on loopback, stopped at the end of the module."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        moto.stop()


def s3_environment(endpoint: str) -> dict[str, str]:
    """The ``AWS_*`` variables that point obstore at ``endpoint`` with test credentials."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}  # fmt: skip


@contextlib.contextmanager
def s3_bucket_at(endpoint: str, bucket: str) -> Iterator[str]:
    """A new bucket on ``endpoint`` with the environment pointing at it (restored after)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_environment(endpoint).items():
            patch.setenv(name, value)
        httpx.put(f"{endpoint}/{bucket}").raise_for_status()
        yield bucket
