"""The trading ledger: one append-only store of every `AuditEvent` of the trading book (decision 0005,
section 5), the human-readable audit file beside it, and the audit webhook.

* **SQLite** (`.data/trading_ledger.sqlite`, WAL): the execution assets, the control jobs and the CLI may
  write at the same time from different processes. Each `append` is one `BEGIN IMMEDIATE` transaction of
  `INSERT OR IGNORE` on the deterministic event id, so a re-run, a retried step or two writers at once add
  each event once. Triggers refuse every UPDATE and DELETE: nothing is ever rewritten.
  (Decision 0005 names DuckDB; SQLite was chosen because DuckDB admits one writing process per file and the
  kill switch must be writable while a run holds the ledger.)
* **The audit file** `<audit_dir>/audit-YYYY-MM.log` (the month the event occurred, UTC): each new event's
  `audit_line`, appended after the transaction commits (one write per file and call, so concurrent writers
  do not interleave within a line).
* **The webhook** (optional, a secret URL through `dg.EnvVar` only): the same lines, after the database and
  the file, so a webhook that is down loses nothing; its failure is logged and kept in `webhook_errors`.

The kill switch's state is the last `kill_switch` event by occurrence (or engaged by configuration,
`kill_switch_forced`, which no event can release).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.domain.audit import (
    DECISION_KINDS,
    KILL_SWITCH_OFF,
    KILL_SWITCH_ON,
    PIPELINE,
    AuditEvent,
    audit_line,
)
from trading_dagster.domain.broker_records import BrokerFill
from trading_dagster.resources.alerts import (
    WEBHOOK_ENV_VAR,
    Alert,
    AlertDeliveryError,
    AlertSink,
    WebhookAlertSink,
)

LOG = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 30_000  # another process's transaction is a few ms; 30 s means something is stuck
WEBHOOK_LINES_PER_MESSAGE = 40  # a session's fills go out as a few messages, not one per line
FORCED_ACTOR = "config"

AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "kind": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "recorded_at": pl.Datetime("us", "UTC"),
    "session": pl.Date(),
    "actor": pl.String(),
    "client_order_id": pl.String(),
    "symbol": pl.String(),
    "side": pl.String(),
    "qty": pl.Float64(),
    "price": pl.Float64(),
    "reason_code": pl.String(),
    "reason": pl.String(),
    "ref": pl.String(),
    "details": pl.String(),  # JSON
}

_COLUMNS = (
    "event_id", "kind", "occurred_at", "recorded_at", "session", "actor", "client_order_id", "symbol", "side",
    "qty", "price", "reason_code", "reason", "ref", "details",
)

_DDL = """
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    session TEXT,
    actor TEXT NOT NULL,
    client_order_id TEXT,
    symbol TEXT,
    side TEXT,
    qty TEXT,
    price TEXT,
    reason_code TEXT,
    reason TEXT,
    ref TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events (session, kind);
CREATE INDEX IF NOT EXISTS audit_events_kind ON audit_events (kind, occurred_at);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the trading ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the trading ledger is append-only'); END;
"""


def _ts(value: dt.datetime) -> str:
    """UTC, fixed width: text order is time order."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


@dataclass(frozen=True)
class KillSwitchState:
    """Whether new buys are blocked: the last kill_switch event (or the configuration). `since` is when it
    was last set, `actor` who set it, `reason` why (all None when it was never set)."""

    engaged: bool
    since: dt.datetime | None = None
    actor: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        state = "ENGAGED" if self.engaged else "released"
        if self.since is None and self.actor is None:
            return f"kill switch {state} (never set)"
        when = f" since {self.since:%Y-%m-%d %H:%M:%SZ}" if self.since else ""
        why = f": {self.reason}" if self.reason else ""
        return f"kill switch {state}{when} by {self.actor}{why}"


class TradingLedger:
    """The append-only trading ledger (module docstring). Cheap to build: every call opens its own
    connection, so one object may be shared by threads and several processes may write one file."""

    def __init__(
        self,
        path: str | Path,
        audit_dir: str | Path | None = None,
        *,
        webhook: AlertSink | None = None,
        kill_switch_forced: bool = False,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.audit_dir = Path(audit_dir) if audit_dir is not None else self.path.parent / "audit"
        self.webhook = webhook
        self.kill_switch_forced = kill_switch_forced
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.webhook_errors: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_DDL)

    def __repr__(self) -> str:
        return f"TradingLedger({str(self.path)!r}, audit_dir={str(self.audit_dir)!r}, webhook={self.webhook!r})"

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return con

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, events: Iterable[AuditEvent]) -> int:
        """Append the events whose ids are not in the ledger yet (one transaction); then their lines go to
        the audit file and the webhook. Returns how many were new."""
        recorded_at = _ts(self._clock())
        new: list[AuditEvent] = []
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            for e in events:
                cur = con.execute(
                    f"INSERT OR IGNORE INTO audit_events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    (
                        e.event_id, e.kind, _ts(e.occurred_at), recorded_at,
                        e.session.isoformat() if e.session else None, e.actor, e.client_order_id, e.symbol,
                        e.side, _dec(e.qty), _dec(e.price), e.reason_code, e.reason, e.ref,
                        json.dumps(dict(e.details), default=str, sort_keys=True),
                    ),
                )
                if cur.rowcount == 1:
                    new.append(e)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        if new:
            self._write_file(new)
            self._send_webhook(new)
        return len(new)

    def _write_file(self, events: Sequence[AuditEvent]) -> None:
        by_month: dict[str, list[str]] = {}
        for e in events:
            by_month.setdefault(f"{e.occurred_at:%Y-%m}", []).append(audit_line(e) + "\n")
        self.audit_dir.mkdir(parents=True, exist_ok=True)
        for month, lines in by_month.items():
            with (self.audit_dir / f"audit-{month}.log").open("a", encoding="utf-8") as f:
                f.write("".join(lines))

    def _send_webhook(self, events: Sequence[AuditEvent]) -> None:
        if self.webhook is None:
            return
        lines = [audit_line(e) for e in events]
        for i in range(0, len(lines), WEBHOOK_LINES_PER_MESSAGE):
            chunk = lines[i : i + WEBHOOK_LINES_PER_MESSAGE]
            alert = Alert(kind="audit", key=events[i].event_id, title="\n".join(chunk), text="", severity="INFO")
            try:
                self.webhook.send(alert)
            except (AlertDeliveryError, OSError, ValueError) as exc:
                # the events are in SQLite and the audit file already: log, keep, carry on
                message = f"audit webhook: {len(chunk)} line(s) not delivered ({exc})"
                LOG.warning(message)
                self.webhook_errors.append(message)

    def set_kill_switch(
        self, engaged: bool, actor: str, reason: str, *, now: dt.datetime | None = None
    ) -> KillSwitchState:
        """Append one kill_switch event (always: engaging an engaged switch is recorded too); the new state."""
        self.append(
            [
                AuditEvent(
                    kind="kill_switch",
                    occurred_at=now or self._clock(),
                    actor=actor,
                    reason_code=KILL_SWITCH_ON if engaged else KILL_SWITCH_OFF,
                    reason=reason or None,
                    details={"engaged": engaged},
                )
            ]
        )
        return self.kill_switch()

    def record_fills(self, fills: Iterable[BrokerFill], session: dt.date) -> int:
        """One `fill` event per execution (its id is the execution id: a fill seen twice is recorded once,
        whatever session it is reported under). Returns how many were new."""
        return self.append(
            AuditEvent(
                kind="fill",
                occurred_at=f.transaction_time,
                session=session,
                client_order_id=f.client_order_id,
                symbol=f.symbol,
                side=f.side,
                qty=f.qty,
                price=f.price,
                ref=f.execution_id,
                details={
                    "order_id": f.order_id,
                    "cum_qty": _dec(f.cum_qty),
                    "leaves_qty": _dec(f.leaves_qty),
                },
            )
            for f in fills
        )

    # -- reading ---------------------------------------------------------------------------------------

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            sql = f"SELECT {', '.join(_COLUMNS)} FROM audit_events {where} ORDER BY occurred_at, seq"
            return con.execute(sql, tuple(params)).fetchall()
        finally:
            con.close()

    def _where(
        self, kinds: Iterable[str] | None, session: dt.date | None, since: dt.datetime | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if kinds is not None:
            kinds = list(kinds)
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})" if kinds else "0")
            params += kinds
        if session is not None:
            clauses.append("session = ?")
            params.append(session.isoformat())
        if since is not None:
            clauses.append("occurred_at >= ?")
            params.append(_ts(since))
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def events(
        self,
        kinds: Iterable[str] | None = None,
        session: dt.date | None = None,
        since: dt.datetime | None = None,
    ) -> pl.DataFrame:
        """The events (AUDIT_SCHEMA), oldest occurrence first; filtered by kind, signal session and
        `occurred_at >= since`."""
        return _frame(self._select(*self._where(kinds, session, since)), AUDIT_SCHEMA)

    def export(self) -> pl.DataFrame:
        """Every event with its ledger sequence number (`seq`, insertion order: the ledger is append-only, so
        a later export holds an earlier one as its prefix), columns `{"seq": Int64, **AUDIT_SCHEMA}`, in
        `seq` order: what the warehouse copy (`assets/audit_export.py`) reads."""
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute(f"SELECT seq, {', '.join(_COLUMNS)} FROM audit_events ORDER BY seq").fetchall()
        finally:
            con.close()
        return _frame(rows, {"seq": pl.Int64(), **AUDIT_SCHEMA})

    def count(self, up_to_seq: int | None = None) -> int:
        """How many events the ledger holds (with `seq <= up_to_seq` when given)."""
        con = self._connect()
        try:
            if up_to_seq is None:
                return con.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            return con.execute("SELECT count(*) FROM audit_events WHERE seq <= ?", (up_to_seq,)).fetchone()[0]
        finally:
            con.close()

    def audit_events(
        self,
        kinds: Iterable[str] | None = None,
        session: dt.date | None = None,
        since: dt.datetime | None = None,
    ) -> list[AuditEvent]:
        """The same events as records (exact quantities and prices, details as a mapping)."""
        return [_event(r) for r in self._select(*self._where(kinds, session, since))]

    def kill_switch(self) -> KillSwitchState:
        """The last kill_switch event by occurrence (ties: the later recorded); engaged regardless when
        the configuration forces it."""
        con = self._connect()
        con.row_factory = sqlite3.Row
        try:
            row = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_events WHERE kind = 'kill_switch' "
                "ORDER BY occurred_at DESC, seq DESC LIMIT 1"
            ).fetchone()
        finally:
            con.close()
        state = KillSwitchState(False)
        if row is not None:
            e = _event(row)
            state = KillSwitchState(bool(e.engaged), e.occurred_at, e.actor, e.reason)
        if self.kill_switch_forced and not state.engaged:
            return KillSwitchState(True, None, FORCED_ACTOR, "[execution] kill_switch = true in the configuration")
        return state

    def decisions(self, session: dt.date, until: dt.datetime | None = None) -> dict[str, str]:
        """{client order id: "approval" | "refusal"} for session D's orders: each order's latest decision
        (a person may change their mind until the order is submitted or expires), only those that occurred
        before `until` when given (the approval deadline)."""
        out: dict[str, str] = {}
        for r in self._select(*self._where(DECISION_KINDS, session, None)):
            if until is not None and dt.datetime.fromisoformat(r["occurred_at"]) >= until:
                continue
            if r["client_order_id"]:
                out[r["client_order_id"]] = r["kind"]
        return out


def _frame(rows: Sequence[sqlite3.Row], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Ledger rows as a typed frame: timestamps and sessions parsed, quantities and prices as floats."""
    data: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in schema}
    for c in ("occurred_at", "recorded_at"):
        data[c] = [dt.datetime.fromisoformat(v) for v in data[c]]
    data["session"] = [dt.date.fromisoformat(v) if v else None for v in data["session"]]
    for c in ("qty", "price"):
        data[c] = [float(v) if v is not None else None for v in data[c]]
    return pl.DataFrame(data, schema=dict(schema))


def _event(row: Mapping[str, Any] | sqlite3.Row) -> AuditEvent:
    return AuditEvent(
        kind=row["kind"],
        occurred_at=dt.datetime.fromisoformat(row["occurred_at"]),
        recorded_at=dt.datetime.fromisoformat(row["recorded_at"]),
        actor=row["actor"],
        session=dt.date.fromisoformat(row["session"]) if row["session"] else None,
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=row["side"],
        qty=Decimal(row["qty"]) if row["qty"] is not None else None,
        price=Decimal(row["price"]) if row["price"] is not None else None,
        reason_code=row["reason_code"],
        reason=row["reason"],
        ref=row["ref"],
        details=json.loads(row["details"]),
    )


# ------------------------------------------------------------------------------------------------ Dagster


class TradingLedgerResource(dg.ConfigurableResource):
    """The trading ledger of the definitions. `webhook_url` is a secret: set it only through
    `dg.EnvVar(...)` (the audit lines may share the alerts' webhook, TRADING_DAGSTER_ALERT_WEBHOOK_URL)."""

    path: str = Field(default=".data/trading_ledger.sqlite", description="the ledger's SQLite file")
    audit_dir: str = Field(default=".data/audit", description="folder of the audit-YYYY-MM.log files")
    webhook_url: str | None = Field(
        default=None,
        description=f"webhook the audit lines are posted to; a secret, only via dg.EnvVar (e.g. {WEBHOOK_ENV_VAR})",
    )
    webhook_timeout_seconds: float = Field(default=5.0, description="timeout of one webhook attempt")
    webhook_retries: int = Field(default=2, description="webhook attempts after the first (5xx, 429, network)")
    kill_switch_forced: bool = Field(
        default=False,
        description="[execution] kill_switch = true: the switch is engaged whatever the events say",
    )

    def get(self) -> TradingLedger:
        webhook = None
        if self.webhook_url:
            webhook = WebhookAlertSink(
                self.webhook_url, timeout_seconds=self.webhook_timeout_seconds, retries=self.webhook_retries
            )
        return TradingLedger(
            self.path, self.audit_dir, webhook=webhook, kill_switch_forced=self.kill_switch_forced
        )


__all__ = [
    "AUDIT_SCHEMA",
    "KillSwitchState",
    "PIPELINE",
    "TradingLedger",
    "TradingLedgerResource",
]
