"""Cut the shipped sample from the shared dataset: a few dozen liquid names plus the index ETFs, all sessions.

    uv run python benchmarks/cut_sample.py [../shared/data/us_equities_etfs_daily_2008_2017.parquet]

The output (data/sample/us_equities_sample_2008_2017.parquet) is committed; the rows are copied unchanged,
real glitches included (for example SPY has no row on the 2011-02-17 outage day).
"""

import sys
from pathlib import Path

import polars as pl

SAMPLE_TICKERS = [
    # index ETFs: the benchmark (SPY) and broad market
    "SPY", "QQQ", "IWM", "DIA",
    # liquid large caps across sectors, including names with splits in the window (AAPL 7:1, NFLX 7:1, V 4:1, MA 10:1, KO 2:1)
    "AAPL", "MSFT", "GOOGL", "AMZN", "NFLX", "INTC", "CSCO", "ORCL", "IBM", "QCOM",
    "BAC", "C", "JPM", "WFC", "GS", "V", "MA",
    "XOM", "SLB", "CAT", "GE", "BA",
    "JNJ", "PFE", "MRK", "AMGN", "GILD",
    "PG", "KO", "PEP", "WMT", "HD", "MCD", "DIS", "NKE", "SBUX", "T", "VZ",
]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "sample" / "us_equities_sample_2008_2017.parquet"


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/data/us_equities_etfs_daily_2008_2017.parquet"
    df = (
        pl.scan_parquet(src)
        .filter(pl.col("ticker").is_in(SAMPLE_TICKERS))
        .select("ticker", "date", "open", "high", "low", "close", "volume")
        .sort("ticker", "date")
        .collect()
    )
    missing = set(SAMPLE_TICKERS) - set(df["ticker"].unique())
    if missing:
        raise SystemExit(f"tickers not in the source: {sorted(missing)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(OUT, compression="zstd", compression_level=19, statistics=True)
    print(f"{OUT.relative_to(ROOT)}: {df.height:,} rows, {df['ticker'].n_unique()} tickers, "
          f"{df['date'].min()}..{df['date'].max()}, {OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
