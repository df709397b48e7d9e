"""Stop-loss / take-profit exits in the backtest, end to end on the real sample: exit fills at the levels the
bar rules give, every blocking check passing, and a range run equal to the same sessions run one by one."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.execution import SlippageModel
from trading_dagster.settings import DEFAULT_CONFIG_FILE, Settings
from trading_dagster_tests.integration.conftest import (
    assert_range_equals_days,
    make_settings,
    read_table,
    run_and_check_all,
)

STOP_PCT, TAKE_PCT = Decimal(5), Decimal(10)


def _with_exits(data_dir: Path) -> Settings:
    """The shipped configuration with a 5 % stop-loss and a 10 % take-profit."""
    text = Path(DEFAULT_CONFIG_FILE).read_text()
    assert text.count("\n[risk]\n") == 1
    config = data_dir.parent / "exits.toml"
    config.write_text(
        text.replace("\n[risk]\n", f"\n[risk]\nstop_loss_pct = {STOP_PCT}\ntake_profit_pct = {TAKE_PCT}\n")
    )
    return make_settings(data_dir, TRADING_DAGSTER_CONFIG=str(config))


def _is_exit(col: str = "client_order_id") -> pl.Expr:
    return pl.col(col).str.ends_with("-sl") | pl.col(col).str.ends_with("-tp")


def _level(ref: float, pct: Decimal, sign: int) -> Decimal:
    return (Decimal(repr(ref)) * (1 + sign * pct / 100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture
def exits_copy(warm_copy) -> tuple[Settings, list[dt.date]]:
    settings, sessions = warm_copy
    return _with_exits(settings.data_dir), sessions


@pytest.mark.slow
def test_exit_fills_are_at_the_bar_rules_levels_and_every_check_passes(exits_copy):
    settings, sessions = exits_copy
    run_and_check_all(settings, sessions[0], sessions[-1])
    executions = read_table(settings, "trading.executions")
    orders = read_table(settings, "trading.orders").filter(pl.col("status") == "approved")
    bars = read_table(settings, "prices.cleaned_prices").select("symbol", "session", "open", "high", "low")
    exits = executions.filter((pl.col("event") == "filled") & _is_exit())
    legs = {cid[-2:] for cid in exits["client_order_id"]}
    assert exits.height >= 3 and legs == {"sl", "tp"}, exits
    assert (exits["side"] == "sell").all()

    slippage = SlippageModel(Decimal(5))  # [costs] slippage_bps of the shipped configuration
    entries = executions.filter((pl.col("event") == "filled") & ~_is_exit())
    for row in exits.iter_rows(named=True):  # every exit, by hand against the bars
        entry_id = row["client_order_id"][:-3]
        (order,) = orders.filter(pl.col("client_order_id") == entry_id).iter_rows(named=True)
        (entry,) = entries.filter(pl.col("client_order_id") == entry_id).iter_rows(named=True)
        assert (order["side"], order["symbol"], row["order_session"]) == ("buy", row["symbol"], order["session"])
        assert row["qty"] <= entry["qty"]
        stop, take = _level(order["ref_price"], STOP_PCT, -1), _level(order["ref_price"], TAKE_PCT, 1)
        walk = bars.filter(
            (pl.col("symbol") == row["symbol"]) & pl.col("session").is_between(entry["session"], row["session"])
        ).sort("session")
        *before, today = walk.iter_rows(named=True)
        assert today["session"] == row["session"]
        for bar in before:  # no earlier bar since the entry's fill reached a level
            assert stop < Decimal(repr(bar["low"])) and Decimal(repr(bar["high"])) < take, (row, bar)
        open_, high, low = (Decimal(repr(today[c])) for c in ("open", "high", "low"))
        if row["client_order_id"].endswith("-sl"):
            expected = slippage.fill_price("sell", open_ if open_ <= stop else stop)
            assert low <= stop
        else:
            assert open_ > stop and low > stop and high >= take
            expected = open_.quantize(Decimal("0.01"), rounding="ROUND_FLOOR") if open_ >= take else take
        assert Decimal(repr(row["price"])) == expected, (row, today, stop, take)

    # the equity identity, and the book's cash follows every fill (exits included)
    equity = read_table(settings, "pnl.equity").sort("session")
    assert ((equity["cash"] + equity["market_value"] - equity["equity"]).abs() <= 0.01).all()
    assert (equity["cash"] >= 0).all() and equity["session"].to_list() == sessions


@pytest.mark.slow
def test_a_range_run_with_exits_equals_the_sessions_run_one_by_one(exits_copy, tmp_path_factory):
    range_settings, sessions = exits_copy
    sessions = sessions[:15]
    daily_dir = tmp_path_factory.mktemp("daily") / "data"
    shutil.copytree(range_settings.data_dir, daily_dir)
    daily_settings = _with_exits(daily_dir)

    assert_range_equals_days(range_settings, daily_settings, sessions)

    executions = read_table(range_settings, "trading.executions")
    assert executions.filter((pl.col("event") == "filled") & _is_exit()).height > 0  # exits inside the window
