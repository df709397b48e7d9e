"""The one Definitions object: assets, checks, jobs, schedules, sensors, and resources from settings."""

from __future__ import annotations

import dataclasses

import dagster as dg

from trading_dagster.domain.collector import collector_paused_then_frozen

# The code location's imports create ~200,000 objects that live as long as the process. Python's cyclic
# collector walked them in full collections while they were being created (two in a run worker, ~0.15 s of
# its start); paused for the imports, then frozen (gc.freeze: later collections skip them).
with collector_paused_then_frozen():
    from trading_dagster.assets.audit_export import audit_log
    from trading_dagster.assets.dbt import dbt_resource, marts_assets, marts_job
    from trading_dagster.assets.execution import EXECUTION_ASSETS
    from trading_dagster.assets.indicators import indicators, signals
    from trading_dagster.assets.ml import ML_ASSETS, ml_evaluation_job, model_job
    from trading_dagster.assets.portal import (
        PORTAL_ASSETS,
        WarehouseReader,
        portal_after_marts_sensor,
        portal_job,
    )
    from trading_dagster.assets.prices import cleaned_prices
    from trading_dagster.assets.promotion import PROMOTIONS_ASSET, promote_job
    from trading_dagster.assets.raw import raw_prices
    from trading_dagster.assets.research import RESEARCH_ASSETS, sweep_job
    from trading_dagster.assets.trading import executions, orders, performance, pnl
    from trading_dagster.assets.walk_forward import WALK_FORWARD_ASSETS, walk_forward_job
    from trading_dagster.automation.alerts import raw_freshness_sensor, run_failure_alert_sensor
    from trading_dagster.automation.control import CONTROL_JOBS, KILL_SWITCH_ASSET
    from trading_dagster.automation.daily_loss import daily_loss_sensor
    from trading_dagster.automation.execution_sensors import (
        EXECUTION_JOBS,
        build_execution_sensor,
        build_reconciliation_sensor,
        build_weekly_scan_schedule,
        execution_orders_after_pipeline_sensor,
    )
    from trading_dagster.automation.jobs import (
        daily_pipeline_schedule,
        marts_after_pipeline_sensor,
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
    from trading_dagster.automation.trading_schedules import trading_pnl_after_close_schedule
    from trading_dagster.resources.alerts import WEBHOOK_ENV_VAR, alerts_resource
    from trading_dagster.resources.configured import (
        AlpacaBrokerResource,
        AlpacaCorporateActionsResource,
        AlpacaMarketDataResource,
        BacktestBookResource,
        BrokerResource,
        CorporateActionsResource,
        CostsConfig,
        FileCorporateActionsResource,
        FileMarketDataResource,
        LocalRawStoreResource,
        MarketDataResource,
        NoCorporateActionsResource,
        PaperBrokerResource,
        QualityGateResource,
        RawStoreResource,
        S3RawStoreResource,
        StrategyConfig,
        TradingConfigResource,
    )
    from trading_dagster.resources.ledger import TradingLedgerResource
    from trading_dagster.resources.promotions import PromotionJournalResource
    from trading_dagster.resources.secrets import SecretsResource
    from trading_dagster.resources.security_master import ALPACA_SNAPSHOT_FILE, SecurityMasterResource
    from trading_dagster.resources.warehouse import WarehouseIOManager
    from trading_dagster.settings import (
        ExecutionSettings,
        Settings,
        load_settings,
        promotions_file,
        universe_symbols,
    )

ASSETS = [
    raw_prices, cleaned_prices, indicators, signals, orders, executions, pnl, performance, *EXECUTION_ASSETS, audit_log
]
CONTROL_ASSETS = [KILL_SWITCH_ASSET]

# Who owns each stage and where it sits, applied to every asset of a group in one place (`annotate_spec`), so
# the lineage reads in order when it opens (the `step` tag numbers the groups from raw data to the portal) and
# each asset says who to ask. Owners are teams (Dagster's `team:` form); tags are filterable in the catalog.
GROUP_ANNOTATIONS: dict[str, tuple[str, dict[str, str]]] = {
    "raw": ("team:market-data", {"step": "1-raw", "book": "none"}),
    "prices": ("team:market-data", {"step": "2-prices", "book": "none"}),
    "indicators": ("team:quant-research", {"step": "3-indicators", "book": "none"}),
    "signals": ("team:quant-research", {"step": "4-signals", "book": "none"}),
    "trading": ("team:quant-research", {"step": "5-trading", "book": "backtest"}),
    "pnl": ("team:quant-research", {"step": "6-pnl", "book": "backtest"}),
    "marts": ("team:quant-research", {"step": "7-marts", "book": "backtest"}),
    "execution": ("team:trading-desk", {"step": "8-execution", "book": "broker"}),
    "portal": ("team:trading-desk", {"step": "9-portal", "book": "both"}),
    "research": ("team:quant-research", {"step": "10-research", "book": "backtest"}),
}
# kinds for the assets that have none of their own (the UI shows a kind as an icon on the node)
EXTRA_KINDS: dict[str, set[str]] = {
    "execution/kill_switch": {"sqlite"},
    "portal/strategy_config": {"python"},
    "portal/emergency_controls": {"sqlite"},
}


def annotate_spec(spec: dg.AssetSpec) -> dg.AssetSpec:
    """`spec` with its group's owner and tags, and kinds where it has none (GROUP_ANNOTATIONS). A group
    without an entry is an error: a new stage must say who owns it."""
    group = spec.group_name or "default"
    if group not in GROUP_ANNOTATIONS:
        raise ValueError(f"asset {spec.key.to_user_string()}: group {group!r} has no owner in GROUP_ANNOTATIONS")
    owner, tags = GROUP_ANNOTATIONS[group]
    kinds = set(spec.kinds) or EXTRA_KINDS.get(spec.key.to_user_string(), set())
    return spec.replace_attributes(
        owners=[*spec.owners, owner] if owner not in spec.owners else list(spec.owners),
        tags={**tags, **spec.tags},
        kinds=kinds,
    )


def build_resources(settings: Settings) -> dict:
    """Every resource, each seam's subclass chosen by the settings (decision 0005, section 3)."""
    trading = settings.trading
    assert trading is not None  # load_settings always parses it
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    trading_config = TradingConfigResource(
        account=trading.account,
        benchmark=trading.benchmark,
        initial_cash=trading.initial_cash,
        strategies=[StrategyConfig(**s) for s in trading.strategies],
        min_median_dollar_volume=trading.universe.min_median_dollar_volume,
        liquidity_window=trading.universe.liquidity_window,
        approval_deadline=trading.execution.approval_deadline,
        submit_cutoff_minutes=trading.execution.submit_cutoff_minutes,
        weekly_scan_day=trading.execution.weekly_scan_day,
        order_type=trading.execution.order_type,
        limit_offset_bps=trading.execution.limit_offset_bps,
        time_in_force=trading.execution.time_in_force,
        pnl_alert_below_usd=trading.execution.pnl_alert_below_usd,
        **trading.data,
        **trading.risk,
    )
    return {
        "io_manager": WarehouseIOManager(
            database=str(settings.warehouse_path), quality_gate_path=str(settings.quality_gate_path)
        ),
        "quality_gate": QualityGateResource(path=str(settings.quality_gate_path)),
        "corporate_actions": corporate_actions_resource(settings),
        "security_master": security_master_resource(settings),
        "raw_store": raw_store_resource(settings),
        "market_data": market_data_resource(settings),
        "backtest_book": BacktestBookResource(
            ledger_path=str(settings.backtest_book_path),
            account=trading.account,
            initial_cash=trading.initial_cash,
            costs=CostsConfig(**trading.costs),
            **dataclasses.asdict(trading.backtest),  # [backtest]: the simulated book's conventions only
        ),
        "broker": broker_resource(settings),
        "ledger": TradingLedgerResource(
            path=str(settings.trading_ledger_path),
            audit_dir=str(settings.data_dir / "audit"),
            webhook_url=dg.EnvVar(WEBHOOK_ENV_VAR) if dg.EnvVar(WEBHOOK_ENV_VAR).get_value() else None,
            kill_switch_forced=trading.execution.kill_switch,
        ),
        "trading_config": trading_config,
        "alerts": alerts_resource(settings.data_dir, trading.alerts),
        "dbt": dbt_resource(str(settings.warehouse_path)),
        "warehouse": WarehouseReader(database=str(settings.warehouse_path)),
        "promotions": PromotionJournalResource(
            path=str(promotions_file(settings.data_dir)),
            config_strategies=[StrategyConfig(**s) for s in settings.config.get("strategies", [])],
        ),
    }


def secrets_resource(settings: Settings) -> SecretsResource | None:
    """SSM Parameter Store under the settings' path when TRADING_DAGSTER_SECRETS=ssm (the endpoint is boto3's:
    AWS_ENDPOINT_URL_SSM or AWS_ENDPOINT_URL when set), else None (the keys are environment variables)."""
    if settings.secrets != "ssm":
        return None
    assert settings.ssm_path  # load_settings sets it with ssm
    return SecretsResource(source="ssm", ssm_path=settings.ssm_path, region=settings.s3_region)


def alpaca_key_fields(settings: Settings) -> dict:
    """The Alpaca resources' key fields: dg.EnvVar (read when the resource starts), or the SSM secrets
    resource they read APCA_API_KEY_ID / APCA_API_SECRET_KEY from at run time."""
    secrets = secrets_resource(settings)
    if secrets is not None:
        return {"secrets": secrets}
    return {
        "alpaca_key_id": dg.EnvVar("APCA_API_KEY_ID"),
        "alpaca_secret_key": dg.EnvVar("APCA_API_SECRET_KEY"),
    }


def raw_store_resource(settings: Settings) -> RawStoreResource:
    if settings.raw_store == "s3":
        assert settings.s3_bucket  # load_settings refuses s3 without a bucket
        return S3RawStoreResource(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
        )
    return LocalRawStoreResource(local_root=str(settings.raw_root))


def corporate_actions_resource(settings: Settings) -> CorporateActionsResource:
    if settings.corporate_actions == "alpaca":
        return AlpacaCorporateActionsResource(
            symbols=universe_symbols(settings.config),
            **alpaca_key_fields(settings),
            alpaca_data_url=settings.alpaca_data_url,
        )
    if settings.corporate_actions == "file":
        return FileCorporateActionsResource(path=str(settings.corporate_actions_file))
    return NoCorporateActionsResource()


def broker_resource(settings: Settings) -> BrokerResource:
    """The account daily runs trade on: the built-in paper broker in `dev`, Alpaca in `paper` and `live`
    (live only after the settings' opt-in checks; the resource checks the opt-in again)."""
    trading = settings.trading
    assert trading is not None
    if settings.broker == "alpaca":
        return AlpacaBrokerResource(
            **alpaca_key_fields(settings),
            url=settings.alpaca_trading_url,
            live=settings.live_trading,
            live_opt_in=dg.EnvVar("TRADING_DAGSTER_LIVE_TRADING") if settings.live_trading else None,
        )
    return PaperBrokerResource(
        path=str(settings.paper_account_path),
        # its own account id: the trading book's client order ids never equal the backtest book's
        account=f"{trading.account}:paper-broker",
        initial_cash=trading.initial_cash,
        costs=CostsConfig(**trading.costs),
        warehouse_path=str(settings.warehouse_path),
        fixed_now=settings.paper_clock,
    )


def security_master_resource(settings: Settings) -> SecurityMasterResource:
    """LEAN map files or a CSV (a path), Alpaca's asset list (snapshots under the data dir), or none."""
    if settings.security_master_source == "alpaca":
        return SecurityMasterResource(
            source="alpaca",
            symbols=universe_symbols(settings.config),
            **alpaca_key_fields(settings),
            alpaca_trading_url=settings.alpaca_trading_url,
            snapshot_path=str(settings.data_dir / ALPACA_SNAPSHOT_FILE),
        )
    return SecurityMasterResource(path=str(settings.security_master) if settings.security_master else None)


def market_data_resource(settings: Settings) -> MarketDataResource:
    """The configured source, fetching only the `[universe] symbols` (every symbol of the file when none)."""
    if settings.market_data == "alpaca":
        return AlpacaMarketDataResource(
            symbols=universe_symbols(settings.config),
            **alpaca_key_fields(settings),
            alpaca_feed=settings.alpaca_feed,
            alpaca_adjustment=settings.alpaca_adjustment,
            alpaca_data_url=settings.alpaca_data_url,
        )
    return FileMarketDataResource(path=str(settings.market_data_file), symbols=universe_symbols(settings.config))


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    execution = settings.trading.execution if settings.trading else ExecutionSettings()
    assets = dg.map_asset_specs(
        annotate_spec, [*ASSETS, marts_assets(), *CONTROL_ASSETS, *PORTAL_ASSETS, *RESEARCH_ASSETS, *WALK_FORWARD_ASSETS, *ML_ASSETS, PROMOTIONS_ASSET]  # marts: needs the manifest
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=UP_TO_DATE_CHECKS,
        jobs=[
            pipeline_job,
            performance_job,
            marts_job,
            portal_job,
            sweep_job,
            walk_forward_job,
            model_job,
            ml_evaluation_job,
            promote_job,
            raw_landing_job,
            *EXECUTION_JOBS,
            *CONTROL_JOBS,
        ],
        schedules=[
            daily_pipeline_schedule,
            build_weekly_scan_schedule(execution.weekly_scan_day),
            trading_pnl_after_close_schedule,
        ],
        sensors=[
            performance_after_pipeline_sensor,
            marts_after_pipeline_sensor,
            portal_after_marts_sensor,
            raw_landing_sensor,
            raw_freshness_sensor,
            run_failure_alert_sensor,
            stale_partitions_sensor,
            refresh_stale_sensor,
            execution_orders_after_pipeline_sensor,
            build_execution_sensor(cutoff_minutes=execution.submit_cutoff_minutes),
            build_reconciliation_sensor(every_minutes=max(1, execution.reconcile_every_minutes)),
            daily_loss_sensor,
        ],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


_LOADED: list[tuple[tuple, dg.Definitions]] = []


def definitions_for(settings: Settings) -> dg.Definitions:
    """`build_definitions(settings)`, built once while the settings (and the alert webhook's presence, which
    the definitions also read) equal the last call's: Dagster loads a code location more than once in a
    process (a run worker: four times for one run, ~0.1 s each), and `trading-dagster backfill` rebuilds its
    job from here too."""
    key = (settings, bool(dg.EnvVar(WEBHOOK_ENV_VAR).get_value()))
    for loaded_key, loaded in _LOADED:
        if loaded_key == key:
            return loaded
    built = build_definitions(settings)
    _LOADED[:] = [(key, built)]
    return built


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's definitions, for the settings read again on each call (the environment, the config
    file, the promotions journal)."""
    return definitions_for(load_settings())
