"""The order planner's bulk pass (`domain/bulk_planner.py`) against the frozen per-signal planner it replaced
(`trading_dagster_tests/reference/planner_reference.py`): the same orders frame, row for row and column for
column, on real sample rows across risk configurations, fill models and crafted boundary cases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from trading_dagster.domain import bulk_planner, portfolio
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.risk import EarlyDenial, RiskConfig, default_controls
from trading_dagster.settings import SAMPLE_FILE
from trading_dagster_tests.reference import planner_reference as reference

SLIP, FEE = SlippageModel(), CommissionModel()


@pytest.fixture(scope="module")
def real():
    """Real sample rows: 2009-2012 prices of the sample's 42 symbols, the default strategies' signals of
    2010-2012 (SMA crosses, RSI, dips: tens of thousands of buys and sells), and the NYSE calendar."""
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.indicators import compute_indicators_anchored
    from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

    prices = (
        pl.read_parquet(SAMPLE_FILE)
        .rename({"ticker": "symbol", "date": "session"})
        .filter(pl.col("session").is_between(dt.date(2008, 6, 1), dt.date(2012, 12, 31)))
    )
    calendar = list(nyse_calendar().sessions)
    days = [d for d in calendar if dt.date(2008, 6, 1) <= d <= dt.date(2012, 12, 31)]
    window = [d for d in days if d >= dt.date(2010, 1, 1)]
    indicators = compute_indicators_anchored(prices, days, window[0], window[-1])
    signals = generate_signals(indicators, DEFAULT_STRATEGIES, window[0], window[-1], days)
    return prices, signals, calendar


def both(signals, prices, sessions, risk, slippage=SLIP, commission=FEE, **kw) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = []
    for module in (portfolio, reference):
        start = module.PortfolioState.initial(risk.initial_cash, risk.share_rule)
        out.append(module.plan_orders(signals, prices, start, sessions, risk, slippage, commission, "paper", **kw))
    return out[0], out[1]


def uses_bulk(risk: RiskConfig, slippage=SLIP, commission=FEE) -> bool:
    chain = default_controls(risk, slippage, commission)
    return bulk_planner.applies(risk, EarlyDenial.for_chain(chain, risk, slippage, commission))


CONFIGS = {
    "default": {},
    "small_cash": {"initial_cash": Decimal(4_000)},
    "big_notional": {"notional": Decimal(5_000), "initial_cash": Decimal(50_000)},
    "pct_equity": {"sizing": "pct_equity", "pct_equity": Decimal("3.3")},
    "tight_position": {"max_position_pct_equity": Decimal("1.5"), "initial_cash": Decimal(30_000)},
    "no_quota": {"monthly_share_limit": None, "initial_cash": Decimal(25_000)},
    "quota_1": {"monthly_share_limit": 1},
    "no_adding": {"add_to_positions": False, "monthly_share_limit": None},
    "min_price_off": {"min_price": None},
    "min_price_40": {"min_price": Decimal(40)},
    "exits": {"stop_loss_pct": Decimal(5), "take_profit_pct": Decimal(8), "initial_cash": Decimal(30_000)},
    "size_on_fill": {"size_on": "fill", "monthly_share_limit": None, "initial_cash": Decimal(30_000)},
    # configurations the bulk pass leaves to the per-signal loop: still the reference's orders
    "buying_power_off": {"buying_power": "off"},
    "fractional": {"shares": "fractional", "initial_cash": Decimal(20_000)},
    "session_limits": {"max_orders_per_session": 3, "max_gross_exposure_pct_equity": Decimal(60)},
    "atr_sizing": {"sizing": "atr", "stop_loss_atr": Decimal(2)},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bulk_planner_equals_the_reference_on_real_rows(real, name):
    prices, signals, calendar = real
    risk = RiskConfig(**CONFIGS[name])
    fast, ref = both(signals, prices, calendar, risk)
    assert fast.height == ref.height > 10_000
    assert_frame_equal(fast, ref, check_exact=True)
    reasons = set(ref["reason_code"].drop_nulls().to_list())
    if name in ("default", "small_cash"):
        assert uses_bulk(risk)
        assert {"QTY_OVER_MONTHLY_LIMIT", "SHORT_NOT_ALLOWED"} <= reasons
        assert ref.filter(pl.col("status") == "approved").height > 500
    if name == "small_cash":  # the cash runs out: the bulk pass's main case
        assert ref.filter(pl.col("reason_code") == "INSUFFICIENT_BUYING_POWER").height > 1_000


MODELS = {
    "ibkr_fixed": (SlippageModel(), CommissionModel.preset("ibkr_fixed")),
    "alpaca_free": (SlippageModel(bps=Decimal(0)), CommissionModel.preset("alpaca")),
    "bps_and_cap": (
        SlippageModel(bps=Decimal(25)),
        CommissionModel(per_share=Decimal(0), per_order=Decimal("0.35"), bps=Decimal(8), maximum_pct=Decimal("0.5")),
    ),
    "unrounded": (SlippageModel(round_cents=False), CommissionModel(round_cents=False)),
    "spread": (SlippageModel(spread_fraction=Decimal("0.5")), CommissionModel()),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bulk_planner_equals_the_reference_under_each_fill_model(real, name):
    prices, signals, calendar = real
    slippage, commission = MODELS[name]
    risk = RiskConfig(initial_cash=Decimal(25_000))
    assert uses_bulk(risk, slippage, commission)
    fast, ref = both(signals, prices, calendar, risk, slippage, commission)
    assert_frame_equal(fast, ref, check_exact=True)


def test_bulk_simulate_projects_the_same_fills_book_and_pending_orders(real):
    prices, signals, calendar = real
    risk = RiskConfig(initial_cash=Decimal(30_000), stop_loss_pct=Decimal(6))
    sessions = [d for d in calendar if dt.date(2011, 1, 3) <= d <= dt.date(2011, 12, 30)]
    out = [
        module.simulate(
            signals, prices, module.PortfolioState.initial(risk.initial_cash), sessions, risk, SLIP, FEE, "paper"
        )
        for module in (portfolio, reference)
    ]
    fast, ref = out
    assert_frame_equal(fast.orders_frame, ref.orders_frame, check_exact=True)
    assert len(ref.fills) > 100
    assert fast.fills == ref.fills
    assert fast.expired == ref.expired
    assert fast.pending == ref.pending
    assert fast.exit_levels == ref.exit_levels
    assert (fast.end_state.cash, fast.end_state.realized_pnl) == (ref.end_state.cash, ref.end_state.realized_pnl)
    assert dict(fast.end_state.positions) == dict(ref.end_state.positions)
    assert dict(fast.end_state.monthly_buys) == dict(ref.end_state.monthly_buys)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cash=st.sampled_from([Decimal(3_000), Decimal("12345.67"), Decimal(40_000), Decimal(250_000)]),
    notional=st.sampled_from([Decimal(250), Decimal("999.99"), Decimal(1000), Decimal(4_000)]),
    limit=st.sampled_from([None, 1, 4, 30]),
    max_position=st.sampled_from([None, Decimal(1), Decimal(10), Decimal(100)]),
    min_price=st.sampled_from([None, Decimal(1), Decimal("17.5")]),
    month=st.integers(1, 30),
)
def test_bulk_planner_equals_the_reference_for_any_limits(real, cash, notional, limit, max_position, min_price, month):
    prices, signals, calendar = real
    risk = RiskConfig(
        initial_cash=cash,
        notional=notional,
        monthly_share_limit=limit,
        max_position_pct_equity=max_position,
        min_price=min_price,
    )
    first = dt.date(2010 + (month - 1) // 12, (month - 1) % 12 + 1, 1)
    window = signals.filter(pl.col("session").is_between(first, first + dt.timedelta(days=120)))
    fast, ref = both(window, prices, calendar, risk)
    assert_frame_equal(fast, ref, check_exact=True)


# -- crafted boundaries -----------------------------------------------------------------------------------

DAY = dt.date(2017, 3, 1)
NEXT = dt.date(2017, 3, 2)


def _frames(closes: dict[str, float], rows: list[tuple[str, str, str, float | None]]):
    prices = pl.DataFrame(
        [(s, d, c, c, c, c, 1000) for s, c in closes.items() for d in (DAY, NEXT)],
        schema={"symbol": pl.String, "session": pl.Date, "open": pl.Float64, "high": pl.Float64,
                "low": pl.Float64, "close": pl.Float64, "volume": pl.Int64},
        orient="row",
    )
    signals = pl.DataFrame(
        [(DAY, sym, strat, side, strength, "t") for sym, strat, side, strength in rows],
        schema={"session": pl.Date, "symbol": pl.String, "strategy": pl.String, "side": pl.String,
                "strength": pl.Float64, "reason": pl.String},
        orient="row",
    )
    return prices, signals


def test_bulk_planner_on_exact_boundaries():
    # a close of exactly the minimum price, a notional that buys a whole number of shares exactly, a price
    # a hair above the notional, one share costing exactly the cash left, two strategies buying one symbol
    closes = {"MIN": 1.0, "EXACT": 250.0, "OVER": 1000.0000000001, "ALL": 99.5, "TWICE": 10.0, "NIL": 0.0}
    rows = [
        ("MIN", "a", "buy", 1.0),
        ("EXACT", "a", "buy", 0.9),
        ("OVER", "a", "buy", 0.8),
        ("TWICE", "a", "buy", 0.7),
        ("TWICE", "b", "buy", None),
        ("NIL", "a", "buy", 0.6),
        ("GONE", "a", "buy", 0.5),
        ("ALL", "b", "buy", -0.0),
        ("ALL", "c", "buy", 0.0),
        ("TWICE", "a", "sell", 1.0),
    ]
    prices, signals = _frames(closes, rows)
    # cash for MIN (1 x 1.01 + 0.01), EXACT (4 x 250.13 + 0.02), TWICE (4 x 10.01 + 0.02), then one ALL share
    one_all = Decimal("99.55") + Decimal("0.01")
    cash = Decimal(4) * Decimal("1.01") + Decimal("0.02") + Decimal(4) * Decimal("250.13") + Decimal("0.02")
    cash += Decimal(4) * Decimal("10.01") + Decimal("0.02") + one_all
    for extra in (Decimal(0), Decimal("-0.01"), Decimal("0.01")):
        risk = RiskConfig(initial_cash=cash + extra, max_position_pct_equity=Decimal(100))
        assert uses_bulk(risk)
        fast, ref = both(signals, prices, [DAY, NEXT], risk, next_session=NEXT)
        assert_frame_equal(fast, ref, check_exact=True)
        assert ref.filter(pl.col("symbol") == "EXACT")["qty"].item() == 4
    assert set(ref["reason_code"].drop_nulls()) >= {"NO_PRICE", "SIZE_BELOW_ONE_SHARE", "SHORT_NOT_ALLOWED"}
