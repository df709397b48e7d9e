"""Raw-price freshness: before session D opens, the raw prices of the session before D must be on file.

The rule, for a moment `now` (any timezone):

- `now` falls on a day that is not an NYSE session (a weekend, a holiday, an unscheduled closure): nothing
  is due, so nothing is stale. Nobody needs prices before an open that does not happen.
- `now` is on session D but before D's deadline (the open minus a lead, 09:30 - 30 min = 09:00 New York by
  default): not due yet.
- from the deadline to the end of D's calendar day: the raw partition of D's previous session must exist.
  It is FRESH if the latest raw session on file is that session (or later), STALE otherwise.

The open comes from exchange_calendars (XNYS); early closes change a session's close, never its open, so
the day after a half day is checked like any other. The deadline is an instant (an aware datetime), so
the rule holds across the daylight-saving changes: 09:00 New York is 14:00 UTC in winter, 13:00 in summer.
No Dagster import: the sensor in automation/alerts.py gathers the inputs and acts on the verdict.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

from trading_dagster.domain.calendar import CALENDAR_NAME, FIRST_SESSION, SessionCalendar

NEW_YORK = ZoneInfo("America/New_York")
# XNYS's open on every session since 2008 (exchange_calendars lists no late open): the fallback only
REGULAR_OPEN = dt.time(9, 30)
DEFAULT_LEAD = dt.timedelta(minutes=30)  # the deadline: 09:00 New York


class Freshness(enum.StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    NOT_DUE = "not_due"


@dataclass(frozen=True)
class RawFreshness:
    """The verdict for one moment, with what it was based on."""

    status: Freshness
    message: str
    now: dt.datetime  # New York time
    session: dt.date | None = None  # D: the session whose open needs the data
    required: dt.date | None = None  # the raw session that must be on file: D's previous session
    deadline: dt.datetime | None = None  # New York time
    latest: dt.date | None = None  # the latest raw session on file (None: none at all)
    sessions_behind: int | None = None  # sessions from `latest` (exclusive) to `required` (inclusive)

    @property
    def is_stale(self) -> bool:
        return self.status is Freshness.STALE


@cache
def session_opens(start: dt.date = FIRST_SESSION) -> Mapping[dt.date, dt.datetime]:
    """The open of every XNYS session from `start` (New York time), from exchange_calendars."""
    import exchange_calendars as xc  # imported lazily: about 1.5 s (cached by nyse_calendar's import too)

    cal = xc.get_calendar(CALENDAR_NAME, start=start.isoformat())
    return {
        session.date(): open_.to_pydatetime().astimezone(NEW_YORK)
        for session, open_ in zip(cal.sessions, cal.opens, strict=True)
    }


def session_open(day: dt.date, opens: Mapping[dt.date, dt.datetime] | None = None) -> dt.datetime:
    """The open of session `day` in New York time: from `opens` when it knows the day, else 09:30."""
    if opens is not None and day in opens:
        return opens[day].astimezone(NEW_YORK)
    return dt.datetime.combine(day, REGULAR_OPEN, tzinfo=NEW_YORK)


def raw_freshness(
    now: dt.datetime,
    calendar: SessionCalendar,
    latest_raw_session: dt.date | None,
    *,
    opens: Mapping[dt.date, dt.datetime] | None = None,
    lead: dt.timedelta = DEFAULT_LEAD,
) -> RawFreshness:
    """Is the raw prices' latest session recent enough at `now`? See the module docstring for the rule.

    `latest_raw_session` is the newest session with a raw object up to the session required (D's previous
    one); a caller may first ask with None to learn whether anything is due and which session is
    required, and list the store only then. Raises ValueError for
    a naive `now`, a negative lead, or a day past the calendar's horizon (about a year ahead), where the
    calendar cannot tell a session from a holiday: better a failed check than a silent one.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    if lead < dt.timedelta(0):
        raise ValueError(f"the lead before the open must not be negative, got {lead}")
    local = now.astimezone(NEW_YORK)
    today = local.date()
    if today > calendar.last:
        raise ValueError(
            f"{today} is past the NYSE calendar's horizon ({calendar.last}): cannot tell whether it is a "
            "session; restart the code location to reload exchange_calendars"
        )
    if not calendar.is_session(today):
        return RawFreshness(Freshness.NOT_DUE, f"{today} ({today:%A}) is not an NYSE session: no open", local)
    open_at = session_open(today, opens)
    deadline = open_at - lead
    required = calendar.previous_session(today)
    base = {"now": local, "session": today, "required": required, "deadline": deadline}
    if required is None:
        return RawFreshness(Freshness.NOT_DUE, f"{today} is the calendar's first session", **base)
    if local < deadline:
        return RawFreshness(
            Freshness.NOT_DUE,
            f"before the {deadline:%H:%M} deadline of session {today} (open {open_at:%H:%M} New York)",
            latest=latest_raw_session,
            **base,
        )
    if latest_raw_session is not None and latest_raw_session >= required:
        return RawFreshness(
            Freshness.FRESH,
            f"raw prices of {required} are on file for the {open_at:%H:%M} open of session {today}",
            latest=latest_raw_session,
            sessions_behind=0,
            **base,
        )
    behind = _sessions_behind(calendar, latest_raw_session, required)
    on_file = (
        f"the latest raw session on file is {latest_raw_session} ({behind} session(s) behind)"
        if latest_raw_session is not None
        else "there are no raw sessions on file at all"
    )
    return RawFreshness(
        Freshness.STALE,
        f"raw prices of session {required} are missing at {local:%Y-%m-%d %H:%M %Z}, past the "
        f"{deadline:%H:%M} deadline before the NYSE open of {today} at {open_at:%H:%M} New York: {on_file}",
        latest=latest_raw_session,
        sessions_behind=behind,
        **base,
    )


def _sessions_behind(calendar: SessionCalendar, latest: dt.date | None, required: dt.date) -> int | None:
    if latest is None:
        return None
    return len(calendar.between(latest + dt.timedelta(days=1), required))
