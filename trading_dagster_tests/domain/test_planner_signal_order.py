"""The bulk planner's processing order over integer codes (`bulk_planner.ordered_signals`) against the frozen
reference planner's (`planner_reference._in_processing_order`, a Python sort of each session's rows), its
fallbacks (a repeated key, a NaN strength, a null, a side that is neither buy nor sell), strengths its 64-bit
keys cannot tell apart, and the client order ids hashed in the background while the walk runs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from trading_dagster.domain import bulk_planner, portfolio
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.orders import client_order_id
from trading_dagster.domain.risk import RiskConfig
from trading_dagster_tests.reference import planner_reference as reference

SLIP, FEE = SlippageModel(), CommissionModel()
SIGNAL_SCHEMA = {
    "session": pl.Date,
    "symbol": pl.String,
    "strategy": pl.String,
    "side": pl.String,
    "strength": pl.Float64,
    "reason": pl.String,
}
D0 = dt.date(2017, 3, 1)
DAYS = [D0 + dt.timedelta(days=i) for i in (0, 1, 2, 5, 6)]


def signal_frame(rows) -> pl.DataFrame:
    return pl.DataFrame([(*r, "t") for r in rows], schema=SIGNAL_SCHEMA, orient="row")


def reference_order(signals: pl.DataFrame, sessions) -> pl.DataFrame:
    """(session, symbol, strategy, side) of the walked sessions' signals as the reference planner takes them."""
    parts = reference._signals_by_session(signals, sessions)
    rows = [
        (day, symbol, strategy, side)
        for day in sessions
        if day in parts
        for _, strategy, _, symbol, side in reference._in_processing_order(parts[day])
    ]
    schema = {"session": pl.Date, "symbol": pl.String, "strategy": pl.String, "side": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def assert_reference_order(signals: pl.DataFrame, sessions) -> bulk_planner.OrderedSignals:
    ordered = bulk_planner.ordered_signals(signals, sessions)
    assert ordered is not None
    expected = reference_order(signals, sessions)
    assert_frame_equal(ordered.frame, expected, check_exact=True)
    # the codes say the same as the frame
    assert [ordered.symbols[i] for i in ordered.sym] == expected["symbol"].to_list()
    assert [ordered.strategies[i] for i in ordered.strat] == expected["strategy"].to_list()
    assert ordered.buy.tolist() == (expected["side"] == "buy").to_list()
    assert ordered.days.tolist() == expected["session"].cast(pl.Int32).to_list()
    assert ordered.symbols == sorted(set(expected["symbol"].to_list()))
    return ordered


@pytest.fixture(scope="module")
def real():
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals
    from trading_dagster.settings import SAMPLE_FILE

    prices = (
        pl.read_parquet(SAMPLE_FILE)
        .rename({"ticker": "symbol", "date": "session"})
        .filter(pl.col("session").is_between(dt.date(2010, 3, 1), dt.date(2011, 12, 30)))
    )
    calendar = list(nyse_calendar().sessions)
    days = [d for d in calendar if dt.date(2010, 3, 1) <= d <= dt.date(2011, 12, 30)]
    window = [d for d in days if d >= dt.date(2011, 1, 3)]
    indicators = compute_indicators_anchored(prices, days, window[0], window[-1])
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, window[0], window[-1], days)
    return prices, signals, window


def test_real_signals_in_the_reference_order_sorted_or_shuffled(real):
    _, signals, window = real
    assert signals.height > 4_000
    ordered = assert_reference_order(signals, window)
    assert ordered.frame.height == signals.height
    shuffled = signals.sample(fraction=1.0, shuffle=True, seed=7)  # not in session order: filtered, sorted keys
    assert_reference_order(shuffled, window)
    # a window inside the frame's sessions (a slice of a frame in session order)
    assert_reference_order(signals, window[40:90])


def test_signals_on_dates_that_are_not_walked_are_dropped():
    rows = [(d, s, "a", "buy", 0.5) for d in DAYS for s in ("X", "Y")]
    rows.append((DAYS[2], "ONLY_OFF", "a", "buy", 0.9))  # its only signal is on a date not walked
    signals = signal_frame(rows)
    walked = [DAYS[0], DAYS[1], DAYS[3], DAYS[4]]
    ordered = assert_reference_order(signals, walked)
    assert "ONLY_OFF" not in ordered.symbols and "ONLY_OFF" in ordered.symbols_in_range


def test_strengths_that_agree_in_the_leading_bits_fall_back_to_an_exact_sort():
    # 0.5 and the floats just above it share the 64-bit key's leading bits: the stable sort keeps the symbol
    # order, which the exact order reverses (stronger first); the check finds it and sorts exactly
    up = np.nextafter(0.5, 1.0)
    rows = [
        (D0, "A", "s", "buy", 0.5),
        (D0, "B", "s", "buy", float(up)),
        (D0, "C", "s", "buy", float(np.nextafter(up, 1.0))),
        (D0, "D", "s", "buy", -0.0),
        (D0, "E", "s", "buy", 0.0),
        (D0, "F", "s", "buy", None),
        (D0, "G", "s", "sell", float("inf")),
        (D0, "H", "s", "sell", -1e-300),
    ]
    g = np.zeros(6, dtype=np.int64)
    neg = -np.array([0.5, float(up), float(np.nextafter(up, 1.0)), 0.0, 0.0, 0.0])
    sym = np.arange(6)
    assert bulk_planner._processing_order(g, neg, sym).tolist() == [2, 1, 0, 3, 4, 5]
    ordered = assert_reference_order(signal_frame(rows), [D0])
    assert ordered.frame["symbol"].to_list() == ["G", "H", "C", "B", "A", "D", "E", "F"]


@pytest.mark.parametrize(
    "rows",
    [
        [(D0, "A", "s", "buy", 0.5), (D0, "A", "s", "buy", 0.7)],  # a repeated key: the strongest counts
        [(D0, "A", "s", "buy", float("nan"))],  # NaN: not a total order in Python
        [(D0, None, "s", "buy", 0.5)],
        [(None, "A", "s", "buy", 0.5)],
    ],
)
def test_frames_that_need_the_keyed_path(rows):
    signals = signal_frame(rows)
    assert bulk_planner.ordered_signals(signals, [D0]) is None


def test_a_side_that_is_neither_buy_nor_sell_is_an_error_as_before():
    signals = signal_frame([(D0, "A", "s", "hold", 0.5)])
    assert bulk_planner.ordered_signals(signals, [D0]) is None
    prices = pl.DataFrame(
        {"symbol": ["A"], "session": [D0], "open": [10.0], "high": [10.0], "low": [10.0], "close": [10.0],
         "volume": [100]}
    )
    with pytest.raises(ValueError, match="side must be"):
        portfolio.simulate(signals, prices, portfolio.PortfolioState.initial(10_000), [D0], RiskConfig(), SLIP,
                           FEE, "paper")


def test_repeated_keys_plan_as_the_reference():
    prices = pl.DataFrame(
        [(s, d, 10.0 + i, 10.0 + i, 10.0 + i, 10.0 + i, 1000) for i, s in enumerate("ABC") for d in DAYS],
        schema={"symbol": pl.String, "session": pl.Date, "open": pl.Float64, "high": pl.Float64,
                "low": pl.Float64, "close": pl.Float64, "volume": pl.Int64},
        orient="row",
    )
    rows = [(d, s, "a", "buy", 0.1 * i) for d in DAYS[:4] for i, s in enumerate("ABC")]
    rows += [(DAYS[1], "B", "a", "buy", 0.9), (DAYS[2], "C", "a", "sell", None), (DAYS[2], "C", "a", "sell", 0.3)]
    signals = signal_frame(rows)
    risk = RiskConfig(initial_cash=Decimal(5_000))
    out = [
        m.plan_orders(signals, prices, m.PortfolioState.initial(risk.initial_cash), DAYS, risk, SLIP, FEE, "paper")
        for m in (portfolio, reference)
    ]
    assert_frame_equal(out[0], out[1], check_exact=True)
    assert out[0].filter(pl.col("status") == "approved").height > 0


names = st.sampled_from(["A", "AA", "B", "BRK.B", "Z_1", "ÄÖ", "b"])
strengths = st.one_of(
    st.none(), st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300, float(np.nextafter(0.5, 1.0))]),
    st.floats(-2, 2, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(DAYS), names, st.sampled_from(["dip", "rsi", "sma"]), st.sampled_from(["buy", "sell"]),
                  strengths),
        min_size=1,
        max_size=60,
        unique_by=lambda r: r[:4],
    ),
    walked=st.sets(st.sampled_from(DAYS), min_size=1),
    in_order=st.booleans(),
)
def test_any_signals_in_the_reference_order(rows, walked, in_order):
    signals = signal_frame(rows)
    if in_order:
        signals = signals.sort("session", "symbol", "strategy", "side")
    sessions = sorted(walked)
    expected = reference_order(signals, sessions)
    ordered = bulk_planner.ordered_signals(signals, sessions)
    if ordered is None:  # nothing of the window
        assert signals.filter(pl.col("session").is_between(sessions[0], sessions[-1])).height == 0
        return
    assert_frame_equal(ordered.frame, expected, check_exact=True)
    in_range = signals.filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    assert ordered.symbols_in_range == set(in_range["symbol"].to_list())


def test_ids_hashed_in_the_background_equal_the_one_definition():
    rows = [(D0, "A", "s", "buy", 0.5), (D0, "RAS_B", "s", "sell", 0.1), (DAYS[1], "A", "t", "buy", None)]
    ordered = bulk_planner.ordered_signals(signal_frame(rows), DAYS[:2])
    assert ordered is not None
    prices = pl.DataFrame({"symbol": ["A"], "session": [D0], "open": [1.0], "close": [1.0]})
    arrays = bulk_planner.SignalArrays(ordered, prices, DAYS[:2], RiskConfig(), SLIP, FEE)
    expected = [client_order_id("paper", *row) for row in arrays.frame.iter_rows()]
    arrays.start_ids("paper")
    assert arrays.frame_of_orders("paper")["client_order_id"].to_list() == expected
    # another account than the one started: hashed again, not taken from the thread
    other = [client_order_id("live", *row) for row in arrays.frame.iter_rows()]
    assert arrays.frame_of_orders("live")["client_order_id"].to_list() == other


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from([0.5, -1.0, 0.25, 1 / 3, 0.0, -0.7857142857142855, 1e-300]),
            st.integers(-2, 2),
        ),
        min_size=1,
        max_size=80,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_processing_order_equals_an_exact_lexsort(rows, seed):
    # strengths a few units in the last place apart share the sort key's leading bits: the runs are repaired
    g = np.array([r[0] for r in rows], dtype=np.int64)
    neg = np.array([r[1] for r in rows])
    for _ in range(2):
        neg = np.where([r[2] > 0 for r in rows], np.nextafter(neg, 2.0), np.where([r[2] < 0 for r in rows], np.nextafter(neg, -2.0), neg))
    sym = np.random.default_rng(seed).permutation(len(rows))
    assert bulk_planner._processing_order(g, neg, sym).tolist() == np.lexsort((sym, neg, g)).tolist()


PRICE_SCHEMA = {"symbol": pl.String, "session": pl.Date, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
                "close": pl.Float64, "volume": pl.Int64}


@settings(max_examples=40, deadline=None)
@given(
    n_symbols=st.integers(20, 90),
    cash=st.sampled_from([Decimal(700), Decimal("2500.5"), Decimal(9_000), Decimal(60_000)]),
    limit=st.sampled_from([None, 3, 40]),
    seed=st.integers(0, 2**32 - 1),
)
def test_crowded_sessions_plan_as_the_reference(n_symbols, cash, limit, seed):
    # many buys a session, of one symbol by several strategies, the cash running out part way: long runs of
    # rows the cash settles, and rows an approved buy of their symbol sends to the per-signal code
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:02d}" for i in range(n_symbols)]
    close = {s: float(np.round(rng.uniform(2, 400), 2)) for s in symbols}
    prices = pl.DataFrame(
        [(s, d, c, c * 1.01, c * 0.99, c, 1000) for s, c in close.items() for d in DAYS], schema=PRICE_SCHEMA,
        orient="row",
    )
    rows = []
    for d in DAYS[:4]:
        for s in symbols:
            for strategy in ("a", "b", "c"):
                if rng.random() < 0.6:
                    side = "sell" if rng.random() < 0.2 else "buy"
                    rows.append((d, s, strategy, side, float(np.round(rng.random(), 2))))
    signals = signal_frame(rows)
    risk = RiskConfig(initial_cash=cash, notional=Decimal(300), monthly_share_limit=limit,
                      max_position_pct_equity=Decimal(100))
    out = [
        m.plan_orders(signals, prices, m.PortfolioState.initial(cash), DAYS, risk, SLIP, FEE, "paper")
        for m in (portfolio, reference)
    ]
    assert_frame_equal(out[0], out[1], check_exact=True)


def test_a_window_with_signals_on_dates_it_does_not_walk_plans_as_the_reference():
    # the price table built in the background is of the range's symbols; the walked rows have fewer (ONLY_OFF
    # trades on a date not walked only), so the arrays build their own
    prices = pl.DataFrame(
        [(s, d, 10.0 + i, 10.0 + i, 10.0 + i, 10.0 + i, 1000) for i, s in enumerate(["X", "Y", "ONLY_OFF"])
         for d in DAYS],
        schema=PRICE_SCHEMA, orient="row",
    )
    rows = [(d, s, "a", "buy", 0.5) for d in DAYS for s in ("X", "Y")]
    rows += [(DAYS[2], "ONLY_OFF", "a", "buy", 0.9), (DAYS[3], "X", "a", "sell", 0.2)]
    signals = signal_frame(rows)
    walked = [DAYS[0], DAYS[1], DAYS[3], DAYS[4]]
    risk = RiskConfig(initial_cash=Decimal(2_000))
    fast, ref = (
        m.simulate(signals, prices, m.PortfolioState.initial(risk.initial_cash), walked, risk, SLIP, FEE, "paper")
        for m in (portfolio, reference)
    )
    assert_frame_equal(fast.orders_frame, ref.orders_frame, check_exact=True)
    assert fast.fills == ref.fills and fast.orders_frame.height == 9
    ordered = bulk_planner.ordered_signals(signals, walked)
    arrays, keyed = bulk_planner.signal_arrays(signals, prices, walked, risk, SLIP, FEE, [], portfolio._keyed_signals)
    assert keyed is None and arrays.book_symbols == ordered.symbols == ["X", "Y"]
    assert arrays.prices.symbols == ["X", "Y"]


def test_requested_buys_of_one_budget_are_sized_once_and_equal_the_slices(real):
    prices, signals, window = real
    ordered = bulk_planner.ordered_signals(signals, window)
    risk = RiskConfig(notional=Decimal("999.99"))
    arrays = bulk_planner.SignalArrays(ordered, prices, window, risk, SLIP, FEE)
    assert arrays.fixed_budget == risk.notional
    bounds = arrays.bounds
    for k in range(0, len(window), 7):
        lo, hi = bounds[k], bounds[k + 1]
        assert arrays.requested_buys(lo, hi, risk.notional).tolist() == arrays._requested_buys(lo, hi, risk.notional).tolist()
    assert arrays._requested is not None and arrays._requested[1].size == arrays.n
    other = Decimal(250)  # another budget (percent of equity): sized per call, the cache kept
    lo, hi = bounds[3], bounds[4]
    assert arrays.requested_buys(lo, hi, other).tolist() == arrays._requested_buys(lo, hi, other).tolist()
    assert arrays._requested[0] == risk.notional
    pct = bulk_planner.SignalArrays(ordered, prices, window, RiskConfig(sizing="pct_equity"), SLIP, FEE)
    assert pct.fixed_budget is None
    pct.requested_buys(lo, hi, other)
    assert pct._requested is None
