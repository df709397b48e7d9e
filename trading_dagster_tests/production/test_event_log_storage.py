"""BatchedPostgresEventLogStorage (trading_dagster/event_log.py) records a planned check evaluation exactly as
dagster-postgres's stock PostgresEventLogStorage does, on a real PostgreSQL 15: the same event stored by each
storage in a database of its own gives the same asset_check_executions rows (every column but the row id, the
server's create timestamp and the event each row holds, which is ours without its partition subset) and reads
back as the same planned executions. Its `from_config_value` builds
the subclass, not the stock class the stock classmethod names. It keeps one connection per process (not one
per call, as the stock storage), never shares it with a forked child, and replaces one the server dropped."""

import multiprocessing
import os
import time
import uuid

import dagster as dg
import pytest
import sqlalchemy as db
from dagster import deserialize_value
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster_postgres import PostgresEventLogStorage

from trading_dagster.event_log import BatchedPostgresEventLogStorage, row_event
from trading_dagster.partitions import sessions_partitions_def
from trading_dagster_tests.dagster_events import engine_event, planned_check_entry
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
    """The same rows, but for the event each partition's row holds: ours drops the partition subset (the
    row's `partition` names its partition; `event_log.row_event`), which on our sessions' partitions
    definition is ~19 KB per row. Read back, the planned executions are the same."""
    cleaned = dg.AssetKey(["prices", "cleaned_prices"])
    sessions = sessions_partitions_def()
    events = [
        planned_check_entry(cleaned, "no_gaps", KEYS, partitions=sessions),
        planned_check_entry(cleaned, "unpartitioned", None),
    ]
    stock_url, ours_url = (create_database(pg_server, f"t_{uuid.uuid4().hex[:16]}") for _ in range(2))

    stock = _stored(PostgresEventLogStorage(stock_url), stock_url, events)
    ours_storage = BatchedPostgresEventLogStorage.from_config_value(None, {"postgres_url": ours_url})
    assert type(ours_storage) is BatchedPostgresEventLogStorage
    ours = _stored(ours_storage, ours_url, events)

    rows, history = ours
    assert len(rows) == len(KEYS) + 1
    assert [r[COMPARED.index(AssetCheckExecutionsTable.c.partition)] for r in rows] == [*KEYS, None]
    assert {r[COMPARED.index(AssetCheckExecutionsTable.c.execution_status)] for r in rows} == {"PLANNED"}
    event_column = COMPARED.index(AssetCheckExecutionsTable.c.evaluation_event)

    def without_event(stored):
        rows, history = stored
        return [r[:event_column] + r[event_column + 1 :] for r in rows], [h[:3] for h in history]

    assert without_event(ours) == without_event(stock)
    stock_events = [deserialize_value(r[event_column], dg.EventLogEntry) for r in stock[0]]
    ours_events = [deserialize_value(r[event_column], dg.EventLogEntry) for r in rows]
    assert ours_events == [row_event(e) for e in stock_events]
    # each planned execution reads back with its row's event
    assert [h[3] for h in history] == [ours_events[[*KEYS, None].index(h[0])] for h in history]
    for theirs, mine in zip(stock_events, ours_events, strict=True):
        assert (mine.run_id, mine.timestamp, mine.step_key, mine.dagster_event_type) == (
            theirs.run_id, theirs.timestamp, theirs.step_key, theirs.dagster_event_type
        )
    partitioned = [len(r[event_column]) for r in rows[: len(KEYS)]]
    assert max(partitioned) < 2_000 < 15_000 < min(len(r[event_column]) for r in stock[0][: len(KEYS)])
    assert all(e.dagster_event.event_specific_data.partitions_subset is None for e in ours_events)


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


# ---- one pooled connection per process (event_log.pooled_pg_engine) ----


def _backend_pid(storage) -> int:
    """The server process of the connection the storage hands out (PostgreSQL has one per connection)."""
    with storage._connect() as conn:
        return conn.execute(db.text("SELECT pg_backend_pid()")).scalar_one()


@pytest.fixture
def pooled(pg_server):
    storage = BatchedPostgresEventLogStorage(create_database(pg_server, f"t_{uuid.uuid4().hex[:16]}"))
    connects: list[int] = []
    db.event.listen(storage._engine, "connect", lambda *_: connects.append(os.getpid()))
    yield storage, connects
    storage.dispose()


def test_a_process_writes_every_event_on_one_connection(pooled):
    """The stock storage connects once per call (~180 a daily run: 5.26 -> 4.32 s with one connection,
    benchmarks/daily_startup.py --postgres); ours keeps one, in autocommit as the stock one's."""
    storage, connects = pooled
    server = _backend_pid(storage)
    for i in range(25):
        storage.store_event(engine_event("r", i))
    assert [e.dagster_event.message for e in storage.get_logs_for_run("r")] == [f"event {i}" for i in range(25)]
    assert _backend_pid(storage) == server
    assert connects == [os.getpid()]
    with storage._connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is True


def _in_child(storage, pipe) -> None:
    storage.store_event(engine_event("r", 1))
    pipe.send(_backend_pid(storage))
    storage.dispose()  # as a child's instance does at its end


def _dispose_in_child(storage, pipe) -> None:
    storage.dispose()  # before any use: the pool still holds the parent's connection
    pipe.send(0)


def test_a_forked_child_never_uses_its_parents_connection(pooled):
    """A child forked while the parent holds its pooled connection opens its own (two processes talking on
    one socket would read each other's answers), and disposing of its storage, before or after using it,
    leaves the parent's session open."""
    storage, connects = pooled
    storage.store_event(engine_event("r", 0))
    parent = _backend_pid(storage)
    ctx = multiprocessing.get_context("fork")
    answers = []
    for target in (_dispose_in_child, _in_child):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=target, args=(storage, send))
        child.start()
        child.join(60)
        if child.is_alive():  # hung: fail rather than leave it behind
            child.kill()
        assert child.exitcode == 0
        assert receive.poll(5)
        answers.append(receive.recv())
        assert _backend_pid(storage) == parent  # the parent's connection is still its own, and works
    assert answers[1] != parent
    storage.store_event(engine_event("r", 2))
    assert [e.dagster_event.message for e in storage.get_logs_for_run("r")] == ["event 0", "event 1", "event 2"]
    assert connects == [os.getpid()]  # the child's connect is counted in the child's copy of the list


def test_a_connection_the_server_dropped_is_replaced_before_an_event_is_written(pooled, pg_server):
    """A restart or an idle timeout ends the pooled connection; the next event's write pings, reconnects and
    succeeds instead of failing the run."""
    storage, connects = pooled
    storage.store_event(engine_event("r", 0))
    dropped = _backend_pid(storage)
    admin = db.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(db.text("SELECT pg_terminate_backend(:p)"), {"p": dropped}).scalar_one()
            for _ in range(100):  # the backend exits asynchronously
                gone = not conn.execute(
                    db.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": dropped}
                ).scalar_one()
                if gone:
                    break
                time.sleep(0.05)
            assert gone
    finally:
        admin.dispose()
    storage.store_event(engine_event("r", 1))
    assert [e.dagster_event.message for e in storage.get_logs_for_run("r")] == ["event 0", "event 1"]
    assert _backend_pid(storage) != dropped
    assert len(connects) == 2
