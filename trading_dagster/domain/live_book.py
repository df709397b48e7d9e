"""The trading book as the broker reports it, in the planner's terms, and the checks on it (decision 0005,
section 4). No Dagster, no I/O: the execution assets read the broker and pass what it said.

* `book_from_snapshot`: the broker's cash, positions and open orders plus the month's buy fills become the
  `PortfolioState` the planner and the risk engine size D's orders on (the same planner as the backtest).
* `order_requests`: the approved order rows of session D as broker requests (market DAY orders; a bracket
  when the row carries exit levels).
* `reconcile`: the broker's positions against what the positions before submission plus the recorded fills
  say they must be: any difference is a mismatch (a fill we missed or counted twice, a trade nobody here
  made, a corporate action).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

import polars as pl

from trading_dagster.domain.broker_records import BrokerFill, BrokerOrder, BrokerSnapshot, OrderRequest
from trading_dagster.domain.execution import round_price
from trading_dagster.domain.orders import as_decimal
from trading_dagster.domain.portfolio import PortfolioState

T = TypeVar("T")

NEW_YORK = ZoneInfo("America/New_York")
KILL_SWITCH = "KILL_SWITCH"  # reason code of a buy the kill switch held back (ours, not the broker's)


def session_start(session: dt.date) -> dt.datetime:
    """00:00 New York of `session`, in UTC: every order of signal session D is submitted after it (on D+1),
    so one listing from here finds them all."""
    return dt.datetime.combine(session, dt.time(0), NEW_YORK).astimezone(dt.UTC)


def id_prefix(session: dt.date) -> str:
    """The readable start every client order id of signal session D has (`orders.client_order_id`)."""
    return f"td-{session:%Y%m%d}-"


def _whole(qty: Decimal) -> int:
    """Whole shares (the planner sizes in shares; a fractional remainder stays at the broker, untouched)."""
    return int(qty.to_integral_value(rounding=ROUND_FLOOR)) if qty > 0 else -int((-qty).to_integral_value(rounding=ROUND_FLOOR))


def book_from_snapshot(
    snapshot: BrokerSnapshot,
    month_fills: Iterable[BrokerFill],
    fill_session: dt.date,
    last_closes: Mapping[str, float],
) -> PortfolioState:
    """The planner's start state for session D from the broker (read just now).

    Cash is the broker's cash less what its open buy orders may spend (their limit price, else the last
    close; unknown prices reserve nothing and are named by the caller); positions are whole shares less
    what open sell orders already hold; `monthly_buys` counts the shares bought in `fill_session`'s month
    (D+1's: the quota's month) from the broker's fills, so the quota holds across runs and manual trades."""
    held_for_sells: dict[str, Decimal] = {}
    reserved = Decimal(0)
    for order in snapshot.open_orders:
        remaining = (order.qty or Decimal(0)) - order.filled_qty
        if order.side == "sell":
            held_for_sells[order.symbol] = held_for_sells.get(order.symbol, Decimal(0)) + remaining
        else:
            price = order.limit_price or (
                as_decimal(last_closes[order.symbol]) if order.symbol in last_closes else None
            )
            if order.notional is not None:
                reserved += order.notional
            elif price is not None:
                reserved += remaining * price
    positions = {}
    for symbol, position in snapshot.positions.items():
        qty = _whole(position.qty - held_for_sells.get(symbol, Decimal(0)))
        if qty > 0:
            positions[symbol] = (qty, position.avg_entry_price)
    month = (fill_session.year, fill_session.month)
    monthly: dict[tuple[str, int, int], int] = {}
    for fill in month_fills:
        day = fill.transaction_time.astimezone(NEW_YORK).date()
        if fill.side == "buy" and (day.year, day.month) == month:
            key = (fill.symbol, day.year, day.month)
            monthly[key] = monthly.get(key, 0) + math.ceil(fill.qty)
    return PortfolioState(cash=max(snapshot.account.cash - reserved, Decimal(0)), positions=positions, monthly_buys=monthly)


def hold_buys(orders: pl.DataFrame, engaged: bool) -> pl.DataFrame:
    """With the kill switch engaged, every approved or pending buy becomes a denial (KILL_SWITCH); sells
    (exits) pass. Unchanged otherwise."""
    if not engaged or orders.is_empty():
        return orders
    held = (pl.col("side") == "buy") & pl.col("status").is_in(["approved", "pending_approval"])
    return orders.with_columns(
        status=pl.when(held).then(pl.lit("denied")).otherwise(pl.col("status")),
        qty=pl.when(held).then(pl.lit(0, dtype=pl.Int64)).otherwise(pl.col("qty")),
        reason_code=pl.when(held).then(pl.lit(KILL_SWITCH)).otherwise(pl.col("reason_code")),
    )


def _price(value: float | None) -> Decimal | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else as_decimal(value)


ENTRY_ORDER_TYPES = ("market", "limit")
ENTRY_TIMES_IN_FORCE = ("day", "gtc", "cls")  # not "opg": Alpaca refuses opg orders sent 9:28-19:00 ET


@dataclass(frozen=True)
class EntryStyle:
    """How the trading book sends an order (`[execution]`): a market order, or a limit order at the signal's
    close moved `limit_offset_bps` in the trader's disfavour (a buy may pay up to close x (1 + bps), a sell
    takes at least close x (1 - bps)), on a valid tick; time in force `day` (default), `gtc` or `cls` (the
    closing auction). Orders with exit legs are GTC brackets/OTOs whatever the style says."""

    order_type: str = "market"
    limit_offset_bps: Decimal = Decimal(0)
    time_in_force: str = "day"

    def __post_init__(self) -> None:
        if self.order_type not in ENTRY_ORDER_TYPES:
            raise ValueError(f"order_type must be one of {ENTRY_ORDER_TYPES}, not {self.order_type!r}")
        if self.time_in_force not in ENTRY_TIMES_IN_FORCE:
            raise ValueError(f"time_in_force must be one of {ENTRY_TIMES_IN_FORCE}, not {self.time_in_force!r}")
        object.__setattr__(self, "limit_offset_bps", as_decimal(self.limit_offset_bps))
        if not Decimal(0) <= self.limit_offset_bps < Decimal(10_000):
            raise ValueError(f"limit_offset_bps must be in [0, 10000), not {self.limit_offset_bps}")

    def limit_price(self, side: str, ref: Decimal) -> Decimal:
        """The limit for a `side` order on a signal close of `ref`, on the tick (cents at or above $1,
        hundredths of a cent below), rounded toward the close: never more generous than the offset."""
        factor = Decimal(1) + (self.limit_offset_bps / Decimal(10_000)) * (1 if side == "buy" else -1)
        return round_price(ref * factor, ROUND_FLOOR if side == "buy" else ROUND_CEILING)


def order_requests(orders: pl.DataFrame, style: EntryStyle | None = None) -> list[OrderRequest]:
    """Approved rows as requests in the `style` (default: a market DAY order for `qty` shares); a buy whose
    row carries exit levels is a bracket (both `take_profit` and `stop_loss`) or an OTO (one of them), GTC so
    the exits outlive the entry's day (Alpaca allows day or gtc for these)."""
    style = style or EntryStyle()
    approved = orders.filter(pl.col("status") == "approved")
    out = []
    has_exits = {"take_profit", "stop_loss"} <= set(orders.columns)
    for row in approved.iter_rows(named=True):
        tp = _price(row.get("take_profit")) if has_exits else None
        sl = _price(row.get("stop_loss")) if has_exits else None
        order_class = "simple"
        if row["side"] == "buy" and tp is not None and sl is not None:
            order_class = "bracket"
        elif row["side"] == "buy" and (tp is not None or sl is not None):
            order_class = "oto"
        else:
            tp = sl = None
        ref = _price(row["ref_price"])
        limit = style.limit_price(row["side"], ref) if style.order_type == "limit" and ref is not None else None
        out.append(
            OrderRequest(
                client_order_id=row["client_order_id"],
                session=row["session"],
                strategy=row["strategy"],
                symbol=row["symbol"],
                side=row["side"],
                qty=Decimal(int(row["qty"])),
                type="limit" if limit is not None else "market",
                limit_price=limit,
                time_in_force="gtc" if order_class != "simple" else style.time_in_force,  # type: ignore[arg-type]
                order_class=order_class,  # type: ignore[arg-type]
                take_profit=tp,
                stop_loss=sl,
            )
        )
    return out


@dataclass(frozen=True)
class Mismatch:
    """One line of a reconciliation that does not agree: `item` is a symbol's position (or "cash");
    `ledger` what the positions before plus the recorded fills say, `broker` what the broker holds."""

    item: str
    ledger: Decimal | None
    broker: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        if self.ledger is None or self.broker is None:
            return None
        return self.broker - self.ledger

    def describe(self) -> str:
        return f"{self.item}: the broker holds {self.broker}, the ledger says {self.ledger}"


def expected_positions(before: Mapping[str, Decimal], fills: Iterable[BrokerFill]) -> dict[str, Decimal]:
    """Positions before submission plus the fills since (buys add, sells subtract)."""
    out = dict(before)
    for fill in fills:
        sign = 1 if fill.side == "buy" else -1
        out[fill.symbol] = out.get(fill.symbol, Decimal(0)) + sign * fill.qty
    return {s: q for s, q in out.items() if q != 0}


def reconcile(expected: Mapping[str, Decimal], actual: Mapping[str, Decimal]) -> list[Mismatch]:
    """Every symbol whose quantity differs, sorted."""
    return [
        Mismatch(s, expected.get(s, Decimal(0)), actual.get(s, Decimal(0)))
        for s in sorted(set(expected) | set(actual))
        if expected.get(s, Decimal(0)) != actual.get(s, Decimal(0))
    ]


def our_orders(orders: Sequence[BrokerOrder], session: dt.date) -> list[BrokerOrder]:
    """The broker's orders that are session D's (by the client order id's readable prefix)."""
    prefix = id_prefix(session)
    return [o for o in orders if o.client_order_id.startswith(prefix)]


CASH_TOLERANCE_PER_EXECUTION = Decimal("0.01")  # a cent of rounding per execution


def cash_mismatch(before: Decimal, fills: Sequence[BrokerFill], broker_cash: Decimal) -> Mismatch | None:
    """The broker's cash against the cash before D's orders plus what D's fills did to it, within a cent per
    execution; None when they agree. A difference is fees (Alpaca's SEC/TAF fees on sells), a dividend, a
    transfer or a trade nobody here made: worth a look, never a reason to stop trading by itself."""
    expected = before + cash_change(fills)
    if abs(broker_cash - expected) <= CASH_TOLERANCE_PER_EXECUTION * max(1, len(fills)):
        return None
    return Mismatch("cash", expected, broker_cash)


def cash_change(fills: Iterable[BrokerFill]) -> Decimal:
    """What the fills did to cash: sells add qty x price, buys subtract it, commissions subtract."""
    total = Decimal(0)
    for fill in fills:
        amount = fill.qty * fill.price
        total += amount if fill.side == "sell" else -amount
        total -= fill.commission
    return total


def consistent_read(
    read_fills: Callable[[], Sequence[BrokerFill]], read_rest: Callable[[], T], attempts: int = 3
) -> tuple[list[BrokerFill], T, bool]:
    """Read the broker's executions, then the rest (orders, positions, cash), then the executions again, until
    no execution arrived in between (at most `attempts` times): (fills, rest, stable).

    A live account fills while we read it: a fill between the read of the orders and of the executions, or of
    the executions and the positions, makes the snapshot disagree with itself and the reconciliation report a
    mismatch that is only timing. Executions only ever grow, so equal id sets before and after mean the rest
    was read in between with nothing new. Unstable after `attempts`: the last read, flagged."""
    fills = list(read_fills())
    rest = read_rest()
    for _ in range(attempts):
        again = list(read_fills())
        if {f.execution_id for f in again} == {f.execution_id for f in fills}:
            return again, rest, True
        fills = again
        rest = read_rest()
    return fills, rest, False
