"""The per-symbol stages (cleaning, indicators, signals) as 1 worker against N workers on symbol shards, and a
projection to a 10x universe (docs/scale.md).

    uv run --no-sync python benchmarks/fan_out.py [--data PATH] [--workers 2] [--symbols 20000]

Each worker is its own process (its own peak RSS), started at the same time as the others, and runs the domain
functions the assets call on ITS symbols only, over every session of the file:

    read      the shard's raw rows (a predicate on the symbol column of the shared Parquet file)
    clean     trading_dagster.domain.prices.clean_prices
    indicators trading_dagster.domain.indicators.compute_indicators_anchored (the anchored blocks of the asset)
    signals   trading_dagster.domain.strategies.generate_signals (the default strategies, the exchange calendar)

The 1-worker run is the reference, in the same invocation. The parent checks that the shards' outputs,
concatenated, are the 1-worker outputs row for row (the stages are per symbol), and prints rows per second,
the scaling factor, each worker's peak RSS, and the read/write volume a worker would move to and from S3:
its raw shard as one zstd Parquet object (a symbol-bucketed raw zone) against the whole file (the
session-partitioned raw zone of today, `raw/prices/date=.../prices.parquet`, where every shard must read every
session's object). Then a projection to `--symbols` symbols over the same ten years: wall time on N workers and
peak RSS per worker, from the rates and the RSS-per-row fit measured here. `nproc` and `uptime` are printed
before and after (the machine is shared: other processes compete for its 2 cores).
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
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"


def shard_of(symbol: str, shards: int) -> int:
    """A stable bucket per symbol (crc32): a new listing never moves an existing symbol to another bucket."""
    return zlib.crc32(symbol.encode()) % shards


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far: on a loaded machine, what its work costs a core."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def worker(data: Path, shard: int, shards: int, outdir: Path, spawned: float) -> dict:
    """One worker: the stages for the symbols of bucket `shard` of `shards`; writes its outputs under outdir.
    `spawned`: the parent's time.time() at the spawn (the imports' and interpreter's start-up are timed)."""
    import warnings

    warnings.filterwarnings("ignore")
    import polars as pl

    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.domain.prices import clean_prices
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

    startup = time.time() - spawned  # interpreter, polars and our domain modules
    cpu_startup = cpu_s()
    times: dict[str, float] = {}
    started = time.perf_counter()
    t = time.perf_counter()
    frame = pl.scan_parquet(data)
    symbol_col = "ticker" if "ticker" in frame.collect_schema().names() else "symbol"
    symbols = frame.select(pl.col(symbol_col).unique()).collect()[symbol_col].to_list()
    mine = sorted(s for s in symbols if shard_of(s, shards) == shard)
    raw = frame.filter(pl.col(symbol_col).is_in(mine)).collect()
    times["read"] = time.perf_counter() - t
    calendar = list(nyse_calendar().sessions)
    first, last = raw["date"].min(), raw["date"].max()
    sessions = [d for d in calendar if first <= d <= last]

    def timed(name, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        times[name] = time.perf_counter() - t
        return out

    cleaned = timed("clean", clean_prices, raw, sessions).cleaned
    indicators = timed(
        "indicators", compute_indicators_anchored, cleaned, calendar, sessions[0], sessions[-1]
    )
    signals = timed(
        "signals", generate_signals, indicators, DEFAULT_STRATEGIES, sessions[0], sessions[-1], calendar
    )
    total = time.perf_counter() - started
    cpu_work = cpu_s() - cpu_startup
    # what the worker would GET and PUT on S3: its raw bucket and its three outputs, as zstd Parquet objects
    sizes = {}
    t = time.perf_counter()
    for name, df in (("raw", raw), ("cleaned", cleaned), ("indicators", indicators), ("signals", signals)):
        path = outdir / f"{name}-{shard}-of-{shards}.parquet"
        df.write_parquet(path, compression="zstd")
        sizes[name] = path.stat().st_size
    write_s = time.perf_counter() - t
    cpu_write = cpu_s() - cpu_startup - cpu_work
    return {
        "shard": shard,
        "symbols": len(mine),
        "raw_rows": raw.height,
        "cleaned_rows": cleaned.height,
        "indicator_rows": indicators.height,
        "signal_rows": signals.height,
        "sessions": len(sessions),
        "times": times,
        "total_s": total,
        "startup_s": startup,
        "cpu_startup_s": cpu_startup,
        "cpu_s": cpu_work,
        "cpu_write_s": cpu_write,
        "write_s": write_s,
        "peak_rss_gib": peak_rss_gib(),
        "bytes": sizes,
    }


def run_workers(args, shards: int, outdir: Path) -> tuple[float, list[dict]]:
    """Start `shards` worker processes at once; (wall seconds until the last is done, their figures)."""
    t = time.perf_counter()
    procs = []
    for shard in range(shards):
        out = outdir / f"result-{shard}-of-{shards}.json"
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(shard),
            "--shards",
            str(shards),
            "--data",
            str(args.data),
            "--outdir",
            str(outdir),
            "--out",
            str(out),
            "--spawned",
            repr(time.time()),
        ]
        procs.append((subprocess.Popen(cmd, env={**os.environ, **threads_env(args.threads)}), out))
    results = []
    for proc, out in procs:
        if proc.wait() != 0:
            raise SystemExit(f"worker {out.name} failed ({proc.returncode})")
        results.append(json.loads(out.read_text()))
    return time.perf_counter() - t, results


def threads_env(threads: int) -> dict[str, str]:
    """Each worker's thread pools (polars, numba, BLAS) at `threads`: a worker is given that many cores, as a
    cluster task is, and the 1-worker reference is not secretly parallel."""
    n = str(threads)
    return {
        "POLARS_MAX_THREADS": n,
        "NUMBA_NUM_THREADS": n,
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
    }


def same_rows(outdir: Path, name: str, shards: int) -> bool:
    import polars as pl

    whole = pl.read_parquet(outdir / f"{name}-0-of-1.parquet")
    parts = pl.concat([pl.read_parquet(outdir / f"{name}-{s}-of-{shards}.parquet") for s in range(shards)])
    keys = [c for c in ("session", "symbol", "strategy") if c in whole.columns]
    return whole.sort(keys).equals(parts.sort(keys))


def load() -> str:
    return (
        f"nproc {os.cpu_count()}, {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workers", type=int, default=2, help="symbol shards run at once (against 1)")
    p.add_argument("--symbols", type=int, default=20_000, help="the universe to project to")
    p.add_argument("--threads", type=int, default=1, help="thread pools per worker (POLARS_MAX_THREADS, ...)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    p.add_argument("--shards", type=int, help=argparse.SUPPRESS)
    p.add_argument("--outdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        args.out.write_text(
            json.dumps(worker(args.data, args.worker, args.shards, args.outdir, args.spawned), default=str)
        )
        return
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: the benchmark needs the shared dataset (../shared/data)")
    print(f"data: {args.data} ({args.data.stat().st_size / 1e6:.1f} MB); {args.threads} thread(s) per worker")
    print(f"load before: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fan-out-") as tmp:
        outdir = Path(tmp)
        wall_1, (one,) = run_workers(args, 1, outdir)
        print(f"1 worker done in {wall_1:.1f} s; load: {load()}", flush=True)
        wall_n, many = run_workers(args, args.workers, outdir)
        print(f"{args.workers} workers done in {wall_n:.1f} s; load: {load()}", flush=True)
        equal = {name: same_rows(outdir, name, args.workers) for name in ("cleaned", "indicators", "signals")}
    report(args, one, wall_1, many, wall_n, equal)
    print(f"load after: {load()}")


def report(args, one: dict, wall_1: float, many: list[dict], wall_n: float, equal: dict) -> None:
    stages = list(one["times"])
    n = len(many)
    print()
    print(
        f"{one['symbols']:,} symbols, {one['sessions']:,} sessions, {one['raw_rows']:,} raw rows; shards by crc32 "
        f"of the symbol: " + ", ".join(f"{w['symbols']} symbols / {w['raw_rows']:,} rows" for w in many)
    )
    print(
        "the shards' outputs concatenated equal the 1-worker outputs: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in equal.items())
    )
    head = f"{'stage':<12}{'1 worker s':>12}" + "".join(
        f"{'shard ' + str(w['shard']) + ' s':>12}" for w in many
    )
    print(head)
    print("-" * len(head))
    mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
    put = lambda w: sum(v for k, v in w["bytes"].items() if k != "raw")  # noqa: E731

    def row(label: str, cell, note: str = "") -> None:
        """One line: the 1-worker figure, then each shard's; `cell` formats a worker's result."""
        print(f"{label:<12}{cell(one):>12}" + "".join(f"{cell(w):>12}" for w in many) + (f"   ({note})" if note else ""))

    for st in stages:
        row(st, lambda w, st=st: f"{w['times'][st]:.2f}")
    row("in worker", lambda w: f"{w['total_s']:.2f}")
    row("CPU s", lambda w: f"{w['cpu_s']:.2f}", "user + system of read..signals: the work on a core of its own")
    row("start-up", lambda w: f"{w['startup_s']:.2f}", "spawn to the first read: interpreter and imports")
    row("write", lambda w: f"{w['write_s']:.2f}", "the outputs as zstd Parquet, local disk")
    row("peak RSS GiB", lambda w: f"{w['peak_rss_gib']:.2f}")
    row(
        "S3 GET raw", lambda w: mb(w["bytes"]["raw"]),
        f"symbol-bucketed raw zone; session-partitioned: every shard reads all {mb(args.data.stat().st_size)}",
    )
    row("S3 PUT out", lambda w: mb(put(w)), "cleaned + indicators + signals")
    rows = one["raw_rows"]
    rate_1 = rows / one["total_s"]
    speedup = wall_1 / wall_n
    print(
        f"\nwall (spawn to last exit): 1 worker {wall_1:.1f} s, {n} workers {wall_n:.1f} s: speed-up {speedup:.2f}x "
        f"on {os.cpu_count()} cores ({100 * speedup / n:.0f}% of linear)"
    )
    print(
        f"rows per second, in the worker (wall): 1 worker {rate_1:,.0f}; {n} workers "
        + ", ".join(f"{w['raw_rows'] / w['total_s']:,.0f}" for w in many)
        + f" each, {rows / max(w['total_s'] for w in many):,.0f} together"
    )
    cpu_row_1 = one["cpu_s"] / rows
    cpu_row_n = sum(w["cpu_s"] for w in many) / sum(w["raw_rows"] for w in many)
    print(
        f"rows per CPU second: 1 worker {1 / cpu_row_1:,.0f}; {n} workers {1 / cpu_row_n:,.0f} "
        f"(CPU per row {cpu_row_n / cpu_row_1:.2f}x the 1-worker's: what running side by side costs each row)"
    )
    print(
        f"CPU scaling: {n} workers do the 1 worker's work in {max(w['cpu_s'] for w in many):.1f} CPU s on the "
        f"busiest, against {one['cpu_s']:.1f}: {one['cpu_s'] / max(w['cpu_s'] for w in many):.2f}x on {n} dedicated cores"
    )
    # projection: per-symbol work (read, stages, writes) is linear in rows; fixed cost per worker = start-up.
    # Time on a dedicated core = CPU time (this machine's load inflates wall time, not CPU time).
    per_row_cpu = sum(w["cpu_s"] + w["cpu_write_s"] for w in many) / sum(w["raw_rows"] for w in many)
    overhead = one["cpu_startup_s"]
    # RSS = base + k x rows, fitted on the 1-worker run and the largest shard
    big = max(many, key=lambda w: w["raw_rows"])
    k = (one["peak_rss_gib"] - big["peak_rss_gib"]) / max(1, rows - big["raw_rows"])
    base = one["peak_rss_gib"] - k * rows
    scale = args.symbols / one["symbols"]
    rows_x = rows * scale
    print(
        f"\nprojection to {args.symbols:,} symbols x {one['sessions']:,} sessions (~{rows_x / 1e6:.0f} M rows, "
        f"{scale:.1f}x the file), from the runs above: {per_row_cpu * 1e6:.2f} CPU us per row side by side "
        f"(writes included), {overhead:.1f} CPU s start-up per worker; RSS {base:.2f} GiB + "
        f"{k * 1e6 * 1024:.0f} MiB per M rows:"
    )
    print(f"{'workers':>8}{'symbols/worker':>16}{'rows/worker':>14}{'time s':>10}{'RSS/worker GiB':>16}")
    for workers in (1, 2, 4, 8, 16, 32, 64):
        per = rows_x / workers
        print(
            f"{workers:>8}{args.symbols / workers:>16,.0f}{per:>14,.0f}{overhead + per * per_row_cpu:>10.1f}"
            f"{base + k * per:>16.2f}"
        )
    print(
        "time s: each worker on a core of its own (a cluster task), from CPU time; the sequential stages "
        "(orders, executions, P&L) and S3 transfer times are not included"
    )


if __name__ == "__main__":
    main()
