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
"""

import datetime as dt
from collections.abc import Sequence

import polars as pl
from dagster import (
    DagsterInvariantViolationError,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_polars import DuckDBPolarsIOManager
from dagster_duckdb_polars.duckdb_polars_type_handler import DuckDBPolarsTypeHandler

from trading_dagster.resources.quality_gate import QualityGate


class WarehouseTypeHandler(DuckDBPolarsTypeHandler):
    def handle_output(self, context: OutputContext, table_slice, obj: pl.DataFrame, connection) -> None:
        obj_arrow = obj.to_arrow()  # noqa: F841  (read by DuckDB's replacement scan below)
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


    def load_input(self, context: InputContext, table_slice, connection) -> pl.DataFrame:
        where = (context.definition_metadata or {}).get("where")
        if where is None:
            return super().load_input(context, table_slice, connection)
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.DataFrame()
        # filter on every column, then project (the condition may use a column the input does not keep)
        rows = DuckDbClient.get_select_statement(table_slice=table_slice._replace(columns=None))
        columns = ", ".join(f'"{c}"' for c in table_slice.columns) if table_slice.columns else "*"
        return pl.DataFrame(connection.execute(f"SELECT {columns} FROM ({rows}) WHERE {where}").arrow())


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


class WarehouseIOManager(DuckDBPolarsIOManager):
    """DuckDBPolarsIOManager with `WarehouseTypeHandler`; tables are `<key prefix>.<asset name>`. With a
    `quality_gate_path`, every partitioned input passes the quality gate first."""

    quality_gate_path: str | None = None

    @staticmethod
    def type_handlers() -> Sequence[DuckDBPolarsTypeHandler]:
        return [WarehouseTypeHandler()]

    def create_io_manager(self, context) -> IOManager:
        inner = super().create_io_manager(context)  # dagster-duckdb's, with our type handler
        return GatedIOManager(inner, QualityGate(self.quality_gate_path)) if self.quality_gate_path else inner


class GatedIOManager(IOManager):
    """Refuses partitions that failed a blocking check, in this run or any earlier one, BEFORE it opens a
    DuckDB connection (dagster-duckdb's `connect` does not close its connection when the body raises, and a
    leaked read-write connection makes every later read-only open of the file in this process fail), then
    loads through dagster-duckdb's own IO manager: a wrapper over public interfaces, no private base class."""

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
