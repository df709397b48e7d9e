"""Settings: environment variables and the TOML config, read when the definitions load (never at import of
domain code). Every variable is listed in `.env.example`; secrets (AWS keys) are never read here, boto3's
own credential chain reads them, so they cannot leak into settings, logs or metadata.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trading_dagster.domain.universe import UniverseRule

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILE = REPO_ROOT / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
DEFAULT_CONFIG_FILE = REPO_ROOT / "trading_dagster.toml"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names the variable and what it expects."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    raw_store: str  # "local" | "s3"
    raw_root: Path  # local raw store root (same key layout as the bucket)
    s3_bucket: str | None
    s3_prefix: str
    s3_region: str | None
    s3_endpoint_url: str | None
    market_data: str  # "file" | "alpaca"
    market_data_file: Path
    corporate_actions_file: Path | None
    corporate_actions: str  # "none" | "file" | "alpaca"
    alpaca_feed: str
    alpaca_adjustment: str
    alpaca_data_url: str | None
    warehouse_path: Path
    quality_gate_path: Path
    broker: str  # "paper" (built in) | "alpaca"
    backtest_book_path: Path  # the backtest's simulated book (decision 0005, section 1)
    security_master: Path | None  # TRADING_DAGSTER_SECURITY_MASTER: LEAN map-file folder or CSV (decision 0004)
    config_file: Path
    config: Mapping[str, Any] = field(repr=False)
    security_master_source: str = "none"  # "none" | "file" (security_master above) | "alpaca" (Alpaca's assets)
    alpaca_trading_url: str | None = None  # TRADING_DAGSTER_ALPACA_TRADING_URL (default: the paper API)
    environment: str = "dev"  # TRADING_DAGSTER_ENV: "dev" | "paper" | "live" (decision 0005, section 2)
    live_trading: bool = False  # a live account, opted into (TRADING_DAGSTER_LIVE_TRADING) and checked
    paper_account_path: Path | None = None  # the built-in paper broker's account file
    trading_ledger_path: Path | None = None  # the append-only trading ledger / audit log (SQLite)
    trading: TradingSettings | None = None  # the TOML's trading sections, parsed once
    paper_clock: str | None = None  # TRADING_DAGSTER_PAPER_CLOCK: the built-in paper broker's fixed "now" (dev)
    secrets: str = "env"  # TRADING_DAGSTER_SECRETS: where the Alpaca keys come from, "env" | "ssm"
    ssm_path: str | None = None  # TRADING_DAGSTER_SSM_PATH (secrets = "ssm"): default /trading-dagster/<env>/


@dataclass(frozen=True)
class ExecutionSettings:
    """`[execution]`: how the trading book is driven (decision 0005, sections 4-5)."""

    kill_switch: bool = False  # true: no new entries (buys) from the config, whatever the ledger says
    approval_deadline: str = "15:30"  # New York time on D+1 after which unapproved orders expire
    submit_cutoff_minutes: int = 15  # no submission later than this before D+1's close
    weekly_scan_day: str = "friday"  # the scan session of strategies with cadence = "weekly"
    reconcile_every_minutes: int = 5  # how often the reconciliation sensor polls D's orders
    order_type: str = "market"  # "market" | "limit" (at the signal's close, limit_offset_bps away)
    limit_offset_bps: float = 0.0  # how far a limit may be from the close, against the trader
    time_in_force: str = "day"  # "day" | "gtc" | "cls" (orders with exit legs are GTC brackets)
    pnl_alert_below_usd: float | None = None  # alert when a session's P&L is below this (e.g. -500); None = off


@dataclass(frozen=True)
class BacktestSettings:
    """`[backtest]`: conventions of the simulated book only (decision 0006); the trading book never reads them.
    The defaults are this project's own conventions; `size_on = "close"`, `round_cents = false`,
    `buying_power = "off"` with `[risk] add_to_positions = false` and no quota or cap is vectorbt's
    `Portfolio.from_signals` (trading_dagster_tests/reference)."""

    size_on: str = "close"  # "close": a buy's qty is fixed at the signal's close; "fill": at the fill price
    round_cents: bool = True  # fill prices to Alpaca's tick against the trader, commissions to the cent
    buying_power: str = "cash"  # "off": buys are not capped by cash (a reference run only)
    shares: str = "whole"  # "fractional": quantities to 1e-9 share, rounded down (Alpaca's fractional orders)


@dataclass(frozen=True)
class TradingSettings:
    """The TOML's trading sections, validated once when the settings load: everything the trading resources,
    jobs and commands need, so none of them reads the TOML again."""

    account: str
    initial_cash: float
    benchmark: str
    risk: Mapping[str, Any]
    costs: Mapping[str, Any]  # [costs] as `CostsConfig` fields: slippage and the commission model
    strategies: tuple[Mapping[str, Any], ...]
    universe: UniverseRule
    data: Mapping[str, str]
    execution: ExecutionSettings
    alerts: Mapping[str, Any]
    backtest: BacktestSettings = BacktestSettings()
    # strategy -> the promotion whose params are in `strategies` (research/promotion.py); and the strategies
    # whose latest promotion the configuration file has superseded, with why
    promoted: Mapping[str, Any] = field(default_factory=dict)
    promotions_superseded: Mapping[str, str] = field(default_factory=dict)


def promotions_file(data_dir: Path) -> Path:
    """The promotions journal (research/promotion.py): one line per promotion, append-only."""
    return data_dir / "research" / "promotions.jsonl"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("TRADING_DAGSTER_DATA_DIR", ".data")).expanduser().resolve()
    raw_store = env.get("TRADING_DAGSTER_RAW_STORE", "local").lower()
    if raw_store not in {"local", "s3"}:
        raise SettingsError(f"TRADING_DAGSTER_RAW_STORE must be 'local' or 's3', not {raw_store!r}")
    bucket = env.get("TRADING_DAGSTER_S3_BUCKET") or None
    if raw_store == "s3" and not bucket:
        raise SettingsError("TRADING_DAGSTER_RAW_STORE=s3 needs TRADING_DAGSTER_S3_BUCKET")
    secrets = secrets_source(env)
    environment, broker, live = trading_environment(env, secrets=secrets)
    config_file = Path(env.get("TRADING_DAGSTER_CONFIG", DEFAULT_CONFIG_FILE)).expanduser().resolve()
    config = read_config(config_file)
    market_data = env.get("TRADING_DAGSTER_MARKET_DATA", "file").lower()
    if market_data not in {"file", "alpaca"}:
        raise SettingsError(f"TRADING_DAGSTER_MARKET_DATA must be 'file' or 'alpaca', not {market_data!r}")
    if market_data == "alpaca" and not universe_symbols(config):
        raise SettingsError(
            f"TRADING_DAGSTER_MARKET_DATA=alpaca needs the symbols to fetch: [universe] symbols = [...] in {config_file}"
        )
    market_file = Path(env.get("TRADING_DAGSTER_MARKET_DATA_FILE", SAMPLE_FILE)).expanduser().resolve()
    corporate_actions, corporate_actions_file = corporate_actions_source(
        env, market_data=market_data, config=config, config_file=config_file
    )
    master_source, master_path = security_master_source(env, config=config, config_file=config_file)
    return Settings(
        secrets=secrets,
        ssm_path=ssm_path(env, environment) if secrets == "ssm" else None,
        data_dir=data_dir,
        raw_store=raw_store,
        raw_root=data_dir / "lake",
        s3_bucket=bucket,
        s3_prefix=env.get("TRADING_DAGSTER_S3_PREFIX", ""),
        s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        s3_endpoint_url=env.get("TRADING_DAGSTER_S3_ENDPOINT_URL") or None,
        market_data=market_data,
        market_data_file=market_file,
        corporate_actions_file=corporate_actions_file,
        corporate_actions=corporate_actions,
        alpaca_feed=env.get("TRADING_DAGSTER_ALPACA_FEED", "iex"),
        alpaca_adjustment=env.get("TRADING_DAGSTER_ALPACA_ADJUSTMENT", "split"),
        alpaca_data_url=env.get("TRADING_DAGSTER_ALPACA_DATA_URL") or None,
        warehouse_path=data_dir / "warehouse.duckdb",
        quality_gate_path=data_dir / "quality_gate.sqlite",
        broker=broker,
        backtest_book_path=data_dir / "backtest_book.duckdb",
        security_master=master_path,
        config_file=config_file,
        config=config,
        security_master_source=master_source,
        alpaca_trading_url=alpaca_trading_url(env),
        environment=environment,
        live_trading=live,
        paper_account_path=data_dir / "paper_account.sqlite",
        trading_ledger_path=data_dir / "trading_ledger.sqlite",
        trading=trading_settings(config, config_file, promotions_path=promotions_file(data_dir)),
        paper_clock=paper_clock(env, broker),
    )


def paper_clock(env: Mapping[str, str], broker: str) -> str | None:
    """TRADING_DAGSTER_PAPER_CLOCK: an ISO time with its offset at which the built-in paper broker's clock
    stands still (tests, and replaying the trading book on historical data in dev); only for that broker."""
    text = (env.get("TRADING_DAGSTER_PAPER_CLOCK") or "").strip()
    if not text:
        return None
    if broker != "paper":
        raise SettingsError("TRADING_DAGSTER_PAPER_CLOCK is for the built-in paper broker only: a real broker's clock is its own")
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise SettingsError(f"TRADING_DAGSTER_PAPER_CLOCK={text!r} must be an ISO time with an offset, e.g. 2017-06-02T14:00:00Z")
    return when.isoformat()


ENVIRONMENTS = ("dev", "paper", "live")
BROKERS = ("paper", "alpaca")
LIVE_TRADING_OPT_IN = "yes-i-understand"
LIVE_ALPACA_URL = "https://api.alpaca.markets"


SECRETS_SOURCES = ("env", "ssm")
SSM_PATH = re.compile(r"^/(?:[A-Za-z0-9_.-]+/)+$")


def secrets_source(env: Mapping[str, str]) -> str:
    """TRADING_DAGSTER_SECRETS: `env` (the default: the keys are environment variables read by dg.EnvVar) or
    `ssm` (the Alpaca resources read APCA_API_KEY_ID / APCA_API_SECRET_KEY from SSM Parameter Store at run
    time, under TRADING_DAGSTER_SSM_PATH: `resources/secrets.py`)."""
    source = (env.get("TRADING_DAGSTER_SECRETS") or "env").strip().lower()
    if source not in SECRETS_SOURCES:
        raise SettingsError(f"TRADING_DAGSTER_SECRETS must be one of {list(SECRETS_SOURCES)}, not {source!r}")
    return source


def ssm_path(env: Mapping[str, str], environment: str) -> str:
    """TRADING_DAGSTER_SSM_PATH: the parameter path prefix, `/trading-dagster/<environment>/` by default (one
    path per environment, so a paper deployment's IAM policy need not reach the live keys)."""
    text = (env.get("TRADING_DAGSTER_SSM_PATH") or f"/trading-dagster/{environment}/").strip()
    path = text if text.endswith("/") else text + "/"
    if not SSM_PATH.match(path):
        raise SettingsError(
            f"TRADING_DAGSTER_SSM_PATH={text!r} must be an absolute SSM path such as /trading-dagster/paper/"
        )
    return path


def trading_environment(env: Mapping[str, str], *, secrets: str = "env") -> tuple[str, str, bool]:
    """(environment, broker, live) from TRADING_DAGSTER_ENV, TRADING_DAGSTER_BROKER and the live opt-in.

    `dev` trades on the built-in paper broker, `paper` on Alpaca's paper API, `live` on Alpaca's live API,
    and only with `TRADING_DAGSTER_LIVE_TRADING=yes-i-understand` and `TRADING_DAGSTER_ALPACA_TRADING_URL`
    set to the live URL: keys alone never move real money. Outside `live`, the live URL is refused."""
    environment = (env.get("TRADING_DAGSTER_ENV") or "dev").strip().lower()
    if environment not in ENVIRONMENTS:
        raise SettingsError(f"TRADING_DAGSTER_ENV must be one of {list(ENVIRONMENTS)}, not {environment!r}")
    default_broker = "paper" if environment == "dev" else "alpaca"
    broker = (env.get("TRADING_DAGSTER_BROKER") or default_broker).strip().lower()
    if broker not in BROKERS:
        raise SettingsError(f"TRADING_DAGSTER_BROKER must be one of {list(BROKERS)}, not {broker!r}")
    url = (env.get("TRADING_DAGSTER_ALPACA_TRADING_URL") or "").strip().rstrip("/")
    live_url = url == LIVE_ALPACA_URL
    if environment != "live":
        if live_url and broker == "alpaca":
            raise SettingsError(
                f"TRADING_DAGSTER_ALPACA_TRADING_URL is the live API ({LIVE_ALPACA_URL}) but TRADING_DAGSTER_ENV="
                f"{environment}: live trading needs TRADING_DAGSTER_ENV=live and "
                f"TRADING_DAGSTER_LIVE_TRADING={LIVE_TRADING_OPT_IN}"
            )
        if broker == "alpaca":
            _require_keys(env, "TRADING_DAGSTER_BROKER=alpaca", secrets)
        return environment, broker, False
    missing = []
    if broker != "alpaca":
        missing.append("TRADING_DAGSTER_BROKER=alpaca (the built-in paper broker has no real account)")
    if (env.get("TRADING_DAGSTER_LIVE_TRADING") or "").strip() != LIVE_TRADING_OPT_IN:
        missing.append(f"TRADING_DAGSTER_LIVE_TRADING={LIVE_TRADING_OPT_IN}")
    if not live_url:
        missing.append(f"TRADING_DAGSTER_ALPACA_TRADING_URL={LIVE_ALPACA_URL}")
    if missing:
        raise SettingsError("live trading refused (TRADING_DAGSTER_ENV=live): set " + " and ".join(missing))
    _require_keys(env, "live trading", secrets)
    return environment, broker, True


def _require_keys(env: Mapping[str, str], what: str, secrets: str = "env") -> None:
    """Presence only: the values are read by dg.EnvVar when a resource starts, never here. With
    TRADING_DAGSTER_SECRETS=ssm they are not in the environment: the resource reads them from SSM at run
    time, and a missing parameter fails there naming its path."""
    if secrets == "ssm":
        return
    missing = [name for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY") if not env.get(name)]
    if missing:
        raise SettingsError(f"{what} needs {' and '.join(missing)} in the environment")


ACCOUNT_KEYS = ("name", "initial_cash", "benchmark")
COSTS_KEYS = (
    "slippage_bps", "slippage_spread_fraction", "commission_per_share", "commission_per_order", "commission_bps",
    "commission_minimum", "commission_maximum_pct", "commission_preset",
)


def costs_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """`[costs]`: `slippage_bps`, `slippage_spread_fraction` (a number in [0, 1], default 0 = off: the fraction of
    each order's spread proxy added to the slippage, `execution.SlippageModel`) and the commission model, either
    `commission_preset` ("alpaca", "ibkr_fixed") or its parts (`commission_per_share`, `_per_order`, `_bps`,
    `_minimum`, `_maximum_pct`), never both; validated by building the model once."""
    from decimal import Decimal

    from trading_dagster.domain.execution import COMMISSION_PRESETS, CommissionModel

    out: dict[str, Any] = {"slippage_bps": _number("costs", "slippage_bps", section.get("slippage_bps", 5))}
    fraction = _number("costs", "slippage_spread_fraction", section.get("slippage_spread_fraction", 0))
    if fraction > 1:
        raise SettingsError(f"[costs] slippage_spread_fraction must be at most 1 (the whole spread), not {fraction!r}")
    out["slippage_spread_fraction"] = fraction
    parts = [k for k in section if k.startswith("commission_") and k != "commission_preset"]
    preset = section.get("commission_preset")
    if preset is not None:
        if parts:
            raise SettingsError(f"[costs] commission_preset = {preset!r} and {parts}: give one or the other")
        if preset not in COMMISSION_PRESETS:
            raise SettingsError(f"[costs] commission_preset must be one of {sorted(COMMISSION_PRESETS)}, not {preset!r}")
        model = CommissionModel.preset(preset)
    else:
        fields = {k.removeprefix("commission_"): section[k] for k in parts}
        for key, value in fields.items():
            if value is not None:
                _number("costs", f"commission_{key}", value)
        try:
            model = CommissionModel(**{k: Decimal(str(v)) if v is not None else None for k, v in fields.items()})
        except ValueError as exc:
            raise SettingsError(f"[costs] {exc}") from None
    out |= {
        "commission_per_share": float(model.per_share),
        "commission_per_order": float(model.per_order),
        "commission_bps": float(model.bps),
        "commission_minimum": float(model.minimum),
        "commission_maximum_pct": None if model.maximum_pct is None else float(model.maximum_pct),
    }
    return out
EXECUTION_KEYS = tuple(ExecutionSettings.__dataclass_fields__)
BACKTEST_KEYS = tuple(BacktestSettings.__dataclass_fields__)
SIZE_ON = ("close", "fill")


def backtest_settings(section: Mapping[str, Any]) -> BacktestSettings:
    """`[backtest]`, validated: a wrong value is a SettingsError naming the key and what it may be."""
    out = BacktestSettings(**section)
    if out.size_on not in SIZE_ON:
        raise SettingsError(f"[backtest] size_on must be one of {list(SIZE_ON)}, not {out.size_on!r}")
    if not isinstance(out.round_cents, bool):
        raise SettingsError(f"[backtest] round_cents must be true or false, not {out.round_cents!r}")
    if out.buying_power not in ("cash", "off"):
        raise SettingsError(f"[backtest] buying_power must be 'cash' or 'off', not {out.buying_power!r}")
    from trading_dagster.domain.quantity import SHARES

    if out.shares not in SHARES:
        raise SettingsError(f"[backtest] shares must be one of {list(SHARES)}, not {out.shares!r}")
    return out
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def _section(config: Mapping[str, Any], name: str, keys: tuple[str, ...] | None) -> Mapping[str, Any]:
    section = config.get(name, {})
    if not isinstance(section, Mapping):
        raise SettingsError(f"[{name}] must be a table")
    if keys is not None:
        unknown = sorted(set(section) - set(keys))
        if unknown:
            raise SettingsError(f"[{name}] has unknown keys {unknown}; expected some of {list(keys)}")
    return section


def _number(section: str, key: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise SettingsError(f"[{section}] {key} must be a number >= {minimum:g}, not {value!r}")
    return float(value)


def risk_settings(section: Mapping[str, Any], initial_cash: Any) -> dict[str, Any]:
    """`[risk]`, validated by the risk engine's own parser (`risk.risk_config_from_mapping`); "off" becomes
    None. An ATR (ATR sizing or an ATR exit) must fit the prices the trading assets read before a window:
    `atr_period` at most 15 (`assets.trading.require_atr_within_lookback`), or a one-day run and a range run
    would compute different ATRs."""
    from trading_dagster.domain.risk import OFF, risk_config_from_mapping

    try:
        risk = risk_config_from_mapping(section, initial_cash=initial_cash)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if risk.needs_atr:
        from trading_dagster.assets.trading import require_atr_within_lookback

        try:
            require_atr_within_lookback(risk)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    return {k: (None if isinstance(v, str) and v.strip().lower() == OFF else v) for k, v in section.items()}


def trading_settings(
    config: Mapping[str, Any], config_file: Path, *, promotions_path: Path | None = None
) -> TradingSettings:
    """[account], [risk], [costs], [[strategies]], [universe], [data], [execution] and [alerts], validated
    (a SettingsError naming the section and key; `config_file` is named for the strategies). The strategies
    are those of the file with the promotions of `promotions_path` laid over them (research/promotion.py)."""
    from trading_dagster.domain.strategies import parse_strategies
    from trading_dagster.research.promotion import PromotionError, apply_promotions, read_promotions

    account = _section(config, "account", ACCOUNT_KEYS)
    costs = _section(config, "costs", COSTS_KEYS)
    execution = _section(config, "execution", EXECUTION_KEYS)
    strategies = config.get("strategies", [])
    try:
        parse_strategies(strategies)
    except ValueError as exc:
        raise SettingsError(f"[[strategies]] in {config_file}: {exc}") from exc
    try:
        promotions = apply_promotions(strategies, read_promotions(promotions_path))
        parse_strategies(promotions.strategies)
    except (PromotionError, ValueError) as exc:
        raise SettingsError(f"promotions journal {promotions_path}: {exc}") from exc
    exec_settings = ExecutionSettings(**execution)
    if not isinstance(exec_settings.kill_switch, bool):
        raise SettingsError(f"[execution] kill_switch must be true or false, not {exec_settings.kill_switch!r}")
    try:
        hh, mm = (int(x) for x in str(exec_settings.approval_deadline).split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60):
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"[execution] approval_deadline must be HH:MM New York time, not {exec_settings.approval_deadline!r}"
        ) from None
    if str(exec_settings.weekly_scan_day).lower() not in WEEKDAYS:
        raise SettingsError(f"[execution] weekly_scan_day must be one of {list(WEEKDAYS)}")
    from trading_dagster.domain.live_book import EntryStyle

    try:
        EntryStyle(exec_settings.order_type, exec_settings.limit_offset_bps, exec_settings.time_in_force)
    except (ValueError, ArithmeticError) as exc:
        raise SettingsError(f"[execution] {exc}") from None
    threshold = exec_settings.pnl_alert_below_usd
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold >= 0):
        raise SettingsError(f"[execution] pnl_alert_below_usd must be a negative amount (e.g. -500), not {threshold!r}")
    for key in ("submit_cutoff_minutes", "reconcile_every_minutes"):
        value = getattr(exec_settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 390:
            raise SettingsError(f"[execution] {key} must be whole minutes from 0 to 390, not {value!r}")
    return TradingSettings(
        account=str(account.get("name", "paper")),
        initial_cash=_number("account", "initial_cash", account.get("initial_cash", 100_000)),
        benchmark=str(account.get("benchmark", "SPY")),
        risk=risk_settings(_section(config, "risk", None), account.get("initial_cash", 100_000)),
        costs=costs_settings(costs),
        strategies=promotions.strategies,
        universe=universe_rule(config),
        data=data_policy(config),
        execution=exec_settings,
        alerts=dict(_section(config, "alerts", None)),
        backtest=backtest_settings(_section(config, "backtest", BACKTEST_KEYS)),
        promoted=promotions.applied,
        promotions_superseded=promotions.superseded,
    )


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    """An optional path setting; one that is set must exist (a typo must not silently switch a feature off)."""
    text = (env.get(name) or "").strip()
    if not text:
        return None
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise SettingsError(f"{name}={text}: {path} does not exist")
    return path


def security_master_source(
    env: Mapping[str, str], *, config: Mapping[str, Any], config_file: Path
) -> tuple[str, Path | None]:
    """TRADING_DAGSTER_SECURITY_MASTER: unset -> `none`; `alpaca` -> Alpaca's asset list, which needs the
    universe (`[universe] symbols`: the assets recorded) and both APCA keys in the environment (checked for
    presence only: their values are read by dg.EnvVar when the resource starts, never here); anything else is
    a LEAN map-file folder or a CSV that must exist (a path literally named `alpaca` is written `./alpaca`)."""
    text = (env.get("TRADING_DAGSTER_SECURITY_MASTER") or "").strip()
    if not text:
        return "none", None
    if text.lower() != "alpaca":
        return "file", _optional_path(env, "TRADING_DAGSTER_SECURITY_MASTER")
    if not universe_symbols(config):
        raise SettingsError(
            "TRADING_DAGSTER_SECURITY_MASTER=alpaca needs the symbols whose assets to record: "
            f"[universe] symbols = [...] in {config_file}"
        )
    missing = [name for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY") if not env.get(name)]
    if missing and secrets_source(env) != "ssm":  # with ssm the keys are read from Parameter Store at run time
        raise SettingsError(f"TRADING_DAGSTER_SECURITY_MASTER=alpaca needs {' and '.join(missing)} in the environment")
    return "alpaca", None


def alpaca_trading_url(env: Mapping[str, str]) -> str | None:
    """TRADING_DAGSTER_ALPACA_TRADING_URL: the trading API's host root (`http(s)://host[:port]`, no `/v2`:
    alpaca-py adds it); unset -> None (the paper API, https://paper-api.alpaca.markets)."""
    text = (env.get("TRADING_DAGSTER_ALPACA_TRADING_URL") or "").strip()
    if not text:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise SettingsError(
            f"TRADING_DAGSTER_ALPACA_TRADING_URL={text!r} must be a host root such as https://api.alpaca.markets "
            "(no path: alpaca-py adds /v2)"
        )
    return text.rstrip("/")


CORPORATE_ACTIONS_SOURCES = ("none", "file", "alpaca")
# Alpaca bar adjustments that already apply splits: split actions on top of them would adjust twice.
SPLIT_ADJUSTED_ALPACA_BARS = ("split", "all")


def corporate_actions_source(
    env: Mapping[str, str],
    *,
    market_data: str,
    config: Mapping[str, Any],
    config_file: Path,
) -> tuple[str, Path | None]:
    """TRADING_DAGSTER_CORPORATE_ACTIONS (`none`, `file` or `alpaca`; unset: `file` when
    TRADING_DAGSTER_CORPORATE_ACTIONS_FILE is set, else `none`) and the file, validated.

    Splits describe bars that are NOT split-adjusted. Alpaca's bars are, unless
    TRADING_DAGSTER_ALPACA_ADJUSTMENT is `raw` (or `dividend`, which adjusts dividends only): actions on top
    of them would adjust every split twice (a quarantined "unexplained split" on each ex-date, indicators
    divided by the ratio once more), so that combination is refused. Bars from a file (the market-data file,
    an `import`, a landing drop) cannot be checked here: the shipped sample is split-adjusted, a user's
    export may not be; that is the user's call, as it always was for the corporate-actions file.
    """
    file_text = env.get("TRADING_DAGSTER_CORPORATE_ACTIONS_FILE") or None
    path = Path(file_text).expanduser().resolve() if file_text else None
    kind = (env.get("TRADING_DAGSTER_CORPORATE_ACTIONS") or ("file" if path else "none")).strip().lower()
    if kind not in CORPORATE_ACTIONS_SOURCES:
        raise SettingsError(
            f"TRADING_DAGSTER_CORPORATE_ACTIONS must be 'none', 'file' or 'alpaca', not {kind!r}"
        )
    if kind == "file" and path is None:
        raise SettingsError(
            "TRADING_DAGSTER_CORPORATE_ACTIONS=file needs TRADING_DAGSTER_CORPORATE_ACTIONS_FILE"
        )
    if kind != "file" and path is not None:
        raise SettingsError(
            f"TRADING_DAGSTER_CORPORATE_ACTIONS={kind} but TRADING_DAGSTER_CORPORATE_ACTIONS_FILE is set too: "
            "unset the file, or set TRADING_DAGSTER_CORPORATE_ACTIONS=file"
        )
    if kind == "none":
        return kind, None
    if kind == "alpaca" and not universe_symbols(config):
        raise SettingsError(
            f"TRADING_DAGSTER_CORPORATE_ACTIONS=alpaca needs the symbols whose splits to fetch: "
            f"[universe] symbols = [...] in {config_file}"
        )
    adjustment = env.get("TRADING_DAGSTER_ALPACA_ADJUSTMENT", "split").strip().lower()
    if market_data == "alpaca" and adjustment in SPLIT_ADJUSTED_ALPACA_BARS:
        raise SettingsError(
            f"TRADING_DAGSTER_CORPORATE_ACTIONS={kind} with Alpaca bars adjusted for splits "
            f"(TRADING_DAGSTER_ALPACA_ADJUSTMENT={adjustment}) would adjust every split twice: set "
            "TRADING_DAGSTER_ALPACA_ADJUSTMENT=raw to apply the splits here, or "
            "TRADING_DAGSTER_CORPORATE_ACTIONS=none to keep Alpaca's adjusted bars"
        )
    return kind, path


def read_config(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        raise SettingsError(f"config file {path} does not exist (set TRADING_DAGSTER_CONFIG or create it)")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path} is not valid TOML: {e}") from e


def universe_symbols(config: Mapping[str, Any]) -> list[str]:
    """`[universe] symbols` of the config, upper-cased and de-duplicated in order ([] when absent)."""
    symbols = config.get("universe", {}).get("symbols", [])
    if isinstance(symbols, str) or not all(isinstance(s, str) for s in symbols):
        raise SettingsError("[universe] symbols must be a list of tickers, e.g. symbols = [\"SPY\", \"AAPL\"]")
    return list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))


UNIVERSE_KEYS = ("symbols", "min_median_dollar_volume", "liquidity_window")


def universe_rule(config: Mapping[str, Any]) -> UniverseRule:
    """`[universe]` of the config as a validated `UniverseRule`: the symbols (`universe_symbols`) and the
    liquidity rule, `min_median_dollar_volume` (USD, default 0 = off) over `liquidity_window` sessions
    (default 60, at most 252). An unknown key is an error: a misspelt rule must not silently turn it off."""
    section = config.get("universe", {})
    if not isinstance(section, Mapping):
        raise SettingsError(f"[universe] must be a table with some of {list(UNIVERSE_KEYS)}")
    unknown = sorted(set(section) - set(UNIVERSE_KEYS))
    if unknown:
        raise SettingsError(f"[universe] has unknown keys {unknown}; expected some of {list(UNIVERSE_KEYS)}")
    from trading_dagster.domain.universe import (  # polars: not at import
        DEFAULT_LIQUIDITY_WINDOW,
        UniverseRule,
    )

    try:  # UniverseRule validates the values (the launchpad's TradingConfigResource builds one too)
        return UniverseRule(
            symbols=tuple(universe_symbols(config)),
            min_median_dollar_volume=section.get("min_median_dollar_volume", 0),
            liquidity_window=section.get("liquidity_window", DEFAULT_LIQUIDITY_WINDOW),
        )
    except ValueError as exc:
        raise SettingsError(f"[universe] {exc}") from exc


DATA_KEYS = ("on_missing_session", "bars_split_adjusted")
ON_MISSING_SESSION = ("outage", "halt")
BARS_SPLIT_ADJUSTED = ("auto", "yes", "no")


def data_policy(config: Mapping[str, Any]) -> dict[str, str]:
    """`[data]` of the config (decision 0004, sections 2 and 4).

    `on_missing_session`: what a session the vendor delivered nothing for does: `"outage"` (the default:
    recorded, alerted, shown at WARN severity; the pipeline goes on, the symbols missing downstream) or
    `"halt"` (a blocking check failure, as before).

    `bars_split_adjusted`: whether the bars are split-adjusted by their vendor: `"yes"`, `"no"` or `"auto"`
    (the default: "no" when a corporate-actions source is configured, which is only for unadjusted bars,
    else "yes"). On unadjusted bars a confirmed break is a split the actions are missing, and the book
    follows it; on adjusted bars it cannot be a split (a crash that held at a split ratio, or a vendor
    fault), and the book must not multiply held shares on it: it is alerted and holds new buys only."""
    section = config.get("data", {})
    if not isinstance(section, Mapping):
        raise SettingsError(f"[data] must be a table with some of {list(DATA_KEYS)}")
    unknown = sorted(set(section) - set(DATA_KEYS))
    if unknown:
        raise SettingsError(f"[data] has unknown keys {unknown}; expected some of {list(DATA_KEYS)}")
    mode = section.get("on_missing_session", "outage")
    if mode not in ON_MISSING_SESSION:
        raise SettingsError(f"[data] on_missing_session must be one of {list(ON_MISSING_SESSION)}, not {mode!r}")
    adjusted = section.get("bars_split_adjusted", "auto")
    if isinstance(adjusted, bool):
        adjusted = "yes" if adjusted else "no"
    if adjusted not in BARS_SPLIT_ADJUSTED:
        raise SettingsError(
            f"[data] bars_split_adjusted must be one of {list(BARS_SPLIT_ADJUSTED)} (or true/false), not {adjusted!r}"
        )
    return {"on_missing_session": mode, "bars_split_adjusted": adjusted}
