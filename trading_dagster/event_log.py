"""Event-log storages: a SQLite one that writes a batch of asset events in one transaction, and both it and
the PostgreSQL one write a range run's planned checks in linear time.

Why (docs/decisions/0002-dagster-bookkeeping.md): a single-run backfill still records one materialization
event per asset per partition. Dagster's SQLite storages store every event on its own (a new engine, a
connection and a commit each, ~11 ms here), and they do not override `store_event_batch`, so
`DAGSTER_EVENT_BATCH_SIZE` changes nothing on SQLite. dagster-postgres does override it: one INSERT for the
batch's rows, then the asset-event tags of all of them and the asset row of the last one, in one index
transaction. This class does the same on the consolidated SQLite file, in ONE transaction (the event
table and the index tables live in the same database file there), so a ten-year backfill's ~25,000
materializations cost about a millisecond each instead of eleven.

Only batches of materializations or of observations take the fast path (as in dagster-postgres); every
other event and every other batch goes through the stock code. Dagster falls back to storing a failed
batch one event at a time, and the batch's transaction is atomic, so a failure cannot leave half a batch.
The stored rows are the ones the stock `store_event` writes (tested against it in
trading_dagster_tests/test_event_log.py).

Both this class and `BatchedPostgresEventLogStorage` (the production instance's event log on PostgreSQL,
deploy/dagster.yaml) replace Dagster's planned-check write, quadratic in a range run's partitions, by a
linear one (`LinearPlannedChecks`); trading_dagster_tests/production/test_event_log_storage.py compares its rows with
the stock PostgreSQL storage's. The PostgreSQL class is built on first access (module `__getattr__`), so
local runs do not import dagster-postgres.

Configured by the CLI's dagster.yaml (trading_dagster/cli.py), with `DAGSTER_EVENT_BATCH_SIZE` set by the
CLI. It relies on `SqlEventLogStorage`'s `_store_asset_event_tags` / `_store_asset_event`, the helpers
dagster-postgres calls for the same purpose; dagster is pinned (pyproject.toml). This is the one module of
ours that extends Dagster's private storage classes (decision 0002 says why it is kept: the measured gain);
trading_dagster_tests/test_dagster_internals.py names every private symbol and method it relies on and
fails, naming the Dagster version and what to do, on an upgrade that breaks one.
"""

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as db
from dagster import DagsterEventType, DagsterInvariantViolationError, EventLogEntry, serialize_value

# Dagster's private modules: only these, each checked by trading_dagster_tests/test_dagster_internals.py
# (the storage we extend, the two tables we write, a status value, the busy timeout the stock storage uses, and
# the copy function of Dagster's records; and, in _postgres_storage_class, dagster-postgres's two config helpers
# and its engine factory)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster_shared.record import replace
from sqlalchemy.pool import QueuePool

_FAST_PATH = ({DagsterEventType.ASSET_MATERIALIZATION}, {DagsterEventType.ASSET_OBSERVATION})


class LinearPlannedChecks:
    """Mixin for a `SqlEventLogStorage`: a `_store_asset_check_evaluation_planned` linear in the partitions.

    The stock method writes one row per planned partition and serializes the whole event again for every
    row, and the event carries the run's partition subset: quadratic in the window (a ten-year range run's
    creation: 12 checks x 2,485 partitions, ~100 s on SQLite and ~177 s on PostgreSQL, benchmarks/README.md).
    Here the same rows, the event serialized once, in one executemany (one compiled statement: a 2,485-row
    VALUES list took ~1 s per check to compile on SQLite). Shared by both storages below; each brings its
    own `index_connection` and `_event_insert_timestamp` (naive UTC datetime on PostgreSQL)."""

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        rows = planned_check_rows(event, event_id, self._event_insert_timestamp(event))
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), rows)


def planned_check_rows(event: EventLogEntry, event_id: int | None, timestamp) -> list[dict]:
    """The asset_check_executions rows of a planned check evaluation: one per planned partition (one row
    with partition None for an unpartitioned check), each holding the event serialized once: without its
    partition subset (`row_event`)."""
    planned = event.get_dagster_event().event_specific_data
    partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
    serialized = serialize_value(row_event(event))
    return [
        dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            partition=partition_key,
            run_id=event.run_id,
            execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialized,
            evaluation_event_timestamp=timestamp,
            evaluation_event_storage_id=event_id,
        )
        for partition_key in partition_keys
    ]


def row_event(event: EventLogEntry) -> EventLogEntry:
    """The planned check event a partition's row holds: the event without its partition subset (the row's
    `partition` column names the partition). The stock storage puts the whole event in every row, and the
    subset carries the partitions definition, whose NYSE closures serialize to ~19 KB: a ten-year range run
    wrote 59,640 copies, 1.19 GB of the SQLite event log (1.37 GB in all), and took 13.0 s of its creation on
    PostgreSQL. Dagster reads a planned row's event for its run id, step key, timestamp and type only (the
    check's history in the UI and the asset graph); the event log table keeps the whole event, once."""
    dagster_event = event.get_dagster_event()
    planned = dagster_event.event_specific_data
    if planned.partitions_subset is None:
        return event
    bare = replace(planned, partitions_subset=None)  # every other field kept
    return event._replace(dagster_event=dagster_event._replace(event_specific_data=bare))


class BatchedSqliteEventLogStorage(LinearPlannedChecks, ConsolidatedSqliteEventLogStorage):
    """`ConsolidatedSqliteEventLogStorage` plus a one-transaction `store_event_batch` (see the module doc)
    and a linear `_store_asset_check_evaluation_planned` (`LinearPlannedChecks`), on pooled connections
    (see `_connect`)."""

    _engine: tuple[int, db.engine.Engine] | None = None

    @contextmanager
    def _connect(self) -> Iterator[db.engine.Connection]:
        """The stock `_connect` builds a new engine and opens a new SQLite connection for every call, and
        closing the last connection to a WAL-mode file makes SQLite checkpoint the log and delete it, so
        every stored event paid for an engine, a connect, a checkpoint and an fsync: ~5 ms an event, ~150
        events in a daily run. Here one engine per process keeps two connections in a pool (a thread takes
        one at a time; a forked worker builds its own engine), each in `synchronous=NORMAL`: in WAL mode
        (Dagster creates the file in WAL) that is SQLite's recommended setting, where a commit does not
        wait for an fsync of the log. The file cannot be corrupted by a crash; a power loss can drop the
        last events (the run then shows as failed, and a re-run cannot duplicate an order: ids are
        deterministic). Measured by `benchmarks/event_write_probe.py --single` (README: ~4 ms -> ~0.3 ms
        an event; the pool alone gives ~1 ms, the fsync being the rest)."""
        pid = os.getpid()
        if self._engine is None or self._engine[0] != pid:
            engine = db.create_engine(  # what dagster._core.storage.sql.create_engine is
                self._conn_string,
                poolclass=QueuePool,
                pool_size=2,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _wal_normal_sync)
            self._engine = (pid, engine)
        with self._engine[1].connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine[1].dispose()  # closes the pooled connections
            self._engine = None
        super().dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        events = [e for e in events if not e.get_dagster_event().is_asset_failed_to_materialize]
        if not events:
            return
        types = {e.get_dagster_event().event_type for e in events}
        if types not in _FAST_PATH:
            super().store_event_batch(events)
            return
        with self._connect() as conn:  # one connection, one transaction (see `_connect`)
            # one compiled INSERT for the batch, ids back in the rows' order (SQLite >= 3.35 RETURNING)
            insert = SqlEventLogStorageTable.insert().returning(
                SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
            )
            event_ids = [row[0] for row in conn.execute(insert, [self._event_to_row(e) for e in events])]
            if any(event_id is None for event_id in event_ids):
                raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
            self._store_asset_event_tags(conn, events, event_ids)
            # the asset row keeps the latest event: one upsert per asset key, with its last event
            last = {e.dagster_event.asset_key: (e, i) for e, i in zip(events, event_ids, strict=True)}
            for event, event_id in last.values():
                self._store_asset_event(conn, event, event_id)


def _wal_normal_sync(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


@functools.cache
def _postgres_storage_class() -> type:
    """BatchedPostgresEventLogStorage, built on first use: importing dagster-postgres (and psycopg2) costs
    ~0.15 s, which every local process loading the SQLite storage above would otherwise pay."""
    from dagster_postgres import PostgresEventLogStorage
    from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

    class BatchedPostgresEventLogStorage(LinearPlannedChecks, PostgresEventLogStorage):
        """dagster-postgres's `PostgresEventLogStorage` with the linear planned-check write
        (`LinearPlannedChecks`), on a pooled connection: the production instance's event log
        (deploy/dagster.yaml). Its batches of materializations already take one INSERT there
        (dagster-postgres overrides store_event_batch).

        The stock storage opens a new PostgreSQL connection for every call (a NullPool engine, so that no
        connection is held per DagsterInstance): a TCP connect, authentication and a server backend
        process for each of a daily run's ~180 events and its reads. Here the process keeps one connection
        (`pooled_pg_engine`): a daily session on the production storages went 5.26 -> 4.32 s from the
        run worker's spawn to RUN_SUCCESS, the run itself 3.47 -> 2.75 s (`benchmarks/daily_startup.py
        --postgres`, medians of 5). The webserver still swaps in its own engine (`optimize_for_webserver`)."""

        def __init__(self, postgres_url, should_autocreate_tables=True, inst_data=None, token_provider=None):
            super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
            self._engine.dispose()  # the stock NullPool engine (it holds no connection)
            self._engine = pooled_pg_engine(create_pg_engine, postgres_url, token_provider)
            self._pid = os.getpid()

        def dispose(self) -> None:
            super().dispose()
            # closes the pooled connection (the engine opens a new one if used again); a forked child only
            # drops its copies: closing one would end the parent's session on the server
            self._engine.dispose(close=os.getpid() == self._pid)

        @classmethod
        def from_config_value(cls, inst_data, config_value):
            # the stock classmethod constructs `PostgresEventLogStorage(...)` by name, dropping the subclass;
            # the same arguments it passes, to `cls`
            return cls(
                inst_data=inst_data,
                postgres_url=pg_url_from_config(config_value),
                should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                token_provider=get_token_provider_from_config(config_value),
            )

    BatchedPostgresEventLogStorage.__module__ = __name__
    BatchedPostgresEventLogStorage.__qualname__ = "BatchedPostgresEventLogStorage"
    return BatchedPostgresEventLogStorage


def pooled_pg_engine(create_pg_engine, postgres_url: str, token_provider) -> db.engine.Engine:
    """An AUTOCOMMIT engine (as dagster-postgres's) that keeps one idle connection and opens up to 10 more
    while threads need them (closed when returned). Each checkout first pings the connection, so one the
    server dropped (a restart, an idle timeout of a proxy) is replaced instead of failing the event's
    write; connections older than an hour are replaced too. A forked child never uses its parent's
    connection (SQLAlchemy's recipe for pools across os.fork: a connection made in another process is
    discarded at checkout and a new one opened)."""
    engine = create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=3600,
    )
    db.event.listen(engine, "connect", _remember_pid)
    db.event.listen(engine, "checkout", _refuse_other_process)
    return engine


def _remember_pid(_dbapi_connection, record) -> None:
    record.info["pid"] = os.getpid()


def _refuse_other_process(_dbapi_connection, record, proxy) -> None:
    if record.info.get("pid") != os.getpid():
        # not ours to close: the parent still uses it. The pool then opens a new connection.
        record.dbapi_connection = proxy.dbapi_connection = None
        raise db.exc.DisconnectionError(
            f"connection made in process {record.info.get('pid')}, checked out in {os.getpid()}"
        )


def __getattr__(name: str):
    # `module: trading_dagster.event_log, class: BatchedPostgresEventLogStorage` in a dagster.yaml, or an import
    if name == "BatchedPostgresEventLogStorage":
        return _postgres_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
