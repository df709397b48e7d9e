"""The printed report and its plot, with and without a benchmark in the data; the portal's tables and plots."""

from __future__ import annotations

import base64
import datetime as dt

import polars as pl
import pytest

from trading_dagster.domain.metrics import performance_summary
from trading_dagster.reporting import (
    format_report,
    setting_text,
    settings_rows,
    strategy_equity_frame,
    strategy_equity_markdown,
    strategy_rows,
    strategy_summary,
    upcoming_orders,
    write_plot,
)


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


# ------------------------------------------------------------------------------------------------ the portal

D = dt.date(2017, 11, 10)


def _signals() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [D] * 4,
            "symbol": ["MSFT", "AAPL", "KO", "NFLX"],
            "strategy": ["sma_20_50_cross", "dip_10pct_52w_high", "sma_20_50_cross", "rsi_30_70"],
            "side": ["buy", "buy", "buy", "sell"],
            "strength": [1.0, 0.5, 1.0, 0.1],
            "reason": ["sma_20 crossed above sma_50", "12% below the 52-week high", "sma_20 crossed", "rsi above 70"],
        }
    )


def _orders() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [D] * 3,
            "symbol": ["MSFT", "AAPL", "NFLX"],
            "strategy": ["sma_20_50_cross", "dip_10pct_52w_high", "rsi_30_70"],
            "side": ["buy", "buy", "sell"],
            "requested_qty": [12, 6, 3],
            "qty": [12, 4, 0],
            "ref_price": [83.87, 174.67, 195.0],
            "status": ["approved", "approved", "denied"],
            "reason_code": [None, "QTY_OVER_MONTHLY_LIMIT", "SHORT_NOT_ALLOWED"],
            "client_order_id": ["a", "b", "c"],
        }
    )


def test_upcoming_orders_list_what_goes_out_first_then_why_the_rest_does_not():
    out = upcoming_orders(_signals(), _orders())
    assert out.columns == ["symbol", "side", "qty", "price", "strategy", "status", "reason"]
    assert out.rows() == [
        ("AAPL", "buy", 4, 174.67, "dip_10pct_52w_high", "approved, clipped: QTY_OVER_MONTHLY_LIMIT",
         "12% below the 52-week high"),
        ("MSFT", "buy", 12, 83.87, "sma_20_50_cross", "approved", "sma_20 crossed above sma_50"),
        ("NFLX", "sell", 0, 195.0, "rsi_30_70", "denied: SHORT_NOT_ALLOWED", "rsi above 70"),
        ("KO", "buy", 0, None, "sma_20_50_cross", "no order", "sma_20 crossed"),
    ]


def test_upcoming_orders_of_a_quiet_session_is_an_empty_table():
    out = upcoming_orders(_signals().clear(), _orders().clear())
    assert out.height == 0 and out.columns[:3] == ["symbol", "side", "qty"]


def _daily_pnl() -> pl.DataFrame:
    days = [dt.date(2017, 11, 8), dt.date(2017, 11, 9), dt.date(2017, 11, 10)]
    rows = []
    for strategy, pnls in (("rsi", [10.0, -5.0, 2.5]), ("sma", [0.0, 20.0, -30.0])):
        rows += [
            {"session": d, "strategy": strategy, "pnl": p, "realized_pnl": p / 2, "fills": 1}
            for d, p in zip(days, pnls, strict=True)
        ]
    rows += [
        {"session": d, "strategy": "total", "pnl": a + b, "realized_pnl": (a + b) / 2, "fills": 2}
        for d, a, b in zip(days, [10.0, -5.0, 2.5], [0.0, 20.0, -30.0], strict=True)
    ]
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=3)  # order must not matter


def test_strategy_equity_is_each_strategys_cumulative_pnl():
    curves = strategy_equity_frame(_daily_pnl())
    got = {s: curves.filter(pl.col("strategy") == s)["cumulative_pnl"].to_list() for s in ("rsi", "sma", "total")}
    assert got == {"rsi": [10.0, 5.0, 7.5], "sma": [0.0, 20.0, -10.0], "total": [10.0, 25.0, -2.5]}


def test_strategy_summary_ranks_strategies_by_pnl_and_puts_the_total_last():
    summary = strategy_summary(_daily_pnl())
    assert summary["strategy"].to_list() == ["rsi", "sma", "total"]
    rsi = summary.row(0, named=True)
    assert rsi["pnl"] == 7.5 and rsi["realized_pnl"] == 3.75 and rsi["unrealized_pnl"] == 3.75
    assert rsi["best_day"] == 10.0 and rsi["worst_day"] == -5.0 and rsi["fills"] == 3


def test_strategy_equity_plot_is_a_png_in_markdown():
    md = strategy_equity_markdown(_daily_pnl())
    assert md.startswith("**Cumulative P&L per strategy**")
    png = base64.b64decode(md.split("base64,", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert "marts_job" in strategy_equity_markdown(_daily_pnl().clear())


def test_settings_read_as_a_person_reads_them():
    assert [setting_text(v) for v in (None, True, False, 10.0, 0.005, 4, "day")] == [
        "off", "yes", "no", "10", "0.005", "4", "day"
    ]
    assert settings_rows({"a": None, "b": 1.5}, ["b", "a"]) == [("b", "1.5"), ("a", "off")]
    with pytest.raises(KeyError, match="settings not found: c"):
        settings_rows({"a": 1}, ["a", "c"])
    assert strategy_rows([{"name": "x", "kind": "sma_cross", "params": {"fast": 20.0, "slow": 50.0}}]) == [
        ("x", "sma_cross", "fast=20, slow=50", "auto", "daily")
    ]


def test_strategy_summary_is_in_cents():
    daily = pl.DataFrame(
        {"session": [D, D], "strategy": ["rsi", "total"], "pnl": [-722.3340000000001] * 2,
         "realized_pnl": [0.004, 0.004], "fills": [1, 1]}
    )
    row = strategy_summary(daily).row(0, named=True)
    assert (row["pnl"], row["realized_pnl"], row["unrealized_pnl"]) == (-722.33, 0.0, -722.34)


def _bar_reference_png(equity: pl.DataFrame) -> bytes:
    """The daily P&L plot as it was drawn before: one `ax.bar` patch per session."""
    import numpy as np

    from trading_dagster.reporting import _png, _pyplot, daily_pnl

    plt = _pyplot()
    pnl = daily_pnl(equity)
    values = pnl["pnl"].to_numpy()
    fig, ax = plt.subplots(figsize=(9, 2.6))
    colors = np.where(values >= 0, "#2ca02c", "#d62728")
    ax.bar(pnl["session"].to_list(), values, color=colors, width=1.0)
    ax.set_title("Daily P&L")
    ax.yaxis.set_major_formatter(lambda v, _: f"${v:,.0f}")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def _walk(n: int, seed: int, drift: float = 0.0) -> pl.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    sessions = [dt.date(2009, 1, 2) + dt.timedelta(days=i + i // 5 * 2) for i in range(n)]  # weekdays
    equity = 100_000 * np.cumprod(1 + rng.normal(drift, 0.01, n))
    frame = pl.DataFrame({"session": sessions, "equity": equity, "benchmark_close": 100 + rng.random(n)})
    return frame.with_columns(pl.col("equity").pct_change().alias("daily_return"))


@pytest.mark.parametrize(
    "equity",
    [_walk(700, 1), _walk(60, 2, drift=-0.02), _walk(60, 3, drift=0.02), _walk(1, 4), _walk(2, 5),
     _walk(30, 6).with_columns(pl.lit(100_000.0).alias("equity"))],  # every bar of height 0
    ids=["700 sessions", "all down", "all up", "one", "two", "flat"],
)
def test_the_daily_pnl_bars_are_the_png_bar_draws(equity):
    from trading_dagster.reporting import daily_pnl_png

    assert daily_pnl_png(equity) == _bar_reference_png(equity)


def test_the_plots_of_equal_frames_are_drawn_once(monkeypatch):
    from trading_dagster import reporting
    from trading_dagster.domain.metrics import monthly_returns

    drawn = []
    for name in ("equity_vs_benchmark_png", "drawdown_png", "monthly_heatmap_png", "daily_pnl_png", "rolling_sharpe_png"):
        draw = getattr(reporting, name)
        monkeypatch.setattr(reporting, name, lambda *a, _draw=draw, _name=name: drawn.append(_name) or _draw(*a))
    equity = _walk(80, 7)
    months = monthly_returns(equity)
    first = reporting.performance_plots(equity, months, "SPY")
    assert len(drawn) == 5
    again = reporting.performance_plots(equity.clone(), months.clone(), "SPY")  # equal frames, other objects
    assert again == first and len(drawn) == 5
    assert reporting.performance_plots_markdown(equity, months, "SPY").count("](data:image/png;base64,") == 5
    assert len(drawn) == 5
    reporting.performance_plots(equity, months, "QQQ")  # the benchmark's name is in a legend
    assert len(drawn) == 10
    changed = equity.with_columns(pl.col("equity") + 1.0)
    reporting.performance_plots(changed, months, "QQQ")
    assert len(drawn) == 15
    changed.replace_column(1, pl.Series("equity", changed["equity"] * 2))  # the same frame, changed in place
    reporting.performance_plots(changed, months, "QQQ")
    assert len(drawn) == 20


def test_a_style_another_library_set_does_not_change_the_plots():
    """vectorbt's import applies seaborn's style to every later plot in the process (the test suite imports
    it in the reference tests): the reports draw in Matplotlib's default style whatever was imported."""
    import matplotlib

    from trading_dagster.reporting import daily_pnl_png

    equity = _walk(60, 2, drift=-0.02)
    clean = daily_pnl_png(equity)
    matplotlib.rcParams.update({"patch.force_edgecolor": True, "patch.edgecolor": "w", "axes.grid": True,
                                "font.size": 13.2, "axes.edgecolor": "white"})
    try:
        assert daily_pnl_png(equity) == clean
        assert daily_pnl_png(equity) == _bar_reference_png(equity)
    finally:
        matplotlib.rcdefaults()
