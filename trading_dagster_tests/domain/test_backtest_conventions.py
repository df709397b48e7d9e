"""The backtest's reference conventions (decision 0006), each on its own: unrounded prices and commissions,
no cash limit, no adding to a position, and the crossover's tie band. Each default is today's behaviour."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.execution import NANO, CommissionModel, SlippageModel, execute_open
from trading_dagster.domain.orders import Order, client_order_id
from trading_dagster.domain.portfolio import PortfolioState, simulate
from trading_dagster.domain.risk import (
    ALREADY_HELD,
    INSUFFICIENT_BUYING_POWER,
    BuyingPower,
    EarlyDenial,
    NoAddingToPositions,
    OrderIntent,
    RiskConfig,
    default_controls,
)
from trading_dagster.domain.strategies import StrategySpec, generate_signals
from trading_dagster_tests.domain.test_risk import _ctx

D, D1, D2, D3 = dt.date(2017, 3, 1), dt.date(2017, 3, 2), dt.date(2017, 3, 3), dt.date(2017, 3, 6)
FREE = {"monthly_share_limit": None, "max_position_pct_equity": None}


def _buy(symbol: str, qty: int, session: dt.date = D) -> Order:
    cid = client_order_id("paper", session, symbol, "s", "buy")
    return Order(cid, session, symbol, "s", "buy", qty, qty, Decimal(10), "approved")


# -------------------------------------------------------------------------------------- round_cents


@pytest.mark.parametrize("bps", ["0", "5", "12.5"])
def test_unrounded_fill_prices_are_the_open_times_the_slippage_exactly(bps):
    slip = SlippageModel(bps=Decimal(bps), round_cents=False)
    open_ = Decimal("23.456789012345")
    factor = Decimal(bps) / 10_000
    assert slip.fill_price("buy", open_) == (open_ * (1 + factor)).quantize(NANO)
    assert slip.fill_price("sell", open_) == (open_ * (1 - factor)).quantize(NANO)
    # the default still rounds away from the trader, to the tick
    rounded = SlippageModel(bps=Decimal(bps))
    assert rounded.fill_price("buy", open_) > slip.fill_price("buy", open_)
    assert rounded.fill_price("buy", open_) == rounded.fill_price("buy", open_).quantize(Decimal("0.01"))
    assert rounded.fill_price("sell", open_) < slip.fill_price("sell", open_)


def test_at_zero_slippage_an_unrounded_fill_is_the_open_itself():
    slip = SlippageModel(bps=Decimal(0), round_cents=False)
    assert slip.fill_price("buy", Decimal("41.2375")) == Decimal("41.2375")
    assert slip.fill_price("sell", 41.2375) == Decimal("41.2375")
    assert SlippageModel(bps=Decimal(0)).fill_price("buy", Decimal("41.2375")) == Decimal("41.24")


def test_unrounded_commission_in_bps_is_exact():
    fee = CommissionModel(per_share=Decimal(0), bps=Decimal(10), round_cents=False)
    assert fee.cost(37, Decimal("23.456789")) == (Decimal("0.001") * 37 * Decimal("23.456789")).quantize(NANO)
    assert CommissionModel(per_share=Decimal(0), bps=Decimal(10)).cost(37, Decimal("23.456789")) == Decimal("0.87")


def test_slippage_of_100_percent_or_more_is_refused():
    with pytest.raises(ValueError, match="10,000"):
        SlippageModel(bps=Decimal(10_000))


# ------------------------------------------------------------------------------------- buying power


def test_without_a_cash_limit_a_buy_fills_whole_and_cash_goes_negative():
    slip, fee = SlippageModel(bps=Decimal(0)), CommissionModel(per_share=Decimal(0))
    limited = execute_open([_buy("AAPL", 50)], {"AAPL": Decimal(10)}, D1, Decimal(100), {}, slip, fee)
    assert [f.qty for f in limited.fills] == [10] and limited.expired[0].qty == 40
    free = execute_open(
        [_buy("AAPL", 50)], {"AAPL": Decimal(10)}, D1, Decimal(100), {}, slip, fee, cash_limited=False
    )
    assert [f.qty for f in free.fills] == [50] and free.expired == []
    assert PortfolioState.initial(100).apply_fills(free.fills).cash == Decimal(-400)


def test_buying_power_off_leaves_the_control_out_and_the_shortcut_off():
    slip, fee = SlippageModel(), CommissionModel()
    on, off = RiskConfig(), RiskConfig(buying_power="off")
    assert any(isinstance(c, BuyingPower) for c in default_controls(on, slip, fee))
    assert not any(isinstance(c, BuyingPower) for c in default_controls(off, slip, fee))
    assert EarlyDenial.for_chain(default_controls(off, slip, fee), off, slip, fee) is None
    with pytest.raises(ValueError, match="buying_power"):
        RiskConfig(buying_power="margin")


def _prices(symbol: str, closes: list[float]) -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame(
        {
            "session": [D, D1, D2, D3][:n],
            "symbol": [symbol] * n,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": [1_000_000] * n,
        }
    )


def _signals(rows: list[tuple[dt.date, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [r[0] for r in rows],
            "symbol": [r[1] for r in rows],
            "strategy": ["s"] * len(rows),
            "side": [r[2] for r in rows],
            "strength": [1.0] * len(rows),
            "reason": ["test"] * len(rows),
        }
    )


def test_an_unaffordable_buy_is_denied_with_the_cash_limit_and_filled_without():
    prices, signals = _prices("AAPL", [10.0, 10.0]), _signals([(D, "AAPL", "buy")])
    slip, fee = SlippageModel(), CommissionModel()
    limited = RiskConfig(notional=Decimal(5_000), **FREE)
    frame = simulate(signals, prices, PortfolioState.initial(100), [D, D1], limited, slip, fee, "paper").orders_frame
    assert frame["reason_code"].to_list() == [INSUFFICIENT_BUYING_POWER]
    free = RiskConfig(notional=Decimal(5_000), buying_power="off", **FREE)
    proj = simulate(signals, prices, PortfolioState.initial(100), [D, D1], free, slip, fee, "paper")
    assert proj.orders_frame["qty"].to_list() == [500]
    assert [f.qty for f in proj.fills] == [500] and proj.end_state.cash < 0


# ----------------------------------------------------------------------------------- add_to_positions


@pytest.mark.parametrize("buying_power", ["cash", "off"])
def test_a_repeated_buy_does_not_add_to_an_open_position_when_switched_off(buying_power):
    prices = _prices("AAPL", [10.0, 10.0, 10.0, 10.0])
    signals = _signals([(D, "AAPL", "buy"), (D1, "AAPL", "buy"), (D2, "AAPL", "buy")])

    def run(add: bool) -> pl.DataFrame:
        risk = RiskConfig(add_to_positions=add, buying_power=buying_power, **FREE)
        slip, fee = SlippageModel(), CommissionModel()
        start = PortfolioState.initial(100_000)
        return simulate(signals, prices, start, [D, D1, D2, D3], risk, slip, fee, "paper").orders_frame

    assert run(True)["status"].to_list() == ["approved"] * 3
    single = run(False)
    assert single["status"].to_list() == ["approved", "denied", "denied"]
    assert single["reason_code"].to_list() == [None, ALREADY_HELD, ALREADY_HELD]


def test_the_no_adding_control_denies_a_held_or_pending_symbol_and_passes_sells():
    control = NoAddingToPositions()
    buy = OrderIntent("A", "buy", 5, Decimal(10))
    assert control.check(buy, _ctx()).qty == 5
    assert control.check(buy, _ctx(pending_buy_qty=1)).reason_code == ALREADY_HELD
    assert control.check(buy, _ctx(held=1)).reason_code == ALREADY_HELD
    assert control.check(buy._replace(side="sell"), _ctx(held=1)).qty == 5


# ------------------------------------------------------------------------------------------ tie band


def _indicators(fast: list[float], slow: list[float]) -> pl.DataFrame:
    n = len(fast)
    return pl.DataFrame(
        {"session": [D, D1, D2, D3][:n], "symbol": ["A"] * n, "sma_20": fast, "sma_50": slow},
        schema_overrides={"sma_20": pl.Float64, "sma_50": pl.Float64},
    )


def _sma(band: float | None) -> tuple[StrategySpec, ...]:
    params = {"fast": 20, "slow": 50} | ({} if band is None else {"tie_band_pct": band})
    return (StrategySpec("x", "sma_cross", params),)


def test_a_tie_is_not_above_and_a_band_asks_for_a_clear_cross():
    # fast equal to slow, then 0.5 % above, then 2 % above
    ind = _indicators([100.0, 100.5, 102.0], [100.0, 100.0, 100.0])
    plain = generate_signals(ind, _sma(None), D, D2)
    assert plain.select("session", "side").rows() == [(D1, "buy")]  # from a tie: a cross
    assert generate_signals(ind, _sma(1.0), D, D2).select("session", "side").rows() == [(D2, "buy")]
    assert generate_signals(ind, _sma(0.0), D, D2).equals(plain)  # a band of 0 is the default exactly


def test_the_band_mirrors_for_a_cross_below():
    ind = _indicators([100.0, 99.5, 98.0], [100.0, 100.0, 100.0])
    assert generate_signals(ind, _sma(None), D, D2).select("session", "side").rows() == [(D1, "sell")]
    assert generate_signals(ind, _sma(1.0), D, D2).select("session", "side").rows() == [(D2, "sell")]


@pytest.mark.parametrize("band", [-1, 10, 25])
def test_a_band_out_of_range_is_refused_naming_it(band):
    with pytest.raises(ValueError, match="tie_band_pct"):
        _sma(band)


# ------------------------------------------------------------------------------------------- size_on


def _gap(close: float, next_open: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [D, D1],
            "symbol": ["AAPL", "AAPL"],
            "open": [close, next_open],
            "high": [close, next_open],
            "low": [close, next_open],
            "close": [close, next_open],
            "volume": [1_000_000, 1_000_000],
        }
    )


@pytest.mark.parametrize(("next_open", "shares"), [(8.0, 125), (12.5, 80), (1_001.0, 0)])
def test_sized_on_the_fill_a_buy_spends_its_notional_at_the_open(next_open, shares):
    slip, fee = SlippageModel(bps=Decimal(0), round_cents=False), CommissionModel(per_share=Decimal(0))
    risk = RiskConfig(size_on="fill", **FREE)  # $1,000 a buy
    proj = simulate(_signals([(D, "AAPL", "buy")]), _gap(10.0, next_open), PortfolioState.initial(100_000), [D, D1], risk, slip, fee, "paper")
    order = proj.orders_frame.row(0, named=True)
    assert (order["qty"], order["notional"]) == (100, 1_000.0)  # the estimate at the close, and the budget
    assert [f.qty for f in proj.fills] == ([shares] if shares else [])
    assert [e.qty for e in proj.expired] == ([] if shares else [100])
    # sized on the close (the default) the same signal buys the estimate whatever the open, as far as the
    # $100,000 of cash goes
    on_close = simulate(_signals([(D, "AAPL", "buy")]), _gap(10.0, next_open), PortfolioState.initial(100_000), [D, D1], RiskConfig(**FREE), slip, fee, "paper")
    assert on_close.orders_frame["notional"].to_list() == [None]
    assert [f.qty for f in on_close.fills] == [min(100, int(100_000 // next_open))]


def test_a_clipped_notional_order_spends_only_what_was_approved():
    slip, fee = SlippageModel(bps=Decimal(0)), CommissionModel(per_share=Decimal(0))
    risk = RiskConfig(size_on="fill", monthly_share_limit=None, max_position_pct_equity=Decimal("0.5"))
    proj = simulate(_signals([(D, "AAPL", "buy")]), _gap(10.0, 8.0), PortfolioState.initial(100_000), [D, D1], risk, slip, fee, "paper")
    order = proj.orders_frame.row(0, named=True)
    assert (order["requested_qty"], order["qty"], order["notional"]) == (100, 50, 500.0)
    assert [f.qty for f in proj.fills] == [62]  # floor(500 / 8)


def test_size_on_fill_needs_the_quota_off_and_a_notional_sizing():
    with pytest.raises(ValueError, match="monthly_share_limit"):
        RiskConfig(size_on="fill")
    with pytest.raises(ValueError, match="ATR sizing"):
        RiskConfig(size_on="fill", sizing="atr", monthly_share_limit=None)
    assert RiskConfig(size_on="fill", sizing="pct_equity", monthly_share_limit=None).size_on == "fill"


def test_a_notional_order_round_trips_through_the_book_and_its_check():
    from trading_dagster.checks import rules
    from trading_dagster.domain.orders import orders_from_frame
    from trading_dagster.resources.backtest_book import SimulatedBook

    slip, fee = SlippageModel(bps=Decimal(0), round_cents=False), CommissionModel(per_share=Decimal(0))
    risk = RiskConfig(size_on="fill", **FREE)
    proj = simulate(_signals([(D, "AAPL", "buy")]), _gap(10.0, 8.0), PortfolioState.initial(100_000), [D, D1], risk, slip, fee, "paper")
    orders = orders_from_frame(proj.orders_frame)
    assert orders[0].notional == Decimal(1000)
    with SimulatedBook(None, slippage=slip, commission=fee) as book:
        book.submit(orders, D)
        fills = book.sync(D1, {"AAPL": Decimal(8)})
        events = book.events(D, D1)
    assert [f.qty for f in fills] == [125]  # more than the estimate of 100: the notional decides
    assert rules.executions_match_orders(events, proj.orders_frame).passed
    overspent = events.with_columns(
        qty=pl.when(pl.col("event") == "filled").then(pl.lit(126)).otherwise(pl.col("qty"))
    )
    outcome = rules.executions_match_orders(overspent, proj.orders_frame)
    assert not outcome.passed and "filled_more_than_notional" in str(outcome)


def test_sized_on_the_fill_a_budget_below_one_share_at_the_close_still_goes_to_the_open():
    # TVIX on the shared file: a close above the $10,000 notional, the next open below it
    slip, fee = SlippageModel(bps=Decimal(0), round_cents=False), CommissionModel(per_share=Decimal(0))
    signals = _signals([(D, "AAPL", "buy")])
    on_fill = RiskConfig(size_on="fill", notional=Decimal(10_000), buying_power="off", **FREE)
    proj = simulate(signals, _gap(10_300.0, 9_900.0), PortfolioState.initial(100_000), [D, D1], on_fill, slip, fee, "paper")
    assert proj.orders_frame.select("status", "qty", "notional").rows() == [("approved", 1, 10_000.0)]
    assert [(f.qty, f.price) for f in proj.fills] == [(1, Decimal(9_900))]
    higher = simulate(signals, _gap(10_300.0, 10_100.0), PortfolioState.initial(100_000), [D, D1], on_fill, slip, fee, "paper")
    assert higher.fills == [] and [e.event for e in higher.expired] == ["expired"]
    # sized at the close it asks for nothing and is denied, as before
    on_close = RiskConfig(notional=Decimal(10_000), **FREE)
    denied = simulate(signals, _gap(10_300.0, 9_900.0), PortfolioState.initial(100_000), [D, D1], on_close, slip, fee, "paper")
    assert denied.orders_frame["reason_code"].to_list() == ["SIZE_BELOW_ONE_SHARE"]
