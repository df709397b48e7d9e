"""Humans in the loop (issue 9, decision 0005 section 5): approve or refuse pending orders, the kill switch,
flatten the account. Each is one plain function (`decide_orders`, `switch_kill`, `flatten_account`) that
the control jobs below (launchable from the UI's launchpad) and the CLI (`cli_control.py`) both call.

* `approve_orders_job`: approval / refusal events for session D's orders pending approval (all of them when
  no id is given). All or nothing: an id that is not pending for D (unknown, of another session, already
  submitted, rejected or expired), or a decision after the deadline, fails the run and records nothing.
  A person may change their mind until the order is submitted: the latest decision counts.
* `kill_switch_job`: one kill_switch event (engaged: the submissions drop every buy; sells still go out),
  logged and alerted.
* `flatten_job`: engage the kill switch; cancel every open order; close every position
  (`close_all_positions(cancel_orders=True)`, every item of its 207 checked); retry each failed symbol
  once with the broker's per-symbol close when it has one (`close_position(symbol)`), else report it; then
  poll positions and open orders until both are empty (the closing orders filled) or the timeout; every
  step an audit event, one alert at the end; the run fails listing what is not flat.

None of these jobs carries the writer tag: a kill switch must not wait behind a running backfill.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from trading_dagster.domain.approval import DEFAULT_DEADLINE_NY, approval_deadline
from trading_dagster.domain.audit import PIPELINE, AuditEvent
from trading_dagster.domain.broker_records import (
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    CancelResult,
    CloseResult,
)
from trading_dagster.resources.alerts import Alert, AlertDeliveryError, AlertSink, AlertsResource
from trading_dagster.resources.brokers.base import Broker
from trading_dagster.resources.configured import BrokerResource
from trading_dagster.resources.ledger import KillSwitchState, TradingLedger, TradingLedgerResource

LOG = logging.getLogger(__name__)
Decision = Literal["approve", "refuse"]
DECISION_KIND = {"approve": "approval", "refuse": "refusal"}
CLOSED_KINDS = ("submission", "rejection", "approval_expired")  # an order past these cannot be decided
DEFAULT_FLATTEN_TIMEOUT_SECONDS = 300.0
DEFAULT_POLL_INTERVAL_SECONDS = 5.0


class ControlError(RuntimeError):
    """A control action was refused (bad ids, past the deadline, no actor) or did not complete (not flat)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor or actor == PIPELINE:
        raise ControlError("say who you are: --actor / config actor must name a person, not be empty or 'pipeline'")
    return actor


def _send_alert(sink: AlertSink | None, alert: Alert, log: Any) -> None:
    """An alert failure is logged, never raised: the act is in the ledger already."""
    if sink is None:
        return
    try:
        sink.send(alert)
    except AlertDeliveryError as exc:
        log.warning(f"alert {alert.key} not delivered everywhere: {exc}")


# ------------------------------------------------------------------------------------------------ approval


@dataclass(frozen=True)
class ApprovalResult:
    session: dt.date
    decision: Decision
    deadline: dt.datetime
    recorded: tuple[AuditEvent, ...]

    def summary(self) -> str:
        verb = "approved" if self.decision == "approve" else "refused"
        ids = ", ".join(e.client_order_id or "" for e in self.recorded)
        return (
            f"{verb} {len(self.recorded)} order(s) of session {self.session} "
            f"(deadline {self.deadline:%Y-%m-%d %H:%M}Z): {ids}"
        )


def pending_orders(ledger: TradingLedger, session: dt.date) -> dict[str, AuditEvent]:
    """Session D's orders that wait for a person: a pending_approval event and no submission, rejection
    or expiry since (a decided order is still pending until submitted: the decision may change)."""
    events = ledger.audit_events(session=session)
    closed = {e.client_order_id for e in events if e.kind in CLOSED_KINDS}
    return {
        e.client_order_id: e
        for e in events
        if e.kind == "pending_approval" and e.client_order_id and e.client_order_id not in closed
    }


def decide_orders(
    ledger: TradingLedger,
    session: dt.date,
    client_order_ids: Sequence[str],
    decision: str,
    actor: str,
    reason: str = "",
    *,
    now: dt.datetime | None = None,
    deadline: dt.datetime | None = None,
    deadline_ny: str = DEFAULT_DEADLINE_NY,
) -> ApprovalResult:
    """Record a person's approval or refusal of session D's pending orders (all of them when
    `client_order_ids` is empty). All or nothing: ControlError naming each id that is not pending, or when
    the deadline (default: `approval_deadline(session, NYSE, deadline_ny)`) has passed."""
    if decision not in DECISION_KIND:
        raise ControlError(f"decision must be 'approve' or 'refuse', not {decision!r}")
    actor = _check_actor(actor)
    now = now or _now()
    if deadline is None:
        from trading_dagster.partitions import session_calendar

        deadline = approval_deadline(session, session_calendar(), deadline_ny)
    if now >= deadline:
        raise ControlError(
            f"too late: decisions on session {session}'s orders closed at {deadline:%Y-%m-%d %H:%M}Z "
            "(the orders not approved by then have expired)"
        )
    pending = pending_orders(ledger, session)
    ids = list(dict.fromkeys(i.strip() for i in client_order_ids if i.strip()))
    if not ids:
        ids = sorted(pending)
        if not ids:
            raise ControlError(f"no order of session {session} is pending approval")
    problems = [f"  {cid}: {_why_not_pending(ledger, session, cid)}" for cid in ids if cid not in pending]
    if problems:
        raise ControlError(
            f"nothing recorded: {len(problems)} of the {len(ids)} id(s) are not pending approval for session "
            f"{session}:\n" + "\n".join(problems) + (
                f"\npending for {session}: {', '.join(sorted(pending))}" if pending else
                f"\nno order of session {session} is pending approval"
            )
        )
    kind = DECISION_KIND[decision]
    events = tuple(
        AuditEvent(
            kind=kind,
            occurred_at=now,
            actor=actor,
            session=session,
            client_order_id=cid,
            symbol=pending[cid].symbol,
            side=pending[cid].side,
            qty=pending[cid].qty,
            price=pending[cid].price,
            reason=reason or None,
            details={"deadline": deadline.isoformat()},
        )
        for cid in ids
    )
    ledger.append(events)
    return ApprovalResult(session, decision, deadline, events)  # type: ignore[arg-type]


def _why_not_pending(ledger: TradingLedger, session: dt.date, cid: str) -> str:
    mine = [e for e in ledger.audit_events(session=session) if e.client_order_id == cid]
    kinds = {e.kind for e in mine}
    for kind, why in (
        ("submission", "already submitted to the broker"),
        ("rejection", "already rejected by the broker"),
        ("approval_expired", "expired (no decision before the deadline)"),
    ):
        if kind in kinds:
            return why
    if mine:
        return f"not an order waiting for approval (its events: {', '.join(sorted(kinds))})"
    elsewhere = [e for e in ledger.audit_events(kinds=["pending_approval"]) if e.client_order_id == cid]
    if elsewhere:
        return f"an order of session {elsewhere[0].session}, not {session}"
    return "no such order in the trading ledger"


# ------------------------------------------------------------------------------------------------ kill switch


def switch_kill(
    ledger: TradingLedger,
    engaged: bool,
    actor: str,
    reason: str = "",
    *,
    now: dt.datetime | None = None,
    alerts: AlertSink | None = None,
    log: Any = LOG,
) -> KillSwitchState:
    """Append one kill_switch event, log and alert; the state after it (still engaged when released
    while the configuration forces it)."""
    actor = _check_actor(actor)
    state = ledger.set_kill_switch(engaged, actor, reason, now=now or _now())
    text = state.describe()
    if not engaged and state.engaged:
        text += " (the configuration keeps it engaged: [execution] kill_switch = true)"
    log.warning(text)
    _send_alert(
        alerts,
        Alert(
            kind="kill_switch",
            key=f"kill_switch:{state.since.isoformat() if state.since else 'config'}",
            title=f"Kill switch {'ENGAGED' if engaged else 'released'} by {actor}",
            text=f"{reason}\n{text}" if reason else text,
            details={"engaged": state.engaged, "actor": actor},
            severity="ERROR" if engaged else "WARNING",
        ),
        log,
    )
    return state


# ------------------------------------------------------------------------------------------------ flatten


@dataclass
class FlattenReport:
    """What flattening did and what is left. `failed` maps a symbol whose close could not be submitted
    (after the retry) to why."""

    ref: str
    cancels: list[CancelResult] = field(default_factory=list)
    closes: list[CloseResult] = field(default_factory=list)
    retried: dict[str, str] = field(default_factory=dict)  # symbol -> outcome of the per-symbol close
    failed: dict[str, str] = field(default_factory=dict)
    positions: list[BrokerPosition] = field(default_factory=list)  # left at the end
    open_orders: list[BrokerOrder] = field(default_factory=list)  # left at the end
    flat: bool = False
    seconds: float = 0.0

    def not_flat(self) -> list[str]:
        lines = [f"position {p.symbol} {p.qty}" for p in self.positions]
        lines += [f"open order {o.client_order_id or o.id} {o.symbol} {o.side} {o.qty} ({o.status})" for o in self.open_orders]
        lines += [f"close of {s} not submitted: {why}" for s, why in self.failed.items()]
        return lines

    def summary(self) -> str:
        head = (
            f"flatten {self.ref}: {len(self.cancels)} cancel request(s), {len(self.closes)} close item(s), "
            f"{len(self.retried)} retried, {self.seconds:.1f} s: "
        )
        if self.flat:
            return head + "the account is flat"
        return head + "NOT flat:\n" + "\n".join(f"  {line}" for line in self.not_flat())


def _close_position(broker: Broker, symbol: str) -> tuple[bool, str, str | None]:
    """The broker's per-symbol close, if it has one: (submitted, what happened, order id)."""
    closer = getattr(broker, "close_position", None)
    if not callable(closer):
        return False, f"{type(broker).__name__} has no per-symbol close; close {symbol} by hand", None
    try:
        out = closer(symbol)
    except BrokerError as exc:
        return False, f"per-symbol close failed: {exc}", None
    if isinstance(out, CloseResult):
        if out.ok:
            return True, "closing order submitted", out.order.id if out.order else None
        return False, f"per-symbol close failed: HTTP {out.status} {out.message or ''}".strip(), None
    if isinstance(out, BrokerOrder):
        return True, "closing order submitted", out.id
    return True, "closing order submitted", None


def flatten_account(
    broker: Broker,
    ledger: TradingLedger,
    *,
    actor: str,
    reason: str = "",
    timeout_seconds: float = DEFAULT_FLATTEN_TIMEOUT_SECONDS,
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS,
    ref: str | None = None,
    alerts: AlertSink | None = None,
    log: Any = LOG,
    now: Callable[[], dt.datetime] = _now,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> FlattenReport:
    """Close the whole account (module docstring); the report says whether it is flat. Raises nothing for
    a broker that refuses items: every step is recorded and the caller fails on `not report.flat`."""
    actor = _check_actor(actor)
    if timeout_seconds < 0 or poll_interval_seconds <= 0:
        raise ControlError("the flatten timeout must be >= 0 and the poll interval > 0 seconds")
    started = monotonic()
    ref = ref or f"flatten-{now():%Y%m%dT%H%M%S%fZ}"
    report = FlattenReport(ref=ref)

    def step(code: str, *, symbol: str | None = None, text: str | None = None, **details: Any) -> None:
        ledger.append(
            [
                AuditEvent(
                    kind="flatten", occurred_at=now(), actor=actor, symbol=symbol, reason_code=code,
                    reason=text, ref=ref, details=details,
                )
            ]
        )

    switch_kill(ledger, True, actor, f"flatten: {reason}" if reason else "flatten", now=now(), log=log)
    step("FLATTEN_STARTED", text=reason or None, timeout_seconds=timeout_seconds)

    try:
        report.cancels = list(broker.cancel_all())
    except BrokerError as exc:
        step("CANCEL_ALL_FAILED", text=str(exc))
        log.error(f"cancel all orders failed: {exc}")
    ledger.append(
        AuditEvent(
            kind="cancel", occurred_at=now(), actor=actor, ref=c.order_id,
            reason_code="CANCEL_REQUESTED" if c.ok else f"CANCEL_FAILED_{c.status}",
            reason=c.message, details={"status": c.status, "flatten": ref},
        )
        for c in report.cancels
    )
    failed_cancels = [c for c in report.cancels if not c.ok]
    log.info(f"cancel all: {len(report.cancels)} order(s), {len(failed_cancels)} refused")

    failed: dict[str, str] = {}
    try:
        report.closes = list(broker.close_all_positions(cancel_orders=True))
    except BrokerError as exc:
        step("CLOSE_ALL_FAILED", text=str(exc))
        log.error(f"close all positions failed: {exc}")
        try:
            failed = {p.symbol: f"close all failed: {exc}" for p in broker.positions() if p.qty != 0}
        except BrokerError as again:
            failed = {"?": f"close all failed and positions unreadable: {again}"}
    for item in report.closes:  # every item of the 207: a 403 does not raise
        if item.ok:
            step("CLOSE_SUBMITTED", symbol=item.symbol, status=item.status, order_id=item.order.id if item.order else None)
        else:
            why = f"HTTP {item.status}" + (f" {item.message}" if item.message else "")
            failed[item.symbol] = why
            step("CLOSE_FAILED", symbol=item.symbol, text=why, status=item.status)
    if failed:
        log.warning(f"closes refused for {sorted(failed)}: retrying each once")
        sleep(poll_interval_seconds)  # the cancels that held the shares may need a moment
    for symbol, why in failed.items():
        if symbol == "?":
            report.failed[symbol] = why
            continue
        ok, outcome, order_id = _close_position(broker, symbol)
        report.retried[symbol] = outcome
        step("CLOSE_RETRY_SUBMITTED" if ok else "CLOSE_RETRY_FAILED", symbol=symbol, text=outcome, order_id=order_id)
        if not ok:
            report.failed[symbol] = f"{why}; retry: {outcome}"

    stuck = set(report.failed)  # no order of ours will close these
    while True:
        try:
            report.positions = [p for p in broker.positions() if p.qty != 0]
            report.open_orders = list(broker.orders(status="open"))
        except BrokerError as exc:
            log.warning(f"polling the account failed ({exc}); trying again")
        else:
            if not report.positions and not report.open_orders:
                report.flat = True  # a failed close whose position went anyway does not matter
                break
            if not report.open_orders and {p.symbol for p in report.positions} <= stuck:
                break  # nothing left that could still change: do not wait for the timeout
        if monotonic() - started >= timeout_seconds:
            break
        sleep(poll_interval_seconds)
    report.seconds = monotonic() - started
    step(
        "FLAT" if report.flat else "NOT_FLAT",
        text=None if report.flat else "; ".join(report.not_flat()),
        positions={p.symbol: str(p.qty) for p in report.positions},
        open_orders=[o.client_order_id or o.id for o in report.open_orders],
        failed=dict(report.failed),
        seconds=round(report.seconds, 3),
    )
    (log.info if report.flat else log.error)(report.summary())
    _send_alert(
        alerts,
        Alert(
            kind="flatten",
            key=f"flatten:{ref}",
            title=f"Flatten by {actor}: {'account flat' if report.flat else 'account NOT flat'}",
            text=report.summary(),
            details={"flat": report.flat, "ref": ref},
            severity="WARNING" if report.flat else "ERROR",
        ),
        log,
    )
    return report


# ------------------------------------------------------------------------------------------------ Dagster


class ApproveOrdersConfig(dg.Config):
    session: str = Field(description="the signal session D of the orders, YYYY-MM-DD")
    client_order_ids: list[str] = Field(
        default=[], description="the orders to decide; empty = every order of D pending approval"
    )
    decision: str = Field(default="approve", description="'approve' or 'refuse'")
    actor: str = Field(description="who decides (a person's name): recorded in the audit log")
    reason: str = Field(default="", description="why, in a few words: recorded in the audit log")
    deadline_ny: str = Field(
        default=DEFAULT_DEADLINE_NY,
        description="the approval deadline on D+1, HH:MM New York (at most 30 min before an early close)",
    )


class KillSwitchConfig(dg.Config):
    engaged: bool = Field(description="true: no new buys are sent (sells still are); false: release")
    actor: str = Field(description="who sets it (a person's name): recorded in the audit log")
    reason: str = Field(default="", description="why: recorded in the audit log and the alert")


class FlattenConfig(dg.Config):
    actor: str = Field(description="who flattens (a person's name): recorded in the audit log")
    reason: str = Field(default="", description="why: recorded in the audit log and the alert")
    timeout_seconds: float = Field(
        default=DEFAULT_FLATTEN_TIMEOUT_SECONDS,
        description="how long to wait for the closing orders to fill (with the market closed they wait for the open)",
    )
    poll_interval_seconds: float = Field(default=DEFAULT_POLL_INTERVAL_SECONDS, description="seconds between polls")


def _fail(exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


KILL_SWITCH_KEY = dg.AssetKey(["execution", "kill_switch"])
# the kill switch in the UI: an asset whose every materialization is a change of the switch (its history is
# the asset's history); the state itself is the ledger's last kill_switch event
KILL_SWITCH_ASSET = dg.AssetSpec(
    KILL_SWITCH_KEY,
    group_name="execution",
    description="The kill switch: engaged means no new buy reaches the broker (sells still do). Each "
    "materialization is a change made by kill_switch_job or flatten_job (who, when, why); the state is the "
    "trading ledger's last kill_switch event, or [execution] kill_switch = true in the config. To square off "
    "the account in an emergency, launch flatten_job (portal/emergency_controls explains both).",
    tags={"control": "emergency"},
)


def kill_switch_materialization(state: KillSwitchState) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(
        asset_key=KILL_SWITCH_KEY,
        description=state.describe(),
        metadata={
            "engaged": state.engaged,
            "by": state.actor or "",
            "reason": state.reason or "",
            "since": state.since.isoformat() if state.since else "",
        },
    )


@dg.op(description="Approve or refuse session D's orders pending approval (all or nothing).")
def approve_orders_op(context: dg.OpExecutionContext, config: ApproveOrdersConfig, ledger: TradingLedgerResource) -> None:
    try:
        session = dt.date.fromisoformat(config.session.strip())
    except ValueError as exc:
        raise _fail(ControlError(f"session must be YYYY-MM-DD, not {config.session!r}")) from exc
    try:
        result = decide_orders(
            ledger.get(), session, config.client_order_ids, config.decision.strip().lower(), config.actor,
            config.reason, deadline_ny=config.deadline_ny,
        )
    except (ControlError, ValueError) as exc:
        raise _fail(exc) from exc
    context.log.info(result.summary())


@dg.op(description="Engage or release the kill switch: one audit event, logged and alerted.")
def kill_switch_op(
    context: dg.OpExecutionContext, config: KillSwitchConfig, ledger: TradingLedgerResource, alerts: AlertsResource
) -> None:
    try:
        state = switch_kill(
            ledger.get(), config.engaged, config.actor, config.reason, alerts=alerts.sink(context.log), log=context.log
        )
    except ControlError as exc:
        raise _fail(exc) from exc
    context.log_event(kill_switch_materialization(state))


@dg.op(
    description="Emergency square-off: engage the kill switch, cancel every order, close every position, "
    "wait until flat."
)
def flatten_op(
    context: dg.OpExecutionContext,
    config: FlattenConfig,
    broker: BrokerResource,
    ledger: TradingLedgerResource,
    alerts: AlertsResource,
) -> None:
    try:
        with broker.get() as b:
            report = flatten_account(
                b, ledger.get(), actor=config.actor, reason=config.reason, timeout_seconds=config.timeout_seconds,
                poll_interval_seconds=config.poll_interval_seconds, ref=f"flatten-{context.run_id}",
                alerts=alerts.sink(context.log), log=context.log,
            )
    except ControlError as exc:
        raise _fail(exc) from exc
    context.log_event(kill_switch_materialization(ledger.get().kill_switch()))
    if not report.flat:
        raise dg.Failure(
            description=report.summary(),
            metadata={"not_flat": dg.MetadataValue.json(report.not_flat())},
            allow_retries=False,
        )


# the control jobs' tag: the Jobs page and the run list filter on it ("trading_dagster/control"); it does not
# change how they run (no writer tag: they never queue behind a backfill)
CONTROL_TAG = "trading_dagster/control"


@dg.job(
    description="Approvals: approve or refuse session D's orders pending approval (strategies with approval = "
    "'manual'), all or nothing, before [execution] approval_deadline. Config: session, actor (your name), "
    "decision, optional client_order_ids and reason. Same as `trading-dagster approve`.",
    tags={CONTROL_TAG: "approval"},
)
def approve_orders_job() -> None:
    approve_orders_op()


@dg.job(
    description="Kill switch: engaged = no new buy reaches the broker (sells still do); released = normal. "
    "Config: engaged (true/false), actor (your name), reason. Each change is an audit event, an alert and a "
    "materialization of execution/kill_switch. Same as `trading-dagster kill-switch on|off`.",
    tags={CONTROL_TAG: "emergency"},
)
def kill_switch_job() -> None:
    kill_switch_op()


@dg.job(
    description="EMERGENCY SQUARE-OFF of the broker account: engages the kill switch, cancels every open order, "
    "closes every position, and waits until the account is flat (the run fails listing what is not). Config: "
    "actor (your name), reason, timeout_seconds. Acts on the broker account only, never on the backtest book. "
    "Same as `trading-dagster flatten --yes`.",
    tags={CONTROL_TAG: "emergency"},
)
def flatten_job() -> None:
    flatten_op()


CONTROL_JOBS = (approve_orders_job, kill_switch_job, flatten_job)
