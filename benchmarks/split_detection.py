"""How often the break rule (domain/prices.py, decision 0004 section 3) confirms an unadjusted split with the
right ratio and ex-date, on real bars: the shared 2008-2017 file is split-adjusted, so un-adjusting it at a
random session (prices before it x the ratio, volume / the ratio) makes a real unadjusted feed with a split
there, on whatever the market did that day.

    .venv/bin/python benchmarks/split_detection.py [events] [seed]

Prints, per share ratio, how many of `events` random (liquid symbol, session) pairs were confirmed with
the right ratio and break date, confirmed wrong, or missed (and the day's move of those missed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading_dagster.domain.prices import clean_prices  # noqa: E402
from trading_dagster_tests.shared_data import shared_data_file  # noqa: E402

RATIOS = (2.0, 3.0, 1.5, 4.0, 5.0, 7.0, 8.0, 10.0, 20.0, 50.0, 0.5, 0.125, 0.1, 0.05)
BEFORE, AFTER = 30, 12


def main(events: int = 200, seed: int = 20171110) -> None:
    path = shared_data_file()
    if path is None:
        raise SystemExit("shared data not found (see trading_dagster_tests/shared_data.py)")
    liquid = pl.read_csv(path.parent / "tickers.csv").filter(pl.col("group") == "liquid_top1500")["ticker"]
    raw = (
        pl.read_parquet(path, columns=["ticker", "date", "open", "high", "low", "close", "volume"])
        .rename({"ticker": "symbol"})
        .filter(pl.col("symbol").is_in(liquid.implode()))
        .sort("symbol", "date")
        .with_columns(pl.int_range(pl.len()).over("symbol").alias("_i"), pl.len().over("symbol").alias("_n"))
    )
    rng = np.random.default_rng(seed)
    eligible = raw.filter((pl.col("_i") >= BEFORE) & (pl.col("_i") < pl.col("_n") - AFTER))
    picks = eligible[rng.choice(eligible.height, size=events, replace=False)].select("symbol", "_i", "date")
    pieces = []
    for k, (symbol, i, ex_date) in enumerate(picks.iter_rows()):
        rows = raw.filter((pl.col("symbol") == symbol) & pl.col("_i").is_between(i - BEFORE, i + AFTER - 1))
        pieces.append(rows.with_columns(pl.lit(f"E{k}").alias("symbol"), pl.lit(ex_date).alias("_ex")))
    sample = pl.concat(pieces)
    move = (
        sample.filter(pl.col("date") == pl.col("_ex"))
        .select("symbol", "close")
        .join(
            sample.filter(pl.col("date") < pl.col("_ex"))
            .group_by("symbol")
            .agg(pl.col("close").last().alias("prev")),
            on="symbol",
        )
    )
    move = move.select("symbol", (pl.col("close") / pl.col("prev") - 1).alias("move"))
    sessions = sample["date"].unique().sort().to_list()
    print(f"{events} random (liquid symbol, session) pairs of the 2008-2017 file, seed {seed}")
    for ratio in RATIOS:
        before = pl.col("date") < pl.col("_ex")
        unadjusted = sample.with_columns(
            *[
                pl.when(before).then(pl.col(c) * ratio).otherwise(pl.col(c)).alias(c)
                for c in ("open", "high", "low", "close")
            ],
            pl.when(before)
            .then((pl.col("volume") / ratio).round())
            .otherwise(pl.col("volume"))
            .cast(pl.Int64)
            .alias("volume"),
        )
        ex = unadjusted.select("symbol", "_ex").unique()
        result = clean_prices(unadjusted.drop("_i", "_n", "_ex"), sessions)
        got = result.breaks.join(ex, on="symbol", how="right")
        right = got.filter(
            (pl.col("break_date") == pl.col("_ex")) & ((pl.col("share_ratio") / ratio - 1).abs() < 1e-9)
        )
        missed = ex.join(result.breaks, on="symbol", how="anti").join(move, on="symbol")
        wrong = len(set(result.breaks["symbol"])) - right["symbol"].n_unique()
        moves = ", ".join(f"{m:+.1%}" for m in missed.sort("move")["move"].head(8))
        print(
            f"ratio {ratio:g}: right {right['symbol'].n_unique()}, wrong ratio or date {wrong}, "
            f"missed {missed.height}"
            + (f" (ex-date moves {moves}{', ...' if missed.height > 8 else ''})" if missed.height else "")
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
