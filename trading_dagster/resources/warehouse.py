"""The DuckDB warehouse IO manager: dagster-duckdb-polars with two fixes that matter for a ledger.

1. The stock handler skips an empty DataFrame without creating its table, so a first run with no orders
   leaves no `trading.orders` table and the next stage's load fails. Here an empty frame still creates the
   (typed) table; the window's old rows are deleted either way, by the base class, before the write.
2. The stock insert is positional (`insert into t select * from df`): a column order that changes between
   versions would silently write prices into the wrong column. Here it inserts BY NAME, so a mismatch is an
   error that names the column.
"""

from collections.abc import Sequence

import polars as pl
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb_polars import DuckDBPolarsIOManager
from dagster_duckdb_polars.duckdb_polars_type_handler import DuckDBPolarsTypeHandler


class WarehouseTypeHandler(DuckDBPolarsTypeHandler):
    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection) -> None:
        obj_arrow = obj.to_arrow()  # noqa: F841  (read by DuckDB's replacement scan below)
        target = f"{table_slice.schema}.{table_slice.table}"
        connection.execute(f"create schema if not exists {table_slice.schema}")
        connection.execute(f"create table if not exists {target} as select * from obj_arrow limit 0")
        if obj.height:
            connection.execute(f"insert into {target} by name select * from obj_arrow")
        context.add_output_metadata(
            {
                "row_count": obj.height,
                "dataframe_columns": MetadataValue.table_schema(
                    TableSchema(columns=[TableColumn(name=n, type=str(t)) for n, t in obj.schema.items()])
                ),
            }
        )


class WarehouseIOManager(DuckDBPolarsIOManager):
    """DuckDBPolarsIOManager with `WarehouseTypeHandler`; tables are `<key prefix>.<asset name>`."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [WarehouseTypeHandler()]
