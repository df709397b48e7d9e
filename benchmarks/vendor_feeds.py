"""Both shared datasets end to end, side by side: the import and the full backfill, timed, and every flag counted.

    python3 -m uv run python benchmarks/vendor_feeds.py [--only main|nasdaq]

For each dataset (the curated 2008-2017 file and the messier NASDAQ-traded 2017-2023 file), in a fresh data
folder and Dagster home:
  1. `trading-dagster import FILE` (a new process: the merge into the local raw store, the manifest), timed;
  2. `trading-dagster backfill --start FIRST --end LAST --skip-raw` (one single-run backfill of every session
     through P&L on the CLI's SQLite instance, then the performance job and the report), timed;
and then it reads what the runs wrote: rejected rows by reason, the quarantine by reason, confirmed breaks,
data outages, the ledger's book events, orders and fills. Peak RSS is each process's own (wait4).
The NASDAQ file holds no SPY, so its report warns that there is no benchmark comparison; that is expected.
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "main": SHARED / "us_equities_etfs_daily_2008_2017.parquet",
    "nasdaq": SHARED / "nasdaq_traded_2017_2023.parquet",
}


def timed_process(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, exit code) of one child process; its output goes to `log`."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024**2, os.waitstatus_to_exitcode(status)


def counts(data_dir: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        out = {
            "cleaned_rows": q("select count(*) from prices.cleaned_prices")[0][0],
            "symbols": q("select count(distinct symbol) from prices.cleaned_prices")[0][0],
            "quarantine": dict(q("select reason, count(*) from prices.price_quarantine group by 1 order by 2 desc")),
            "breaks": dict(q("select kind, count(*) from prices.price_breaks group by 1")),
            "break_examples": [
                f"{s} {b} x{r:g}" if r else f"{s} {b} collapse"
                for s, b, r in q("select symbol, break_date, share_ratio from prices.price_breaks order by break_date limit 6")
            ],
            "outages": [f"{s} {r}" for s, r in q("select session, reason from prices.data_outages order by session")],
            "orders": dict(q("select status, count(*) from trading.orders group by 1")),
            "events": dict(q("select event, count(*) from trading.executions group by 1")),
        }
    finally:
        con.close()
    rejected, empty, all_null, ignored = {}, [], [], set()
    for path in (data_dir / "lake" / "raw" / "imports").glob("*.json"):  # the import's manifest
        manifest = json.loads(path.read_text())
        for reason, n in (manifest.get("rejected") or {}).items():
            rejected[reason] = rejected.get(reason, 0) + n
        empty += manifest.get("empty_sessions", [])
        all_null += manifest.get("all_null_sessions", [])
        ignored |= set(manifest.get("ignored_columns", {}))
    out.update(rejected=rejected, empty_sessions=empty, all_null_sessions=all_null, ignored_columns=sorted(ignored))
    return out


def run_dataset(name: str, path: Path, workdir: Path) -> dict:
    env = {
        **os.environ,
        "TRADING_DAGSTER_DATA_DIR": str(workdir / "data"),
        "DAGSTER_HOME": str(workdir / "home"),
        "TRADING_DAGSTER_MARKET_DATA_FILE": str(path),
    }
    cli = [sys.executable, "-m", "trading_dagster.cli"]
    print(f"{name}: import {path.name} ...", flush=True)
    import_s, import_rss, code = timed_process([*cli, "import", str(path)], env, workdir / "import.log")
    if code != 0:
        raise SystemExit(f"{name}: import failed (exit {code}):\n{(workdir / 'import.log').read_text()[-3000:]}")
    import polars as pl

    span = pl.scan_parquet(path).select(pl.col("date").min().alias("a"), pl.col("date").max().alias("b")).collect()
    first, last = span.row(0)
    print(f"{name}: backfill {first}..{last} ...", flush=True)
    backfill_s, backfill_rss, code = timed_process(
        [*cli, "backfill", "--start", str(first), "--end", str(last), "--skip-raw"], env, workdir / "backfill.log"
    )
    report = (workdir / "backfill.log").read_text()
    if code != 0:
        raise SystemExit(f"{name}: backfill failed (exit {code}):\n{report[-3000:]}")
    summary = [line for line in report.splitlines() if line.startswith(("period", "final equity", "cumulative", "Sharpe", "max drawdown", "benchmark", "checks", "wall time"))]
    return {
        "name": name,
        "file": path.name,
        "import_s": import_s,
        "import_rss_gib": import_rss,
        "backfill_s": backfill_s,
        "backfill_rss_gib": backfill_rss,
        "report": summary,
        **counts(workdir / "data"),
    }


def show(results: list[dict]) -> None:
    print()
    width = 26
    print(f"{'':<28}" + "".join(f"{r['name']:>{width}}" for r in results))
    rows = [
        ("import (new process) s", lambda r: f"{r['import_s']:.1f}"),
        ("  peak RSS GiB", lambda r: f"{r['import_rss_gib']:.2f}"),
        ("backfill + report s", lambda r: f"{r['backfill_s']:.1f}"),
        ("  peak RSS GiB", lambda r: f"{r['backfill_rss_gib']:.2f}"),
        ("symbols / cleaned rows", lambda r: f"{r['symbols']:,} / {r['cleaned_rows']:,}"),
        ("orders approved / denied", lambda r: f"{r['orders'].get('approved', 0):,} / {r['orders'].get('denied', 0):,}"),
        ("fills", lambda r: f"{r['events'].get('filled', 0):,}"),
    ]
    for label, cell in rows:
        print(f"{label:<28}" + "".join(f"{cell(r):>{width}}" for r in results))
    for r in results:
        print(f"\n{r['name']} ({r['file']}):")
        print(f"  rejected at import: {r['rejected'] or 'none'}; empty sessions: {r['empty_sessions'] or 'none'}; "
              f"all-null sessions: {r['all_null_sessions'] or 'none'}; ignored columns: {r['ignored_columns'] or 'none'}")
        print(f"  quarantined: {r['quarantine']}")
        print(f"  confirmed breaks: {r['breaks'] or 'none'} (first: {', '.join(r['break_examples']) or '-'})")
        print(f"  data outages: {', '.join(r['outages']) or 'none'}")
        ledger = {k: v for k, v in r["events"].items() if k not in ("accepted", "filled", "expired")}
        print(f"  book events: {ledger or 'none'}; expired orders: {r['events'].get('expired', 0):,}")
        for line in r["report"]:
            print(f"  | {line}")
    print(f"\nmeasured {dt.datetime.now():%Y-%m-%d %H:%M} on {os.cpu_count()} cores")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=sorted(DATASETS))
    args = p.parse_args()
    results = []
    for name, path in DATASETS.items():
        if args.only and name != args.only:
            continue
        if not path.exists():
            raise SystemExit(f"{path} not found: the benchmark needs the shared datasets (../shared/data)")
        with tempfile.TemporaryDirectory(prefix=f"vendor-{name}-") as tmp:
            results.append(run_dataset(name, path, Path(tmp)))
    show(results)


if __name__ == "__main__":
    main()
