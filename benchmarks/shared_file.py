"""The shared dataset as the benchmarks compare engines on it: read, optionally cut to the first N symbols, and
cleaned by the pipeline's own `clean_prices` over the NYSE sessions from its first to its last date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl


def clean_shared_file(path: Path, symbols: int | None = None) -> tuple[pl.DataFrame, list[dt.date], list[dt.date]]:
    """(cleaned prices, the file's sessions, the whole NYSE calendar); `symbols`: the first N in alphabetical order."""
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.prices import clean_prices

    raw = pl.read_parquet(path)
    symbol_col = "ticker" if "ticker" in raw.columns else "symbol"
    if symbols:
        keep = raw[symbol_col].unique().sort().head(symbols).to_list()
        raw = raw.filter(pl.col(symbol_col).is_in(keep))
    date_col = "date" if "date" in raw.columns else "session"
    calendar = list(nyse_calendar().sessions)
    first, last = raw[date_col].min(), raw[date_col].max()
    sessions = [d for d in calendar if first <= d <= last]
    return clean_prices(raw, sessions).cleaned, sessions, calendar


def run_capped_child(cmd: list[str], out: Path, cap_gib: float) -> dict:
    """Run a benchmark's child process `cmd` (which writes its figures to `out` with a .json suffix), polling
    its RSS; kill it above `cap_gib` (the machine is shared) and report that. Returns the child's figures plus
    `wall_s`, or {"killed" | "failed", "wall_s", "peak_gib"}."""
    import json
    import subprocess
    import time

    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    watched = 0.0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                watched = max(watched, next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024**2)
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            pass
        if watched > cap_gib:
            proc.kill()
            proc.wait()
            return {"killed": True, "wall_s": time.perf_counter() - t, "peak_gib": watched}
        time.sleep(0.1)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "wall_s": time.perf_counter() - t, "peak_gib": watched}
    data = json.loads(out.with_suffix(".json").read_text())
    data["wall_s"] = time.perf_counter() - t
    return data
