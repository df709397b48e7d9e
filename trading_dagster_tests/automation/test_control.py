"""The control jobs run in process against a hand-written in-memory broker: approve / refuse pending orders,
the kill switch, flatten (a 207 with failed items, the per-symbol retry, an account that stays not flat)."""

import datetime as dt
import itertools
import json
from decimal import Decimal

import pytest

from trading_dagster.automation.control import (
    ControlError,
    approve_orders_job,
    decide_orders,
    flatten_account,
    flatten_job,
    kill_switch_job,
    pending_orders,
)
from trading_dagster.domain.audit import AuditEvent
from trading_dagster.domain.broker_records import (
    BrokerAccount,
    BrokerClock,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    CancelResult,
    CloseResult,
)
from trading_dagster.resources.alerts import AlertsResource
from trading_dagster.resources.brokers.base import Broker, OrderRejected
from trading_dagster.resources.configured import BrokerResource
from trading_dagster.resources.ledger import TradingLedger, TradingLedgerResource

NOW = dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def _order(symbol, side, qty, status="new", client_order_id=None, type_="market"):
    n = next(_ids)
    return BrokerOrder(
        id=f"ord-{n}", client_order_id=client_order_id or f"close-{n}", symbol=symbol, side=side, type=type_,
        time_in_force="day", status=status, qty=Decimal(qty), notional=None, filled_qty=Decimal(0),
        filled_avg_price=None, submitted_at=NOW, updated_at=NOW,
    )


class FakeBroker(Broker):
    """In memory. Closing orders fill after `fill_after` polls of positions(), except for `never_fills`;
    `refuse_close` symbols come back from close-all as 403 items (shares held), without raising."""

    def __init__(self, positions, *, resting=(), refuse_close=(), refuse_cancel=(), never_fills=(), fill_after=1):
        self._positions = {s: Decimal(q) for s, q in positions.items()}
        self._open = {o.id: o for o in resting}
        self.refuse_close = set(refuse_close)
        self.refuse_cancel = set(refuse_cancel)
        self.never_fills = set(never_fills)
        self.fill_after = fill_after
        self._closing: dict[str, int] = {}  # order id -> polls seen
        self.calls: list[str] = []

    account_id = "fake-acct"
    paper = True

    def clock(self):
        return BrokerClock(NOW, True, NOW, NOW)

    def account(self):
        return BrokerAccount("fake-acct", "ACTIVE", Decimal(0), Decimal(0), Decimal(0))

    def positions(self):
        self.calls.append("positions")
        for oid in list(self._closing):
            self._closing[oid] += 1
            order = self._open[oid]
            if self._closing[oid] >= self.fill_after and order.symbol not in self.never_fills:
                del self._closing[oid], self._open[oid]
                self._positions.pop(order.symbol, None)
        return [BrokerPosition(s, q, Decimal(10)) for s, q in self._positions.items()]

    def orders(self, *, status="all", after=None, until=None):
        self.calls.append(f"orders:{status}")
        return list(self._open.values())

    def order_by_client_id(self, client_order_id):
        return next((o for o in self._open.values() if o.client_order_id == client_order_id), None)

    def fills(self, *, after=None, until=None) -> list[BrokerFill]:
        return []

    def cancel(self, order_id):
        return CancelResult(order_id, self._open.pop(order_id, None) is not None, 200)

    def cancel_all(self):
        self.calls.append("cancel_all")
        out = []
        for oid, order in list(self._open.items()):
            if order.symbol in self.refuse_cancel:
                out.append(CancelResult(oid, False, 422, "order is not cancelable"))
            elif oid not in self._closing:
                del self._open[oid]
                out.append(CancelResult(oid, True, 200))
        return out

    def _close(self, symbol):
        qty = self._positions[symbol]
        order = _order(symbol, "sell" if qty > 0 else "buy", abs(qty))
        self._open[order.id] = order
        self._closing[order.id] = 0
        return order

    def close_all_positions(self, *, cancel_orders=True):
        self.calls.append(f"close_all:{cancel_orders}")
        out = []
        for symbol in list(self._positions):
            if symbol in self.refuse_close:
                out.append(CloseResult(symbol, False, 403, None, "insufficient qty available for order (40310000)"))
            else:
                out.append(CloseResult(symbol, True, 200, self._close(symbol)))
        return out

    def _submit_one(self, request):
        raise OrderRejected(None, "the fake takes no orders")


class FakeBrokerWithClose(FakeBroker):
    """Offers the per-symbol close (Alpaca's DELETE /v2/positions/{symbol}); `refuse_retry` still fails."""

    def __init__(self, *a, refuse_retry=(), **kw):
        super().__init__(*a, **kw)
        self.refuse_retry = set(refuse_retry)

    def close_position(self, symbol):
        self.calls.append(f"close_position:{symbol}")
        if symbol in self.refuse_retry:
            return CloseResult(symbol, False, 403, None, "insufficient qty available for order (40310000)")
        return self._close(symbol)


BROKERS: dict[str, Broker] = {}


class FakeBrokerResource(BrokerResource):
    key: str

    def get(self) -> Broker:
        return BROKERS[self.key]


@pytest.fixture
def env(tmp_path, request):
    BROKERS.clear()
    resources = {
        "ledger": TradingLedgerResource(path=str(tmp_path / "ledger.sqlite"), audit_dir=str(tmp_path / "audit")),
        "alerts": AlertsResource(jsonl_path=str(tmp_path / "alerts.jsonl")),
        "broker": FakeBrokerResource(key=request.node.name),
    }
    return tmp_path, resources, TradingLedger(tmp_path / "ledger.sqlite", tmp_path / "audit")


def run(job, resources, config, op):
    return job.execute_in_process(
        run_config={"ops": {op: {"config": config}}}, resources=resources, raise_on_error=False
    )


def failure(result, op):
    return result.failure_data_for_node(op).user_failure_data.description


def alerts(tmp_path):
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def codes(ledger):
    return ledger.events(kinds=["flatten"])["reason_code"].to_list()


# ---------------------------------------------------------------------------------------------------- flatten


def test_flatten_cancels_closes_and_waits_until_flat(env, request):
    tmp, resources, ledger = env
    stop = _order("AAPL", "sell", 10, client_order_id="td-stop-AAPL", type_="stop")
    broker = BROKERS[request.node.name] = FakeBroker({"AAPL": 10, "MSFT": -3}, resting=[stop], fill_after=2)
    result = run(flatten_job, resources, {"actor": "ada", "reason": "end of test", "poll_interval_seconds": 0.01,
                                          "timeout_seconds": 5}, "flatten_op")
    assert result.success
    assert broker.calls[:2] == ["cancel_all", "close_all:True"]
    assert broker._positions == {} and broker._open == {}
    assert ledger.kill_switch().engaged and ledger.kill_switch().actor == "ada"
    assert codes(ledger) == ["FLATTEN_STARTED", "CLOSE_SUBMITTED", "CLOSE_SUBMITTED", "FLAT"]
    (cancel,) = ledger.audit_events(kinds=["cancel"])
    assert (cancel.ref, cancel.reason_code) == (stop.id, "CANCEL_REQUESTED")
    (alert,) = alerts(tmp)
    assert alert["kind"] == "flatten" and "account flat" in alert["title"]
    log = "".join(p.read_text() for p in sorted((tmp / "audit").iterdir()))  # months of the real clock
    assert "KILL_SWITCH  KILL_SWITCH_ENGAGED: flatten: end of test  (ada)" in log
    assert "FLATTEN  KILL_SWITCH" not in log and "FLATTEN  FLAT  (ada)" in log


def test_failed_207_items_are_retried_per_symbol(env, request):
    tmp, resources, ledger = env
    broker = BROKERS[request.node.name] = FakeBrokerWithClose({"AAPL": 10, "MSFT": 5}, refuse_close={"MSFT"})
    result = run(flatten_job, resources, {"actor": "ada", "poll_interval_seconds": 0.01, "timeout_seconds": 5},
                 "flatten_op")
    assert result.success
    assert "close_position:MSFT" in broker.calls and "close_position:AAPL" not in broker.calls
    assert codes(ledger) == ["FLATTEN_STARTED", "CLOSE_SUBMITTED", "CLOSE_FAILED", "CLOSE_RETRY_SUBMITTED", "FLAT"]
    failed = ledger.audit_events(kinds=["flatten"])[2]
    assert failed.symbol == "MSFT" and "403" in failed.reason


def test_a_failed_item_without_a_per_symbol_close_fails_the_run_at_once(env, request):
    tmp, resources, ledger = env
    BROKERS[request.node.name] = FakeBroker({"AAPL": 10, "MSFT": 5}, refuse_close={"MSFT"})
    t0 = dt.datetime.now()
    result = run(flatten_job, resources, {"actor": "ada", "poll_interval_seconds": 0.01, "timeout_seconds": 30},
                 "flatten_op")
    assert (dt.datetime.now() - t0).total_seconds() < 10  # nothing could change any more: no 30 s wait
    assert not result.success
    message = failure(result, "flatten_op")
    assert "NOT flat" in message and "position MSFT 5" in message and "has no per-symbol close" in message
    assert "AAPL" not in message  # its closing order filled
    assert codes(ledger)[-2:] == ["CLOSE_RETRY_FAILED", "NOT_FLAT"]
    assert ledger.kill_switch().engaged
    (alert,) = alerts(tmp)
    assert alert["severity"] == "ERROR" and "NOT flat" in alert["title"]


def test_closing_orders_that_never_fill_time_out(env, request):
    tmp, resources, ledger = env
    BROKERS[request.node.name] = FakeBrokerWithClose(
        {"AAPL": 10, "SPY": 1}, never_fills={"AAPL"}, refuse_close={"SPY"}, refuse_retry={"SPY"},
        resting=[_order("SPY", "sell", 1, client_order_id="td-stuck-SPY")], refuse_cancel={"SPY"},
    )
    result = run(flatten_job, resources, {"actor": "ada", "poll_interval_seconds": 0.02, "timeout_seconds": 0.2},
                 "flatten_op")
    assert not result.success
    message = failure(result, "flatten_op")
    for part in ("position AAPL 10", "position SPY 1", "open order td-stuck-SPY", "close of SPY not submitted"):
        assert part in message
    (cancel,) = ledger.audit_events(kinds=["cancel"])
    assert cancel.reason_code == "CANCEL_FAILED_422"
    last = ledger.audit_events(kinds=["flatten"])[-1]
    assert last.reason_code == "NOT_FLAT" and last.details["positions"] == {"AAPL": "10", "SPY": "1"}


def test_flatten_function_needs_a_person(tmp_path):
    with pytest.raises(ControlError, match="say who you are"):
        flatten_account(FakeBroker({}), TradingLedger(tmp_path / "l.sqlite"), actor="pipeline")


def test_an_empty_account_is_flat_at_once(tmp_path):
    report = flatten_account(FakeBroker({}), TradingLedger(tmp_path / "l.sqlite"), actor="ada",
                             poll_interval_seconds=0.01, timeout_seconds=0, sleep=lambda s: None)
    assert report.flat and "the account is flat" in report.summary()


# ------------------------------------------------------------------------------------------------- kill switch


def test_kill_switch_job_engages_and_releases(env):
    tmp, resources, ledger = env
    engage = run(kill_switch_job, resources, {"engaged": True, "actor": "ada", "reason": "broker outage"},
                 "kill_switch_op")
    assert engage.success
    state = ledger.kill_switch()
    assert state.engaged and state.reason == "broker outage"
    # visible in the UI: each change is a materialization of execution/kill_switch
    [mat] = [e.event_specific_data.materialization for e in engage.get_asset_materialization_events()]
    assert mat.asset_key.path == ["execution", "kill_switch"]
    assert (mat.metadata["engaged"].value, mat.metadata["by"].value) == (True, "ada")
    release = run(kill_switch_job, resources, {"engaged": False, "actor": "bob"}, "kill_switch_op")
    assert release.success
    assert not ledger.kill_switch().engaged
    [mat] = [e.event_specific_data.materialization for e in release.get_asset_materialization_events()]
    assert mat.metadata["engaged"].value is False
    assert [a["title"] for a in alerts(tmp)] == ["Kill switch ENGAGED by ada", "Kill switch released by bob"]
    bad = run(kill_switch_job, resources, {"engaged": True, "actor": " "}, "kill_switch_op")
    assert not bad.success and "say who you are" in failure(bad, "kill_switch_op")


# ---------------------------------------------------------------------------------------------------- approval


def pending(session, cid, symbol="AAPL"):
    return AuditEvent(kind="pending_approval", occurred_at=NOW, session=session, client_order_id=cid,
                      symbol=symbol, side="buy", qty=Decimal(4), price=Decimal("150.5"))


def future_session():
    from trading_dagster.partitions import session_calendar

    cal = session_calendar()
    return cal.next_session(dt.date.today())


def test_approve_job_approves_every_pending_order_of_the_session(env):
    tmp, resources, ledger = env
    d = future_session()
    other = dt.date(2017, 6, 1)
    ledger.append([pending(d, "a"), pending(d, "b", "MSFT"), pending(d, "c"), pending(other, "z"),
                   AuditEvent(kind="submission", occurred_at=NOW, session=d, client_order_id="c")])
    assert set(pending_orders(ledger, d)) == {"a", "b"}
    result = run(approve_orders_job, resources, {"session": d.isoformat(), "actor": "ada", "reason": "looks fine"},
                 "approve_orders_op")
    assert result.success
    assert ledger.decisions(d) == {"a": "approval", "b": "approval"}
    (e,) = [x for x in ledger.audit_events(kinds=["approval"]) if x.client_order_id == "b"]
    assert (e.actor, e.symbol, e.qty, e.reason) == ("ada", "MSFT", Decimal(4), "looks fine")


def test_approve_job_refuses_ids_not_pending_and_records_nothing(env):
    tmp, resources, ledger = env
    d = future_session()
    ledger.append([pending(d, "a"), pending(dt.date(2017, 6, 1), "z"), pending(d, "c"),
                   AuditEvent(kind="submission", occurred_at=NOW, session=d, client_order_id="c")])
    result = run(approve_orders_job, resources,
                 {"session": d.isoformat(), "client_order_ids": ["a", "z", "c", "nope"], "decision": "refuse",
                  "actor": "ada"}, "approve_orders_op")
    assert not result.success
    message = failure(result, "approve_orders_op")
    assert "nothing recorded: 3 of the 4 id(s)" in message
    assert "z: an order of session 2017-06-01" in message
    assert "c: already submitted to the broker" in message
    assert "nope: no such order in the trading ledger" in message
    assert ledger.decisions(d) == {}
    bad = run(approve_orders_job, resources, {"session": "June 1st", "actor": "ada"}, "approve_orders_op")
    assert "YYYY-MM-DD" in failure(bad, "approve_orders_op")


def test_decisions_change_until_the_deadline(tmp_path):
    ledger = TradingLedger(tmp_path / "l.sqlite")
    d = dt.date(2017, 6, 1)
    deadline = dt.datetime(2017, 6, 2, 19, 30, tzinfo=dt.UTC)
    ledger.append([pending(d, "a"), pending(d, "b")])
    t = dt.datetime(2017, 6, 2, 14, 0, tzinfo=dt.UTC)
    r = decide_orders(ledger, d, ["a"], "approve", "ada", now=t, deadline=deadline)
    assert "approved 1 order(s) of session 2017-06-01" in r.summary()
    decide_orders(ledger, d, ["a", "b", "a"], "refuse", "bob", "changed my mind", now=t + dt.timedelta(minutes=1),
                  deadline=deadline)
    assert ledger.decisions(d) == {"a": "refusal", "b": "refusal"}
    with pytest.raises(ControlError, match="too late"):
        decide_orders(ledger, d, [], "approve", "ada", now=deadline, deadline=deadline)
    with pytest.raises(ControlError, match="'approve' or 'refuse'"):
        decide_orders(ledger, d, [], "maybe", "ada", now=t, deadline=deadline)
    with pytest.raises(ControlError, match="no order of session 2017-06-05 is pending"):
        decide_orders(ledger, dt.date(2017, 6, 5), [], "approve", "ada", now=t, deadline=deadline)


# -------------------------------------------------------------------------------------------------------- CLI


def cli(env_, *argv):
    import argparse

    from trading_dagster.cli_control import add_control_commands

    parser = argparse.ArgumentParser(prog="trading-dagster")
    add_control_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args, env=env_)


@pytest.fixture
def cli_env(tmp_path):
    from trading_dagster.cli_control import ControlEnv
    from trading_dagster.resources.alerts import LogAlertSink

    class Quiet:  # a logger that drops every line (the alert sink logs at the alert's severity)
        def error(self, message):
            pass

        warning = info = error

    holder = {}
    env_ = ControlEnv(
        ledger=TradingLedger(tmp_path / "ledger.sqlite", tmp_path / "audit"),
        open_broker=lambda: holder["broker"],
        alerts=LogAlertSink(tmp_path / "alerts.jsonl", Quiet()),
        now=lambda: dt.datetime(2017, 6, 2, 14, 0, tzinfo=dt.UTC),
        sleep=lambda s: None,
    )
    return env_, holder


def test_cli_approve(cli_env, capsys):
    env_, _ = cli_env
    d = dt.date(2017, 6, 1)  # deadline 2017-06-02 15:30 New York; the env's clock says 14:00 UTC
    env_.ledger.append([pending(d, "a"), pending(d, "b")])
    assert cli(env_, "approve", "2017-06-01") == 2  # neither ids nor --all
    assert cli(env_, "approve", "2017-06-01", "a", "--all") == 2
    assert cli(env_, "approve", "2017-06-01", "a", "--actor", "ada", "--reason", "ok") == 0
    assert "approved 1 order(s) of session 2017-06-01 (deadline 2017-06-02 19:30Z): a" in capsys.readouterr().out
    assert cli(env_, "approve", "2017-06-01", "--all", "--refuse", "--actor", "bob") == 0
    assert env_.ledger.decisions(d) == {"a": "refusal", "b": "refusal"}
    assert cli(env_, "approve", "2017-06-01", "x", "--actor", "bob") == 1
    assert "x: no such order in the trading ledger" in capsys.readouterr().err


def test_cli_kill_switch(cli_env, capsys, tmp_path):
    env_, _ = cli_env
    assert cli(env_, "kill-switch", "status") == 0
    assert "released (never set)" in capsys.readouterr().out
    assert cli(env_, "kill-switch", "on", "--actor", "ada", "--reason", "halt") == 0
    assert env_.ledger.kill_switch().engaged
    assert cli(env_, "kill-switch", "status") == 0
    assert "kill switch ENGAGED since 2017-06-02 14:00:00Z by ada: halt" in capsys.readouterr().out
    assert cli(env_, "kill-switch", "off", "--actor", "pipeline") == 1
    assert cli(env_, "kill-switch", "off", "--actor", "bob") == 0
    assert not env_.ledger.kill_switch().engaged
    assert len(alerts(tmp_path)) == 2


def test_cli_flatten(cli_env, capsys):
    env_, holder = cli_env
    holder["broker"] = FakeBroker({"AAPL": 10, "MSFT": 5}, refuse_close={"MSFT"})
    assert cli(env_, "flatten", "--actor", "ada") == 2  # no --yes
    assert holder["broker"].calls == []
    assert cli(env_, "flatten", "--yes", "--actor", "ada", "--timeout", "1", "--poll-interval", "0.01") == 1
    err = capsys.readouterr().err
    assert "NOT flat" in err and "position MSFT 5" in err
    holder["broker"] = FakeBrokerWithClose({"AAPL": 10, "MSFT": 5}, refuse_close={"MSFT"})
    assert cli(env_, "flatten", "--yes", "--actor", "ada", "--timeout", "1", "--poll-interval", "0.01") == 0
    assert "the account is flat" in capsys.readouterr().out
