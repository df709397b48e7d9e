"""The HTML tear sheet of a backtest: one self-contained file (plots inlined as PNG data URIs) written next to
the data, `<data dir>/reports/tearsheet.html`, and linked from `pnl/performance`'s metadata.

quantstats would fit, but it is not a dependency and is not installed; the sheet is matplotlib plus a table.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import polars as pl

from trading_dagster.reporting import data_uri, performance_plots

ROWS = [
    ("Period", lambda s: f"{s['start']} .. {s['end']} ({s['sessions']} sessions)", None),
    ("Initial equity", "initial_equity", "money"),
    ("Final equity", "final_equity", "money"),
    ("Cumulative return", "cumulative_return", "pct"),
    ("Annualized return", "annualized_return", "pct"),
    ("Annualized volatility", "annualized_volatility", "pct"),
    ("Sharpe (annualized)", "sharpe", "ratio"),
    ("Max drawdown", "max_drawdown", "pct"),
    ("Max drawdown peak", "max_drawdown_peak", None),
    ("Max drawdown trough", "max_drawdown_trough", None),
    ("Excess return over the benchmark", "excess_return", "pct"),
]


def _fmt(value: Any, kind: str | None) -> str:
    if value is None:
        return "n/a"
    if kind == "money":
        return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
    if kind == "pct":
        return f"{100 * value:+.2f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    return str(value)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, strategy, benchmark) rows of the tear sheet's table."""
    rows = []
    for label, key, kind in ROWS:
        if callable(key):
            rows.append((label, key(summary), ""))
            continue
        bench_key = f"benchmark_{key}"
        bench = _fmt(summary.get(bench_key), kind) if bench_key in summary else ""
        rows.append((label, _fmt(summary.get(key), kind), bench))
    return rows


def tearsheet_html(equity: pl.DataFrame, summary: dict[str, Any], months: pl.DataFrame, benchmark: str) -> str:
    rows = "\n".join(
        f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in summary_rows(summary)
    )
    plots = "\n".join(
        f'<h2>{html.escape(title)}</h2>\n<img alt="{html.escape(title)}" src="{data_uri(png)}">'
        for title, png in performance_plots(equity, months, benchmark).items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trading-dagster tear sheet</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:4px 12px;border-bottom:1px solid #ddd;text-align:right}}
th{{text-align:left;font-weight:normal}}img{{max-width:100%}}</style></head>
<body><h1>Backtest tear sheet</h1>
<p>Written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by pnl/performance.</p>
<table><thead><tr><th></th><th>strategy</th><th>buy &amp; hold {html.escape(benchmark)}</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{plots}
</body></html>
"""


def write_tearsheet(
    equity: pl.DataFrame, summary: dict[str, Any], months: pl.DataFrame, benchmark: str, path: Path
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(tearsheet_html(equity, summary, months, benchmark), encoding="utf-8")
    tmp.replace(path)
    return path


def daily_returns(equity: pl.DataFrame) -> tuple[Any, Any]:
    """(strategy, benchmark) daily returns as pandas Series indexed by session, from an equity frame (`session`,
    `equity`, and `benchmark_close` when there is one): the returns our metrics use (v[t] / v[t-1] - 1; the
    benchmark's close forward-filled over its missing sessions, None without one)."""
    import pandas as pd

    frame = equity.sort("session")
    index = pd.DatetimeIndex(pd.to_datetime(frame["session"].to_list()), name="session")
    strategy = pd.Series(frame["equity"].to_numpy(), index=index, name="strategy").pct_change().iloc[1:]
    bench = None
    if "benchmark_close" in frame.columns and frame["benchmark_close"].drop_nulls().len() > 1:
        closes = pd.Series(frame["benchmark_close"].to_numpy(), index=index, dtype=float).ffill()
        bench = closes.pct_change().iloc[1:].fillna(0.0).rename("benchmark")
    return strategy, bench


MIN_TEARSHEET_SESSIONS = 20
"""Fewer sessions give quantstats too little for its rolling statistics and regressions (it fails on them)."""


def write_quantstats_report(equity: pl.DataFrame, benchmark: str, path: Path, title: str) -> Path:
    """The full quantstats tear sheet (metrics against the benchmark, cumulative and log returns, drawdown
    periods, monthly heatmap, rolling volatility, Sharpe and beta, return distribution) as one HTML file.

    quantstats is fed our own daily returns (`daily_returns`) and a benchmark Series, never a ticker, so it
    downloads nothing; writing is atomic (a reader never sees half a file)."""
    import logging

    import quantstats as qs

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # quantstats asks for Arial
    strategy, bench = daily_returns(equity)
    if len(strategy) < MIN_TEARSHEET_SESSIONS - 1:
        raise ValueError(
            f"a tear sheet needs at least {MIN_TEARSHEET_SESSIONS} sessions of equity, got {equity.height}"
        )
    if float(strategy.abs().max()) == 0.0:
        raise ValueError(f"the equity never moved over its {equity.height} sessions (nothing traded): no tear sheet")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if bench is not None:
        bench = bench.rename(benchmark)
    qs.reports.html(strategy, benchmark=bench, output=str(tmp), title=title, periods_per_year=252, rf=0.0)
    tmp.replace(path)
    return path
