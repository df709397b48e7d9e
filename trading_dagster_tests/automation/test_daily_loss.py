"""`daily_loss_sensor` ticks (Dagster's context builder) with a hand-written fake broker and a real trading
ledger in tmp_path: a breach engages the kill switch once (event + alert), no breach does nothing, a switch
already engaged is not engaged again, and a person's release the same day is not overruled."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pytest

from trading_dagster.automation.daily_loss import DAILY_LOSS_ACTOR, daily_loss_sensor
from trading_dagster.domain.broker_records import BrokerAccount, BrokerClock
from trading_dagster.resources.alerts import AlertsResource
from trading_dagster.resources.configured import TradingConfigResource
from trading_dagster.resources.ledger import TradingLedger, TradingLedgerResource

OPEN = dt.datetime(2025, 7, 7, 15, 0, tzinfo=dt.UTC)  # Monday 11:00 New York


class FakeBroker:
    paper = True

    def __init__(self, owner: FakeBrokerResource) -> None:
        self.owner = owner

    def clock(self) -> BrokerClock:
        o = self.owner
        return BrokerClock(o.now, o.is_open, o.now + dt.timedelta(days=1), o.now + dt.timedelta(hours=5))

    def account(self) -> BrokerAccount:
        self.owner.account_reads += 1
        e = self.owner.equity
        return BrokerAccount("PA1", "ACTIVE", e, e, e, last_equity=self.owner.last_equity)

    def close(self) -> None:
        self.owner.closed += 1


class FakeBrokerResource:
    def __init__(self, equity: str, last_equity: str | None = "100000", *, now=OPEN, is_open=True) -> None:
        self.equity = Decimal(equity)
        self.last_equity = None if last_equity is None else Decimal(last_equity)
        self.now, self.is_open = now, is_open
        self.account_reads = self.closed = 0

    def get(self) -> FakeBroker:
        return FakeBroker(self)


@pytest.fixture
def ledger(tmp_path) -> TradingLedger:
    return TradingLedger(tmp_path / "trading_ledger.sqlite", tmp_path / "audit")


def tick(tmp_path, broker: FakeBrokerResource, **limits):
    ctx = dg.build_sensor_context(
        resources={
            "broker": broker,
            "ledger": TradingLedgerResource(
                path=str(tmp_path / "trading_ledger.sqlite"), audit_dir=str(tmp_path / "audit")
            ),
            "trading_config": TradingConfigResource(**limits),
            "alerts": AlertsResource(jsonl_path=str(tmp_path / "alerts.jsonl")),
        }
    )
    result = daily_loss_sensor.evaluate_tick(ctx)
    assert result.run_requests == []  # it never launches a run
    return result.skip_message


def alerts(tmp_path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def engaged_events(ledger: TradingLedger) -> list:
    return [e for e in ledger.audit_events(kinds=["kill_switch"]) if e.engaged]


def test_a_breach_engages_the_kill_switch_once_and_alerts(tmp_path, ledger):
    broker = FakeBrokerResource("98900")  # lost $1,100 since the previous close
    message = tick(tmp_path, broker, max_daily_loss_usd=1000.0)
    assert message.startswith(f"kill switch engaged by {DAILY_LOSS_ACTOR}: DAILY_LOSS_LIMIT")
    state = ledger.kill_switch()
    assert state.engaged and state.actor == DAILY_LOSS_ACTOR and "$1,100.00" in state.reason
    assert state.since == OPEN
    [alert] = [a for a in alerts(tmp_path) if a["kind"] == "kill_switch"]
    assert alert["severity"] == "ERROR" and DAILY_LOSS_ACTOR in alert["title"]
    assert broker.closed == 1
    # a minute later, still breached: nothing new
    broker.now = OPEN + dt.timedelta(minutes=1)
    again = tick(tmp_path, broker, max_daily_loss_usd=1000.0)
    assert "already: not engaged again" in again
    assert len(engaged_events(ledger)) == 1 and len(alerts(tmp_path)) == 1


def test_no_breach_does_nothing(tmp_path, ledger):
    assert tick(tmp_path, FakeBrokerResource("99000.01"), max_daily_loss_usd=1000.0).startswith(
        "within the daily loss limit"
    )
    assert tick(tmp_path, FakeBrokerResource("99000"), max_daily_loss_pct_equity=2.0).startswith("within")
    assert not ledger.kill_switch().engaged and ledger.audit_events() == [] and alerts(tmp_path) == []


def test_an_engaged_switch_is_not_engaged_again(tmp_path, ledger):
    ledger.set_kill_switch(True, "alice", "manual", now=OPEN - dt.timedelta(hours=1))
    message = tick(tmp_path, FakeBrokerResource("90000"), max_daily_loss_pct_equity=5.0)
    assert "kill switch ENGAGED" in message and "by alice" in message and "not engaged again" in message
    assert len(engaged_events(ledger)) == 1 and alerts(tmp_path) == []


def test_a_release_the_same_day_is_not_overruled_but_the_next_session_starts_afresh(tmp_path, ledger):
    broker = FakeBrokerResource("98000")
    tick(tmp_path, broker, max_daily_loss_usd=500.0)
    ledger.set_kill_switch(False, "alice", "seen it, carry on", now=OPEN + dt.timedelta(minutes=5))
    broker.now = OPEN + dt.timedelta(minutes=6)
    assert "released since" in tick(tmp_path, broker, max_daily_loss_usd=500.0)
    assert not ledger.kill_switch().engaged
    broker.now = OPEN + dt.timedelta(days=1)  # Tuesday: a new day's loss
    assert tick(tmp_path, broker, max_daily_loss_usd=500.0).startswith("kill switch engaged")
    assert len(engaged_events(ledger)) == 2


def test_closed_market_no_limit_or_no_last_equity_reads_nothing_or_does_nothing(tmp_path, ledger):
    closed = FakeBrokerResource("1", now=dt.datetime(2025, 7, 5, 15, 0, tzinfo=dt.UTC), is_open=False)
    assert "market is closed" in tick(tmp_path, closed, max_daily_loss_usd=10.0)
    off = FakeBrokerResource("1")
    assert tick(tmp_path, off).startswith("no daily loss limit")  # the defaults: both off
    assert closed.account_reads == off.account_reads == 0
    assert "no equity at the previous close" in tick(
        tmp_path, FakeBrokerResource("1", None), max_daily_loss_usd=1.0
    )
    assert not ledger.kill_switch().engaged


def test_stopped_by_default():
    assert daily_loss_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert daily_loss_sensor.minimum_interval_seconds == 60
