"""Where raw bars come from: an abstract source, and a file-backed one (the shipped sample or a user file).

Assets type-hint `MarketDataSource`, so the same raw-prices asset runs on a file offline and on Alpaca
(a later issue) in paper/live, and tests need no network.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from trading_dagster.domain.prices import RAW_COLUMNS, PriceDataError, read_ohlcv_file


class MarketDataSource(abc.ABC):
    """A source of daily OHLCV bars in the raw schema (docs/design.md)."""

    @abc.abstractmethod
    def fetch_bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """Bars dated start <= date <= end, for `symbols` (all the source has when None), raw schema."""


def _check_range(start: dt.date, end: dt.date) -> None:
    if start > end:
        raise ValueError(f"empty date range: start {start} is after end {end}")


def _normalize_symbols(symbols: Sequence[str]) -> list[str]:
    if isinstance(symbols, str):  # a bare "SPY" would otherwise be read as ['S', 'P', 'Y']
        raise TypeError("symbols must be a sequence of tickers, not a single string")
    return sorted({s.strip().upper() for s in symbols})


class FileMarketDataSource(MarketDataSource):
    """Bars from one OHLCV CSV or Parquet file (any column spelling `normalize_ohlcv` accepts).

    The file is read once per instance, on the first fetch, and kept in memory: a ten-year backfill asks
    for thousands of single-day slices, and re-scanning a file sorted by ticker for each one would read
    all of it every time. Parquet is scanned lazily so only the OHLCV columns are read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._frame: pl.DataFrame | None = None

    def load(self) -> pl.DataFrame:
        """The whole file in the raw schema, sorted by (date, symbol); cached."""
        if self._frame is None:
            self._frame = read_ohlcv_file(self.path).sort("date", "symbol")
        return self._frame

    def fetch_bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        _check_range(start, end)
        predicate = pl.col("date").is_between(start, end)
        if symbols is not None:
            predicate &= pl.col("symbol").is_in(_normalize_symbols(symbols))
        return self.load().filter(predicate).select(RAW_COLUMNS)

    def date_range(self) -> tuple[dt.date, dt.date]:
        """First and last date in the file (the sessions an import or the demo covers)."""
        frame = self.load()
        if frame.is_empty():
            raise PriceDataError(f"{self.path} holds no rows")
        return frame["date"].min(), frame["date"].max()
