"""The shipped real sample as the pipeline cleans it, and the NYSE calendar: shared by the reference's tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"


@pytest.fixture(scope="session")
def calendar() -> list[dt.date]:
    from trading_dagster.domain.calendar import nyse_calendar

    return list(nyse_calendar().sessions)


@pytest.fixture(scope="session")
def sample_sessions(calendar: list[dt.date]) -> list[dt.date]:
    """The NYSE sessions from the sample's first date to its last (2,485)."""
    dates = pl.scan_parquet(SAMPLE).select(
        pl.col("date").min().alias("first"), pl.col("date").max().alias("last")
    )
    first, last = dates.collect().row(0)
    return [d for d in calendar if first <= d <= last]


@pytest.fixture(scope="session")
def cleaned(sample_sessions: list[dt.date]) -> pl.DataFrame:
    """The whole sample (42 symbols, 2008-2017) through the pipeline's own cleaning: 38 bars quarantined,
    so real gaps (C 2009-12-17/18, GOOGL 2010-07-23, most symbols on 2010-04-26, ...)."""
    from trading_dagster.domain.prices import clean_prices

    return clean_prices(pl.read_parquet(SAMPLE), sample_sessions).cleaned
