"""`BrokerAccount.last_equity` (the equity at the previous session's close) from both brokers: Alpaca's own
field through the fake trading server, and the built-in paper broker's replay of its executions up to the
previous close on its clock, marked at its quotes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from trading_dagster.domain.broker_records import OrderRequest
from trading_dagster.resources.brokers.paper import market_hours
from trading_dagster_tests.resources.alpaca_harness import AlpacaHarness
from trading_dagster_tests.resources.paper_harness import START, PaperHarness


def buy(symbol: str, qty: int, session: dt.date) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"t-{symbol}-{session}",
        session=session,
        strategy="s",
        symbol=symbol,
        side="buy",
        qty=Decimal(qty),
    )


@pytest.fixture
def paper(tmp_path):
    h = PaperHarness(tmp_path)
    yield h
    h.close()


def test_paper_last_equity_replays_the_fills_up_to_the_previous_close(paper):
    paper.set_price("AAPL", Decimal(100))
    assert paper.broker.account().last_equity == Decimal(100_000)  # nothing happened before the open
    paper.broker.submit([buy("AAPL", 10, START.date())], since=START - dt.timedelta(days=1))
    paper.work_orders()  # filled at 100 during Monday's session
    paper.set_price("AAPL", Decimal(90))
    today = paper.broker.account()
    assert (today.equity, today.last_equity) == (Decimal("99900.00"), Decimal("100000.00"))  # down $100
    # Tuesday: Monday's fill is before the previous close; what was held then is marked at the quote now
    paper.set_now(dt.datetime(2025, 6, 3, 14, 0, tzinfo=dt.UTC))
    tuesday = paper.broker.account()
    assert tuesday.last_equity == tuesday.equity == Decimal("99900.00")


def test_the_previous_close_is_the_last_close_at_or_before_now():
    hours = market_hours()
    friday_close = dt.datetime(2025, 5, 30, 20, 0, tzinfo=dt.UTC)
    assert hours.previous_close(dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)) == friday_close
    assert hours.previous_close(friday_close) == friday_close
    # the early close of 2025-07-03 (13:00 New York)
    assert hours.previous_close(dt.datetime(2025, 7, 7, 14, 0, tzinfo=dt.UTC)) == dt.datetime(
        2025, 7, 3, 17, 0, tzinfo=dt.UTC
    )
    assert hours.previous_close(dt.datetime(1990, 1, 1, tzinfo=dt.UTC)) is None


def test_alpaca_last_equity_is_alpacas_field(tmp_path):
    h = AlpacaHarness(tmp_path, cash=Decimal("50000"))
    try:
        h.set_now(START)
        assert h.broker.account().last_equity == Decimal("50000")  # the fake: nothing moved since the close
        h.trading.set_last_equity(Decimal("51234.56"))
        account = h.broker.account()
        assert (account.equity, account.last_equity) == (Decimal("50000"), Decimal("51234.56"))
    finally:
        h.close()
