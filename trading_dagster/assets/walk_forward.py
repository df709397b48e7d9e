"""Research: walk-forward selection with the deflated Sharpe, as assets a user launches from the UI (issue 11,
decision 0007 "Walk-forward").

One op, `research__walk_forward`, reads the cleaned prices from the warehouse (read-only, as the portal does),
builds folds on the exchange calendar (`research.walk_forward.folds`), selects on each train window the
parameter set with the highest in-sample Sharpe among the launchpad's grid, tests it on the following test
window (both starting flat), and writes two tables through the warehouse IO manager:

* `research.walk_forward_folds` (asset `research/walk_forward_folds`): one row per fold: its windows, the
  chosen parameters, in-sample and out-of-sample Sharpe, the out-of-sample return and drawdown, the number of
  sets tried and the winner's deflated Sharpe;
* `research.walk_forward_equity` (asset `research/walk_forward_equity`): the stitched out-of-sample curve.

The metadata is the page: the folds, in-sample against out-of-sample Sharpe per fold, the stitched curve's
plot, its Sharpe, return and drawdown against the winners' mean in-sample Sharpe (the gap is what selection
bought), the deflated Sharpe and the seconds. `walk_forward_job` materializes both; nothing schedules it.

Costs and conventions are the SMA sweep's (`assets.research.sweep_settings`: the reference conventions with the
backtest's bps costs by default). A strategy kind maps to (how its bars are read, its parameter grid, its
backtest adapter) in `KINDS`; only `sma_cross` for now.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.assets.portal import WarehouseReader, _table
from trading_dagster.assets.research import (
    _ARGUMENTS,
    CLEANED_PRICES,
    RESEARCH_GROUP,
    SmaSweepConfig,
    _date,
    _fmt,
    sweep_settings,
)
from trading_dagster.reporting import _png, _pyplot, data_uri
from trading_dagster.research.sweep import UnsupportedSetting, sma_grid
from trading_dagster.research.threshold_sweep import (
    DEFAULT_DIP_THRESHOLDS,
    DEFAULT_RSI_LOWER,
    DEFAULT_RSI_UPPER,
    rsi_grid,
)
from trading_dagster.research.walk_forward import (
    Backtest,
    WalkForwardResult,
    dip_backtest,
    folds,
    rsi_backtest,
    sma_backtest,
    walk_forward,
)
from trading_dagster.resources.configured import BacktestBookResource, TradingConfigResource
from trading_dagster.resources.writer_lock import WRITER_TAG

WALK_FORWARD_OP = "research__walk_forward"
WALK_FORWARD_FOLDS = dg.AssetKey([RESEARCH_GROUP, "walk_forward_folds"])
WALK_FORWARD_EQUITY = dg.AssetKey([RESEARCH_GROUP, "walk_forward_equity"])
FIXED_COLUMNS = ["fold", "train_start", "train_end", "test_start", "test_end"]
FIGURE_COLUMNS = ["is_sharpe", "oos_sharpe", "oos_return", "oos_max_drawdown", "trials", "deflated_sharpe"]


class WalkForwardConfig(SmaSweepConfig):
    """The SMA sweep's settings (grid, window, money, tie band, conventions) and the walk-forward's own."""

    kind: str = Field(
        default="sma_cross",
        description="the strategy kind swept: sma_cross (grid fast x slow), rsi (lower x upper) or dip_52w "
        "(thresholds)",
    )
    lower: list[float] = Field(default=list(DEFAULT_RSI_LOWER), description="rsi: lower bounds (buy below)")
    upper: list[float] = Field(default=list(DEFAULT_RSI_UPPER), description="rsi: upper bounds (sell above)")
    thresholds: list[float] = Field(
        default=list(DEFAULT_DIP_THRESHOLDS), description="dip_52w: threshold_pct values (buy at least this % below)"
    )
    train_sessions: int = Field(default=756, description="in-sample sessions (rolling: the window's length)")
    test_sessions: int = Field(
        default=252, description="out-of-sample sessions per fold (the last may be shorter)"
    )
    mode: str = Field(
        default="rolling",
        description="rolling: train on the train_sessions before each test window; expanding: from the first session",
    )


@dataclass(frozen=True)
class Kind:
    """How a strategy kind is walked forward: the SQL that reads its bars (up to `end` when given), its
    parameter grid from the config, its backtest adapter `(bars, calendar, **settings) -> backtest`."""

    sql: str
    grid: Callable[[WalkForwardConfig], list[tuple[Any, ...]]]
    backtest: Callable[..., Backtest]


KINDS: dict[str, Kind] = {
    "sma_cross": Kind(
        sql="select session, symbol, open, close from prices.cleaned_prices",
        grid=lambda config: [tuple(p) for p in sma_grid(config.fast, config.slow)],
        backtest=sma_backtest,
    ),
    "rsi": Kind(
        sql="select c.session, c.symbol, c.open, c.close, i.rsi_14 from prices.cleaned_prices c "
        "left join indicators.indicators i using (session, symbol)",
        grid=lambda config: [(lo, hi) for lo, hi in rsi_grid(config.lower, config.upper)],
        backtest=rsi_backtest,
    ),
    "dip_52w": Kind(
        sql="select c.session, c.symbol, c.open, c.close, i.pct_below_high_52w from prices.cleaned_prices c "
        "left join indicators.indicators i using (session, symbol)",
        grid=lambda config: [(float(t),) for t in config.thresholds if 0 < t < 100],
        backtest=dip_backtest,
    ),
}


def equity_plot_png(result: WalkForwardResult) -> bytes:
    """The stitched out-of-sample curve, each test window's start marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(result.equity["session"].to_list(), result.equity["equity"].to_numpy(), lw=1.2, color="tab:blue")
    for start in result.folds["test_start"].to_list()[1:]:
        ax.axvline(start, color="grey", lw=0.6, ls=":")
    s = result.summary
    ax.set_title(
        f"Walk-forward out of sample: Sharpe {_fmt(s['oos_sharpe'], '.2f')} "
        f"(winners in sample {_fmt(s['mean_is_sharpe'], '.2f')}), {s['folds']} folds"
    )
    ax.set_ylabel("equity (USD)")
    ax.grid(alpha=0.3)
    return _png(fig)


def sharpe_by_fold_markdown(frame: pl.DataFrame, names: Sequence[str]) -> str:
    """In-sample against out-of-sample Sharpe per fold, with the winner and its deflated Sharpe."""
    lines = [
        "| fold | test window | params | IS Sharpe | OOS Sharpe | deflated Sharpe |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in frame.iter_rows(named=True):
        params = ", ".join(f"{n} {row[n]}" for n in names)
        lines.append(
            f"| {row['fold']} | {row['test_start']} .. {row['test_end']} | {params} | "
            f"{_fmt(row['is_sharpe'], '.3f')} | {_fmt(row['oos_sharpe'], '.3f')} | "
            f"{_fmt(row['deflated_sharpe'], '.3f')} |"
        )
    return "\n".join(lines)


def _number(x: float | int) -> float:
    return math.nan if x is None else float(x)


@dg.multi_asset(
    name=WALK_FORWARD_OP,
    group_name=RESEARCH_GROUP,
    deps=[CLEANED_PRICES, dg.AssetKey(["indicators", "indicators"])],  # rsi and dip_52w read the indicators
    outs={
        "folds": dg.AssetOut(
            key=WALK_FORWARD_FOLDS,
            kinds={"duckdb", "polars"},
            description="Walk-forward of the configured grid (SMA cross 10 x 10 by default; RSI bounds or 52-week "
            "dip thresholds with kind rsi / dip_52w): per fold (756 "
            "sessions in sample, 252 out, rolling by default) the windows, the parameters with the highest "
            "in-sample Sharpe, their in-sample and out-of-sample Sharpe, out-of-sample return and drawdown, "
            "the sets tried and the deflated Sharpe. Launch walk_forward_job.",
        ),
        "equity": dg.AssetOut(
            key=WALK_FORWARD_EQUITY,
            kinds={"duckdb", "polars"},
            description="The walk-forward's stitched out-of-sample equity: each fold's winner on its test "
            "window (starting flat), the windows' daily returns chained from the initial cash.",
        ),
    },
)
def walk_forward_assets(
    context: dg.AssetExecutionContext,
    config: WalkForwardConfig,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
):
    from trading_dagster.domain.calendar import nyse_calendar

    began = time.perf_counter()
    kind = KINDS.get(config.kind)
    if kind is None:
        raise dg.Failure(
            description=f"kind {config.kind!r} cannot be walked forward yet (known: {', '.join(KINDS)})"
        )
    if config.mode not in ("rolling", "expanding"):
        raise dg.Failure(description=f"mode must be 'rolling' or 'expanding', got {config.mode!r}")
    grid = kind.grid(config)
    if not grid:
        raise dg.Failure(
            description=f"the {config.kind} grid is empty: "
            + {
                "sma_cross": f"no pair with 0 < fast < slow in fast={config.fast}, slow={config.slow}",
                "rsi": f"no pair with 0 < lower < upper < 100 in lower={config.lower}, upper={config.upper}",
            }.get(config.kind, f"no threshold in (0, 100) in {config.thresholds}")
        )
    start, end = _date(config.start, "start"), _date(config.end, "end")
    settings, conventions = sweep_settings(config, trading_config, backtest_book)
    if not warehouse.has_table("prices", "cleaned_prices"):
        raise dg.Failure(description="no prices.cleaned_prices in the warehouse yet: run pipeline_job first")
    if config.kind != "sma_cross" and not warehouse.has_table("indicators", "indicators"):
        raise dg.Failure(description="no indicators.indicators in the warehouse yet: run pipeline_job first")
    bars = warehouse.query(kind.sql + (" where session <= ?" if end else ""), [end] if end else None)
    if bars.height == 0:
        raise dg.Failure(
            description="prices.cleaned_prices holds no bar (in the window): nothing to walk forward"
        )
    loaded = time.perf_counter()
    calendar = list(nyse_calendar().sessions)
    first, last = start or bars["session"].min(), end or bars["session"].max()
    sessions = [d for d in calendar if first <= d <= last]
    try:
        plan = folds(sessions, config.train_sessions, config.test_sessions, config.mode)  # type: ignore[arg-type]
    except ValueError as error:
        raise dg.Failure(description=f"The walk-forward cannot make its folds: {error}") from error
    try:
        result = walk_forward(kind.backtest(bars, calendar, **settings), grid, plan, settings["initial_cash"])
    except UnsupportedSetting as error:
        raise dg.Failure(description=f"The walk-forward cannot run these settings: {error}") from error
    except ValueError as error:
        raise dg.Failure(description=f"The walk-forward failed: {error}") from error
    walked = time.perf_counter()
    table = result.folds
    names = [c for c in table.columns if c not in FIXED_COLUMNS and c not in FIGURE_COLUMNS]
    s = result.summary
    context.log.info(
        f"{len(plan)} folds x {len(grid)} sets in {walked - loaded:.2f} s; out-of-sample Sharpe "
        f"{_fmt(s['oos_sharpe'], '.3f')} against {_fmt(s['mean_is_sharpe'], '.3f')} in sample"
    )
    plot = dg.MetadataValue.md(f"![Walk-forward out-of-sample equity]({data_uri(equity_plot_png(result))})")
    figures = {
        "oos_sharpe": dg.MetadataValue.float(_number(s["oos_sharpe"])),
        "oos_return": dg.MetadataValue.float(_number(s["oos_return"])),
        "oos_max_drawdown": dg.MetadataValue.float(_number(s["oos_max_drawdown"])),
        "mean_is_sharpe": dg.MetadataValue.float(_number(s["mean_is_sharpe"])),
    }
    yield dg.Output(
        table,
        output_name="folds",
        metadata={
            "summary": f"out of sample {sessions_text(result)}: Sharpe {_fmt(s['oos_sharpe'], '.3f')}, return "
            f"{_fmt(s['oos_return'], '.2%')}, max drawdown {_fmt(s['oos_max_drawdown'], '.2%')}; the winners' "
            f"mean in-sample Sharpe {_fmt(s['mean_is_sharpe'], '.3f')} (the gap is what selection bought); mean "
            f"deflated Sharpe {_fmt(s['mean_deflated_sharpe'], '.3f')}",
            "folds_table": _table(table.with_columns(pl.col(pl.Date).cast(pl.Utf8)), table.columns),
            "sharpe_by_fold": dg.MetadataValue.md(sharpe_by_fold_markdown(table, names)),
            "equity_plot": plot,
            **figures,
            "mean_oos_sharpe": dg.MetadataValue.float(_number(s["mean_oos_sharpe"])),
            "mean_deflated_sharpe": dg.MetadataValue.float(_number(s["mean_deflated_sharpe"])),
            "fold_count": dg.MetadataValue.int(len(plan)),
            "trials": dg.MetadataValue.int(len(grid)),
            "windows": f"{config.mode}: {config.train_sessions} sessions in sample, {config.test_sessions} out",
            "symbols": dg.MetadataValue.int(bars["symbol"].n_unique()),
            "elapsed_seconds": dg.MetadataValue.float(round(walked - began, 3)),
            "walk_forward_seconds": dg.MetadataValue.float(round(walked - loaded, 3)),
            "conventions": dg.MetadataValue.md(f"Walked forward with {conventions}."),
            "settings": dg.MetadataValue.json({k: settings[k] for k in (*_ARGUMENTS, "tie_band_pct")}),
        },
    )
    yield dg.Output(
        result.equity,
        output_name="equity",
        metadata={"sessions": sessions_text(result), "equity_plot": plot, **figures},
    )


def sessions_text(result: WalkForwardResult) -> str:
    days = result.equity["session"]
    return f"{days[0]} .. {days[-1]} ({days.len()} sessions)"


WALK_FORWARD_ASSETS = [walk_forward_assets]

walk_forward_job = dg.define_asset_job(
    "walk_forward_job",
    selection=[WALK_FORWARD_FOLDS, WALK_FORWARD_EQUITY],
    description="Walk-forward selection (research/walk_forward_folds and research/walk_forward_equity): set "
    "the grid, the train / test sessions, rolling or expanding, the window and money in the launchpad's config; "
    "it reads the cleaned prices and writes research.walk_forward_folds and research.walk_forward_equity.",
    # it writes the warehouse: queued behind the other writers (DuckDB: one writing process at a time)
    tags={WRITER_TAG: "research"},
)
