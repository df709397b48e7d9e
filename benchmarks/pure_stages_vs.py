"""Raw write, raw read, cleaning and the raw/cleaned checks of this tree against another revision's, in the same
run: each side runs in its own child process (its own imports and peak RSS), alternating, `--rounds` times.

    .venv/bin/python benchmarks/pure_stages_vs.py [--rev e869c24] [--rounds 2] [--data PATH]

The other revision's `trading_dagster` is exported with `git archive` into a temporary folder and put first on
PYTHONPATH; both use this venv. The checks are those of raw and cleaned in full_backfill's pure run (rules.py,
the GX suites, flag_outages); the GX import is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"
STAGES = ("raw_write", "raw_read", "clean", "checks", "gx_import")

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from trading_dagster.domain.prices import clean_prices
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.market_data import FileMarketDataSource
from trading_dagster.resources.raw_store import LocalRawStore

cal = session_calendar()
source = FileMarketDataSource(Path(sys.argv[1]))
source.load()
first, last = source.date_range()
sessions = cal.between(first, last)
bars = source.fetch_bars(sessions[0], sessions[-1])
times = {}

def timed(name, fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    times[name] = time.perf_counter() - t
    return out

with tempfile.TemporaryDirectory(prefix="pure-vs-") as d:
    store = LocalRawStore(Path(d) / "lake")
    timed("raw_write", store.write_sessions, bars, cal)
    raw = timed("raw_read", store.read_sessions, sessions)
cleaned = timed("clean", clean_prices, raw, sessions).cleaned
from trading_dagster.checks import gx_suites, rules
from trading_dagster.domain.quality import flag_outages

timed("gx_import", gx_suites.warm_up)

def checks():
    rules.every_session_has_rows(raw.rename({"date": "session"}), sessions)
    gx_suites.validate("raw", raw, sessions=sessions)
    rules.unique_keys(cleaned, ["symbol", "session"])
    rules.cleaned_prices_sane(cleaned)
    rules.every_session_has_rows(cleaned, sessions)
    gx_suites.validate("cleaned", cleaned, sessions=sessions)
    flag_outages(raw, sessions, None, cal)

timed("checks", checks)
import trading_dagster
print(json.dumps({"times": times, "rows": cleaned.height, "module": trading_dagster.__file__}))
"""


def run(source_root: str, data: Path) -> dict:
    """One child with `source_root`'s trading_dagster first on sys.path, started in that folder (`python -c`
    puts the working directory first, so the checkout it starts in would win otherwise)."""
    env = {**os.environ, "PYTHONPATH": source_root}
    cmd = [sys.executable, "-c", CHILD, str(data)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=source_root)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(source_root):
        sys.exit(f"the child imported {result['module']}, not the trading_dagster of {source_root}")
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--rev",
        default="e869c24",
        help="the revision to compare with (default: before issue 12's stage work)",
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pure-vs-rev-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.rev, "trading_dagster"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        best: dict[str, dict[str, float]] = {"this tree": {}, args.rev: {}}
        for r in range(args.rounds):
            for side, path in ((args.rev, tmp), ("this tree", str(ROOT))):
                result = run(path, args.data)
                for stage, s in result["times"].items():
                    best[side][stage] = min(s, best[side].get(stage, float("inf")))
                print(
                    f"  round {r + 1} {side:<10} "
                    + "  ".join(f"{k} {v:.2f}" for k, v in result["times"].items()),
                    flush=True,
                )
    print(f"best of {args.rounds} (seconds)   {args.rev:>10}  this tree   ratio")
    for stage in STAGES:
        old, new = best[args.rev][stage], best["this tree"][stage]
        print(f"  {stage:<12} {old:>16.2f}  {new:>9.2f}   {old / new:5.1f}x")
    stages = [s for s in STAGES if s != "gx_import"]
    old, new = sum(best[args.rev][s] for s in stages), sum(best["this tree"][s] for s in stages)
    print(f"  {'total':<12} {old:>16.2f}  {new:>9.2f}   {old / new:5.1f}x   (without the GX import)")


if __name__ == "__main__":
    main()
