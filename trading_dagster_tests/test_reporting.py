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


def _curve(n: int = 90) -> pl.DataFrame:
    sessions = [dt.date(2017, 1, 2) + dt.timedelta(days=i) for i in range(n)]
    equity = [100_000.0 * (1 + 0.001 * i) * (0.97 if 30 <= i < 40 else 1.0) for i in range(n)]
    r = [None] + [equity[i] / equity[i - 1] - 1 for i in range(1, n)]
    return pl.DataFrame(
        {"session": sessions, "equity": equity, "daily_return": r, "benchmark_close": [200.0 + i for i in range(n)]},
        schema={"session": pl.Date, "equity": pl.Float64, "daily_return": pl.Float64, "benchmark_close": pl.Float64},
    )


def test_the_performance_plots_and_the_tear_sheet_are_drawn(tmp_path):
    from trading_dagster.domain.metrics import monthly_returns
    from trading_dagster.reporting import performance_plots, performance_plots_markdown
    from trading_dagster.tearsheet import write_tearsheet

    equity = _curve()
    months = monthly_returns(equity)
    plots = performance_plots(equity, months, "SPY")
    assert list(plots) == ["Equity against the benchmark", "Drawdown", "Monthly returns", "Daily P&L", "Rolling Sharpe"]
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    assert performance_plots_markdown(equity, months, "SPY").count("](data:image/png;base64,") == 5
    sheet = write_tearsheet(equity, performance_summary(equity), months, "SPY", tmp_path / "reports" / "tearsheet.html")
    text = sheet.read_text()
    assert text.count("<img") == 5 and "Cumulative return" in text and "buy &amp; hold SPY" in text


def test_daily_pnl_rolling_sharpe_and_the_monthly_grid():
    from trading_dagster.domain.metrics import monthly_returns
    from trading_dagster.reporting import daily_pnl, monthly_grid, rolling_sharpe

    equity = _curve()
    pnl = daily_pnl(equity)
    assert pnl["pnl"][0] == 0.0 and abs(pnl["pnl"].sum() - (equity["equity"][-1] - equity["equity"][0])) < 1e-6
    assert rolling_sharpe(equity, 20)["sharpe"].drop_nulls().len() == len(equity) - 20
    years, grid = monthly_grid(monthly_returns(equity))
    assert years == [2017] and grid.shape == (1, 12) and abs(grid[0, 0] - 100 * (equity["equity"][29] / 100_000 - 1)) < 1e-9


def test_figures_are_formatted_for_a_person():
    from trading_dagster.assets._common import money, percent
    from trading_dagster.assets.trading import performance_metadata

    assert (money(1234567.891), money(-12.3), money(None)) == ("$1,234,567.89", "-$12.30", "n/a")
    assert (percent(0.23484910000000014), percent(0.0236, signed=False)) == ("+23.48%", "2.36%")
    meta = performance_metadata(performance_summary(_curve()))
    assert meta["cumulative_return"].endswith("%") and meta["final_equity"].startswith("$")
    assert isinstance(meta["cumulative_return_raw"].value, float)
