"""The pure "executions" and "pnl" stages of benchmarks/full_backfill.py, this tree against another revision's
backtest book, fill model, order records and mark-to-market, in the same run, with their outputs compared.

    .venv/bin/python benchmarks/exec_pnl.py [--rev a261d30] [--rounds 3] [--cache /tmp/stage-cache]

Inputs are the full dataset's stage outputs as the pure benchmark builds them (`cleaned.parquet`,
`orders.parquet`: /tmp/stage-cache/make.py). "executions" is full_backfill's `execute` (the opens and the
approved orders by session, a SimulatedBook on a ledger file synced and submitted to session by session, then
`events()`, the ledger closed); "pnl" is `mark_to_market` of its fills. Each side runs in its own child process,
alternating, `--rounds` times; the other revision's side is this tree's `trading_dagster` with only the five
modules of this work (`MODULES`) taken from `--rev`, so nothing else that changed in between is timed. Every
round's executions, positions and equity frames must equal the other side's, row for row, value for value
(`DataFrame.equals`), or the script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "trading_dagster/domain/execution.py",
    "trading_dagster/domain/pnl.py",
    "trading_dagster/domain/orders.py",
    "trading_dagster/domain/book_events.py",
    "trading_dagster/resources/backtest_book.py",
)
STAGES = ("executions", "pnl")

CHILD = r"""
import gc, json, sys, tempfile, time
from decimal import Decimal
from pathlib import Path
import polars as pl
from trading_dagster.domain.execution import CommissionModel, SlippageModel, opens_by_session, orders_by_session
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.backtest_book import SimulatedBook

cache, out = Path(sys.argv[1]), Path(sys.argv[2])
cleaned = pl.read_parquet(cache / "cleaned.parquet")
orders = pl.read_parquet(cache / "orders.parquet")
sessions = session_calendar().between(cleaned["session"].min(), cleaned["session"].max())
risk = RiskConfig()
slip, comm = SlippageModel(), CommissionModel()
times = {}

cpu = {}

def timed(name, fn, *a):
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    result = fn(*a)
    times[name] = time.perf_counter() - t
    cpu[name] = time.process_time() - c
    return result

with tempfile.TemporaryDirectory(prefix="exec-pnl-") as workdir:
    def execute():
        opens = opens_by_session(cleaned)
        approved = orders.filter(pl.col("status") == "approved")
        by_session = orders_by_session(approved, status=None)
        book = SimulatedBook(str(Path(workdir) / "ledger.duckdb"), initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm)
        with book as b:
            for s in sessions:
                b.sync(s, opens.get(s, {}))
                if s in by_session:
                    b.submit(by_session[s], s)
            return b.events(sessions[0], sessions[-1])

    events = timed("executions", execute)
fills = events.filter(pl.col("event") == "filled")
positions, equity = timed("pnl", mark_to_market, PortfolioState.initial(risk.initial_cash), fills, cleaned, sessions, "SPY")
events.write_parquet(out / "events.parquet")
positions.write_parquet(out / "positions.parquet")
equity.write_parquet(out / "equity.parquet")
import trading_dagster
print(json.dumps({"times": times, "cpu": cpu, "rows": [events.height, positions.height, equity.height], "module": trading_dagster.__file__}))
"""


def run(source_root: str, cache: Path, out: Path) -> dict:
    """One child with `source_root`'s trading_dagster first on sys.path, started in that folder."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": source_root}
    cmd = [sys.executable, "-c", CHILD, str(cache), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source_root)
    if done.returncode:
        sys.exit(f"the child in {source_root} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["module"].startswith(source_root):
        sys.exit(f"the child imported {result['module']}, not the trading_dagster of {source_root}")
    return result


def old_tree(rev: str, into: Path, repo: Path = ROOT) -> Path:
    """This tree's trading_dagster with `MODULES` as they were at `rev` (of the git repository `repo`)."""
    shutil.copytree(ROOT / "trading_dagster", into / "trading_dagster", ignore=shutil.ignore_patterns("__pycache__"))
    for path in MODULES:
        text = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, check=True).stdout
        (into / path).write_bytes(text)
    return into


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rev", default="a261d30", help="the revision of the five modules to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path("/tmp/stage-cache"))
    p.add_argument("--repo", type=Path, default=ROOT, help="the git repository to take --rev from")
    args = p.parse_args()
    import polars as pl

    with tempfile.TemporaryDirectory(prefix="exec-pnl-vs-") as tmp:
        tmp_path = Path(tmp)
        sides = {args.rev: str(old_tree(args.rev, tmp_path / "old", args.repo)), "this tree": str(ROOT)}
        best: dict[str, dict[str, float]] = {side: {} for side in sides}
        best_cpu: dict[str, dict[str, float]] = {side: {} for side in sides}
        for r in range(args.rounds):
            for side, root in sides.items():
                out = tmp_path / "out" / f"{r}-{'old' if side == args.rev else 'new'}"
                result = run(root, args.cache, out)
                for stage, s in result["times"].items():
                    best[side][stage] = min(s, best[side].get(stage, float("inf")))
                    best_cpu[side][stage] = min(result["cpu"][stage], best_cpu[side].get(stage, float("inf")))
                print(
                    f"  round {r + 1} {side:<10} "
                    + "  ".join(f"{k} {v:.2f} s (cpu {result['cpu'][k]:.2f})" for k, v in result["times"].items())
                    + f"   rows {result['rows']}",
                    flush=True,
                )
            for name in ("events", "positions", "equity"):
                old = pl.read_parquet(tmp_path / "out" / f"{r}-old" / f"{name}.parquet")
                new = pl.read_parquet(tmp_path / "out" / f"{r}-new" / f"{name}.parquet")
                if old.schema != new.schema or not old.equals(new):
                    sys.exit(f"round {r + 1}: {name} differ ({old.shape} vs {new.shape})")
            print(f"  round {r + 1}: events, positions and equity equal row for row", flush=True)
    for label, table in (("wall", best), ("cpu", best_cpu)):
        print(f"best of {args.rounds}, {label} seconds   {args.rev:>10}  this tree   ratio")
        for stage in STAGES:
            old, new = table[args.rev][stage], table["this tree"][stage]
            print(f"  {stage:<12} {old:>21.2f}  {new:>9.2f}   {old / new:5.1f}x")
        old, new = (sum(table[side][s] for s in STAGES) for side in (args.rev, "this tree"))
        print(f"  {'total':<12} {old:>21.2f}  {new:>9.2f}   {old / new:5.1f}x")


if __name__ == "__main__":
    main()
