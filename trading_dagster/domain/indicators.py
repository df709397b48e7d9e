"""Technical indicators per symbol, computed with TA-Lib, and the anchored recursion that makes them reproducible.

TA-Lib is the engine (about 5x faster than the same indicators as polars expressions). The work here is
feeding it correctly: the bars are sorted once by (symbol, session), each symbol is a contiguous slice of
float64 arrays found with `searchsorted`, TA-Lib runs on the slice, and the results of one anchor window at a
time are stacked into a reused buffer and gathered into output order by polars (the indicators that are exact
functions of the last bars, the 52-week high and the returns, are taken from one computation over all bars).
A value is null (never NaN) until the indicator has its full TA-Lib lookback of bars *for that symbol*, so an
IPO starts with nulls.

Besides the indicators, the table carries row-local model features (research/ml.py): `ret_1/5/21/63`, the
close against the close 1/5/21/63 bars earlier (TA-Lib ROCR - 1), and `volume_ratio_20`, the volume against its
20-bar mean (null when the input has no volume). They go through the same anchored computation.

EMA, RSI, MACD and ATR are recursions and SMA/Bollinger are running sums: their value for a session depends,
in the last bits or more, on the bar the computation started from. `compute_indicators_anchored` fixes that
start per block of sessions (see docs/design.md, "anchored recursion"), so one session computed alone and the
same session inside a ten-year backfill are identical bit for bit.

`compute_indicators_adjusted` does the same on unadjusted bars plus a list of splits: each session's
lookback is split-adjusted as known on that session (point in time), with the same bit-for-bit guarantee.
Given a security master it computes each series per (symbol, security): the bars of a ticker's earlier
company never enter the SMA, the 52-week high or any other indicator of the company that reuses the ticker.

TA-Lib has global "unstable period" settings (`talib.set_unstable_period`); this module assumes the default
(0), which is what the null-until-lookback contract describes.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import talib

from trading_dagster.domain.corporate_actions import normalize_corporate_actions
from trading_dagster.domain.security_master import SecurityMaster

ANCHOR_BLOCK = 252
"""Sessions per anchor block: every session of a block is computed from the same first bar."""
WARMUP = 400
"""Sessions before a block's first session that every computation of the block starts from."""
LOOKBACK_SESSIONS = ANCHOR_BLOCK - 1 + WARMUP
"""Sessions of input before an output session that the anchored computation may read (651)."""

PRICE_COLUMNS: tuple[str, ...] = ("symbol", "session", "open", "high", "low", "close", "volume")
INDICATOR_COLUMNS: tuple[str, ...] = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "high_52w",
    "pct_below_high_52w",
    # row-local model features (research/ml.py): close / close n bars earlier - 1, volume / its 20-bar mean
    "ret_1",
    "ret_5",
    "ret_21",
    "ret_63",
    "volume_ratio_20",
)
OUTPUT_COLUMNS: tuple[str, ...] = ("symbol", "session", "close", *INDICATOR_COLUMNS)
OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session": pl.Date(),
    **{name: pl.Float64() for name in ("close", *INDICATOR_COLUMNS)},
}



class _TaLib:
    """TA-Lib's functions themselves: `talib.SMA` and the others wrap each in a check of every argument for a
    pandas or polars series (`functools.wraps`, so the function is its `__wrapped__`), which cost more than
    the computation on these short slices (one call per symbol, anchor block and indicator: ~240,000 in a
    ten-year backfill). Same functions, same results."""

    def __getattr__(self, name: str):
        function = getattr(talib, name)
        function = getattr(function, "__wrapped__", function)
        setattr(self, name, function)
        return function


_ta = _TaLib()
_HIGH_WINDOW = 252  # bars in the 52-week high
_SYMBOL_STRIDE = np.int64(1) << 32  # composite key = symbol_id * 2**32 + epoch day; days fit in +-2**31


@dataclass(frozen=True)
class _Bars:
    """The input bars in the two orders the work needs, without ever sorting strings.

    `frame` (symbol, session, close) is sorted by (session, symbol): the output order, so output rows are
    picked from it and never re-sorted. The TA-Lib inputs are in symbol-major order, (symbol, session), one
    contiguous run per symbol; `to_frame[i]` is the `frame` row of symbol-major position i. `key` =
    symbol_code * 2**32 + epoch day is sorted, so one vectorised `searchsorted` finds the slice of every
    symbol inside any date window at once.
    """

    frame: pl.DataFrame  # symbol, session, close
    frame_codes: np.ndarray  # int64, the symbol code of each `frame` row
    frame_days: np.ndarray  # int64, the epoch day of each `frame` row (non-decreasing)
    to_frame: np.ndarray  # int64
    n_symbols: int
    key: np.ndarray  # int64, symbol-major
    high: np.ndarray  # float64, symbol-major, C-contiguous
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # NaN where the input has no volume (no column, or a null)


def _prepare(prices: pl.DataFrame) -> _Bars:
    """Validate the cleaned-prices contract and order the bars once; everything later is slicing.

    `volume` is optional: without the column (or where it is null) `volume_ratio_20` is null.

    Symbols become integer codes in lexical order (an Enum over the sorted distinct symbols), so both
    orders are integer sorts: a no-op check when the input already follows the contract's (session,
    symbol) order, and a stable radix/merge argsort by symbol code for the symbol-major view.
    """
    missing = [c for c in ("symbol", "session", "high", "low", "close") if c not in prices.columns]
    if missing:
        raise ValueError(f"prices lack columns {missing}; expected the cleaned-prices frame {PRICE_COLUMNS}")
    bars = prices.select(
        pl.col("symbol").cast(pl.Utf8),
        pl.col("session").cast(pl.Date),
        *(pl.col(c).cast(pl.Float64) for c in ("high", "low", "close")),
        (pl.col("volume") if "volume" in prices.columns else pl.lit(None)).cast(pl.Float64).alias("volume"),
    )
    nulls = {c: n for c, n in zip(bars.columns, bars.null_count().row(0), strict=True) if n and c != "volume"}
    if nulls:
        raise ValueError(f"cleaned prices must not hold nulls; null counts: {nulls}")
    symbols = bars["symbol"].unique().sort()
    codes = bars["symbol"].cast(pl.Enum(symbols.to_list())).to_physical().to_numpy().astype(np.int64)
    days = bars["session"].to_physical().to_numpy().astype(np.int64)
    session_major = (days << 32) + codes
    if session_major.size > 1 and not np.all(session_major[1:] > session_major[:-1]):
        order = np.argsort(session_major, kind="stable")
        session_major, codes, days = session_major[order], codes[order], days[order]
        bars = bars[pl.Series(order)]
        repeats = np.flatnonzero(session_major[1:] == session_major[:-1])
        if repeats.size:
            raise ValueError(
                f"prices are not unique on (symbol, session): {bars.row(int(repeats[0]))[:2]} repeats"
            )
    # A stable sort by symbol code keeps each symbol's bars in session order: (symbol, session) order.
    small = codes.astype(np.uint16) if symbols.len() <= np.iinfo(np.uint16).max else codes
    to_frame = np.argsort(small, kind="stable").astype(np.int64)
    return _Bars(
        frame=bars.select("symbol", "session", "close"),
        frame_codes=codes,
        frame_days=days,
        to_frame=to_frame,
        n_symbols=symbols.len(),
        key=codes[to_frame] * _SYMBOL_STRIDE + days[to_frame],
        high=bars["high"].to_numpy()[to_frame],
        low=bars["low"].to_numpy()[to_frame],
        close=bars["close"].to_numpy()[to_frame],
        volume=np.ascontiguousarray(bars["volume"].fill_null(np.nan).to_numpy()[to_frame]),
    )


def _epoch_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _from_epoch_day(days: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=days)


def sma_columns(extra_sma: Sequence[int]) -> tuple[str, ...]:
    """The columns of the SMA periods `extra_sma` beyond INDICATOR_COLUMNS' own (`sma_<n>`, in the order given,
    the table's SMA periods left out)."""
    return tuple(f"sma_{int(n)}" for n in extra_sma if f"sma_{int(n)}" not in INDICATOR_COLUMNS)


def _extra_periods(extra_sma: Sequence[int]) -> tuple[int, ...]:
    periods = tuple(int(n) for n in extra_sma if f"sma_{int(n)}" not in INDICATOR_COLUMNS)
    bad = [n for n in periods if n < 2]
    if bad or len(set(periods)) != len(periods):
        raise ValueError(f"extra SMA periods must be distinct whole numbers >= 2, got {list(extra_sma)}")
    return periods


_PER_RUN: tuple[str, ...] = (
    "bb_upper",
    "bb_middle",  # TA-Lib's BBANDS middle band is its SMA(close, 20), bit for bit: sma_20 is this column
    "bb_lower",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "volume_ratio_20",  # TA-Lib's SMA(volume, 20), divided into the volume in place once the window is done
)
"""The TA-Lib outputs computed per (symbol, anchor window), in `_talib_outputs` order (then the SMAs of
`extra_sma`): running sums and recursions, whose bits depend on the bar the computation starts from."""
_ROCR_PERIODS: tuple[int, ...] = (1, 5, 21, 63)
_AFTER_RUN: tuple[str, ...] = ("high_52w", "pct_below_high_52w", *(f"ret_{n}" for n in _ROCR_PERIODS))
"""Columns that are exact functions of the last bars, whatever bar the computation started from: TA-Lib's
MAX(high, 252) (the 52-week high) over all symbols' bars at once, and ROCR(close, n) = close / close n bars
earlier (0 where that is 0, as TA-Lib's), from the kept rows' own bars. A row keeps its value where its
anchored run has those bars (the TA-Lib lookback: 251 for the high, n for ROCR) and is NaN elsewhere, as a
TA-Lib call per run gives. `pct_below_high_52w` = (high_52w - close) / high_52w x 100 and `ret_n` = ROCR - 1
are elementwise, so computed over a window's rows they are the bits a per-symbol computation gives."""


def _talib_outputs(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, extra_sma: Sequence[int] = ()
) -> list[np.ndarray]:
    """The `_PER_RUN` outputs over one symbol's bars (then the SMAs of `extra_sma`), NaN during each
    lookback."""
    macd, macd_signal, macd_hist = _ta.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    # TA-Lib's STDDEV inside BBANDS is the population standard deviation; matype 0 = simple moving average.
    bb_upper, bb_middle, bb_lower = _ta.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    return [
        bb_upper,
        bb_middle,
        bb_lower,
        _ta.SMA(close, timeperiod=50),
        _ta.SMA(close, timeperiod=200),
        _ta.EMA(close, timeperiod=12),
        _ta.EMA(close, timeperiod=26),
        _ta.RSI(close, timeperiod=14),  # Wilder smoothing
        macd,
        macd_signal,
        macd_hist,
        _ta.ATR(high, low, close, timeperiod=14),
        _ta.SMA(volume, timeperiod=20),
        *(_ta.SMA(close, timeperiod=n) for n in extra_sma),
    ]


def _finish(extra_sma: Sequence[int]) -> list[pl.Expr]:
    """The table's columns, null where NaN, from a frame of symbol, session, close and the `_PER_RUN` and
    `_AFTER_RUN` columns (`sma_20` is the Bollinger middle band)."""
    names = (*INDICATOR_COLUMNS, *sma_columns(extra_sma))
    return [pl.col("bb_middle" if name == "sma_20" else name).fill_nan(None).alias(name) for name in names]


def _symbol_indicators(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, extra_sma: Sequence[int] = ()
) -> tuple[np.ndarray, ...]:
    """All indicators of one symbol's bars, in INDICATOR_COLUMNS order then the SMAs of `extra_sma`, NaN
    during each lookback: the definition, one TA-Lib call per indicator (`_compute` computes the same with
    fewer calls). `ret_n` = ROCR(close, n) - 1 (close / close n bars earlier - 1); `volume_ratio_20` = volume
    / SMA(volume, 20), NaN where that mean is 0 (or the volume unknown)."""
    macd, macd_signal, macd_hist = _ta.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    bb_upper, bb_middle, bb_lower = _ta.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    high_52w = _ta.MAX(high, timeperiod=_HIGH_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = volume / _ta.SMA(volume, timeperiod=20)
    ratio[~np.isfinite(ratio)] = np.nan
    return (
        _ta.SMA(close, timeperiod=20),
        _ta.SMA(close, timeperiod=50),
        _ta.SMA(close, timeperiod=200),
        _ta.EMA(close, timeperiod=12),
        _ta.EMA(close, timeperiod=26),
        _ta.RSI(close, timeperiod=14),
        macd,
        macd_signal,
        macd_hist,
        bb_upper,
        bb_middle,
        bb_lower,
        _ta.ATR(high, low, close, timeperiod=14),
        high_52w,
        (high_52w - close) / high_52w * 100.0,
        _ta.ROCR(close, timeperiod=1) - 1.0,
        _ta.ROCR(close, timeperiod=5) - 1.0,
        _ta.ROCR(close, timeperiod=21) - 1.0,
        _ta.ROCR(close, timeperiod=63) - 1.0,
        ratio,
        *(_ta.SMA(close, timeperiod=n) for n in extra_sma),
    )


@dataclass(frozen=True)
class _Window:
    """Epoch days of one computation: bars in [first, last] are read, rows in [keep_from, last] are output."""

    first: int
    keep_from: int
    last: int


def _compute(bars: _Bars, windows: Sequence[_Window], extra_sma: Sequence[int] = ()) -> pl.DataFrame:
    """Run every window over every symbol and return the kept rows, sorted by (session, symbol).

    Windows must keep disjoint, increasing day ranges. Each symbol's computation in a window starts at its
    first bar on or after `first`, which is what anchoring means. The result's columns have one chunk per
    window that keeps rows.
    """
    n = bars.key.size
    base = np.arange(bars.n_symbols, dtype=np.int64) * _SYMBOL_STRIDE
    slices = [
        (
            np.searchsorted(bars.key, base + w.first, side="left"),
            np.searchsorted(bars.key, base + w.keep_from, side="left"),
            np.searchsorted(bars.key, base + w.last, side="right"),
        )
        for w in windows
    ]
    # Each window's kept rows go to the columns of `work` in symbol-major order (symbol by symbol, each run's
    # rows consecutive), then into output order with one gather (a window's output rows are consecutive in the
    # frame: windows keep disjoint, increasing day ranges). The buffer holds one window and is reused.
    counts = [np.maximum(ends - keeps, 0) for _, keeps, ends in slices]
    per_run = (*_PER_RUN, *(f"sma_{n}" for n in extra_sma))
    names = (*per_run, *_AFTER_RUN)
    work = np.empty((len(names), max((int(c.sum()) for c in counts), default=0)))
    to_symbol_major = np.empty(n, dtype=np.int64)
    to_symbol_major[bars.to_frame] = np.arange(n, dtype=np.int64)
    high_52w = _ta.MAX(bars.high, timeperiod=_HIGH_WINDOW)
    pieces = []
    for (starts, keeps, ends), count, window in zip(slices, counts, windows, strict=True):
        live = np.flatnonzero(count)
        at = np.cumsum(count[live]) - count[live]  # each live run's first column in `work`
        m = int(count.sum())
        if m == 0:
            continue
        runs = zip(starts[live].tolist(), keeps[live].tolist(), ends[live].tolist(), at.tolist(), strict=True)
        for start, keep, end, a in runs:
            out = _talib_outputs(
                bars.high[start:end], bars.low[start:end], bars.close[start:end], bars.volume[start:end], extra_sma
            )
            block = np.concatenate(out).reshape(len(per_run), end - start)
            work[: len(per_run), a : a + end - keep] = block[:, keep - start :]
        # symbol-major position of each kept row, and the bars of its run before it
        kept_at = np.repeat(keeps[live] - at, count[live]) + np.arange(m)
        bars_before = kept_at - np.repeat(starts[live], count[live])
        ratio = work[per_run.index("volume_ratio_20"), :m]  # SMA(volume, 20) so far
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(bars.volume[kept_at], ratio, out=ratio)
        ratio[~np.isfinite(ratio)] = np.nan  # a zero mean, an unknown volume
        high, pct = work[len(per_run), :m], work[len(per_run) + 1, :m]
        np.take(high_52w, kept_at, out=high)
        high[bars_before < _HIGH_WINDOW - 1] = np.nan
        close = bars.close[kept_at]
        np.subtract(high, close, out=pct)
        pct /= high
        pct *= 100.0
        for k, period in enumerate(_ROCR_PERIODS, start=len(per_run) + 2):
            ret, earlier = work[k, :m], bars.close[np.maximum(kept_at - period, 0)]
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(close, earlier, out=ret)
            ret[earlier == 0.0] = 0.0
            ret[bars_before < period] = np.nan
            ret -= 1.0
        lo = int(np.searchsorted(bars.frame_days, window.keep_from, side="left"))
        shift = np.zeros(bars.n_symbols, dtype=np.int64)
        shift[live] = keeps[live] - at
        gather = to_symbol_major[lo : lo + m] - shift[bars.frame_codes[lo : lo + m]]
        computed = pl.DataFrame([pl.Series(name, work[j, :m]) for j, name in enumerate(names)])[pl.Series(gather)]
        pieces.append(bars.frame.slice(lo, m).hstack(computed))
    if not pieces:
        pieces.append(bars.frame.clear().hstack([pl.Series(name, [], pl.Float64) for name in names]))
    # NaN -> null over each window's columns
    return pl.concat([piece.select(*OUTPUT_COLUMNS[:3], *_finish(extra_sma)) for piece in pieces])


def compute_indicators(prices: pl.DataFrame, extra_sma: Sequence[int] = ()) -> pl.DataFrame:
    """Indicators for every bar of `prices`, each symbol computed over all its bars in session order.

    `prices` is a cleaned-prices frame in any row order. The result has the columns of docs/design.md
    (and `sma_<n>` for each period of `extra_sma` the table does not carry: the periods of configured SMA
    crosses), one row per input bar, sorted by (session, symbol). Values depend on the first bar of each
    symbol in the input; the pipeline calls `compute_indicators_anchored`, which fixes that first bar.
    """
    bars = _prepare(prices)
    everything = np.iinfo(np.int32)
    window = _Window(first=everything.min, keep_from=everything.min, last=everything.max)
    return _compute(bars, [window], _extra_periods(extra_sma))


def _block_bounds(n_sessions: int, block: int, anchor_block: int, warmup: int) -> tuple[int, int]:
    """(index of the anchor session, index of the block's last session) for block number `block`."""
    return max(0, block * anchor_block - warmup), min(n_sessions - 1, (block + 1) * anchor_block - 1)


def required_input_start(
    sessions: Sequence[dt.date], out_start: dt.date, anchor_block: int = ANCHOR_BLOCK, warmup: int = WARMUP
) -> dt.date:
    """First session the input prices must cover for an anchored run whose output starts at `out_start`."""
    i = bisect.bisect_left(sessions, out_start)
    if i == len(sessions):
        raise ValueError(f"{out_start} is after the last session of the calendar ({sessions[-1]})")
    anchor, _ = _block_bounds(len(sessions), i // anchor_block, anchor_block, warmup)
    return sessions[anchor]


def compute_indicators_anchored(
    prices: pl.DataFrame,
    sessions: Sequence[dt.date],
    out_start: dt.date,
    out_end: dt.date,
    anchor_block: int = ANCHOR_BLOCK,
    warmup: int = WARMUP,
    extra_sma: Sequence[int] = (),
) -> pl.DataFrame:
    """Indicators for the sessions in [out_start, out_end], each computed from its block's fixed anchor
    (with `sma_<n>` for the periods of `extra_sma`, as `compute_indicators`).

    `sessions` is the full ordered session calendar (`nyse_calendar().sessions`); a session's block is
    its index // `anchor_block`. Every output session D of block k gets the values that
    `compute_indicators` gives over the bars in [sessions[max(0, k*anchor_block - warmup)], D]. All
    indicators are causal (a value never depends on a later bar), so each block is computed once, up to
    its last needed session, and a one-day run reproduces a range run bit for bit as long as `prices`
    holds the bars from `required_input_start(sessions, out_start)` on.
    """
    if out_start > out_end:
        raise ValueError(f"out_start {out_start} is after out_end {out_end}")
    if anchor_block < 1 or warmup < 0:
        raise ValueError(f"anchor_block must be >= 1 and warmup >= 0, got {anchor_block}, {warmup}")
    first = bisect.bisect_left(sessions, out_start)
    last = bisect.bisect_right(sessions, out_end) - 1
    bars = _prepare(prices)
    windows = []
    for block in range(first // anchor_block, last // anchor_block + 1) if first <= last else ():
        anchor, block_last = _block_bounds(len(sessions), block, anchor_block, warmup)
        keep_from, keep_to = max(first, block * anchor_block), min(last, block_last)
        windows.append(
            _Window(
                first=_epoch_day(sessions[anchor]),
                keep_from=_epoch_day(sessions[keep_from]),
                last=_epoch_day(sessions[keep_to]),
            )
        )
    return _compute(bars, windows, _extra_periods(extra_sma))


def _split_factors(days: np.ndarray, ex_days: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Per bar day: the product of the ratios of the actions dated after it (`ex_days` sorted, all known).

    The product is taken from the latest action backwards, so a bar's factor depends only on the actions in
    (bar, as_of], multiplied in one fixed order, and is exactly 1.0 when there are none. That is what lets a
    one-day run (whose input starts later) reproduce a range run bit for bit.
    """
    suffix = np.ones(ex_days.size + 1)
    suffix[:-1] = np.cumprod(ratios[::-1])[::-1]
    return suffix[np.searchsorted(ex_days, days, side="right")]


_SECURITY_SEP = "\x1f"  # symbol + SEP + security: sorts right after the symbol, before any printable suffix


def _by_security(
    cleaned: pl.DataFrame, actions: pl.DataFrame | None, securities: SecurityMaster
) -> tuple[pl.DataFrame, pl.DataFrame | None, bool]:
    """(bars, actions, renamed): a symbol whose bars belong to more than one security (per
    `SecurityMaster.segment_keys`) becomes one pseudo-symbol per security, `symbol + SEP + security`, and a
    split is moved to the pseudo-symbol of the security that traded on its ex-date. Nothing changes (and
    nothing is copied) when no symbol in the input spans two securities."""
    keys = securities.segment_keys(cleaned.select("symbol", "session"))
    if keys.null_count() == keys.len():
        return cleaned, actions, False
    keyed = cleaned.with_columns(keys.alias("_security"))
    spanning = (
        keyed.filter(pl.col("_security").is_not_null())
        .group_by("symbol")
        .agg(pl.col("_security").n_unique().alias("_n"))
        .filter(pl.col("_n") > 1)["symbol"]
    )
    if spanning.len() == 0:
        return cleaned, actions, False
    split = pl.col("symbol").is_in(spanning.implode())
    pseudo = pl.when(split).then(pl.col("symbol") + _SECURITY_SEP + pl.col("_security")).otherwise(pl.col("symbol"))
    bars = keyed.with_columns(pseudo.alias("symbol")).drop("_security")
    if actions is not None and actions.height:
        actions = normalize_corporate_actions(actions)
        on_ex = securities.segment_keys(actions.select("symbol", "ex_date"), date_column="ex_date")
        actions = actions.with_columns(on_ex.alias("_security")).with_columns(pseudo.alias("symbol")).drop("_security")
    return bars, actions, True


def compute_indicators_adjusted(
    cleaned: pl.DataFrame,
    actions: pl.DataFrame | None,
    cal_sessions: Sequence[dt.date],
    start: dt.date,
    end: dt.date,
    anchor_block: int = ANCHOR_BLOCK,
    warmup: int = WARMUP,
    securities: SecurityMaster | None = None,
    extra_sma: Sequence[int] = (),
) -> pl.DataFrame:
    """`compute_indicators_anchored` on prices split-adjusted point in time, per security (`extra_sma`: as
    there).

    With `securities` (a security master), a symbol whose bars belong to two securities (a reused ticker)
    has each security's bars computed as a series of its own (`_by_security`): indicators of the later
    security start null and fill in from its own first bar, exactly as for an IPO. Each series is still
    anchored (a security's value for D depends only on its bars in D's anchor window), so a range run equals
    day-by-day runs bit for bit. Without a master, or when no symbol of the input spans two securities,
    this is the computation below, unchanged.
    """
    if securities is not None and cleaned.height:
        bars, actions, renamed = _by_security(cleaned, actions, securities)
        if renamed:
            out = compute_indicators_adjusted(
                bars, actions, cal_sessions, start, end, anchor_block, warmup, extra_sma=extra_sma
            )
            # (session, pseudo-symbol) order is (session, symbol) order: SEP sorts below every printable
            return out.with_columns(pl.col("symbol").str.split(_SECURITY_SEP).list.first())
    return _compute_adjusted(cleaned, actions, cal_sessions, start, end, anchor_block, warmup, extra_sma)


def _compute_adjusted(
    cleaned: pl.DataFrame,
    actions: pl.DataFrame | None,
    cal_sessions: Sequence[dt.date],
    start: dt.date,
    end: dt.date,
    anchor_block: int = ANCHOR_BLOCK,
    warmup: int = WARMUP,
    extra_sma: Sequence[int] = (),
) -> pl.DataFrame:
    """`compute_indicators_anchored` on prices split-adjusted point in time.

    `cleaned` holds bars as delivered (unadjusted), `actions` splits in anything
    `corporate_actions.normalize_corporate_actions` accepts (None or empty: no splits). The row of session D
    is computed from its anchored lookback back-adjusted as known on D, the rule of
    `corporate_actions.back_adjust(bars, actions, as_of=D)`: a bar dated before an action's ex_date, with
    ex_date <= D, has high/low/close divided by the ratio and its volume multiplied by it, rounded to whole
    shares (compounded over several actions). An action after
    D never touches D's row, and D's own close is never adjusted (no known action is dated after it).

    Everything is first computed unadjusted in one `compute_indicators_anchored` call (with no action in
    (first input session, end] that is the result, exactly). A symbol with actions has [start, end] cut into
    segments at its ex_dates; a segment is computed on its bars adjusted as of the segment's last day, which
    for every day of the segment is the same adjustment, and its rows replace the unadjusted ones. The adjustment factor of
    a bar is the product of only the ratios in (bar, as_of] (see `_split_factors`), so a one-day run gives
    the rows of a range run bit for bit, given `cleaned` from `required_input_start(cal_sessions, start)`.
    The output has OUTPUT_COLUMNS, sorted by (session, symbol).
    """
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    columns = (*OUTPUT_COLUMNS, *sma_columns(extra_sma))
    if actions is None or actions.height == 0 or cleaned.height == 0:
        return compute_indicators_anchored(cleaned, cal_sessions, start, end, anchor_block, warmup, extra_sma)
    first_input = cleaned.select(pl.col("session").cast(pl.Date).min()).item()
    relevant = normalize_corporate_actions(actions).filter(
        (pl.col("ex_date") > first_input) & (pl.col("ex_date") <= end)
    )
    if relevant.height == 0:
        return compute_indicators_anchored(cleaned, cal_sessions, start, end, anchor_block, warmup, extra_sma)

    slow_symbols = relevant["symbol"].unique()
    is_slow = pl.col("symbol").cast(pl.Utf8).is_in(slow_symbols.implode())
    # Every row, unadjusted, already in output order; the rows of symbols with splits are overwritten below
    # (computing them twice costs less than merging two frames of millions of rows by a string key).
    out = compute_indicators_anchored(cleaned, cal_sessions, start, end, anchor_block, warmup, extra_sma)
    volume = pl.col("volume") if "volume" in cleaned.columns else pl.lit(None)
    slow_bars = (
        cleaned.filter(is_slow)
        .select(
            pl.col("symbol").cast(pl.Utf8),
            pl.col("session").cast(pl.Date),
            *(pl.col(c).cast(pl.Float64) for c in ("high", "low", "close")),
            volume.cast(pl.Float64).alias("volume"),
        )
        .sort("symbol", "session")
    )
    by_symbol = slow_bars.partition_by("symbol", as_dict=True, maintain_order=True)
    ex_by_symbol = {
        key[0]: (
            group["ex_date"].to_physical().to_numpy().astype(np.int64),
            group["ratio"].to_numpy().astype(np.float64),
        )
        for key, group in relevant.sort("symbol", "ex_date").partition_by("symbol", as_dict=True).items()
    }

    # One pseudo-symbol per (symbol, segment): its bars from the segment's required input start to the
    # segment's last day, adjusted as of that day. All pieces go through one anchored computation.
    one_day = dt.timedelta(days=1)
    pieces: list[pl.DataFrame] = []
    spans: list[tuple[str, str, dt.date, dt.date]] = []
    for (symbol,), bars in by_symbol.items():
        ex_days, ratios = ex_by_symbol[symbol]
        days = bars["session"].to_physical().to_numpy().astype(np.int64)
        breaks = [_from_epoch_day(int(d)) for d in ex_days if d > _epoch_day(start)]
        for lo, hi in zip([start, *breaks], [*(b - one_day for b in breaks), end], strict=True):
            if bisect.bisect_left(cal_sessions, lo) >= bisect.bisect_right(cal_sessions, hi):
                continue  # no session in this segment
            first = _epoch_day(required_input_start(cal_sessions, lo, anchor_block, warmup))
            a = int(np.searchsorted(days, first, side="left"))
            b = int(np.searchsorted(days, _epoch_day(hi), side="right"))
            if a >= b:
                continue
            known = ex_days <= _epoch_day(hi)
            factor = pl.Series(_split_factors(days[a:b], ex_days[known], ratios[known]))
            pseudo = f"{len(spans):09d}"
            spans.append((pseudo, symbol, lo, hi))
            pieces.append(
                bars.slice(a, b - a).with_columns(
                    pl.lit(pseudo).alias("symbol"),
                    *(pl.col(c) / factor for c in ("high", "low", "close")),
                    (pl.col("volume") * factor).round(0),  # as back_adjust: shares x ratio, whole shares
                )
            )
    slow_at = out.select(pl.col("symbol").is_in(slow_symbols.implode()).arg_true()).to_series()
    if not pieces:
        slow = out.clear()
    else:
        span_frame = pl.DataFrame(
            spans,
            schema={"_pseudo": pl.Utf8, "_symbol": pl.Utf8, "_lo": pl.Date, "_hi": pl.Date},
            orient="row",
        )
        slow = (
            compute_indicators_anchored(
                pl.concat(pieces), cal_sessions, start, end, anchor_block, warmup, extra_sma
            )
            .join(span_frame, left_on="symbol", right_on="_pseudo", how="inner")
            .filter(pl.col("session").is_between(pl.col("_lo"), pl.col("_hi")))
            .with_columns(pl.col("_symbol").alias("symbol"))
            .select(columns)
            .sort("session", "symbol")
        )
    # Both are in (session, symbol) order, so the k-th adjusted row replaces the k-th row of those symbols.
    if not slow.select("symbol", "session").equals(out[slow_at].select("symbol", "session")):
        raise ValueError("prices hold bars off the session calendar: cannot place the split-adjusted rows")
    return out.with_columns(out[c].clone().scatter(slow_at, slow[c]) for c in columns[2:])


SMA_MARKER = "sma_extra"
"""The indicators table's record of the extra SMA periods each row was computed with ("10,120"; null: none,
as every row written before a cross asked for one): a row computed without a period a strategy needs is
told apart from a row whose SMA is null because the symbol lacks the bars."""


def with_sma_marker(table: pl.DataFrame, extra_sma: Sequence[int]) -> pl.DataFrame:
    """`table` with the `SMA_MARKER` column for the extra periods it was computed with."""
    periods = _extra_periods(extra_sma)
    text = ",".join(str(n) for n in sorted(periods)) if periods else None
    return table.with_columns(pl.lit(text, dtype=pl.Utf8).alias(SMA_MARKER))


def sessions_without_sma(table: pl.DataFrame, periods: Sequence[int]) -> dict[int, list[dt.date]]:
    """{period: sessions of `table` whose rows were computed without that extra SMA period} for the periods
    not among the table's own; empty when every row has them all."""
    wanted = _extra_periods(periods)
    if not wanted or table.height == 0:
        return {}
    marker = (
        table[SMA_MARKER] if SMA_MARKER in table.columns else pl.Series(SMA_MARKER, [None] * table.height, pl.Utf8)
    )
    have = marker.fill_null("").str.split(",")
    out = {}
    for n in wanted:
        lacking = table.filter(~have.list.contains(str(n)))["session"].unique().sort().to_list()
        if lacking:
            out[n] = lacking
    return out
