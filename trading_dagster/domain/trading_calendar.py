"""When session D's orders may be planned, sent and reconciled: the exchange calendar with open and close
times (decision 0005, section 4). Plain Python, no Dagster.

`domain/calendar.py` knows session *dates*; this module adds each session's open and close in UTC from
exchange_calendars' XNYS schedule, so early closes (13:00 New York on the day after Thanksgiving, on
2025-12-24, ...) and both daylight-saving changes (a 09:30 open is 13:30Z in summer, 14:30Z in winter) come
from the library, never from a hand-written rule.

"Now" is always passed in: the broker's clock (`BrokerClock`, or its `timestamp`), never read here.

The rules, for a signal session D (the session whose close produced the signals):

* `execution_window(D)`: the open and close of the next session D+1, the only time D's orders may reach a
  broker.
* `may_submit(D, now, cutoff_minutes)`: inside that window, and at least `cutoff_minutes` before its close.
  Given a `BrokerClock`, the broker must agree that the market is open (an unscheduled closure the library
  does not know yet stops trading too). The verdict is falsy with a reason code and a sentence when not.
* `latest_completed_session(now)`: the last session whose close is at or before `now`.
* `is_stale(D, now)`: a later session has completed since D: D's signals are out of date and its orders
  must never be planned or sent.
* `scan_session(cadence, weekday, session)`: for a weekly strategy, whether `session` is its week's scan
  session. The rule chosen: the configured weekday when it is a session; when it is a holiday, the last
  session before it in the same week (Good Friday 2025-04-18 -> Thursday 2025-04-17: the scan still happens
  before the weekend and its orders still go in on Monday, as on a normal Friday); when no session precedes
  it in that week (a Monday holiday for a Monday scan), the first session after it in that week (one scan a
  week, never two in the previous week). A week without any session has no scan.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from functools import cache

from trading_dagster.domain.broker_records import BrokerClock
from trading_dagster.domain.calendar import CALENDAR_NAME, FIRST_SESSION

CADENCES = ("daily", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")

# reason codes of may_submit
OK = "OK"
NOT_A_SESSION = "NOT_A_SESSION"
BEYOND_CALENDAR = "BEYOND_CALENDAR"
BEFORE_WINDOW = "BEFORE_WINDOW"
PAST_CUTOFF = "PAST_CUTOFF"
WINDOW_CLOSED = "WINDOW_CLOSED"
BROKER_SAYS_CLOSED = "BROKER_SAYS_CLOSED"


@dataclass(frozen=True)
class SubmitVerdict:
    """Whether D's orders may go to the broker now. Truthy only when they may; `code` is one of the reason
    codes above, `reason` a sentence naming the session, the window and the time."""

    allowed: bool
    code: str
    reason: str
    window: tuple[dt.datetime, dt.datetime] | None = None

    def __bool__(self) -> bool:
        return self.allowed


def _utc(now: dt.datetime | BrokerClock) -> dt.datetime:
    stamp = now.timestamp if isinstance(now, BrokerClock) else now
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise ValueError(f"'now' must be timezone-aware, got {stamp!r}")
    return stamp.astimezone(dt.UTC)


def _z(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")


@dataclass(frozen=True)
class TradingCalendar:
    """Sessions with their open and close (UTC, aware), ascending. Build it with `xnys_trading_calendar()`
    (or by hand in a test)."""

    sessions: tuple[dt.date, ...]
    opens: tuple[dt.datetime, ...]
    closes: tuple[dt.datetime, ...]

    def __post_init__(self) -> None:
        if not (len(self.sessions) == len(self.opens) == len(self.closes)) or not self.sessions:
            raise ValueError("a trading calendar needs as many opens and closes as sessions, and one session")
        if any(a >= b for a, b in zip(self.sessions, self.sessions[1:], strict=False)):
            raise ValueError("sessions must be strictly ascending")

    # -- navigation ------------------------------------------------------------------------------------

    def _index(self, session: dt.date) -> int:
        i = bisect.bisect_left(self.sessions, session)
        if i == len(self.sessions) or self.sessions[i] != session:
            raise ValueError(f"{session} is not an NYSE session")
        return i

    def is_session(self, day: dt.date) -> bool:
        i = bisect.bisect_left(self.sessions, day)
        return i < len(self.sessions) and self.sessions[i] == day

    def open_close(self, session: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """The session's open and close in UTC (early closes included)."""
        i = self._index(session)
        return self.opens[i], self.closes[i]

    def next_session(self, day: dt.date) -> dt.date | None:
        i = bisect.bisect_right(self.sessions, day)
        return self.sessions[i] if i < len(self.sessions) else None

    def previous_session(self, day: dt.date) -> dt.date | None:
        i = bisect.bisect_left(self.sessions, day)
        return self.sessions[i - 1] if i > 0 else None

    # -- the rules -------------------------------------------------------------------------------------

    def execution_window(self, signal_session: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """(open, close) in UTC of the session after `signal_session`: when its orders may be sent. A
        ValueError for a non-session or a session past the calendar's horizon."""
        self._index(signal_session)
        nxt = self.next_session(signal_session)
        if nxt is None:
            raise ValueError(f"the session after {signal_session} is past the calendar's horizon")
        return self.open_close(nxt)

    def may_submit(
        self, signal_session: dt.date, now: dt.datetime | BrokerClock, cutoff_minutes: int = 0
    ) -> SubmitVerdict:
        """Whether session D's orders may be sent at `now`: during D+1's session, before its close minus
        `cutoff_minutes`; with a BrokerClock, only while the broker also says the market is open."""
        if cutoff_minutes < 0:
            raise ValueError(f"cutoff_minutes must be >= 0, got {cutoff_minutes}")
        t = _utc(now)
        d = signal_session
        if not self.is_session(d):
            return SubmitVerdict(
                False, NOT_A_SESSION, f"{d} is not an NYSE session: it has no orders to send"
            )
        nxt = self.next_session(d)
        if nxt is None:
            return SubmitVerdict(
                False, BEYOND_CALENDAR, f"the session after {d} is past the calendar's horizon"
            )
        opens, closes = self.open_close(nxt)
        cutoff = closes - dt.timedelta(minutes=cutoff_minutes)
        window = (opens, closes)
        where = f"{d}'s orders go in during {nxt} ({_z(opens)}..{_z(closes)})"
        if t < opens:
            return SubmitVerdict(False, BEFORE_WINDOW, f"{where}; it is {_z(t)}, before the open", window)
        if t >= closes:
            return SubmitVerdict(
                False,
                WINDOW_CLOSED,
                f"{where}; it is {_z(t)}, after the close: {d} is past and never traded",
                window,
            )
        if t >= cutoff:
            return SubmitVerdict(
                False,
                PAST_CUTOFF,
                f"{where}; it is {_z(t)}, past the cutoff {cutoff_minutes} min before the close ({_z(cutoff)})",
                window,
            )
        if isinstance(now, BrokerClock) and not now.is_open:
            return SubmitVerdict(
                False,
                BROKER_SAYS_CLOSED,
                f"{where}; it is {_z(t)} but the broker says the market is closed",
                window,
            )
        return SubmitVerdict(True, OK, f"{where}; it is {_z(t)}: open", window)

    def latest_completed_session(self, now: dt.datetime | BrokerClock) -> dt.date | None:
        """The last session whose close is at or before `now` (None before the calendar's first close)."""
        i = bisect.bisect_right(self.closes, _utc(now))
        return self.sessions[i - 1] if i > 0 else None

    def is_stale(self, signal_session: dt.date, now: dt.datetime | BrokerClock) -> bool:
        """True when a session after `signal_session` has completed by `now`: D's signals are out of date.
        A session not yet completed is not stale (it is not ready either: see `latest_completed_session`)."""
        latest = self.latest_completed_session(now)
        return latest is not None and signal_session < latest

    def session_opened_last(self, now: dt.datetime | BrokerClock) -> dt.date | None:
        """The last session whose open is at or before `now` (the one in progress, or the last one)."""
        i = bisect.bisect_right(self.opens, _utc(now))
        return self.sessions[i - 1] if i > 0 else None

    def reconcile_session(self, now: dt.datetime | BrokerClock, grace: dt.timedelta) -> dt.date | None:
        """The signal session D whose orders are being filled at `now`: D+1 has opened and `now` is before
        D+1's close plus `grace`. None between that and the next open."""
        current = self.session_opened_last(now)
        if current is None:
            return None
        d = self.previous_session(current)
        if d is None:
            return None
        _, closes = self.open_close(current)
        return d if _utc(now) < closes + grace else None

    def scan_session(self, cadence: str, weekday: int | str | None, session: dt.date) -> bool:
        """Whether a strategy of this cadence scans (computes signals) on `session`: every session when
        "daily"; for "weekly", only its week's scan session (module docstring: the weekday, else the last
        session before it in that week, else the first after it in that week)."""
        if cadence not in CADENCES:
            raise ValueError(f"cadence must be one of {CADENCES}, got {cadence!r}")
        if not self.is_session(session):
            return False
        if cadence == "daily":
            return True
        if weekday is None:
            raise ValueError("a weekly cadence needs a weekday")
        return self.weekly_scan_session(parse_weekday(weekday), session) == session

    def weekly_scan_session(self, weekday: int, day: dt.date) -> dt.date | None:
        """The scan session of the (Monday-based) week holding `day` for a weekly scan on `weekday`."""
        monday = day - dt.timedelta(days=day.weekday())
        target = monday + dt.timedelta(days=weekday)
        week = [monday + dt.timedelta(days=k) for k in range(5)]
        if self.is_session(target):
            return target
        before = [d for d in week if d < target and self.is_session(d)]
        if before:
            return before[-1]
        after = [d for d in week if d > target and self.is_session(d)]
        return after[0] if after else None


def parse_weekday(weekday: int | str) -> int:
    """0..4 (Monday..Friday) from an int or a name ("friday", "fri", case-insensitive)."""
    if isinstance(weekday, bool):
        raise ValueError(f"weekday must be Monday..Friday, got {weekday!r}")
    if isinstance(weekday, int):
        if 0 <= weekday <= 4:
            return weekday
        raise ValueError(f"weekday must be 0 (Monday) .. 4 (Friday), got {weekday}")
    name = str(weekday).strip().lower()
    for i, full in enumerate(WEEKDAYS):
        if name == full or (len(name) >= 3 and full.startswith(name)):
            return i
    raise ValueError(f"weekday must be Monday..Friday, got {weekday!r}")


@cache
def xnys_trading_calendar(start: dt.date = FIRST_SESSION) -> TradingCalendar:
    """XNYS sessions with their open and close, from `start` to exchange_calendars' horizon."""
    import exchange_calendars as xc  # imported lazily, as in domain/calendar.py

    schedule = xc.get_calendar(CALENDAR_NAME, start=start.isoformat()).schedule
    return TradingCalendar(
        sessions=tuple(ts.date() for ts in schedule.index),
        opens=tuple(ts.to_pydatetime().astimezone(dt.UTC) for ts in schedule["open"]),
        closes=tuple(ts.to_pydatetime().astimezone(dt.UTC) for ts in schedule["close"]),
    )


# -- the same rules on the XNYS calendar -----------------------------------------------------------------


def execution_window(signal_session: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return xnys_trading_calendar().execution_window(signal_session)


def may_submit(
    signal_session: dt.date, now: dt.datetime | BrokerClock, cutoff_minutes: int = 0
) -> SubmitVerdict:
    return xnys_trading_calendar().may_submit(signal_session, now, cutoff_minutes)


def latest_completed_session(now: dt.datetime | BrokerClock) -> dt.date | None:
    return xnys_trading_calendar().latest_completed_session(now)


def is_stale(signal_session: dt.date, now: dt.datetime | BrokerClock) -> bool:
    return xnys_trading_calendar().is_stale(signal_session, now)


def scan_session(cadence: str, weekday: int | str | None, session: dt.date) -> bool:
    return xnys_trading_calendar().scan_session(cadence, weekday, session)
