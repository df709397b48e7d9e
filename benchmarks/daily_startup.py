"""One daily session from the spawn of a fresh process, this tree against a committed version, interleaved.

    .venv/bin/python benchmarks/daily_startup.py [--ref REV] [--new REV | --only PATH...] [--sessions N]
                                                 [--repeat R] [--workdir DIR] [--load-only] [--postgres]

What a run worker does for the daily schedule: `dagster job execute -m trading_dagster.definitions -a defs -j
pipeline_job --tags '{"dagster/partition": "<session>"}'` in a new process (imports, the definitions, the
instance, then the run). Both versions run the same session on the same instance and data, alternating
(ref, this, this, ref, ...) so the load of a shared machine falls on both alike, and the script prints for
each: spawn -> RUN_START (imports, definitions, run creation), RUN_START -> RUN_SUCCESS (the run, its duration
in the UI), spawn -> RUN_SUCCESS (issue 12's measure, target < 5 s), and spawn -> exit; medians and the
ratio, then each step's median. The CPU seconds of each child (user + sys) say more than its wall time when
the machine is shared. `--load-only` times only the part before the run: a fresh process that imports the
definitions, builds them and resolves pipeline_job (no instance, no data needed).

The reference is `git archive REV` (default HEAD, the committed version) extracted in a temporary folder, with
this tree's `dbt_project/target/manifest.json`; the new version is this working tree, another commit the same
way (`--new REV`), or the reference with some files of this tree over it (`--only PATH...`: a working tree
others are editing holds their changes too). Each child gets its tree first on
PYTHONPATH and as its working directory. The instance and the data are built once by a single-run backfill of
the first N sessions of the shared file (all 1,920 symbols; N = 300 covers the indicators' 200-session
lookback), with the new version's code.

`--postgres` puts the instance on the production storages instead of the CLI's SQLite: runs, the event log
(deploy/dagster.yaml's `trading_dagster.event_log.BatchedPostgresEventLogStorage`, each tree its own) and
schedules on a throwaway PostgreSQL 15 on 127.0.0.1 (benchmarks/pg.py; trust authentication, so a connection
costs less than a password login would). Compute logs stay local. The instance is built fresh (no --workdir).
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"
TARGET_S = 5.0
STEP_STAGE = {  # step key -> stage, as full_backfill.py prints them
    "raw__raw_prices": "raw",
    "cleaned_prices": "clean",
    "indicators__indicators": "indicators",
    "signals__signals": "signals",
    "trading__orders": "orders",
    "trading__executions": "executions",
    "pnl": "pnl",
}


def extract_ref(rev: str, dest: Path) -> Path:
    """`git archive rev` in `dest`, with this tree's dbt manifest (not committed: `trading-dagster prepare`)."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    target = dest / "dbt_project" / "target"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "dbt_project" / "target" / "manifest.json", target / "manifest.json")
    return dest


def child_env(tree: Path, base: dict[str, str]) -> dict[str, str]:
    return {**base, "PYTHONPATH": str(tree)}


def setup(tree: Path, workdir: Path, data: Path, sessions: int, env: dict[str, str]) -> str:
    """Build the instance and the data with `tree`'s code; returns the last session (the daily run's)."""
    marker = workdir / "session.txt"
    if marker.exists():
        return marker.read_text().strip()
    code = f"""
import warnings; warnings.filterwarnings("ignore")
from trading_dagster.cli import ensure_dagster_home, run_backfill
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.market_data import FileMarketDataSource
ensure_dagster_home({str(workdir / "dagster_home")!r})
first, last = FileMarketDataSource({str(data)!r}).date_range()
sessions = session_calendar().between(first, last)[:{sessions}]
out = run_backfill(sessions[0], sessions[-1])
assert out["success"], out["failed_checks"]
open({str(marker)!r}, "w").write(str(sessions[-1]))
"""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=child_env(tree, env), check=True)
    print(f"setup: backfill of {sessions} sessions in {time.perf_counter() - t:.1f} s", flush=True)
    return marker.read_text().strip()


def one_run(tree: Path, session: str, env: dict[str, str]) -> dict:
    """Spawn the run worker's command in `tree`; its phases from the instance's event log."""
    import dagster as dg

    cpu0 = _children_cpu()
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "trading_dagster.definitions", "-a", "defs",
         "-j", "pipeline_job", "--tags", json.dumps({"dagster/partition": session})],
        cwd=tree, env=child_env(tree, env), capture_output=True, text=True,
    )
    exited = time.time()
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: the daily run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"{tree}: run {run.run_id} {run.status}")
        stamps: dict[str, float] = {}
        starts: dict[str, float] = {}
        steps: dict[str, float] = {}
        for rec in instance.all_logs(run.run_id):
            ev = rec.dagster_event
            if ev is None:
                continue
            name = ev.event_type_value
            if name in ("PIPELINE_START", "RUN_START", "PIPELINE_SUCCESS", "RUN_SUCCESS"):
                stamps[name.replace("PIPELINE", "RUN")] = rec.timestamp
            elif name == "STEP_START":
                starts[ev.step_key] = rec.timestamp
            elif name == "STEP_SUCCESS":
                steps[STEP_STAGE.get(ev.step_key, ev.step_key)] = rec.timestamp - starts[ev.step_key]
    return {
        "to_start": stamps["RUN_START"] - spawned,
        "run": stamps["RUN_SUCCESS"] - stamps["RUN_START"],
        "to_success": stamps["RUN_SUCCESS"] - spawned,
        "to_exit": exited - spawned,
        "cpu": cpu,
        "steps": steps,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LOAD = ("import warnings; warnings.filterwarnings('ignore'); from trading_dagster.definitions import defs; "
        "d = defs(); d.resolve_job_def('pipeline_job'); d.resolve_asset_graph()")


def one_load(tree: Path, env: dict[str, str]) -> dict:
    """Only what a run worker does before the run: imports, the definitions, the job (no instance, no run)."""
    cpu0 = _children_cpu()
    spawned = time.time()
    subprocess.run([sys.executable, "-c", LOAD], cwd=tree, env=child_env(tree, env), check=True)
    return {"to_exit": time.time() - spawned, "cpu": _children_cpu() - cpu0, "steps": {}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", default="HEAD", help="the committed version to compare against (default HEAD)")
    new = p.add_mutually_exclusive_group()
    new.add_argument("--new", help="a commit to measure instead of this working tree")
    new.add_argument("--only", nargs="+", metavar="PATH",
                     help="measure the reference with only these paths of this working tree over it")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sessions", type=int, default=300, help="sessions of history the instance holds")
    p.add_argument("--repeat", type=int, default=4, help="runs of each version")
    p.add_argument("--workdir", type=Path, help="keep the instance and data here (reused when present)")
    p.add_argument("--load-only", action="store_true",
                   help="time loading the definitions only (no instance, no run: no setup needed)")
    p.add_argument("--postgres", action="store_true",
                   help="the instance on PostgreSQL as deploy/dagster.yaml configures it (a throwaway server)")
    args = p.parse_args()
    if args.postgres and (args.load_only or args.workdir):
        p.error("--postgres builds a fresh instance on a throwaway server: no --workdir, no --load-only")
    if args.postgres:
        from benchmarks.pg import throwaway_postgres

        with throwaway_postgres() as url:
            run(args, url)
    else:
        run(args, None)


def run(args: argparse.Namespace, pg_url: str | None) -> None:

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="daily-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "TRADING_DAGSTER_DATA_DIR": str(workdir / "data"),
        "TRADING_DAGSTER_MARKET_DATA_FILE": str(args.data),
    }
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "TRADING_DAGSTER_DATA_DIR")})
    if pg_url:
        # the production instance's storages (deploy/dagster.yaml), before the CLI would write its SQLite one
        home = workdir / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        from benchmarks.pg import production_storage_yaml

        (home / "dagster.yaml").write_text(production_storage_yaml(pg_url))
        # what the containers set (deploy/docker-compose.yml), as the CLI does for local runs
        for key, value in (("DAGSTER_EVENT_BATCH_SIZE", "500"), ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")):
            env[key] = os.environ[key] = value
        print(f"instance on PostgreSQL {pg_url.rsplit('@', 1)[-1]}", flush=True)
    ref_tree = extract_ref(args.ref, Path(tempfile.mkdtemp(prefix="daily-startup-ref-")))
    new_tree, new_name = ROOT, "this tree"
    if args.new or args.only:
        new_tree = extract_ref(args.new or args.ref, Path(tempfile.mkdtemp(prefix="daily-startup-new-")))
        new_name = f"new {args.new}" if args.new else "ref + only"
        for path in args.only or []:
            (new_tree / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, new_tree / path)
    trees = {f"ref {args.ref}": ref_tree, new_name: new_tree}
    for tree in trees.values():
        # bytecode, as an installed package has it (this machine may set PYTHONDONTWRITEBYTECODE)
        compileall.compile_dir(str(tree / "trading_dagster"), quiet=1)
    if args.load_only:
        def measure(tree: Path) -> dict:
            return one_load(tree, env)

        for tree in trees.values():
            measure(tree)  # once untimed: each tree's first load may write the marts' specs snapshot
    else:
        session = setup(new_tree, workdir, args.data, args.sessions, env)
        print(f"daily session {session}; instance and data in {workdir}", flush=True)

        def measure(tree: Path) -> dict:
            return one_run(tree, session, env)

        for tree in trees.values():
            measure(tree)  # once untimed: the OS's file cache, the marts' specs snapshot

    results: dict[str, list[dict]] = {name: [] for name in trees}
    names = list(trees)
    for i in range(args.repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            r = measure(trees[name])
            results[name].append(r)
            phases = "" if args.load_only else (
                f"spawn->RUN_START {r['to_start']:5.2f}  run {r['run']:5.2f}  spawn->RUN_SUCCESS {r['to_success']:5.2f}  ")
            print(f"  {name:<12} {phases}exit {r['to_exit']:5.2f}  cpu {r['cpu']:5.2f}", flush=True)
    for tree in (ref_tree, new_tree):
        if tree != ROOT:
            shutil.rmtree(tree, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"\nmedians of {args.repeat} (seconds; ratio = this tree / ref):")
    ref, new = names
    keys = (("to_start", "spawn -> RUN_START"), ("run", "RUN_START -> RUN_SUCCESS"),
            ("to_success", "spawn -> RUN_SUCCESS"), ("to_exit", "spawn -> exit"), ("cpu", "CPU s (user + sys)"))
    for key, label in keys[3:] if args.load_only else keys:
        a, b = med(ref, key), med(new, key)
        print(f"  {label:<26}{a:7.2f}{b:7.2f}   x{b / a:.2f}")
    if args.load_only:
        return
    print("  steps: " + ", ".join(
        f"{s} {statistics.median(r['steps'].get(s, 0.0) for r in results[ref]):.2f} -> "
        f"{statistics.median(r['steps'].get(s, 0.0) for r in results[new]):.2f}"
        for s in results[new][0]["steps"]))
    verdict = "ok" if med(new, "to_success") < TARGET_S else "MISSED"
    print(f"target: spawn -> RUN_SUCCESS < {TARGET_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
