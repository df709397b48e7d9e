"""Fractional shares in the backtest (`[backtest] shares = "fractional"`, decision 0006, `domain/quantity.py`):
quantities are Decimals rounded down to 1e-9 share wherever the backtest sizes or clips; whole shares (ints) stay
the default and the trading book's only rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.book_events import Split
from trading_dagster.domain.execution import (
    CommissionModel,
    SlippageModel,
    affordable_qty,
    buy_cost,
    execute_open,
    fill_at_open,
    opens_by_session,
)
from trading_dagster.domain.exits import ExitLot, execute_exits, lots_from_records, lots_to_records
from trading_dagster.domain.orders import (
    Fill,
    Order,
    client_order_id,
    events_from_frame,
    events_to_frame,
    orders_from_frame,
    orders_to_frame,
)
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState, Position, apply_book_events, plan_orders
from trading_dagster.domain.quantity import FRACTIONAL, QTY_UNIT, WHOLE, from_frame, rule_of, share_rule
from trading_dagster.domain.risk import (
    MAX_GROSS_EXPOSURE,
    MAX_NOTIONAL_PER_SESSION,
    MAX_POSITION,
    QTY_OVER_MONTHLY_LIMIT,
    SIZE_BELOW_ONE_SHARE,
    EarlyDenial,
    MaxGrossExposure,
    MaxNotionalPerSession,
    MaxPosition,
    MinimumSize,
    MonthlyShareLimit,
    OrderIntent,
    RiskConfig,
    check_order,
    default_controls,
    size_order,
)
from trading_dagster.resources.backtest_book import SimulatedBook
from trading_dagster_tests.domain.test_risk import _ctx

D, D1, D2 = dt.date(2017, 3, 1), dt.date(2017, 3, 2), dt.date(2017, 3, 3)
FREE = SlippageModel(bps=Decimal(0)), CommissionModel(per_share=Decimal(0))
FRACTIONAL_RISK = {"shares": "fractional"}


def _q(text: str) -> Decimal:
    return Decimal(text).quantize(QTY_UNIT)


def _order(symbol: str, qty, side: str = "buy", session: dt.date = D, notional: Decimal | None = None) -> Order:
    cid = client_order_id("paper", session, symbol, "s", side)
    return Order(cid, session, symbol, "s", side, qty, qty, Decimal(10), "approved", None, notional)


# ------------------------------------------------------------------------------------------- the rule


def test_the_rule_rounds_down_to_a_whole_share_or_to_a_billionth():
    assert WHOLE.buys(Decimal(1000), Decimal(333)) == 3 and isinstance(WHOLE.buys(Decimal(1000), Decimal(333)), int)
    assert FRACTIONAL.buys(Decimal(1000), Decimal(333)) == Decimal("3.003003003")
    # 2/3 is 0.666...: down, never up to ...667
    assert FRACTIONAL.buys(Decimal(2), Decimal(3)) == Decimal("0.666666666")
    assert FRACTIONAL.buys(Decimal(1), Decimal(3)) * 3 <= 1
    assert share_rule("whole") is WHOLE and share_rule("fractional") is FRACTIONAL
    with pytest.raises(ValueError, match="whole"):
        share_rule("half")
    assert rule_of(3) is WHOLE and rule_of(Decimal("0.5")) is FRACTIONAL
    assert FRACTIONAL.min_qty == QTY_UNIT and WHOLE.min_qty == 1


@pytest.mark.parametrize("text", ["0.000000001", "1.5", "123.456789012", "999999.999999999", "7"])
def test_a_fractional_quantity_round_trips_through_float64(text):
    qty = _q(text)
    assert from_frame(float(qty)) == qty and isinstance(from_frame(float(qty)), Decimal)
    assert from_frame(7) == 7 and isinstance(from_frame(7), int)


# ------------------------------------------------------------------------------------------- sizing


def test_size_order_buys_the_budget_to_a_billionth_and_sells_all_held():
    whole, frac = RiskConfig(), RiskConfig(**FRACTIONAL_RISK)
    assert size_order("buy", Decimal(333), Decimal(100_000), 0, whole) == 3
    assert size_order("buy", Decimal(333), Decimal(100_000), 0, frac) == Decimal("3.003003003")
    # an expensive stock: whole shares round to nothing, fractional ones buy the notional's worth
    assert size_order("buy", Decimal(1500), Decimal(100_000), 0, whole) == 0
    assert size_order("buy", Decimal(1500), Decimal(100_000), 0, frac) == Decimal("0.666666666")
    pct = RiskConfig(sizing="pct_equity", pct_equity=Decimal(2), **FRACTIONAL_RISK)
    assert size_order("buy", Decimal(7), Decimal(1000), 0, pct) == Decimal("2.857142857")
    atr = RiskConfig(sizing="atr", **FRACTIONAL_RISK)
    assert size_order("buy", Decimal(50), Decimal(100_000), 0, atr, Decimal(3)) == Decimal("83.333333333")
    assert size_order("sell", Decimal(50), Decimal(100_000), _q("1.25"), frac) == _q("1.25")
    with pytest.raises(ValueError, match="shares"):
        RiskConfig(shares="some")


def test_minimum_size_denies_under_one_share_only_with_whole_shares():
    half = OrderIntent("AAPL", "buy", _q("0.5"), Decimal(100))
    assert MinimumSize().check(half, _ctx()).qty == 0
    assert MinimumSize(FRACTIONAL).check(half, _ctx()).qty == _q("0.5")
    nothing = OrderIntent("AAPL", "buy", 0, Decimal(100))
    assert MinimumSize(FRACTIONAL).check(nothing, _ctx()).reason_code == SIZE_BELOW_ONE_SHARE
    # check_order's last word: a Decimal quantity is judged > 0, an int one >= 1
    assert check_order(half, _ctx(), []).qty == _q("0.5")
    assert check_order(OrderIntent("AAPL", "buy", 0, Decimal(100)), _ctx(), []).qty == 0


@pytest.mark.parametrize(
    ("control", "ctx", "allowed", "reason"),
    [
        # 10 % of 100,000 = 10,000; 3,000 held at 333 -> 7,000 of room -> 21.021021021 shares
        (MaxPosition(Decimal(10), FRACTIONAL), {"held": _q("9.009009009")}, "21.021021021", MAX_POSITION),
        # 20 % of equity, 15,000 long, 1,000 pending: 4,000 of room
        (
            MaxGrossExposure(Decimal(20), FRACTIONAL),
            {"market_value": Decimal(15_000), "pending_buy_notional": Decimal(1000)},
            "12.012012012",
            MAX_GROSS_EXPOSURE,
        ),
        (
            MaxNotionalPerSession(Decimal(5000), FRACTIONAL),
            {"session_notional": Decimal(1000)},
            "12.012012012",
            MAX_NOTIONAL_PER_SESSION,
        ),
    ],
)
def test_each_clipping_control_clips_to_a_billionth(control, ctx, allowed, reason):
    intent = OrderIntent("AAPL", "buy", _q("100"), Decimal(333))
    decision = control.check(intent, _ctx(**ctx))
    assert decision == (_q(allowed), reason)
    whole = type(control)(*[getattr(control, f) for f in ("pct", "usd") if hasattr(control, f)])
    assert whole.check(OrderIntent("AAPL", "buy", 100, Decimal(333)), _ctx(**ctx)).qty == int(_q(allowed))


def test_the_default_chain_sizes_and_clips_fractionally_and_skips_the_whole_share_shortcut():
    risk = RiskConfig(max_position_pct_equity=Decimal(1), **FRACTIONAL_RISK)
    chain = default_controls(risk, *FREE)
    assert EarlyDenial.for_chain(chain, risk, *FREE) is None
    assert EarlyDenial.for_chain(default_controls(RiskConfig(), *FREE), RiskConfig(), *FREE) is not None
    intent = OrderIntent("AAPL", "buy", size_order("buy", Decimal(333), Decimal(100_000), 0, risk), Decimal(333))
    # 1 % of 100,000 = 1,000 -> the notional's 3.003003003 fits; the quota of 4 shares a month holds it
    assert check_order(intent, _ctx(bought_in_fill_month=_q("3.5")), chain) == (_q("0.5"), QTY_OVER_MONTHLY_LIMIT)
    assert check_order(intent, _ctx(), chain) == (_q("3.003003003"), None)


# ------------------------------------------------------------------------------------ affordable, fills


def test_affordable_quantity_is_the_largest_billionth_the_cash_covers():
    fee = CommissionModel(per_share=Decimal("0.005"), minimum=Decimal(1), round_cents=False)
    price, cash = Decimal("333.33"), Decimal("1000")
    q = affordable_qty(cash, price, fee, _q("100"))
    assert isinstance(q, Decimal) and q == q.quantize(QTY_UNIT)
    assert buy_cost(q, price, fee) <= cash < buy_cost(q + QTY_UNIT, price, fee)
    assert affordable_qty(cash, price, fee, _q("1.5")) == _q("1.5")
    assert affordable_qty(Decimal("0.5"), price, fee, _q("1")) == 0  # not even the $1 commission
    assert affordable_qty(cash, price, fee, 100) == 2  # whole shares as before


def test_a_cash_limited_buy_fills_a_fraction_and_the_rest_expires():
    order = _order("AAPL", _q("50"))
    out = execute_open([order], {"AAPL": Decimal(30)}, D1, Decimal(100), {}, *FREE)
    assert [f.qty for f in out.fills] == [_q("3.333333333")]
    assert out.expired[0].qty == _q("50") - _q("3.333333333")


def test_a_notional_order_fills_notional_over_the_fill_price_to_a_billionth():
    order = _order("AAPL", _q("33.333333333"), notional=Decimal(1000))
    out = execute_open([order], {"AAPL": Decimal(31)}, D1, Decimal(100_000), {}, *FREE)
    assert [f.qty for f in out.fills] == [Decimal("32.258064516")] and not out.expired
    assert out.fills[0].qty * out.fills[0].price <= 1000
    fill = fill_at_open(order, Decimal(31), D1, *FREE)
    assert fill.qty == Decimal("32.258064516")


def test_orders_and_fills_take_a_positive_fraction_and_refuse_zero():
    assert _order("AAPL", _q("0.000000001")).qty == QTY_UNIT
    with pytest.raises(ValueError, match="qty"):
        _order("AAPL", _q("0"))
    with pytest.raises(ValueError, match="qty"):
        Fill("x", D, D1, "AAPL", "buy", _q("0"), Decimal(1), Decimal(0))
    Fill("x", D, D1, "AAPL", "buy", _q("0.25"), Decimal(1), Decimal(0))
    with pytest.raises(ValueError, match="qty"):
        _order("AAPL", 0)


def test_order_and_execution_frames_are_float_with_fractions_and_read_back_exactly():
    orders = [_order("AAPL", _q("3.003003003")), _order("MSFT", _q("0.5"), side="sell")]
    frame = orders_to_frame(orders)
    assert frame.schema["qty"] == pl.Float64 and frame.schema["requested_qty"] == pl.Float64
    assert orders_from_frame(frame) == orders
    assert orders_to_frame([], FRACTIONAL).schema["qty"] == pl.Float64
    assert orders_to_frame([_order("AAPL", 3)]).schema["qty"] == pl.Int64  # whole shares as before
    fill = Fill(orders[0].client_order_id, D, D1, "AAPL", "buy", _q("3.003003003"), Decimal("333.1"), Decimal(0))
    events = events_to_frame([fill])
    assert events.schema["qty"] == pl.Float64 and events_from_frame(events)[0].qty == fill.qty


# ------------------------------------------------------------------------------- book events, quota


def _split(new: int, old: int, price: str | None = "50") -> Split:
    return Split("AAPL", D1, D1, new, old, None if price is None else Decimal(price), "corporate_actions")


def test_a_split_of_a_fractional_position_scales_it_to_a_billionth_without_cash_in_lieu():
    state = PortfolioState(
        Decimal(1000), {"AAPL": (_q("1.000000001"), Decimal(100))}, shares=FRACTIONAL
    )
    after, effect = state.apply_event(_split(3, 2))
    # 1.000000001 x 3 / 2 = 1.5000000015 -> 1.500000001, no cash paid
    assert after.positions["AAPL"] == Position(_q("1.500000001"), Decimal(100) * 2 / 3)
    assert after.cash == Decimal(1000) and after.realized_pnl == 0
    assert effect.qty_after == _q("1.500000001") and effect.cash == 0
    # whole shares as before: 3 x 3 / 2 = 4.5 -> 4 and half a share paid at 50
    whole, effect = PortfolioState(Decimal(1000), {"AAPL": (3, Decimal(100))}).apply_event(_split(3, 2))
    assert whole.positions["AAPL"].qty == 4 and whole.cash == Decimal(1025) and effect.cash == Decimal(25)


def test_a_split_scales_a_pending_fractional_sell_and_the_months_purchases():
    state = PortfolioState(
        Decimal(1000),
        {"AAPL": (_q("0.3"), Decimal(100))},
        monthly_buys={("AAPL", 2017, 3): _q("0.3")},
        shares=FRACTIONAL,
    )
    sell = _order("AAPL", _q("0.3"), side="sell")
    outcome = apply_book_events(state, [_split(1, 3, price=None)], D1, [sell])
    assert outcome.state.positions["AAPL"].qty == _q("0.1")
    assert outcome.state.monthly_buys[("AAPL", 2017, 3)] == _q("0.1")
    assert [o.qty for o in outcome.pending] == [_q("0.1")] and not outcome.expired


def test_the_monthly_quota_counts_fractions():
    state = PortfolioState.initial(Decimal(10_000), FRACTIONAL)
    fills = [
        Fill(f"f{i}", D, D1, "AAPL", "buy", _q(q), Decimal(10), Decimal(0))
        for i, q in enumerate(["1.25", "2.000000001"])
    ]
    state = state.apply_fills(fills)
    bought = state.bought_in_month("AAPL", D1)
    assert bought == _q("3.250000001")
    limit = MonthlyShareLimit(4)
    intent = OrderIntent("AAPL", "buy", _q("3"), Decimal(10))
    assert limit.check(intent, _ctx(bought_in_fill_month=bought, pending_buy_qty=_q("0.5"))) == (
        _q("0.249999999"),
        QTY_OVER_MONTHLY_LIMIT,
    )


# ---------------------------------------------------------------------------------------- exit lots


def test_exit_lots_of_fractions_fill_split_and_serialise_exactly():
    lot = ExitLot("td-x", D, _q("2.5"), Decimal(90), None)
    fills = execute_exits({"AAPL": (lot,)}, {"AAPL": (85.0, 86.0, 80.0)}, D2, {"AAPL": _q("2.5")}, *FREE)
    assert [f.qty for f in fills] == [_q("2.5")]
    state = PortfolioState(Decimal(0), {"AAPL": (_q("2.5"), Decimal(100))}, exits={"AAPL": (lot,)}, shares=FRACTIONAL)
    after, _ = state.apply_event(_split(2, 3, price=None))
    assert after.exits["AAPL"][0].qty == _q("1.666666666") == after.positions["AAPL"].qty
    records = lots_to_records(after.exits)
    assert lots_from_records(records) == dict(after.exits)
    assert lots_from_records(lots_to_records({"AAPL": (ExitLot("td-x", D, 3, None, None),)}))["AAPL"][0].qty == 3


# ---------------------------------------------------------------------------------------- the book


def test_the_book_round_trips_fractions_through_its_ledger(tmp_path):
    path = str(tmp_path / "book.duckdb")
    slip, fee = SlippageModel(bps=Decimal(5), round_cents=False), CommissionModel(round_cents=False)
    orders = [_order("AAPL", _q("3.003003003")), _order("MSFT", _q("10.5"), notional=Decimal(700))]
    with SimulatedBook(path, Decimal(10_000), slip, fee, shares="fractional") as book:
        book.submit(orders, D)
        fills = book.sync(D1, {"AAPL": Decimal("333.33"), "MSFT": Decimal("64.1")})
        assert all(isinstance(f.qty, Decimal) for f in fills) and len(fills) == 2
        sell = _order("AAPL", fills[0].qty, side="sell", session=D1)
        book.submit([sell], D1)
        book.sync(D2, {"AAPL": Decimal(340)})
        account = book.account(D2)
        events = book.events(D, D2)
    assert account.shares is FRACTIONAL and "AAPL" not in account.positions
    assert isinstance(account.positions["MSFT"].qty, Decimal)
    assert events.schema["qty"] == pl.Float64
    assert sorted(e.qty for e in events_from_frame(events) if e.event == "filled")[0] == min(
        fills[0].qty, fills[1].qty
    )
    with SimulatedBook(path, Decimal(10_000), slip, fee, shares="fractional") as again:
        assert again.account(D2) == account
        assert again.account(D1) == account_at_d1(fills, Decimal(10_000))
        assert again.events(D, D2).equals(events)


def account_at_d1(fills: list[Fill], cash: Decimal) -> PortfolioState:
    return PortfolioState.initial(cash, FRACTIONAL).apply_fills(fills)


def test_a_ledger_is_never_reopened_in_the_other_share_mode(tmp_path):
    whole, frac = str(tmp_path / "whole.duckdb"), str(tmp_path / "frac.duckdb")
    SimulatedBook(whole).close()
    SimulatedBook(frac, shares="fractional").close()
    with pytest.raises(ValueError, match="whole shares, not fractional"):
        SimulatedBook(whole, shares="fractional")
    with pytest.raises(ValueError, match="fractional shares, not whole"):
        SimulatedBook(frac)
    with pytest.raises(ValueError, match="shares"):
        SimulatedBook(None, shares="halves")


def test_mark_to_market_positions_are_float_with_fractions():
    start = PortfolioState.initial(Decimal(1000), FRACTIONAL)
    fill = Fill("f", D, D1, "AAPL", "buy", _q("2.5"), Decimal(10), Decimal(0))
    prices = pl.DataFrame(
        {"symbol": ["AAPL", "AAPL"], "session": [D1, D2], "open": [10.0, 11.0], "close": [10.0, 12.0]}
    )
    positions, equity = mark_to_market(start, [fill], prices, [D1, D2])
    assert positions.schema["qty"] == pl.Float64 and positions["qty"].to_list() == [2.5, 2.5]
    assert equity["equity"].to_list() == [1000.0, 1005.0]
    # a whole start state given fractional fills becomes fractional
    positions, _ = mark_to_market(PortfolioState.initial(Decimal(1000)), [fill], prices, [D1, D2])
    assert positions.schema["qty"] == pl.Float64


# ------------------------------------------------------------------------- the planner on real rows


def _planned_one_by_one(prices, signals, days, window, risk, slip, fee) -> pl.DataFrame:
    """As the assets run day by day: the book works the open, the planner plans the session from its account."""
    opens = opens_by_session(prices)
    parts = []
    with SimulatedBook(None, risk.initial_cash, slip, fee, shares=risk.shares) as book:
        for i, session in enumerate(window):
            book.sync(session, opens.get(session, {}))
            todays = signals.filter(pl.col("session") == session)
            part = plan_orders(
                todays,
                prices.filter(pl.col("session") <= session),
                book.account(session),
                [session],
                risk,
                slip,
                fee,
                "paper",
                next_session=window[i + 1] if i + 1 < len(window) else days[days.index(session) + 1],
            )
            parts.append(part)
            book.submit(orders_from_frame(part.filter(pl.col("status") == "approved")), session)
    return pl.concat(parts)


@pytest.mark.parametrize("size_on", ["close", "fill"])
def test_a_fractional_range_run_equals_the_sessions_run_one_by_one(sample_window, size_on):
    prices, signals, days, window = sample_window
    assert signals.height > 0
    risk = RiskConfig(
        notional=Decimal(2500),
        monthly_share_limit=None if size_on == "fill" else 40,
        size_on=size_on,
        initial_cash=Decimal(20_000),
        **FRACTIONAL_RISK,
    )
    slip, fee = SlippageModel(bps=Decimal(5), round_cents=False), CommissionModel(round_cents=False)
    ranged = plan_orders(
        signals, prices, PortfolioState.initial(risk.initial_cash, FRACTIONAL), days, risk, slip, fee, "paper"
    )
    one_by_one = _planned_one_by_one(prices, signals, days, window, risk, slip, fee)
    assert ranged.schema["qty"] == pl.Float64
    approved = ranged.filter(pl.col("status") == "approved")
    assert approved.height > 0
    # fractions really happen (an approved quantity that is not a whole share)
    assert approved.filter(pl.col("qty") != pl.col("qty").floor()).height > 0
    key = ["session", "client_order_id"]
    assert ranged.sort(key).equals(one_by_one.sort(key))


def test_the_book_splits_a_fractional_position_and_replays_it_on_reopening(tmp_path):
    path = str(tmp_path / "book.duckdb")
    with SimulatedBook(path, Decimal(1000), *FREE, shares="fractional") as book:
        book.submit([_order("AAPL", _q("1.000000001"))], D)
        book.sync(D1, {"AAPL": Decimal(100)})
        split = Split("AAPL", D2, D2, 3, 2, Decimal(60), "corporate_actions")
        book.sync(D2, {}, [split])
        account = book.account(D2)
        events = book.events(D2, D2)
    assert account.positions["AAPL"].qty == _q("1.500000001") and account.cash == Decimal("899.9999999")
    assert events["event"].to_list() == ["split"] and events["qty"].to_list() == [1.500000001]
    with SimulatedBook(path, Decimal(1000), *FREE, shares="fractional") as again:
        assert again.account(D2) == account
