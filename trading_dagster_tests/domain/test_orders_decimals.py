"""`orders._decimals` converts each distinct float of a money column once: the same Decimals, digit for digit and
sign for sign, as `as_decimal` of every row (a column with a zero keeps the row-by-row path: 0.0 and -0.0 are
equal floats with different Decimals)."""

from __future__ import annotations

import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.orders import _decimals, as_decimal

money = st.one_of(
    st.integers(1, 10**6).map(lambda n: n / 100),
    st.floats(1e-9, 1e12, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 0.2, 0.30000000000000004, 1e-7, 123.456]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(money, min_size=1, max_size=30), st.integers(1, 10))
def test_repeated_values_convert_as_each_row(values, repeat):
    column = pl.Series("price", values * repeat, dtype=pl.Float64)
    got = _decimals(column)
    want = [as_decimal(v) for v in column.to_list()]
    assert [str(d) for d in got] == [str(d) for d in want]


def test_zeros_keep_their_sign():
    values = [0.0, -0.0, 1.5] * 40
    got = _decimals(pl.Series("c", values))
    assert [str(d) for d in got[:3]] == ["0.0", "-0.0", "1.5"]
    assert [math.copysign(1, float(d)) for d in got[:2]] == [1.0, -1.0]
