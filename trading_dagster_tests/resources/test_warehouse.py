"""The warehouse IO manager: typed tables for empty frames, inserts by name, and inputs filtered by `where`."""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl

from trading_dagster.resources.warehouse import WarehouseIOManager

PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-05")
ROWS = pl.DataFrame(
    {
        "session": [dt.date(2024, 1, d) for d in (1, 1, 2, 2, 3, 3, 4, 4)],
        "symbol": ["A", "B"] * 4,
        "status": ["approved", "denied", "denied", "approved", "approved", "approved", "denied", "denied"],
        "qty": [1, 0, 0, 2, 3, 4, 0, 0],
    }
)
SEEN: dict[str, pl.DataFrame] = {}


@dg.asset(key=["t", "orders"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          backfill_policy=dg.BackfillPolicy.single_run())
def orders(context: dg.AssetExecutionContext) -> pl.DataFrame:
    start, end = context.partition_time_window
    # columns deliberately in another order than the table's: the insert goes by name
    return ROWS.filter(pl.col("session").is_between(start.date(), end.date(), closed="left")).select(
        "qty", "status", "symbol", "session"
    )


@dg.asset(
    key=["t", "approved"],
    partitions_def=PARTS,
    metadata={"partition_expr": "session"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"orders": dg.AssetIn(key=["t", "orders"], metadata={"where": "status = 'approved'", "columns": ["session", "symbol", "qty"]})},
)
def approved(orders: pl.DataFrame) -> pl.DataFrame:
    SEEN["approved"] = orders
    return orders


def _run(tmp_path, first: str, last: str) -> None:
    result = dg.materialize(
        [orders, approved],
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    assert result.success


def test_an_input_gets_only_the_rows_and_columns_it_asks_for(tmp_path):
    _run(tmp_path, "2024-01-02", "2024-01-03")
    got = SEEN["approved"].sort("session", "symbol")
    assert got.columns == ["session", "symbol", "qty"]
    assert got.rows() == [(dt.date(2024, 1, 2), "B", 2), (dt.date(2024, 1, 3), "A", 3), (dt.date(2024, 1, 3), "B", 4)]


def test_a_window_without_matching_rows_gives_an_empty_typed_table(tmp_path):
    _run(tmp_path, "2024-01-04", "2024-01-04")  # only denials that day
    assert SEEN["approved"].height == 0
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM t.approved").fetchone() == (0,)
        names = [r[0] for r in con.execute("DESCRIBE t.orders").fetchall()]
    assert names == ["qty", "status", "symbol", "session"]  # created from the first frame, typed


def _old_warehouse(db) -> None:
    """A warehouse an older version wrote: orders without `notional`, quantities as BIGINT, one row."""
    with duckdb.connect(str(db)) as con:
        con.execute("create schema t")
        con.execute("create table t.orders (session date, symbol varchar, status varchar, qty bigint)")
        con.execute("insert into t.orders values ('2023-12-29', 'A', 'approved', 7)")


def _write_over(db, frame: pl.DataFrame) -> None:
    """Materialize `frame` as t.orders for 2024-01-01..02 through the warehouse IO manager."""

    @dg.asset(key=["t", "orders"], partitions_def=PARTS, metadata={"partition_expr": "session"},
              backfill_policy=dg.BackfillPolicy.single_run())
    def newer_orders(context: dg.AssetExecutionContext) -> pl.DataFrame:
        start, end = context.partition_time_window
        return frame.filter(pl.col("session").is_between(start.date(), end.date(), closed="left"))

    result = dg.materialize(
        [newer_orders],
        resources={"io_manager": WarehouseIOManager(database=str(db))},
        tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-02"},
    )
    assert result.success


def test_a_column_a_newer_version_adds_is_added_to_the_stored_table(tmp_path):
    db = tmp_path / "w.duckdb"
    _old_warehouse(db)
    _write_over(db, ROWS.with_columns(notional=pl.lit(1000.0)))
    with duckdb.connect(str(db)) as con:
        rows = con.execute("select session, symbol, qty, notional from t.orders order by session, symbol").fetchall()
    assert rows[0] == (dt.date(2023, 12, 29), "A", 7, None)  # the old row kept, NULL in the new column
    assert [r[3] for r in rows[1:]] == [1000.0] * 4


def test_an_integer_column_written_with_fractions_is_widened_not_rounded(tmp_path):
    db = tmp_path / "w.duckdb"
    _old_warehouse(db)  # a whole-shares run wrote the table
    _write_over(db, ROWS.with_columns(qty=pl.col("qty") * 0.4))  # 1 -> 0.4, 2 -> 0.8, ...
    with duckdb.connect(str(db)) as con:
        rows = con.execute("select qty from t.orders order by session, symbol").fetchall()
    assert [r[0] for r in rows] == [7.0, 0.4, 0.0, 0.0, 0.8]
