"""The share basis of the executions rules across splits (`rules._split_basis`), on the cases the mutation
run found untested: two splits of one symbol (their product, taken in session order whatever the row
order), a split of another symbol (never this one's), and a reverse split (the order keeps the larger of
its two bases). Split rows as the broker writes them: price = the ratio, new shares per old."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.checks.rules import executions_match_orders, fills_within_monthly_quota
from trading_dagster.domain.orders import EXECUTION_SCHEMA, ORDER_SCHEMA

D1, D2, D3, D4 = dt.date(2014, 6, 2), dt.date(2014, 6, 3), dt.date(2014, 6, 4), dt.date(2014, 6, 5)


def events(*rows: tuple) -> pl.DataFrame:
    """(session, id, symbol, side, event, order_session, qty, price)"""
    return pl.DataFrame([(*r, 0.0) for r in rows], schema=EXECUTION_SCHEMA, orient="row")


def split(session: dt.date, symbol: str, ratio: float) -> tuple:
    return (session, f"split-{session:%Y%m%d}-{symbol}", symbol, None, "split", session, 0, ratio)


def buy(session: dt.date, symbol: str, qty: int) -> tuple:
    return (session, f"b-{session}-{symbol}", symbol, "buy", "filled", session, qty, 10.0)


def orders(*rows: tuple) -> pl.DataFrame:
    """Approved orders: (session, symbol, side, qty, id)."""
    return pl.DataFrame(
        [(d, s, "t", side, q, q, 10.0, "approved", None, cid, None) for d, s, side, q, cid in rows],
        schema=ORDER_SCHEMA,
        orient="row",
    )


def test_two_splits_of_a_symbol_multiply_in_session_order_whatever_the_row_order():
    """1 share, a 2:1 split, 1 share, a 3:1 split, 1 share: 6 + 3 + 1 = 10 post-split shares in the month."""
    rows = [buy(D1, "KO", 1), split(D2, "KO", 2.0), buy(D2, "KO", 1), split(D3, "KO", 3.0), buy(D3, "KO", 1)]
    in_order = events(*rows)
    backwards = events(*reversed(rows))
    for frame in (in_order, backwards):
        assert fills_within_monthly_quota(frame, 10).passed
        outcome = fills_within_monthly_quota(frame, 9)
        assert not outcome.passed and outcome.failed_sessions == (D3,)


def test_a_split_of_another_symbol_does_not_rescale_this_one():
    frame = events(buy(D1, "KO", 3), split(D2, "PEP", 10.0), buy(D3, "KO", 1))
    assert fills_within_monthly_quota(frame, 4).passed  # 3 + 1 KO shares; PEP's split is PEP's
    assert not fills_within_monthly_quota(frame, 3).passed


def test_buys_before_a_reverse_split_count_in_post_split_shares():
    """4 shares before a 1:10 reverse split are 0.4 after it: 4 more make 4.4, over a quota of 4 (counting
    the new ones in the old basis, 0.44, would miss it)."""
    frame = events(buy(D1, "XYZ", 4), split(D2, "XYZ", 0.1), buy(D3, "XYZ", 4))
    outcome = fills_within_monthly_quota(frame, 4)
    assert not outcome.passed and outcome.failed_sessions == (D3,)
    assert fills_within_monthly_quota(frame, 5).passed


def test_a_sell_across_a_split_after_an_earlier_one_is_held_to_the_split_between_order_and_fill():
    """A 2:1 split before the order and a 7:1 split between the order and its fill: 100 shares accepted
    are 700 at the fill (the earlier split is already in the order's basis), not 1,400."""
    approved = orders((D2, "AAPL", "sell", 100, "s"))
    base = [
        split(D1, "AAPL", 2.0),
        (D2, "s", "AAPL", "sell", "accepted", D2, 100, None),
        split(D3, "AAPL", 7.0),
    ]
    assert executions_match_orders(
        events(*base, (D3, "s", "AAPL", "sell", "filled", D2, 700, 87.0)), approved
    ).passed
    over = executions_match_orders(
        events(*base, (D3, "s", "AAPL", "sell", "filled", D2, 701, 87.0)), approved
    )
    assert not over.passed and over.failed_sessions == (D3,)


def test_an_order_expired_by_a_reverse_split_is_expired_in_its_own_shares():
    """A 1:10 reverse split between a sell's order session and its open: the order, scaled down to 10 new
    shares or expired in its 100 old ones, is within what was accepted either way."""
    approved = orders((D2, "XYZ", "sell", 100, "s"))
    accepted = (D2, "s", "XYZ", "sell", "accepted", D2, 100, None)
    for worked in (
        (D3, "s", "XYZ", "sell", "expired", D2, 100, None),
        (D3, "s", "XYZ", "sell", "filled", D2, 10, 50.0),
    ):
        assert executions_match_orders(events(accepted, split(D3, "XYZ", 0.1), worked), approved).passed
    too_many = (D3, "s", "XYZ", "sell", "expired", D2, 101, None)
    assert not executions_match_orders(events(accepted, split(D3, "XYZ", 0.1), too_many), approved).passed
