"""The `BrokerHarness` (broker_factories.py) for `AlpacaBroker`: an Alpaca-compatible server on 127.0.0.1
(`fakes/alpaca_server.py` + the trading API of `fakes/alpaca_trading.py`) with an account holding `cash`, and
an AlpacaBroker pointed at it (the SDK's retry wait 0, no client-side rate limit: the contract suite makes
hundreds of requests a second)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from trading_dagster.resources.brokers.alpaca import AlpacaBroker
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer
from trading_dagster_tests.fakes.alpaca_trading import AlpacaTradingFake


class AlpacaHarness:
    def __init__(
        self,
        tmp_path: Path,
        *,
        cash: Decimal = Decimal(100_000),
        timeout_seconds: float = 5.0,
        max_requests_per_minute: int | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.server = AlpacaFakeServer().start()
        self.trading = AlpacaTradingFake(self.server, cash=cash)
        self.broker: AlpacaBroker = self.make_broker(
            timeout_seconds=timeout_seconds, max_requests_per_minute=max_requests_per_minute
        )

    def make_broker(
        self, *, timeout_seconds: float = 5.0, max_requests_per_minute: int | None = None
    ) -> AlpacaBroker:
        """Another AlpacaBroker on the same account (a second run, another thread)."""
        return AlpacaBroker(
            TEST_KEY_ID,
            TEST_SECRET_KEY,
            url=self.server.url,
            paper=True,
            timeout_seconds=timeout_seconds,
            retry_wait_seconds=0,
            max_requests_per_minute=max_requests_per_minute,
        )

    def set_now(self, when: dt.datetime) -> None:
        self.trading.set_now(when)

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.trading.set_price(symbol, price)

    def work_orders(self) -> None:
        self.trading.work_orders()

    def orders_on_server(self, client_order_id: str) -> int:
        return self.trading.orders_on_server(client_order_id)

    def close(self) -> None:
        """Stop the server; a handler that raised (a bug in the fake) fails the test here."""
        self.broker.close()
        self.server.stop()
        assert not self.server.errors, f"the fake Alpaca server raised: {self.server.errors!r}"
