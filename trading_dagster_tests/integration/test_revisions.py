"""A revised past bar makes exactly what was computed from it stale, and the refresh equals a fresh run on the
revised data (decision 0004 section 5)."""

from __future__ import annotations

import shutil

import dagster as dg
import polars as pl

from trading_dagster.automation.staleness import describe, execute_refresh, stale_report
from trading_dagster.definitions import build_definitions
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.settings import SAMPLE_FILE
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

RAW = [dg.AssetKey(["raw", "raw_prices"])]
TABLES = {
    "prices.cleaned_prices": ["session", "symbol"],
    "indicators.indicators": ["session", "symbol"],
    "signals.signals": ["session", "symbol", "strategy"],
    "trading.orders": ["session", "client_order_id"],
    "trading.executions": ["session", "client_order_id", "event"],
    "pnl.positions": ["session", "symbol"],
    "pnl.equity": ["session"],
}


def _revision_file(tmp_path, session):
    """AAPL's real bar of `session`, revised by the vendor: the close 2% higher (high lifted to hold it)."""
    bar = pl.read_parquet(SAMPLE_FILE).filter((pl.col("ticker") == "AAPL") & (pl.col("date") == session))
    assert bar.height == 1
    revised = bar.with_columns((pl.col("close") * 1.02).alias("close")).with_columns(
        pl.max_horizontal("high", "close").alias("high")
    )
    path = tmp_path / f"aapl_revision_{session}.csv"
    revised.write_csv(path)
    return path, float(bar["close"][0]), float(revised["close"][0])


def _window_tables(settings, window) -> dict[str, pl.DataFrame]:
    return {
        t: read_table(settings, t).filter(pl.col("session").is_between(window[0], window[-1])).sort(keys)
        for t, keys in TABLES.items()
    }


def test_a_revised_bar_marks_exactly_what_it_reaches_and_the_refresh_equals_a_fresh_run(warm_copy, tmp_path):
    settings, sessions = warm_copy
    window = sessions[:10]
    revised_day = window[3]
    fresh_dir = tmp_path / "fresh"
    shutil.copytree(settings.data_dir, fresh_dir)  # the same warm history, before anything below

    defs = build_definitions(settings)
    assert run_range(defs, window[0], window[-1]).success
    gate = QualityGate(settings.quality_gate_path)
    assert stale_report(gate) == {}  # a run is consistent with itself

    path, old_close, new_close = _revision_file(tmp_path, revised_day)
    revise = build_definitions(make_settings(settings.data_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(path)))
    assert run_range(revise, revised_day, revised_day, selection=RAW).success  # merges one bar, keeps the rest

    report = stale_report(gate)
    cleaned = report["prices/cleaned_prices"]
    assert cleaned.sessions == tuple(window[3:])  # its own session and those whose history holds it
    assert cleaned.cause.upstream == "raw/raw_prices" and cleaned.cause.session == revised_day
    assert report["indicators/indicators"].sessions == tuple(window[3:])
    for asset in ("trading/orders", "trading/executions", "pnl/equity"):
        assert report[asset].sessions == tuple(window[3:]), asset
    assert all(str(revised_day) in line for line in describe(report))
    before = read_table(settings, "prices.cleaned_prices").filter(
        (pl.col("symbol") == "AAPL") & (pl.col("session") == revised_day)
    )
    assert before["close"].to_list() == [old_close]  # stale: still the old bar

    ok, plan = execute_refresh(defs, dg.DagsterInstance.ephemeral(), gate, announce=lambda _: None)
    assert ok and [r.start for r in plan] == [revised_day] * len(plan)
    assert stale_report(gate) == {}

    # the same history and window, with the revised bar on file before anything was computed from it
    fresh = make_settings(fresh_dir)
    assert run_range(build_definitions(fresh), window[0], window[-1], selection=RAW).success
    fresh_revise = build_definitions(make_settings(fresh_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(path)))
    assert run_range(fresh_revise, revised_day, revised_day, selection=RAW).success
    fresh_defs = build_definitions(fresh)
    rest = [k for k in fresh_defs.resolve_job_def("pipeline_job").asset_layer.executable_asset_keys if k not in RAW]
    assert run_range(fresh_defs, window[0], window[-1], selection=rest).success

    refreshed, expected = _window_tables(settings, window), _window_tables(fresh, window)
    assert refreshed["prices.cleaned_prices"].filter(
        (pl.col("symbol") == "AAPL") & (pl.col("session") == revised_day)
    )["close"].to_list() == [new_close]
    for table in TABLES:
        assert refreshed[table].equals(expected[table]), table
