"""Shared fixtures of the domain tests."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from trading_dagster.settings import SAMPLE_FILE


@pytest.fixture(scope="module")
def sample_window():
    """Real rows of the shipped sample for the planner: 2014-2015 prices, SMA 20/50 signals of March..December
    2015 (indicators warmed up on 2014), the NYSE days 2014-01..2016-01 and the window's sessions."""
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.domain.strategies import StrategySpec, generate_signals

    prices = (
        pl.read_parquet(SAMPLE_FILE)
        .rename({"ticker": "symbol", "date": "session"})
        .filter(pl.col("session").is_between(dt.date(2014, 1, 1), dt.date(2015, 12, 31)))
    )
    days = [d for d in nyse_calendar().sessions if dt.date(2014, 1, 1) <= d <= dt.date(2016, 1, 31)]
    window = [d for d in days if dt.date(2015, 3, 1) <= d <= dt.date(2015, 12, 31)]
    spec = StrategySpec(name="sma_20_50_cross", kind="sma_cross", params={"fast": 20, "slow": 50})
    indicators = compute_indicators_anchored(prices, days, window[0], window[-1])
    signals = generate_signals(indicators, [spec], window[0], window[-1], days)
    return prices, signals, days, window
