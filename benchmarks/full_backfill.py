"""Full shared dataset through raw -> P&L: the Dagster single-run backfill against the domain functions alone.

    python3 -m uv run python benchmarks/full_backfill.py [--data PATH] [--sessions N] [--postgres]
                                                          [--pure-only | --dagster-only]

Runs two child processes on the same data (so each has its own peak RSS):
  pure     the domain functions called directly, stage by stage (file -> raw store -> clean -> indicators ->
           signals -> orders -> paper broker -> P&L), no Dagster, no IO manager;
  dagster  `pipeline_job` as ONE single-run backfill of every session on an on-disk Dagster instance
           (DAGSTER_HOME in a temp folder, configured like the demo's), then one daily session through all
           stages as its own run, in this process and in a fresh one (`dagster job execute`, as a run worker).
and prints wall time per stage, totals, peak RSS, and the ratio of the Dagster run to pure compute. Both compute
the same backtest (the default configuration: the split hold-out, the calendar's previous session, no book
events on split-adjusted bars); the report says whether their orders, fills and final equity are equal.
`--postgres` also runs the Dagster backfill on a throwaway PostgreSQL 15 (Debian's postgresql-15, installed where
missing as the tests do) with deploy/dagster.yaml's three storages, our event log among them; compute logs stay
local (benchmarks/README.md). `--pg-event-batch N` sets DAGSTER_EVENT_BATCH_SIZE=N for that child only (default
500, what the CLI and the containers set): Dagster hands a single-run backfill's per-partition materializations
of one output to the event log N at a time, which stores them in one INSERT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"
# issue 12's targets
TARGETS = {"pure_s": 20.0, "full_backfill_s": 60.0, "peak_rss_gib": 3.0, "daily_session_s": 5.0}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


# --------------------------------------------------------------------------------------------- pure


def run_pure(data: Path, sessions_limit: int | None, workdir: Path) -> dict:
    from decimal import Decimal

    import polars as pl

    from trading_dagster.domain import indicators as ind
    from trading_dagster.domain.execution import (
        CommissionModel,
        SlippageModel,
        opens_by_session,
        orders_by_session,
    )
    from trading_dagster.domain.metrics import performance_summary
    from trading_dagster.domain.pnl import mark_to_market
    from trading_dagster.domain.portfolio import PortfolioState, plan_orders
    from trading_dagster.domain.prices import clean_prices
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals
    from trading_dagster.partitions import session_calendar
    from trading_dagster.resources.backtest_book import SimulatedBook
    from trading_dagster.resources.market_data import FileMarketDataSource
    from trading_dagster.resources.raw_store import LocalRawStore

    times: dict[str, float] = {}
    cal = session_calendar()

    def timed(name, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        times[name] = time.perf_counter() - t
        print(f"  pure {name:<12} {times[name]:7.2f} s", flush=True)
        return out

    from trading_dagster.checks import gx_suites, rules
    from trading_dagster.domain.quality import flag_outages, hold_out_unexplained_breaks

    strategies = DEFAULT_STRATEGIES
    risk = RiskConfig()

    def checked(*calls) -> None:
        """A stage's checks right after it, as its Dagster step evaluates them (added up as "checks"), so the
        stage's frames can go once the stages after it no longer read them, as in the run."""
        t = time.perf_counter()
        for call in calls:
            call()
        times["checks"] = times.get("checks", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    gx_suites.warm_up()  # the one-off GX import (~1-3.5 s) counts too, as in the Dagster run's first check
    times["checks"] = time.perf_counter() - t
    source = FileMarketDataSource(data)
    timed("load_source", source.load)  # read and normalize the whole file once (cached by the source)
    first, last = source.date_range()
    sessions = cal.between(first, last)[: sessions_limit or None]
    bars = source.fetch_bars(sessions[0], sessions[-1])
    store = LocalRawStore(workdir / "lake")
    timed("raw_write", store.write_sessions, bars, cal)
    del bars, source  # the run's raw step returns; the file's frames are not kept
    raw = timed("raw_read", store.read_sessions, sessions)
    checked(
        lambda: rules.every_session_has_rows(raw.rename({"date": "session"}), sessions),
        lambda: gx_suites.validate("raw", raw, sessions=sessions),
    )
    cleaning = timed("clean", clean_prices, raw, sessions)
    cleaned, breaks = cleaning.cleaned, cleaning.breaks
    del cleaning
    checked(
        lambda: rules.unique_keys(cleaned, ["symbol", "session"]),
        lambda: rules.cleaned_prices_sane(cleaned),
        lambda: rules.every_session_has_rows(cleaned, sessions),
        lambda: gx_suites.validate("cleaned", cleaned, sessions=sessions),
        lambda: flag_outages(raw, sessions, None, cal),
    )
    raw = None  # the stages after cleaning do not read the raw bars: freed, as when the run's step returns
    indicators = timed("indicators", ind.compute_indicators_anchored, cleaned, cal.sessions, sessions[0], sessions[-1])
    checked(
        lambda: rules.indicators_in_bounds(indicators),
        lambda: rules.unique_keys(indicators, ["symbol", "session"]),
        lambda: gx_suites.validate("indicators", indicators, sessions=sessions),
    )
    def signal(indicators):
        # as the signals step: the calendar's previous session (a cross never spans a data outage), and the
        # buys of a symbol with an unexplained split confirmed in the last year held out
        fired = generate_signals(indicators, strategies, sessions[0], sessions[-1], cal.sessions)
        return hold_out_unexplained_breaks(fired, breaks, cal.sessions)[0]

    signals = timed("signals", signal, indicators)
    indicators = None
    checked(
        lambda: rules.signals_valid(signals),
        lambda: rules.unique_keys(signals, ["session", "symbol", "strategy"]),
        lambda: gx_suites.validate("signals", signals, sessions=sessions, strategies=strategies),
    )
    slip, comm = SlippageModel(), CommissionModel()
    orders = timed(
        "orders", plan_orders, signals, cleaned, PortfolioState.initial(risk.initial_cash), cal.sessions, risk, slip, comm, "paper"
    )
    signals = None
    checked(
        lambda: rules.orders_within_limits(orders, risk.monthly_share_limit),
        lambda: gx_suites.validate("orders", orders, sessions=sessions, strategies=strategies),
    )

    def execute(orders):
        opens = opens_by_session(cleaned)
        approved = orders.filter(pl.col("status") == "approved")
        by_session = orders_by_session(approved, status=None)
        with SimulatedBook(str(workdir / "ledger.duckdb"), initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm) as b:
            for s in sessions:
                b.sync(s, opens.get(s, {}))
                if s in by_session:
                    b.submit(by_session[s], s)
            return b.events(sessions[0], sessions[-1])

    events = timed("executions", execute, orders)
    checked(
        lambda: rules.executions_match_orders(events, orders),
        lambda: rules.fills_within_monthly_quota(events, risk.monthly_share_limit, window=sessions),
        lambda: rules.no_nulls(events, ["session", "client_order_id", "symbol", "event", "order_session", "qty", "commission"]),
        lambda: rules.sessions_in_window(events, sessions),
    )
    n_orders = orders.height
    orders = None
    fills = events.filter(pl.col("event") == "filled")
    positions, equity = timed("pnl", mark_to_market, PortfolioState.initial(risk.initial_cash), fills, cleaned, sessions, "SPY")
    checked(
        lambda: rules.no_nulls(positions, ["session", "symbol", "qty", "close", "market_value"]),
        lambda: rules.sessions_in_window(positions, sessions),
        lambda: rules.sessions_in_window(equity, sessions),
        lambda: rules.equity_identity(equity),
        lambda: rules.equity_matches_fills(equity, positions, events, risk.initial_cash),
    )
    summary = timed("performance", performance_summary, equity)
    times["checks"] = times.pop("checks")  # listed last
    print(f"  pure {'checks':<12} {times['checks']:7.2f} s (after each stage, as in the run)", flush=True)
    return {
        "times": times,
        "total_s": sum(times.values()),
        "peak_rss_gib": peak_rss_gib(),
        "rows": cleaned.height,
        "symbols": cleaned["symbol"].n_unique(),
        "sessions": len(sessions),
        "orders": n_orders,
        "fills": fills.height,
        "final_equity": summary["final_equity"],
    }


# ------------------------------------------------------------------------------------------ dagster


STEP_STAGE = {
    "raw__raw_prices": "raw",
    "cleaned_prices": "clean",
    "indicators__indicators": "indicators",
    "signals__signals": "signals",
    "trading__orders": "orders",
    "trading__executions": "executions",
    "pnl": "pnl",
}


def step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """{stage: (start, end)} wall-clock timestamps of each step of the run."""
    from dagster import DagsterEventType

    starts, out = {}, {}
    for rec in instance.all_logs(run_id):
        ev = rec.dagster_event
        if ev is None or ev.step_key is None:
            continue
        if ev.event_type == DagsterEventType.STEP_START:
            starts[ev.step_key] = rec.timestamp
        elif ev.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            out[STEP_STAGE.get(ev.step_key, ev.step_key)] = (starts[ev.step_key], rec.timestamp)
    return out


def step_times(instance, run_id: str) -> dict[str, float]:
    return {stage: end - start for stage, (start, end) in step_windows(instance, run_id).items()}


class RssSampler:
    """The process's resident set (VmRSS) every `every` seconds in a thread, to tell which step holds the peak."""

    def __init__(self, every: float = 0.25) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        status = Path("/proc/self/status")
        while not self._stop.is_set():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.time(), int(line.split()[1]) / 1024**2))
            self._stop.wait(every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_by_window(self, windows: dict[str, tuple[float, float]]) -> dict[str, float]:
        """{stage: the highest RSS sampled inside its window, GiB}."""
        return {
            stage: max((rss for t, rss in self.samples if start <= t <= end), default=0.0)
            for stage, (start, end) in windows.items()
        }


def daily_in_fresh_process(instance, session) -> dict:
    """The session again, the way a scheduled run meets it: a new process loads the code location and
    executes `pipeline_job` for the partition (`dagster job execute`, what a run worker does), imports
    (Dagster, ours, GX) included. Timed from the spawn to the RUN_SUCCESS event Dagster records, from
    RUN_START to RUN_SUCCESS (the run's duration in the UI), and to the process's exit (Python's own
    teardown after the run is done, ~1-2 s with GX loaded)."""
    import compileall

    from dagster import DagsterEventType

    # bytecode for our package, as an installed one has it (uv compiles site-packages at install, but the
    # project is installed editable, and this machine sets PYTHONDONTWRITEBYTECODE: ~0.2 s otherwise)
    compileall.compile_dir(str(ROOT / "trading_dagster"), quiet=1)
    spawned = time.time()
    cold = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "trading_dagster.definitions", "-a", "defs",
         "-j", "pipeline_job", "--tags", json.dumps({"dagster/partition": str(session)})],
        capture_output=True, text=True,
    )
    exited = time.time()
    if cold.returncode != 0:
        raise SystemExit(f"daily run in a fresh process failed:\n{cold.stdout[-3000:]}\n{cold.stderr[-3000:]}")
    run = instance.get_runs(limit=1)[0]
    stamps = {
        r.dagster_event.event_type: r.timestamp
        for r in instance.all_logs(run.run_id)
        if r.dagster_event and r.dagster_event.event_type in (DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS)
    }
    if DagsterEventType.RUN_SUCCESS not in stamps:
        raise SystemExit(f"daily run {run.run_id} did not succeed: {run.status}")
    return {
        "daily_cold_s": stamps[DagsterEventType.RUN_SUCCESS] - spawned,
        "daily_cold_run_s": stamps[DagsterEventType.RUN_SUCCESS] - stamps[DagsterEventType.RUN_START],
        "daily_cold_exit_s": exited - spawned,
        "daily_cold_steps": step_times(instance, run.run_id),
    }


def backfill_outcome(warehouse: Path) -> dict:
    """What the backfill traded, read from the warehouse it wrote: its orders, fills and final equity (the same
    figures the pure run returns, to tell that both computed the same backtest)."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        orders = con.sql("SELECT count(*) FROM trading.orders").fetchone()[0]
        fills = con.sql("SELECT count(*) FROM trading.executions WHERE event = 'filled'").fetchone()[0]
        equity = con.sql("SELECT equity FROM pnl.equity ORDER BY session DESC LIMIT 1").fetchone()[0]
    return {"orders": orders, "fills": fills, "final_equity": float(equity)}


def instance_storage_mb(home: Path, storage: str) -> float:
    """What the instance's storage holds after the backfill: the SQLite files under DAGSTER_HOME, or the
    PostgreSQL database's size (runs, event log, schedules; after TOAST's compression)."""
    if not storage.startswith("postgres"):
        return sum(f.stat().st_size for f in home.rglob("*.db")) / 1e6
    import sqlalchemy as sa

    engine = sa.create_engine(os.environ["BENCH_PG_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one() / 1e6
    finally:
        engine.dispose()


def same_backtest(pure: dict, d: dict) -> bool:
    return (pure["orders"], pure["fills"], round(pure["final_equity"], 2)) == (
        d["orders"], d["fills"], round(d["final_equity"], 2)
    )


def run_dagster(data: Path, sessions_limit: int | None, workdir: Path, storage: str) -> dict:
    os.environ["TRADING_DAGSTER_DATA_DIR"] = str(workdir / "data")
    os.environ["TRADING_DAGSTER_MARKET_DATA_FILE"] = str(data)
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if storage.startswith("postgres"):
        # The whole instance (runs, event log, schedules) on PostgreSQL, as deploy/dagster.yaml configures it
        from benchmarks.pg import production_storage_yaml

        (home / "dagster.yaml").write_text(production_storage_yaml(os.environ["BENCH_PG_URL"]))
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg
    from dagster import DagsterEventType

    from trading_dagster.cli import ensure_dagster_home, run_backfill
    from trading_dagster.partitions import session_calendar
    from trading_dagster.resources.market_data import FileMarketDataSource

    ensure_dagster_home(str(home))
    with dg.DagsterInstance.get():  # create the storage tables (one-off, ~2.5 s on PostgreSQL) before the clock
        pass
    first, last = FileMarketDataSource(data).date_range()
    sessions = session_calendar().between(first, last)[: sessions_limit or None]
    t, called = time.perf_counter(), time.time()
    with RssSampler() as rss:
        full = run_backfill(sessions[0], sessions[-1])
    full_s = time.perf_counter() - t
    if not full["success"]:
        raise SystemExit(f"dagster backfill failed: {full['failed_checks']}")
    instance = dg.DagsterInstance.get()
    windows = step_windows(instance, full["run_id"])
    steps = {stage: end - start for stage, (start, end) in windows.items()}
    step_rss = rss.peak_by_window(windows)
    logs = instance.all_logs(full["run_id"])
    events = len(logs)
    run_start = next(r.timestamp for r in logs if r.dagster_event and r.dagster_event.event_type == DagsterEventType.RUN_START)
    del logs
    outcome = backfill_outcome(workdir / "data" / "warehouse.duckdb")
    storage_mb = instance_storage_mb(home, storage)
    t = time.perf_counter()
    daily = run_backfill(sessions[-1], sessions[-1])
    daily_s = time.perf_counter() - t
    cold = daily_in_fresh_process(instance, sessions[-1])
    return {
        "storage": storage,
        "full_s": full_s,
        "steps": steps,
        "step_peak_rss_gib": step_rss,
        "run_events": events,
        "to_run_start_s": run_start - called,
        "storage_mb": storage_mb,
        **outcome,
        "daily_s": daily_s,
        **cold,
        "daily_steps": step_times(instance, daily["run_id"]),
        "daily_success": daily["success"],
        "checks_passed": full["checks_passed"],
        "checks_failed": full["checks_failed"],
        "peak_rss_gib": peak_rss_gib(),
    }


# ------------------------------------------------------------------------------------------ driver


def child(mode: str, args: argparse.Namespace, extra_env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", mode, "--data", str(args.data), "--out", str(out), "--workdir", tmp]
        if args.sessions:
            cmd += ["--sessions", str(args.sessions)]
        subprocess.run(cmd, check=True, env={**os.environ, **(extra_env or {})})
        return json.loads(out.read_text())


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report_pure(pure: dict) -> None:
    print()
    print(f"full dataset: {pure['symbols']:,} symbols, {pure['sessions']:,} sessions, {pure['rows']:,} cleaned rows; "
          f"{pure['orders']:,} orders, {pure['fills']:,} fills, final equity ${pure['final_equity']:,.2f}")
    for st, v in pure["times"].items():
        print(f"{st:<14}{v:>9.2f}")
    print(f"{'total':<14}{pure['total_s']:>9.2f}")
    print(f"pure targets: compute < {TARGETS['pure_s']:.0f} s: {verdict(pure['total_s'] < TARGETS['pure_s'])}; "
          f"peak RSS {pure['peak_rss_gib']:.2f} GiB < {TARGETS['peak_rss_gib']:.0f} GiB: "
          f"{verdict(pure['peak_rss_gib'] < TARGETS['peak_rss_gib'])}")


def report_dagster(d: dict, pure: dict | None) -> None:
    steps_sum = sum(d["steps"].values())
    ratio = f" = {d['full_s'] / pure['total_s']:.1f}x pure compute ({pure['total_s']:.1f} s)" if pure else ""
    print(f"\ndagster on {d['storage']}: {d['full_s']:.1f} s{ratio}; steps {steps_sum:.1f} s ("
          + ", ".join(f"{k} {v:.1f}" for k, v in d["steps"].items())
          + f"), run creation and the rest {d['full_s'] - steps_sum:.1f} s (the call to RUN_START: definitions "
          f"and run creation, {d['to_run_start_s']:.1f} s); the instance's storage {d['storage_mb']:,.0f} MB after it; "
          "peak RSS GiB inside each step: "
          + ", ".join(f"{k} {v:.2f}" for k, v in d.get("step_peak_rss_gib", {}).items()) + "; "
          f"{d['run_events']:,} events in the run's log; checks {d['checks_passed']} passed, {d['checks_failed']} failed")
    print(f"  one daily session through all stages, as a scheduled run meets it: {d['daily_cold_s']:.1f} s from "
          f"a fresh process's spawn to RUN_SUCCESS, of which the run itself (RUN_START..RUN_SUCCESS, the UI's "
          f"duration) {d['daily_cold_run_s']:.1f} s (steps: "
          + ", ".join(f"{k} {v:.2f}" for k, v in d["daily_cold_steps"].items())
          + f"); the process exits at {d['daily_cold_exit_s']:.1f} s; {d['daily_s']:.1f} s in the warm benchmark process")
    if pure:
        print(f"  the same backtest as the pure run: {verdict(same_backtest(pure, d))} (Dagster: {d['orders']:,} "
              f"orders, {d['fills']:,} fills, final equity ${d['final_equity']:,.2f}; pure: {pure['orders']:,}, "
              f"{pure['fills']:,}, ${pure['final_equity']:,.2f})")
    daily = TARGETS["daily_session_s"]
    print(f"  targets: Dagster backfill < {TARGETS['full_backfill_s']:.0f} s: {verdict(d['full_s'] < TARGETS['full_backfill_s'])}; "
          f"peak RSS {d['peak_rss_gib']:.2f} GiB < {TARGETS['peak_rss_gib']:.0f} GiB: "
          f"{verdict(d['peak_rss_gib'] < TARGETS['peak_rss_gib'])}; "
          f"daily session < {daily:.0f} s from the spawn of a fresh process: {verdict(d['daily_cold_s'] < daily)} "
          f"(the run alone: {verdict(d['daily_cold_run_s'] < daily)})"
          + (f"; Dagster's own share (backfill - pure) {d['full_s'] - pure['total_s']:.1f} s" if pure else ""))


def report(pure: dict | None, dag: list[dict]) -> None:
    if pure is None:
        for d in dag:
            report_dagster(d, None)
        return
    if not dag:
        report_pure(pure)
        return
    stages = list(pure["times"])
    print()
    print(f"full dataset: {pure['symbols']:,} symbols, {pure['sessions']:,} sessions, {pure['rows']:,} cleaned rows; "
          f"{pure['orders']:,} orders, {pure['fills']:,} fills, final equity ${pure['final_equity']:,.2f}")
    w = max(20, *(len(d["storage"]) + 12 for d in dag))
    head = f"{'stage':<14}{'pure s':>9}" + "".join(f"{'dagster/' + d['storage'] + ' s':>{w}}" for d in dag)
    print(head)
    print("-" * len(head))
    merged = {"load_source": "raw", "raw_write": "raw", "raw_read": "clean", "performance": None, "checks": None}
    shown = set()
    for st in stages:
        stage = merged.get(st, st)
        cells = ""
        for d in dag:
            v = d["steps"].get(stage) if stage and stage not in shown else None
            cells += f"{v:>{w}.2f}" if v is not None else f"{'':>{w}}"
        if stage:
            shown.add(stage)
        print(f"{st:<14}{pure['times'][st]:>9.2f}{cells}")
    print("-" * len(head))
    print(f"{'total':<14}{pure['total_s']:>9.2f}" + "".join(f"{d['full_s']:>{w}.2f}" for d in dag))
    print(f"{'peak RSS GiB':<14}{pure['peak_rss_gib']:>9.2f}" + "".join(f"{d['peak_rss_gib']:>{w}.2f}" for d in dag))
    quality = pure["times"]["clean"] + pure["times"]["checks"]
    rest = pure["total_s"] - quality
    print(f"\ncleaning + all checks (pure): {quality:.1f} s (clean {pure['times']['clean']:.1f} s, checks "
          f"{pure['times']['checks']:.1f} s) = +{100 * quality / rest:.0f}% on the rest of the pure backfill ({rest:.1f} s)"
          + "".join(f"; {100 * quality / d['full_s']:.0f}% of the Dagster/{d['storage']} backfill" for d in dag)
          + " (target: at most +30%)")
    print(f"pure targets: compute {pure['total_s']:.1f} s < {TARGETS['pure_s']:.0f} s: "
          f"{verdict(pure['total_s'] < TARGETS['pure_s'])}; peak RSS {pure['peak_rss_gib']:.2f} GiB < "
          f"{TARGETS['peak_rss_gib']:.0f} GiB: {verdict(pure['peak_rss_gib'] < TARGETS['peak_rss_gib'])}")
    for d in dag:
        report_dagster(d, pure)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sessions", type=int, help="only the first N sessions (a quicker look)")
    p.add_argument("--postgres", action="store_true", help="also run on a throwaway PostgreSQL instance storage")
    p.add_argument("--pg-event-batch", type=int, default=0, metavar="N",
                   help="DAGSTER_EVENT_BATCH_SIZE=N for the postgres child (default: 500, as the CLI and the containers)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--pure-only", action="store_true", help="only the pure child (no Dagster run)")
    only.add_argument("--dagster-only", action="store_true", help="only the Dagster child(ren) (no pure reference)")
    p.add_argument("--child")
    p.add_argument("--out", type=Path)
    p.add_argument("--workdir", type=Path)
    args = p.parse_args()
    if args.pg_event_batch and not args.postgres:
        p.error("--pg-event-batch needs --postgres")
    if args.child:
        import warnings

        warnings.filterwarnings("ignore")
        if args.child == "pure":
            result = run_pure(args.data, args.sessions, args.workdir)
        else:
            result = run_dagster(args.data, args.sessions, args.workdir, args.child)
        args.out.write_text(json.dumps(result, default=str))
        return
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: the benchmark needs the shared dataset (../shared/data)")
    print(f"data: {args.data}", flush=True)
    pure = None if args.dagster_only else child("pure", args)
    dag = [] if args.pure_only else [child("sqlite", args)]
    if args.postgres and not args.pure_only:
        from benchmarks.pg import throwaway_postgres

        env, label = {}, "postgres"
        if args.pg_event_batch:
            env["DAGSTER_EVENT_BATCH_SIZE"] = str(args.pg_event_batch)
            label += f"+batch{args.pg_event_batch}"
        with throwaway_postgres() as url:
            env["BENCH_PG_URL"] = url
            dag.append(child(label, args, env))
    report(pure, dag)


if __name__ == "__main__":
    main()
