"""FileMarketDataSource over the shipped sample and over a user CSV."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import RAW_SCHEMA, PriceDataError
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


def test_parquet_ranges_are_scanned_lazily_and_equal_the_whole_file_path():
    """A Parquet file with typed dates serves a range without loading the file; the rows are the same."""
    lazy = FileMarketDataSource(SAMPLE)
    whole = FileMarketDataSource(SAMPLE)
    whole.load()
    for start, end, symbols in [
        (dt.date(2017, 11, 10), dt.date(2017, 11, 10), None),
        (dt.date(2011, 2, 14), dt.date(2011, 2, 21), None),
        (dt.date(2008, 1, 1), dt.date(2008, 3, 31), ["spy", "AAPL", "NOPE"]),
    ]:
        assert lazy.fetch_bars(start, end, symbols).equals(whole.fetch_bars(start, end, symbols))
    assert lazy._frame is None  # never loaded whole
    assert lazy.date_range() == whole.date_range() == (dt.date(2008, 1, 2), dt.date(2017, 11, 10))
    assert lazy.fetch_bars(dt.date(2030, 1, 1), dt.date(2030, 1, 2)).schema == pl.Schema(RAW_SCHEMA)


def test_parquet_with_text_dates_is_read_whole(tmp_path):
    path = tmp_path / "text_dates.parquet"
    pl.DataFrame(
        {"ticker": ["abc", "abc"], "date": ["2024-01-02", "2024-01-03"], "open": [1.0, 1.0], "high": [2.0, 2.0],
         "low": [0.5, 1.0], "close": [1.5, 1.0], "volume": [10, 5]}
    ).write_parquet(path)
    source = FileMarketDataSource(path)
    assert source.fetch_bars(dt.date(2024, 1, 3), dt.date(2024, 1, 3)).rows() == [
        ("ABC", dt.date(2024, 1, 3), 1.0, 2.0, 1.0, 1.0, 5)
    ]
    assert source._frame is not None


def test_bad_values_in_the_fetched_range_name_the_file(tmp_path):
    path = tmp_path / "bad.parquet"
    pl.DataFrame(
        {"ticker": ["abc"], "date": [dt.date(2024, 1, 2)], "open": ["x"], "high": ["2"], "low": ["1"],
         "close": ["1.5"], "volume": ["10"]}
    ).write_parquet(path)
    with pytest.raises(PriceDataError, match=r"bad\.parquet.*open"):
        FileMarketDataSource(path).fetch_bars(dt.date(2024, 1, 2), dt.date(2024, 1, 2))
