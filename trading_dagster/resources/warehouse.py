"""The DuckDB warehouse IO manager: dagster-duckdb-polars with two fixes that matter for a ledger.

1. The stock handler skips an empty DataFrame without creating its table, so a first run with no orders
   leaves no `trading.orders` table and the next stage's load fails. Here an empty frame still creates the
   (typed) table; the window's old rows are deleted either way, by the base class, before the write.
2. The stock insert is positional (`insert into t select * from df`): a column order that changes between
   versions would silently write prices into the wrong column. Here it inserts BY NAME, so a mismatch is an
   error that names the column.

An unpartitioned output replaces its table (schema included); a partitioned one evolves it (below).

And one addition: an input can ask for only the rows it needs with a `where` entry in its `AssetIn`
metadata (a SQL condition over the table's columns, combined with the partition window), next to the stock
`columns` entry. The executions step reads the ~60,000 approved orders of a ten-year window instead of
all ~2.2 M risk decisions, which mostly decides the backfill's peak memory.

Bulk IO: a frame is written one DuckDB row group per Arrow batch (`row_group_batches`); a partitioned input
comes back in the order its rows were written, also after a window was written again (`in_write_order`);
and an input typed `pl.LazyFrame` reads, when collected, only the columns selected (`lazy_table`).

Connections (`attached`): every load and write still holds the warehouse file only for its own length, as
dagster-duckdb does, but through an in-memory DuckDB instance kept by the process that ATTACHes the file
and DETACHes it afterwards, instead of a new database instance per call. Building an instance (DuckDB's catalog of
built-in functions) costs ~9 ms and a daily run makes about 25 loads and writes; an ATTACH costs ~1.5 ms
(benchmarks/daily_startup.py). The file lock is taken and released exactly as before, so other processes
(dbt, the portal, another run) see no difference, and a load or write that raises lets the file go too.
"""

import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import duckdb
import polars as pl
import pyarrow as pa
from dagster import (
    DagsterInvariantViolationError,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
    TimeWindow,
)
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_polars import DuckDBPolarsIOManager
from dagster_duckdb_polars.duckdb_polars_type_handler import DuckDBPolarsTypeHandler

from trading_dagster.resources.quality_gate import QualityGate


class WarehouseTypeHandler(DuckDBPolarsTypeHandler):
    def handle_output(self, context: OutputContext, table_slice, obj: pl.DataFrame | pl.LazyFrame, connection) -> None:
        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        obj_arrow = row_group_batches(obj.to_arrow())  # read by DuckDB's replacement scan below
        if obj.height >= LARGE_ROWS:
            let_go_after(connection)
        target = f"{table_slice.schema}.{table_slice.table}"
        connection.execute(f"create schema if not exists {table_slice.schema}")
        if not table_slice.partition_dimensions:
            # an unpartitioned asset's output is the whole table: replaced, its columns those of this output
            # (a walk-forward of RSI bounds leaves no empty fast / slow columns of an earlier SMA one)
            connection.execute(f"create or replace table {target} as select * from obj_arrow")
        else:
            connection.execute(f"create table if not exists {target} as select * from obj_arrow limit 0")
            _add_new_columns(connection, target, obj_arrow)
            if obj.height:
                connection.execute(f"insert into {target} by name select * from obj_arrow")
        metadata: dict = {"row_count": obj.height}
        columns = ", ".join(f"{n} {t}" for n, t in obj.schema.items())
        if partition_count(context) <= SCHEMA_MAX_PARTITIONS:
            metadata["dataframe_columns"] = MetadataValue.table_schema(
                TableSchema(columns=[TableColumn(name=n, type=str(t)) for n, t in obj.schema.items()])
            )
        else:  # once in the run's log instead of a copy on every partition's materialization
            context.log.info(f"{target}: {obj.height:,} rows written; columns {columns}")
        context.add_output_metadata(metadata)


    def load_input(self, context: InputContext, table_slice, connection) -> pl.DataFrame | pl.LazyFrame:
        lazy = context.dagster_type.typing_type is pl.LazyFrame
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.LazyFrame() if lazy else pl.DataFrame()
        select = select_statement(table_slice, (context.definition_metadata or {}).get("where"))
        order = session_column(table_slice)
        if lazy:
            schema = pl.DataFrame(connection.execute(f"SELECT * FROM ({select}) LIMIT 0").arrow()).schema
            return lazy_table(context.resource_config, select, schema, order)
        frame = in_write_order(pl.DataFrame(connection.execute(select).arrow()), order)
        if frame.height >= LARGE_ROWS:
            let_go_after(connection)
        return frame

    @property
    def supported_types(self):
        return [pl.DataFrame, pl.LazyFrame]


def select_statement(table_slice, where: str | None) -> str:
    """The input's SELECT: its partition window, its `columns`, and its `where` condition (filtered on every
    column, then projected: the condition may use a column the input does not keep)."""
    if where is None:
        return DuckDbClient.get_select_statement(table_slice=table_slice)
    rows = DuckDbClient.get_select_statement(table_slice=table_slice._replace(columns=None))
    columns = ", ".join(_quoted(c) for c in table_slice.columns) if table_slice.columns else "*"
    return f"SELECT {columns} FROM ({rows}) WHERE {where}"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def session_column(table_slice) -> str | None:
    """The column a time-partitioned table's rows are written by (its `partition_expr`), or None."""
    times = [d for d in table_slice.partition_dimensions if isinstance(d.partitions, TimeWindow)]
    return times[0].partition_expr if len(times) == 1 and len(table_slice.partition_dimensions) == 1 else None


def in_write_order(frame: pl.DataFrame, column: str | None) -> pl.DataFrame:
    """`frame` (rows of a partitioned table) in the order its writers wrote them: sessions ascending, each
    session's rows as its run wrote them (the (session, symbol) order most readers assume).

    DuckDB returns a table's rows in insertion order (`preserve_insertion_order`, on), which is that order
    until a window is written again: its rows are deleted in place and appended at the end. A session's
    rows are always written together, by one run, so a stable sort on the session restores the order; when
    the rows are in order already (every run that only appends), the check is one pass over a date column."""
    if column is None or column not in frame.columns or frame[column].is_sorted():
        return frame
    return frame.sort(column, maintain_order=True)


def lazy_table(resource_config: dict, select: str, schema: pl.Schema, order: str | None) -> pl.LazyFrame:
    """The input as a LazyFrame over the warehouse: collecting it reads only the columns the query keeps
    (`lazy.select(...)` is pushed down into the SQL), on a connection of its own opened as dagster-duckdb
    opens its own (`resource_config`: the IO manager's `database` and `connection_config`). For an asset that
    learns which columns it needs only at run time: the signals step keeps 9 of the 24 indicator columns,
    and loading all of them was the backfill's peak memory. The quality gate was passed when the input was
    loaded.

    Built on Polars' IO-plugin interface (`register_io_source`, marked unstable in Polars 2.1):
    `test_warehouse_io.py` fails if the projection no longer reaches the SQL."""
    from polars.io.plugins import register_io_source

    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None):
        names = list(schema) if with_columns is None else with_columns
        keep = names if order is None or order in names else [*names, order]
        sql = f"SELECT {', '.join(_quoted(c) for c in keep)} FROM ({select})"
        with WarehouseClient.connect(SimpleNamespace(resource_config=resource_config), None) as con:
            frame = in_write_order(pl.DataFrame(con.execute(sql).arrow()), order).select(names)
            if frame.height >= LARGE_ROWS:
                let_go_after(con)
        if predicate is not None:
            frame = frame.filter(predicate)
        yield frame if n_rows is None else frame.head(n_rows)

    return register_io_source(source, schema=schema)


ROW_GROUP_ROWS = 122_880
"""DuckDB's row group (its default ROW_GROUP_SIZE, 120 x 1,024 rows; the warehouse file is created with it)."""


def row_group_batches(table: pa.Table, rows: int = ROW_GROUP_ROWS) -> pa.Table:
    """`table` as record batches of exactly one DuckDB row group each (the last one shorter), in order.

    DuckDB inserts an Arrow scan in insertion order batch by batch, each batch a task that ends in finished
    row groups. A frame a domain function builds in one piece is ONE batch: one thread converts and
    compresses all of it, at about twice the CPU of the same rows in row-group batches. A frame of chunks
    whose lengths are not multiples of the row group (read from Parquet, concatenated per session) leaves a
    partial row group per batch, which DuckDB writes and then rewrites to merge: the file doubles and the
    checkpoint at close takes seconds. Batches of exactly one row group are converted in parallel and each is
    final, in the same order (figures: benchmarks/warehouse_io.py, benchmarks/README.md).

    Zero-copy slices, except a row group that spans two chunks of `table`, which is concatenated (at most
    one row group per chunk boundary)."""
    out: list[pa.RecordBatch] = []
    pending: list[pa.RecordBatch] = []  # the head of a row group that spans chunks
    have = 0
    for batch in table.to_batches():
        at = 0
        if pending:
            take = min(rows - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have, at = have + take, take
            if have < rows:
                continue
            out.append(pa.concat_batches(pending))
            pending, have = [], 0
        while batch.num_rows - at >= rows:
            out.append(batch.slice(at, rows))
            at += rows
        if at < batch.num_rows:
            pending, have = [batch.slice(at)], batch.num_rows - at
    if pending:
        out.append(pa.concat_batches(pending) if len(pending) > 1 else pending[0])
    return pa.Table.from_batches(out, schema=table.schema)


SCHEMA_MAX_PARTITIONS = 5
"""An output of more partitions than this (a range run) carries no `dataframe_columns` schema: Dagster gives
every partition of a range run its own copy of the output metadata and serializes each copy, and on a
ten-year backfill (2,485 partitions x 11 outputs) the schema alone was half the bytes of the run's event
log and half the CPU spent serializing its materializations (benchmarks/README.md). The columns go to the
run's log once instead."""


def partition_count(context: OutputContext) -> int:
    """How many partitions the output covers (1 for an unpartitioned one)."""
    if not context.has_asset_partitions:
        return 1
    return len(context.asset_partition_keys)


_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


def _add_new_columns(connection, target: str, obj_arrow) -> None:
    """Evolve the table to the frame before an insert by name:

    * a column the frame has and the table lacks (a newer version's, e.g. orders.notional) is added, NULL in
      the older rows, so an upgrade appends instead of failing on its first write;
    * an integer column the frame brings as DOUBLE (the quantity columns of a `[backtest] shares =
      "fractional"` run) is widened to DOUBLE first: inserted as they are, DuckDB would round 1.6 shares to 2
      without a word."""
    have = {row[0]: row[1] for row in connection.execute(f"describe {target}").fetchall()}
    # obj_arrow: read by DuckDB's replacement scan (a local of this frame)
    for name, kind, *_ in connection.execute("describe select * from obj_arrow limit 0").fetchall():
        if name not in have:
            connection.execute(f'alter table {target} add column "{name}" {kind}')
        elif kind == "DOUBLE" and have[name] in _INTEGERS:
            connection.execute(f'alter table {target} alter "{name}" type DOUBLE')


ALIAS = "warehouse"  # the attached file's name in its instance
ATTACH_RETRIES = 10
"""A file another process holds (a run writing it, dbt) is retried with delays of 0.1 s doubling, 10 times
(~100 s in all): dagster-duckdb's own policy for its connect."""


LARGE_ROWS = 250_000
"""A load or write of at least this many rows (a range run's; a session is ~2,000) lets its instance go after
it: DuckDB's allocator keeps the memory such an operation used (0.6 GiB after writing the cleaned prices and
the indicators of ten years, though the database is detached), which only closing the instance returns; the
next call builds a new one (~9 ms, nothing beside such an operation)."""
_LET_GO: set[int] = set()  # ids of the cursors whose use moved LARGE_ROWS or more


def let_go_after(connection: duckdb.DuckDBPyConnection) -> None:
    """Close this connection's instance when its last user leaves (`LARGE_ROWS`)."""
    _LET_GO.add(id(connection))


class _Instance:
    """An in-memory DuckDB instance for one warehouse file and connection config, and how many users have
    the file attached now."""

    def __init__(self, config: Mapping[str, object]) -> None:
        self.con = duckdb.connect(":memory:", config=dict(config))
        self.users = 0  # counted under _INSTANCES_LOCK (an instance with users is never closed)
        self.attached = False  # changed under self.lock
        self.lock = threading.Lock()


KEPT_INSTANCES = 4
"""Instances kept per process (a run worker uses one warehouse; a test process opens many files)."""
_INSTANCES: OrderedDict[str, _Instance] = OrderedDict()
_INSTANCES_LOCK = threading.Lock()


def _instance(path: str, config: Mapping[str, object]) -> _Instance:
    """The process's instance for `path`: DuckDB's connection config, and the spill folder DuckDB gives a
    connection of the file itself (`<file>.tmp`; an in-memory instance's would be `.tmp` in the working
    directory)."""
    full = {"temp_directory": path + ".tmp", **config}
    key = json.dumps([path, full], sort_keys=True, default=str)
    inst = _INSTANCES.get(key)  # the caller holds _INSTANCES_LOCK
    if inst is None:
        inst = _INSTANCES[key] = _Instance(full)
        idle = [k for k, i in _INSTANCES.items() if i.users == 0 and k != key]
        for old in idle[: max(0, len(_INSTANCES) - KEPT_INSTANCES)]:
            _INSTANCES.pop(old).con.close()
    _INSTANCES.move_to_end(key)
    return inst


def _attach(inst: _Instance, path: str) -> None:
    delay = 0.1
    for attempt in range(ATTACH_RETRIES + 1):
        try:
            inst.con.execute(f"ATTACH '{_sql_string(path)}' AS {ALIAS}")
            return
        except duckdb.IOException:  # the file is locked by another process
            if attempt == ATTACH_RETRIES:
                raise
            time.sleep(delay)
            delay *= 2


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


@contextmanager
def attached(database: str, config: Mapping[str, object] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default database is the warehouse file `database`, read-write, held only inside
    the `with` (module docstring). Nested and concurrent users of one file share one ATTACH: the file is
    detached when the last one leaves, whatever happened inside."""
    path = str(Path(database).resolve())
    with _INSTANCES_LOCK:
        inst = _instance(path, {"custom_user_agent": "dagster", **(config or {})})  # dagster-duckdb's config
        inst.users += 1
    cursor = None
    try:
        with inst.lock:
            if not inst.attached:
                _attach(inst, path)
                inst.attached = True
        cursor = inst.con.cursor()
        cursor.execute(f"USE {ALIAS}")
        yield cursor
    finally:
        large = cursor is not None and id(cursor) in _LET_GO
        if cursor is not None:
            _LET_GO.discard(id(cursor))
            cursor.close()
        with _INSTANCES_LOCK:
            inst.users -= 1
            with inst.lock:
                if inst.attached and not inst.users:
                    inst.con.execute(f"DETACH {ALIAS}")
                    inst.attached = False
                if large and not inst.users:  # its memory back (LARGE_ROWS)
                    for key in [k for k, i in _INSTANCES.items() if i is inst]:
                        del _INSTANCES[key]
                    inst.con.close()


class WarehouseClient(DuckDbClient):
    """dagster-duckdb's client with `attached` as its connection."""

    @staticmethod
    @contextmanager
    def connect(context, _table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        with attached(context.resource_config["database"], context.resource_config["connection_config"]) as con:
            yield con


class WarehouseIOManager(DuckDBPolarsIOManager):
    """DuckDBPolarsIOManager with `WarehouseTypeHandler`; tables are `<key prefix>.<asset name>`. With a
    `quality_gate_path`, every partitioned input passes the quality gate first."""

    quality_gate_path: str | None = None

    @staticmethod
    def type_handlers() -> Sequence[DuckDBPolarsTypeHandler]:
        return [WarehouseTypeHandler()]

    def create_io_manager(self, context) -> IOManager:
        stock = super().create_io_manager(context)  # dagster-duckdb's DbIOManager, with our type handler
        # the same IO manager with our client: dagster-duckdb builds it with its own DuckDbClient, and the
        # class (DbIOManager) is not public; its constructor is what dagster-duckdb calls just above
        # (test_warehouse_connections.py fails if the client in use is not WarehouseClient)
        inner = type(stock)(
            db_client=WarehouseClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )
        return GatedIOManager(inner, QualityGate(self.quality_gate_path)) if self.quality_gate_path else inner


class GatedIOManager(IOManager):
    """Refuses partitions that failed a blocking check, in this run or any earlier one, BEFORE it opens the
    warehouse (a refused load takes no file lock), then loads through dagster-duckdb's own IO manager: a
    wrapper over public interfaces, no private base class."""

    def __init__(self, inner: IOManager, gate: QualityGate) -> None:
        self._inner = inner
        self._gate = gate

    def handle_output(self, context: OutputContext, obj) -> None:
        self._inner.handle_output(context, obj)

    def load_input(self, context: InputContext):
        if context.has_asset_partitions:
            start, end = context.asset_partitions_time_window
            last = (end - dt.timedelta(days=1)).date()  # the window's end is exclusive
            try:
                reader = context.op_def.name
            except DagsterInvariantViolationError:  # an input loaded outside an op
                reader = ""
            self._gate.require(context.asset_key.to_user_string(), start.date(), last, reader=reader)
        return self._inner.load_input(context)
