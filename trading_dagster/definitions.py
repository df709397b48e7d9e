"""The one Definitions object: assets, checks, jobs, schedules, sensors, and resources from settings."""

from __future__ import annotations

import dagster as dg

from trading_dagster.assets.indicators import indicators, signals
from trading_dagster.assets.prices import cleaned_prices
from trading_dagster.assets.raw import raw_prices
from trading_dagster.assets.trading import executions, orders, performance, pnl
from trading_dagster.automation.alerts import raw_freshness_sensor, run_failure_alert_sensor
from trading_dagster.automation.jobs import (
    daily_pipeline_schedule,
    performance_after_pipeline_sensor,
    performance_job,
    pipeline_job,
)
from trading_dagster.automation.sensors import raw_landing_job, raw_landing_sensor
from trading_dagster.automation.staleness import (
    UP_TO_DATE_CHECKS,
    refresh_stale_sensor,
    stale_partitions_sensor,
)
from trading_dagster.resources.alerts import alerts_resource
from trading_dagster.resources.configured import (
    BrokerResource,
    CorporateActionsResource,
    MarketDataResource,
    QualityGateResource,
    RawStoreResource,
    StrategyConfig,
    TradingConfigResource,
)
from trading_dagster.resources.security_master import ALPACA_SNAPSHOT_FILE, SecurityMasterResource
from trading_dagster.resources.warehouse import WarehouseIOManager
from trading_dagster.settings import Settings, data_policy, load_settings, universe_rule, universe_symbols

ASSETS = [raw_prices, cleaned_prices, indicators, signals, orders, executions, pnl, performance]


def build_resources(settings: Settings) -> dict:
    cfg = settings.config
    account, risk, costs = cfg.get("account", {}), cfg.get("risk", {}), cfg.get("costs", {})
    universe = universe_rule(cfg)  # SettingsError for a bad [universe], before anything is created
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    trading_config = TradingConfigResource(
        account=str(account.get("name", "paper")),
        benchmark=str(account.get("benchmark", "SPY")),
        initial_cash=float(account.get("initial_cash", 100_000)),
        strategies=[StrategyConfig(**s) for s in cfg.get("strategies", [])],
        min_median_dollar_volume=universe.min_median_dollar_volume,
        liquidity_window=universe.liquidity_window,
        **data_policy(cfg),
        **{k: risk[k] for k in risk},
    )
    return {
        "io_manager": WarehouseIOManager(
            database=str(settings.warehouse_path), quality_gate_path=str(settings.quality_gate_path)
        ),
        "quality_gate": QualityGateResource(path=str(settings.quality_gate_path)),
        "corporate_actions": CorporateActionsResource(
            kind=settings.corporate_actions,
            path=str(settings.corporate_actions_file) if settings.corporate_actions_file else None,
            **(
                {
                    "symbols": universe_symbols(settings.config),
                    "alpaca_key_id": dg.EnvVar("APCA_API_KEY_ID"),
                    "alpaca_secret_key": dg.EnvVar("APCA_API_SECRET_KEY"),
                    "alpaca_data_url": settings.alpaca_data_url,
                }
                if settings.corporate_actions == "alpaca"
                else {}
            ),
        ),
        "security_master": security_master_resource(settings),
        "raw_store": RawStoreResource(
            kind=settings.raw_store,
            local_root=str(settings.raw_root),
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
        ),
        "market_data": market_data_resource(settings),
        "broker": BrokerResource(
            kind=settings.broker,
            ledger_path=str(settings.broker_ledger_path),
            account=trading_config.account,
            initial_cash=trading_config.initial_cash,
            slippage_bps=float(costs.get("slippage_bps", 5)),
            commission_per_share=float(costs.get("commission_per_share", 0.005)),
        ),
        "trading_config": trading_config,
        "alerts": alerts_resource(settings.data_dir, cfg.get("alerts", {})),
    }


def security_master_resource(settings: Settings) -> SecurityMasterResource:
    """LEAN map files or a CSV (a path), Alpaca's asset list (snapshots under the data dir), or none."""
    if settings.security_master_source == "alpaca":
        return SecurityMasterResource(
            source="alpaca",
            symbols=universe_symbols(settings.config),
            alpaca_key_id=dg.EnvVar("APCA_API_KEY_ID"),
            alpaca_secret_key=dg.EnvVar("APCA_API_SECRET_KEY"),
            alpaca_trading_url=settings.alpaca_trading_url,
            snapshot_path=str(settings.data_dir / ALPACA_SNAPSHOT_FILE),
        )
    return SecurityMasterResource(path=str(settings.security_master) if settings.security_master else None)


def market_data_resource(settings: Settings) -> MarketDataResource:
    """The configured source, fetching only the `[universe] symbols` (every symbol of the file when none)."""
    if settings.market_data == "alpaca":
        return MarketDataResource(
            kind="alpaca",
            symbols=universe_symbols(settings.config),
            alpaca_key_id=dg.EnvVar("APCA_API_KEY_ID"),
            alpaca_secret_key=dg.EnvVar("APCA_API_SECRET_KEY"),
            alpaca_feed=settings.alpaca_feed,
            alpaca_adjustment=settings.alpaca_adjustment,
            alpaca_data_url=settings.alpaca_data_url,
        )
    return MarketDataResource(
        kind="file", path=str(settings.market_data_file), symbols=universe_symbols(settings.config)
    )


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=UP_TO_DATE_CHECKS,
        jobs=[pipeline_job, performance_job, raw_landing_job],
        schedules=[daily_pipeline_schedule],
        sensors=[
            performance_after_pipeline_sensor,
            raw_landing_sensor,
            raw_freshness_sensor,
            run_failure_alert_sensor,
            stale_partitions_sensor,
            refresh_stale_sensor,
        ],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
