"""BatchedPostgresEventLogStorage (trading_dagster/event_log.py) records a planned check evaluation exactly as
dagster-postgres's stock PostgresEventLogStorage does, on a real PostgreSQL 15: the same event stored by each
storage in a database of its own gives the same asset_check_executions rows (every column but the row id and
the server's create timestamp) and reads back as the same planned executions. Its `from_config_value` builds
the subclass, not the stock class the stock classmethod names."""

import uuid

import dagster as dg
import pytest
import sqlalchemy as db
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster_postgres import PostgresEventLogStorage

from trading_dagster.event_log import BatchedPostgresEventLogStorage
from trading_dagster_tests.dagster_events import planned_check_entry
from trading_dagster_tests.postgres import create_database

KEYS = ["2008-01-02", "2008-01-03", "2008-01-04", "2008-01-07"]
COMPARED = [c for c in AssetCheckExecutionsTable.c if c.name not in ("id", "create_timestamp")]



def _stored(storage, url: str, events: list[dg.EventLogEntry]) -> tuple[list[tuple], list[tuple]]:
    try:
        for event in events:
            storage.store_event(event)
        history = [
            (r.partition, r.status.value, r.run_id, r.event)
            for check in ("no_gaps", "unpartitioned")
            for r in storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(["prices", "cleaned_prices"]), check), limit=100
            )
        ]
    finally:
        storage.dispose()
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(db.select(*COMPARED).order_by(AssetCheckExecutionsTable.c.id)).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows], sorted(history, key=lambda h: (h[0] or "", h[1]))


def test_planned_checks_are_stored_as_the_stock_storage_stores_them(pg_server):
    cleaned = dg.AssetKey(["prices", "cleaned_prices"])
    events = [planned_check_entry(cleaned, "no_gaps", KEYS), planned_check_entry(cleaned, "unpartitioned", None)]
    stock_url, ours_url = (create_database(pg_server, f"t_{uuid.uuid4().hex[:16]}") for _ in range(2))

    stock = _stored(PostgresEventLogStorage(stock_url), stock_url, events)
    ours_storage = BatchedPostgresEventLogStorage.from_config_value(None, {"postgres_url": ours_url})
    assert type(ours_storage) is BatchedPostgresEventLogStorage
    ours = _stored(ours_storage, ours_url, events)

    rows, history = ours
    assert len(rows) == len(KEYS) + 1
    assert [r[COMPARED.index(AssetCheckExecutionsTable.c.partition)] for r in rows] == [*KEYS, None]
    assert {r[COMPARED.index(AssetCheckExecutionsTable.c.execution_status)] for r in rows} == {"PLANNED"}
    assert ours == stock


@pytest.mark.parametrize(
    "config",
    [
        {"postgres_url": "postgresql://u@127.0.0.1:1/d"},
        {
            "postgres_db": {
                "hostname": "127.0.0.1",
                "port": 1,
                "username": "u",
                "password": "",
                "db_name": "d",
            }
        },
    ],
)
def test_from_config_value_passes_the_stock_arguments_to_the_subclass(config, monkeypatch):
    """No server needed: the constructor's arguments are what the stock from_config_value would pass."""
    built = {}
    monkeypatch.setattr(
        BatchedPostgresEventLogStorage, "__init__", lambda self, **kwargs: built.update(kwargs) or None
    )
    storage = BatchedPostgresEventLogStorage.from_config_value(
        None, {**config, "should_autocreate_tables": False}
    )
    assert type(storage) is BatchedPostgresEventLogStorage
    assert built["postgres_url"].endswith("@127.0.0.1:1/d") and built["should_autocreate_tables"] is False
    assert built["token_provider"] is None and built["inst_data"] is None
