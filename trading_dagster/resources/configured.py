"""Dagster resources: thin, configurable wrappers that build the plain implementations.

Assets type against the small interfaces (`RawStore`, `MarketDataSource`, `Broker`); which implementation
runs is configuration (settings at definitions load, or run config in the UI's launchpad).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.strategies import StrategySpec, parse_strategies
from trading_dagster.resources.broker import Broker, PaperBroker
from trading_dagster.resources.market_data import FileMarketDataSource, MarketDataSource
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.resources.raw_store import LocalRawStore, RawStore, S3RawStore


class RawStoreResource(dg.ConfigurableResource):
    """Raw price objects under `raw/prices/date=YYYY-MM-DD/`: a local folder or an S3 bucket, same keys."""

    kind: str = Field(default="local", description="'local' or 's3'")
    local_root: str = Field(default=".data/lake", description="root folder of the local store")
    bucket: str | None = None
    prefix: str = ""
    region_name: str | None = None
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto)")

    def get(self) -> RawStore:
        if self.kind == "local":
            return LocalRawStore(Path(self.local_root))
        if self.kind == "s3":
            from dagster_aws.s3 import S3Resource

            if not self.bucket:
                raise ValueError("the s3 raw store needs a bucket")
            client = S3Resource(region_name=self.region_name, endpoint_url=self.endpoint_url).get_client()
            return S3RawStore(client, self.bucket, self.prefix)
        raise ValueError(f"unknown raw store kind {self.kind!r}: expected 'local' or 's3'")


class CorporateActionsResource(dg.ConfigurableResource):
    """Splits on file (a user CSV/Parquet: symbol, ex_date, ratio), so cleaning explains a split's price
    break instead of quarantining it and indicators see split-adjusted prices point in time. Only for data
    that is NOT already split-adjusted by its vendor (the shipped sample is)."""

    path: str | None = Field(default=None, description="corporate-actions file; none: no actions on file")

    def get(self) -> pl.DataFrame:
        from trading_dagster.domain.corporate_actions import empty_actions, read_corporate_actions

        return read_corporate_actions(self.path) if self.path else empty_actions()


class QualityGateResource(dg.ConfigurableResource):
    """Per-session verdicts of the blocking checks, read before any gated partition is consumed."""

    path: str = ".data/quality_gate.sqlite"

    def get(self) -> QualityGate:
        return QualityGate(self.path)


class MarketDataResource(dg.ConfigurableResource):
    """Where raw bars come from: an OHLCV file (the shipped sample by default) or Alpaca's market-data API.

    Alpaca's keys come only through `dg.EnvVar` (APCA_API_KEY_ID / APCA_API_SECRET_KEY), so they are never in
    code, settings, run config shown in the UI, logs or metadata.
    """

    kind: str = Field(default="file", description="'file' (an OHLCV CSV/Parquet file) or 'alpaca'")
    path: str | None = Field(default=None, description="the OHLCV file, for kind 'file'")
    symbols: list[str] = Field(default=[], description="the universe to fetch (Alpaca has no 'all symbols' call)")
    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None
    alpaca_feed: str = Field(default="iex", description="'iex' (free), 'sip' (paid plan) or 'delayed_sip'")
    alpaca_adjustment: str = Field(default="split", description="'split' (default), 'raw', 'dividend' or 'all'")
    alpaca_data_url: str | None = Field(default=None, description="override of https://data.alpaca.markets")

    def get(self) -> MarketDataSource:
        if self.kind == "file":
            if not self.path:
                raise ValueError("the file market-data source needs a path (TRADING_DAGSTER_MARKET_DATA_FILE)")
            return FileMarketDataSource(Path(self.path))
        if self.kind == "alpaca":
            from trading_dagster.resources.alpaca_data import AlpacaMarketDataSource

            if not (self.alpaca_key_id and self.alpaca_secret_key):
                raise ValueError("Alpaca market data needs APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment")
            return AlpacaMarketDataSource(
                api_key=self.alpaca_key_id,
                secret_key=self.alpaca_secret_key,
                symbols=self.symbols or None,
                feed=self.alpaca_feed,
                adjustment=self.alpaca_adjustment,
                url_override=self.alpaca_data_url,
            )
        raise ValueError(f"unknown market-data source {self.kind!r}: expected 'file' or 'alpaca'")


class BrokerResource(dg.ConfigurableResource):
    """The broker. Only the built-in paper broker exists in this version; it fills session D's orders at
    session D+1's open with the slippage and commission models below, and keeps its ledger in DuckDB."""

    kind: str = "paper"
    ledger_path: str = ".data/paper_broker.duckdb"
    account: str = "paper"
    initial_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_per_share: float = 0.005

    def get(self) -> Broker:
        if self.kind != "paper":
            raise ValueError(f"unknown broker {self.kind!r}: only 'paper' is available")
        Path(self.ledger_path).parent.mkdir(parents=True, exist_ok=True)
        return PaperBroker(
            path=self.ledger_path,
            initial_cash=Decimal(str(self.initial_cash)),
            slippage=self.slippage_model(),
            commission=self.commission_model(),
            account=self.account,
        )

    def slippage_model(self) -> SlippageModel:
        return SlippageModel(bps=Decimal(str(self.slippage_bps)))

    def commission_model(self) -> CommissionModel:
        return CommissionModel(per_share=Decimal(str(self.commission_per_share)))


class StrategyConfig(dg.Config):
    name: str
    kind: str
    params: dict[str, float]


class TradingConfigResource(dg.ConfigurableResource):
    """Strategies and risk limits: configuration, editable in the launchpad or in trading_dagster.toml."""

    account: str = "paper"
    benchmark: str = "SPY"
    initial_cash: float = 100_000.0
    sizing: str = "fixed_notional"
    notional: float = 1_000.0
    pct_equity: float = 1.0
    max_position_pct_equity: float = 10.0
    long_only: bool = True
    monthly_share_limit: int = 4
    strategies: list[StrategyConfig] = []

    def strategy_specs(self) -> tuple[StrategySpec, ...]:
        return parse_strategies([s.model_dump() for s in self.strategies])

    def risk_config(self) -> RiskConfig:
        return RiskConfig(
            sizing=self.sizing,
            notional=Decimal(str(self.notional)),
            pct_equity=Decimal(str(self.pct_equity)),
            max_position_pct_equity=Decimal(str(self.max_position_pct_equity)),
            long_only=self.long_only,
            monthly_share_limit=self.monthly_share_limit,
            initial_cash=Decimal(str(self.initial_cash)),
        )
