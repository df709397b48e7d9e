"""The brokers the contract suite (`test_broker_contract.py`) runs against, each behind a harness that
lets a test move the broker's clock, set the price marketable orders fill at, and count orders on the
broker's side (decision 0005). A new broker is one harness here plus its implementation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from trading_dagster.resources.brokers.base import Broker


class BrokerHarness(Protocol):
    broker: Broker

    def set_now(self, when: dt.datetime) -> None:
        """The broker's clock (timezone-aware); is_open/next_open/next_close follow the NYSE calendar."""

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The price marketable orders on `symbol` fill at from now on (also the position's mark)."""

    def work_orders(self) -> None:
        """Let the market work the open orders now: fill what is marketable if the market is open."""

    def orders_on_server(self, client_order_id: str) -> int:
        """How many orders the broker holds under this client order id (exactly once: never more than 1)."""

    def make_broker(self) -> Broker:
        """A fresh broker object on the same account (a crashed run's successor, a second run at once)."""

    def close(self) -> None: ...


def make_paper_harness(tmp_path: Path, *, cash: Decimal = Decimal(100_000)) -> BrokerHarness:
    from trading_dagster_tests.resources.paper_harness import PaperHarness  # helper B

    return PaperHarness(tmp_path, cash=cash)


def make_alpaca_harness(tmp_path: Path, *, cash: Decimal = Decimal(100_000)) -> BrokerHarness:
    from trading_dagster_tests.resources.alpaca_harness import AlpacaHarness  # helper A

    return AlpacaHarness(tmp_path, cash=cash)


BROKER_FACTORIES: dict[str, Callable[..., BrokerHarness]] = {
    "paper": make_paper_harness,
    "alpaca": make_alpaca_harness,
}
