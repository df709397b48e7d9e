"""Indicators, signals, simulated executions and P&L on the full dataset: today's code against the previous
implementation (and TA-Lib alone), in the same run, with their outputs checked equal.

    .venv/bin/python benchmarks/pure_stages_b.py [--data PATH] [--sessions N] [--repeat K] [--reference COMMIT]

The previous implementation is read from git (`--reference`, default the commit before this work) into
throwaway modules, so both run on the same frames in the same process. Each stage runs `--repeat` times per
implementation, interleaved, and the minimum wall and CPU seconds are printed (the machine is shared: CPU
seconds move less than wall seconds under load, and the minimum less than the mean). Also printed: the daily
run's book work on the ledger each implementation wrote (reopen, `reset_from` the last session, sync and
submit it, read its events; then reopen and `account` of the session before, what the P&L asset reads).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"
REFERENCE = "e869c24"  # main before the stage work of issue 12 (stagesB)
PREVIOUS = {
    "indicators": "trading_dagster/domain/indicators.py",
    "strategies": "trading_dagster/domain/strategies.py",
    "execution": "trading_dagster/domain/execution.py",
    "pnl": "trading_dagster/domain/pnl.py",
    "backtest_book": "trading_dagster/resources/backtest_book.py",
}


def previous_modules(commit: str, folder: Path) -> dict:
    """The modules of PREVIOUS as they were at `commit`, imported under private names (their own imports
    resolve to today's package: only these files are the old ones)."""
    out = {}
    for name, path in PREVIOUS.items():
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True, text=True)
        file = folder / f"previous_{name}.py"
        file.write_text(source.stdout)
        spec = importlib.util.spec_from_file_location(f"previous_{name}", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        out[name] = module
    return out


def clock(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def compare(stage: str, runs: dict, repeat: int) -> dict:
    """Run each implementation `repeat` times, interleaved; print min wall / CPU; return the outputs."""
    best: dict[str, tuple[float, float]] = {}
    outputs = {}
    for _ in range(repeat):
        for name, fn in runs.items():
            out, wall, cpu = clock(fn)
            outputs[name] = out
            w, c = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(w, wall), min(c, cpu))
    base = best.get("previous")
    for name, (wall, cpu) in best.items():
        ratio = f"  {base[1] / cpu:5.2f}x previous (CPU)" if base and name != "previous" else ""
        print(f"  {stage:<11} {name:<10} wall {wall:7.2f} s   cpu {cpu:7.2f} s{ratio}", flush=True)
    return outputs


def equal(stage: str, a, b) -> None:
    frames_a = a if isinstance(a, tuple) else (a,)
    frames_b = b if isinstance(b, tuple) else (b,)
    same = all(x.equals(y) for x, y in zip(frames_a, frames_b, strict=True))
    print(f"  {stage:<11} outputs equal to the previous implementation: {same}", flush=True)
    if not same:
        raise SystemExit(f"{stage}: the outputs differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sessions", type=int, default=None, help="only the first N sessions")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--reference", default=REFERENCE, help="git commit of the previous implementation")
    args = parser.parse_args()

    from trading_dagster.domain import indicators as ind
    from trading_dagster.domain import pnl, strategies
    from trading_dagster.domain.execution import (
        CommissionModel,
        SlippageModel,
        opens_by_session,
        orders_by_session,
    )
    from trading_dagster.domain.orders import orders_from_frame
    from trading_dagster.domain.portfolio import PortfolioState, plan_orders
    from trading_dagster.domain.prices import clean_prices
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.partitions import session_calendar
    from trading_dagster.resources.backtest_book import SimulatedBook
    from trading_dagster.resources.market_data import FileMarketDataSource
    from trading_dagster.resources.raw_store import LocalRawStore

    work = Path(tempfile.mkdtemp(prefix="pure_stages_b_"))
    old = previous_modules(args.reference, work)
    cal = session_calendar()
    source = FileMarketDataSource(args.data)
    source.load()
    first, last = source.date_range()
    sessions = cal.between(first, last)[: args.sessions or None]
    store = LocalRawStore(work / "lake")
    store.write_sessions(source.fetch_bars(sessions[0], sessions[-1]), cal)
    cleaned = clean_prices(store.read_sessions(sessions), sessions).cleaned
    print(f"{cleaned.height:,} bars, {cleaned['symbol'].n_unique():,} symbols, {len(sessions):,} sessions "
          f"({args.data.name}); previous = {args.reference}; min of {args.repeat}", flush=True)

    # -- indicators, with TA-Lib alone over every symbol's whole history as the floor
    bars = ind._prepare(cleaned)

    def talib_alone():
        starts = np.searchsorted(bars.key, np.arange(bars.n_symbols, dtype=np.int64) * ind._SYMBOL_STRIDE)
        for a, b in zip(starts, [*starts[1:], bars.key.size], strict=True):
            ind._symbol_indicators(bars.high[a:b], bars.low[a:b], bars.close[a:b], bars.volume[a:b])

    out = compare(
        "indicators",
        {
            "talib": talib_alone,
            "previous": lambda: old["indicators"].compute_indicators_anchored(cleaned, cal.sessions, sessions[0], sessions[-1]),
            "current": lambda: ind.compute_indicators_anchored(cleaned, cal.sessions, sessions[0], sessions[-1]),
        },
        args.repeat,
    )
    equal("indicators", out["previous"], out["current"])
    indicators = out["current"]

    # -- signals
    out = compare(
        "signals",
        {
            "previous": lambda: old["strategies"].generate_signals(indicators, strategies.DEFAULT_STRATEGIES, sessions[0], sessions[-1]),
            "current": lambda: strategies.generate_signals(indicators, strategies.DEFAULT_STRATEGIES, sessions[0], sessions[-1]),
        },
        args.repeat,
    )
    equal("signals", out["previous"], out["current"])
    signals = out["current"]

    risk = RiskConfig()
    slip, comm = SlippageModel(), CommissionModel()
    t = time.perf_counter()
    orders = plan_orders(signals, cleaned, PortfolioState.initial(risk.initial_cash), cal.sessions, risk, slip, comm, "paper")
    print(f"  (orders planned in {time.perf_counter() - t:.1f} s: {orders.height:,} rows; not timed here)", flush=True)

    # -- executions: the benchmark loop of full_backfill.py as it was, and with the one-pass inputs
    def fresh(name: str) -> str:
        path = work / name
        for p in (path, Path(f"{path}.wal")):
            p.unlink(missing_ok=True)
        return str(path)

    def previous_executions():
        opens = old["execution"].opens_by_session(cleaned)
        approved = orders.filter(pl.col("status") == "approved")
        by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()}
        with old["backtest_book"].SimulatedBook(fresh("previous.duckdb"), initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm) as b:
            for s in sessions:
                b.sync(s, opens.get(s, {}))
                if s in by_session:
                    b.submit(orders_from_frame(by_session[s]), s)
            return b.events(sessions[0], sessions[-1])

    def current_executions():
        opens = opens_by_session(cleaned)
        by_session = orders_by_session(orders)
        with SimulatedBook(fresh("current.duckdb"), initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm) as b:
            for s in sessions:
                b.sync(s, opens.get(s, {}))
                if s in by_session:
                    b.submit(by_session[s], s)
            return b.events(sessions[0], sessions[-1])

    out = compare("executions", {"previous": previous_executions, "current": current_executions}, args.repeat)
    equal("executions", out["previous"], out["current"])
    fills = out["current"].filter(pl.col("event") == "filled")

    # -- P&L
    start = PortfolioState.initial(risk.initial_cash)
    out = compare(
        "pnl",
        {
            "previous": lambda: old["pnl"].mark_to_market(start, fills, cleaned, sessions, "SPY"),
            "current": lambda: pnl.mark_to_market(start, fills, cleaned, sessions, "SPY"),
        },
        args.repeat,
    )
    equal("pnl", out["previous"], out["current"])

    # -- one daily session on the ten-year ledger each implementation wrote
    day, before = sessions[-1], sessions[-2]
    todays = orders_by_session(orders).get(day, [])
    day_opens = opens_by_session(cleaned.filter(pl.col("session") == day)).get(day, {})
    for name, book in (("previous", old["backtest_book"].SimulatedBook), ("current", SimulatedBook)):
        path = str(work / f"{name}.duckdb")

        def executions_step(book=book, path=path):
            with book(path, initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm) as b:
                b.reset_from(day)
                b.sync(day, day_opens)
                b.submit(todays, day)
                b.events(day, day)
                b.events(day.replace(day=1), day)

        def pnl_step(book=book, path=path):
            with book(path, initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm) as b:
                return b.account(before)

        _, wall_e, cpu_e = clock(executions_step)
        state, wall_p, cpu_p = clock(pnl_step)
        print(f"  daily book  {name:<10} executions wall {wall_e:5.2f} s cpu {cpu_e:5.2f} s;  "
              f"pnl's account(previous session) wall {wall_p:5.2f} s cpu {cpu_p:5.2f} s "
              f"({len(state.positions)} positions)", flush=True)
    print(f"  (peak RSS {__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
