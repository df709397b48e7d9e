"""The trading book on Alpaca's API (`TRADING_DAGSTER_ENV=paper`): the same execution assets as in
`test_execution_chain.py`, through alpaca-py's TradingClient against the local Alpaca-compatible server, whose
clock decides what "now" is. A whole session runs with known key values, and they are found nowhere: not in
the event log, not in the warehouse, the ledger, the audit log or the alerts file."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer
from trading_dagster_tests.fakes.alpaca_trading import AlpacaTradingFake
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

D = dt.date(2017, 6, 1)
EVENING_D = dt.datetime(2017, 6, 1, 22, 30, tzinfo=dt.UTC)
MORNING_D1 = dt.datetime(2017, 6, 2, 14, 0, tzinfo=dt.UTC)
LATER_D1 = dt.datetime(2017, 6, 2, 15, 0, tzinfo=dt.UTC)


@pytest.fixture
def alpaca(monkeypatch):
    server = AlpacaFakeServer().start()
    fake = AlpacaTradingFake(server, cash=Decimal(100_000))
    monkeypatch.setenv("APCA_API_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", TEST_SECRET_KEY)
    yield server, fake
    server.stop()
    assert not server.errors, server.errors


def test_a_session_on_alpaca_exactly_once_reconciled_and_no_secret_anywhere(warm_copy, alpaca):
    server, fake = alpaca
    settings, _ = warm_copy
    run_range(build_definitions(settings), D, D)
    closes = read_table(settings, "prices.cleaned_prices").filter(pl.col("session") == D)
    for symbol, close in closes.select("symbol", "close").iter_rows():
        fake.set_price(symbol, Decimal(repr(close)))
    paper = make_settings(
        settings.data_dir,
        TRADING_DAGSTER_ENV="paper",
        TRADING_DAGSTER_ALPACA_TRADING_URL=server.url,
        APCA_API_KEY_ID=TEST_KEY_ID,
        APCA_API_SECRET_KEY=TEST_SECRET_KEY,
    )
    assert paper.broker == "alpaca" and not paper.live_trading
    defs = build_definitions(paper)
    instance = dg.DagsterInstance.ephemeral()

    def run(job: str) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=D.isoformat())

    fake.set_now(EVENING_D)
    assert run("execution_orders_job").success
    approved = read_table(settings, "execution.orders").filter(pl.col("status") == "approved")
    assert approved.height > 0
    fake.set_now(MORNING_D1)
    assert run("execution_job").success
    assert run("execution_job").success  # a retried run: looked up, never sent twice
    for cid in approved["client_order_id"]:
        assert fake.orders_on_server(cid) == 1
    fake.set_now(LATER_D1)
    fake.work_orders()
    result = run("reconcile_job")
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "execution_fills__reconciled": True,
        "execution_fills__cash_matches": True,
    }
    fills = read_table(settings, "execution.fills")
    assert fills.height == approved.height and fills["final"].all()

    # the keys: nowhere in the run logs and events, the warehouse, the ledger, the audit log or the alerts
    texts = [str(record) for record in instance.all_logs(result.run_id)]
    for run_record in instance.get_run_records():
        texts += [str(r) for r in instance.all_logs(run_record.dagster_run.run_id)]
    blob = "\n".join(texts)
    assert TEST_SECRET_KEY not in blob and TEST_KEY_ID not in blob
    for path in [settings.warehouse_path, settings.trading_ledger_path, *settings.data_dir.rglob("*.log"),
                 *settings.data_dir.rglob("*.jsonl")]:
        data = path.read_bytes()
        assert TEST_SECRET_KEY.encode() not in data and TEST_KEY_ID.encode() not in data, path
    # and the request log never recorded the secret header (the fake drops it; the key id is sent)
    assert all(TEST_SECRET_KEY not in str(r) for r in server.requests)
