"""What crosses the boundary to a real broker: order requests, the broker's orders, fills, positions,
account, clock, and the results of submit / cancel / close (decision 0005).

Immutable records (NautilusTrader style), money exact (`Decimal`), times timezone-aware UTC. No Dagster, no
HTTP: `resources/brokers/` turns these into a broker's API calls (the built-in paper broker, Alpaca) and back.

A request's `client_order_id` is the deterministic id of `orders.client_order_id` (account, signal session,
symbol, strategy, side), so a retried run, a re-materialized partition or two runs at once ask for the same
id, and the broker's "client_order_id must be unique" turns a second submission into a lookup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

OrderType = Literal["market", "limit", "stop", "stop_limit", "trailing_stop"]
TimeInForce = Literal["day", "gtc", "opg", "cls"]
OrderClass = Literal["simple", "bracket", "oto", "oco"]
ORDER_TYPES: tuple[str, ...] = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIMES_IN_FORCE: tuple[str, ...] = ("day", "gtc", "opg", "cls")
ORDER_CLASSES: tuple[str, ...] = ("simple", "bracket", "oto", "oco")

# Alpaca's order statuses (alpaca-notes 4.1); a final order never changes again
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected"})
OPEN_STATUSES = frozenset(
    {
        "new", "partially_filled", "done_for_day", "pending_cancel", "pending_replace", "pending_review",
        "accepted", "pending_new", "accepted_for_bidding", "stopped", "suspended", "calculated", "held",
    }
)

SubmitOutcome = Literal["submitted", "already_existed", "rejected"]


class BrokerError(RuntimeError):
    """A broker call failed in a way the caller cannot act on (network down, bad keys, a malformed reply).
    The message names the call and the broker's code; it never contains a secret."""


class LiveTradingRefused(BrokerError):
    """Live trading was asked for without the explicit opt-in, or a stale / past session would reach a real
    account."""


def _positive(name: str, value: Decimal | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class OrderRequest:
    """One order we want the broker to hold. Exactly one of `qty` (shares; fractional where the broker
    allows: DAY market/limit orders) and `notional` (USD; DAY market orders).

    Prices follow the order type (limit / stop / stop_limit / trailing_stop by `trail_price` xor
    `trail_percent`). `order_class` bracket needs both `take_profit` (the exit's limit price) and `stop_loss`
    (its stop price, optional `stop_loss_limit`); oto one of them; oco both. `session` and `strategy` are ours
    (the signal session D and the strategy), carried for records, never sent."""

    client_order_id: str
    session: dt.date
    strategy: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: Decimal | None = None
    notional: Decimal | None = None
    type: OrderType = "market"
    time_in_force: TimeInForce = "day"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    order_class: OrderClass = "simple"
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    stop_loss_limit: Decimal | None = None

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"{self.client_order_id}: side must be 'buy' or 'sell', got {self.side!r}")
        if (self.qty is None) == (self.notional is None):
            raise ValueError(f"{self.client_order_id}: give exactly one of qty and notional")
        for name in ("qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent",
                     "take_profit", "stop_loss", "stop_loss_limit"):
            _positive(f"{self.client_order_id}: {name}", getattr(self, name))
        if self.type not in ORDER_TYPES:
            raise ValueError(f"{self.client_order_id}: type must be one of {ORDER_TYPES}, got {self.type!r}")
        if self.time_in_force not in TIMES_IN_FORCE:
            raise ValueError(
                f"{self.client_order_id}: time_in_force must be one of {TIMES_IN_FORCE}, got {self.time_in_force!r}"
            )
        if self.order_class not in ORDER_CLASSES:
            raise ValueError(f"{self.client_order_id}: order_class must be one of {ORDER_CLASSES}")
        needs = {
            "limit": ("limit_price",),
            "stop": ("stop_price",),
            "stop_limit": ("stop_price", "limit_price"),
        }.get(self.type, ())
        missing = [n for n in needs if getattr(self, n) is None]
        if self.type == "limit" and self.order_class == "oco":
            missing = []
        if missing:
            raise ValueError(f"{self.client_order_id}: a {self.type} order needs {', '.join(missing)}")
        if self.type == "trailing_stop" and (self.trail_price is None) == (self.trail_percent is None):
            raise ValueError(f"{self.client_order_id}: a trailing stop needs trail_price xor trail_percent")
        if self.order_class in ("bracket", "oco") and (self.take_profit is None or self.stop_loss is None):
            raise ValueError(f"{self.client_order_id}: a {self.order_class} order needs take_profit and stop_loss")
        if self.order_class == "oto" and (self.take_profit is None) == (self.stop_loss is None):
            raise ValueError(f"{self.client_order_id}: an oto order needs exactly one of take_profit and stop_loss")
        fractional = self.notional is not None or (self.qty is not None and self.qty != self.qty.to_integral_value())
        if fractional and (self.time_in_force != "day" or self.order_class != "simple"):
            raise ValueError(f"{self.client_order_id}: fractional and notional orders must be simple DAY orders")


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's order as last seen (a snapshot: poll again for news). `filled_qty` is cumulative and
    `filled_avg_price` volume-weighted (None before the first fill); `legs` are a bracket's exits."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    status: str
    qty: Decimal | None
    notional: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    submitted_at: dt.datetime
    updated_at: dt.datetime
    filled_at: dt.datetime | None = None
    canceled_at: dt.datetime | None = None
    order_class: str = "simple"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    legs: tuple[BrokerOrder, ...] = ()

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class BrokerFill:
    """One execution (a fill or a partial fill) of an order: Alpaca's FILL activity, or the paper
    broker's. `execution_id` is unique per execution, so recording a fill twice is detectable."""

    execution_id: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    transaction_time: dt.datetime
    cum_qty: Decimal | None = None
    leaves_qty: Decimal | None = None
    commission: Decimal = Decimal(0)  # what the broker charged for it (Alpaca: none on US equities)


@dataclass(frozen=True)
class BrokerPosition:
    symbol: str
    qty: Decimal  # negative for a short
    avg_entry_price: Decimal
    market_value: Decimal | None = None
    current_price: Decimal | None = None


@dataclass(frozen=True)
class BrokerAccount:
    """The account now. `last_equity` is the equity at the previous session's close (Alpaca's
    `last_equity`; the paper broker's replay), the base of the day's P&L; None when the broker gives none."""

    account_id: str
    status: str
    cash: Decimal
    buying_power: Decimal
    equity: Decimal
    trading_blocked: bool = False
    last_equity: Decimal | None = None


@dataclass(frozen=True)
class BrokerClock:
    """What "now" is, from the broker: the time, whether the market is open, the next open and close."""

    timestamp: dt.datetime
    is_open: bool
    next_open: dt.datetime
    next_close: dt.datetime


@dataclass(frozen=True)
class SubmitResult:
    """What became of one request: `submitted` (new at the broker), `already_existed` (the id was there:
    an earlier run, a retry after a timeout or a 504, a 422 duplicate), or `rejected` (the broker refused
    it: `code` and `message` are the broker's, e.g. 40310000 insufficient buying power)."""

    request: OrderRequest
    outcome: SubmitOutcome
    order: BrokerOrder | None = None
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class CancelResult:
    order_id: str
    ok: bool
    status: int  # the per-item HTTP status of a 207 (200 ok), or 200/404/422 for a single cancel
    message: str | None = None


@dataclass(frozen=True)
class CloseResult:
    """One item of close-all-positions' 207: `order` is the closing market order when ok."""

    symbol: str
    ok: bool
    status: int
    order: BrokerOrder | None = None
    message: str | None = None


@dataclass(frozen=True)
class BrokerSnapshot:
    """Account, positions and open orders read together (for planning and reconciliation)."""

    clock: BrokerClock
    account: BrokerAccount
    positions: Mapping[str, BrokerPosition] = field(default_factory=dict)
    open_orders: tuple[BrokerOrder, ...] = ()
