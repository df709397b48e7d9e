"""Portfolio state from fills, and the order planner's walk over a window of sessions."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.orders import ORDER_SCHEMA, Fill
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState, Position, plan_orders, simulate
from trading_dagster.domain.risk import Decision, OrderIntent, RiskConfig, RiskContext, default_controls

SLIP, FEE = SlippageModel(), CommissionModel()
SIGNAL_SCHEMA = {
    "session": pl.Date(),
    "symbol": pl.String(),
    "strategy": pl.String(),
    "side": pl.String(),
    "strength": pl.Float64(),
    "reason": pl.String(),
}
PRICE_SCHEMA = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
}


def sessions_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return nyse_calendar().between(start, end)


def prices_frame(bars: dict[str, dict[dt.date, tuple[float, float]]]) -> pl.DataFrame:
    """Cleaned prices from {symbol: {session: (open, close)}}."""
    rows = [
        (sym, day, o, max(o, c), min(o, c), c, 1_000)
        for sym, by_day in bars.items()
        for day, (o, c) in by_day.items()
    ]
    return pl.DataFrame(rows, schema=PRICE_SCHEMA, orient="row").sort("session", "symbol")


def flat_prices(symbols: dict[str, float], sessions: list[dt.date]) -> pl.DataFrame:
    return prices_frame({s: {d: (p, p) for d in sessions} for s, p in symbols.items()})


def signals_frame(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (session, symbol, strategy, side[, strength])."""
    full = [(*r, 1.0, "test") if len(r) == 4 else (*r, "test") for r in rows]
    return pl.DataFrame(full, schema=SIGNAL_SCHEMA, orient="row")


def _fill(side: str, qty: int, price: str, commission: str, session=dt.date(2017, 3, 2), cid="x") -> Fill:
    return Fill(
        cid, session - dt.timedelta(days=1), session, "AAA", side, qty, Decimal(price), Decimal(commission)
    )


# -- PortfolioState ------------------------------------------------------------------------------------


def test_apply_fills_average_cost_realized_pnl_and_cash_by_hand():
    state = PortfolioState.initial(1000)
    state = state.apply_fill(_fill("buy", 10, "10.00", "0.05", cid="a"))
    assert state.cash == Decimal("899.95")
    assert state.positions["AAA"] == Position(10, Decimal("10.005"))  # commission is part of the cost
    state = state.apply_fill(_fill("buy", 10, "12.00", "0.05", cid="b"))
    assert state.cash == Decimal("779.90")
    qty, avg_cost = state.positions["AAA"]
    assert (qty, avg_cost) == (20, Decimal("11.005"))
    assert state.monthly_buys == {("AAA", 2017, 3): 20}
    state = state.apply_fill(_fill("sell", 20, "13.00", "0.10", cid="c"))
    assert state.cash == Decimal("1039.80")
    assert state.realized_pnl == Decimal("39.80")  # (13 - 11.005) * 20 - 0.10
    assert state.positions == {}
    assert state.cash - 1000 == state.realized_pnl  # flat book: all P&L is realized


def test_apply_fills_is_order_independent_and_rejects_going_short():
    fills = [
        _fill("buy", 3, "10.00", "0.02", cid="a"),
        _fill("sell", 2, "11.00", "0.01", session=dt.date(2017, 3, 3), cid="b"),
        _fill("buy", 1, "10.50", "0.01", cid="c"),
    ]
    start = PortfolioState.initial(100)
    assert start.apply_fills(fills) == start.apply_fills(reversed(fills))
    with pytest.raises(ValueError):
        start.apply_fill(_fill("sell", 1, "10.00", "0.01"))


def test_monthly_buys_keep_only_months_that_can_still_matter():
    state = PortfolioState.initial(1000).apply_fill(_fill("buy", 1, "10", "0", session=dt.date(2017, 3, 31)))
    state = state.apply_fill(_fill("buy", 2, "10", "0", session=dt.date(2017, 4, 3), cid="y"))
    assert state.monthly_buys == {("AAA", 2017, 4): 2}
    assert state.bought_in_month("AAA", dt.date(2017, 4, 28)) == 2
    assert state.bought_in_month("AAA", dt.date(2017, 5, 1)) == 0


# -- plan_orders -------------------------------------------------------------------------------------


def test_monthly_quota_a_buy_signal_every_session_never_buys_more_than_four_shares_a_month():
    """The seed case: "at most 4 shares a month per stock", months taken from the fill session."""
    jan = sessions_between(dt.date(2017, 1, 1), dt.date(2017, 1, 31))
    feb = sessions_between(dt.date(2017, 2, 1), dt.date(2017, 2, 28))
    window = jan + feb
    prices = flat_prices({"AAPL": 10.0}, window)
    signals = signals_frame([(d, "AAPL", "dip", "buy") for d in window])
    proj = simulate(
        signals, prices, PortfolioState.initial(100_000), window, RiskConfig(), SLIP, FEE, "paper"
    )

    first, second = proj.orders[0], proj.orders[1]
    assert (first.requested_qty, first.qty, first.status, first.reason_code) == (
        100,
        4,
        "approved",
        "QTY_OVER_MONTHLY_LIMIT",
    )
    assert (second.qty, second.status, second.reason_code) == (0, "denied", "QTY_OVER_MONTHLY_LIMIT")
    bought = Counter()
    for f in proj.fills:
        bought[(f.session.year, f.session.month)] += f.qty
    assert bought == {(2017, 1): 4, (2017, 2): 4}
    # the order of Jan 31 fills on Feb 1 and counts for February; Feb 28's (pending past the window) for March
    by_session = {o.session: o for o in proj.orders}
    assert by_session[jan[-1]].qty == 4 and by_session[feb[-1]].qty == 4
    assert [o.session for o in proj.pending] == [feb[-1]]
    assert sum(o.qty for o in proj.orders) == 12


def test_plan_orders_sells_before_buys_and_sells_the_whole_position():
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 3))
    prices = flat_prices({"AAA": 10.0, "BBB": 20.0}, days)
    start = PortfolioState(cash=Decimal(0), positions={"AAA": (7, Decimal("9"))})
    signals = signals_frame([(days[0], "BBB", "a_first", "buy"), (days[0], "AAA", "z_last", "sell")])
    risk = RiskConfig(monthly_share_limit=None, max_position_pct_equity=Decimal(100))
    proj = simulate(signals, prices, start, days, risk, SLIP, FEE, "paper")
    assert [(o.symbol, o.side, o.requested_qty, o.qty, o.status) for o in proj.orders] == [
        ("AAA", "sell", 7, 7, "approved"),
        ("BBB", "buy", 50, 0, "denied"),  # no cash: a pending sell's proceeds are not buying power
    ]
    assert proj.orders[1].reason_code == "INSUFFICIENT_BUYING_POWER"
    assert [(f.symbol, f.side, f.qty, f.session) for f in proj.fills] == [("AAA", "sell", 7, days[1])]
    assert proj.end_state.positions == {}


def test_a_second_sell_of_the_same_position_is_short_not_allowed():
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 2))
    start = PortfolioState(cash=Decimal(0), positions={"AAA": (7, Decimal("9"))})
    signals = signals_frame(
        [(days[0], "AAA", "s1", "sell"), (days[0], "AAA", "s2", "sell"), (days[0], "BBB", "s1", "sell")]
    )
    out = plan_orders(
        signals, flat_prices({"AAA": 10.0, "BBB": 5.0}, days), start, days, RiskConfig(), SLIP, FEE, "paper"
    )
    assert out.select("symbol", "strategy", "qty", "reason_code").rows() == [
        ("AAA", "s1", 7, None),
        ("BBB", "s1", 0, "SHORT_NOT_ALLOWED"),
        ("AAA", "s2", 0, "SHORT_NOT_ALLOWED"),
    ]


def test_no_bar_on_the_signal_session_is_no_price_and_no_bar_at_the_open_expires():
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 3))
    prices = prices_frame(
        {"AAA": {days[0]: (10.0, 10.0), days[2]: (10.0, 10.0)}, "BBB": {days[1]: (5.0, 5.0)}}
    )
    signals = signals_frame([(days[0], "AAA", "s", "buy"), (days[0], "BBB", "s", "buy")])
    proj = simulate(signals, prices, PortfolioState.initial(10_000), days, RiskConfig(), SLIP, FEE, "paper")
    assert [(o.symbol, o.status, o.reason_code, o.ref_price) for o in proj.orders] == [
        ("AAA", "approved", "QTY_OVER_MONTHLY_LIMIT", Decimal("10.0")),
        ("BBB", "denied", "NO_PRICE", None),
    ]
    assert proj.fills == []  # AAA has no bar on days[1]: its order expires
    assert [(e.symbol, e.event, e.session, e.qty) for e in proj.expired] == [("AAA", "expired", days[1], 4)]


def test_plan_orders_frame_and_ids():
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 10))
    prices = flat_prices({"AAA": 10.0, "BBB": 20.0}, days)
    signals = signals_frame(
        [(d, s, strat, "buy") for d in days for s in ("AAA", "BBB") for strat in ("x", "y")]
    )
    out = plan_orders(
        signals, prices, PortfolioState.initial(100_000), days, RiskConfig(), SLIP, FEE, "paper"
    )
    assert out.schema == pl.Schema(ORDER_SCHEMA)
    assert out.height == signals.height
    assert out["client_order_id"].n_unique() == out.height
    assert (out["client_order_id"].str.len_chars() <= 48).all()
    again = plan_orders(
        signals.reverse(), prices, PortfolioState.initial(100_000), days, RiskConfig(), SLIP, FEE, "paper"
    )
    assert again.equals(out)  # the frame's row order does not matter


def test_plan_orders_accepts_the_whole_calendar_as_sessions():
    """The orders asset passes the whole NYSE calendar: only the signals' span is walked."""
    cal = nyse_calendar()
    days = cal.between(dt.date(2017, 3, 1), dt.date(2017, 3, 31))
    prices = flat_prices({"AAA": 10.0, "BBB": 20.0}, days)
    signals = signals_frame([(d, "AAA", "x", "buy") for d in days[5:]] + [(days[10], "BBB", "x", "buy")])
    args = (prices, PortfolioState.initial(100_000), days, RiskConfig(), SLIP, FEE, "paper")
    window = plan_orders(signals, *args)
    whole = plan_orders(
        signals, prices, PortfolioState.initial(100_000), cal.sessions, RiskConfig(), SLIP, FEE, "paper"
    )
    assert whole.equals(window)
    # the last order's fill month comes from the calendar (Mar 31 fills on Apr 3): a fresh quota
    assert window.filter(pl.col("session") == days[-1])["qty"].to_list() == [4]
    with pytest.raises(ValueError):
        plan_orders(signals_frame([(dt.date(2017, 3, 4), "AAA", "x", "buy")]), *args)  # a Saturday


def test_a_gap_up_open_cannot_make_cash_negative():
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 2))
    prices = prices_frame({"AAA": {days[0]: (10.0, 10.0), days[1]: (13.0, 13.0)}})
    signals = signals_frame([(days[0], "AAA", "s", "buy")])
    risk = RiskConfig(notional=Decimal(1000), max_position_pct_equity=Decimal(100), monthly_share_limit=None)
    proj = simulate(signals, prices, PortfolioState.initial(1000), days, risk, SLIP, FEE, "paper")
    assert proj.orders[0].qty == 99  # sized at the close, within buying power
    assert proj.fills[0].qty == 76  # 76 * 13.01 + 0.38 <= 1000 at the open
    assert proj.end_state.cash >= 0
    assert [e.qty for e in proj.expired] == [23]


# -- invariants --------------------------------------------------------------------------------------

ALL_2017 = sessions_between(dt.date(2017, 1, 3), dt.date(2017, 12, 29))


@st.composite
def scenarios(draw):
    n_sessions = draw(st.integers(2, 25))
    start = draw(st.integers(0, len(ALL_2017) - n_sessions))
    days = ALL_2017[start : start + n_sessions]
    symbols = ["AAA", "BBB", "CCC"][: draw(st.integers(1, 3))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bars: dict[str, dict[dt.date, tuple[float, float]]] = {}
    for sym in symbols:
        price = float(draw(st.sampled_from([0.8, 7.0, 55.0, 420.0])))
        bars[sym] = {}
        for d in days:
            gap, move = rng.normal(0, 0.05), rng.normal(0, 0.03)
            open_ = round(max(price * (1 + gap), 0.05), 2)
            price = round(max(open_ * (1 + move), 0.05), 2)
            if rng.random() > 0.1:  # some missing bars
                bars[sym][d] = (open_, price)
    rows = [
        (d, sym, strat, side, float(rng.random()))
        for d in days
        for sym in symbols
        for strat in ("m", "r")
        for side in ("buy", "sell")
        if rng.random() < 0.3
    ]
    risk = RiskConfig(
        sizing=draw(st.sampled_from(["fixed_notional", "pct_equity"])),
        notional=Decimal(draw(st.sampled_from([100, 1000, 5000]))),
        pct_equity=Decimal(draw(st.sampled_from([1, 5, 30]))),
        max_position_pct_equity=Decimal(draw(st.sampled_from([5, 10, 50, 100]))),
        monthly_share_limit=draw(st.sampled_from([None, 4, 50])),
    )
    cash = Decimal(draw(st.sampled_from([500, 10_000, 100_000])))
    slip = SlippageModel(bps=Decimal(draw(st.sampled_from([0, 5, 50]))))
    fee = CommissionModel(minimum=Decimal(draw(st.sampled_from([0, 1]))))
    return days, prices_frame(bars), signals_frame(rows), risk, cash, slip, fee


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_cash_never_negative_long_only_and_equity_is_cash_plus_market_value(scenario):
    days, prices, signals, risk, cash, slip, fee = scenario
    start = PortfolioState.initial(cash)
    proj = simulate(signals, prices, start, days, risk, slip, fee, "paper")
    positions, equity = mark_to_market(start, proj.fills, prices, days, benchmark_symbol="AAA")

    assert (equity["cash"] >= 0).all()
    assert (positions["qty"] > 0).all()
    assert proj.end_state.cash >= 0 and all(p.qty > 0 for p in proj.end_state.positions.values())
    gap = (equity["equity"] - equity["cash"] - equity["market_value"]).abs()
    assert (gap < 1e-6).all()
    pnl = (equity["equity"] - float(cash) - equity["realized_pnl"] - equity["unrealized_pnl"]).abs()
    assert (pnl < 1e-6).all()  # average cost includes commissions, so P&L explains all of equity

    ids = [o.client_order_id for o in proj.orders]
    assert len(ids) == len(set(ids))
    assert all(0 <= o.qty <= o.requested_qty for o in proj.orders if o.side == "buy")
    assert all((o.status == "approved") == (o.qty > 0) for o in proj.orders)
    assert all(
        o.reason_code is not None for o in proj.orders if o.qty < o.requested_qty or o.status == "denied"
    )
    if risk.monthly_share_limit is not None:
        bought = Counter()
        for f in proj.fills:
            if f.side == "buy":
                bought[(f.symbol, f.session.year, f.session.month)] += f.qty
        assert max(bought.values(), default=0) <= risk.monthly_share_limit


class _PassThrough:
    """A control that never cuts: appended to the default chain, it makes the planner run every control."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        return Decision(intent.qty)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_default_chains_shortcut_plans_what_the_full_chain_plans(scenario):
    days, prices, signals, risk, cash, slip, fee = scenario
    start = PortfolioState.initial(cash)
    fast = simulate(signals, prices, start, days, risk, slip, fee, "paper")
    full_chain = (*default_controls(risk, slip, fee), _PassThrough())
    full = simulate(signals, prices, start, days, risk, slip, fee, "paper", controls=full_chain)
    assert fast.orders_frame.equals(full.orders_frame)
    assert (fast.fills, fast.expired, fast.end_state) == (full.fills, full.expired, full.end_state)


# -- a collapsing price (issue 8, finding 8) ---------------------------------------------------------------


def test_a_buy_on_a_near_zero_bar_is_denied_and_the_position_can_still_be_sold():
    """24.93, then a bar at 0.0001: $1,000 used to size into 10,000,000 shares. The buy is denied (nothing
    asked), the sell of the held position goes through, and a bar at 0 (never cleaned through) is no price."""
    days = sessions_between(dt.date(2017, 3, 1), dt.date(2017, 3, 6))
    prices = prices_frame(
        {
            "AAA": {days[0]: (24.9, 24.93), days[1]: (0.0001, 0.0001), days[2]: (0.0001, 0.0001)},
            "BBB": {days[0]: (5.0, 5.0), days[1]: (0.0, 0.0), days[2]: (5.0, 5.0)},
        }
    )
    start = PortfolioState(cash=Decimal(10_000), positions={"AAA": (10, Decimal("24.00"))})
    signals = signals_frame(
        [(days[1], "AAA", "dip", "buy"), (days[1], "AAA", "exit", "sell"), (days[1], "BBB", "dip", "buy")]
    )
    proj = simulate(signals, prices, start, days, RiskConfig(), SLIP, FEE, "paper")
    assert [(o.symbol, o.side, o.requested_qty, o.qty, o.reason_code, o.ref_price) for o in proj.orders] == [
        ("AAA", "sell", 10, 10, None, Decimal("0.0001")),
        ("AAA", "buy", 0, 0, "PRICE_BELOW_MINIMUM", Decimal("0.0001")),
        ("BBB", "buy", 0, 0, "NO_PRICE", None),
    ]
    assert [(f.symbol, f.side, f.qty) for f in proj.fills] == [("AAA", "sell", 10)]
    assert max(o.requested_qty for o in proj.orders) < 10_000_000
