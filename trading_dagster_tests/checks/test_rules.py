"""Every rule in checks/rules.py fails on a bad frame and passes on a good one as close to it as possible.

The frames are real rows (the shipped sample, and the stages built from it in conftest.py); a bad frame is
a good one with one value changed, and each condition of a rule is broken on its own, so a rule that lost a
condition (or could not fail at all) turns a test red. Each failure names the sessions the quality gate
blocks (`failed_sessions`) and the conditions that failed (`metadata["failed_conditions"]`).

Also the quota case that once failed on real data: HFBL 2008-03, two approved 4-share buys in one month
whose next sessions had no bar, so both expired and bought nothing.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from trading_dagster.checks.rules import (
    CheckOutcome,
    cleaned_prices_sane,
    equity_identity,
    executions_match_orders,
    fills_within_monthly_quota,
    indicators_in_bounds,
    no_nulls,
    orders_within_limits,
    sessions_in_window,
    signals_valid,
    unique_keys,
)
from trading_dagster.domain.indicators import compute_indicators
from trading_dagster_tests.checks.outcomes import assert_fails, assert_passes, at, conditions, with_values

D = dt.date
NAN, INF = float("nan"), float("inf")
P = pytest.param


# ------------------------------------------------------------------------------------- cleaned prices

BAR = ("KO", D(2017, 11, 9))  # open 46.12, high 46.385, low 46.02, close 46.23, volume 6,525,071


@pytest.fixture(scope="module")
def bars(cleaned: pl.DataFrame) -> pl.DataFrame:
    """AAPL, KO and SPY over 2017-11-07..10: 12 real cleaned rows."""
    return cleaned.filter(
        pl.col("symbol").is_in(["AAPL", "KO", "SPY"])
        & pl.col("session").is_between(D(2017, 11, 7), D(2017, 11, 10))
    )


def test_the_real_sample_is_sane_to_the_last_row(cleaned):
    assert_passes(cleaned_prices_sane(cleaned), rows=cleaned.height)
    assert cleaned.height > 100_000


@pytest.mark.parametrize(
    ("values", "failed"),
    [
        P({"open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0}, "price_not_positive", id="zero bar"),
        P({"low": -0.01}, "price_not_positive", id="negative low"),
        P(
            {"high": pl.col("low") - 0.01},
            "high_below_low close_outside_low_high open_outside_low_high",
            id="high < low",
        ),
        P({"close": pl.col("high") + 0.01}, "close_outside_low_high", id="close > high"),
        P({"close": pl.col("low") - 0.01}, "close_outside_low_high", id="close < low"),
        P({"open": pl.col("high") + 0.01}, "open_outside_low_high", id="open > high"),
        P({"open": pl.col("low") - 0.01}, "open_outside_low_high", id="open < low"),
        P({"volume": -1}, "negative_volume", id="negative volume"),
        # NaN sorts above every number: no range test sees it
        P({"high": NAN}, "missing_or_non_finite", id="NaN high"),
        P({"high": INF}, "missing_or_non_finite", id="inf high"),
        P({"close": None}, "missing_or_non_finite", id="null close"),
        P({"open": None}, "missing_or_non_finite", id="null open"),
        P({"volume": None}, "missing_or_non_finite", id="null volume"),
    ],
)
def test_cleaned_prices_fail_each_sanity_condition_on_its_own(bars, values, failed):
    assert_passes(cleaned_prices_sane(bars), rows=12)
    bad = with_values(bars, at(*BAR), **values)
    assert_fails(cleaned_prices_sane(bad), (BAR[1],), dict.fromkeys(failed.split(), 1))


@pytest.mark.parametrize(
    "values",
    [
        P({"close": pl.col("high")}, id="close = high"),
        P({"close": pl.col("low")}, id="close = low"),
        P({"open": pl.col("high")}, id="open = high"),
        P({"open": pl.col("low")}, id="open = low"),
        P({"open": pl.col("low"), "high": pl.col("low"), "close": pl.col("low")}, id="flat bar"),
        P({"volume": 0}, id="volume 0"),
        P({"open": 0.0001, "high": 0.0001, "low": 0.0001, "close": 0.0001}, id="tiny, not zero"),
    ],
)
def test_cleaned_prices_at_each_bound_pass(bars, values):
    assert_passes(cleaned_prices_sane(with_values(bars, at(*BAR), **values)))


def test_real_bars_on_the_bounds_pass(cleaned):
    """open = low (AAPL 2017-11-07), close = high (AAPL 2017-11-08), open = high and close = low (XOM
    2015-06-25), volume 0 (the vendor's whole session of 2010-04-26)."""
    rows = cleaned.filter(
        at("AAPL", D(2017, 11, 7))
        | at("AAPL", D(2017, 11, 8))
        | at("XOM", D(2015, 6, 25))
        | (pl.col("session") == D(2010, 4, 26))
    )
    assert (rows["open"] == rows["low"]).any() and (rows["close"] == rows["high"]).any()
    assert (rows["volume"] == 0).sum() > 30
    assert_passes(cleaned_prices_sane(rows))


def test_every_bad_row_is_named_with_its_session(bars):
    bad = with_values(bars, at("AAPL", D(2017, 11, 7)), volume=-5)
    bad = with_values(bad, at("SPY", D(2017, 11, 10)), close=pl.col("high") * 2)
    outcome = cleaned_prices_sane(bad)
    assert_fails(
        outcome,
        (D(2017, 11, 7), D(2017, 11, 10)),
        {"negative_volume": 1, "close_outside_low_high": 1},
        rows=2,
    )
    assert outcome.metadata["symbols"] == "AAPL, SPY" and outcome.metadata["rows_checked"] == 12
    assert outcome.metadata["sessions"] == "2017-11-07..2017-11-10 (2 sessions)"
    assert "'volume': -5" in outcome.metadata["example"]


def test_an_empty_frame_passes(bars):
    assert_passes(cleaned_prices_sane(bars.head(0)), rows=0, what="prices that fail OHLC sanity")


def test_the_symbols_named_are_the_first_twenty(cleaned):
    """Metadata stays readable when a whole session is bad: 42 symbols with a negative volume."""
    session = cleaned.filter(pl.col("session") == D(2017, 11, 10)).with_columns(volume=pl.lit(-1, pl.Int64))
    outcome = cleaned_prices_sane(session)
    assert_fails(outcome, (D(2017, 11, 10),), {"negative_volume": 42}, rows=42)
    assert outcome.metadata["symbols"].split(", ") == sorted(session["symbol"])[:20]


# ------------------------------------------------------------------------------------------ unique keys


def test_a_second_bar_for_a_symbol_and_session_is_a_duplicate(bars):
    keys = ["symbol", "session"]
    assert_passes(unique_keys(bars, keys), rows=12)
    revised = bars.filter(at(*BAR)).with_columns(volume=pl.col("volume") + 100)  # a later revision of the bar
    outcome = unique_keys(pl.concat([bars, revised]), keys)
    assert_fails(outcome, (BAR[1],), rows=2)
    assert outcome.metadata["symbols"] == "KO" and outcome.metadata["rows_checked"] == 13
    assert "duplicate ('symbol', 'session')" in outcome.description


def test_keys_are_judged_together_not_one_by_one(bars):
    """The same bar on a session the frame does not hold yet is no duplicate; keyed by symbol alone it is."""
    moved = bars.filter(at(*BAR)).with_columns(session=pl.lit(D(2017, 11, 13)))
    assert_passes(unique_keys(pl.concat([bars, moved]), ["symbol", "session"]))
    by_symbol = unique_keys(bars, ["symbol"])
    assert_fails(by_symbol, (D(2017, 11, 7), D(2017, 11, 8), D(2017, 11, 9), D(2017, 11, 10)), rows=12)


def test_unique_signals_per_strategy(stages):
    keys = ["session", "symbol", "strategy"]
    signals = stages.signals
    assert_passes(unique_keys(signals, keys), rows=signals.height)
    first = signals.head(1)
    assert_fails(unique_keys(pl.concat([signals, first]), keys), (first["session"][0],), rows=2)
    other_strategy = first.with_columns(strategy=pl.lit("another_strategy"))
    assert_passes(unique_keys(pl.concat([signals, other_strategy]), keys))
    assert_passes(unique_keys(signals.head(0), keys), rows=0)


# ------------------------------------------------------------------------------------ nulls and window


@pytest.mark.parametrize("column", ["symbol", "close", "volume"])
def test_a_null_in_a_listed_column_fails(bars, column):
    columns = ["symbol", "close", "volume"]
    assert_passes(no_nulls(bars, columns), rows=12)
    outcome = no_nulls(with_values(bars, at(*BAR), **{column: None}), columns)
    assert_fails(outcome, (BAR[1],), {f"null_{column}": 1})


def test_a_null_in_a_column_not_listed_passes(bars):
    assert_passes(no_nulls(with_values(bars, at(*BAR), open=None), ["symbol", "close"]))


def test_a_row_with_a_null_session_fails_the_whole_window(bars):
    outcome = no_nulls(with_values(bars, at(*BAR), session=None), ["session"])
    assert_fails(outcome, (), {"null_session": 1})  # () = every session of the window (see CheckOutcome)


def test_rows_outside_the_partition_window_fail_naming_their_sessions(bars):
    window = [D(2017, 11, 7), D(2017, 11, 8), D(2017, 11, 9), D(2017, 11, 10)]
    assert_passes(sessions_in_window(bars, window), rows=12)
    outcome = sessions_in_window(bars, window[:-1])
    assert_fails(outcome, (D(2017, 11, 10),), {"session_outside_window": 3}, rows=3)
    assert_fails(sessions_in_window(bars, window[1:]), (D(2017, 11, 7),), rows=3)
    no_session = sessions_in_window(with_values(bars, at(*BAR), session=None), window)
    assert_fails(no_session, (), {"session_outside_window": 1})
    assert_passes(sessions_in_window(bars.head(0), window), rows=0)


# ---------------------------------------------------------------------------------------- indicators

IND = ("AAPL", D(2017, 11, 9))


@pytest.fixture(scope="module")
def indicators(stages) -> pl.DataFrame:
    return stages.indicators.filter(pl.col("session") >= D(2017, 11, 6))


def test_real_indicators_and_their_warm_up_pass(stages, cleaned):
    assert_passes(indicators_in_bounds(stages.indicators), rows=stages.indicators.height)
    warm_up = compute_indicators(cleaned.filter(pl.col("symbol") == "KO").head(260))
    assert warm_up["sma_200"].null_count() == 199 and warm_up["rsi_14"].null_count() > 0
    assert_passes(indicators_in_bounds(warm_up))


@pytest.mark.parametrize(
    ("values", "failed"),
    [
        P({"rsi_14": -0.01}, "rsi_outside_0_100", id="rsi < 0"),
        P({"rsi_14": 100.01}, "rsi_outside_0_100", id="rsi > 100"),
        P({"bb_lower": pl.col("bb_middle") + 0.01}, "bb_lower_above_middle", id="bb lower > middle"),
        P({"bb_middle": pl.col("bb_upper") + 0.01}, "bb_middle_above_upper", id="bb middle > upper"),
        P({"atr_14": -0.01}, "negative_atr", id="atr < 0"),
        P({"pct_below_high_52w": -0.01}, "pct_below_high_outside_0_100", id="pct below high < 0"),
        P({"pct_below_high_52w": 100.01}, "pct_below_high_outside_0_100", id="pct below high > 100"),
        P({"sma_50": NAN}, "nan", id="NaN sma_50"),
        P({"close": NAN}, "nan", id="NaN close"),
    ],
)
def test_indicators_fail_each_bound_on_its_own(indicators, values, failed):
    assert_passes(indicators_in_bounds(indicators))
    bad = with_values(indicators, at(*IND), **values)
    assert_fails(indicators_in_bounds(bad), (IND[1],), {failed: 1})


@pytest.mark.parametrize("column", ["close", "sma_20", "ema_12", "rsi_14", "bb_upper", "atr_14", "high_52w"])
def test_nan_in_any_indicator_column_fails(indicators, column):
    outcome = indicators_in_bounds(with_values(indicators, at(*IND), **{column: NAN}))
    assert_fails(outcome, (IND[1],))
    assert "nan" in conditions(outcome)


@pytest.mark.parametrize(
    "values",
    [
        P({"rsi_14": 0.0}, id="rsi 0"),
        P({"rsi_14": 100.0}, id="rsi 100"),
        P({"rsi_14": None}, id="rsi null (warm-up)"),
        P({"bb_lower": pl.col("bb_middle"), "bb_upper": pl.col("bb_middle")}, id="flat band"),
        P({"atr_14": 0.0}, id="atr 0"),
        P({"pct_below_high_52w": 0.0}, id="new 52-week high"),
        P({"pct_below_high_52w": 100.0}, id="pct below high 100"),
    ],
)
def test_indicators_on_each_bound_pass(indicators, values):
    assert_passes(indicators_in_bounds(with_values(indicators, at(*IND), **values)))


# ------------------------------------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def signal(stages) -> tuple[pl.DataFrame, pl.Expr, dt.date]:
    """The real signals, and the first one's row."""
    first = stages.signals.row(0, named=True)
    where = at(first["symbol"], first["session"]) & (pl.col("strategy") == first["strategy"])
    return stages.signals, where, first["session"]


@pytest.mark.parametrize(
    ("values", "failed"),
    [
        P({"side": "hold"}, "side_not_buy_or_sell", id="side hold"),
        P({"side": "BUY"}, "side_not_buy_or_sell", id="side BUY"),
        P({"side": None}, "side_not_buy_or_sell", id="side null"),
        P({"strength": -0.01}, "strength_outside_0_1", id="strength < 0"),
        P({"strength": 1.01}, "strength_outside_0_1", id="strength > 1"),
        P({"reason": None}, "no_reason", id="reason null"),
    ],
)
def test_signals_fail_each_condition_on_its_own(signal, values, failed):
    signals, where, session = signal
    assert_passes(signals_valid(signals), rows=signals.height)
    assert_fails(signals_valid(with_values(signals, where, **values)), (session,), {failed: 1})


@pytest.mark.parametrize(
    "values",
    [{"strength": 0.0}, {"strength": 1.0}, {"strength": None}, {"side": "buy"}, {"side": "sell"}],
    ids=["strength 0", "strength 1", "strength null", "buy", "sell"],
)
def test_signals_on_each_bound_pass(signal, values):
    signals, where, _ = signal
    assert_passes(signals_valid(with_values(signals, where, **values)))


# -------------------------------------------------------------------------------------------- orders


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
    assert_passes(orders_within_limits(o, 4))
    expired = events(
        (D(2008, 3, 25), "HFBL", "buy", "expired", 4), (D(2008, 3, 28), "HFBL", "buy", "expired", 4)
    )
    assert_passes(fills_within_monthly_quota(expired, 4))
    filled = events(
        (D(2008, 3, 25), "HFBL", "buy", "filled", 4), (D(2008, 3, 28), "HFBL", "buy", "filled", 4)
    )
    outcome = fills_within_monthly_quota(filled, 4)
    # the session whose fill took the month past the quota, not the one before it
    assert_fails(outcome, (D(2008, 3, 28),))
    assert (
        outcome.metadata["symbols"] == "HFBL"
        and "more than 4 shares bought in a month" in outcome.description
    )


def test_fills_in_different_months_or_sells_do_not_add_up():
    e = events(
        (D(2017, 1, 31), "AAPL", "buy", "filled", 4),
        (D(2017, 2, 1), "AAPL", "buy", "filled", 4),
        (D(2017, 2, 2), "AAPL", "sell", "filled", 8),
        (D(2017, 2, 2), "MSFT", "buy", "filled", 4),
    )
    assert_passes(fills_within_monthly_quota(e, 4), rows=4)
    none = fills_within_monthly_quota(e, None)
    assert none.passed and none.description == "no monthly share limit configured"


def test_the_quota_binds_on_the_running_total_of_the_month():
    e = events(
        (D(2017, 3, 1), "KO", "buy", "filled", 2),
        (D(2017, 3, 2), "KO", "buy", "filled", 2),  # 4: at the quota
        (D(2017, 3, 3), "KO", "sell", "filled", 4),
    )
    assert_passes(fills_within_monthly_quota(e, 4))
    more = pl.concat(
        [e, events((D(2017, 3, 6), "KO", "buy", "filled", 1), (D(2017, 3, 7), "KO", "buy", "filled", 1))]
    )
    assert_fails(fills_within_monthly_quota(more, 4), (D(2017, 3, 6), D(2017, 3, 7)), rows=2)
    assert_passes(fills_within_monthly_quota(more, 6))
    same_day = events((D(2017, 3, 1), "KO", "buy", "filled", 3), (D(2017, 3, 1), "KO", "buy", "filled", 2))
    assert_fails(fills_within_monthly_quota(same_day, 4), (D(2017, 3, 1),))


def test_the_real_fills_are_within_the_quota(stages):
    assert_passes(fills_within_monthly_quota(stages.executions, 4), rows=stages.executions.height)


def test_an_order_above_the_quota_request_or_zero_fails():
    def outcome(*rows, limit=4):
        return orders_within_limits(orders(*rows), limit)

    a = D(2017, 1, 3)
    assert_passes(outcome((a, "KO", "buy", 4, 4, "approved", "a")))  # at the quota and the request
    assert_fails(outcome((a, "KO", "buy", 10, 5, "approved", "a")), (a,), {"buy_above_monthly_quota": 1})
    assert_passes(outcome((a, "KO", "buy", 10, 5, "approved", "a"), limit=None))  # no quota configured
    assert_passes(outcome((a, "KO", "buy", 10, 5, "approved", "a"), limit=5))
    assert_fails(outcome((a, "KO", "sell", 3, 4, "approved", "a")), (a,), {"qty_above_request": 1})
    assert_fails(outcome((a, "KO", "sell", 0, 0, "approved", "a")), (a,), {"qty_not_positive": 1})
    assert_fails(outcome((a, "KO", "sell", 3, -1, "approved", "a")), (a,), {"qty_not_positive": 1})
    b = D(2017, 1, 4)
    dup = outcome((a, "KO", "buy", 4, 4, "approved", "x"), (b, "PEP", "buy", 4, 4, "approved", "x"))
    assert_fails(dup, (a, b), {"duplicate_client_order_id": 2}, rows=2)
    # a denied order is not held to the approved-order rules, nor does it duplicate an approved one
    assert_passes(outcome((a, "KO", "buy", 10, 0, "denied", "a")))
    assert_passes(
        outcome((a, "KO", "buy", 4, 4, "approved", "x"), (a, "KO", "buy", 4, 0, "denied", "x")), rows=2
    )
    # sells are not bound by the buy quota
    assert_passes(outcome((a, "KO", "sell", 9, 9, "approved", "a")))


def test_real_orders_pass_and_one_changed_order_fails(stages):
    o = stages.orders
    assert_passes(orders_within_limits(o, 4), rows=o.height)
    buy = o.filter(
        (pl.col("status") == "approved") & (pl.col("side") == "buy") & (pl.col("requested_qty") > 5)
    ).row(0, named=True)
    where = pl.col("client_order_id") == buy["client_order_id"]
    assert_fails(
        orders_within_limits(with_values(o, where, qty=5), 4),
        (buy["session"],),
        {"buy_above_monthly_quota": 1},
    )


# ---------------------------------------------------------------------------------------- executions


@pytest.fixture(scope="module")
def last_order(stages) -> dict:
    """An approved order of the window's last session: accepted, not filled inside the window."""
    last = stages.executions.filter(
        (pl.col("event") == "accepted") & (pl.col("session") == stages.sessions[-1])
    )
    return last.row(0, named=True)


@pytest.fixture(scope="module")
def filled_order(stages) -> tuple[dict, dict]:
    """(accepted event, fill) of a real sell filled inside the window."""
    ex = stages.executions
    fill = ex.filter((pl.col("event") == "filled") & (pl.col("side") == "sell")).row(3, named=True)
    accepted = ex.filter(
        (pl.col("event") == "accepted") & (pl.col("client_order_id") == fill["client_order_id"])
    )
    return accepted.row(0, named=True), fill


def event(ev: str, client_order_id: str) -> pl.Expr:
    return (pl.col("event") == ev) & (pl.col("client_order_id") == client_order_id)


def test_real_executions_match_their_orders(stages, last_order):
    assert_passes(executions_match_orders(stages.executions, stages.orders), rows=stages.executions.height)
    assert stages.executions.filter(pl.col("client_order_id") == last_order["client_order_id"]).height == 1


@pytest.mark.parametrize(
    "values",
    [
        {"qty": pl.col("qty") + 1},
        {"symbol": "ZZZZ"},
        {"side": pl.when(pl.col("side") == "buy").then(pl.lit("sell")).otherwise(pl.lit("buy"))},
    ],
    ids=["qty", "symbol", "side"],
)
def test_an_accepted_event_that_differs_from_its_order_fails(stages, last_order, values):
    bad = with_values(stages.executions, event("accepted", last_order["client_order_id"]), **values)
    outcome = executions_match_orders(bad, stages.orders)
    assert_fails(outcome, (last_order["session"],), {"accepted_differs_from_order": 1})


def test_an_accepted_event_without_an_approved_order_fails(stages, last_order):
    cid = last_order["client_order_id"]
    dropped = stages.orders.filter(pl.col("client_order_id") != cid)
    assert_fails(
        executions_match_orders(stages.executions, dropped),
        (last_order["session"],),
        {"accepted_without_approved_order": 1},
    )
    denied = with_values(stages.orders, pl.col("client_order_id") == cid, status="denied", qty=0)
    assert_fails(
        executions_match_orders(stages.executions, denied),
        (last_order["session"],),
        {"accepted_without_approved_order": 1},
    )


def test_an_order_accepted_twice_fails(stages, last_order):
    twice = pl.concat(
        [stages.executions, stages.executions.filter(event("accepted", last_order["client_order_id"]))]
    )
    assert_fails(
        executions_match_orders(twice, stages.orders),
        (last_order["session"],),
        {"accepted_more_than_once": 2},
        rows=2,
    )


def test_a_fill_the_broker_never_accepted_fails(stages, filled_order):
    accepted, fill = filled_order
    ex = stages.executions.filter(~event("accepted", fill["client_order_id"]))
    outcome = executions_match_orders(ex, stages.orders)
    assert_fails(outcome, (fill["session"],), {"worked_without_accepted_order": 1})


@pytest.mark.parametrize("extra_event", ["filled", "expired"])
def test_filling_or_expiring_more_than_was_accepted_fails(stages, filled_order, extra_event):
    accepted, fill = filled_order
    bigger = with_values(stages.executions, event("filled", fill["client_order_id"]), qty=pl.col("qty") + 1)
    assert_fails(
        executions_match_orders(bigger, stages.orders), (fill["session"],), {"worked_more_than_accepted": 1}
    )
    # a second event for the same order: the two together are more than the order
    again = pl.DataFrame([{**fill, "event": extra_event, "qty": 1}], schema=stages.executions.schema)
    outcome = executions_match_orders(pl.concat([stages.executions, again]), stages.orders)
    assert_fails(outcome, (fill["session"],), {"worked_more_than_accepted": 2}, rows=2)


def test_a_partial_fill_and_the_expired_rest_pass(stages, filled_order):
    accepted, fill = filled_order
    assert fill["qty"] >= 2
    part = with_values(stages.executions, event("filled", fill["client_order_id"]), qty=pl.col("qty") - 1)
    rest = pl.DataFrame(
        [{**fill, "event": "expired", "qty": 1, "price": None, "commission": 0.0}], schema=part.schema
    )
    assert_passes(executions_match_orders(pl.concat([part, rest]), stages.orders))


def test_a_fill_of_an_order_from_before_the_window_is_not_held_to_this_window(stages, filled_order):
    """A window that starts at the fill's session holds the fill but not its acceptance (the session
    before): that order was checked with the window it was accepted in."""
    accepted, fill = filled_order
    later = stages.executions.filter(pl.col("session") >= fill["session"])
    orders_later = stages.orders.filter(pl.col("session") >= fill["session"])
    assert later.filter(event("accepted", fill["client_order_id"])).is_empty()
    assert_passes(executions_match_orders(later, orders_later))
    # ... while the same frame with the acceptance's session still in it fails without it
    from_acceptance = stages.executions.filter(pl.col("session") >= accepted["session"])
    assert_fails(
        executions_match_orders(
            from_acceptance.filter(~event("accepted", fill["client_order_id"])), stages.orders
        ),
        (fill["session"],),
        {"worked_without_accepted_order": 1},
    )


def test_no_executions_pass(stages):
    assert_passes(executions_match_orders(stages.executions.head(0), stages.orders), rows=0)


# ------------------------------------------------------------------------------------ equity identity


@pytest.fixture(scope="module")
def equity_day(stages) -> tuple[pl.DataFrame, pl.Expr, dt.date]:
    day = stages.sessions[40]
    return stages.equity, pl.col("session") == day, day


def test_real_equity_is_cash_plus_market_value(stages):
    assert_passes(equity_identity(stages.equity), rows=stages.equity.height)


@pytest.mark.parametrize(
    ("values", "failed"),
    [
        P({"cash": pl.col("cash") + 1.0}, "equity_not_cash_plus_market_value", id="cash + 1"),
        P(
            {"market_value": pl.col("market_value") - 0.02},
            "equity_not_cash_plus_market_value",
            id="mv - 0.02",
        ),
        P({"equity": pl.col("equity") + 0.02}, "equity_not_cash_plus_market_value", id="equity + 0.02"),
        P({"equity": None}, "equity_not_cash_plus_market_value", id="equity null"),
        P({"cash": None}, "equity_not_cash_plus_market_value", id="cash null"),
        P({"market_value": None}, "equity_not_cash_plus_market_value", id="mv null"),
        P({"cash": -1.0, "equity": pl.col("market_value") - 1.0}, "negative_cash", id="cash -1"),
    ],
)
def test_equity_identity_fails_each_condition_on_its_own(equity_day, values, failed):
    equity, where, day = equity_day
    assert_fails(equity_identity(with_values(equity, where, **values)), (day,), {failed: 1})


@pytest.mark.parametrize(
    "values",
    [
        P({"equity": pl.col("equity") + 0.009}, id="equity off by less than a cent"),
        P({"cash": -0.009, "equity": pl.col("market_value") - 0.009}, id="cash -0.009"),
        P({"cash": 0.0, "equity": pl.col("market_value")}, id="cash 0"),
    ],
)
def test_equity_identity_within_the_tolerance_passes(equity_day, values):
    equity, where, _ = equity_day
    assert_passes(equity_identity(with_values(equity, where, **values)))


# ------------------------------------------------------------------------------------ what each says


def test_each_rule_says_what_it_checked_passed_or_failed(bars, stages, signal, last_order):
    """The description is what the Dagster UI and the quality gate's refusal show an operator."""
    signals, signal_row, _ = signal
    window = bars["session"].unique().to_list()
    approved = (
        pl.col("client_order_id")
        == stages.orders.filter(pl.col("status") == "approved")["client_order_id"][0]
    )
    accepted = event("accepted", last_order["client_order_id"])
    day = pl.col("session") == stages.sessions[40]
    keys = ["symbol", "session"]
    cases = [
        (
            lambda df: unique_keys(df, keys),
            bars,
            pl.concat([bars, bars.head(1)]),
            "duplicate ('symbol', 'session')",
        ),
        (
            lambda df: no_nulls(df, ["close"]),
            bars,
            with_values(bars, at(*BAR), close=None),
            "nulls in ['close']",
        ),
        (
            lambda df: sessions_in_window(df, window),
            bars,
            with_values(bars, at(*BAR), session=D(2017, 11, 13)),
            "sessions outside the partition window",
        ),
        (cleaned_prices_sane, bars, with_values(bars, at(*BAR), volume=-1), "prices that fail OHLC sanity"),
        (
            indicators_in_bounds,
            stages.indicators,
            with_values(stages.indicators, at(*IND), atr_14=-1.0),
            "indicator values out of bounds or NaN",
        ),
        (
            signals_valid,
            signals,
            with_values(signals, signal_row, side="hold"),
            "invalid side, strength outside [0, 1] or no reason",
        ),
        (
            lambda df: orders_within_limits(df, 4),
            stages.orders,
            with_values(stages.orders, approved, qty=0),
            "qty <= 0 or above request or quota, or a duplicate client order id",
        ),
        (
            lambda df: executions_match_orders(df, stages.orders),
            stages.executions,
            with_values(stages.executions, accepted, qty=99),
            "broker events that match no approved order, or fill more than it",
        ),
        (
            equity_identity,
            stages.equity,
            with_values(stages.equity, day, cash=-5.0),
            "equity != cash + market value, or negative cash",
        ),
    ]
    for rule, good, bad, what in cases:
        assert_passes(rule(good), what=what)
        outcome = rule(bad)
        conds = outcome.metadata.get("failed_conditions")
        expected = f"{outcome.metadata['offending_rows']} rows with {what}" + (f" ({conds})" if conds else "")
        assert not outcome.passed and outcome.description == expected, (what, outcome.description)
    assert_passes(executions_match_orders(stages.executions.head(0), stages.orders), what=cases[7][3])


def test_a_frame_without_rows_passes_even_without_columns(stages):
    """An empty output says nothing wrong: it passes, also when it carries no schema (nothing to look up)."""
    empty = pl.DataFrame()
    for outcome in (
        unique_keys(empty, ["symbol", "session"]),
        no_nulls(empty, ["symbol"]),
        sessions_in_window(empty, [D(2017, 11, 10)]),
        cleaned_prices_sane(empty),
        indicators_in_bounds(empty),
        signals_valid(empty),
        executions_match_orders(empty, stages.orders),
        equity_identity(empty),
    ):
        assert_passes(outcome, rows=0)


def test_with_no_quota_configured_the_fills_are_counted_but_not_judged(stages):
    outcome = fills_within_monthly_quota(stages.executions, None)
    assert outcome == CheckOutcome(
        True, "no monthly share limit configured", {"rows_checked": stages.executions.height}
    )


def test_a_one_session_window_counts_the_months_earlier_fills_and_names_only_its_own_session():
    """The executions asset of a daily run holds one session's events: the month's earlier buys must be in
    the events it passes (from the month's first session), and only the window's session can fail."""
    month = events(
        (D(2017, 3, 1), "KO", "buy", "filled", 3),
        (D(2017, 3, 2), "PEP", "buy", "filled", 4),
        (D(2017, 3, 3), "KO", "buy", "filled", 1),  # 4: at the quota
    )
    assert_passes(fills_within_monthly_quota(month.tail(1), 4, window=[D(2017, 3, 3)]))
    assert_passes(fills_within_monthly_quota(month, 4, window=[D(2017, 3, 3)]))
    today = pl.concat([month, events((D(2017, 3, 6), "KO", "buy", "filled", 1))])
    assert_passes(
        fills_within_monthly_quota(today.tail(1), 4, window=[D(2017, 3, 6)])
    )  # alone, 1 share looks fine
    outcome = fills_within_monthly_quota(today, 4, window=[D(2017, 3, 6)])
    assert_fails(outcome, (D(2017, 3, 6),))
    # a breach before the window was judged with its own window: a later window without buys is not failed
    breached = pl.concat([month, events((D(2017, 3, 3), "KO", "buy", "filled", 2))])
    assert_fails(fills_within_monthly_quota(breached, 4), (D(2017, 3, 3),))
    assert_passes(fills_within_monthly_quota(breached, 4, window=[D(2017, 3, 6)]))
    assert_fails(fills_within_monthly_quota(breached, 4, window=[D(2017, 3, 3)]), (D(2017, 3, 3),))


def test_a_difference_of_exactly_the_tolerance_passes(equity_day):
    """A binary-exact tolerance, so that 'exactly' means exactly: within is <=, and a cent is the default."""
    equity, where, day = equity_day
    half = with_values(equity, where, equity=pl.col("cash") + pl.col("market_value") + 0.5)
    assert_passes(equity_identity(half, tolerance=0.5))
    assert_fails(equity_identity(half, tolerance=0.25), (day,), {"equity_not_cash_plus_market_value": 1})
    overdrawn = with_values(equity, where, cash=-0.5, equity=pl.col("market_value") - 0.5)
    assert_passes(equity_identity(overdrawn, tolerance=0.5))
    assert_fails(equity_identity(overdrawn, tolerance=0.25), (day,), {"negative_cash": 1})
