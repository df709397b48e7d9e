"""FileMarketDataSource over the shipped sample and over a user CSV."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.prices import RAW_SCHEMA, PriceDataError
from trading_dagster.resources.market_data import FileMarketDataSource, MarketDataSource

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"


@pytest.fixture(scope="module")
def sample() -> FileMarketDataSource:
    return FileMarketDataSource(SAMPLE)


def test_sample_range_and_symbols(sample):
    assert isinstance(sample, MarketDataSource)
    out = sample.fetch_bars(dt.date(2011, 2, 16), dt.date(2011, 2, 18), [" spy", "AAPL"])
    assert out.schema == pl.Schema(RAW_SCHEMA)
    # 2011-02-17 is a source outage: SPY has no row that day, AAPL has (data/README)
    assert out.select("date", "symbol").rows() == [
        (dt.date(2011, 2, 16), "AAPL"),
        (dt.date(2011, 2, 16), "SPY"),
        (dt.date(2011, 2, 17), "AAPL"),
        (dt.date(2011, 2, 18), "AAPL"),
        (dt.date(2011, 2, 18), "SPY"),
    ]


def test_sample_all_symbols_one_day_and_the_cache(sample):
    day = dt.date(2017, 11, 10)
    assert sample.fetch_bars(day, day)["symbol"].n_unique() == 42
    assert sample.load() is sample.load()  # read once per instance


def test_empty_range_result_and_bad_arguments(sample):
    assert sample.fetch_bars(dt.date(2030, 1, 1), dt.date(2030, 1, 31)).height == 0
    with pytest.raises(ValueError, match="start 2024-01-05 is after end 2024-01-02"):
        sample.fetch_bars(dt.date(2024, 1, 5), dt.date(2024, 1, 2))
    with pytest.raises(TypeError, match="not a single string"):
        sample.fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3), "SPY")


def test_user_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "Date,Symbol,Open,High,Low,Close,Volume\n2024-01-02,abc,1,2,0.5,1.5,10\n2024-01-03,abc,1,2,1,1,5\n"
    )
    source = FileMarketDataSource(path)
    out = source.fetch_bars(dt.date(2024, 1, 3), dt.date(2024, 1, 3), None)
    assert out.rows() == [("ABC", dt.date(2024, 1, 3), 1.0, 2.0, 1.0, 1.0, 5)]


def test_vendor_error_page_fails_on_first_fetch(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("<html><body>Service Unavailable</body></html>")
    with pytest.raises(PriceDataError, match="HTML"):
        FileMarketDataSource(path).fetch_bars(dt.date(2024, 1, 2), dt.date(2024, 1, 2))
