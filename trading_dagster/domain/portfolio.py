"""Portfolio state derived from fills, and the order planner that walks a window of sessions.

The portfolio is path dependent: the orders of session D are sized on the book after D's open fills,
which are the fills of D-1's orders. `plan_orders` reproduces that loop in pure code: at each session it
fills what is pending at the open with exactly the fill model the paper broker uses
(`execution.execute_open`), then sizes and risk-checks the session's signals at the close. Driving the
paper broker one session at a time therefore yields the same orders and fills as planning a whole window.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import polars as pl

from trading_dagster.domain.execution import CommissionModel, SlippageModel, execute_open
from trading_dagster.domain.orders import (
    Fill,
    Order,
    OrderEvent,
    as_decimal,
    client_order_id,
    orders_to_frame,
)
from trading_dagster.domain.risk import (
    OrderIntent,
    PreTradeControl,
    RiskConfig,
    RiskContext,
    check_order,
    default_controls,
    estimated_buy_cost,
    size_order,
)

MonthKey = tuple[str, int, int]  # (symbol, year, month)


class Position(NamedTuple):
    """Shares held and average cost per share, buy commissions included (the tax-lot convention), so
    that equity - initial cash == realized + unrealized P&L."""

    qty: int
    avg_cost: Decimal


def fill_apply_order(fill: Fill) -> tuple[dt.date, int, str]:
    """Canonical order to apply fills in: by session, sells before buys (as the open works them), then id.

    Every consumer (planner, broker replay, mark-to-market) applies fills in this order, so the Decimal
    results (average costs, realized P&L) are identical whoever computes them.
    """
    return (fill.session, 0 if fill.side == "sell" else 1, fill.client_order_id)


@dataclass(frozen=True)
class PortfolioState:
    """Cash, positions, realized P&L and the month's purchases: everything risk needs, all from fills.

    `monthly_buys` counts shares bought per (symbol, year, month) of the fill session; only months from
    the latest applied fill's month on are kept (older months can never constrain a future order).
    Treat the mappings as read-only; every update returns a new state.
    """

    cash: Decimal
    positions: Mapping[str, Position] = field(default_factory=dict)
    realized_pnl: Decimal = Decimal(0)
    monthly_buys: Mapping[MonthKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cash", as_decimal(self.cash))
        object.__setattr__(self, "realized_pnl", as_decimal(self.realized_pnl))
        object.__setattr__(
            self, "positions", {s: Position(int(p[0]), as_decimal(p[1])) for s, p in self.positions.items()}
        )
        object.__setattr__(self, "monthly_buys", dict(self.monthly_buys))

    @classmethod
    def initial(cls, cash: Decimal | int | str) -> PortfolioState:
        return cls(cash=as_decimal(cash))

    def qty(self, symbol: str) -> int:
        pos = self.positions.get(symbol)
        return pos.qty if pos else 0

    def held(self) -> dict[str, int]:
        return {s: p.qty for s, p in self.positions.items()}

    def bought_in_month(self, symbol: str, day: dt.date) -> int:
        return self.monthly_buys.get((symbol, day.year, day.month), 0)

    def market_value(self, closes: Mapping[str, Decimal]) -> Decimal:
        """Positions valued at `closes` (average cost for a symbol without one)."""
        return sum((p.qty * closes.get(s, p.avg_cost) for s, p in self.positions.items()), Decimal(0))

    def apply_fill(self, fill: Fill) -> PortfolioState:
        return self.apply_fills([fill])

    def apply_fills(self, fills: Iterable[Fill]) -> PortfolioState:
        """New state after `fills` (applied in `fill_apply_order`): buys raise the average cost, sells
        realize P&L against it, commissions come out of cash. Selling more than held is an error: the
        broker never lets a long-only account go short."""
        ordered = sorted(fills, key=fill_apply_order)
        if not ordered:
            return self
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
        monthly = {k: v for k, v in monthly.items() if (k[1], k[2]) >= (last.year, last.month)}
        return PortfolioState(cash=cash, positions=positions, realized_pnl=realized, monthly_buys=monthly)


@dataclass(frozen=True)
class Projection:
    """Everything the planner projected over a window.

    `pending` are the approved orders of the window's last session (they fill after the window);
    `end_state` is the book after the last session's open fills.
    """

    orders: list[Order]
    fills: list[Fill]
    expired: list[OrderEvent]
    end_state: PortfolioState
    pending: list[Order]


_SIGNAL_COLUMNS = ("session", "symbol", "strategy", "side", "strength")


def _signal_order(row: tuple) -> tuple:
    """Processing order within a session: sells first (as the open will work them), then strategies
    alphabetically, stronger signals first (scarce cash and quota go to the strongest), then symbol.
    Deterministic whatever the frame's row order."""
    _, symbol, strategy, side, strength = row
    return (0 if side == "sell" else 1, strategy, -(strength or 0.0), symbol)


def _signals_by_session(signals: pl.DataFrame, sessions: Sequence[dt.date]) -> dict[dt.date, list[tuple]]:
    frame = signals.select(_SIGNAL_COLUMNS).filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    best: dict[tuple, tuple] = {}
    for row in frame.iter_rows():
        key = row[:4]  # (session, symbol, strategy, side): one order id per key
        if key not in best or (row[4] or 0.0) > (best[key][4] or 0.0):
            best[key] = row
    out: dict[dt.date, list[tuple]] = defaultdict(list)
    for row in best.values():
        out[row[0]].append(row)
    for rows in out.values():
        rows.sort(key=_signal_order)
    return out


def _bars(
    prices: pl.DataFrame, symbols: set[str], sessions: Sequence[dt.date]
) -> tuple[dict[str, float], dict[dt.date, dict[str, tuple[float | None, float | None]]]]:
    """(last close before the window per symbol, {session: {symbol: (open, close)}} inside it)."""
    px = prices.select("symbol", "session", "open", "close").filter(
        pl.col("symbol").is_in(sorted(symbols)) & (pl.col("session") <= sessions[-1])
    )
    before = (
        px.filter((pl.col("session") < sessions[0]) & pl.col("close").is_not_null())
        .sort("session")
        .group_by("symbol")
        .agg(pl.col("close").last())
    )
    last_close = dict(before.iter_rows())
    in_window = set(sessions)
    bars: dict[dt.date, dict[str, tuple[float | None, float | None]]] = defaultdict(dict)
    for symbol, session, open_, close in px.filter(pl.col("session") >= sessions[0]).iter_rows():
        if session in in_window:
            bars[session][symbol] = (open_, close)
    return last_close, bars


def _next_session(day: dt.date) -> dt.date:
    from trading_dagster.domain.calendar import nyse_calendar

    return nyse_calendar().next_session(day) or day


def _plan_session(
    rows: Sequence[tuple],
    state: PortfolioState,
    bars: Mapping[str, tuple[float | None, float | None]],
    last_close: Mapping[str, float],
    session: dt.date,
    fill_session: dt.date,
    risk: RiskConfig,
    controls: Sequence[PreTradeControl],
    slippage: SlippageModel,
    commission: CommissionModel,
    account: str,
) -> list[Order]:
    """Size and risk-check one session's signals (already in processing order) against the book."""
    marks = {s: as_decimal(c) for s, c in last_close.items() if s in state.positions}
    equity = state.cash + state.market_value(marks)
    pending_buy: Counter[str] = Counter()
    pending_sell: Counter[str] = Counter()
    reserved = Decimal(0)
    out = []
    for _, symbol, strategy, side, _ in rows:
        close = bars.get(symbol, (None, None))[1]
        ref = None if close is None else as_decimal(close)
        held = state.qty(symbol)
        requested = size_order(side, ref, equity, held, risk)
        ctx = RiskContext(
            held=held,
            pending_buy_qty=pending_buy[symbol],
            pending_sell_qty=pending_sell[symbol],
            bought_in_fill_month=state.bought_in_month(symbol, fill_session),
            equity=equity,
            available_cash=state.cash - reserved,
        )
        decision = check_order(OrderIntent(symbol, side, requested, ref), ctx, controls)
        order = Order(
            client_order_id=client_order_id(account, session, symbol, strategy, side),
            session=session,
            symbol=symbol,
            strategy=strategy,
            side=side,
            requested_qty=requested,
            qty=decision.qty,
            ref_price=ref,
            status="denied" if decision.denied else "approved",
            reason_code=decision.reason_code,
        )
        out.append(order)
        if order.approved and side == "buy":
            assert ref is not None
            pending_buy[symbol] += order.qty
            reserved += estimated_buy_cost(order.qty, ref, slippage, commission)
        elif order.approved:
            pending_sell[symbol] += order.qty
    return out


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
) -> Projection:
    """Walk the window's sessions in order (see `plan_orders`) and return orders plus projected fills.

    start_state is the book at the first session *after* its open (nothing pending). Prices may hold
    sessions before the window (the last close before it values held positions) but nothing after the
    last session is read (point in time). `next_session` is the session after the window (the fill month
    of the last session's orders, for the monthly quota); default: the next NYSE session.
    """
    sessions = list(sessions)
    if not sessions:
        return Projection([], [], [], start_state, [])
    if any(a >= b for a, b in zip(sessions, sessions[1:], strict=False)):
        raise ValueError("sessions must be strictly increasing")
    controls = default_controls(risk, slippage, commission) if controls is None else controls
    by_session = _signals_by_session(signals, sessions)
    symbols = {row[1] for rows in by_session.values() for row in rows} | set(start_state.positions)
    last_close, bars = _bars(prices, symbols, sessions)
    after_last = next_session or _next_session(sessions[-1])

    state, pending = start_state, []
    orders: list[Order] = []
    fills: list[Fill] = []
    expired: list[OrderEvent] = []
    for i, session in enumerate(sessions):
        day = bars.get(session, {})
        if pending:
            opens = {s: as_decimal(b[0]) for s, b in day.items() if b[0] is not None}
            result = execute_open(pending, opens, session, state.cash, state.held(), slippage, commission)
            state = state.apply_fills(result.fills)
            fills += result.fills
            expired += result.expired
        last_close.update({s: b[1] for s, b in day.items() if b[1] is not None})
        fill_session = sessions[i + 1] if i + 1 < len(sessions) else after_last
        planned = _plan_session(
            by_session.get(session, []),
            state,
            day,
            last_close,
            session,
            fill_session,
            risk,
            controls,
            slippage,
            commission,
            account,
        )
        orders += planned
        pending = [o for o in planned if o.approved]
    return Projection(orders, fills, expired, state, pending)


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
) -> pl.DataFrame:
    """The `orders` frame for the signals' sessions.

    At each session D: fill the orders pending from the previous session at D's open (no bar: expired),
    then size and risk-check D's signals (sells before buys; strategies alphabetically, stronger
    signals first) against that book with D's close as ref_price. Approved orders fill at D+1's open.

    `sessions` is the ordered session list: the window's sessions or the whole NYSE calendar. Only the
    sessions from the first to the last signal session are walked (nothing before the first signal can
    create an order, nothing after the last one can change one), and the element after the last walked
    session is its fill session (for the monthly quota; `next_session` or the NYSE calendar when the list
    ends there). start_state is the book at the first signal session after its open. Signals outside the
    list's range are ignored; a signal inside it on a date that is not in the list is an error.
    """
    sessions = list(sessions)
    if not sessions or signals.height == 0:
        return orders_to_frame([])
    in_range = signals.filter(pl.col("session").is_between(sessions[0], sessions[-1]))["session"].unique()
    if in_range.len() == 0:
        return orders_to_frame([])
    known = set(sessions)
    strays = sorted(d for d in in_range.to_list() if d not in known)
    if strays:
        raise ValueError(f"signals on dates that are not sessions: {strays[:5]}")
    lo = bisect.bisect_left(sessions, in_range.min())
    hi = bisect.bisect_left(sessions, in_range.max())
    after = sessions[hi + 1] if hi + 1 < len(sessions) else next_session
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
    )
    return orders_to_frame(projection.orders)
