"""The Alpaca security master through the whole pipeline: settings -> definitions -> indicators, orders,
executions and P&L, after the warm history, with the Alpaca-compatible server of trading_dagster_tests/fakes
listing the sample's 42 symbols (each one active asset).

A run ending on the latest completed session (the resource's clock is set to that evening) records one
snapshot with one request although four assets read the master; its first snapshot gives open intervals, so
every table equals the same run without a master. A later run of a past window asks Alpaca nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.security_master import read_asset_snapshots
from trading_dagster.resources import security_master as sm
from trading_dagster.resources.security_master import ALPACA_SNAPSHOT_FILE
from trading_dagster.settings import DEFAULT_CONFIG_FILE, SAMPLE_FILE
from trading_dagster_tests.fakes import alpaca_server as fake_alpaca
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY
from trading_dagster_tests.integration.conftest import make_settings, read_table

alpaca_server = fake_alpaca.alpaca_server

NY = ZoneInfo("America/New_York")
TABLES = ["indicators.indicators", "trading.orders", "trading.executions", "pnl.equity", "pnl.positions"]


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, start: dt.date, end: dt.date):
    return defs.resolve_job_def("pipeline_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()},
    )


def test_the_alpaca_master_runs_the_pipeline_and_records_once(warm_copy, tmp_path, alpaca_server, monkeypatch):
    settings, sessions = warm_copy
    window = sessions[:5]
    symbols = sorted(pl.read_parquet(SAMPLE_FILE, columns=["ticker"])["ticker"].unique())
    config = tmp_path / "universe.toml"
    config.write_text(
        DEFAULT_CONFIG_FILE.read_text() + "\n[universe]\nsymbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]\n"
    )
    ids = {s: str(uuid.uuid5(uuid.NAMESPACE_URL, f"asset/{s}")) for s in symbols}
    alpaca_server.set_assets([{"symbol": s, "id": ids[s]} for s in symbols])
    monkeypatch.setenv("APCA_API_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setattr(sm, "_now", lambda: dt.datetime.combine(window[-1], dt.time(18, 30), NY))

    # the same data folder twice: without a master, and with Alpaca's
    plain_dir = tmp_path / "plain"
    shutil.copytree(settings.data_dir, plain_dir)
    plain = make_settings(plain_dir, TRADING_DAGSTER_CONFIG=str(config))
    assert _run(build_definitions(plain), dg.DagsterInstance.ephemeral(), window[0], window[-1]).success

    alpaca = make_settings(
        settings.data_dir,
        TRADING_DAGSTER_CONFIG=str(config),
        TRADING_DAGSTER_SECURITY_MASTER="alpaca",
        TRADING_DAGSTER_ALPACA_TRADING_URL=alpaca_server.url,
        APCA_API_KEY_ID=TEST_KEY_ID,
        APCA_API_SECRET_KEY=TEST_SECRET_KEY,
    )
    instance = dg.DagsterInstance.ephemeral()
    result = _run(build_definitions(alpaca), instance, window[0], window[-1])
    assert result.success
    assert len(alpaca_server.requests_to("/v2/assets")) == 1  # four assets read the master: one request
    snapshots, _ = read_asset_snapshots(alpaca.data_dir / ALPACA_SNAPSHOT_FILE)
    assert [(s.session, len(s.assets)) for s in snapshots] == [(window[-1], len(symbols))]
    for table in TABLES:  # a first snapshot: every symbol one security, as without a master
        assert read_table(alpaca, table).equals(read_table(plain, table)), table
    logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
    assert TEST_SECRET_KEY not in logged and TEST_KEY_ID not in logged

    # a re-run of the first two sessions (a past window): the snapshot on file, nothing asked, nothing written
    before = (alpaca.data_dir / ALPACA_SNAPSHOT_FILE).read_bytes()
    alpaca_server.clear_log()
    assert _run(build_definitions(alpaca), dg.DagsterInstance.ephemeral(), window[0], window[1]).success
    assert alpaca_server.requests_to("/v2/assets") == []
    assert (alpaca.data_dir / ALPACA_SNAPSHOT_FILE).read_bytes() == before
