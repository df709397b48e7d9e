"""The complete risk engine: the [risk] parser, the session limits, ATR sizing and the daily loss limit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.portfolio import PortfolioState, simulate
from trading_dagster.domain.risk import (
    DAILY_LOSS_LIMIT,
    MAX_GROSS_EXPOSURE,
    MAX_NOTIONAL_PER_SESSION,
    MAX_ORDERS_PER_SESSION,
    NO_ATR,
    REASON_CODES,
    Decision,
    EarlyDenial,
    OrderIntent,
    RiskConfig,
    RiskContext,
    check_order,
    default_controls,
    risk_config_from_mapping,
    size_order,
)
from trading_dagster_tests.domain.test_exits import _random_signals, _random_walk

SLIP, FEE = SlippageModel(), CommissionModel()


# ------------------------------------------------------------------------------------------------ parser


def test_an_empty_section_is_the_default_config():
    assert risk_config_from_mapping({}, initial_cash=100_000) == RiskConfig()
    assert risk_config_from_mapping({}, initial_cash=5_000.5).initial_cash == Decimal("5000.5")


def test_every_key_parses_and_off_is_none():
    section = {
        "sizing": "atr",
        "notional": 500,
        "pct_equity": 1.5,
        "risk_pct_equity": 0.25,
        "atr_multiple": 3,
        "atr_period": 10,
        "max_position_pct_equity": "off",
        "max_gross_exposure_pct_equity": 80,
        "max_orders_per_session": 25,
        "max_notional_per_session": 50_000,
        "max_daily_loss_pct_equity": 2.5,
        "max_daily_loss_usd": None,
        "long_only": True,
        "monthly_share_limit": "OFF",
        "min_price": 0,
        "stop_loss_atr": 2,
        "take_profit_pct": 15.0,
    }
    cfg = risk_config_from_mapping(section, initial_cash=100_000)
    assert cfg.sizing == "atr" and cfg.atr_period == 10 and cfg.risk_pct_equity == Decimal("0.25")
    assert (
        cfg.max_position_pct_equity is None
        and cfg.monthly_share_limit is None
        and cfg.max_daily_loss_usd is None
    )
    assert cfg.pct_equity == Decimal("1.5") and cfg.max_gross_exposure_pct_equity == Decimal(80)
    assert cfg.stop_loss_atr == Decimal(2) and cfg.take_profit_pct == Decimal(15)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"notionl": 5}, "unknown [risk] key(s) notionl; allowed: add_to_positions, atr_multiple, atr_period"),
        ({"sizing": "kelly"}, "sizing must be one of"),
        ({"notional": "1000"}, "notional must be a number, got '1000'"),
        ({"notional": True}, "notional must be a number"),
        ({"atr_period": 14.0}, "atr_period must be an integer"),
        ({"atr_period": 0}, "atr_period must be in 1..50"),
        ({"monthly_share_limit": 2.5}, "monthly_share_limit must be an integer"),
        ({"long_only": "yes"}, "long_only must be true or false"),
        ({"long_only": False}, "only long_only=True is supported"),
        ({"notional": "off"}, "notional cannot be off"),
        ({"max_gross_exposure_pct_equity": 150}, "max_gross_exposure_pct_equity must be in (0, 100]"),
        ({"max_daily_loss_usd": 0}, "max_daily_loss_usd must be > 0"),
        ({"max_orders_per_session": -1}, "max_orders_per_session must be >= 0"),
        ({"stop_loss_pct": 100}, "stop_loss_pct must be in (0, 100)"),
        ({"stop_loss_pct": 5, "stop_loss_atr": 2}, "set at most one of stop_loss_pct and stop_loss_atr"),
        ({"take_profit_pct": float("nan")}, "take_profit_pct"),
    ],
)
def test_bad_sections_name_the_key(section, message):
    with pytest.raises(ValueError) as err:
        risk_config_from_mapping(section, initial_cash=100_000)
    assert message in str(err.value)


# ------------------------------------------------------------------------------------------ the controls


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


def _run(intent, ctx, **config) -> Decision:
    return check_order(
        intent, ctx, default_controls(RiskConfig(monthly_share_limit=None, **config), SLIP, FEE)
    )


BUY = OrderIntent("AAA", "buy", 100, Decimal(100))
SELL = OrderIntent("AAA", "sell", 50, Decimal(100))


def test_each_new_limit_clips_or_denies_with_its_code():
    assert _run(BUY, _ctx(market_value=Decimal(75_000)), max_gross_exposure_pct_equity=80) == Decision(
        50, MAX_GROSS_EXPOSURE
    )
    assert _run(
        BUY,
        _ctx(market_value=Decimal(70_000), pending_buy_notional=Decimal(10_000)),
        max_gross_exposure_pct_equity=80,
    ) == Decision(0, MAX_GROSS_EXPOSURE)
    assert _run(BUY, _ctx(session_orders=3), max_orders_per_session=3) == Decision(0, MAX_ORDERS_PER_SESSION)
    assert _run(SELL, _ctx(held=50, session_orders=3), max_orders_per_session=3) == Decision(
        0, MAX_ORDERS_PER_SESSION
    )
    assert _run(BUY, _ctx(session_orders=2), max_orders_per_session=3) == Decision(100)
    assert _run(BUY, _ctx(session_notional=Decimal(7_000)), max_notional_per_session=10_000) == Decision(
        30, MAX_NOTIONAL_PER_SESSION
    )
    assert _run(
        SELL, _ctx(held=50, session_notional=Decimal(8_000)), max_notional_per_session=10_000
    ) == Decision(20, MAX_NOTIONAL_PER_SESSION)
    assert _run(BUY, _ctx(halted=True), max_daily_loss_usd=1) == Decision(0, DAILY_LOSS_LIMIT)
    assert _run(SELL, _ctx(held=50, halted=True), max_daily_loss_usd=1) == Decision(50)
    assert _run(BUY, _ctx(), sizing="atr") == Decision(0, NO_ATR)
    assert _run(BUY, _ctx(), stop_loss_atr=2) == Decision(0, NO_ATR)
    assert _run(BUY, _ctx(atr=Decimal(2), held=10), sizing="atr") == Decision(
        90, "MAX_POSITION"
    )  # 10 % of equity


def test_max_position_off_is_none_and_the_shortcut_only_serves_the_original_chain():
    assert _run(BUY, _ctx(held=95), max_position_pct_equity=None) == Decision(100)
    for config in (
        RiskConfig(max_position_pct_equity=None),
        RiskConfig(max_orders_per_session=5),
        RiskConfig(sizing="atr"),
        RiskConfig(max_daily_loss_usd=100),
    ):
        assert EarlyDenial.for_chain(default_controls(config, SLIP, FEE), config, SLIP, FEE) is None
    # exits with percent levels add no control: the shortcut stays
    config = RiskConfig(stop_loss_pct=5)
    assert EarlyDenial.for_chain(default_controls(config, SLIP, FEE), config, SLIP, FEE) is not None


def test_atr_sizing_risks_the_configured_share_of_equity_per_atr_multiple():
    cfg = RiskConfig(sizing="atr", risk_pct_equity=Decimal(1), atr_multiple=Decimal(2))
    # 100,000 x 1 % / (2 x 1.25) = 400 shares
    assert size_order("buy", Decimal(50), Decimal(100_000), 0, cfg, Decimal("1.25")) == 400
    assert size_order("buy", Decimal(50), Decimal(100_000), 0, cfg, None) == 0
    assert size_order("sell", Decimal(50), Decimal(100_000), 7, cfg, None) == 7


def test_daily_loss_limit_takes_the_smaller_of_percent_and_usd():
    cfg = RiskConfig(max_daily_loss_pct_equity=Decimal(2), max_daily_loss_usd=Decimal(1_500))
    assert cfg.daily_loss_limit(Decimal(100_000)) == Decimal(1_500)
    assert cfg.daily_loss_limit(Decimal(50_000)) == Decimal(1_000)
    assert RiskConfig().daily_loss_limit(Decimal(50_000)) is None


# ---------------------------------------------------------------------------------- planner properties

WINDOW = nyse_calendar().between(dt.date(2016, 3, 1), dt.date(2016, 9, 30))
PRICES = {seed: _random_walk(["AAA", "BBB", "CCC", "DDD", "EEE"], WINDOW, seed=seed) for seed in range(3)}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2),
    gross=st.one_of(st.none(), st.integers(5, 100)),
    orders=st.one_of(st.none(), st.integers(0, 4)),
    notional=st.one_of(st.none(), st.integers(100, 20_000)),
    position=st.one_of(st.none(), st.integers(1, 100)),
    sizing=st.sampled_from(["fixed_notional", "pct_equity", "atr"]),
)
def test_the_planner_never_exceeds_a_limit_and_every_denial_has_a_known_code(
    seed, gross, orders, notional, position, sizing
):
    risk = RiskConfig(
        sizing=sizing,
        notional=Decimal(3_000),
        pct_equity=Decimal(8),
        risk_pct_equity=Decimal(1),
        atr_period=5,
        max_gross_exposure_pct_equity=gross,
        max_orders_per_session=orders,
        max_notional_per_session=notional,
        max_position_pct_equity=position,
        monthly_share_limit=None,
        initial_cash=Decimal(50_000),
    )
    prices = PRICES[seed]
    signals = _random_signals(prices, WINDOW, seed=seed + 7, p_buy=0.5, p_sell=0.1)
    proj = simulate(
        signals, prices, PortfolioState.initial(risk.initial_cash), WINDOW, risk, SLIP, FEE, "paper"
    )
    frame = proj.orders_frame
    denied = frame.filter(pl.col("status") == "denied")
    assert denied["reason_code"].null_count() == 0 and set(denied["reason_code"]) <= set(REASON_CODES)
    approved = frame.filter(pl.col("status") == "approved")
    assert set(approved["reason_code"].drop_nulls()) <= set(REASON_CODES)
    assert (approved["qty"] <= approved["requested_qty"]).all()
    # replay the book session by session and check each session's orders against it
    closes = {(s, d): c for s, d, c in prices.select("symbol", "session", "close").iter_rows()}
    fills_by_day: dict[dt.date, list] = {}
    for f in proj.fills:
        fills_by_day.setdefault(f.session, []).append(f)
    state, last = PortfolioState.initial(risk.initial_cash), {}
    by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()}
    for day in WINDOW:
        state = state.apply_fills(fills_by_day.get(day, []))
        last.update({s: Decimal(str(c)) for (s, d), c in closes.items() if d == day})
        todays = by_session.get(day)
        if todays is None:
            continue
        equity = state.cash + sum(
            (p.qty * last.get(s, p.avg_cost) for s, p in state.positions.items()), Decimal(0)
        )
        mv = equity - state.cash
        value = [Decimal(str(r)) * q for r, q in zip(todays["ref_price"], todays["qty"], strict=True)]
        buys = [v for v, side in zip(value, todays["side"], strict=True) if side == "buy"]
        if orders is not None:
            assert todays.height <= orders
        if notional is not None:
            assert sum(value, Decimal(0)) <= notional
        if gross is not None:
            assert mv + sum(buys, Decimal(0)) <= equity * gross / 100 or not buys
        if position is not None:
            for sym, ref, side in todays.select("symbol", "ref_price", "side").iter_rows():
                if side == "buy":
                    pending = todays.filter((pl.col("symbol") == sym) & (pl.col("side") == "buy"))[
                        "qty"
                    ].sum()
                    assert (state.qty(sym) + pending) * Decimal(str(ref)) <= equity * position / 100
    assert np.isfinite(float(proj.end_state.cash)) and proj.end_state.cash >= 0
