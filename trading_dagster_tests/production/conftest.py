"""The production instance (deploy/dagster.yaml) on a real PostgreSQL 15 and S3 compute logs at a moto server.

`pg_server`: one throwaway PostgreSQL 15 cluster per pytest process (each xdist worker its own, on a free
127.0.0.1 port), installed with apt-get where missing and we are root (trading_dagster_tests/postgres.py);
the tests skip, saying what is missing, only where it cannot be installed.
`pg_database`: a fresh database of that server per test, so tests and workers share no state.
`production_instance`: deploy/dagster.yaml itself, copied into a temp DAGSTER_HOME, with the environment the
containers give it (DAGSTER_PG_*, the compute-log bucket and prefix) pointing at the test's database and a
bucket of the session's moto server (AWS_ENDPOINT_URL_S3).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from sqlalchemy.engine import URL, make_url

from trading_dagster_tests.postgres import (
    PostgresNotInstalled,
    create_database,
    ensure_postgres_installed,
    throwaway_postgres,
)

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
COMPUTE_LOG_PREFIX = "compute-logs"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL 15 server started for this pytest process (database `postgres`)."""
    try:
        ensure_postgres_installed()
    except PostgresNotInstalled as e:
        pytest.skip(str(e))
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def pg_database(pg_server: str) -> URL:
    """A database of its own for the test."""
    return make_url(create_database(pg_server, f"t_{uuid.uuid4().hex[:16]}"))


def pg_connect(db: URL):
    """A psycopg2 connection to the test's database, for reading what Dagster wrote without Dagster."""
    return psycopg2.connect(host=db.host, port=db.port, user=db.username, dbname=db.database)


@dataclass
class Production:
    instance: dg.DagsterInstance
    db: URL
    bucket: str
    s3_endpoint: str


@pytest.fixture
def production_instance(
    pg_database: URL, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Production]:
    """The instance deploy/dagster.yaml describes, on the test's database and a fresh bucket."""
    import boto3

    bucket = f"compute-logs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg_database.host,
        "DAGSTER_PG_PORT": str(pg_database.port),
        "DAGSTER_PG_USER": pg_database.username,
        "DAGSTER_PG_PASSWORD": "",  # trust auth on loopback; production passes the secret here
        "DAGSTER_PG_DB": pg_database.database,
        "TRADING_DAGSTER_COMPUTE_LOG_BUCKET": bucket,
        "TRADING_DAGSTER_COMPUTE_LOG_PREFIX": COMPUTE_LOG_PREFIX,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield Production(instance, pg_database, bucket, s3_endpoint)
    finally:
        instance.dispose()
