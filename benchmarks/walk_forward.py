"""Walk-forward selection of the SMA cross (issue 11, decision 0007) on the full shared file.

    .venv/bin/python benchmarks/walk_forward.py [--data PATH] [--symbols N] [--fast 5,10,..] [--slow 60,80,..]
        [--train-sessions 756] [--test-sessions 252] [--mode rolling|expanding] [--size-on close|fill]
        [--shares whole|fractional] [--fees-bps B] [--slippage-bps B] [--notional USD] [--initial-cash USD]
        [--tie-band-pct P] [--mem-cap-gib G]

The parent cleans the file through the pipeline's `clean_prices` (`benchmarks/shared_file.py`) and writes the
cleaned prices to a temporary parquet file; a child process (so its peak RSS is its own, imports and the
cleaned frame included; the parent polls it and kills it above `--mem-cap-gib`) packs the bars once, runs the
walk-forward over the grid (default the sweep's 100 pairs, rolling 756 / 252) twice (the first loads or
compiles the numba kernel; the second is the steady figure), and the same sweep once over the full history
for reference. Printed: the times, the child's peak RSS, each fold's windows, winner and figures, the stitched
out-of-sample figures against the full-history sweep's best pair.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sweep import DEFAULT_DATA, grid, peak_rss_gib, rss_gib, settings


def child(args, cleaned_path: Path, out: Path) -> dict:
    import polars as pl

    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.research.sweep import sweep_bars
    from trading_dagster.research.walk_forward import folds, sma_backtest, walk_forward

    calendar = list(nyse_calendar().sessions)
    cleaned = pl.read_parquet(cleaned_path)
    first, last = cleaned["session"].min(), cleaned["session"].max()
    sessions = [d for d in calendar if first <= d <= last]
    base = rss_gib()
    pairs = grid(args)
    t = time.perf_counter()
    backtest = sma_backtest(cleaned, calendar, **settings(args))
    pack_s = time.perf_counter() - t
    del cleaned
    plan = folds(sessions, args.train_sessions, args.test_sessions, args.mode)
    t = time.perf_counter()
    walk_forward(backtest, pairs, plan, args.initial_cash)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    result = walk_forward(backtest, pairs, plan, args.initial_cash)
    walk_s = time.perf_counter() - t
    result.folds.write_parquet(out)
    t = time.perf_counter()
    full = sweep_bars(backtest.bars, pairs, **settings(args))
    full_s = time.perf_counter() - t
    best = full.stats.sort("sharpe", descending=True, nulls_last=True).row(0, named=True)
    return {
        "pack_s": pack_s,
        "first_walk_s": first_s,
        "walk_s": walk_s,
        "full_sweep_s": full_s,
        "rss_after_load_gib": base,
        "summary": result.summary,
        "full_best": {k: best[k] for k in ("fast", "slow", "sharpe", "total_return", "max_drawdown")},
        "backtests": len(plan) * (len(pairs) + 1),
    }


def run_child(argv: list[str], cleaned_path: Path, out: Path, cap_gib: float) -> dict:
    """Run this script as `--child` under the RSS cap (`shared_file.run_capped_child`)."""
    from benchmarks.shared_file import run_capped_child

    cmd = [sys.executable, __file__, *argv, "--child", "--cleaned", str(cleaned_path), "--out", str(out)]
    return run_capped_child(cmd, out, cap_gib)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--symbols", type=int, help="only the first N symbols (alphabetical)")
    p.add_argument("--pairs", type=int, help="only the first N pairs of the grid (fast-major)")
    p.add_argument("--fast", help="fast periods, comma-separated (default 5..50 step 5)")
    p.add_argument("--slow", help="slow periods, comma-separated (default 60..240 step 20)")
    p.add_argument("--train-sessions", type=int, default=756)
    p.add_argument("--test-sessions", type=int, default=252)
    p.add_argument("--mode", choices=("rolling", "expanding"), default="rolling")
    p.add_argument("--size-on", choices=("close", "fill"), default="close")
    p.add_argument("--shares", choices=("whole", "fractional"), default="whole")
    p.add_argument("--fees-bps", type=float, default=1.0)
    p.add_argument("--slippage-bps", type=float, default=5.0)
    p.add_argument("--notional", type=float, default=10_000)
    # $10M as benchmarks/sweep.py: without a cash limit $100k goes negative on the full file
    p.add_argument("--initial-cash", type=float, default=10_000_000)
    p.add_argument("--tie-band-pct", type=float, default=1e-7, help="the sma_cross tie band, on both sides")
    p.add_argument("--mem-cap-gib", type=float, default=14.0, help="kill the child above this RSS")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cleaned", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        t = time.perf_counter()
        data = child(args, args.cleaned, args.out)
        data |= {"total_s": time.perf_counter() - t, "peak_gib": peak_rss_gib()}
        args.out.with_suffix(".json").write_text(json.dumps(data))
        return

    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: the benchmark needs the shared dataset (../shared/data)")
    import polars as pl

    from benchmarks.shared_file import clean_shared_file

    t = time.perf_counter()
    cleaned, sessions, _ = clean_shared_file(args.data, args.symbols)
    pairs = grid(args)
    print(
        f"data: {args.data}\ncleaned: {cleaned['symbol'].n_unique():,} symbols, {len(sessions):,} sessions, "
        f"{cleaned.height:,} bars ({time.perf_counter() - t:.1f} s); {len(pairs)} pairs; {args.mode} "
        f"{args.train_sessions} / {args.test_sessions}; settings {settings(args)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        cleaned_path = Path(tmp) / "cleaned.parquet"
        cleaned.write_parquet(cleaned_path)
        del cleaned
        out = Path(tmp) / "folds.parquet"
        data = run_child(sys.argv[1:], cleaned_path, out, args.mem_cap_gib)
        table = pl.read_parquet(out) if "walk_s" in data else None
    if table is None:
        raise SystemExit(f"the child did not finish: {data}")
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, tbl_rows=50, float_precision=3):
        print(table)
    s, best = data["summary"], data["full_best"]
    print(
        f"\nwalk-forward ({data['backtests']} backtests: every pair on each train window, the winner on its test "
        f"window): {data['walk_s']:.2f} s warm, {data['first_walk_s']:.2f} s the first run (numba load/compile); "
        f"packing the bars once {data['pack_s']:.2f} s"
    )
    print(
        f"out of sample ({s['sessions']} sessions, {s['folds']} folds): Sharpe {s['oos_sharpe']:.3f}, return "
        f"{s['oos_return']:.2%}, max drawdown {s['oos_max_drawdown']:.2%}; winners' mean in-sample Sharpe "
        f"{s['mean_is_sharpe']:.3f}; mean out-of-sample Sharpe per fold {s['mean_oos_sharpe']:.3f}; mean deflated "
        f"Sharpe {s['mean_deflated_sharpe']:.3f}"
    )
    print(
        f"full-history sweep (reference, hindsight): {data['full_sweep_s']:.2f} s; best pair {best['fast']}/"
        f"{best['slow']}: Sharpe {best['sharpe']:.3f}, return {best['total_return']:.2%}, max drawdown "
        f"{best['max_drawdown']:.2%}"
    )
    print(
        f"child: {data['total_s']:.2f} s (read + all), wall {data['wall_s']:.2f} s, peak RSS "
        f"{data['peak_gib']:.2f} GiB (after reading the cleaned file {data['rss_after_load_gib']:.2f} GiB)"
    )
    print(f"cores {os.cpu_count()}; numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}")


if __name__ == "__main__":
    main()
