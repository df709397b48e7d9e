"""FROZEN reference: `trading_dagster/domain/portfolio.py` as of commit e869c24, before the order planner's bulk
pass (issue 12). Kept so that tests and `benchmarks/order_planner.py` can prove the fast planner gives the same
orders, row for row and column for column, as the Python-object planner it replaced. Do not edit or import it
from production code; only `plan_orders` / `simulate` of this copy are used. The types it shares with
portfolio.py (PortfolioState, book events, projections), which the bulk pass did not change, are imported from
there rather than copied.
"""


from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

import polars as pl

from trading_dagster.domain.book_events import (
    BookEvent,
    Rename,
    event_order,
    events_between,
)
from trading_dagster.domain.execution import (
    CommissionModel,
    SlippageModel,
    buy_cost,
    execute_open,
    spreads_by_session,
)
from trading_dagster.domain.exits import (
    ExitLevels,
    execute_exits,
    exit_levels,
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
    orders_to_frame,
)

# The state, book-event and projection types are portfolio.py's own: unchanged by the bulk pass, and shared so
# that both planners' results (states, books) compare directly. Only the planning loop below is frozen.
from trading_dagster.domain.portfolio import (
    EventEffect,
    LastCloses,
    PortfolioState,
    Projection,
    apply_book_events,
    last_closes_before,
)
from trading_dagster.domain.quantity import WHOLE, Qty, ShareRule
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

# Python objects for a session's signals, bars and orders exist only while that session is planned (the
# inputs wait as polars partitions, the output becomes frame chunks as it goes), so their memory is reused:
# a ten-year plan holding them all at once touched gigabytes of fresh memory (seconds of page faults).


_SIGNAL_COLUMNS = ("session", "symbol", "strategy", "side", "strength")
_SIGNAL_KEY = ["session", "symbol", "strategy", "side"]  # one order id per key

# A planned signal: (side rank, strategy, -strength, symbol, side). The first four are the processing order
# within a session: sells first (as the open will work them), then strategies alphabetically, stronger
# signals first (scarce cash and quota go to the strongest; no strength counts as 0), then symbol.
SignalRow = tuple[int, str, float, str, str]


def _signals_by_session(signals: pl.DataFrame, sessions: Sequence[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """{session: its signals as SignalRow columns}, one row per key; see `_in_processing_order`."""
    frame = _strongest_per_key(
        signals.select(_SIGNAL_COLUMNS).filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    )
    keyed = frame.select(
        "session",
        pl.when(pl.col("side") == "sell").then(0).otherwise(1).alias("rank"),
        "strategy",
        (-pl.col("strength").fill_null(0.0)).alias("neg_strength"),
        "symbol",
        "side",
    ).sort("session", "rank", "strategy", "neg_strength", "symbol")  # see `_in_processing_order`
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
    last_close = last_closes_before(px, symbols, sessions[0])
    inside = px.filter(pl.col("session").is_in(sessions))
    parts = inside.partition_by("session", as_dict=True, maintain_order=True, include_key=False)
    return last_close, {key[0]: part for key, part in parts.items()}


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


def _opens(pending: Sequence[Order], opens: Mapping[str, float], exact: _ExactPrices) -> dict[str, Decimal]:
    """Exact opens of the pending orders' symbols only: `execute_open` looks up nothing else."""
    return {o.symbol: exact[opens[o.symbol]] for o in pending if o.symbol in opens}


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
                spread = spreads.get(symbol) if spreads else None
                if spread is None:
                    reserved += estimated_buy_cost(qty, ref, self.slippage, self.commission)
                else:  # risk.estimated_buy_cost with the order's spread proxy (the fill model's own price)
                    reserved += buy_cost(qty, self.slippage.fill_price("buy", ref, spread), self.commission)
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
    by_session = _signals_by_session(signals, sessions)
    symbols = {s for part in by_session.values() for s in part["symbol"].unique().to_list()}
    symbols |= set(start_state.positions)
    events = sorted(events, key=event_order)
    symbols |= {e.new_symbol for e in events if isinstance(e, Rename)}
    last_close, bars = _bars(prices, symbols, sessions, risk)
    last_close.apply(events_between(events, None, sessions[0]))  # already in start_state
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
    loss_limit, need_atrs = risk.has_daily_loss_limit, risk.needs_atr or risk.has_exits
    cash_limited = risk.buying_power == "cash"
    upcoming = [e for e in events if e.session > sessions[0]]
    for i, session in enumerate(sessions):
        day = _session_bars(bars.get(session))
        if upcoming and upcoming[0].session <= session:
            todays = [e for e in upcoming if e.session <= session]
            upcoming = upcoming[len(todays) :]
            outcome = apply_book_events(state, todays, session, pending)
            state, pending = outcome.state, outcome.pending
            expired += outcome.expired
            effects += outcome.effects
            last_close.apply(todays)
        if pending:
            opens = _opens(pending, day.opens, planner.exact)
            result = execute_open(
                pending,
                opens,
                session,
                state.cash,
                state.held(),
                slippage,
                commission,
                cash_limited=cash_limited,
                # the pending orders are the previous walked session's (none are pending at the first)
                spreads=None if spreads is None else spreads.get(sessions[i - 1], {}) if i else {},
            )
            state = state.apply_fills(result.fills, levels)
            fills += result.fills
            expired += result.expired
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
        last_close.update(session, day.closes)
        halted = False
        if loss_limit:
            open_value, loss = _session_loss(state, day, last_close, exact)
            limit = risk.daily_loss_limit(open_value)
            if limit is not None and loss >= limit:
                halted = True
                breaches.append((session, loss))
        fill_session = sessions[i + 1] if i + 1 < len(sessions) else after_last
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
    return Projection(
        orders.frame(), fills, expired, state, pending, effects, levels, breaches, last_session=sessions[-1]
    )


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
