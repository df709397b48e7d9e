"""The ML-refined signal's model (issue 11, decision 0007 "The ML-refined signal"): one model per training period.

`research/signal_model` is partitioned by training period (a calendar year by default, `model_partitions`):
the partition "2015" reads the indicators table from the warehouse (read-only, as the portal does) for the
`train_years` before 2015-01-01 and nothing later, builds the features and labels of `research/ml.py`, keeps
the rows whose label is known before the period's first session, trains the configured estimator (seeded) and
writes

    models/signal_model/<period>/model.pkl       the pickled SignalModel (research/ml.py `model_from_bytes`)
    models/signal_model/<period>/metadata.json   window, rows, features, estimator and params, metrics, sha256

to the raw store (the local directory or the bucket of `raw_store`). The same data and config give the same
bytes (the sha256 in the metadata). The signals asset's `ml_filter` strategies load the model of each
session's period (`ml.model_key(MODEL_NAME, ml.period_of(session))`).

`research/ml_evaluation` (not partitioned) scores every period that has a model on that period's own rows
(out of sample: the model never saw them) and writes `research.ml_evaluation` (precision, recall, AUC and the
base rate per period) with a per-period plot.

Resources: `warehouse` (WarehouseReader), `raw_store` (a RawStoreResource), and for ml_evaluation's table the
`io_manager` (the warehouse IO manager). `model_job` (partitioned) and `ml_evaluation_job` launch them.
"""

import datetime as dt
import json
import math
import time
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from trading_dagster.assets.portal import WarehouseReader, _table
from trading_dagster.assets.research import SweepWindowConfig, _date, _fmt, sweep_settings
from trading_dagster.partitions import configured_last_session, session_calendar
from trading_dagster.research import ml
from trading_dagster.resources.configured import BacktestBookResource, RawStoreResource, TradingConfigResource
from trading_dagster.resources.writer_lock import WRITER_TAG

RESEARCH_GROUP = "research"
SIGNAL_MODEL = dg.AssetKey([RESEARCH_GROUP, "signal_model"])
ML_EVALUATION = dg.AssetKey([RESEARCH_GROUP, "ml_evaluation"])
ML_FILTER_COMPARISON = dg.AssetKey([RESEARCH_GROUP, "ml_filter_comparison"])
INDICATORS = dg.AssetKey(["indicators", "indicators"])
MODEL_NAME = "signal_model"
FIRST_MODEL_YEAR = 2010
"""The first period: the sample starts 2008-01-02 and every feature exists after ~252 bars (the 52-week high),
so 2009 is the first year of complete feature rows and the 2010 model has a year of training data."""

EVALUATION_COLUMNS = [
    "period", "rows", "base_rate", "precision", "recall", "accuracy", "auc", "predicted_positive_rate",
    "validation_precision", "validation_auc", "training_rows", "sha256",
]
EVALUATION_SCHEMA: dict[str, pl.DataType] = {
    "period": pl.Utf8(),
    "rows": pl.Int64(),
    **{c: pl.Float64() for c in EVALUATION_COLUMNS[2:10]},
    "training_rows": pl.Int64(),
    "sha256": pl.Utf8(),
}


def model_partitions(
    retrain: ml.Retrain = "yearly", last_session: dt.date | None = None, first_year: int = FIRST_MODEL_YEAR
) -> dg.TimeWindowPartitionsDefinition:
    """Training periods from `first_year` to the period holding `last_session` (default: the sessions
    partitions' end, `TRADING_DAGSTER_LAST_SESSION`; today when unset). Keys "YYYY" (yearly) or "YYYY-MM"."""
    if retrain not in ("yearly", "monthly"):
        raise ValueError(f"retrain must be 'yearly' or 'monthly', got {retrain!r}")
    last = last_session if last_session is not None else configured_last_session()
    yearly = retrain == "yearly"
    bounds: dict[str, Any]
    if last is None:
        bounds = {"end_offset": 1}  # the current period is a partition as soon as it starts
    else:  # Dagster keeps the partitions whose window ends by `end`: the day after the last one's last day
        following = ml.period_bounds(ml.period_of(last, retrain)).end + dt.timedelta(days=1)
        bounds = {"end": dt.datetime(following.year, following.month, following.day)}
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 1 1 *" if yearly else "0 0 1 * *",
        fmt="%Y" if yearly else "%Y-%m",
        start=f"{first_year}" if yearly else f"{first_year}-01",
        **bounds,
    )


class SignalModelConfig(dg.Config):
    horizon: int = Field(default=ml.DEFAULT_HORIZON, description="label: close this many sessions later > close")
    train_years: int = Field(default=ml.DEFAULT_TRAIN_YEARS, description="years of rows before the period")
    max_rows: int = Field(default=ml.DEFAULT_MAX_ROWS, description="rows sampled (seeded) from the window")
    estimator: str = Field(default="mlp", description=f"one of {sorted(ml.ESTIMATORS)}")
    seed: int = Field(default=0, description="the sampling and estimator seed")
    hidden_layer_sizes: list[int] = Field(default=[32, 16], description="mlp: neurons per hidden layer")
    max_iter: int = Field(default=200, description="the estimator's iteration limit")
    validation_fraction: float = Field(
        default=ml.DEFAULT_VALIDATION_FRACTION, description="last share of the window's sessions held out"
    )

    def params(self) -> dict[str, Any]:
        if self.estimator == "mlp":
            return {"hidden_layer_sizes": list(self.hidden_layer_sizes), "max_iter": self.max_iter}
        return {"max_iter": self.max_iter}


def _read_indicators(warehouse: WarehouseReader, start: dt.date, before: dt.date) -> pl.DataFrame:
    """The indicators table's rows with start <= session < before, the columns the features need."""
    if not warehouse.has_table("indicators", "indicators"):
        raise dg.Failure(description="no indicators.indicators in the warehouse yet: run pipeline_job first")
    columns = warehouse.query("select column_name from information_schema.columns where table_schema = "
                              "'indicators' and table_name = 'indicators'")["column_name"].to_list()
    missing = [c for c in ml.INDICATOR_INPUTS if c not in columns]
    if missing:
        raise dg.Failure(
            description=f"indicators.indicators lacks the feature columns {missing}: re-materialize "
            "indicators/indicators (pipeline_job) with this version, which computes them"
        )
    select = ", ".join(f'"{c}"' for c in ml.INDICATOR_INPUTS)
    return warehouse.query(
        f"select {select} from indicators.indicators where session >= ? and session < ? order by session, symbol",
        [start, before],
    )


def _finite(value: Any) -> Any:
    """JSON without NaN (metadata.json is read by other tools): NaN/inf -> None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def metadata_json(metadata: dict[str, Any]) -> bytes:
    return (json.dumps(_finite(metadata), indent=2, sort_keys=True) + "\n").encode()


def _num(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value) if value is not None else math.nan)


@dg.asset(
    key=SIGNAL_MODEL,
    group_name=RESEARCH_GROUP,
    deps=[INDICATORS],
    partitions_def=model_partitions(),
    # one model per run: each period's model is independent of the others (a backfill of years = one run each)
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    kinds={"scikitlearn", "polars"},
    description="The ML-refined signal's model for one training period (decision 0007): trained on the "
    "indicators table's rows of the train_years before the period whose label (close `horizon` sessions later "
    "above the close) is known before it starts; writes models/signal_model/<period>/model.pkl and "
    "metadata.json to the raw store. Launch model_job for a period.",
)
def signal_model(
    context: dg.AssetExecutionContext,
    config: SignalModelConfig,
    warehouse: WarehouseReader,
    raw_store: RawStoreResource,
) -> dg.MaterializeResult:
    began = time.perf_counter()
    period = ml.period_bounds(context.partition_key)
    if config.estimator not in ml.ESTIMATORS:
        raise dg.Failure(description=f"estimator {config.estimator!r} is not one of {sorted(ml.ESTIMATORS)}")
    calendar = session_calendar().sessions
    window_start = ml.years_before(period.start, config.train_years)
    indicators = _read_indicators(warehouse, window_start, period.start)  # nothing on or after the period
    if indicators.height == 0:
        raise dg.Failure(
            description=f"indicators.indicators holds no row in {window_start}..{period.start} (the "
            f"{config.train_years} years before period {period.key}): materialize indicators/indicators for it"
        )
    if indicators["volume_ratio_20"].null_count() == indicators.height:
        raise dg.Failure(
            description="volume_ratio_20 is null in every row of the window: the indicators were computed "
            "without volume (the indicators asset must read the cleaned prices' volume column) or before this "
            "version; re-materialize indicators/indicators"
        )
    loaded = time.perf_counter()
    features = ml.feature_frame(indicators)
    label_frame = ml.labels(indicators, calendar, config.horizon)
    rows = ml.training_rows(features, label_frame, period.start, config.horizon, config.train_years, calendar)
    try:
        trained = ml.train_model(
            rows,
            estimator=config.estimator,
            seed=config.seed,
            params=config.params(),
            max_rows=config.max_rows,
            horizon=config.horizon,
            validation_fraction=config.validation_fraction,
            extra_metadata={
                "model_name": MODEL_NAME,
                "period": period.key,
                "period_start": str(period.start),
                "period_end": str(period.end),
                "train_years": config.train_years,
                "window_start": str(window_start),
            },
        )
    except ValueError as error:
        raise dg.Failure(description=f"period {period.key}: cannot train: {error}") from error
    trained_at = time.perf_counter()
    store = raw_store.get()
    prefix = ml.model_key(MODEL_NAME, period.key)
    model_at = store.put_artifact(prefix + ml.MODEL_FILE, trained.data)
    meta_at = store.put_artifact(prefix + ml.METADATA_FILE, metadata_json(trained.metadata), "application/json")
    meta, validation = trained.metadata, trained.metadata["validation"]
    window = meta["training_window"]
    context.log.info(
        f"period {period.key}: {meta['fit_window']['rows']:,} rows fit in {trained_at - loaded:.1f} s, validation "
        f"precision {validation['precision']:.3f} (base rate {validation['base_rate']:.3f}); {model_at}"
    )
    return dg.MaterializeResult(
        metadata={
            "period": period.key,
            "training_window": f"{window.get('first_session')} .. {window.get('last_session')} (labels up to "
            f"{window.get('last_label_session')}, before {period.start})",
            "rows": dg.MetadataValue.int(window["rows"]),
            "sampled_rows": dg.MetadataValue.int(meta["sampled_rows"]),
            "fit_rows": dg.MetadataValue.int(meta["fit_window"]["rows"]),
            "validation_rows": dg.MetadataValue.int(meta["validation_window"]["rows"]),
            "features": dg.MetadataValue.json(list(ml.FEATURES)),
            "estimator": config.estimator,
            "params": dg.MetadataValue.json(_finite(meta["params"])),
            "horizon": dg.MetadataValue.int(config.horizon),
            "validation_precision": _num(validation["precision"]),
            "validation_recall": _num(validation["recall"]),
            "validation_auc": _num(validation["auc"]),
            "validation_base_rate": _num(validation["base_rate"]),
            "in_sample_precision": _num(meta["in_sample"]["precision"]),
            "model_location": dg.MetadataValue.path(model_at),
            "metadata_location": dg.MetadataValue.path(meta_at),
            "artifact_key": prefix,
            "sha256": meta["sha256"],
            "elapsed_seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
            "train_seconds": dg.MetadataValue.float(round(trained_at - loaded, 3)),
        }
    )


def stored_models(store: Any) -> dict[str, tuple[ml.SklearnSignalModel, dict[str, Any]]]:
    """{period: (model, its metadata.json)} of every period that has a model in the raw store (sha256-checked);
    a dg.Failure when there is none."""
    models: dict[str, tuple[ml.SklearnSignalModel, dict[str, Any]]] = {}
    for key in model_partitions().get_partition_keys():
        prefix = ml.model_key(MODEL_NAME, key)
        if not store.has_artifact(prefix + ml.METADATA_FILE):
            continue
        meta = json.loads(store.get_artifact(prefix + ml.METADATA_FILE))
        models[key] = (ml.model_from_bytes(store.get_artifact(prefix + ml.MODEL_FILE), meta["sha256"]), meta)
    if not models:
        raise dg.Failure(description="no signal model in the raw store yet: launch model_job for a period first")
    return models


def evaluation_plot_markdown(table: pl.DataFrame) -> str:
    """Out-of-sample precision and recall per period against the base rate, as a markdown image."""
    from trading_dagster.reporting import _png, _pyplot, data_uri

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * table.height, 3.2))
    x = list(range(table.height))
    for column, marker in (("precision", "o"), ("recall", "s"), ("base_rate", "_"), ("auc", "^")):
        ax.plot(x, table[column].fill_null(float("nan")).to_list(), marker=marker, label=column)
    ax.set_xticks(x, table["period"].to_list())
    ax.set_ylim(0, 1)
    ax.set_title("Out-of-sample figures per period")
    ax.legend(loc="lower right", fontsize="small")
    return f"![Out-of-sample precision and recall]({data_uri(_png(fig))})"


@dg.asset(
    key=ML_EVALUATION,
    group_name=RESEARCH_GROUP,
    deps=[SIGNAL_MODEL],
    kinds={"duckdb", "polars"},
    description="Out-of-sample figures of every period's signal model: precision, recall, accuracy, AUC and "
    "the base rate on the period's own rows (labels known within the data), one row per period, with a plot.",
)
def ml_evaluation(
    context: dg.AssetExecutionContext, warehouse: WarehouseReader, raw_store: RawStoreResource
) -> dg.Output[pl.DataFrame]:
    began = time.perf_counter()
    store = raw_store.get()
    calendar = session_calendar().sessions
    models = stored_models(store)
    first = min(ml.period_bounds(k).start for k in models)
    last = max(ml.period_bounds(k).end for k in models)
    longest = max(int(meta["horizon"]) for _, meta in models.values())
    after = session_calendar().before(last + dt.timedelta(days=1), 1)  # the last session of the last period
    label_end = session_calendar().offset(after[0], longest) if after else None
    until = (label_end or last) + dt.timedelta(days=1)  # the rows the last period's labels need
    indicators = _read_indicators(warehouse, first, until)
    features = ml.feature_frame(indicators)
    label_frames: dict[int, pl.DataFrame] = {}
    records = []
    for key, (model, meta) in sorted(models.items()):
        horizon = int(meta["horizon"])
        if horizon not in label_frames:
            label_frames[horizon] = ml.labels(indicators, calendar, horizon)
        rows = ml.period_rows(features, label_frames[horizon], ml.period_bounds(key))
        figures = ml.evaluate(model, rows)
        records.append(
            {
                "period": key,
                **figures,
                "validation_precision": meta["validation"]["precision"],
                "validation_auc": meta["validation"]["auc"],
                "training_rows": meta["training_window"]["rows"],
                "sha256": meta["sha256"],
            }
        )
    table = pl.DataFrame(records).select(EVALUATION_COLUMNS).cast(EVALUATION_SCHEMA)  # type: ignore[arg-type]
    table = table.with_columns(pl.col(pl.Float64).fill_nan(None))
    context.log.info(f"{table.height} periods evaluated in {time.perf_counter() - began:.1f} s")
    return dg.Output(
        table,
        metadata={
            "periods": _table(table.drop("sha256"), [c for c in EVALUATION_COLUMNS if c != "sha256"]),
            "plot": dg.MetadataValue.md(evaluation_plot_markdown(table)),
            "period_count": dg.MetadataValue.int(table.height),
            "elapsed_seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
        },
    )


class FilterComparisonConfig(SweepWindowConfig):
    base: str | None = Field(
        default=None,
        description="the configured strategy whose buys the model filters; default: the first ml_filter's base",
    )
    min_probability: float | None = Field(
        default=None, description="the filter's floor; default: that ml_filter's min_probability, else 0.55"
    )


DEFAULT_MIN_PROBABILITY = 0.55


def comparison_plot_markdown(table: pl.DataFrame) -> str:
    """Sharpe and total return per window, unfiltered against filtered, as a markdown image."""
    from trading_dagster.reporting import _png, _pyplot, data_uri

    plt = _pyplot()
    windows = list(dict.fromkeys(table["window"].to_list()))
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 0.9 * len(windows), 3.2))
    x = np.arange(len(windows))
    for ax, column in zip(axes, ("sharpe", "total_return"), strict=True):
        for shift, variant in ((-0.2, "unfiltered"), (0.2, "filtered")):
            rows = table.filter(pl.col("variant") == variant)
            ax.bar(x + shift, rows[column].fill_null(float("nan")).to_list(), width=0.4, label=variant)
        ax.set_xticks(x, windows, rotation=45, fontsize="small")
        ax.set_title(column)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return f"![Filtered against unfiltered]({data_uri(_png(fig))})"


@dg.asset(
    key=ML_FILTER_COMPARISON,
    group_name=RESEARCH_GROUP,
    deps=[SIGNAL_MODEL, INDICATORS, dg.AssetKey(["prices", "cleaned_prices"])],
    kinds={"duckdb", "polars"},
    description="The ML-filtered strategy against its base on the same sessions: for every period with a model, "
    "and over all of them, the base strategy's backtest with all its buys and with only the buys the period's "
    "model backs (probability >= min_probability; sells pass), reference conventions and the backtest's bps "
    "costs, both starting flat. One row per window and variant: buy signals, orders, trades, P&L, return, "
    "Sharpe, max drawdown, exposure; a plot.",
)
def ml_filter_comparison(
    context: dg.AssetExecutionContext,
    config: FilterComparisonConfig,
    warehouse: WarehouseReader,
    raw_store: RawStoreResource,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
) -> dg.Output[pl.DataFrame]:
    from trading_dagster.domain.strategies import required_columns
    from trading_dagster.research.ml_compare import COMPARISON_SCHEMA, compare_filter

    began = time.perf_counter()
    specs = trading_config.strategy_specs()
    refiners = [s for s in specs if s.kind == "ml_filter"]
    base_name = config.base or (refiners[0].refines if refiners else None)
    if base_name is None:
        raise dg.Failure(description="no ml_filter is configured: name the strategy to filter in the config (base)")
    bases = [s for s in specs if s.name == base_name and s.kind != "ml_filter"]
    if not bases:
        raise dg.Failure(
            description=f"base {base_name!r} is not a configured signal strategy; configured: "
            f"{[s.name for s in specs if s.kind != 'ml_filter']}"
        )
    refiner = next((s for s in refiners if s.refines == base_name), None)
    floor = config.min_probability
    if floor is None:
        floor = refiner.params["min_probability"] if refiner else DEFAULT_MIN_PROBABILITY
    settings, conventions = sweep_settings(config, trading_config, backtest_book)
    start, end = _date(config.start, "start"), _date(config.end, "end")
    models = stored_models(raw_store.get())
    calendar = session_calendar().sessions
    periods = {k: ml.period_bounds(k) for k in models}
    first = min(p.start for p in periods.values()) if start is None else start
    last = max(p.end for p in periods.values()) if end is None else end
    columns = list(dict.fromkeys([*ml.INDICATOR_INPUTS, *required_columns(bases[0])]))
    have = set(
        warehouse.query(
            "select column_name from information_schema.columns where table_schema = 'indicators' and "
            "table_name = 'indicators'"
        )["column_name"].to_list()
    )
    missing = [c for c in columns if c not in have]
    if missing:
        raise dg.Failure(description=f"indicators.indicators lacks {missing}: re-materialize indicators/indicators")
    before = session_calendar().previous_session(first) or first
    select = ", ".join(f'"{c}"' for c in columns)
    indicators = warehouse.query(
        f"select {select} from indicators.indicators where session between ? and ? order by session, symbol",
        [before, last],
    )
    cleaned = warehouse.query(
        "select session, symbol, open, close from prices.cleaned_prices where session between ? and ?",
        [first, last],
    )
    if cleaned.height == 0 or indicators.height == 0:
        raise dg.Failure(description=f"no cleaned prices or indicators in {first} .. {last}")
    data_first, data_last = cleaned["session"].min(), cleaned["session"].max()
    windows = [
        (key, max(p.start, first, data_first), min(p.end, last, data_last))
        for key, p in sorted(periods.items())
        if max(p.start, first, data_first) <= min(p.end, last, data_last)
    ]
    if not windows:
        raise dg.Failure(description=f"no model period overlaps the data and the window {first} .. {last}")
    if len(windows) > 1:
        windows.append(("all", windows[0][1], windows[-1][2]))
    probabilities = pl.concat(
        [
            ml.score(models[key][0], indicators.filter(pl.col("session").is_between(periods[key].start, periods[key].end)))
            for key in periods
        ]
    )
    loaded = time.perf_counter()
    table = compare_filter(cleaned, indicators, probabilities, calendar, bases[0], floor, windows, **settings)
    table = table.with_columns(pl.col(pl.Float64).fill_nan(None))
    overall = table.filter(pl.col("window") == windows[-1][0])
    by = {r["variant"]: r for r in overall.iter_rows(named=True)}
    summary = (
        f"{base_name} over {windows[-1][1]} .. {windows[-1][2]}: filtered (p >= {floor:g}) Sharpe "
        f"{_fmt(by['filtered']['sharpe'], '.3f')}, return {_fmt(by['filtered']['total_return'], '.2%')}, "
        f"{by['filtered']['trades']} trades; unfiltered Sharpe {_fmt(by['unfiltered']['sharpe'], '.3f')}, "
        f"return {_fmt(by['unfiltered']['total_return'], '.2%')}, {by['unfiltered']['trades']} trades"
    )
    context.log.info(summary)
    return dg.Output(
        table,
        metadata={
            "summary": summary,
            "windows": _table(table.with_columns(pl.col(pl.Date).cast(pl.Utf8)), list(COMPARISON_SCHEMA)),
            "plot": dg.MetadataValue.md(comparison_plot_markdown(table)),
            "base": base_name,
            "min_probability": dg.MetadataValue.float(float(floor)),
            "conventions": dg.MetadataValue.md(f"Backtested with {conventions}."),
            "elapsed_seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
            "backtest_seconds": dg.MetadataValue.float(round(time.perf_counter() - loaded, 3)),
        },
    )


ML_ASSETS = [signal_model, ml_evaluation, ml_filter_comparison]

model_job = dg.define_asset_job(
    "model_job",
    selection=[SIGNAL_MODEL],
    partitions_def=signal_model.partitions_def,
    description="Train the signal model of a training period (research/signal_model): reads indicators.indicators "
    "up to the period's start and writes models/signal_model/<period>/ to the raw store.",
)

ml_evaluation_job = dg.define_asset_job(
    "ml_evaluation_job",
    selection=[ML_EVALUATION, ML_FILTER_COMPARISON],
    description="Out-of-sample precision and recall of every period's signal model (research.ml_evaluation), and "
    "the filtered against the unfiltered strategy on the same sessions (research.ml_filter_comparison).",
    tags={WRITER_TAG: "research"},  # it writes the warehouse: queued behind the other writers
)
