"""`[costs] slippage_spread_fraction` through the trading assets on the real sample: the orders asset's planner and
the executions asset's book get the same spread proxies from `cleaned_prices`, so a range run equals the same
sessions run one by one (stop-loss exits included), every blocking check passes, and the fills really pay the
spread (a fill is the open x (1 + 5 bps + half the order session's proxy), to the tick against the trader)."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.execution import SlippageModel, spreads_by_session
from trading_dagster.settings import DEFAULT_CONFIG_FILE, Settings
from trading_dagster_tests.integration.conftest import (  # noqa: F401 - the fixtures are used by name
    assert_range_equals_days,
    make_settings,
    read_table,
    warm_copy,
    warm_history,
)

FRACTION = Decimal("0.5")


def _with_spread(data_dir: Path) -> Settings:
    """The shipped configuration with half the spread proxy on top of its slippage_bps, and a 3 % stop-loss."""
    text = Path(DEFAULT_CONFIG_FILE).read_text()
    assert text.count("\n[costs]\n") == 1 and text.count("\n[risk]\n") == 1
    config = data_dir.parent / "spread.toml"
    config.write_text(
        text.replace("\n[costs]\n", f"\n[costs]\nslippage_spread_fraction = {FRACTION}\n").replace(
            "\n[risk]\n", "\n[risk]\nstop_loss_pct = 3\n"
        )
    )
    return make_settings(data_dir, TRADING_DAGSTER_CONFIG=str(config))


@pytest.mark.slow
def test_a_range_run_with_spread_slippage_equals_the_sessions_run_one_by_one(warm_copy, tmp_path_factory):  # noqa: F811
    range_settings, sessions = warm_copy
    range_settings = _with_spread(range_settings.data_dir)
    sessions = sessions[:12]
    daily_dir = tmp_path_factory.mktemp("daily") / "data"
    shutil.copytree(range_settings.data_dir, daily_dir)
    daily_settings = _with_spread(daily_dir)

    assert_range_equals_days(range_settings, daily_settings, sessions)

    # every open fill is the open with 5 bps and half its order session's proxy, to the tick against the trader
    executions = read_table(range_settings, "trading.executions")
    fills = executions.filter((pl.col("event") == "filled") & ~pl.col("client_order_id").str.ends_with("-sl"))
    cleaned = read_table(range_settings, "prices.cleaned_prices")
    spreads = spreads_by_session(cleaned)
    opens = {(s, d): o for s, d, o in cleaned.select("symbol", "session", "open").iter_rows()}
    model, bps_only = SlippageModel(Decimal(5), spread_fraction=FRACTION), SlippageModel(Decimal(5))
    assert fills.height > 0
    moved = 0
    for row in fills.iter_rows(named=True):
        open_ = Decimal(repr(opens[(row["symbol"], row["session"])]))
        spread = spreads[row["order_session"]].get(row["symbol"])
        expected = model.fill_price(row["side"], open_, spread)
        assert Decimal(repr(row["price"])) == expected, row
        moved += expected != bps_only.fill_price(row["side"], open_)
    assert moved > 0
