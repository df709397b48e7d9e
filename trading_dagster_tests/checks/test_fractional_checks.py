"""The checks on a fractional-share backtest (`[backtest] shares = "fractional"`): Float64 quantity columns pass the
GX orders suite and the polars rules, and the suite still catches an approved order of nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.checks import gx_suites
from trading_dagster.checks.rules import (
    equity_identity,
    equity_matches_fills,
    executions_match_orders,
    fills_within_monthly_quota,
    orders_within_limits,
)
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.indicators import compute_indicators
from trading_dagster.domain.orders import OrderEvent, events_to_frame, orders_from_frame
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState, simulate
from trading_dagster.domain.quantity import FRACTIONAL
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals
from trading_dagster_tests.checks.outcomes import assert_passes, with_values

WINDOW = (dt.date(2017, 6, 1), dt.date(2017, 11, 10))
START_CASH = Decimal(100_000)
QUOTA = 40


@pytest.fixture(scope="module")
def fractional(cleaned):
    sessions = nyse_calendar().between(*WINDOW)
    indicators = compute_indicators(cleaned.filter(pl.col("session") >= dt.date(2016, 5, 1)))
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, *WINDOW)
    start = PortfolioState.initial(START_CASH, FRACTIONAL)
    risk = RiskConfig(shares="fractional", monthly_share_limit=QUOTA, notional=Decimal(2500))
    plan = simulate(signals, cleaned, start, sessions, risk, SlippageModel(), CommissionModel(), "paper")
    approved = orders_from_frame(plan.orders_frame.filter(pl.col("status") == "approved"))
    executions = events_to_frame([*(OrderEvent.accepted(o) for o in approved), *plan.fills, *plan.expired])
    positions, equity = mark_to_market(start, executions, cleaned, sessions, "SPY")
    return sessions, plan.orders_frame, executions, positions, equity


def test_the_fractional_frames_are_float_and_hold_fractions(fractional):
    _, orders, executions, positions, _ = fractional
    for frame, column in ((orders, "qty"), (orders, "requested_qty"), (executions, "qty"), (positions, "qty")):
        assert frame.schema[column] == pl.Float64
    approved = orders.filter(pl.col("status") == "approved")
    assert approved.filter(pl.col("qty") != pl.col("qty").floor()).height > 0


def test_the_rules_pass_on_fractional_frames(fractional):
    sessions, orders, executions, positions, equity = fractional
    assert_passes(orders_within_limits(orders, QUOTA), rows=orders.height)
    assert_passes(fills_within_monthly_quota(executions, QUOTA), rows=executions.height)
    assert executions_match_orders(executions, orders).passed
    assert equity_identity(equity).passed
    assert equity_matches_fills(equity, positions, executions, START_CASH).passed
    # and still fail: a fill of more than the month's quota
    first_buy = executions.filter((pl.col("event") == "filled") & (pl.col("side") == "buy")).row(0, named=True)
    where = (pl.col("event") == "filled") & (pl.col("client_order_id") == first_buy["client_order_id"])
    over = with_values(executions, where, qty=float(QUOTA) + 0.5)
    assert not fills_within_monthly_quota(over, QUOTA).passed


@pytest.mark.parametrize("engine", ["gx", "split"])
def test_the_gx_orders_suite_takes_fractional_quantities(fractional, engine):
    sessions, orders, *_ = fractional
    params = {"sessions": sessions, "strategies": DEFAULT_STRATEGIES}
    outcome = gx_suites.validate("orders", orders, engine=engine, **params)
    assert outcome.passed, outcome.metadata
    # half a share is a valid fractional order; an approved order of nothing fails (> 0 rather than >= 1)
    first = orders.filter(pl.col("status") == "approved").row(0, named=True)
    where = pl.col("client_order_id") == first["client_order_id"]
    half = gx_suites.validate("orders", with_values(orders, where, qty=0.5, requested_qty=0.5), engine=engine, **params)
    assert half.passed, half.metadata
    zero = gx_suites.validate("orders", with_values(orders, where, qty=0.0), engine=engine, **params)
    assert not zero.passed
    assert zero.metadata["failed_expectations"] == (
        "expect_column_values_to_be_between(qty) where status == approved"
    )


def test_the_whole_share_suite_is_unchanged():
    frame = pl.DataFrame({"qty": [1], "requested_qty": [1]})
    suite = gx_suites.SUITES["orders"]
    assert gx_suites.for_frame("orders", suite, frame) is suite
