"""A throwaway PostgreSQL cluster for benchmarks: `with throwaway_postgres() as url: ...`.

The logic lives in trading_dagster_tests/postgres.py, shared with the production tests (issue 12): Debian's
`postgresql-15` server binaries (installed there where missing when we are root with apt-get, under a file lock),
`initdb`/`pg_ctl` as the `postgres` OS user when root, a free 127.0.0.1 port with trust auth, and a temp folder
removed afterwards. The benchmarks install the package where missing, as the tests do.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run as a script too

from trading_dagster_tests.ports import free_port  # noqa: E402
from trading_dagster_tests.postgres import (  # noqa: E402
    PG_VERSION,
    PostgresNotInstalled,
    create_database,
    pg_bin_dir,
)
from trading_dagster_tests.postgres import throwaway_postgres as _throwaway_postgres  # noqa: E402

__all__ = [
    "OUR_EVENT_LOG",
    "PG_VERSION",
    "PostgresNotInstalled",
    "create_database",
    "free_port",
    "pg_bin_dir",
    "production_storage_yaml",
    "throwaway_postgres",
]

# deploy/dagster.yaml's event log (the linear planned-check write, bare planned rows, one pooled connection)
OUR_EVENT_LOG = ("trading_dagster.event_log", "BatchedPostgresEventLogStorage")


def production_storage_yaml(url: str, event_log: tuple[str, str] = OUR_EVENT_LOG) -> str:
    """A dagster.yaml with the production instance's storages (deploy/dagster.yaml) on `url`, the event log
    (module, class) `event_log`; compute logs stay local (deploy/dagster.yaml puts them on S3)."""
    storages = (
        ("run_storage", "dagster_postgres", "PostgresRunStorage"),
        ("event_log_storage", *event_log),
        ("schedule_storage", "dagster_postgres", "PostgresScheduleStorage"),
    )
    return "".join(
        f"{key}:\n  module: {module}\n  class: {cls}\n  config:\n    postgres_url: {json.dumps(url)}\n"
        for key, module, cls in storages
    ) + "telemetry:\n  enabled: false\n"


@contextlib.contextmanager
def throwaway_postgres(settings: dict[str, str] | None = None, version: str = PG_VERSION) -> Iterator[str]:
    """Start a fresh cluster (installing the package where missing and possible), yield its SQLAlchemy URL
    (psycopg2 driver, database and user `postgres`), then stop and delete it."""
    with _throwaway_postgres(settings, version, install=True) as url:
        yield url


if __name__ == "__main__":  # smoke test: start, connect, stop
    import time

    import sqlalchemy as sa

    t = time.perf_counter()
    with throwaway_postgres() as url:
        print(f"up in {time.perf_counter() - t:.1f} s: {url}")
        with sa.create_engine(url).connect() as c:
            print(c.execute(sa.text("select version()")).scalar())
    print("stopped and removed")
