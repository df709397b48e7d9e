"""The shared dataset as the benchmarks compare engines on it: read, optionally cut to the first N symbols, and
cleaned by the pipeline's own `clean_prices` over the NYSE sessions from its first to its last date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl


def clean_shared_file(path: Path, symbols: int | None = None) -> tuple[pl.DataFrame, list[dt.date], list[dt.date]]:
    """(cleaned prices, the file's sessions, the whole NYSE calendar); `symbols`: the first N in alphabetical order."""
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.prices import clean_prices

    raw = pl.read_parquet(path)
    symbol_col = "ticker" if "ticker" in raw.columns else "symbol"
    if symbols:
        keep = raw[symbol_col].unique().sort().head(symbols).to_list()
        raw = raw.filter(pl.col(symbol_col).is_in(keep))
    date_col = "date" if "date" in raw.columns else "session"
    calendar = list(nyse_calendar().sessions)
    first, last = raw[date_col].min(), raw[date_col].max()
    sessions = [d for d in calendar if first <= d <= last]
    return clean_prices(raw, sessions).cleaned, sessions, calendar
