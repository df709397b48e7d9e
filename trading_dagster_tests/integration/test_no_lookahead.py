"""No look-ahead at the asset level: what the pipeline decides on session D depends only on data up to D.

Two copies of the warm history run the same 8-session window through the whole job; in the second, the
market data after session 4 is altered (every price x1.25 from session 5 on: a big move, but at no split ratio,
which cleaning would rightly hold as an unconfirmed break). Everything the pipeline knew by
the close of session 4 (indicators, signals, orders, the broker's events, P&L) must come out identical, and
something after session 4 must differ, or the alteration proved nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster.settings import SAMPLE_FILE, Settings
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

WINDOW = 8
KNOWN = 4  # sessions 1..4 of the window: decided before the altered data exists
TABLES = {
    "indicators.indicators": ["session", "symbol"],
    "signals.signals": ["session", "symbol", "strategy"],
    "trading.orders": ["session", "symbol", "strategy", "side"],
    "trading.executions": ["session", "client_order_id", "event"],
    "pnl.positions": ["session", "symbol"],
    "pnl.equity": ["session"],
}


def _copy(src: Path, dst: Path, **env: str) -> Settings:
    shutil.copytree(src, dst)
    return make_settings(dst, **env)


def _until(df: pl.DataFrame, last: dt.date, keys: list[str]) -> pl.DataFrame:
    return df.filter(pl.col("session") <= last).sort(keys)


def _after(df: pl.DataFrame, last: dt.date, keys: list[str]) -> pl.DataFrame:
    return df.filter(pl.col("session") > last).sort(keys)


@pytest.fixture
def two_runs(warm_history, tmp_path):
    src, sessions = warm_history
    window = sessions[:WINDOW]
    cutoff = window[KNOWN - 1]
    altered_file = tmp_path / "altered.parquet"
    prices = ["open", "high", "low", "close"]
    (
        pl.read_parquet(SAMPLE_FILE)
        .with_columns([pl.when(pl.col("date") > cutoff).then(pl.col(c) * 1.25).otherwise(pl.col(c)).alias(c) for c in prices])
        .write_parquet(altered_file)
    )
    original = _copy(src, tmp_path / "original")
    altered = _copy(src, tmp_path / "altered", TRADING_DAGSTER_MARKET_DATA_FILE=str(altered_file))
    for settings in (original, altered):
        assert run_range(build_definitions(settings), window[0], window[-1]).success
    return original, altered, cutoff


def test_decisions_up_to_a_session_ignore_data_after_it(two_runs):
    original, altered, cutoff = two_runs
    # the alteration reached the pipeline: the cleaned closes after the cutoff are 1.25x, before it equal
    closes = {
        name: read_table(s, "prices.cleaned_prices").filter(pl.col("session") >= cutoff).sort("session", "symbol")
        for name, s in (("original", original), ("altered", altered))
    }
    ratio = closes["altered"]["close"] / closes["original"]["close"]
    is_after = closes["original"]["session"] > cutoff
    assert (ratio.filter(is_after) - 1.25).abs().max() < 1e-12
    assert (ratio.filter(~is_after) == 1.0).all()

    for table, keys in TABLES.items():
        a, b = read_table(original, table), read_table(altered, table)
        assert _until(a, cutoff, keys).height > 0 or table == "pnl.positions", table
        assert_frame_equal(_until(a, cutoff, keys), _until(b, cutoff, keys), check_exact=True)

    # ... and what comes after the cutoff saw the new prices: the decisions themselves changed
    for table in ("signals.signals", "trading.orders", "trading.executions", "pnl.equity"):
        keys = TABLES[table]
        after_a, after_b = _after(read_table(original, table), cutoff, keys), _after(read_table(altered, table), cutoff, keys)
        assert not after_a.equals(after_b), f"{table} after {cutoff} did not change"
