"""The dbt marts end to end: pipeline_job over 31 warm sessions, then marts_job (dbt build of the models and
their tests) on the same warehouse, and what a person reading the marts relies on."""

from __future__ import annotations

import os
import shutil
import subprocess

import dagster as dg
import duckdb
import pytest

from trading_dagster.assets.dbt import dbt_executable
from trading_dagster.dbt_project_def import WAREHOUSE_ENV, dbt_project
from trading_dagster.definitions import build_definitions
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

MARTS = ["fct_trade_journal", "fct_daily_pnl", "fct_monthly_pnl", "fct_strategy_performance", "fct_symbol_pnl",
         "dim_open_positions"]


def run_marts(defs: dg.Definitions, start, end):
    return defs.resolve_job_def("marts_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()},
    )


@pytest.fixture(scope="module")
def built(warm_history, tmp_path_factory):
    """31 sessions through P&L, then the marts over the same range (one dbt build)."""
    src, sessions = warm_history
    data_dir = tmp_path_factory.mktemp("dbt") / "data"
    shutil.copytree(src, data_dir)
    settings = make_settings(data_dir)
    defs = build_definitions(settings)
    assert run_range(defs, sessions[0], sessions[-1]).success
    result = run_marts(defs, sessions[0], sessions[-1])
    return settings, sessions, defs, result


def test_marts_build_with_every_dbt_test_passing(built):
    settings, _, _, result = built
    assert result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert set(MARTS) <= materialized
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    reconciliations = {"assert_journal_fills_match_executions", "assert_equity_is_cash_plus_market_value",
                       "assert_daily_pnl_matches_equity"}
    assert reconciliations <= {c.check_name for c in checks}  # asset checks on the marts, not observations
    assert read_table(settings, "marts.fct_strategy_performance").height == 4  # three strategies and the total


def test_journal_holds_exactly_the_executions_fills(built):
    settings, sessions, _, _ = built
    fills = read_table(settings, "trading.executions").filter(event="filled")
    journal = read_table(settings, "marts.fct_trade_journal")
    journal_fills = journal.filter(event="filled")
    assert fills.height > 20
    key = ["client_order_id", "session", "qty", "price"]
    assert journal_fills.select(key).sort(key).equals(fills.select(key).sort(key))
    # readable: every fill carries the strategy of its order, and each session's events are in time order
    assert journal_fills["strategy"].null_count() == 0
    orders = read_table(settings, "trading.orders")
    assert journal.filter(event="denied").height == orders.filter(status="denied").height
    assert journal.filter(event="signal").height == read_table(settings, "signals.signals").height
    first = journal.filter(session=sessions[5]).sort("time_order")["event"].to_list()
    assert first.index("signal") < first.index("order") if "order" in first else True


def test_monthly_pnl_sums_to_the_equity_change(built):
    settings, _, _, _ = built
    equity = read_table(settings, "pnl.equity").sort("session")
    monthly = read_table(settings, "marts.fct_monthly_pnl")
    initial_cash = settings.trading.initial_cash
    change = equity["equity"][-1] - initial_cash
    assert abs(change) > 1.0  # the window traded
    total = monthly.filter(strategy="total")["pnl"].sum()
    strategies = monthly.filter(monthly["strategy"] != "total")["pnl"].sum()
    assert total == pytest.approx(change, abs=0.01)
    assert strategies == pytest.approx(change, abs=0.01)
    perf = read_table(settings, "marts.fct_strategy_performance").filter(strategy="total").to_dicts()[0]
    assert perf["cumulative_return"] == pytest.approx(equity["equity"][-1] / initial_cash - 1, rel=1e-9)
    open_positions = read_table(settings, "marts.dim_open_positions")
    last = read_table(settings, "pnl.positions").filter(session=equity["session"][-1])
    assert open_positions["market_value"].sum() == pytest.approx(last["market_value"].sum(), abs=0.01)


def test_a_one_session_run_rewrites_only_its_window(built):
    settings, sessions, defs, _ = built
    before = read_table(settings, "marts.fct_trade_journal").sort("journal_id")
    assert run_marts(defs, sessions[-1], sessions[-1]).success
    after = read_table(settings, "marts.fct_trade_journal").sort("journal_id")
    assert after.equals(before)


def dbt_test(settings, tmp_path, *selection: str) -> subprocess.CompletedProcess:
    d = str(dbt_project.project_dir)
    cmd = [dbt_executable(), "test", "--project-dir", d, "--profiles-dir", d, "--target-path", str(tmp_path / "target"),
           "--log-path", str(tmp_path / "logs"), "--select", *selection]
    env = {**os.environ, WAREHOUSE_ENV: str(settings.warehouse_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def test_reconciliation_tests_fail_on_a_broken_row(built, tmp_path):
    settings, sessions, _, _ = built
    tests = ["assert_equity_is_cash_plus_market_value", "assert_journal_fills_match_executions"]
    ok = dbt_test(settings, tmp_path, *tests)
    assert ok.returncode == 0, ok.stdout
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("update pnl.equity set cash = cash + 100 where session = ?", [sessions[10]])
        fill = con.execute("select journal_id from marts.fct_trade_journal where event = 'filled' limit 1").fetchone()
        con.execute("delete from marts.fct_trade_journal where journal_id = ?", [fill[0]])
    finally:
        con.close()
    broken = dbt_test(settings, tmp_path, *tests)
    assert broken.returncode != 0
    assert "FAIL 1 assert_equity_is_cash_plus_market_value" in broken.stdout
    assert "FAIL 1 assert_journal_fills_match_executions" in broken.stdout


def test_lineage_runs_from_raw_prices_to_every_mart(tmp_path):
    defs = build_definitions(make_settings(tmp_path / "data"))
    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if k.path[0] == "marts"]
    assert {m.path[-1] for m in marts} >= set(MARTS)
    parents = {p for k in marts for p in graph.get(k).parent_keys}
    assert {dg.AssetKey(["pnl", "equity"]), dg.AssetKey(["trading", "executions"])} <= parents
    for mart in MARTS:
        upstream = dg.AssetSelection.assets(dg.AssetKey(["marts", mart])).upstream().resolve(graph)
        assert dg.AssetKey(["raw", "raw_prices"]) in upstream, mart
    assert defs.resolve_job_def("marts_job").partitions_def is not None
