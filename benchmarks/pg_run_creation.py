"""Run creation of a single-run backfill on PostgreSQL: dagster-postgres's stock event log vs ours.

    .venv/bin/python benchmarks/pg_run_creation.py [--sessions 1000] [--rounds 1]

One throwaway PostgreSQL 15 (benchmarks/pg.py), a fresh database per backfill, and the same backfill of the
shipped sample's first N sessions (`trading-dagster backfill`'s run_backfill, DAGSTER_EVENT_BATCH_SIZE=500,
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1, as deploy/dagster.yaml's containers set them) in child
processes, alternating: `stock` (run/event log/schedule storages of dagster-postgres) and `batched` (the event
log trading_dagster.event_log.BatchedPostgresEventLogStorage, as deploy/dagster.yaml). Printed per backfill:
run creation (from the run's first event to its first event that is not a *_PLANNED one: the planned
materializations and checks Dagster records when it creates the run), the whole backfill, and the number of
asset_check_executions rows (the same for both, else the comparison is void). The machine is shared: read the
two against each other, not as absolute figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pg import OUR_EVENT_LOG, create_database, production_storage_yaml, throwaway_postgres  # noqa: E402

EVENT_LOG = {"stock": ("dagster_postgres", "PostgresEventLogStorage"), "batched": OUR_EVENT_LOG}


def child(kind: str, sessions: int) -> None:
    """In a fresh process (DAGSTER_HOME set by the parent): one backfill, a JSON line of figures."""
    import contextlib
    import io

    import dagster as dg
    import sqlalchemy as db
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

    from trading_dagster.cli import run_backfill
    from trading_dagster.partitions import session_calendar

    days = session_calendar().between(dt.date(2008, 1, 2), dt.date(2017, 11, 10))[:sessions]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = run_backfill(
            days[0], days[-1], environ={"TRADING_DAGSTER_DATA_DIR": tempfile.mkdtemp() + "/data"}
        )
    total = time.perf_counter() - start
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        logs = instance.all_logs(out["run_id"])
        planned = {
            dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        }
        after = next(e for e in logs if e.dagster_event_type not in planned)
        with storage.index_connection() as conn:
            rows = conn.execute(db.select(db.func.count()).select_from(AssetCheckExecutionsTable)).scalar()
        figures = {
            "kind": kind,
            "storage": type(storage).__name__,
            "success": out["success"],
            "sessions": len(days),
            "creation_s": round(after.timestamp - logs[0].timestamp, 2),
            "backfill_s": round(total, 1),
            "check_rows": rows,
        }
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=sorted(EVENT_LOG))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sessions)
        return
    results = []
    with throwaway_postgres() as url:
        for r in range(args.rounds):
            for kind in ("stock", "batched") if r % 2 == 0 else ("batched", "stock"):
                db_url = create_database(url, f"{kind}_{r}")
                home = tempfile.mkdtemp(prefix=f"pgcreate-{kind}-")
                Path(home, "dagster.yaml").write_text(production_storage_yaml(db_url, EVENT_LOG[kind]))
                env = {
                    **os.environ,
                    "DAGSTER_HOME": home,
                    "DAGSTER_EVENT_BATCH_SIZE": "500",
                    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
                }
                cmd = [sys.executable, __file__, "--child", kind, "--sessions", str(args.sessions)]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{kind} backfill failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                results.append(json.loads(line[len("RESULT ") :]))
                print(results[-1], flush=True)
    for kind in ("stock", "batched"):
        mine = [r for r in results if r["kind"] == kind]
        print(
            f"{kind:8s} ({mine[0]['storage']}): run creation {min(r['creation_s'] for r in mine):7.2f} s, "
            f"backfill {min(r['backfill_s'] for r in mine):7.1f} s, {mine[0]['check_rows']} check rows "
            f"(best of {len(mine)}; {mine[0]['sessions']} sessions)"
        )


if __name__ == "__main__":
    main()
