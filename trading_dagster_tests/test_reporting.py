"""The printed report and its plot, with and without a benchmark in the data."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.domain.metrics import performance_summary
from trading_dagster.reporting import format_report, write_plot


def _equity(benchmark: list[float | None]) -> pl.DataFrame:
    sessions = [dt.date(2017, 6, 1) + dt.timedelta(days=i) for i in range(len(benchmark))]
    equity = [100_000.0 + 10 * i for i in range(len(benchmark))]
    return pl.DataFrame(
        {"session": sessions, "equity": equity, "benchmark_close": benchmark},
        schema={"session": pl.Date, "equity": pl.Float64, "benchmark_close": pl.Float64},
    )


def _facts(plot=None) -> dict:
    return {
        "symbols": 2, "orders_approved": 1, "orders_denied": 0, "fills": 1, "initial_cash": 100_000.0,
        "benchmark": "SPY", "checks_passed": 1, "checks_failed": 0, "warnings": [], "seconds": 1.0, "plot": plot,
    }


def test_a_benchmark_missing_from_the_data_is_a_warning_not_a_silent_na(tmp_path):
    equity = _equity([None, None, None])
    report = format_report(performance_summary(equity), _facts())
    line = next(x for x in report.splitlines() if x.startswith("benchmark"))
    assert "WARNING: no close of SPY" in line and "n/a" not in line
    assert write_plot(equity, "SPY", tmp_path / "curve.png").stat().st_size > 0  # the plot still draws


def test_a_benchmark_in_the_data_is_compared(tmp_path):
    report = format_report(performance_summary(_equity([200.0, 202.0, 204.0])), _facts())
    line = next(x for x in report.splitlines() if x.startswith("benchmark"))
    assert "+2.00% cumulative" in line and "WARNING" not in line
