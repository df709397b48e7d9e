"""The executions rules across a split (a `split` row of the broker's events: price = the ratio): a sell accepted
in old shares and filled in new ones, and the month's quota counted in post-split shares, as the book does
(`portfolio.apply_book_events`). Each case also fails without the split row: the rules read it."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.checks.rules import executions_match_orders, fills_within_monthly_quota
from trading_dagster.domain.orders import EXECUTION_SCHEMA, ORDER_SCHEMA

D0, D1, D2, D3 = dt.date(2014, 6, 5), dt.date(2014, 6, 6), dt.date(2014, 6, 9), dt.date(2014, 6, 10)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (session, id, symbol, side, event, order_session, qty, price)."""
    return pl.DataFrame([(*r, 0.0) for r in rows], schema=EXECUTION_SCHEMA, orient="row")


def _orders(rows: list[tuple]) -> pl.DataFrame:
    """Approved orders: (session, symbol, side, qty, id)."""
    return pl.DataFrame(
        [(d, s, "t", side, q, q, 10.0, "approved", None, cid, None) for d, s, side, q, cid in rows], schema=ORDER_SCHEMA, orient="row"
    )


SPLIT = (D2, "split-20140609-AAPL", "AAPL", None, "split", D2, 700, 7.0)


def test_a_sell_accepted_before_a_split_and_filled_after_it_in_new_shares_matches():
    orders = _orders([(D1, "AAPL", "sell", 100, "s")])
    events = _events(
        [(D1, "s", "AAPL", "sell", "accepted", D1, 100, None), SPLIT, (D2, "s", "AAPL", "sell", "filled", D1, 700, 87.0)]
    )
    assert executions_match_orders(events, orders).passed
    assert not executions_match_orders(events.filter(pl.col("event") != "split"), orders).passed
    too_much = events.with_columns(pl.when(pl.col("event") == "filled").then(701).otherwise(pl.col("qty")).alias("qty"))
    assert not executions_match_orders(too_much, orders).passed
    # an order the split expired is expired in its own shares
    buy = _orders([(D1, "AAPL", "buy", 4, "b")])
    expired = _events([(D1, "b", "AAPL", "buy", "accepted", D1, 4, None), SPLIT, (D2, "b", "AAPL", "buy", "expired", D1, 4, None)])
    assert executions_match_orders(expired, buy).passed


def test_the_monthly_quota_counts_in_post_split_shares():
    reverse = (D2, "split-20140609-XYZ", "XYZ", None, "split", D2, 0, 0.1)  # 1:10, nothing held any more
    events = _events(
        [
            (D0, "a", "XYZ", "buy", "filled", D0, 4, 10.0),  # 4 old shares: 0.4 new ones
            reverse,
            (D3, "b", "XYZ", "buy", "filled", D2, 3, 100.0),  # 3 more: 3.4 of 4
        ]
    )
    assert fills_within_monthly_quota(events, 4).passed
    assert not fills_within_monthly_quota(events.filter(pl.col("event") != "split"), 4).passed  # 7 raw shares
    forward = (D2, "split-20140609-XYZ", "XYZ", None, "split", D2, 6, 1.5)  # 4 old shares are 6 new: over 4
    over = _events([(D0, "a", "XYZ", "buy", "filled", D0, 4, 10.0), forward, (D3, "b", "XYZ", "buy", "filled", D2, 1, 7.0)])
    assert not fills_within_monthly_quota(over, 4).passed
    assert fills_within_monthly_quota(over.filter(pl.col("session") < D3), 4).passed  # the split alone breaches nothing
