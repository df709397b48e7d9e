"""The execution calendar: D's orders go in during D+1's session (early closes and DST from XNYS), a stale D
never trades, and a weekly strategy scans once a week (holidays move the scan earlier in the week)."""

import datetime as dt

import pytest

from trading_dagster.domain.broker_records import BrokerClock
from trading_dagster.domain.trading_calendar import (
    BEFORE_WINDOW,
    BROKER_SAYS_CLOSED,
    NOT_A_SESSION,
    OK,
    PAST_CUTOFF,
    WINDOW_CLOSED,
    TradingCalendar,
    execution_window,
    is_stale,
    latest_completed_session,
    may_submit,
    parse_weekday,
    scan_session,
    xnys_trading_calendar,
)

D = dt.date


def z(text: str) -> dt.datetime:
    """'2025-07-03 16:59' read as UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def clock(now: dt.datetime, is_open: bool) -> BrokerClock:
    return BrokerClock(timestamp=now, is_open=is_open, next_open=now, next_close=now)


# ------------------------------------------------------------------------------------ execution window


@pytest.mark.parametrize(
    ("signal", "opens", "closes"),
    [
        (D(2025, 7, 2), "2025-07-03 13:30", "2025-07-03 17:00"),  # D+1 is the early close before the 4th
        (D(2025, 7, 3), "2025-07-07 13:30", "2025-07-07 20:00"),  # July 4th (Friday) and a weekend
        (D(2025, 4, 17), "2025-04-21 13:30", "2025-04-21 20:00"),  # Good Friday 2025-04-18
        (D(2025, 11, 26), "2025-11-28 14:30", "2025-11-28 18:00"),  # Thanksgiving, then 13:00 New York
        (D(2025, 12, 23), "2025-12-24 14:30", "2025-12-24 18:00"),  # Christmas Eve closes at 13:00
        (D(2025, 3, 7), "2025-03-10 13:30", "2025-03-10 20:00"),  # DST began Sunday 03-09: 09:30 EDT
        (D(2025, 10, 31), "2025-11-03 14:30", "2025-11-03 21:00"),  # DST ended Sunday 11-02: 09:30 EST
        (D(2025, 1, 8), "2025-01-10 14:30", "2025-01-10 21:00"),  # 2025-01-09: national day of mourning
    ],
)
def test_the_window_is_the_next_sessions_open_to_close_in_utc(signal, opens, closes):
    assert execution_window(signal) == (z(opens), z(closes))
    assert all(t.tzinfo is dt.UTC for t in execution_window(signal))


@pytest.mark.parametrize("day", [D(2025, 7, 4), D(2025, 4, 18), D(2025, 7, 5)])
def test_a_non_session_has_no_window(day):
    with pytest.raises(ValueError, match="not an NYSE session"):
        execution_window(day)


# ----------------------------------------------------------------------------------------- may_submit


@pytest.mark.parametrize(
    ("signal", "now", "code"),
    [
        (D(2025, 7, 2), "2025-07-02 20:30", BEFORE_WINDOW),  # D's own session
        (D(2025, 7, 2), "2025-07-03 13:29", BEFORE_WINDOW),
        (D(2025, 7, 2), "2025-07-03 13:30", OK),
        (D(2025, 7, 2), "2025-07-03 16:59", OK),
        (D(2025, 7, 2), "2025-07-03 17:00", WINDOW_CLOSED),  # early close 13:00 New York
        (D(2025, 7, 2), "2025-07-03 19:00", WINDOW_CLOSED),  # a normal day would still be open
        (D(2025, 7, 3), "2025-07-04 15:00", BEFORE_WINDOW),  # the holiday
        (D(2025, 7, 3), "2025-07-05 15:00", BEFORE_WINDOW),  # the weekend
        (D(2025, 7, 3), "2025-07-07 15:00", OK),
        (D(2025, 4, 17), "2025-04-18 15:00", BEFORE_WINDOW),  # Good Friday
        (D(2025, 4, 17), "2025-04-21 13:30", OK),
        (D(2025, 11, 26), "2025-11-28 17:59", OK),
        (D(2025, 11, 26), "2025-11-28 18:00", WINDOW_CLOSED),
        (D(2025, 12, 23), "2025-12-24 18:30", WINDOW_CLOSED),
        (D(2025, 3, 7), "2025-03-10 13:30", OK),  # summer time: opens an hour earlier in UTC
        (D(2025, 3, 7), "2025-03-10 20:00", WINDOW_CLOSED),
        (D(2025, 10, 31), "2025-11-03 13:30", BEFORE_WINDOW),  # winter time: not open yet at 13:30Z
        (D(2025, 10, 31), "2025-11-03 14:30", OK),
        (D(2025, 10, 31), "2025-11-03 20:30", OK),
        (D(2025, 6, 2), "2025-07-03 15:00", WINDOW_CLOSED),  # a past D never reaches a broker
        (D(2025, 7, 4), "2025-07-07 15:00", NOT_A_SESSION),
    ],
)
def test_may_submit_only_during_the_next_session(signal, now, code):
    verdict = may_submit(signal, z(now))
    assert verdict.code == code, verdict.reason
    assert bool(verdict) is (code == OK)
    assert str(signal) in verdict.reason


def test_a_cutoff_before_the_close_follows_early_closes():
    # 30 minutes before 13:00 New York on 2025-11-28 (18:00Z): 17:30Z
    assert may_submit(D(2025, 11, 26), z("2025-11-28 17:29"), cutoff_minutes=30).code == OK
    verdict = may_submit(D(2025, 11, 26), z("2025-11-28 17:30"), cutoff_minutes=30)
    assert verdict.code == PAST_CUTOFF and "17:30Z" in verdict.reason
    assert may_submit(D(2025, 11, 25), z("2025-11-26 20:29"), cutoff_minutes=30).code == OK
    with pytest.raises(ValueError, match="cutoff_minutes"):
        may_submit(D(2025, 11, 25), z("2025-11-26 20:29"), cutoff_minutes=-1)


def test_the_broker_clock_must_agree_that_the_market_is_open():
    now = z("2025-07-07 15:00")
    assert may_submit(D(2025, 7, 3), clock(now, is_open=True)).code == OK
    assert may_submit(D(2025, 7, 3), clock(now, is_open=False)).code == BROKER_SAYS_CLOSED
    # the broker saying "open" on a calendar holiday does not open the window
    assert may_submit(D(2025, 7, 3), clock(z("2025-07-04 15:00"), is_open=True)).code == BEFORE_WINDOW


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        may_submit(D(2025, 7, 3), dt.datetime(2025, 7, 7, 15))


def test_a_new_york_time_is_the_same_instant():
    from zoneinfo import ZoneInfo

    ny = dt.datetime(2025, 11, 3, 9, 29, tzinfo=ZoneInfo("America/New_York"))
    assert may_submit(D(2025, 10, 31), ny).code == BEFORE_WINDOW
    assert may_submit(D(2025, 10, 31), ny + dt.timedelta(minutes=1)).code == OK


# ---------------------------------------------------------------------------- latest completed / stale


@pytest.mark.parametrize(
    ("now", "latest"),
    [
        ("2025-07-03 16:59", D(2025, 7, 2)),
        ("2025-07-03 17:00", D(2025, 7, 3)),  # early close: complete at 13:00 New York
        ("2025-07-04 15:00", D(2025, 7, 3)),
        ("2025-07-06 23:00", D(2025, 7, 3)),
        ("2025-07-07 19:59", D(2025, 7, 3)),
        ("2025-07-07 20:00", D(2025, 7, 7)),
        ("2025-04-18 12:00", D(2025, 4, 17)),  # Good Friday
        ("2025-11-28 18:00", D(2025, 11, 28)),
        ("2025-12-24 17:59", D(2025, 12, 23)),
        ("2025-03-10 20:00", D(2025, 3, 10)),  # 16:00 EDT
        ("2025-11-03 20:30", D(2025, 10, 31)),  # 15:30 EST: still open
        ("2025-11-03 21:00", D(2025, 11, 3)),
    ],
)
def test_latest_completed_session(now, latest):
    assert latest_completed_session(z(now)) == latest
    assert latest_completed_session(clock(z(now), is_open=False)) == latest


def test_stale_once_a_later_session_has_completed():
    assert not is_stale(D(2025, 7, 3), z("2025-07-07 19:59"))  # across the holiday and the weekend
    assert is_stale(D(2025, 7, 3), z("2025-07-07 20:00"))
    assert not is_stale(D(2025, 7, 7), z("2025-07-07 15:00"))  # not completed yet: not stale either
    assert is_stale(D(2025, 11, 26), z("2025-11-28 18:00"))  # the early close completes 11-28
    assert not is_stale(D(2025, 11, 26), z("2025-11-28 17:59"))


def test_reconcile_session_runs_from_the_next_open_to_its_close_plus_grace():
    cal = xnys_trading_calendar()
    grace = dt.timedelta(minutes=30)
    assert cal.reconcile_session(z("2025-07-07 13:29"), grace) is None  # before Monday's open
    assert cal.reconcile_session(z("2025-07-07 13:30"), grace) == D(2025, 7, 3)
    assert cal.reconcile_session(z("2025-07-07 20:29"), grace) == D(2025, 7, 3)
    assert cal.reconcile_session(z("2025-07-07 20:30"), grace) is None
    assert cal.reconcile_session(z("2025-11-28 18:29"), grace) == D(2025, 11, 26)  # early close + grace
    assert cal.reconcile_session(z("2025-11-28 18:30"), grace) is None


# ------------------------------------------------------------------------------------------ weekly scan


def scans(weekday, start: D, end: D) -> list[D]:
    cal = xnys_trading_calendar()
    days = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]
    return [d for d in days if scan_session("weekly", weekday, d) and cal.is_session(d)]


def test_a_friday_scan_moves_to_thursday_on_good_friday_and_july_4th():
    assert scans("friday", D(2025, 4, 7), D(2025, 4, 27)) == [D(2025, 4, 11), D(2025, 4, 17), D(2025, 4, 25)]
    assert scans(4, D(2025, 6, 30), D(2025, 7, 13)) == [D(2025, 7, 3), D(2025, 7, 11)]


def test_a_monday_scan_on_a_monday_holiday_moves_to_tuesday():
    # 2025-01-20 (MLK) and 2025-05-26 (Memorial Day): no session before Monday in that week
    assert scans("mon", D(2025, 1, 13), D(2025, 1, 26)) == [D(2025, 1, 13), D(2025, 1, 21)]
    assert scans("monday", D(2025, 5, 26), D(2025, 6, 1)) == [D(2025, 5, 27)]


def test_a_thursday_scan_on_thanksgiving_moves_to_wednesday_and_an_ordinary_week_is_the_weekday():
    assert scans("thursday", D(2025, 11, 17), D(2025, 11, 30)) == [D(2025, 11, 20), D(2025, 11, 26)]
    assert scans("wednesday", D(2025, 3, 3), D(2025, 3, 16)) == [D(2025, 3, 5), D(2025, 3, 12)]


def test_daily_scans_every_session_and_nothing_scans_on_a_holiday():
    assert scan_session("daily", None, D(2025, 7, 3))
    assert not scan_session("daily", None, D(2025, 7, 4))
    assert not scan_session("weekly", "friday", D(2025, 7, 4))
    assert not scan_session("weekly", "friday", D(2025, 7, 5))


def test_a_week_without_sessions_has_no_scan():
    days = (D(2030, 1, 7), D(2030, 1, 14))
    utc = dt.UTC
    cal = TradingCalendar(
        sessions=days,
        opens=tuple(dt.datetime(d.year, d.month, d.day, 14, 30, tzinfo=utc) for d in days),
        closes=tuple(dt.datetime(d.year, d.month, d.day, 21, tzinfo=utc) for d in days),
    )
    assert cal.weekly_scan_session(4, D(2030, 1, 9)) == D(2030, 1, 7)
    assert cal.weekly_scan_session(2, D(2030, 1, 1)) is None


@pytest.mark.parametrize("bad", [5, 6, -1, "saturday", "fr", "", True])
def test_a_weekend_or_unknown_weekday_is_refused(bad):
    with pytest.raises(ValueError, match="weekday"):
        parse_weekday(bad)


def test_an_unknown_cadence_or_a_weekly_one_without_weekday_is_refused():
    with pytest.raises(ValueError, match="cadence"):
        scan_session("monthly", 0, D(2025, 7, 3))
    with pytest.raises(ValueError, match="weekday"):
        scan_session("weekly", None, D(2025, 7, 3))
