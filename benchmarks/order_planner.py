"""The order planner on the full shared dataset: the bulk planner (`domain/portfolio.plan_orders`) against the
frozen Python-object planner it replaced (`trading_dagster_tests/reference/planner_reference.py`).

    .venv/bin/python benchmarks/order_planner.py [--data PATH] [--cache DIR] [--config NAME ...]

Builds the planner's inputs as `benchmarks/full_backfill.py`'s pure run does (file -> clean -> indicators ->
signals; `--cache DIR` keeps them as Parquet there for the next run), then, per risk configuration, runs both
planners on the same inputs in this process, asserts the two orders frames equal row for row and column for
column, and prints both times (wall and CPU: the machine is shared, and CPU time varies less with its load)
and the speed-up. The bulk planner hashes its order ids and builds its price table in background threads, so
its process CPU can exceed its wall time; its main thread's CPU is printed too (on an idle second core the
wall follows it). The bulk planner runs first, as the pipeline calls it: once in a fresh process.
Configurations: `default` (what the backtest runs), and the variants the bulk pass reasons about
(`--config all`).
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"

CONFIGS = {
    "default": {},
    "pct_equity": {"sizing": "pct_equity", "pct_equity": Decimal("0.7")},
    "no_adding": {"add_to_positions": False, "monthly_share_limit": None},
    "exits": {"stop_loss_pct": Decimal(8), "take_profit_pct": Decimal(15)},
    "fill_notional": {"monthly_share_limit": None, "size_on": "fill"},
}


def inputs(data: Path, cache: Path | None):
    import polars as pl

    if cache is not None and (cache / "signals.parquet").exists():
        return pl.read_parquet(cache / "cleaned.parquet"), pl.read_parquet(cache / "signals.parquet")
    from trading_dagster.domain import indicators as ind
    from trading_dagster.domain.prices import clean_prices
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals
    from trading_dagster.partitions import session_calendar
    from trading_dagster.resources.market_data import FileMarketDataSource

    cal = session_calendar()
    source = FileMarketDataSource(data)
    first, last = source.date_range()
    sessions = cal.between(first, last)
    raw = source.fetch_bars(sessions[0], sessions[-1]).rename({"date": "session"})
    cleaned = clean_prices(raw, sessions).cleaned
    indicators = ind.compute_indicators_anchored(cleaned, cal.sessions, sessions[0], sessions[-1])
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, sessions[0], sessions[-1])
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        cleaned.write_parquet(cache / "cleaned.parquet")
        signals.write_parquet(cache / "signals.parquet")
    return cleaned, signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=None, help="keep the planner's inputs here as Parquet")
    parser.add_argument("--config", nargs="+", default=["default"], help=f"any of {', '.join(CONFIGS)}, or all")
    args = parser.parse_args()
    names = list(CONFIGS) if "all" in args.config else args.config

    from polars.testing import assert_frame_equal

    from trading_dagster.domain import portfolio
    from trading_dagster.domain.execution import CommissionModel, SlippageModel
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.partitions import session_calendar
    from trading_dagster_tests.reference import planner_reference as reference

    t = time.perf_counter()
    cleaned, signals = inputs(args.data, args.cache)
    print(f"inputs: {cleaned.height:,} price rows, {signals.height:,} signals ({time.perf_counter() - t:.1f} s)")
    sessions = session_calendar().sessions
    slip, comm = SlippageModel(), CommissionModel()
    for name in names:
        risk = RiskConfig(**CONFIGS[name])
        times, cpu, main = {}, {}, {}
        frames = {}
        for label, module in (("bulk", portfolio), ("reference", reference)):
            start = module.PortfolioState.initial(risk.initial_cash)
            t, c, m = time.perf_counter(), time.process_time(), time.thread_time()
            frames[label] = module.plan_orders(signals, cleaned, start, sessions, risk, slip, comm, "paper")
            times[label], cpu[label] = time.perf_counter() - t, time.process_time() - c
            main[label] = time.thread_time() - m
        assert_frame_equal(frames["bulk"], frames["reference"], check_exact=True)
        approved = frames["bulk"].filter(frames["bulk"]["status"] == "approved").height
        print(
            f"{name:<14} {frames['bulk'].height:,} orders ({approved:,} approved), equal row for row: "
            f"bulk {times['bulk']:.2f} s (CPU {cpu['bulk']:.2f} s, main thread {main['bulk']:.2f} s), "
            f"reference {times['reference']:.2f} s "
            f"(CPU {cpu['reference']:.2f} s), speed-up {times['reference'] / times['bulk']:.1f}x wall, "
            f"{cpu['reference'] / cpu['bulk']:.1f}x CPU",
            flush=True,
        )


if __name__ == "__main__":
    main()
