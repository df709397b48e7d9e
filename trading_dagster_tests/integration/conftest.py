"""End-to-end fixtures: a throwaway data folder, definitions built on it, runs on an ephemeral instance."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster.settings import Settings, load_settings

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


def run_range(defs: dg.Definitions, start: dt.date, end: dt.date, *, selection=None, raise_on_error: bool = True):
    return defs.resolve_job_def("pipeline_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
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
    """Raw and cleaned prices and indicators for the 660 sessions before 2017-06-01, built once;
    tests copy the folder so each gets its own warehouse and broker ledger."""
    cal = session_calendar()
    first_test_session = dt.date(2017, 6, 1)
    start = cal.offset(first_test_session, -660)
    end = cal.previous_session(first_test_session)
    data_dir = tmp_path_factory.mktemp("warm") / "data"
    defs = build_definitions(make_settings(data_dir))
    run_range(defs, start, end, selection=WARM_ASSETS)
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
