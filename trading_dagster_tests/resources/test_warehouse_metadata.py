"""The warehouse IO manager's output metadata: a short window's materializations carry the table's column schema;
a range run's partitions do not (each would carry its own copy), and the columns are logged once instead."""

import datetime as dt

import dagster as dg
import polars as pl

from trading_dagster.resources.warehouse import SCHEMA_MAX_PARTITIONS, WarehouseIOManager

PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-31")


@dg.asset(key=["t", "bars"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          backfill_policy=dg.BackfillPolicy.single_run())
def bars(context: dg.AssetExecutionContext) -> pl.DataFrame:
    start, end = context.partition_time_window
    days = pl.date_range(start.date(), end.date() - dt.timedelta(days=1), eager=True)
    return pl.DataFrame({"session": days, "symbol": "A", "close": [float(d.day) for d in days]})


_instance = dg.DagsterInstance.ephemeral()


def _materialize(tmp_path, first: str, last: str) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [bars],
        instance=_instance,
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    assert result.success
    return result


def test_a_short_window_carries_the_column_schema(tmp_path):
    result = _materialize(tmp_path, "2024-01-02", "2024-01-03")
    events = result.asset_materializations_for_node("t__bars")
    assert [e.partition for e in events] == ["2024-01-02", "2024-01-03"]
    for event in events:
        schema = event.metadata["dataframe_columns"].value
        assert [(c.name, c.type) for c in schema.columns] == [("session", "Date"), ("symbol", "String"), ("close", "Float64")]
        assert event.metadata["row_count"].value == 2


def test_a_range_run_logs_the_columns_once_instead_of_a_schema_per_partition(tmp_path):
    result = _materialize(tmp_path, "2024-01-01", "2024-01-20")
    events = result.asset_materializations_for_node("t__bars")
    assert len(events) == 20 > SCHEMA_MAX_PARTITIONS
    assert all("dataframe_columns" not in e.metadata and e.metadata["row_count"].value == 20 for e in events)
    logged = [r.user_message for r in _instance.all_logs(result.run_id)]
    lines = [m for m in logged if "columns session Date, symbol String, close Float64" in m]
    assert len(lines) == 1 and "20 rows written" in lines[0]
