"""The bulk planner's dense bars (`portfolio._DenseBars`: opens, closes and exact equity over arrays) and the
paths around them, against the frozen reference planner: a book that starts with positions (held symbols
without a signal, one without any close), closes no decimal scale covers, a book event in the window."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.domain import bulk_planner, portfolio
from trading_dagster.domain.book_events import Split
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.portfolio import LastCloses, PortfolioState, Position
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.settings import SAMPLE_FILE
from trading_dagster_tests.reference import planner_reference as reference

SLIP, FEE = SlippageModel(), CommissionModel()
FIRST, LAST = dt.date(2011, 1, 3), dt.date(2011, 12, 30)


@pytest.fixture(scope="module")
def real():
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

    prices = (
        pl.read_parquet(SAMPLE_FILE)
        .rename({"ticker": "symbol", "date": "session"})
        .filter(pl.col("session").is_between(dt.date(2010, 3, 1), LAST))
    )
    calendar = list(nyse_calendar().sessions)
    days = [d for d in calendar if dt.date(2010, 3, 1) <= d <= LAST]
    window = [d for d in days if d >= FIRST]
    indicators = compute_indicators_anchored(prices, days, window[0], window[-1])
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, window[0], window[-1], days)
    return prices, signals, calendar


def both(signals, prices, sessions, risk, start: PortfolioState, **kw):
    return [
        module.simulate(signals, prices, start, sessions, risk, SLIP, FEE, "paper", **kw)
        for module in (portfolio, reference)
    ]


def assert_same(fast, ref):
    assert_frame_equal(fast.orders_frame, ref.orders_frame, check_exact=True)
    assert fast.fills == ref.fills
    assert fast.pending == ref.pending
    assert (fast.end_state.cash, dict(fast.end_state.positions)) == (ref.end_state.cash, dict(ref.end_state.positions))


def window(calendar):
    return [d for d in calendar if FIRST <= d <= LAST]


def test_a_book_with_positions_without_signals_or_closes(real):
    prices, signals, calendar = real
    symbols = sorted(signals["symbol"].unique().to_list())
    quiet = sorted(set(prices["symbol"].unique().to_list()) - set(symbols))
    held = {s: Position(7, Decimal("12.34")) for s in symbols[:3]}
    held |= {s: Position(3, Decimal("55.5")) for s in quiet[:2]}  # no signal in the window
    held["NOBARS"] = Position(5, Decimal(100) / 3)  # never priced: marked at its (rounded) average cost
    start = PortfolioState(Decimal(60_000), held)
    risk = RiskConfig(initial_cash=Decimal(60_000))
    fast, ref = both(signals, prices, window(calendar), risk, start)
    assert_same(fast, ref)
    assert ref.orders_frame.filter(pl.col("status") == "approved").height > 50


def test_closes_no_scale_covers_take_the_decimal_marks(real):
    prices, signals, calendar = real
    odd = prices.with_columns(close=pl.col("close") / 3)  # 1/3s: no decimal scale up to 1e-9 prints them
    risk = RiskConfig(initial_cash=Decimal(40_000))
    fast, ref = both(signals, odd, window(calendar), risk, PortfolioState.initial(risk.initial_cash))
    assert_same(fast, ref)


def test_a_book_event_in_the_window(real):
    prices, signals, calendar = real
    days = window(calendar)
    symbol = signals.filter(pl.col("side") == "buy")["symbol"].mode().sort()[0]
    split = Split(symbol, days[120], days[120], 2, 1, None, "test")
    risk = RiskConfig(initial_cash=Decimal(40_000))
    fast, ref = both(signals, prices, days, risk, PortfolioState.initial(risk.initial_cash), events=[split])
    assert_same(fast, ref)


def test_dense_equity_equals_the_decimal_marks():
    rng = np.random.default_rng(7)
    symbols = [f"S{i}" for i in range(40)]
    sessions = [dt.date(2020, 1, 2) + dt.timedelta(days=i) for i in range(5)]
    rows = [
        (s, d, float(round(rng.uniform(0.5, 3_000), int(rng.integers(0, 7)))))
        for s in symbols
        for d in sessions
        if rng.random() < 0.8
    ]
    prices = pl.DataFrame(rows, schema=["symbol", "session", "close"], orient="row").with_columns(open=pl.col("close"))
    before = LastCloses({s: (dt.date(2019, 12, 31), 10.125) for s in symbols[:20]})
    index = {s: i for i, s in enumerate(symbols)}
    walked = np.array([(d - dt.date(1970, 1, 1)).days for d in sessions], dtype=np.int32)
    table = bulk_planner.PriceTable(prices, symbols, walked)
    assert table.ok
    dense = portfolio._DenseBars(table, index, before)
    assert dense.ok
    marks = LastCloses({s: (dt.date(2019, 12, 31), 10.125) for s in symbols[:20]})
    exact = portfolio._ExactPrices()
    for k, d in enumerate(sessions):
        dense.close_session(k)
        marks.update(d, {s: c for s, day, c, _ in prices.iter_rows() if day == d})
        qty = rng.integers(0, 500, len(symbols)) * (rng.random(len(symbols)) < 0.5)
        state = PortfolioState(
            Decimal("1234.56"), {s: Position(int(q), Decimal(1)) for s, q in zip(symbols, qty, strict=True) if q}
        )
        held = np.array([state.qty(s) for s in symbols], dtype=np.int64)
        assert dense.equity(state, held) == portfolio._equity(state, marks, exact)


def test_the_price_table_leaves_out_what_the_planner_takes_for_no_price():
    day = dt.date(2020, 1, 2)
    prices = pl.DataFrame(
        [("A", day, 1.5, 2.0), ("B", day, 0.0, -1.0), ("C", day, None, 3.0), ("A", day + dt.timedelta(days=9), 9.0, 9.0)],
        schema=["symbol", "session", "open", "close"],
        orient="row",
    )
    table = bulk_planner.PriceTable(prices, ["A", "B", "C", "D"], np.array([(day - dt.date(1970, 1, 1)).days]))
    assert table.ok
    assert np.array_equal(table.opens, [[1.5, np.nan, np.nan, np.nan]], equal_nan=True)
    assert np.array_equal(table.closes, [[2.0, np.nan, 3.0, np.nan]], equal_nan=True)
    twice = pl.concat([prices, prices.head(1)])
    assert not bulk_planner.PriceTable(twice, ["A"], np.array([(day - dt.date(1970, 1, 1)).days])).ok


def test_the_price_table_of_no_rows():
    day = dt.date(2020, 1, 2)
    empty = pl.DataFrame(schema={"symbol": pl.String, "session": pl.Date, "open": pl.Float64, "close": pl.Float64})
    table = bulk_planner.PriceTable(empty, ["A"], np.array([(day - dt.date(1970, 1, 1)).days]))
    assert table.ok and np.isnan(table.closes).all() and table.closes.shape == (1, 1)
