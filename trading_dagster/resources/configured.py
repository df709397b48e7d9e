"""Dagster resources: thin, configurable wrappers that build the plain implementations.

One abstract `ConfigurableResource` per seam (raw store, market data, corporate actions, broker), each with
its built-in and real implementations as subclasses (decision 0005, section 3): assets type-hint the base,
`definitions.py` binds the subclass the environment's settings chose, and the launchpad shows that
subclass's fields.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.strategies import StrategySpec, parse_strategies
from trading_dagster.domain.universe import DEFAULT_LIQUIDITY_WINDOW, UniverseRule
from trading_dagster.resources.backtest_book import SimulatedBook
from trading_dagster.resources.brokers.base import Broker
from trading_dagster.resources.market_data import FileMarketDataSource, MarketDataSource
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.resources.raw_store import (
    S3_CONNECT_TIMEOUT_SECONDS,
    S3_MAX_ATTEMPTS,
    S3_READ_TIMEOUT_SECONDS,
    LocalRawStore,
    RawStore,
    S3RawStore,
    s3_client,
)
from trading_dagster.resources.secrets import SecretsResource
from trading_dagster.resources.writer_lock import WriterLock


class RawStoreResource(dg.ConfigurableResource, ABC):
    """Raw price objects under `raw/prices/date=YYYY-MM-DD/`: a local folder or an S3 bucket, same keys.
    Assets type-hint this base; the definitions bind `LocalRawStoreResource` or `S3RawStoreResource`."""

    @abstractmethod
    def get(self) -> RawStore: ...


class LocalRawStoreResource(RawStoreResource):
    """A local folder with the bucket's key layout (the default: `<data dir>/lake`)."""

    local_root: str = Field(default=".data/lake", description="root folder of the local store")

    def get(self) -> RawStore:
        return LocalRawStore(Path(self.local_root))


class S3RawStoreResource(RawStoreResource):
    """An S3 bucket (or an S3-compatible endpoint: MinIO, moto).

    The S3 client has bounded connect and read timeouts and a bounded number of tries, so an endpoint that
    drops packets fails a request in seconds with an error naming it, instead of hanging for minutes. It is
    built with boto3 directly (`raw_store.s3_client`): dagster-aws's S3Resource builds its botocore Config
    itself, with retries only, and has no field or hook for timeouts. Credentials come from boto3's chain.
    """

    bucket: str = Field(description="the bucket (TRADING_DAGSTER_S3_BUCKET)")
    prefix: str = ""
    region_name: str | None = None
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto)")
    connect_timeout: float = Field(
        default=S3_CONNECT_TIMEOUT_SECONDS, description="seconds to wait for a connection to the S3 endpoint"
    )
    read_timeout: float = Field(
        default=S3_READ_TIMEOUT_SECONDS, description="seconds to wait for the S3 endpoint to send data"
    )
    max_attempts: int = Field(
        default=S3_MAX_ATTEMPTS,
        description="tries per S3 request, the first included (botocore's standard retry mode, with backoff)",
    )

    def get(self) -> RawStore:
        if not self.bucket:
            raise ValueError("the s3 raw store needs a bucket")
        client = s3_client(
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
        )
        return S3RawStore(client, self.bucket, self.prefix)


class CorporateActionsResource(dg.ConfigurableResource, ABC):
    """Splits, so cleaning explains a split's price break instead of quarantining it and indicators see
    split-adjusted prices point in time: none, a user file (CSV/Parquet: symbol, ex_date, ratio), or Alpaca's
    corporate-actions API for the universe. Only for bars that are NOT already split-adjusted by their vendor
    (the shipped sample is; Alpaca's bars are unless TRADING_DAGSTER_ALPACA_ADJUSTMENT=raw): settings refuse
    the combinations that would adjust twice."""

    @abstractmethod
    def source_kind(self) -> str:
        """'none', 'file' or 'alpaca'."""

    @abstractmethod
    def get(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Splits (CORPORATE_ACTIONS_SCHEMA) covering the sessions start..end (an asset's window with its
        lookback): every split with an ex_date in that window is in the frame."""


class NoCorporateActionsResource(CorporateActionsResource):
    """No corporate actions (bars split-adjusted by their vendor, as the shipped sample is)."""

    def source_kind(self) -> str:
        return "none"

    def get(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        from trading_dagster.domain.corporate_actions import empty_actions

        return empty_actions()


class FileCorporateActionsResource(CorporateActionsResource):
    """A user file of splits; all its rows whatever the window."""

    path: str = Field(description="corporate-actions file (TRADING_DAGSTER_CORPORATE_ACTIONS_FILE)")

    def source_kind(self) -> str:
        return "file"

    def get(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        from trading_dagster.domain.corporate_actions import read_corporate_actions

        if not self.path:
            raise ValueError("the file corporate-actions source needs a path (TRADING_DAGSTER_CORPORATE_ACTIONS_FILE)")
        return read_corporate_actions(self.path)


APCA_KEY_ID = "APCA_API_KEY_ID"
APCA_SECRET_KEY = "APCA_API_SECRET_KEY"
SECRETS_FIELD_DESCRIPTION = (
    "where the Alpaca keys come from when alpaca_key_id / alpaca_secret_key are unset "
    "(TRADING_DAGSTER_SECRETS=ssm: SSM Parameter Store, read at run time)"
)


def alpaca_keys(
    key_id: str | None, secret_key: str | None, secrets: SecretsResource | None, what: str
) -> tuple[str, str]:
    """The Alpaca key pair: the resource's own fields (dg.EnvVar) when both are set, else the secrets
    resource's APCA_API_KEY_ID / APCA_API_SECRET_KEY (SSM). Errors name where a key was looked for, never a
    value (SecretNotFound / SecretError come from the secrets resource)."""
    if key_id and secret_key:
        return key_id, secret_key
    if secrets is not None:
        return secrets.get(APCA_KEY_ID), secrets.get(APCA_SECRET_KEY)
    raise ValueError(
        f"{what} needs {APCA_KEY_ID} and {APCA_SECRET_KEY} in the environment (or TRADING_DAGSTER_SECRETS=ssm)"
    )


class AlpacaCorporateActionsResource(CorporateActionsResource):
    """Alpaca's corporate-actions API for the universe, asked for the window only.

    Alpaca's keys come only through `dg.EnvVar` (APCA_API_KEY_ID / APCA_API_SECRET_KEY), as for market data,
    or from `secrets` (SSM) at run time. Alpaca does not guarantee when a corporate action appears in its API: a split not known yet when its
    ex-date is cleaned is flagged UNEXPLAINED_SPLIT (quarantined, the symbol's signals held out), as a split
    missing from a file would be; re-materialize those partitions once Alpaca lists it.
    """

    symbols: list[str] = Field(default=[], description="the universe whose splits Alpaca is asked for")
    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None
    secrets: SecretsResource | None = Field(default=None, description=SECRETS_FIELD_DESCRIPTION)
    alpaca_data_url: str | None = Field(default=None, description="override of https://data.alpaca.markets")

    def source_kind(self) -> str:
        return "alpaca"

    def get(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        from trading_dagster.domain.corporate_actions import normalize_corporate_actions
        from trading_dagster.resources.alpaca_data import AlpacaCorporateActions

        if not self.symbols:
            raise ValueError(
                "Alpaca corporate actions need the universe: [universe] symbols = [...] in the config"
            )
        key_id, secret_key = alpaca_keys(
            self.alpaca_key_id, self.alpaca_secret_key, self.secrets, "Alpaca corporate actions"
        )
        client = AlpacaCorporateActions(
            api_key=key_id, secret_key=secret_key, url_override=self.alpaca_data_url
        )
        return normalize_corporate_actions(client.splits_by_ex_date(start, end, self.symbols))


class QualityGateResource(dg.ConfigurableResource):
    """Per-session verdicts of the blocking checks, read before any gated partition is consumed.

    The gate also admits one writing run at a time: every gated asset takes this resource, so a run that
    materializes any of them holds the writer lock (`resources/writer_lock.py`, beside the gate's file) from
    its start to its end, and a second run is refused naming the first (decision 0004, section 6)."""

    path: str = ".data/quality_gate.sqlite"

    def get(self) -> QualityGate:
        return QualityGate(self.path)

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[QualityGateResource]:
        run = context.dagster_run
        if run is None:  # built outside a run (a sensor, a direct call): nothing to hold
            yield self
            return
        tags = run.tags or {}
        lock = WriterLock(Path(self.path).with_name("writer.lock"))
        lock.acquire(
            run_id=run.run_id,
            job=run.job_name,
            sessions=_run_sessions(tags),
        )
        try:
            yield self
        finally:
            lock.release()


def _run_sessions(tags: Mapping[str, str]) -> str:
    """The sessions a run writes, from its tags ("" when it names none)."""
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return f"{start}..{end}"
    return tags.get("dagster/partition", "")


class MarketDataResource(dg.ConfigurableResource, ABC):
    """Where raw bars come from: an OHLCV file (the shipped sample by default) or Alpaca's market-data API."""

    symbols: list[str] = Field(
        default=[],
        description="the universe ([universe] symbols): the only symbols fetched; empty = every symbol of the "
        "file (Alpaca has no 'all symbols' call, so it needs the list)",
    )

    @abstractmethod
    def get(self) -> MarketDataSource: ...


class FileMarketDataResource(MarketDataResource):
    path: str = Field(description="the OHLCV file (TRADING_DAGSTER_MARKET_DATA_FILE)")

    def get(self) -> MarketDataSource:
        if not self.path:
            raise ValueError("the file market-data source needs a path (TRADING_DAGSTER_MARKET_DATA_FILE)")
        return FileMarketDataSource(Path(self.path), symbols=self.symbols or None)


class AlpacaMarketDataResource(MarketDataResource):
    """Alpaca's keys come only through `dg.EnvVar` (APCA_API_KEY_ID / APCA_API_SECRET_KEY) or from `secrets`
    (SSM, at run time), so they are never in code, settings, run config shown in the UI, logs or metadata."""

    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None
    secrets: SecretsResource | None = Field(default=None, description=SECRETS_FIELD_DESCRIPTION)
    alpaca_feed: str = Field(default="iex", description="'iex' (free), 'sip' (paid plan) or 'delayed_sip'")
    alpaca_adjustment: str = Field(default="split", description="'split' (default), 'raw', 'dividend' or 'all'")
    alpaca_data_url: str | None = Field(default=None, description="override of https://data.alpaca.markets")

    def get(self) -> MarketDataSource:
        from trading_dagster.resources.alpaca_data import AlpacaMarketDataSource

        key_id, secret_key = alpaca_keys(
            self.alpaca_key_id, self.alpaca_secret_key, self.secrets, "Alpaca market data"
        )
        return AlpacaMarketDataSource(
            api_key=key_id,
            secret_key=secret_key,
            symbols=self.symbols or None,
            feed=self.alpaca_feed,
            adjustment=self.alpaca_adjustment,
            url_override=self.alpaca_data_url,
        )


class CostsConfig(dg.Config):
    """`[costs]`: slippage and the commission model (`execution.CommissionModel`), one definition for the
    backtest book and the built-in paper broker.

    `slippage_spread_fraction` (0 = off) adds that fraction of each order's spread proxy to `slippage_bps`
    (`execution.SlippageModel`, `execution.spread_proxies`): the backtest book and its planner apply it. The
    paper broker of the trading book ignores it: it fills market orders at a quote (the last close it knows),
    with no bar pair to estimate a spread from, so it slips by `slippage_bps` alone."""

    slippage_bps: float = 5.0
    slippage_spread_fraction: float = Field(
        default=0.0, description="fraction (0..1) of the order session's spread proxy added to the slippage"
    )
    commission_per_share: float = 0.005
    commission_per_order: float = 0.0
    commission_bps: float = 0.0
    commission_minimum: float = 0.0
    commission_maximum_pct: float | None = Field(default=None, description="cap as % of the trade value")

    def slippage_model(self, *, round_cents: bool = True) -> SlippageModel:
        return SlippageModel(
            bps=Decimal(str(self.slippage_bps)),
            round_cents=round_cents,
            spread_fraction=Decimal(str(self.slippage_spread_fraction)),
        )

    def commission_model(self, *, round_cents: bool = True) -> CommissionModel:
        return CommissionModel(
            round_cents=round_cents,
            per_share=Decimal(str(self.commission_per_share)),
            per_order=Decimal(str(self.commission_per_order)),
            bps=Decimal(str(self.commission_bps)),
            minimum=Decimal(str(self.commission_minimum)),
            maximum_pct=None if self.commission_maximum_pct is None else Decimal(str(self.commission_maximum_pct)),
        )


class BacktestBookResource(dg.ConfigurableResource):
    """The backtest's simulated book (decision 0005, section 1): fills session D's orders at session D+1's
    open with the slippage and commission models below and keeps its ledger in DuckDB. Nobody's account:
    the book daily runs trade on is `BrokerResource`'s."""

    ledger_path: str = ".data/backtest_book.duckdb"
    account: str = "paper"
    initial_cash: float = 100_000.0
    costs: CostsConfig = CostsConfig()
    size_on: str = Field(
        default="close", description="[backtest] 'close' (a buy's qty fixed at the signal's close) or 'fill'"
    )
    round_cents: bool = Field(
        default=True, description="[backtest] fill prices to the tick against the trader, commissions to the cent"
    )
    buying_power: str = Field(default="cash", description="[backtest] 'cash' or 'off' (buys not capped by cash)")
    shares: str = Field(
        default="whole", description="[backtest] 'whole' shares or 'fractional' (to 1e-9 share, rounded down)"
    )

    def get(self, *, read_only: bool = False) -> SimulatedBook:
        """The book; `read_only`: project it (sync to an open, read the account) without writing anything."""
        Path(self.ledger_path).parent.mkdir(parents=True, exist_ok=True)
        return SimulatedBook(
            path=self.ledger_path,
            initial_cash=Decimal(str(self.initial_cash)),
            slippage=self.slippage_model(),
            commission=self.commission_model(),
            account=self.account,
            read_only=read_only,
            cash_limited=self.buying_power == "cash",
            shares=self.shares,
        )

    def slippage_model(self) -> SlippageModel:
        return self.costs.slippage_model(round_cents=self.round_cents)

    def commission_model(self) -> CommissionModel:
        return self.costs.commission_model(round_cents=self.round_cents)

    def planner_risk(self, risk: RiskConfig) -> RiskConfig:
        """`risk` with this book's conventions (`[backtest]`): what the backtest plans with."""
        if self.buying_power not in ("cash", "off"):
            raise ValueError(f"buying_power must be 'cash' or 'off', not {self.buying_power!r}")
        return replace(risk, buying_power=self.buying_power, size_on=self.size_on, shares=self.shares)


class BrokerResource(dg.ConfigurableResource, ABC):
    """The brokerage account daily runs trade on (decision 0005): the built-in paper broker or Alpaca.
    `get()` opens the plain `Broker` (resources/brokers/base.py); use it as a context manager."""

    @abstractmethod
    def get(self) -> Broker: ...


class PaperBrokerResource(BrokerResource):
    """The built-in paper broker (`brokers/paper.py`): a simulated account in a SQLite file, filling market
    orders at the last close it knows (the warehouse's cleaned prices) with the backtest's slippage and
    commission; its clock is the wall clock on the NYSE calendar unless `fixed_now` pins it (tests, demos)."""

    path: str = ".data/paper_account.sqlite"
    account: str = "paper"
    initial_cash: float = 100_000.0
    costs: CostsConfig = CostsConfig()
    warehouse_path: str | None = Field(
        default=None, description="DuckDB warehouse whose latest cleaned close is the paper fill price"
    )
    fixed_now: str | None = Field(
        default=None, description="ISO datetime the broker's clock stands still at (tests, demos); unset = now"
    )

    def get(self) -> Broker:
        from trading_dagster.resources.brokers.paper import PaperBroker

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fixed = dt.datetime.fromisoformat(self.fixed_now) if self.fixed_now else None
        if fixed is not None and fixed.tzinfo is None:
            raise ValueError(f"fixed_now {self.fixed_now!r} needs a UTC offset, e.g. 2017-11-13T15:00:00+00:00")
        return PaperBroker(
            path=self.path,
            account_id=self.account,
            initial_cash=Decimal(str(self.initial_cash)),
            clock=(lambda: fixed) if fixed is not None else None,
            quotes=_warehouse_quotes(self.warehouse_path) if self.warehouse_path else None,
            slippage=self.costs.slippage_model(),
            commission=self.costs.commission_model(),
        )


def _warehouse_quotes(path: str):
    """symbol -> the latest cleaned close in the warehouse (None when the symbol has none)."""

    def quote(symbol: str) -> Decimal | None:
        import duckdb

        from trading_dagster.domain.orders import as_decimal

        if not Path(path).exists():
            return None
        with duckdb.connect(path, read_only=True) as con:
            try:
                row = con.execute(
                    "SELECT close FROM prices.cleaned_prices WHERE symbol = ? AND close > 0 "
                    "ORDER BY session DESC LIMIT 1",
                    [symbol],
                ).fetchone()
            except duckdb.CatalogException:
                return None
        return None if row is None else as_decimal(float(row[0]))

    return quote


LIVE_TRADING_OPT_IN = "yes-i-understand"


class AlpacaBrokerResource(BrokerResource):
    """Alpaca's Trading API through alpaca-py (`brokers/alpaca.py`): the paper API unless live trading was
    opted into (settings check `TRADING_DAGSTER_LIVE_TRADING`; this resource checks again, so a launchpad
    edit cannot turn a paper deployment live). Keys only through `dg.EnvVar`, or from `secrets` (SSM) at run
    time."""

    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None
    secrets: SecretsResource | None = Field(default=None, description=SECRETS_FIELD_DESCRIPTION)
    url: str | None = Field(default=None, description="TRADING_DAGSTER_ALPACA_TRADING_URL; unset = the paper API")
    live: bool = Field(default=False, description="a live (real money) account; needs live_opt_in")
    live_opt_in: str | None = Field(default=None, description=f"must be {LIVE_TRADING_OPT_IN!r} when live")
    timeout_seconds: float = Field(default=10.0, description="per request (alpaca-py sets none)")
    max_requests_per_minute: int = Field(default=190, description="client-side limit under Alpaca's 200/min")

    def get(self) -> Broker:
        from trading_dagster.domain.broker_records import LiveTradingRefused
        from trading_dagster.resources.brokers.alpaca import AlpacaBroker

        if self.live and self.live_opt_in != LIVE_TRADING_OPT_IN:
            raise LiveTradingRefused(
                f"live trading refused: set TRADING_DAGSTER_LIVE_TRADING={LIVE_TRADING_OPT_IN} to trade real money"
            )
        key_id, secret_key = alpaca_keys(self.alpaca_key_id, self.alpaca_secret_key, self.secrets, "the Alpaca broker")
        return AlpacaBroker(
            key_id,
            secret_key,
            url=self.url,
            paper=not self.live,
            timeout_seconds=self.timeout_seconds,
            max_requests_per_minute=self.max_requests_per_minute,
        )


class StrategyConfig(dg.Config):
    name: str
    kind: str
    params: dict[str, float]
    approval: str = Field(default="auto", description="'auto' or 'manual' (live orders wait for a person)")
    cadence: str = Field(default="daily", description="'daily' or 'weekly' (trades its weekly scan session only)")
    refines: str | None = Field(default=None, description="ml_filter only: the strategy whose signals it refines")
    trades: bool = Field(default=True, description="false: its signals only feed an ml_filter, they are not traded")


class TradingConfigResource(dg.ConfigurableResource):
    """Strategies and risk limits: configuration, editable in the launchpad or in trading_dagster.toml."""

    account: str = "paper"
    benchmark: str = "SPY"
    initial_cash: float = 100_000.0
    sizing: str = Field(default="fixed_notional", description="[risk] 'fixed_notional', 'pct_equity' or 'atr'")
    notional: float = 1_000.0
    pct_equity: float = 1.0
    risk_pct_equity: float = Field(default=0.5, description="[risk] ATR sizing: % of equity at risk per order")
    atr_multiple: float = Field(default=2.0, description="[risk] ATR sizing: the stop distance in ATRs")
    atr_period: int = 14
    max_position_pct_equity: float | None = 10.0
    max_gross_exposure_pct_equity: float | None = Field(default=None, description="[risk] null = off")
    max_orders_per_session: int | None = Field(default=None, description="[risk] null = off")
    max_notional_per_session: float | None = Field(default=None, description="[risk] USD; null = off")
    max_daily_loss_pct_equity: float | None = Field(default=None, description="[risk] null = off")
    max_daily_loss_usd: float | None = Field(default=None, description="[risk] null = off")
    long_only: bool = True
    add_to_positions: bool = Field(
        default=True, description="[risk] false: a buy of a symbol already held is denied (ALREADY_HELD)"
    )
    monthly_share_limit: int | None = Field(default=4, description="[risk] shares per stock per month; null = off")
    stop_loss_pct: float | None = None
    stop_loss_atr: float | None = None
    take_profit_pct: float | None = None
    take_profit_atr: float | None = None
    min_price: float | None = Field(
        default=1.0,
        description="[risk] buys need a reference price (the signal session's close) of at least this many USD "
        "(reason PRICE_BELOW_MINIMUM); sells are never held back. 0 or null = off",
    )
    strategies: list[StrategyConfig] = []
    approval_deadline: str = Field(
        default="15:30",
        description="[execution] New York time on D+1 after which a manual strategy's unapproved orders expire "
        "(at most 30 min before an early close)",
    )
    order_type: str = Field(default="market", description="[execution] 'market' or 'limit' (at the signal's close)")
    limit_offset_bps: float = Field(default=0.0, description="[execution] a limit's distance from the close, against us")
    time_in_force: str = Field(default="day", description="[execution] 'day', 'gtc' or 'cls'")
    pnl_alert_below_usd: float | None = Field(
        default=None, description="[execution] alert when the trading book's day P&L is below this (e.g. -500)"
    )
    weekly_scan_day: str = Field(
        default="friday", description="[execution] the scan session of strategies with cadence = 'weekly'"
    )
    submit_cutoff_minutes: int = Field(
        default=15, description="[execution] no order of D is sent later than this before D+1's close"
    )
    min_median_dollar_volume: float = Field(
        default=0.0,
        description="[universe] liquidity rule: a symbol is tradeable on session D only if the median of "
        "close x volume over its last liquidity_window bars is at least this many USD; 0 = off",
    )
    liquidity_window: int = Field(
        default=DEFAULT_LIQUIDITY_WINDOW, description="[universe] bars in the median dollar volume (1..252)"
    )
    on_missing_session: str = Field(
        default="outage",
        description="[data] a session the vendor delivered no usable bar for: 'outage' (recorded, alerted, a "
        "WARN check; the pipeline goes on) or 'halt' (a blocking check failure)",
    )

    bars_split_adjusted: str = Field(
        default="auto",
        description="[data] 'yes', 'no' or 'auto' (no when a corporate-actions source is set): on unadjusted "
        "bars the book follows a confirmed break as a split; on adjusted bars it never does (a crash that "
        "held at a split ratio must not multiply held shares)",
    )

    def book_follows_confirmed_breaks(self, corporate_actions_kind: str) -> bool:
        """Whether held shares follow a confirmed unexplained split (decision 0004, section 4): only for bars
        that are not split-adjusted (`bars_split_adjusted`, 'auto' = a corporate-actions source is set)."""
        if self.bars_split_adjusted not in ("auto", "yes", "no"):
            raise ValueError(f"bars_split_adjusted must be 'auto', 'yes' or 'no', not {self.bars_split_adjusted!r}")
        if self.bars_split_adjusted == "auto":
            return corporate_actions_kind != "none"
        return self.bars_split_adjusted == "no"

    @property
    def halt_on_missing_session(self) -> bool:
        if self.on_missing_session not in ("outage", "halt"):
            raise ValueError(f"on_missing_session must be 'outage' or 'halt', not {self.on_missing_session!r}")
        return self.on_missing_session == "halt"

    def strategy_specs(self) -> tuple[StrategySpec, ...]:
        return parse_strategies([s.model_dump() for s in self.strategies])

    def entry_style(self):
        """How the trading book sends its orders (`live_book.EntryStyle`, validated)."""
        from trading_dagster.domain.live_book import EntryStyle

        return EntryStyle(self.order_type, Decimal(str(self.limit_offset_bps)), self.time_in_force)

    def traded_signals(self, signals: pl.DataFrame) -> pl.DataFrame:
        """The signals the strategies trade: a weekly strategy's on its week's scan session only."""
        from trading_dagster.domain.strategies import keep_cadence
        from trading_dagster.domain.trading_calendar import xnys_trading_calendar

        # the calendar (opens and closes from exchange_calendars, ~0.3 s to build) only when a weekly
        # strategy has signals to keep: keep_cadence asks nothing otherwise
        return keep_cadence(
            signals,
            self.strategy_specs(),
            lambda d: xnys_trading_calendar().scan_session("weekly", self.weekly_scan_day, d),
        )

    def universe_rule(self) -> UniverseRule:
        """The liquidity rule, validated (ValueError naming the field). Symbols are not part of it here: the
        market-data resource applies them where bars come in."""
        return UniverseRule(
            min_median_dollar_volume=self.min_median_dollar_volume, liquidity_window=self.liquidity_window
        )

    def risk_config(self) -> RiskConfig:
        """The limits as the planner's RiskConfig, validated by the one parser the settings use too."""
        from trading_dagster.domain.risk import risk_config_from_mapping

        keys = (
            "sizing", "notional", "pct_equity", "risk_pct_equity", "atr_multiple", "atr_period",
            "max_position_pct_equity", "max_gross_exposure_pct_equity", "max_orders_per_session",
            "max_notional_per_session", "max_daily_loss_pct_equity", "max_daily_loss_usd", "long_only",
            "monthly_share_limit", "min_price", "stop_loss_pct", "stop_loss_atr", "take_profit_pct",
            "take_profit_atr", "add_to_positions",
        )
        return risk_config_from_mapping({k: getattr(self, k) for k in keys}, initial_cash=self.initial_cash)
