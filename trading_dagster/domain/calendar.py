"""The NYSE trading calendar (XNYS from exchange_calendars), as plain dates.

Sessions are the unit of everything downstream: partitions, lookbacks ("200 sessions"), the next-session
fill of an order, the monthly purchase quota. Holidays and unscheduled closures (Hurricane Sandy
2012-10-29/30, the 2018-12-05 and 2025-01-09 days of mourning, Juneteenth from 2022) come from the
library, never from a hand-written list.

Building the library's calendar costs ~0.18 s (pandas works out each holiday rule year by year), and every
process that loads the code location pays it at import: a daily run worker, the code server, each CLI
command. So the weekday closures the installed exchange_calendars gives from FIRST_SESSION to a fixed end
are kept beside this module (`CLOSURES_SNAPSHOT`, written by `write_closures_snapshot`), with that
library's version: `nyse_calendar` takes the weekdays minus those closures up to the end the library itself
would use today (`default_end`, a year ahead), and builds the library's calendar only when the snapshot was
written by another exchange_calendars version, or does not reach that far. A test builds the library's
calendar and requires the same sessions, and fails when the snapshot is stale.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CALENDAR_NAME = "XNYS"
FIRST_SESSION = dt.date(2008, 1, 2)
CLOSURES_SNAPSHOT = Path(__file__).with_name("xnys_closures.json")
SNAPSHOT_END = dt.date(2036, 12, 31)


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
    """NYSE sessions from `start` to the end of exchange_calendars' horizon (about a year ahead): from the
    closures snapshot when it was written by the installed exchange_calendars and covers the window, else
    from the library's calendar (module docstring)."""
    import exchange_calendars as xc  # imported lazily: about 1.5 s
    from exchange_calendars.exchange_calendar_xnys import XNYSExchangeCalendar

    end = XNYSExchangeCalendar.default_end().date()  # where xc.get_calendar(...) ends without an `end`
    snapshot = _closures_snapshot(xc.__version__)
    if snapshot is not None and snapshot[0] <= start and end <= snapshot[1]:
        closed = set(snapshot[2])
        return SessionCalendar(tuple(d for d in _weekdays(start, end) if d not in closed))
    return library_calendar(start)


def library_calendar(start: dt.date = FIRST_SESSION, end: dt.date | None = None) -> SessionCalendar:
    """The sessions exchange_calendars' XNYS calendar gives from `start` (to `end`, or its default end)."""
    import exchange_calendars as xc

    cal = xc.get_calendar(CALENDAR_NAME, start=start.isoformat(), end=end.isoformat() if end else None)
    return SessionCalendar(tuple(ts.date() for ts in cal.sessions))


def _weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    n = (end - start).days + 1
    return [d for d in (start + dt.timedelta(days=i) for i in range(n)) if d.weekday() < 5]


def _closures_snapshot(version: str) -> tuple[dt.date, dt.date, list[dt.date]] | None:
    """(start, end, weekday closures) of the snapshot if the installed exchange_calendars wrote it."""
    try:
        saved = json.loads(CLOSURES_SNAPSHOT.read_text())
        if saved["calendar"] != CALENDAR_NAME or saved["exchange_calendars"] != version:
            return None
        return (
            dt.date.fromisoformat(saved["start"]),
            dt.date.fromisoformat(saved["end"]),
            [dt.date.fromisoformat(d) for d in saved["closures"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_closures_snapshot(path: Path = CLOSURES_SNAPSHOT, end: dt.date = SNAPSHOT_END) -> None:
    """Write the snapshot from the installed exchange_calendars (after an upgrade of it, or to reach further:
    `python -c "from trading_dagster.domain.calendar import write_closures_snapshot; write_closures_snapshot()"`)."""
    import exchange_calendars as xc

    cal = library_calendar(FIRST_SESSION, end)
    closures = weekday_closures(cal, FIRST_SESSION, end)
    text = json.dumps(
        {
            "calendar": CALENDAR_NAME,
            "exchange_calendars": xc.__version__,
            "start": FIRST_SESSION.isoformat(),
            "end": end.isoformat(),
            "closures": [d.isoformat() for d in closures],
        },
        indent=0,
    )
    path.write_text(text + "\n")


def weekday_closures(calendar: SessionCalendar, start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which the exchange is closed: the exclusions of a weekday cron."""
    sessions = set(calendar.between(start, end))
    day, out = start, []
    while day <= end:
        if day.weekday() < 5 and day not in sessions:
            out.append(day)
        day += dt.timedelta(days=1)
    return out
