"""What the warehouse IO manager's per-partition schema costs a range run, A/B in one process.

    .venv/bin/python benchmarks/range_metadata.py [--partitions 2485] [--columns 24]

Materializes one daily-partitioned asset of `--columns` float columns (one row per partition: the data is
not what is measured) as ONE single-run backfill of `--partitions` partitions, on an on-disk Dagster instance
configured as the CLI's (batched SQLite event log, DAGSTER_EVENT_BATCH_SIZE=500), twice: with the
`dataframe_columns` schema on every partition's materialization (the IO manager before, forced by raising
SCHEMA_MAX_PARTITIONS) and without it (now). Prints wall and CPU seconds of each run and the ratio.
"""

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from trading_dagster.cli import ensure_dagster_home
from trading_dagster.resources import warehouse


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_asset(start: dt.date, columns: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=["bench", "wide"],
        partitions_def=dg.DailyPartitionsDefinition(start_date=start.isoformat()),
        metadata={"partition_expr": "session"},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def wide(context: dg.AssetExecutionContext) -> pl.DataFrame:
        first, end = context.partition_time_window
        days = pl.date_range(first.date(), end.date() - dt.timedelta(days=1), eager=True)
        return pl.DataFrame({"session": days, "symbol": "A", **{f"c{i}": 1.0 for i in range(columns)}})

    return wide


def run(home: Path, asset: dg.AssetsDefinition, first: dt.date, last: dt.date, db: Path) -> tuple[float, float, int]:
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        t, c = time.perf_counter(), cpu()
        result = dg.materialize(
            [asset],
            instance=instance,
            resources={"io_manager": warehouse.WarehouseIOManager(database=str(db))},
            tags={"dagster/asset_partition_range_start": first.isoformat(),
                  "dagster/asset_partition_range_end": last.isoformat()},
        )
        wall, spent = time.perf_counter() - t, cpu() - c
        assert result.success
        events = len(result.asset_materializations_for_node("bench__wide"))
    return wall, spent, events


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--partitions", type=int, default=2485)
    p.add_argument("--columns", type=int, default=24)
    args = p.parse_args()
    start = dt.date(2008, 1, 1)
    first, last = start, start + dt.timedelta(days=args.partitions - 1)
    asset = build_asset(start, args.columns)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-range-metadata-") as tmp:
        warm = Path(tmp) / "warm-up" / "home"  # one-off costs (imports, first connections) outside the clock
        warm.mkdir(parents=True)
        ensure_dagster_home(str(warm))
        run(warm, asset, first, first + dt.timedelta(days=9), warm.parent / "w.duckdb")
        for i, (label, limit) in enumerate((("schema on every partition (before)", 10**9), ("schema logged once (now)", None))):
            home = Path(tmp) / str(i) / "home"
            home.mkdir(parents=True)
            ensure_dagster_home(str(home))
            saved = warehouse.SCHEMA_MAX_PARTITIONS
            if limit is not None:
                warehouse.SCHEMA_MAX_PARTITIONS = limit
            try:
                results[label] = run(home, asset, first, last, home.parent / "w.duckdb")
            finally:
                warehouse.SCHEMA_MAX_PARTITIONS = saved
    print(f"one single-run backfill of {args.partitions:,} partitions, {args.columns + 2} columns:")
    for label, (wall, spent, events) in results.items():
        print(f"  {label:<36} {wall:7.2f} s wall {spent:7.2f} s CPU ({events:,} materializations)")
    (w0, c0, _), (w1, c1, _) = results.values()
    print(f"  now / before: wall {w1 / w0:.2f}x, CPU {c1 / c0:.2f}x; {c0 - c1:.2f} s CPU saved on this one output")


if __name__ == "__main__":
    main()
