"""The trading ledger: append-only SQLite (two writers at once), the audit file, the audit webhook (down
means nothing lost), the kill switch, decisions, fills recorded once."""

import datetime as dt
import multiprocessing
import sqlite3
from decimal import Decimal

import dagster as dg
import pytest

from trading_dagster.domain.audit import AuditEvent
from trading_dagster.domain.broker_records import BrokerFill
from trading_dagster.resources.ledger import AUDIT_SCHEMA, TradingLedger, TradingLedgerResource
from trading_dagster_tests.fakes.webhook_server import SECRET_TOKEN, no_proxy_env, serve_webhook

T = dt.datetime(2017, 6, 2, 13, 31, 7, tzinfo=dt.UTC)
D = dt.date(2017, 6, 1)
RECORDED = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def ledger(tmp_path, **kw) -> TradingLedger:
    return TradingLedger(tmp_path / "ledger.sqlite", tmp_path / "audit", clock=lambda: RECORDED, **kw)


def order_events(session=D, n=3):
    out = []
    for i in range(n):
        cid = f"td-{session:%Y%m%d}-S{i}"
        out.append(AuditEvent(kind="signal", occurred_at=T, session=session, client_order_id=cid, symbol=f"S{i}",
                              side="buy"))
        out.append(AuditEvent(kind="decision", occurred_at=T, session=session, client_order_id=cid, symbol=f"S{i}",
                              side="buy", qty=Decimal(4), price=Decimal("10.5")))
    return out


def fills(n=2):
    return [
        BrokerFill(execution_id=f"x{i}", order_id=f"o{i}", client_order_id=f"td-20170601-S{i}", symbol=f"S{i}",
                   side="buy", qty=Decimal(4), price=Decimal("153.12"), transaction_time=T + dt.timedelta(minutes=i))
        for i in range(n)
    ]


class BrokenSink:
    def __init__(self):
        self.calls = 0

    def describe(self):
        return "a broken webhook"

    def send(self, alert):
        from trading_dagster.resources.alerts import AlertDeliveryError

        self.calls += 1
        raise AlertDeliveryError("the webhook at hooks.example did not take the alert: HTTP 503")


def test_append_is_idempotent_and_lines_go_to_the_monthly_file(tmp_path):
    led = ledger(tmp_path)
    assert led.append(order_events()) == 6
    assert led.append(order_events()) == 0  # a re-run of the session adds nothing
    assert led.append(order_events(n=4)) == 2
    frame = led.events()
    assert frame.schema == AUDIT_SCHEMA and frame.height == 8
    assert set(frame["recorded_at"]) == {RECORDED}
    lines = (tmp_path / "audit" / "audit-2017-06.log").read_text().splitlines()
    assert len(lines) == 8  # each event's line once
    assert lines[1] == "2017-06-02 13:31:07Z  DECISION  S0 buy 4 @ 10.5  td-20170601-S0  (pipeline)"


def test_filters_and_records(tmp_path):
    led = ledger(tmp_path)
    led.append(order_events() + order_events(session=dt.date(2017, 6, 2)))
    assert led.events(kinds=["decision"], session=D).height == 3
    assert led.events(kinds=[]).height == 0
    assert led.events(since=T + dt.timedelta(seconds=1)).height == 0
    (e,) = [x for x in led.audit_events(kinds=["decision"], session=D) if x.symbol == "S0"]
    assert e.qty == Decimal(4) and e.price == Decimal("10.5") and e.recorded_at == RECORDED
    assert e.event_id == order_events()[1].event_id


def test_the_store_is_insert_only(tmp_path):
    led = ledger(tmp_path)
    led.append(order_events(n=1))
    con = sqlite3.connect(led.path)
    for sql in ("UPDATE audit_events SET qty = '5'", "DELETE FROM audit_events"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    assert sqlite3.connect(led.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_fills_are_recorded_once_by_execution_id(tmp_path):
    led = ledger(tmp_path)
    assert led.record_fills(fills(2), D) == 2
    assert led.record_fills(fills(3), dt.date(2017, 6, 2)) == 1  # reported again under another session
    frame = led.events(kinds=["fill"])
    assert frame["ref"].to_list() == ["x0", "x1", "x2"]
    assert frame["session"].to_list() == [D, D, dt.date(2017, 6, 2)]
    assert "FILL  S0 buy 4 @ 153.12  td-20170601-S0  (pipeline)" in (tmp_path / "audit" / "audit-2017-06.log").read_text()


def test_kill_switch_is_the_last_event(tmp_path):
    led = ledger(tmp_path)
    assert not led.kill_switch().engaged and "never set" in led.kill_switch().describe()
    s = led.set_kill_switch(True, "ada", "broker outage", now=T)
    assert (s.engaged, s.since, s.actor, s.reason) == (True, T, "ada", "broker outage")
    assert led.set_kill_switch(False, "bob", "all clear", now=T + dt.timedelta(hours=1)).engaged is False
    # an event that occurred earlier but is recorded later does not override the later one
    led.set_kill_switch(True, "carol", "late report", now=T + dt.timedelta(minutes=5))
    assert led.kill_switch().actor == "bob"
    assert led.events(kinds=["kill_switch"]).height == 3
    assert "KILL_SWITCH_RELEASED: all clear  (bob)" in (tmp_path / "audit" / "audit-2017-06.log").read_text()


def test_kill_switch_forced_by_configuration(tmp_path):
    led = ledger(tmp_path, kill_switch_forced=True)
    assert led.kill_switch().engaged and led.kill_switch().actor == "config"
    led.set_kill_switch(False, "bob", "try to release", now=T)
    assert led.kill_switch().engaged  # the configuration wins
    led.set_kill_switch(True, "ada", "", now=T + dt.timedelta(seconds=1))
    assert led.kill_switch().actor == "ada"


def test_decisions_latest_wins_and_deadline(tmp_path):
    led = ledger(tmp_path)
    def decide(kind, cid, minutes, actor="ada"):
        return AuditEvent(kind=kind, occurred_at=T + dt.timedelta(minutes=minutes), actor=actor, session=D,
                          client_order_id=cid)
    led.append([decide("approval", "a", 0), decide("refusal", "a", 5), decide("approval", "b", 1),
                decide("approval", "c", 90)])
    assert led.decisions(D) == {"a": "refusal", "b": "approval", "c": "approval"}
    assert led.decisions(D, until=T + dt.timedelta(minutes=60)) == {"a": "refusal", "b": "approval"}
    assert led.decisions(dt.date(2017, 6, 2)) == {}


def test_a_webhook_that_fails_loses_nothing(tmp_path):
    sink = BrokenSink()
    led = ledger(tmp_path, webhook=sink)
    assert led.append(order_events(n=1)) == 2
    assert sink.calls == 1  # the batch's lines in one message
    assert led.events().height == 2
    assert len((tmp_path / "audit" / "audit-2017-06.log").read_text().splitlines()) == 2
    assert led.webhook_errors and "503" in led.webhook_errors[0]
    assert led.append(order_events(n=1)) == 0 and sink.calls == 1  # nothing new, nothing sent


def test_resource_posts_lines_to_the_webhook_from_an_env_var(tmp_path, monkeypatch):
    no_proxy_env(monkeypatch)
    with serve_webhook() as server:
        monkeypatch.setenv("TEST_AUDIT_WEBHOOK", server.url)
        res = TradingLedgerResource(path=str(tmp_path / "l.sqlite"), audit_dir=str(tmp_path / "audit"),
                                    webhook_url=dg.EnvVar("TEST_AUDIT_WEBHOOK"))
        led = res.process_config_and_initialize().get()
        assert SECRET_TOKEN not in repr(led)
        led.set_kill_switch(True, "ada", "test")
        (req,) = server.received
        assert "KILL_SWITCH  KILL_SWITCH_ENGAGED: test  (ada)" in req.json()["text"]


def _writer(path: str, start: int, n: int) -> None:
    led = TradingLedger(path)
    for i in range(start, start + n):
        led.append([AuditEvent(kind="fill", occurred_at=T, ref=f"x{i}", symbol="S", side="buy", qty=Decimal(1),
                               price=Decimal(1))])


def test_two_processes_write_at_once(tmp_path):
    path = str(tmp_path / "ledger.sqlite")
    TradingLedger(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s, 150)) for s in (0, 100)]  # 50 ids overlap
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    led = TradingLedger(path)
    assert led.events().height == 250
    assert len((tmp_path / "audit" / "audit-2017-06.log").read_text().splitlines()) == 250
