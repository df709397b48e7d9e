"""The reference conventions through Dagster (decision 0006): a TOML that sets them, `pipeline_job` from raw
prices to P&L over two years of the shipped sample, and vectorbt's `Portfolio.from_signals` on the very
cleaned prices the run wrote. Total P&L, the number of fills and the Sharpe ratio must agree to 1e-6
relative; the pure-function comparison on the whole sample is trading_dagster_tests/reference/."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.metrics import performance_summary
from trading_dagster.partitions import session_calendar
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range
from trading_dagster_tests.reference.vectorbt_reference import vectorbt_sma_cross

pytestmark = pytest.mark.slow

START, END = dt.date(2008, 1, 2), dt.date(2009, 12, 31)
REFERENCE_TOML = """
[account]
initial_cash = 100000

[risk]
notional = 10000
monthly_share_limit = "off"
max_position_pct_equity = "off"
min_price = "off"
add_to_positions = false

[costs]
slippage_bps = 0
commission_per_share = 0
commission_bps = 1

[backtest]
size_on = "{size_on}"
round_cents = false
buying_power = "off"

[[strategies]]
name = "sma_20_50_cross"
kind = "sma_cross"
params = {{ fast = 20, slow = 50 }}
"""


@pytest.mark.parametrize("size_on", ["fill"])  # "close" and other costs: the pure comparison in reference/
def test_a_dagster_backtest_with_the_reference_conventions_equals_vectorbt(tmp_path, size_on):
    config = tmp_path / "reference.toml"
    config.write_text(REFERENCE_TOML.format(size_on=size_on))
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_CONFIG=str(config))
    result = run_range(build_definitions(settings), START, END)
    assert result.success  # every check of the chain passed, negative cash allowed by buying_power = "off"

    cleaned = read_table(settings, "prices.cleaned_prices")
    equity = read_table(settings, "pnl.equity").sort("session")
    fills = read_table(settings, "trading.executions").filter(pl.col("event") == "filled")
    sessions = session_calendar().between(START, END)
    ref = vectorbt_sma_cross(cleaned, sessions=sessions, size_on=size_on, fees_bps=1, notional=10_000)
    assert ref.n_orders > 300  # two years of 42 symbols: not a vacuous comparison
    assert fills.height == ref.n_orders
    ours_pnl = equity["equity"][-1] - 100_000
    assert ours_pnl == pytest.approx(ref.total_pnl, rel=1e-6)
    assert performance_summary(equity)["sharpe"] == pytest.approx(ref.sharpe, rel=1e-6)
    # the same orders: per symbol and side, the shares bought and sold
    ours_orders = fills.group_by("symbol", "side").agg(pl.col("qty").sum()).sort("symbol", "side")
    ref_orders = ref.orders.group_by("symbol", "side").agg(pl.col("qty").sum()).sort("symbol", "side")
    assert ours_orders.rows() == [(s, side, int(q)) for s, side, q in ref_orders.rows()]
