"""prices/cleaned_prices and prices/price_quarantine: typed, de-duplicated, sane bars; the rest with a reason."""


import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    blocking,
    frame_metadata,
    gate_pending,
    gated_check_results,
    gx_suite,
    partitioned,
    tables,
)
from trading_dagster.assets.raw import RAW_PRICES
from trading_dagster.checks import gx_suites, rules
from trading_dagster.domain.prices import HISTORY_SESSIONS, clean_prices
from trading_dagster.domain.quality import flag_outages, missing_symbols, outage_sessions
from trading_dagster.partitions import session_calendar, window_sessions
from trading_dagster.resources.configured import (
    CorporateActionsResource,
    QualityGateResource,
    RawStoreResource,
)

CLEANED = ["prices", "cleaned_prices"]
QUARANTINE = ["prices", "price_quarantine"]


@dg.multi_asset(
    outs={
        "cleaned_prices": dg.AssetOut(
            key=CLEANED,
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="One row per symbol and session: typed, de-duplicated, OHLC-sane.",
        ),
        "price_quarantine": dg.AssetOut(
            key=QUARANTINE,
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="Raw rows that failed sanity, each with a reason code and detail. Never silently dropped.",
        ),
    },
    deps=[RAW_PRICES],
    group_name="prices",
    check_specs=[
        blocking(CLEANED, "cleaned_prices__unique_symbol_session", "one row per (symbol, session)"),
        blocking(CLEANED, "cleaned_prices__ohlc_sane", "prices > 0, low <= open, close <= high"),
        blocking(CLEANED, "cleaned_prices__every_session_has_rows", "no empty session in the window"),
        gx_suite(CLEANED, "cleaned"),
        dg.AssetCheckSpec(
            "cleaned_prices__no_outage",
            asset=dg.AssetKey(CLEANED),
            description="no session whose symbol count drops sharply against the sessions before it, or "
            "with many zero-volume bars (a vendor outage); a warning: the missing symbols stay missing",
        ),
    ],
    **partitioned(),
)
def cleaned_prices(
    context: dg.AssetExecutionContext,
    raw_store: RawStoreResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
):
    sessions = window_sessions(context)
    quality_gate.get().require("/".join(RAW_PRICES), sessions[0], sessions[-1], reader="cleaned_prices")
    store = raw_store.get()
    raw = store.read_sessions(sessions)
    # the raw bars of the sessions just before the window: the reference for decimal shifts and splits and
    # for outage counts, so a one-day run judges a bar exactly as a ten-year run does
    before = session_calendar().before(sessions[0], HISTORY_SESSIONS)
    history_sessions, history = store.read_existing(before)
    actions = corporate_actions.get((before or sessions)[0], sessions[-1])
    result = clean_prices(raw, sessions, history=history, actions=actions)
    cleaned, quarantine = result.cleaned, result.quarantine
    context.log.info(f"cleaned_prices: {cleaned.height:,} rows kept, {quarantine.height:,} quarantined")
    reasons = quarantine.group_by("reason").len().sort("len", descending=True) if quarantine.height else quarantine
    flags = outage_sessions(flag_outages(raw, sessions, history=history, history_sessions=history_sessions))
    outage = _outage_check(flags, raw if history is None else pl.concat([history, raw], how="diagonal_relaxed"))
    gate_pending(context, quality_gate, CLEANED, sessions)
    yield dg.Output(cleaned, "cleaned_prices", metadata={**frame_metadata(cleaned, sessions), "raw_rows": raw.height})
    yield dg.Output(
        quarantine,
        "price_quarantine",
        metadata={
            **frame_metadata(quarantine, sessions),
            **tables(context, sessions, reasons=(reasons, 10), examples=(quarantine, 5)),
        },
    )
    yield from gated_check_results(
        context,
        quality_gate,
        CLEANED,
        sessions,
        {
            "cleaned_prices__unique_symbol_session": rules.unique_keys(cleaned, ["symbol", "session"]),
            "cleaned_prices__ohlc_sane": rules.cleaned_prices_sane(cleaned),
            "cleaned_prices__every_session_has_rows": rules.every_session_has_rows(cleaned, sessions),
            "cleaned_prices__gx_suite": gx_suites.validate("cleaned", cleaned, sessions=sessions),
        },
    )
    yield outage


def _outage_check(flags, raw) -> dg.AssetCheckResult:
    """WARN, not blocking: an outage day's bars are real, only some symbols are missing (downstream sees
    them as missing, never as zero); the check names the sessions and the missing symbols."""
    if flags.is_empty():
        return dg.AssetCheckResult(
            asset_key=dg.AssetKey(CLEANED), check_name="cleaned_prices__no_outage", passed=True,
            severity=dg.AssetCheckSeverity.WARN, description="no outage session",
        )
    first = flags.row(0, named=True)
    raw_by_session = raw.rename({"date": "session"}) if "date" in raw.columns else raw
    missing = missing_symbols(raw_by_session, first["session"]) if first["reason"] == "OUTAGE_MISSING_SYMBOLS" else []
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(CLEANED),
        check_name="cleaned_prices__no_outage",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{flags.height} outage session(s): " + "; ".join(
            f"{r['session']} {r['reason']}" for r in flags.head(10).iter_rows(named=True)
        ),
        metadata={
            "sessions": ", ".join(str(s) for s in flags["session"].to_list()[:20]),
            "first_detail": str(first["detail"]),
            "first_missing_symbols": ", ".join(missing[:30]) + (" ..." if len(missing) > 30 else ""),
            "first_missing_count": len(missing),
        },
    )
