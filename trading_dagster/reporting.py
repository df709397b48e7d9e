"""What a person looks at: the plots of the performance asset and its tear sheet (equity against the benchmark,
drawdown, monthly returns heatmap, daily P&L, rolling Sharpe), and the short run report printed by
`trading-dagster demo`. Matplotlib only (Agg backend), imported when a plot is drawn."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def equity_plot_png(equity: pl.DataFrame, benchmark: str) -> bytes:
    """Equity against buy-and-hold of the benchmark (scaled to the same start), and the drawdown below."""
    plt = _pyplot()
    eq = equity.sort("session")
    sessions = eq["session"].to_list()
    values = eq["equity"].to_numpy()
    bench = eq["benchmark_close"].fill_null(strategy="forward").to_numpy()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=[3, 1])
    top.plot(sessions, values, label="strategy equity", color="#1f77b4", linewidth=1.2)
    if len(bench) and bench[0] == bench[0]:  # not NaN
        top.plot(sessions, bench / bench[0] * values[0], label=f"buy & hold {benchmark}", color="#888", linewidth=1)
    top.set_ylabel("USD")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    peak = pl.Series(values).cum_max().to_numpy()
    bottom.fill_between(sessions, (values / peak - 1) * 100, 0, color="#d62728", alpha=0.5)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def equity_plot_markdown(equity: pl.DataFrame, benchmark: str) -> str:
    if equity.is_empty():
        return "(no equity rows)"
    data = base64.b64encode(equity_plot_png(equity, benchmark)).decode()
    return f"![equity curve](data:image/png;base64,{data})"


ROLLING_SHARPE_SESSIONS = 63  # a quarter of sessions
PLOT_DPI = 72


def _pyplot():
    """pyplot on the Agg backend with Matplotlib's default style. A library imported in the same process may
    change the style for everyone: vectorbt's import applies seaborn's (white bar edges, a grey grid, other
    fonts), so the same report would draw differently depending on what else the process had imported."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcdefaults()  # the backend is not a style setting: it stays Agg
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    return buf.getvalue()


def _series(equity: pl.DataFrame) -> tuple[list, np.ndarray, np.ndarray]:
    eq = equity.sort("session")
    sessions = eq["session"].to_list()
    values = eq["equity"].cast(pl.Float64).to_numpy()
    bench = eq["benchmark_close"].cast(pl.Float64).fill_null(strategy="forward").to_numpy()
    return sessions, values, bench


def equity_vs_benchmark_png(equity: pl.DataFrame, benchmark: str) -> bytes:
    """Strategy equity against buy-and-hold of the benchmark from the same starting equity."""
    plt = _pyplot()
    sessions, values, bench = _series(equity)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(sessions, values, label="strategy equity", color="#1f77b4", linewidth=1.2)
    known = ~np.isnan(bench)
    if known.any():
        first = bench[known][0]
        ax.plot(sessions, bench / first * values[0], label=f"buy & hold {benchmark}", color="#888", linewidth=1)
    ax.set_title("Equity against the benchmark")
    ax.set_ylabel("USD")
    ax.yaxis.set_major_formatter(lambda v, _: f"${v:,.0f}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def drawdown_series(values: np.ndarray) -> np.ndarray:
    """Fall from the running peak, as a negative percent."""
    if len(values) == 0:
        return values
    return (values / np.maximum.accumulate(values) - 1) * 100


def drawdown_png(equity: pl.DataFrame) -> bytes:
    plt = _pyplot()
    sessions, values, _ = _series(equity)
    fig, ax = plt.subplots(figsize=(9, 2.2))
    ax.fill_between(sessions, drawdown_series(values), 0, color="#d62728", alpha=0.5)
    ax.set_title("Drawdown from the running peak")
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    return _png(fig)


def daily_pnl(equity: pl.DataFrame) -> pl.DataFrame:
    """(session, pnl): each session's change in equity (the first session's from its daily return)."""
    eq = equity.sort("session")
    r = eq["daily_return"] if "daily_return" in eq.columns else pl.Series([None] * eq.height, dtype=pl.Float64)
    first = eq["equity"][0] - eq["equity"][0] / (1 + r[0]) if eq.height and r[0] is not None else 0.0
    return eq.select("session", pl.col("equity").diff().fill_null(first).alias("pnl"))


def daily_pnl_png(equity: pl.DataFrame) -> bytes:
    """One bar per session, green up and red down. The bars are one collection of rectangles, the ones
    `ax.bar(sessions, values, width=1.0)` makes (centred on the session, from 0), with its autoscaling: the
    same PNG, byte for byte, without a patch object and its transforms per bar (2,485 of them: ~10x)."""
    from matplotlib.collections import PolyCollection

    plt = _pyplot()
    pnl = daily_pnl(equity)
    values = pnl["pnl"].to_numpy()
    fig, ax = plt.subplots(figsize=(9, 2.6))
    colors = np.where(values >= 0, "#2ca02c", "#d62728")
    sessions = pnl["session"].to_list()
    ax.xaxis.update_units(sessions)  # a date axis, as bar() sets it
    x = np.asarray(ax.convert_xunits(sessions), dtype=float)
    left, right, zero = x - 0.5, x + 0.5, np.zeros_like(values)
    corners = [np.column_stack(c) for c in ((left, zero), (left, values), (right, values), (right, zero))]
    bars = PolyCollection(np.stack(corners, axis=1), facecolors=colors, edgecolors="none", closed=True)
    bars.sticky_edges.y.append(0)  # bar(): the y axis starts at 0 without a margin below
    ax.add_collection(bars, autolim=True)
    ax.autoscale_view()
    ax.set_title("Daily P&L")
    ax.yaxis.set_major_formatter(lambda v, _: f"${v:,.0f}")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def rolling_sharpe(equity: pl.DataFrame, window: int = ROLLING_SHARPE_SESSIONS) -> pl.DataFrame:
    """(session, sharpe): annualized Sharpe of the last `window` daily returns (zero risk-free rate)."""
    eq = equity.sort("session")
    r = eq["equity"].pct_change()
    mean = r.rolling_mean(window_size=window)
    std = r.rolling_std(window_size=window)
    sharpe = (mean / std * np.sqrt(252)).fill_nan(None)
    return pl.DataFrame({"session": eq["session"], "sharpe": sharpe})


def rolling_sharpe_png(equity: pl.DataFrame, window: int = ROLLING_SHARPE_SESSIONS) -> bytes:
    plt = _pyplot()
    rs = rolling_sharpe(equity, window)
    fig, ax = plt.subplots(figsize=(9, 2.4))
    ax.plot(rs["session"].to_list(), rs["sharpe"].cast(pl.Float64).fill_null(np.nan).to_numpy(), color="#9467bd")
    ax.axhline(0, color="#555", linewidth=0.8)
    ax.set_title(f"Rolling Sharpe ({window} sessions, annualized)")
    ax.grid(alpha=0.3)
    return _png(fig)


def monthly_grid(months: pl.DataFrame) -> tuple[list[int], np.ndarray]:
    """Years and a years x 12 grid of monthly returns in percent (NaN where a month has no data)."""
    if months.is_empty():
        return [], np.full((0, 12), np.nan)
    years = sorted({m.year for m in months["month"].to_list()})
    grid = np.full((len(years), 12), np.nan)
    for month, ret in months.select("month", "return").iter_rows():
        if ret is not None:
            grid[years.index(month.year), month.month - 1] = 100 * ret
    return years, grid


def monthly_heatmap_png(months: pl.DataFrame) -> bytes:
    plt = _pyplot()
    years, grid = monthly_grid(months)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.32 * max(len(years), 1)))
    if years:
        bound = max(np.nanmax(np.abs(grid)), 0.01) if not np.isnan(grid).all() else 1.0
        ax.imshow(grid, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
        for i in range(len(years)):
            for j in range(12):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=7)
        ax.set_yticks(range(len(years)), [str(y) for y in years])
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_title("Monthly returns (%)")
    return _png(fig)


_LAST_PLOTS: list[tuple[pl.DataFrame, pl.DataFrame, str, dict[str, bytes]]] = []
"""The last frames drawn (copies) and their plots: the performance asset draws the same plots for its tear sheet
(tearsheet.write_tearsheet) and its metadata (performance_plots_markdown) in one step."""


def performance_plots(equity: pl.DataFrame, months: pl.DataFrame, benchmark: str) -> dict[str, bytes]:
    """{title: PNG} of the plots a trader looks at, in reading order. Frames equal to the last call's (value
    for value) get the last call's plots, not drawn again."""
    if equity.is_empty():
        return {}
    for last_equity, last_months, last_benchmark, plots in _LAST_PLOTS:
        if last_benchmark == benchmark and last_equity.equals(equity) and last_months.equals(months):
            return dict(plots)
    plots = {
        "Equity against the benchmark": equity_vs_benchmark_png(equity, benchmark),
        "Drawdown": drawdown_png(equity),
        "Monthly returns": monthly_heatmap_png(months),
        "Daily P&L": daily_pnl_png(equity),
        "Rolling Sharpe": rolling_sharpe_png(equity),
    }
    _LAST_PLOTS[:] = [(equity.clone(), months.clone(), benchmark, plots)]
    return dict(plots)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def performance_plots_markdown(equity: pl.DataFrame, months: pl.DataFrame, benchmark: str) -> str:
    plots = performance_plots(equity, months, benchmark)
    if not plots:
        return "(no equity rows)"
    return "\n\n".join(f"**{title}**\n\n![{title}]({data_uri(png)})" for title, png in plots.items())


def format_report(summary: dict[str, Any], facts: dict[str, Any]) -> str:
    """The report printed at the end of the main job."""

    def pct(x: Any) -> str:
        return "n/a" if x is None else f"{100 * x:+.2f}%"

    def num(x: Any) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    lines = [
        "",
        "trading-dagster: backtest report",
        "=" * 64,
        f"period            {summary['start']} .. {summary['end']} ({summary['sessions']} sessions)",
        f"symbols           {facts['symbols']}",
        f"orders            {facts['orders_approved']:,} approved, {facts['orders_denied']:,} denied",
        f"trades (fills)    {facts['fills']:,}",
        f"final equity      ${summary['final_equity']:,.2f} (from ${facts['initial_cash']:,.2f})",
        f"cumulative return {pct(summary['cumulative_return'])}   annualized {pct(summary['annualized_return'])}",
        f"Sharpe (ann.)     {num(summary['sharpe'])}",
        f"max drawdown      {pct(summary['max_drawdown'])}",
        benchmark_line(summary, facts["benchmark"], pct, num),
        f"checks            {facts['checks_passed']} passed, {facts['checks_failed']} failed, "
        f"{len(facts.get('warnings', []))} warning(s)",
        *(f"  warning         {w[:110]}" for w in facts.get("warnings", [])),
        f"wall time         {facts['seconds']:.1f} s",
        "=" * 64,
    ]
    if facts.get("plot"):
        lines.append(f"equity curve plot: {facts['plot']}")
    lines += [
        "Open the Dagster UI on this history (runs, lineage, checks, plots):",
        "    uv run trading-dagster ui        then browse http://127.0.0.1:3000",
        "",
    ]
    return "\n".join(lines)


def benchmark_line(summary: dict[str, Any], benchmark: str, pct: Any, num: Any) -> str:
    """The report's benchmark line, or a warning that says why there is no comparison (a benchmark symbol
    the data does not hold for the period would otherwise print a silent "n/a")."""
    if summary.get("benchmark_cumulative_return") is None:
        return (
            f"benchmark {benchmark:<7} WARNING: no close of {benchmark} in the cleaned prices of this period, so "
            "there is no buy-and-hold comparison; set [account] benchmark to a symbol your data holds"
        )
    return (
        f"benchmark {benchmark:<7} {pct(summary['benchmark_cumulative_return'])} cumulative, "
        f"Sharpe {num(summary['benchmark_sharpe'])}, max drawdown {pct(summary['benchmark_max_drawdown'])}"
    )


def write_plot(equity: pl.DataFrame, benchmark: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(equity_plot_png(equity, benchmark))
    return path


# ------------------------------------------------------------------------------------------------ the portal
# Pure frames and pictures behind the `portal` assets (assets/portal.py): no Dagster here.

UPCOMING_COLUMNS = ["symbol", "side", "qty", "price", "strategy", "status", "reason"]


def upcoming_orders(signals: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
    """Session D's signals with what became of each: the order that goes out at D+1's open (`approved`, its
    quantity; `approved, clipped: CODE` when a limit cut it), or why there is none (`denied:
    QTY_OVER_MONTHLY_LIMIT`, ...; `no order` when the planner made none). `price` is the reference price the order was sized on (D's close), the signal's reason explains it.
    Orders come first (approved before denied), then by symbol. `signals`: symbol, strategy, side, reason;
    `orders`: symbol, strategy, side, qty, ref_price, status, reason_code."""
    keys = ["symbol", "strategy", "side"]
    sig = signals.select(*keys, pl.col("reason").cast(pl.Utf8))
    ords = orders.select(
        *keys,
        pl.col("qty").cast(pl.Int64),
        pl.col("ref_price").cast(pl.Float64).alias("price"),
        pl.when((pl.col("status") == "approved") & pl.col("reason_code").is_not_null())
        .then(pl.lit("approved, clipped: ") + pl.col("reason_code"))
        .when(pl.col("reason_code").is_not_null())
        .then(pl.col("status") + pl.lit(": ") + pl.col("reason_code"))
        .otherwise(pl.col("status"))
        .alias("status"),
        (pl.col("status") == "approved").alias("_approved"),
    )
    out = sig.join(ords, on=keys, how="full", coalesce=True)
    out = out.with_columns(
        pl.col("status").fill_null("no order"),
        pl.col("qty").fill_null(0),
        pl.col("_approved").fill_null(False),
        pl.col("reason").fill_null(""),
    )
    rank = pl.when(pl.col("_approved")).then(0).when(pl.col("status") == "no order").then(2).otherwise(1)
    return out.sort(rank, "symbol", "strategy").select(UPCOMING_COLUMNS)


def strategy_equity_frame(daily_pnl: pl.DataFrame) -> pl.DataFrame:
    """(session, strategy, cumulative_pnl) per strategy and in total ('total'), sorted: the cumulative P&L of
    `marts.fct_daily_pnl` (a lot's P&L belongs to the strategy that opened it), recomputed from `pnl` so the
    frame does not depend on the mart's window."""
    if daily_pnl.is_empty():
        return pl.DataFrame(schema={"session": pl.Date, "strategy": pl.Utf8, "cumulative_pnl": pl.Float64})
    return (
        daily_pnl.select("session", "strategy", pl.col("pnl").cast(pl.Float64))
        .sort("strategy", "session")
        .with_columns(pl.col("pnl").cum_sum().over("strategy").alias("cumulative_pnl"))
        .select("session", "strategy", "cumulative_pnl")
    )


def strategy_summary(daily_pnl: pl.DataFrame) -> pl.DataFrame:
    """One row per strategy (the total last): total, realized and unrealized P&L, best and worst day (USD, to
    the cent), fills."""
    if daily_pnl.is_empty():
        return pl.DataFrame(schema={"strategy": pl.Utf8, "pnl": pl.Float64})
    out = daily_pnl.group_by("strategy").agg(
        pl.col("pnl").sum().alias("pnl"),
        pl.col("realized_pnl").sum().alias("realized_pnl"),
        pl.col("pnl").max().alias("best_day"),
        pl.col("pnl").min().alias("worst_day"),
        pl.col("fills").cast(pl.Int64).sum().alias("fills"),
    )
    out = out.with_columns((pl.col("pnl") - pl.col("realized_pnl")).alias("unrealized_pnl"))
    out = out.with_columns(pl.col(c).round(2) for c in ("pnl", "realized_pnl", "unrealized_pnl", "best_day", "worst_day"))
    return out.sort(pl.col("strategy") == "total", pl.col("pnl"), descending=[False, True]).select(
        "strategy", "pnl", "realized_pnl", "unrealized_pnl", "best_day", "worst_day", "fills"
    )


def strategy_equity_png(curves: pl.DataFrame) -> bytes:
    """Each strategy's cumulative P&L over time, the portfolio's total dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for strategy in sorted(set(curves["strategy"].to_list()), key=lambda s: (s == "total", s)):
        one = curves.filter(pl.col("strategy") == strategy).sort("session")
        style = {"color": "#222", "linestyle": "--", "linewidth": 1.4} if strategy == "total" else {"linewidth": 1.2}
        ax.plot(one["session"].to_list(), one["cumulative_pnl"].to_numpy(), label=strategy, **style)
    ax.axhline(0, color="#555", linewidth=0.8)
    ax.set_title("Cumulative P&L per strategy")
    ax.set_ylabel("USD")
    ax.yaxis.set_major_formatter(lambda v, _: f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def strategy_equity_markdown(daily_pnl: pl.DataFrame) -> str:
    if daily_pnl.is_empty():
        return "(no P&L rows in marts.fct_daily_pnl: run marts_job)"
    png = strategy_equity_png(strategy_equity_frame(daily_pnl))
    return f"**Cumulative P&L per strategy**\n\n![Cumulative P&L per strategy]({data_uri(png)})"


def setting_text(value: Any) -> str:
    """A configuration value as a person reads it: None is `off`, floats without trailing zeros."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={setting_text(v)}" for k, v in value.items())
    return str(value)


def settings_rows(values: dict[str, Any], keys: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(setting, value) rows in the order of `keys`; a key missing from `values` is an error (a renamed
    setting must not vanish from the page silently)."""
    missing = [k for k in keys if k not in values]
    if missing:
        raise KeyError(f"settings not found: {', '.join(missing)}")
    return [(k, setting_text(values[k])) for k in keys]


def strategy_rows(strategies: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(name, kind, params, approval, cadence) per configured strategy."""
    return [
        (
            s["name"],
            s["kind"],
            setting_text(dict(s.get("params") or {})) or "(none)",
            s.get("approval", "auto"),
            s.get("cadence", "daily"),
        )
        for s in strategies
    ]
