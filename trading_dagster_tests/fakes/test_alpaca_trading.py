"""The fake trading API answers in shapes alpaca-py 0.44.0's real TradingClient parses (alpaca-notes 2 and
5.1), refuses what Alpaca refuses with Alpaca's statuses and codes, and its matching engine and fault hooks do
what the broker tests rely on."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal

import pydantic
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.models import FailedClosePositionDetails, Order, TradeActivity
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetCalendarRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer
from trading_dagster_tests.fakes.alpaca_trading import AlpacaTradingFake, market_clock

OPEN = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.UTC)
UTC = dt.UTC


@pytest.fixture
def fake() -> Iterator[tuple[AlpacaTradingFake, TradingClient]]:
    with AlpacaFakeServer() as server:
        trading = AlpacaTradingFake(server, cash=Decimal(100_000))
        trading.set_now(OPEN)
        trading.set_price("AAPL", Decimal("190.00"))
        trading.set_price("MSFT", Decimal("400.00"))
        client = TradingClient(TEST_KEY_ID, TEST_SECRET_KEY, url_override=server.url)
        client._retry_wait = 0  # type: ignore[assignment]
        yield trading, client
        assert not server.errors, server.errors


def market(cid: str, qty: float = 10, symbol: str = "AAPL", side: str = "buy") -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force="day", client_order_id=cid)


def api_error(fn: object) -> tuple[int, dict]:
    with pytest.raises(APIError) as info:
        fn()  # type: ignore[operator]
    return info.value.status_code, json.loads(str(info.value))


def test_clock_and_calendar_follow_xnys_with_early_closes(
    fake: tuple[AlpacaTradingFake, TradingClient],
) -> None:
    trading, client = fake
    trading.set_now(dt.datetime(2024, 11, 29, 17, 0, tzinfo=UTC))  # Black Friday, closes 13:00 New York
    clock = client.get_clock()
    assert clock.is_open and clock.next_close == dt.datetime(2024, 11, 29, 18, 0, tzinfo=UTC)
    assert clock.next_open == dt.datetime(2024, 12, 2, 14, 30, tzinfo=UTC)
    trading.set_now(dt.datetime(2024, 11, 29, 18, 30, tzinfo=UTC))
    assert not client.get_clock().is_open
    days = client.get_calendar(GetCalendarRequest(start=dt.date(2024, 11, 27), end=dt.date(2024, 12, 2)))
    assert [(d.date, d.open.strftime("%H:%M"), d.close.strftime("%H:%M")) for d in days] == [
        (dt.date(2024, 11, 27), "09:30", "16:00"),
        (dt.date(2024, 11, 29), "09:30", "13:00"),  # Thanksgiving (28th) absent
        (dt.date(2024, 12, 2), "09:30", "16:00"),
    ]
    assert market_clock(dt.datetime(2024, 5, 4, 15, 0, tzinfo=UTC))[0] is False
    trading.set_now(OPEN)
    trading.halt()
    assert not client.get_clock().is_open


def test_account_and_positions_parse(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    account = client.get_account()
    assert account.account_number == "PA3FAKE00TEST" and account.cash == "100000"
    assert account.pattern_day_trader is None
    client.submit_order(market("a"))
    trading.work_orders()
    [position] = client.get_all_positions()
    assert (position.symbol, position.qty, position.avg_entry_price, position.side.value) == (
        "AAPL",
        "10",
        "190",
        "long",
    )
    assert client.get_open_position("AAPL").qty == "10"
    assert api_error(lambda: client.get_open_position("MSFT")) == (
        404,
        {"code": 40410000, "message": "position does not exist"},
    )
    assert client.get_account().cash == "98100"


def test_every_order_kind_parses_and_none_fills_in_the_post(
    fake: tuple[AlpacaTradingFake, TradingClient],
) -> None:
    trading, client = fake
    trading.set_position("MSFT", Decimal(10), Decimal(380))
    orders = [
        client.submit_order(market("m")),
        client.submit_order(
            MarketOrderRequest(
                symbol="AAPL", notional=500.5, side="buy", time_in_force="day", client_order_id="n"
            )
        ),
        client.submit_order(
            LimitOrderRequest(
                symbol="AAPL", qty=1, side="buy", time_in_force="gtc", limit_price=180.5, client_order_id="l"
            )
        ),
        client.submit_order(
            StopOrderRequest(
                symbol="AAPL", qty=1, side="buy", time_in_force="day", stop_price=200, client_order_id="s"
            )
        ),
        client.submit_order(
            StopLimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side="buy",
                time_in_force="day",
                stop_price=200,
                limit_price=201,
                client_order_id="sl",
            )
        ),
        client.submit_order(
            TrailingStopOrderRequest(
                symbol="MSFT", qty=2, side="sell", time_in_force="day", trail_percent=2.5, client_order_id="t"
            )
        ),
        client.submit_order(
            LimitOrderRequest(
                symbol="AAPL",
                qty=2,
                side="buy",
                time_in_force="day",
                limit_price=190,
                order_class="bracket",
                take_profit=TakeProfitRequest(limit_price=200),
                stop_loss=StopLossRequest(stop_price=180, limit_price=179.5),
                client_order_id="b",
            )
        ),
        client.submit_order(
            MarketOrderRequest(
                symbol="AAPL",
                qty=2,
                side="buy",
                time_in_force="day",
                order_class="oto",
                stop_loss=StopLossRequest(stop_price=170),
                client_order_id="o",
            )
        ),
        client.submit_order(
            LimitOrderRequest(
                symbol="MSFT",
                qty=3,
                side="sell",
                time_in_force="gtc",
                order_class="oco",
                take_profit=TakeProfitRequest(limit_price=420),
                stop_loss=StopLossRequest(stop_price=380),
                client_order_id="c",
            )
        ),
    ]
    assert all(isinstance(o, Order) for o in orders)
    assert {o.status.value for o in orders} == {"new"} and {o.filled_qty for o in orders} == {"0"}
    assert {o.filled_avg_price for o in orders} == {None}
    assert orders[1].notional == "500.5" and orders[1].qty is None
    bracket = orders[6]
    assert [(leg.type.value, leg.status.value, leg.side.value) for leg in bracket.legs] == [
        ("limit", "held", "sell"),
        ("stop_limit", "held", "sell"),
    ]
    assert [leg.status.value for leg in orders[8].legs] == ["new"]  # both oco exits are live
    trading.set_now(dt.datetime(2024, 5, 4, 15, 0, tzinfo=UTC))
    assert client.submit_order(market("closed")).status.value == "accepted"


@pytest.mark.parametrize(
    ("request_", "status", "code", "message"),
    [
        (
            LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=190.123),
            422,
            42210000,
            "invalid limit_price 190.123. sub-penny increment does not fulfill minimum pricing criteria",
        ),
        (
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side="buy",
                time_in_force="day",
                limit_price=190,
                order_class="bracket",
                take_profit=TakeProfitRequest(limit_price=200.005),
                stop_loss=StopLossRequest(stop_price=180),
            ),
            422,
            42210000,
            None,
        ),
        (
            LimitOrderRequest(symbol="PENNY", qty=1, side="buy", time_in_force="day", limit_price=0.12345),
            422,
            42210000,
            None,
        ),
        (market("z", symbol="ZZZZ"), 422, 40010001, 'asset "ZZZZ" not found'),
        (market("big", qty=1000), 403, 40310000, "insufficient buying power"),
        (
            market("short", side="sell"),
            403,
            40310000,
            "insufficient qty available for order (requested: 10, available: 0)",
        ),
        (
            LimitOrderRequest(symbol="AAPL", qty=0.5, side="buy", time_in_force="gtc", limit_price=190),
            422,
            42210000,
            None,
        ),
        (
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side="buy",
                time_in_force="day",
                limit_price=190,
                order_class="bracket",
                take_profit=TakeProfitRequest(limit_price=185),
                stop_loss=StopLossRequest(stop_price=186),
            ),
            422,
            42210000,
            None,
        ),
        (
            LimitOrderRequest(
                symbol="AAPL",
                qty=1,
                side="buy",
                time_in_force="opg",
                limit_price=190,
                order_class="bracket",
                take_profit=TakeProfitRequest(limit_price=200),
                stop_loss=StopLossRequest(stop_price=180),
            ),
            422,
            42210000,
            None,
        ),
        (
            MarketOrderRequest(
                symbol="AAPL",
                qty=1,
                side="buy",
                time_in_force="day",
                order_class="bracket",
                take_profit=TakeProfitRequest(limit_price=200),
                stop_loss=StopLossRequest(stop_price=189.995),
            ),
            422,
            42210000,
            None,
        ),
    ],
    ids=[
        "subpenny",
        "subpenny-leg",
        "subpenny-below-1",
        "unknown-symbol",
        "buying-power",
        "qty-available",
        "fractional-gtc",
        "bracket-inverted",
        "bracket-opg",
        "stop-above-base",
    ],
)
def test_refusals(
    fake: tuple[AlpacaTradingFake, TradingClient],
    request_: object,
    status: int,
    code: int,
    message: str | None,
) -> None:
    trading, client = fake
    trading.set_price("PENNY", Decimal("0.5"))
    got_status, body = api_error(lambda: client.submit_order(request_))  # type: ignore[arg-type]
    assert (got_status, body["code"]) == (status, code)
    if message is not None:
        assert body["message"] == message
    if code == 40310000 and "buying" in body["message"]:
        assert body["buying_power"] == "100000" and body["cost_basis"] == "190000"
    if "qty available" in body["message"]:
        assert body["available"] == "0" and body["existing_qty"] == "0" and body["held_for_orders"] == "0"
    assert trading.order_count == 0


def test_duplicate_client_order_id(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    client.submit_order(market("dup"))
    assert api_error(lambda: client.submit_order(market("dup"))) == (
        422,
        {"code": 40010001, "message": "client_order_id must be unique"},
    )
    assert trading.orders_on_server("dup") == 1 and trading.submits_for("dup") == 2


def test_listing_filters_and_limits(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    made = [client.submit_order(market(f"x{i}", qty=1, symbol="AAPL" if i % 2 else "MSFT")) for i in range(6)]
    client.cancel_order_by_id(made[0].id)
    everything = client.get_orders(GetOrdersRequest(status="all", direction="asc", limit=500))
    assert [o.client_order_id for o in everything] == [f"x{i}" for i in range(6)]
    assert [o.client_order_id for o in client.get_orders()] == [
        f"x{i}" for i in range(5, 0, -1)
    ]  # open, desc
    assert [o.client_order_id for o in client.get_orders(GetOrdersRequest(status="closed"))] == ["x0"]
    after = client.get_orders(
        GetOrdersRequest(
            status="all", direction="asc", after=made[2].submitted_at, until=made[5].submitted_at
        )
    )
    assert [o.client_order_id for o in after] == ["x3", "x4"]  # both ends exclusive
    only = client.get_orders(GetOrdersRequest(status="all", symbols=["MSFT"], limit=2, direction="asc"))
    assert [o.client_order_id for o in only] == ["x0", "x2"]
    with pytest.raises(APIError) as info:
        client.get_orders(GetOrdersRequest(status="all", limit=501))
    assert info.value.status_code == 422
    assert client.get_order_by_id(made[1].id).client_order_id == "x1"
    assert client.get_order_by_client_id("x1").id == made[1].id
    assert api_error(lambda: client.get_order_by_client_id("nope"))[0] == 404


def test_nested_listing_and_legs(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    _, client = fake
    b = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=1,
            side="buy",
            time_in_force="day",
            order_class="bracket",
            take_profit=TakeProfitRequest(limit_price=200),
            stop_loss=StopLossRequest(stop_price=180),
            client_order_id="b",
        )
    )
    flat = client.get_orders(GetOrdersRequest(status="all"))
    nested = client.get_orders(GetOrdersRequest(status="all", nested=True))
    assert len(flat) == 3 and all(o.legs is None for o in flat)
    assert len(nested) == 1 and len(nested[0].legs) == 2
    assert client.get_order_by_id(b.id).legs is None
    assert len(client.get_order_by_id(b.id, GetOrderByIdRequest(nested=True)).legs) == 2


def test_cancels(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    a = client.submit_order(market("a", qty=1))
    client.submit_order(market("b", qty=1))
    client.submit_order(market("c", qty=1))
    assert client.cancel_order_by_id(a.id) is None  # 204
    assert api_error(lambda: client.cancel_order_by_id(a.id)) == (
        422,
        {"code": 42210000, "message": 'order is already in "canceled" state'},
    )
    assert api_error(lambda: client.cancel_order_by_id("00000000-0000-4000-8000-000000000000"))[0] == 404
    trading.work_orders()
    client.submit_order(market("d", qty=1))
    responses = client.cancel_orders()  # 207
    assert [(r.status, str(r.id)) for r in responses] == [(200, str(client.get_order_by_client_id("d").id))]
    statuses = [r.status for r in trading.server.requests if r.method == "DELETE"]
    assert statuses == [204, 422, 404, 207]


def test_close_all_positions_207_with_a_failed_item(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    trading.set_position("AAPL", Decimal(5), Decimal(180))
    trading.set_position("MSFT", Decimal(3), Decimal(390))
    client.submit_order(
        LimitOrderRequest(
            symbol="AAPL", qty=5, side="sell", time_in_force="gtc", limit_price=250, client_order_id="rest"
        )
    )
    without_cancel = {r.symbol: r for r in client.close_all_positions()}
    assert without_cancel["AAPL"].status == 403
    assert isinstance(without_cancel["AAPL"].body, FailedClosePositionDetails)
    assert without_cancel["AAPL"].body.held_for_orders == 5.0
    assert without_cancel["MSFT"].status == 200 and isinstance(without_cancel["MSFT"].body, Order)
    trading.fail_close("MSFT")
    items = {r.symbol: r for r in client.close_all_positions(cancel_orders=True)}
    assert items["AAPL"].status == 200 and items["AAPL"].body.qty == "5"
    assert items["MSFT"].status == 403 and items["MSFT"].body.code == 40310000
    assert client.get_order_by_client_id("rest").status.value == "canceled"
    with pytest.raises(APIError):  # the market sells now hold every share
        client.close_position("AAPL")
    trading.set_position("NVDA", Decimal(10), Decimal(100))
    assert client.close_position("NVDA", ClosePositionRequest(percentage="50")).qty == "5"


def test_activities_page_and_lack_account_id(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    trading.partial_fills("p", ["0.5"])
    client.submit_order(market("p", qty=10))
    trading.work_orders()
    trading.work_orders()
    rows = client.get("/account/activities/FILL", {"direction": "asc"})
    assert [(r["type"], r["qty"], r["cum_qty"], r["leaves_qty"]) for r in rows] == [
        ("partial_fill", "5", "5", "5"),
        ("fill", "5", "10", "0"),
    ]
    assert "account_id" not in rows[0]
    with pytest.raises(pydantic.ValidationError):  # the SDK's trap (alpaca-notes 2.14)
        TradeActivity(**rows[0])
    page = client.get("/account/activities", {"activity_types": "FILL", "direction": "asc", "page_size": 1})
    rest = client.get(
        "/account/activities",
        {"activity_types": "FILL", "direction": "asc", "page_size": 1, "page_token": page[0]["id"]},
    )
    assert [r["id"] for r in page + rest] == [r["id"] for r in rows]
    assert client.get("/account/activities/DIV") == []


def test_matching_engine_limits_stops_delays_and_brackets(
    fake: tuple[AlpacaTradingFake, TradingClient],
) -> None:
    trading, client = fake
    client.submit_order(
        LimitOrderRequest(
            symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=185, client_order_id="lim"
        )
    )
    client.submit_order(market("late", qty=1))
    trading.delay_fill("late", 2)
    trading.work_orders()
    assert trading.order("lim").status == "new" and trading.order("late").status == "new"
    trading.set_price("AAPL", Decimal("184.50"))
    trading.work_orders()
    assert trading.order("lim").status == "filled" and trading.order("lim").filled_avg_price == Decimal(
        "184.5"
    )
    trading.work_orders()
    assert trading.order("late").status == "filled"
    client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=2,
            side="buy",
            time_in_force="day",
            order_class="bracket",
            take_profit=TakeProfitRequest(limit_price=200),
            stop_loss=StopLossRequest(stop_price=180),
            client_order_id="br",
        )
    )
    trading.work_orders()
    trading.set_price("AAPL", Decimal("179.00"))
    trading.work_orders()
    legs = {leg.type.value: leg.status.value for leg in client.get_order_by_client_id("br").legs}
    assert legs == {"limit": "canceled", "stop": "filled"}
    assert trading.position_qty("AAPL") == Decimal(2)


def test_fault_hooks(fake: tuple[AlpacaTradingFake, TradingClient]) -> None:
    trading, client = fake
    trading.fail_submit(504, created=True, count=4)
    with pytest.raises(APIError) as info:
        client.submit_order(market("g"))
    assert info.value.status_code == 504 and trading.orders_on_server("g") == 1  # retries met the duplicate?
    trading.drop_submit(created=False)
    with pytest.raises(requests.ConnectionError):
        client.submit_order(market("d"))
    assert trading.orders_on_server("d") == 0
    trading.set_rate_limit(3)
    client.get_clock()
    client.get_clock()
    client._retry = 0  # type: ignore[assignment]
    with pytest.raises(APIError) as info:
        client.get_clock()
        client.get_clock()
    assert info.value.status_code == 429
    assert info.value.response.headers["X-Ratelimit-Limit"] == "3"
    assert trading.rate_limited == 1
