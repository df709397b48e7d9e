"""`portfolio._DenseBars`' exact integer closes: close x 10^scale where a close is, 0 where none, at the first
scale (6, then 9) that gives every close back; not ok (the book is then marked in Decimals) with an infinite
close or one no scale covers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain import bulk_planner, portfolio
from trading_dagster.domain.portfolio import LastCloses

DAYS = [dt.date(2020, 1, 2), dt.date(2020, 1, 3)]
WALKED = np.array([(d - dt.date(1970, 1, 1)).days for d in DAYS], dtype=np.int32)


def dense_of(closes: list[tuple[str, dt.date, float]], before=None):
    prices = pl.DataFrame(closes, schema=["symbol", "session", "close"], orient="row").with_columns(open=pl.col("close"))
    table = bulk_planner.PriceTable(prices, ["A", "B", "C"], WALKED)
    assert table.ok
    return portfolio._DenseBars(table, {"A": 0, "B": 1, "C": 2}, LastCloses(before or {}))


@pytest.mark.parametrize(
    ("a", "scale"), [(12.5, 6), (0.000001, 6), (3.123456789, 9), (1234.000000001, 9)]
)
def test_integer_closes_at_the_first_scale_that_gives_them_back(a, scale):
    dense = dense_of([("A", DAYS[0], a), ("B", DAYS[0], 7.25), ("A", DAYS[1], 2.0)], {"C": (dt.date(2019, 12, 31), 4.5)})
    assert dense.ok and dense.scale == scale
    unit = 10**scale
    assert dense.scaled.dtype == np.int64
    assert dense.scaled.tolist() == [[round(a * unit), round(7.25 * unit), 0], [2 * unit, 0, 0]]
    assert dense.has_close.tolist() == [[True, True, False], [True, False, False]]
    assert dense.mark.tolist() == [0, 0, round(4.5 * unit)] and dense.marked.tolist() == [False, False, True]
    dense.close_session(0)
    assert dense.mark.tolist() == [round(a * unit), round(7.25 * unit), round(4.5 * unit)]


@pytest.mark.parametrize("a", [float("inf"), 0.1 + 0.2 - 0.3 + 1e-12, 2.0**52 / 1e6])
def test_closes_no_scale_gives_back_are_left_to_decimals(a):
    assert not dense_of([("A", DAYS[0], a), ("B", DAYS[1], 1.5)]).ok
