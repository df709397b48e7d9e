"""What a person looks at: the equity-curve plot and the short run report printed by `trading-dagster demo`."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import polars as pl


def equity_plot_png(equity: pl.DataFrame, benchmark: str) -> bytes:
    """Equity against buy-and-hold of the benchmark (scaled to the same start), and the drawdown below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
