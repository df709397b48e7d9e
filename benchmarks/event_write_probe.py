"""Dagster's cost per recorded partition materialization, by instance storage, with no pipeline work at all.

    uv run python benchmarks/event_write_probe.py [--partitions 300] [--assets 2] [--repeat 2]
    uv run --no-sync python benchmarks/event_write_probe.py --single 300

Materializes trivial daily-partitioned assets (BackfillPolicy.single_run, MaterializeResult: no IO manager) over
N partitions as ONE run, and over 1 partition as another, each in a fresh child process on a fresh on-disk
instance, and prints (t_N - t_1) / ((N - 1) x assets) in ms per partition-asset: the marginal bookkeeping cost.
Storages: the CLI's consolidated SQLite event log, Dagster's default SQLite (a file per run), and a throwaway
PostgreSQL 15 cluster (benchmarks/pg.py), without and with DAGSTER_EVENT_BATCH_SIZE.
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 (as the CLI sets it) except in the "no subset env" cell.
Each child prints how often the event log's store_event / store_event_batch were called.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(partitions: int, assets: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    pdef = dg.DailyPartitionsDefinition(start_date="2000-01-01")

    def make(i: int):
        @dg.asset(name=f"a{i}", partitions_def=pdef, backfill_policy=dg.BackfillPolicy.single_run())
        def _a(context):  # no annotations: `from __future__ import annotations` + a local `dg`
            return dg.MaterializeResult()

        return _a

    defs = [make(i) for i in range(assets)]
    keys = pdef.get_partition_keys()[:partitions]
    instance = dg.DagsterInstance.get()
    storage = instance.event_log_storage
    calls = {"store_event": 0, "store_event_batch": 0}
    for name in calls:
        orig = getattr(storage, name)

        def wrapped(*a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)

        setattr(storage, name, wrapped)
    t = time.perf_counter()
    r = dg.materialize(
        defs,
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},  # as the CLI runs
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    elapsed = time.perf_counter() - t
    assert r.success
    mats = len(r.get_asset_materialization_events())
    assert mats == partitions * assets, mats
    return {"s": elapsed, "storage": type(storage).__name__, **calls}


STOCK_CONSOLIDATED_YAML = """\
event_log_storage:
  module: dagster._core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir: {home}/history
telemetry:
  enabled: false
"""


def run_child(partitions: int, assets: int, yaml: str | None, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if yaml is None:
            from trading_dagster.cli import DAGSTER_YAML

            yaml = DAGSTER_YAML
        yaml = yaml.replace("{home}", str(home))
        (home / "dagster.yaml").write_text(yaml)
        out = Path(tmp) / "out.json"
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", **env}
        cmd = [sys.executable, __file__, "--child", "--partitions", str(partitions), "--assets", str(assets),
               "--out", str(out)]
        subprocess.run(cmd, check=True, env=env)
        return json.loads(out.read_text())


def pg_yaml(url: str) -> str:
    return f"storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\ntelemetry:\n  enabled: false\n"


def measure(label: str, args, yaml_fn, env: dict[str, str]) -> None:
    """yaml_fn() -> (context manager yielding dagster.yaml text or None for the CLI's SQLite one)."""
    best_n = best_1 = None
    info = {}
    for _ in range(args.repeat):
        with yaml_fn() as yaml:  # a fresh database for every run: no history to grow into
            r1 = run_child(1, args.assets, yaml, env)
        with yaml_fn() as yaml:
            rn = run_child(args.partitions, args.assets, yaml, env)
        best_1 = min(best_1 or r1["s"], r1["s"])
        best_n = min(best_n or rn["s"], rn["s"])
        info = rn
    per = (best_n - best_1) / ((args.partitions - 1) * args.assets) * 1000
    print(f"{label:<34}{best_n:>9.2f}{best_1:>9.2f}{per:>10.2f}   {info['storage']}: "
          f"store_event {info['store_event']}, store_event_batch {info['store_event_batch']}", flush=True)


def single_events(n: int, postgres: bool = True) -> None:
    """ms per event stored alone (a step's start, logs, output, success: a daily run's ~150 events): stock
    consolidated SQLite, ours, and dagster-postgres (a throwaway PostgreSQL 15, benchmarks/pg.py; it batches
    only materializations and observations, so a daily run's other events are stored one by one there too),
    each storage fresh, same process, fastest of 3."""
    import contextlib
    import uuid
    import warnings

    warnings.filterwarnings("ignore")
    from dagster._core.event_api import EventLogEntry
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
    from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage

    from trading_dagster.event_log import BatchedSqliteEventLogStorage

    def entry(i: int, run_id: str) -> EventLogEntry:
        event = DagsterEvent(
            event_type_value=DagsterEventType.ENGINE_EVENT.value,
            job_name="probe",
            message=f"event {i}",
            event_specific_data=EngineEventData(),
        )
        return EventLogEntry(
            error_info=None, level=20, user_message="", run_id=run_id, timestamp=time.time(), dagster_event=event
        )

    def time_storage(make) -> float:
        best = float("inf")
        for _ in range(3):
            with make() as storage:
                run_id = uuid.uuid4().hex
                storage.store_event(entry(-1, run_id))  # creates the tables' connection state
                t = time.perf_counter()
                for i in range(n):
                    storage.store_event(entry(i, run_id))
                best = min(best, time.perf_counter() - t)
                assert len(storage.get_logs_for_run(run_id)) == n + 1
        return best

    def sqlite_storage(cls):
        @contextlib.contextmanager
        def make():
            with tempfile.TemporaryDirectory() as tmp:
                storage = cls(base_dir=tmp)
                try:
                    yield storage
                finally:
                    storage.dispose()

        return make

    print(f"{n} events stored one by one (fastest of 3)")
    cells = [("stock consolidated sqlite", sqlite_storage(ConsolidatedSqliteEventLogStorage)),
             ("ours (pooled connections)", sqlite_storage(BatchedSqliteEventLogStorage))]
    for label, make in cells:
        print(f"  {label:<28}{1000 * time_storage(make) / n:>8.2f} ms/event", flush=True)
    if not postgres:
        return
    from benchmarks.pg import PostgresNotInstalled, throwaway_postgres

    try:
        with throwaway_postgres() as url:
            from dagster_postgres import PostgresEventLogStorage

            @contextlib.contextmanager
            def make():
                storage = PostgresEventLogStorage(postgres_url=url)
                try:
                    yield storage
                finally:
                    storage.dispose()

            print(f"  {'dagster-postgres (NullPool)':<28}{1000 * time_storage(make) / n:>8.2f} ms/event", flush=True)
    except PostgresNotInstalled as e:
        print(f"  postgres skipped: {e}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--partitions", type=int, default=300)
    p.add_argument("--assets", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="runs per cell; the fastest counts")
    p.add_argument("--batch", type=int, default=500, help="DAGSTER_EVENT_BATCH_SIZE for the batched cells")
    p.add_argument("--cells", default="ours-batch,ours,sqlite,sqlite-batch,sqlite-nosubset,sqlite-default,pg,pg-batch,pg-nosync,"
                   "pg-nosync-batch", help="comma-separated, from the table in main()")
    p.add_argument("--single", type=int, metavar="N", help="only: N events stored one by one, stock vs ours")
    p.add_argument("--no-postgres", action="store_true", help="--single without the PostgreSQL cell")
    p.add_argument("--child", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.single:
        single_events(args.single, postgres=not args.no_postgres)
        return
    if args.child:
        args.out.write_text(json.dumps(child(args.partitions, args.assets)))
        return

    import contextlib

    from benchmarks.pg import throwaway_postgres

    @contextlib.contextmanager
    def sqlite():  # Dagster's consolidated SQLite event log, stock
        yield STOCK_CONSOLIDATED_YAML

    @contextlib.contextmanager
    def sqlite_ours():  # the CLI's dagster.yaml: trading_dagster.event_log.BatchedSqliteEventLogStorage
        yield None

    @contextlib.contextmanager
    def sqlite_default():  # Dagster's default: one SQLite event-log file per run
        yield "telemetry:\n  enabled: false\n"

    @contextlib.contextmanager
    def postgres(**settings):
        with throwaway_postgres(settings) as url:
            yield pg_yaml(url)

    print(f"{args.partitions} daily partitions x {args.assets} assets in one run; fastest of {args.repeat}")
    print(f"{'storage':<34}{'t_N s':>9}{'t_1 s':>9}{'ms/p-a':>10}")
    batch = {"DAGSTER_EVENT_BATCH_SIZE": str(args.batch)}
    off = {"synchronous_commit": "off"}
    nosubset = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "false"}  # one planned event per partition
    cells = {
        "sqlite": ("sqlite consolidated", sqlite, {}),
        "sqlite-batch": (f"sqlite consolidated, batch {args.batch}", sqlite, batch),
        "ours": ("ours (CLI yaml), no batch", sqlite_ours, {}),
        "ours-batch": (f"ours (CLI yaml), batch {args.batch}", sqlite_ours, batch),
        "sqlite-nosubset": ("sqlite consolidated, no subset env", sqlite, nosubset),
        "sqlite-default": ("sqlite per-run files (default)", sqlite_default, {}),
        "pg": ("postgres", postgres, {}),
        "pg-batch": (f"postgres, batch {args.batch}", postgres, batch),
        "pg-nosync": ("postgres, synchronous_commit=off", lambda: postgres(**off), {}),
        "pg-nosync-batch": (f"postgres, sync_commit=off, batch {args.batch}", lambda: postgres(**off), batch),
    }
    for name in args.cells.split(","):
        label, yaml_fn, env = cells[name]
        measure(label, args, yaml_fn, env)


if __name__ == "__main__":
    main()
