"""The order planner's bulk pass: a session's signals decided over arrays, the few that need the book one by one.

`portfolio.simulate` walks the sessions in order (the book is path dependent). Within a session most signals of
a long backtest are denied for reasons that the book at the session's start already settles: a sell of what is
not held, a buy without a price, below the minimum price, under one share, over the month's quota, or costing
more for one share than the cash left. This module decides those over numpy arrays and hands every other signal
(a sell of a held symbol, a buy that may fit, anything near a boundary in float) to the planner's exact
per-signal code (`risk.EarlyDenial` + `risk.check_order` on Decimals), in processing order.

Why a bulk decision equals the exact one: within a session the cash not yet reserved only falls (approved
buys reserve it; denials change nothing), so a buy whose one share costs more than the cash at the session's
start is denied at any later point as well; the per-symbol counts that do move within a session (pending buys
of a symbol) send that symbol's later signals to the exact path. Every float comparison decides only outside a
margin far wider than its rounding (a price tick plus a cent of commission, or a relative 1e-9); inside it the
signal goes to the exact path. So the bulk pass can only save time, never change a row
(`trading_dagster_tests/domain/test_portfolio_bulk.py` checks it against the frozen reference planner).

It applies to the chain `risk.EarlyDenial` covers (the default controls, whole shares, buying power on, no
session limits); any other configuration runs the planner's per-signal loop unchanged. The output is built as
columns, and the client order ids (`orders.client_order_id`) are hashed over a column of keys.

Two pieces of work that do not depend on the walk run in background threads (polars and numpy do them mostly
outside the GIL, so on a second core they cost the walk no time): the (session x symbol) price table, while
the signals are put in processing order (`signal_arrays`), and the client order ids, while the sessions are
walked (`SignalArrays.start_ids`). The results are the same as computed in line; an error is raised where
they are waited for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import TypeVar

import numpy as np
import polars as pl

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.orders import _HASH_LEN, ID_PREFIX, ORDER_SCHEMA, SIDES, _readable_symbol
from trading_dagster.domain.risk import (
    ALREADY_HELD,
    INSUFFICIENT_BUYING_POWER,
    MAX_POSITION,
    NO_PRICE,
    PRICE_BELOW_MINIMUM,
    QTY_OVER_MONTHLY_LIMIT,
    REASON_CODES,
    SHORT_NOT_ALLOWED,
    SIZE_BELOW_ONE_SHARE,
    RiskConfig,
)

_EPOCH = dt.date(1970, 1, 1)
T = TypeVar("T")


def _day(n: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(n))


# reason codes as small ints: 0 = none, i + 1 = REASON_CODES[i]
REASON_ID = {r: i + 1 for i, r in enumerate(REASON_CODES)}
EXACT = -1  # the per-signal code decides this row
_REL = 1e-9  # relative margin of a float comparison (float64 carries ~1e-16)
_CASH_MARGIN = 0.05  # USD: a buy's one-share cost in float vs exact (a tick of slippage, a cent of commission)


def applies(risk: RiskConfig, shortcut: object | None) -> bool:
    """Whether the bulk pass may decide for this configuration: the `EarlyDenial` chain, fixed-notional or
    percent-of-equity sizing (the others need an ATR and run every control anyway)."""
    return shortcut is not None and risk.sizing in ("fixed_notional", "pct_equity") and not risk.share_rule.fractional


class PriceTable:
    """The opens and closes of `symbols` in the walked sessions (`walked`: their day numbers) as (session x
    symbol) float arrays; NaN where a symbol has no bar, or a price that is not positive (the planner takes
    none: `portfolio._session_bars`). `ok` is False when a symbol has two rows in a session."""

    def __init__(self, prices: pl.DataFrame, symbols: Sequence[str], walked: np.ndarray) -> None:
        self.ok = False
        self.symbols, self.walked = list(symbols), walked
        first, n_day, n_sym = int(walked[0]), len(walked), len(symbols)
        self._first = first
        self._column = np.full(int(walked[-1]) - first + 1, -1, dtype=np.int64)
        self._column[walked - first] = np.arange(n_day)
        # every row's symbol as its index in `symbols` (-1: another symbol) and its day number, over numpy
        sym = _codes(prices["symbol"], list(symbols))
        days = prices["session"].cast(pl.Date).to_physical().cast(pl.Int64).fill_null(first - 1).to_numpy()
        take = np.flatnonzero((sym >= 0) & (days >= first) & (days <= int(walked[-1])))
        col = self._column[days[take] - first]
        inside = col >= 0
        take = take[inside]
        key = (col[inside] * n_sym + sym[take]).astype(np.int64)
        if key.size and np.bincount(key, minlength=n_day * n_sym).max() > 1:
            return
        self.opens = self._table(prices["open"], take, key, n_day, n_sym)
        self.closes = self._table(prices["close"], take, key, n_day, n_sym)
        self.ok = True

    def column(self, days: np.ndarray) -> np.ndarray:
        """The walked-session index of day numbers that are walked sessions."""
        return self._column[days.astype(np.int64) - self._first]

    @staticmethod
    def _table(column: pl.Series, take: np.ndarray, key: np.ndarray, n_day: int, n_sym: int) -> np.ndarray:
        values = column.cast(pl.Float64).fill_null(np.nan).to_numpy()[take]
        table = np.full(n_day * n_sym, np.nan)
        table[key] = np.where(values > 0, values, np.nan)
        return table.reshape(n_day, n_sym)


def _codes(column: pl.Series, names: list[str]) -> np.ndarray:
    """Each value's index in `names` (distinct strings), -1 for a value not among them or null (int64)."""
    if not names:
        return np.full(column.len(), -1, dtype=np.int64)
    enum = pl.Enum(pl.Series(names, dtype=pl.String))
    return column.cast(pl.String).cast(enum, strict=False).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()


class OrderedSignals:
    """A window's signals of the walked sessions in processing order (session; sells first; strategy; stronger
    first; symbol) as integer codes: `days` (day numbers), `sym` (index in `symbols`, sorted), `strat` (index
    in `strategies`), `buy`; `frame` holds their session, symbol, strategy, side (the output's first columns);
    `symbols_in_range` are the symbols of every signal from the first to the last session (walked or not).
    `ok` is False when the bulk pass cannot reason about them (a NaN strength)."""

    def __init__(
        self,
        days: np.ndarray,
        symbols: list[str],
        sym: np.ndarray,
        strategies: list[str],
        strat: np.ndarray,
        buy: np.ndarray,
        frame: pl.DataFrame,
        symbols_in_range: set[str],
        ok: bool = True,
    ) -> None:
        self.days, self.symbols, self.sym = days, symbols, sym
        self.strategies, self.strat, self.buy = strategies, strat, buy
        self.frame, self.symbols_in_range, self.ok = frame, symbols_in_range, ok

    @classmethod
    def from_keyed(cls, keyed: pl.DataFrame, sessions: Sequence[dt.date]) -> OrderedSignals:
        """From `portfolio._keyed_signals`' frame (of the range; one row per key, in processing order)."""
        symbols_in_range = set(keyed["symbol"].unique().to_list())
        frame = keyed.filter(pl.col("session").is_in(sessions))
        ok = not (frame.height and frame["neg_strength"].is_nan().any())  # NaN: not a total order in Python
        bad_sides = frame.filter(~pl.col("side").is_in(list(SIDES)))["side"].unique().to_list()
        if bad_sides:
            raise ValueError(f"side must be 'buy' or 'sell', got {bad_sides[0]!r}")
        symbols = frame["symbol"].unique().sort()
        ids = pl.int_range(symbols.len(), eager=True, dtype=pl.Int32)
        sym = frame["symbol"].replace_strict(symbols, ids, return_dtype=pl.Int32).to_numpy().astype(np.int32)
        days = frame["session"].cast(pl.Int32).to_numpy().astype(np.int32)
        strategies = frame["strategy"].unique().sort()
        strategy_ids = pl.int_range(strategies.len(), eager=True, dtype=pl.Int32)
        strat = frame["strategy"].replace_strict(strategies, strategy_ids, return_dtype=pl.Int32).to_numpy()
        buy = (frame["side"] == "buy").to_numpy()
        frame = frame.select("session", "symbol", "strategy", "side")
        return cls(days, symbols.to_list(), sym, strategies.to_list(), strat, buy, frame, symbols_in_range, ok)


_SIGNAL_COLUMNS = ("session", "symbol", "strategy", "side", "strength")


def _window(signals: pl.DataFrame, sessions: Sequence[dt.date]) -> tuple[pl.DataFrame, np.ndarray] | None:
    """The signals from the first to the last session (`_SIGNAL_COLUMNS`) and their day numbers: a slice of a
    frame in session order, else a filter; None without such a signal or with a null key field."""
    if not sessions or signals.height == 0:
        return None
    frame = signals.select(_SIGNAL_COLUMNS)
    if frame.select(pl.any_horizontal(pl.col("session", "symbol", "strategy", "side").is_null().any())).item():
        return None
    first, last = (sessions[0] - _EPOCH).days, (sessions[-1] - _EPOCH).days
    days = frame["session"].cast(pl.Date).to_physical().to_numpy().astype(np.int64)
    if days.size < 2 or (days[1:] >= days[:-1]).all():  # in session order: the window is a slice
        lo, hi = np.searchsorted(days, [first, last + 1], side="left").tolist()
        frame, days = frame.slice(lo, hi - lo), days[lo:hi]
    else:
        inside = (days >= first) & (days <= last)
        frame, days = frame.filter(pl.Series(inside)), days[inside]
    return (frame, days) if frame.height else None


def signal_arrays(
    signals: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: Sequence[dt.date],
    risk: RiskConfig,
    slippage: SlippageModel,
    commission: CommissionModel,
    extra: Sequence[str],
    keyed: Callable[[pl.DataFrame, Sequence[dt.date]], pl.DataFrame],
) -> tuple[SignalArrays, pl.DataFrame | None]:
    """`SignalArrays` of the window's signals (`ordered_signals`, else from `keyed(signals, sessions)`, the
    planner's `_keyed_signals`, which is then returned too). The price table, which depends only on the
    window's symbols, is built in a background thread while the signals are put in order (both work mostly
    outside the GIL, in polars and numpy)."""
    window = _window(signals, sessions)
    symbols = table = None
    if window is not None:
        symbols = window[0]["symbol"].unique().sort().to_list()
        book = symbols + sorted(set(extra) - set(symbols))
        walked = np.array([(d - _EPOCH).days for d in sessions], dtype=np.int32)
        table = _in_background("price-table", PriceTable, prices, book, walked)
    ordered = None if window is None else ordered_signals(signals, sessions, window, symbols)
    keyed_frame = None
    if ordered is None:
        keyed_frame = keyed(signals, sessions)
        ordered = OrderedSignals.from_keyed(keyed_frame, sessions)
    prebuilt = None if table is None else table.result()
    arrays = SignalArrays(ordered, prices, sessions, risk, slippage, commission, extra, prebuilt)
    return arrays, keyed_frame


def _in_background(name: str, fn: Callable[..., T], *args: object) -> Future[T]:
    """`fn(*args)` in a thread of its own (it ends with the task)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)


def ordered_signals(
    signals: pl.DataFrame,
    sessions: Sequence[dt.date],
    window: tuple[pl.DataFrame, np.ndarray] | None = None,
    symbols: list[str] | None = None,
) -> OrderedSignals | None:
    """`OrderedSignals` of the walked `sessions` (increasing), over integer codes and one sort of 64-bit keys
    instead of a polars sort of strings and floats; None when the frame needs `portfolio._keyed_signals`' own
    handling (a repeated (session, symbol, strategy, side) key, a null, a NaN strength, a side that is not buy
    or sell): the caller then takes that path, whose order and rows this equals (tested).

    The order: a row's group is (walked session, sells first, strategy) as one integer g; within a group rows
    go by -strength (no strength counts as 0; -0.0 as 0.0), then symbol. One stable sort of g followed by the
    leading bits of -strength's order-preserving 64-bit pattern gives it except within runs of equal keys
    (strengths a few units in the last place apart, or equal ones of a frame not in symbol order): the order
    is checked pair by pair (strictly increasing in (g, -strength, symbol)) and those runs sorted exactly
    (`_processing_order`).

    `window` (`_window`'s) and `symbols` (the window's symbols, sorted) when the caller has them already."""
    got = _window(signals, sessions) if window is None else window
    if got is None:
        return None
    frame, days = got
    first, last = (sessions[0] - _EPOCH).days, (sessions[-1] - _EPOCH).days
    buy = (frame["side"] == "buy").to_numpy()
    sell = (frame["side"] == "sell").to_numpy()
    if not (buy | sell).all():
        return None
    strength = frame["strength"].cast(pl.Float64).fill_null(0.0).to_numpy()
    if np.isnan(strength).any():
        return None
    neg = -strength + 0.0  # as `portfolio._keyed_signals`: -0.0 sorts as 0.0
    if symbols is None:
        symbols = frame["symbol"].unique().sort().to_list()
    symbols_series = pl.Series(symbols, dtype=pl.String)
    strategies = frame["strategy"].unique().sort().to_list()
    sym = _codes(frame["symbol"], symbols)
    strat = _codes(frame["strategy"], strategies)
    n_sym, n_strat, span = len(symbols), len(strategies), last - first + 1
    if span * n_sym * n_strat * 2 >= 2**62:
        return None
    # one row per key: strictly increasing keys prove it in one pass (the signals asset's order), else a sort
    key = (((days - first) * n_sym + sym) * n_strat + strat) * 2 + sell
    if not (key[1:] > key[:-1]).all():
        ordered_key = np.sort(key)
        if (ordered_key[1:] == ordered_key[:-1]).any():
            return None
    del key
    # the walked sessions' rows (a signal inside the range on a date that is not walked is dropped)
    walked = np.array([(d - _EPOCH).days for d in sessions], dtype=np.int64)
    column = np.full(span, -1, dtype=np.int64)
    column[walked - first] = np.arange(len(walked))
    k = column[days - first]
    symbols_in_range = set(symbols)
    if (k < 0).any():
        rows = np.flatnonzero(k >= 0)
        days, k, buy, neg, sym, strat = days[rows], k[rows], buy[rows], neg[rows], sym[rows], strat[rows]
        used = np.unique(sym)
        symbols = [symbols[i] for i in used.tolist()]
        symbols_series = pl.Series(symbols, dtype=pl.String)
        sym = np.searchsorted(used, sym)
    g = (k * 2 + buy) * n_strat + strat
    order = _processing_order(g, neg, sym)
    days, sym, strat, buy = days[order], sym[order], strat[order], buy[order]
    out = pl.DataFrame(
        {
            "session": pl.Series(days.astype(np.int32)).cast(pl.Date),
            "symbol": symbols_series.gather(pl.Series(sym.astype(np.uint32))),
            "strategy": pl.Series(strategies, dtype=pl.String).gather(pl.Series(strat.astype(np.uint32))),
            "side": pl.Series(["sell", "buy"], dtype=pl.String).gather(pl.Series(buy.astype(np.uint32))),
        }
    )
    return OrderedSignals(
        days.astype(np.int32), symbols, sym.astype(np.int32), strategies, strat.astype(np.int32), buy, out,
        symbols_in_range,
    )


def _processing_order(g: np.ndarray, neg: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """The permutation that orders the rows by (g, neg, sym), distinct triples (`ordered_signals`).

    One stable sort of a 64-bit key, g then the leading bits of neg's order-preserving pattern, orders every
    two rows whose keys differ. Rows with equal keys (equal strengths, or strengths a few units in the last
    place apart, such as 11/14 computed two ways) keep their order in the frame; the runs of equal keys that
    are not then in (neg, sym) order are sorted exactly, each on its own. A last pass checks the whole."""
    if g.size == 0:
        return np.zeros(0, dtype=np.int64)
    bits = max(int(g.max()).bit_length(), 1)
    pattern = neg.view(np.uint64)
    # the order-preserving pattern of a float: negative ones reversed, positive ones above them
    pattern = np.where(neg < 0, ~pattern, pattern | np.uint64(1 << 63))
    key = (g.astype(np.uint64) << np.uint64(64 - bits)) | (pattern >> np.uint64(bits))
    order = np.argsort(key, kind="stable")
    wrong = np.flatnonzero(~_rising(g[order], neg[order], sym[order]))
    if wrong.size:
        key = key[order]
        starts = np.flatnonzero(key[1:] != key[:-1]) + 1  # where a run of equal keys starts
        for run in np.unique(np.searchsorted(starts, wrong, side="right")).tolist():
            lo = int(starts[run - 1]) if run else 0
            hi = int(starts[run]) if run < starts.size else key.size
            rows = order[lo:hi]
            order[lo:hi] = rows[np.lexsort((sym[rows], neg[rows]))]
        if not _rising(g[order], neg[order], sym[order]).all():  # pragma: no cover - the runs cover every pair
            return np.lexsort((sym, neg, g))
    return order


def _rising(g: np.ndarray, neg: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """Whether each row is after the one before in (g, neg, sym) order (one value per pair)."""
    same_g = g[1:] == g[:-1]
    same_n = neg[1:] == neg[:-1]
    return (g[1:] > g[:-1]) | (same_g & ((neg[1:] > neg[:-1]) | (same_n & (sym[1:] > sym[:-1]))))


class SignalArrays:
    """The window's signals in processing order (`OrderedSignals`) as columns, each with its session's close
    (the reference price) and static per-signal figures.

    `frame` holds session, symbol, strategy, side (the output's first columns); `bounds[k]` is the first row of
    walked session k (rows of session k: bounds[k]:bounds[k+1]). `ok` is False when the frame holds something
    the bulk pass does not reason about (a NaN strength, a non-finite close): the caller then uses the
    per-signal loop for the whole window."""

    def __init__(
        self,
        signals: OrderedSignals,
        prices: pl.DataFrame,
        sessions: Sequence[dt.date],
        risk: RiskConfig,
        slippage: SlippageModel,
        commission: CommissionModel,
        extra: Sequence[str] = (),
        table: PriceTable | None = None,
    ) -> None:
        self.ok = signals.ok
        self.symbols: list[str] = signals.symbols
        self.symbol_index = {s: i for i, s in enumerate(self.symbols)}
        self.sym = signals.sym
        days = signals.days
        frame = signals.frame
        walked = np.array([(d - _EPOCH).days for d in sessions], dtype=np.int32)
        self.bounds = np.searchsorted(days, walked, side="left").tolist() + [frame.height]
        # the book's symbols: the signals', then those it may hold without a signal
        self.book_symbols = self.symbols + sorted(set(extra) - set(self.symbol_index))
        if table is None or table.symbols != self.book_symbols or not np.array_equal(table.walked, walked):
            table = PriceTable(prices, self.book_symbols, walked)  # (a table of other symbols or sessions)
        self.prices = table
        if self.prices.ok:
            close = self.prices.closes[self.prices.column(days), self.sym]
        else:
            self.ok = False  # a symbol with two rows in a session: keep the per-signal loop
            close = np.full(frame.height, np.nan)
        valid = ~np.isnan(close)
        if not np.isfinite(close[valid]).all():
            self.ok = False
        self.ref = np.where(valid, close, np.nan)
        self.frame = frame
        self.buy = signals.buy
        self.strategies: list[str] = signals.strategies
        self.strat = signals.strat
        self.symbols_in_range = signals.symbols_in_range
        # each row's next row of the same session and symbol (-1: none), in processing order
        same = days.astype(np.int64) * max(len(self.symbols), 1) + self.sym
        order = np.argsort(same, kind="stable")
        self.next_same = np.full(frame.height, -1, dtype=np.int64)
        pairs = same[order[1:]] == same[order[:-1]]
        self.next_same[order[:-1][pairs]] = order[1:][pairs]
        self.n = frame.height
        # the cost of one share in float: the close plus slippage, rounded up to the tick, plus commission
        factor = float(1 + slippage.bps / 10_000)
        fill = self.ref * factor
        c = commission
        one = float(c.per_share) + float(c.per_order) + float(c.bps) / 10_000 * fill
        one = np.maximum(one, float(c.minimum))
        if c.maximum_pct is not None:
            one = np.minimum(one, float(c.maximum_pct) / 100 * fill)
        self.cost1 = fill + one
        self.min_price = float(risk.min_price) if risk.min_price else None
        self.min_price_exact = risk.min_price or None
        self.size_on_fill = risk.size_on == "fill"
        # the budget of every buy when the sizing has one (fixed notional), and `requested_buys` of all rows at it
        self.fixed_budget = risk.notional if risk.sizing == "fixed_notional" else None
        self._requested: tuple[Decimal, np.ndarray] | None = None
        # outputs, filled session by session
        self.requested = np.zeros(self.n, dtype=np.int64)
        self.qty = np.zeros(self.n, dtype=np.int64)
        self.reason = np.zeros(self.n, dtype=np.int8)
        self.notional = np.full(self.n, np.nan)

    def requested_buys(self, lo: int, hi: int, budget: Decimal) -> np.ndarray:
        """`risk.size_order` of the buys of rows lo:hi (budget // close in whole shares, 0 without a price or
        below the minimum price), exact: a float quotient within 1e-9 of an integer is redone in Decimal. Rows
        are independent: with one budget for every session (fixed-notional sizing) all rows are sized at the
        first call and later calls take their slice."""
        whole = self._requested
        if whole is not None and whole[0] == budget:
            return whole[1][lo:hi]
        if self.fixed_budget is not None and budget == self.fixed_budget:
            self._requested = (budget, self._requested_buys(0, self.n, budget))
            return self._requested[1][lo:hi]
        return self._requested_buys(lo, hi, budget)

    def _requested_buys(self, lo: int, hi: int, budget: Decimal) -> np.ndarray:
        ref = self.ref[lo:hi]
        b = float(budget)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = b / ref
        out = np.floor(np.nan_to_num(q, nan=0.0))
        near = np.abs(q - np.round(q)) <= _REL * np.maximum(np.abs(q), 1.0)
        for i in np.flatnonzero(near & ~np.isnan(ref)):
            out[i] = int(budget // Decimal(repr(float(ref[i]))))
        out[np.isnan(ref)] = 0
        below = np.zeros(len(ref), dtype=bool)
        if self.min_price is not None:
            below = ref < self.min_price * (1 - _REL)
            out[below] = 0
            edge = ~below & (ref < self.min_price * (1 + _REL))
            for i in np.flatnonzero(edge):
                if Decimal(repr(float(ref[i]))) < self.min_price_exact:
                    out[i] = 0
                    below[i] = True
        if self.size_on_fill and budget > 0:  # the smallest estimate: the open decides (`risk.size_order`)
            out[(out == 0) & ~np.isnan(ref) & ~below] = 1
        return out.astype(np.int64)

    def start_ids(self, account: str) -> None:
        """Start hashing the rows' client order ids (`client_order_ids`) in a background thread: they depend on
        the keys only, and polars hashes them outside the GIL on another core while the walk decides the rows
        in Python. `frame_of_orders` waits for them."""
        self._ids = (account, _in_background("client-order-ids", client_order_ids, self.frame, account))

    def frame_of_orders(self, account: str) -> pl.DataFrame:
        """The `orders` frame (ORDER_SCHEMA) of every row, with its client order id."""
        started = getattr(self, "_ids", None)
        ids = started[1].result() if started and started[0] == account else client_order_ids(self.frame, account)
        reasons = pl.Series([None, *REASON_CODES], dtype=pl.String)
        qty = pl.Series(self.qty)
        out = self.frame.with_columns(
            requested_qty=pl.Series(self.requested),
            qty=qty,
            ref_price=pl.Series(self.ref).fill_nan(None),
            status=pl.when(qty > 0).then(pl.lit("approved")).otherwise(pl.lit("denied")),
            reason_code=reasons.gather(pl.Series(self.reason.astype(np.int64))),
            client_order_id=ids,
            notional=pl.Series(self.notional).fill_nan(None),
        )
        return out.select(list(ORDER_SCHEMA)).cast(ORDER_SCHEMA)  # type: ignore[arg-type]


def client_order_ids(frame: pl.DataFrame, account: str) -> pl.Series:
    """`orders.client_order_id` of every (session, symbol, strategy, side) row of `frame`, over columns: the
    keys are SHA-256 hashed by polars (the hash by the polars-hash plugin, in Rust: hashlib's cost per call is
    mostly object overhead, and a ten-year backtest has millions of ids). The per-session parts of the key
    and of the id are formatted once per session (by `orders.order_ids_for`'s own f-strings) and gathered,
    and the readable symbol part is computed once per symbol and replaces only the symbols it changes. Byte
    for byte `orders.client_order_id` (tested)."""
    import polars_hash  # noqa: F401  (registers the `chash` expression namespace)

    if frame.height == 0 or frame["session"].null_count():
        return _client_order_ids_by_row(frame, account)
    days = frame["session"].to_physical().to_numpy()
    distinct, at = np.unique(days, return_inverse=True)
    dates = [_day(d) for d in distinct.tolist()]
    at_series = pl.Series(at.astype(np.uint32))
    hashed = pl.Series([f"{account}|{d.isoformat()}|" for d in dates], dtype=pl.String).gather(at_series)
    shown = pl.Series([f"{ID_PREFIX}-{d:%Y%m%d}-" for d in dates], dtype=pl.String).gather(at_series)
    symbols = frame["symbol"].unique().to_list()
    changed = {s: r for s in symbols if (r := _readable_symbol(s)) != s}
    readable = pl.col("symbol")
    if changed:
        readable = readable.replace(pl.Series(list(changed), dtype=pl.String), pl.Series(list(changed.values()), dtype=pl.String))
    key = pl.concat_str(hashed, "symbol", pl.lit("|"), "strategy", pl.lit("|"), "side")
    return frame.select(
        pl.concat_str(
            shown,
            readable,
            pl.lit("-"),
            key.chash.sha2_256().str.head(_HASH_LEN),  # type: ignore[attr-defined]
        ).alias("client_order_id")
    ).to_series()


def _client_order_ids_by_row(frame: pl.DataFrame, account: str) -> pl.Series:
    """`client_order_ids` formatting every row's key (an empty frame; a null session gives a null id)."""
    key = pl.concat_str(
        pl.lit(f"{account}|"),
        pl.col("session").dt.strftime("%Y-%m-%d"),
        pl.lit("|"),
        "symbol",
        pl.lit("|"),
        "strategy",
        pl.lit("|"),
        "side",
    )
    symbols = frame["symbol"].unique()
    readable = pl.Series([_readable_symbol(s) for s in symbols.to_list()], dtype=pl.String)
    return frame.select(
        pl.concat_str(
            pl.lit(f"{ID_PREFIX}-"),
            pl.col("session").dt.strftime("%Y%m%d"),
            pl.lit("-"),
            pl.col("symbol").replace_strict(symbols, readable, return_dtype=pl.String),
            pl.lit("-"),
            key.chash.sha2_256().str.head(_HASH_LEN),  # type: ignore[attr-defined]
        ).alias("client_order_id")
    ).to_series()


def classify(
    arrays: SignalArrays,
    lo: int,
    hi: int,
    held: np.ndarray,
    bought: np.ndarray,
    requested: np.ndarray,
    equity: float,
    available: float,
    risk: RiskConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reason id each row of session rows lo:hi gets from the book at the session's start (no pending
    orders), or EXACT where the per-signal code must decide (it may be approved, or sits near a boundary);
    also which rows hinge only on the cash (`depends`) and the reason id each of them gets when one share costs
    more than the cash left (`poor_code`, EXACT where the float cannot tell). `held` / `bought` / `requested`:
    per row, shares held, bought in the fill month, and asked for."""
    n = hi - lo
    ref = arrays.ref[lo:hi]
    buy = arrays.buy[lo:hi]
    code = np.full(n, EXACT, dtype=np.int8)
    noprice = np.isnan(ref)
    undecided = np.ones(n, dtype=bool)

    def settle(mask: np.ndarray, value: int) -> None:
        nonlocal undecided
        m = mask & undecided
        code[m] = value
        undecided &= ~mask

    settle(noprice, REASON_ID[NO_PRICE])
    sell = ~buy
    settle(sell & (held <= 0), REASON_ID[SHORT_NOT_ALLOWED])
    settle(sell, EXACT)  # a sell of a held symbol
    if not risk.add_to_positions:
        settle(held > 0, REASON_ID[ALREADY_HELD])
    if arrays.min_price is not None:
        mp = arrays.min_price
        settle(ref < mp * (1 - _REL), REASON_ID[PRICE_BELOW_MINIMUM])
        settle(ref < mp * (1 + _REL), EXACT)
    settle(requested < 1, REASON_ID[SIZE_BELOW_ONE_SHARE])
    if risk.monthly_share_limit is not None:
        settle(risk.monthly_share_limit - bought <= 0, REASON_ID[QTY_OVER_MONTHLY_LIMIT])
    # the rest hinge on the cash: where one share is not affordable, MaxPosition's denial if it allows no share,
    # else BuyingPower's (EXACT where the float cannot tell); the cash only falls as the session goes on
    depends = undecided.copy()
    pct = float(risk.max_position_pct_equity)  # type: ignore[arg-type]
    cap = equity * pct / 100
    need = (held + 1) * ref
    poor_code = np.full(n, EXACT, dtype=np.int8)
    poor_code[cap < need * (1 - _REL) - _REL] = REASON_ID[MAX_POSITION]
    poor_code[cap > need * (1 + _REL) + _REL] = REASON_ID[INSUFFICIENT_BUYING_POWER]
    poor = arrays.cost1[lo:hi] > cash_limit(available)
    code[depends & poor] = poor_code[depends & poor]
    return code, depends, poor_code


def cash_limit(available: float) -> float:
    """A buy whose one share costs more than this in float costs more than `available` exactly."""
    return available + _CASH_MARGIN + _REL * abs(available)
