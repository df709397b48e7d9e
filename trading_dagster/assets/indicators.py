"""indicators/indicators and signals/signals."""

import datetime as dt
import json
from collections.abc import Sequence

import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    blocking,
    frame_metadata,
    gate_pending,
    gated_checks,
    gx_suite,
    partitioned,
    table_preview,
    tables,
)
from trading_dagster.assets.prices import CLEANED, PRICE_BREAKS
from trading_dagster.checks import gx_suites, rules
from trading_dagster.domain import indicators as ind
from trading_dagster.domain import universe
from trading_dagster.domain.quality import BREAK_HOLD_SESSIONS, hold_out_unexplained_breaks
from trading_dagster.domain.strategies import (
    SMA_PERIODS,
    StrategySpec,
    generate_signals,
    required_columns,
    sma_periods,
)
from trading_dagster.partitions import (
    lookback_mapping,
    session_calendar,
    sessions_partitions_def,
    window_sessions,
)
from trading_dagster.resources.configured import (
    CorporateActionsResource,
    QualityGateResource,
    RawStoreResource,
    TradingConfigResource,
)
from trading_dagster.resources.security_master import SecurityMasterResource

INDICATORS = ["indicators", "indicators"]
SIGNALS = ["signals", "signals"]
SIGNAL_COLUMNS = {
    "symbol": "symbol", "strategy": "strategy", "side": "side", "strength": "strength", "reason": "reason",
}


class LookbackIncomplete(RuntimeError):
    """Upstream partitions inside a lookback window are missing: backfill them first."""


def history_start(raw_store: RawStoreResource, needed: list) -> "dt.date | None":
    """Where the data's history begins, as far as this lookback is concerned: the first raw session.

    The raw store is the record of what history exists. If it holds a session at or before the first
    needed one, the whole lookback must be there; otherwise history starts at its first session inside the
    lookback (a user's file that begins in 2015, or the first session of all), and sessions before that
    are not missing, they never existed.
    """
    store = raw_store.get()
    first = store.first_session()
    if first is not None and first <= needed[0]:
        return needed[0]
    inside = store.list_sessions(start=needed[0], end=needed[-1])
    return inside[0] if inside else None


def check_lookback(
    first: "dt.date",
    last: "dt.date",
    raw_store: RawStoreResource,
    quality_gate: QualityGateResource,
    upstream: list[str],
    label: str,
) -> dict:
    """Fail when a partition of `upstream` for the sessions first..last (`first` clipped at the first
    partition) is missing; report a lookback cut short where history begins (indicators that need earlier
    bars are null there, never guessed).

    Present means judged: the upstream asset recorded verdicts for the session in the quality gate and none
    failed (`QualityGate.passed_sessions`), not that the loaded frame has rows on it. A data outage (a
    session the vendor delivered no usable bar for) is a materialized, judged partition with no rows, and
    must not stop every later run whose lookback reaches it (decision 0004, section 2). A session that
    failed a blocking check never gets here: the IO manager refused it before loading."""
    needed = session_calendar().between(max(first, sessions_partitions_def().start.date()), last)
    start = history_start(raw_store, needed)
    if start is None:
        raise LookbackIncomplete(f"{label}: the raw store holds no session in {needed[0]}..{needed[-1]}")
    asset = "/".join(upstream)
    present = set(quality_gate.get().passed_sessions(asset, max(start, needed[0]), needed[-1]))
    missing = [s for s in needed if s >= start and s not in present]
    if missing:
        raise LookbackIncomplete(
            f"{label}: upstream partitions missing inside the lookback: {len(missing)} sessions, "
            f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}. The raw store holds history "
            f"from {start} or earlier, so these are not the start of history: materialize {asset} for "
            f"{missing[0]}..{missing[-1]} first (a pipeline_job backfill of that range does), then re-run this. "
            "(Missing means no verdict in the quality gate: never materialized, or its run stopped before "
            "its checks.)"
        )
    truncated = sum(1 for s in needed if s < start)
    return {"lookback_sessions": len(needed), "lookback_truncated_sessions": truncated, "history_start": str(start)}


@dg.asset(
    key=INDICATORS,
    group_name="indicators",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="SMA 20/50/200, EMA 12/26, RSI 14 (Wilder), MACD 12/26/9, Bollinger 20/2, ATR 14, 52-week high "
    "and % below it, per symbol and session; null until the full lookback is there. Anchored so that any run "
    "gives the same values (docs/design.md).",
    ins={
        "cleaned_prices": dg.AssetIn(
            key=CLEANED,
            partition_mapping=lookback_mapping(ind.LOOKBACK_SESSIONS),
            metadata={"columns": ["symbol", "session", "high", "low", "close", "volume"]},  # what the indicators read
        )
    },
    check_specs=[
        blocking(INDICATORS, "indicators__in_bounds", "RSI in [0, 100], Bollinger bands ordered, no NaN"),
        blocking(INDICATORS, "indicators__unique_symbol_session", "one row per (symbol, session)"),
        gx_suite(INDICATORS, "indicators"),
    ],
    **partitioned(),
)
def indicators(
    context: dg.AssetExecutionContext,
    cleaned_prices: pl.DataFrame,
    raw_store: RawStoreResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
    security_master: SecurityMasterResource,
    trading_config: TradingConfigResource,
):
    sessions = window_sessions(context)
    # the SMA periods of the configured crosses beyond the table's 20/50/200 (a promoted sweep pair: 10/120)
    extra_sma = [n for n in sma_periods(trading_config.strategy_specs()) if n not in SMA_PERIODS]
    cal = session_calendar()
    need_from = ind.required_input_start(cal.sessions, sessions[0])
    lookback = check_lookback(need_from, sessions[-1], raw_store, quality_gate, CLEANED, "indicators")
    context.log.info(f"indicators: {cleaned_prices.height:,} input bars for {len(sessions)} sessions")
    # split-adjusted point in time when splits are on file (none for vendor-adjusted data: the same rows)
    actions = corporate_actions.get(need_from, sessions[-1])  # the splits that can touch this lookback
    # per (symbol, security) with a security master: a reused ticker's bars of its earlier company never enter
    # the indicators of the later one
    out = ind.compute_indicators_adjusted(
        cleaned_prices, actions, cal.sessions, sessions[0], sessions[-1], securities=security_master.get(sessions[-1]),
        extra_sma=extra_sma,
    )
    out = ind.with_sma_marker(out, extra_sma)
    context.log.info(f"indicators: {out.height:,} rows for {out['symbol'].n_unique() if out.height else 0} symbols")
    gate_pending(context, quality_gate, INDICATORS, sessions)
    yield dg.Output(
        out,
        metadata={
            **frame_metadata(out, sessions),
            **lookback,
            "extra_sma_periods": ", ".join(map(str, extra_sma)) or "none",
            **tables(context, sessions, preview=(out.tail(5), 5)),
        },
    )
    yield from gated_checks(
        context,
        quality_gate,
        INDICATORS,
        sessions,
        {
            "indicators__in_bounds": rules.indicators_in_bounds(out),
            "indicators__unique_symbol_session": rules.unique_keys(out, ["symbol", "session"]),
            "indicators__gx_suite": gx_suites.validate("indicators", out, sessions=sessions),
        },
    )


def signal_inputs(indicators: pl.LazyFrame | pl.DataFrame, specs: Sequence[StrategySpec]) -> pl.DataFrame:
    """The indicator columns the configured strategies read, collected (the input is lazy: the warehouse
    reads only these): symbol, session, the SMA marker, each strategy's `required_columns`, and the signal
    model's inputs when an ml_filter is configured. A column the table lacks is left for `generate_signals`
    to name."""
    lazy = indicators.lazy()
    have = lazy.collect_schema().names()
    wanted = {"symbol", "session", ind.SMA_MARKER}.union(*(required_columns(s) for s in specs))
    if any(s.kind == "ml_filter" for s in specs):
        from trading_dagster.research.ml import INDICATOR_INPUTS

        wanted.update(INDICATOR_INPUTS)
    return lazy.select([c for c in have if c in wanted]).collect()


def model_probabilities(
    raw_store: RawStoreResource, indicators: pl.DataFrame, sessions: list[dt.date]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The signal model's probability for every (symbol, session) of the window, each session scored by the
    model of its period (`research/signal_model`, trained on labels known before that period: decision 0007),
    and {period: sha256} of the models used. A period without a model fails naming the partition to run."""
    from trading_dagster.assets.ml import MODEL_NAME
    from trading_dagster.research import ml

    store = raw_store.get()
    current = indicators.filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    frames, used = [], {}
    for period in sorted({ml.period_of(d) for d in sessions}):
        prefix = ml.model_key(MODEL_NAME, period)
        if not store.has_artifact(prefix + ml.METADATA_FILE):
            raise dg.Failure(
                description=f"an ml_filter strategy needs the signal model of {period} "
                f"({store.artifact_location(prefix + ml.METADATA_FILE)}), which is not there: materialize research/signal_model "
                f"partition {period} (model_job) first",
                allow_retries=False,
            )
        meta = json.loads(store.get_artifact(prefix + ml.METADATA_FILE))
        model = ml.model_from_bytes(store.get_artifact(prefix + ml.MODEL_FILE), meta["sha256"])
        bounds = ml.period_bounds(period)
        frames.append(ml.score(model, current.filter(pl.col("session").is_between(bounds.start, bounds.end))))
        used[period] = meta["sha256"]
    return pl.concat(frames), used


@dg.asset(
    key=SIGNALS,
    group_name="signals",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="One row per session, symbol and strategy that fires: side, strength, reason. Strategies are "
    "configuration (trading_dagster.toml or the launchpad). With a liquidity rule ([universe] "
    "min_median_dollar_volume), a symbol whose median dollar volume on the session is below it (or has too "
    "little history) gets no buy signal; sells pass, so a position stays closable (domain/universe.py).",
    ins={
        # lazy inputs: the step reads the indicator columns its strategies need (`signal_inputs`), and the bars
        # only with the liquidity rule on
        "indicators": dg.AssetIn(key=INDICATORS, partition_mapping=lookback_mapping(1)),
        # the liquidity rule's median dollar volume, computed here from the bars (domain/universe.py says why)
        "cleaned_prices": dg.AssetIn(
            key=CLEANED,
            partition_mapping=lookback_mapping(universe.LIQUIDITY_LOOKBACK_SESSIONS),
            metadata={"columns": ["symbol", "session", "close", "volume"]},
        ),
        # unexplained splits confirmed in the last 52 weeks hold a symbol's new buys out (domain/quality.py)
        "price_breaks": dg.AssetIn(
            key=PRICE_BREAKS,
            partition_mapping=lookback_mapping(BREAK_HOLD_SESSIONS),
            metadata={"where": "kind = 'split'", "columns": ["symbol", "session", "kind"]},
        ),
    },
    check_specs=[
        blocking(SIGNALS, "signals__valid", "side buy|sell, strength in [0, 1], a reason"),
        blocking(SIGNALS, "signals__unique", "one row per (session, symbol, strategy)"),
        gx_suite(SIGNALS, "signals"),
    ],
    **partitioned(),
)
def signals(
    context: dg.AssetExecutionContext,
    indicators: pl.LazyFrame,
    cleaned_prices: pl.LazyFrame,
    price_breaks: pl.DataFrame,
    trading_config: TradingConfigResource,
    raw_store: RawStoreResource,
    quality_gate: QualityGateResource,
):
    sessions = window_sessions(context)
    cal = session_calendar()
    lookback = check_lookback(
        cal.previous_session(sessions[0]) or sessions[0], sessions[-1], raw_store, quality_gate, INDICATORS, "signals"
    )
    rule = trading_config.universe_rule()  # ValueError for a bad rule set in the launchpad, before any work
    specs = trading_config.strategy_specs()
    indicators = signal_inputs(indicators, specs)
    lacking = ind.sessions_without_sma(indicators, sma_periods(specs))
    if lacking:
        days = sorted({d for v in lacking.values() for d in v})
        raise dg.Failure(
            description=f"the strategies need SMA {', '.join(map(str, lacking))}, but the indicators of "
            f"{len(days)} session(s) from {days[0]} to {days[-1]} were computed without "
            f"{'it' if len(lacking) == 1 else 'them'} (a cross configured or promoted since): re-materialize "
            f"indicators/indicators for {days[0]} .. {days[-1]} (that asset alone: the signals of a window read "
            "the session before it), or run pipeline_job from the first session of the data",
            allow_retries=False,
        )
    models: dict[str, str] = {}
    probabilities = None
    if any(s.kind == "ml_filter" for s in specs):
        probabilities, models = model_probabilities(raw_store, indicators, sessions)
        context.log.info(f"signals: signal models {', '.join(f'{k} ({v[:8]})' for k, v in models.items())}")
    # the calendar's previous session: a cross never spans a data outage (a session without indicators)
    try:
        fired = generate_signals(indicators, specs, sessions[0], sessions[-1], cal.sessions, probabilities)
    except ValueError as exc:  # e.g. an SMA period the indicators of this window were computed without
        raise dg.Failure(description=f"signals for {sessions[0]} .. {sessions[-1]}: {exc}", allow_retries=False) from exc
    out, held = hold_out_unexplained_breaks(fired, price_breaks, cal.sessions)
    context.log.info(f"signals: {out.height:,} fired" + (f", {held.height:,} buys held out (unexplained split)" if held.height else ""))
    liquidity = pl.DataFrame(schema=universe.LIQUIDITY_SCHEMA)
    if rule.liquidity_rule_on:
        need_from = universe.required_input_start(cal.sessions, sessions[0], rule.liquidity_window)
        check_lookback(need_from, sessions[-1], raw_store, quality_gate, CLEANED, "signals (liquidity rule)")
        liquidity = universe.median_dollar_volume(
            cleaned_prices.lazy().collect(), rule.liquidity_window, cal.sessions, sessions[0], sessions[-1]
        )
    out, excluded = universe.apply_liquidity_rule(out, liquidity, rule)
    if rule.liquidity_rule_on:
        context.log.info(
            f"signals: liquidity rule (median dollar volume over {rule.liquidity_window} bars >= "
            f"${rule.min_median_dollar_volume:,.0f}) excluded {excluded['universe_excluded_symbol_sessions']:,} of "
            f"{excluded['universe_symbol_sessions']:,} symbol-sessions ({excluded['universe_excluded_symbols']} "
            f"symbols; {excluded['universe_excluded_no_history']:,} without the history), "
            f"{excluded['universe_excluded_signals']:,} signals dropped"
        )
    by_strategy = (
        out.group_by("strategy", "side").len(name="signals").sort("strategy", "side") if out.height else out
    )
    # one session's signals as a table a trader reads (a range run keeps only the counts)
    todays = (
        {"signals_table": table_preview(out.sort("strategy", "side", "strength", descending=[False, False, True]),
                                        SIGNAL_COLUMNS)}
        if len(sessions) == 1 and out.height
        else {}
    )
    gate_pending(context, quality_gate, SIGNALS, sessions)
    yield dg.Output(
        out,
        metadata={
            **frame_metadata(out, sessions),
            **lookback,
            "held_out_unexplained_split": held.height,
            "held_out_symbols": ", ".join(sorted(set(held["symbol"].to_list()))[:30]) if held.height else "",
            "universe_min_median_dollar_volume": rule.min_median_dollar_volume,
            "universe_liquidity_window": rule.liquidity_window,
            **excluded,
            **tables(context, sessions, by_strategy=(by_strategy, 20)),
            **todays,
            **({"signal_models": dg.MetadataValue.json(models)} if models else {}),
        },
    )
    yield from gated_checks(
        context,
        quality_gate,
        SIGNALS,
        sessions,
        {
            "signals__valid": rules.signals_valid(out),
            "signals__unique": rules.unique_keys(out, ["session", "symbol", "strategy"]),
            "signals__gx_suite": gx_suites.validate(
                "signals", out, sessions=sessions, strategies=trading_config.strategy_specs()
            ),
        },
    )
