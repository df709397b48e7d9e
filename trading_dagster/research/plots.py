"""Plots of the research sweeps, as PNG bytes and markdown (the UI renders a data-URI image in markdown)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from trading_dagster.reporting import _png, _pyplot, data_uri


def sharpe_grid(stats: pl.DataFrame) -> tuple[list[int], list[int], np.ndarray]:
    """(fast periods, slow periods, Sharpe as a fast x slow matrix; NaN where a pair is missing or undefined)."""
    fast = sorted(set(stats["fast"].to_list()))
    slow = sorted(set(stats["slow"].to_list()))
    grid = np.full((len(fast), len(slow)), np.nan)
    fi, si = {f: i for i, f in enumerate(fast)}, {s: j for j, s in enumerate(slow)}
    for f, s, sharpe in stats.select("fast", "slow", "sharpe").iter_rows():
        if sharpe is not None and not math.isnan(sharpe):
            grid[fi[f], si[s]] = sharpe
    return fast, slow, grid


def sharpe_heatmap_png(stats: pl.DataFrame) -> bytes:
    """The Sharpe of every (fast, slow) pair as a heatmap: fast periods down, slow across, each cell labelled."""
    fast, slow, grid = sharpe_grid(stats)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(slow), 1.0 + 0.5 * len(fast)))
    finite = grid[np.isfinite(grid)]
    if finite.size and finite.min() < 0 < finite.max():  # both signs: diverging, centred on 0
        bound = float(np.max(np.abs(finite)))
        image = ax.imshow(grid, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    else:  # one sign: the grid's own range, so the differences show
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(slow)), [str(s) for s in slow])
    ax.set_yticks(range(len(fast)), [str(f) for f in fast])
    ax.set_xlabel("slow SMA")
    ax.set_ylabel("fast SMA")
    ax.set_title("Sharpe by SMA pair")
    for i in range(len(fast)):
        for j in range(len(slow)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="Sharpe")
    return _png(fig)


def sharpe_heatmap_markdown(stats: pl.DataFrame) -> str:
    return f"![Sharpe by SMA pair]({data_uri(sharpe_heatmap_png(stats))})"
