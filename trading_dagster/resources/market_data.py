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

from trading_dagster.domain.bars import RAW_COLUMNS, PriceDataError, empty_raw_frame
from trading_dagster.domain.vendor_files import (
    normalize_ohlcv,
    read_ohlcv_file,
    resolve_columns,
    sniff_format,
)


class MarketDataSource(abc.ABC):
    """A source of daily OHLCV bars in the raw schema (docs/design.md)."""

    @abc.abstractmethod
    def fetch_bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """Bars dated start <= date <= end, for `symbols` (all the source has when None), raw schema."""

    def describe(self) -> str:
        """Where the bars come from, for error messages (a file path, an API)."""
        return type(self).__name__


def _check_range(start: dt.date, end: dt.date) -> None:
    if start > end:
        raise ValueError(f"empty date range: start {start} is after end {end}")


def _normalize_symbols(symbols: Sequence[str]) -> list[str]:
    if isinstance(symbols, str):  # a bare "SPY" would otherwise be read as ['S', 'P', 'Y']
        raise TypeError("symbols must be a sequence of tickers, not a single string")
    return sorted({s.strip().upper() for s in symbols})


def _refuse_missing_dates(path: Path, missing: int, rows: int, example: pl.DataFrame | None) -> None:
    if missing:
        first = example.head(1).to_dicts()[0] if example is not None and example.height else {}
        raise PriceDataError(
            f"{path}: {missing} row(s) have no 'date' (of {rows}), e.g. {first}; every bar needs its session "
            "(nothing is dropped)"
        )


class FileMarketDataSource(MarketDataSource):
    """Bars from one OHLCV CSV or Parquet file (any column spelling `normalize_ohlcv` accepts).

    A Parquet file whose date column is typed as a date is read lazily: a fetch scans only the columns
    and rows of its date range (polars pushes the filter into the scan), so a daily run reads one day of
    the ten-year file in ~0.1 s instead of loading all 3.8 M rows (~4 s). A CSV, or a Parquet file with
    text dates, is read and normalized whole on first use and kept in memory (`load`), so a file is
    parsed once however many ranges are asked of it.

    `symbols` is the configured universe (`[universe] symbols`): `fetch_bars(symbols=None)` returns only
    those (None or empty: every symbol in the file), as the Alpaca source does; an explicit `symbols`
    argument is used as given. A universe symbol that the file holds on no date at all is an error naming
    it (`PriceDataError`, on the first fetch), not a warning: the check is against the whole file, not the
    fetched range, so a stock that lists or delists during the ten years (no bar in a given range) is fine,
    and what remains is a typo or the wrong file, which would otherwise be a silently missing stock for
    every session of the backtest.
    """

    def __init__(self, path: str | Path, symbols: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.symbols: tuple[str, ...] | None = tuple(_normalize_symbols(symbols)) if symbols else None
        self._frame: pl.DataFrame | None = None
        self._date_column: str | None | bool = False  # False: not probed yet; None: no lazy path
        self._universe_checked = False

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> pl.DataFrame:
        """The whole file in the raw schema, sorted by (date, symbol); cached. Rows without a date are an
        error (a range filter would drop them silently)."""
        if self._frame is None:
            frame = read_ohlcv_file(self.path)
            missing = frame["date"].null_count()
            _refuse_missing_dates(self.path, missing, frame.height, frame.filter(pl.col("date").is_null()) if missing else None)
            self._frame = frame.sort("date", "symbol")
        return self._frame

    def _lazy_date_column(self) -> str | None:
        """The Parquet column holding typed dates, or None when the file must be read whole. Checked once:
        the file must parse, hold rows, and have a date on every row."""
        if self._date_column is False:
            self._date_column = None
            if self.path.is_file() and sniff_format(self.path) == "parquet":
                try:
                    schema = pl.scan_parquet(self.path).collect_schema()
                    column = resolve_columns(schema.names())["date"]
                    if schema[column] == pl.Date:
                        rows, missing = (
                            pl.scan_parquet(self.path)
                            .select(pl.len(), pl.col(column).null_count())
                            .collect()
                            .row(0)
                        )
                        if rows == 0:
                            raise PriceDataError("the file holds no data rows")
                        example = (
                            pl.scan_parquet(self.path).filter(pl.col(column).is_null()).head(1).collect()
                            if missing
                            else None
                        )
                        _refuse_missing_dates(self.path, missing, rows, example)
                        self._date_column = column
                except PriceDataError as exc:
                    raise exc if str(exc).startswith(str(self.path)) else PriceDataError(f"{self.path}: {exc}") from exc
                except (pl.exceptions.PolarsError, OSError) as exc:
                    raise PriceDataError(f"{self.path}: cannot be read as parquet: {exc}") from exc
        return self._date_column  # type: ignore[return-value]

    def _scan(self) -> pl.LazyFrame:
        mapping = resolve_columns(pl.scan_parquet(self.path).collect_schema().names())
        return pl.scan_parquet(self.path).select(list(mapping.values()))

    def file_symbols(self) -> list[str]:
        """Every symbol in the file, on any date, as `normalize_ohlcv` spells them (sorted)."""
        column = None if self._frame is not None else self._lazy_date_column()
        if column is None:
            symbols = self.load()["symbol"]
        else:
            raw = resolve_columns(pl.scan_parquet(self.path).collect_schema().names())["symbol"]
            try:
                symbols = pl.scan_parquet(self.path).select(pl.col(raw).unique()).collect().to_series()
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise PriceDataError(f"{self.path}: cannot be read as parquet: {exc}") from exc
            symbols = symbols.cast(pl.Utf8).str.strip_chars().str.to_uppercase()
        return sorted(s for s in symbols.drop_nulls().unique().to_list() if s)

    def _universe(self) -> list[str] | None:
        """The configured universe, checked once against the whole file (see the class docstring)."""
        if self.symbols is None:
            return None
        if not self._universe_checked:
            absent = sorted(set(self.symbols) - set(self.file_symbols()))
            if absent:
                raise PriceDataError(
                    f"{self.path}: {len(absent)} symbol(s) of the configured universe ([universe] symbols) "
                    f"have no bar in the file on any date: {', '.join(absent)}. Fix the list or the file; "
                    "a symbol that lists or delists during the file's period only needs some bar in it."
                )
            self._universe_checked = True
        return list(self.symbols)

    def fetch_bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        _check_range(start, end)
        wanted = self._universe() if symbols is None else _normalize_symbols(symbols)
        column = None if self._frame is not None else self._lazy_date_column()
        if column is None:
            predicate = pl.col("date").is_between(start, end)
            if wanted is not None:
                predicate &= pl.col("symbol").is_in(wanted)
            return self.load().filter(predicate).select(RAW_COLUMNS)
        try:
            rows = self._scan().filter(pl.col(column).is_between(start, end)).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise PriceDataError(f"{self.path}: cannot be read as parquet: {exc}") from exc
        if rows.height == 0:
            return empty_raw_frame()
        try:
            bars = normalize_ohlcv(rows)
        except PriceDataError as exc:
            raise PriceDataError(f"{self.path}: {exc}") from exc
        if wanted is not None:
            bars = bars.filter(pl.col("symbol").is_in(wanted))
        return bars.sort("date", "symbol").select(RAW_COLUMNS)

    def date_range(self) -> tuple[dt.date, dt.date]:
        """First and last date in the file (the sessions an import or the demo covers)."""
        column = None if self._frame is not None else self._lazy_date_column()
        if column is None:
            frame = self.load()
            first, last = (frame["date"].min(), frame["date"].max()) if frame.height else (None, None)
        else:
            span = self._scan().select(pl.col(column).min().alias("a"), pl.col(column).max().alias("b"))
            first, last = span.collect().row(0)
        if first is None:
            raise PriceDataError(f"{self.path} holds no rows")
        return first, last
