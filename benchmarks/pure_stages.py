"""Raw write, raw read, cleaning and the checks on the full shared dataset, each against a reference measured
in the same run (the machine is shared: compare the ratio, not the seconds).

    .venv/bin/python benchmarks/pure_stages.py [--data PATH] [--sessions N] [--checks all|prices]

Stages (the calls benchmarks/full_backfill.py's pure run times) and their references:
  raw_write   LocalRawStore.write_sessions (a first import into an empty store: merge, revisions, manifest)
              vs the floor: the same session objects (SESSION_SCHEMA rows, zstd Parquet, one per session)
              written by 8 threads with no merge, lock or manifest
  raw_read    LocalRawStore.read_sessions (one multi-file Parquet read)
              vs object by object (the previous implementation, still the S3 path and the fallback)
              and the floor: polars.read_parquet of the same files
  clean       clean_prices vs the two sorts it cannot avoid ((date, symbol) and (symbol, date)) of the same rows
  checks      every check full_backfill's pure run evaluates (rules.py, the GX suites, flag_outages), the GX
              import apart, vs the same uniqueness checks done the previous way (DataFrame.is_duplicated on
              every key) plus one null count of every column of every frame (the floor of reading each row)
`--checks prices` checks raw and cleaned only (no indicators, signals, orders, fills: ~30 s less to build).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def row(name: str, seconds: float, ref_name: str, ref: float) -> None:
    print(
        f"  {name:<11} {seconds:7.2f} s   {ref_name:<44} {ref:7.2f} s   ratio {seconds / ref:5.1f}x",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sessions", type=int, help="only the first N sessions (a quicker look)")
    p.add_argument("--checks", choices=("all", "prices"), default="all")
    args = p.parse_args()

    import datetime as dt

    import polars as pl

    from trading_dagster.domain.prices import clean_prices
    from trading_dagster.domain.raw_merge import stamp_import
    from trading_dagster.partitions import session_calendar
    from trading_dagster.resources.market_data import FileMarketDataSource
    from trading_dagster.resources.raw_store import LocalRawStore

    class ObjectByObject(LocalRawStore):
        def _read_objects(self, keys, columns):
            return None

    cal = session_calendar()
    source = FileMarketDataSource(args.data)
    source.load()
    first, last = source.date_range()
    sessions = cal.between(first, last)[: args.sessions or None]
    bars = source.fetch_bars(sessions[0], sessions[-1])
    print(
        f"{args.data.name}: {bars.height:,} rows, {bars['symbol'].n_unique():,} symbols, {len(sessions):,} sessions"
    )
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pure-stages-") as tmp:
        lake, floor_dir = Path(tmp) / "lake", Path(tmp) / "floor"
        store = LocalRawStore(lake)

        # raw_write: the floor first (so the store's write does not warm its page cache for it)
        def floor_write() -> list[Path]:
            stamped = stamp_import(
                bars.with_columns(
                    pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("revision_time"),
                    pl.lit("direct write").alias("source"),
                ),
                "floor",
                dt.datetime.now(dt.UTC),
            )
            parts = stamped.sort("date", "symbol").partition_by("date", as_dict=True, maintain_order=True)

            def write(item):
                (session,), part = item
                path = floor_dir / f"date={session:%Y-%m-%d}" / "prices.parquet"
                path.parent.mkdir(parents=True)
                part.write_parquet(path, compression="zstd", statistics=True)
                return path

            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(write, parts.items()))

        files, floor_w = timed(floor_write)
        _, write_s = timed(store.write_sessions, bars, cal)
        totals["raw_write"] = write_s
        print("stage        seconds   reference                                      seconds")
        row("raw_write", write_s, "floor: the same objects, 8 threads, no merge", floor_w)

        raw, read_s = timed(store.read_sessions, sessions)
        old, old_s = timed(ObjectByObject(lake).read_sessions, sessions)
        _, floor_r = timed(pl.read_parquet, [str(f) for f in files], columns=list(raw.columns))
        if not raw.equals(old):
            sys.exit("raw_read: the bulk read differs from the object-by-object read")
        totals["raw_read"] = read_s
        row("raw_read", read_s, "object by object (previous implementation)", old_s)
        row("raw_read", read_s, "floor: polars.read_parquet of the files", floor_r)
        del old

    result, clean_s = timed(clean_prices, raw, sessions)
    cleaned = result.cleaned
    _, sorts = timed(lambda: (raw.sort("date", "symbol"), raw.sort("symbol", "date")))
    totals["clean"] = clean_s
    row("clean", clean_s, "two sorts of the rows", sorts)

    frames = build_downstream(cleaned, sessions, cal) if args.checks == "all" else {}
    (import_s, checks_s), uniq = run_checks(raw, cleaned, sessions, cal, frames)
    totals["checks"] = import_s + checks_s
    row("checks", checks_s, "previous uniqueness + a null count of each", uniq)
    print(f"  {'gx import':<11} {import_s:7.2f} s   (once per process)")
    print(f"total of these stages {sum(totals.values()):.2f} s; peak RSS {peak_rss_gib():.2f} GiB")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def build_downstream(cleaned, sessions, cal) -> dict:
    """Indicators -> P&L as full_backfill's pure run builds them (untimed here)."""
    from decimal import Decimal

    import polars as pl

    from trading_dagster.domain import indicators as ind
    from trading_dagster.domain.execution import CommissionModel, SlippageModel, opens_by_session
    from trading_dagster.domain.orders import orders_from_frame
    from trading_dagster.domain.pnl import mark_to_market
    from trading_dagster.domain.portfolio import PortfolioState, plan_orders
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals
    from trading_dagster.resources.backtest_book import SimulatedBook

    t = time.perf_counter()
    indicators = ind.compute_indicators_anchored(cleaned, cal.sessions, sessions[0], sessions[-1])
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, sessions[0], sessions[-1])
    risk, slip, comm = RiskConfig(), SlippageModel(), CommissionModel()
    initial = PortfolioState.initial(risk.initial_cash)
    orders = plan_orders(signals, cleaned, initial, cal.sessions, risk, slip, comm, "paper")
    opens = opens_by_session(cleaned)
    approved = orders.filter(pl.col("status") == "approved")
    by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()}
    with tempfile.TemporaryDirectory(prefix="pure-stages-book-") as tmp:
        ledger = str(Path(tmp) / "ledger.duckdb")
        with SimulatedBook(
            ledger, initial_cash=Decimal(risk.initial_cash), slippage=slip, commission=comm
        ) as b:
            for s in sessions:
                b.sync(s, opens.get(s, {}))
                if s in by_session:
                    b.submit(orders_from_frame(by_session[s]), s)
            events = b.events(sessions[0], sessions[-1])
    fills = events.filter(pl.col("event") == "filled")
    positions, equity = mark_to_market(initial, fills, cleaned, sessions, "SPY")
    print(f"  (built indicators -> P&L for the checks in {time.perf_counter() - t:.1f} s, untimed)")
    return {
        "indicators": indicators,
        "signals": signals,
        "orders": orders,
        "events": events,
        "positions": positions,
        "equity": equity,
        "risk": risk,
        "strategies": DEFAULT_STRATEGIES,
    }


def run_checks(raw, cleaned, sessions, cal, f: dict) -> tuple[tuple[float, float], float]:
    """((GX import s, checks s), reference s): the calls of full_backfill's pure `checks()`, each verdict
    required to be what that run expects (every check passes on the shared file but the raw suite's
    warnings)."""
    import polars as pl

    t = time.perf_counter()
    from trading_dagster.checks import gx_suites, rules
    from trading_dagster.domain.quality import flag_outages

    gx_suites.warm_up()
    import_s = time.perf_counter() - t
    raw_s = raw.rename({"date": "session"})
    uniques = [(cleaned, ["symbol", "session"]), (cleaned, ["symbol", "session"]), (raw, ["symbol", "date"])]
    t = time.perf_counter()
    verdicts = {
        "raw rows": rules.every_session_has_rows(raw_s, sessions),
        "raw gx": gx_suites.validate("raw", raw, sessions=sessions),
        "cleaned unique": rules.unique_keys(cleaned, ["symbol", "session"]),
        "cleaned sane": rules.cleaned_prices_sane(cleaned),
        "cleaned rows": rules.every_session_has_rows(cleaned, sessions),
        "cleaned gx": gx_suites.validate("cleaned", cleaned, sessions=sessions),
    }
    flag_outages(raw, sessions, None, cal)
    if f:
        ind, sig, orders, events, positions, equity = (
            f[k] for k in ("indicators", "signals", "orders", "events", "positions", "equity")
        )
        risk, strategies = f["risk"], f["strategies"]
        verdicts |= {
            "indicators bounds": rules.indicators_in_bounds(ind),
            "indicators unique": rules.unique_keys(ind, ["symbol", "session"]),
            "indicators gx": gx_suites.validate("indicators", ind, sessions=sessions),
            "signals valid": rules.signals_valid(sig),
            "signals unique": rules.unique_keys(sig, ["session", "symbol", "strategy"]),
            "signals gx": gx_suites.validate("signals", sig, sessions=sessions, strategies=strategies),
            "orders limits": rules.orders_within_limits(orders, risk.monthly_share_limit),
            "orders gx": gx_suites.validate("orders", orders, sessions=sessions, strategies=strategies),
            "executions match": rules.executions_match_orders(events, orders),
            "fills quota": rules.fills_within_monthly_quota(
                events, risk.monthly_share_limit, window=sessions
            ),
            "events nulls": rules.no_nulls(
                events,
                ["session", "client_order_id", "symbol", "event", "order_session", "qty", "commission"],
            ),
            "events window": rules.sessions_in_window(events, sessions),
            "positions nulls": rules.no_nulls(
                positions, ["session", "symbol", "qty", "close", "market_value"]
            ),
            "positions window": rules.sessions_in_window(positions, sessions),
            "equity window": rules.sessions_in_window(equity, sessions),
            "equity identity": rules.equity_identity(equity),
            "equity fills": rules.equity_matches_fills(equity, positions, events, risk.initial_cash),
        }
        uniques += [
            (ind, ["symbol", "session"]),
            (ind, ["symbol", "session"]),
            (sig, ["session", "symbol", "strategy"]),
            (sig, ["session", "symbol", "strategy"]),
            (orders, ["client_order_id"]),
        ]
    checks_s = time.perf_counter() - t
    failed = [k for k, v in verdicts.items() if not v.passed and k != "raw gx"]
    print(
        f"  checks: {len(verdicts)} verdicts, failed: {failed or 'none'} (raw gx: {verdicts['raw gx'].description[:90]})"
    )

    frames = [raw, cleaned] + [
        f[k] for k in ("indicators", "signals", "orders", "events", "positions", "equity") if k in f
    ]
    t = time.perf_counter()
    for frame, keys in uniques:
        frame.select(keys).is_duplicated().sum()
    for frame in frames:
        frame.select(pl.all().null_count())
    return (import_s, checks_s), time.perf_counter() - t


if __name__ == "__main__":
    main()
