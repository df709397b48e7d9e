"""Shared pytest fixtures.

`s3_endpoint`: a real S3 endpoint (moto's threaded server on 127.0.0.1) for the whole test session, so S3
code is tested over HTTP through boto3 instead of with a patched client. Tests create their own buckets.

`dummy_aws_environment` (every test): the same AWS variables for each test, set and undone around it. They
used to be set by `s3_endpoint` from its first use to the end of the session, so a test that builds a client
from the environment passed after an S3 test and failed alone (no credentials: boto3 then looked for them
on the network and gave up with NoCredentialsError).

The suite runs under pytest-xdist (`-n auto`, `--dist loadfile`: pyproject.toml). What that needs here:
- `pytest_xdist_auto_num_workers`: one worker per core the process may use, at most MAX_WORKERS (each
  worker holds a Dagster run's frames; four full-sample runs at once would not fit in CI's memory).
- `pytest_collection_modifyitems`: the longest files first (SLOWEST_FIRST, then every file with a `slow`
  test), so the last file a worker takes is a short one; loadfile keeps each file on one worker, so its
  module-scoped fixtures (a module's one Dagster run) are built once.
- `dbt_manifest` takes a file lock: `dbt parse` writes dbt_project/target/ in the checkout, which two
  workers (or two pytest sessions) would otherwise write at once.
- `build_once`: a directory built by one worker and read by all (the integration tests' warm history).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

MAX_WORKERS = 4

# The files that take longest, longest first (`--durations=60` of the full `-n 2` run from a fresh clone,
# 2026-12-03 21:20-21:58, load 15-25 on 2 cores: seconds of setup + calls): scheduled before everything
# else so that neither worker starts one of them when the other is nearly done.
SLOWEST_FIRST = (
    "ui/test_browser.py",  # ~560 (the ui fixture's history and webserver: 414)
    "integration/test_outages.py",  # ~390
    "integration/test_exits_backtest.py",  # ~290
    "assets/test_spread_slippage_backtest.py",  # ~265
    "integration/test_full_sample.py",  # ~235 (the one full-sample run: 232)
    "integration/test_pipeline.py",  # ~220
    "integration/test_reference_backtest.py",  # ~180
    "integration/test_dbt.py",  # ~175
    "integration/test_dbt_trading.py",  # ~170
)

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
    from trading_dagster.dbt_project_def import dbt_project

    # one lock per checkout, outside it (a lock file in the repo would show in `git status`)
    key = hashlib.sha1(str(Path(dbt_project.project_dir).resolve()).encode()).hexdigest()[:12]
    with FileLock(Path(tempfile.gettempdir()) / f"trading-dagster-dbt-parse-{key}.lock"):
        prepare_manifest()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: the cores this process may run on, at most MAX_WORKERS."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def _file_rank(path: str) -> int:
    for rank, name in enumerate(SLOWEST_FIRST):
        if path.endswith(name):
            return rank
    return len(SLOWEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files in SLOWEST_FIRST order, then the files that have a `slow` test, then the rest; each file's
    tests stay together and in their order (a stable sort on the file)."""
    slow_files = {str(item.path) for item in items if item.get_closest_marker("slow")}

    def key(item: pytest.Item) -> tuple[int, int]:
        path = str(item.path)
        return _file_rank(path), 0 if path in slow_files else 1

    items.sort(key=key)


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(path)` run once for the whole test session, even across xdist workers: the first worker to
    ask builds `name` under a file lock, in the temp folder the workers share; the others wait, then read
    it. Callers must not write in it (copy it). A build that raised is retried by the next caller."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-of-<user>/pytest-<n>/ : the parent of every worker's basetemp
    target, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)  # a failed build's leftovers
            build(target)
            done.touch()
    return target


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
