"""The trading book in the marts: the chain of `test_execution_chain.py` (D = 2017-06-01 planned on D's
evening, sent and filled on D+1 on the paper broker with a pinned clock), then `marts_job` for D: the trading
ledger's audit log is copied into the warehouse (execution/audit_log) and dbt builds the trading journal and
the trading book's daily P&L with their tests. Before anything traded, the same marts run builds too (a
backtest-only deployment: no `execution.*` table yet)."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.assets.audit_export import AUDIT_LOG_SCHEMA, audit_table, copy_is_complete
from trading_dagster.definitions import build_definitions
from trading_dagster.domain.audit import AuditEvent
from trading_dagster.resources.ledger import TradingLedger
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range
from trading_dagster_tests.integration.test_dbt import dbt_test, run_marts
from trading_dagster_tests.integration.test_execution_chain import EVENING_D, LATER_D1, MORNING_D1, D

TRADING_MARTS = ["fct_trading_journal", "fct_trading_daily_pnl"]
RECONCILIATION = "assert_trading_journal_fills_match_broker"


def _run(data_dir, clock: str, job: str, instance: dg.DagsterInstance):
    defs = build_definitions(make_settings(data_dir, TRADING_DAGSTER_PAPER_CLOCK=clock))
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=D.isoformat())


def _failed_checks(result) -> list[str]:
    return [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]


@pytest.fixture(scope="module")
def traded(warm_history, tmp_path_factory):
    """D through P&L; the marts for D before anything traded; then D planned, sent, filled and reconciled on
    the paper broker, the kill switch engaged and released once, and the marts for D again."""
    src, _ = warm_history
    data_dir = tmp_path_factory.mktemp("dbt_trading") / "data"
    shutil.copytree(src, data_dir)
    settings = make_settings(data_dir)
    defs = build_definitions(settings)
    assert run_range(defs, D, D).success
    backtest_only = run_marts(defs, D, D)
    before = {
        t: read_table(settings, t)
        for t in ("execution.audit_log", "marts.fct_trading_journal", "marts.fct_trading_daily_pnl")
    }
    instance = dg.DagsterInstance.ephemeral()
    assert _run(data_dir, EVENING_D, "execution_orders_job", instance).success
    assert _run(data_dir, MORNING_D1, "execution_job", instance).success
    assert _run(data_dir, LATER_D1, "reconcile_job", instance).success
    ledger = TradingLedger(settings.trading_ledger_path)
    ledger.set_kill_switch(True, "risk desk", "drill", now=dt.datetime(2017, 6, 2, 19, 0, tzinfo=dt.UTC))
    ledger.set_kill_switch(
        False, "risk desk", "drill over", now=dt.datetime(2017, 6, 2, 19, 5, tzinfo=dt.UTC)
    )
    # a person's cancel of one order and a flatten's first step: the kinds the chain itself does not make
    broker_id = read_table(settings, "execution.submissions")["broker_order_id"].drop_nulls()[0]
    at = dt.datetime(2017, 6, 2, 19, 10, tzinfo=dt.UTC)
    ledger.append(
        [
            AuditEvent(
                kind="cancel",
                occurred_at=at,
                actor="risk desk",
                ref=broker_id,
                reason_code="CANCEL_REQUESTED",
            ),
            AuditEvent(
                kind="flatten", occurred_at=at, actor="risk desk", reason_code="FLATTEN_STARTED", ref="f-1"
            ),
        ]
    )
    result = run_marts(defs, D, D)
    return settings, defs, backtest_only, before, result


def test_marts_build_on_a_backtest_only_deployment(traded):
    """No execution.* table and an empty ledger: the marts build, every dbt test passes, and the trading
    marts and the audit copy exist, empty and typed."""
    _, _, backtest_only, before, _ = traded
    assert backtest_only.success
    assert not _failed_checks(backtest_only)
    materialized = {e.asset_key.to_user_string() for e in backtest_only.get_asset_materialization_events()}
    assert {"execution/audit_log", *(f"marts/{m}" for m in TRADING_MARTS)} <= materialized
    assert all(frame.height == 0 for frame in before.values())
    audit = before["execution.audit_log"]
    assert audit.schema["occurred_at"].time_zone in ("UTC", "Etc/UTC") and audit.schema["qty"] == pl.Float64
    assert "journal_id" in before["marts.fct_trading_journal"].columns


def test_the_audit_copy_is_the_ledger_and_idempotent(traded):
    settings, defs, _, _, result = traded
    ledger = TradingLedger(settings.trading_ledger_path).export()
    copied = read_table(settings, "execution.audit_log").sort("seq")
    assert copied.height == ledger.height > 0
    assert copied["event_id"].to_list() == ledger["event_id"].to_list()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["audit_log__matches_ledger"] is True
    submitted = copied.filter(pl.col("kind") == "submission")
    assert submitted["broker_order_id"].null_count() == 0 and submitted["strategy"].null_count() == 0
    # copied again: the same table
    again = defs.resolve_job_def("marts_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=D.isoformat(),
        asset_selection=[dg.AssetKey(["execution", "audit_log"])],
    )
    assert again.success
    assert read_table(settings, "execution.audit_log").sort("seq").equals(copied)


def test_the_trading_journal_reads_the_session_in_time_order(traded):
    settings, _, _, _, result = traded
    assert result.success and not _failed_checks(result)
    journal = read_table(settings, "marts.fct_trading_journal").sort("time_order")
    orders = read_table(settings, "execution.orders")
    approved = orders.filter(pl.col("status") == "approved")
    denied = orders.filter(pl.col("status") == "denied")
    submissions = read_table(settings, "execution.submissions")
    fills = read_table(settings, "execution.fills")
    count = dict(journal.group_by("event").len().iter_rows())
    assert count["signal"] == count["order"] == orders.height
    assert count["approved"] == approved.height > 0
    assert count.get("denied", 0) == denied.height
    assert count["submitted"] == submissions.filter(pl.col("broker_order_id").is_not_null()).height
    assert count["filled"] >= fills.filter(pl.col("filled_qty") > 0).height > 0
    assert count["kill_switch"] == 2
    # in time order: the session's signals and orders on D's evening, the submissions and fills on D+1
    assert journal["occurred_at"].is_sorted()
    first = {
        e: journal.filter(event=e)["time_order"].min() for e in ("signal", "order", "submitted", "filled")
    }
    assert first["signal"] < first["order"] < first["submitted"] < first["filled"]
    # readable: who, what and why on every row
    assert journal["reason"].null_count() == 0 and journal["actor"].null_count() == 0
    life = journal.filter(pl.col("event").is_in(["signal", "order", "approved", "submitted", "filled"]))
    assert life["strategy"].null_count() == 0 and set(life["session"]) == {D}
    row = approved.row(0, named=True)
    cid = row["client_order_id"]
    text = dict(journal.filter(client_order_id=cid).select("event", "reason").iter_rows())
    assert text["signal"].startswith(
        f"signal of {row['strategy']}: {row['side']} {row['symbol']} at the close of {D}"
    )
    assert text["order"].startswith(
        f"planned: {row['side']} {row['requested_qty']} {row['symbol']} at the close "
    )
    assert text["approved"].startswith(f"approved by the risk engine: {row['qty']} shares")
    broker_id = submissions.filter(client_order_id=cid)["broker_order_id"][0]
    assert f"broker order {broker_id}" in text["submitted"] and text["submitted"].startswith(
        "sent to the broker"
    )
    assert text["filled"].startswith("filled ") and " @ " in text["filled"]
    if denied.height:
        reason = journal.filter(event="denied")["reason"][0]
        assert reason.startswith("denied by the risk engine: ") and reason.split(": ")[1] in set(
            denied["reason_code"]
        )
    switch = journal.filter(event="kill_switch")["reason"].to_list()
    assert switch == [
        "kill switch ENGAGED by risk desk: drill (new buys denied)",
        "kill switch released by risk desk: drill over (new buys allowed)",
    ]
    last = journal.tail(2).select("event", "reason").rows()
    assert last[0] == ("flatten", "flatten by risk desk: FLATTEN_STARTED")
    assert last[1][0] == "cancelled" and last[1][1].startswith("cancel requested for broker order ")


def test_the_journal_fills_reconcile_with_the_broker(traded, tmp_path):
    settings, _, _, _, result = traded
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks[RECONCILIATION] is True
    fills = read_table(settings, "execution.fills").filter(pl.col("filled_qty") > 0)
    journal = read_table(settings, "marts.fct_trading_journal").filter(event="filled")
    by_order = journal.group_by("client_order_id").agg(pl.col("qty").sum()).sort("client_order_id")
    assert by_order.rows() == fills.select("client_order_id", "filled_qty").sort("client_order_id").rows()
    assert journal["notional"].sum() == pytest.approx((fills["filled_qty"] * fills["filled_avg_price"]).sum())
    # a fill lost from the journal fails the reconciliation
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("delete from marts.fct_trading_journal where journal_id = ?", [journal["journal_id"][0]])
    finally:
        con.close()
    broken = dbt_test(settings, tmp_path, RECONCILIATION)
    assert broken.returncode != 0 and f"FAIL 1 {RECONCILIATION}" in broken.stdout


def test_the_trading_daily_pnl_is_the_accounts(traded):
    settings, _, _, _, _ = traded
    account = read_table(settings, "execution.account").row(0, named=True)
    pnl = read_table(settings, "marts.fct_trading_daily_pnl")
    assert pnl.height == 1
    row = pnl.row(0, named=True)
    assert row["session"] == D and row["trade_date"] == dt.date(2017, 6, 2) and row["strategy"] == "total"
    assert row["equity"] == pytest.approx(account["equity"]) and row["day_pnl"] == pytest.approx(
        account["day_pnl"]
    )
    assert row["cumulative_pnl"] == pytest.approx(account["day_pnl"])
    assert row["daily_return"] == pytest.approx(account["day_pnl"] / account["last_equity"])


def test_the_audit_table_types_the_ledger_and_reads_the_details(tmp_path):
    """Unit: `audit_table` over a ledger of a few kinds; `copy_is_complete` refuses a short or doubled copy."""
    ledger = TradingLedger(tmp_path / "ledger.sqlite", tmp_path / "audit")
    at = dt.datetime(2017, 6, 2, 14, 0, tzinfo=dt.UTC)
    common = dict(occurred_at=at, session=D, client_order_id="td-1", symbol="AAPL", side="buy")
    ledger.append(
        [
            AuditEvent(
                kind="submission",
                qty=6,
                details={"strategy": "s1", "broker_order_id": "b-1", "status": "new", "outcome": "submitted"},
                **common,
            ),
            AuditEvent(kind="fill", qty=6, price=153.12, ref="x-1", details={"order_id": "b-1"}, **common),
            AuditEvent(kind="cancel", occurred_at=at, ref="b-2", reason_code="CANCEL_REQUESTED"),
            AuditEvent(kind="kill_switch", occurred_at=at, actor="desk", reason_code="KILL_SWITCH_ENGAGED"),
        ]
    )
    empty = audit_table(TradingLedger(tmp_path / "empty.sqlite").export())
    assert empty.height == 0 and empty.schema == pl.Schema(AUDIT_LOG_SCHEMA)
    table = audit_table(ledger.export())
    assert table.schema == pl.Schema(AUDIT_LOG_SCHEMA)
    rows = {r["kind"]: r for r in table.iter_rows(named=True)}
    assert (rows["submission"]["strategy"], rows["submission"]["broker_order_id"]) == ("s1", "b-1")
    assert (rows["submission"]["order_status"], rows["submission"]["outcome"]) == ("new", "submitted")
    assert rows["fill"]["broker_order_id"] == "b-1" and rows["fill"]["price"] == 153.12
    assert rows["cancel"]["broker_order_id"] == "b-2"
    assert rows["kill_switch"]["engaged"] is True and rows["fill"]["engaged"] is None
    assert copy_is_complete(table, 4).passed
    assert not copy_is_complete(table, 5).passed
    assert not copy_is_complete(pl.concat([table, table.head(1)]), 4).passed


def test_the_trading_marts_hang_below_the_trading_book(tmp_path):
    """Lineage: the trading journal reads the audit copy and the execution assets; the trading marts carry
    the tag book=broker, the backtest's marts keep the group's book=backtest."""
    defs = build_definitions(make_settings(tmp_path / "data"))
    graph = defs.resolve_asset_graph()
    journal = graph.get(dg.AssetKey(["marts", "fct_trading_journal"]))
    execution = {"audit_log", "orders", "submissions", "fills", "account"}
    assert {dg.AssetKey(["execution", name]) for name in execution} <= journal.parent_keys
    assert journal.tags["book"] == "broker"
    assert graph.get(dg.AssetKey(["marts", "fct_trading_daily_pnl"])).tags["book"] == "broker"
    assert graph.get(dg.AssetKey(["marts", "fct_daily_pnl"])).tags["book"] == "backtest"
    job = defs.resolve_job_def("marts_job")
    assert dg.AssetKey(["execution", "audit_log"]) in job.asset_layer.asset_graph.executable_asset_keys
