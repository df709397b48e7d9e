"""Mark-to-market: positions and equity per session, derived from a start state plus fills.

Nothing here is stored state: positions are a replay of fills (the broker's, or the planner's
projection) marked at each session's close. The arithmetic is Decimal (the same `apply_fills` as the
broker) and only the output frames are float64. Book events (splits, delistings, renames) apply before
their session's fills with the broker's own `portfolio.apply_book_events`, and the marks follow them
(`portfolio.LastCloses`), so a position held across a split books no jump.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

import numpy as np
import polars as pl

from trading_dagster.domain import execution
from trading_dagster.domain.book_events import BookEvent, Rename, event_order, events_between
from trading_dagster.domain.orders import Fill, as_decimal, fills_from_frame
from trading_dagster.domain.portfolio import LastCloses, PortfolioState, apply_book_events, last_closes_before
from trading_dagster.domain.quantity import FRACTIONAL, WHOLE, ShareRule

POSITION_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "symbol": pl.String(),
    "qty": pl.Int64(),
    "avg_cost": pl.Float64(),
    "close": pl.Float64(),
    "market_value": pl.Float64(),
    "unrealized_pnl": pl.Float64(),
    "stale_price": pl.Boolean(),
}



def position_schema(shares: ShareRule = WHOLE) -> dict[str, pl.DataType]:
    """`POSITION_SCHEMA` for a book's share rule: `qty` is Float64 with fractional shares."""
    return POSITION_SCHEMA if not shares.fractional else {**POSITION_SCHEMA, "qty": shares.dtype}


EQUITY_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "cash": pl.Float64(),
    "market_value": pl.Float64(),
    "equity": pl.Float64(),
    "realized_pnl": pl.Float64(),
    "unrealized_pnl": pl.Float64(),
    "daily_return": pl.Float64(),
    "n_positions": pl.Int64(),
    "trades": pl.Int64(),
    "benchmark_close": pl.Float64(),
}


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


_EPOCH = dt.date(1970, 1, 1)


def _closes_lookup(
    window: pl.DataFrame, last_close: LastCloses, codes: dict[str, int], n_sessions: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, their closes) of the last-known-close search. A key is code x (n_sessions + 1) + the
    session's position in the window + 1, or + 0 for the last float close before the window; a repeated
    (session, symbol) row keeps its frame order (a stable sort), so the search's last match is the frame's last
    row, as a dict of the rows would keep."""
    stride = n_sessions + 1
    pre = [(codes[s] * stride, c) for s, c in last_close.close.items() if s in codes and isinstance(c, float)]
    keys = np.concatenate(
        [np.array([k for k, _ in pre], dtype=np.int64), window["code"].to_numpy() * stride + window["idx"].to_numpy() + 1]
    )
    closes = window["close"].cast(pl.Float64).to_numpy()  # only a Float64 column's are used as marks
    closes = np.concatenate([np.array([c for _, c in pre], dtype=np.float64), closes])
    order = np.argsort(keys, kind="stable")
    return keys[order], closes[order]


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

    How: the book is replayed session by session (book events, then `apply_fills`), recording when each
    position (a `Position` record) is held; the rows are those spans expanded, in (session, symbol) order, with
    each row's last known close found in one sorted-key search over the window's closes; the money is Decimal
    row by row as before (value = qty x close, unrealized = value - qty x average cost, the session's sums in
    symbol order), so every figure is the one the per-position loop gave. The marks of symbols that book
    events touch (split-adjusted closes, a renamed ticker's) are a `LastCloses` of those symbols alone,
    updated session by session as the loop did for all.
    """
    sessions = list(sessions)
    by_session = _fills_by_session(fills, sessions) if sessions else {}
    if any(isinstance(f.qty, Decimal) for fs in by_session.values() for f in fs):
        start_state = start_state.in_shares(FRACTIONAL)  # fractional fills: a fractional book, whatever it started as
    schema = position_schema(start_state.shares)
    fractional = start_state.shares.fractional
    if not sessions:
        return pl.DataFrame(schema=schema), pl.DataFrame(schema=EQUITY_SCHEMA)
    index = {day: i for i, day in enumerate(sessions)}
    if len(index) != len(sessions):
        raise ValueError("a session of the window repeats")
    events = sorted(events, key=event_order)
    symbols = (
        set(start_state.positions)
        | {f.symbol for fs in by_session.values() for f in fs}
        | {benchmark_symbol}
        | {e.new_symbol for e in events if isinstance(e, Rename)}
    )
    px = prices.select("symbol", "session", "close").filter(
        pl.col("symbol").is_in(sorted(symbols))
        & (pl.col("session") <= sessions[-1])
        & pl.col("close").is_not_null()
    )
    last_close = last_closes_before(px, symbols, sessions[0])
    before = sessions[0] - dt.timedelta(days=1)
    last_close.apply(events_between(events, None, before))  # already in start_state

    prev_equity: Decimal | None = None
    if all(s in last_close for s in start_state.positions):
        marks = {s: last_close.exact(s) for s in start_state.positions}
        prev_equity = start_state.cash + start_state.market_value(marks)

    # the window's closes on its sessions (the last row of a symbol's session wins, as a dict of the rows would)
    ordered = sorted(symbols)
    codes = {s: i for i, s in enumerate(ordered)}
    day_numbers = np.array([(d - _EPOCH).days for d in sessions], dtype=np.int64)
    by_day = np.argsort(day_numbers)
    window = px.filter(pl.col("session") >= sessions[0])
    on = window["session"].to_physical().to_numpy().astype(np.int64)
    at = np.minimum(np.searchsorted(day_numbers[by_day], on), len(sessions) - 1)
    window = window.with_columns(
        code=pl.col("symbol").cast(pl.Enum(ordered)).to_physical().cast(pl.Int64),
        idx=pl.Series(by_day[at], dtype=pl.Int64),
    ).filter(pl.Series(day_numbers[by_day][at] == on))  # a date of the frame that is no session of the window
    # symbols whose marks book events move, or all of them when the closes are no floats: a LastCloses each
    moved = {e.symbol for e in events} | {e.new_symbol for e in events if isinstance(e, Rename)}
    if px.schema["close"] != pl.Float64:
        moved = set(symbols)
    moved &= symbols  # an event of a symbol never in the book moves no close of it (it has none here)
    tracked = LastCloses({s: (last_close.day[s], last_close.close[s]) for s in moved if s in last_close})
    tracked_closes = (
        execution.by_session(window.filter(pl.col("symbol").is_in(sorted(moved))), "close") if moved else {}
    )
    tracked_marks: dict[tuple[int, str], float | Decimal | None] = {}

    # replay: each position record's span of sessions [start, end)
    state = start_state
    spans: list[list] = []  # [symbol, Position, start, end]
    open_span: dict[str, list] = {}
    for symbol, pos in state.positions.items():
        open_span[symbol] = span = [symbol, pos, 0, len(sessions)]
        spans.append(span)
    cash: list[Decimal] = []
    realized: list[Decimal] = []
    n_positions: list[int] = []
    trades: list[int] = []
    bench_tracked: list[float | Decimal | None] = []
    for i, session in enumerate(sessions):
        todays = events_between(events, before, session)
        before = session
        touched: Iterable[str] = ()
        if todays:
            state = apply_book_events(state, todays, session).state
            tracked.apply(todays)
            touched = set(open_span) | set(state.positions)  # whatever the events moved
        day_fills = by_session.get(session, [])
        if day_fills:
            state = state.apply_fills(day_fills)
            touched = {*touched, *(f.symbol for f in day_fills)}
        positions = state.positions
        for symbol in touched:
            pos, span = positions.get(symbol), open_span.get(symbol)
            if span is not None and span[1] is pos:
                continue
            if span is not None:
                span[3] = i
                del open_span[symbol]
            if pos is not None:
                open_span[symbol] = span = [symbol, pos, i, len(sessions)]
                spans.append(span)
        if moved:
            tracked.update(session, tracked_closes.get(session, {}))
            for symbol in moved.intersection(open_span):
                tracked_marks[(i, symbol)] = tracked.get(symbol)
            if benchmark_symbol in moved:
                bench_tracked.append(tracked.get(benchmark_symbol))
        cash.append(state.cash)
        realized.append(state.realized_pnl)
        n_positions.append(len(positions))
        trades.append(len(day_fills))

    # the rows: every span expanded, in (session, symbol) order
    span_code = np.array([codes[s[0]] for s in spans], dtype=np.int64)
    span_start = np.array([s[2] for s in spans], dtype=np.int64)
    lengths = np.array([s[3] - s[2] for s in spans], dtype=np.int64)
    row_span = np.repeat(np.arange(len(spans), dtype=np.int64), lengths)
    row_session = span_start[row_span] + np.arange(len(row_span), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )
    order = np.lexsort((span_code[row_span], row_session))
    row_span, row_session = row_span[order], row_session[order]
    row_code = span_code[row_span]

    # each row's last known close: the latest key at or before its own
    stride = len(sessions) + 1
    keys, key_closes = _closes_lookup(window, last_close, codes, len(sessions))
    wanted = row_code * stride + row_session + 1
    at = np.searchsorted(keys, wanted, side="right") - 1
    safe = np.maximum(at, 0)
    found = (at >= 0) & (keys[safe] // stride == row_code) if len(keys) else np.zeros(len(wanted), dtype=bool)
    stale = ~(found & (keys[safe] == wanted)) if len(keys) else np.ones(len(wanted), dtype=bool)
    marks = key_closes[safe] if len(keys) else np.zeros(len(wanted))

    # money, row by row in Decimal (exactly the figures of a loop over the positions)
    span_pos = [s[1] for s in spans]
    span_cost = [p.qty * p.avg_cost for p in span_pos]
    rows_span = row_span.tolist()
    qtys = list(map([p.qty for p in span_pos].__getitem__, rows_span))
    costs = list(map(span_cost.__getitem__, rows_span))
    mark_list = marks.tolist()
    found_list = found.tolist()
    close_float = marks.copy()
    # a row marked at a finite float close of the window (or the one before it): that close's exact Decimal
    closes: list[Decimal] = list(map(Decimal, map(repr, mark_list)))
    moved_rows = (
        np.isin(row_code, np.array([codes[s] for s in moved], dtype=np.int64)) if moved else np.zeros(len(wanted), bool)
    )
    # the others, in row order: no close (average cost), a tracked symbol's mark, a close that is not finite
    slow = ~found | moved_rows | (found & ~np.isfinite(marks))
    row_session_list = row_session.tolist()
    for r in np.flatnonzero(slow).tolist():
        symbol = ordered[row_code[r]]
        if moved_rows[r]:
            mark = tracked_marks[(row_session_list[r], symbol)]
        else:
            mark = mark_list[r] if found_list[r] else None
        if mark is None:
            close = span_pos[rows_span[r]].avg_cost
            value_float = float(close)
        elif isinstance(mark, float):
            if not math.isfinite(mark):
                raise ValueError(f"{symbol}: not a finite close at {sessions[row_session_list[r]]}: {mark!r}")
            close, value_float = Decimal(repr(mark)), mark
        else:
            close = mark if isinstance(mark, Decimal) else as_decimal(mark)
            value_float = float(close)
        closes[r] = close
        close_float[r] = value_float
    values = list(map(operator.mul, qtys, closes))
    pnls = list(map(operator.sub, values, costs))

    # the sessions: sums in symbol order, equity, return, benchmark
    bounds = np.searchsorted(row_session, np.arange(len(sessions) + 1)).tolist()
    if benchmark_symbol in moved:
        bench: list[float | Decimal | None] = bench_tracked
    else:
        b = codes[benchmark_symbol]
        want = b * stride + np.arange(len(sessions), dtype=np.int64) + 1
        at = np.searchsorted(keys, want, side="right") - 1
        ok = (at >= 0) & (keys[np.maximum(at, 0)] // stride == b) if len(keys) else np.zeros(len(want), bool)
        got = key_closes[np.maximum(at, 0)].tolist() if len(keys) else [0.0] * len(want)
        bench = [v if k else None for v, k in zip(got, ok.tolist(), strict=True)]
    equity_rows: list[tuple] = []
    zero = Decimal(0)
    for i, session in enumerate(sessions):
        a, z = bounds[i], bounds[i + 1]
        market_value = sum(values[a:z], zero)
        unrealized = sum(pnls[a:z], zero)
        equity = cash[i] + market_value
        daily_return = None if not prev_equity else float(equity / prev_equity - 1)
        prev_equity = equity
        mark = bench[i]
        equity_rows.append(
            (
                session,
                float(cash[i]),
                float(market_value),
                float(equity),
                float(realized[i]),
                float(unrealized),
                daily_return,
                n_positions[i],
                trades[i],
                None if mark is None else float(mark),
            )
        )
    span_qty = [float(p.qty) for p in span_pos] if fractional else [p.qty for p in span_pos]
    positions = pl.DataFrame(
        {
            "session": pl.Series(day_numbers[row_session]).cast(pl.Int32).cast(pl.Date),
            "symbol": pl.Series(ordered, dtype=pl.String).gather(row_code),
            "qty": pl.Series(span_qty, dtype=schema["qty"]).gather(row_span),
            "avg_cost": pl.Series([float(p.avg_cost) for p in span_pos], dtype=pl.Float64).gather(row_span),
            "close": close_float,
            "market_value": list(map(float, values)),
            "unrealized_pnl": list(map(float, pnls)),
            "stale_price": stale,
        },
        schema=schema,
    )
    return positions, pl.DataFrame(equity_rows, schema=EQUITY_SCHEMA, orient="row")
