"""The trading ledger's records: one `AuditEvent` per thing that happened to the trading book (decision 0005,
section 5), each with a deterministic id, and the one human-readable line each becomes.

Kinds (`EVENT_KINDS`):

* from the pipeline, per order of a signal session D: `signal`, `decision` (approved by our risk engine),
  `denial` (denied by it, with its reason code), `pending_approval` (a manual strategy's order waiting for a
  person), `approval_expired` (nobody decided by the deadline), `submission` (the broker holds the order),
  `rejection` (the broker refused it: their code), `fill` (one execution), `cancel` (a cancel request);
* from people: `approval`, `refusal` (of a pending order), `kill_switch` (engaged / released), `flatten`
  (each step of closing the account).

**Event ids** are pure functions of what identifies the event (`IDENTITY`), never of when it was recorded,
so re-running a session, a retried run or two runs at once append nothing new:

* an order's pipeline events: the kind, session and client order id (plus the quantity and reason code of a
  decision or denial: a re-plan that decided differently is a new fact and is recorded beside the first);
* a fill: the broker's execution id; a cancel: the broker's order id (`ref`) and its outcome code;
* a person's act (approval, refusal, kill switch, flatten step): also when it happened and who did it, so
  engaging the switch twice is two events, while the same act handed in twice is one.

No Dagster, no I/O: `resources/ledger.py` stores the events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from trading_dagster.domain.broker_records import SubmitResult

EVENT_KINDS: tuple[str, ...] = (
    "signal",
    "decision",
    "denial",
    "pending_approval",
    "approval",
    "refusal",
    "approval_expired",
    "submission",
    "rejection",
    "fill",
    "cancel",
    "kill_switch",
    "flatten",
)
PIPELINE = "pipeline"  # the actor of everything no person did
DECISION_KINDS = ("approval", "refusal")  # a person's answer to a pending order
KILL_SWITCH_ON = "KILL_SWITCH_ENGAGED"
KILL_SWITCH_OFF = "KILL_SWITCH_RELEASED"

# the fields hashed into each kind's event id (besides the kind and `ref`, always hashed)
IDENTITY: Mapping[str, tuple[str, ...]] = {
    "signal": ("session", "client_order_id"),
    "decision": ("session", "client_order_id", "qty", "reason_code"),
    "denial": ("session", "client_order_id", "qty", "reason_code"),
    "pending_approval": ("session", "client_order_id"),
    "approval": ("session", "client_order_id", "occurred_at", "actor"),
    "refusal": ("session", "client_order_id", "occurred_at", "actor"),
    "approval_expired": ("session", "client_order_id"),
    "submission": ("session", "client_order_id"),
    "rejection": ("session", "client_order_id"),
    "fill": (),  # ref = the execution id
    "cancel": ("reason_code",),  # ref = the broker's order id; a failed then a granted request: two events
    "kill_switch": ("occurred_at", "actor", "reason_code"),
    "flatten": ("occurred_at", "actor", "symbol", "reason_code"),
}
_NEEDS_REF = ("fill", "cancel")
_ID_LEN = 32  # hex digits of sha256 (128 bits)


def _utc(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(dt.UTC)


def _identity_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


@dataclass(frozen=True)
class AuditEvent:
    """One fact of the trading book. `occurred_at` is when it happened (UTC); `recorded_at` is set by the
    store when it first appends the event. `ref` is the outside id that identifies a fill (execution id) or
    a cancel (broker order id), or tells apart two steps of one act (a flatten run's step). `reason_code`
    is machine-readable (`QTY_OVER_MONTHLY_LIMIT`, a broker's code, `KILL_SWITCH_ENGAGED`), `reason` a
    person's words or the broker's message. `event_id` is computed (see the module docstring)."""

    kind: str
    occurred_at: dt.datetime
    actor: str = PIPELINE
    session: dt.date | None = None
    client_order_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    qty: Decimal | None = None
    price: Decimal | None = None
    reason_code: str | None = None
    reason: str | None = None
    ref: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    recorded_at: dt.datetime | None = None
    event_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown audit event kind {self.kind!r}; expected one of {EVENT_KINDS}")
        object.__setattr__(self, "occurred_at", _utc("occurred_at", self.occurred_at))
        if self.recorded_at is not None:
            object.__setattr__(self, "recorded_at", _utc("recorded_at", self.recorded_at))
        if not self.actor or not self.actor.strip():
            raise ValueError("an audit event needs an actor (pipeline or a person's name)")
        if self.kind in _NEEDS_REF and not self.ref:
            raise ValueError(f"a {self.kind} event needs ref (the broker's {'execution' if self.kind == 'fill' else 'order'} id)")
        for name in ("qty", "price"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                object.__setattr__(self, name, Decimal(str(value)))
        try:
            json.dumps(dict(self.details), default=str)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"details of a {self.kind} event must be JSON-serializable: {exc}") from exc
        object.__setattr__(self, "event_id", event_id(self))

    @property
    def engaged(self) -> bool | None:
        """For a kill_switch event: whether it engaged the switch (None for any other kind)."""
        if self.kind != "kill_switch":
            return None
        return self.reason_code == KILL_SWITCH_ON


def event_id(event: AuditEvent) -> str:
    """The deterministic id of an event: sha256 over its kind, `ref` and the kind's identity fields."""
    parts = [event.kind, event.ref or ""]
    parts += [f"{name}={_identity_value(getattr(event, name))}" for name in IDENTITY[event.kind]]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:_ID_LEN]


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def audit_line(event: AuditEvent) -> str:
    """One human-readable line, e.g.
    `2017-06-02 13:31:07Z  FILL  AAPL buy 4 @ 153.12  td-20170601-AAPL-...  (pipeline)`.

    Fields that are empty are left out; line breaks in a reason become spaces (one event, one line)."""
    when = event.occurred_at.strftime("%Y-%m-%d %H:%M:%SZ")
    parts = [when, event.kind.upper()]
    order = " ".join(
        p
        for p in (
            event.symbol or "",
            event.side or "",
            _number(event.qty) if event.qty is not None else "",
            f"@ {_number(event.price)}" if event.price is not None else "",
        )
        if p
    )
    if order:
        parts.append(order)
    if event.client_order_id:
        parts.append(event.client_order_id)
    elif event.session is not None:
        parts.append(f"session {event.session.isoformat()}")
    why = ": ".join(p for p in (event.reason_code or "", event.reason or "") if p)
    if why:
        parts.append(why)
    parts.append(f"({event.actor})")
    return "  ".join(parts).replace("\r", " ").replace("\n", " ")


# ------------------------------------------------------------------------------------------ events of records


_ORDER_KIND = {"approved": "decision", "denied": "denial", "pending_approval": "pending_approval"}


def order_events(orders: pl.DataFrame, occurred_at: dt.datetime, *, signals: bool = True) -> list[AuditEvent]:
    """The pipeline's events of a planned orders frame (`orders.ORDER_SCHEMA`): a `signal` per order (unless
    `signals=False`) and its outcome: `decision` (approved), `denial` or `pending_approval`. Rows with
    another status (approved / refused / expired after `approval.apply_decisions`) give no outcome here:
    the people's decisions are their own events, an expiry is `expiry_events`'."""
    out: list[AuditEvent] = []
    for row in orders.iter_rows(named=True):
        price = Decimal(repr(row["ref_price"])) if row["ref_price"] is not None else None
        common = dict(
            occurred_at=occurred_at, session=row["session"], client_order_id=row["client_order_id"],
            symbol=row["symbol"], side=row["side"],
        )
        if signals:
            out.append(AuditEvent(kind="signal", details={"strategy": row["strategy"]}, **common))
        kind = _ORDER_KIND.get(row["status"])
        if kind is not None:
            out.append(
                AuditEvent(
                    kind=kind, qty=Decimal(row["qty"]), price=price, reason_code=row["reason_code"],
                    details={"strategy": row["strategy"], "requested_qty": row["requested_qty"]}, **common,
                )
            )
    return out


def expiry_events(orders: pl.DataFrame, occurred_at: dt.datetime) -> list[AuditEvent]:
    """An `approval_expired` event per order whose status is `expired` (after `approval.apply_decisions`)."""
    return [
        AuditEvent(
            kind="approval_expired", occurred_at=occurred_at, session=row["session"],
            client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"],
            qty=Decimal(row["qty"]), reason_code=row["reason_code"],
        )
        for row in orders.filter(pl.col("status") == "expired").iter_rows(named=True)
    ]


def submission_events(results: Sequence[SubmitResult], occurred_at: dt.datetime) -> list[AuditEvent]:
    """What `Broker.submit` answered: a `submission` per order the broker holds (new or already there:
    the same event, by id) with its broker order id, a `rejection` with the broker's code and message."""
    out: list[AuditEvent] = []
    for r in results:
        q = r.request
        common = dict(
            occurred_at=occurred_at, session=q.session, client_order_id=q.client_order_id, symbol=q.symbol,
            side=q.side, qty=q.qty, price=q.limit_price,
        )
        if r.outcome == "rejected":
            out.append(AuditEvent(kind="rejection", reason_code=r.code, reason=r.message,
                                  details={"strategy": q.strategy}, **common))
        else:
            order = r.order
            out.append(
                AuditEvent(
                    kind="submission",
                    details={
                        "strategy": q.strategy, "outcome": r.outcome, "broker_order_id": order.id if order else None,
                        "status": order.status if order else None, "notional": str(q.notional) if q.notional else None,
                        "type": q.type, "time_in_force": q.time_in_force, "order_class": q.order_class,
                    },
                    **common,
                )
            )
    return out
