"""The ML-refined strategy against its base, on the same sessions (issue 11, decision 0007).

For a base strategy (an `sma_cross`, `rsi` or `dip_52w` spec) and the signal model's probabilities, each window
is backtested twice with the sweep kernels' reference conventions (`threshold_sweep.backtest_events`): the
base's buys and sells as they are ("unfiltered"), and with only the buys whose probability is at least
`min_probability` ("filtered": what an `ml_filter` strategy trades; sells pass, as `strategies.refine_signals`
does). Both start flat at the window's first session. Pure: no Dagster here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from trading_dagster.domain.strategies import StrategySpec, generate_signals
from trading_dagster.research.sweep import Bars, pack_bars
from trading_dagster.research.threshold_sweep import align_indicators, backtest_events

VARIANTS = ("unfiltered", "filtered")
COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    "window": pl.Utf8(),
    "first_session": pl.Date(),
    "last_session": pl.Date(),
    "variant": pl.Utf8(),
    "buy_signals": pl.Int64(),
    "orders": pl.Int64(),
    "trades": pl.Int64(),
    "total_pnl": pl.Float64(),
    "total_return": pl.Float64(),
    "sharpe": pl.Float64(),
    "max_drawdown": pl.Float64(),
    "exposure": pl.Float64(),
}


def _marks(bars: Bars, rows: pl.DataFrame, calendar: Sequence[dt.date]) -> np.ndarray:
    """True at the packed bars of `rows` (symbol, session)."""
    flagged = rows.select("symbol", "session").with_columns(pl.lit(1.0).alias("_flag"))
    return ~np.isnan(align_indicators(bars, flagged, calendar, ["_flag"])["_flag"])


def compare_filter(
    cleaned: pl.DataFrame,
    indicators: pl.DataFrame,
    probabilities: pl.DataFrame,
    calendar: Sequence[dt.date],
    base: StrategySpec,
    min_probability: float,
    windows: Sequence[tuple[str, dt.date, dt.date]],
    **settings: Any,
) -> pl.DataFrame:
    """Two rows per window (`COMPARISON_SCHEMA`): the base strategy unfiltered and filtered by the model.

    `cleaned`: session, symbol, open, close (the backtest's bars); `indicators`: the table's rows the base
    reads (from the session before the first window on); `probabilities`: symbol, session, probability (the
    model of each session's period; a buy without one is dropped by the filter); `windows`: (label, first
    session, last session). `settings`: the kernel's (notional, initial_cash, size_on, shares, fees_bps,
    slippage_bps)."""
    if base.kind == "ml_filter":
        raise ValueError(f"the base must be a signal strategy, not an ml_filter ({base.name!r})")
    if not 0 <= min_probability <= 1:
        raise ValueError(f"min_probability must be in [0, 1], got {min_probability}")
    spec = dataclasses.replace(base, trades=True)
    backed = probabilities.filter(pl.col("probability") >= min_probability).select("symbol", "session")
    rows: list[dict[str, Any]] = []
    for label, first, last in windows:
        bars = pack_bars(cleaned, calendar, first, last)
        signals = generate_signals(indicators, [spec], first, last, calendar)
        buys = signals.filter(pl.col("side") == "buy")
        kept = buys.join(backed, on=["symbol", "session"], how="semi")
        entries = np.stack([_marks(bars, buys, calendar), _marks(bars, kept, calendar)])
        exits = _marks(bars, signals.filter(pl.col("side") == "sell"), calendar)
        result = backtest_events(
            bars, entries, exits, params=[(v,) for v in VARIANTS], param_names=("variant",), **settings
        )
        for count, stats in zip((buys.height, kept.height), result.stats.iter_rows(named=True), strict=True):
            rows.append(
                {
                    "window": label,
                    "first_session": bars.sessions[0],
                    "last_session": bars.sessions[-1],
                    "buy_signals": count,
                    **{k: stats[k] for k in COMPARISON_SCHEMA if k in stats},
                }
            )
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA) if rows else pl.DataFrame(schema=COMPARISON_SCHEMA)
