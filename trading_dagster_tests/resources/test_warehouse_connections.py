"""The warehouse's connections: one DuckDB instance per process, the file attached only for each load or write
(as dagster-duckdb's own connect holds it), let go when the body raises, shared by nested users, and retried
while another process holds it."""

import datetime as dt
import subprocess
import sys
import textwrap
from collections import OrderedDict

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.resources import warehouse
from trading_dagster.resources.warehouse import WarehouseClient, WarehouseIOManager, attached

REAL_CONNECT = duckdb.connect  # the test below counts the calls of duckdb.connect
PARTS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")
SEEN: dict[str, object] = {}


@dg.asset(key=["t", "bars"], partitions_def=PARTS, metadata={"partition_expr": "session"})
def bars(context: dg.AssetExecutionContext) -> pl.DataFrame:
    day = context.partition_time_window.start.date()
    return pl.DataFrame({"session": [day, day], "symbol": ["A", "B"], "close": [1.0, 2.0]})


@dg.asset(key=["t", "doubled"], partitions_def=PARTS, metadata={"partition_expr": "session"},
          ins={"bars": dg.AssetIn(key=["t", "bars"])})
def doubled(bars: pl.DataFrame) -> pl.DataFrame:
    # the input is loaded and the file let go before the body runs: another connection may open it
    with REAL_CONNECT(SEEN["db"], read_only=True) as con:
        SEEN["read_in_body"] = con.execute("select count(*) from t.bars").fetchone()[0]
    return bars.with_columns(pl.col("close") * 2)


def _is_free(path: str) -> bool:
    """Whether a read-only connection of this process can open the file (not while it is attached read-write)."""
    try:
        REAL_CONNECT(path, read_only=True).close()
        return True
    except (duckdb.Error, RuntimeError):
        return False


def test_a_run_builds_one_duckdb_instance_and_lets_the_file_go_between_calls(tmp_path, monkeypatch):
    db = str(tmp_path / "w.duckdb")
    SEEN["db"] = db
    monkeypatch.setattr(warehouse, "_INSTANCES", OrderedDict())
    opened: list[str] = []

    def counting_connect(database=":memory:", *args, **kwargs):
        opened.append(str(database))
        return REAL_CONNECT(database, *args, **kwargs)

    monkeypatch.setattr(warehouse.duckdb, "connect", counting_connect)
    io_manager = WarehouseIOManager(database=db)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        assert dg.materialize([bars, doubled], partition_key=day, resources={"io_manager": io_manager}).success
        assert SEEN["read_in_body"] == 2 * (1 + ["2024-01-01", "2024-01-02", "2024-01-03"].index(day))
    # 6 writes and 3 loads: the warehouse module made one in-memory instance, and no instance of the file
    assert [d for d in opened if d != ":memory:"] == [] and opened.count(":memory:") == 1
    monkeypatch.undo()
    assert _is_free(db)
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("select session, close from t.doubled order by session, symbol").fetchall() == [
            (dt.date(2024, 1, d), c) for d in (1, 2, 3) for c in (2.0, 4.0)
        ]


def test_the_io_manager_uses_the_warehouse_client():
    """dagster-duckdb builds its IO manager with its own client; ours swaps it through the IO manager's
    constructor. Fails if a dagster-duckdb upgrade changes that constructor or where the client is kept."""
    io_manager = WarehouseIOManager(database="unused.duckdb").create_io_manager(dg.build_init_resource_context())
    assert isinstance(io_manager._db_client, WarehouseClient)


def test_a_body_that_raises_lets_the_file_go(tmp_path):
    db = str(tmp_path / "w.duckdb")
    with pytest.raises(ZeroDivisionError), attached(db) as con:
        con.execute("create table t as select 1 as x")
        assert not _is_free(db)
        1 / 0  # noqa: B018
    assert _is_free(db)
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_nested_users_share_one_attach_and_the_last_one_detaches(tmp_path):
    db = str(tmp_path / "w.duckdb")
    with attached(db) as outer:
        outer.execute("create table t as select 1 as x")
        with attached(db) as inner:
            inner.execute("insert into t values (2)")
        assert outer.execute("select sum(x) from t").fetchone()[0] == 3  # still attached
        assert not _is_free(db)
    assert _is_free(db)


def test_the_spill_folder_is_the_files_own_and_idle_instances_beyond_the_kept_ones_are_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(warehouse, "_INSTANCES", OrderedDict())
    files = [str((tmp_path / f"w{i}.duckdb").resolve()) for i in range(warehouse.KEPT_INSTANCES + 2)]
    with attached(files[0]) as busy:  # in use while the others come and go: never closed
        assert busy.execute("select current_setting('temp_directory')").fetchone() == (files[0] + ".tmp",)
        for f in files[1:]:
            with attached(f) as con:
                con.execute("create table t as select 1 as x")
        kept = list(warehouse._INSTANCES)
        assert len(kept) == warehouse.KEPT_INSTANCES and files[0] in kept[0]
        assert busy.execute("select 1").fetchone() == (1,)
    assert [f for f in files if any(f in k for k in warehouse._INSTANCES)] == [files[0], *files[-3:]]


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold(db: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_file_another_process_holds_is_retried_until_it_is_free(tmp_path, monkeypatch):
    db = str(tmp_path / "w.duckdb")
    duckdb.connect(db).close()
    holder = _hold(db, 0.5)
    try:
        with attached(db) as con:  # waits through the retries' delays for the holder to let go
            assert con.execute("select 42").fetchone() == (42,)
    finally:
        holder.wait()
    monkeypatch.setattr(warehouse, "ATTACH_RETRIES", 0)
    holder = _hold(db, 30)
    try:
        with pytest.raises(duckdb.IOException, match="lock"), attached(db):
            pass
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("large_rows, kept", [(warehouse.LARGE_ROWS, 1), (2, 0)])
def test_a_large_load_or_write_lets_its_instance_go(large_rows, kept, tmp_path, monkeypatch):
    """DuckDB's allocator keeps what a large operation used until its instance is closed: a load or write of
    LARGE_ROWS or more closes it after; small ones (a daily run's) keep it."""
    SEEN["db"] = str(tmp_path / "w.duckdb")
    monkeypatch.setattr(warehouse, "_INSTANCES", OrderedDict())
    monkeypatch.setattr(warehouse, "LARGE_ROWS", large_rows)
    io_manager = WarehouseIOManager(database=SEEN["db"])
    assert dg.materialize([bars, doubled], partition_key="2024-01-01", resources={"io_manager": io_manager}).success
    assert len(warehouse._INSTANCES) == kept
    assert not warehouse._LET_GO
    with REAL_CONNECT(SEEN["db"], read_only=True) as con:  # the rows were written either way
        assert con.execute("select count(*) from t.doubled").fetchone() == (2,)
