"""The pre-trade controls, their chain and the planner's early-denial shortcut on each boundary: the cases
the mutation run (README, "Tests") found untested, where a control off by one share, one cent or one
comparison would block an order it must let through, or let through one it must stop.

The planner asks the shortcut (`EarlyDenial`) before it runs the chain, and trusts a denial without running
the chain. So at each boundary the shortcut must (a) not deny what the chain approves (one share left to
sell, one share of quota left, a buy at exactly the minimum price, a buy of one share, cash for exactly one
share), and (b) deny, with the chain's reason, what the chain denies one step beyond it. The property test
in test_risk.py checks (a) on random inputs, which rarely land on a boundary; these land on each one.
Each control is also a unit of its own (a custom chain may leave any out), so each is checked alone.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import (
    INSUFFICIENT_BUYING_POWER,
    MAX_POSITION,
    PRICE_BELOW_MINIMUM,
    QTY_OVER_MONTHLY_LIMIT,
    SHORT_NOT_ALLOWED,
    SIZE_BELOW_ONE_SHARE,
    BuyingPower,
    Decision,
    EarlyDenial,
    LongOnly,
    MaxPosition,
    MinimumSize,
    MonthlyShareLimit,
    NoPrice,
    OrderIntent,
    RiskConfig,
    check_order,
    default_controls,
    size_order,
)
from trading_dagster_tests.domain.test_risk import _ctx

SLIP, FEE = SlippageModel(), CommissionModel()
CONFIG = RiskConfig(monthly_share_limit=4, min_price=Decimal(1))
CHAIN = default_controls(CONFIG, SLIP, FEE)
SHORTCUT = EarlyDenial.for_chain(CHAIN, CONFIG, SLIP, FEE)
P = pytest.param


ctx = _ctx  # the book a control sees, as test_risk.py builds it


def buy(qty: int, price: str = "100") -> OrderIntent:
    return OrderIntent("AAPL", "buy", qty, Decimal(price))


def sell(qty: int, price: str = "100") -> OrderIntent:
    return OrderIntent("AAPL", "sell", qty, Decimal(price))


# the cost of one share at 100.00 with the default slippage and commission: see test_risk.py
ONE_SHARE = Decimal("100.06")


@pytest.mark.parametrize(
    ("intent", "context", "approved"),
    [
        P(sell(5), ctx(held=1), 1, id="one share left to sell"),
        P(sell(5), ctx(held=6, pending_sell_qty=5), 1, id="one share not yet being sold"),
        P(buy(1), ctx(), 1, id="a buy of one share"),
        P(buy(5, price="1"), ctx(), 4, id="a buy at exactly the minimum price"),
        P(buy(5), ctx(bought_in_fill_month=3), 1, id="one share of quota left"),
        P(
            buy(5),
            ctx(bought_in_fill_month=2, pending_buy_qty=1),
            1,
            id="one share of quota left after pending",
        ),
        P(buy(5), ctx(available_cash=ONE_SHARE), 1, id="cash for exactly one share"),
    ],
)
def test_on_the_boundary_the_shortcut_leaves_it_to_the_chain_which_approves(intent, context, approved):
    assert SHORTCUT is not None
    assert SHORTCUT.reason(intent, context) is None
    assert check_order(intent, context, CHAIN).qty == approved


@pytest.mark.parametrize(
    ("intent", "context", "reason"),
    [
        P(sell(5), ctx(held=0), SHORT_NOT_ALLOWED, id="nothing held"),
        P(
            sell(5),
            ctx(held=5, pending_sell_qty=5),
            SHORT_NOT_ALLOWED,
            id="everything held already being sold",
        ),
        P(buy(0), ctx(), SIZE_BELOW_ONE_SHARE, id="a buy of no share"),
        P(buy(5, price="0.99"), ctx(), PRICE_BELOW_MINIMUM, id="a cent below the minimum price"),
        P(buy(5), ctx(bought_in_fill_month=4), QTY_OVER_MONTHLY_LIMIT, id="no quota left"),
        P(
            buy(5),
            ctx(bought_in_fill_month=3, pending_buy_qty=1),
            QTY_OVER_MONTHLY_LIMIT,
            id="no quota after pending",
        ),
        P(
            buy(5),
            ctx(available_cash=ONE_SHARE - Decimal("0.01")),
            INSUFFICIENT_BUYING_POWER,
            id="a cent short",
        ),
    ],
)
def test_one_step_beyond_it_the_shortcut_denies_with_the_chains_reason(intent, context, reason):
    assert SHORTCUT is not None
    assert SHORTCUT.reason(intent, context) == reason
    assert check_order(intent, context, CHAIN) == Decision(0, reason)


# ------------------------------------------------------------------------------------------- the chain


def test_a_sell_clipped_to_what_is_held_says_why():
    assert check_order(sell(5), ctx(held=3), CHAIN) == Decision(3, SHORT_NOT_ALLOWED)
    assert check_order(sell(5), ctx(held=9, pending_sell_qty=6), CHAIN) == Decision(3, SHORT_NOT_ALLOWED)


def test_a_position_above_the_max_position_limit_can_still_be_sold():
    """200 shares at 100 are 20% of equity, twice the 10% limit: the limit stops buys, never the sell."""
    assert check_order(sell(200), ctx(held=200), CHAIN) == Decision(200)


def test_each_control_sees_the_quantity_the_one_before_it_clipped():
    """The quota clips 10 to 4; cash would cover 6: buying power sees 4, so 4 it is, for the quota's reason
    (had it seen the 10 asked for, it would have clipped to 6, above the quota)."""
    six_shares = Decimal("600.36")  # 6 x 100.05 + 0.06 commission: see ONE_SHARE
    assert BuyingPower(SLIP, FEE).affordable(six_shares, Decimal(100), 10) == 6
    assert check_order(buy(10), ctx(available_cash=six_shares), CHAIN) == Decision(4, QTY_OVER_MONTHLY_LIMIT)


def test_a_chain_without_minimum_size_still_denies_a_buy_of_no_share():
    assert check_order(buy(0), ctx(), (NoPrice(), LongOnly())) == Decision(0, SIZE_BELOW_ONE_SHARE)
    assert check_order(buy(1), ctx(), (NoPrice(), LongOnly())) == Decision(1)


# --------------------------------------------------------------------------------- each control alone


def test_minimum_size_alone():
    assert MinimumSize().check(buy(0), ctx()) == Decision(0, SIZE_BELOW_ONE_SHARE)
    assert MinimumSize().check(buy(1), ctx()) == Decision(1)


@pytest.mark.parametrize(
    "control",
    [MonthlyShareLimit(0), MaxPosition(Decimal("0.01")), BuyingPower(SLIP, FEE)],
    ids=["monthly share limit", "max position", "buying power"],
)
def test_a_buy_side_control_passes_a_sell_unchanged(control):
    """Even one that would deny any buy here (no quota, no room, no cash)."""
    assert control.check(sell(7), ctx(held=7, available_cash=Decimal(0))) == Decision(7)


def test_max_position_alone():
    ten_pct = MaxPosition(Decimal(10))
    # room 10,000 - 97 x 100 = 300: three more shares, not four
    assert ten_pct.check(buy(5), ctx(held=97)) == Decision(3, MAX_POSITION)
    assert ten_pct.check(buy(5), ctx(held=100)) == Decision(0, MAX_POSITION)  # no room left
    assert ten_pct.check(OrderIntent("AAPL", "buy", 5, None), ctx(held=500)) == Decision(5)  # NoPrice's call
    # 10% of 1,000 less 198 x 0.50: a dollar of room buys two shares at 50 cents (with the minimum price off)
    assert ten_pct.check(buy(5, price="0.5"), ctx(equity=Decimal(1000), held=198)) == Decision(
        2, MAX_POSITION
    )


# ------------------------------------------------------------------------------ sizing and the config


def test_sizing_at_exactly_the_minimum_price_asks_for_shares():
    """The control lets a buy at exactly min_price through, so sizing must ask for shares there too."""
    assert size_order("buy", Decimal(1), Decimal(100_000), 0, RiskConfig()) == 1000
    assert size_order("buy", Decimal("0.99"), Decimal(100_000), 0, RiskConfig()) == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        P({"notional": 0}, "notional, pct_equity and max_position_pct_equity must be > 0", id="notional 0"),
        P(
            {"pct_equity": 0},
            "notional, pct_equity and max_position_pct_equity must be > 0",
            id="pct_equity 0",
        ),
        P(
            {"max_position_pct_equity": 0},
            "notional, pct_equity and max_position_pct_equity must be > 0",
            id="max position 0",
        ),
        P({"initial_cash": -0.01}, "initial_cash must be >= 0", id="negative cash"),
        P({"monthly_share_limit": -1}, "monthly_share_limit must be >= 0 or None", id="negative quota"),
        P({"min_price": -0.01}, "min_price must be >= 0 or None, got -0.01", id="negative min price"),
        P(
            {"sizing": "kelly"},
            "sizing must be one of 'fixed_notional', 'pct_equity', 'atr', got 'kelly'",
            id="sizing",
        ),
        P({"long_only": False}, "only long_only=True is supported", id="shorts"),
    ],
)
def test_the_config_refuses_each_value_out_of_range_saying_which(kw, message):
    """The settings show this message for a bad [risk] value in trading_dagster.toml."""
    with pytest.raises(ValueError) as err:
        RiskConfig(**kw)
    assert str(err.value) == message


def test_the_config_takes_the_smallest_values_in_range_exactly():
    smallest = RiskConfig(
        notional=0.5,
        pct_equity=0.5,
        max_position_pct_equity=0.5,
        initial_cash=0,
        monthly_share_limit=0,
        min_price=0.1,
    )
    assert (smallest.notional, smallest.pct_equity, smallest.max_position_pct_equity) == (Decimal("0.5"),) * 3
    assert smallest.initial_cash == 0 and smallest.monthly_share_limit == 0
    assert smallest.min_price == Decimal("0.1") and isinstance(
        smallest.min_price, Decimal
    )  # not the float 0.1
