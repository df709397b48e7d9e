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
