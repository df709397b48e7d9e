"""The NYSE trading calendar (XNYS from exchange_calendars), as plain dates.

Sessions are the unit of everything downstream: partitions, lookbacks ("200 sessions"), the next-session
fill of an order, the monthly purchase quota. Holidays and unscheduled closures (Hurricane Sandy
2012-10-29/30, the 2018-12-05 and 2025-01-09 days of mourning, Juneteenth from 2022) come from the
library, never from a hand-written list.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from functools import cache

CALENDAR_NAME = "XNYS"
FIRST_SESSION = dt.date(2008, 1, 2)


@dataclass(frozen=True)
class SessionCalendar:
    """An ordered tuple of session dates with O(log n) navigation."""

    sessions: tuple[dt.date, ...]

    @property
    def first(self) -> dt.date:
        return self.sessions[0]

    @property
    def last(self) -> dt.date:
        return self.sessions[-1]

    def is_session(self, day: dt.date) -> bool:
        i = bisect.bisect_left(self.sessions, day)
        return i < len(self.sessions) and self.sessions[i] == day

    def index(self, day: dt.date) -> int:
        """Position of a session (0 = first session); raises ValueError for a non-session."""
        i = bisect.bisect_left(self.sessions, day)
        if i == len(self.sessions) or self.sessions[i] != day:
            raise ValueError(f"{day} is not an NYSE session")
        return i

    def between(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Sessions with start <= session <= end."""
        lo = bisect.bisect_left(self.sessions, start)
        hi = bisect.bisect_right(self.sessions, end)
        return list(self.sessions[lo:hi])

    def next_session(self, day: dt.date) -> dt.date | None:
        """First session strictly after `day` (None past the calendar's end)."""
        i = bisect.bisect_right(self.sessions, day)
        return self.sessions[i] if i < len(self.sessions) else None

    def previous_session(self, day: dt.date) -> dt.date | None:
        """Last session strictly before `day` (None before the first session)."""
        i = bisect.bisect_left(self.sessions, day)
        return self.sessions[i - 1] if i > 0 else None

    def before(self, day: dt.date, n: int) -> list[dt.date]:
        """The (up to) n sessions strictly before `day`, ascending; fewer near the calendar's start."""
        i = bisect.bisect_left(self.sessions, day)
        return list(self.sessions[max(0, i - n) : i])

    def offset(self, day: dt.date, n: int) -> dt.date | None:
        """The session n sessions after (n > 0) or before (n < 0) the session `day`."""
        i = self.index(day) + n
        return self.sessions[i] if 0 <= i < len(self.sessions) else None


@cache
def nyse_calendar(start: dt.date = FIRST_SESSION) -> SessionCalendar:
    """NYSE sessions from `start` to the end of exchange_calendars' horizon (about a year ahead)."""
    import exchange_calendars as xc  # imported lazily: about 1.5 s

    cal = xc.get_calendar(CALENDAR_NAME, start=start.isoformat())
    return SessionCalendar(tuple(ts.date() for ts in cal.sessions))


def weekday_closures(calendar: SessionCalendar, start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which the exchange is closed: the exclusions of a weekday cron."""
    sessions = set(calendar.between(start, end))
    day, out = start, []
    while day <= end:
        if day.weekday() < 5 and day not in sessions:
            out.append(day)
        day += dt.timedelta(days=1)
    return out
