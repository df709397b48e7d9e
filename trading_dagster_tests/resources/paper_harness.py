"""The built-in PaperBroker behind the contract suite's harness (`broker_factories.BrokerHarness`): a ledger
file under the test's tmp_path, a clock the test sets, quotes the test sets, no slippage or commission (the
suite compares cash to the cent on every broker, and Alpaca charges neither)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.resources.brokers.paper import PaperBroker

ACCOUNT_ID = "paper-contract"
START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)  # a Monday, 10:00 New York: the market is open


class PaperHarness:
    def __init__(self, tmp_path: Path, *, cash: Decimal = Decimal(100_000)) -> None:
        self.path = tmp_path / "paper_account.sqlite"
        self.cash = cash
        self.now = START
        self.prices: dict[str, Decimal] = {}
        self.broker = self.make_broker()

    def make_broker(self) -> PaperBroker:
        """Another broker object on the same account (a new process after a crash, another thread)."""
        return PaperBroker(
            self.path,
            ACCOUNT_ID,
            self.cash,
            quotes=self.prices.get,
            clock=lambda: self.now,
            slippage=SlippageModel(Decimal(0)),
            commission=CommissionModel(Decimal(0)),
        )

    def set_now(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("set_now needs a timezone-aware datetime")
        self.now = when

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = Decimal(price)

    def work_orders(self) -> None:
        self.broker.work_orders()

    def orders_on_server(self, client_order_id: str) -> int:
        with closing(sqlite3.connect(self.path)) as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM orders WHERE client_order_id = ?", (client_order_id,)
            ).fetchone()
        return int(n)

    def close(self) -> None:
        self.broker.close()
