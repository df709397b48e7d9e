"""`clean_prices` on raw rows already in (date, symbol) order, each key once (what the raw store reads),
skips its sort: the three frames must be those of the same rows in any order, on real rows (data/sample, as
delivered and with a decimal glitch and an unexplained split put in, so the history rules fire). Rows in order but with a
repeated key still take the sorting path and quarantine the conflict."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.prices import DUPLICATE_CONFLICT, _each_key_once_in_order, clean_prices
from trading_dagster.domain.vendor_files import normalize_ohlcv

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"


def _raw(glitches: bool) -> pl.DataFrame:
    """The sample's 2008-2009 rows in (date, symbol) order; with `glitches`, one close shifted by a decimal
    place and one symbol's prices halved from 2009 on (an unexplained 2:1 split), so the history rules fire."""
    raw = normalize_ohlcv(pl.read_parquet(SAMPLE)).filter(pl.col("date").dt.year() <= 2009)
    if glitches:
        first, second = raw["symbol"].unique().sort().head(2).to_list()
        day = raw.filter(pl.col("symbol") == first)["date"].sort()[300]
        shifted = (pl.col("symbol") == first) & (pl.col("date") == day)
        split = (pl.col("symbol") == second) & (pl.col("date").dt.year() == 2009)
        raw = raw.with_columns(
            pl.when(shifted).then(pl.col("close") * 10).otherwise(pl.col("close")).alias("close")
        ).with_columns(
            *(
                pl.when(split).then(pl.col(c) / 2).otherwise(pl.col(c)).alias(c)
                for c in ("open", "high", "low", "close")
            ),
            pl.when(split).then(pl.col("volume") * 2).otherwise(pl.col("volume")).alias("volume"),
        )
    return raw.sort("date", "symbol")


@pytest.mark.parametrize("glitches", [False, True])
def test_rows_in_order_clean_as_the_same_rows_shuffled(glitches):
    raw = _raw(glitches)
    sessions = raw["date"].unique().sort().to_list()
    assert _each_key_once_in_order(raw)
    shuffled = raw.sample(fraction=1.0, shuffle=True, seed=5)
    assert not _each_key_once_in_order(shuffled)
    fast, slow = clean_prices(raw, sessions), clean_prices(shuffled, sessions)
    assert fast.cleaned.height > 10_000
    assert fast.cleaned.equals(slow.cleaned)
    assert fast.quarantine.equals(slow.quarantine)
    assert fast.breaks.equals(slow.breaks)
    if glitches:
        assert fast.quarantine.height and fast.breaks.height  # the history rules fired


def test_a_repeated_key_in_order_is_still_a_conflict():
    raw = _raw(glitches=False)
    sessions = raw["date"].unique().sort().to_list()
    other = raw.slice(500, 1).with_columns(pl.col("close") * 1.01)
    doubled = pl.concat([raw, other]).sort("date", "symbol", maintain_order=True)
    assert not _each_key_once_in_order(doubled)
    result = clean_prices(doubled, sessions)
    conflicts = result.quarantine.filter(pl.col("reason") == DUPLICATE_CONFLICT)
    assert conflicts.height == 2
    assert conflicts["symbol"].unique().to_list() == [other["symbol"][0]]
    key = (pl.col("symbol") == other["symbol"][0]) & (pl.col("session") == other["date"][0])
    assert result.cleaned.filter(key).height == 0
