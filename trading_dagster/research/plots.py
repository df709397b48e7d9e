"""Plots of the research sweeps, as PNG bytes and markdown (the UI renders a data-URI image in markdown).

A two-parameter sweep (SMA fast x slow, RSI lower x upper) is a Sharpe heatmap; a one-parameter sweep (the
52-week dip's threshold) a Sharpe-by-value line with a markdown table of the figures.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from trading_dagster.reporting import _png, _pyplot, data_uri


def _label(value: object) -> str:
    return format(value, "g") if isinstance(value, int | float) else str(value)


def sharpe_grid(stats: pl.DataFrame, rows: str = "fast", cols: str = "slow") -> tuple[list, list, np.ndarray]:
    """(the `rows` values, the `cols` values, Sharpe as a rows x cols matrix; NaN where a pair is missing or
    undefined). Default: the SMA sweep's fast x slow."""
    down = sorted(set(stats[rows].to_list()))
    across = sorted(set(stats[cols].to_list()))
    grid = np.full((len(down), len(across)), np.nan)
    ri, ci = {v: i for i, v in enumerate(down)}, {v: j for j, v in enumerate(across)}
    for r, c, sharpe in stats.select(rows, cols, "sharpe").iter_rows():
        if sharpe is not None and not math.isnan(sharpe):
            grid[ri[r], ci[c]] = sharpe
    return down, across, grid


def _colour(ax, values: np.ndarray, draw):
    """Draw with a diverging map centred on 0 when the Sharpes have both signs, else the grid's own range."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0 < finite.max():
        bound = float(np.max(np.abs(finite)))
        return draw(cmap="RdYlGn", vmin=-bound, vmax=bound)
    return draw(cmap="viridis")


def sharpe_heatmap_png(
    stats: pl.DataFrame,
    rows: str = "fast",
    cols: str = "slow",
    *,
    row_label: str = "fast SMA",
    col_label: str = "slow SMA",
    title: str = "Sharpe by SMA pair",
) -> bytes:
    """The Sharpe of every (`rows`, `cols`) pair as a heatmap: `rows` values down, `cols` across, each cell
    labelled. Default: the SMA sweep's fast x slow."""
    down, across, grid = sharpe_grid(stats, rows, cols)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(across), 1.0 + 0.5 * len(down)))
    image = _colour(ax, grid, lambda **kw: ax.imshow(grid, aspect="auto", **kw))
    ax.set_xticks(range(len(across)), [_label(s) for s in across])
    ax.set_yticks(range(len(down)), [_label(f) for f in down])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    for i in range(len(down)):
        for j in range(len(across)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="Sharpe")
    return _png(fig)


def sharpe_heatmap_markdown(
    stats: pl.DataFrame,
    rows: str = "fast",
    cols: str = "slow",
    *,
    row_label: str = "fast SMA",
    col_label: str = "slow SMA",
    title: str = "Sharpe by SMA pair",
) -> str:
    png = sharpe_heatmap_png(stats, rows, cols, row_label=row_label, col_label=col_label, title=title)
    return f"![{title}]({data_uri(png)})"


def sharpe_by_value_png(stats: pl.DataFrame, param: str, *, label: str, title: str) -> bytes:
    """The Sharpe of a one-parameter sweep against the parameter's value (sorted), as a line with markers."""
    frame = stats.select(param, "sharpe").sort(param)
    x = frame[param].to_numpy().astype(float)
    y = frame["sharpe"].fill_null(np.nan).to_numpy().astype(float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.plot(x, y, marker="o")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("Sharpe")
    ax.set_title(title)
    for xi, yi in zip(x, y, strict=True):
        if np.isfinite(yi):
            ax.annotate(
                f"{yi:.2f}", (xi, yi), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7
            )
    return _png(fig)


def _cell(value: object, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def sharpe_by_value_markdown(stats: pl.DataFrame, param: str, *, label: str, title: str) -> str:
    """The plot and a table (the parameter, Sharpe, return, max drawdown, trades), sorted by the parameter."""
    lines = [
        f"![{title}]({data_uri(sharpe_by_value_png(stats, param, label=label, title=title))})",
        "",
        f"| {label} | Sharpe | return | max drawdown | trades |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for value, sharpe, ret, drawdown, trades in (
        stats.sort(param).select(param, "sharpe", "total_return", "max_drawdown", "trades").iter_rows()
    ):
        lines.append(
            f"| {_label(value)} | {_cell(sharpe, '.3f')} | {_cell(ret, '.2%')} | {_cell(drawdown, '.2%')} "
            f"| {_cell(trades, 'd')} |"
        )
    return "\n".join(lines)
