"""End-to-end fixtures: a throwaway data folder, definitions built on it, runs on a throwaway instance with
the CLI's batched event storage (`batched_instance`)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.cli import DAGSTER_YAML
from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster.settings import Settings, load_settings
from trading_dagster_tests.conftest import build_once

# what a session's signals need before it: the raw store's history, cleaned prices, and indicators (the
# signals' one-session lookback); the test windows then start right after it
WARM_ASSETS = [
    dg.AssetKey(["raw", "raw_prices"]),
    dg.AssetKey(["prices", "cleaned_prices"]),
    dg.AssetKey(["prices", "price_quarantine"]),
    dg.AssetKey(["prices", "price_breaks"]),
    dg.AssetKey(["prices", "data_outages"]),
    dg.AssetKey(["indicators", "indicators"]),
]


def make_settings(data_dir: Path, **env: str) -> Settings:
    return load_settings({"TRADING_DAGSTER_DATA_DIR": str(data_dir), **env})


@contextmanager
def batched_instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway instance as the CLI configures one (trading_dagster/cli.py: BatchedSqliteEventLogStorage,
    DAGSTER_EVENT_BATCH_SIZE=500), in a temp folder removed afterwards, instead of `DagsterInstance.ephemeral()`,
    whose in-memory storage writes a planned check row per partition with the whole event serialized again
    for each, and every event on its own (decision 0002). Measured one after the other in one process on the
    loaded 2-core machine (benchmarks/integration_instance.py, 2026-12-03): the full-sample run (2,485 sessions) 110 s
    here against 772 s ephemeral; two years (505 sessions), ephemeral first, 48.5 s against 293 s."""
    previous = os.environ.get("DAGSTER_EVENT_BATCH_SIZE")
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "500"
    try:
        with tempfile.TemporaryDirectory(prefix="dagster-home-") as home:
            Path(home, "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
            instance = dg.DagsterInstance.from_config(home)
            try:
                yield instance
            finally:
                instance.dispose()
    finally:
        if previous is None:
            del os.environ["DAGSTER_EVENT_BATCH_SIZE"]
        else:
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = previous


def run_range(defs: dg.Definitions, start: dt.date, end: dt.date, *, selection=None, raise_on_error: bool = True):
    """`pipeline_job` over start..end as one run, on a fresh `batched_instance`; the result's events are in
    memory, so it outlives the instance."""
    with batched_instance() as instance:
        return defs.resolve_job_def("pipeline_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()},
            asset_selection=selection,
            raise_on_error=raise_on_error,
        )


def check_count(defs: dg.Definitions) -> int:
    """How many asset checks pipeline_job has: a full run evaluates every one of them (the `__up_to_date`
    checks are reported by a sensor, not run by the job)."""
    return len(defs.resolve_job_def("pipeline_job").asset_layer.asset_graph.asset_check_keys)


def read_table(settings: Settings, table: str) -> pl.DataFrame:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(f"select * from {table}").pl()
    finally:
        con.close()


@pytest.fixture(scope="session")
def warm_history(tmp_path_factory) -> tuple[Path, list[dt.date]]:
    """Raw and cleaned prices and indicators for the 660 sessions before 2017-06-01, built once for the
    whole session (one xdist worker builds it, the others wait for it: `build_once`); tests copy the folder
    so each gets its own warehouse and broker ledger."""
    cal = session_calendar()
    first_test_session = dt.date(2017, 6, 1)
    start = cal.offset(first_test_session, -660)
    end = cal.previous_session(first_test_session)

    def build(root: Path) -> None:
        result = run_range(build_definitions(make_settings(root / "data")), start, end, selection=WARM_ASSETS)
        assert result.success

    data_dir = build_once(tmp_path_factory, "warm_history", build) / "data"
    return data_dir, cal.between(first_test_session, cal.offset(first_test_session, 30))


@pytest.fixture
def warm_copy(warm_history, tmp_path) -> tuple[Settings, list[dt.date]]:
    src, sessions = warm_history
    dst = tmp_path / "data"
    shutil.copytree(src, dst)
    return make_settings(dst), sessions


BOOK_TABLES = {
    "trading.orders": ["session", "symbol", "strategy", "side"],
    "trading.executions": ["session", "client_order_id", "event"],
    "pnl.positions": ["session", "symbol"],
    "pnl.equity": ["session"],
}
"""The backtest's tables a range run must reproduce, with the keys that order them."""


def run_and_check_all(settings: Settings, start: dt.date, end: dt.date) -> None:
    """`pipeline_job` over start..end: it succeeds and every one of its checks ran and passed."""
    defs = build_definitions(settings)
    result = run_range(defs, start, end)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert len(evaluations) == check_count(defs) and not failed


def assert_range_equals_days(range_settings: Settings, daily_settings: Settings, sessions: list[dt.date]) -> None:
    """One run over `sessions` on one data folder, then each session as its own run on a copy: the backtest's
    tables are equal, value for value (the same code for one day and ten years)."""
    from polars.testing import assert_frame_equal

    run_and_check_all(range_settings, sessions[0], sessions[-1])
    for session in sessions:
        run_and_check_all(daily_settings, session, session)
    for table, keys in BOOK_TABLES.items():
        a = read_table(range_settings, table).sort(keys)
        b = read_table(daily_settings, table).sort(keys)
        assert a.height > 0, table
        assert_frame_equal(a, b, check_exact=True)
