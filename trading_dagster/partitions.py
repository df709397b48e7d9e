"""One partitions definition for the whole pipeline: NYSE trading sessions.

A weekday cron (00:00 New York) with the exchange's weekday closures as exclusions, so partition keys are
exactly the XNYS sessions from 2008-01-02 (253 in 2008, 250 in 2012, 251 in 2018, 252 in 2024, ...) and
"200 sessions" in a partition mapping means 200 trading days. Holidays come from exchange_calendars; its
horizon reaches about a year past today, which bounds how far ahead the partitions are exact.

Where the partitions end is `TRADING_DAGSTER_LAST_SESSION`:

* `today` (the default, for a live deployment whose data is current): `end_offset=1` makes today's session a
  partition as soon as the day starts, so the daily schedule can materialize session D on D's evening (a
  cron partition otherwise closes only at the next session's start).
* a date (YYYY-MM-DD): the partitions end at the last session on or before it, so on historical data (the
  demo's sample ends 2017-11-10) the UI shows the assets filled up to the last session with data, and the
  Materialize dialog's "last N partitions" are sessions that have data. `trading-dagster demo` and
  `trading-dagster ui` set it from the raw store's last session when the data is historical
  (`last_session_setting`); an explicit value always wins.

The variable is read when the partitions definition is first built, at the import of the asset modules:
`dagster dev`, the webserver, its code server and every run worker they start inherit the environment of the
process that started them, so all of them see one partitions definition.
"""

from __future__ import annotations

import datetime as dt
import os
from functools import cache
from zoneinfo import ZoneInfo

import dagster as dg

from trading_dagster.domain.calendar import FIRST_SESSION, SessionCalendar, nyse_calendar, weekday_closures

SESSION_TIMEZONE = "America/New_York"
SESSION_FMT = "%Y-%m-%d"
LAST_SESSION_ENV = "TRADING_DAGSTER_LAST_SESSION"
TODAY = "today"
# data whose last session is more than this many sessions before the latest completed one is historical
# (a replay or a sample), not a live feed that missed a few deliveries
HISTORICAL_AFTER_SESSIONS = 5


@cache
def session_calendar() -> SessionCalendar:
    return nyse_calendar(FIRST_SESSION)


def new_york_today() -> dt.date:
    return dt.datetime.now(ZoneInfo(SESSION_TIMEZONE)).date()


def parse_last_session(value: str | None, cal: SessionCalendar, today: dt.date) -> dt.date | None:
    """The last partition's session for a `TRADING_DAGSTER_LAST_SESSION` value: None for `today` or unset
    (the partitions run to today's session), else the last session on or before the date given. A value
    that is not a date, before the first session or after today is refused with a message naming it."""
    text = (value or "").strip()
    if text.lower() in ("", TODAY):
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{LAST_SESSION_ENV} must be a date (YYYY-MM-DD) or {TODAY!r}, not {value!r}") from None
    if day > today:
        raise ValueError(
            f"{LAST_SESSION_ENV}={text} is after today ({today}): sessions that have not happened hold no data; "
            f"use {TODAY!r} to end the partitions at today's session"
        )
    on_or_before = cal.before(day + dt.timedelta(days=1), 1)
    if day < cal.first or not on_or_before:
        raise ValueError(f"{LAST_SESSION_ENV}={text} is before the first session ({cal.first})")
    return on_or_before[0]


def last_session_setting(
    last_data_session: dt.date | None, cal: SessionCalendar, today: dt.date, *, live_environment: bool
) -> str:
    """What `demo` and `ui` set `TRADING_DAGSTER_LAST_SESSION` to: `today` for a live deployment (the paper
    or live environments, whatever their data) and for data that is current, so the daily schedule still
    finds today's partition; the last session with data when that is more than HISTORICAL_AFTER_SESSIONS
    sessions before the latest completed session (historical data: a replay, the demo's sample)."""
    if live_environment or last_data_session is None:
        return TODAY
    latest = cal.before(today + dt.timedelta(days=1), 1)  # [the latest session on or before today]
    if not latest:
        return TODAY
    behind = len(cal.between(last_data_session, latest[0])) - 1
    return last_data_session.isoformat() if behind > HISTORICAL_AFTER_SESSIONS else TODAY


def configured_last_session() -> dt.date | None:
    """`TRADING_DAGSTER_LAST_SESSION` from the environment, parsed (None: today)."""
    return parse_last_session(os.environ.get(LAST_SESSION_ENV), session_calendar(), new_york_today())


def sessions_partitions_def() -> dg.TimeWindowPartitionsDefinition:
    """The sessions from the first one to `TRADING_DAGSTER_LAST_SESSION` (module docstring)."""
    return build_sessions_partitions_def(configured_last_session())


@cache
def build_sessions_partitions_def(last_session: dt.date | None) -> dg.TimeWindowPartitionsDefinition:
    """NYSE sessions from FIRST_SESSION to `last_session` inclusive, or to today's session when None."""
    cal = session_calendar()
    closures = weekday_closures(cal, FIRST_SESSION, cal.last)
    if last_session is None:
        bounds: dict = {"end_offset": 1}
    else:
        # a partition's window ends at the next session's 00:00, and Dagster keeps the partitions whose window
        # ends by `end`: the next session (a day later past the calendar's horizon) keeps `last_session`
        after = cal.offset(last_session, 1) or last_session + dt.timedelta(days=1)
        bounds = {"end": after.strftime(SESSION_FMT)}
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        fmt=SESSION_FMT,
        timezone=SESSION_TIMEZONE,
        start=FIRST_SESSION.strftime(SESSION_FMT),
        exclusions=[dt.datetime(d.year, d.month, d.day) for d in closures],
        **bounds,
    )


def partitions_range_text() -> str:
    """The partition range in force, as a person reads it (first .. last session, and why it ends there)."""
    last = configured_last_session()
    keys = sessions_partitions_def()
    end = keys.get_last_partition_key()
    why = f"{LAST_SESSION_ENV}={last}" if last is not None else f"{LAST_SESSION_ENV}={TODAY}: today's session"
    return f"{FIRST_SESSION:%Y-%m-%d} .. {end} ({why})"


def window_sessions(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[dt.date]:
    """The sessions a run must write: its partition time window, one day or a ten-year range alike."""
    window = context.partition_time_window
    start = window.start.date()
    end = (window.end - dt.timedelta(days=1)).date()  # the window end is the next session's 00:00, exclusive
    sessions = session_calendar().between(start, end)
    if not sessions:
        raise ValueError(f"partition window {window.start:%Y-%m-%d}..{window.end:%Y-%m-%d} holds no NYSE session")
    context.log.info(f"{context.op_def.name}: {len(sessions)} sessions {sessions[0]}..{sessions[-1]}")
    return sessions


def lookback_mapping(sessions: int) -> dg.TimeWindowPartitionMapping:
    """`sessions` sessions before each partition plus the partition itself, clipped at the first session."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-sessions, end_offset=0, allow_nonexistent_upstream_partitions=True
    )
