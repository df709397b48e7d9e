"""raw/raw_prices: the raw store's session objects, merged from one delivery per run: the market-data source
for the run's window, a vendor file in the landing zone (what `raw_landing_sensor` requests), or the files of
`trading-dagster import`. Every delivery merges (decision 0004, sections 1 and 2; `domain/raw_merge.py`):
bars are added or revised per (symbol, session), nothing the delivery does not hold is deleted, superseded
bars and rejected rows are kept, and the delivery's manifest names what it did."""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.assets._common import (
    Progress,
    blocking,
    gate_pending,
    gated_checks,
    gx_suite,
    partitioned,
)
from trading_dagster.checks import gx_suites
from trading_dagster.checks.rules import CheckOutcome, every_session_has_rows
from trading_dagster.domain.bars import RAW_COLUMNS, PriceDataError
from trading_dagster.domain.raw_merge import (
    Delivery,
    format_import,
    prepare_delivery,
    refuse_if_nothing_accepted,
)
from trading_dagster.domain.vendor_files import (
    VendorColumns,
    VendorDelivery,
    VendorFileError,
    delivery_rows,
    read_delivery,
)
from trading_dagster.partitions import session_calendar, window_sessions
from trading_dagster.resources.configured import (
    MarketDataResource,
    QualityGateResource,
    RawStoreResource,
    TradingConfigResource,
)
from trading_dagster.resources.raw_store import ImportResult, RawStore, new_import_id

RAW_PRICES = ["raw", "raw_prices"]
EVERY_SESSION_HAS_BARS = "raw_prices__every_session_has_bars"


class RawPricesConfig(dg.Config):
    """Run config of raw_prices. Empty (the default): bars come from the market-data source."""

    landing_key: str | None = Field(
        default=None,
        description="Ingest this landing file (full key, e.g. 'landing/prices/vendor_2024-01-02.csv') instead "
        "of the market-data source. Every bar must fall in the run's partition window.",
    )
    landing_version: str | None = Field(
        default=None,
        description="With landing_key: fail unless the file is still at this version token (the sensor "
        "sets it, so a file overwritten after the request is not ingested by the old request's run).",
    )
    import_paths: list[str] = Field(
        default=[],
        description="Ingest these local vendor files as one delivery (what `trading-dagster import` sets) "
        "instead of the market-data source.",
    )
    as_of: str | None = Field(
        default=None,
        description="ISO date-time (with an offset) the future-session rule judges rows against (a bar of a "
        "session that had not closed then is rejected). Default: when the run starts. The sensor and the "
        "import command set it, so a run rejects exactly the rows they saw as rejected.",
    )


def _as_of(config: RawPricesConfig, now: dt.datetime) -> dt.datetime:
    if not config.as_of:
        return now
    value = dt.datetime.fromisoformat(config.as_of)
    if value.tzinfo is None:
        raise ValueError(f"raw_prices config as_of={config.as_of!r} needs a UTC offset (e.g. +00:00)")
    return value


def _read_delivery(
    config: RawPricesConfig,
    store: RawStore,
    market_data: MarketDataResource,
    first: dt.date,
    last_day: dt.date,
) -> tuple[VendorDelivery, str, str, bool]:
    """(the delivery's rows, its source for metadata, where it comes from for messages, whether it is files:
    a file must hold some row to import)."""
    if config.import_paths:
        paths = config.import_paths
        names = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more file(s)" if len(paths) > 3 else "")
        try:
            delivery = read_delivery(paths)
        except VendorFileError as exc:  # the file-level garbage the import command refuses before a run
            raise PriceDataError(str(exc)) from None
        return delivery, names, f"import of {names}", True
    if config.landing_key:
        location = store.location(config.landing_key)
        delivery = store.read_landing_delivery(config.landing_key, config.landing_version)
        return delivery, location, f"landing file {location}", True
    source = market_data.get()
    bars = source.fetch_bars(first, last_day, None)
    columns = VendorColumns(mapping={c: c for c in RAW_COLUMNS})
    delivery = VendorDelivery(
        delivery_rows(bars, source.describe()), ((source.describe(), bars.height, columns),)
    )
    return delivery, source.describe(), source.describe(), False


def bars_check(
    sessions: list[dt.date], counts: dict[dt.date, tuple[int, int] | None], halt: bool
) -> CheckOutcome:
    """Every session of the window has a bar with some value in the store, after the merge. A session with
    no object, an empty object or only all-null rows is a data outage: WARN (the gate stays open) unless
    `halt` (`[data] on_missing_session = "halt"`), then a blocking ERROR as before."""
    present = [s for s in sessions if (counts.get(s) or (0, 0))[1] > 0]
    missing = [s for s in sessions if s not in present]
    frame = pl.DataFrame({"session": present}, schema={"session": pl.Date})
    outcome = every_session_has_rows(frame, sessions, outages=None if halt else missing)
    if missing:
        null = [s for s in missing if (counts.get(s) or (0, 0))[0] > 0]
        outcome.metadata["all_null_sessions"] = ", ".join(map(str, null[:20])) or "none"
        outcome.metadata["on_missing_session"] = "halt" if halt else "outage"
    return outcome


@dg.asset(
    key=RAW_PRICES,
    group_name="raw",
    kinds={"parquet", "s3"},
    description=(
        "Daily OHLCV bars as delivered, one Parquet object per session at raw/prices/date=YYYY-MM-DD/, merged "
        "per (symbol, session) from the market-data source, a vendor file in landing/prices/ (run config "
        "landing_key) or the files of `trading-dagster import` (import_paths). Superseded bars are kept in "
        "raw/revisions/, rows on no session in raw/rejected/, each delivery's record in raw/imports/."
    ),
    check_specs=[
        blocking(
            RAW_PRICES,
            EVERY_SESSION_HAS_BARS,
            "every session has a bar with values in the raw store; a session without is a data outage, "
            "WARN unless [data] on_missing_session = 'halt'",
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
    trading_config: TradingConfigResource,
):
    sessions = window_sessions(context)
    calendar = session_calendar()
    halt = trading_config.halt_on_missing_session  # ValueError for a bad launchpad value, before any work
    # Through the day before the next session, not only to the last session: a row dated on the weekend or
    # holiday after the window's last session belongs to this partition (every non-session day goes with
    # the session before it), so it is rejected here, kept and named, instead of falling between two
    # partitions. (Dagster's time window is no help: it ends at the next weekday, before a holiday.)
    nxt = calendar.next_session(sessions[-1])
    last_day = nxt - dt.timedelta(days=1) if nxt else sessions[-1]
    store = raw_store.get()
    now = dt.datetime.now(dt.UTC)
    vendor, source, where, is_file = _read_delivery(config, store, market_data, sessions[0], last_day)
    try:
        delivery: Delivery = prepare_delivery(
            vendor.rows,
            calendar,
            _as_of(config, now),
            window=(sessions[0], last_day),
            span=None if is_file else sessions,  # a source asked for the window owes every session of it
            order_columns=vendor.order_columns,
            ignored_columns=vendor.ignored_columns,
            sources=vendor.sources,
        )
        if is_file:
            refuse_if_nothing_accepted(delivery)
    except PriceDataError as exc:
        raise PriceDataError(f"{where}: {exc}") from None

    gate_pending(context, quality_gate, RAW_PRICES, sessions)
    progress: list[Progress] = []

    def tick(done: int, total: int) -> None:
        if not progress:
            progress.append(Progress(context.log, "raw_prices sessions merged", total))
        progress[0].tick(done)

    result: ImportResult = store.import_delivery(
        delivery, import_id=new_import_id(now), imported_at=now, progress=tick
    )
    quality_gate.get().record_changes(result.changed_sessions, context.run_id)  # staleness reads these
    context.log.info("\n".join(format_import(result.manifest)))  # one entry in the run's log, not one per line

    counts = {s: (o.rows, o.usable) for s, o in result.outcomes.items() if o.rows is not None}
    unknown = [s for s in sessions if s not in counts]  # in the window, not merged or not read: ask the store
    counts.update(store.bar_counts(unknown))
    manifest = result.manifest
    yield dg.MaterializeResult(
        asset_key=RAW_PRICES,
        metadata={
            "dagster/row_count": delivery.bars.height,
            "source": source,
            "import_id": result.import_id,
            "manifest": store.location(store.manifest_key(result.import_id)),
            "symbols": manifest["symbols"],
            "sessions_added": len(manifest["sessions_added"]),
            "sessions_revised": len(manifest["sessions_revised"]),
            "sessions_unchanged": len(manifest["sessions_unchanged"]),
            "bars_revised": manifest["bars"]["revised"],
            "empty_sessions": ", ".join(manifest["empty_sessions"][:20]) or "none",
            "all_null_sessions": ", ".join(manifest["all_null_sessions"][:20]) or "none",
            "rejected_rows": delivery.rejected.height,
            "rejected_by_reason": ", ".join(f"{r} {n}" for r, n in manifest["rejected"].items()) or "none",
            "ignored_columns": ", ".join(manifest["ignored_columns"]) or "none",
        },
    )
    window_bars = delivery.bars.filter(delivery.bars["date"].is_in(sessions)).select(RAW_COLUMNS)
    yield from gated_checks(
        context,
        quality_gate,
        RAW_PRICES,
        sessions,
        {
            EVERY_SESSION_HAS_BARS: bars_check(sessions, counts, halt),
            "raw_prices__gx_suite": gx_suites.validate("raw", window_bars, sessions=sessions),
        },
    )
