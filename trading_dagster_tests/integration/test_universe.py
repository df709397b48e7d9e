"""The liquidity rule through Dagster, on the shipped sample after the warm history: a symbol below the minimum
gets no buy signal and so no buy order on that session (sells pass) while the others still trade, the signals asset counts what it
excluded, and a single-run range gives the same signals as the same sessions run one by one.

The expected verdicts come from an independent reference (numpy over the cleaned-prices table), and the
minimum is chosen from the data so that the rule excludes some signalling symbols and keeps others.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.bars import PriceDataError
from trading_dagster.partitions import session_calendar
from trading_dagster.settings import DEFAULT_CONFIG_FILE, Settings
from trading_dagster_tests.integration.conftest import WARM_ASSETS, make_settings, read_table, run_range

SESSIONS = 5
LIQUIDITY_WINDOW = 20  # not the default 60: the window really comes from the config
SIGNALS = dg.AssetKey(["signals", "signals"])
ORDERS = dg.AssetKey(["trading", "orders"])
TO_SIGNALS = [*WARM_ASSETS, SIGNALS]
SIGNAL_KEYS = ["session", "symbol", "strategy"]


def with_rule(settings: Settings, tmp_path: Path, minimum: float) -> Settings:
    """The same data folder, with the shipped config plus a liquidity rule."""
    config = tmp_path / f"rule_{minimum:.0f}.toml"
    config.write_text(
        DEFAULT_CONFIG_FILE.read_text()
        + f"\n[universe]\nmin_median_dollar_volume = {minimum!r}\nliquidity_window = {LIQUIDITY_WINDOW}\n"
    )
    return make_settings(settings.data_dir, TRADING_DAGSTER_CONFIG=str(config))


def reference_medians(cleaned: pl.DataFrame, days: list[dt.date]) -> dict[tuple[str, dt.date], float | None]:
    """(symbol, session) -> the median of close x volume over the symbol's last LIQUIDITY_WINDOW bars up to
    the session, None when those bars do not all lie within the 2 x LIQUIDITY_WINDOW sessions ending there."""
    cal = session_calendar()
    out = {}
    for (symbol,), own in cleaned.sort("session").partition_by("symbol", as_dict=True).items():
        sessions = own["session"].to_list()
        dollar_volume = (own["close"] * own["volume"].cast(pl.Float64)).to_numpy()
        for day in days:
            if day not in sessions:
                continue  # no bar that day: no signal can exist either
            upto = [i for i, s in enumerate(sessions) if s <= day][-LIQUIDITY_WINDOW:]
            span_start = cal.offset(day, -(2 * LIQUIDITY_WINDOW - 1)) or cal.first
            complete = len(upto) == LIQUIDITY_WINDOW and sessions[upto[0]] >= span_start
            out[(symbol, day)] = float(np.median(dollar_volume[upto])) if complete else None
    return out


def tradeable(medians: dict, minimum: float) -> set[tuple[str, dt.date]]:
    return {key for key, m in medians.items() if m is not None and m >= minimum}


def metadata(result, key: dg.AssetKey) -> dict:
    [event, *_] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_symbol_below_the_rule_gets_no_signals_or_orders_while_the_others_do(warm_copy, tmp_path):
    settings, sessions = warm_copy
    days = sessions[:SESSIONS]
    # without the rule: the window's prices, indicators and the signals the strategies fire
    assert run_range(build_definitions(settings), days[0], days[-1], selection=TO_SIGNALS).success
    unruled = read_table(settings, "signals.signals").sort(SIGNAL_KEYS)
    medians = reference_medians(read_table(settings, "prices.cleaned_prices"), days)
    fired = {(s, d) for s, d in unruled.select("symbol", "session").iter_rows()}
    # the minimum between the medians of the signalling symbol-sessions: some fall below it, some do not
    minimum = float(np.median([medians[k] for k in fired if medians[k] is not None]))

    ruled_settings = with_rule(settings, tmp_path, minimum)
    result = run_range(build_definitions(ruled_settings), days[0], days[-1], selection=[SIGNALS, ORDERS])
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())

    ok = tradeable(medians, minimum)
    excluded, kept = fired - ok, fired & ok
    assert excluded and kept, "the minimum must split the signalling symbols for the test to mean anything"
    signals = read_table(ruled_settings, "signals.signals").sort(SIGNAL_KEYS)
    is_ok = pl.Series([(s, d) in ok for s, d in unruled.select("symbol", "session").iter_rows()])
    # the rule gates buys; sells pass wherever they fire (a held position must stay closable)
    assert_frame_equal(signals, unruled.filter(is_ok | (pl.col("side") != "buy")), check_exact=True)

    orders = read_table(ruled_settings, "trading.orders")
    bought = {(s, d) for s, d in orders.filter(pl.col("side") == "buy").select("symbol", "session").iter_rows()}
    assert orders.height > 0 and bought <= ok
    assert not bought & excluded  # no buy order, approved or denied, where the rule said no
    assert bought & kept  # ... while the symbols inside the universe still trade

    meta = metadata(result, SIGNALS)
    assert meta["universe_excluded_signals"] == unruled.height - signals.height > 0
    assert signals.height == unruled.filter(is_ok | (pl.col("side") != "buy")).height
    assert meta["universe_min_median_dollar_volume"] == minimum
    assert meta["universe_liquidity_window"] == LIQUIDITY_WINDOW
    assert meta["universe_symbol_sessions"] == len(medians)  # every bar of the window was judged
    assert meta["universe_excluded_symbol_sessions"] == len(medians) - len(ok)
    assert meta["universe_excluded_no_history"] == sum(m is None for m in medians.values())
    assert meta["universe_excluded_symbols"] == len({symbol for symbol, _ in set(medians) - ok})


@pytest.mark.slow
def test_single_run_range_equals_day_by_day_with_the_rule(warm_copy, tmp_path):
    settings, sessions = warm_copy
    days = sessions[:SESSIONS]
    daily_dir = tmp_path / "daily" / "data"
    shutil.copytree(settings.data_dir, daily_dir)
    # a minimum that excludes about half the symbols, from the reference medians of the session before
    before = reference_medians(
        read_table(settings, "prices.cleaned_prices"), [session_calendar().previous_session(days[0])]
    )
    minimum = float(np.median([m for m in before.values() if m is not None]))

    ranged = with_rule(settings, tmp_path, minimum)
    result = run_range(build_definitions(ranged), days[0], days[-1], selection=TO_SIGNALS)
    assert result.success
    assert metadata(result, SIGNALS)["universe_excluded_signals"] > 0  # the rule bit inside the window
    daily = with_rule(make_settings(daily_dir), tmp_path, minimum)
    daily_defs = build_definitions(daily)
    for day in days:
        assert run_range(daily_defs, day, day, selection=TO_SIGNALS).success

    a = read_table(ranged, "signals.signals").sort(SIGNAL_KEYS)
    b = read_table(daily, "signals.signals").sort(SIGNAL_KEYS)
    assert a.height > 0
    assert_frame_equal(a, b, check_exact=True)
    medians = reference_medians(read_table(ranged, "prices.cleaned_prices"), days)
    buys = a.filter(pl.col("side") == "buy")
    assert {(s, d) for s, d in buys.select("symbol", "session").iter_rows()} <= tradeable(medians, minimum)


def test_the_symbols_list_limits_what_raw_prices_ingests(tmp_path):
    day = dt.date(2017, 6, 1)
    raw = [dg.AssetKey(["raw", "raw_prices"])]
    config = tmp_path / "symbols.toml"
    config.write_text(DEFAULT_CONFIG_FILE.read_text() + '\n[universe]\nsymbols = ["spy", "AAPL"]\n')
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_CONFIG=str(config))
    assert run_range(build_definitions(settings), day, day, selection=raw).success
    written = pl.read_parquet(next(Path(settings.raw_root).rglob("*.parquet")))
    assert sorted(written["symbol"].to_list()) == ["AAPL", "SPY"]

    config.write_text(DEFAULT_CONFIG_FILE.read_text() + '\n[universe]\nsymbols = ["SPY", "NOPE"]\n')
    unknown = make_settings(tmp_path / "unknown", TRADING_DAGSTER_CONFIG=str(config))
    with pytest.raises(PriceDataError, match=r"no bar in the file on any date: NOPE\."):
        run_range(build_definitions(unknown), day, day, selection=raw)
    assert not Path(unknown.raw_root).exists() or not any(Path(unknown.raw_root).rglob("*.parquet"))
