"""The RSI-bounds and 52-week-dip-threshold sweeps (issue 11), on a generic event kernel.

`backtest_events(bars, entries, exits, ...)` backtests any strategy given as per-bar booleans ("a buy / a sell
signal at this bar's close"), aligned with the SMA sweep's packed bars (`sweep.Bars`), one row per parameter
set, with exactly the SMA sweep kernel's reference conventions (decision 0006, `research/sweep.py`'s module
docstring): the signal of D fills at the next calendar session's open if the symbol has a bar there (else the
day order expires), fixed notional, `size_on` close | fill, `shares` whole | fractional, no adding (a buy when
held does nothing), a sell sells everything (a sell when flat does nothing), bps fees and slippage, no cash
limit; the same figures (`STATS_COLUMNS`, computed as `sweep_bars` does: `series_stats` for the return, Sharpe
and drawdown, `sweep._sortino`, traded value, turnover, exposure). `sweep_bars`' stats are inline in it, not a
function, so they are computed here with the same helpers and formulas (`_stats_rows`).

When one bar has both an entry and an exit: held, the exit sells; flat, the entry buys. (The planner processes
sells before buys, so an RSI or dip rule, which never has both, is unaffected; a caller mixing both should
check its own case.)

On top:
* `sweep_rsi`: the `rsi` strategy (`domain/strategies.py` `_rsi`): buy when `rsi_14 < lower`, sell when
  `rsi_14 > upper`, for every (lower, upper) of a grid (default 20..40 x 60..80 step 5: 25 sets);
* `sweep_dip`: the `dip_52w` strategy (`_dip_52w`): buy when `pct_below_high_52w >= threshold_pct` (default
  5..30 step 2.5: 11 thresholds); no sell signal, so a position is held to the end of the window, unless
  `take_profit_pct` / `stop_loss_pct` grid dimensions add the backtest's exits (`domain/exits.py`: each
  entry's bracket levels from its signal bar's close, rounded half up to the tick as `exits.exit_levels`
  does; worked on every bar from the entry's own, after the open: a gap through a level fills at the open,
  a take-profit there at the open floored to the tick; else the stop at its level less slippage when the low
  reaches it, else the take-profit at its level when the high does; the stop first when both). The bars
  then need their high and low (`pack_indicator_bars(..., price_columns=("high", "low"))`).

`rsi_14` and `pct_below_high_52w` are read *from the indicators table* (`compute_indicators_anchored`, the
warehouse's `indicators.indicators`), aligned with the packed bars by `pack_indicator_bars`, never recomputed:
the sweeps' signals are the signals asset's by construction. A null indicator gives no signal, as in the
pipeline; a NaN is refused (`align_indicators`: polars orders NaN above every number, so the pipeline's rules
would sell / buy on it; the table holds nulls).

Memory: the signals are booleans, distinct rows only (RSI: one entry row per lower bound and one exit row per
upper bound, combined per set by index), so 10 x bars bytes for the default RSI grid, 11 x bars for the dip.

The kernel (`_event_kernel`) is in `research/kernels.py`, imported when `backtest_events` runs (not with this
module: a process that loads the code location never imports numba).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from trading_dagster.domain.metrics import series_stats
from trading_dagster.research.sweep import (
    N_CHUNKS,
    PERIODS_PER_YEAR,
    STATS_SCHEMA,
    Bars,
    SweepResult,
    UnsupportedSetting,
    _nan,
    _sortino,
    check_settings,
    pack_bars,
)

DEFAULT_RSI_LOWER: tuple[float, ...] = (20.0, 25.0, 30.0, 35.0, 40.0)
DEFAULT_RSI_UPPER: tuple[float, ...] = (60.0, 65.0, 70.0, 75.0, 80.0)
DEFAULT_DIP_THRESHOLDS: tuple[float, ...] = tuple(5.0 + 2.5 * i for i in range(11))  # 5, 7.5, .., 30
RSI_COLUMN = "rsi_14"
DIP_COLUMN = "pct_below_high_52w"

STATS_COLUMNS: dict[str, pl.DataType] = {k: v for k, v in STATS_SCHEMA.items() if k not in ("fast", "slow")}
"""The figures of every parameter set (the SMA sweep's, without its fast / slow columns)."""


@dataclass(frozen=True)
class IndicatorBars:
    """Packed bars (`sweep.pack_bars`) and indicator columns aligned with them (float64, NaN: no value)."""

    bars: Bars
    values: Mapping[str, np.ndarray]


DENSE_LIMIT = 200_000_000
"""Symbols x calendar span up to which bars are looked up in a dense (symbol, session) -> bar table (4 bytes an
entry: 19 MB on the full shared file); beyond it, a binary search over the packed bars' sorted keys."""


def _bar_index(bars: Bars, codes: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """The packed bar of each (symbol index, calendar index), -1 where there is none."""
    n = bars.close.size
    if n == 0:
        return np.full(codes.size, -1, dtype=np.int64)
    symbol_of = np.repeat(np.arange(len(bars.symbols), dtype=np.int64), np.diff(bars.offsets))
    lo, hi = int(bars.cal.min()), int(bars.cal.max())
    inside = (cal >= lo) & (cal <= hi)
    span = hi - lo + 1
    if len(bars.symbols) * span <= DENSE_LIMIT:
        table = np.full((len(bars.symbols), span), -1, dtype=np.int32 if n < 2**31 else np.int64)
        table[symbol_of, bars.cal - lo] = np.arange(n)
        out = np.full(codes.size, -1, dtype=np.int64)
        out[inside] = table[codes[inside], cal[inside] - lo]
        return out
    packed = (symbol_of << 32) | bars.cal  # sorted: pack_bars' order
    keys = (codes << 32) | cal
    at = np.minimum(np.searchsorted(packed, keys), n - 1)
    return np.where(inside & (packed[at] == keys), at, -1)


def align_indicators(
    bars: Bars, indicators: pl.DataFrame, calendar: Sequence[dt.date], columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """`columns` of `indicators` (symbol, session, ...) aligned with the packed `bars`: the value of bar i is the
    row with bar i's symbol and session (NaN when there is none, or it is null). Rows of other symbols or of
    sessions without a packed bar (after the window, say) are ignored."""
    missing = [c for c in ("symbol", "session", *columns) if c not in indicators.columns]
    if missing:
        raise ValueError(f"the indicators lack columns {missing}")
    out = {c: np.full(bars.close.size, np.nan) for c in columns}
    known = indicators.filter(pl.col("symbol").cast(pl.Utf8).is_in(bars.symbols))
    if known.height == 0:
        return out
    codes = (
        known["symbol"].cast(pl.Utf8).cast(pl.Enum(bars.symbols)).to_physical().to_numpy().astype(np.int64)
    )
    calendar_days = np.asarray(calendar, dtype="datetime64[D]")
    days = known["session"].cast(pl.Date).to_numpy().astype("datetime64[D]")
    cal = np.searchsorted(calendar_days, days).astype(np.int64)
    on_calendar = (cal < calendar_days.size) & (
        calendar_days[np.minimum(cal, calendar_days.size - 1)] == days
    )
    at = np.where(on_calendar, _bar_index(bars, codes, cal), -1)
    hit = at >= 0
    where = at[hit]
    if where.size and np.bincount(where, minlength=bars.close.size).max() > 1:
        raise ValueError("the indicators are not unique on (symbol, session)")
    for c in columns:
        series = known[c].cast(pl.Float64)
        nans = int(series.is_nan().sum())
        if nans:  # polars orders NaN above every number: the pipeline's rules would signal on it
            raise ValueError(
                f"the indicators hold NaN in {c!r} ({nans} rows): the strategies' polars rules treat NaN as above "
                "every bound, the kernel as no value; a missing value must be null"
            )
        out[c][where] = series.fill_null(np.nan).to_numpy()[hit]
    return out


def pack_indicator_bars(
    cleaned: pl.DataFrame,
    indicators: pl.DataFrame,
    calendar: Sequence[dt.date],
    columns: Sequence[str],
    start: dt.date | None = None,
    end: dt.date | None = None,
    price_columns: Sequence[str] = (),
) -> IndicatorBars:
    """`pack_bars(cleaned, calendar, start, end)` with the indicators table's `columns` aligned to the bars, and
    `price_columns` of `cleaned` itself (the exits need "high" and "low")."""
    bars = pack_bars(cleaned, calendar, start, end)
    values = align_indicators(bars, indicators, calendar, columns)
    if price_columns:
        values |= align_indicators(bars, cleaned, calendar, price_columns)
    return IndicatorBars(bars, values)


@dataclass(frozen=True)
class ExitGrid:
    """Stop-loss / take-profit levels for `backtest_events`, following `domain/exits.py`'s backtest rule.

    `stops` / `takes`: (rows, bars) the level an entry signalled at that bar's close gets (NaN: no such leg),
    one row per percentage (`exit_grid`); `high`, `low`: the bars' (NaN: a bar without them, no exit there);
    `open_floor`: the open rounded down to the tick (a take-profit gapped through at the open fills there).
    """

    stops: np.ndarray
    takes: np.ndarray
    high: np.ndarray
    low: np.ndarray
    open_floor: np.ndarray


def open_floor_per_bar(opens: np.ndarray) -> np.ndarray:
    """`execution.round_price(open, ROUND_FLOOR)` of each open taken exactly (`orders.as_decimal`), as float:
    the price a take-profit gapped through at the open fills at. In float, except within 1e-6 tick of a tick
    or of $1, recomputed in Decimal as the pipeline does (0.29 x 100 = 28.999999999999996 in float)."""
    from decimal import ROUND_FLOOR

    from trading_dagster.domain.execution import round_price
    from trading_dagster.domain.orders import as_decimal

    with np.errstate(invalid="ignore"):
        per_tick = np.where(opens >= 1, 100.0, 10_000.0)
        t = opens * per_tick
        # an open on the tick (its shortest repr has at most the tick's decimals) is its own floor
        on_tick = np.rint(t) / per_tick == opens
        out = np.where(on_tick, opens, np.floor(t) / per_tick)
        frac = t - np.floor(t)
        near = ~on_tick & ((frac < 1e-6) | (frac > 1 - 1e-6) | (np.abs(opens - 1) < 1e-9))
    for i in np.flatnonzero(near & (opens > 0)):
        out[i] = float(round_price(as_decimal(float(opens[i])), ROUND_FLOOR))
    out[~(opens > 0)] = np.nan
    return out


def exit_levels_per_bar(close: np.ndarray, pct: float, side: str) -> np.ndarray:
    """The level `exits.exit_levels` gives an entry whose reference price is each bar's close: close x (1 -
    pct / 100) for a stop ("stop"), close x (1 + pct / 100) for a take-profit ("take"), rounded half up to the
    tick (a cent at or above $1, 1e-4 below), a stop at or below zero none (NaN). In float, except where the
    float product is within 1e-6 tick of a rounding tie or of $1, recomputed in Decimal as the pipeline does."""
    from decimal import ROUND_HALF_UP

    from trading_dagster.domain.execution import round_price
    from trading_dagster.domain.orders import as_decimal

    if side not in ("stop", "take"):
        raise ValueError(f"side must be 'stop' or 'take', got {side!r}")
    factor = 1 - as_decimal(float(pct)) / 100 if side == "stop" else 1 + as_decimal(float(pct)) / 100
    with np.errstate(invalid="ignore"):
        x = close * float(factor)
        per_tick = np.where(x >= 1, 100.0, 10_000.0)
        t = x * per_tick
        level = np.floor(t + 0.5) / per_tick
        near = (np.abs(t - np.floor(t) - 0.5) < 1e-6) | (np.abs(x - 1) < 1e-9)
    for i in np.flatnonzero(near & np.isfinite(close) & (close > 0)):
        exact = as_decimal(float(close[i])) * factor
        level[i] = float(round_price(exact, ROUND_HALF_UP)) if exact > 0 else np.nan
    if side == "stop":
        level[~(level > 0)] = np.nan  # a stop at or below zero is none (a take-profit rounded to 0 is kept)
    level[~(close > 0)] = np.nan  # no close, no level
    return level


def exit_grid(
    data: IndicatorBars, stop_loss_pct: Sequence[float] = (), take_profit_pct: Sequence[float] = ()
) -> ExitGrid:
    """The `ExitGrid` of these percentages on bars packed with `price_columns=("high", "low")`."""
    bars = data.bars
    for name in ("high", "low"):
        if name not in data.values:
            raise ValueError(
                f"exits need the bars' {name} (pack_indicator_bars(..., price_columns=('high', 'low')))"
            )
    for name, pcts in (("stop_loss_pct", stop_loss_pct), ("take_profit_pct", take_profit_pct)):
        bad = [x for x in pcts if not (0 < x < 100 if name == "stop_loss_pct" else x > 0)]
        if bad:
            raise ValueError(f"{name} must be in (0, 100) (stop) / > 0 (take), got {bad}")
    n = bars.close.size

    def rows(pcts: Sequence[float], side: str) -> np.ndarray:
        if not pcts:
            return np.full((1, n), np.nan)
        return np.stack([exit_levels_per_bar(bars.close, float(x), side) for x in pcts])

    floor = open_floor_per_bar(bars.open) if take_profit_pct else np.full(n, np.nan)
    return ExitGrid(
        stops=rows(stop_loss_pct, "stop"),
        takes=rows(take_profit_pct, "take"),
        high=data.values["high"],
        low=data.values["low"],
        open_floor=floor,
    )


def _stats_rows(
    sessions: Sequence[dt.date],
    equity: np.ndarray,
    value: np.ndarray,
    orders: np.ndarray,
    buys: np.ndarray,
    traded: np.ndarray,
    initial_cash: float,
) -> list[tuple]:
    """One tuple of `STATS_COLUMNS` per set: the formulas of `sweep_bars` (see its module docstring)."""
    returns = max(len(sessions) - 1, 1)
    rows = []
    for p in range(equity.shape[0]):
        v = equity[p]
        figures = series_stats(sessions, v.tolist(), PERIODS_PER_YEAR)
        mean_equity = float(np.mean(v))
        turnover = traded[p] / 2 / mean_equity * PERIODS_PER_YEAR / returns if mean_equity > 0 else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            exposure = float(np.mean(np.where(v > 0, value[p] / v, 0.0)))
        final = float(v[-1])
        rows.append(
            (
                final - float(initial_cash),
                final,
                _nan(figures["cumulative_return"]),
                int(orders[p]),
                int(buys[p]),
                _nan(figures["sharpe"]),
                _sortino(v),
                _nan(figures["max_drawdown"]),
                float(traded[p]),
                turnover,
                exposure,
            )
        )
    return rows


def _signal_rows(signals: np.ndarray | None, n_bars: int, name: str) -> np.ndarray:
    if signals is None:
        return np.zeros((1, n_bars), dtype=np.bool_)
    array = np.asarray(signals)
    if array.dtype != np.bool_:
        raise ValueError(f"{name} must be booleans, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_bars or array.shape[0] == 0:
        raise ValueError(f"{name} must be (sets, {n_bars} bars), got shape {np.asarray(signals).shape}")
    return np.ascontiguousarray(array)


def backtest_events(
    bars: Bars,
    entries: np.ndarray,
    exits: np.ndarray | None = None,
    *,
    combine: Sequence[tuple[int, int]] | None = None,
    params: Sequence[tuple[Any, ...]] | None = None,
    param_names: Sequence[str] = ("set",),
    exit_levels: ExitGrid | None = None,
    brackets: Sequence[tuple[int, int]] | None = None,
    notional: float = 10_000,
    initial_cash: float = 100_000,
    size_on: str = "close",
    shares: str = "whole",
    fees_bps: float = 0,
    slippage_bps: float = 0,
    **settings: Any,
) -> SweepResult:
    """Backtest signals given per bar, one parameter set per row, with the reference conventions.

    `bars`: `sweep.pack_bars`' packed bars (the window is theirs; warm-up bars before it never trade).
    `entries`, `exits`: booleans (rows x bars, or one row as a vector), aligned with the packed bars: True =
    a buy (entry) / a sell-everything (exit) signal at this bar's close, filled at the next calendar session's
    open if the symbol has a bar there. `exits` None: no sell signal (held to the end). Signals on bars before
    the window are ignored.
    `combine`: the (entry row, exit row) of each set; default: row p of each (`exits` with one row: that row
    for every set). `params`: one tuple per set, the values of `param_names` (the leading columns of the stats;
    default `set` = 0, 1, ...).
    `exit_levels`, `brackets`: stop-loss / take-profit exits (`exit_grid`): set p's entries get the levels of
    row `brackets[p]` = (stop row, take row) of `exit_levels.stops` / `.takes` (-1: no such leg), worked on
    every bar from the entry's own (after the open's fill) as the backtest book does (`domain/exits.py`:
    a gap through a level fills at the open, else the stop at its level less slippage when the low reaches
    it, else the take-profit at its level when the high does; the stop first when both; commission on both).
    Default: no exits.
    Settings as `sweep.sweep_bars`: notional (USD per buy), initial_cash, size_on ("close" | "fill"), shares
    ("whole" | "fractional"), fees_bps, slippage_bps; any other backtest setting only at its reference value
    (`check_settings`: else `UnsupportedSetting` naming it).

    Returns a `SweepResult`: `pairs` = `params`; `stats` = the `param_names` columns then `STATS_COLUMNS`, one
    row per set in order; `equity` / `positions_value`: sets x sessions.
    """
    from trading_dagster.research.kernels import _event_kernel  # numba: imported when a sweep runs

    check_settings(settings)
    if size_on not in ("close", "fill"):
        raise UnsupportedSetting(f"size_on must be 'close' or 'fill', got {size_on!r}")
    if shares not in ("whole", "fractional"):
        raise UnsupportedSetting(f"shares must be 'whole' or 'fractional', got {shares!r}")
    if not notional > 0:
        raise ValueError(f"notional must be > 0, got {notional}")
    n_bars = bars.close.size
    buy = _signal_rows(entries, n_bars, "entries")
    sell = _signal_rows(exits, n_bars, "exits")
    if combine is None:
        if sell.shape[0] not in (1, buy.shape[0]):
            raise ValueError(f"{buy.shape[0]} entry rows and {sell.shape[0]} exit rows: pass combine")
        combine = [(p, p if sell.shape[0] > 1 else 0) for p in range(buy.shape[0])]
    combine = [(int(e), int(x)) for e, x in combine]
    bad = [(e, x) for e, x in combine if not (0 <= e < buy.shape[0] and 0 <= x < sell.shape[0])]
    if not combine or bad:
        raise ValueError(f"combine needs (entry row, exit row) within the signals, got {bad or 'none'}")
    params = [(p,) for p in range(len(combine))] if params is None else [tuple(p) for p in params]
    if len(params) != len(combine) or any(len(p) != len(param_names) for p in params):
        raise ValueError(
            f"need one tuple of {tuple(param_names)} per set ({len(combine)}), got {len(params)}"
        )
    if exit_levels is None:
        if brackets is not None:
            raise ValueError("brackets need exit_levels (exit_grid)")
        empty = np.full((1, 1), np.nan)
        exit_levels = ExitGrid(empty, empty, np.empty(0), np.empty(0), np.empty(0))
        brackets = [(-1, -1)] * len(combine)
    elif brackets is None or len(brackets) != len(combine):
        raise ValueError(f"exit_levels need brackets: one (stop row, take row) per set ({len(combine)})")
    brackets = [(int(a), int(b)) for a, b in brackets]
    bad = [
        b
        for b in brackets
        if not (-1 <= b[0] < exit_levels.stops.shape[0] and -1 <= b[1] < exit_levels.takes.shape[0])
    ]
    if bad:
        raise ValueError(f"brackets need rows of exit_levels or -1, got {bad}")
    n_rows = len(bars.sessions)
    cash, value, orders, buys, traded = _event_kernel(
        bars.offsets,
        bars.row,
        bars.open,
        bars.close,
        buy,
        sell,
        np.asarray([e for e, _ in combine], dtype=np.int64),
        np.asarray([x for _, x in combine], dtype=np.int64),
        np.ascontiguousarray(exit_levels.stops, dtype=np.float64),
        np.ascontiguousarray(exit_levels.takes, dtype=np.float64),
        np.asarray([b[0] for b in brackets], dtype=np.int64),
        np.asarray([b[1] for b in brackets], dtype=np.int64),
        np.ascontiguousarray(exit_levels.high, dtype=np.float64),
        np.ascontiguousarray(exit_levels.low, dtype=np.float64),
        np.ascontiguousarray(exit_levels.open_floor, dtype=np.float64),
        n_rows,
        float(notional),
        size_on == "fill",
        shares == "fractional",
        float(fees_bps) / 10_000,
        float(slippage_bps) / 10_000,
        N_CHUNKS,
    )
    equity = float(initial_cash) + np.cumsum(cash, axis=1) + value
    figures = pl.DataFrame(
        _stats_rows(bars.sessions, equity, value, orders, buys, traded, initial_cash),
        schema=STATS_COLUMNS,
        orient="row",
    )
    keys = pl.DataFrame(params, schema=list(param_names), orient="row")
    keys = keys.with_columns(pl.col(c).cast(pl.Float64) for c, t in keys.schema.items() if t == pl.Null)
    return SweepResult(
        list(bars.sessions), params, pl.concat([keys, figures], how="horizontal"), equity, value
    )


def _column(data: IndicatorBars, name: str) -> np.ndarray:
    if name not in data.values:
        raise ValueError(f"the packed bars carry no {name!r} (pack_indicator_bars(..., columns=[{name!r}]))")
    return data.values[name]


def rsi_grid(
    lower: Iterable[float] = DEFAULT_RSI_LOWER, upper: Iterable[float] = DEFAULT_RSI_UPPER
) -> list[tuple[float, float]]:
    """Every (lower, upper) with 0 < lower < upper < 100, lower-major (the default: 5 x 5 = 25 sets)."""
    upper = [float(u) for u in upper]
    return [(float(lo), hi) for lo in lower for hi in upper if 0 < lo < hi < 100]


def sweep_rsi(
    data: IndicatorBars, bounds: Sequence[tuple[float, float]] | None = None, **settings: Any
) -> SweepResult:
    """The `rsi` strategy for every (lower, upper) of `bounds` (default `rsi_grid()`): buy when `rsi_14 <
    lower`, sell everything when `rsi_14 > upper` (`_rsi`'s rule), `rsi_14` from the indicators table
    (`pack_indicator_bars(..., columns=["rsi_14"])`). Stats columns `lower`, `upper`, then `STATS_COLUMNS`.
    `settings`: as `backtest_events`."""
    bounds = rsi_grid() if bounds is None else [(float(lo), float(hi)) for lo, hi in bounds]
    bad = [b for b in bounds if not 0 < b[0] < b[1] < 100]
    if not bounds or bad:
        raise ValueError(f"need RSI bounds with 0 < lower < upper < 100, got {bad or 'none'}")
    rsi = _column(data, RSI_COLUMN)
    lowers = sorted({lo for lo, _ in bounds})
    uppers = sorted({hi for _, hi in bounds})
    with np.errstate(invalid="ignore"):  # NaN compares False: no value, no signal
        entries = rsi[None, :] < np.asarray(lowers)[:, None]
        exits = rsi[None, :] > np.asarray(uppers)[:, None]
    combine = [(lowers.index(lo), uppers.index(hi)) for lo, hi in bounds]
    return backtest_events(
        data.bars, entries, exits, combine=combine, params=bounds, param_names=("lower", "upper"), **settings
    )


def sweep_dip(
    data: IndicatorBars,
    thresholds: Sequence[float] | None = None,
    *,
    take_profit_pct: Sequence[float | None] | None = None,
    stop_loss_pct: Sequence[float | None] | None = None,
    **settings: Any,
) -> SweepResult:
    """The `dip_52w` strategy for every `threshold_pct` of `thresholds` (default 5..30 step 2.5): buy when
    `pct_below_high_52w >= threshold_pct` (`_dip_52w`'s rule), from the indicators table
    (`pack_indicator_bars(..., columns=["pct_below_high_52w"])`); no sell signal. Stats columns
    `threshold_pct`, then `STATS_COLUMNS`. `settings`: as `backtest_events`.

    `take_profit_pct`, `stop_loss_pct`: optional grid dimensions (None in one: no such leg), the backtest's
    exits (`RiskConfig.take_profit_pct` / `stop_loss_pct`, `domain/exits.py`), on bars packed with
    `price_columns=("high", "low")`; the sets are then thresholds x take-profits x stop-losses
    (threshold-major) and the stats carry `take_profit_pct` and `stop_loss_pct` columns too (null: off).
    A position closed by an exit is bought again on the next dip signal."""
    thresholds = list(DEFAULT_DIP_THRESHOLDS) if thresholds is None else [float(t) for t in thresholds]
    bad = [t for t in thresholds if not 0 < t < 100]
    if not thresholds or bad:
        raise ValueError(f"need thresholds with 0 < threshold_pct < 100, got {bad or 'none'}")
    pct = _column(data, DIP_COLUMN)
    with np.errstate(invalid="ignore"):
        entries = pct[None, :] >= np.asarray(thresholds)[:, None]
    if take_profit_pct is None and stop_loss_pct is None:
        params = [(t,) for t in thresholds]
        return backtest_events(
            data.bars, entries, None, params=params, param_names=("threshold_pct",), **settings
        )
    takes = [None if x is None else float(x) for x in (take_profit_pct or [None])]
    stops = [None if x is None else float(x) for x in (stop_loss_pct or [None])]
    take_values = [x for x in takes if x is not None]
    stop_values = [x for x in stops if x is not None]
    grid = exit_grid(data, stop_values, take_values)
    sets = [(i, t, tp, sl) for i, t in enumerate(thresholds) for tp in takes for sl in stops]
    return backtest_events(
        data.bars,
        entries,
        None,
        combine=[(i, 0) for i, *_ in sets],
        params=[(t, tp, sl) for _, t, tp, sl in sets],
        param_names=("threshold_pct", "take_profit_pct", "stop_loss_pct"),
        exit_levels=grid,
        brackets=[
            (-1 if sl is None else stop_values.index(sl), -1 if tp is None else take_values.index(tp))
            for _, _, tp, sl in sets
        ],
        **settings,
    )
