"""The SMA-crossover parameter sweep (issue 11): every (fast, slow) pair of a grid over all symbols and sessions.

One backtest per pair with the backtest's reference conventions (decision 0006), so a pair's figures are those
of `pipeline_job` run with these settings, and of vectorbt's `Portfolio.from_signals` configured as in
`trading_dagster_tests/reference/vectorbt_reference.py`, to float rounding (tests: 1e-6 relative).

Conventions the kernel supports (and the only ones)
---------------------------------------------------
* Signals: the `sma_cross` strategy (`domain/strategies.py` `_sma_cross`). SMA n = TA-Lib's running sum over
  the symbol's own bars (a gap is skipped, not a NaN), *anchored* as `indicators.compute_indicators_anchored`
  does (each block of `ANCHOR_BLOCK` calendar sessions restarts from the symbol's first bar on or after
  `WARMUP` sessions before the block), with TA-Lib's order of additions: the kernel's SMA 20/50/200 equal the
  indicators table's bit for bit (tested). `anchored=False` drops the anchoring: TA-Lib over the symbol's
  whole history, the lookback of vectorbt's reference; the two differ only where a sparse symbol (many gaps)
  has fewer than n bars since its block's anchor, where the pipeline has no SMA n (on the full shared file
  that changes the orders of 29 of the 100 default pairs, all with slow >= 120: benchmarks/sweep.py). A buy on D when fast > slow x (1 + band) on D and fast <= slow x (1 + band) on the
  previous *calendar session* (the symbol has no bar there, or an SMA is not defined yet on either day: no
  cross); a sell the mirror with (1 - band); band = `tie_band_pct` / 100.
* Execution: the signal of D fills at D+1's open (D+1 = the next calendar session; a symbol without a bar
  there: the day order expires, nothing happens). Fixed notional per buy; no adding to a held position
  (`add_to_positions = false`); a sell sells everything; a buy when held or a sell when flat does nothing.
  `size_on = "close"`: the quantity is notional / D's close; `"fill"`: notional / the fill price. `shares =
  "whole"`: rounded down to a share (0 shares: no order); `"fractional"`: rounded down to 1e-9 share. Fill
  prices open x (1 +/- slippage_bps / 10^4) unrounded (`round_cents = false`); commission fees_bps / 10^4 of
  the traded value, unrounded. No cash limit (`buying_power = "off"`): cash may go negative.
* Figures per pair, from the equity series = initial cash + cash flows + positions at the close (a symbol
  without a bar keeps its last close), one value per session of the window: total P&L and final value,
  orders (fills), trades (buys: each opens a position), Sharpe, total return and max drawdown exactly as
  `domain/metrics.py` `series_stats` (simple returns v[1:] / v[:-1] - 1, ddof 1, x sqrt(252); None -> NaN),
  Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) x sqrt(252) (vectorbt's, required return 0), traded value
  (buys + sells at their fill prices), turnover = traded value / 2 / mean equity x 252 / returns (one-way,
  per year), exposure = mean over sessions of positions' value / equity (0 where equity <= 0, as the P&L
  asset's exposure).

Refused (`UnsupportedSetting`, naming the setting): a cash limit, the monthly share quota, position / gross /
session / daily-loss caps, a minimum price, stop-loss and take-profit exits, sizing other than fixed notional
(ATR, % of equity), rounding to the cent, adding to positions, short selling, the spread-proxy slippage and
commissions per share / per order / with a minimum or a cap. Each of those makes one symbol's trades depend on
the others' (cash, caps) or on state the kernel does not carry; that is the main planner's job.

Design
------
Every symbol's trades are independent under these conventions, so equity = initial cash + the sum over
symbols of (cash flows + position value). The bars are packed once, symbol-major (`Bars`: each symbol's bars
in session order, contiguous, with their calendar index; no sessions x symbols matrix full of NaN holes, and
no sessions x symbols x pairs tensor). A numba kernel loops over chunks of symbols in parallel; for one
symbol it computes each distinct SMA period once (a few KB, in cache), then runs every pair's state machine
over the symbol's bars and adds cash flows and position values into per-chunk (pairs x sessions)
accumulators, summed in a fixed chunk order (deterministic for any thread count). Memory: the packed bars
(32 bytes a bar) plus 2 x chunks x pairs x sessions floats. The kernels live in `research/kernels.py`,
imported by the functions that call them: numba is loaded when a sweep runs, not with this module.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from trading_dagster.domain.indicators import ANCHOR_BLOCK, WARMUP
from trading_dagster.domain.metrics import series_stats

PERIODS_PER_YEAR = 252
DEFAULT_FAST: tuple[int, ...] = tuple(range(5, 55, 5))
DEFAULT_SLOW: tuple[int, ...] = tuple(range(60, 260, 20))
N_CHUNKS = 8
"""Symbol chunks of the kernel (each with its own accumulators): fixed, so results do not depend on threads."""

_FIXED: Mapping[str, Any] = {
    "buying_power": "off",
    "monthly_share_limit": None,
    "max_position_pct_equity": None,
    "max_gross_exposure_pct_equity": None,
    "max_orders_per_session": None,
    "max_notional_per_session": None,
    "max_daily_loss_pct_equity": None,
    "max_daily_loss_usd": None,
    "min_price": None,
    "stop_loss_pct": None,
    "stop_loss_atr": None,
    "take_profit_pct": None,
    "take_profit_atr": None,
    "sizing": "fixed_notional",
    "round_cents": False,
    "add_to_positions": False,
    "long_only": True,
    "slippage_spread_fraction": 0,
    "commission_per_share": 0,
    "commission_per_order": 0,
    "commission_minimum": 0,
    "commission_maximum_pct": None,
}
"""Backtest settings the kernel takes only at these values (0 counts as None for an off-able limit)."""

STATS_SCHEMA: dict[str, pl.DataType] = {
    "fast": pl.Int64(),
    "slow": pl.Int64(),
    "total_pnl": pl.Float64(),
    "final_value": pl.Float64(),
    "total_return": pl.Float64(),
    "orders": pl.Int64(),
    "trades": pl.Int64(),
    "sharpe": pl.Float64(),
    "sortino": pl.Float64(),
    "max_drawdown": pl.Float64(),
    "traded_value": pl.Float64(),
    "turnover": pl.Float64(),
    "exposure": pl.Float64(),
}


class UnsupportedSetting(ValueError):
    """A backtest setting the sweep kernel cannot honour (path-dependent across symbols: the planner's job)."""


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise `UnsupportedSetting` naming the first setting that is unknown or not at its supported value."""
    for name, value in settings.items():
        if name not in _FIXED:
            raise UnsupportedSetting(
                f"setting {name!r} is unknown to the sweep kernel (it takes notional, initial_cash, size_on, "
                f"shares, fees_bps, slippage_bps, tie_band_pct, and {', '.join(_FIXED)} at fixed values)"
            )
        wanted = _FIXED[name]
        if wanted is None or (not isinstance(wanted, bool | str) and wanted == 0):  # off: None or 0
            ok = value is None or (not isinstance(value, bool | str) and value == 0)
        else:  # a flag or a choice: exactly that value, of that type
            ok = isinstance(value, type(wanted)) and value == wanted
        if not ok:
            raise UnsupportedSetting(
                f"the sweep kernel does not support {name}={value!r} (only {wanted!r}): it makes one symbol's trades "
                "depend on the others' or on state the kernel does not carry; run the backtest (plan_orders) for it"
            )


def settings_from_models(risk: Any, slippage: Any, commission: Any) -> dict[str, Any]:
    """The sweep's keyword arguments from a `RiskConfig`, `SlippageModel` and `CommissionModel` (the backtest's
    configured models), every setting the kernel fixes included, so `sweep_sma_cross(..., **settings)` refuses
    whatever it cannot honour. Amounts become floats."""
    if slippage.round_cents != commission.round_cents:
        raise UnsupportedSetting("round_cents differs between slippage and commission")
    settings: dict[str, Any] = {
        name: getattr(risk, name) for name in _FIXED if hasattr(risk, name) and name != "round_cents"
    }
    settings |= {
        "round_cents": slippage.round_cents,
        "slippage_spread_fraction": slippage.spread_fraction,
        "commission_per_share": commission.per_share,
        "commission_per_order": commission.per_order,
        "commission_minimum": commission.minimum,
        "commission_maximum_pct": commission.maximum_pct,
        "notional": float(risk.notional),
        "initial_cash": float(risk.initial_cash),
        "size_on": risk.size_on,
        "shares": risk.shares,
        "fees_bps": float(commission.bps),
        "slippage_bps": float(slippage.bps),
    }
    return settings


def sma_grid(fast: Iterable[int] = DEFAULT_FAST, slow: Iterable[int] = DEFAULT_SLOW) -> list[tuple[int, int]]:
    """Every (fast, slow) with fast < slow, fast-major (the default: 10 x 10 = 100 pairs)."""
    slow = list(slow)
    return [(int(f), int(s)) for f in fast for s in slow if 0 < f < s]


@dataclass(frozen=True)
class Bars:
    """A cleaned-prices frame packed for the kernel: each symbol's bars contiguous, in session order.

    Symbol j's bars are positions [offsets[j], offsets[j+1]); `cal` is a bar's index in the calendar (for the
    anchoring), `row` its index in the window `sessions` (negative before the window: warm-up bars for the
    SMAs only). Bars after the window's last session are not kept (no look-ahead by construction).
    """

    sessions: list[dt.date]
    symbols: list[str]
    offsets: np.ndarray  # int64, symbols + 1
    cal: np.ndarray  # int64
    row: np.ndarray  # int64
    open: np.ndarray  # float64
    close: np.ndarray  # float64


def pack_bars(
    cleaned: pl.DataFrame,
    calendar: Sequence[dt.date],
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> Bars:
    """Pack `cleaned` (session, symbol, open, close, ...) for the window [start, end] of the exchange
    `calendar` (the full ordered session list the pipeline anchors on: `nyse_calendar().sessions`). Default
    window: the first to the last bar. Bars before `start` are kept for the SMAs' warm-up."""
    missing = [c for c in ("session", "symbol", "open", "close") if c not in cleaned.columns]
    if missing:
        raise ValueError(f"cleaned prices lack columns {missing}")
    if cleaned.height == 0:
        raise ValueError("no bars")
    if cleaned.select(pl.sum_horizontal(pl.col("session", "symbol", "open", "close").null_count())).item():
        raise ValueError("cleaned prices hold nulls")
    start = start if start is not None else cleaned["session"].min()
    end = end if end is not None else cleaned["session"].max()
    lo, hi = bisect.bisect_left(calendar, start), bisect.bisect_right(calendar, end)
    sessions = list(calendar[lo:hi])
    if not sessions:
        raise ValueError(f"no calendar session in [{start}, {end}]")
    # integer keys only (no string sort): symbol code (lexical) << 32 | epoch day, sorted -> symbol-major
    symbol = cleaned["symbol"].cast(pl.Utf8)
    symbols = symbol.unique().sort().to_list()
    codes = symbol.cast(pl.Enum(symbols)).to_physical().to_numpy().astype(np.int64)
    days = cleaned["session"].cast(pl.Date).to_physical().to_numpy().astype(np.int64)
    last_day = (np.datetime64(sessions[-1], "D") - np.datetime64("1970-01-01", "D")).astype(np.int64)
    kept = np.flatnonzero(days <= last_day)  # bars after the window: never read (no look-ahead)
    key = (codes[kept] << 32) | days[kept]
    order = kept[np.argsort(key, kind="stable")]
    key.sort()
    if key.size > 1 and np.any(key[1:] == key[:-1]):
        raise ValueError("cleaned prices are not unique on (symbol, session)")
    calendar_days = np.asarray(calendar, dtype="datetime64[D]").astype(np.int64)
    bar_days = days[order]
    cal = np.searchsorted(calendar_days, bar_days)
    if cal.size and (
        cal.max() >= calendar_days.size
        or np.any(calendar_days[np.minimum(cal, calendar_days.size - 1)] != bar_days)
    ):
        raise ValueError("cleaned prices hold a bar on a date outside the calendar")
    offsets = np.searchsorted(codes[order], np.arange(len(symbols) + 1)).astype(np.int64)
    return Bars(
        sessions=sessions,
        symbols=symbols,
        offsets=offsets,
        cal=cal.astype(np.int64),
        row=(cal - lo).astype(np.int64),
        open=cleaned["open"].cast(pl.Float64).to_numpy()[order],
        close=cleaned["close"].cast(pl.Float64).to_numpy()[order],
    )


def _anchoring(anchored: bool) -> tuple[int, int]:
    """(block, warmup) of the SMA: the pipeline's, or one block from each symbol's first bar (unbounded)."""
    return (ANCHOR_BLOCK, WARMUP) if anchored else (1 << 40, 0)


def anchored_sma(bars: Bars, period: int, anchored: bool = True) -> np.ndarray:
    """The kernel's SMA `period` of every packed bar (NaN before it is defined), for checking against the
    indicators table (`anchored`) or TA-Lib over each symbol's whole history (not)."""
    from trading_dagster.research.kernels import _sma_anchored  # numba: imported when a sweep runs

    block, warmup = _anchoring(anchored)
    out = np.full(bars.close.size, np.nan)
    for j in range(len(bars.symbols)):
        a, b = int(bars.offsets[j]), int(bars.offsets[j + 1])
        _sma_anchored(bars.close[a:b], bars.cal[a:b], int(period), block, warmup, out[a:b])
    return out


@dataclass(frozen=True)
class SweepResult:
    """`stats`: one row per pair (`STATS_SCHEMA`), in grid order; `equity`: pairs x sessions (float64);
    `positions_value`: the same for the value of the positions at the close."""

    sessions: list[dt.date]
    pairs: list[tuple[int, int]]
    stats: pl.DataFrame
    equity: np.ndarray
    positions_value: np.ndarray


def _sortino(v: np.ndarray) -> float:
    if v.size < 3 or v[0] <= 0:
        return math.nan
    r = v[1:] / v[:-1] - 1
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(np.mean(r)) / downside * math.sqrt(PERIODS_PER_YEAR) if downside > 0 else math.nan


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def sweep_bars(
    bars: Bars,
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    notional: float = 10_000,
    initial_cash: float = 100_000,
    size_on: str = "close",
    shares: str = "whole",
    fees_bps: float = 0,
    slippage_bps: float = 0,
    tie_band_pct: float = 0,
    anchored: bool = True,
    **settings: Any,
) -> SweepResult:
    """The sweep on packed bars (`pack_bars`); see `sweep_sma_cross`."""
    from trading_dagster.research.kernels import _kernel  # numba: imported when a sweep runs

    check_settings(settings)
    if size_on not in ("close", "fill"):
        raise UnsupportedSetting(f"size_on must be 'close' or 'fill', got {size_on!r}")
    if shares not in ("whole", "fractional"):
        raise UnsupportedSetting(f"shares must be 'whole' or 'fractional', got {shares!r}")
    if not notional > 0:
        raise ValueError(f"notional must be > 0, got {notional}")
    pairs = sma_grid() if pairs is None else [(int(f), int(s)) for f, s in pairs]
    bad = [p for p in pairs if not 0 < p[0] < p[1]]
    if not pairs or bad:
        raise ValueError(f"need pairs with 0 < fast < slow, got {bad or 'none'}")
    periods = sorted({n for pair in pairs for n in pair})
    index = {n: i for i, n in enumerate(periods)}
    band = float(tie_band_pct) / 100
    n_rows = len(bars.sessions)
    block, warmup = _anchoring(anchored)
    cash, value, orders, buys, traded = _kernel(
        bars.offsets,
        bars.cal,
        bars.row,
        bars.open,
        bars.close,
        np.asarray(periods, dtype=np.int64),
        np.asarray([index[f] for f, _ in pairs], dtype=np.int64),
        np.asarray([index[s] for _, s in pairs], dtype=np.int64),
        n_rows,
        block,
        warmup,
        1.0 + band,
        1.0 - band,
        float(notional),
        size_on == "fill",
        shares == "fractional",
        float(fees_bps) / 10_000,
        float(slippage_bps) / 10_000,
        N_CHUNKS,
    )
    equity = float(initial_cash) + np.cumsum(cash, axis=1) + value
    rows = []
    for p, (fast, slow) in enumerate(pairs):
        v = equity[p]
        stats = series_stats(bars.sessions, v.tolist(), PERIODS_PER_YEAR)
        mean_equity = float(np.mean(v))
        returns = max(n_rows - 1, 1)
        turnover = traded[p] / 2 / mean_equity * PERIODS_PER_YEAR / returns if mean_equity > 0 else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            exposure = float(np.mean(np.where(v > 0, value[p] / v, 0.0)))
        rows.append(
            (
                fast,
                slow,
                float(v[-1]) - float(initial_cash),
                float(v[-1]),
                _nan(stats["cumulative_return"]),
                int(orders[p]),
                int(buys[p]),
                _nan(stats["sharpe"]),
                _sortino(v),
                _nan(stats["max_drawdown"]),
                float(traded[p]),
                turnover,
                exposure,
            )
        )
    frame = pl.DataFrame(rows, schema=STATS_SCHEMA, orient="row")
    return SweepResult(list(bars.sessions), pairs, frame, equity, value)


def sweep_sma_cross(
    cleaned: pl.DataFrame,
    calendar: Sequence[dt.date],
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    **settings: Any,
) -> SweepResult:
    """Backtest the SMA cross for every (fast, slow) of `pairs` (default `sma_grid()`: 100 pairs) on `cleaned`
    over the sessions of `calendar` in [start, end] (default: first to last bar).

    `settings`: notional (USD per buy, 10,000), initial_cash (100,000), size_on ("close" | "fill"), shares
    ("whole" | "fractional"), fees_bps, slippage_bps, tie_band_pct; any backtest setting of the module
    docstring's refused list is accepted only at its reference value and otherwise raises `UnsupportedSetting`.
    `anchored` (default True): the SMAs of the indicators table, anchored per block (a symbol with fewer than
    n bars since its block's anchor, e.g. a sparse symbol with many gaps, has no SMA n there, as in the
    pipeline); False: TA-Lib over each symbol's whole history, the lookback of vectorbt's reference
    (`to_wide`), which differs from the pipeline only for such sparse symbols and long periods.
    """
    return sweep_bars(pack_bars(cleaned, calendar, start, end), pairs, **settings)
