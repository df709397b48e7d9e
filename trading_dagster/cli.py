"""`trading-dagster`: the commands a new user meets first.

    trading-dagster demo                 load the shipped sample into the raw store, backfill every session
                                         through P&L in one run, print the report
    trading-dagster backfill --start D --end D [--skip-raw]
    trading-dagster import FILE.. [--run] merge your OHLCV files/folders (CSV/Parquet) into raw session partitions
    trading-dagster status               what a data revision made stale
    trading-dagster refresh [--dry-run]  re-run exactly the stale partitions, upstream first
    trading-dagster ui [--port 3000]     the Dagster UI on the same history
    trading-dagster portal               rebuild the portal's pages (upcoming orders, per-strategy equity,
                                         configuration, emergency controls); demo does it at its end
    trading-dagster prepare [--force]    parse the dbt project (dbt_project/target/manifest.json); demo and ui
                                         run it when the manifest is missing
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

DAGSTER_YAML = """\
# Written by trading-dagster. One SQLite file for the event log, through Dagster's consolidated SQLite
# storage plus a batched write of a range run's per-partition materializations (the CLI sets
# DAGSTER_EVENT_BATCH_SIZE): trading_dagster/event_log.py, docs/decisions/0002-dagster-bookkeeping.md.
event_log_storage:
  module: trading_dagster.event_log
  class: BatchedSqliteEventLogStorage
  config:
    base_dir: {home}/history
# One writing run at a time: runs launched from the UI, schedules and sensors wait in the queue while
# another run of the pipeline's jobs is in progress (decision 0004, section 6).
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    tag_concurrency_limits:
      - key: "trading_dagster/writer"
        limit: 1
telemetry:
  enabled: false
"""


def ensure_dagster_home(path: str | None) -> Path:
    """DAGSTER_HOME (default ./.dagster_home) with a dagster.yaml, so the UI sees the same history."""
    home = Path(path or os.environ.get("DAGSTER_HOME") or ".dagster_home").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML.format(home=home))
    os.environ["DAGSTER_HOME"] = str(home)
    # One planned-materialization event per asset for a range run instead of one per partition: halves
    # Dagster's bookkeeping for a ten-year backfill (docs/decisions/0002-dagster-bookkeeping.md). The cost:
    # if such a run fails, the UI does not mark its partitions as failed (the run itself shows failed).
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    # Hand a range run's per-partition materializations to the event log 500 at a time: one transaction
    # each in BatchedSqliteEventLogStorage (dagster.yaml above), one INSERT on PostgreSQL (decision 0002).
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "500")
    return home


# The code location the runs belong to in the UI (workspace.yaml's location, Definitions' repository): the
# job pages and the Overview timeline list a run by this tag, which in-process runs do not get by themselves.
UI_RUN_TAGS = {".dagster/repository": "__repository__@trading_dagster"}


def last_data_session(settings) -> dt.date | None:
    """The raw store's last session with an object (None for an empty store): one listing of the store."""
    from trading_dagster.resources.configured import LocalRawStoreResource, S3RawStoreResource

    if settings.raw_store == "s3":
        store = S3RawStoreResource(
            bucket=settings.s3_bucket, prefix=settings.s3_prefix, region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
        ).get()
    else:
        store = LocalRawStoreResource(local_root=str(settings.raw_root)).get()
    sessions = store.list_sessions()
    return sessions[-1] if sessions else None


def partitions_environment(
    settings, environ: Mapping[str, str] | None = None, *, today: dt.date | None = None
) -> dict[str, str]:
    """{TRADING_DAGSTER_LAST_SESSION: value} for the processes that load the definitions (partitions.py): the
    value in `environ` (default os.environ) when set, checked; else `today` in the paper and live environments
    or when the data is current, else the raw store's last session (historical data). Every process started
    from one with this environment (dagster dev, the webserver, its code server, run workers) sees the same
    partitions."""
    from trading_dagster.partitions import (
        LAST_SESSION_ENV,
        last_session_setting,
        new_york_today,
        parse_last_session,
        session_calendar,
    )

    environ = os.environ if environ is None else environ
    today = today or new_york_today()
    given = environ.get(LAST_SESSION_ENV)
    if given:
        parse_last_session(given, session_calendar(), today)  # refuse a bad value here, with its message
        return {LAST_SESSION_ENV: given}
    last = last_data_session(settings)
    value = last_session_setting(last, session_calendar(), today, live_environment=settings.environment != "dev")
    return {LAST_SESSION_ENV: value}


def set_partitions_environment(settings) -> str:
    """Set TRADING_DAGSTER_LAST_SESSION in this process, before the definitions are imported (`ui`, `portal`:
    a process of its own), and say it."""
    from trading_dagster.partitions import LAST_SESSION_ENV, TODAY

    try:
        env = partitions_environment(settings)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    os.environ.update(env)
    value = env[LAST_SESSION_ENV]
    why = "the data is current" if value == TODAY else "the last session with data (historical data)"
    print(f"partitions end: {value} ({LAST_SESSION_ENV}; {why})", flush=True)
    return value


def _quiet_warnings() -> None:
    import warnings

    import dagster as dg

    for w in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=w)


def backfill_definitions(environ: dict | None = None):
    """(settings, definitions) for `environ` (default: the process's): `run_backfill` and Dagster, rebuilding
    its job from this module (`backfill_pipeline_job`), share one build (`definitions_for`)."""
    from trading_dagster.definitions import definitions_for
    from trading_dagster.settings import load_settings

    settings = load_settings(environ)
    return settings, definitions_for(settings)


def run_backfill(start: dt.date, end: dt.date, *, skip_raw: bool = False, environ: dict | None = None) -> dict:
    """One single-run backfill of [start, end] through P&L on the instance in DAGSTER_HOME, then performance.

    Executed with `execute_job`, as a run worker executes a run, not `execute_in_process`: that one keeps every
    step's output in memory until the run ends, to return them (Dagster's output capture), so a ten-year
    backfill held the cleaned bars, the indicators, the signals and the orders at once by its P&L step. Here
    each step's frames are freed when the step is done."""
    import dagster as dg

    from trading_dagster.partitions import session_calendar

    _quiet_warnings()
    settings, defs = backfill_definitions(environ)
    cal = session_calendar()
    sessions = cal.between(start, end)
    if not sessions:
        raise SystemExit(f"no NYSE session between {start} and {end}")
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("pipeline_job")
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    tags = {
        **UI_RUN_TAGS,
        "dagster/asset_partition_range_start": sessions[0].isoformat(),
        "dagster/asset_partition_range_end": sessions[-1].isoformat(),
    }
    selection = None
    if skip_raw:
        selection = [k for k in job.asset_layer.executable_asset_keys if k != dg.AssetKey(["raw", "raw_prices"])]
    print(f"backfill {sessions[0]}..{sessions[-1]}: {len(sessions)} sessions in one run", flush=True)
    t0 = time.time()
    # Dagster records the reconstructor's arguments in the run (its code origin): `environ` may hold secrets,
    # so only a key of this process's registry goes there
    key = None
    if environ is not None:
        key = uuid.uuid4().hex
        _BACKFILL_ENVIRONS[key] = environ
    reconstructable = dg.build_reconstructable_job(
        "trading_dagster.cli", "backfill_pipeline_job", reconstructable_kwargs={"environ_key": key}
    )
    try:
        with dg.execute_job(
            reconstructable, instance=instance, tags=tags, run_config=run_config, raise_on_error=False,
            asset_selection=selection,
        ) as result:
            success, run_id = result.success, result.run_id
            checks = list(result.get_asset_check_evaluations())
    finally:
        _BACKFILL_ENVIRONS.pop(key, None)
    perf = defs.resolve_job_def("performance_job").execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False, tags=UI_RUN_TAGS
    ) if success else None
    if perf is not None:
        checks += perf.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    return {
        "success": success and (perf is None or perf.success),
        "run_id": run_id,
        "seconds": time.time() - t0,
        "checks_passed": sum(1 for c in checks if c.passed),
        "checks_failed": sum(1 for c in failed if c.severity == dg.AssetCheckSeverity.ERROR),
        "failed_checks": [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in failed],
        "warnings": [f"{c.check_name}: {c.description}" for c in failed if c.severity == dg.AssetCheckSeverity.WARN],
        "settings": settings,
        "sessions": sessions,
    }


_BACKFILL_ENVIRONS: dict[str, dict] = {}
"""The `environ` of each `run_backfill` in progress in this process, by the key its run records."""


def backfill_pipeline_job(environ_key: str | None = None):
    """The reconstructor `run_backfill` names to Dagster: `pipeline_job` of `backfill_definitions(environ)`,
    the environ found by its key in this process (None: the process's environment)."""
    if environ_key is not None and environ_key not in _BACKFILL_ENVIRONS:
        raise RuntimeError("a backfill's pipeline_job is rebuilt only in the process that runs it (run_backfill)")
    environ = None if environ_key is None else _BACKFILL_ENVIRONS[environ_key]
    return backfill_definitions(environ)[1].resolve_job_def("pipeline_job")


def print_report(outcome: dict) -> None:
    import duckdb
    import polars as pl

    from trading_dagster.domain.metrics import performance_summary
    from trading_dagster.reporting import format_report, write_plot

    settings = outcome["settings"]
    first, last = outcome["sessions"][0], outcome["sessions"][-1]
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        def q(sql: str) -> pl.DataFrame:
            return con.execute(sql, [first, last]).pl()

        equity = q("select * from pnl.equity where session between ? and ? order by session")
        orders = q("select status, count(*) n from trading.orders where session between ? and ? group by status")
        fills = q("select count(*) n from trading.executions where event = 'filled' and session between ? and ?")
        symbols = q("select count(distinct symbol) n from prices.cleaned_prices where session between ? and ?")
    finally:
        con.close()
    counts = dict(zip(orders["status"].to_list(), orders["n"].to_list(), strict=True))
    trading = settings.trading
    assert trading is not None
    benchmark = trading.benchmark
    plot = write_plot(equity, benchmark, settings.data_dir / "reports" / "equity_curve.png")
    facts = {
        "symbols": int(symbols["n"][0]),
        "orders_approved": int(counts.get("approved", 0)),
        "orders_denied": int(counts.get("denied", 0)),
        "fills": int(fills["n"][0]),
        "initial_cash": trading.initial_cash,
        "benchmark": benchmark,
        "checks_passed": outcome["checks_passed"],
        "checks_failed": outcome["checks_failed"],
        "warnings": outcome["warnings"],
        "seconds": outcome["seconds"],
        "plot": plot,
    }
    print(format_report(performance_summary(equity), facts))


def prepare_manifest(*, force: bool = False) -> float | None:
    """`dbt parse` of dbt_project/ when its manifest is missing or older than a file of the project (or with
    `force`): the manifest the dbt assets are built from. Seconds taken, or None when the manifest was already there."""
    import subprocess

    from trading_dagster.assets.dbt import dbt_executable
    from trading_dagster.dbt_project_def import dbt_project

    manifest = dbt_project.manifest_path
    if manifest.exists() and not force:
        built = manifest.stat().st_mtime
        sources = (p for p in Path(dbt_project.project_dir).rglob("*") if p.suffix in {".sql", ".yml"})
        if all(p.stat().st_mtime <= built for p in sources if "target" not in p.parts):
            return None  # present and newer than every model, test, macro and YAML file
    t0 = time.time()
    d = str(dbt_project.project_dir)
    cmd = [dbt_executable(), "parse", "--project-dir", d, "--profiles-dir", d, "--quiet"]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not dbt_project.manifest_path.exists():
        raise SystemExit(f"dbt parse failed ({' '.join(cmd)}):\n{done.stdout}{done.stderr}")
    return time.time() - t0


def cmd_prepare(args: argparse.Namespace) -> int:
    seconds = prepare_manifest(force=args.force)
    from trading_dagster.assets.dbt import SPECS_SNAPSHOT, marts_specs
    from trading_dagster.dbt_project_def import dbt_project

    took = "already there" if seconds is None else f"dbt parse {seconds:.1f} s"
    print(f"dbt manifest: {dbt_project.manifest_path} ({took})")
    # the marts' asset specs as dagster-dbt derives them, snapshotted beside the manifest: a run worker (and
    # every container of the image, built with `trading-dagster prepare`) then loads the definitions without
    # importing dagster-dbt or dbt-core (~1 s)
    specs, _ = marts_specs()
    print(f"marts specs: {SPECS_SNAPSHOT} ({len(specs)} assets)")
    return 0


def run_marts(start: dt.date, end: dt.date, *, environ: dict | None = None) -> dict:
    """`marts_job` (the dbt build of the marts and their tests) for [start, end], on the instance in
    DAGSTER_HOME."""
    from contextlib import redirect_stdout

    import dagster as dg

    from trading_dagster.definitions import build_definitions
    from trading_dagster.settings import load_settings

    settings = load_settings(environ)
    defs = build_definitions(settings)
    t0 = time.time()
    log = settings.data_dir / "reports" / "dbt_build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out, redirect_stdout(out):  # dbt's own lines (dagster-dbt writes them to stdout)
        result = defs.resolve_job_def("marts_job").execute_in_process(
            instance=dg.DagsterInstance.get(),
            tags={
                **UI_RUN_TAGS,
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
            # ERROR: the staging models' dbt tests run (indirect selection) but are observations, not checks
            # (the staging models are ephemeral, not assets), each with a warning
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            raise_on_error=False,
        )
    return {"success": result.success, "run_id": result.run_id, "seconds": time.time() - t0, "log": log}


def cmd_demo(args: argparse.Namespace) -> int:
    from trading_dagster.resources.market_data import FileMarketDataSource
    from trading_dagster.settings import load_settings

    home = ensure_dagster_home(args.dagster_home)
    settings = load_settings()
    if args.fresh:
        for p in (settings.data_dir, home / "history"):
            shutil.rmtree(p, ignore_errors=True)
        ensure_dagster_home(str(home))
    start, end = FileMarketDataSource(settings.market_data_file).date_range()
    if args.sessions:
        from trading_dagster.partitions import session_calendar

        end = session_calendar().offset(session_calendar().between(start, end)[0], args.sessions - 1) or end
    print(f"DAGSTER_HOME={home}\ndata: {settings.data_dir}\nmarket data: {settings.market_data_file}")
    prepare_manifest()
    outcome = run_backfill(start, end)
    if not outcome["success"]:
        print(f"run failed: {outcome['failed_checks'] or 'see the errors above'} (run {outcome['run_id']})")
        return 1
    print_report(outcome)
    marts = run_marts(outcome["sessions"][0], outcome["sessions"][-1])
    if not marts["success"]:
        print(f"marts (dbt) failed: see {marts['log']} and the run {marts['run_id']} (trading-dagster ui)")
        return 1
    print(f"marts (dbt build of the models and their tests): {marts['seconds']:.1f} s; schema `marts` of "
          f"{settings.warehouse_path}; dbt's log {marts['log']}")
    # the portal's pages in a process of their own, with the partitions the UI will show (this process keeps
    # its definitions: the environment is read when they are imported, and a test may run `demo` in-process)
    import subprocess

    cmd = [sys.executable, "-m", "trading_dagster.cli", "--dagster-home", str(home), "portal"]
    if subprocess.run(cmd, env={**os.environ, **partitions_environment(settings)}, check=False).returncode != 0:
        print("portal pages failed (above); see the run in the UI (trading-dagster ui)")
        return 1
    return 0


def cmd_portal(args: argparse.Namespace) -> int:
    """Rebuild the portal's pages (group `portal`) with the partitions `ui` shows."""
    from trading_dagster.settings import load_settings

    _quiet_warnings()
    ensure_dagster_home(args.dagster_home)
    set_partitions_environment(load_settings())
    portal = run_portal()
    if not portal["success"]:
        print(f"portal pages failed: see the run {portal['run_id']} (trading-dagster ui)")
        return 1
    print("portal pages (upcoming orders, per-strategy equity, configuration, emergency controls, quantstats tear sheet): group `portal`")
    return 0


def run_portal(*, environ: dict | None = None) -> dict:
    """`portal_job`: the portal's pages from the warehouse and the configuration, on the instance in DAGSTER_HOME."""
    import dagster as dg

    from trading_dagster.definitions import build_definitions
    from trading_dagster.settings import load_settings

    defs = build_definitions(load_settings(environ))
    result = defs.resolve_job_def("portal_job").execute_in_process(
        instance=dg.DagsterInstance.get(),
        tags=UI_RUN_TAGS,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        raise_on_error=False,
    )
    return {"success": result.success, "run_id": result.run_id}


def cmd_backfill(args: argparse.Namespace) -> int:
    ensure_dagster_home(args.dagster_home)
    outcome = run_backfill(args.start, args.end, skip_raw=args.skip_raw)
    if not outcome["success"]:
        print(f"run failed: {outcome['failed_checks'] or 'see the errors above'} (run {outcome['run_id']})")
        return 1
    print_report(outcome)
    return 0


def _run_errors(result: object) -> str:
    """The step failures of a run as one line each: the user's exception at the end of each cause chain."""
    lines = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None:
                first = error.message.strip().splitlines()[0] if error.message.strip() else ""
                lines.append(f"{error.cls_name}: {first}")
    return "\n".join(lines) or "the run failed (see it in the UI: trading-dagster ui)"


def cmd_import(args: argparse.Namespace) -> int:
    """Merge vendor files into the raw store as ONE delivery (decision 0004, sections 1 and 2): every file
    and folder named is read first; file-level garbage refuses the whole delivery (exit 2) before anything is
    written; otherwise one raw_prices run merges it per (symbol, session), and the import's manifest is
    printed: sessions added / revised / unchanged, empty and all-null sessions, rejected rows with reasons
    and examples, ignored columns."""
    import dagster as dg

    from trading_dagster.definitions import build_definitions
    from trading_dagster.domain.bars import PriceDataError
    from trading_dagster.domain.raw_merge import format_import, prepare_delivery, refuse_if_nothing_accepted
    from trading_dagster.domain.vendor_files import VendorFileError, find_vendor_files, read_delivery
    from trading_dagster.partitions import session_calendar
    from trading_dagster.settings import load_settings

    _quiet_warnings()
    ensure_dagster_home(args.dagster_home)
    now = dt.datetime.now(dt.UTC)
    try:
        paths = [p.resolve() for p in find_vendor_files(args.files)]
        vendor = read_delivery(paths)
    except VendorFileError as e:
        print(f"cannot import {e.path}: {e.detail}", file=sys.stderr)
        return 2
    label = paths[0].name if len(paths) == 1 else f"{len(paths)} files ({paths[0].name} .. {paths[-1].name})"
    try:
        delivery = prepare_delivery(
            vendor.rows,
            session_calendar(),
            now,
            order_columns=vendor.order_columns,
            ignored_columns=vendor.ignored_columns,
            sources=vendor.sources,
        )
        refuse_if_nothing_accepted(delivery)
    except PriceDataError as e:
        print(f"cannot import {paths[0] if len(paths) == 1 else label}: {e}", file=sys.stderr)
        return 2
    sessions = delivery.span
    del vendor, delivery  # the run reads the files again: do not hold a second copy of every row meanwhile
    print(f"importing {label}: {len(sessions)} sessions {sessions[0]}..{sessions[-1]} into the raw store", flush=True)
    defs = build_definitions(load_settings())
    config = {"import_paths": [str(p) for p in paths], "as_of": now.isoformat()}
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.get(),
        asset_selection=[dg.AssetKey(["raw", "raw_prices"])],
        run_config={
            "ops": {"raw__raw_prices": {"config": config}},
            # the manifest below is the report; Dagster's own lines (and any stack trace) stay in the run's log
            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        },
        tags={
            "dagster/asset_partition_range_start": sessions[0].isoformat(),
            "dagster/asset_partition_range_end": sessions[-1].isoformat(),
        },
        raise_on_error=False,
    )
    if not result.success:
        print(f"import failed (run {result.run_id}, nothing was lost):\n{_run_errors(result)}", file=sys.stderr)
        return 1
    (first, *_) = result.get_asset_materialization_events()
    store = defs.resources["raw_store"].get()
    for line in format_import(store.read_manifest(str(first.materialization.metadata["import_id"].value))):
        print(line)
    print("imported. Run the pipeline on it with:")
    print(f"    uv run trading-dagster backfill --start {sessions[0]} --end {sessions[-1]} --skip-raw")
    if args.run:
        return cmd_backfill(
            argparse.Namespace(start=sessions[0], end=sessions[-1], skip_raw=True, dagster_home=args.dagster_home)
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """What a revision made stale (decision 0004 section 5), and the runs that would refresh it."""
    from trading_dagster.automation.staleness import describe, refresh_plan, stale_report
    from trading_dagster.resources.quality_gate import QualityGate
    from trading_dagster.settings import load_settings

    ensure_dagster_home(args.dagster_home)
    report = stale_report(QualityGate(load_settings().quality_gate_path))
    if not report:
        print("up to date: no partition was computed from data that changed since")
        return 0
    print("stale (computed from raw data that has changed since):")
    for line in describe(report):
        print(f"  {line}")
    print("refresh runs, in order (`trading-dagster refresh` runs them):")
    for run in refresh_plan(report):
        print(f"  {run.label}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Re-run exactly the stale partitions, upstream first, each stage as one single-run range."""
    import dagster as dg

    from trading_dagster.automation.staleness import describe, execute_refresh, refresh_plan, stale_report
    from trading_dagster.definitions import build_definitions
    from trading_dagster.resources.quality_gate import QualityGate
    from trading_dagster.settings import load_settings

    _quiet_warnings()
    ensure_dagster_home(args.dagster_home)
    settings = load_settings()
    gate = QualityGate(settings.quality_gate_path)
    if args.dry_run:
        plan = refresh_plan(stale_report(gate))
        for i, run in enumerate(plan, 1):
            print(f"refresh {i}/{len(plan)}: {run.label}")
        print("up to date: nothing to refresh" if not plan else "(dry run: nothing was run)")
        return 0
    ok, plan = execute_refresh(build_definitions(settings), dg.DagsterInstance.get(), gate, announce=lambda m: print(m, flush=True))
    if not plan:
        print("up to date: nothing to refresh")
        return 0
    if not ok:
        return 1
    left = stale_report(gate)
    for line in describe(left):
        print(f"still stale: {line}", file=sys.stderr)
    print("refreshed." if not left else "some partitions are still stale (above).")
    return 0 if not left else 1


# the lineage with every group open: the asset graph reads `expanded` from its URL (group ids `global@global:<group>`)
LINEAGE_GROUPS = ("raw", "prices", "indicators", "signals", "trading", "pnl", "marts", "execution", "portal")
LINEAGE_PATH = "/asset-groups?expanded=" + ",".join(f"global@global:{g}" for g in LINEAGE_GROUPS)
PORTAL_PATH = "/locations/trading_dagster/asset-groups/portal"  # the group's page in the workspace's location


def cmd_ui(args: argparse.Namespace) -> int:
    from trading_dagster.settings import REPO_ROOT, load_settings

    home = ensure_dagster_home(args.dagster_home)
    set_partitions_environment(load_settings())  # inherited by dagster dev's webserver, daemon and run workers
    prepare_manifest()
    dagster = shutil.which("dagster") or str(Path(sys.executable).parent / "dagster")
    cmd = [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    url = f"http://{args.host}:{args.port}"
    print(f"DAGSTER_HOME={home}\n{' '.join(cmd)}", flush=True)
    print(f"lineage, every group open: {url}{LINEAGE_PATH}", flush=True)
    print(f"portal (upcoming orders, per-strategy equity, configuration, emergency controls): {url}{PORTAL_PATH}")
    os.execv(cmd[0], cmd)
    return 0  # not reached


def run_trade(
    session: dt.date, *, environ: dict | None = None, reconcile: bool = True, plan: bool = False
) -> dict:
    """Session D's approved orders to the configured broker: `execution_job` for D (the code the execution
    sensor launches), then one `reconcile_job` poll, on the instance in DAGSTER_HOME; with `plan`,
    `execution_orders_job` first (D's orders planned against the account now). The broker's clock decides
    whether D may go out (only during D+1, before its close) and may be planned (D is still the latest
    completed session until D+1's close)."""
    import dagster as dg

    from trading_dagster.definitions import build_definitions
    from trading_dagster.settings import load_settings

    settings = load_settings(environ)
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    out: dict = {"settings": settings, "session": session}
    jobs = ["execution_orders_job"] if plan else []
    jobs += ["execution_job", "reconcile_job"] if reconcile else ["execution_job"]
    for name in jobs:
        result = defs.resolve_job_def(name).execute_in_process(
            instance=instance,
            partition_key=session.isoformat(),
            run_config=run_config,
            raise_on_error=False,
            tags=UI_RUN_TAGS,
        )
        out[name] = result
        if not result.success:
            break
    return out


def _failure_message(result) -> str:
    """The first step failure's message, without the stack trace."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and (
                error.message.startswith("dagster._core.errors") or "Error occurred while executing" in error.message
            ):
                error = error.cause
            return error.message.strip().splitlines()[0] if error.message else "failed"
    return "failed"


def cmd_trade(args: argparse.Namespace) -> int:
    ensure_dagster_home(args.dagster_home)
    outcome = run_trade(args.session, reconcile=not args.no_reconcile, plan=args.plan)
    settings = outcome["settings"]
    print(f"broker: {settings.broker} ({settings.environment}); session {args.session}")
    for name in ("execution_orders_job", "execution_job", "reconcile_job"):
        result = outcome.get(name)
        if result is None:
            continue
        if not result.success:
            print(f"{name}: FAILED: {_failure_message(result)}", file=sys.stderr)
            return 1
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            shown = {
                k: v.value
                for k, v in mat.metadata.items()
                if k.startswith(("outcome_", "status_", "all_final", "executions", "equity", "day_pnl"))
            }
            if shown:
                print(f"{mat.asset_key.to_user_string()}: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trading-dagster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dagster-home", help="Dagster instance folder (default: $DAGSTER_HOME or ./.dagster_home)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="backfill the shipped sample through P&L and print the report")
    p.add_argument("--fresh", action="store_true", help="delete the data folder and run history first")
    p.add_argument("--sessions", type=int, help="only the first N sessions of the sample")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("backfill", help="one single-run backfill of a session range through P&L")
    p.add_argument("--start", type=dt.date.fromisoformat, required=True)
    p.add_argument("--end", type=dt.date.fromisoformat, required=True)
    p.add_argument("--skip-raw", action="store_true", help="use the raw partitions already in the store")
    p.set_defaults(func=cmd_backfill)
    p = sub.add_parser(
        "import",
        help="merge OHLCV files (CSV or Parquet; files and folders, one delivery) into the raw session partitions",
    )
    p.add_argument("files", nargs="+", metavar="FILE_OR_FOLDER")
    p.add_argument("--run", action="store_true", help="then run the pipeline over the imported sessions")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("status", help="what a data revision made stale, and the runs that would refresh it")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("refresh", help="re-run exactly the partitions a data revision made stale, upstream first")
    p.add_argument("--dry-run", action="store_true", help="print the runs without running them")
    p.set_defaults(func=cmd_refresh)
    p = sub.add_parser("trade", help="submit session D's approved orders to the configured broker, exactly once")
    p.add_argument("--session", type=dt.date.fromisoformat, required=True, help="the signal session D")
    p.add_argument("--no-reconcile", action="store_true", help="do not poll the fills afterwards")
    p.add_argument("--plan", action="store_true", help="plan D's orders against the account first")
    p.set_defaults(func=cmd_trade)
    from trading_dagster.cli_control import add_control_commands  # Dagster: only when parsing

    add_control_commands(sub)
    p = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the same history")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("portal", help="rebuild the portal's pages in the UI (demo does it at its end)")
    p.set_defaults(func=cmd_portal)
    p = sub.add_parser("prepare", help="parse the dbt project into dbt_project/target/manifest.json")
    p.add_argument("--force", action="store_true", help="parse even when the manifest exists")
    p.set_defaults(func=cmd_prepare)
    args = parser.parse_args(argv)
    _quiet_warnings()  # before the definitions are imported: Dagster's beta/preview notices are not for users
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
