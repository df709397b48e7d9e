"""Cut `real_breaks_sample.parquet` from the two shared datasets (../shared/data, see its README).

    .venv/bin/python trading_dagster_tests/data/make_real_breaks_sample.py

One block of real bars per case of trading_dagster_tests/domain/test_real_breaks.py: the symbol's bars from
BEFORE sessions before the case's date to AFTER sessions after it, exactly as the vendor file has them
(split-adjusted; the tests apply the defect). Columns: `case`, `source` (the file), and the raw columns.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MAIN, NASDAQ = "us_equities_etfs_daily_2008_2017.parquet", "nasdaq_traded_2017_2023.parquet"
OUT = Path(__file__).with_name("real_breaks_sample.parquet")
BEFORE, AFTER = 30, 12
# case: (file, symbol, date)
CASES: dict[str, tuple[str, str, str]] = {
    # real splits, split-adjusted in the files (the tests un-adjust them)
    "AAPL 7:1": (MAIN, "AAPL", "2014-06-09"),
    "NFLX 7:1": (MAIN, "NFLX", "2015-07-15"),
    "V 4:1": (MAIN, "V", "2015-03-19"),
    "MA 10:1": (MAIN, "MA", "2014-01-22"),
    "BRK-B 50:1": (MAIN, "BRK-B", "2010-01-21"),
    "KO 2:1": (MAIN, "KO", "2012-08-13"),
    "MNST 3:1": (MAIN, "MNST", "2016-11-10"),
    "AAPL 4:1 (2020)": (NASDAQ, "AAPL", "2020-08-31"),
    "AMZN 20:1": (NASDAQ, "AMZN", "2022-06-06"),
    # real reverse splits, split-adjusted in the main file
    "AIG 1-for-20": (MAIN, "AIG", "2009-07-01"),
    "C 1-for-10": (MAIN, "C", "2011-05-09"),
    "ETFC 1-for-10": (MAIN, "ETFC", "2010-06-02"),
    # real rows at a date of our choice (no corporate action that day), for the ratios no real case has
    "F 1-for-8": (MAIN, "F", "2016-05-02"),
    "CSCO 1-for-8": (NASDAQ, "CSCO", "2019-06-03"),
    "INTC 3:2": (MAIN, "INTC", "2013-09-16"),
    "DAL 3:2": (NASDAQ, "DAL", "2021-03-01"),
    # glitches and collapses applied to real rows
    "MSFT a third for a day": (MAIN, "MSFT", "2013-05-14"),
    "GE to 0.0001": (MAIN, "GE", "2017-09-27"),
    "HBAN 0.13": (MAIN, "HBAN", "2009-01-27"),
    # a real -50% move on x76 the dollar volume, kept
    "TRIB -50%": (MAIN, "TRIB", "2016-10-04"),
}


def main() -> None:
    frames = {name: pl.read_parquet(SHARED / name).rename({"ticker": "symbol"}) for name in (MAIN, NASDAQ)}
    blocks = []
    for case, (name, symbol, day) in CASES.items():
        bars = frames[name].filter(pl.col("symbol") == symbol).sort("date")
        at = bars["date"].search_sorted(dt.date.fromisoformat(day))
        block = bars.slice(at - BEFORE, BEFORE + AFTER).select(
            pl.lit(case).alias("case"),
            pl.lit(name).alias("source"),
            "symbol",
            "date",
            "open",
            "high",
            "low",
            "close",
            pl.col("volume").cast(pl.Int64),
        )
        blocks.append(block)
    sample = pl.concat(blocks)
    sample.write_parquet(OUT, compression="zstd", compression_level=19)
    print(f"{OUT}: {sample.height} rows, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
