"""The shared fill model: tick rounding, slippage, commission, and working pending orders at an open."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.execution import (
    CommissionModel,
    SlippageModel,
    affordable_qty,
    by_session,
    execute_open,
    fill_at_open,
    opens_at,
    opens_by_session,
    orders_by_session,
    round_price,
)
from trading_dagster.domain.orders import Order, client_order_id, orders_from_frame, orders_to_frame

D = dt.date(2017, 3, 1)
D1 = dt.date(2017, 3, 2)


def _order(symbol: str, side: str, qty: int, strategy: str = "s") -> Order:
    return Order(
        client_order_id=client_order_id("paper", D, symbol, strategy, side),
        session=D,
        symbol=symbol,
        strategy=strategy,
        side=side,
        requested_qty=qty,
        qty=qty,
        ref_price=Decimal("10"),
        status="approved",
    )


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("123.456", "123.46"),
        ("123.455", "123.46"),  # half up
        ("1.004", "1.00"),
        ("1", "1.00"),
        ("0.12345", "0.1235"),  # four decimals below $1
        ("0.99994", "0.9999"),
    ],
)
def test_round_price_follows_alpaca_ticks(price, expected):
    out = round_price(Decimal(price))
    assert out == Decimal(expected)
    assert str(out) == expected  # no float noise, the exact tick


def test_round_price_rejects_non_positive_and_takes_a_rounding_mode():
    assert round_price(Decimal("2.019"), ROUND_DOWN) == Decimal("2.01")
    with pytest.raises(ValueError):
        round_price(Decimal(0))


def test_slippage_is_against_us_and_rounds_away_from_us():
    slip = SlippageModel()  # 5 bps
    assert slip.fill_price("buy", Decimal("100")) == Decimal("100.05")
    assert slip.fill_price("sell", Decimal("100")) == Decimal("99.95")
    # 10.01 * 1.0005 = 10.015005 -> 10.02 for a buy; 10.01 * 0.9995 = 10.004995 -> 10.00 for a sell
    assert slip.fill_price("buy", Decimal("10.01")) == Decimal("10.02")
    assert slip.fill_price("sell", Decimal("10.01")) == Decimal("10.00")
    # a penny stock: 0.5 * 1.0005 = 0.50025 -> 0.5003
    assert slip.fill_price("buy", Decimal("0.5")) == Decimal("0.5003")
    assert SlippageModel(bps=0).fill_price("buy", Decimal("10.01")) == Decimal("10.01")
    assert SlippageModel(bps=10.0).bps == Decimal(10)  # floats convert exactly


def test_a_sell_at_a_near_zero_open_fills_at_one_tick_not_at_zero():
    """0.0001 less 5 bps rounds down to 0.0000, which no fill can have: the floor is one tick."""
    assert SlippageModel().fill_price("sell", Decimal("0.0001")) == Decimal("0.0001")
    assert SlippageModel().fill_price("sell", Decimal("0.0003")) == Decimal("0.0002")  # still against us
    assert SlippageModel().fill_price("buy", Decimal("0.0001")) == Decimal("0.0002")


def test_commission_per_share_with_minimum_rounded_to_cents():
    fee = CommissionModel()
    assert fee.cost(37, Decimal("10")) == Decimal("0.19")  # 0.185 half up
    assert fee.cost(100, Decimal("10")) == Decimal("0.50")
    assert fee.cost(0, Decimal("10")) == Decimal(0)
    assert CommissionModel(minimum=Decimal(1)).cost(3, Decimal("10")) == Decimal("1.00")
    with pytest.raises(ValueError):
        CommissionModel(per_share=Decimal(-1))


def test_fill_at_open_applies_both_models():
    fill = fill_at_open(_order("AAPL", "buy", 4), Decimal("100"), D1, SlippageModel(), CommissionModel())
    assert (fill.session, fill.order_session, fill.qty) == (D1, D, 4)
    assert fill.price == Decimal("100.05")
    assert fill.commission == Decimal("0.02")
    assert (
        fill_at_open(
            _order("AAPL", "buy", 4), Decimal("100"), D1, SlippageModel(), CommissionModel(), qty=1
        ).qty
        == 1
    )


def test_fill_at_open_refuses_denied_orders():
    denied = Order("x", D, "AAPL", "s", "buy", 0, 0, None, "denied", "NO_PRICE")
    with pytest.raises(ValueError):
        fill_at_open(denied, Decimal("10"), D1, SlippageModel(), CommissionModel())


def test_affordable_qty_counts_commission():
    fee = CommissionModel(minimum=Decimal(1))
    # 10 shares at 10 cost 100 + 1 commission > 100: nine fit
    assert affordable_qty(Decimal(100), Decimal(10), fee, 50) == 9
    assert affordable_qty(Decimal(101), Decimal(10), fee, 50) == 10
    assert affordable_qty(Decimal(101), Decimal(10), fee, 3) == 3
    assert affordable_qty(Decimal(0), Decimal(10), fee, 3) == 0
    assert affordable_qty(Decimal("0.5"), Decimal("0.0001"), CommissionModel(), 10**9) == 98


def test_execute_open_expires_without_a_bar_and_sells_fund_buys():
    slip, fee = SlippageModel(bps=0), CommissionModel(per_share=Decimal(0))
    pending = [_order("AAA", "buy", 10), _order("BBB", "sell", 5), _order("CCC", "buy", 1)]
    result = execute_open(
        pending, {"AAA": Decimal(10), "BBB": Decimal(20)}, D1, Decimal(0), {"BBB": 5}, slip, fee
    )
    # the sell is worked first: its 100 of proceeds pay for the buy; CCC has no bar and expires
    assert [(f.symbol, f.side, f.qty) for f in result.fills] == [("BBB", "sell", 5), ("AAA", "buy", 10)]
    assert [(e.symbol, e.event, e.qty, e.session) for e in result.expired] == [("CCC", "expired", 1, D1)]


def test_execute_open_caps_a_buy_at_the_cash_after_a_gap_up():
    slip, fee = SlippageModel(bps=0), CommissionModel(per_share=Decimal(0))
    result = execute_open([_order("AAA", "buy", 10)], {"AAA": Decimal(12)}, D1, Decimal(100), {}, slip, fee)
    assert [f.qty for f in result.fills] == [8]  # 8 * 12 = 96 <= 100 < 9 * 12
    assert [(e.event, e.qty) for e in result.expired] == [("expired", 2)]


def test_execute_open_never_sells_more_than_held():
    slip, fee = SlippageModel(), CommissionModel()
    result = execute_open(
        [_order("AAA", "sell", 10)], {"AAA": Decimal(12)}, D1, Decimal(0), {"AAA": 3}, slip, fee
    )
    assert [f.qty for f in result.fills] == [3]
    assert [e.qty for e in result.expired] == [7]
    nothing = execute_open([_order("AAA", "sell", 10)], {"AAA": Decimal(12)}, D1, Decimal(0), {}, slip, fee)
    assert nothing.fills == [] and [e.qty for e in nothing.expired] == [10]


def test_opens_at_reads_one_session_exactly():
    prices = pl.DataFrame(
        {
            "symbol": ["A", "B", "A"],
            "session": [D, D, D1],
            "open": [10.1, 0.3, 11.0],
            "close": [1.0, 1.0, 1.0],
        }
    )
    assert opens_at(prices, D) == {"A": Decimal("10.1"), "B": Decimal("0.3")}


def test_opens_by_session_agrees_with_opens_at_for_every_session():
    import datetime as dt

    import polars as pl

    from trading_dagster.domain.execution import opens_at, opens_by_session

    d1, d2 = dt.date(2017, 6, 1), dt.date(2017, 6, 2)
    prices = pl.DataFrame(
        {"session": [d1, d1, d2], "symbol": ["AAPL", "KO", "AAPL"], "open": [153.17, 45.2, 153.58]}
    )
    table = opens_by_session(prices)
    assert set(table) == {d1, d2}
    for session, opens in table.items():
        assert {s: Decimal(repr(v)) for s, v in opens.items()} == opens_at(prices, session)
    assert table[d2] == {"AAPL": 153.58}  # a symbol without a bar that session is absent, not zero


def test_commission_models_per_order_bps_minimum_and_cap():
    from trading_dagster.domain.execution import CommissionModel

    per_order = CommissionModel(per_share=Decimal(0), per_order=Decimal("1.50"))
    assert per_order.cost(1, Decimal(10)) == per_order.cost(500, Decimal(10)) == Decimal("1.50")
    bps = CommissionModel(per_share=Decimal(0), bps=Decimal(10))  # 0.1% of the trade's value
    assert bps.cost(100, Decimal("50.00")) == Decimal("5.00")
    # IBKR Pro Fixed: half a cent a share, at least $1.00, at most 1% of the trade value
    ibkr = CommissionModel.preset("ibkr_fixed")
    assert ibkr.cost(10, Decimal(150)) == Decimal("1.00")  # 0.05 -> the minimum
    assert ibkr.cost(1000, Decimal(150)) == Decimal("5.00")  # 1000 x 0.005
    assert ibkr.cost(1000, Decimal("0.20")) == Decimal("2.00")  # 5.00 capped at 1% of $200
    assert CommissionModel.preset("alpaca").cost(1000, Decimal(150)) == Decimal(0)
    with pytest.raises(ValueError, match="unknown commission preset"):
        CommissionModel.preset("robinhood")
    with pytest.raises(ValueError, match="maximum_pct"):
        CommissionModel(maximum_pct=Decimal(0))


@pytest.mark.parametrize("preset", ["alpaca", "ibkr_fixed"])
def test_every_commission_model_is_non_decreasing_in_qty_so_affordable_qty_holds(preset):
    from trading_dagster.domain.execution import CommissionModel, affordable_qty, buy_cost

    model = CommissionModel.preset(preset)
    for price in (Decimal("0.35"), Decimal("12.34"), Decimal("412.50")):
        costs = [model.cost(q, price) for q in range(0, 400)]
        assert costs == sorted(costs)
        cash = Decimal("2500")
        q = affordable_qty(cash, price, model, 10**6)
        assert buy_cost(q, price, model) <= cash < buy_cost(q + 1, price, model)


# -- {session: {symbol: value}} and {session: [Order]} in one pass, as the backtest book is fed ----------------

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"


def _real_bars() -> pl.DataFrame:
    """Two months of the real sample, rows shuffled (the builder must not rely on the frame's order)."""
    bars = pl.read_parquet(SAMPLE).rename({"ticker": "symbol", "date": "session"})
    return bars.filter(pl.col("session").is_between(dt.date(2016, 1, 1), dt.date(2016, 2, 29))).sample(
        fraction=1.0, shuffle=True, seed=3
    )


def test_opens_by_session_is_every_session_s_opens_in_row_order():
    bars = _real_bars()
    opens = opens_by_session(bars)
    expected = {
        key[0]: dict(zip(part["symbol"].to_list(), part["open"].to_list(), strict=True))
        for key, part in bars.partition_by("session", as_dict=True).items()
    }
    assert len(opens) == 39 and opens == expected  # the sessions of January and February 2016
    for day, row in opens.items():  # the sample's row order within a session, not a re-sorted one
        assert list(row) == list(expected[day])
    assert by_session(bars.clear(), "open") == {}


def test_orders_by_session_equals_one_conversion_per_session():
    bars = _real_bars().sort("session", "symbol")
    orders = []
    for i, (day, symbol, close) in enumerate(bars.select("session", "symbol", "close").head(300).iter_rows()):
        side = "buy" if i % 3 else "sell"
        orders.append(
            Order(
                client_order_id=client_order_id("paper", day, symbol, "s", side), session=day, symbol=symbol,
                strategy="s", side=side, requested_qty=10 + i, qty=(10 + i) if i % 5 else 0, ref_price=Decimal(repr(close)),
                status="approved" if i % 5 else "denied", reason_code=None if i % 5 else "QTY_OVER_MONTHLY_LIMIT",
            )
        )
    frame = orders_to_frame(orders)
    grouped = orders_by_session(frame)
    approved = frame.filter(pl.col("status") == "approved")
    per_session = {k[0]: orders_from_frame(v) for k, v in approved.partition_by("session", as_dict=True).items()}
    assert len(grouped) > 1 and grouped == per_session
    assert sum(map(len, grouped.values())) == sum(o.approved for o in orders) < len(orders)
    assert sum(map(len, orders_by_session(frame, status=None).values())) == len(orders)
