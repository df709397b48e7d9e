"""Outage flags (domain/quality.py) on both shared datasets: which sessions the rule flags on each whole
file and how long it takes, and what the outage baseline costs a daily run (the raw history it reads).

    python benchmarks/outage_flags.py [--daily-sessions 5]

Each whole file is judged as one window (every session of the file, no earlier history), in a fresh
process so its peak RSS is its own. The daily part writes the last OUTAGE_HISTORY_SESSIONS + a few
sessions of the main file into a local raw store in a temp folder, then times what a one-session run of
cleaned_prices reads before its window: the HISTORY_SESSIONS (10) sessions cleaning needs, against the
OUTAGE_HISTORY_SESSIONS (82) the outage baseline needs, and the flag computation itself.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trading_dagster.domain.calendar import nyse_calendar  # noqa: E402
from trading_dagster.domain.prices import HISTORY_SESSIONS  # noqa: E402
from trading_dagster.domain.quality import (  # noqa: E402
    OUTAGE_HISTORY_SESSIONS,
    flag_outages,
    outage_sessions,
    outage_stretches,
)
from trading_dagster_tests.shared_data import shared_data_file  # noqa: E402

FILES = {"main": "us_equities_etfs_daily_2008_2017.parquet", "nasdaq": "nasdaq_traded_2017_2023.parquet"}


def _load(name: str) -> pl.DataFrame:
    main = shared_data_file()
    if main is None:
        raise SystemExit("shared dataset not found: set TRADING_DAGSTER_SHARED_DATA")
    cal = nyse_calendar()
    bars = pl.read_parquet(main.parent / FILES[name], columns=["ticker", "date", "close", "volume"])
    # rows on a non-session (the NASDAQ file's CLM 2018-01-15) are rejected at import, never in the raw zone
    return bars.rename({"ticker": "symbol"}).filter(pl.col("date").is_in(list(cal.sessions)))


def whole_file(name: str) -> None:
    cal = nyse_calendar()
    bars = _load(name)
    window = cal.between(bars["date"].min(), bars["date"].max())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    flags = flag_outages(bars, window, None, cal)
    seconds = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = outage_sessions(flags)
    print(
        f"{name}: {len(window):,} sessions, {bars.height:,} rows, {bars['symbol'].n_unique():,} symbols: "
        f"{out.height} flagged in {seconds:.2f} s (peak RSS {rss1 / 1024:,.0f} MiB, "
        f"+{(rss1 - rss0) / 1024:,.0f} MiB over the loaded file)"
    )
    for row in out.iter_rows(named=True):
        print(f"  {row['session']} {row['reason']}: {row['detail']}")
    print("  as stretches: " + "; ".join(s.label() for s in outage_stretches(out)))


def daily(sessions: int) -> None:
    from trading_dagster.resources.raw_store import LocalRawStore

    cal = nyse_calendar()
    bars = _load("main")
    days = cal.between(bars["date"].min(), bars["date"].max())[-(OUTAGE_HISTORY_SESSIONS + sessions) :]
    raw = pl.read_parquet(shared_data_file(), columns=["ticker", "date", "open", "high", "low", "close", "volume"])
    raw = raw.rename({"ticker": "symbol"}).filter(pl.col("date").is_in(days))
    with tempfile.TemporaryDirectory() as folder:
        store = LocalRawStore(folder)
        store.write_sessions(raw, cal)
        reads = {HISTORY_SESSIONS: [], OUTAGE_HISTORY_SESSIONS: []}
        flag_times = []
        for day in days[-sessions:]:
            for n in reads:
                t = time.perf_counter()
                _, history = store.read_existing(cal.before(day, n))
                reads[n].append(time.perf_counter() - t)
            t = time.perf_counter()
            flag_outages(store.read_sessions([day]), [day], history, cal)
            flag_times.append(time.perf_counter() - t)
        size = sum(p.stat().st_size for p in Path(folder).rglob("prices.parquet")) / len(days)
    for n, times in reads.items():
        print(
            f"daily run, main file: reading the {n} raw sessions before the window: median "
            f"{statistics.median(times) * 1000:.0f} ms over {sessions} sessions (local store, ~{size / 1024:.0f} KiB "
            "an object)"
        )
    print(f"daily run: flag_outages for the session with its history: median {statistics.median(flag_times) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", choices=sorted(FILES), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--daily-sessions", type=int, default=5)
    args = parser.parse_args()
    if args.one:
        whole_file(args.one)
        return
    for name in FILES:
        subprocess.run([sys.executable, __file__, "--one", name], check=True)
    daily(args.daily_sessions)


if __name__ == "__main__":
    main()
