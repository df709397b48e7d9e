"""Order and fill records, deterministic ids, and the orders / executions frames of docs/design.md."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_dagster.domain.orders import (
    EXECUTION_SCHEMA,
    ORDER_SCHEMA,
    Fill,
    Order,
    OrderEvent,
    as_decimal,
    client_order_id,
    events_from_frame,
    events_to_frame,
    fills_from_frame,
    fills_to_frame,
    orders_from_frame,
    orders_to_frame,
)

D = dt.date(2017, 11, 10)
D1 = dt.date(2017, 11, 13)


def _order(**kw) -> Order:
    base = dict(
        client_order_id=client_order_id("paper", D, "AAPL", "sma_cross", "buy"),
        session=D,
        symbol="AAPL",
        strategy="sma_cross",
        side="buy",
        requested_qty=6,
        qty=4,
        ref_price=Decimal("174.67"),
        status="approved",
        reason_code="QTY_OVER_MONTHLY_LIMIT",
    )
    return Order(**(base | kw))


def _fill(**kw) -> Fill:
    base = dict(
        client_order_id=_order().client_order_id,
        order_session=D,
        session=D1,
        symbol="AAPL",
        side="buy",
        qty=4,
        price=Decimal("173.59"),
        commission=Decimal("0.02"),
    )
    return Fill(**(base | kw))


def test_client_order_id_is_readable_short_and_stable():
    cid = client_order_id("paper", D, "AAPL", "sma_cross", "buy")
    assert re.fullmatch(r"td-20171110-AAPL-[0-9a-f]{16}", cid)
    assert len(cid) <= 48
    assert cid == client_order_id("paper", D, "AAPL", "sma_cross", "buy")


@pytest.mark.parametrize(
    "change",
    [
        {"account": "live"},
        {"session": D1},
        {"symbol": "MSFT"},
        {"strategy": "rsi_dip"},
        {"side": "sell"},
    ],
)
def test_client_order_id_changes_with_every_input(change):
    args = {"account": "paper", "session": D, "symbol": "AAPL", "strategy": "sma_cross", "side": "buy"}
    assert client_order_id(**(args | change)) != client_order_id(**args)


def test_client_order_id_rejects_unknown_side():
    with pytest.raises(ValueError):
        client_order_id("paper", D, "AAPL", "s", "short")


_names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=60)
_keys = st.tuples(
    st.dates(dt.date(2000, 1, 1), dt.date(2040, 12, 31)), _names, _names, st.sampled_from(["buy", "sell"])
)


@given(st.sets(_keys, min_size=1, max_size=40), _names)
def test_ids_unique_per_session_symbol_strategy_side_and_within_alpaca_limit(keys, account):
    ids = [client_order_id(account, *k) for k in keys]
    assert len(set(ids)) == len(keys)
    assert all(len(i) <= 48 for i in ids)


def test_order_validation():
    with pytest.raises(ValueError):
        _order(qty=0)  # approved needs a positive qty
    with pytest.raises(ValueError):
        _order(status="denied", qty=0, reason_code=None)  # a denial says why
    with pytest.raises(ValueError):
        _order(status="denied", qty=3, reason_code="MAX_POSITION")
    with pytest.raises(ValueError):
        _order(side="short")
    denied = _order(status="denied", qty=0, reason_code="NO_PRICE", ref_price=None)
    assert not denied.approved


def test_as_decimal_is_exact_for_printed_floats():
    assert as_decimal(172.3) == Decimal("172.3")
    assert as_decimal(0.1) + as_decimal(0.2) == Decimal("0.3")
    assert as_decimal("1.10") == Decimal("1.10")
    assert as_decimal(7) == Decimal(7)
    with pytest.raises(ValueError):
        as_decimal(float("nan"))
    with pytest.raises(TypeError):
        as_decimal(True)


def test_orders_frame_has_the_design_columns_and_round_trips():
    orders = [
        _order(),
        _order(
            client_order_id=client_order_id("paper", D, "XYZ", "sma_cross", "buy"),
            symbol="XYZ",
            requested_qty=0,
            qty=0,
            ref_price=None,
            status="denied",
            reason_code="NO_PRICE",
        ),
        _order(ref_price=Decimal("0.1234"), reason_code=None, qty=6),
        _order(client_order_id="td-n", side="buy", notional=Decimal("1000.5"), qty=6),
    ]
    frame = orders_to_frame(orders)
    assert frame.schema == pl.Schema(ORDER_SCHEMA)
    assert frame.columns == [
        "session",
        "symbol",
        "strategy",
        "side",
        "requested_qty",
        "qty",
        "ref_price",
        "status",
        "reason_code",
        "client_order_id",
        "notional",
    ]
    assert frame["notional"].to_list() == [None, None, None, 1000.5]
    assert orders_from_frame(frame) == orders
    assert orders_from_frame(frame.drop("notional")) == [replace(o, notional=None) for o in orders]  # a stored frame from before
    assert orders_to_frame([]).schema == pl.Schema(ORDER_SCHEMA)


def test_executions_frame_has_the_design_columns_sorted_open_before_close():
    order = _order()
    accepted_next = OrderEvent.accepted(_order(session=D1, client_order_id="td-b"))
    events = [accepted_next, _fill(), OrderEvent.expired(order, D1, 2), OrderEvent.accepted(order)]
    frame = events_to_frame(events)
    assert frame.schema == pl.Schema(EXECUTION_SCHEMA)
    assert frame.columns == [
        "session",
        "client_order_id",
        "symbol",
        "side",
        "event",
        "order_session",
        "qty",
        "price",
        "commission",
    ]
    assert frame["event"].to_list() == ["accepted", "expired", "filled", "accepted"]
    assert frame["session"].to_list() == [D, D1, D1, D1]
    assert frame.filter(pl.col("event") != "filled")["price"].null_count() == 3
    assert frame.filter(pl.col("event") != "filled")["commission"].to_list() == [0.0, 0.0, 0.0]
    assert fills_from_frame(frame) == [_fill()]
    assert len(events_from_frame(frame)) == 4


def test_fills_round_trip_exactly_through_float_frames():
    fills = [_fill(), _fill(side="sell", price=Decimal("0.5031"), commission=Decimal("1.00"), qty=200)]
    assert fills_from_frame(fills_to_frame(fills)) == fills


def test_fill_validation():
    with pytest.raises(ValueError):
        _fill(qty=0)
    with pytest.raises(ValueError):
        _fill(price=Decimal(0))
