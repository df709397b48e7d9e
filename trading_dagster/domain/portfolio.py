"""Portfolio state derived from fills, and the order planner that walks a window of sessions.

The portfolio is path dependent: the orders of session D are sized on the book after D's open fills,
which are the fills of D-1's orders. `plan_orders` reproduces that loop in pure code: at each session it
fills what is pending at the open with exactly the fill model the paper broker uses
(`execution.execute_open`), then sizes and risk-checks the session's signals at the close. Driving the
paper broker one session at a time therefore yields the same orders and fills as planning a whole window.

Book events (splits, delistings, renames: `book_events.py`) change the book without a trade. They apply
before the fills of their session, through one function, `apply_book_events`, which the planner, the paper
broker and mark-to-market all call; `LastCloses` keeps the marks in the book's share basis across them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

import numpy as np
import polars as pl

from trading_dagster.domain import bulk_planner
from trading_dagster.domain.book_events import (
    BookEvent,
    Delisting,
    Rename,
    Split,
    event_order,
    events_between,
)
from trading_dagster.domain.execution import (
    CENT,
    CommissionModel,
    SlippageModel,
    buy_cost,
    execute_open,
    spreads_by_session,
)
from trading_dagster.domain.exits import (
    ExitLevels,
    ExitLot,
    ExitLots,
    entry_id_of,
    execute_exits,
    exit_levels,
    is_exit_id,
    trim_lots,
    with_atr,
)
from trading_dagster.domain.orders import (
    Fill,
    Order,
    OrderEvent,
    OrderRow,
    as_decimal,
    order_ids_for,
    order_row,
    order_rows_to_frame,
    orders_from_frame,
    orders_to_frame,
)
from trading_dagster.domain.quantity import WHOLE, Qty, ShareRule, rule_of
from trading_dagster.domain.risk import (
    EarlyDenial,
    OrderIntent,
    PreTradeControl,
    RiskConfig,
    RiskContext,
    check_order,
    default_controls,
    estimated_buy_cost,
    fill_notional,
    size_order,
)

MonthKey = tuple[str, int, int]  # (symbol, year, month)


class Position(NamedTuple):
    """Shares held and average cost per share, buy commissions included (the tax-lot convention), so
    that equity - initial cash == realized + unrealized P&L."""

    qty: Qty
    avg_cost: Decimal


def fill_apply_order(fill: Fill) -> tuple[dt.date, int, str]:
    """Canonical order to apply fills in: by session, sells before buys (as the open works them), then id;
    a session's exit fills (stop-loss / take-profit legs, `exits.is_exit_id`) after its open's fills.

    Every consumer (planner, broker replay, mark-to-market) applies fills in this order, so the Decimal
    results (average costs, realized P&L) are identical whoever computes them.
    """
    rank = 2 if is_exit_id(fill.client_order_id) else 0 if fill.side == "sell" else 1
    return (fill.session, rank, fill.client_order_id)


@dataclass(frozen=True)
class PortfolioState:
    """Cash, positions, realized P&L and the month's purchases: everything risk needs, all from fills.

    `monthly_buys` counts shares bought per (symbol, year, month) of the fill session; only months from
    the latest applied fill's month on are kept (older months can never constrain a future order).
    `exits` are the positions' exit lots (`exits.ExitLot`: one per filled entry that had exit levels, oldest
    first; empty without stop-loss / take-profit): they are what a later run needs to fill the exits, so a
    book that persists a state must persist them too (`exits.lots_to_records`).
    `shares` is the book's share rule (`quantity.ShareRule`): whole shares (ints, the trading book's only rule)
    or fractional ones (Decimals to 1e-9, `[backtest] shares = "fractional"`); the quantities given are put in
    its type, and a split rounds by it.
    Treat the mappings as read-only; every update returns a new state.
    """

    cash: Decimal
    positions: Mapping[str, Position] = field(default_factory=dict)
    realized_pnl: Decimal = Decimal(0)
    monthly_buys: Mapping[MonthKey, Qty] = field(default_factory=dict)
    exits: ExitLots = field(default_factory=dict)
    shares: ShareRule = WHOLE

    def __post_init__(self) -> None:
        rule = self.shares
        object.__setattr__(self, "cash", as_decimal(self.cash))
        object.__setattr__(self, "realized_pnl", as_decimal(self.realized_pnl))
        object.__setattr__(
            self, "positions", {s: Position(rule.qty(p[0]), as_decimal(p[1])) for s, p in self.positions.items()}
        )
        monthly = dict(self.monthly_buys)
        exits = {s: tuple(ExitLot(*lot) for lot in lots) for s, lots in self.exits.items() if lots}
        if rule.fractional:  # Decimals to 1e-9 (from ints, floats or exact text)
            monthly = {k: rule.qty(n) for k, n in monthly.items()}
            exits = {s: tuple(lot._replace(qty=rule.qty(lot.qty)) for lot in lots) for s, lots in exits.items()}
        object.__setattr__(self, "monthly_buys", monthly)
        object.__setattr__(self, "exits", exits)

    @classmethod
    def initial(cls, cash: Decimal | int | str, shares: ShareRule = WHOLE) -> PortfolioState:
        return cls(cash=as_decimal(cash), shares=shares)

    def in_shares(self, shares: ShareRule) -> PortfolioState:
        """This book under the rule `shares`: the same book when it has it; whole -> fractional turns every
        quantity into a Decimal; fractional -> whole needs whole quantities (else a ValueError)."""
        if shares == self.shares:
            return self
        if not shares.fractional:
            odd = sorted(s for s, p in self.positions.items() if p.qty != int(p.qty))
            if odd:
                raise ValueError(f"a fractional book holds fractions of {', '.join(odd)}: not a whole-share book")
        return PortfolioState(
            self.cash, dict(self.positions), self.realized_pnl, dict(self.monthly_buys), dict(self.exits), shares
        )

    @classmethod
    def _computed(
        cls,
        cash: Decimal,
        positions: dict[str, Position],
        realized_pnl: Decimal,
        monthly_buys: dict[MonthKey, Qty],
        exits: ExitLots,
        shares: ShareRule = WHOLE,
    ) -> PortfolioState:
        """A state from values `apply_fills` computed itself: Decimal arithmetic on finite Decimals, quantities
        of the `shares` rule, fresh dicts, i.e. exactly what `__post_init__` would produce. Skipping that
        normalization matters because it is O(positions) and runs once per fill session (thousands of
        sessions times hundreds of positions in a backtest)."""
        state = object.__new__(cls)
        object.__setattr__(state, "cash", cash)
        object.__setattr__(state, "positions", positions)
        object.__setattr__(state, "realized_pnl", realized_pnl)
        object.__setattr__(state, "monthly_buys", monthly_buys)
        object.__setattr__(state, "exits", exits)
        object.__setattr__(state, "shares", shares)
        return state

    def qty(self, symbol: str) -> Qty:
        pos = self.positions.get(symbol)
        return pos.qty if pos else 0

    def held(self) -> dict[str, Qty]:
        return {s: p.qty for s, p in self.positions.items()}

    def bought_in_month(self, symbol: str, day: dt.date) -> Qty:
        return self.monthly_buys.get((symbol, day.year, day.month), 0)

    def market_value(self, closes: Mapping[str, Decimal]) -> Decimal:
        """Positions valued at `closes` (average cost for a symbol without one)."""
        return sum((p.qty * closes.get(s, p.avg_cost) for s, p in self.positions.items()), Decimal(0))

    def apply_fill(self, fill: Fill) -> PortfolioState:
        return self.apply_fills([fill])

    def apply_fills(
        self, fills: Iterable[Fill], levels: Mapping[str, ExitLevels] | None = None
    ) -> PortfolioState:
        """New state after `fills` (applied in `fill_apply_order`): buys raise the average cost, sells
        realize P&L against it, commissions come out of cash. Selling more than held is an error: the
        broker never lets a long-only account go short.

        `levels` are the exit levels of entry orders by client order id (`exits.exit_levels`): a buy fill
        of such an order opens an exit lot; an exit fill closes (part of) its entry's lot; any other sell
        takes the shares of no lot first, then the oldest lots' (`exits.trim_lots`)."""
        ordered = sorted(fills, key=fill_apply_order)
        if not ordered:
            return self
        if levels or self.exits:
            return self._apply_fills_with_exits(ordered, levels or {})
        cash, realized = self.cash, self.realized_pnl
        positions = dict(self.positions)
        monthly = dict(self.monthly_buys)
        for f in ordered:
            old = positions.get(f.symbol)
            if f.side == "buy":
                cost = f.qty * f.price + f.commission
                cash -= cost
                qty = f.qty + (old.qty if old else 0)
                basis = cost + (old.qty * old.avg_cost if old else 0)
                positions[f.symbol] = Position(qty, basis / qty)
                key = (f.symbol, f.session.year, f.session.month)
                monthly[key] = monthly.get(key, 0) + f.qty
            else:
                if old is None or old.qty < f.qty:
                    raise ValueError(
                        f"fill {f.client_order_id} sells {f.qty} {f.symbol}, holding {old.qty if old else 0}"
                    )
                cash += f.qty * f.price - f.commission
                realized += (f.price - old.avg_cost) * f.qty - f.commission
                if old.qty == f.qty:
                    del positions[f.symbol]
                else:
                    positions[f.symbol] = Position(old.qty - f.qty, old.avg_cost)
        last = ordered[-1].session
        floor = (last.year, last.month)
        first = ordered[0].session
        if (first.year, first.month) != floor or getattr(self, "_month_floor", None) != floor:
            monthly = {k: v for k, v in monthly.items() if (k[1], k[2]) >= floor}
        # else every count is of that month or later already: this book was cut at that month, and every fill
        # here is of that month (the cut would copy the same dict)
        state = PortfolioState._computed(cash, positions, realized, monthly, self.exits, self.shares)
        object.__setattr__(state, "_month_floor", floor)  # not a field: equality, repr and replace ignore it
        return state

    def _apply_fills_with_exits(
        self, ordered: list[Fill], levels: Mapping[str, ExitLevels]
    ) -> PortfolioState:
        """`apply_fills` for a book with exit lots: the same arithmetic fill by fill, then the lots."""
        lots = {s: list(v) for s, v in self.exits.items()}
        state = self
        for f in ordered:
            state = PortfolioState.apply_fills(state._without_exits(), [f])
            symbol_lots = lots.get(f.symbol, [])
            if f.side == "buy":
                stop, take = levels.get(f.client_order_id, (None, None))
                if stop is not None or take is not None:
                    symbol_lots.append(ExitLot(f.client_order_id, f.order_session, f.qty, stop, take))
            elif is_exit_id(f.client_order_id):
                entry, left = entry_id_of(f.client_order_id), f.qty
                for i, lot in enumerate(symbol_lots):
                    if lot.entry_id == entry and left:
                        taken = min(lot.qty, left)
                        symbol_lots[i], left = lot._replace(qty=lot.qty - taken), left - taken
                symbol_lots = [lot for lot in symbol_lots if lot.qty > 0]
            lots[f.symbol] = list(trim_lots(symbol_lots, state.qty(f.symbol)))
        exits = {s: tuple(v) for s, v in lots.items() if v}
        return PortfolioState._computed(
            state.cash, dict(state.positions), state.realized_pnl, dict(state.monthly_buys), exits, self.shares
        )

    def _without_exits(self) -> PortfolioState:
        if not self.exits:
            return self
        return PortfolioState._computed(
            self.cash, dict(self.positions), self.realized_pnl, dict(self.monthly_buys), {}, self.shares
        )

    def apply_event(self, event: BookEvent) -> tuple[PortfolioState, EventEffect | None]:
        """New state after one book event, and what it did to a held position (None when none was held).

        * Split new:old: shares x new/old, rounded down; average cost x old/new (the cost basis is kept).
          A fraction of a share is paid out as cash in lieu at the event's price (the last close before the
          ex-date, split-adjusted; the new average cost without one), rounded to the cent: a sale of the
          fraction, so realized P&L moves by exactly that cash less the fraction's cost, and by nothing when
          the ratio leaves no fraction. The month's purchase counts of the symbol are scaled to post-split
          shares (rounded up: the quota never gains room from rounding).
        * Delisting: the position is closed at the event's price (its average cost without one), no
          commission: cash in, realized P&L as for a sale. The month's purchase counts of the ticker stay
          (the quota is per ticker and month; a security listed under it in the same month shares it).
        * Rename: the position and the month's purchase counts move to the new ticker unchanged.
        * Exit lots (`exits`) follow: a split scales their shares (rounded down) and levels (per new share),
          a rename moves them, a delisting drops them.

        With fractional shares (`self.shares`) a split gives shares x new / old to 1e-9 share, rounded down
        (`ShareRule.scale`): no cash in lieu (what is under a billionth of a share goes with its cost), and
        the month's purchase counts are scaled up to 1e-9.
        """
        rule = self.shares
        positions = dict(self.positions)
        monthly = dict(self.monthly_buys)
        cash, realized = self.cash, self.realized_pnl
        held = positions.get(event.symbol)
        effect = None
        if isinstance(event, Split):
            for key, n in monthly.items():
                if key[0] == event.symbol:
                    monthly[key] = rule.scale_up(n, event.new, event.old)
            if held is not None:
                whole, rest = rule.scale(held.qty, event.new, event.old)
                avg_cost = event.adjust_price(held.avg_cost)
                paid = price = Decimal(0)
                if rest:
                    price = avg_cost if event.price is None else event.price
                    paid = (rest * price / event.old).quantize(CENT, rounding=ROUND_HALF_UP)
                    cash += paid
                    realized += paid - rest * avg_cost / event.old
                if whole:
                    positions[event.symbol] = Position(whole, avg_cost)
                else:
                    del positions[event.symbol]
                effect = EventEffect(event, held.qty, whole, paid, price)
        elif isinstance(event, Delisting):
            if held is not None:
                price = held.avg_cost if event.price is None else event.price
                cash += held.qty * price
                realized += (price - held.avg_cost) * held.qty
                del positions[event.symbol]
                effect = EventEffect(event, held.qty, 0, held.qty * price, price)
        elif isinstance(event, Rename):
            for (symbol, year, month), n in list(monthly.items()):
                if symbol == event.symbol:
                    del monthly[(symbol, year, month)]
                    key = (event.new_symbol, year, month)
                    monthly[key] = monthly.get(key, 0) + n
            if held is not None:
                if event.new_symbol in positions:
                    raise ValueError(
                        f"{event.security_id} goes on as {event.new_symbol} on {event.session}, but the book "
                        f"already holds {event.new_symbol}: the security master must end the security that "
                        f"used {event.new_symbol} before"
                    )
                positions[event.new_symbol] = positions.pop(event.symbol)
                effect = EventEffect(event, held.qty, held.qty, Decimal(0), Decimal(0))
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"not a book event: {event!r}")
        exits = self.exits
        if event.symbol in exits:
            exits = dict(exits)
            lots = exits.pop(event.symbol)
            if isinstance(event, Split):
                lots = tuple(
                    lot._replace(
                        qty=rule.scale(lot.qty, event.new, event.old)[0],
                        stop_loss=None if lot.stop_loss is None else event.adjust_price(lot.stop_loss),
                        take_profit=None if lot.take_profit is None else event.adjust_price(lot.take_profit),
                    )
                    for lot in lots
                )
                lots = trim_lots(
                    [lot for lot in lots if lot.qty > 0],
                    positions[event.symbol].qty if event.symbol in positions else 0,
                )
                if lots:
                    exits[event.symbol] = lots
            elif isinstance(event, Rename) and event.new_symbol in positions:
                exits[event.new_symbol] = lots
        return PortfolioState._computed(cash, positions, realized, monthly, exits, rule), effect


class EventEffect(NamedTuple):
    """What a book event did to a held position: shares before and after, the cash it paid (cash in lieu of
    a split's fraction, a delisting's proceeds) and the price per share it was paid at (0 when none)."""

    event: BookEvent
    qty_before: Qty
    qty_after: Qty
    cash: Decimal
    price: Decimal


@dataclass(frozen=True)
class BookEventsOutcome:
    """`apply_book_events`' result: the new state, the pending orders that still go to the open (a sell
    across a split scaled to post-split shares), the orders the events expired, and the effects on held
    positions."""

    state: PortfolioState
    pending: list[Order]
    expired: list[OrderEvent]
    effects: list[EventEffect]


def apply_book_events(
    state: PortfolioState, events: Sequence[BookEvent], session: dt.date, pending: Sequence[Order] = ()
) -> BookEventsOutcome:
    """Apply book events (in `event_order`) before `session`'s open: to the state, and to the pending orders
    placed before an event's session on its symbol, which were sized on the old basis:

    * a split scales a sell to post-split shares (rounded down, to the order quantity's rule: selling the whole
      position stays selling the whole position) and expires a buy (its size, quota and cash were reckoned in old shares; the session's
      signals decide again on the new basis);
    * a delisting or a rename expires every such order (never filled at another security's price, or under
      a ticker that no longer means the security).

    Expired orders are dated `session`, the open that would have worked them. One definition for the planner,
    the paper broker and mark-to-market (which passes no orders).
    """
    orders = list(pending)
    expired: list[OrderEvent] = []
    effects: list[EventEffect] = []
    for event in sorted(events, key=event_order):
        state, effect = state.apply_event(event)
        if effect is not None:
            effects.append(effect)
        kept = []
        for order in orders:
            if order.symbol != event.symbol or order.session >= event.session:
                kept.append(order)
            elif (
                isinstance(event, Split)
                and order.side == "sell"
                and (qty := rule_of(order.qty).scale(order.qty, event.new, event.old)[0]) >= rule_of(order.qty).min_qty
            ):
                requested = rule_of(order.qty).scale(order.requested_qty, event.new, event.old)[0]
                kept.append(replace(order, qty=qty, requested_qty=max(qty, requested)))
            else:
                expired.append(OrderEvent.expired(order, session, order.qty))
        orders = kept
    return BookEventsOutcome(state, orders, expired, effects)


class LastCloses:
    """The last known close per symbol and its session, expressed in the book's current share basis: a
    split divides a close dated before its ex-date by the ratio when it applies (exactly: the close becomes
    a Decimal), and a rename carries the old ticker's close to the new one. The planner marks equity for
    sizing with it and mark-to-market marks positions with it, so a position held across a split is worth
    the same before and after it, also on a session without a bar (a split confirmed by cleaning has none:
    its bars are quarantined until then)."""

    __slots__ = ("close", "day")

    def __init__(self, last: Mapping[str, tuple[dt.date, float | Decimal]] | None = None) -> None:
        self.close: dict[str, float | Decimal] = {s: c for s, (_, c) in (last or {}).items()}
        self.day: dict[str, dt.date] = {s: d for s, (d, _) in (last or {}).items()}

    def update(self, session: dt.date, closes: Mapping[str, float]) -> None:
        self.close.update(closes)
        self.day.update(dict.fromkeys(closes, session))

    def get(self, symbol: str) -> float | Decimal | None:
        return self.close.get(symbol)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.close

    def exact(self, symbol: str) -> Decimal:
        value = self.close[symbol]
        return value if isinstance(value, Decimal) else as_decimal(value)

    def apply(self, events: Iterable[BookEvent]) -> None:
        for event in sorted(events, key=event_order):
            symbol = event.symbol
            if isinstance(event, Split):
                if symbol in self.close and self.day[symbol] < event.ex_date:
                    self.close[symbol] = event.adjust_price(self.exact(symbol))
            elif isinstance(event, Rename) and symbol in self.close:
                new = event.new_symbol
                if new not in self.day or self.day[new] < event.session:  # the new ticker's own closes win
                    self.close[new], self.day[new] = self.close[symbol], self.day[symbol]


def last_closes_before(prices: pl.DataFrame, symbols: set[str], day: dt.date) -> LastCloses:
    """The last non-null close before `day` of each of `symbols` in a cleaned-prices frame, with its session."""
    before = (
        prices.select("symbol", "session", "close")
        .filter(pl.col("session") < day)  # first: a date comparison leaves few rows for the symbol lookup
        .filter(pl.col("symbol").is_in(sorted(symbols)) & pl.col("close").is_not_null())
        .sort("session")
        .group_by("symbol")
        .agg(pl.col("session").last(), pl.col("close").last())
    )
    return LastCloses({symbol: (session, close) for symbol, session, close in before.iter_rows()})


@dataclass(frozen=True)
class Projection:
    """Everything the planner projected over a window.

    `orders_frame` is the planned orders as the `orders` frame, `orders` the same as records (built on
    demand, exactly: see `orders_from_frame`); `pending` are the approved orders of the window's last
    session (they fill after the window); `end_state` is the book after the last session's open fills;
    `effects` what the window's book events did to held positions; `exit_levels` the stop-loss /
    take-profit levels of the window's approved buys by client order id (the bracket legs live);
    `daily_loss_breaches` the sessions whose loss reached the daily loss limit, with the loss (their buys
    were denied DAILY_LOSS_LIMIT).
    """

    orders_frame: pl.DataFrame
    fills: list[Fill]
    expired: list[OrderEvent]
    end_state: PortfolioState
    pending: list[Order]
    effects: list[EventEffect] = field(default_factory=list)
    exit_levels: dict[str, ExitLevels] = field(default_factory=dict)
    daily_loss_breaches: list[tuple[dt.date, Decimal]] = field(default_factory=list)

    @property
    def halted(self) -> bool:
        """The last session's loss reached the daily loss limit (its buys were denied DAILY_LOSS_LIMIT): what
        a live run turns into the kill switch."""
        return bool(self.daily_loss_breaches) and self.daily_loss_breaches[-1][0] == self.last_session

    last_session: dt.date | None = None

    @property
    def orders(self) -> list[Order]:
        return orders_from_frame(self.orders_frame)


# Python objects for a session's signals, bars and orders exist only while that session is planned (the
# inputs wait as polars partitions, the output becomes frame chunks as it goes), so their memory is reused:
# a ten-year plan holding them all at once touched gigabytes of fresh memory (seconds of page faults).


_SIGNAL_COLUMNS = ("session", "symbol", "strategy", "side", "strength")
_SIGNAL_KEY = ["session", "symbol", "strategy", "side"]  # one order id per key

# A planned signal: (side rank, strategy, -strength, symbol, side). The first four are the processing order
# within a session: sells first (as the open will work them), then strategies alphabetically, stronger
# signals first (scarce cash and quota go to the strongest; no strength counts as 0), then symbol.
SignalRow = tuple[int, str, float, str, str]


def _keyed_signals(signals: pl.DataFrame, sessions: Sequence[dt.date]) -> pl.DataFrame:
    """The window's signals as SignalRow columns after their session, one row per key, sorted."""
    frame = _strongest_per_key(
        signals.select(_SIGNAL_COLUMNS).filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    )
    return frame.select(
        "session",
        pl.when(pl.col("side") == "sell").then(0).otherwise(1).alias("rank"),
        "strategy",
        (-pl.col("strength").fill_null(0.0) + 0.0).alias("neg_strength"),  # + 0.0: -0.0 sorts as 0.0 (Python)
        "symbol",
        "side",
    ).sort("session", "rank", "strategy", "neg_strength", "symbol")  # see `_in_processing_order`


def _signals_by_session(keyed: pl.DataFrame) -> dict[dt.date, pl.DataFrame]:
    """{session: its signals as SignalRow columns} of `_keyed_signals`; see `_in_processing_order`."""
    parts = keyed.partition_by("session", as_dict=True, maintain_order=True, include_key=False)
    return {key[0]: part for key, part in parts.items()}


def _in_processing_order(part: pl.DataFrame) -> list[SignalRow]:
    """A session's signals in processing order, deterministic whatever the frame's row order.

    The rows are their own sort keys, so a plain `sort()` orders them: the leading four fields are unique
    within a session (one row per key), so the trailing side is never compared, and Python compares the
    strings and floats exactly as a sort with a key function would. The partitions come pre-sorted by
    polars, so this sort, which defines the order, mostly just confirms it (linear on sorted input).
    """
    rows = part.rows()
    rows.sort()
    return rows


def _strongest_per_key(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per (session, symbol, strategy, side): the strongest (no strength counts as 0), the first
    on ties. The signals asset emits one row per key already; distinct key hashes prove that cheaply, and
    only a frame with a possible duplicate pays the row-by-row pass."""
    if frame.select(pl.struct(_SIGNAL_KEY).hash().n_unique()).item() == frame.height:
        return frame
    best: dict[tuple, tuple] = {}
    for row in frame.iter_rows():
        key = row[:4]
        if key not in best or (row[4] or 0.0) > (best[key][4] or 0.0):
            best[key] = row
    return pl.DataFrame(list(best.values()), schema=frame.schema, orient="row")


class _Bars(NamedTuple):
    """One session's prices for the planner: {symbol: open} and {symbol: close}, null prices left out (so
    `.get(symbol)` is None both without a bar and without that price)."""

    opens: dict[str, float]
    closes: dict[str, float]


_NO_BARS = _Bars({}, {})


def _bars(
    prices: pl.DataFrame, symbols: set[str], sessions: Sequence[dt.date], risk: RiskConfig | None = None
) -> tuple[LastCloses, dict[dt.date, pl.DataFrame]]:
    """(last close before the window per symbol, {session: its (symbol, open, close) rows} inside it); with
    exits the rows have `high` and `low` too, and with an ATR control an `atr` (`exits.with_atr`)."""
    px = _price_rows(prices, symbols, sessions, risk)
    return last_closes_before(px, symbols, sessions[0]), _partitions(px, sessions)


def _price_rows(
    prices: pl.DataFrame, symbols: set[str], sessions: Sequence[dt.date], risk: RiskConfig | None = None
) -> pl.DataFrame:
    """The (symbol, session, open, close) rows of `symbols` up to the window's last session (`_bars`)."""
    columns = ["symbol", "session", "open", "close"]
    if risk is not None and (risk.has_exits or risk.needs_atr):
        columns += ["high", "low"]
        if risk.needs_atr and "atr" in prices.columns:
            columns.append("atr")
        missing = sorted(set(columns) - set(prices.columns))
        if missing:
            raise ValueError(f"the risk config's exits / ATR need prices with {', '.join(missing)}")
    px = prices.select(columns).filter(
        pl.col("symbol").is_in(sorted(symbols)) & (pl.col("session") <= sessions[-1])
    )
    if risk is not None and risk.needs_atr:
        px = with_atr(px, risk.atr_period)
    return px


def _partitions(px: pl.DataFrame, sessions: Sequence[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """{session: its rows of `_price_rows`} inside the window."""
    inside = px.filter(pl.col("session").is_in(sessions))
    parts = inside.partition_by("session", as_dict=True, maintain_order=True, include_key=False)
    return {key[0]: part for key, part in parts.items()}


def _session_bars(part: pl.DataFrame | None) -> _Bars:
    """_Bars from one session's (symbol, open, close) rows; a later row wins on a repeated symbol. A price
    that is not positive counts as none (cleaning never passes one; an order needs a positive price)."""
    if part is None:
        return _NO_BARS
    symbols = part["symbol"].to_list()  # one str per symbol, shared by both dicts
    opens, closes = (dict(zip(symbols, part[c].to_list(), strict=True)) for c in ("open", "close"))
    return _Bars(_positive(opens), _positive(closes))


def _exit_bars(part: pl.DataFrame | None, symbols: Iterable[str]) -> dict[str, tuple]:
    """{symbol: (open, high, low)} of one session's rows, for the symbols with exit lots."""
    if part is None:
        return {}
    rows = (
        part.filter(pl.col("symbol").is_in(sorted(symbols)))
        .select("symbol", "open", "high", "low")
        .iter_rows()
    )
    return {symbol: (o, h, lo) for symbol, o, h, lo in rows}


def _session_atrs(part: pl.DataFrame | None) -> dict[str, float]:
    if part is None or "atr" not in part.columns:
        return {}
    return {
        s: a
        for s, a in zip(part["symbol"].to_list(), part["atr"].to_list(), strict=True)
        if a is not None and a > 0
    }


def _session_loss(
    state: PortfolioState, day: _Bars, last_close: LastCloses, exact: _ExactPrices
) -> tuple[Decimal, Decimal]:
    """(the book's value at the session's open, its loss from there to the close): the positions held after
    the exits marked at the open (the last known close without an open) and at the close (the last known
    close: `last_close` is updated with the session's closes)."""
    open_value = loss = Decimal(0)
    for symbol, pos in state.positions.items():
        if symbol not in last_close:
            continue
        close = last_close.exact(symbol)
        o = day.opens.get(symbol)
        at_open = close if o is None else exact[o]
        open_value += pos.qty * at_open
        loss += pos.qty * (at_open - close)
    return state.cash + open_value, loss


def _positive(prices: dict[str, float | None]) -> dict[str, float]:
    values = prices.values()
    if None not in values and min(values, default=1.0) > 0:
        return prices  # type: ignore[return-value]
    return {s: p for s, p in prices.items() if p is not None and p > 0}


class _ExactPrices(dict):
    """{float: as_decimal(float)}, filled on first use: prices repeat across sessions and symbols, and the
    planner needs millions of exact closes. Equal floats print alike, so the memo is exact, except 0.0 and
    -0.0, which are equal keys with different decimals and therefore never memoised (NaN never matches)."""

    def __missing__(self, value: float) -> Decimal:
        out = as_decimal(value)
        if value:
            self[value] = out
        return out


def _spreads(
    prices: pl.DataFrame, symbols: set[str], sessions: Sequence[dt.date]
) -> dict[dt.date, dict[str, float]]:
    """{session: {symbol: spread proxy}} of the window's sessions (`execution.spreads_by_session`): the
    proxies of the bars up to the last session only (point in time), from the same frame the book is given."""
    upto = prices.select("session", "symbol", "high", "low", "close").filter(pl.col("session") <= sessions[-1])
    return {d: s for d, s in spreads_by_session(upto, symbols).items() if d >= sessions[0]}


def _next_session(day: dt.date) -> dt.date:
    from trading_dagster.domain.calendar import nyse_calendar

    return nyse_calendar().next_session(day) or day


def _equity(state: PortfolioState, last_close: LastCloses, exact: _ExactPrices) -> Decimal:
    """The book's equity at the last closes (`_SessionPlanner.plan`'s)."""
    known = last_close.close
    marks = {s: v if isinstance(v, Decimal) else exact[v] for s in state.positions if (v := known.get(s)) is not None}
    return state.cash + state.market_value(marks)


def _opens(pending: Sequence[Order], opens: Mapping[str, float], exact: _ExactPrices) -> dict[str, Decimal]:
    """Exact opens of the pending orders' symbols only: `execute_open` looks up nothing else."""
    return {o.symbol: exact[opens[o.symbol]] for o in pending if o.symbol in opens}


class _BookArrays:
    """The book as arrays over the bulk pass's symbols (`bulk_planner.SignalArrays.book_symbols`: the signals',
    then those the book may hold without a signal): shares held and shares bought in a month. `load` sets them
    from a `PortfolioState`; `sync` only moves the symbols that fills touched since (their positions and month
    counts are few next to the session's signals)."""

    def __init__(self, arrays: bulk_planner.SignalArrays) -> None:
        self.index = {s: i for i, s in enumerate(arrays.book_symbols)}
        self.held = np.zeros(len(self.index), dtype=np.int64)
        self.bought = np.zeros(len(self.index), dtype=np.int64)
        self._month: tuple[int, int] | None = None

    def load(self, state: PortfolioState, year: int, month: int) -> None:
        index = self.index
        self.held[:] = 0
        self.bought[:] = 0
        positions = state.positions
        held_ids = list(map(index.get, positions))
        held = [p[0] for p in positions.values()]
        if None in held_ids:  # a held symbol without a signal in the window
            held = [n for k, n in zip(held_ids, held, strict=True) if k is not None]
            held_ids = [k for k in held_ids if k is not None]
        bought_ids, bought = [], []
        for (symbol, y, m), n in state.monthly_buys.items():
            if y == year and m == month:
                k = index.get(symbol)
                if k is not None:
                    bought_ids.append(k)
                    bought.append(n)
        self.held[held_ids] = held
        self.bought[bought_ids] = bought
        self._month = (year, month)

    def sync(self, state: PortfolioState, touched: Iterable[str], year: int, month: int) -> None:
        """`load`, given that only the `touched` symbols' positions and month counts moved since the last
        `load` or `sync` (fills change nothing else; the month counts of older months only drop out)."""
        if self._month != (year, month):
            self.load(state, year, month)
            return
        index, positions, monthly = self.index, state.positions, state.monthly_buys
        for symbol in touched:
            k = index.get(symbol)
            if k is not None:
                pos = positions.get(symbol)
                self.held[k] = pos[0] if pos else 0
                self.bought[k] = monthly.get((symbol, year, month), 0)


class _DenseBars:
    """The walked sessions' opens and closes over `_BookArrays.index` (`bulk_planner.PriceTable`: NaN where
    `_session_bars` has no price), and the last close of each symbol in exact scaled integers (close x
    10^scale), so that the book's equity at the close, exact, is one integer dot product a session instead of
    a Decimal per position.

    The integers are exact: a close is kept only where round(close x 10^scale) / 10^scale gives back the
    same float, with 10^scale below the float's ulp (the shortest decimal that prints it, which is what
    `orders.as_decimal` takes, is then that one); `ok` is False when neither 1e-6 nor 1e-9 covers every
    close (or one is a Decimal, moved by a book event): the caller then marks the book in Decimals."""

    _SCALES = (6, 9)

    def __init__(self, table: bulk_planner.PriceTable, index: Mapping[str, int], before: LastCloses) -> None:
        self.ok = False
        self._index = index
        self.opens, self.closes = table.opens, table.closes
        first = [(k, before.get(s)) for s, k in index.items() if before.get(s) is not None]
        if any(not isinstance(v, float) for _, v in first):
            return  # a close moved by a book event is a Decimal already
        start = np.full(len(index), np.nan)
        start[np.array([k for k, _ in first], dtype=np.int64)] = [v for _, v in first]
        # over the whole (session x symbol) table in place, NaN where no close: fewer fresh arrays to fault in
        flat = self.closes.ravel()
        has = ~np.isnan(flat)
        marked = ~np.isnan(start)
        if np.isinf(flat).any() or not np.isfinite(start[marked]).all():
            return
        top = max(float(np.fmax.reduce(flat, initial=0.0)), float(start[marked].max(initial=0.0)))
        for scale in self._SCALES:
            unit = 10.0**scale
            if top * unit >= 2.0**52:
                return
            scaled = np.multiply(flat, unit)
            np.round(scaled, out=scaled)
            back = np.divide(scaled, unit)
            same = np.equal(back, flat, out=np.empty(flat.size, dtype=bool))
            np.logical_or(same, ~has, out=same)  # (NaN, no close, is equal to nothing)
            at_start = np.round(start[marked] * unit)
            if same.all() and (at_start / unit == start[marked]).all():
                self.ok, self.scale = True, scale
                break
        if not self.ok:
            return
        self.has_close = has.reshape(self.closes.shape)
        scaled[~has] = 0.0
        exact = back.view(np.int64)  # the buffer of `back`, no longer read, holds the integers
        np.copyto(exact, scaled, casting="unsafe")
        self.scaled = exact.reshape(self.closes.shape)
        self.marked = marked
        self.mark = np.zeros(len(index), dtype=np.int64)
        self.mark[marked] = at_start.astype(np.int64)

    def close_session(self, k: int) -> None:
        """The closes of walked session k become the symbols' last closes."""
        has = self.has_close[k]
        self.mark[has] = self.scaled[k][has]
        self.marked |= has

    def equity(self, state: PortfolioState, held: np.ndarray) -> Decimal | None:
        """`state.cash + state.market_value(marks)` at the last closes, exact (every term and partial sum is a
        multiple of 10^-scale below 2^62 of them, so the Decimal sum is exact too); `held` are the shares of
        `state.positions` over the index (`_BookArrays.held`). None when a held symbol has no known close (the
        average cost values it: a rounded Decimal, summed in the positions' order by `market_value`)."""
        if ((held != 0) & ~self.marked).any() or float(np.abs(held) @ self.mark.astype(np.float64)) >= 2.0**62:
            index = self._index  # `_equity`'s sum, with these marks
            marks = {
                s: Decimal(int(self.mark[k])).scaleb(-self.scale)
                for s in state.positions
                if (k := index.get(s)) is not None and self.marked[k]
            }
            return state.cash + state.market_value(marks)
        return state.cash + Decimal(int(held @ self.mark)).scaleb(-self.scale)

    def opens_of(self, pending: Sequence[Order], k: int, exact: _ExactPrices) -> dict[str, Decimal]:
        """`_opens` at walked session k."""
        row, index = self.opens[k], self._index
        out = {}
        for o in pending:
            value = float(row[index[o.symbol]])
            if value == value:  # NaN: no open
                out[o.symbol] = exact[value]
        return out


@dataclass(frozen=True, eq=False)
class _SessionPlanner:
    """What stays fixed while the planner walks a window: models, controls, account, and the memo of exact
    prices. `shortcut` is set only for the default chain; it decides most denials without running every
    control, with the same outcome (see `risk.EarlyDenial`)."""

    risk: RiskConfig
    controls: tuple[PreTradeControl, ...]
    shortcut: EarlyDenial | None
    slippage: SlippageModel
    commission: CommissionModel
    account: str
    exact: _ExactPrices

    def _buy_reservation(self, qty, ref: Decimal, spread: float | None) -> Decimal:
        """The cash a pending buy holds back: risk.estimated_buy_cost, or with the order's spread proxy the fill
        model's own price."""
        if spread is None:
            return estimated_buy_cost(qty, ref, self.slippage, self.commission)
        return buy_cost(qty, self.slippage.fill_price("buy", ref, spread), self.commission)

    def plan(
        self,
        rows: Sequence[SignalRow],
        state: PortfolioState,
        closes: Mapping[str, float],
        last_close: LastCloses,
        session: dt.date,
        fill_session: dt.date,
        halted: bool = False,
        atrs: Mapping[str, float] | None = None,
        spreads: Mapping[str, float] | None = None,
    ) -> tuple[list[OrderRow], list[Order], dict[str, ExitLevels]]:
        """Size and risk-check one session's signals (in processing order) against the book: every order as
        a row (see `OrderRow`), the approved ones also as records (they go to the next open), and the exit
        levels of the approved buys (by client order id; empty without exits). `halted`: the session's loss
        reached the daily loss limit; `atrs`: the session's ATR per symbol (for ATR sizing / exits);
        `spreads`: the session's spread proxies (`execution.spread_proxies`) when the slippage model uses
        them: an approved buy reserves its cash with the spread its fill will pay."""
        exact, shortcut = self.exact, self.shortcut
        risk = self.risk
        extended = risk.has_session_limits
        with_exits = risk.has_exits
        at_fill = risk.size_on == "fill"
        levels: dict[str, ExitLevels] = {}
        n_orders, notional, buy_notional = 0, Decimal(0), Decimal(0)
        atr = None
        known = last_close.close
        marks = {
            s: v if isinstance(v, Decimal) else exact[v]
            for s in state.positions
            if (v := known.get(s)) is not None
        }
        market_value = state.market_value(marks)
        equity = state.cash + market_value
        order_id = order_ids_for(self.account, session)
        pending_buy: dict[str, Qty] = {}
        pending_sell: dict[str, Qty] = {}
        reserved = Decimal(0)
        available = state.cash - reserved  # cash not reserved by the approved buys planned so far
        out: list[OrderRow] = []
        approved: list[Order] = []
        bought = state.monthly_buys  # keyed (symbol, year, month) of the fill session: see bought_in_month
        year, month = fill_session.year, fill_session.month
        for _, strategy, _, symbol, side in rows:
            close = closes.get(symbol)
            ref = None if close is None else exact[close]
            held = state.qty(symbol)
            if extended:
                a = atrs.get(symbol) if atrs else None
                atr = None if a is None else exact[a]
                intent = OrderIntent(symbol, side, size_order(side, ref, equity, held, risk, atr), ref)
                ctx = RiskContext(
                    held,
                    pending_buy.get(symbol, 0),
                    pending_sell.get(symbol, 0),
                    bought.get((symbol, year, month), 0),
                    equity,
                    available,
                    market_value,
                    buy_notional,
                    n_orders,
                    notional,
                    halted,
                    atr,
                )
            else:
                intent = OrderIntent(symbol, side, size_order(side, ref, equity, held, risk), ref)
                ctx = RiskContext(  # held, pending buys and sells, bought in the fill month, equity, cash
                    held,
                    pending_buy.get(symbol, 0),
                    pending_sell.get(symbol, 0),
                    bought.get((symbol, year, month), 0),
                    equity,
                    available,
                )
            cid = order_id(symbol, strategy, side)
            reason = shortcut.reason(intent, ctx) if shortcut is not None else None
            if reason is None:
                qty, reason = check_order(intent, ctx, self.controls)
            else:
                qty = 0
            if qty == 0:
                out.append((session, symbol, strategy, side, intent.qty, 0, ref, "denied", reason, cid, None))
                continue
            budget = fill_notional(intent.qty, qty, ref, equity, risk) if at_fill and side == "buy" and ref else None
            order = Order(cid, session, symbol, strategy, side, intent.qty, qty, ref, "approved", reason, budget)
            out.append(order_row(order))
            approved.append(order)
            if extended:
                assert ref is not None
                n_orders += 1
                notional += qty * ref
                if side == "buy":
                    buy_notional += qty * ref
            if side == "buy":
                assert ref is not None
                pending_buy[symbol] = pending_buy.get(symbol, 0) + qty
                reserved += self._buy_reservation(qty, ref, spreads.get(symbol) if spreads else None)
                available = state.cash - reserved
                if with_exits:
                    if not extended:
                        a = atrs.get(symbol) if atrs else None
                        atr = None if a is None else exact[a]
                    level = exit_levels(ref, atr, risk)
                    if level.stop_loss is not None or level.take_profit is not None:
                        levels[cid] = level
            else:
                pending_sell[symbol] = pending_sell.get(symbol, 0) + qty
        return out, approved, levels


    def plan_bulk(
        self,
        arrays: bulk_planner.SignalArrays,
        lo: int,
        hi: int,
        book: _BookArrays,
        state: PortfolioState,
        equity: Decimal,
        session: dt.date,
        fill_session: dt.date,
        atrs: Mapping[str, float] | None = None,
        spreads: Mapping[str, float] | None = None,
    ) -> tuple[list[Order], dict[str, ExitLevels]]:
        """`plan` for the chain `risk.EarlyDenial` covers, over arrays: signal rows lo:hi of `arrays` (one
        session, processing order) get their requested quantity, quantity, reason and notional written into
        `arrays`; the signals the book at the session's start settles are decided in bulk
        (`bulk_planner.classify`), every other one by exactly `plan`'s per-signal code, in order. `book` holds
        `state` for the fill month, `equity` is `plan`'s (the state marked at the last closes), and a signal's
        close is `arrays.ref` (its session's close: `plan`'s `closes`). Returns the approved orders (they go to
        the next open) and the exit levels of the approved buys."""
        exact, risk, shortcut = self.exact, self.risk, self.shortcut
        assert shortcut is not None
        with_exits = risk.has_exits
        at_fill = risk.size_on == "fill"
        levels: dict[str, ExitLevels] = {}
        year, month = fill_session.year, fill_session.month
        sym = arrays.sym[lo:hi]
        buy = arrays.buy[lo:hi]
        held = book.held[sym]
        budget = risk.notional if risk.sizing == "fixed_notional" else equity * risk.pct_equity / 100
        requested = np.where(buy, arrays.requested_buys(lo, hi, budget), held)
        code, depends, poor_code = bulk_planner.classify(
            arrays, lo, hi, held, book.bought[sym], requested, float(equity), float(state.cash), risk
        )
        arrays.requested[lo:hi] = requested
        arrays.reason[lo:hi] = np.maximum(code, 0)
        if not (code == bulk_planner.EXACT).any():
            return [], levels
        order_id = order_ids_for(self.account, session)
        pending_buy: dict[str, Qty] = {}
        pending_sell: dict[str, Qty] = {}
        reserved = Decimal(0)
        available = state.cash
        approved: list[Order] = []
        bought = state.monthly_buys
        symbols, strategies, strat = arrays.symbols, arrays.strategies, arrays.strat
        reason_id = bulk_planner.REASON_ID
        cost1 = arrays.cost1[lo:hi]
        ref_price = arrays.ref
        decide = shortcut.decide_values
        poor_known = depends & (poor_code >= 0)  # where a fall of the cash alone can decide the row
        # The rows the per-signal code decides, in order: an EXACT row is settled by the cash when one share
        # costs more than the cash left at the point it is reached (`poor_known`), else decided one by one. The
        # cash only falls, and only at an approved buy, so a row is decided iff its key <= the cash limit when
        # it is reached (key: its one-share cost where the cash can settle it, -inf where it cannot, +inf for
        # rows not EXACT): only the rows with a key <= the session's first limit can be, and they are walked in
        # order; the rows passed over are settled. An approved buy sends its symbol's later rows to the
        # per-signal code (`forced`, put in the walk where they are not in it).
        exact_rows = code == bulk_planner.EXACT
        keys = np.where(exact_rows, np.where(poor_known & ~np.isnan(cost1), cost1, -np.inf), np.inf)
        limit = bulk_planner.cash_limit(float(available))
        walk = np.flatnonzero(keys <= limit)
        rows_left, keys_left = walk.tolist(), keys[walk].tolist()
        next_same = arrays.next_same
        forced: set[int] = set()
        decided: list[int] = []
        i = skipped = 0
        while i < len(rows_left):
            j, key = rows_left[i], keys_left[i]
            i += 1
            if key > limit and j not in forced:  # the cash settles it
                skipped += 1
                if skipped == 16:  # a run of them (the cash ran low): find the rows still to decide at once
                    walk = np.flatnonzero(keys[j + 1 :] <= limit) + (j + 1)
                    rows_left, keys_left, i, skipped = walk.tolist(), keys[walk].tolist(), 0, 0
                continue
            skipped = 0
            decided.append(j)
            row = lo + j
            k = int(sym[j])
            symbol = symbols[k]
            is_buy = bool(buy[j])
            close = float(ref_price[row])
            ref = None if close != close else exact[close]  # NaN: no close
            wanted = int(requested[j])  # `risk.size_order`'s (`bulk_planner.SignalArrays.requested_buys`)
            qty, reason, cost = decide(
                is_buy,
                wanted,
                ref,
                state.qty(symbol),
                pending_buy.get(symbol, 0),
                pending_sell.get(symbol, 0),
                bought.get((symbol, year, month), 0),
                equity,
                available,
            )
            arrays.reason[row] = 0 if reason is None else reason_id[reason]
            if qty == 0:
                continue
            arrays.qty[row] = qty
            side = "buy" if is_buy else "sell"
            strategy = strategies[strat[row]]
            cid = order_id(symbol, strategy, side)
            notional = fill_notional(wanted, qty, ref, equity, risk) if at_fill and is_buy and ref else None
            if notional is not None:
                arrays.notional[row] = float(notional)
            order = Order(cid, session, symbol, strategy, side, wanted, qty, ref, "approved", reason, notional)
            approved.append(order)
            if not is_buy:
                pending_sell[symbol] = pending_sell.get(symbol, 0) + qty
                continue
            assert ref is not None
            if symbol not in pending_buy:  # its later signals now see a pending buy: decide them one by one
                later = int(next_same[row]) - lo
                while later >= 0:
                    forced.add(later)
                    keys[later] = -math.inf
                    at = bisect.bisect_left(rows_left, later, i)
                    if at == len(rows_left) or rows_left[at] != later:
                        rows_left.insert(at, later)
                        keys_left.insert(at, -math.inf)
                    later = int(next_same[lo + later]) - lo
            pending_buy[symbol] = pending_buy.get(symbol, 0) + qty
            if cost is None or spreads is not None:  # (with the spread proxies a buy reserves at its own price)
                cost = self._buy_reservation(qty, ref, spreads.get(symbol) if spreads else None)
            reserved += cost
            available = state.cash - reserved
            limit = bulk_planner.cash_limit(float(available))
            if with_exits:
                a = atrs.get(symbol) if atrs else None
                level = exit_levels(ref, None if a is None else exact[a], risk)
                if level.stop_loss is not None or level.take_profit is not None:
                    levels[cid] = level
        decided_rows = np.zeros(hi - lo, dtype=bool)
        decided_rows[decided] = True
        rows = np.flatnonzero(exact_rows & ~decided_rows)  # passed over: settled by the cash (keys finite)
        arrays.reason[lo + rows] = poor_code[rows]
        return approved, levels


def simulate(
    signals: pl.DataFrame,
    prices: pl.DataFrame,
    start_state: PortfolioState,
    sessions: Sequence[dt.date],
    risk: RiskConfig,
    slippage: SlippageModel,
    commission: CommissionModel,
    account: str,
    *,
    next_session: dt.date | None = None,
    controls: Sequence[PreTradeControl] | None = None,
    events: Sequence[BookEvent] = (),
) -> Projection:
    """Walk the window's sessions in order (see `plan_orders`) and return orders plus projected fills.

    start_state is the book at the first session *after* its open (nothing pending), book events of that
    session and before included, and after that session's exits (a book works the open, then the exits on
    the session's bar: `exits.execute_exits`; the planner does both from the second session on). Prices may hold sessions before the window (the last close before it
    values held positions) but nothing after the last session is read (point in time). `next_session` is
    the session after the window (the fill month of the last session's orders, for the monthly quota);
    default: the next NYSE session. `events` (`book_events.book_events`): those of a later session of the
    window apply before its open's fills (`apply_book_events`); earlier ones only bring the closes before
    the window into the book's share basis.
    """
    sessions = list(sessions)
    rule = risk.share_rule
    start_state = start_state.in_shares(rule)
    if not sessions:
        return Projection(orders_to_frame([], rule), [], [], start_state, [])
    if any(a >= b for a, b in zip(sessions, sessions[1:], strict=False)):
        raise ValueError("sessions must be strictly increasing")
    chain = default_controls(risk, slippage, commission) if controls is None else tuple(controls)
    shortcut = EarlyDenial.for_chain(chain, risk, slippage, commission)
    planner = _SessionPlanner(risk, chain, shortcut, slippage, commission, account, _ExactPrices())
    exact = planner.exact
    arrays = None
    keyed = None
    if bulk_planner.applies(risk, shortcut):
        arrays, keyed = bulk_planner.signal_arrays(
            signals, prices, sessions, risk, slippage, commission, list(start_state.positions), _keyed_signals
        )
        symbols = set(arrays.symbols_in_range)
        if not arrays.ok:
            arrays = None
        else:
            arrays.start_ids(account)
    if arrays is None:
        keyed = _keyed_signals(signals, sessions) if keyed is None else keyed
        symbols = set(keyed["symbol"].unique().to_list())
    by_session = {} if arrays is not None else _signals_by_session(keyed)
    symbols |= set(start_state.positions)
    events = sorted(events, key=event_order)
    symbols |= {e.new_symbol for e in events if isinstance(e, Rename)}
    need_atrs = risk.needs_atr or risk.has_exits
    # the rows of the window's symbols (checked for the columns exits and ATRs need); the dense bars read none
    px = _price_rows(prices, symbols, sessions, risk) if need_atrs or arrays is None else None
    # (its own filter is narrower than `_price_rows`': the same closes from the whole frame)
    last_close = last_closes_before(prices if px is None else px, symbols, sessions[0])
    last_close.apply(events_between(events, None, sessions[0]))  # already in start_state
    book = None if arrays is None else _BookArrays(arrays)
    # without book events the bulk pass reads the bars as arrays (`_DenseBars`); else as per-session dicts
    dense = None
    if arrays is not None and book is not None and not events:
        dense = _DenseBars(arrays.prices, book.index, last_close)
        dense = dense if dense.ok else None
    if dense is None or need_atrs:
        px = _price_rows(prices, symbols, sessions, risk) if px is None else px
        bars = _partitions(px, sessions)
    else:
        bars = {}
    after_last = next_session or _next_session(sessions[-1])
    # {session: {symbol: spread proxy}} when the slippage model charges a fraction of the spread: an order of
    # session D fills with D's proxy, an exit of session D with D's (execution.spread_proxies)
    spreads = _spreads(prices, symbols, sessions) if slippage.uses_spread else None

    state, pending = start_state, []
    orders = _FrameInChunks(rule)
    fills: list[Fill] = []
    expired: list[OrderEvent] = []
    effects: list[EventEffect] = []
    levels: dict[str, ExitLevels] = {}  # of every approved buy (by id): those pending fill with theirs
    breaches: list[tuple[dt.date, Decimal]] = []
    loss_limit = risk.has_daily_loss_limit
    assert dense is None or not loss_limit  # the bulk pass covers no session limit
    cash_limited = risk.buying_power == "cash"
    upcoming = [e for e in events if e.session > sessions[0]]
    touched: set[str] = set()  # symbols whose position or month count moved since `book` last saw the state
    for i, session in enumerate(sessions):
        day = _NO_BARS if dense is not None else _session_bars(bars.get(session))
        if upcoming and upcoming[0].session <= session:
            todays = [e for e in upcoming if e.session <= session]
            upcoming = upcoming[len(todays) :]
            outcome = apply_book_events(state, todays, session, pending)
            state, pending = outcome.state, outcome.pending
            expired += outcome.expired
            effects += outcome.effects
            last_close.apply(todays)
        if pending:
            opens = _opens(pending, day.opens, exact) if dense is None else dense.opens_of(pending, i, exact)
            result = execute_open(
                pending,
                opens,
                session,
                state.cash,
                {o.symbol: state.qty(o.symbol) for o in pending},  # all it reads of the positions
                slippage,
                commission,
                cash_limited=cash_limited,
                # the pending orders are the previous walked session's (none are pending at the first)
                spreads=None if spreads is None else spreads.get(sessions[i - 1], {}) if i else {},
            )
            state = state.apply_fills(result.fills, levels)
            fills += result.fills
            expired += result.expired
            touched.update(f.symbol for f in result.fills)
        if i and state.exits:  # the first session's exits are in start_state
            exit_fills = execute_exits(
                state.exits,
                _exit_bars(bars.get(session), state.exits),
                session,
                state.held(),
                slippage,
                commission,
                spreads=None if spreads is None else spreads.get(session, {}),
            )
            if exit_fills:
                state = state.apply_fills(exit_fills)
                fills += exit_fills
                touched.update(f.symbol for f in exit_fills)
        if dense is None:
            last_close.update(session, day.closes)
        else:
            dense.close_session(i)
        halted = False
        if loss_limit:
            open_value, loss = _session_loss(state, day, last_close, exact)
            limit = risk.daily_loss_limit(open_value)
            if limit is not None and loss >= limit:
                halted = True
                breaches.append((session, loss))
        fill_session = sessions[i + 1] if i + 1 < len(sessions) else after_last
        if arrays is not None:
            lo, hi = arrays.bounds[i], arrays.bounds[i + 1]
            pending, new_levels = [], {}
            if hi > lo:
                assert book is not None
                if dense is None:
                    book.load(state, fill_session.year, fill_session.month)
                    equity = _equity(state, last_close, exact)
                else:
                    book.sync(state, touched, fill_session.year, fill_session.month)
                    equity = dense.equity(state, book.held)
                touched.clear()
                pending, new_levels = planner.plan_bulk(
                    arrays,
                    lo,
                    hi,
                    book,
                    state,
                    equity,
                    session,
                    fill_session,
                    _session_atrs(bars.get(session)) if need_atrs else None,
                    None if spreads is None else spreads.get(session, {}),
                )
            levels.update(new_levels)
            continue
        signals_today = by_session.get(session)
        rows = _in_processing_order(signals_today) if signals_today is not None else []
        atrs = _session_atrs(bars.get(session)) if need_atrs and rows else None
        planned, pending, new_levels = planner.plan(
            rows,
            state,
            day.closes,
            last_close,
            session,
            fill_session,
            halted,
            atrs,
            None if spreads is None or not rows else spreads.get(session, {}),
        )
        levels.update(new_levels)
        orders.add(planned)
    frame = orders.frame() if arrays is None else arrays.frame_of_orders(account)
    return Projection(frame, fills, expired, state, pending, effects, levels, breaches, last_session=sessions[-1])


class _FrameInChunks:
    """The orders frame built as the rows come: every `CHUNK` rows become a frame chunk and their Python
    objects are freed, to be reused by the next sessions' rows."""

    CHUNK = 100_000

    def __init__(self, shares: ShareRule = WHOLE) -> None:
        self._chunks: list[pl.DataFrame] = []
        self._rows: list[OrderRow] = []
        self._shares = shares

    def add(self, rows: list[OrderRow]) -> None:
        self._rows += rows
        if len(self._rows) >= self.CHUNK:
            self._chunks.append(order_rows_to_frame(self._rows, self._shares))
            self._rows = []

    def frame(self) -> pl.DataFrame:
        return pl.concat([*self._chunks, order_rows_to_frame(self._rows, self._shares)])


def plan_orders(
    signals: pl.DataFrame,
    prices: pl.DataFrame,
    start_state: PortfolioState,
    sessions: Sequence[dt.date],
    risk: RiskConfig,
    slippage: SlippageModel,
    commission: CommissionModel,
    account: str,
    *,
    next_session: dt.date | None = None,
    events: Sequence[BookEvent] = (),
    as_of: dt.date | None = None,
) -> pl.DataFrame:
    """The `orders` frame for the signals' sessions.

    At each session D: fill the orders pending from the previous session at D's open (no bar: expired),
    then size and risk-check D's signals (sells before buys; strategies alphabetically, stronger
    signals first) against that book with D's close as ref_price. Approved orders fill at D+1's open.

    `sessions` is the ordered session list: the window's sessions or the whole NYSE calendar. Only the
    sessions from the first to the last signal session are walked (nothing before the first signal can
    create an order, nothing after the last one can change one), and the element after the last walked
    session is its fill session (for the monthly quota; `next_session` or the NYSE calendar when the list
    ends there). start_state is the book after the open (and the exits) of `as_of` (default: the first
    signal session), book events up to it included; `events` of later sessions apply on their session (see
    `simulate`). With exit lots in start_state the walk starts at `as_of` (their exits may fill before the
    first signal).
    Signals outside the list's range are ignored; a signal inside it on a date that is not in the list is
    an error.
    """
    sessions = list(sessions)
    if not sessions or signals.height == 0:
        return orders_to_frame([], risk.share_rule)
    in_range = signals.filter(pl.col("session").is_between(sessions[0], sessions[-1]))["session"].unique()
    if in_range.len() == 0:
        return orders_to_frame([], risk.share_rule)
    known = set(sessions)
    strays = sorted(d for d in in_range.to_list() if d not in known)
    if strays:
        raise ValueError(f"signals on dates that are not sessions: {strays[:5]}")
    lo = bisect.bisect_left(sessions, in_range.min())
    hi = bisect.bisect_left(sessions, in_range.max())
    after = sessions[hi + 1] if hi + 1 < len(sessions) else next_session
    if as_of is not None and as_of < sessions[lo] and start_state.exits and as_of in known:
        lo = bisect.bisect_left(sessions, as_of)  # exits may fill before the first signal: walk from as_of
    elif as_of is not None and as_of < sessions[lo]:  # nothing pending between: only the events move the book
        start_state = apply_book_events(
            start_state, events_between(events, as_of, sessions[lo]), sessions[lo]
        ).state
    projection = simulate(
        signals,
        prices,
        start_state,
        sessions[lo : hi + 1],
        risk,
        slippage,
        commission,
        account,
        next_session=after,
        events=events,
    )
    return projection.orders_frame
