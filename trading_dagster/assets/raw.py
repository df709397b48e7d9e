"""raw/raw_prices: one Parquet object per session in the raw store, from the market-data source or, when
the run config names one, from a vendor file in the landing zone (what `raw_landing_sensor` requests)."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from pydantic import Field

from trading_dagster.assets._common import (
    Progress,
    blocking,
    gate_pending,
    gated_check_results,
    gx_suite,
    partitioned,
)
from trading_dagster.checks import gx_suites
from trading_dagster.checks.rules import every_session_has_rows
from trading_dagster.domain.bars import PriceDataError, split_by_session
from trading_dagster.partitions import session_calendar, window_sessions
from trading_dagster.resources.configured import MarketDataResource, QualityGateResource, RawStoreResource
from trading_dagster.resources.raw_store import DEFAULT_WORKERS, require_within

RAW_PRICES = ["raw", "raw_prices"]


class RawPricesConfig(dg.Config):
    """Run config of raw_prices. Empty (the default): bars come from the market-data source."""

    landing_key: str | None = Field(
        default=None,
        description="Ingest this landing file (full key, e.g. 'landing/prices/vendor_2024-01-02.csv') instead "
        "of the market-data source. Every row must fall in the run's partition window.",
    )
    landing_version: str | None = Field(
        default=None,
        description="With landing_key: fail unless the file is still at this version token (the sensor "
        "sets it, so a file overwritten after the request is not ingested by the old request's run).",
    )


@dg.asset(
    key=RAW_PRICES,
    group_name="raw",
    kinds={"parquet", "s3"},
    description=(
        "Daily OHLCV bars as delivered, one Parquet object per session at raw/prices/date=YYYY-MM-DD/: from the "
        "market-data source, or from a vendor file in landing/prices/ when the run config sets landing_key."
    ),
    check_specs=[
        blocking(
            RAW_PRICES, "raw_prices__every_session_has_bars", "the source delivered bars for every session"
        ),
        gx_suite(RAW_PRICES, "raw"),
    ],
    **partitioned(),
)
def raw_prices(
    context: dg.AssetExecutionContext,
    config: RawPricesConfig,
    raw_store: RawStoreResource,
    market_data: MarketDataResource,
    quality_gate: QualityGateResource,
):
    sessions = window_sessions(context)
    # Through the day before the next session, not only to the last session: a row dated on the weekend or
    # holiday after the window's last session belongs to this partition (every non-session day goes with
    # the session before it), so it fails here instead of falling between two partitions and never being
    # read. (Dagster's time window is no help: it ends at the next weekday, before a holiday.)
    nxt = session_calendar().next_session(sessions[-1])
    last_day = nxt - dt.timedelta(days=1) if nxt else sessions[-1]
    store = raw_store.get()
    if config.landing_key:
        bars = store.read_landing_bars(config.landing_key, config.landing_version)
        # the whole file or nothing: a row outside the window is an error, never dropped or written
        require_within(bars, sessions[0], last_day, f"landing file {store.location(config.landing_key)}")
        source = store.location(config.landing_key)
    else:
        source_obj = market_data.get()
        bars = source_obj.fetch_bars(sessions[0], last_day, None)
        source = source_obj.describe()
    try:
        by_session = split_by_session(bars, session_calendar())  # rows on non-sessions raise, never dropped
    except PriceDataError as exc:
        raise PriceDataError(f"{source}: {exc}") from exc
    # written by a few threads: an object write is I/O (a PUT on S3, ~20-50 ms of latency each), so a
    # ten-year range does not wait for 2,485 of them one after the other; keys come back in session order
    parts = [(s, by_session[s]) for s in sessions if s in by_session and by_session[s].height]
    progress = Progress(context.log, "raw_prices written", len(parts))
    keys = []
    gate_pending(context, quality_gate, RAW_PRICES, sessions)
    with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS) as pool:
        for i, key in enumerate(pool.map(lambda item: store.write_session(*item), parts), 1):
            keys.append(key)
            progress.tick(i)
    outcome = every_session_has_rows(bars.rename({"date": "session"}), sessions)
    yield dg.MaterializeResult(
        asset_key=RAW_PRICES,
        metadata={
            "dagster/row_count": bars.height,
            "source": source,
            "symbols": bars["symbol"].n_unique() if bars.height else 0,
            "objects_written": len(keys),
            "first_key": keys[0] if keys else "",
            "last_key": keys[-1] if keys else "",
        },
    )
    yield from gated_check_results(
        context,
        quality_gate,
        RAW_PRICES,
        sessions,
        {
            "raw_prices__every_session_has_bars": outcome,
            # rows dated on the non-session days after the window's last session were refused above
            "raw_prices__gx_suite": gx_suites.validate("raw", bars, sessions=sessions),
        },
    )
