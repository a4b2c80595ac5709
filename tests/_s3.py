"""An S3-compatible server for the tests: moto's, on 127.0.0.1 over real HTTP.

Each pytest process (each xdist worker) starts one server on a free loopback port
(``moto.server.ThreadedMotoServer``, a werkzeug server in a thread) and points the
AWS settings of the whole session at it -- ``AWS_ENDPOINT_URL_S3``, dummy keys, a
region, no config or credential files, no instance-metadata look-up -- so no test
can reach AWS, and flows run as subprocesses inherit the same settings. Every test
gets a bucket of its own. When moto or s3fs is not installed the S3 tests are
skipped with that reason.

Fixtures: ``s3_server`` (the endpoint URL), ``s3_url`` (``s3://<fresh bucket>/blobs``)
and ``s3_client`` (an s3fs filesystem on the server, to look at buckets directly).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

HAVE_S3 = all(importlib.util.find_spec(name) is not None for name in ("moto", "s3fs", "flask"))
SKIP_REASON = "the S3 tests need moto[server] and s3fs, which are not installed: pip install '.[test]'"


def aws_env(endpoint: str) -> dict[str, str]:
    """The AWS settings every S3 test runs under (and passes on to the flows it runs)."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "matinee-test",
        "AWS_SECRET_ACCESS_KEY": "matinee-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "2",
    }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint (``http://127.0.0.1:<port>``) of this process's moto server."""
    if not HAVE_S3:
        pytest.skip(SKIP_REASON)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
            mp.delenv(name, raising=False)
        for name, value in aws_env(endpoint).items():
            mp.setenv(name, value)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """An s3fs filesystem on the test server (its own instance, with no cached listings)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True, use_listings_cache=False)


@pytest.fixture
def s3_url(s3_client: Any) -> Iterator[str]:
    """``s3://<a new bucket>/blobs``; the bucket and all in it are removed after the test."""
    bucket = f"matinee-{uuid.uuid4().hex[:12]}"
    s3_client.mkdir(bucket)
    yield f"s3://{bucket}/blobs"
    try:
        s3_client.rm(bucket, recursive=True)
    except FileNotFoundError:
        pass
