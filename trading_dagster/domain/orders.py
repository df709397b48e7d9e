"""Order and fill records, deterministic client order ids, and their frames.

Records are immutable (NautilusTrader style): an order is what *we* decided for a signal session (approved,
possibly clipped, or denied by our own risk controls, with a reason code); a fill is what the broker did
with it at a later session's open. Positions are never stored, only derived from fills (see portfolio.py).

Money on the records is `Decimal` because it crosses the broker boundary; the frames (analytics) carry
float64, and `as_decimal` turns a float back into the exact decimal it was printed from.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import polars as pl

from trading_dagster.domain.quantity import QTY_UNIT, WHOLE, Qty, ShareRule, from_frame, rule_of

Side = Literal["buy", "sell"]
OrderStatus = Literal["approved", "denied"]
EventType = Literal["accepted", "filled", "expired"]
BOOK_EVENT_TYPES: tuple[str, ...] = ("split", "cash_in_lieu", "delisted_close", "renamed")
"""Ledger events of the executions frame that are no market fill (`book_events.py`), first in their session:
`split` (qty = shares held after, price = the ratio, new shares per old, order_session = the ex-date),
`cash_in_lieu` (side sell, qty 0, price = the amount paid for the fraction of a share), `delisted_close` (side
sell, qty at price, no commission: a security past its valid_to closed at its last close; order_session = the
valid_to) and `renamed` (qty moved; the client_order_id names the new ticker)."""
EXECUTION_EVENT_TYPES: tuple[str, ...] = ("accepted", "filled", "expired", *BOOK_EVENT_TYPES)

SIDES: tuple[str, ...] = ("buy", "sell")
ID_PREFIX = "td"
MAX_CLIENT_ORDER_ID_LEN = 48  # Alpaca's limit (alpaca-notes 2.4)
_HASH_LEN = 16  # 64 bits of sha256: collisions are negligible at any plausible order count
_SYMBOL_IN_ID = 12  # readable part only; the hash covers the full symbol

ORDER_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "symbol": pl.String(),
    "strategy": pl.String(),
    "side": pl.String(),
    "requested_qty": pl.Int64(),
    "qty": pl.Int64(),
    "ref_price": pl.Float64(),
    "status": pl.String(),
    "reason_code": pl.String(),
    "client_order_id": pl.String(),
    "notional": pl.Float64(),
}

EXECUTION_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "client_order_id": pl.String(),
    "symbol": pl.String(),
    "side": pl.String(),
    "event": pl.String(),
    "order_session": pl.Date(),
    "qty": pl.Int64(),
    "price": pl.Float64(),
    "commission": pl.Float64(),
}

_ORDER_QTY_COLUMNS = ("requested_qty", "qty")


def order_schema(shares: ShareRule = WHOLE) -> dict[str, pl.DataType]:
    """`ORDER_SCHEMA` for the backtest's share rule: the quantity columns are Float64 with fractional shares."""
    if not shares.fractional:
        return ORDER_SCHEMA
    return {c: shares.dtype if c in _ORDER_QTY_COLUMNS else t for c, t in ORDER_SCHEMA.items()}


def execution_schema(shares: ShareRule = WHOLE) -> dict[str, pl.DataType]:
    """`EXECUTION_SCHEMA` for the backtest's share rule: `qty` is Float64 with fractional shares."""
    if not shares.fractional:
        return EXECUTION_SCHEMA
    return {c: shares.dtype if c == "qty" else t for c, t in EXECUTION_SCHEMA.items()}


def _rule_of_values(values: Iterable[object]) -> ShareRule:
    """Fractional if any quantity is a Decimal (what a frame builder not told the rule goes by)."""
    return next((rule_of(v) for v in values if isinstance(v, Decimal)), WHOLE)


_EVENT_RANK = {"filled": 0, "expired": 0, "accepted": 1}  # open-of-day events come before after-close ones


def min_qty_of(qty: Qty) -> Qty:
    """`rule_of(qty).min_qty` without the two property lookups (every order and fill record checks it): the
    smallest quantity of the quantity's own rule, 1e-9 share for a Decimal, one share otherwise."""
    return QTY_UNIT if isinstance(qty, Decimal) else 1


def as_decimal(value: Decimal | float | int | str) -> Decimal:
    """Exact decimal for a price or amount.

    Floats go through their shortest repr, so 172.3 becomes Decimal('172.3'), not the binary expansion
    172.30000000000001136...; that makes Decimal -> float64 frame -> Decimal a lossless round trip.
    """
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite amount: {value!r}")
        out = Decimal(repr(value))
    elif isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    else:
        out = Decimal(value)
    if not out.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return out


def client_order_id(account: str, session: dt.date, symbol: str, strategy: str, side: str) -> str:
    """Deterministic id, e.g. `td-20171110-AAPL-3f2a9c0d41b7e6aa` (at most 48 characters).

    A pure function of who/when/what/which way: re-running a session (even with different sizing; qty is
    deliberately not an input) yields the same id, so the broker recognises the order instead of placing
    a second one. The account is hashed in so paper and live ids never collide.
    """
    return order_ids_for(account, session)(symbol, strategy, side)


def order_ids_for(account: str, session: dt.date) -> Callable[[str, str, str], str]:
    """`client_order_id` with the account and session fixed: (symbol, strategy, side) -> id. The planner
    asks for millions of ids over a few thousand sessions; the fixed parts are formatted once here."""
    # the hashed key is account|session|symbol|strategy|side
    hashed_prefix = f"{account}|{session.isoformat()}|"
    shown_prefix = f"{ID_PREFIX}-{session:%Y%m%d}-"

    def order_id(symbol: str, strategy: str, side: str) -> str:
        if side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        key = f"{hashed_prefix}{symbol}|{strategy}|{side}"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_HASH_LEN]
        out = f"{shown_prefix}{_readable_symbol(symbol)}-{digest}"
        assert len(out) <= MAX_CLIENT_ORDER_ID_LEN
        return out

    return order_id


@functools.lru_cache(maxsize=8192)
def _readable_symbol(symbol: str) -> str:
    """The symbol's part of the id: its first characters that are safe in an id (the hash covers all).
    Cached: filtering characters costs more than the hash, and symbols repeat."""
    return "".join(c for c in symbol if c.isalnum() or c in ".-")[:_SYMBOL_IN_ID]


@dataclass(frozen=True, slots=True)
class Order:
    """Our decision for one signal of session D (fills, if approved, at D+1's open).

    `reason_code` names the pre-trade control that denied the order, or that clipped it (approved with
    qty < requested_qty), so a reader sees why; it is None for an order approved unchanged.
    `ref_price` is D's close (None when there was no price: reason NO_PRICE).
    `notional` (USD, buys of a backtest with `[backtest] size_on = "fill"` only, else None): the quantity is
    decided at the fill, notional / fill price (Alpaca's notional orders); `qty` is then the estimate at the
    close the risk controls saw.
    """

    client_order_id: str
    session: dt.date
    symbol: str
    strategy: str
    side: Side
    requested_qty: Qty
    qty: Qty
    ref_price: Decimal | None
    status: OrderStatus
    reason_code: str | None = None
    notional: Decimal | None = None

    def __post_init__(self) -> None:
        if self.notional is not None and (self.side != "buy" or self.notional <= 0):
            raise ValueError(f"order {self.client_order_id}: a notional is for buys, and positive")
        if self.side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if self.status == "approved" and self.qty < min_qty_of(self.qty):
            raise ValueError(f"approved order {self.client_order_id} has qty {self.qty}")
        if self.status == "denied" and (self.qty != 0 or self.reason_code is None):
            raise ValueError(f"denied order {self.client_order_id} needs qty 0 and a reason code")
        if self.status not in ("approved", "denied"):
            raise ValueError(f"status must be 'approved' or 'denied', got {self.status!r}")

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution of (part of) an order at the open of `session` (the fill session)."""

    client_order_id: str
    order_session: dt.date
    session: dt.date
    symbol: str
    side: Side
    qty: Qty
    price: Decimal
    commission: Decimal

    def __post_init__(self) -> None:
        if self.qty < min_qty_of(self.qty):
            raise ValueError(f"fill of {self.client_order_id} has qty {self.qty}")
        if self.price <= 0 or self.commission < 0:
            raise ValueError(f"fill of {self.client_order_id}: bad price/commission")

    def to_event(self) -> OrderEvent:
        return OrderEvent(
            session=self.session,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            event="filled",
            order_session=self.order_session,
            qty=self.qty,
            price=self.price,
            commission=self.commission,
        )


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One row of the executions frame: what happened to an order at the broker, and when.

    `accepted` is dated at the order session (submitted after D's close); `filled` and `expired` at the
    session whose open worked the order. Price is None unless filled; commission is 0 unless filled.
    """

    session: dt.date
    client_order_id: str
    symbol: str
    side: Side
    event: EventType
    order_session: dt.date
    qty: Qty
    price: Decimal | None = None
    commission: Decimal = Decimal(0)

    @staticmethod
    def accepted(order: Order) -> OrderEvent:
        return OrderEvent(
            session=order.session,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            event="accepted",
            order_session=order.session,
            qty=order.qty,
        )

    @staticmethod
    def expired(order: Order, session: dt.date, qty: Qty) -> OrderEvent:
        return OrderEvent(
            session=session,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            event="expired",
            order_session=order.session,
            qty=qty,
        )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# An order as a row of the `orders` frame: its fields in ORDER_SCHEMA's column order, ref_price exact.
# The planner keeps its (mostly denied) orders in this form: a tuple of strings, numbers and dates is
# not tracked by Python's cyclic garbage collector once it has seen it, while millions of live `Order`
# records made every full collection walk them all (about a quarter of a ten-year plan's time).
OrderRow = tuple[dt.date, str, str, str, Qty, Qty, Decimal | None, str, str | None, str, Decimal | None]


def order_row(o: Order) -> OrderRow:
    return (
        o.session,
        o.symbol,
        o.strategy,
        o.side,
        o.requested_qty,
        o.qty,
        o.ref_price,
        o.status,
        o.reason_code,
        o.client_order_id,
        o.notional,
    )


def orders_to_frame(orders: Iterable[Order], shares: ShareRule | None = None) -> pl.DataFrame:
    """The `orders` frame of docs/design.md, rows in the given order. `shares`: the quantity columns' rule
    (`order_schema`); None: fractional iff an order's quantity is a Decimal."""
    return order_rows_to_frame([order_row(o) for o in orders], shares)


def order_rows_to_frame(rows: Sequence[OrderRow], shares: ShareRule | None = None) -> pl.DataFrame:
    """The `orders` frame from order rows, built column by column (a list per column converts several
    times faster than polars' row-oriented constructor, or a dict per row). `shares`: as `orders_to_frame`."""
    columns: dict[str, list | pl.Series] = {name: [r[i] for r in rows] for i, name in enumerate(ORDER_SCHEMA)}
    if shares is None:
        shares = _rule_of_values(v for c in _ORDER_QTY_COLUMNS for v in columns[c])
    columns["session"] = _date_series(columns["session"])
    columns["ref_price"] = [_float(v) for v in columns["ref_price"]]
    columns["notional"] = [_float(v) for v in columns["notional"]]
    for c in _ORDER_QTY_COLUMNS:
        columns[c] = shares.to_frame(columns[c])
    return pl.DataFrame(columns, schema=order_schema(shares))


_EPOCH = dt.date(1970, 1, 1)


def _date_series(dates: list[dt.date]) -> pl.Series:
    """A Date series built from day numbers: polars converts date objects one by one, several times slower,
    and an orders frame has few distinct dates (each converted once here)."""
    days = {d: (d - _EPOCH).days for d in set(dates)}
    return pl.Series([days[d] for d in dates], dtype=pl.Int32).cast(pl.Date)


def orders_from_frame(frame: pl.DataFrame) -> list[Order]:
    """Records back from an `orders` frame (ref_price via `as_decimal`, so the round trip is exact; quantities
    of an integer column as ints, of a float column as Decimals: `quantity.from_frame`)."""
    frame = _with_notional(frame)
    if frame.height == 0:
        return []
    columns = [frame[c] for c in ORDER_SCHEMA]
    session, symbol, strategy, side, requested, qty, ref, status, reason, cid, notional = (
        _quantities(c) if name in _ORDER_QTY_COLUMNS else _decimals(c) if name in ("ref_price", "notional") else c.to_list()
        for name, c in zip(ORDER_SCHEMA, columns, strict=True)
    )
    return list(map(Order, cid, session, symbol, strategy, side, requested, qty, ref, status, reason, notional))


def _decimals(column: pl.Series) -> list[Decimal | None]:
    """`as_decimal` of each value of a money column (None stays None), column by column: the same Decimals
    (a float's shortest repr), and the same error for a value that is not finite."""
    values = column.to_list()
    if column.dtype.is_float():
        if not column.drop_nulls().is_finite().all():
            bad = next(v for v in values if v is not None and not math.isfinite(v))
            raise ValueError(f"not a finite amount: {bad!r}")
        if column.null_count() == 0:
            if len(values) > 64 and not (column == 0).any():
                # each distinct value once: equal floats other than 0.0 / -0.0 have one repr
                exact = {v: Decimal(repr(v)) for v in set(values)}
                return list(map(exact.__getitem__, values))
            return list(map(Decimal, map(repr, values)))
        return [None if v is None else Decimal(repr(v)) for v in values]
    return [None if v is None else as_decimal(v) for v in values]


def _quantities(column: pl.Series) -> list[Qty]:
    """`quantity.from_frame` of each value of a quantity column: an integer column's ints as they are."""
    values = column.to_list()
    if column.dtype.is_integer() and column.null_count() == 0:
        return values
    return [from_frame(v) for v in values]


def _with_notional(frame: pl.DataFrame) -> pl.DataFrame:
    """An orders frame stored before the `notional` column existed reads as one without notionals."""
    if "notional" in frame.columns:
        return frame
    return frame.with_columns(notional=pl.lit(None, dtype=pl.Float64))


def event_sort_key(e: OrderEvent) -> tuple[dt.date, int, str, str]:
    """Chronological: a session's open (fills, expiries) before its close (new orders accepted)."""
    return (e.session, _EVENT_RANK[e.event], e.client_order_id, e.event)


def events_to_frame(events: Iterable[OrderEvent | Fill], shares: ShareRule | None = None) -> pl.DataFrame:
    """The `executions` frame of docs/design.md, sorted chronologically (see `event_sort_key`). `shares`: the
    `qty` column's rule (`execution_schema`); None: fractional iff an event's quantity is a Decimal."""
    evs = [e.to_event() if isinstance(e, Fill) else e for e in events]
    evs.sort(key=event_sort_key)
    if shares is None:
        shares = _rule_of_values(e.qty for e in evs)
    schema = execution_schema(shares)
    rows = [
        (
            e.session,
            e.client_order_id,
            e.symbol,
            e.side,
            e.event,
            e.order_session,
            float(e.qty) if shares.fractional else e.qty,
            _float(e.price),
            float(e.commission),
        )
        for e in evs
    ]
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row")


def fills_to_frame(fills: Iterable[Fill], shares: ShareRule | None = None) -> pl.DataFrame:
    """Fills as `executions` rows (event 'filled')."""
    return events_to_frame(fills, shares)


def events_from_frame(frame: pl.DataFrame) -> list[OrderEvent]:
    """Records back from an executions frame (price and commission via `as_decimal`, a null commission as 0;
    quantities by `quantity.from_frame`), built column by column."""
    if frame.height == 0:
        return []
    price = _decimals(frame["price"])
    commission = _decimals(frame["commission"].fill_null(0.0)) if frame["commission"].dtype.is_float() else [
        as_decimal(0.0 if c is None else c) for c in frame["commission"].to_list()
    ]
    return list(
        map(
            OrderEvent,
            frame["session"].to_list(),
            frame["client_order_id"].to_list(),
            frame["symbol"].to_list(),
            frame["side"].to_list(),
            frame["event"].to_list(),
            frame["order_session"].to_list(),
            _quantities(frame["qty"]),
            price,
            commission,
        )
    )


def fills_from_frame(frame: pl.DataFrame) -> list[Fill]:
    """The `filled` rows of an executions frame as Fill records (other events are ignored)."""
    filled = frame.filter(pl.col("event") == "filled")
    if filled.height == 0:
        return []
    price = _decimals(filled["price"])
    if any(p is None for p in price):
        raise AssertionError("a filled event without a price")
    commission = _decimals(filled["commission"].fill_null(0.0)) if filled["commission"].dtype.is_float() else [
        as_decimal(0.0 if c is None else c) for c in filled["commission"].to_list()
    ]
    return list(
        map(
            Fill,
            filled["client_order_id"].to_list(),
            filled["order_session"].to_list(),
            filled["session"].to_list(),
            filled["symbol"].to_list(),
            filled["side"].to_list(),
            _quantities(filled["qty"]),
            price,
            commission,
        )
    )
