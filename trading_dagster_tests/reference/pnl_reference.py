"""FROZEN reference: `mark_to_market` of `trading_dagster/domain/pnl.py` as of commit a261d30, the loop over every
position of every session that the columnar version replaced (issue 12). Kept so that tests can prove the new one
gives the same positions and equity frames, row for row and value for value. Do not edit or import it from
production code. The schemas and the types it shares with pnl.py and portfolio.py are imported from there.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import polars as pl

from trading_dagster.domain import execution
from trading_dagster.domain.book_events import BookEvent, Rename, event_order, events_between
from trading_dagster.domain.orders import Fill, fills_from_frame
from trading_dagster.domain.pnl import EQUITY_SCHEMA, position_schema
from trading_dagster.domain.portfolio import LastCloses, PortfolioState, apply_book_events, last_closes_before
from trading_dagster.domain.quantity import FRACTIONAL


def _fills_by_session(
    fills: pl.DataFrame | Sequence[Fill], sessions: Sequence[dt.date]
) -> dict[dt.date, list[Fill]]:
    records = fills_from_frame(fills) if isinstance(fills, pl.DataFrame) else list(fills)
    in_window = set(sessions)
    out: dict[dt.date, list[Fill]] = defaultdict(list)
    for f in records:
        if sessions[0] <= f.session <= sessions[-1]:
            if f.session not in in_window:
                raise ValueError(
                    f"fill {f.client_order_id} at {f.session}, which is not a session of the window"
                )
            out[f.session].append(f)
    return out


def _closes(
    prices: pl.DataFrame, symbols: set[str], sessions: Sequence[dt.date]
) -> tuple[LastCloses, dict[dt.date, dict[str, float]]]:
    """(last close before the window per symbol, {session: {symbol: close}} inside it)."""
    px = prices.select("symbol", "session", "close").filter(
        pl.col("symbol").is_in(sorted(symbols))
        & (pl.col("session") <= sessions[-1])
        & pl.col("close").is_not_null()
    )
    by_session = execution.by_session(px.filter(pl.col("session") >= sessions[0]), "close")
    return last_closes_before(px, symbols, sessions[0]), by_session


def mark_to_market(
    start_state: PortfolioState,
    fills: pl.DataFrame | Sequence[Fill],
    prices: pl.DataFrame,
    sessions: Sequence[dt.date],
    benchmark_symbol: str = "SPY",
    events: Sequence[BookEvent] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(positions frame, equity frame) for the window `sessions`.

    start_state: the book after the session before the window (`broker.account(previous session)`).
    fills: an executions frame (its 'filled' rows are used) or Fill records; fills outside the window are
    ignored. At each session the fills of its open are applied, then everything is marked at the close; a
    symbol without a bar that day keeps its last known close (`stale_price`), average cost if none is
    known. Pass prices with a few sessions of lookback before the window so that a one-day run finds the
    same last-known closes (and the previous equity for daily_return) as a range run; daily_return of the
    first session is null when a held position has no close before the window.
    benchmark_close is the benchmark's close, carried forward over a missing bar (null if never seen).
    `events` (`book_events.book_events`): those of a session of the window apply before its fills, as the
    broker applied them; earlier ones (already in start_state) bring the closes before the window into the
    book's share basis, so give the events of the price lookback too.
    The positions' `qty` column follows the book's share rule (`start_state.shares`, or fractional when a fill's
    quantity is a Decimal: `position_schema`).
    """
    sessions = list(sessions)
    by_session = _fills_by_session(fills, sessions) if sessions else {}
    if any(isinstance(f.qty, Decimal) for fs in by_session.values() for f in fs):
        start_state = start_state.in_shares(FRACTIONAL)  # fractional fills: a fractional book, whatever it started as
    schema = position_schema(start_state.shares)
    fractional = start_state.shares.fractional
    if not sessions:
        return pl.DataFrame(schema=schema), pl.DataFrame(schema=EQUITY_SCHEMA)
    events = sorted(events, key=event_order)
    symbols = (
        set(start_state.positions)
        | {f.symbol for fs in by_session.values() for f in fs}
        | {benchmark_symbol}
        | {e.new_symbol for e in events if isinstance(e, Rename)}
    )
    last_close, closes = _closes(prices, symbols, sessions)
    before = sessions[0] - dt.timedelta(days=1)
    last_close.apply(events_between(events, None, before))  # already in start_state

    prev_equity: Decimal | None = None
    if all(s in last_close for s in start_state.positions):
        marks = {s: last_close.exact(s) for s in start_state.positions}
        prev_equity = start_state.cash + start_state.market_value(marks)

    state = start_state
    held: dict[str, tuple] = {}  # symbol: (its Position, qty x avg cost, float avg cost)
    position_rows: list[tuple] = []
    equity_rows: list[tuple] = []
    for session in sessions:
        todays = events_between(events, before, session)
        before = session
        if todays:
            state = apply_book_events(state, todays, session).state
            last_close.apply(todays)
        day_fills = by_session.get(session, [])
        state = state.apply_fills(day_fills)
        day = closes.get(session, {})
        last_close.update(session, day)
        market_value = unrealized = Decimal(0)
        marks = last_close.close
        for symbol in sorted(state.positions):
            pos = state.positions[symbol]
            cached = held.get(symbol)
            if cached is None or cached[0] is not pos:  # a new position: its cost figures once, not per session
                cached = held[symbol] = (pos, pos.qty * pos.avg_cost, float(pos.avg_cost))
            _, cost, avg_cost = cached
            stale = symbol not in day
            mark = marks.get(symbol)
            if mark is None:
                close = pos.avg_cost
                close_float = float(close)
            elif isinstance(mark, float):  # what LastCloses.exact does (as_decimal), and its float back exactly
                if not math.isfinite(mark):
                    raise ValueError(f"{symbol}: not a finite close at {session}: {mark!r}")
                close, close_float = Decimal(repr(mark)), mark
            else:
                close = last_close.exact(symbol)
                close_float = float(close)
            value = pos.qty * close
            pnl = value - cost
            market_value += value
            unrealized += pnl
            position_rows.append(
                (session, symbol, float(pos.qty) if fractional else pos.qty, avg_cost, close_float, float(value), float(pnl), stale)
            )
        equity = state.cash + market_value
        daily_return = None if not prev_equity else float(equity / prev_equity - 1)
        prev_equity = equity
        bench = last_close.get(benchmark_symbol)
        equity_rows.append(
            (
                session,
                float(state.cash),
                float(market_value),
                float(equity),
                float(state.realized_pnl),
                float(unrealized),
                daily_return,
                len(state.positions),
                len(day_fills),
                None if bench is None else float(bench),
            )
        )
    positions = (
        pl.DataFrame(position_rows, schema=schema, orient="row")
        if position_rows
        else pl.DataFrame(schema=schema)
    )
    return positions, pl.DataFrame(equity_rows, schema=EQUITY_SCHEMA, orient="row")
