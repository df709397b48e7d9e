"""prices/cleaned_prices and prices/price_quarantine: typed, de-duplicated, sane bars; the rest with a reason."""


import dagster as dg

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    blocking,
    frame_metadata,
    gated_check_results,
    partitioned,
    tables,
)
from trading_dagster.assets.raw import RAW_PRICES
from trading_dagster.checks import rules
from trading_dagster.domain.prices import clean_prices
from trading_dagster.partitions import window_sessions
from trading_dagster.resources.configured import QualityGateResource, RawStoreResource

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
    ],
    **partitioned(),
)
def cleaned_prices(context: dg.AssetExecutionContext, raw_store: RawStoreResource, quality_gate: QualityGateResource):
    sessions = window_sessions(context)
    quality_gate.get().require("/".join(RAW_PRICES), sessions[0], sessions[-1], reader="cleaned_prices")
    raw = raw_store.get().read_sessions(sessions)
    result = clean_prices(raw, sessions)
    cleaned, quarantine = result.cleaned, result.quarantine
    context.log.info(f"cleaned_prices: {cleaned.height:,} rows kept, {quarantine.height:,} quarantined")
    reasons = quarantine.group_by("reason").len().sort("len", descending=True) if quarantine.height else quarantine
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
        },
    )
