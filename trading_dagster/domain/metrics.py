"""Performance metrics of an equity curve, and of buying and holding the benchmark over the same sessions.

Both series are measured the same way, from the close of the window's first session to the close of its
last (so a strategy that starts in cash and a benchmark bought at the first close are compared on equal
terms). Daily returns are simple close-to-close returns; annualisation uses `periods_per_year` sessions;
the Sharpe ratio assumes a zero risk-free rate and uses the sample standard deviation (ddof=1).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import polars as pl

STAT_KEYS = (
    "cumulative_return",
    "annualized_return",
    "annualized_volatility",
    "sharpe",
    "max_drawdown",
    "max_drawdown_peak",
    "max_drawdown_trough",
)


def series_stats(dates: list[dt.date], values: list[float], periods_per_year: int = 252) -> dict[str, Any]:
    """Return, risk and drawdown of one value series (equity, or a price for buy-and-hold).

    max_drawdown is the worst fall from a running peak as a negative fraction (0.0 if the series never
    falls); its peak is the last high before the trough. Statistics that need more data than given
    (volatility and Sharpe need two returns) are None.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or v[0] <= 0:
        return dict.fromkeys(STAT_KEYS)
    r = v[1:] / v[:-1] - 1
    n = len(r)
    cumulative = float(v[-1] / v[0] - 1)
    annualized = float((1 + cumulative) ** (periods_per_year / n) - 1) if n and cumulative > -1 else None
    std = float(np.std(r, ddof=1)) if n >= 2 else None
    volatility = std * math.sqrt(periods_per_year) if std is not None else None
    sharpe = float(np.mean(r)) / std * math.sqrt(periods_per_year) if std else None
    drawdown = v / np.maximum.accumulate(v) - 1
    trough = int(np.argmin(drawdown))
    if drawdown[trough] < 0:
        peak = trough - int(np.argmax(v[trough::-1]))  # last index of the running max before the trough
        max_dd, peak_date, trough_date = float(drawdown[trough]), dates[peak], dates[trough]
    else:
        max_dd, peak_date, trough_date = 0.0, None, None
    return {
        "cumulative_return": cumulative,
        "annualized_return": annualized,
        "annualized_volatility": volatility,
        "sharpe": sharpe,
        "max_drawdown": max_dd,
        "max_drawdown_peak": peak_date,
        "max_drawdown_trough": trough_date,
    }


def _benchmark(frame: pl.DataFrame) -> pl.DataFrame:
    """Benchmark closes over the window, carried forward over gaps, leading nulls dropped."""
    return frame.select("session", pl.col("benchmark_close").forward_fill()).filter(
        pl.col("benchmark_close").is_not_null()
    )


def performance_summary(equity: pl.DataFrame, periods_per_year: int = 252) -> dict[str, Any]:
    """Summary of an equity frame (docs/design.md `pnl/equity`), flat so it fits asset metadata.

    Keys: start, end, sessions, initial_equity, final_equity, the `STAT_KEYS` for the strategy, and the
    same prefixed `benchmark_` for buying and holding `benchmark_close` from the first session's close
    (plus benchmark_final_equity: the initial equity so invested) and excess_return (strategy minus
    benchmark cumulative return).
    """
    frame = equity.sort("session")
    if frame.height == 0:
        raise ValueError("empty equity frame")
    dates = frame["session"].to_list()
    values = frame["equity"].to_list()
    out: dict[str, Any] = {
        "start": dates[0],
        "end": dates[-1],
        "sessions": frame.height,
        "initial_equity": values[0],
        "final_equity": values[-1],
    }
    out |= series_stats(dates, values, periods_per_year)
    bench = _benchmark(frame)
    bench_stats = series_stats(
        bench["session"].to_list(), bench["benchmark_close"].to_list(), periods_per_year
    )
    out |= {f"benchmark_{k}": v for k, v in bench_stats.items()}
    bench_cum = bench_stats["cumulative_return"]
    out["benchmark_final_equity"] = None if bench_cum is None else values[0] * (1 + bench_cum)
    out["excess_return"] = None if bench_cum is None else out["cumulative_return"] - bench_cum
    return out


def monthly_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """One row per calendar month: `month` (its first day), `return`, `benchmark_return`.

    A month's return runs from the previous month's last close to its own; the first month's from the
    window's first close, so compounding the rows gives the summary's cumulative return.
    """
    frame = equity.sort("session").with_columns(
        pl.col("benchmark_close").forward_fill(),
        pl.col("session").dt.truncate("1mo").alias("month"),
    )
    if frame.height == 0:
        return pl.DataFrame(
            schema={"month": pl.Date(), "return": pl.Float64(), "benchmark_return": pl.Float64()}
        )
    first_equity = frame["equity"][0]
    known = frame["benchmark_close"].drop_nulls()
    first_bench = known[0] if len(known) else None
    ends = frame.group_by("month", maintain_order=True).agg(
        pl.col("equity").last(), pl.col("benchmark_close").last()
    )

    def change(column: str, base: float | None) -> pl.Expr:
        previous = pl.col(column).shift(1).fill_null(pl.lit(base, dtype=pl.Float64))
        return pl.col(column) / previous - 1

    return ends.select(
        "month",
        change("equity", first_equity).alias("return"),
        change("benchmark_close", first_bench).alias("benchmark_return"),
    )
