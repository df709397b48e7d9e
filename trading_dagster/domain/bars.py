"""The bar frames every stage shares: schemas, the error for price data that cannot be trusted, and the
split of a raw frame into NYSE sessions. Pure polars, no Dagster.

Schemas are those of docs/design.md (raw: `symbol, date, open, high, low, close, volume`; cleaned: `date`
renamed `session`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from trading_dagster.domain.calendar import SessionCalendar

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
RAW_COLUMNS: tuple[str, ...] = ("symbol", "date", *PRICE_COLUMNS, "volume")
RAW_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "date": pl.Date(),
    **{c: pl.Float64() for c in PRICE_COLUMNS},
    "volume": pl.Int64(),
}
CLEAN_COLUMNS: tuple[str, ...] = ("symbol", "session", *PRICE_COLUMNS, "volume")
CLEAN_SCHEMA: dict[str, pl.DataType] = {("session" if k == "date" else k): v for k, v in RAW_SCHEMA.items()}
_MAX_LISTED = 20


class PriceDataError(ValueError):
    """Price data that cannot be trusted as it stands: unparseable, incomplete or outside its partition."""


def empty_raw_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)


def _example_row(df: pl.DataFrame, bad: pl.Series) -> str:
    idx = int(bad.arg_true()[0])
    return f"row {idx} (0-based, header excluded): {df.row(idx, named=True)}"


# --------------------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------------------


def _describe_day(day: dt.date, calendar: SessionCalendar) -> str:
    if day < calendar.first or day > calendar.last:
        return f"outside the calendar {calendar.first}..{calendar.last}"
    if day.weekday() >= 5:
        return day.strftime("%A")
    return "a weekday the exchange is closed"


def _list_dates(counts: pl.DataFrame, describe: Any = None) -> str:
    items = []
    for day, n in counts.head(_MAX_LISTED).iter_rows():
        what = f"{describe(day)}, " if describe else ""
        items.append(f"{day} ({what}{n} row{'s' if n != 1 else ''})")
    more = counts.height - _MAX_LISTED
    return ", ".join(items) + (f", and {more} more date(s)" if more > 0 else "")


def _date_counts(df: pl.DataFrame, column: str) -> pl.DataFrame:
    return df.group_by(column).len().sort(column)


def _check_no_null_dates(df: pl.DataFrame, column: str) -> None:
    n = df[column].null_count()
    if n:
        bad = df[column].is_null()
        raise PriceDataError(
            f"{n} row(s) have no {column!r}, so they belong to no session; for example {_example_row(df, bad)}"
        )


def check_sessions(df: pl.DataFrame, calendar: SessionCalendar, column: str = "date") -> None:
    """Raise a PriceDataError listing every date in `df[column]` that is not a session of `calendar`.

    Rows on weekends or holidays are a vendor or import error (e.g. the Saturday rows in the source
    dataset); dropping them quietly would hide it, so they stop the run instead.
    """
    _check_no_null_dates(df, column)
    counts = _date_counts(df, column)
    off = [day for day in counts[column] if not calendar.is_session(day)]
    bad = counts.filter(pl.col(column).is_in(pl.Series(off, dtype=pl.Date)))
    if bad.height:
        raise PriceDataError(
            f"{int(bad['len'].sum())} row(s) on {bad.height} non-session date(s): "
            f"{_list_dates(bad, lambda d: _describe_day(d, calendar))}"
        )


def split_by_session(df: pl.DataFrame, calendar: SessionCalendar) -> dict[dt.date, pl.DataFrame]:
    """One frame per session (ascending), rows sorted by symbol, after checking every row is on a session.

    Sorting makes the object written for a session byte-identical whichever way its rows arrived.
    """
    check_sessions(df, calendar)
    if df.height == 0:
        return {}
    parts = df.sort("date", "symbol", maintain_order=True).partition_by("date", as_dict=True)
    return {key[0]: part for key, part in sorted(parts.items(), key=lambda kv: kv[0][0])}
