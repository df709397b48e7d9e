"""prices/cleaned_prices, prices/price_quarantine and prices/data_outages: typed, de-duplicated, sane bars; the
rest with a reason; and the sessions the vendor fell short on (domain/quality.py)."""


import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    blocking,
    blocking_failure,
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
from trading_dagster.domain.quality import (
    OUTAGE_HISTORY_SESSIONS,
    OutageStretch,
    flag_outages,
    no_bar_sessions,
    outage_sessions,
    outage_stretches,
)
from trading_dagster.partitions import session_calendar, window_sessions
from trading_dagster.resources.alerts import Alert, AlertDeliveryError, AlertsResource
from trading_dagster.resources.configured import (
    CorporateActionsResource,
    QualityGateResource,
    RawStoreResource,
    TradingConfigResource,
)

CLEANED = ["prices", "cleaned_prices"]
QUARANTINE = ["prices", "price_quarantine"]
DATA_OUTAGES = ["prices", "data_outages"]
PRICE_BREAKS = ["prices", "price_breaks"]
MAX_OUTAGE_ALERTS = 10  # alerts per run; a long backfill's further outages go into one summary alert


@dg.multi_asset(
    outs={
        "cleaned_prices": dg.AssetOut(
            key=CLEANED,
            is_required=False,  # subsettable (can_subset)
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="One row per symbol and session: typed, de-duplicated, OHLC-sane.",
        ),
        "price_quarantine": dg.AssetOut(
            key=QUARANTINE,
            is_required=False,  # subsettable (can_subset)
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="Raw rows that failed sanity, each with a reason code and detail. Never silently dropped.",
        ),
        "data_outages": dg.AssetOut(
            key=DATA_OUTAGES,
            is_required=False,  # subsettable (can_subset)
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="One row per session the vendor fell short on: no usable bar at all (OUTAGE_NO_BARS), "
            "many active symbols missing (OUTAGE_MISSING_SYMBOLS), many zero-volume bars (OUTAGE_ZERO_VOLUME), "
            "or part of a degraded stretch (OUTAGE_DEGRADED, with the stretch's start); active and missing "
            "counts, a sample of the missing symbols, detail. The bars that came flow on; the missing "
            "symbols stay missing downstream.",
        ),
        "price_breaks": dg.AssetOut(
            key=PRICE_BREAKS,
            is_required=False,  # subsettable (can_subset)
            metadata=PARTITION_EXPR,
            kinds={"duckdb", "polars"},
            description="Confirmed price breaks, one row each, dated on the session that confirmed them: an "
            "unexplained split (a level that held at a split ratio for BREAK_CONFIRM_SESSIONS closes with no "
            "corporate action on file: its break date and share ratio; new buys are held out, sells pass, an "
            "alert asks for the action, and on bars that are not split-adjusted the book adjusts held shares on "
            "that session) or a collapse that held (more than 80% in a day at no split ratio). Adjusts no price.",
        ),
    },
    deps=[RAW_PRICES],
    group_name="prices",
    can_subset=True,
    check_specs=[
        blocking(CLEANED, "cleaned_prices__unique_symbol_session", "one row per (symbol, session)"),
        blocking(CLEANED, "cleaned_prices__ohlc_sane", "prices > 0, low <= open, close <= high"),
        blocking(
            CLEANED,
            "cleaned_prices__every_session_has_rows",
            "no empty session in the window; a data outage (no usable bar delivered) is a warning unless "
            "[data] on_missing_session = 'halt'",
        ),
        gx_suite(CLEANED, "cleaned"),
        dg.AssetCheckSpec(
            "cleaned_prices__no_outage",
            asset=dg.AssetKey(CLEANED),
            description="no data outage: no session without usable bars, with many active symbols missing or "
            "many zero-volume bars, and no degraded stretch (prices/data_outages lists them); a warning: "
            "the missing symbols stay missing",
        ),
    ],
    **partitioned(),
)
def cleaned_prices(
    context: dg.AssetExecutionContext,
    raw_store: RawStoreResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
    trading_config: TradingConfigResource,
    alerts: AlertsResource,
):
    sessions = window_sessions(context)
    halt = trading_config.halt_on_missing_session  # ValueError for a bad setting, before any work
    quality_gate.get().require("/".join(RAW_PRICES), sessions[0], sessions[-1], reader="cleaned_prices")
    store = raw_store.get()
    raw = store.read_sessions(sessions)
    # the raw bars of the sessions before the window: the reference for decimal shifts and splits (the last
    # HISTORY_SESSIONS of them) and the outage baseline (all OUTAGE_HISTORY_SESSIONS), so a one-day run
    # judges a session exactly as a ten-year run does
    cal = session_calendar()
    before = cal.before(sessions[0], max(HISTORY_SESSIONS, OUTAGE_HISTORY_SESSIONS))
    _, history = store.read_existing(before)
    recent = before[-HISTORY_SESSIONS:]
    price_history = history.filter(pl.col("date") >= recent[0]) if history is not None and recent else None
    actions = corporate_actions.get((recent or sessions)[0], sessions[-1])
    result = clean_prices(
        raw, sessions, history=price_history if price_history is not None and price_history.height else None,
        actions=actions,
    )
    cleaned, quarantine, breaks = result.cleaned, result.quarantine, result.breaks
    context.log.info(f"cleaned_prices: {cleaned.height:,} rows kept, {quarantine.height:,} quarantined")
    reasons = quarantine.group_by("reason").len().sort("len", descending=True) if quarantine.height else quarantine
    flags = flag_outages(raw, sessions, history, cal)
    outages = outage_sessions(flags)
    stretches = outage_stretches(outages)
    # subsettable: a selection without data_outages (or a later output) still runs; what it writes is judged
    selected = context.selected_output_names
    if "cleaned_prices" in selected:
        gate_pending(context, quality_gate, CLEANED, sessions)
        yield dg.Output(cleaned, "cleaned_prices", metadata={**frame_metadata(cleaned, sessions), "raw_rows": raw.height})
    if "price_quarantine" in selected:
        yield dg.Output(
            quarantine,
            "price_quarantine",
            metadata={
                **frame_metadata(quarantine, sessions),
                **tables(context, sessions, reasons=(reasons, 10), examples=(quarantine, 5)),
            },
        )
    if "data_outages" in selected:
        yield dg.Output(
            outages,
            "data_outages",
            metadata={
                **frame_metadata(outages, sessions),
                "outage_sessions": outages.height,
                "stretches": "; ".join(s.label() for s in stretches[:20]),
                **tables(context, sessions, outages=(outages.drop("missing_sample"), 10)),
            },
        )
        _send_outage_alerts(context, quality_gate, alerts, outages, stretches)
    if "price_breaks" in selected:
        yield dg.Output(
            breaks,
            "price_breaks",
            metadata={**frame_metadata(breaks, sessions), **tables(context, sessions, breaks=(breaks, 10))},
        )
        follows = trading_config.book_follows_confirmed_breaks(corporate_actions.source_kind())
        _send_break_alerts(context, quality_gate, alerts, breaks, follows)
    if "cleaned_prices" not in selected:
        return
    outcomes = {
        "cleaned_prices__unique_symbol_session": rules.unique_keys(cleaned, ["symbol", "session"]),
        "cleaned_prices__ohlc_sane": rules.cleaned_prices_sane(cleaned),
        # a session with no usable bar is a recorded outage (WARN), unless the setting says halt
        "cleaned_prices__every_session_has_rows": rules.every_session_has_rows(
            cleaned, sessions, outages=None if halt else no_bar_sessions(flags)
        ),
        "cleaned_prices__gx_suite": gx_suites.validate("cleaned", cleaned, sessions=sessions),
    }
    checks = gated_check_results(context, quality_gate, CLEANED, sessions, outcomes)
    wanted = context.selected_asset_check_keys
    yield from (c for c in [*checks, _outage_check(outages, stretches)] if dg.AssetCheckKey(c.asset_key, c.check_name) in wanted)
    failure = blocking_failure(context, CLEANED, outcomes)
    if failure is not None:
        raise failure


def _outage_check(outages: pl.DataFrame, stretches: list[OutageStretch]) -> dg.AssetCheckResult:
    """WARN, not blocking: an outage day's bars are real, only some symbols are missing (downstream sees
    them as missing, never as zero); the check names the sessions and stretches, prices/data_outages has
    the rows."""
    if outages.is_empty():
        return dg.AssetCheckResult(
            asset_key=dg.AssetKey(CLEANED), check_name="cleaned_prices__no_outage", passed=True,
            severity=dg.AssetCheckSeverity.WARN, description="no outage session",
        )
    first = outages.row(0, named=True)
    listed = "; ".join(s.label() for s in stretches[:10]) + (" ..." if len(stretches) > 10 else "")
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(CLEANED),
        check_name="cleaned_prices__no_outage",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{outages.height} outage session(s): {listed}",
        metadata={
            "sessions": ", ".join(str(s) for s in outages["session"].to_list()[:20])
            + (" ..." if outages.height > 20 else ""),
            "reasons": ", ".join(f"{r}: {n}" for r, n in outages.group_by("reason").len().sort("reason").rows()),
            "stretches": "; ".join(s.label() for s in stretches if s.is_stretch)[:2000],
            "first_detail": str(first["detail"]),
            "first_missing_symbols": first["missing_sample"] or "",
            "first_missing_count": int(first["missing_count"] or 0),
            "table": "prices.data_outages (one row per outage session)",
        },
    )


def _send_break_alerts(
    context: dg.AssetExecutionContext,
    quality_gate: QualityGateResource,
    alerts: AlertsResource,
    breaks: pl.DataFrame,
    book_follows: bool,
) -> None:
    """One alert per confirmed break not reported before (a re-run does not repeat it): an unexplained split
    adjusts no price silently, so someone must add the corporate action (or find the vendor's error)."""
    if breaks.is_empty():
        return
    gate = quality_gate.get()
    rows = {f"price_break:{r['symbol']}:{r['break_date']}:{r['kind']}": r for r in breaks.iter_rows(named=True)}
    new = set(gate.claim_reports(list(rows), context.run_id))
    sink = alerts.sink(context.log)
    try:
        for key in sorted(new):
            r = rows[key]
            what = (
                f"a {_ratio_text(r['share_ratio'])} split with no corporate action on file"
                if r["kind"] == "split"
                else "a collapse of more than 80% that held"
            )
            sink.send(
                Alert(
                    kind="price_break",
                    key=key,
                    title=f"{r['symbol']}: {what}, from {r['break_date']} (confirmed {r['session']})",
                    text=f"{r['detail']}. New buys of {r['symbol']} are held out for a year; "
                    + (
                        "a held position follows the ratio (the bars are not split-adjusted). Add the split to "
                        "the corporate-actions file"
                        if book_follows
                        else "a held position keeps its shares (the bars are split-adjusted, so this is a crash "
                        "or a vendor fault, not a split). Check the vendor data"
                    )
                    + f", then re-run from {r['break_date']}.",
                    details={k: str(v) for k, v in r.items()},
                    severity="WARNING",
                )
            )
    except AlertDeliveryError as exc:
        gate.release_reports(new)
        context.log.warning(f"cleaned_prices: a price-break alert was not delivered everywhere ({exc}); it is on "
                            "record in prices/price_breaks and the next run sends it again")


def _ratio_text(share_ratio: float | None) -> str:
    """2.0 -> '2:1', 0.05 -> '1-for-20 reverse', 1.5 -> '3:2'."""
    if not share_ratio:
        return "?"
    if share_ratio >= 1:
        return "3:2" if abs(share_ratio - 1.5) < 1e-9 else f"{share_ratio:g}:1"
    inverse = 1 / share_ratio
    return "2:3 reverse" if abs(inverse - 1.5) < 1e-9 else f"1-for-{inverse:g} reverse"


def _send_outage_alerts(
    context: dg.AssetExecutionContext,
    quality_gate: QualityGateResource,
    alerts: AlertsResource,
    outages: pl.DataFrame,
    stretches: list[OutageStretch],
) -> None:
    """One alert per outage (a single session, or a degraded stretch) holding a session not reported
    before: the quality gate remembers which (session, reason) were alerted, so re-running a partition does
    not repeat its alert. Undelivered alerts are logged, not raised (the data is fine; the outage is also
    in the check and the table), and released so the next run sends them."""
    if outages.is_empty():
        return
    gate = quality_gate.get()
    key = lambda row: f"data_outage:{row['session']}:{row['reason']}"  # noqa: E731
    rows = {r["session"]: r for r in outages.iter_rows(named=True)}
    new = set(gate.claim_reports([key(r) for r in rows.values()], context.run_id))
    if not new:
        return
    fresh = [s for s in stretches if any(key(rows[d]) in new for d in s.sessions)]
    messages = [_outage_alert(s, [rows[d] for d in s.sessions]) for s in fresh[:MAX_OUTAGE_ALERTS]]
    if len(fresh) > MAX_OUTAGE_ALERTS:
        rest = fresh[MAX_OUTAGE_ALERTS:]
        messages.append(
            Alert(
                kind="data_outage",
                key=f"data_outage:{rest[0].first}..{rest[-1].last}:more",
                title=f"Data outages: {len(rest)} more outage(s) {rest[0].first}..{rest[-1].last}",
                text="; ".join(s.label() for s in rest[:50]) + ". prices/data_outages has one row per session.",
                details={"outages": [s.label() for s in rest]},
                severity="WARNING",
            )
        )
    sink = alerts.sink(context.log)
    try:
        for message in messages:
            sink.send(message)
    except AlertDeliveryError as exc:
        gate.release_reports(new)
        context.log.warning(f"cleaned_prices: an outage alert was not delivered everywhere ({exc}); it is on "
                            "record in prices/data_outages and the next run sends it again")


def _outage_alert(stretch: OutageStretch, rows: list[dict]) -> Alert:
    worst = max(rows, key=lambda r: (r["missing_count"] or 0, r["rows"] == r["null_rows"]))
    span = f"{stretch.first}..{stretch.last}" if stretch.is_stretch else str(stretch.last)
    lines = [f"{r['session']} {r['reason']}: {r['detail']}" for r in rows[:5]]
    if len(rows) > 5:
        lines.append(f"... and {len(rows) - 5} more session(s), up to {rows[-1]['session']}")
    if worst["missing_sample"]:
        lines.append(f"missing on {worst['session']}: {worst['missing_sample']}")
    lines.append(
        "The bars that were delivered flow on. The missing symbols have no signal on these sessions, orders "
        "due at their open expire, positions keep their last trusted close. prices/data_outages has one row "
        "per session; re-import the sessions when the vendor delivers them."
    )
    return Alert(
        kind="data_outage",
        key=f"data_outage:{span}",
        title=f"Data outage: {stretch.label()}",
        text="\n".join(lines),
        details={
            "first": stretch.first.isoformat(),
            "last": stretch.last.isoformat(),
            "sessions": [d.isoformat() for d in stretch.sessions],
            "reasons": list(stretch.reasons),
            "worst_session": worst["session"].isoformat(),
            "active_symbols": worst["active_symbols"],
            "missing_count": worst["missing_count"],
        },
        severity="WARNING",
    )

