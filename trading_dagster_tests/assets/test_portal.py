"""The portal's pages (assets/portal.py) materialized on a small warehouse, and the definitions' annotations
that make the graph readable: every asset has an owner and a `step` tag; the emergency jobs say what they do."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.assets.portal import (
    EMERGENCY,
    PORTAL_ASSETS,
    STRATEGY_CONFIG,
    STRATEGY_EQUITY,
    UPCOMING,
    WarehouseReader,
)
from trading_dagster.automation.control import CONTROL_TAG, flatten_job, kill_switch_job
from trading_dagster.definitions import GROUP_ANNOTATIONS, annotate_spec, build_definitions
from trading_dagster.research.promotion import append_promotion, promote
from trading_dagster.resources.configured import (
    BacktestBookResource,
    CostsConfig,
    StrategyConfig,
    TradingConfigResource,
)
from trading_dagster.resources.ledger import TradingLedgerResource
from trading_dagster.resources.promotions import PromotionJournalResource
from trading_dagster_tests.integration.conftest import make_settings

D, NEXT = dt.date(2017, 11, 9), dt.date(2017, 11, 10)


def _warehouse(path, *, with_marts: bool = True) -> str:
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema pnl; create schema signals; create schema trading; create schema marts")
        con.execute("create table pnl.equity as select * from (values (date '2017-11-08', 1.0), (date '2017-11-09', 2.0)) t(session, equity)")
        con.execute(
            "create table signals.signals as select * from (values "
            "(date '2017-11-09', 'MSFT', 'sma_20_50_cross', 'buy', 1.0, 'sma_20 crossed above sma_50'),"
            "(date '2017-11-09', 'NFLX', 'rsi_30_70', 'sell', 0.1, 'rsi above 70'),"
            "(date '2017-11-08', 'KO', 'sma_20_50_cross', 'buy', 1.0, 'an older signal')"
            ") t(session, symbol, strategy, side, strength, reason)"
        )
        con.execute(
            "create table trading.orders as select * from (values "
            "(date '2017-11-09', 'MSFT', 'sma_20_50_cross', 'buy', 12, 12, 83.87, 'approved', null, 'a'),"
            "(date '2017-11-09', 'NFLX', 'rsi_30_70', 'sell', 3, 0, 195.0, 'denied', 'SHORT_NOT_ALLOWED', 'b'),"
            "(date '2017-11-08', 'KO', 'sma_20_50_cross', 'buy', 4, 4, 40.0, 'approved', null, 'c')"
            ") t(session, symbol, strategy, side, requested_qty, qty, ref_price, status, reason_code, client_order_id)"
        )
        if with_marts:
            con.execute(
                "create table marts.fct_daily_pnl as select * from (values "
                "(date '2017-11-08', 'sma_20_50_cross', 5.0, 0.0, 1), (date '2017-11-09', 'sma_20_50_cross', -2.0, 1.0, 0),"
                "(date '2017-11-08', 'rsi_30_70', 1.0, 0.0, 0), (date '2017-11-09', 'rsi_30_70', 4.0, 4.0, 1),"
                "(date '2017-11-08', 'total', 6.0, 0.0, 1), (date '2017-11-09', 'total', 2.0, 5.0, 1)"
                ") t(session, strategy, pnl, realized_pnl, fills)"
            )
    finally:
        con.close()
    return str(path)


def _resources(tmp_path, database: str) -> dict:
    return {
        "warehouse": WarehouseReader(database=database),
        "trading_config": TradingConfigResource(
            strategies=[
                StrategyConfig(name="sma_20_50_cross", kind="sma_cross", params={"fast": 20, "slow": 50}),
                StrategyConfig(
                    name="rsi_30_70", kind="rsi", params={"lower": 30, "upper": 70}, approval="manual",
                    cadence="weekly",
                ),
            ],
            max_orders_per_session=None,
            monthly_share_limit=4,
        ),
        "backtest_book": BacktestBookResource(
            ledger_path=str(tmp_path / "book.duckdb"), costs=CostsConfig(slippage_bps=7.5)
        ),
        "ledger": TradingLedgerResource(path=str(tmp_path / "ledger.sqlite"), audit_dir=str(tmp_path / "audit")),
        "promotions": PromotionJournalResource(
            path=str(tmp_path / "promotions.jsonl"),
            config_strategies=[StrategyConfig(name="sma_20_50_cross", kind="sma_cross", params={"fast": 20, "slow": 50})],
        ),
    }


def _materialize(tmp_path, database: str) -> dict[dg.AssetKey, dict]:
    result = dg.materialize(PORTAL_ASSETS, resources=_resources(tmp_path, database))
    assert result.success
    return {
        e.materialization.asset_key: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def _rows(table) -> list[dict]:
    return [r.data for r in table.records]


def test_the_portal_pages_show_the_latest_session_the_strategies_and_the_settings(tmp_path):
    sma = [{"name": "sma_20_50_cross", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}}]
    promotion = promote(
        sma, sma, "sma_20_50_cross", "sma_cross", {"fast": 20, "slow": 200}, promoted_by="Ada",
        source={"asset": "research/sma_sweep", "rank": 1, "run_id": "0123456789"},
    )
    append_promotion(tmp_path / "promotions.jsonl", promotion)
    pages = _materialize(tmp_path, _warehouse(tmp_path / "w.duckdb"))
    upcoming = pages[UPCOMING]
    assert upcoming["session"] == str(D) and upcoming["next_open"] == str(NEXT)
    assert _rows(upcoming["upcoming_orders"]) == [
        {"symbol": "MSFT", "side": "buy", "qty": 12, "price": 83.87, "strategy": "sma_20_50_cross",
         "status": "approved", "reason": "sma_20 crossed above sma_50"},
        {"symbol": "NFLX", "side": "sell", "qty": 0, "price": 195.0, "strategy": "rsi_30_70",
         "status": "denied: SHORT_NOT_ALLOWED", "reason": "rsi above 70"},
    ]
    assert upcoming["orders_going_out"] == 1 and "buy 12 MSFT" in upcoming["summary"]

    equity = pages[STRATEGY_EQUITY]
    assert "data:image/png;base64," in equity["plot"]
    assert [r["strategy"] for r in _rows(equity["by_strategy"])] == ["rsi_30_70", "sma_20_50_cross", "total"]
    assert (equity["pnl_rsi_30_70"], equity["pnl_sma_20_50_cross"], equity["pnl_total"]) == (5.0, 3.0, 8.0)

    config = pages[STRATEGY_CONFIG]
    assert _rows(config["strategies"]) == [
        {"strategy": "sma_20_50_cross", "kind": "sma_cross", "params": "fast=20, slow=50", "approval": "auto",
         "cadence": "daily"},
        {"strategy": "rsi_30_70", "kind": "rsi", "params": "lower=30, upper=70", "approval": "manual",
         "cadence": "weekly"},
    ]
    risk = {r["setting"]: r["value"] for r in _rows(config["risk"])}
    assert risk["max_orders_per_session"] == "off" and risk["monthly_share_limit"] == "4"
    assert {r["setting"]: r["value"] for r in _rows(config["costs"])}["slippage_bps"] == "7.5"
    assert {r["setting"]: r["value"] for r in _rows(config["execution"])}["order_type"] == "market"
    assert config["partitions"].startswith("2008-01-02 .. ")
    assert _rows(config["promotions"]) == [
        {"strategy": "sma_20_50_cross", "params": "fast=20, slow=200", "promoted_by": "Ada",
         "promoted_at": promotion.promoted_at, "source": "research/sma_sweep rank 1 (run 01234567)",
         "status": "in force"},
    ]
    assert config["promotions_in_force"] == 1

    emergency = pages[EMERGENCY]
    assert emergency["kill_switch_engaged"] is False
    assert "/jobs/flatten_job/playground" in emergency["how_to"] and "trading-dagster flatten --yes" in emergency["how_to"]


def test_the_emergency_page_shows_an_engaged_kill_switch(tmp_path):
    resources = _resources(tmp_path, _warehouse(tmp_path / "w.duckdb"))
    resources["ledger"].get().set_kill_switch(True, "alice", "test", now=dt.datetime(2017, 11, 10, 15, tzinfo=dt.UTC))
    result = dg.materialize(PORTAL_ASSETS, resources=resources, selection=[EMERGENCY])
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["kill_switch_engaged"].value is True
    assert "ENGAGED" in meta["how_to"].value and "alice" in meta["how_to"].value


def test_pages_without_data_say_what_to_run(tmp_path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    pages = _materialize(tmp_path, str(empty))
    assert "pipeline_job" in pages[UPCOMING]["note"]
    assert "marts_job" in pages[STRATEGY_EQUITY]["note"]


def test_every_asset_has_an_owner_a_step_and_a_kind(tmp_path):
    defs = build_definitions(make_settings(tmp_path))
    specs = list(defs.resolve_all_asset_specs())
    assert {s.group_name for s in specs} == set(GROUP_ANNOTATIONS)
    for spec in specs:
        owner, tags = GROUP_ANNOTATIONS[spec.group_name]
        assert spec.owners == [owner], spec.key
        assert spec.tags["step"] == tags["step"], spec.key
        assert spec.kinds, spec.key
        assert spec.description, spec.key
    portal = [s for s in specs if s.group_name == "portal"]
    assert sorted(s.key.to_user_string() for s in portal) == [
        "portal/emergency_controls", "portal/strategy_config", "portal/strategy_equity", "portal/tearsheet",
        "portal/upcoming_orders",
    ]
    repo = defs.get_repository_def()
    assert repo.get_job("portal_job") is not None
    assert "portal_after_marts_sensor" in {s.name for s in repo.sensor_defs}


def test_a_group_without_an_owner_is_refused():
    with pytest.raises(ValueError, match="group 'nowhere' has no owner"):
        annotate_spec(dg.AssetSpec(dg.AssetKey(["x"]), group_name="nowhere"))


def test_the_emergency_jobs_say_what_they_do():
    assert flatten_job.description.startswith("EMERGENCY SQUARE-OFF")
    assert "trading-dagster flatten --yes" in flatten_job.description
    assert flatten_job.tags[CONTROL_TAG] == "emergency" and kill_switch_job.tags[CONTROL_TAG] == "emergency"
    assert "no new buy" in kill_switch_job.description


def test_numbers_stay_numbers_in_the_tables(tmp_path):
    pages = _materialize(tmp_path, _warehouse(tmp_path / "w.duckdb"))
    schema = {c.name: c.type for c in pages[UPCOMING]["upcoming_orders"].schema.columns}
    assert schema["qty"] == "int" and schema["price"] == "float" and schema["symbol"] == "string"
    assert isinstance(pl.DataFrame(_rows(pages[STRATEGY_EQUITY]["by_strategy"]))["pnl"].dtype, pl.Float64)
