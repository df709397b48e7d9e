"""Raw partitions filled from Alpaca's market-data API: settings -> definitions -> raw_prices -> raw store.

The Alpaca-compatible server of trading_dagster_tests/fakes serves the shipped sample on 127.0.0.1; the
keys come from the environment through dg.EnvVar and must not appear anywhere in the run's event log.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.resources.raw_store import LocalRawStore
from trading_dagster.settings import SettingsError
from trading_dagster_tests.fakes import alpaca_server as fake_alpaca
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY
from trading_dagster_tests.integration.conftest import make_settings

alpaca_server = fake_alpaca.alpaca_server

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
UNIVERSE = ["AAPL", "MSFT", "SPY", "KO"]
SESSIONS = ["2017-11-06", "2017-11-10"]


def _config(tmp_path: Path, symbols: list[str]) -> Path:
    base = (Path(__file__).parents[2] / "trading_dagster.toml").read_text()
    path = tmp_path / "alpaca.toml"
    path.write_text(base + "\n[universe]\nsymbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]\n")
    return path


def test_raw_partitions_come_from_alpaca_and_the_keys_never_reach_the_event_log(tmp_path, alpaca_server, monkeypatch):
    sample = pl.read_parquet(SAMPLE).filter(pl.col("date") >= dt.date(2017, 10, 1))
    alpaca_server.set_bars(sample)
    monkeypatch.setenv("APCA_API_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", TEST_SECRET_KEY)
    settings = make_settings(
        tmp_path / "data",
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_DATA_URL=alpaca_server.url,
        TRADING_DAGSTER_CONFIG=str(_config(tmp_path, UNIVERSE)),
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("pipeline_job").execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["raw", "raw_prices"])],
        tags={"dagster/asset_partition_range_start": SESSIONS[0], "dagster/asset_partition_range_end": SESSIONS[1]},
    )
    assert result.success

    stored = LocalRawStore(settings.raw_root).read_sessions(
        [dt.date.fromisoformat(d) for d in ("2017-11-06", "2017-11-07", "2017-11-08", "2017-11-09", "2017-11-10")]
    )
    expected = (
        sample.filter(pl.col("ticker").is_in(UNIVERSE) & pl.col("date").is_between(dt.date(2017, 11, 6), dt.date(2017, 11, 10)))
        .select(pl.col("ticker").alias("symbol"), "date", "open", "high", "low", "close", "volume")
        .sort("date", "symbol")
    )
    assert stored.sort("date", "symbol").select(expected.columns).equals(expected)
    assert {r.path for r in alpaca_server.requests} >= {"/v2/stocks/bars"}

    logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
    assert TEST_SECRET_KEY not in logged and TEST_KEY_ID not in logged


def test_alpaca_without_a_universe_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match=r"\[universe\] symbols"):
        make_settings(tmp_path, TRADING_DAGSTER_MARKET_DATA="alpaca")


def test_alpaca_without_keys_fails_the_run_with_a_clear_error(tmp_path, alpaca_server, monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    settings = make_settings(
        tmp_path / "data",
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_DATA_URL=alpaca_server.url,
        TRADING_DAGSTER_CONFIG=str(_config(tmp_path, UNIVERSE)),
    )
    job = build_definitions(settings).resolve_job_def("pipeline_job")
    with pytest.raises(Exception, match="APCA_API_KEY_ID"):
        job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            asset_selection=[dg.AssetKey(["raw", "raw_prices"])],
            partition_key=SESSIONS[1],
        )
