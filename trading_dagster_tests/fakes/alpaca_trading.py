"""Alpaca's Trading API on an `AlpacaFakeServer`: account, clock, calendar, orders, positions, activities,
with a small matching engine, for driving alpaca-py's real `TradingClient` (and `AlpacaBroker`) in tests.

    with AlpacaFakeServer() as server:
        trading = AlpacaTradingFake(server, cash=Decimal(100_000))
        trading.set_now(dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.UTC))
        trading.set_price("AAPL", Decimal("190.00"))
        ...  # POST /v2/orders through TradingClient(url_override=server.url)
        trading.work_orders()  # fills what is marketable while the clock says the market is open

Shapes follow ../shared/docs/alpaca-notes.md sections 2 and 5.1: decimals are JSON strings, ids UUIDs,
enums lower case (account status upper case), order `created_at/updated_at/submitted_at` never null, order
times in UTC with `Z` and nanoseconds, clock times with a New York offset, calendar "HH:MM", 204 for one
cancel, 207 lists for cancel-all and close-all with a per-item status, FILL activities without `account_id`
(the SDK's TradeActivity trap; `activities_include_account_id=True` adds it).

Asynchrony as Alpaca: a POST never returns a filled order (`accepted` with the market closed, `new` when
open); fills happen only in `work_orders()`, at the price set with `set_price` (market orders), when a limit
or stop is crossed, optionally in parts (`partial_fills`) or only after some calls (`delay_fill`). Bracket and
oto exits are `held` until the entry fills; one exit filling cancels the other; cancelling one member cancels
the group. Fills move cash and positions; buying power = cash minus what open buy orders reserve (no margin).

Fault hooks (besides the server's `fail_next` / `stall_next`): `fail_submit` (504 or another status on the
next POST /v2/orders, the order created or not), `drop_submit` (the socket closed without a reply, created or
not), `stall_submit` (create, then answer late: the client times out), `fail_close` (items of the 207
close-all that fail), `halt` (the market closed whatever the calendar says), `set_rate_limit` (requests per
minute per key: 429 with X-Ratelimit-* headers), `orders_on_server(client_order_id)` and
`submits_for(client_order_id)` for exactly-once assertions. 403 buying power, 403 qty and the 422 duplicate
come from the state itself (spend the cash, sell what is not there, send an id twice).

[FAKE] choices (nothing authoritative found): market orders reserve buying power at the last price (Alpaca
uses a 2.5-4 % collar); error wording other than the duplicate-id text; a nested listing counts a bracket as
open while any member is open; cancels are immediate (no `pending_cancel`); no shorting; opg/cls windows,
extended hours are not modelled (DAY orders expire at
the first work_orders call after their session's close, believed as Alpaca); the activity page token is the last id seen.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import itertools
import math
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from functools import cache
from typing import Any

from trading_dagster_tests.fakes.alpaca_server import (
    NEW_YORK,
    AlpacaFakeServer,
    FakeApiError,
    FakeRequest,
    FakeResponse,
)

ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIMES_IN_FORCE = ("day", "gtc", "opg", "cls")
ORDER_CLASSES = ("simple", "bracket", "oto", "oco")
OPEN_STATUSES = frozenset({"new", "accepted", "partially_filled", "held", "pending_new", "pending_cancel"})
WORKING_STATUSES = frozenset({"new", "accepted", "partially_filled"})
MAX_ORDERS_LIMIT = 500
MAX_ACTIVITIES_PAGE = 100
ACTIVITY_TYPES = (
    "FILL",
    "TRANS",
    "MISC",
    "ACATC",
    "ACATS",
    "CSD",
    "CSW",
    "DIV",
    "DIVCGL",
    "DIVCGS",
    "DIVNRA",
    "DIVROC",
    "DIVTXEX",
    "INT",
    "JNLC",
    "JNLS",
    "MA",
    "NC",
    "OPASN",
    "OPEXP",
    "OPXRC",
    "PTC",
    "REORG",
    "SC",
    "SSO",
    "SSP",
    "CFEE",
    "FEE",
)
CODE_INVALID = 40010001
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_RATE_LIMIT = 42910000
DUPLICATE_MESSAGE = "client_order_id must be unique"
_NS = Decimal("0.000000001")


# --------------------------------------------------------------------------------------------------------
# The NYSE calendar (exchange_calendars XNYS: holidays and early closes)
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    dates: tuple[dt.date, ...]
    opens: tuple[dt.datetime, ...]  # UTC
    closes: tuple[dt.datetime, ...]  # UTC


@cache
def _sessions() -> _Sessions:
    import exchange_calendars as xc

    schedule = xc.get_calendar("XNYS", start="2015-01-01").schedule
    dates = tuple(ts.date() for ts in schedule.index)
    opens = tuple(ts.to_pydatetime() for ts in schedule["open"])
    closes = tuple(ts.to_pydatetime() for ts in schedule["close"])
    return _Sessions(dates, opens, closes)


def market_clock(now: dt.datetime) -> tuple[bool, dt.datetime, dt.datetime]:
    """(is_open, next_open, next_close) at `now` on the NYSE calendar, as Alpaca's clock: while open,
    next_close is today's close and next_open the next session's open."""
    s = _sessions()
    i = bisect.bisect_right(s.closes, now)  # first session whose close is after now
    if i >= len(s.dates):
        raise ValueError(f"{now} is past the calendar's horizon")
    if s.opens[i] <= now:
        return True, s.opens[i + 1], s.closes[i]
    return False, s.opens[i], s.closes[i]


# --------------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------------


def _ts(when: dt.datetime | None) -> str | None:
    """Order / activity times as Alpaca sends them: UTC, nanoseconds, `Z`."""
    if when is None:
        return None
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _ny(when: dt.datetime) -> str:
    """Clock times: New York offset (2024-05-01T09:30:00-04:00)."""
    local = when.astimezone(NEW_YORK)
    text = local.isoformat(timespec="microseconds" if local.microsecond else "seconds")
    return text


def _dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if text not in ("-0",) else "0"


def _to_decimal(value: Any, name: str) -> Decimal | None:
    """A JSON number or string from a request body (alpaca-py sends floats: 300.0, 10.0)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise FakeApiError(422, f"invalid {name}", CODE_INVALID)
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise FakeApiError(422, f"invalid {name}: {value!r}", CODE_INVALID) from None
    if not result.is_finite() or result <= 0:
        raise FakeApiError(422, f"{name} must be > 0", CODE_INVALID)
    return result


def _check_tick(name: str, price: Decimal | None) -> None:
    """Sub-penny refusal (Alpaca: > 2 decimals at >= $1, > 4 below)."""
    if price is None:
        return
    places = 2 if price >= 1 else 4
    if price != price.quantize(Decimal(1).scaleb(-places)):
        raise FakeApiError(
            422,
            f"invalid {name} {_dec(price)}. sub-penny increment does not fulfill minimum pricing criteria",
            CODE_UNPROCESSABLE,
        )


def _parse_time(params: Mapping[str, str], name: str) -> dt.datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        if len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=NEW_YORK)
        parsed = dt.datetime.fromisoformat(value.replace(" ", "+"))
    except ValueError:
        raise FakeApiError(422, f"invalid {name}: {value!r}", CODE_INVALID) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _bool_param(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() == "true"


# --------------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------------


@dataclass
class FakeOrder:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    order_class: str
    status: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    created_at: dt.datetime
    submitted_at: dt.datetime
    updated_at: dt.datetime
    seq: int
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    filled_at: dt.datetime | None = None
    canceled_at: dt.datetime | None = None
    hwm: Decimal | None = None
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)
    work_calls: int = 0

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.0001"))


@dataclass
class FakePosition:
    symbol: str
    asset_id: str
    qty: Decimal
    cost: Decimal  # qty * avg entry

    @property
    def avg_entry_price(self) -> Decimal:
        return (self.cost / self.qty).quantize(Decimal("0.0001")) if self.qty else Decimal(0)


@dataclass
class _SubmitFault:
    kind: str  # "status" | "drop" | "stall"
    created: bool
    status: int = 504
    seconds: float = 0.0


class AlpacaTradingFake:
    """The trading API's state and routes, installed on `server` (see the module docstring)."""

    def __init__(
        self,
        server: AlpacaFakeServer,
        *,
        cash: Decimal = Decimal(100_000),
        account_number: str = "PA3FAKE00TEST",
        symbols: Iterable[str] = (),
        activities_include_account_id: bool = False,
    ) -> None:
        self.server = server
        self.account_number = account_number
        self.account_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-fake/account/{account_number}"))
        self.activities_include_account_id = activities_include_account_id
        self._lock = threading.RLock()
        self._now: dt.datetime | None = None
        self._halted = False
        self._cash = Decimal(cash)
        self._last_equity: Decimal | None = None  # None: the equity now (nothing moved since the close)
        self._prices: dict[str, Decimal] = {}
        self._symbols: set[str] = set(symbols)
        self._positions: dict[str, FakePosition] = {}
        self._orders: list[FakeOrder] = []
        self._by_id: dict[str, FakeOrder] = {}
        self._by_cid: dict[str, FakeOrder] = {}
        self._activities: list[dict[str, Any]] = []
        self._submit_faults: collections.deque[_SubmitFault] = collections.deque()
        self._submits: collections.Counter[str] = collections.Counter()
        self._partial: dict[str, list[Decimal]] = {}
        self._delay: dict[str, int] = {}
        self._close_failures: dict[str, tuple[int, int, str]] = {}
        self._seq = itertools.count()
        self._last_stamp: dt.datetime | None = None
        self._rate_limit: int | None = None
        self._rate_window: dict[str | None, collections.deque[float]] = {}
        self.rate_limited = 0  # 429s answered by the server-side rate limit
        self._install()

    # -- test hooks ----------------------------------------------------------------------------------------

    def set_now(self, when: dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("set_now needs a timezone-aware datetime")
        with self._lock:
            self._now = when.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now if self._now is not None else dt.datetime.now(dt.UTC)

    def halt(self, halted: bool = True) -> None:
        """The market reports closed whatever the calendar says (an unscheduled closure)."""
        with self._lock:
            self._halted = halted

    def is_open(self) -> bool:
        with self._lock:
            if self._halted:
                return False
            return market_clock(self.now())[0]

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self._lock:
            self._prices[symbol] = Decimal(price)
            self._symbols.add(symbol)

    def add_symbols(self, *symbols: str) -> None:
        """Tradable symbols without a price yet (a symbol with a price is tradable too)."""
        with self._lock:
            self._symbols.update(symbols)

    def set_cash(self, cash: Decimal) -> None:
        with self._lock:
            self._cash = Decimal(cash)

    def set_last_equity(self, equity: Decimal | None) -> None:
        """The account's `last_equity` (the equity at the previous close); None: the equity now."""
        with self._lock:
            self._last_equity = None if equity is None else Decimal(equity)

    def set_position(self, symbol: str, qty: Decimal, avg_entry_price: Decimal) -> None:
        with self._lock:
            self._symbols.add(symbol)
            self._positions[symbol] = FakePosition(
                symbol, _asset_id(symbol), Decimal(qty), Decimal(qty) * avg_entry_price
            )

    def fail_submit(self, status: int = 504, *, created: bool, count: int = 1) -> None:
        """The next `count` POST /v2/orders answer `status` (504: a gateway timeout), after creating the order
        when `created` (the answer was lost) or without creating it."""
        with self._lock:
            self._submit_faults.extend(_SubmitFault("status", created, status) for _ in range(count))

    def drop_submit(self, *, created: bool, count: int = 1) -> None:
        """The next `count` POST /v2/orders close the socket without a reply, created or not."""
        with self._lock:
            self._submit_faults.extend(_SubmitFault("drop", created) for _ in range(count))

    def stall_submit(self, seconds: float, *, created: bool = True, count: int = 1) -> None:
        """The next `count` POST /v2/orders are processed (when `created`) and answered after `seconds`."""
        with self._lock:
            self._submit_faults.extend(_SubmitFault("stall", created, 200, seconds) for _ in range(count))

    def partial_fills(self, client_order_id: str, fractions: Sequence[Decimal | float | str]) -> None:
        """Successive work_orders calls fill these fractions of the order's qty (then the rest)."""
        with self._lock:
            self._partial[client_order_id] = [Decimal(str(f)) for f in fractions]

    def delay_fill(self, client_order_id: str, calls: int) -> None:
        """The first `calls` work_orders calls pass this order over."""
        with self._lock:
            self._delay[client_order_id] = calls

    def fail_close(
        self,
        symbol: str,
        status: int = 403,
        code: int = CODE_FORBIDDEN,
        message: str = "insufficient qty available for order",
    ) -> None:
        """close-all-positions answers this symbol's item with an error (the 207 still succeeds)."""
        with self._lock:
            self._close_failures[symbol] = (status, code, message)

    def set_rate_limit(self, per_minute: int | None) -> None:
        """At most `per_minute` requests per key in any 60 s (a sliding window); more get 429."""
        with self._lock:
            self._rate_limit = per_minute
            self._rate_window.clear()

    def orders_on_server(self, client_order_id: str) -> int:
        with self._lock:
            return sum(1 for o in self._orders if o.client_order_id == client_order_id)

    def submits_for(self, client_order_id: str) -> int:
        """POST /v2/orders that arrived with this id (answered or not)."""
        with self._lock:
            return self._submits[client_order_id]

    def order(self, client_order_id: str) -> FakeOrder:
        with self._lock:
            return self._by_cid[client_order_id]

    @property
    def cash(self) -> Decimal:
        with self._lock:
            return self._cash

    def position_qty(self, symbol: str) -> Decimal:
        with self._lock:
            p = self._positions.get(symbol)
            return p.qty if p else Decimal(0)

    @property
    def order_count(self) -> int:
        with self._lock:
            return len(self._orders)

    # -- the matching engine ---------------------------------------------------------------------------

    def work_orders(self) -> None:
        """Expire DAY orders whose session has closed; fill what is marketable now (nothing while closed)."""
        with self._lock:
            now = self.now()
            for order in self._orders:  # a DAY order ends `expired` once its session has closed
                if order.time_in_force == "day" and order.open and now >= market_clock(order.submitted_at)[2]:
                    order.status = "expired"
                    order.updated_at = now
            if not self.is_open():
                return
            for order in list(self._orders):
                if order.status not in WORKING_STATUSES:
                    continue
                if order.status == "accepted":
                    order.status = "new"
                    order.updated_at = now
                order.work_calls += 1
                if order.work_calls <= self._delay.get(order.client_order_id, 0):
                    continue
                price = self._prices.get(order.symbol)
                if price is None or not self._marketable(order, price):
                    continue
                self._fill(order, price, now)

    def _marketable(self, o: FakeOrder, price: Decimal) -> bool:
        buy = o.side == "buy"
        if o.type == "market":
            return True
        if o.type == "limit":
            return price <= o.limit_price if buy else price >= o.limit_price  # type: ignore[operator]
        if o.type in ("stop", "stop_limit"):
            triggered = price >= o.stop_price if buy else price <= o.stop_price  # type: ignore[operator]
            if not triggered:
                return False
            return o.type == "stop" or (price <= o.limit_price if buy else price >= o.limit_price)  # type: ignore[operator]
        # trailing stop: the high (sell) / low (buy) water mark moves with the price
        o.hwm = price if o.hwm is None else (max(o.hwm, price) if not buy else min(o.hwm, price))
        offset = o.trail_price if o.trail_price is not None else o.hwm * o.trail_percent / 100  # type: ignore[operator]
        return price >= o.hwm + offset if buy else price <= o.hwm - offset

    def _fill(self, order: FakeOrder, price: Decimal, now: dt.datetime) -> None:
        if order.qty is None:  # notional: the qty is fixed at the first (only) fill
            order.qty = (order.notional / price).quantize(_NS, rounding=ROUND_DOWN)  # type: ignore[operator]
        remaining = order.qty - order.filled_qty
        fractions = self._partial.get(order.client_order_id)
        qty = remaining
        if fractions:
            part = order.qty * fractions.pop(0)
            if order.qty == order.qty.to_integral_value():
                part = max(Decimal(1), part.to_integral_value(rounding=ROUND_DOWN))
            qty = min(remaining, part)
        if qty <= 0:
            return
        now = self._stamp(now)
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_at = now
        done = order.filled_qty == order.qty
        order.status = "filled" if done else "partially_filled"
        if done:
            order.filled_at = now
        self._apply_fill(order.symbol, order.side, qty, price)
        stamp = now
        self._activities.append(
            {
                # Alpaca's form (milliseconds::uuid); the uuid starts with a sequence so ids sort in time order
                "id": f"{stamp.strftime('%Y%m%d%H%M%S%f')[:-3]}::{next(self._seq):08x}-{str(uuid.uuid4())[9:]}",
                "activity_type": "FILL",
                "transaction_time": _ts(stamp),
                "type": "fill" if done else "partial_fill",
                "price": _dec(price),
                "qty": _dec(qty),
                "side": order.side,
                "symbol": order.symbol,
                "leaves_qty": _dec(order.qty - order.filled_qty),
                "order_id": order.id,
                "cum_qty": _dec(order.filled_qty),
                "order_status": order.status,
                "_time": stamp,
            }
        )
        if not done:
            return
        if order.parent_id is None and order.leg_ids and order.order_class in ("bracket", "oto"):
            for leg_id in order.leg_ids:  # the exits become active
                leg = self._by_id[leg_id]
                if leg.status == "held":
                    leg.status = "new"
                    leg.updated_at = now
        elif order.order_class in ("bracket", "oto", "oco"):
            for other in self._group(order):  # one exit filled: the others are cancelled
                if other is not order and other.parent_id is not None and other.open:
                    self._cancel(other, now)
            parent = self._group(order)[0]
            if parent is not order and parent.open:  # the oco's limit (parent) when its stop leg filled
                self._cancel(parent, now)

    def _apply_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        signed = qty if side == "buy" else -qty
        self._cash -= signed * price
        pos = self._positions.get(symbol)
        if pos is None:
            self._positions[symbol] = FakePosition(symbol, _asset_id(symbol), signed, signed * price)
            return
        new_qty = pos.qty + signed
        if new_qty == 0:
            del self._positions[symbol]
        elif (pos.qty > 0) == (signed > 0):  # adding: the cost grows
            pos.cost += signed * price
            pos.qty = new_qty
        else:  # reducing: the average entry stays
            pos.cost = pos.avg_entry_price * new_qty
            pos.qty = new_qty

    # -- helpers -----------------------------------------------------------------------------------------

    def _stamp(self, now: dt.datetime) -> dt.datetime:
        """A strictly increasing time (>= the clock): two orders never share a submission time."""
        stamp = (
            now
            if self._last_stamp is None or now > self._last_stamp
            else self._last_stamp + dt.timedelta(microseconds=1)
        )
        self._last_stamp = stamp
        return stamp

    def _group(self, order: FakeOrder) -> list[FakeOrder]:
        parent = self._by_id[order.parent_id] if order.parent_id else order
        return [parent, *(self._by_id[i] for i in parent.leg_ids)]

    def _cancel(self, order: FakeOrder, now: dt.datetime) -> None:
        order.status = "canceled"
        order.canceled_at = now
        order.updated_at = now

    def _cancel_group(self, order: FakeOrder, now: dt.datetime) -> None:
        for member in self._group(order):
            if member.open:
                self._cancel(member, now)

    def _known_symbol(self, symbol: str) -> bool:
        return symbol in self._symbols or symbol in self._prices

    def _reserved_for_buys(self) -> Decimal:
        total = Decimal(0)
        for o in self._orders:
            if o.side != "buy" or not o.open or o.parent_id is not None:
                continue
            if o.notional is not None and o.filled_qty == 0:
                total += o.notional
                continue
            price = o.limit_price or self._prices.get(o.symbol) or o.stop_price or Decimal(0)
            total += ((o.qty or Decimal(0)) - o.filled_qty) * price
        return total

    def _held_for_sells(self, symbol: str) -> tuple[Decimal, list[str]]:
        held = Decimal(0)
        related: list[str] = []
        for o in self._orders:
            if o.symbol != symbol or o.side != "sell" or not o.open or o.qty is None:
                continue
            if o.parent_id is not None:
                parent = self._by_id[o.parent_id]
                if parent.side == "buy":  # a buy bracket's exits sell shares the entry has yet to buy
                    continue
                siblings = [self._by_id[i] for i in parent.leg_ids]
                if parent.order_class == "oco" and o is not siblings[0]:
                    continue  # an oco's two exits hold the same shares once
            held += o.qty - o.filled_qty
            related.append(o.id)
        return held, related

    def _buying_power(self) -> Decimal:
        return max(Decimal(0), self._cash - self._reserved_for_buys())

    def _equity(self) -> Decimal:
        return self._cash + sum((self._mark(p) * p.qty for p in self._positions.values()), Decimal(0))

    def _mark(self, p: FakePosition) -> Decimal:
        return self._prices.get(p.symbol, p.avg_entry_price)

    # -- JSON --------------------------------------------------------------------------------------------

    def _order_json(self, o: FakeOrder, *, nested: bool) -> dict[str, Any]:
        legs = (
            [self._order_json(self._by_id[i], nested=False) for i in o.leg_ids]
            if nested and o.leg_ids
            else None
        )
        return {
            "id": o.id,
            "client_order_id": o.client_order_id,
            "created_at": _ts(o.created_at),
            "updated_at": _ts(o.updated_at),
            "submitted_at": _ts(o.submitted_at),
            "filled_at": _ts(o.filled_at),
            "expired_at": None,
            "expires_at": None,
            "canceled_at": _ts(o.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": o.asset_id,
            "symbol": o.symbol,
            "asset_class": "us_equity",
            "notional": _dec(o.notional) if o.notional is not None and o.filled_qty == 0 else None,
            "qty": _dec(o.qty) if o.notional is None or o.filled_qty else None,
            "filled_qty": _dec(o.filled_qty),
            "filled_avg_price": _dec(o.filled_avg_price),
            "order_class": "" if o.order_class == "simple" else o.order_class,
            "order_type": o.type,
            "type": o.type,
            "side": o.side,
            "position_intent": ("buy_to_open" if o.side == "buy" else "sell_to_close"),
            "time_in_force": o.time_in_force,
            "limit_price": _dec(o.limit_price),
            "stop_price": _dec(o.stop_price),
            "status": o.status,
            "extended_hours": False,
            "legs": legs,
            "trail_percent": _dec(o.trail_percent),
            "trail_price": _dec(o.trail_price),
            "hwm": _dec(o.hwm),
            "subtag": None,
            "source": None,
        }

    def _position_json(self, p: FakePosition) -> dict[str, Any]:
        price = self._mark(p)
        market_value = price * p.qty
        unrealized = market_value - p.cost
        return {
            "asset_id": p.asset_id,
            "symbol": p.symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": _dec(p.qty),
            "qty_available": _dec(p.qty - self._held_for_sells(p.symbol)[0]),
            "avg_entry_price": _dec(p.avg_entry_price),
            "side": "long" if p.qty > 0 else "short",
            "market_value": _dec(market_value),
            "cost_basis": _dec(p.cost),
            "unrealized_pl": _dec(unrealized),
            "unrealized_plpc": _dec(
                (unrealized / p.cost).quantize(Decimal("0.0001")) if p.cost else Decimal(0)
            ),
            "unrealized_intraday_pl": _dec(unrealized),
            "unrealized_intraday_plpc": "0",
            "current_price": _dec(price),
            "lastday_price": _dec(price),
            "change_today": "0",
        }

    # -- routes ------------------------------------------------------------------------------------------

    def _install(self) -> None:
        add = self.server.add_route
        add("GET", "/v2/account", self._get_account, api="trading")
        add("GET", "/v2/clock", self._get_clock, api="trading")
        add("GET", "/v2/calendar", self._get_calendar, api="trading")
        add("POST", "/v2/orders", self._post_order, api="trading")
        add("GET", "/v2/orders", self._get_orders, api="trading")
        add("DELETE", "/v2/orders", self._delete_orders, api="trading")
        add("GET", "/v2/orders:by_client_order_id", self._get_order_by_client_id, api="trading")
        add("GET", "/v2/orders/{order_id}", self._get_order, api="trading")
        add("DELETE", "/v2/orders/{order_id}", self._delete_order, api="trading")
        add("GET", "/v2/positions", self._get_positions, api="trading")
        add("DELETE", "/v2/positions", self._delete_positions, api="trading")
        add("GET", "/v2/positions/{symbol}", self._get_position, api="trading")
        add("DELETE", "/v2/positions/{symbol}", self._delete_position, api="trading")
        add("GET", "/v2/account/activities", self._get_activities, api="trading")
        add("GET", "/v2/account/activities/{activity_type}", self._get_activities, api="trading")
        self.server.add_before_hook(self._rate_limit_hook)

    def _rate_limit_hook(self, method: str, path: str, key_id: str | None) -> FakeResponse | None:
        with self._lock:
            limit = self._rate_limit
            if limit is None:
                return None
            now = time.monotonic()
            window = self._rate_window.setdefault(key_id, collections.deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= limit:
                self.rate_limited += 1
                reset = int(time.time() + (window[0] + 60 - now)) + 1
                return FakeResponse(
                    429,
                    {"code": CODE_RATE_LIMIT, "message": "rate limit exceeded"},
                    {
                        "X-Ratelimit-Limit": str(limit),
                        "X-Ratelimit-Remaining": "0",
                        "X-Ratelimit-Reset": str(reset),
                    },
                )
            window.append(now)
            return None

    def _get_account(self, request: FakeRequest) -> dict[str, Any]:
        with self._lock:
            cash = self._cash
            buying_power = self._buying_power()
            long_value = sum(
                (self._mark(p) * p.qty for p in self._positions.values() if p.qty > 0), Decimal(0)
            )
            short_value = sum(
                (self._mark(p) * p.qty for p in self._positions.values() if p.qty < 0), Decimal(0)
            )
            equity = self._equity()
            last_equity = equity if self._last_equity is None else self._last_equity
        return {
            "id": self.account_uuid,
            "account_number": self.account_number,
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "currency": "USD",
            "cash": _dec(cash),
            "buying_power": _dec(buying_power),
            "regt_buying_power": _dec(buying_power),
            "non_marginable_buying_power": _dec(buying_power),
            "options_buying_power": _dec(buying_power),
            "equity": _dec(equity),
            "last_equity": _dec(last_equity),  # a string, as Alpaca sends it
            "portfolio_value": _dec(equity),
            "long_market_value": _dec(long_value),
            "short_market_value": _dec(short_value),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "multiplier": "1",
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "shorting_enabled": False,
            "created_at": "2024-01-02T15:00:00.000000Z",
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def _get_clock(self, request: FakeRequest) -> dict[str, Any]:
        now = self.now()
        is_open, next_open, next_close = market_clock(now)
        with self._lock:
            if self._halted:
                is_open = False
        return {
            "timestamp": _ny(now),
            "is_open": is_open,
            "next_open": _ny(next_open),
            "next_close": _ny(next_close),
        }

    def _get_calendar(self, request: FakeRequest) -> list[dict[str, Any]]:
        p = request.params
        s = _sessions()
        try:
            start = dt.date.fromisoformat(p["start"]) if p.get("start") else s.dates[0]
            end = dt.date.fromisoformat(p["end"]) if p.get("end") else s.dates[-1]
        except ValueError:
            raise FakeApiError(422, "invalid start or end (YYYY-MM-DD)", CODE_INVALID) from None
        lo = bisect.bisect_left(s.dates, start)
        hi = bisect.bisect_right(s.dates, end)
        out = []
        for i in range(lo, hi):
            settle = s.dates[i + 1] if i + 1 < len(s.dates) else s.dates[i] + dt.timedelta(days=1)
            out.append(
                {
                    "date": s.dates[i].isoformat(),
                    "open": s.opens[i].astimezone(NEW_YORK).strftime("%H:%M"),
                    "close": s.closes[i].astimezone(NEW_YORK).strftime("%H:%M"),
                    "session_open": "0400",
                    "session_close": "2000",
                    "settlement_date": settle.isoformat(),
                }
            )
        return out

    # -- orders ------------------------------------------------------------------------------------------

    def _post_order(self, request: FakeRequest) -> FakeResponse | dict[str, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise FakeApiError(400, "request body format is invalid", 40010000)
        cid = body.get("client_order_id")
        if cid is not None:
            with self._lock:
                self._submits[str(cid)] += 1
        with self._lock:
            fault = self._submit_faults.popleft() if self._submit_faults else None
        if fault is None:
            return self._create_order(body)
        if fault.kind == "stall":  # processed (before or after the wait), answered late
            if fault.created:
                answer = self._create_order(body)
                self.server.sleep(fault.seconds)
                return answer
            self.server.sleep(fault.seconds)
            return self._create_order(body)
        if fault.created:
            with contextlib.suppress(FakeApiError):  # whatever the server decided, the client never hears it
                self._create_order(body)
        if fault.kind == "drop":
            return FakeResponse(0, None, drop_connection=True)
        return FakeResponse(fault.status, _gateway_body(fault.status))

    def _create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        symbol = body.get("symbol")
        side = body.get("side")
        otype = body.get("type", body.get("order_type"))
        tif = body.get("time_in_force")
        order_class = body.get("order_class") or "simple"
        if not isinstance(symbol, str) or not symbol:
            raise FakeApiError(422, "symbol is required", CODE_INVALID)
        if side not in ("buy", "sell"):
            raise FakeApiError(422, f"invalid side {side!r}", CODE_INVALID)
        if otype not in ORDER_TYPES:
            raise FakeApiError(422, f"invalid order type {otype!r}", CODE_INVALID)
        if tif not in TIMES_IN_FORCE:
            raise FakeApiError(422, f"invalid time_in_force {tif!r}", CODE_INVALID)
        if order_class not in ORDER_CLASSES:
            raise FakeApiError(422, f"invalid order_class {order_class!r}", CODE_INVALID)
        if body.get("extended_hours"):
            raise FakeApiError(422, "extended hours orders are not supported by the fake", CODE_INVALID)
        qty = _to_decimal(body.get("qty"), "qty")
        notional = _to_decimal(body.get("notional"), "notional")
        if (qty is None) == (notional is None):
            raise FakeApiError(422, "qty or notional is required (not both)", CODE_INVALID)
        limit_price = _to_decimal(body.get("limit_price"), "limit_price")
        stop_price = _to_decimal(body.get("stop_price"), "stop_price")
        trail_price = _to_decimal(body.get("trail_price"), "trail_price")
        trail_percent = _to_decimal(body.get("trail_percent"), "trail_percent")
        take_profit = body.get("take_profit") or {}
        stop_loss = body.get("stop_loss") or {}
        tp_limit = _to_decimal(take_profit.get("limit_price"), "take_profit.limit_price")
        sl_stop = _to_decimal(stop_loss.get("stop_price"), "stop_loss.stop_price")
        sl_limit = _to_decimal(stop_loss.get("limit_price"), "stop_loss.limit_price")
        for name, price in (
            ("limit_price", limit_price),
            ("stop_price", stop_price),
            ("trail_price", trail_price),
            ("take_profit.limit_price", tp_limit),
            ("stop_loss.stop_price", sl_stop),
            ("stop_loss.limit_price", sl_limit),
        ):
            _check_tick(name, price)
        needs = {
            "limit": ("limit_price",),
            "stop": ("stop_price",),
            "stop_limit": ("limit_price", "stop_price"),
        }
        given = {"limit_price": limit_price, "stop_price": stop_price}
        for name in needs.get(otype, ()):
            if given[name] is None and not (otype == "limit" and order_class == "oco"):
                raise FakeApiError(422, f"{name} is required for {otype} orders", CODE_INVALID)
        if otype == "trailing_stop" and (trail_price is None) == (trail_percent is None):
            raise FakeApiError(422, "trail_price or trail_percent is required (not both)", CODE_INVALID)
        client_order_id = str(body.get("client_order_id") or uuid.uuid4())
        if len(client_order_id) > 48:
            raise FakeApiError(422, "client_order_id must be no more than 48 characters", CODE_INVALID)
        fractional = notional is not None or (qty is not None and qty != qty.to_integral_value())
        if fractional and (tif != "day" or order_class != "simple" or otype not in ("market", "limit")):
            raise FakeApiError(
                422, "fractional orders must be simple DAY market or limit orders", CODE_UNPROCESSABLE
            )
        if notional is not None and otype != "market":
            raise FakeApiError(422, "notional orders must be market orders", CODE_UNPROCESSABLE)
        if order_class in ("bracket", "oco") and (tp_limit is None or sl_stop is None):
            raise FakeApiError(422, f"{order_class} orders require take_profit and stop_loss", CODE_INVALID)
        if order_class == "oto" and (tp_limit is None) == (sl_stop is None):
            raise FakeApiError(422, "oto orders require take_profit or stop_loss", CODE_INVALID)
        if order_class == "bracket" and tif not in ("day", "gtc"):
            raise FakeApiError(422, "bracket orders must be day or gtc", CODE_UNPROCESSABLE)
        if order_class == "oco" and otype != "limit":
            raise FakeApiError(422, "oco orders must be limit orders", CODE_UNPROCESSABLE)

        with self._lock:
            if client_order_id in self._by_cid:
                raise FakeApiError(422, DUPLICATE_MESSAGE, CODE_INVALID)
            if not self._known_symbol(symbol):
                raise FakeApiError(422, f'asset "{symbol}" not found', CODE_INVALID)
            base = limit_price or self._prices.get(symbol)
            inverted = (
                tp_limit is not None
                and sl_stop is not None
                and (
                    (side == "buy" and tp_limit <= sl_stop)
                    or (side == "sell" and order_class == "bracket" and tp_limit >= sl_stop)
                )
            )
            if inverted:
                raise FakeApiError(
                    422,
                    "take_profit.limit_price must be > stop_loss.stop_price for a buy",
                    CODE_UNPROCESSABLE,
                )
            if order_class in ("bracket", "oto") and sl_stop is not None and base is not None:
                if side == "buy" and sl_stop > base - Decimal("0.01"):
                    raise FakeApiError(
                        422,
                        f"stop_loss.stop_price must be <= base_price - 0.01 (base {_dec(base)})",
                        CODE_UNPROCESSABLE,
                    )
                if side == "sell" and sl_stop < base + Decimal("0.01"):
                    raise FakeApiError(
                        422,
                        f"stop_loss.stop_price must be >= base_price + 0.01 (base {_dec(base)})",
                        CODE_UNPROCESSABLE,
                    )
            exit_side = "sell" if side == "buy" else "buy"
            if side == "buy" and order_class != "oco":
                price = limit_price or stop_price or self._prices.get(symbol) or Decimal(0)
                cost = notional if notional is not None else qty * price  # type: ignore[operator]
                buying_power = self._buying_power()
                if cost > buying_power:
                    raise _Forbidden(
                        "insufficient buying power", buying_power=_dec(buying_power), cost_basis=_dec(cost)
                    )
            else:
                selling = qty if qty is not None else notional / (self._prices.get(symbol) or Decimal(1))  # type: ignore[operator]
                pos = self._positions.get(symbol)
                existing = pos.qty if pos else Decimal(0)
                held, related = self._held_for_sells(symbol)
                available = max(Decimal(0), existing - held)
                if selling > available:
                    raise _Forbidden(
                        f"insufficient qty available for order (requested: {_dec(selling)}, available: {_dec(available)})",
                        available=_dec(available),
                        existing_qty=_dec(existing),
                        held_for_orders=_dec(held),
                        related_orders=related,
                        symbol=symbol,
                    )
            now = self.now()
            stamp = self._stamp(now)
            status = "new" if self.is_open() else "accepted"

            def make(
                cid: str,
                side_: str,
                type_: str,
                limit: Decimal | None,
                stop: Decimal | None,
                status_: str,
                klass: str,
                parent: str | None,
            ) -> FakeOrder:
                o = FakeOrder(
                    id=str(uuid.uuid4()),
                    client_order_id=cid,
                    symbol=symbol,
                    asset_id=_asset_id(symbol),
                    side=side_,
                    type=type_,
                    time_in_force=tif,
                    order_class=klass,
                    status=status_,
                    qty=qty,
                    notional=notional if parent is None else None,
                    limit_price=limit,
                    stop_price=stop,
                    trail_price=trail_price if parent is None else None,
                    trail_percent=trail_percent if parent is None else None,
                    created_at=stamp,
                    submitted_at=stamp,
                    updated_at=stamp,
                    seq=next(self._seq),
                    parent_id=parent,
                )
                self._orders.append(o)
                self._by_id[o.id] = o
                self._by_cid[o.client_order_id] = o
                return o

            if order_class == "oco":  # the take-profit limit is the parent, the stop its leg; both active
                parent = make(
                    client_order_id, side, "limit", tp_limit or limit_price, None, status, "oco", None
                )
                leg = make(
                    str(uuid.uuid4()),
                    side,
                    "stop_limit" if sl_limit else "stop",
                    sl_limit,
                    sl_stop,
                    status,
                    "oco",
                    parent.id,
                )
                parent.leg_ids.append(leg.id)
                return self._order_json(parent, nested=True)
            parent = make(client_order_id, side, otype, limit_price, stop_price, status, order_class, None)
            if tp_limit is not None and order_class in ("bracket", "oto"):
                leg = make(
                    str(uuid.uuid4()), exit_side, "limit", tp_limit, None, "held", order_class, parent.id
                )
                parent.leg_ids.append(leg.id)
            if sl_stop is not None and order_class in ("bracket", "oto"):
                leg = make(
                    str(uuid.uuid4()),
                    exit_side,
                    "stop_limit" if sl_limit else "stop",
                    sl_limit,
                    sl_stop,
                    "held",
                    order_class,
                    parent.id,
                )
                parent.leg_ids.append(leg.id)
            return self._order_json(parent, nested=True)

    def _get_orders(self, request: FakeRequest) -> list[dict[str, Any]]:
        p = request.params
        status = p.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise FakeApiError(422, f"invalid status {status!r}", CODE_INVALID)
        try:
            limit = int(p.get("limit", "50"))
        except ValueError:
            raise FakeApiError(422, "invalid limit", CODE_INVALID) from None
        if not 1 <= limit <= MAX_ORDERS_LIMIT:
            raise FakeApiError(422, f"limit must be between 1 and {MAX_ORDERS_LIMIT}", CODE_INVALID)
        direction = p.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise FakeApiError(422, f"invalid direction {direction!r}", CODE_INVALID)
        after = _parse_time(p, "after")
        until = _parse_time(p, "until")
        nested = _bool_param(p, "nested")
        side = p.get("side")
        symbols = {s for s in p.get("symbols", "").split(",") if s}
        with self._lock:
            candidates = [o for o in self._orders if not (nested and o.parent_id)]

            def matches(o: FakeOrder) -> bool:
                members = self._group(o) if nested and o.leg_ids else [o]
                any_open = any(m.open for m in members)
                if status == "open" and not any_open:
                    return False
                if status == "closed" and any_open:
                    return False
                if after is not None and not o.submitted_at > after:
                    return False
                if until is not None and not o.submitted_at < until:
                    return False
                if side and o.side != side:
                    return False
                return not symbols or o.symbol in symbols

            rows = sorted(
                (o for o in candidates if matches(o)),
                key=lambda o: (o.submitted_at, o.seq),
                reverse=direction == "desc",
            )
            return [self._order_json(o, nested=nested) for o in rows[:limit]]

    def _find(self, order_id: str) -> FakeOrder:
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise FakeApiError(422, "order_id is missing", CODE_INVALID) from None
        order = self._by_id.get(order_id)
        if order is None:
            raise FakeApiError(404, "order not found", CODE_NOT_FOUND)
        return order

    def _get_order(self, request: FakeRequest) -> dict[str, Any]:
        with self._lock:
            order = self._find(request.path_params["order_id"])
            return self._order_json(order, nested=_bool_param(request.params, "nested"))

    def _get_order_by_client_id(self, request: FakeRequest) -> dict[str, Any]:
        cid = request.params.get("client_order_id", "")
        with self._lock:
            order = self._by_cid.get(cid)
            if order is None:
                raise FakeApiError(404, "order not found", CODE_NOT_FOUND)
            return self._order_json(order, nested=True)

    def _delete_order(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            order = self._find(request.path_params["order_id"])
            if not order.open:
                raise FakeApiError(422, f'order is already in "{order.status}" state', CODE_UNPROCESSABLE)
            self._cancel_group(order, self.now())
        return FakeResponse(204, None)

    def _delete_orders(self, request: FakeRequest) -> FakeResponse:
        """207: one item per open order cancelled (a bracket's open legs each have theirs)."""
        with self._lock:
            now = self.now()
            items = []
            for o in list(self._orders):
                if o.open:
                    self._cancel(o, now)
                    items.append({"id": o.id, "status": 200, "body": self._order_json(o, nested=False)})
        return FakeResponse(207, items)

    # -- positions ---------------------------------------------------------------------------------------

    def _get_positions(self, request: FakeRequest) -> list[dict[str, Any]]:
        with self._lock:
            return [self._position_json(p) for _, p in sorted(self._positions.items())]

    def _get_position(self, request: FakeRequest) -> dict[str, Any]:
        with self._lock:
            pos = self._positions.get(request.path_params["symbol"])
            if pos is None:
                raise FakeApiError(404, "position does not exist", CODE_NOT_FOUND)
            return self._position_json(pos)

    def _closing_order(self, pos: FakePosition, qty: Decimal) -> FakeOrder:
        held, related = self._held_for_sells(pos.symbol)
        available = abs(pos.qty) - held
        if qty > available:
            raise _Forbidden(
                f"insufficient qty available for order (requested: {_dec(qty)}, available: {_dec(available)})",
                available=_dec(available),
                existing_qty=_dec(pos.qty),
                held_for_orders=_dec(held),
                related_orders=related,
                symbol=pos.symbol,
            )
        now = self.now()
        stamp = self._stamp(now)
        o = FakeOrder(
            id=str(uuid.uuid4()),
            client_order_id=str(uuid.uuid4()),
            symbol=pos.symbol,
            asset_id=pos.asset_id,
            side="sell" if pos.qty > 0 else "buy",
            type="market",
            time_in_force="day",
            order_class="simple",
            status="new" if self.is_open() else "accepted",
            qty=qty,
            notional=None,
            limit_price=None,
            stop_price=None,
            trail_price=None,
            trail_percent=None,
            created_at=stamp,
            submitted_at=stamp,
            updated_at=stamp,
            seq=next(self._seq),
        )
        self._orders.append(o)
        self._by_id[o.id] = o
        self._by_cid[o.client_order_id] = o
        return o

    def _delete_position(self, request: FakeRequest) -> dict[str, Any]:
        with self._lock:
            pos = self._positions.get(request.path_params["symbol"])
            if pos is None:
                raise FakeApiError(404, "position does not exist", CODE_NOT_FOUND)
            qty = abs(pos.qty)
            if request.params.get("qty"):
                qty = _to_decimal(request.params["qty"], "qty")  # type: ignore[assignment]
            elif request.params.get("percentage"):
                pct = _to_decimal(request.params["percentage"], "percentage")
                if pct > 100:  # type: ignore[operator]
                    raise FakeApiError(422, "percentage must be between 0 and 100", CODE_INVALID)
                qty = (abs(pos.qty) * pct / 100).quantize(_NS, rounding=ROUND_DOWN)  # type: ignore[operator]
            return self._order_json(self._closing_order(pos, qty), nested=False)

    def _delete_positions(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            now = self.now()
            if _bool_param(request.params, "cancel_orders"):
                for o in self._orders:
                    if o.parent_id is None and any(m.open for m in self._group(o)):
                        self._cancel_group(o, now)
            items = []
            for symbol, pos in sorted(self._positions.items()):
                failure = self._close_failures.get(symbol)
                if failure is not None:
                    status, code, message = failure
                    items.append(
                        {
                            "symbol": symbol,
                            "status": status,
                            "body": {
                                "code": code,
                                "message": message,
                                "available": "0",
                                "existing_qty": _dec(pos.qty),
                                "held_for_orders": _dec(pos.qty),
                                "symbol": symbol,
                            },
                        }
                    )
                    continue
                try:
                    order = self._closing_order(pos, abs(pos.qty))
                except _Forbidden as exc:
                    items.append({"symbol": symbol, "status": 403, "body": exc.response().body})
                    continue
                items.append(
                    {
                        "symbol": symbol,
                        "status": 200,
                        "order_id": order.id,
                        "body": self._order_json(order, nested=False),
                    }
                )
        return FakeResponse(207, items)

    # -- activities --------------------------------------------------------------------------------------

    def _get_activities(self, request: FakeRequest) -> list[dict[str, Any]]:
        p = request.params
        kind = request.path_params.get("activity_type")
        types = (
            [kind]
            if kind
            else [t for t in p.get("activity_types", "").split(",") if t] or list(ACTIVITY_TYPES)
        )
        bad = [t for t in types if t not in ACTIVITY_TYPES]
        if bad:
            raise FakeApiError(422, f"invalid activity type {bad[0]!r}", CODE_INVALID)
        direction = p.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise FakeApiError(422, f"invalid direction {direction!r}", CODE_INVALID)
        try:
            page_size = int(p.get("page_size", str(MAX_ACTIVITIES_PAGE)))
        except ValueError:
            raise FakeApiError(422, "invalid page_size", CODE_INVALID) from None
        if not 1 <= page_size <= MAX_ACTIVITIES_PAGE:
            raise FakeApiError(422, f"page_size must be between 1 and {MAX_ACTIVITIES_PAGE}", CODE_INVALID)
        after = _parse_time(p, "after")
        until = _parse_time(p, "until")
        date = p.get("date")
        token = p.get("page_token")
        with self._lock:
            rows = [a for a in self._activities if "FILL" in types]
        if date:
            day = dt.date.fromisoformat(date)
            rows = [a for a in rows if a["_time"].astimezone(NEW_YORK).date() == day]
        if after is not None:
            rows = [a for a in rows if a["_time"] > after]
        if until is not None:
            rows = [a for a in rows if a["_time"] < until]
        rows.sort(key=lambda a: a["id"], reverse=direction == "desc")
        if token:
            rows = [a for a in rows if (a["id"] > token if direction == "asc" else a["id"] < token)]
        out = []
        for a in rows[:page_size]:
            row = {k: v for k, v in a.items() if not k.startswith("_")}
            if self.activities_include_account_id:
                row["account_id"] = self.account_uuid
            out.append(row)
        return out


class _Forbidden(FakeApiError):
    """403 code 40310000 with Alpaca's extra body fields (buying_power, cost_basis / available, ...)."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(403, message, CODE_FORBIDDEN)
        self.fields = fields

    def response(self) -> FakeResponse:
        return FakeResponse(403, {**self.fields, "code": self.code, "message": self.message})


def _asset_id(symbol: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-fake/asset/{symbol}"))


def _gateway_body(status: int) -> str | dict[str, Any]:
    if status == 504:  # a gateway's HTML page, not JSON (alpaca-notes 3.1)
        return "<html><body><h1>504 Gateway Time-out</h1></body></html>"
    if status == 429:
        return {"code": CODE_RATE_LIMIT, "message": "rate limit exceeded"}
    return {"message": f"http {status}"}


def minimum_seconds(requests: int, per_minute: int) -> float:
    """The least time `requests` requests take under `per_minute` in any 60 s window (a burst per minute)."""
    return 60.0 * max(0, math.ceil(requests / per_minute) - 1)
