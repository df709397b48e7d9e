"""clean_prices decides which rows it rejects from `_level` (the bars the break rule reads) and the few flags
such a bar can still raise, not from every flag (`prices._rejected`). On every combination of missing,
infinite, zero, negative, near-zero, normal and outlying fields and volumes, the rows it rejects must be
exactly the rows on which some flag of `_flag_exprs` fires, and each must carry the first of them."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl

from trading_dagster.domain import prices
from trading_dagster.domain.bars import RAW_SCHEMA

SESSION = dt.date(2017, 7, 3)
VALUES = [None, float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 0.0005, 9.0, 10.0, 100.0]


def _grid() -> pl.DataFrame:
    rows = []
    for i, (o, h, low, c) in enumerate(itertools.product(VALUES, repeat=4)):
        for j, volume in enumerate((None, -5, 0, 1000)):
            symbol = None if (i + j) % 997 == 0 else f"S{i}_{j}"
            rows.append((symbol, SESSION, o, h, low, c, volume))
    return pl.DataFrame(rows, schema=RAW_SCHEMA, orient="row")


def test_the_rows_rejected_are_the_rows_some_flag_fires_on_with_the_first_flag_as_reason():
    grid = _grid()
    result = prices.clean_prices(grid, [SESSION])
    # the reference: every flag of every row (one session, no history: the history columns are null)
    frame = prices.normalize_ohlcv(grid).with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in {**prices._HISTORY_COLUMNS, **prices._BREAK_COLUMNS}.items()]
    )
    flags = prices._flag_exprs()
    expected = frame.with_columns(
        prices._reason_expr({c: flags[c] for c in prices.SANITY_PRIORITY}).alias("reason")
    ).sort("date", "symbol", maintain_order=True)
    clean = expected.filter(pl.col("reason").is_null())
    rejected = expected.filter(pl.col("reason").is_not_null())
    assert clean.height >= 5 and rejected.height > 10_000
    assert set(rejected["reason"]) >= {
        prices.NULL_VALUE, prices.NON_POSITIVE_PRICE, prices.NEAR_ZERO_PRICE, prices.HIGH_BELOW_LOW,
        prices.FIELD_OUTLIER, prices.CLOSE_OUTSIDE_RANGE, prices.OPEN_OUTSIDE_RANGE, prices.NEGATIVE_VOLUME,
        prices.ZERO_VOLUME,
    }
    assert result.cleaned["symbol"].to_list() == clean["symbol"].to_list()
    got = result.quarantine.select("symbol", "open", "high", "low", "close", "volume", "reason")
    want = rejected.select("symbol", "open", "high", "low", "close", "volume", "reason")
    key = ["symbol", "open", "high", "low", "close", "volume"]
    assert got.sort(key, nulls_last=True).equals(want.sort(key, nulls_last=True))
