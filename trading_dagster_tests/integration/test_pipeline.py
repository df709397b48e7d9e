"""The whole pipeline through Dagster: definitions, a range run over the real sample, range == day by day."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster_tests.integration.conftest import check_count, make_settings, read_table, run_range

TABLES = {
    "prices.cleaned_prices": ["session", "symbol"],
    "prices.price_quarantine": ["session", "symbol", "reason"],
    "indicators.indicators": ["session", "symbol"],
    "signals.signals": ["session", "symbol", "strategy"],
    "trading.orders": ["session", "symbol", "strategy", "side"],
    "trading.executions": ["session", "client_order_id", "event"],
    "pnl.positions": ["session", "symbol"],
    "pnl.equity": ["session"],
}


def test_definitions_snapshot(tmp_path):
    """Every asset key, check, job, schedule and sensor: a rename shows up here in review."""
    defs = build_definitions(make_settings(tmp_path))
    repo = defs.get_repository_def()
    assets = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())
    every_check = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in repo.asset_graph.asset_check_keys)
    # the dbt tests are checks of the marts (the manifest names them): their reconciliations by name, the rest counted
    marts_checks = [c for c in every_check if c.startswith("marts/")]
    assert {
        "marts/fct_daily_pnl:assert_daily_pnl_matches_equity",
        "marts/fct_daily_pnl:assert_equity_is_cash_plus_market_value",
        "marts/fct_trade_journal:assert_journal_fills_match_executions",
    } <= set(marts_checks)
    assert len(marts_checks) >= 60
    checks = [c for c in every_check if not c.startswith("marts/")]
    assert assets == [
        "execution/account",
        "execution/audit_log",
        "execution/book_before",
        "execution/fills",
        "execution/kill_switch",
        "execution/orders",
        "execution/submissions",
        "indicators/indicators",
        "marts/dim_open_positions",
        "marts/fct_daily_pnl",
        "marts/fct_monthly_pnl",
        "marts/fct_strategy_performance",
        "marts/fct_symbol_pnl",
        "marts/fct_trade_journal",
        "marts/fct_trading_daily_pnl",
        "marts/fct_trading_journal",
        "marts/int_lot_matches",
        "marts/int_strategy_positions",
        "marts/int_strategy_symbol_pnl",
        "marts/int_trades",
        "pnl/equity",
        "pnl/performance",
        "pnl/positions",
        "portal/emergency_controls",
        "portal/strategy_config",
        "portal/strategy_equity",
        "portal/tearsheet",
        "portal/upcoming_orders",
        "prices/cleaned_prices",
        "prices/data_outages",
        "prices/price_breaks",
        "prices/price_quarantine",
        "raw/raw_prices",
        "research/dip_sweep",
        "research/ml_evaluation",
        "research/ml_filter_comparison",
        "research/promotions",
        "research/rsi_sweep",
        "research/signal_model",
        "research/sma_sweep",
        "research/walk_forward_equity",
        "research/walk_forward_folds",
        "signals/signals",
        "trading/executions",
        "trading/orders",
    ]
    assert checks == [
        "execution/audit_log:audit_log__matches_ledger",
        "execution/fills:execution_fills__cash_matches",
        "execution/fills:execution_fills__reconciled",
        "execution/orders:execution_orders__within_limits",
        "execution/submissions:execution_submissions__exactly_once",
        "indicators/indicators:indicators__gx_suite",
        "indicators/indicators:indicators__in_bounds",
        "indicators/indicators:indicators__unique_symbol_session",
        "indicators/indicators:indicators__up_to_date",
        "pnl/equity:equity__accounting_identity",
        "pnl/equity:equity__in_window",
        "pnl/equity:equity__matches_fills",
        "pnl/equity:equity__up_to_date",
        "pnl/positions:positions__complete",
        "pnl/positions:positions__in_window",
        "prices/cleaned_prices:cleaned_prices__every_session_has_rows",
        "prices/cleaned_prices:cleaned_prices__gx_suite",
        "prices/cleaned_prices:cleaned_prices__no_outage",
        "prices/cleaned_prices:cleaned_prices__ohlc_sane",
        "prices/cleaned_prices:cleaned_prices__unique_symbol_session",
        "prices/cleaned_prices:cleaned_prices__up_to_date",
        "raw/raw_prices:raw_prices__every_session_has_bars",
        "raw/raw_prices:raw_prices__gx_suite",
        "signals/signals:signals__gx_suite",
        "signals/signals:signals__unique",
        "signals/signals:signals__up_to_date",
        "signals/signals:signals__valid",
        "trading/executions:executions__in_window",
        "trading/executions:executions__match_orders",
        "trading/executions:executions__monthly_quota",
        "trading/executions:executions__no_nulls",
        "trading/executions:executions__up_to_date",
        "trading/orders:orders__gx_suite",
        "trading/orders:orders__up_to_date",
        "trading/orders:orders__within_limits",
    ]
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == [
        "approve_orders_job",
        "execution_job",
        "execution_orders_job",
        "flatten_job",
        "kill_switch_job",
        "marts_job",
        "ml_evaluation_job",
        "model_job",
        "performance_job",
        "pipeline_job",
        "portal_job",
        "promote_job",
        "raw_landing_job",
        "reconcile_job",
        "sweep_job",
        "walk_forward_job",
    ]
    assert sorted(s.name for s in repo.schedule_defs) == [
        "daily_pipeline_schedule",
        "trading_pnl_after_close_schedule",
        "weekly_scan_schedule",
    ]
    assert [s.name for s in repo.sensor_defs] == [
        "daily_loss_sensor",
        "execution_orders_after_pipeline_sensor",
        "execution_sensor",
        "marts_after_pipeline_sensor",
        "performance_after_pipeline_sensor",
        "portal_after_marts_sensor",
        "raw_freshness_sensor",
        "raw_landing_sensor",
        "reconciliation_sensor",
        "refresh_stale_sensor",
        "run_failure_alert_sensor",
        "stale_partitions_sensor",
    ]
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        if node.partitions_def is not None:
            # the backtest backfills in one run; the trading book one session per run (a range is refused); a
            # model one training period per run
            per_partition = key.path[0] == "execution" or key == dg.AssetKey(["research", "signal_model"])
            one_run = dg.BackfillPolicy.multi_run(1) if per_partition else dg.BackfillPolicy.single_run()
            assert node.backfill_policy == one_run, key


def test_range_run_produces_trades_and_passes_checks(warm_copy):
    settings, sessions = warm_copy
    defs = build_definitions(settings)
    result = run_range(defs, sessions[0], sessions[-1])
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == check_count(defs) and all(e.passed for e in evaluations)
    orders = read_table(settings, "trading.orders")
    executions = read_table(settings, "trading.executions")
    equity = read_table(settings, "pnl.equity").sort("session")
    assert orders.filter(pl.col("status") == "approved").height > 0
    fills = executions.filter(pl.col("event") == "filled")
    assert fills.height > 0
    # every fill is at the next session's open of its order, never the same session
    assert (fills["session"] > fills["order_session"]).all()
    assert equity["session"].to_list() == sessions
    # the monthly quota of the seed use case holds on what was bought
    bought = fills.filter(pl.col("side") == "buy").group_by("symbol", pl.col("session").dt.strftime("%Y-%m")).agg(pl.col("qty").sum())
    assert bought["qty"].max() <= 4


@pytest.mark.slow
def test_single_run_backfill_equals_day_by_day(warm_copy, tmp_path_factory):
    """Ten sessions in one run give the same rows as the same ten sessions run one at a time."""
    import shutil

    range_settings, sessions = warm_copy
    sessions = sessions[:10]
    daily_dir = tmp_path_factory.mktemp("daily") / "data"
    shutil.copytree(range_settings.data_dir, daily_dir)
    daily_settings = make_settings(daily_dir)

    assert run_range(build_definitions(range_settings), sessions[0], sessions[-1]).success
    daily_defs = build_definitions(daily_settings)
    for session in sessions:
        assert run_range(daily_defs, session, session).success

    for table, keys in TABLES.items():
        a = read_table(range_settings, table).sort(keys)
        b = read_table(daily_settings, table).sort(keys)
        assert a.height > 0 or table == "prices.price_quarantine", table
        assert_frame_equal(a, b, check_exact=True)


def test_one_sessions_signals_are_a_table_in_the_ui_and_a_range_keeps_only_counts(warm_copy):
    from trading_dagster.assets._common import TABLE_MAX_ROWS

    settings, sessions = warm_copy
    defs = build_definitions(settings)

    def signals_metadata(result):
        [mat] = [
            e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key == dg.AssetKey(["signals", "signals"])
        ][:1]
        return mat.metadata

    one = run_range(defs, sessions[0], sessions[0])
    table = signals_metadata(one)["signals_table"].value
    rows = read_table(settings, "signals.signals").filter(pl.col("session") == sessions[0])
    assert len(table.records) == min(rows.height, TABLE_MAX_ROWS) > 0
    first = table.records[0].data
    assert (first["symbol"], first["strategy"]) in set(rows.select("symbol", "strategy").iter_rows())
    ranged = run_range(defs, sessions[1], sessions[2])
    assert "signals_table" not in signals_metadata(ranged)
