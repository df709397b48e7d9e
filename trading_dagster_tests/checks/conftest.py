"""Real frames for the rule tests: the shipped sample through the domain functions.

`cleaned`: the sample as cleaned prices (the sample has no bad bar and no duplicate, so cleaning returns it
as it is, with `date` renamed `session`). `stages`: a window of 2017 through indicators, signals, the
planner's orders and its projected fills (as the paper broker reports them: `accepted` at the order
session, `filled` at the next open), and positions and equity marked to market from those fills. Built once
per session (well under a second); frames are immutable, so tests derive bad frames from them freely.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import CLEAN_SCHEMA
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.indicators import compute_indicators
from trading_dagster.domain.orders import OrderEvent, events_to_frame, orders_from_frame
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState, simulate
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
WINDOW = (dt.date(2017, 6, 1), dt.date(2017, 11, 10))
START_CASH = Decimal(100_000)


@dataclass(frozen=True)
class Stages:
    sessions: list[dt.date]
    cleaned: pl.DataFrame  # the window's cleaned prices
    indicators: pl.DataFrame
    signals: pl.DataFrame
    orders: pl.DataFrame
    executions: pl.DataFrame
    positions: pl.DataFrame
    equity: pl.DataFrame


@pytest.fixture(scope="session")
def cleaned() -> pl.DataFrame:
    raw = pl.read_parquet(SAMPLE).rename({"ticker": "symbol", "date": "session"})
    return raw.select(list(CLEAN_SCHEMA)).cast(CLEAN_SCHEMA).sort("session", "symbol")


@pytest.fixture(scope="session")
def stages(cleaned: pl.DataFrame) -> Stages:
    sessions = nyse_calendar().between(*WINDOW)
    indicators = compute_indicators(cleaned.filter(pl.col("session") >= dt.date(2016, 5, 1)))
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, *WINDOW)
    start = PortfolioState.initial(START_CASH)
    plan = simulate(
        signals, cleaned, start, sessions, RiskConfig(), SlippageModel(), CommissionModel(), "paper"
    )
    approved = orders_from_frame(plan.orders_frame.filter(pl.col("status") == "approved"))
    executions = events_to_frame([*(OrderEvent.accepted(o) for o in approved), *plan.fills, *plan.expired])
    positions, equity = mark_to_market(start, executions, cleaned, sessions, "SPY")
    in_window = pl.col("session").is_between(*WINDOW)
    return Stages(
        sessions,
        cleaned.filter(in_window),
        indicators.filter(in_window),
        signals,
        plan.orders_frame,
        executions,
        positions,
        equity,
    )
