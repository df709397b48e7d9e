"""Research: the SMA-crossover parameter sweep as an asset a user launches from the UI (issue 11).

`research/sma_sweep` reads the cleaned prices from the warehouse (read-only, as the portal does), runs
`research.sweep.sweep_sma_cross` over a grid of (fast, slow) SMA periods from the launchpad's config, and
writes one row per pair to `research.sma_sweep` (through the warehouse IO manager), ranked by Sharpe. Its
metadata is the page: the top 10, a Sharpe heatmap (fast x slow), the best pair, the sessions and symbols
swept and the time it took. `sweep_job` materializes it; nothing schedules it.

Costs and conventions are the backtest book's (`settings_from_models`). The kernel runs only the reference
conventions (README "A backtest you can check": no cash limit, no quota or caps, no minimum price, no
rounding to the cent, bps costs only); with `reference_conventions: false` a backtest setting it cannot honour
fails the run naming that setting. With `reference_conventions: true` (the default) it sweeps with the
reference conventions and the backtest's bps fees and slippage whatever the other settings say, and says so
in the metadata.
"""

import datetime as dt
import math
import time
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.assets.portal import WarehouseReader, _table
from trading_dagster.research.plots import sharpe_heatmap_markdown
from trading_dagster.research.sweep import (
    DEFAULT_FAST,
    DEFAULT_SLOW,
    UnsupportedSetting,
    check_settings,
    settings_from_models,
    sma_grid,
    sweep_sma_cross,
)
from trading_dagster.resources.configured import BacktestBookResource, TradingConfigResource
from trading_dagster.resources.writer_lock import WRITER_TAG

RESEARCH_GROUP = "research"
SMA_SWEEP = dg.AssetKey([RESEARCH_GROUP, "sma_sweep"])
CLEANED_PRICES = dg.AssetKey(["prices", "cleaned_prices"])
TOP = 10

SWEEP_COLUMNS = [
    "rank", "fast", "slow", "total_pnl", "total_return", "sharpe", "sortino", "max_drawdown", "orders", "trades",
    "turnover", "exposure",
]
SWEEP_SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int64(),
    "fast": pl.Int64(),
    "slow": pl.Int64(),
    "total_pnl": pl.Float64(),
    "total_return": pl.Float64(),
    "sharpe": pl.Float64(),
    "sortino": pl.Float64(),
    "max_drawdown": pl.Float64(),
    "orders": pl.Int64(),
    "trades": pl.Int64(),
    "turnover": pl.Float64(),
    "exposure": pl.Float64(),
}
# the settings the kernel takes as arguments; everything else of `settings_from_models` is a fixed convention
_ARGUMENTS = ("notional", "initial_cash", "size_on", "shares", "fees_bps", "slippage_bps")


class SmaSweepConfig(dg.Config):
    fast: list[int] = Field(default=list(DEFAULT_FAST), description="fast SMA periods (sessions)")
    slow: list[int] = Field(
        default=list(DEFAULT_SLOW), description="slow SMA periods; pairs with fast >= slow are skipped"
    )
    start: str | None = Field(default=None, description="first session (YYYY-MM-DD); default: the first bar")
    end: str | None = Field(default=None, description="last session (YYYY-MM-DD); default: the last bar")
    notional: float | None = Field(default=None, description="USD per buy; default: [risk] notional")
    initial_cash: float | None = Field(default=None, description="USD; default: the backtest book's")
    tie_band_pct: float = Field(default=0.0, description="the sma_cross tie band, % (as the strategy's param)")
    reference_conventions: bool = Field(
        default=True,
        description="sweep with the reference conventions (README 'A backtest you can check') and the "
        "backtest's bps fees and slippage, whatever the other backtest settings say; false: the backtest's "
        "settings exactly, and the run fails naming any the sweep cannot honour",
    )


def rank_by_sharpe(stats: pl.DataFrame) -> pl.DataFrame:
    """The sweep's stats as the table: rank 1 = the highest Sharpe (an undefined Sharpe ranks last, ties in
    grid order), rows in rank order, the `SWEEP_SCHEMA` columns."""
    key = pl.when(pl.col("sharpe").is_nan()).then(None).otherwise(pl.col("sharpe"))
    ranked = (
        stats.with_row_index("grid_order")
        .sort(key, "grid_order", descending=[True, False], nulls_last=True)
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )
    return ranked.select(SWEEP_COLUMNS).cast(SWEEP_SCHEMA)  # type: ignore[arg-type]


def _date(text: str | None, name: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise dg.Failure(description=f"{name} must be a date YYYY-MM-DD, got {text!r}") from error


def sweep_settings(
    config: SmaSweepConfig, trading_config: TradingConfigResource, backtest_book: BacktestBookResource
) -> tuple[dict[str, Any], str]:
    """The kernel's keyword arguments and a sentence on the conventions they carry; a backtest setting the
    kernel cannot honour (without `reference_conventions`) is a dg.Failure naming it."""
    risk = backtest_book.planner_risk(trading_config.risk_config())
    guide = (
        "The sweep runs only the reference conventions (README 'A backtest you can check'): set them in the "
        "configuration, or launch with reference_conventions: true."
    )
    try:
        backtest = settings_from_models(risk, backtest_book.slippage_model(), backtest_book.commission_model())
        check_settings({k: v for k, v in backtest.items() if k not in _ARGUMENTS})
        refused = None
    except UnsupportedSetting as error:
        backtest, refused = None, str(error)
    if not config.reference_conventions:
        if refused is not None:
            raise dg.Failure(description=f"The backtest settings cannot be swept: {refused}. {guide}")
        assert backtest is not None
        settings = dict(backtest)
        note = "the backtest's settings exactly (they are the reference conventions)"
    else:
        settings = {
            "notional": float(risk.notional),
            "initial_cash": float(backtest_book.initial_cash),
            "size_on": backtest_book.size_on,
            "shares": backtest_book.shares,
            "fees_bps": float(backtest_book.costs.commission_bps),
            "slippage_bps": float(backtest_book.costs.slippage_bps),
        }
        note = (
            "the reference conventions (README 'A backtest you can check': no cash limit, quota, caps, minimum "
            "price, exits or rounding to the cent; fixed notional, one position per symbol, long only) with the "
            f"backtest's bps costs (fees {settings['fees_bps']:g} bp, slippage {settings['slippage_bps']:g} bp)"
        )
        if refused is not None:
            note += f"; the backtest's own settings differ ({refused}), so the figures are not its"
    if config.notional is not None:
        settings["notional"] = float(config.notional)
    if config.initial_cash is not None:
        settings["initial_cash"] = float(config.initial_cash)
    settings["tie_band_pct"] = float(config.tie_band_pct)
    return settings, note


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


@dg.asset(
    key=SMA_SWEEP,
    group_name=RESEARCH_GROUP,
    kinds={"duckdb", "polars"},
    deps=[CLEANED_PRICES],
    description="SMA-crossover parameter sweep: one backtest per (fast, slow) pair of the configured grid (10 x "
    "10 by default) over every symbol and session of the cleaned prices, with the backtest's costs and the "
    "reference conventions; one row per pair (P&L, return, Sharpe, Sortino, max drawdown, orders, trades, "
    "turnover, exposure) ranked by Sharpe, the top 10 and a Sharpe heatmap in the metadata. Launch sweep_job.",
)
def sma_sweep(
    context: dg.AssetExecutionContext,
    config: SmaSweepConfig,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
) -> dg.Output[pl.DataFrame]:
    from trading_dagster.domain.calendar import nyse_calendar

    began = time.perf_counter()
    pairs = sma_grid(config.fast, config.slow)
    if not pairs:
        raise dg.Failure(description=f"no pair with 0 < fast < slow in fast={config.fast}, slow={config.slow}")
    start, end = _date(config.start, "start"), _date(config.end, "end")
    settings, conventions = sweep_settings(config, trading_config, backtest_book)
    if not warehouse.has_table("prices", "cleaned_prices"):
        raise dg.Failure(description="no prices.cleaned_prices in the warehouse yet: run pipeline_job first")
    sql = "select session, symbol, open, close from prices.cleaned_prices"
    cleaned = warehouse.query(sql + (" where session <= ?" if end else ""), [end] if end else None)
    if cleaned.height == 0:
        raise dg.Failure(description="prices.cleaned_prices holds no bar (in the window): nothing to sweep")
    loaded = time.perf_counter()
    try:
        result = sweep_sma_cross(cleaned, list(nyse_calendar().sessions), pairs, start=start, end=end, **settings)
    except UnsupportedSetting as error:  # a notional / size_on / shares the kernel refuses
        raise dg.Failure(description=f"The sweep cannot run these settings: {error}") from error
    except ValueError as error:  # an empty window, bars outside the calendar
        raise dg.Failure(description=f"The sweep failed: {error}") from error
    swept = time.perf_counter()
    table = rank_by_sharpe(result.stats)
    best = table.row(0, named=True)
    context.log.info(f"{len(pairs)} pairs swept in {swept - loaded:.2f} s; best {best['fast']}/{best['slow']}")
    sessions = result.sessions
    return dg.Output(
        table,
        metadata={
            "best_pair": f"fast {best['fast']} / slow {best['slow']}: Sharpe {_fmt(best['sharpe'], '.3f')}, "
            f"return {_fmt(best['total_return'], '.2%')}, max drawdown {_fmt(best['max_drawdown'], '.2%')}",
            "best_sharpe": dg.MetadataValue.float(float(best["sharpe"]) if best["sharpe"] is not None else math.nan),
            "top_10": _table(table.head(TOP), SWEEP_COLUMNS),
            "sharpe_heatmap": dg.MetadataValue.md(sharpe_heatmap_markdown(table)),
            "pairs": dg.MetadataValue.int(len(pairs)),
            "sessions": f"{sessions[0]} .. {sessions[-1]} ({len(sessions)} sessions)",
            "session_count": dg.MetadataValue.int(len(sessions)),
            "symbols": dg.MetadataValue.int(cleaned["symbol"].n_unique()),
            "elapsed_seconds": dg.MetadataValue.float(round(swept - began, 3)),
            "sweep_seconds": dg.MetadataValue.float(round(swept - loaded, 3)),
            "conventions": dg.MetadataValue.md(f"Swept with {conventions}."),
            "settings": dg.MetadataValue.json({k: settings[k] for k in (*_ARGUMENTS, "tie_band_pct")}),
        },
    )


RESEARCH_ASSETS = [sma_sweep]

sweep_job = dg.define_asset_job(
    "sweep_job",
    selection=[SMA_SWEEP],
    description="The SMA parameter sweep (research/sma_sweep): set the grid, window, money and tie band in the "
    "launchpad's config; it reads the cleaned prices and writes research.sma_sweep.",
    # it writes the warehouse: queued behind the other writers (DuckDB: one writing process at a time)
    tags={WRITER_TAG: "research"},
)
