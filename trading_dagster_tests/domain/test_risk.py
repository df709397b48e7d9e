"""Sizing and the pre-trade controls: approve, clip (keeping the reason) or deny, each with a reason code."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import (
    INSUFFICIENT_BUYING_POWER,
    MAX_POSITION,
    NO_PRICE,
    PRICE_BELOW_MINIMUM,
    QTY_OVER_MONTHLY_LIMIT,
    SHORT_NOT_ALLOWED,
    SIZE_BELOW_ONE_SHARE,
    BuyingPower,
    Decision,
    EarlyDenial,
    LongOnly,
    MaxPosition,
    MinimumPrice,
    MinimumSize,
    MonthlyShareLimit,
    NoPrice,
    OrderIntent,
    RiskConfig,
    RiskContext,
    check_order,
    default_controls,
    estimated_buy_cost,
    size_order,
)

SLIP, FEE = SlippageModel(), CommissionModel()


def _ctx(**kw) -> RiskContext:
    base = dict(
        held=0,
        pending_buy_qty=0,
        pending_sell_qty=0,
        bought_in_fill_month=0,
        equity=Decimal(100_000),
        available_cash=Decimal(100_000),
    )
    return RiskContext(**(base | kw))


def _buy(qty: int, price: str | None = "100") -> OrderIntent:
    return OrderIntent("AAPL", "buy", qty, None if price is None else Decimal(price))


def _run(intent: OrderIntent, ctx: RiskContext, config: RiskConfig | None = None) -> Decision:
    return check_order(intent, ctx, default_controls(config or RiskConfig(), SLIP, FEE))


def test_config_defaults_and_exact_conversion():
    cfg = RiskConfig()
    assert (cfg.sizing, cfg.notional, cfg.max_position_pct_equity, cfg.monthly_share_limit) == (
        "fixed_notional",
        Decimal(1000),
        Decimal(10),
        4,
    )
    assert cfg.initial_cash == Decimal(100_000) and cfg.long_only
    assert cfg.min_price == Decimal(1) and RiskConfig(min_price=0.5).min_price == Decimal("0.5")
    assert RiskConfig(notional=1234.5).notional == Decimal("1234.5")


@pytest.mark.parametrize(
    "kw",
    [{"sizing": "kelly"}, {"notional": 0}, {"long_only": False}, {"monthly_share_limit": -1}, {"min_price": -1}],
)
def test_config_rejects_what_we_do_not_model(kw):
    with pytest.raises(ValueError):
        RiskConfig(**kw)


def test_sizing():
    assert size_order("buy", Decimal("150"), Decimal(100_000), 0, RiskConfig()) == 6  # floor(1000 / 150)
    assert size_order("buy", Decimal("1100"), Decimal(100_000), 0, RiskConfig()) == 0
    pct = RiskConfig(sizing="pct_equity", pct_equity=Decimal(2))
    assert size_order("buy", Decimal("40"), Decimal(50_000), 0, pct) == 25  # 2% of 50k = 1000
    assert size_order("sell", Decimal("40"), Decimal(50_000), 17, pct) == 17  # sells sell the position
    assert size_order("buy", None, Decimal(50_000), 0, pct) == 0


def test_each_control_approves_within_its_limit():
    ctx = _ctx()
    for control in (
        NoPrice(),
        LongOnly(),
        MinimumPrice(Decimal(1)),
        MinimumSize(),
        MonthlyShareLimit(4),
        MaxPosition(Decimal(10)),
        BuyingPower(SLIP, FEE),
    ):
        assert control.check(_buy(3), ctx) == Decision(3)


def test_no_price_denies():
    assert _run(_buy(0, price=None), _ctx()) == Decision(0, NO_PRICE)


def test_a_price_that_is_not_positive_is_no_price():
    assert _run(_buy(5, price="0"), _ctx()) == Decision(0, NO_PRICE)
    assert size_order("buy", Decimal(0), Decimal(100_000), 0, RiskConfig()) == 0  # no division by zero
    assert size_order("buy", Decimal(-3), Decimal(100_000), 0, RiskConfig(min_price=None)) == 0


# Finding 8 of issue 8: a close of 24.93 followed by a bar at 0.0001 sized a $1,000 buy into 10,000,000 shares.
COLLAPSED = "0.0001"


def test_a_buy_below_the_minimum_price_is_denied_and_asks_for_nothing():
    requested = size_order("buy", Decimal(COLLAPSED), Decimal(100_000), 0, RiskConfig())
    assert requested == 0  # never the ten million shares $1,000 / 0.0001 would be
    assert _run(_buy(requested, price=COLLAPSED), _ctx()) == Decision(0, PRICE_BELOW_MINIMUM)
    assert _run(_buy(5, price="0.99"), _ctx()) == Decision(0, PRICE_BELOW_MINIMUM)  # whatever the size
    assert _run(_buy(5, price="1.00"), _ctx()) == Decision(4, QTY_OVER_MONTHLY_LIMIT)  # $1 itself passes


def test_selling_below_the_minimum_price_is_still_allowed():
    sell = OrderIntent("AAPL", "sell", 300, Decimal(COLLAPSED))
    assert _run(sell, _ctx(held=300)) == Decision(300)


def test_the_minimum_price_is_configurable_and_can_be_off():
    assert _run(_buy(5, price="4.99"), _ctx(), RiskConfig(min_price=Decimal(5))) == Decision(0, PRICE_BELOW_MINIMUM)
    for off in (None, 0):
        config = RiskConfig(min_price=off, monthly_share_limit=None)
        assert not any(isinstance(c, MinimumPrice) for c in default_controls(config, SLIP, FEE))
        assert _run(_buy(5, price="0.5"), _ctx(), config) == Decision(5)


@settings(max_examples=300, deadline=None)
@given(
    price=st.decimals(min_value="0.0001", max_value=5_000, places=4),
    equity=st.decimals(min_value=0, max_value=10_000_000, places=2),
    config=st.sampled_from(
        [RiskConfig(), RiskConfig(sizing="pct_equity", pct_equity=Decimal(5)), RiskConfig(min_price=Decimal(5))]
    ),
)
def test_sizing_never_asks_for_more_than_the_budget_at_the_minimum_price(price, equity, config):
    qty = size_order("buy", price, equity, 0, config)
    budget = config.notional if config.sizing == "fixed_notional" else equity * config.pct_equity / 100
    assert 0 <= qty <= budget / config.min_price
    assert qty * price <= budget


def test_below_one_share_denies():
    assert _run(_buy(0), _ctx()) == Decision(0, SIZE_BELOW_ONE_SHARE)


def test_monthly_limit_clips_to_the_remaining_quota_then_denies():
    assert _run(_buy(10), _ctx()) == Decision(4, QTY_OVER_MONTHLY_LIMIT)
    assert _run(_buy(10), _ctx(bought_in_fill_month=1, pending_buy_qty=1)) == Decision(
        2, QTY_OVER_MONTHLY_LIMIT
    )
    assert _run(_buy(10), _ctx(bought_in_fill_month=4)) == Decision(0, QTY_OVER_MONTHLY_LIMIT)
    assert _run(_buy(3), _ctx(bought_in_fill_month=1)) == Decision(3)  # exactly fits: unchanged, no reason
    assert _run(_buy(10), _ctx(), RiskConfig(monthly_share_limit=None)) == Decision(10)


def test_max_position_clips_on_held_plus_pending():
    # 10% of 100k = 10k; holding 95 at 100 = 9.5k, so 5 more
    assert _run(_buy(4), _ctx(held=95)) == Decision(4)
    assert _run(_buy(4), _ctx(held=97)) == Decision(3, MAX_POSITION)
    assert _run(_buy(4), _ctx(held=98, pending_buy_qty=2)) == Decision(0, MAX_POSITION)


def test_buying_power_counts_slippage_and_commission():
    # 100.05 a share with slippage, plus 0.01 commission for 2 shares: 200.11
    assert estimated_buy_cost(2, Decimal(100), SLIP, FEE) == Decimal("200.11")
    assert _run(_buy(3), _ctx(available_cash=Decimal("200.11"))) == Decision(2, INSUFFICIENT_BUYING_POWER)
    assert _run(_buy(3), _ctx(available_cash=Decimal("200.10"))) == Decision(1, INSUFFICIENT_BUYING_POWER)
    assert _run(_buy(3), _ctx(available_cash=Decimal("50"))) == Decision(0, INSUFFICIENT_BUYING_POWER)


def test_the_reason_is_that_of_the_last_control_that_cut():
    # the quota cuts 10 -> 4, then buying power cuts 4 -> 2: the order says why it is 2
    assert _run(_buy(10), _ctx(available_cash=Decimal(250))) == Decision(2, INSUFFICIENT_BUYING_POWER)


def test_sells_only_sell_what_is_held_and_not_already_being_sold():
    sell = OrderIntent("AAPL", "sell", 5, Decimal(100))
    assert _run(sell, _ctx(held=5)) == Decision(5)
    assert _run(OrderIntent("AAPL", "sell", 0, Decimal(100)), _ctx()) == Decision(0, SHORT_NOT_ALLOWED)
    assert _run(sell, _ctx(held=5, pending_sell_qty=5)) == Decision(0, SHORT_NOT_ALLOWED)
    # buy-side limits never touch a sell
    assert _run(sell, _ctx(held=5, bought_in_fill_month=4, available_cash=Decimal(0))) == Decision(5)


# -- the planner's shortcut for the default chain ------------------------------------------------------

_money = st.decimals(min_value=-50, max_value=5_000, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    qty=st.integers(0, 60),
    price=st.one_of(st.none(), st.decimals(min_value="0.0000", max_value=900, places=4)),
    held=st.integers(0, 30),
    pending_buy=st.integers(0, 6),
    pending_sell=st.integers(0, 30),
    bought=st.integers(0, 6),
    equity=st.decimals(min_value=0, max_value=200_000, places=2),
    cash=_money,
    limit=st.sampled_from([None, 0, 4, 50]),
    pct=st.sampled_from([Decimal("0.5"), Decimal(10), Decimal(100)]),
    slip=st.sampled_from([SLIP, SlippageModel(bps=Decimal(0)), SlippageModel(bps=Decimal(80))]),
    fee=st.sampled_from([FEE, CommissionModel(minimum=Decimal(1))]),
    min_price=st.sampled_from([None, Decimal(1), Decimal(20)]),
    add=st.booleans(),
)
def test_early_denial_is_the_default_chains_decision(
    side, qty, price, held, pending_buy, pending_sell, bought, equity, cash, limit, pct, slip, fee, min_price, add
):
    config = RiskConfig(
        monthly_share_limit=limit, max_position_pct_equity=pct, min_price=min_price, add_to_positions=add
    )
    chain = default_controls(config, slip, fee)
    shortcut = EarlyDenial.for_chain(chain, config, slip, fee)
    assert shortcut is not None
    intent = OrderIntent("AAPL", side, qty, price)
    ctx = RiskContext(held, pending_buy, pending_sell, bought, equity, cash)
    reason = shortcut.reason(intent, ctx)
    if reason is not None:
        assert check_order(intent, ctx, chain) == Decision(0, reason)


def test_early_denial_only_for_the_default_chain():
    config = RiskConfig()
    chain = default_controls(config, SLIP, FEE)
    assert EarlyDenial.for_chain(list(chain), config, SLIP, FEE) is not None  # equal controls, any sequence
    assert EarlyDenial.for_chain(chain[:-1], config, SLIP, FEE) is None
    assert EarlyDenial.for_chain(chain, config, SlippageModel(bps=Decimal(9)), FEE) is None
    assert EarlyDenial.for_chain((*chain, MinimumSize()), config, SLIP, FEE) is None


def test_early_denial_covers_each_early_reason():
    config = RiskConfig()
    shortcut = EarlyDenial.for_chain(default_controls(config, SLIP, FEE), config, SLIP, FEE)
    assert shortcut is not None
    cases = [
        (_buy(5, price=None), _ctx(), NO_PRICE),
        (_buy(5, price="0"), _ctx(), NO_PRICE),
        (_buy(0, price=COLLAPSED), _ctx(), PRICE_BELOW_MINIMUM),
        (OrderIntent("AAPL", "sell", 5, Decimal(COLLAPSED)), _ctx(held=5), None),
        (OrderIntent("AAPL", "sell", 0, Decimal(100)), _ctx(), SHORT_NOT_ALLOWED),
        (_buy(0), _ctx(), SIZE_BELOW_ONE_SHARE),
        (_buy(5), _ctx(bought_in_fill_month=3, pending_buy_qty=1), QTY_OVER_MONTHLY_LIMIT),
        (_buy(5), _ctx(available_cash=Decimal("100.04")), INSUFFICIENT_BUYING_POWER),  # 1 share: 100.06
        (_buy(5), _ctx(held=100, available_cash=Decimal(50)), MAX_POSITION),  # MaxPosition denies first
        (_buy(5), _ctx(available_cash=Decimal("100.06")), None),  # one share fits: run the chain
        (OrderIntent("AAPL", "sell", 5, Decimal(100)), _ctx(held=5), None),
    ]
    for intent, ctx, reason in cases:
        assert shortcut.reason(intent, ctx) == reason
