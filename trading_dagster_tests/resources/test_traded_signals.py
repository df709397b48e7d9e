"""The signals the configured strategies trade: a weekly strategy's on its week's scan session only, and the
trading calendar (opens and closes, ~0.3 s to build) built only when a weekly strategy has signals."""

import datetime as dt

import polars as pl
import pytest

from trading_dagster.domain import trading_calendar
from trading_dagster.resources.configured import StrategyConfig, TradingConfigResource

DAILY = StrategyConfig(name="daily_sma", kind="sma_cross", params={"fast": 20, "slow": 50})
WEEKLY = StrategyConfig(name="weekly_rsi", kind="rsi", params={"lower": 30, "upper": 70}, cadence="weekly")
# Monday 2017-07-03 .. Friday 2017-07-07; Tuesday the 4th is Independence Day
WEEK = [dt.date(2017, 7, d) for d in (3, 5, 6, 7)]


def _signals(strategies: list[str]) -> pl.DataFrame:
    rows = [(d, "AAA", s) for d in WEEK for s in strategies]
    return pl.DataFrame(rows, schema={"session": pl.Date, "symbol": pl.String, "strategy": pl.String}, orient="row")


@pytest.fixture
def calendar_builds(monkeypatch):
    built = []
    real = trading_calendar.xnys_trading_calendar.__wrapped__

    def counting(*args):
        built.append(args)
        return real(*args)

    monkeypatch.setattr(trading_calendar, "xnys_trading_calendar", counting)
    return built


def test_daily_strategies_trade_every_signal_without_building_the_trading_calendar(calendar_builds):
    config = TradingConfigResource(strategies=[DAILY])
    signals = _signals(["daily_sma"])
    assert config.traded_signals(signals).equals(signals)
    assert calendar_builds == []


def test_a_weekly_strategy_trades_its_scan_session_only(calendar_builds):
    config = TradingConfigResource(strategies=[DAILY, WEEKLY], weekly_scan_day="tuesday")
    kept = config.traded_signals(_signals(["daily_sma", "weekly_rsi"]))
    # the daily strategy keeps its four sessions; the weekly one its week's scan session: Tuesday is a holiday,
    # so the last session before it in that week, Monday the 3rd
    assert kept.filter(pl.col("strategy") == "daily_sma")["session"].to_list() == WEEK
    assert kept.filter(pl.col("strategy") == "weekly_rsi")["session"].to_list() == [dt.date(2017, 7, 3)]
    assert calendar_builds  # built, since a weekly strategy had signals
