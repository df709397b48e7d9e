"""The indicators and signals stages on the full shared dataset: this tree's `compute_indicators_anchored` and
`generate_signals` against another revision's, in the same process, alternating, with outputs asserted equal
bit for bit (nulls where nulls are).

    .venv/bin/python benchmarks/indicators_signals.py [--rev 8a2021c] [--rounds 3] [--cleaned PATH]
        [--reference DIR] [--stage indicators|signals ...] [--fresh]

The other revision's `domain/indicators.py` and `domain/strategies.py` are read with `git show <rev>:<path>`
and loaded as modules of their own (they import the rest of `trading_dagster` from this tree). The input is
the cleaned prices as `benchmarks/full_backfill.py`'s pure run builds them (`/tmp/stage-cache/cleaned.parquet`,
written by `/tmp/stage-cache/make.py`; pass another file with `--cleaned`). Signals run as full_backfill's
pure run calls them (DEFAULT_STRATEGIES, no calendar) and as the signals asset does (with the calendar), on
this tree's indicators. With `--reference DIR`, the outputs are also compared with DIR's indicators.parquet
and signals.parquet. Each round prints wall and CPU seconds of both sides; the summary gives the minimum and the median.

`--fresh`: instead, each round runs each side once in a new process of its own (as the pipeline's pure run and
a Dagster step call them: once per process, so fresh memory's page faults count), indicators then signals on
them, alternating which side goes first, and prints wall, user and system seconds and the peak RSS after
each stage (no equality check there: the in-process mode does that).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_REV = "8a2021c"  # the committed indicators.py and strategies.py before the issue-12 work on them


def load_revision(rev: str, path: str, name: str):
    """`path` as it is at `rev`, imported as module `name`."""
    text = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True)
    folder = Path(tempfile.mkdtemp(prefix="ind-sig-"))
    file = folder / f"{name}.py"
    file.write_text(text.stdout)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def assert_bitwise_equal(what: str, a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Same columns, dtypes and rows; floats equal bit for bit (0.0 is not -0.0) with nulls in the same rows."""
    if a.schema != b.schema or a.height != b.height:
        raise AssertionError(f"{what}: schemas or heights differ: {a.schema} {a.height} vs {b.schema} {b.height}")
    for name in a.columns:
        x, y = a[name], b[name]
        if not x.is_null().equals(y.is_null()):
            raise AssertionError(f"{what}: nulls of {name} differ")
        if x.dtype == pl.Float64:
            bits_x = x.fill_null(0.0).to_numpy().view(np.int64)
            bits_y = y.fill_null(0.0).to_numpy().view(np.int64)
            if not np.array_equal(bits_x, bits_y):
                raise AssertionError(f"{what}: {name} differs in {int((bits_x != bits_y).sum())} rows")
        elif not x.equals(y, check_names=True, null_equal=True):
            raise AssertionError(f"{what}: {name} differs")


def timed(fn, *args):
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def child(side: str, rev: str, cleaned_path: Path) -> None:
    """One side's indicators then signals in this (new) process; prints one JSON line."""
    import json
    import resource

    from trading_dagster.partitions import session_calendar

    if side == "old":
        ind = load_revision(rev, "trading_dagster/domain/indicators.py", "old_indicators")
        sig = load_revision(rev, "trading_dagster/domain/strategies.py", "old_strategies")
    else:
        from trading_dagster.domain import indicators as ind
        from trading_dagster.domain import strategies as sig
    cal = session_calendar()
    cleaned = pl.read_parquet(cleaned_path)
    sessions = cal.between(cleaned["session"].min(), cleaned["session"].max())
    figures = {"rss_before": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}

    def stage(name, fn, *args):
        before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = fn(*args)
        after = resource.getrusage(resource.RUSAGE_SELF)
        figures[name] = (time.perf_counter() - wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                         after.ru_maxrss / 2**20)
        return out

    indicators = stage("indicators", ind.compute_indicators_anchored, cleaned, cal.sessions, sessions[0], sessions[-1])
    stage("signals", sig.generate_signals, indicators, sig.DEFAULT_STRATEGIES, sessions[0], sessions[-1])
    print(json.dumps(figures))


def fresh(args) -> None:
    import json

    rows: dict[tuple[str, str], list] = {}
    for r in range(args.rounds):
        for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
            cmd = [sys.executable, __file__, "--child", side, "--rev", args.rev, "--cleaned", str(args.cleaned)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            for name in ("indicators", "signals"):
                wall, user, system, rss = figures[name]
                rows.setdefault((name, side), []).append((wall, user, system))
                print(f"{name:10s} round {r + 1} {side}: {wall:5.2f} s wall, {user:5.2f} user, {system:5.2f} system, "
                      f"peak RSS {rss:4.2f} GiB (process {figures['rss_before']:4.2f} GiB before)", flush=True)
    print("\nmedian of the rounds (wall / user / system seconds):")
    for name in ("indicators", "signals"):
        o, n = ([statistics.median(x[i] for x in rows[(name, side)]) for i in range(3)] for side in ("old", "new"))
        print(f"  {name:10s} old {o[0]:5.2f} / {o[1]:5.2f} / {o[2]:5.2f}   new {n[0]:5.2f} / {n[1]:5.2f} / {n[2]:5.2f}   "
              f"speed-up {o[0] / n[0]:4.2f}x wall, {(o[1] + o[2]) / (n[1] + n[2]):4.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default=DEFAULT_REV)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cleaned", type=Path, default=Path("/tmp/stage-cache/cleaned.parquet"))
    parser.add_argument("--reference", type=Path, default=None, help="a folder with indicators/signals.parquet")
    parser.add_argument("--stage", choices=("indicators", "signals"), action="append")
    parser.add_argument("--fresh", action="store_true", help="each side once per new process, per round")
    parser.add_argument("--child", choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.rev, args.cleaned)
    if args.fresh:
        return fresh(args)
    stages = args.stage or ["indicators", "signals"]

    from trading_dagster.domain import indicators as new_ind
    from trading_dagster.domain import strategies as new_sig
    from trading_dagster.partitions import session_calendar

    old_ind = load_revision(args.rev, "trading_dagster/domain/indicators.py", "old_indicators")
    old_sig = load_revision(args.rev, "trading_dagster/domain/strategies.py", "old_strategies")
    cal = session_calendar()
    cleaned = pl.read_parquet(args.cleaned)
    sessions = cal.between(cleaned["session"].min(), cleaned["session"].max())
    first, last = sessions[0], sessions[-1]
    print(f"{cleaned.height:,} bars, {cleaned['symbol'].n_unique():,} symbols, {len(sessions):,} sessions; "
          f"old = {args.rev}, {args.rounds} rounds", flush=True)

    cases = {}
    if "indicators" in stages:
        cases["indicators"] = (
            lambda: old_ind.compute_indicators_anchored(cleaned, cal.sessions, first, last),
            lambda: new_ind.compute_indicators_anchored(cleaned, cal.sessions, first, last),
        )
    indicators = None
    if "signals" in stages:
        indicators = new_ind.compute_indicators_anchored(cleaned, cal.sessions, first, last)
        cases["signals"] = (
            lambda: old_sig.generate_signals(indicators, old_sig.DEFAULT_STRATEGIES, first, last),
            lambda: new_sig.generate_signals(indicators, new_sig.DEFAULT_STRATEGIES, first, last),
        )
        cases["signals_calendar"] = (
            lambda: old_sig.generate_signals(indicators, old_sig.DEFAULT_STRATEGIES, first, last, cal.sessions),
            lambda: new_sig.generate_signals(indicators, new_sig.DEFAULT_STRATEGIES, first, last, cal.sessions),
        )

    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, (old, new) in cases.items():
        for r in range(args.rounds):
            # alternate which side goes first, so neither always meets a warm or a cold machine
            order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
            outs = {}
            for side, fn in order:
                outs[side], wall, cpu = timed(fn)
                print(f"{name:17s} round {r + 1} {side}: {wall:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
                runs.setdefault((name, side), []).append((wall, cpu))
            assert_bitwise_equal(name, outs["old"], outs["new"])
            if r == 0 and args.reference is not None and name in ("indicators", "signals"):
                assert_bitwise_equal(f"{name} vs {args.reference}", pl.read_parquet(args.reference / f"{name}.parquet"),
                                     outs["new"])
                print(f"{name:17s} equal to {args.reference / name}.parquet", flush=True)
            rows = outs["new"].height
            del outs
        print(f"{name:17s} {rows:,} rows, old and new equal bit for bit in every round", flush=True)

    for label, pick in (("minimum", min), ("median", statistics.median)):
        print(f"\n{label} of the rounds (wall / CPU seconds):")
        for name in cases:
            (ow, oc), (nw, nc) = ((pick(x[0] for x in runs[(name, side)]), pick(x[1] for x in runs[(name, side)]))
                                  for side in ("old", "new"))
            print(f"  {name:17s} old {ow:5.2f} / {oc:5.2f}   new {nw:5.2f} / {nc:5.2f}   "
                  f"speed-up {ow / nw:4.2f}x wall, {oc / nc:4.2f}x CPU")


if __name__ == "__main__":
    main()
