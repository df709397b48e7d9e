"""raw/raw_prices: one Parquet object per session in the raw store, from the market-data source."""

import datetime as dt

import dagster as dg

from trading_dagster.assets._common import Progress, blocking, check_result, partitioned
from trading_dagster.checks.rules import every_session_has_rows
from trading_dagster.domain.prices import split_by_session
from trading_dagster.partitions import session_calendar, window_sessions
from trading_dagster.resources.configured import MarketDataResource, RawStoreResource

RAW_PRICES = ["raw", "raw_prices"]


@dg.asset(
    key=RAW_PRICES,
    group_name="raw",
    kinds={"parquet", "s3"},
    description="Daily OHLCV bars as delivered, one Parquet object per session at raw/prices/date=YYYY-MM-DD/.",
    check_specs=[blocking(RAW_PRICES, "raw_prices__every_session_has_bars", "the source delivered bars for every session")],
    **partitioned(),
)
def raw_prices(context: dg.AssetExecutionContext, raw_store: RawStoreResource, market_data: MarketDataResource):
    sessions = window_sessions(context)
    # Through the day before the next session, not only to the last session: a row dated on the weekend or
    # holiday after the window's last session belongs to this partition (every non-session day goes with
    # the session before it), so it fails here instead of falling between two partitions and never being
    # read. (Dagster's time window is no help: it ends at the next weekday, before a holiday.)
    nxt = session_calendar().next_session(sessions[-1])
    last_day = nxt - dt.timedelta(days=1) if nxt else sessions[-1]
    bars = market_data.get().fetch_bars(sessions[0], last_day, None)
    by_session = split_by_session(bars, session_calendar())  # rows on non-sessions raise, never dropped
    store = raw_store.get()
    progress = Progress(context.log, "raw_prices written", len(sessions))
    keys = []
    for i, session in enumerate(sessions, 1):
        part = by_session.get(session)
        if part is not None and part.height:
            keys.append(store.write_session(session, part))
        progress.tick(i)
    outcome = every_session_has_rows(bars.rename({"date": "session"}), sessions)
    yield dg.MaterializeResult(
        asset_key=RAW_PRICES,
        metadata={
            "dagster/row_count": bars.height,
            "symbols": bars["symbol"].n_unique() if bars.height else 0,
            "objects_written": len(keys),
            "first_key": keys[0] if keys else "",
            "last_key": keys[-1] if keys else "",
        },
    )
    yield check_result(RAW_PRICES, "raw_prices__every_session_has_bars", outcome)
