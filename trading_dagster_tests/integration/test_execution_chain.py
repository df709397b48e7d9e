"""The trading book end to end on real sample rows (decision 0005, section 4): session D's signals become
orders planned against the broker's account, go out on D+1 exactly once, fill, and reconcile; a stale or a
past session never reaches the broker; the backtest's book is never the account.

The built-in paper broker is the broker here (`dev`), its clock pinned with TRADING_DAGSTER_PAPER_CLOCK, so
the test decides what "now" is; the same assets run against Alpaca in `test_execution_alpaca.py`."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.resources.ledger import TradingLedger
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

D = dt.date(2017, 6, 1)  # a Thursday; D+1 = 2017-06-02
EVENING_D = "2017-06-01T22:30:00Z"  # after D's close (20:00Z): D is the latest completed session
MORNING_D1 = "2017-06-02T14:00:00Z"  # 10:00 New York on D+1: the market is open
LATER_D1 = "2017-06-02T15:00:00Z"
AFTER_D1 = "2017-06-02T20:30:00Z"  # after D+1's close: D is past


def _defs(data_dir, clock: str):
    return build_definitions(make_settings(data_dir, TRADING_DAGSTER_PAPER_CLOCK=clock))


def _run(defs, job: str, instance, session: dt.date = D, raise_on_error: bool = True):
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=session.isoformat(), raise_on_error=raise_on_error
    )


def _failure(result) -> str:
    """Every message of the step failures' error chains."""
    out = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            error = event.step_failure_data.error
            while error is not None:
                out.append(error.message)
                error = error.cause
    return " ".join(out)


def _paper_orders(path) -> pl.DataFrame:
    with sqlite3.connect(path) as con:
        rows = con.execute("select client_order_id from orders where parent_id is null").fetchall()
    return pl.DataFrame({"client_order_id": [r[0] for r in rows]}, schema={"client_order_id": pl.String()})


@pytest.fixture
def planned(warm_copy):
    """D through signals (the pipeline), then execution/orders on D's evening."""
    settings, _ = warm_copy
    run_range(build_definitions(settings), D, D)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(_defs(settings.data_dir, EVENING_D), "execution_orders_job", instance)
    assert result.success
    return settings, instance


def test_orders_are_planned_against_the_broker_account_and_audited(planned):
    settings, _ = planned
    orders = read_table(settings, "execution.orders")
    assert orders.height > 0 and set(orders["session"]) == {D}
    approved = orders.filter(pl.col("status") == "approved")
    assert approved.height > 0
    # the broker account's id is hashed into the ids, so they differ from the backtest's for the same signals
    backtest = read_table(settings, "trading.orders").filter(pl.col("session") == D)
    assert set(approved["client_order_id"]).isdisjoint(backtest["client_order_id"])
    # sized from the paper account's cash (the configured initial cash): $1,000 notional, whole shares
    assert (approved["qty"] * approved["ref_price"]).max() <= 1000.0
    events = TradingLedger(settings.trading_ledger_path).events(session=D)
    assert events.filter(pl.col("kind") == "signal").height == orders.height
    assert events.filter(pl.col("kind") == "decision").height == approved.height
    lines = "".join(p.read_text() for p in (settings.data_dir / "audit").glob("audit-*.log"))
    assert approved["client_order_id"][0] in lines and "DECISION" in lines


def test_d_goes_out_on_d_plus_1_exactly_once_then_fills_and_reconciles(planned):
    settings, instance = planned
    approved = read_table(settings, "execution.orders").filter(pl.col("status") == "approved")
    morning = _defs(settings.data_dir, MORNING_D1)
    assert _run(morning, "execution_job", instance).success
    first = read_table(settings, "execution.submissions")
    assert set(first.filter(pl.col("outcome") == "submitted")["client_order_id"]) == set(approved["client_order_id"])
    # a retried run, a re-materialized partition: nothing new at the broker
    assert _run(morning, "execution_job", instance).success
    again = read_table(settings, "execution.submissions")
    assert set(again.filter(pl.col("broker_order_id").is_not_null())["outcome"]) == {"already_existed"}
    assert set(again["outcome"]) == {"already_existed", "not_approved"}  # denials never leave the house
    at_broker = _paper_orders(settings.paper_account_path)
    assert at_broker.height == approved.height and at_broker["client_order_id"].n_unique() == approved.height

    later = _defs(settings.data_dir, LATER_D1)
    result = _run(later, "reconcile_job", instance)
    assert result.success
    fills = read_table(settings, "execution.fills")
    assert fills["final"].all() and (fills.filter(pl.col("status") == "filled").height > 0)
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert mats[0].metadata["all_final"].value is True
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # positions and cash both reconcile (the paper broker's commission is in its fills)
    assert checks == {"execution_fills__reconciled": True, "execution_fills__cash_matches": True}
    ledger = TradingLedger(settings.trading_ledger_path)
    n_fills = ledger.events(kinds=["fill"]).height
    assert n_fills == fills.filter(pl.col("filled_qty") > 0).height
    assert _run(later, "reconcile_job", instance).success  # polled again: every execution recorded once
    assert ledger.events(kinds=["fill"]).height == n_fills


def test_a_stale_or_past_session_never_reaches_the_broker(planned):
    settings, instance = planned
    after = _defs(settings.data_dir, AFTER_D1)
    result = _run(after, "execution_job", instance, raise_on_error=False)
    assert not result.success
    assert "after the close" in _failure(result) and "never traded" in _failure(result)
    # planning D once D+1 has closed is planning a stale session
    result = _run(after, "execution_orders_job", instance, raise_on_error=False)
    assert not result.success and "stale" in _failure(result)
    assert _paper_orders(settings.paper_account_path).height == 0


def test_the_kill_switch_holds_buys_and_the_backtest_never_touches_the_account(planned):
    settings, instance = planned
    TradingLedger(settings.trading_ledger_path).set_kill_switch(True, "risk desk", "test")
    morning = _defs(settings.data_dir, MORNING_D1)
    assert _run(morning, "execution_job", instance).success
    sent = read_table(settings, "execution.submissions")
    assert sent.filter((pl.col("side") == "buy") & (pl.col("outcome") != "held")).height == 0
    assert sent.filter(pl.col("side") == "buy").height > 0
    # re-running the backtest over D rewinds the backtest book only
    before = _paper_orders(settings.paper_account_path)
    run_range(build_definitions(settings), D, D)
    assert _paper_orders(settings.paper_account_path).equals(before)


def test_a_range_run_of_the_execution_assets_is_refused(planned):
    settings, instance = planned
    defs = _defs(settings.data_dir, MORNING_D1)
    result = defs.resolve_job_def("execution_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2017-05-30", "dagster/asset_partition_range_end": "2017-06-01"},
        raise_on_error=False,
    )
    assert not result.success and "one session at a time" in _failure(result)
    assert Decimal(0) == Decimal(_paper_orders(settings.paper_account_path).height)


def test_the_day_pnl_below_the_threshold_is_alerted(planned, tmp_path):
    settings, instance = planned
    config = tmp_path / "config.toml"
    shipped = (settings.config_file).read_text()
    config.write_text(shipped + "\n[execution]\npnl_alert_below_usd = -0.01\n")

    def defs(clock: str):
        return build_definitions(
            make_settings(settings.data_dir, TRADING_DAGSTER_PAPER_CLOCK=clock, TRADING_DAGSTER_CONFIG=str(config))
        )

    assert _run(defs(MORNING_D1), "execution_job", instance).success
    result = _run(defs(LATER_D1), "reconcile_job", instance)
    account = read_table(settings, "execution.account").row(0, named=True)
    # bought at the quote plus slippage and commission: marked at the quote, the day starts below zero
    assert account["day_pnl"] is not None and account["day_pnl"] < 0
    assert account["equity"] == pytest.approx(account["last_equity"] + account["day_pnl"])
    alerts = [line for line in (settings.data_dir / "alerts.jsonl").read_text().splitlines() if "pnl_below" in line]
    assert len(alerts) == 1 and str(D) in alerts[0]
    assert result.success


def test_the_trade_command_plans_sends_and_reconciles_exactly_once(warm_copy, monkeypatch, tmp_path, capsys):
    from trading_dagster.cli import main

    settings, _ = warm_copy
    run_range(build_definitions(settings), D, D)
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TRADING_DAGSTER_PAPER_CLOCK", MORNING_D1)
    home = str(tmp_path / "home")
    assert main(["--dagster-home", home, "trade", "--session", str(D), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "broker: paper (dev)" in out and "execution/submissions" in out and "'all_final': True" in out
    sent = _paper_orders(settings.paper_account_path).height
    approved = read_table(settings, "execution.orders").filter(pl.col("status") == "approved").height
    assert sent == approved > 0
    assert main(["--dagster-home", home, "trade", "--session", str(D)]) == 0  # again: nothing new at the broker
    assert _paper_orders(settings.paper_account_path).height == sent
    monkeypatch.setenv("TRADING_DAGSTER_PAPER_CLOCK", AFTER_D1)
    assert main(["--dagster-home", home, "trade", "--session", str(D)]) == 1
    err = capsys.readouterr().err
    assert "never traded" in err and "Traceback" not in err
