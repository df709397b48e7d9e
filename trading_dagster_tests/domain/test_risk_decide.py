"""`risk.EarlyDenial.decide_values` (what the planner's bulk pass calls per signal) and `decide` (its
Decision form) against `check_order` over the default chain: the same quantity and reason for any intent and
book under every configuration the shortcut covers, and the buy cost `decide_values` hands back equal to
`estimated_buy_cost`, which the planner would otherwise reserve."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import (
    EarlyDenial,
    OrderIntent,
    RiskConfig,
    RiskContext,
    check_order,
    default_controls,
    estimated_buy_cost,
)

MODELS = [
    (SlippageModel(), CommissionModel()),
    (SlippageModel(bps=Decimal(0)), CommissionModel.preset("alpaca")),
    (SlippageModel(bps=Decimal(25)), CommissionModel.preset("ibkr_fixed")),
    (SlippageModel(round_cents=False), CommissionModel(round_cents=False, per_order=Decimal("0.35"))),
]
money = st.decimals(min_value=Decimal("-50"), max_value=Decimal(200_000), places=2, allow_nan=False, allow_infinity=False)
price = st.one_of(
    st.none(),
    st.just(Decimal(0)),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(5_000), places=4, allow_nan=False, allow_infinity=False),
)
shares = st.integers(0, 3_000)


@settings(max_examples=1_500, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    limit=st.sampled_from([None, 0, 1, 4, 30]),
    max_position=st.sampled_from([Decimal(1), Decimal(10), Decimal(100)]),
    min_price=st.sampled_from([None, Decimal(1), Decimal("17.5")]),
    adding=st.booleans(),
    side=st.sampled_from(["buy", "sell"]),
    qty=shares,
    ref=price,
    held=shares,
    pending_buy=st.integers(0, 40),
    pending_sell=shares,
    bought=st.integers(0, 40),
    equity=money,
    cash=money,
)
def test_decide_values_is_check_order_and_its_cost_the_reservation(
    model, limit, max_position, min_price, adding, side, qty, ref, held, pending_buy, pending_sell, bought, equity, cash
):
    slippage, commission = model
    risk = RiskConfig(
        monthly_share_limit=limit, max_position_pct_equity=max_position, min_price=min_price, add_to_positions=adding
    )
    chain = default_controls(risk, slippage, commission)
    shortcut = EarlyDenial.for_chain(chain, risk, slippage, commission)
    assert shortcut is not None
    intent = OrderIntent("X", side, qty, ref)
    ctx = RiskContext(held, pending_buy, pending_sell, bought, equity, cash)
    got, reason, cost = shortcut.decide_values(
        side == "buy", qty, ref, held, pending_buy, pending_sell, bought, equity, cash
    )
    assert (got, reason) == tuple(check_order(intent, ctx, chain))
    assert (got, reason) == tuple(shortcut.decide(intent, ctx, chain))
    if cost is not None:
        assert side == "buy" and got > 0 and ref is not None
        assert cost == estimated_buy_cost(got, ref, slippage, commission)
        assert cost <= cash


def test_a_buy_that_fits_hands_back_its_cost_and_a_clipped_one_none():
    slippage, commission = SlippageModel(), CommissionModel()
    risk = RiskConfig(monthly_share_limit=None)
    shortcut = EarlyDenial.for_chain(default_controls(risk, slippage, commission), risk, slippage, commission)
    assert shortcut is not None
    ref = Decimal("10.00")
    fits = shortcut.decide_values(True, 5, ref, 0, 0, 0, 0, Decimal(100_000), Decimal(1_000))
    assert fits == (5, None, estimated_buy_cost(5, ref, slippage, commission))
    clipped = shortcut.decide_values(True, 500, ref, 0, 0, 0, 0, Decimal(100_000), Decimal(1_000))
    assert clipped[1] == "INSUFFICIENT_BUYING_POWER" and 0 < clipped[0] < 500 and clipped[2] is None


def test_decide_clips_in_the_chains_order():
    risk = RiskConfig(monthly_share_limit=4, max_position_pct_equity=Decimal(10))
    chain = default_controls(risk, SlippageModel(), CommissionModel())
    shortcut = EarlyDenial.for_chain(chain, risk, SlippageModel(), CommissionModel())
    assert shortcut is not None
    buy = OrderIntent("XYZ", "buy", 10, Decimal(100))
    cases = [
        (RiskContext(0, 0, 0, 0, Decimal(100_000), Decimal(100_000)), (4, "QTY_OVER_MONTHLY_LIMIT")),
        (RiskContext(0, 0, 0, 0, Decimal(2_500), Decimal(100_000)), (2, "MAX_POSITION")),
        (RiskContext(0, 0, 0, 0, Decimal(100_000), Decimal(250)), (2, "INSUFFICIENT_BUYING_POWER")),
        (RiskContext(0, 0, 0, 0, Decimal(500), Decimal(50)), (0, "MAX_POSITION")),
        (RiskContext(0, 0, 0, 0, Decimal(100_000), Decimal(50)), (0, "INSUFFICIENT_BUYING_POWER")),
    ]
    for ctx, expected in cases:
        assert tuple(shortcut.decide(buy, ctx, chain)) == expected == tuple(check_order(buy, ctx, chain))
    sell = OrderIntent("XYZ", "sell", 10, Decimal(100))
    ctx = RiskContext(10, 0, 4, 0, Decimal(100_000), Decimal(0))
    assert tuple(shortcut.decide(sell, ctx, chain)) == (6, "SHORT_NOT_ALLOWED") == tuple(check_order(sell, ctx, chain))
