"""Settings: environment variables and the TOML config, read when the definitions load (never at import of
domain code). Every variable is listed in `.env.example`; secrets (AWS keys) are never read here, boto3's
own credential chain reads them, so they cannot leak into settings, logs or metadata.
"""

from __future__ import annotations

import os
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
    broker: str  # "paper"
    broker_ledger_path: Path
    security_master: Path | None  # TRADING_DAGSTER_SECURITY_MASTER: LEAN map-file folder or CSV (decision 0004)
    config_file: Path
    config: Mapping[str, Any] = field(repr=False)
    security_master_source: str = "none"  # "none" | "file" (security_master above) | "alpaca" (Alpaca's assets)
    alpaca_trading_url: str | None = None  # TRADING_DAGSTER_ALPACA_TRADING_URL (default: the paper API)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("TRADING_DAGSTER_DATA_DIR", ".data")).expanduser().resolve()
    raw_store = env.get("TRADING_DAGSTER_RAW_STORE", "local").lower()
    if raw_store not in {"local", "s3"}:
        raise SettingsError(f"TRADING_DAGSTER_RAW_STORE must be 'local' or 's3', not {raw_store!r}")
    bucket = env.get("TRADING_DAGSTER_S3_BUCKET") or None
    if raw_store == "s3" and not bucket:
        raise SettingsError("TRADING_DAGSTER_RAW_STORE=s3 needs TRADING_DAGSTER_S3_BUCKET")
    broker = env.get("TRADING_DAGSTER_BROKER", "paper").lower()
    if broker != "paper":
        raise SettingsError(
            f"TRADING_DAGSTER_BROKER={broker!r}: only the built-in 'paper' broker exists in this version"
        )
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
        broker_ledger_path=data_dir / "paper_broker.duckdb",
        security_master=master_path,
        config_file=config_file,
        config=config,
        security_master_source=master_source,
        alpaca_trading_url=alpaca_trading_url(env),
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
    if missing:
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
