"""The warehouse IO manager's bulk IO: frames written one DuckDB row group per Arrow batch, rows read back in
the order they were written (also after a window is written again), and LazyFrame inputs that read only the
columns collected."""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pytest

from trading_dagster.resources.warehouse import (
    ROW_GROUP_ROWS,
    WarehouseIOManager,
    in_write_order,
    lazy_table,
    row_group_batches,
)

PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-06")


def _chunked(lengths: list[int]) -> pa.Table:
    """A table of consecutive integers in chunks of the given lengths (a frame read from Parquet, a concat)."""
    frames, at = [], 0
    for n in lengths:
        frames.append(pl.DataFrame({"i": pl.int_range(at, at + n, eager=True), "s": [f"r{j}" for j in range(at, at + n)]}))
        at += n
    table = pl.concat(frames, rechunk=False).to_arrow()
    assert [b.num_rows for b in table.to_batches()] == lengths
    return table


@pytest.mark.parametrize(
    "lengths",
    [[10], [64], [130], [100, 100, 100], [64, 64, 3], [1, 1, 200, 5, 63, 64], [30, 30, 30]],
)
def test_batches_are_whole_row_groups_in_order(lengths):
    table = _chunked(lengths)
    out = row_group_batches(table, rows=64)
    sizes = [b.num_rows for b in out.to_batches()]
    total = sum(lengths)
    assert sizes == [64] * (total // 64) + ([total % 64] if total % 64 else [])
    assert out.equals(table)  # same rows, same order, same schema


def test_an_empty_table_stays_empty_and_typed():
    table = pl.DataFrame(schema={"i": pl.Int64, "s": pl.Utf8}).to_arrow()
    out = row_group_batches(table)
    assert out.num_rows == 0 and out.schema == table.schema


def test_row_group_rows_is_duckdbs_row_group(tmp_path):
    """Batches of ROW_GROUP_ROWS from chunks that are not multiples of it give full row groups only (the last
    one excepted): fails if DuckDB's row group size is no longer ROW_GROUP_ROWS."""
    n = 2 * ROW_GROUP_ROWS + 1000
    obj_arrow = row_group_batches(_chunked([ROW_GROUP_ROWS + 77, ROW_GROUP_ROWS - 50, 973]))  # noqa: F841
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create table t as select * from obj_arrow limit 0")
        con.execute("insert into t by name select * from obj_arrow")
        con.execute("checkpoint")
        counts = con.execute(
            "select row_group_id, max(count) from pragma_storage_info('t') group by 1 order by 1"
        ).fetchall()
        assert con.execute("select count(*), min(i), max(i) from t").fetchone() == (n, 0, n - 1)
    assert [c for _, c in counts] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 1000]


def test_in_write_order_sorts_by_session_only_when_needed_and_stably():
    d1, d2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    ordered = pl.DataFrame({"session": [d1, d1, d2], "symbol": ["B", "A", "A"]})
    assert in_write_order(ordered, "session") is ordered  # nothing to do: the same frame
    rerun = pl.DataFrame({"session": [d2, d1, d1], "symbol": ["A", "B", "A"]})  # d1 written again, at the end
    assert in_write_order(rerun, "session").rows() == [(d1, "B"), (d1, "A"), (d2, "A")]
    assert in_write_order(rerun, None) is rerun


ROWS = pl.DataFrame(
    {
        "session": [dt.date(2024, 1, d) for d in (1, 1, 2, 2, 3, 3, 4, 4, 5, 5)],
        "symbol": ["A", "B"] * 5,
        "close": [float(i) for i in range(10)],
        "volume": list(range(10)),
    }
)
SEEN: dict[str, object] = {}


@dg.asset(key=["t", "bars"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          backfill_policy=dg.BackfillPolicy.single_run())
def bars(context: dg.AssetExecutionContext) -> pl.DataFrame:
    start, end = context.partition_time_window
    return ROWS.filter(pl.col("session").is_between(start.date(), end.date(), closed="left"))


@dg.asset(key=["t", "eager"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          backfill_policy=dg.BackfillPolicy.single_run(), ins={"bars": dg.AssetIn(key=["t", "bars"])})
def eager(bars: pl.DataFrame) -> pl.DataFrame:
    SEEN["eager"] = bars
    return bars.head(0)


@dg.asset(key=["t", "lazy"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          backfill_policy=dg.BackfillPolicy.single_run(),
          ins={"bars": dg.AssetIn(key=["t", "bars"], metadata={"where": "volume > 2"})})
def lazy(bars: pl.LazyFrame) -> pl.DataFrame:
    SEEN["lazy_type"] = type(bars)
    SEEN["lazy_schema"] = bars.collect_schema()
    out = bars.select("symbol", "session").collect()
    SEEN["lazy"] = out
    return out.head(0)


def _run(db, selection, first: str, last: str) -> None:
    result = dg.materialize(
        [bars, eager, lazy],
        selection=selection,
        resources={"io_manager": WarehouseIOManager(database=str(db))},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    assert result.success


def test_a_window_written_again_reads_back_in_session_order(tmp_path):
    db = tmp_path / "w.duckdb"
    _run(db, [bars], "2024-01-01", "2024-01-05")
    _run(db, [bars], "2024-01-02", "2024-01-03")  # deleted in place, appended at the end of the table
    with duckdb.connect(str(db)) as con:  # what DuckDB itself returns: insertion order
        assert [r[0].day for r in con.execute("select session from t.bars").fetchall()] == [1, 1, 4, 4, 5, 5, 2, 2, 3, 3]
    _run(db, [bars, eager, lazy], "2024-01-01", "2024-01-05")
    assert SEEN["eager"].equals(ROWS)
    _run(db, [bars], "2024-01-02", "2024-01-03")
    _run(db, [eager, lazy], "2024-01-01", "2024-01-05")
    assert SEEN["eager"].equals(ROWS)
    assert SEEN["lazy"].equals(ROWS.filter(pl.col("volume") > 2).select("symbol", "session"))


def test_a_lazy_input_is_a_lazyframe_of_the_window_and_the_where(tmp_path):
    db = tmp_path / "w.duckdb"
    _run(db, [bars], "2024-01-01", "2024-01-05")
    _run(db, [lazy], "2024-01-02", "2024-01-04")
    assert SEEN["lazy_type"] is pl.LazyFrame
    assert SEEN["lazy_schema"] == pl.Schema({"session": pl.Date, "symbol": pl.Utf8, "close": pl.Float64, "volume": pl.Int64})
    assert SEEN["lazy"].rows() == [("B", dt.date(2024, 1, 2)), ("A", dt.date(2024, 1, 3)), ("B", dt.date(2024, 1, 3)),
                                   ("A", dt.date(2024, 1, 4)), ("B", dt.date(2024, 1, 4))]


def test_a_lazy_table_reads_only_the_columns_collected(tmp_path):
    """A column the query does not keep is never evaluated: here reading it raises."""
    db = str(tmp_path / "w.duckdb")
    with duckdb.connect(db) as con:
        con.execute("create schema s")
        con.execute("create table s.base as select range::int as i, date '2024-01-01' + (range // 2)::int as session from range(6)")
        con.execute("create view s.v as select i, session, error('the unread column was read') as boom from s.base")
        select = "SELECT * FROM s.v WHERE session >= '2024-01-02'"
        schema = pl.DataFrame(con.execute(f"SELECT i, session FROM ({select}) LIMIT 0").arrow()).schema
    frame = lazy_table({"database": db, "connection_config": {}}, select, pl.Schema({**schema, "boom": pl.Utf8}), "session")
    assert frame.select("i").collect()["i"].to_list() == [2, 3, 4, 5]
    assert frame.filter(pl.col("i") > 3).select("session", "i").collect().rows() == [(dt.date(2024, 1, 3), 4), (dt.date(2024, 1, 3), 5)]
    assert frame.select("i").head(1).collect()["i"].to_list() == [2]
    with pytest.raises(Exception, match="the unread column was read"):
        frame.collect()
