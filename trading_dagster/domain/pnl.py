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
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

import numpy as np
import polars as pl

from trading_dagster.domain import execution
from trading_dagster.domain.book_events import BookEvent, Rename, event_order, events_between
from trading_dagster.domain.collector import collector_paused
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


class _LastKnown:
    """The last known close of each (symbol code, window session) as a dense grid: cell code x (n_sessions + 1) +
    the session's position + 1 holds the window's close of that symbol and session (the frame's last row of the
    pair, as a dict of the rows would keep), cell + 0 the last float close before the window; each cell then
    points at the latest filled cell of its symbol at or before it (a running maximum along the sessions)."""

    __slots__ = ("closes", "latest", "owner", "stride")

    def __init__(self, window: pl.DataFrame, last_close: LastCloses, codes: dict[str, int], n_sessions: int) -> None:
        stride = self.stride = n_sessions + 1
        pre = [(codes[s] * stride, c) for s, c in last_close.close.items() if s in codes and isinstance(c, float)]
        size = len(codes) * stride
        # int32 cells and rows when they fit (half the memory traffic of int64 over millions of closes)
        dtype = np.int32 if max(size, len(pre) + window.height) < 2**31 else np.int64
        cells = np.empty(len(pre) + window.height, dtype=dtype)
        cells[: len(pre)] = [k for k, _ in pre]
        at = cells[len(pre) :]
        np.multiply(window["code"].to_numpy(), stride, out=at, casting="unsafe")
        at += window["idx"].to_numpy().astype(dtype, copy=False)
        at += 1
        closes = window["close"].cast(pl.Float64).to_numpy()  # only a Float64 column's are used as marks
        self.closes = np.concatenate([np.array([c for _, c in pre], dtype=np.float64), closes])
        rows = np.arange(len(cells), dtype=dtype)
        owner = np.full(size, -1, dtype=dtype)
        owner[cells] = rows
        taken = owner >= 0
        if np.count_nonzero(taken) < len(cells):  # a repeated cell: its last row, whatever the scatter kept
            np.maximum.at(owner, cells, rows)
        self.owner = owner
        grid = np.where(taken.reshape(len(codes), stride), np.arange(stride, dtype=np.int32)[None, :], np.int32(-1))
        self.latest = np.maximum.accumulate(grid, axis=1, out=grid).reshape(-1)

    def marks(self, code: np.ndarray, session: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(close, found, exact) of the latest close of symbols `code` at or before window sessions `session`:
        found when there is one, exact when it is the session's own; close 0.0 when none."""
        base = code * self.stride
        latest = self.latest[base + session + 1]
        found = latest >= 0
        exact = latest == session + 1
        cell = base + np.maximum(latest, 0)
        closes = np.where(found, self.closes[np.maximum(self.owner[cell], 0)] if len(self.closes) else 0.0, 0.0)
        return closes, found, exact


_MAX_DECIMALS = 9
_TWO_27 = 134217729.0  # 2**27 + 1: Veltkamp's splitter for float64


def _decimal_units(marks: np.ndarray, candidates: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(scale, units, exact): the most decimals (<= 9) a candidate mark needs, `scale`, each mark as an integer
    number of 10^-scale (`units`), and where that is exactly the Decimal of the mark's shortest repr
    (`as_decimal`): units / 10^scale rounds back to the mark, and the mark's float spacing is below 10^-scale,
    so no other multiple of 10^-scale rounds to it and its repr (the shortest decimal that does) is that
    multiple. A mark of more decimals, zero (whose repr may be -0.0) or too large is left to the Decimal path."""

    def fits(values: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
        power = 10.0**scale
        scaled = values * power
        units = np.rint(scaled)
        ok = (np.abs(scaled) < 2.0**50) & (units / power == values) & (np.spacing(np.abs(values)) < 10.0**-scale)
        return units, ok

    finite = candidates & np.isfinite(marks) & (marks != 0)
    rest = marks[finite]
    scale = 0
    for decimals in range(_MAX_DECIMALS + 1):  # the fewest decimals of each mark, on the marks not yet placed
        _, ok = fits(rest, decimals)
        if ok.any():
            scale = decimals
        rest = rest[~ok]
        if not len(rest):
            break
    units, ok = fits(np.where(finite, marks, 1.0), scale)
    exact = finite & ok
    return scale, np.where(exact, units, 0.0).astype(np.int64), exact


def _split(x: np.ndarray | float) -> tuple:
    c = _TWO_27 * x
    hi = c - (c - x)
    return hi, x - hi


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _nearest_floats(units: np.ndarray, scale: int, cost_hi: np.ndarray, cost_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, sure): y the float nearest to units x 10^-scale - cost, and where that is certain. `cost` is a Decimal
    given as cost_hi + cost_lo (its float and the float of the rest), `units` integers below 2^53.

    The difference is carried in double-double arithmetic (error-free sums and products, Dekker / Knuth), which
    is within `bound` of it (and of the difference rounded to 28 digits, Decimal's context, too); y is the
    difference rounded to a float, and it is the nearest float of every value within `bound` unless one of them
    is a tie or across one: those rows are not sure, and the caller computes them in Decimal."""
    power = 10.0**scale
    whole = units.astype(np.float64)  # exact below 2^53
    a_hi = whole / power
    p_hi, p_lo = _split(power)
    h, lo = _split(a_hi)
    product = a_hi * power
    error = ((h * p_hi - product) + h * p_lo + lo * p_hi) + lo * p_lo  # a_hi x power = product + error exactly
    a_lo = ((whole - product) - error) / power  # whole - product is exact (Sterbenz)
    s, e = _two_sum(a_hi, -cost_hi)
    y, z = _two_sum(s, e + (a_lo - cost_lo))
    bound = (np.abs(a_hi) + np.abs(cost_hi)) * 2.0**-100 + np.abs(y) * 2.0**-86
    up = np.nextafter(y, np.inf) - y
    down = y - np.nextafter(y, -np.inf)
    sure = (z + bound < up / 2) & (z - bound > -down / 2) & (y != 0)
    return y, sure


class _Money:
    """The positions' money, row by row, and its session sums: exactly the figures of the per-position loop
    (value = qty x close, unrealized = value - qty x average cost, each session's sums in symbol order, in
    Decimal), with most rows never made a Decimal.

    A row marked at a float close that is an exact decimal of at most 9 places (`_decimal_units`) has a value of
    qty x units of 10^-scale, an exact int64 whose float is one division, and an unrealized P&L that is the
    float nearest to value - cost (`_nearest_floats`, exact or left to Decimal). The Decimals the sessions need
    are their sums, kept in units of 10^-scale (`Decimal.scaleb` moves the exponent exactly): a session's value
    is its int64 sum of units, its unrealized P&L the sum of the Decimals units - cost x 10^scale. Every other
    row (no close: the average cost; a book-event symbol's mark; a close that is not finite, or no short
    decimal; an unsure float) is computed in Decimal as the loop did and enters the sums scaled.

    Why the sums are the loop's: Decimal rounds a result to 28 digits by its value and its exponent, and the
    same values in units have the exponent of the loop's, or -scale where the loop's was above it (a close of
    fewer decimals): results differ only if one needs 28 digits at that exponent, i.e. reaches 10^(28 - scale).
    `within` checks that no sum comes near it (else the caller redoes everything the Decimal way, scale 0)."""

    def __init__(self, span_pos: list, row_span: np.ndarray, marks: np.ndarray, bounds: np.ndarray, slow_mark) -> None:
        self.span_pos, self.row_span, self.marks, self.bounds = span_pos, row_span, marks, bounds
        self.slow_mark = slow_mark
        self.span_cost = [p.qty * p.avg_cost for p in span_pos]
        n = len(row_span)
        self.scale = 0
        self.units = np.zeros(n, dtype=np.int64)  # a fast row's value in units of 10^-scale
        self.fast: np.ndarray | None = None
        self.close, self.value, self.pnl = marks.copy(), np.zeros(n), np.zeros(n)
        self.value_terms: dict[int, Decimal] = {}  # the slow rows' values in units
        self.pnl_terms: list[Decimal] = []

    def run(self, candidates: np.ndarray | None) -> None:
        n = len(self.row_span)
        fast = np.zeros(n, dtype=bool)
        row_span = self.row_span
        if candidates is not None:
            scale, mark_units, fast = _decimal_units(self.marks, candidates)
            qty = np.array([p.qty for p in self.span_pos], dtype=np.int64)[row_span]
            fast &= np.abs(qty.astype(np.float64) * mark_units) < 2.0**52
            units = np.where(fast, qty * mark_units, 0)
            cost_hi = np.array([float(c) for c in self.span_cost])
            cost_lo = np.array([float(c - Decimal(h)) for c, h in zip(self.span_cost, cost_hi.tolist(), strict=True)])
            pnl, sure = _nearest_floats(units, scale, cost_hi[row_span], cost_lo[row_span])
            fast &= sure
            self.scale, self.units = scale, np.where(fast, units, 0)
            self.value = np.where(fast, units / 10.0**scale, 0.0)
            self.pnl = np.where(fast, pnl, 0.0)
        self.fast = fast
        scale = self.scale
        rows_span = row_span.tolist()
        if fast.any():  # every row's, the Decimal rows' replaced below
            minus_cost = [-c.scaleb(scale) for c in self.span_cost]
            # units + (-cost) is units - cost, the same Decimal (an int operand converts exactly)
            terms = list(map(operator.add, map(minus_cost.__getitem__, rows_span), self.units.tolist()))
        else:
            terms = [None] * n  # type: ignore[list-item]
        value_terms = {}
        for r in np.flatnonzero(~fast).tolist():
            pos = self.span_pos[rows_span[r]]
            mark = self.slow_mark(r)
            if mark is None:
                close = pos.avg_cost
                self.close[r] = float(close)
            elif isinstance(mark, float):
                close = Decimal(repr(mark))
                self.close[r] = mark
            else:
                close = mark if isinstance(mark, Decimal) else as_decimal(mark)
                self.close[r] = float(close)
            value = pos.qty * close
            pnl = value - self.span_cost[rows_span[r]]
            self.value[r], self.pnl[r] = float(value), float(pnl)
            value_terms[r], terms[r] = value.scaleb(scale), pnl.scaleb(scale)
        self.value_terms, self.pnl_terms = value_terms, terms

    def _per_session(self, values: np.ndarray) -> np.ndarray:
        """Each session's sum of `values` (row order; 0 for a session without rows)."""
        starts = self.bounds[:-1]
        out = np.zeros(len(starts), dtype=values.dtype)
        nonempty = starts < self.bounds[1:]
        if nonempty.any():
            out[nonempty] = np.add.reduceat(values, starts[nonempty])
        return out

    def within(self, cash: list[Decimal]) -> bool:
        """Whether no session sum (values, P&L, equity) nor a term nears 10^28 units (10^(28 - scale)), nor 2^62."""
        size = self._per_session(np.abs(self.value) + np.abs(self.pnl))
        biggest = float(size.max(initial=0.0)) + max((abs(float(c)) for c in cash), default=0.0)
        return biggest * 10.0**self.scale < min(1e26, 2.0**62)

    def session_sums(self) -> Iterator[tuple[Decimal, Decimal]]:
        """(market value, unrealized P&L) of each session, the loop's Decimals."""
        scale, zero = self.scale, Decimal(0)
        unit_sums = self._per_session(self.units).tolist()
        bounds = self.bounds.tolist()
        slow_sessions = np.unique(np.searchsorted(self.bounds, np.flatnonzero(~self.fast), side="right") - 1).tolist()
        slow = set(slow_sessions)
        terms = self.pnl_terms
        for i in range(len(bounds) - 1):
            a, z = bounds[i], bounds[i + 1]
            if i in slow:
                values = [self.value_terms[r] if r in self.value_terms else Decimal(int(self.units[r])) for r in range(a, z)]
                market_value = sum(values, zero)
            else:
                market_value = Decimal(unit_sums[i])
            yield market_value.scaleb(-scale), sum(terms[a:z], zero).scaleb(-scale)


@collector_paused
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
    each row's last known close read from a (symbol, session) grid of the window's closes (`_LastKnown`); the
    money (value = qty x close, unrealized = value - qty x average cost, the session's sums in symbol order) is
    exactly the per-position loop's Decimal figures, most rows computed in integer units of the close's
    decimals and double-double floats instead (`_Money`). The marks of symbols that book
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
    held = pl.col("symbol").is_in(sorted(symbols)) & pl.col("close").is_not_null() & (pl.col("session") <= sessions[-1])
    px = prices.lazy().select("symbol", "session", "close")
    last_close = last_closes_before(px.filter(held & (pl.col("session") < sessions[0])).collect(), symbols, sessions[0])
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
    in_window = held & pl.col("session").is_between(sessions[0], sessions[-1])
    window = (
        px.filter(in_window)
        .select(code=pl.col("symbol").cast(pl.Enum(ordered)).to_physical().cast(pl.Int64), session="session", close="close")
        .collect()
    )
    on = window["session"].to_physical().to_numpy().astype(np.int64)
    at = np.minimum(np.searchsorted(day_numbers[by_day], on), len(sessions) - 1)
    window = window.with_columns(idx=pl.Series(by_day[at], dtype=pl.Int64))
    on_sessions = day_numbers[by_day][at] == on
    if not on_sessions.all():
        window = window.filter(pl.Series(on_sessions))  # a date of the frame that is no session of the window
    # symbols whose marks book events move, or all of them when the closes are no floats: a LastCloses each
    moved = {e.symbol for e in events} | {e.new_symbol for e in events if isinstance(e, Rename)}
    if prices.schema["close"] != pl.Float64:
        moved = set(symbols)
    moved &= symbols  # an event of a symbol never in the book moves no close of it (it has none here)
    tracked = LastCloses({s: (last_close.day[s], last_close.close[s]) for s in moved if s in last_close})
    tracked_closes = (
        # (a date that is no session of the window is a key never asked for)
        execution.by_session(px.filter(in_window & pl.col("symbol").is_in(sorted(moved))).collect(), "close")
        if moved
        else {}
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

    # each row's last known close: the latest close of its symbol at or before its session
    grid = _LastKnown(window, last_close, codes, len(sessions))
    marks, found, exact_day = grid.marks(row_code, row_session)
    stale = ~exact_day

    # money (see `_Money`): exact, the figures of the per-position loop
    span_pos = [s[1] for s in spans]
    moved_rows = (
        np.isin(row_code, np.array([codes[s] for s in moved], dtype=np.int64)) if moved else np.zeros(len(row_code), bool)
    )
    bounds = np.searchsorted(row_session, np.arange(len(sessions) + 1))

    def slow_mark(r: int) -> float | Decimal | None:
        """The loop's mark of row r (None: no close, the average cost)."""
        if moved_rows[r]:
            return tracked_marks[(int(row_session[r]), ordered[row_code[r]])]
        if not found[r]:
            return None
        if not math.isfinite(marks[r]):
            raise ValueError(f"{ordered[row_code[r]]}: not a finite close at {sessions[row_session[r]]}: {float(marks[r])!r}")
        return float(marks[r])

    money = _Money(span_pos, row_span, marks, bounds, slow_mark)
    if not fractional and len(row_code):
        money.run(found & ~moved_rows)
        if not money.within(cash):
            money = _Money(span_pos, row_span, marks, bounds, slow_mark)
    if money.fast is None:
        money.run(None)

    # the sessions: sums in symbol order, equity, return, benchmark
    if benchmark_symbol in moved:
        bench: list[float | Decimal | None] = bench_tracked
    else:
        b = codes[benchmark_symbol]
        got, ok, _ = grid.marks(np.full(len(sessions), b, dtype=np.int64), np.arange(len(sessions), dtype=np.int64))
        bench = [v if k else None for v, k in zip(got.tolist(), ok.tolist(), strict=True)]
    equity_rows: list[tuple] = []
    for i, (session, (market_value, unrealized)) in enumerate(zip(sessions, money.session_sums(), strict=True)):
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
            "close": money.close,
            "market_value": money.value,
            "unrealized_pnl": money.pnl,
            "stale_price": stale,
        },
        schema=schema,
    )
    equity_columns = dict(zip(EQUITY_SCHEMA, map(list, zip(*equity_rows, strict=True)), strict=True))
    equity_columns["session"] = pl.Series(day_numbers).cast(pl.Int32).cast(pl.Date)  # type: ignore[assignment]
    return positions, pl.DataFrame(equity_columns, schema=EQUITY_SCHEMA)
