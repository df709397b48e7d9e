"""The trading book in the planner's terms (domain/live_book.py): the start state from a broker snapshot, the
kill switch on buys, order rows as broker requests, reconciliation; and the exactly-once check."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from trading_dagster.assets.execution import exactly_once
from trading_dagster.domain.broker_records import (
    BrokerAccount,
    BrokerClock,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerSnapshot,
)
from trading_dagster.domain.live_book import (
    book_from_snapshot,
    expected_positions,
    hold_buys,
    order_requests,
    reconcile,
    session_start,
)
from trading_dagster.domain.orders import ORDER_SCHEMA

T = dt.datetime(2017, 6, 1, 22, 30, tzinfo=dt.UTC)
D = dt.date(2017, 6, 1)


def _order(cid: str, symbol: str, side: str, qty: str, filled: str = "0", limit: str | None = None) -> BrokerOrder:
    return BrokerOrder(
        id=f"id-{cid}", client_order_id=cid, symbol=symbol, side=side, type="limit" if limit else "market",
        time_in_force="day", status="new", qty=Decimal(qty), notional=None, filled_qty=Decimal(filled),
        filled_avg_price=None, submitted_at=T, updated_at=T, limit_price=Decimal(limit) if limit else None,
    )


def _fill(symbol: str, side: str, qty: str, price: str, when: dt.datetime = T) -> BrokerFill:
    return BrokerFill(f"x-{symbol}-{side}-{qty}-{when:%d}", "oid", None, symbol, side, Decimal(qty), Decimal(price), when)


def _snapshot(cash: str, positions: dict[str, str], open_orders=()) -> BrokerSnapshot:
    clock = BrokerClock(T, False, T, T)
    account = BrokerAccount("acct", "ACTIVE", Decimal(cash), Decimal(cash), Decimal(cash))
    held = {s: BrokerPosition(s, Decimal(q), Decimal(100)) for s, q in positions.items()}
    return BrokerSnapshot(clock, account, held, tuple(open_orders))


def test_the_start_state_reserves_open_orders_and_counts_the_months_buys():
    snap = _snapshot(
        "10000",
        {"AAPL": "10.6", "MSFT": "5"},
        [_order("b1", "KO", "buy", "10", limit="40"), _order("s1", "MSFT", "sell", "3", filled="1")],
    )
    fills = [
        _fill("KO", "buy", "3", "40", dt.datetime(2017, 6, 1, 14, tzinfo=dt.UTC)),
        _fill("KO", "buy", "2", "40", dt.datetime(2017, 5, 31, 14, tzinfo=dt.UTC)),  # May: not June's quota
        _fill("AAPL", "sell", "1", "150", dt.datetime(2017, 6, 1, 15, tzinfo=dt.UTC)),
    ]
    state = book_from_snapshot(snap, fills, dt.date(2017, 6, 2), {"KO": 41.0})
    assert state.cash == Decimal("9600")  # 10 x the limit 40 reserved by the open buy
    assert state.qty("AAPL") == 10  # whole shares; the fraction stays at the broker
    assert state.qty("MSFT") == 3  # 2 of 5 held by the open sell's remaining qty
    assert state.bought_in_month("KO", dt.date(2017, 6, 2)) == 3


def _orders(rows: list[dict]) -> pl.DataFrame:
    base = {"session": D, "strategy": "s", "requested_qty": 5, "ref_price": 10.0, "reason_code": None}
    return pl.DataFrame([{**base, **r} for r in rows], schema=ORDER_SCHEMA)


def test_the_kill_switch_denies_buys_and_lets_sells_pass():
    orders = _orders(
        [
            {"symbol": "A", "side": "buy", "qty": 5, "status": "approved", "client_order_id": "a"},
            {"symbol": "B", "side": "buy", "qty": 5, "status": "pending_approval", "client_order_id": "b"},
            {"symbol": "C", "side": "sell", "qty": 5, "status": "approved", "client_order_id": "c"},
        ]
    )
    held = hold_buys(orders, engaged=True)
    assert held.select("client_order_id", "status", "qty", "reason_code").rows() == [
        ("a", "denied", 0, "KILL_SWITCH"),
        ("b", "denied", 0, "KILL_SWITCH"),
        ("c", "approved", 5, None),
    ]
    assert hold_buys(orders, engaged=False).equals(orders)


def test_approved_rows_become_market_day_orders_or_brackets_with_their_legs():
    orders = _orders(
        [
            {"symbol": "A", "side": "buy", "qty": 5, "status": "approved", "client_order_id": "a"},
            {"symbol": "B", "side": "buy", "qty": 3, "status": "approved", "client_order_id": "b"},
            {"symbol": "C", "side": "sell", "qty": 2, "status": "approved", "client_order_id": "c"},
            {"symbol": "D", "side": "buy", "qty": 0, "status": "denied", "client_order_id": "d", "reason_code": "X"},
        ]
    ).with_columns(
        stop_loss=pl.Series([None, 9.5, 8.0, None], dtype=pl.Float64),
        take_profit=pl.Series([None, 11.0, None, None], dtype=pl.Float64),
    )
    a, b, c = order_requests(orders)
    assert (a.order_class, a.time_in_force, a.qty, a.type) == ("simple", "day", Decimal(5), "market")
    assert (b.order_class, b.time_in_force, b.stop_loss, b.take_profit) == ("bracket", "gtc", Decimal("9.5"), Decimal("11.0"))
    assert (c.order_class, c.stop_loss) == ("simple", None)  # a sell carries no legs


def test_reconciliation_names_every_position_that_differs():
    before = {"AAPL": Decimal(10), "KO": Decimal(5)}
    fills = [_fill("AAPL", "sell", "10", "150"), _fill("MSFT", "buy", "4", "70")]
    expected = expected_positions(before, fills)
    assert expected == {"KO": Decimal(5), "MSFT": Decimal(4)}
    assert reconcile(expected, {"KO": Decimal(5), "MSFT": Decimal(4)}) == []
    [m] = reconcile(expected, {"KO": Decimal(5), "MSFT": Decimal(8)})
    assert (m.item, m.ledger, m.broker, m.difference) == ("MSFT", Decimal(4), Decimal(8), Decimal(4))


def test_exactly_once_fails_on_a_duplicate_a_missing_or_a_stranger():
    assert exactly_once(D, ["a", "b"], ["a", "b"]).passed
    twice = exactly_once(D, ["a", "b"], ["a", "b", "b"])
    assert not twice.passed and twice.metadata["duplicates"] == "b"
    assert exactly_once(D, ["a", "b"], ["a"]).metadata["missing"] == "b"
    assert exactly_once(D, ["a"], ["a", "z"]).metadata["unknown"] == "z"


def test_a_sessions_orders_are_listed_from_its_start_in_new_york():
    assert session_start(dt.date(2017, 6, 1)) == dt.datetime(2017, 6, 1, 4, 0, tzinfo=dt.UTC)  # EDT
    assert session_start(dt.date(2017, 12, 1)) == dt.datetime(2017, 12, 1, 5, 0, tzinfo=dt.UTC)  # EST


def test_limit_entries_sit_on_the_tick_never_past_the_offset():
    from trading_dagster.domain.live_book import EntryStyle

    style = EntryStyle("limit", Decimal(25), "day")
    assert style.limit_price("buy", Decimal("190.13")) == Decimal("190.60")  # 190.605325 rounded down
    assert style.limit_price("sell", Decimal("190.13")) == Decimal("189.66")  # 189.654675 rounded up
    assert style.limit_price("buy", Decimal("0.5")) == Decimal("0.5012")  # below $1: hundredths of a cent
    orders = _orders(
        [
            {"symbol": "A", "side": "buy", "qty": 5, "status": "approved", "client_order_id": "a", "ref_price": 190.13},
            {"symbol": "B", "side": "sell", "qty": 2, "status": "approved", "client_order_id": "b", "ref_price": 190.13},
        ]
    )
    buy, sell = order_requests(orders, EntryStyle("limit", Decimal(25), "cls"))
    assert (buy.type, buy.limit_price, buy.time_in_force) == ("limit", Decimal("190.60"), "cls")
    assert (sell.type, sell.limit_price) == ("limit", Decimal("189.66"))
    [market, _] = order_requests(orders)
    assert (market.type, market.limit_price, market.time_in_force) == ("market", None, "day")


def test_an_entry_style_alpaca_would_refuse_is_refused_here():
    import pytest

    from trading_dagster.domain.live_book import EntryStyle

    with pytest.raises(ValueError, match="time_in_force"):
        EntryStyle("market", Decimal(0), "opg")  # Alpaca refuses opg orders sent during the session
    with pytest.raises(ValueError, match="order_type"):
        EntryStyle("stop", Decimal(0), "day")
    with pytest.raises(ValueError, match="limit_offset_bps"):
        EntryStyle("limit", Decimal(-1), "day")


def test_cash_reconciles_within_a_cent_per_execution_commissions_included():
    from trading_dagster.domain.live_book import cash_mismatch

    fills = [
        BrokerFill("e1", "o1", "a", "AAPL", "buy", Decimal(4), Decimal("150.25"), T, commission=Decimal("0.02")),
        BrokerFill("e2", "o2", "b", "KO", "sell", Decimal(10), Decimal("45.10"), T),
    ]
    # 10,000 - 601.00 - 0.02 + 451.00 = 9,849.98
    assert cash_mismatch(Decimal(10_000), fills, Decimal("9849.98")) is None
    assert cash_mismatch(Decimal(10_000), fills, Decimal("9849.99")) is None  # a cent of rounding per execution
    fee = cash_mismatch(Decimal(10_000), fills, Decimal("9849.90"))  # e.g. a sell's regulatory fees
    assert fee is not None and (fee.item, fee.ledger, fee.difference) == ("cash", Decimal("9849.98"), Decimal("-0.08"))


def test_a_fill_arriving_while_the_account_is_read_is_read_again():
    import datetime as dt
    from decimal import Decimal

    from trading_dagster.domain.broker_records import BrokerFill
    from trading_dagster.domain.live_book import consistent_read

    def fill(n: int) -> BrokerFill:
        return BrokerFill(
            execution_id=f"x{n}", order_id="o1", client_order_id="td-1", symbol="AAPL", side="buy",
            qty=Decimal(1), price=Decimal(100), transaction_time=dt.datetime(2017, 6, 2, 14, n, tzinfo=dt.UTC),
        )

    executions = [fill(1)]
    reads = {"rest": 0}

    def read_rest():
        reads["rest"] += 1
        if reads["rest"] == 1:  # the broker fills once more while the positions are read
            executions.append(fill(2))
        return len(executions)  # what the positions saw

    fills, rest, stable = consistent_read(lambda: list(executions), read_rest)
    assert stable and rest == 2 and [f.execution_id for f in fills] == ["x1", "x2"]  # agree with each other
    assert reads["rest"] == 2

    def always_filling():
        executions.append(fill(len(executions) + 1))
        return len(executions)

    fills, rest, stable = consistent_read(lambda: list(executions), always_filling, attempts=2)
    assert not stable  # flagged, never an endless loop
