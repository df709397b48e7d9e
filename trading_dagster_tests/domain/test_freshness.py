"""The raw-freshness rule (domain/freshness): due on sessions only, from the lead before the XNYS open."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.freshness import Freshness, raw_freshness, session_open, session_opens

NY = ZoneInfo("America/New_York")
CAL = nyse_calendar()
OPENS = session_opens()
D = dt.date.fromisoformat


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def verdict(now: dt.datetime, latest: str | None, **kw):
    return raw_freshness(now, CAL, D(latest) if latest else None, opens=OPENS, **kw)


# ------------------------------------------------------------------------------------ an ordinary week


def test_at_the_deadline_yesterdays_session_must_be_on_file():
    fresh = verdict(ny("2024-07-02T09:00"), "2024-07-01")
    assert fresh.status is Freshness.FRESH and not fresh.is_stale
    assert (fresh.session, fresh.required, fresh.sessions_behind) == (D("2024-07-02"), D("2024-07-01"), 0)
    assert fresh.deadline == ny("2024-07-02T09:00")

    stale = verdict(ny("2024-07-02T09:00"), "2024-06-28")
    assert stale.status is Freshness.STALE and stale.is_stale
    assert stale.required == D("2024-07-01") and stale.sessions_behind == 1
    assert "raw prices of session 2024-07-01 are missing at 2024-07-02 09:00 EDT" in stale.message
    assert "09:00 deadline before the NYSE open of 2024-07-02 at 09:30 New York" in stale.message
    assert "latest raw session on file is 2024-06-28 (1 session(s) behind)" in stale.message


def test_before_the_deadline_nothing_is_due_even_with_no_data():
    early = verdict(ny("2024-07-02T08:59:59"), None)
    assert early.status is Freshness.NOT_DUE
    assert early.required == D("2024-07-01")  # what will be due, so a caller can list up to it
    assert "before the 09:00 deadline of session 2024-07-02" in early.message


def test_the_whole_session_day_after_the_deadline_is_checked():
    assert verdict(ny("2024-07-02T23:59"), "2024-06-28").is_stale
    assert verdict(ny("2024-07-02T16:30"), "2024-07-01").status is Freshness.FRESH


def test_a_later_session_on_file_counts_as_fresh():
    assert verdict(ny("2024-07-02T10:00"), "2024-07-02").status is Freshness.FRESH


def test_no_raw_data_at_all_is_stale():
    v = verdict(ny("2024-07-02T09:30"), None)
    assert v.is_stale and v.latest is None and v.sessions_behind is None
    assert "there are no raw sessions on file at all" in v.message


# ------------------------------------------------------------------------------ weekends and holidays


@pytest.mark.parametrize(
    "when",
    [
        "2024-07-06T09:05",  # Saturday
        "2024-07-07T12:00",  # Sunday
        "2024-07-04T09:05",  # Independence Day, a Thursday
        "2024-03-29T10:00",  # Good Friday
        "2022-06-20T09:30",  # Juneteenth (observed since 2022)
        "2012-10-29T09:00",  # Hurricane Sandy
        "2012-10-30T09:00",
        "2018-12-05T09:00",  # national day of mourning (G. H. W. Bush)
        "2025-01-09T09:00",  # national day of mourning (Carter)
    ],
)
def test_no_alert_on_a_day_without_a_session(when):
    v = verdict(ny(when), None)  # even with nothing on file
    assert v.status is Freshness.NOT_DUE
    assert "is not an NYSE session" in v.message
    assert v.session is None and v.required is None


@pytest.mark.parametrize(
    ("when", "required"),
    [
        ("2024-07-08T09:00", "2024-07-05"),  # Monday: Friday's session
        ("2024-07-05T09:00", "2024-07-03"),  # the day after a holiday skips it
        ("2024-04-01T09:00", "2024-03-28"),  # Monday after Good Friday
        ("2012-10-31T09:00", "2012-10-26"),  # after the two Sandy closures
        ("2018-12-06T09:00", "2018-12-04"),
        ("2024-01-02T09:00", "2023-12-29"),  # the first session of a year
    ],
)
def test_the_session_required_is_the_previous_session_not_the_previous_day(when, required):
    assert verdict(ny(when), required).status is Freshness.FRESH
    stale = verdict(ny(when), "2008-01-02")
    assert stale.is_stale and stale.required == D(required)


def test_sessions_behind_counts_sessions_not_days():
    v = verdict(ny("2024-07-08T09:00"), "2024-07-02")  # missing 07-03 and 07-05; 07-04 was a holiday
    assert v.sessions_behind == 2


def test_the_first_session_of_the_calendar_needs_nothing():
    assert verdict(ny("2008-01-02T09:30"), None).status is Freshness.NOT_DUE


# ---------------------------------------------------------------------------------------- early closes


def test_a_half_day_keeps_its_09_30_open_and_is_required_the_next_session():
    assert session_open(D("2024-11-29"), OPENS) == ny("2024-11-29T09:30")  # closes 13:00, opens as usual
    black_friday = verdict(ny("2024-11-29T09:00"), "2024-11-26")
    assert black_friday.is_stale and black_friday.required == D("2024-11-27")  # Thanksgiving skipped
    assert black_friday.deadline == ny("2024-11-29T09:00")
    monday = verdict(ny("2024-12-02T09:00"), "2024-11-29")
    assert monday.status is Freshness.FRESH and monday.required == D("2024-11-29")


def test_christmas_eve_half_day_is_required_on_the_26th():
    v = verdict(ny("2024-12-26T09:00"), "2024-12-23")
    assert v.is_stale and v.required == D("2024-12-24")


# ------------------------------------------------------------------------------------ time zones, DST


@pytest.mark.parametrize(
    ("before", "at", "session"),
    [
        ("2024-03-08T13:59", "2024-03-08T14:00", "2024-03-08"),  # EST: 09:00 New York is 14:00 UTC
        ("2024-03-11T12:59", "2024-03-11T13:00", "2024-03-11"),  # Monday after DST began: 13:00 UTC
        ("2024-11-01T12:59", "2024-11-01T13:00", "2024-11-01"),  # last EDT session
        ("2024-11-04T13:59", "2024-11-04T14:00", "2024-11-04"),  # Monday after DST ended: 14:00 UTC again
    ],
)
def test_the_deadline_is_09_00_new_york_across_daylight_saving(before, at, session):
    assert verdict(utc(before), None).status is Freshness.NOT_DUE
    due = verdict(utc(at), None)
    assert due.is_stale and due.session == D(session)
    assert due.deadline == utc(at)


def test_the_day_is_new_yorks_not_utcs():
    # 02:00 UTC on Tuesday is 22:00 on Monday in New York: Monday's session, after its deadline
    v = verdict(utc("2024-07-09T02:00"), "2024-07-03")
    assert v.is_stale and v.session == D("2024-07-08") and v.required == D("2024-07-05")
    # 03:00 UTC on Saturday is Friday evening in New York: a session, not the weekend
    assert verdict(utc("2024-07-06T03:00"), "2024-07-05").session == D("2024-07-05")


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        verdict(dt.datetime(2024, 7, 2, 9, 0), None)


# ---------------------------------------------------------------------------------- lead and open


@pytest.mark.parametrize(("minutes", "deadline"), [(0, "09:30"), (30, "09:00"), (90, "08:00")])
def test_the_lead_before_the_open_is_configurable(minutes, deadline):
    lead = dt.timedelta(minutes=minutes)
    at = ny(f"2024-07-02T{deadline}")
    assert verdict(at - dt.timedelta(seconds=1), None, lead=lead).status is Freshness.NOT_DUE
    v = verdict(at, None, lead=lead)
    assert v.is_stale and v.deadline == at


def test_the_open_comes_from_the_calendar_opens_when_given():
    late = {D("2024-07-02"): ny("2024-07-02T11:00")}  # a hypothetical late open
    v = raw_freshness(ny("2024-07-02T10:00"), CAL, None, opens=late)
    assert v.status is Freshness.NOT_DUE and v.deadline == ny("2024-07-02T10:30")
    assert raw_freshness(ny("2024-07-02T10:30"), CAL, None, opens=late).is_stale
    # without a mapping (or a day it does not know) the regular 09:30 open applies
    assert raw_freshness(ny("2024-07-02T09:00"), CAL, None).is_stale


def test_every_xnys_open_is_09_30_new_york():
    assert set(OPENS) == set(CAL.sessions)
    assert {o.strftime("%H:%M %Z") for o in OPENS.values()} <= {"09:30 EST", "09:30 EDT"}


def test_a_negative_lead_and_a_day_past_the_horizon_are_errors():
    with pytest.raises(ValueError, match="must not be negative"):
        verdict(ny("2024-07-02T09:00"), None, lead=dt.timedelta(minutes=-1))
    past = dt.datetime.combine(CAL.last + dt.timedelta(days=1), dt.time(9), tzinfo=NY)
    with pytest.raises(ValueError, match="past the NYSE calendar's horizon"):
        verdict(past, None)


# -------------------------------------------------------------------------------------------- invariants


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(2008, 2, 1), max_value=dt.datetime(2026, 12, 31)),
    behind=st.integers(min_value=0, max_value=5),
)
def test_stale_exactly_when_due_and_the_previous_session_is_missing(moment, behind):
    now = moment.replace(tzinfo=dt.UTC)
    local = now.astimezone(NY)
    today = local.date()
    anchor = CAL.previous_session(today)
    latest = CAL.offset(anchor, -behind)
    v = raw_freshness(now, CAL, latest, opens=OPENS)
    due = CAL.is_session(today) and local >= dt.datetime.combine(today, dt.time(9), tzinfo=NY)
    if not due:
        assert v.status is Freshness.NOT_DUE
    else:
        assert v.required == anchor and v.required < v.session == today
        assert v.status is (Freshness.STALE if behind else Freshness.FRESH)
        assert v.sessions_behind == behind
