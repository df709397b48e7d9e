"""One partitions definition for the whole pipeline: NYSE trading sessions.

A weekday cron (00:00 New York) with the exchange's weekday closures as exclusions, so partition keys are
exactly the XNYS sessions from 2008-01-02 (253 in 2008, 250 in 2012, 251 in 2018, 252 in 2024, ...) and
"200 sessions" in a partition mapping means 200 trading days. Holidays come from exchange_calendars; its
horizon reaches about a year past today, which bounds how far ahead the partitions are exact.

`end_offset=1` makes today's session a partition as soon as the day starts, so the daily schedule can
materialize session D on D's evening (a cron partition otherwise closes only at the next session's start).
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import dagster as dg

from trading_dagster.domain.calendar import FIRST_SESSION, SessionCalendar, nyse_calendar, weekday_closures

SESSION_TIMEZONE = "America/New_York"
SESSION_FMT = "%Y-%m-%d"


@cache
def session_calendar() -> SessionCalendar:
    return nyse_calendar(FIRST_SESSION)


@cache
def sessions_partitions_def() -> dg.TimeWindowPartitionsDefinition:
    cal = session_calendar()
    closures = weekday_closures(cal, FIRST_SESSION, cal.last)
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        fmt=SESSION_FMT,
        timezone=SESSION_TIMEZONE,
        start=FIRST_SESSION.strftime(SESSION_FMT),
        end_offset=1,
        exclusions=[dt.datetime(d.year, d.month, d.day) for d in closures],
    )


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
