"""`[backtest] shares` through the settings, the resource and the book's ledger (decision 0006)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pytest

from trading_dagster.domain.orders import Order, client_order_id
from trading_dagster.domain.quantity import FRACTIONAL, QTY_UNIT, WHOLE
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.resources.backtest_book import SimulatedBook
from trading_dagster.resources.configured import BacktestBookResource
from trading_dagster.settings import SettingsError, backtest_settings

D, D1 = dt.date(2017, 3, 1), dt.date(2017, 3, 2)


def test_the_setting_defaults_to_whole_shares_and_is_validated():
    assert backtest_settings({}).shares == "whole"
    assert backtest_settings({"shares": "fractional"}).shares == "fractional"
    with pytest.raises(SettingsError, match=r"\[backtest\] shares"):
        backtest_settings({"shares": "halves"})


def test_the_resource_gives_the_book_and_the_planner_its_share_rule(tmp_path):
    resource = BacktestBookResource(ledger_path=str(tmp_path / "book.duckdb"), shares="fractional")
    assert resource.planner_risk(RiskConfig()).share_rule is FRACTIONAL
    with resource.get() as book:
        assert book.shares is FRACTIONAL and book.account(D).shares is FRACTIONAL
    default = BacktestBookResource(ledger_path=str(tmp_path / "whole.duckdb"))
    assert default.planner_risk(RiskConfig()).share_rule is WHOLE
    with default.get() as book:
        assert book.shares is WHOLE


def _buy(symbol: str, qty) -> Order:
    cid = client_order_id("paper", D, symbol, "s", "buy")
    return Order(cid, D, symbol, "s", "buy", qty, qty, Decimal(10), "approved")


def test_a_fractional_ledger_stores_its_quantities_exactly_in_large_batches_too(tmp_path):
    path = str(tmp_path / "book.duckdb")
    # more rows than one VALUES statement takes: the Arrow path
    orders = [_buy(f"S{i:03d}", (Decimal(i + 1) / 7).quantize(QTY_UNIT)) for i in range(250)]
    with SimulatedBook(path, Decimal(1_000_000), shares="fractional") as book:
        book.submit(orders, D)
        fills = book.sync(D1, {o.symbol: Decimal(10) for o in orders})
        account = book.account(D1)
    assert len(fills) == 250 and all(isinstance(f.qty, Decimal) for f in fills)
    con = duckdb.connect(path, read_only=True)
    query = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'fills'"
    types = dict(con.execute(query).fetchall())
    con.close()
    assert types["qty"] == "DOUBLE"
    with SimulatedBook(path, Decimal(1_000_000), shares="fractional") as again:
        assert again.account(D1) == account
        stored = {o.client_order_id: o.qty for o in again._select_orders("TRUE")}
        assert stored == {o.client_order_id: o.qty for o in orders}
