"""mark_to_market's money without a Decimal per row (`pnl._Money`): the float closes as exact integer units, the
unrealized P&L as the float nearest to value - cost, and the session sums kept in units. Each helper against
the Decimal computation it replaces (hypothesis), and whole books against the frozen per-position loop
(`reference/pnl_reference.py`) where the fast path is taken, left, or given up."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain import pnl
from trading_dagster.domain.orders import Fill
from trading_dagster.domain.portfolio import PortfolioState
from trading_dagster_tests.domain.test_pnl_columnar import DAYS, SYMBOLS, WINDOW, _fills, _same

closes = st.one_of(
    st.integers(1, 10**8).flatmap(lambda n: st.sampled_from([n / 10**k for k in range(10)])),  # short decimals
    st.floats(1e-6, 1e9, allow_nan=False, allow_infinity=False),  # anything
    st.integers(1, 10**6).map(lambda n: n / 3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(closes, min_size=1, max_size=20))
def test_decimal_units_are_the_shortest_repr(values):
    marks = np.array(values, dtype=np.float64)
    scale, units, exact = pnl._decimal_units(marks, np.ones(len(marks), dtype=bool))
    for value, unit, ok in zip(values, units.tolist(), exact.tolist(), strict=True):
        if ok:
            assert Decimal(unit).scaleb(-scale) == Decimal(repr(value))
    short = [v for v in values if -Decimal(repr(v)).as_tuple().exponent <= 9 and abs(v) < 1e6]
    if len(short) == len(values):
        assert exact.all()  # every close of at most 9 decimals (below 1e6) takes the fast path


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**52) + 1, 2**52 - 1),
            st.integers(0, 9),
            st.one_of(
                st.integers(0, 10**12).map(lambda n: Decimal(n) / 7),
                st.integers(0, 10**9).map(lambda n: Decimal(n).scaleb(-2)),
                st.decimals(-(10**9), 10**9, allow_nan=False, allow_infinity=False, places=20),
            ),
        ),
        min_size=1,
        max_size=20,
    ).filter(lambda rows: len({s for _, s, _ in rows}) == 1)
)
def test_nearest_floats_are_float_of_the_decimal(rows):
    scale = rows[0][1]
    units = np.array([u for u, _, _ in rows], dtype=np.int64)
    cost = [+c for _, _, c in rows]  # rounded to the context, as a cost the book computed
    hi = np.array([float(c) for c in cost])
    lo = np.array([float(c - Decimal(h)) for c, h in zip(cost, hi.tolist(), strict=True)])
    y, sure = pnl._nearest_floats(units, scale, hi, lo)
    for u, c, got, ok in zip(units.tolist(), cost, y.tolist(), sure.tolist(), strict=True):
        if ok:
            assert got == float(Decimal(u).scaleb(-scale) - c)


def test_ties_and_zeros_are_left_to_decimal():
    y, sure = pnl._nearest_floats(np.array([5, 3, 2**52], dtype=np.int64), 0, np.array([-0.5, 3.0, -0.5]), np.zeros(3))
    # 5.5 is sure; a zero difference has no sign to trust; 2^52 + 0.5 lies halfway between two floats
    assert y.tolist()[0] == 5.5 and sure.tolist() == [True, False, False]


@pytest.fixture
def paths(monkeypatch):
    """(scale, rows in units, rows) of each `_Money.run` of the test."""
    seen = []
    run = pnl._Money.run

    def spy(self, candidates):
        run(self, candidates)
        seen.append((self.scale, int(self.fast.sum()), len(self.fast)))

    monkeypatch.setattr(pnl._Money, "run", spy)
    return seen


def _short_prices(rng: random.Random, decimals: int, big: bool = False) -> pl.DataFrame:
    rows = []
    for day in DAYS:
        for symbol in SYMBOLS:
            if rng.random() < 0.1:
                continue
            close = round(rng.uniform(0.5, 400) * (1e12 if big else 1), decimals)
            rows.append((symbol, day, float(close)))
    return pl.DataFrame(rows, schema={"symbol": pl.String, "session": pl.Date, "close": pl.Float64}, orient="row")


START = PortfolioState(cash=Decimal("25000"), positions={"AAA": (7, Decimal("12.34567890123456789")), "ZZZ": (3, Decimal(5))})


def test_whole_books_of_short_closes_equal_the_loop(paths):
    for decimals in (0, 2, 4, 7):
        rng = random.Random(decimals)
        paths.clear()
        _same(START, _fills(rng, START), _short_prices(rng, decimals))
        (scale, fast, rows), = paths
        assert scale == decimals and fast > rows * 0.7  # ZZZ has no close: its rows are at cost, in Decimal


def test_a_book_too_large_for_units_equals_the_loop(paths):
    """Closes near 1e14 with 7 decimals do not fit in 2^52 units (Decimal rows), and sums near 10^(28 - scale)
    give the units up for the whole book (scale 0, everything in Decimal)."""
    rng = random.Random(3)
    _same(START, _fills(rng, START), _short_prices(rng, 7, big=True))
    assert paths[-1][1] < paths[-1][2] * 0.1  # the big closes' rows are Decimal rows
    huge = [Fill("big-1", WINDOW[1], WINDOW[1], "AAA", "buy", 10**12, Decimal("123456789.125"), Decimal("0.01"))]
    rich = PortfolioState(cash=Decimal(10) ** 25, positions={"BBB": (10**9, Decimal("1.0000000001"))})
    prices = _short_prices(random.Random(4), 2)
    paths.clear()
    _same(rich, huge, prices)
    assert [(s, f > 0) for s, f, _ in paths] == [(2, True), (0, False)]  # given up: all Decimal


def test_the_decimal_rows_of_a_session_enter_its_sums(paths):
    """A session mixing rows in units with rows in Decimal (no close yet: the average cost; a long close)."""
    rng = random.Random(9)
    prices = _short_prices(rng, 2)
    prices = prices.with_columns(
        pl.when((pl.col("symbol") == "BBB") & (pl.col("session") < WINDOW[10])).then(pl.col("close") / 3).otherwise(pl.col("close")).alias("close")
    ).filter(~((pl.col("symbol") == "CCC") & (pl.col("session") < WINDOW[20])))
    _same(START, _fills(rng, START), prices)
    (scale, fast, rows), = paths
    assert scale == 2 and 0.5 * rows < fast < 0.95 * rows
