"""Shared pytest fixtures.

`s3_endpoint`: a real S3 endpoint (moto's threaded server on 127.0.0.1) for the whole test session, so S3
code is tested over HTTP through boto3 instead of with a patched client. Tests create their own buckets.

`dummy_aws_environment` (every test): the same AWS variables for each test, set and undone around it. They
used to be set by `s3_endpoint` from its first use to the end of the session, so a test that builds a client
from the environment passed after an S3 test and failed alone (no credentials: boto3 then looked for them
on the network and gave up with NoCredentialsError).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

# Dummy credentials for every test: boto3 must never pick up real ones from the environment or ~/.aws, nor
# ask an instance-metadata endpoint for them.
_DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(autouse=True)
def dummy_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and region, no profile, for the test (a test may override them)."""
    for name, value in _DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> None:
    """The dbt manifest the marts assets are built from, before any test builds the definitions: a fresh
    clone has no dbt_project/target/ (`trading-dagster prepare`; a no-op when it is up to date)."""
    from trading_dagster.cli import prepare_manifest

    prepare_manifest()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on a free local port; stopped at the end of the session."""
    from moto.server import ThreadedMotoServer  # imported lazily: only S3 tests pay for it

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    # Port 0: the OS picks a free port when the server binds, so there is no find-then-bind race.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# One planned-materialization event per asset for a range run (as the CLI does): halves Dagster's per-run
# bookkeeping in the end-to-end tests without changing what they check.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
