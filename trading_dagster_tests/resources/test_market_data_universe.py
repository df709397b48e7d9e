"""The file market-data source with a configured universe (`[universe] symbols`): only those symbols, on the
lazy Parquet path and the whole-file path alike; a symbol the file never has is an error naming it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import PriceDataError
from trading_dagster.resources.configured import FileMarketDataResource
from trading_dagster.resources.market_data import FileMarketDataSource

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
DAY = dt.date(2017, 11, 10)


def _whole(source: FileMarketDataSource) -> FileMarketDataSource:
    source.load()  # the in-memory path (a CSV, or text dates) instead of the lazy Parquet scan
    return source


@pytest.mark.parametrize("path", ["lazy", "whole"])
def test_only_the_universe_is_fetched(path):
    source = FileMarketDataSource(SAMPLE, symbols=["msft", " SPY", "AAPL"])
    if path == "whole":
        _whole(source)
    everything = FileMarketDataSource(SAMPLE).fetch_bars(DAY, DAY)
    out = source.fetch_bars(DAY, DAY)
    assert everything["symbol"].n_unique() > 3  # the file has more: the universe filtered them
    assert out["symbol"].to_list() == ["AAPL", "MSFT", "SPY"]
    assert out.equals(everything.filter(pl.col("symbol").is_in(["AAPL", "MSFT", "SPY"])))
    assert (source._frame is None) == (path == "lazy")


def test_an_empty_universe_is_every_symbol():
    assert (
        FileMarketDataSource(SAMPLE, symbols=[])
        .fetch_bars(DAY, DAY)
        .equals(FileMarketDataSource(SAMPLE).fetch_bars(DAY, DAY))
    )


def test_an_explicit_symbols_argument_is_used_as_given():
    source = FileMarketDataSource(SAMPLE, symbols=["SPY"])
    assert source.fetch_bars(DAY, DAY, ["KO"])["symbol"].to_list() == ["KO"]


@pytest.mark.parametrize("path", ["lazy", "whole"])
def test_a_symbol_the_file_never_has_is_an_error_naming_it(path):
    source = FileMarketDataSource(SAMPLE, symbols=["SPY", "NOPE", "aapl", "ZZZZ"])
    if path == "whole":
        _whole(source)
    with pytest.raises(PriceDataError, match=r"2 symbol\(s\) .* on any date: NOPE, ZZZZ\.") as err:
        source.fetch_bars(DAY, DAY)
    assert str(SAMPLE) in str(err.value) and "AAPL" not in str(err.value)


def test_a_symbol_listed_later_is_not_an_error_in_a_range_before_it(tmp_path):
    """Listing and delisting: the check is against the whole file, so a range without the symbol's bars is
    just a range without them."""
    path = tmp_path / "bars.csv"
    path.write_text(
        "date,symbol,open,high,low,close,volume\n"
        "2024-01-02,OLD,1,2,0.5,1.5,10\n"
        "2024-01-03,OLD,1,2,0.5,1.5,10\n"
        "2024-01-03,IPO,5,6,4,5,100\n"
        "2024-01-03,OTHER,5,6,4,5,100\n"
    )
    source = FileMarketDataSource(path, symbols=["OLD", "IPO"])
    first = source.fetch_bars(dt.date(2024, 1, 2), dt.date(2024, 1, 2))
    assert first["symbol"].to_list() == ["OLD"]
    assert source.fetch_bars(dt.date(2024, 1, 3), dt.date(2024, 1, 3))["symbol"].to_list() == ["IPO", "OLD"]
    assert source.file_symbols() == ["IPO", "OLD", "OTHER"]


def test_the_resource_passes_its_symbols_to_the_file_source():
    resource = FileMarketDataResource(path=str(SAMPLE), symbols=["KO", "SPY"])
    assert resource.get().fetch_bars(DAY, DAY)["symbol"].to_list() == ["KO", "SPY"]
    assert (
        FileMarketDataResource(path=str(SAMPLE)).get().fetch_bars(DAY, DAY)["symbol"].n_unique() > 2
    )
    with pytest.raises(PriceDataError, match="NOPE"):
        FileMarketDataResource(path=str(SAMPLE), symbols=["NOPE"]).get().fetch_bars(DAY, DAY)
