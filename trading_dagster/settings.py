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
from typing import Any

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
    alpaca_feed: str
    alpaca_adjustment: str
    alpaca_data_url: str | None
    warehouse_path: Path
    quality_gate_path: Path
    broker: str  # "paper"
    broker_ledger_path: Path
    config_file: Path
    config: Mapping[str, Any] = field(repr=False)


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
        corporate_actions_file=(
            Path(env["TRADING_DAGSTER_CORPORATE_ACTIONS_FILE"]).expanduser().resolve()
            if env.get("TRADING_DAGSTER_CORPORATE_ACTIONS_FILE")
            else None
        ),
        alpaca_feed=env.get("TRADING_DAGSTER_ALPACA_FEED", "iex"),
        alpaca_adjustment=env.get("TRADING_DAGSTER_ALPACA_ADJUSTMENT", "split"),
        alpaca_data_url=env.get("TRADING_DAGSTER_ALPACA_DATA_URL") or None,
        warehouse_path=data_dir / "warehouse.duckdb",
        quality_gate_path=data_dir / "quality_gate.sqlite",
        broker=broker,
        broker_ledger_path=data_dir / "paper_broker.duckdb",
        config_file=config_file,
        config=config,
    )


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
