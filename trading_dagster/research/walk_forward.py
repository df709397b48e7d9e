"""Walk-forward selection on the exchange calendar (issue 11, decision 0007): would I have chosen these
parameters, and would they have worked, with only the data I had then?

Folds (`folds`): out-of-sample (test) windows of `test_sessions` back to back after a first in-sample (train)
window of `train_sessions`; `rolling` (train = the `train_sessions` sessions before the test window) or
`expanding` (train = from the first session). The last test window takes what is left (at least
`MIN_TEST_SESSIONS`; a shorter remainder is not tested).

Per fold (`walk_forward`): every parameter set is backtested on the train window starting flat (bars before it
feed the indicators only), the highest in-sample Sharpe wins (an undefined Sharpe ranks last; ties: grid order),
and the winner alone is backtested on the test window, again starting flat. The stitched out-of-sample curve
chains the test windows' daily returns from the initial cash (each window's first day: its equity over the
window's initial cash). Each winner's deflated Sharpe (`deflated_sharpe.py`) uses the in-sample Sharpe ratios
of every set tried and the winner's in-sample daily returns.

The backtest is any callable `backtest(params_list, start, end) -> SweepResult` (`research/sweep.py`'s shape:
`.stats` with a `sharpe` column in the order of `params_list`, `.equity` params x sessions, `.sessions` the
window's calendar sessions) that reads no bar after `end` and starts flat on `start`; `sma_backtest` is the SMA
cross's (the sweep kernel on a window of bars packed once).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from trading_dagster.domain.metrics import series_stats
from trading_dagster.research.deflated_sharpe import deflated_sharpe_ratio
from trading_dagster.research.sweep import (
    PERIODS_PER_YEAR,
    Bars,
    SweepResult,
    _anchoring,
    pack_bars,
    sweep_bars,
)

MIN_TRAIN_SESSIONS = 3  # two returns: the least a Sharpe ratio needs
MIN_TEST_SESSIONS = 2
Params = tuple[Any, ...]
Backtest = Callable[[list[Params], dt.date, dt.date], SweepResult]


@dataclass(frozen=True)
class Fold:
    """One fold's windows (calendar sessions, both ends included): train_end < test_start."""

    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date


def folds(
    sessions: Sequence[dt.date],
    train_sessions: int = 756,
    test_sessions: int = 252,
    mode: Literal["rolling", "expanding"] = "rolling",
) -> list[Fold]:
    """The folds over `sessions` (the ordered calendar sessions of the whole window): test windows of
    `test_sessions` back to back from session `train_sessions` on, each after its train window."""
    if mode not in ("rolling", "expanding"):
        raise ValueError(f"mode must be 'rolling' or 'expanding', got {mode!r}")
    if train_sessions < MIN_TRAIN_SESSIONS:
        raise ValueError(
            f"train_sessions must be >= {MIN_TRAIN_SESSIONS} (a Sharpe ratio needs two returns), got {train_sessions}"
        )
    if test_sessions < MIN_TEST_SESSIONS:
        raise ValueError(f"test_sessions must be >= {MIN_TEST_SESSIONS} (one return), got {test_sessions}")
    days = list(sessions)
    if any(b <= a for a, b in zip(days, days[1:], strict=False)):
        raise ValueError(
            "sessions must be strictly increasing (the exchange calendar's sessions of the window)"
        )
    if len(days) < train_sessions + MIN_TEST_SESSIONS:
        window = f"{days[0]} .. {days[-1]}" if days else "an empty window"
        raise ValueError(
            f"{len(days)} sessions ({window}) are too few for one fold: train_sessions ({train_sessions}) + at "
            f"least {MIN_TEST_SESSIONS} test sessions; shorten the windows or widen start / end"
        )
    out = []
    start = train_sessions
    while len(days) - start >= MIN_TEST_SESSIONS:
        stop = min(start + test_sessions, len(days))
        first = 0 if mode == "expanding" else start - train_sessions
        out.append(Fold(days[first], days[start - 1], days[start], days[stop - 1]))
        start = stop
    return out


@dataclass(frozen=True)
class WalkForwardResult:
    """`folds`: one row per fold (`fold`, the four window dates, the winner's parameters as columns,
    `is_sharpe`, `oos_sharpe`, `oos_return`, `oos_max_drawdown`, `trials`, `deflated_sharpe`); `equity`: the
    stitched out-of-sample curve (`session`, `equity`); `summary`: its Sharpe, return and max drawdown
    (`oos_*`), the mean in-sample Sharpe of the winners and the folds' mean deflated Sharpe; `winners`: each
    fold's parameter set."""

    folds: pl.DataFrame
    equity: pl.DataFrame
    summary: dict[str, float | int]
    winners: list[Params]


def pick_winner(sharpes: Sequence[float | None]) -> int:
    """Index of the highest Sharpe: an undefined one (None, NaN) ranks last, ties go to the first (grid order);
    0 when none is defined."""
    best, best_value = 0, -math.inf
    for i, s in enumerate(sharpes):
        if s is not None and not math.isnan(s) and s > best_value:
            best, best_value = i, float(s)
    return best


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _check(result: SweepResult, n: int, start: dt.date, end: dt.date, what: str) -> None:
    if result.stats.height != n or result.equity.shape != (n, len(result.sessions)):
        raise ValueError(
            f"the backtest of the {what} window {start} .. {end} returned {result.stats.height} stats rows and "
            f"equity {result.equity.shape} for {n} parameter sets"
        )
    if not result.sessions or result.sessions[0] != start or result.sessions[-1] != end:
        got = f"{result.sessions[0]} .. {result.sessions[-1]}" if result.sessions else "no session"
        raise ValueError(f"the backtest of the {what} window {start} .. {end} returned the sessions {got}")


def walk_forward(
    backtest: Backtest,
    params: Sequence[Params],
    fold_list: Sequence[Fold],
    initial_cash: float,
    param_names: Sequence[str] | None = None,
) -> WalkForwardResult:
    """Select on each fold's train window, test the winner on its test window, stitch the test windows.

    `param_names`: the folds table's columns for a parameter set (default the backtest's `param_names`
    attribute, else `param_0`, `param_1`, ...). The backtest must be built with `initial_cash` (a test window's
    first equity is checked against it)."""
    grid = [tuple(p) for p in params]
    if not grid:
        raise ValueError("no parameter set to select from")
    if not fold_list:
        raise ValueError("no fold")
    if not initial_cash > 0:
        raise ValueError(f"initial_cash must be > 0, got {initial_cash}")
    width = len(grid[0])
    names = list(
        param_names or getattr(backtest, "param_names", None) or [f"param_{i}" for i in range(width)]
    )
    if len(names) != width or any(len(p) != width for p in grid):
        raise ValueError(f"every parameter set must have {len(names)} values ({', '.join(names)})")
    for a, b in zip(fold_list, fold_list[1:], strict=False):
        if b.test_start <= a.test_end:
            raise ValueError(f"test windows overlap: {a.test_start} .. {a.test_end} and {b.test_start} ..")
    rows, winners = [], []
    stitched_days: list[dt.date] = []
    stitched: list[np.ndarray] = []
    level = float(initial_cash)
    for k, fold in enumerate(fold_list):
        if not fold.train_start <= fold.train_end < fold.test_start <= fold.test_end:
            raise ValueError(f"fold {k + 1}: need train_start <= train_end < test_start <= test_end, got {fold}")
        train = backtest(grid, fold.train_start, fold.train_end)
        _check(train, len(grid), fold.train_start, fold.train_end, f"fold {k + 1} train")
        sharpes = [_float(s) for s in train.stats["sharpe"].to_list()]
        w = pick_winner(sharpes)
        winner = grid[w]
        test = backtest([winner], fold.test_start, fold.test_end)
        _check(test, 1, fold.test_start, fold.test_end, f"fold {k + 1} test")
        equity = np.asarray(test.equity[0], dtype=float)
        if not math.isclose(equity[0], initial_cash, rel_tol=1e-12):
            raise ValueError(
                f"fold {k + 1}: the test window's equity starts at {equity[0]} on {fold.test_start}, not at the "
                f"initial cash {initial_cash}: build the backtest with the same initial cash, starting flat"
            )
        curve = level * equity / initial_cash
        level = float(curve[-1])
        stitched_days.extend(test.sessions)
        stitched.append(curve)
        oos = series_stats(test.sessions, equity.tolist(), PERIODS_PER_YEAR)
        is_equity = np.asarray(train.equity[w], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            is_returns = is_equity[1:] / is_equity[:-1] - 1
        per_period = np.asarray(sharpes) / math.sqrt(PERIODS_PER_YEAR)
        dsr = (
            deflated_sharpe_ratio(is_returns, per_period)
            if np.all(np.isfinite(is_returns)) and not math.isnan(sharpes[w])
            else math.nan
        )
        winners.append(winner)
        rows.append(
            {
                "fold": k + 1,
                "train_start": fold.train_start,
                "train_end": fold.train_end,
                "test_start": fold.test_start,
                "test_end": fold.test_end,
                **dict(zip(names, winner, strict=True)),
                "is_sharpe": sharpes[w],
                "oos_sharpe": _float(oos["sharpe"]),
                "oos_return": _float(oos["cumulative_return"]),
                "oos_max_drawdown": _float(oos["max_drawdown"]),
                "trials": len(grid),
                "deflated_sharpe": dsr,
            }
        )
    values = np.concatenate(stitched)
    overall = series_stats(stitched_days, values.tolist(), PERIODS_PER_YEAR)
    table = pl.DataFrame(rows).with_columns(pl.col("fold", "trials").cast(pl.Int64))
    return WalkForwardResult(
        folds=table,
        equity=pl.DataFrame(
            {"session": stitched_days, "equity": values}, schema={"session": pl.Date, "equity": pl.Float64}
        ),
        summary={
            "oos_sharpe": _float(overall["sharpe"]),
            "oos_return": _float(overall["cumulative_return"]),
            "oos_max_drawdown": _float(overall["max_drawdown"]),
            "mean_is_sharpe": _nanmean(table["is_sharpe"]),
            "mean_oos_sharpe": _nanmean(table["oos_sharpe"]),
            "mean_deflated_sharpe": _nanmean(table["deflated_sharpe"]),
            "folds": len(fold_list),
            "sessions": len(stitched_days),
        },
        winners=winners,
    )


def _nanmean(column: pl.Series) -> float:
    values = column.to_numpy().astype(float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def restrict(
    bars: Bars,
    calendar: Sequence[dt.date],
    start: dt.date,
    end: dt.date,
    anchoring: tuple[int, int] | None = None,
) -> Bars:
    """`bars` (packed over a window holding [start, end]) cut to the window [start, end]: the bars after `end`
    dropped, the rows renumbered from `start` (earlier bars stay, for the indicators' warm-up). Equal to
    `pack_bars(cleaned, calendar, start, end)` of the same bars, without packing again.

    `anchoring`: the kernel's SMA anchoring (block, warm-up), `sweep._anchoring(anchored)`: also drop the bars
    before the anchor of the window's first block (warm-up sessions before that block starts): no SMA of a bar
    in the window reads them (each block's SMA restarts from its own anchor), so the sweep's figures are the
    same, bit for bit, and a late window costs what its own years cost. Unanchored (one block from each
    symbol's first bar, no warm-up) this keeps every earlier bar."""
    lo, hi = bisect.bisect_left(calendar, start), bisect.bisect_right(calendar, end)
    if lo >= hi:
        raise ValueError(f"no calendar session in [{start}, {end}]")
    if end > bars.sessions[-1]:
        raise ValueError(f"the packed bars end on {bars.sessions[-1]}, before the window's end {end}")
    keep = bars.cal < hi
    if anchoring is not None:
        block, warmup = anchoring
        keep &= bars.cal >= max(0, lo // block * block - warmup)
    symbol = np.repeat(np.arange(len(bars.symbols)), np.diff(bars.offsets))
    counts = np.bincount(symbol[keep], minlength=len(bars.symbols))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cal = bars.cal[keep]
    return Bars(
        sessions=list(calendar[lo:hi]),
        symbols=bars.symbols,
        offsets=offsets,
        cal=cal,
        row=(cal - lo).astype(np.int64),
        open=bars.open[keep],
        close=bars.close[keep],
    )


class SmaBacktest:
    """The SMA cross's walk-forward backtest: the bars packed once, each window cut from them (`restrict`)."""

    param_names = ("fast", "slow")

    def __init__(self, cleaned: pl.DataFrame, calendar: Sequence[dt.date], **settings: Any) -> None:
        self.calendar = list(calendar)
        self.bars = pack_bars(cleaned, self.calendar)
        self.settings = settings

    def __call__(self, params_list: list[Params], start: dt.date, end: dt.date) -> SweepResult:
        pairs = [(int(f), int(s)) for f, s in params_list]
        anchoring = _anchoring(bool(self.settings.get("anchored", True)))  # the kernel's own
        window = restrict(self.bars, self.calendar, start, end, anchoring)
        return sweep_bars(window, pairs, **self.settings)


def sma_backtest(cleaned: pl.DataFrame, calendar: Sequence[dt.date], **settings: Any) -> SmaBacktest:
    """`backtest(pairs, start, end)` for `walk_forward`: `sweep_bars` with `settings` (the sweep's keyword
    arguments: notional, initial_cash, costs, tie band) on the window [start, end] of `cleaned`."""
    return SmaBacktest(cleaned, calendar, **settings)


class IndicatorBacktest:
    """The RSI / 52-week-dip walk-forward backtest (`threshold_sweep.sweep_rsi` / `sweep_dip`): each window's
    bars packed with the indicators table's `column` aligned to them (`pack_indicator_bars`)."""

    def __init__(
        self,
        frame: pl.DataFrame,
        calendar: Sequence[dt.date],
        column: str,
        param_names: tuple[str, ...],
        **settings: Any,
    ) -> None:
        missing = [c for c in ("session", "symbol", "open", "close", column) if c not in frame.columns]
        if missing:
            raise ValueError(f"the bars lack columns {missing}")
        self.calendar = list(calendar)
        self.column = column
        self.param_names = param_names
        self.prices = frame.select("session", "symbol", "open", "close")
        self.values = frame.select("symbol", "session", column).filter(pl.col(column).is_not_null())
        # the SMA sweep's tie band and anchoring mean nothing here
        self.settings = {k: v for k, v in settings.items() if k not in ("tie_band_pct", "anchored")}

    def __call__(self, params_list: list[Params], start: dt.date, end: dt.date) -> SweepResult:
        from trading_dagster.research.threshold_sweep import pack_indicator_bars, sweep_dip, sweep_rsi

        data = pack_indicator_bars(self.prices, self.values, self.calendar, [self.column], start, end)
        if self.param_names == ("lower", "upper"):
            return sweep_rsi(data, [(float(lo), float(hi)) for lo, hi in params_list], **self.settings)
        return sweep_dip(data, [float(p[0]) for p in params_list], **self.settings)


def rsi_backtest(frame: pl.DataFrame, calendar: Sequence[dt.date], **settings: Any) -> IndicatorBacktest:
    """`backtest(bounds, start, end)` for `walk_forward`: the RSI strategy on `frame` (session, symbol, open,
    close, rsi_14: the cleaned prices joined with the indicators table)."""
    return IndicatorBacktest(frame, calendar, "rsi_14", ("lower", "upper"), **settings)


def dip_backtest(frame: pl.DataFrame, calendar: Sequence[dt.date], **settings: Any) -> IndicatorBacktest:
    """`backtest(thresholds, start, end)` for `walk_forward`: the 52-week-dip strategy on `frame` (session,
    symbol, open, close, pct_below_high_52w)."""
    return IndicatorBacktest(frame, calendar, "pct_below_high_52w", ("threshold_pct",), **settings)
