"""The quota rules on small frames, including the case that once failed on real data: HFBL 2008-03, two
approved 4-share buys in one month whose next sessions had no bar, so both expired and bought nothing."""

import datetime as dt

import polars as pl

from trading_dagster.checks.rules import fills_within_monthly_quota, orders_within_limits

D = dt.date


def orders(*rows):
    cols = ["session", "symbol", "side", "requested_qty", "qty", "status", "client_order_id"]
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def events(*rows):
    cols = ["session", "symbol", "side", "event", "qty"]
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_two_full_quota_orders_in_a_month_are_fine_until_they_fill():
    o = orders(
        (D(2008, 3, 24), "HFBL", "buy", 126, 4, "approved", "a"),
        (D(2008, 3, 27), "HFBL", "buy", 126, 4, "approved", "b"),
    )
    assert orders_within_limits(o, 4).passed
    expired = events((D(2008, 3, 25), "HFBL", "buy", "expired", 4), (D(2008, 3, 28), "HFBL", "buy", "expired", 4))
    assert fills_within_monthly_quota(expired, 4).passed
    filled = events((D(2008, 3, 25), "HFBL", "buy", "filled", 4), (D(2008, 3, 28), "HFBL", "buy", "filled", 4))
    outcome = fills_within_monthly_quota(filled, 4)
    assert not outcome.passed
    assert outcome.metadata["offending_rows"] == 1 and outcome.metadata["symbols"] == "HFBL"


def test_fills_in_different_months_or_sells_do_not_add_up():
    e = events(
        (D(2017, 1, 31), "AAPL", "buy", "filled", 4),
        (D(2017, 2, 1), "AAPL", "buy", "filled", 4),
        (D(2017, 2, 2), "AAPL", "sell", "filled", 8),
    )
    assert fills_within_monthly_quota(e, 4).passed
    assert fills_within_monthly_quota(e, None).passed


def test_an_order_above_the_quota_request_or_zero_fails():
    assert not orders_within_limits(orders((D(2017, 1, 3), "KO", "buy", 10, 5, "approved", "a")), 4).passed
    assert not orders_within_limits(orders((D(2017, 1, 3), "KO", "buy", 3, 4, "approved", "a")), 4).passed
    assert not orders_within_limits(orders((D(2017, 1, 3), "KO", "sell", 0, 0, "approved", "a")), 4).passed
    dup = orders((D(2017, 1, 3), "KO", "buy", 4, 4, "approved", "x"), (D(2017, 1, 3), "PEP", "buy", 4, 4, "approved", "x"))
    assert not orders_within_limits(dup, 4).passed
    # a denied order is not held to the approved-order rules
    assert orders_within_limits(orders((D(2017, 1, 3), "KO", "buy", 10, 0, "denied", "a")), 4).passed
    # sells are not bound by the buy quota
    assert orders_within_limits(orders((D(2017, 1, 3), "KO", "sell", 9, 9, "approved", "a")), 4).passed
