"""`equity_matches_fills`: the equity frame checked against cash recomputed from the starting cash and the
window's fills, and against market value recomputed from the positions (qty x close), not against itself.

The good frames are real: the sample's 2017 window planned, filled and marked to market (conftest.py),
with buys, sells and commissions. Each bad frame changes one thing; the frame-against-itself identity
(`equity_identity`) still passes on those that keep equity = cash + market_value, which is the point.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.checks.rules import equity_identity, equity_matches_fills
from trading_dagster_tests.checks.conftest import START_CASH
from trading_dagster_tests.checks.outcomes import assert_fails, assert_passes, conditions, with_values

CASH = "cash_not_from_fills"
MV = "market_value_not_positions"
EQ = "equity_not_cash_plus_positions"
POS = "position_value_not_qty_times_close"
WHAT = "equity that the fills and positions do not account for"


def check(stages, *, executions=None, positions=None, equity=None, start_cash=START_CASH, **kwargs):
    return equity_matches_fills(
        stages.equity if equity is None else equity,
        stages.positions if positions is None else positions,
        stages.executions if executions is None else executions,
        start_cash,
        **kwargs,
    )


def from_(stages, session: dt.date) -> tuple:
    return tuple(s for s in stages.sessions if s >= session)


@pytest.fixture(scope="module")
def buy(stages) -> dict:
    """A real buy fill (4 shares, commission 0.02) in the middle of the window."""
    fills = stages.executions.filter((pl.col("event") == "filled") & (pl.col("side") == "buy"))
    return fills.filter(pl.col("session") > stages.sessions[20]).row(0, named=True)


@pytest.fixture(scope="module")
def sell(stages) -> dict:
    fills = stages.executions.filter((pl.col("event") == "filled") & (pl.col("side") == "sell"))
    return fills.filter(pl.col("session") > stages.sessions[20]).row(0, named=True)


def fill_row(fill: dict) -> pl.Expr:
    return (pl.col("event") == "filled") & (pl.col("client_order_id") == fill["client_order_id"])


def test_the_real_book_passes(stages):
    ex = stages.executions.filter(pl.col("event") == "filled")
    assert set(ex["side"]) == {"buy", "sell"} and (ex["commission"] > 0).all()
    assert stages.positions.height > 0 and stages.equity["market_value"].max() > 0
    outcome = check(stages)
    assert_passes(outcome, rows=stages.equity.height + stages.positions.height, what=WHAT)
    assert_passes(check(stages, start_cash=float(START_CASH)))


def test_a_window_from_the_middle_of_the_book_passes(stages):
    """As a one-session (or later) run sees it: start cash = the book's cash at the previous close."""
    for i in (1, 57, len(stages.sessions) - 1):
        day = stages.sessions[i]
        start = stages.equity.filter(pl.col("session") == stages.sessions[i - 1])["cash"][0]
        later = pl.col("session") >= day
        window = dict(
            executions=stages.executions.filter(later),
            positions=stages.positions.filter(later),
            equity=stages.equity.filter(later),
        )
        assert_passes(check(stages, start_cash=start, **window))
        assert_fails(
            check(stages, start_cash=start + 1, **window), from_(stages, day), rows=len(from_(stages, day))
        )


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_fill_missing_from_the_executions_fails_every_session_from_it_on(stages, buy, sell, side):
    fill = buy if side == "buy" else sell
    outcome = check(stages, executions=stages.executions.filter(~fill_row(fill)))
    sessions = from_(stages, fill["session"])
    assert_fails(outcome, sessions, {CASH: len(sessions), EQ: len(sessions)}, rows=len(sessions))
    n = len(sessions)
    assert outcome.description == f"{n} rows with {WHAT} ({CASH}: {n}, {EQ}: {n})"
    assert equity_identity(stages.equity).passed  # the frame agrees with itself all along


@pytest.mark.parametrize(
    "values",
    [
        {"price": pl.col("price") + 0.01},  # 4 shares: 4 cents
        {"qty": pl.col("qty") + 1},
        {"commission": 0.0},  # 2 cents that never left the account
        {"commission": pl.col("commission") + 0.02},
        {"side": pl.when(pl.col("side") == "buy").then(pl.lit("sell")).otherwise(pl.lit("buy"))},
    ],
    ids=["price", "qty", "no commission", "double commission", "side"],
)
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_fill_that_does_not_match_the_cash_fails(stages, buy, sell, side, values):
    fill = buy if side == "buy" else sell
    outcome = check(stages, executions=with_values(stages.executions, fill_row(fill), **values))
    sessions = from_(stages, fill["session"])
    assert_fails(outcome, sessions, {CASH: len(sessions), EQ: len(sessions)}, rows=len(sessions))


@pytest.mark.parametrize("column", ["price", "qty", "commission", "side"])
def test_a_fill_that_cannot_be_accounted_for_fails(stages, buy, column):
    outcome = check(stages, executions=with_values(stages.executions, fill_row(buy), **{column: None}))
    sessions = from_(stages, buy["session"])
    assert_fails(outcome, sessions, rows=len(sessions))
    assert conditions(outcome)[CASH] == len(sessions)


def test_a_fill_without_a_session_fails_every_session(stages, buy):
    outcome = check(stages, executions=with_values(stages.executions, fill_row(buy), session=None))
    assert not outcome.passed and conditions(outcome)[CASH] == len(stages.sessions)
    assert outcome.failed_sessions == tuple(stages.sessions)


def test_a_wrong_start_cash_fails_every_session(stages):
    outcome = check(stages, start_cash=START_CASH - Decimal("0.02"))
    n = len(stages.sessions)
    assert_fails(outcome, tuple(stages.sessions), {CASH: n, EQ: n}, rows=n)
    assert_passes(check(stages, start_cash=START_CASH - Decimal("0.009")))  # within the cent


def test_cash_and_equity_moved_together_pass_the_identity_but_not_the_fills(stages):
    day = stages.sessions[30]
    moved = with_values(
        stages.equity, pl.col("session") == day, cash=pl.col("cash") + 100, equity=pl.col("equity") + 100
    )
    assert equity_identity(moved).passed
    assert_fails(check(stages, equity=moved), (day,), {CASH: 1, EQ: 1})
    only_cash = with_values(stages.equity, pl.col("session") == day, cash=pl.col("cash") + 0.02)
    assert_fails(check(stages, equity=only_cash), (day,), {CASH: 1})


def test_market_value_that_the_positions_do_not_hold_fails(stages):
    day = stages.sessions[30]
    inflated = with_values(
        stages.equity,
        pl.col("session") == day,
        market_value=pl.col("market_value") + 50,
        equity=pl.col("equity") + 50,
    )
    assert equity_identity(inflated).passed
    assert_fails(check(stages, equity=inflated), (day,), {MV: 1, EQ: 1})


@pytest.mark.parametrize(
    ("values", "failed", "rows"),
    [
        # the equity row (its market value) and the position row (its own value) both fail
        ({"close": pl.col("close") + 1.0}, {MV: 1, EQ: 1, POS: 1}, 2),
        ({"qty": pl.col("qty") + 1}, {MV: 1, EQ: 1, POS: 1}, 2),
        ({"market_value": pl.col("market_value") + 1.0}, {POS: 1}, 1),  # the row's own value only
    ],
    ids=["close", "qty", "market_value"],
)
def test_a_position_that_does_not_add_up_fails(stages, values, failed, rows):
    day = stages.sessions[30]
    held = stages.positions.filter(pl.col("session") == day).row(0, named=True)
    where = (pl.col("session") == day) & (pl.col("symbol") == held["symbol"])
    outcome = check(stages, positions=with_values(stages.positions, where, **values))
    assert_fails(outcome, (day,), failed, rows=rows)
    assert outcome.metadata["symbols"] == held["symbol"]


def test_a_position_missing_from_the_positions_fails(stages):
    day = stages.sessions[30]
    held = stages.positions.filter(pl.col("session") == day).row(0, named=True)
    dropped = stages.positions.filter(~((pl.col("session") == day) & (pl.col("symbol") == held["symbol"])))
    assert_fails(check(stages, positions=dropped), (day,), {MV: 1, EQ: 1})


def test_cash_in_lieu_is_an_extra_cash_movement(stages):
    """A split leaves a fraction of a share, paid in cash: the book's cash rises by it from that session
    on, with no fill. It fails as unexplained cash until the movement is passed."""
    day = stages.sessions[50]
    after = pl.col("session") >= day
    book = stages.equity.with_columns(
        cash=pl.when(after).then(pl.col("cash") + 12.34).otherwise(pl.col("cash")),
        equity=pl.when(after).then(pl.col("equity") + 12.34).otherwise(pl.col("equity")),
    )
    sessions = from_(stages, day)
    assert_fails(
        check(stages, equity=book), sessions, {CASH: len(sessions), EQ: len(sessions)}, rows=len(sessions)
    )
    in_lieu = pl.DataFrame({"session": [day], "amount": [12.34]})
    assert_passes(check(stages, equity=book, extra_cash_movements=in_lieu))
    whole_dollars = pl.DataFrame({"session": [day, day], "amount": [12, 0]})  # integer amounts
    assert_fails(
        check(stages, equity=book, extra_cash_movements=whole_dollars), sessions, rows=len(sessions)
    )  # 0.34 short
    # several movements on one session add up; one out of the account (negative) takes cash away
    in_two = pl.DataFrame({"session": [day, day], "amount": [10.0, 2.34]})
    assert_passes(check(stages, equity=book, extra_cash_movements=in_two))
    and_out = pl.DataFrame({"session": [day, day, day], "amount": [10.0, 2.34, -1.0]})
    assert_fails(check(stages, equity=book, extra_cash_movements=and_out), sessions, rows=len(sessions))
    # movements outside the window are in the start cash (before) or the next window's (after)
    outside = pl.DataFrame(
        {
            "session": [
                stages.sessions[0] - dt.timedelta(days=3),
                day,
                stages.sessions[-1] + dt.timedelta(days=3),
            ],
            "amount": [5.0, 12.34, 7.0],
        }
    )
    assert_passes(check(stages, equity=book, extra_cash_movements=outside))
    assert_passes(check(stages, extra_cash_movements=in_lieu.head(0)))


def test_fills_outside_the_window_are_not_counted(stages, buy):
    """Fills before the first session are in the start cash; after the last, in the next window."""
    day = buy["session"]
    before = pl.col("session") < day
    window = dict(positions=stages.positions.filter(~before), equity=stages.equity.filter(~before))
    start = stages.equity.filter(pl.col("session") < day)["cash"][-1]
    assert_passes(check(stages, start_cash=start, **window))  # executions still hold the earlier fills
    upto = pl.col("session") < day
    assert_passes(
        check(stages, positions=stages.positions.filter(upto), equity=stages.equity.filter(upto))
    )  # executions still hold the later fills
    # accepted and expired events move no cash
    expired = pl.DataFrame(
        [{**buy, "event": "expired", "price": None, "commission": 0.0}], schema=stages.executions.schema
    )
    assert_passes(check(stages, executions=pl.concat([stages.executions, expired])))


def test_an_empty_window_passes(stages):
    empty = check(stages, equity=stages.equity.head(0), positions=stages.positions.head(0))
    assert_passes(empty, rows=0, what=WHAT)
    assert_passes(check(stages, equity=pl.DataFrame(), positions=pl.DataFrame()), rows=0, what=WHAT)


@pytest.mark.parametrize("column", ["cash", "market_value", "equity"])
def test_a_missing_value_in_the_equity_frame_fails(stages, column):
    day = stages.sessions[30]
    outcome = check(stages, equity=with_values(stages.equity, pl.col("session") == day, **{column: None}))
    assert_fails(outcome, (day,))


@pytest.mark.parametrize("column", ["qty", "close", "market_value"])
def test_a_missing_value_in_a_position_fails(stages, column):
    day = stages.sessions[30]
    held = stages.positions.filter(pl.col("session") == day).row(0, named=True)
    where = (pl.col("session") == day) & (pl.col("symbol") == held["symbol"])
    outcome = check(stages, positions=with_values(stages.positions, where, **{column: None}))
    assert not outcome.passed and outcome.failed_sessions == (day,)
    assert conditions(outcome)[POS] == 1


def test_a_difference_of_exactly_the_tolerance_passes(stages):
    """A binary-exact tolerance, so that 'exactly' means exactly."""
    day = stages.sessions[30]
    half = with_values(
        stages.equity, pl.col("session") == day, cash=pl.col("cash") + 0.5, equity=pl.col("equity") + 0.5
    )
    assert_passes(check(stages, equity=half, tolerance=0.5))
    assert_fails(check(stages, equity=half, tolerance=0.25), (day,), {CASH: 1, EQ: 1})
