"""Every private Dagster symbol our code relies on, and the shape and behaviour we rely on it having.

Dagster's `dagster._...` modules are not public API: a minor release may move, rename or reshape them without a
deprecation. We use them in two places only (decision 0002 says why, with the figures):

* trading_dagster/event_log.py extends the consolidated SQLite event-log storage (one transaction per batch of
  materializations, pooled connections, a linear planned-check write whose rows hold the planned event without
  its partition subset) and dagster-postgres's public PostgresEventLogStorage (the same planned-check write, a
  pooled engine from `create_pg_engine`, and a `from_config_value` that builds the subclass from two config
  helpers of `dagster_postgres.utils`, a module its package does not export);
* trading_dagster/resources/warehouse.py imports dagster-duckdb's `DuckDbClient` (a module its package does not
  export) and relies on the shape of the `TableSlice` and the type-handler methods dagster-duckdb hands it (inserts
  by name, the `where` input filter). It imports no `dagster._` module: the quality gate wraps the public
  IOManager that `DuckDBPolarsIOManager.create_io_manager` returns.

`test_no_unregistered_private_use` fails when any module of ours starts to use a private symbol not listed in
`PRIVATE` below; the other tests check each listed symbol: that it imports, that the methods we override or
call keep the parameters we pass, that the tables keep the columns we write, and that Dagster still calls our
overrides. A failure names the Dagster version, the symbol, our module that relies on it and what to do. They
do not repeat trading_dagster_tests/test_event_log.py, which compares the rows our storage and the stock one
store for the same run.
"""

import ast
import functools
import importlib
import inspect
import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from trading_dagster_tests.dagster_events import engine_event

PACKAGE = Path(__file__).resolve().parents[1] / "trading_dagster"
EVENT_LOG = "trading_dagster/event_log.py"
WAREHOUSE = "trading_dagster/resources/warehouse.py"
PINNED = "1.13.27"  # pyproject.toml

# (module, name) -> (our module that uses it, what to do when it breaks)
_STORAGE_TODO = (
    "switch the CLI's dagster.yaml (trading_dagster/cli.py, DAGSTER_YAML) back to the stock "
    "dagster._core.storage.event_log.ConsolidatedSqliteEventLogStorage until event_log.py is ported to the new "
    "storage (DAGSTER_EVENT_BATCH_SIZE is then ignored on SQLite, harmlessly): local runs stay correct, their "
    "bookkeeping costs ~20-80 ms per partition-asset and per event again (decision 0002), or pin dagster back"
)
_PG_STORAGE_TODO = (
    "switch deploy/dagster.yaml and deploy/ecs/dagster.yaml's event_log_storage back to the stock "
    "dagster_postgres PostgresEventLogStorage until BatchedPostgresEventLogStorage in event_log.py is ported: "
    "production stays correct, a long range run's creation is quadratic in its partitions again (minutes for "
    "ten years, benchmarks/pg_run_creation.py), or pin dagster back"
)
_PG_POOL_TODO = (
    "make BatchedPostgresEventLogStorage.__init__ in event_log.py build its pooled engine the new way (or drop "
    "the pool: production stays correct, a daily run opens a PostgreSQL connection per event again, ~1 s more, "
    "benchmarks/daily_startup.py --postgres), or pin dagster back"
)
_ROW_EVENT_TODO = (
    "make event_log.row_event drop the planned event's partition subset the new way, or store the whole event "
    "(planned_check_rows: serialize_value(event)): production stays correct, a ten-year range run's creation "
    "takes ~10 s more on PostgreSQL and its SQLite event log ~1.2 GB more; or pin dagster back"
)
_WAREHOUSE_TODO = (
    "adapt WarehouseTypeHandler (handle_output / load_input, the `where` filter over the TableSlice) in "
    "warehouse.py to dagster-duckdb's new handler interface, or pin dagster back"
)
PRIVATE: dict[tuple[str, str], tuple[str, str]] = {
    ("dagster._core.storage.event_log", "ConsolidatedSqliteEventLogStorage"): (EVENT_LOG, _STORAGE_TODO),
    ("dagster._core.storage.event_log.schema", "SqlEventLogStorageTable"): (EVENT_LOG, _STORAGE_TODO),
    ("dagster._core.storage.event_log.schema", "AssetCheckExecutionsTable"): (EVENT_LOG, _STORAGE_TODO),
    ("dagster._core.storage.asset_check_execution_record", "AssetCheckExecutionRecordStatus"): (
        EVENT_LOG,
        _STORAGE_TODO,
    ),
    ("dagster._core.storage.sqlite", "SQLITE_BUSY_TIMEOUT_SECONDS"): (
        EVENT_LOG,
        "replace the import by our own constant (30 s was Dagster's)",
    ),
    # modules of dagster-postgres that its package does not export: from_config_value's helpers
    ("dagster_postgres.utils", "pg_url_from_config"): (EVENT_LOG, _PG_STORAGE_TODO),
    ("dagster_postgres.utils", "get_token_provider_from_config"): (EVENT_LOG, _PG_STORAGE_TODO),
    # ... and the engine factory the stock storage builds its (NullPool) engine with; ours is pooled
    ("dagster_postgres.utils", "create_pg_engine"): (EVENT_LOG, _PG_POOL_TODO),
    # not imported by event_log.py, but the shape of the planned check event its `row_event` copies (SHAPE_ONLY),
    # and the copy function of Dagster's records (dagster_shared.record, a module its package does not export)
    ("dagster._core.definitions.asset_checks.asset_check_evaluation", "AssetCheckEvaluationPlanned"): (
        EVENT_LOG,
        _ROW_EVENT_TODO,
    ),
    ("dagster_shared.record", "replace"): (EVENT_LOG, _ROW_EVENT_TODO),
    # not imported by warehouse.py, but the shapes of what dagster-duckdb hands its type handler (SHAPE_ONLY)
    ("dagster._core.storage.db_io_manager", "DbTypeHandler"): (WAREHOUSE, _WAREHOUSE_TODO),
    ("dagster._core.storage.db_io_manager", "TableSlice"): (WAREHOUSE, _WAREHOUSE_TODO),
    # a module of dagster-duckdb that its package does not export
    ("dagster_duckdb.io_manager", "DuckDbClient"): (WAREHOUSE, _WAREHOUSE_TODO),
}


# Entries our code relies on the shape of without importing them (dagster-duckdb passes them to our handler).
SHAPE_ONLY = {
    ("dagster._core.definitions.asset_checks.asset_check_evaluation", "AssetCheckEvaluationPlanned"),
    ("dagster._core.storage.db_io_manager", "DbTypeHandler"),
    ("dagster._core.storage.db_io_manager", "TableSlice"),
}


def broke(module: str, name: str, what: str) -> str:
    ours, todo = PRIVATE[(module, name)]
    return (
        f"Dagster {dg.__version__} (pinned {PINNED}) broke {module}.{name}: {what}. {ours} relies on it. "
        f"What to do: {todo}."
    )


def _private_uses(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every private Dagster symbol a module of ours imports or reads."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0].startswith("dagster")
        ):
            top, *rest = node.module.split(".")
            for alias in node.names:
                if node.module.startswith("dagster._") or (
                    rest
                    and alias.name not in dir(importlib.import_module(top))  # not exported by its package
                ):
                    found.add((node.module, alias.name))
        elif isinstance(node, ast.Import):
            found |= {(a.name, "*") for a in node.names if a.name.startswith("dagster._")}
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id == "context"
        ):
            found.add(("dagster.InputContext", node.attr))
    return found


@functools.cache
def _used() -> dict[tuple[str, str], set[str]]:
    uses: dict[tuple[str, str], set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for use in _private_uses(path):
            uses.setdefault(use, set()).add(str(path.relative_to(PACKAGE.parent)))
    return uses


def _require_used(module: str, name: str) -> None:
    ours = PRIVATE[(module, name)][0]
    if ours not in _used().get((module, name), set()):
        pytest.skip(f"{ours} no longer uses {module}.{name}: delete its entry and checks here")


def test_no_unregistered_private_use():
    unregistered = {use: files for use, files in _used().items() if use not in PRIVATE}
    assert not unregistered, (
        "private Dagster symbols used without an entry in trading_dagster_tests/test_dagster_internals.py "
        f"(docs/decisions/0002-dagster-bookkeeping.md: only where a measured gain needs them): {unregistered}. "
        "Use the public path, or register each with a check of what our module relies on."
    )


def test_the_scan_finds_private_imports_and_attributes(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import dagster._utils\n"
        "from dagster import AssetKey\n"
        "from dagster._core.storage.tags import PARTITION_NAME_TAG\n"
        "from dagster_duckdb.io_manager import DuckDbClient\n"
        "from dagster_duckdb.io_manager import DuckDBIOManager\n"
        "def f(context):\n    return context._step_execution_context, context.op_def\n"
    )
    assert _private_uses(module) == {
        ("dagster._utils", "*"),
        ("dagster._core.storage.tags", "PARTITION_NAME_TAG"),
        ("dagster_duckdb.io_manager", "DuckDbClient"),  # DuckDBIOManager is exported by dagster_duckdb
        ("dagster.InputContext", "_step_execution_context"),
    }


def test_private_uses_stay_in_their_two_modules():
    files = {f for files in _used().values() for f in files}
    assert files <= {EVENT_LOG, WAREHOUSE}, (
        f"private Dagster use outside event_log.py and warehouse.py: {files}"
    )


@pytest.mark.parametrize(("module", "name"), [k for k in PRIVATE if k[0] != "dagster.InputContext"])
def test_private_symbol_imports(module, name):
    if (module, name) not in SHAPE_ONLY:
        _require_used(module, name)
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        pytest.fail(broke(module, name, f"it no longer imports ({e})"))


# ---- trading_dagster/event_log.py ----

STORAGE = ("dagster._core.storage.event_log", "ConsolidatedSqliteEventLogStorage")


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize(
    ("method", "params", "how"),
    [
        ("__init__", ["self", "base_dir", "inst_data"], "dagster.yaml builds the storage with base_dir"),
        ("_connect", ["self"], "overridden: our pooled connection (a context manager in a transaction)"),
        ("index_connection", ["self"], "called by our planned-check write"),
        (
            "run_connection",
            ["self", "run_id"],
            "the stock store_event's connection, which must be _connect's",
        ),
        ("dispose", ["self"], "overridden: closes our pool, then the stock watcher"),
        ("store_event", ["self", "event"], "the stock path for every event outside a batch"),
        ("store_event_batch", ["self", "events"], "overridden: the one-transaction batch"),
        ("_event_to_row", ["self", "event"], "called: the event table's row of an event"),
        ("_store_asset_event_tags", ["self", "conn", "events", "event_ids"], "called with the batch's ids"),
        ("_store_asset_event", ["self", "conn", "event", "event_id"], "called: the asset row's latest event"),
        ("_event_insert_timestamp", ["self", "event"], "called: the planned rows' timestamp"),
        (
            "_store_asset_check_evaluation_planned",
            ["self", "event", "event_id"],
            "overridden: linear in partitions",
        ),
    ],
)
def test_storage_methods_keep_their_parameters(method, params, how):
    from trading_dagster.event_log import ConsolidatedSqliteEventLogStorage

    fn = getattr(ConsolidatedSqliteEventLogStorage, method, None)
    if fn is None:
        pytest.fail(broke(*STORAGE, f"it has no {method} ({how})"))
    if _params(fn) != params:
        pytest.fail(
            broke(*STORAGE, f"{method}{inspect.signature(fn)} where we rely on ({', '.join(params)}): {how}")
        )


def test_the_tables_keep_the_columns_we_write():
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable

    written = {
        "asset_key",
        "check_name",
        "partition",
        "run_id",
        "execution_status",
        "evaluation_event",
        "evaluation_event_timestamp",
        "evaluation_event_storage_id",
    }  # the planned rows of BatchedSqliteEventLogStorage._store_asset_check_evaluation_planned
    missing = written - set(AssetCheckExecutionsTable.c.keys())
    module = "dagster._core.storage.event_log.schema"
    assert not missing, broke(module, "AssetCheckExecutionsTable", f"columns {sorted(missing)} are gone")
    assert "id" in SqlEventLogStorageTable.c, broke(
        module, "SqlEventLogStorageTable", "no id column to RETURN"
    )


def test_planned_status_and_busy_timeout():
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

    module = "dagster._core.storage.asset_check_execution_record"
    assert AssetCheckExecutionRecordStatus.PLANNED.value == "PLANNED", broke(
        module, "AssetCheckExecutionRecordStatus", "PLANNED is not stored as 'PLANNED'"
    )
    assert isinstance(SQLITE_BUSY_TIMEOUT_SECONDS, int | float) and SQLITE_BUSY_TIMEOUT_SECONDS > 0, broke(
        "dagster._core.storage.sqlite",
        "SQLITE_BUSY_TIMEOUT_SECONDS",
        f"it is {SQLITE_BUSY_TIMEOUT_SECONDS!r}",
    )


def test_the_stock_store_event_connects_through_our_connect(tmp_path, monkeypatch):
    """Our pooled, synchronous=NORMAL connections only help if the stock store_event (a daily run's ~150
    events) gets every connection from `_connect`: no connection of its own."""
    import sqlalchemy as db

    from trading_dagster.event_log import BatchedSqliteEventLogStorage

    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        with storage._connect():  # builds our engine
            pass
        opened = []  # per connection: was it from our engine?
        connect = db.engine.Engine.connect

        def spy(engine):
            opened.append(engine is storage._engine[1])
            return connect(engine)

        monkeypatch.setattr(db.engine.Engine, "connect", spy)
        for i in range(3):
            storage.store_event(engine_event("r", i))
        assert opened and all(opened), broke(
            *STORAGE,
            f"store_event opened {opened.count(False)} of {len(opened)} connections outside _connect",
        )
        assert len(storage.get_logs_for_run("r")) == 3
    finally:
        storage.dispose()


def test_dagster_still_calls_our_planned_check_write(tmp_path, monkeypatch):
    """The stock store_event must route a planned check evaluation to `_store_asset_check_evaluation_planned`
    with (event, storage id), and the rows our override writes must read back as planned executions (else a
    ten-year run's creation is quadratic again: ~100 s, decision 0002)."""
    from trading_dagster.event_log import BatchedSqliteEventLogStorage
    from trading_dagster_tests.dagster_events import planned_check_entry

    calls = []
    original = BatchedSqliteEventLogStorage._store_asset_check_evaluation_planned
    monkeypatch.setattr(
        BatchedSqliteEventLogStorage,
        "_store_asset_check_evaluation_planned",
        lambda self, event, event_id: calls.append(event_id) or original(self, event, event_id),
    )
    keys = ["2024-01-02", "2024-01-03", "2024-01-04"]
    entry = planned_check_entry(dg.AssetKey("a"), "c", keys, run_id="r")
    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        storage.store_event(entry)
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("a"), "c"), limit=10)
    finally:
        storage.dispose()
    assert len(calls) == 1 and isinstance(calls[0], int), broke(
        *STORAGE,
        f"store_event called _store_asset_check_evaluation_planned with {calls}, not once with an id",
    )
    assert sorted((r.partition, r.status.value, r.run_id) for r in history) == [
        (k, "PLANNED", "r") for k in keys
    ], broke(*STORAGE, "the planned rows we write do not read back as planned executions")


def test_batches_reach_the_fast_path_and_the_insert_returns_ids(tmp_path):
    """The instance batches the event types of our fast path, `_event_to_row` gives only event-table columns,
    and SQLite returns the ids of a multi-row INSERT in order (RETURNING needs SQLite >= 3.35)."""
    import sqlalchemy as db
    from dagster._core.events import BATCH_WRITABLE_EVENTS
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

    from trading_dagster.event_log import _FAST_PATH, BatchedSqliteEventLogStorage

    fast = set().union(*_FAST_PATH)
    assert fast <= set(BATCH_WRITABLE_EVENTS), broke(
        *STORAGE, f"Dagster no longer batches {sorted(t.value for t in fast - set(BATCH_WRITABLE_EVENTS))}"
    )
    assert sqlite3.sqlite_version_info >= (3, 35), f"SQLite {sqlite3.sqlite_version} has no RETURNING (3.35+)"
    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        rows = [storage._event_to_row(engine_event("r", i)) for i in range(3)]
        extra = set().union(*rows) - set(SqlEventLogStorageTable.c.keys())
        assert not extra, broke(
            *STORAGE, f"_event_to_row gives columns the event table lacks: {sorted(extra)}"
        )
        insert = SqlEventLogStorageTable.insert().returning(
            SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
        )
        with storage._connect() as conn:
            ids = [r[0] for r in conn.execute(insert, rows)]
            stored = conn.execute(
                db.select(SqlEventLogStorageTable.c.id, SqlEventLogStorageTable.c.event).order_by("id")
            ).all()
        assert ids == [r[0] for r in stored] and len(ids) == 3
        assert [r[1] for r in stored] == [row["event"] for row in rows]
    finally:
        storage.dispose()


# ---- trading_dagster/event_log.py: BatchedPostgresEventLogStorage ----

PG_URL = ("dagster_postgres.utils", "pg_url_from_config")


@pytest.mark.parametrize(
    ("method", "params", "how"),
    [
        (
            "__init__",
            ["self", "postgres_url", "should_autocreate_tables", "inst_data", "token_provider"],
            "our from_config_value passes these by name",
        ),
        ("from_config_value", ["inst_data", "config_value"], "overridden: builds the subclass"),
        ("index_connection", ["self"], "called by our planned-check write"),
        ("_event_insert_timestamp", ["self", "event"], "called: the planned rows' timestamp"),
        (
            "_store_asset_check_evaluation_planned",
            ["self", "event", "event_id"],
            "overridden: linear in partitions",
        ),
    ],
)
def test_postgres_storage_methods_keep_their_parameters(method, params, how):
    from dagster_postgres import PostgresEventLogStorage

    fn = getattr(PostgresEventLogStorage, method, None)
    if fn is None:
        pytest.fail(broke(*PG_URL, f"PostgresEventLogStorage has no {method} ({how})"))
    if _params(fn) != params:
        pytest.fail(
            broke(
                *PG_URL,
                f"PostgresEventLogStorage.{method}{inspect.signature(fn)} where we rely on ({', '.join(params)}): "
                f"{how}",
            )
        )


def test_our_postgres_storage_overrides_what_the_stock_one_defines():
    """Our class is the stock one with two overrides: the planned-check write (which the stock store_event
    must still reach through store_asset_check_event) and from_config_value (which must still be the
    classmethod the instance calls); any other stock method would be inherited unchanged."""
    from dagster_postgres import PostgresEventLogStorage

    from trading_dagster.event_log import BatchedPostgresEventLogStorage, LinearPlannedChecks

    assert issubclass(BatchedPostgresEventLogStorage, PostgresEventLogStorage)
    assert (
        BatchedPostgresEventLogStorage._store_asset_check_evaluation_planned
        is LinearPlannedChecks._store_asset_check_evaluation_planned
    )
    source = inspect.getsource(PostgresEventLogStorage.store_event)
    assert "store_asset_check_event" in source, broke(
        *PG_URL, "PostgresEventLogStorage.store_event no longer calls store_asset_check_event"
    )
    stock = inspect.getsource(PostgresEventLogStorage.from_config_value)
    for helper in ("pg_url_from_config", "get_token_provider_from_config", "should_autocreate_tables"):
        assert helper in stock, broke(
            *PG_URL, f"PostgresEventLogStorage.from_config_value no longer uses {helper}: compare ours with it"
        )


def test_the_config_helpers_build_the_url_and_no_token_provider():
    from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

    config = {"postgres_db": {"hostname": "h", "port": 5432, "username": "u", "password": "p", "db_name": "d"}}
    url = pg_url_from_config(config)
    assert url.startswith("postgresql") and url.endswith("u:p@h:5432/d"), broke(*PG_URL, f"it gives {url!r}")
    assert pg_url_from_config({"postgres_url": "postgresql://x@h/d"}) == "postgresql://x@h/d"
    assert get_token_provider_from_config(config) is None, broke(
        "dagster_postgres.utils", "get_token_provider_from_config", "it gives a provider for a password config"
    )


PLANNED = ("dagster._core.definitions.asset_checks.asset_check_evaluation", "AssetCheckEvaluationPlanned")


def test_a_planned_rows_event_is_the_planned_event_without_its_subset():
    """`row_event` copies Dagster's planned check event with `dagster_shared.record.replace` and drops only
    the partition subset: a field Dagster adds is kept; a renamed subset field, or a copy function that
    changes, fails here first."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned

    from trading_dagster.event_log import row_event
    from trading_dagster_tests.dagster_events import planned_check_entry

    fields = list(AssetCheckEvaluationPlanned.__annotations__)
    assert {"asset_key", "check_name", "partitions_subset"} <= set(fields), broke(*PLANNED, f"its fields are {fields}")
    entry = planned_check_entry(dg.AssetKey("a"), "c", ["2024-01-02", "2024-01-03"], run_id="r")
    try:
        bare = row_event(entry)
    except (AttributeError, TypeError) as e:
        pytest.fail(broke(*PLANNED, f"row_event cannot copy it ({e})"))
    planned, kept = entry.dagster_event.event_specific_data, bare.dagster_event.event_specific_data
    assert type(kept) is type(planned) and kept.partitions_subset is None
    assert (kept.asset_key, kept.check_name) == (planned.asset_key, planned.check_name)
    assert bare._replace(dagster_event=None) == entry._replace(dagster_event=None)  # run id, time, level
    assert bare.dagster_event._replace(event_specific_data=None) == entry.dagster_event._replace(event_specific_data=None)
    assert row_event(planned_check_entry(dg.AssetKey("a"), "c", None)).dagster_event.event_specific_data == (
        AssetCheckEvaluationPlanned(asset_key=dg.AssetKey("a"), check_name="c")
    )


PG_POOL = ("dagster_postgres.utils", "create_pg_engine")


def test_the_postgres_storage_reaches_the_database_only_through_its_engine():
    """Our pooled engine only helps if the stock storage takes every connection from `self._engine`, which
    our __init__ replaces after the stock one built it; `create_pg_engine` must still take the URL, the
    token provider and SQLAlchemy's engine arguments. No server needed: the engine connects lazily."""
    from dagster_postgres import PostgresEventLogStorage
    from dagster_postgres.utils import create_pg_engine
    from sqlalchemy.pool import QueuePool

    from trading_dagster.event_log import BatchedPostgresEventLogStorage

    assert _params(create_pg_engine)[:2] == ["postgres_url", "token_provider"], broke(
        *PG_POOL, f"create_pg_engine{inspect.signature(create_pg_engine)}"
    )
    for method in ("_connect", "_gen_event_log_entry_from_cursor", "optimize_for_webserver"):
        source = inspect.getsource(getattr(PostgresEventLogStorage, method))
        assert "self._engine" in source, broke(
            *PG_POOL, f"PostgresEventLogStorage.{method} no longer uses self._engine"
        )
    storage = BatchedPostgresEventLogStorage("postgresql+psycopg2://u@127.0.0.1:1/d", should_autocreate_tables=False)
    try:
        assert isinstance(storage._engine.pool, QueuePool), broke(
            *PG_POOL, f"our storage's engine has a {type(storage._engine.pool).__name__}"
        )
        assert storage._engine.url.database == "d"
    finally:
        storage.dispose()


# ---- trading_dagster/resources/warehouse.py ----

DB_IO = "dagster._core.storage.db_io_manager"


def test_type_handler_methods_keep_their_parameters():
    """WarehouseTypeHandler overrides these two methods of the public DuckDBPolarsTypeHandler (with or
    without importing DbTypeHandler for its annotations)."""
    from dagster._core.storage.db_io_manager import DbTypeHandler
    from dagster_duckdb_polars import DuckDBPolarsTypeHandler

    from trading_dagster.resources.warehouse import WarehouseTypeHandler

    assert issubclass(WarehouseTypeHandler, DbTypeHandler) and issubclass(
        DuckDBPolarsTypeHandler, DbTypeHandler
    )
    for method, params in (
        ("handle_output", ["self", "context", "table_slice", "obj", "connection"]),
        ("load_input", ["self", "context", "table_slice", "connection"]),
    ):
        for cls in (DbTypeHandler, DuckDBPolarsTypeHandler):
            got = _params(getattr(cls, method))
            assert got == params, broke(DB_IO, "DbTypeHandler", f"{cls.__name__}.{method}({', '.join(got)})")


def test_table_slice_keeps_its_fields_and_the_select_statement():
    """The handler's `where` filter uses the TableSlice dagster-duckdb hands it (imported or not)."""
    from dagster._core.storage.db_io_manager import TableSlice
    from dagster_duckdb.io_manager import DuckDbClient

    fields = {"table", "schema", "database", "columns", "partition_dimensions"}
    assert fields <= set(getattr(TableSlice, "_fields", ())), broke(DB_IO, "TableSlice", "fields changed")
    table_slice = TableSlice(table="t", schema="s", database="d", columns=["a"], partition_dimensions=[])
    everything = table_slice._replace(columns=None)  # warehouse.load_input filters on every column
    assert everything.columns is None and everything.table == "t"
    statement = DuckDbClient.get_select_statement(everything)
    assert statement.strip().upper() == "SELECT * FROM S.T", broke(
        "dagster_duckdb.io_manager", "DuckDbClient", f"get_select_statement gives {statement!r}"
    )

