"""What the GX suites cost (trading_dagster/checks/gx_suites.py) against the polars rules of rules.py.

    uv run --no-sync python benchmarks/gx_checks.py [--data PATH] [--repeat 3] [--no-full-gx] [--stages cleaned,orders]

Prints, in seconds:
  * importing great_expectations in a fresh interpreter, and `warm_up()` (import + ephemeral context) here;
  * per stage, on one session (2017-11-10: 1,897 cleaned rows) and on the whole dataset (3.8 M cleaned rows):
    the equivalent polars rules, the whole suite in GX (`engine="gx"`), the split (`engine="split"`: GX for
    schema/types/sets on a small frame, polars for the rows; what `auto` runs at every size);
  * GX on growing windows of the cleaned frame (how its cost grows with rows), and per-session chunks
    (2,485 GX calls) extrapolated from 20 sessions.

Frames: cleaned = the shared file renamed to the cleaned schema, minus the ~80 rows that fail OHLC sanity
(what clean_prices would quarantine); indicators = `compute_indicators` on it; signals = `generate_signals` with
the default strategies; orders = built from those signals without the planner (which alone takes ~30 s): a
deterministic mix of approved and denied orders with real reason codes and real client order ids
(`order_ids_for`), the same columns and dtypes as `plan_orders` gives. GX on 3.8 M rows needs a few GiB;
`--no-full-gx` skips it. Best of `--repeat` runs (one run for full-size GX).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "us_equities_etfs_daily_2008_2017.parquet"
ONE_SESSION = dt.date(2017, 11, 10)


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def fresh_import_seconds(deferred: bool = False) -> float:
    """Importing GX in a fresh interpreter that has imported what a run worker has (dagster, polars); with
    `deferred`, as gx_suites does it (DEFERRED_IMPORTS stand in until used). Best of 3."""
    code = (
        "import os, time, dagster, polars; os.environ['GX_ANALYTICS_ENABLED'] = 'false'; "
        "from trading_dagster.checks import gx_suites; t = time.perf_counter(); "
        + ("gx_suites._defer(gx_suites.DEFERRED_IMPORTS); " if deferred else "")
        + "import great_expectations; print(time.perf_counter() - t)"
    )
    return min(
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
        for _ in range(3)
    )


def gx_suites_deferred() -> tuple[str, ...]:
    from trading_dagster.checks.gx_suites import DEFERRED_IMPORTS

    return DEFERRED_IMPORTS


def build_frames(data: Path) -> dict[str, pl.DataFrame]:
    from trading_dagster.domain.indicators import compute_indicators
    from trading_dagster.domain.orders import ORDER_SCHEMA, order_ids_for
    from trading_dagster.domain.risk import REASON_CODES
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

    t = time.perf_counter()
    raw = (
        pl.read_parquet(data, columns=["ticker", "date", "open", "high", "low", "close", "volume"])
        .rename({"ticker": "symbol"})
        .sort("date", "symbol")
    )
    sane = (
        (pl.min_horizontal("open", "high", "low", "close") > 0)
        & (pl.col("high") >= pl.col("low"))
        & pl.col("close").is_between(pl.col("low"), pl.col("high"))
        & pl.col("open").is_between(pl.col("low"), pl.col("high"))
        & (pl.col("volume") >= 0)
    )
    cleaned = raw.filter(sane).rename({"date": "session"})
    indicators = compute_indicators(cleaned)
    signals = generate_signals(
        indicators, DEFAULT_STRATEGIES, cleaned["session"].min(), cleaned["session"].max()
    )

    # orders: one per signal, ~1 in 8 approved (the real planner approves few: quota and buying power)
    n = signals.height
    approved = (pl.int_range(n, eager=True) % 8) == 0
    requested = (pl.int_range(n, eager=True) % 50 + 1).cast(pl.Int64)
    codes = pl.Series(list(REASON_CODES))
    ids = []
    for (session,), part in signals.partition_by("session", as_dict=True, maintain_order=True).items():
        make = order_ids_for("paper", session)
        ids.extend(make(s, st, sd) for s, st, sd in part.select("symbol", "strategy", "side").iter_rows())
    orders = (
        signals.select("session", "symbol", "strategy", "side")
        .with_columns(
            requested_qty=requested,
            qty=pl.when(approved).then(requested).otherwise(0),
            status=pl.when(approved).then(pl.lit("approved")).otherwise(pl.lit("denied")),
            reason_code=pl.when(approved)
            .then(None)
            .otherwise(codes.gather(pl.int_range(n, eager=True) % codes.len())),
            client_order_id=pl.Series(ids),
        )
        .join(
            cleaned.select("session", "symbol", pl.col("close").alias("ref_price")),
            on=["session", "symbol"],
            how="left",
        )
        .select(list(ORDER_SCHEMA))
        .cast(ORDER_SCHEMA)  # type: ignore[arg-type]
    )
    frames = {"raw": raw, "cleaned": cleaned, "indicators": indicators, "signals": signals, "orders": orders}
    print(
        f"frames built in {time.perf_counter() - t:.1f} s: "
        + ", ".join(f"{k} {v.height:,}" for k, v in frames.items())
    )
    return frames


def polars_rules(stage: str, df: pl.DataFrame, sessions: list[dt.date]) -> list:
    """The rules.py checks that cover the same ground as the stage's suite."""
    from trading_dagster.checks import rules

    if stage == "raw":
        df = df.rename({"date": "session"})
        return [
            rules.no_nulls(df, ["symbol", "session"]),
            rules.unique_keys(df, ["symbol", "session"]),
            rules.sessions_in_window(df, sessions),
        ]
    if stage == "cleaned":
        return [
            rules.no_nulls(df, list(df.columns)),
            rules.unique_keys(df, ["symbol", "session"]),
            rules.cleaned_prices_sane(df),
            rules.sessions_in_window(df, sessions),
        ]
    if stage == "indicators":
        return [
            rules.indicators_in_bounds(df),
            rules.unique_keys(df, ["symbol", "session"]),
            rules.sessions_in_window(df, sessions),
        ]
    if stage == "signals":
        return [
            rules.signals_valid(df),
            rules.unique_keys(df, ["session", "symbol", "strategy"]),
            rules.sessions_in_window(df, sessions),
        ]
    return [rules.orders_within_limits(df, 4), rules.sessions_in_window(df, sessions)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-full-gx", action="store_true", help="skip the whole suite in GX on full-size frames"
    )
    parser.add_argument("--stages", default="raw,cleaned,indicators,signals,orders")
    args = parser.parse_args()

    print(
        f"import great_expectations (fresh interpreter, after dagster and polars): {fresh_import_seconds():.2f} s; "
        f"with {', '.join(gx_suites_deferred())} deferred as gx_suites does: {fresh_import_seconds(True):.2f} s"
    )
    t = time.perf_counter()
    from trading_dagster.checks import gx_suites
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES

    took = time.perf_counter() - t
    print(
        f"import trading_dagster.checks.gx_suites (GX not; the domain's talib imports pandas): {took:.2f} s"
    )
    print(f"gx_suites.warm_up() (GX import + ephemeral context): {gx_suites.warm_up():.2f} s")
    frames = build_frames(args.data)

    rows, findings = [], {}
    for stage in args.stages.split(","):
        full = frames[stage]
        key = "date" if stage == "raw" else "session"
        sessions = sorted(full[key].unique().to_list())
        one = full.filter(pl.col(key) == ONE_SESSION)
        for size, df in (("one session", one), ("full", full)):
            # a run passes its own sessions: a daily run one, the ten-year backfill all 2,485
            window = [ONE_SESSION] if size == "one session" else sessions
            params = {"sessions": window}
            if "strategies" in gx_suites.PARAMS[stage]:
                params["strategies"] = DEFAULT_STRATEGIES
            t_polars, _ = best(lambda st=stage, d=df, s=window: polars_rules(st, d, s), args.repeat)
            timings = {"polars rules": t_polars}
            for engine in ("gx", "split"):
                if engine == "gx" and size == "full" and args.no_full_gx:
                    timings[engine] = float("nan")
                    continue
                seconds, outcome = best(
                    lambda st=stage, d=df, e=engine, p=params: gx_suites.validate(st, d, engine=e, **p),
                    1 if engine == "gx" and size == "full" else args.repeat,
                )
                timings[engine] = seconds
                if not outcome.passed:  # the raw file has 3 bars with a 0 price: raw "warning" expectations
                    assert outcome.metadata["severity"] == "warning", (stage, size, engine, outcome.metadata)
                    findings[stage] = outcome.description
            rows.append((stage, size, df.height, len(gx_suites.SUITES[stage]), timings))
            print(
                f"  {stage:<10} {size:<11} {df.height:>10,} rows: "
                + ", ".join(f"{k} {v:.3f} s" for k, v in timings.items()),
                flush=True,
            )

    print("\nstage       frame          rows      expectations  polars rules  GX whole suite  split (auto)")
    for stage, size, n, n_exp, tm in rows:
        print(
            f"{stage:<11} {size:<12} {n:>10,}  {n_exp:>12}  {tm['polars rules']:>12.3f}  {tm['gx']:>14.3f}  "
            f"{tm['split']:>7.3f}"
        )

    for stage, description in findings.items():
        print(f"(found in {stage}, severity warning: {description})")

    cleaned = frames["cleaned"]
    sessions = sorted(cleaned["session"].unique().to_list())
    print("\nGX whole suite on growing windows of cleaned (the last N sessions):")
    for n in (1, 5, 25, 100, 250):
        window = sessions[-n:]
        part = cleaned.filter(pl.col("session") >= window[0])
        seconds, _ = best(
            lambda p=part, w=window: gx_suites.validate("cleaned", p, engine="gx", sessions=w), args.repeat
        )
        split, _ = best(
            lambda p=part, w=window: gx_suites.validate("cleaned", p, engine="split", sessions=w), args.repeat
        )
        print(f"  {n:>4} sessions {part.height:>9,} rows: GX {seconds:.3f} s, split {split:.3f} s")
    sample = sessions[-20:]
    t = time.perf_counter()
    for s in sample:
        gx_suites.validate("cleaned", cleaned.filter(pl.col("session") == s), engine="gx", sessions=[s])
    per_call = (time.perf_counter() - t) / len(sample)
    print(
        f"per-session chunks: {per_call:.3f} s per session in GX -> {per_call * len(sessions):.0f} s for "
        f"all {len(sessions):,} sessions (extrapolated from {len(sample)})"
    )


if __name__ == "__main__":
    main()
