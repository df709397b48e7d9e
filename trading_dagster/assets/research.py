"""Research: the parameter sweeps as assets a user launches from the UI (issue 11).

* `research/sma_sweep` runs `research.sweep.sweep_sma_cross` over a grid of (fast, slow) SMA periods;
* `research/rsi_sweep` runs `research.threshold_sweep.sweep_rsi` over a grid of (lower, upper) RSI bounds,
  reading `rsi_14` from the indicators table (`indicators.indicators`);
* `research/dip_sweep` runs `research.threshold_sweep.sweep_dip` over 52-week-dip thresholds, reading
  `pct_below_high_52w` from the indicators table; optional `take_profit_pct` / `stop_loss_pct` lists add the
  backtest's exits as grid dimensions (each leg also swept off; the table then has those two columns, null
  = off, and the heatmap is thresholds x exits).

Each reads the cleaned prices (and the indicators) from the warehouse (read-only, as the portal does), sweeps
the launchpad's grid, window and money, and writes one row per parameter set to `research.<name>` (through
the warehouse IO manager), ranked by Sharpe (`rank_by_sharpe`, on the kind's parameter columns). Its metadata
is the page: the top 10, the Sharpe by parameter (a heatmap for two parameters, a plot and a table for the
dip's one), the best set, the sessions and symbols swept and the time it took. The three share one body
(`_sweep_output`); `sweep_job` selects all three (one launchpad, a config block per sweep; deselect the
ones not wanted in the UI's asset selection); nothing schedules them.

Costs and conventions are the backtest book's (`settings_from_models`). The kernels run only the reference
conventions (README "A backtest you can check": no cash limit, no quota or caps, no minimum price, no
rounding to the cent, bps costs only); with `reference_conventions: false` a backtest setting they cannot
honour fails the run naming that setting. With `reference_conventions: true` (the default) they sweep with
the reference conventions and the backtest's bps fees and slippage whatever the other settings say, and say
so in the metadata.
"""

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.assets.portal import WarehouseReader, _table
from trading_dagster.research.plots import sharpe_by_value_markdown, sharpe_heatmap_markdown
from trading_dagster.research.sweep import (
    DEFAULT_FAST,
    DEFAULT_SLOW,
    SweepResult,
    UnsupportedSetting,
    check_settings,
    settings_from_models,
    sma_grid,
    sweep_sma_cross,
)
from trading_dagster.research.threshold_sweep import (
    DEFAULT_DIP_THRESHOLDS,
    DEFAULT_RSI_LOWER,
    DEFAULT_RSI_UPPER,
    DIP_COLUMN,
    RSI_COLUMN,
    pack_indicator_bars,
    rsi_grid,
    sweep_dip,
    sweep_rsi,
)
from trading_dagster.resources.configured import BacktestBookResource, TradingConfigResource
from trading_dagster.resources.writer_lock import WRITER_TAG

RESEARCH_GROUP = "research"
SMA_SWEEP = dg.AssetKey([RESEARCH_GROUP, "sma_sweep"])
RSI_SWEEP = dg.AssetKey([RESEARCH_GROUP, "rsi_sweep"])
DIP_SWEEP = dg.AssetKey([RESEARCH_GROUP, "dip_sweep"])
CLEANED_PRICES = dg.AssetKey(["prices", "cleaned_prices"])
INDICATORS = dg.AssetKey(["indicators", "indicators"])
TOP = 10

FIGURE_COLUMNS = [
    "total_pnl",
    "total_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "orders",
    "trades",
    "turnover",
    "exposure",
]
"""A sweep table's columns after its rank and parameter columns."""
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
"""The SMA sweep's table (the others: their parameter columns instead of fast and slow)."""
SMA_PARAMS = ("fast", "slow")
RSI_PARAMS = ("lower", "upper")
DIP_PARAMS = ("threshold_pct",)


def sweep_columns(params: Sequence[str] = SMA_PARAMS) -> list[str]:
    """A sweep table's columns: rank, the parameters, the figures."""
    return ["rank", *params, *FIGURE_COLUMNS]


SWEEP_COLUMNS = sweep_columns()
# the settings the kernel takes as arguments; everything else of `settings_from_models` is a fixed convention
_ARGUMENTS = ("notional", "initial_cash", "size_on", "shares", "fees_bps", "slippage_bps")


class SweepWindowConfig(dg.Config):
    """The window, money and conventions every sweep takes (each sweep's config adds its grid)."""

    start: str | None = Field(default=None, description="first session (YYYY-MM-DD); default: the first bar")
    end: str | None = Field(default=None, description="last session (YYYY-MM-DD); default: the last bar")
    notional: float | None = Field(default=None, description="USD per buy; default: [risk] notional")
    initial_cash: float | None = Field(default=None, description="USD; default: the backtest book's")
    reference_conventions: bool = Field(
        default=True,
        description="sweep with the reference conventions (README 'A backtest you can check') and the "
        "backtest's bps fees and slippage, whatever the other backtest settings say; false: the backtest's "
        "settings exactly, and the run fails naming any the sweep cannot honour",
    )


class SmaSweepConfig(SweepWindowConfig):
    fast: list[int] = Field(default=list(DEFAULT_FAST), description="fast SMA periods (sessions)")
    slow: list[int] = Field(
        default=list(DEFAULT_SLOW), description="slow SMA periods; pairs with fast >= slow are skipped"
    )
    tie_band_pct: float = Field(
        default=0.0, description="the sma_cross tie band, % (as the strategy's param)"
    )


class RsiSweepConfig(SweepWindowConfig):
    lower: list[float] = Field(
        default=list(DEFAULT_RSI_LOWER), description="lower RSI bounds: buy when rsi_14 < lower"
    )
    upper: list[float] = Field(
        default=list(DEFAULT_RSI_UPPER),
        description="upper RSI bounds: sell when rsi_14 > upper; pairs without 0 < lower < upper < 100 are skipped",
    )


class DipSweepConfig(SweepWindowConfig):
    thresholds: list[float] = Field(
        default=list(DEFAULT_DIP_THRESHOLDS),
        description="threshold_pct values: buy when the close is at least this % below the 52-week high",
    )
    take_profit_pct: list[float] = Field(
        default=[],
        description="optional take-profit % grid dimension (the backtest's exit rule); empty: no take-profit",
    )
    stop_loss_pct: list[float] = Field(
        default=[],
        description="optional stop-loss % grid dimension (the backtest's exit rule); empty: no stop",
    )


def rank_by_sharpe(stats: pl.DataFrame, params: Sequence[str] = SMA_PARAMS) -> pl.DataFrame:
    """The sweep's stats as the table: rank 1 = the highest Sharpe (an undefined Sharpe ranks last, ties in
    grid order), rows in rank order, the `sweep_columns(params)` columns (`params`: the kind's parameter
    columns, keeping their types; default the SMA sweep's, whose table is `SWEEP_SCHEMA`)."""
    key = pl.when(pl.col("sharpe").is_nan()).then(None).otherwise(pl.col("sharpe"))
    ranked = (
        stats.with_row_index("grid_order")
        .sort(key, "grid_order", descending=[True, False], nulls_last=True)
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )
    schema = {c: SWEEP_SCHEMA[c] if c in SWEEP_SCHEMA else stats.schema[c] for c in sweep_columns(params)}
    return ranked.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def _date(text: str | None, name: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise dg.Failure(description=f"{name} must be a date YYYY-MM-DD, got {text!r}") from error


def sweep_settings(
    config: SweepWindowConfig, trading_config: TradingConfigResource, backtest_book: BacktestBookResource
) -> tuple[dict[str, Any], str]:
    """The kernel's keyword arguments and a sentence on the conventions they carry; a backtest setting the
    kernel cannot honour (without `reference_conventions`) is a dg.Failure naming it. A config with a
    `tie_band_pct` (the SMA sweep's) adds it."""
    risk = backtest_book.planner_risk(trading_config.risk_config())
    guide = (
        "The sweep runs only the reference conventions (README 'A backtest you can check'): set them in the "
        "configuration, or launch with reference_conventions: true."
    )
    try:
        backtest = settings_from_models(
            risk, backtest_book.slippage_model(), backtest_book.commission_model()
        )
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
    band = getattr(config, "tie_band_pct", None)
    if band is not None:
        settings["tie_band_pct"] = float(band)
    return settings, note


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


Run = Callable[
    [pl.DataFrame, pl.DataFrame | None, list[dt.date], dt.date | None, dt.date | None, dict[str, Any]],
    tuple[SweepResult, dict[str, Any]],
]
"""(cleaned, indicators or None, calendar, start, end, settings) -> (the sweep's result, extra metadata)."""


@dataclass(frozen=True)
class _Kind:
    """What differs between the sweep assets: the parameters, the indicator read, the names, the plot."""

    key: dg.AssetKey
    params: tuple[str, ...]
    indicator: str | None  # the indicators table's column the sweep reads (None: prices only)
    best_key: str  # metadata key of the best set ("best_pair", ...)
    count_key: str  # metadata key of the number of sets ("pairs", ...)
    plot_key: str
    plot: Callable[[pl.DataFrame], str]
    price_columns: tuple[str, ...] = ()  # of the cleaned prices, beyond open and close


def _read_cleaned(warehouse: WarehouseReader, end: dt.date | None, extra: Sequence[str] = ()) -> pl.DataFrame:
    if not warehouse.has_table("prices", "cleaned_prices"):
        raise dg.Failure(description="no prices.cleaned_prices in the warehouse yet: run pipeline_job first")
    sql = f"select {', '.join(('session', 'symbol', 'open', 'close', *extra))} from prices.cleaned_prices"
    cleaned = warehouse.query(sql + (" where session <= ?" if end else ""), [end] if end else None)
    if cleaned.height == 0:
        raise dg.Failure(description="prices.cleaned_prices holds no bar (in the window): nothing to sweep")
    return cleaned


def _read_indicator(
    warehouse: WarehouseReader, column: str, start: dt.date | None, end: dt.date | None
) -> pl.DataFrame:
    """(symbol, session, column) of the indicators table in the window (earlier rows never trade)."""
    if not warehouse.has_table("indicators", "indicators"):
        raise dg.Failure(
            description=f"no indicators.indicators in the warehouse yet (the sweep reads its {column}): run "
            "pipeline_job first"
        )
    bounds = [("session >= ?", start), ("session <= ?", end)]
    where = [(clause, value) for clause, value in bounds if value is not None]
    sql = f"select symbol, session, {column} from indicators.indicators"  # noqa: S608 (a module constant)
    if where:
        sql += " where " + " and ".join(clause for clause, _ in where)
    return warehouse.query(sql, [value for _, value in where] or None)


def _label(params: Sequence[str], row: dict[str, Any]) -> str:
    return " / ".join(f"{p} {'off' if row[p] is None else format(row[p], 'g')}" for p in params)


def _sweep_output(
    context: dg.AssetExecutionContext,
    kind: _Kind,
    config: SweepWindowConfig,
    sets: int,
    run: Run,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
) -> dg.Output[pl.DataFrame]:
    """The body every sweep asset shares: read, sweep, rank by Sharpe, the metadata page."""
    from trading_dagster.domain.calendar import nyse_calendar

    began = time.perf_counter()
    start, end = _date(config.start, "start"), _date(config.end, "end")
    settings, conventions = sweep_settings(config, trading_config, backtest_book)
    cleaned = _read_cleaned(warehouse, end, kind.price_columns)
    indicators = None if kind.indicator is None else _read_indicator(warehouse, kind.indicator, start, end)
    loaded = time.perf_counter()
    try:
        result, extra = run(cleaned, indicators, list(nyse_calendar().sessions), start, end, settings)
    except UnsupportedSetting as error:  # a notional / size_on / shares the kernel refuses
        raise dg.Failure(description=f"The sweep cannot run these settings: {error}") from error
    except ValueError as error:  # an empty window, bars outside the calendar
        raise dg.Failure(description=f"The sweep failed: {error}") from error
    swept = time.perf_counter()
    table = rank_by_sharpe(result.stats, kind.params)
    best = table.row(0, named=True)
    context.log.info(f"{sets} sets swept in {swept - loaded:.2f} s; best {_label(kind.params, best)}")
    sessions = result.sessions
    return dg.Output(
        table,
        metadata={
            kind.best_key: f"{_label(kind.params, best)}: Sharpe {_fmt(best['sharpe'], '.3f')}, "
            f"return {_fmt(best['total_return'], '.2%')}, max drawdown {_fmt(best['max_drawdown'], '.2%')}",
            "best_sharpe": dg.MetadataValue.float(
                float(best["sharpe"]) if best["sharpe"] is not None else math.nan
            ),
            "top_10": _table(table.head(TOP), sweep_columns(kind.params)),
            kind.plot_key: dg.MetadataValue.md(kind.plot(table)),
            kind.count_key: dg.MetadataValue.int(sets),
            "sessions": f"{sessions[0]} .. {sessions[-1]} ({len(sessions)} sessions)",
            "session_count": dg.MetadataValue.int(len(sessions)),
            "symbols": dg.MetadataValue.int(cleaned["symbol"].n_unique()),
            "elapsed_seconds": dg.MetadataValue.float(round(swept - began, 3)),
            "sweep_seconds": dg.MetadataValue.float(round(swept - loaded, 3)),
            "conventions": dg.MetadataValue.md(f"Swept with {conventions}."),
            "settings": dg.MetadataValue.json(
                {k: settings[k] for k in (*_ARGUMENTS, "tie_band_pct") if k in settings}
            ),
            **extra,
        },
    )


def _indicator_run(
    column: str,
    sweep: Callable[..., SweepResult],
    grid: Sequence[Any],
    price_columns: Sequence[str] = (),
    **grid_kwargs: Any,
) -> Run:
    """A `Run` of a threshold sweep: pack the bars with the indicators table's `column` (and `price_columns`
    of the prices), sweep `grid` (and `grid_kwargs`), and say how many of the window's bars have a value (an
    indicators table behind the prices shows there)."""

    def run(cleaned, indicators, calendar, start, end, settings):
        data = pack_indicator_bars(cleaned, indicators, calendar, [column], start, end, price_columns)
        in_window = data.bars.row >= 0
        valued = int((~pl.Series(data.values[column][in_window]).is_nan()).sum())
        coverage = f"{valued:,} of the window's {int(in_window.sum()):,} bars have a {column} value"
        return sweep(data, grid, **grid_kwargs, **settings), {"indicator_coverage": coverage}

    return run


def _sma_plot(table: pl.DataFrame) -> str:
    return sharpe_heatmap_markdown(table)


def _rsi_plot(table: pl.DataFrame) -> str:
    return sharpe_heatmap_markdown(
        table,
        "lower",
        "upper",
        row_label="lower bound (buy below)",
        col_label="upper bound (sell above)",
        title="Sharpe by RSI bounds",
    )


def _dip_plot(table: pl.DataFrame) -> str:
    return sharpe_by_value_markdown(
        table, "threshold_pct", label="threshold % below the 52-week high", title="Sharpe by dip threshold"
    )


def _dip_exits_plot(table: pl.DataFrame) -> str:
    """Thresholds down, the exit settings (take-profit / stop-loss, "-": off) across."""
    off = pl.lit("-")
    exits = table.with_columns(
        exits=pl.concat_str(
            pl.lit("tp "),
            pl.col("take_profit_pct").map_elements(lambda x: format(x, "g"), pl.String).fill_null(off),
            pl.lit(" / sl "),
            pl.col("stop_loss_pct").map_elements(lambda x: format(x, "g"), pl.String).fill_null(off),
        )
    )
    return sharpe_heatmap_markdown(
        exits,
        "threshold_pct",
        "exits",
        row_label="threshold % below the 52-week high",
        col_label="take-profit % / stop-loss %",
        title="Sharpe by dip threshold and exits",
    )


SMA_KIND = _Kind(SMA_SWEEP, SMA_PARAMS, None, "best_pair", "pairs", "sharpe_heatmap", _sma_plot)
RSI_KIND = _Kind(RSI_SWEEP, RSI_PARAMS, RSI_COLUMN, "best_bounds", "bound_pairs", "sharpe_heatmap", _rsi_plot)
DIP_KIND = _Kind(
    DIP_SWEEP, DIP_PARAMS, DIP_COLUMN, "best_threshold", "thresholds", "sharpe_by_threshold", _dip_plot
)
DIP_EXITS_KIND = dataclasses.replace(
    DIP_KIND,
    params=(*DIP_PARAMS, "take_profit_pct", "stop_loss_pct"),
    plot=_dip_exits_plot,
    price_columns=("high", "low"),
)


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
    pairs = sma_grid(config.fast, config.slow)
    if not pairs:
        raise dg.Failure(
            description=f"no pair with 0 < fast < slow in fast={config.fast}, slow={config.slow}"
        )

    def run(cleaned, _indicators, calendar, start, end, settings):
        return sweep_sma_cross(cleaned, calendar, pairs, start=start, end=end, **settings), {}

    return _sweep_output(context, SMA_KIND, config, len(pairs), run, warehouse, trading_config, backtest_book)


@dg.asset(
    key=RSI_SWEEP,
    group_name=RESEARCH_GROUP,
    kinds={"duckdb", "polars"},
    deps=[INDICATORS, CLEANED_PRICES],
    description="RSI-bounds parameter sweep: one backtest of the rsi strategy (buy when rsi_14 < lower, sell when "
    "rsi_14 > upper) per (lower, upper) pair of the configured grid (5 x 5 by default), rsi_14 read from the "
    "indicators table, over every symbol and session of the cleaned prices, with the backtest's costs and the "
    "reference conventions; one row per pair ranked by Sharpe, the top 10 and a Sharpe heatmap in the "
    "metadata. Launch sweep_job.",
)
def rsi_sweep(
    context: dg.AssetExecutionContext,
    config: RsiSweepConfig,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
) -> dg.Output[pl.DataFrame]:
    bounds = rsi_grid(config.lower, config.upper)
    if not bounds:
        raise dg.Failure(
            description=f"no pair with 0 < lower < upper < 100 in lower={config.lower}, upper={config.upper}"
        )
    run = _indicator_run(RSI_COLUMN, sweep_rsi, bounds)
    return _sweep_output(
        context, RSI_KIND, config, len(bounds), run, warehouse, trading_config, backtest_book
    )


@dg.asset(
    key=DIP_SWEEP,
    group_name=RESEARCH_GROUP,
    kinds={"duckdb", "polars"},
    deps=[INDICATORS, CLEANED_PRICES],
    description="52-week-dip threshold sweep: one backtest of the dip_52w strategy (buy when the close is at "
    "least threshold_pct below the 52-week high; no sell signal, so held to the end) per configured "
    "threshold (5..30 step 2.5 by default), pct_below_high_52w read from the indicators table, with the "
    "backtest's costs and the reference conventions; one row per threshold ranked by Sharpe, the top 10 and "
    "the Sharpe by threshold in the metadata. Launch sweep_job.",
)
def dip_sweep(
    context: dg.AssetExecutionContext,
    config: DipSweepConfig,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
) -> dg.Output[pl.DataFrame]:
    thresholds = [float(t) for t in config.thresholds]
    bad = [t for t in thresholds if not 0 < t < 100]
    if not thresholds or bad:
        raise dg.Failure(description=f"thresholds must be in (0, 100), got {bad or 'none'}")
    takes, stops = list(config.take_profit_pct), list(config.stop_loss_pct)
    if not (takes or stops):
        run = _indicator_run(DIP_COLUMN, sweep_dip, thresholds)
        return _sweep_output(
            context, DIP_KIND, config, len(thresholds), run, warehouse, trading_config, backtest_book
        )
    bad = [x for x in stops if not 0 < x < 100] + [x for x in takes if not x > 0]
    if bad:
        raise dg.Failure(description=f"stop_loss_pct must be in (0, 100) and take_profit_pct > 0, got {bad}")
    grid = {"take_profit_pct": [None, *takes], "stop_loss_pct": [None, *stops]}  # each leg also off
    run = _indicator_run(DIP_COLUMN, sweep_dip, thresholds, ("high", "low"), **grid)
    sets = len(thresholds) * (len(takes) + 1) * (len(stops) + 1)
    return _sweep_output(context, DIP_EXITS_KIND, config, sets, run, warehouse, trading_config, backtest_book)


RESEARCH_ASSETS = [sma_sweep, rsi_sweep, dip_sweep]

sweep_job = dg.define_asset_job(
    "sweep_job",
    selection=[SMA_SWEEP, RSI_SWEEP, DIP_SWEEP],
    description="The parameter sweeps (research/sma_sweep, research/rsi_sweep, research/dip_sweep): set each "
    "one's grid, window and money in the launchpad's config (deselect the sweeps not wanted); they read the "
    "cleaned prices and the indicators and write research.sma_sweep, research.rsi_sweep and research.dip_sweep.",
    # it writes the warehouse: queued behind the other writers (DuckDB: one writing process at a time)
    tags={WRITER_TAG: "research"},
)
