"""execution/orders, execution/submissions, execution/fills: the trading book at the configured broker
(decision 0005, section 4). The backtest (`assets/trading.py`) is a simulation; these trade.

Each runs one session D at a time; a range (a backfill) is refused before any broker call, and what "now"
is comes from the broker's clock, so a past D can never reach an account:

* `execution/orders`, on D's evening: D's signals sized and risk-checked against the broker's account
  (cash, positions, open orders, the month's fills) by the backtest's own planner and risk engine. Reads
  the broker, never writes it. Refused unless D is the latest completed session.
* `execution/submissions`, on D+1 before its close: the approved orders (a manual strategy's only once a
  person approved them before the deadline; no buys while the kill switch is engaged) sent exactly once
  (`Broker.submit`), with the broker's positions and cash just before.
* `execution/fills`, polled until every order is final: each execution recorded once in the ledger, and the
  broker's positions reconciled with the positions before plus the fills (a blocking check; an alert).

Every signal, decision, denial, submission, rejection and fill goes to the trading ledger (the audit log).
"""


import datetime as dt
from decimal import Decimal

import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    blocking,
    gate_pending,
    gated_checks,
    markdown_table,
)
from trading_dagster.assets.indicators import SIGNALS
from trading_dagster.assets.prices import CLEANED
from trading_dagster.automation.trading_alerts import (
    fills_summary_alert,
    order_rejected_alert,
    pnl_below_threshold_alert,
    reconciliation_mismatch_alert,
)
from trading_dagster.checks import rules
from trading_dagster.checks.rules import CheckOutcome
from trading_dagster.domain.approval import apply_decisions, approval_deadline, require_approval
from trading_dagster.domain.audit import AuditEvent, expiry_events, order_events, submission_events
from trading_dagster.domain.broker_records import BrokerFill, BrokerOrder, CancelResult, SubmitResult
from trading_dagster.domain.exits import exit_levels_for_orders
from trading_dagster.domain.live_book import (
    Mismatch,
    book_from_snapshot,
    cash_change,
    cash_mismatch,
    consistent_read,
    expected_positions,
    hold_buys,
    order_requests,
    our_orders,
    reconcile,
    session_start,
)
from trading_dagster.domain.portfolio import plan_orders
from trading_dagster.domain.trading_calendar import xnys_trading_calendar
from trading_dagster.partitions import (
    lookback_mapping,
    session_calendar,
    sessions_partitions_def,
    window_sessions,
)
from trading_dagster.resources.alerts import Alert, AlertDeliveryError, AlertsResource
from trading_dagster.resources.brokers.base import Broker
from trading_dagster.resources.configured import (
    BacktestBookResource,
    BrokerResource,
    QualityGateResource,
    TradingConfigResource,
)
from trading_dagster.resources.ledger import TradingLedgerResource

EXECUTION_ORDERS = ["execution", "orders"]
# Every step that reads or moves the broker account runs in this Dagster concurrency pool, whose limit of 1
# (deploy/dagster.yaml) keeps two runs from planning against, submitting to or reconciling the same account
# at once.
TRADING_ACCOUNT_POOL = "trading_account"
SUBMISSIONS = ["execution", "submissions"]
FILLS = ["execution", "fills"]
ACCOUNT = ["execution", "account"]
ACCOUNT_SCHEMA = {
    "session": pl.Date(),
    "as_of": pl.Datetime("us", "UTC"),
    "cash": pl.Float64(),
    "equity": pl.Float64(),
    "last_equity": pl.Float64(),
    "day_pnl": pl.Float64(),
    "long_market_value": pl.Float64(),
    "positions": pl.Int64(),
    "bought": pl.Float64(),
    "sold": pl.Float64(),
    "executions": pl.Int64(),
    "all_final": pl.Boolean(),
}
# a backfill of these is one run per session, each refused unless it is the session the broker's clock allows
ONE_SESSION = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
PRICE_LOOKBACK = 63  # sessions of bars before D: a held symbol's last close without a bar on D; the ATR (57)

SUBMISSION_SCHEMA = {
    "session": pl.Date(),
    "client_order_id": pl.String(),
    "symbol": pl.String(),
    "strategy": pl.String(),
    "side": pl.String(),
    "qty": pl.Float64(),
    "outcome": pl.String(),  # submitted | already_existed | rejected | held (kill switch) | not_approved
    "broker_order_id": pl.String(),
    "status": pl.String(),
    "code": pl.String(),
    "message": pl.String(),
}
FILLS_SCHEMA = {
    "session": pl.Date(),
    "client_order_id": pl.String(),
    "broker_order_id": pl.String(),
    "symbol": pl.String(),
    "side": pl.String(),
    "status": pl.String(),
    "qty": pl.Float64(),
    "filled_qty": pl.Float64(),
    "filled_avg_price": pl.Float64(),
    "final": pl.Boolean(),
}


def one_session(context: dg.AssetExecutionContext) -> dt.date:
    """The one session D of the run: a range (a backfill) never reaches a broker."""
    sessions = window_sessions(context)
    if len(sessions) != 1:
        raise dg.Failure(
            f"{context.op_def.name}: the execution assets trade one session at a time, not the range "
            f"{sessions[0]}..{sessions[-1]}: a backfill is the backtest (trading/*), it never reaches a broker"
        )
    return sessions[0]


def _now(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(dt.UTC)


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _alert(context: dg.AssetExecutionContext, alerts: AlertsResource, alert: Alert) -> None:
    try:
        alerts.sink(context.log).send(alert)
    except AlertDeliveryError as exc:  # it is in the log and alerts.jsonl; the run goes on
        context.log.warning(f"alert not delivered everywhere: {exc}")


@dg.asset(
    key=EXECUTION_ORDERS,
    group_name="execution",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    partitions_def=sessions_partitions_def(),
    backfill_policy=ONE_SESSION,
    pool=TRADING_ACCOUNT_POOL,
    description="Session D's orders for the broker account: D's signals sized and risk-checked against the "
    "account (cash, positions, open orders, the month's fills) with the backtest's planner. Status approved, "
    "denied (a reason code) or pending_approval (a manual strategy). Only for the latest completed session.",
    ins={
        "signals": dg.AssetIn(key=SIGNALS),
        "cleaned_prices": dg.AssetIn(
            key=CLEANED,
            partition_mapping=lookback_mapping(PRICE_LOOKBACK),
            metadata={"columns": ["symbol", "session", "open", "high", "low", "close"]},
        ),
    },
    check_specs=[
        blocking(EXECUTION_ORDERS, "execution_orders__within_limits", "0 < qty <= requested and quota, unique ids"),
    ],
)
def execution_orders(
    context: dg.AssetExecutionContext,
    signals: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    broker: BrokerResource,
    backtest_book: BacktestBookResource,
    trading_config: TradingConfigResource,
    ledger: TradingLedgerResource,
    quality_gate: QualityGateResource,
):
    session = one_session(context)
    cal = session_calendar()
    fill_session = cal.next_session(session)
    if fill_session is None:
        raise dg.Failure(f"no session after {session} in the NYSE calendar")
    with broker.get() as b:
        snapshot = b.snapshot()
        latest = xnys_trading_calendar().latest_completed_session(snapshot.clock)
        if latest != session:
            raise dg.Failure(
                f"execution/orders {session}: the broker's clock says it is "
                f"{snapshot.clock.timestamp:%Y-%m-%d %H:%M}Z and the latest completed session is {latest}; "
                f"orders are planned only for that session (no order for a stale session)"
            )
        month_start = session_start(fill_session.replace(day=1))
        month_fills = b.fills(after=month_start)
        account_id = b.account_id
    closes = dict(
        cleaned_prices.filter(pl.col("session") <= session)
        .sort("session")
        .group_by("symbol")
        .agg(pl.col("close").last())
        .iter_rows()
    )
    start = book_from_snapshot(snapshot, month_fills, fill_session, closes)
    risk = trading_config.risk_config()
    planned = plan_orders(
        trading_config.traded_signals(signals.filter(pl.col("session") == session)),
        cleaned_prices,
        start,
        [session],
        risk,
        backtest_book.slippage_model(),
        backtest_book.commission_model(),
        account_id,
        next_session=fill_session,
    )
    # the bracket legs of each approved buy (null when no exit is configured): sent with the entry
    levels = exit_levels_for_orders(planned, cleaned_prices, risk)
    planned = planned.join(levels, on="client_order_id", how="left") if levels.height else planned.with_columns(
        stop_loss=pl.lit(None, dtype=pl.Float64), take_profit=pl.lit(None, dtype=pl.Float64)
    )
    book = ledger.get()
    switch = book.kill_switch()
    manual = [s.name for s in trading_config.strategy_specs() if s.approval == "manual"]
    out = require_approval(hold_buys(planned, switch.engaged), manual)
    appended = book.append(order_events(out, _now(snapshot.clock.timestamp)))
    counts = out.group_by("status").len().sort("status") if out.height else out
    context.log.info(
        f"execution/orders {session}: {out.height} orders for account {account_id} "
        f"(cash ${snapshot.account.cash:,.2f}, {len(snapshot.positions)} positions); kill switch "
        f"{'ENGAGED' if switch.engaged else 'off'}; {appended} new audit events"
    )
    gate_pending(context, quality_gate, EXECUTION_ORDERS, [session])
    yield dg.Output(
        out,
        metadata={
            "session": str(session),
            "orders": out.height,
            **{f"status_{k}": int(v) for k, v in (counts.iter_rows() if out.height else [])},
            "cash": float(snapshot.account.cash),
            "positions": len(snapshot.positions),
            "kill_switch": switch.engaged,
            "orders_table": dg.MetadataValue.md(
                markdown_table(
                    out.select("symbol", "side", "qty", "ref_price", "strategy", "status", "reason_code"), rows=50
                )
                if out.height
                else "_no orders_"
            ),
        },
    )
    yield from gated_checks(
        context,
        quality_gate,
        EXECUTION_ORDERS,
        [session],
        {"execution_orders__within_limits": rules.orders_within_limits(out, risk.monthly_share_limit)},
    )


def _submission_rows(session: dt.date, results: list[SubmitResult]) -> list[dict]:
    return [
        {
            "session": session,
            "client_order_id": r.request.client_order_id,
            "symbol": r.request.symbol,
            "strategy": r.request.strategy,
            "side": r.request.side,
            "qty": _f(r.request.qty),
            "outcome": r.outcome,
            "broker_order_id": r.order.id if r.order else None,
            "status": r.order.status if r.order else None,
            "code": r.code,
            "message": r.message,
        }
        for r in results
    ]


def known_executions(book_before: pl.DataFrame) -> set[str]:
    """The execution ids the broker had when `execution/book_before` was read (on its `$CASH` row)."""
    cash = book_before.filter(pl.col("symbol") == "$CASH")
    if "known_executions" not in cash.columns or cash.is_empty() or not cash["known_executions"][0]:
        return set()
    return set(cash["known_executions"][0].split(","))


def cancel_exit_legs(broker: Broker, symbols: set[str]) -> list[tuple[BrokerOrder, CancelResult]]:
    """Cancel the open exit legs (a bracket's or an OTO's stop and take-profit) on the symbols a signal sells:
    their shares are held for them, and the broker refuses a sell of held shares. A cancel is a request: a
    leg that fills first is simply a fill, and the sell then finds fewer shares (the broker says so)."""
    if not symbols:
        return []
    out = []
    for order in broker.orders(status="open"):
        for leg in order.legs:
            if leg.symbol in symbols and leg.side == "sell" and not leg.final:
                out.append((leg, broker.cancel(leg.id)))
    return out


def exactly_once(session: dt.date, intended: list[str], broker_ids: list[str]) -> CheckOutcome:
    """Every order we meant to send is at the broker exactly once, and the broker holds no other order
    with session D's id prefix (one would be a duplicate planned under other ids)."""
    counts: dict[str, int] = {}
    for cid in broker_ids:
        counts[cid] = counts.get(cid, 0) + 1
    twice = sorted(c for c, n in counts.items() if n > 1)
    missing = sorted(set(intended) - set(counts))
    strangers = sorted(set(counts) - set(intended))
    passed = not (twice or missing or strangers)
    return CheckOutcome(
        passed,
        f"{len(intended)} orders of {session}: each at the broker once"
        if passed
        else f"{session}: {len(twice)} ids twice, {len(missing)} missing, {len(strangers)} unknown at the broker",
        {
            "intended": len(intended),
            "at_broker": len(counts),
            "duplicates": ", ".join(twice[:10]),
            "missing": ", ".join(missing[:10]),
            "unknown": ", ".join(strangers[:10]),
        },
        () if passed else (session,),
    )


@dg.multi_asset(
    outs={
        "submissions": dg.AssetOut(
            key=SUBMISSIONS, metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="What became of each of D's orders at the broker: submitted, already_existed (a retry or "
            "a re-run found it), rejected (the broker's code), held (kill switch) or not_approved.",
        ),
        "book_before": dg.AssetOut(
            key=["execution", "book_before"], metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="The broker's positions (and cash, symbol '$CASH') just before D's orders were sent: "
            "what reconciliation starts from.",
        ),
    },
    ins={"orders": dg.AssetIn(key=EXECUTION_ORDERS)},
    group_name="execution",
    partitions_def=sessions_partitions_def(),
    backfill_policy=ONE_SESSION,
    pool=TRADING_ACCOUNT_POOL,
    check_specs=[
        blocking(SUBMISSIONS, "execution_submissions__exactly_once", "each approved order at the broker once"),
    ],
)
def execution_submissions(
    context: dg.AssetExecutionContext,
    orders: pl.DataFrame,
    broker: BrokerResource,
    trading_config: TradingConfigResource,
    ledger: TradingLedgerResource,
    alerts: AlertsResource,
    quality_gate: QualityGateResource,
):
    session = one_session(context)
    cal = xnys_trading_calendar()
    book = ledger.get()
    with broker.get() as b:
        clock = b.clock()
        verdict = cal.may_submit(session, clock, trading_config.submit_cutoff_minutes)
        if not verdict:
            raise dg.Failure(f"execution/submissions {session}: not sent. {verdict.reason}")
        now = _now(clock.timestamp)
        deadline = approval_deadline(session, session_calendar(), trading_config.approval_deadline)
        effective = apply_decisions(orders, book.decisions(session, until=deadline), now, deadline)
        switch = book.kill_switch()
        effective = hold_buys(effective, switch.engaged)
        before = b.positions()
        account = b.account()
        # the executions the broker already had when the positions were read: reconciliation counts the others
        known = sorted(f.execution_id for f in b.fills(after=session_start(session)))
        requests = order_requests(effective, trading_config.entry_style())
        cancels = cancel_exit_legs(b, {r.symbol for r in requests if r.side == "sell"})
        results = b.submit(requests, since=session_start(session))
        at_broker = [o.client_order_id for o in our_orders(b.orders(status="all", after=session_start(session)), session)]
        paper = b.paper
    book_name = "paper" if paper else "LIVE"
    for r in results:
        if r.outcome == "rejected":
            _alert(context, alerts, order_rejected_alert(r, book=book_name))
    events = submission_events(results, now) + expiry_events(effective, now) + [
        AuditEvent(
            kind="cancel", occurred_at=now, session=session, symbol=leg.symbol, side=leg.side, qty=leg.qty,
            ref=leg.id, reason_code=None if result.ok else str(result.status),
            reason="an exit leg cancelled before a signal's sell of the position" + ("" if result.ok else f": {result.message}"),
        )
        for leg, result in cancels
    ]
    book.append(events)
    sent = {r.request.client_order_id for r in results}
    rows = _submission_rows(session, results)
    for row in effective.filter(~pl.col("client_order_id").is_in(list(sent))).iter_rows(named=True):
        held = row["reason_code"] == "KILL_SWITCH"
        rows.append(
            {
                "session": session, "client_order_id": row["client_order_id"], "symbol": row["symbol"],
                "strategy": row["strategy"], "side": row["side"], "qty": float(row["requested_qty"]),
                "outcome": "held" if held else "not_approved", "broker_order_id": None, "status": row["status"],
                "code": row["reason_code"], "message": None,
            }
        )
    out = pl.DataFrame(rows, schema=SUBMISSION_SCHEMA, orient="row") if rows else pl.DataFrame(schema=SUBMISSION_SCHEMA)
    book_rows = [
        {"session": session, "symbol": p.symbol, "qty": float(p.qty), "avg_entry_price": float(p.avg_entry_price),
         "as_of": now, "known_executions": None}
        for p in before
    ] + [
        {"session": session, "symbol": "$CASH", "qty": float(account.cash), "avg_entry_price": 1.0, "as_of": now,
         "known_executions": ",".join(known)}
    ]
    before_frame = pl.DataFrame(
        book_rows,
        schema={
            "session": pl.Date(), "symbol": pl.String(), "qty": pl.Float64(), "avg_entry_price": pl.Float64(),
            "as_of": pl.Datetime("us", "UTC"), "known_executions": pl.String(),
        },
        orient="row",
    )
    outcomes = out.group_by("outcome").len().sort("outcome") if out.height else out
    context.log.info(
        f"execution/submissions {session}: {len(requests)} sent through {type(b).__name__} at {now:%H:%M}Z; "
        + ", ".join(f"{k} {v}" for k, v in (outcomes.iter_rows() if out.height else []))
    )
    gate_pending(context, quality_gate, SUBMISSIONS, [session])
    yield dg.Output(
        out,
        "submissions",
        metadata={
            "session": str(session),
            "sent_at": now.isoformat(),
            **{f"outcome_{k}": int(v) for k, v in (outcomes.iter_rows() if out.height else [])},
            "kill_switch": switch.engaged,
            "submissions_table": dg.MetadataValue.md(
                markdown_table(out.select("symbol", "side", "qty", "strategy", "outcome", "status", "code"), rows=50)
                if out.height
                else "_nothing to send_"
            ),
        },
    )
    yield dg.Output(before_frame, "book_before", metadata={"positions": len(before), "cash": float(account.cash)})
    intended = [r.request.client_order_id for r in results if r.outcome != "rejected"]
    yield from gated_checks(
        context,
        quality_gate,
        SUBMISSIONS,
        [session],
        {"execution_submissions__exactly_once": exactly_once(session, intended, at_broker)},
    )


def reconciliation(
    session: dt.date, before: pl.DataFrame, fills: list[BrokerFill], actual: dict[str, Decimal]
) -> tuple[CheckOutcome, list[Mismatch]]:
    """The broker's positions against the positions before D's orders plus D's fills."""
    start = {
        s: Decimal(repr(q)) for s, q in before.filter(pl.col("symbol") != "$CASH").select("symbol", "qty").iter_rows()
    }
    mismatches = reconcile(expected_positions(start, fills), actual)
    outcome = CheckOutcome(
        not mismatches,
        f"{session}: the broker's positions equal the ledger's"
        if not mismatches
        else f"{session}: {len(mismatches)} positions differ from the ledger",
        {"mismatches": "; ".join(m.describe() for m in mismatches[:20]), "symbols": len(actual)},
        () if not mismatches else (session,),
    )
    return outcome, mismatches


@dg.multi_asset(
    outs={
        "fills": dg.AssetOut(
            key=FILLS, metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="D's orders as the broker last reported them (status, cumulative filled qty, average "
            "price), each execution recorded once in the ledger, and the account reconciled: positions before + "
            "fills = the broker's positions. Re-run (the reconciliation sensor, the after-close schedule) until "
            "all_final.",
        ),
        "account": dg.AssetOut(
            key=ACCOUNT, metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="The trading book's P&L for D's orders: the account as the broker reports it at the last "
            "poll (after D+1's close once the after-close schedule ran): cash, equity, the day's P&L against the "
            "previous close's equity, long market value, what D's orders bought and sold.",
        ),
    },
    ins={
        "submissions": dg.AssetIn(key=SUBMISSIONS),
        "book_before": dg.AssetIn(key=["execution", "book_before"]),
    },
    group_name="execution",
    partitions_def=sessions_partitions_def(),
    backfill_policy=ONE_SESSION,
    pool=TRADING_ACCOUNT_POOL,
    check_specs=[
        blocking(FILLS, "execution_fills__reconciled", "broker positions = positions before + recorded fills"),
        dg.AssetCheckSpec(
            "execution_fills__cash_matches",
            asset=FILLS,
            blocking=False,
            description="broker cash = cash before + fills - commissions, a cent per execution (WARN: fees, "
            "dividends and transfers move cash too)",
        ),
    ],
)
def execution_fills(
    context: dg.AssetExecutionContext,
    submissions: pl.DataFrame,
    book_before: pl.DataFrame,
    broker: BrokerResource,
    trading_config: TradingConfigResource,
    ledger: TradingLedgerResource,
    alerts: AlertsResource,
    quality_gate: QualityGateResource,
):
    session = one_session(context)
    since = session_start(session)
    ids = set(submissions.filter(pl.col("broker_order_id").is_not_null())["client_order_id"].to_list())
    with broker.get() as b:
        b.advance()
        # executions, then orders, positions and cash, then executions again until none arrived in between: a
        # live account fills while it is read, and a snapshot that disagrees with itself is a false mismatch
        broker_fills, (broker_orders, held, account), stable = consistent_read(
            lambda: b.fills(after=since), lambda: (b.orders(status="all", after=since), b.positions(), b.account())
        )
        orders = [o for o in our_orders(broker_orders, session) if o.client_order_id in ids]
        order_ids = {o.id for o in orders} | {leg.id for o in orders for leg in o.legs}
        # every execution the broker did not have when the positions before were read: D's orders', and any
        # other (an earlier bracket's exit leg, a trade made elsewhere), so positions and cash reconcile; by
        # execution id, not by time (a broker's clock may stamp a fill and a read with the same instant)
        known = known_executions(book_before)
        all_fills = [f for f in broker_fills if f.execution_id not in known]
        fills = [f for f in all_fills if f.order_id in order_ids]
        actual = {p.symbol: p.qty for p in held}
        clock = b.clock()
        paper = b.paper
    if not stable:
        context.log.warning(
            f"execution/fills {session}: executions kept arriving while the account was read; a mismatch below "
            "may be timing only: the next reconciliation poll reads again"
        )
    new = ledger.get().record_fills(all_fills, session)
    rows = [
        {
            "session": session, "client_order_id": o.client_order_id, "broker_order_id": o.id, "symbol": o.symbol,
            "side": o.side, "status": o.status, "qty": _f(o.qty), "filled_qty": float(o.filled_qty),
            "filled_avg_price": _f(o.filled_avg_price), "final": o.final,
        }
        for o in orders
    ]
    out = pl.DataFrame(rows, schema=FILLS_SCHEMA, orient="row") if rows else pl.DataFrame(schema=FILLS_SCHEMA)
    all_final = all(o.final for o in orders)
    outcome, mismatches = reconciliation(session, book_before, all_fills, actual)
    cash_before = book_before.filter(pl.col("symbol") == "$CASH")["qty"]
    start_cash = Decimal(repr(cash_before[0])) if cash_before.len() else Decimal(0)
    expected_cash = start_cash + cash_change(all_fills)
    cash_off = cash_mismatch(start_cash, all_fills, account.cash)
    if cash_off is not None:
        mismatches = [*mismatches, cash_off]
    cash_outcome = CheckOutcome(
        cash_off is None,
        f"{session}: cash = cash before + fills - commissions"
        if cash_off is None
        else f"{session}: the broker's cash differs from the ledger's by {cash_off.difference} (fees, a dividend, "
        "a transfer, or a trade made elsewhere)",
        {"expected": float(expected_cash), "broker": float(account.cash), "severity": "warning"},
    )
    book_name = "paper" if paper else "LIVE"
    if mismatches:
        _alert(context, alerts, reconciliation_mismatch_alert(session, mismatches, book=book_name))
    if all_final and fills:
        _alert(context, alerts, fills_summary_alert(session, fills, book=book_name))
    last_equity = getattr(account, "last_equity", None)
    threshold = trading_config.pnl_alert_below_usd
    if threshold is not None and last_equity is not None and account.equity - last_equity < Decimal(repr(threshold)):
        day_pnl = account.equity - last_equity
        _alert(
            context,
            alerts,
            pnl_below_threshold_alert(
                session, day_pnl, Decimal(repr(threshold)), equity=account.equity, book=book_name
            ),
        )
    context.log.info(
        f"execution/fills {session}: {len(orders)} orders, {sum(o.final for o in orders)} final, "
        f"{len(fills)} executions of its orders, {len(all_fills)} since the positions were read ({new} new in "
        "the ledger)"
    )
    bought = sum((f.qty * f.price for f in fills if f.side == "buy"), Decimal(0))
    sold = sum((f.qty * f.price for f in fills if f.side == "sell"), Decimal(0))
    account_row = pl.DataFrame(
        [
            {
                "session": session,
                "as_of": _now(clock.timestamp),
                "cash": float(account.cash),
                "equity": float(account.equity),
                "last_equity": _f(last_equity),
                "day_pnl": _f(account.equity - last_equity) if last_equity is not None else None,
                "long_market_value": float(sum((p.market_value or Decimal(0) for p in held if p.qty > 0), Decimal(0))),
                "positions": len(held),
                "bought": float(bought),
                "sold": float(sold),
                "executions": len(fills),
                "all_final": all_final,
            }
        ],
        schema=ACCOUNT_SCHEMA,
    )
    gate_pending(context, quality_gate, FILLS, [session])
    yield dg.Output(
        out,
        "fills",
        metadata={
            "session": str(session),
            "all_final": all_final,
            "orders": len(orders),
            "executions": len(fills),
            "new_executions": new,
            "cash": float(account.cash),
            "cash_expected": float(expected_cash),
            "equity": float(account.equity),
            "fills_table": dg.MetadataValue.md(
                markdown_table(out.select("symbol", "side", "status", "qty", "filled_qty", "filled_avg_price"), rows=50)
                if out.height
                else "_no orders_"
            ),
        },
    )
    yield dg.Output(
        account_row,
        "account",
        metadata={
            "equity": float(account.equity),
            "cash": float(account.cash),
            "day_pnl": account_row["day_pnl"][0] if last_equity is not None else "unknown",
            "as_of": _now(clock.timestamp).isoformat(),
        },
    )
    yield from gated_checks(
        context,
        quality_gate,
        FILLS,
        [session],
        {"execution_fills__reconciled": outcome, "execution_fills__cash_matches": cash_outcome},
    )


EXECUTION_ASSETS = [execution_orders, execution_submissions, execution_fills]
