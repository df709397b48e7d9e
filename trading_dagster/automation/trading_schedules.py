"""The trading book's P&L after the close (decision 0005, section 4): at 16:30 New York on every session
(after an early close too), one more `reconcile_job` run for the orders executed today, so
`execution/account` holds the account as it closed, whatever the reconciliation sensor saw during the day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from trading_dagster.automation.execution_sensors import reconcile_job
from trading_dagster.domain.trading_calendar import TradingCalendar, xnys_trading_calendar
from trading_dagster.partitions import SESSION_TIMEZONE


def after_close_request(now: dt.datetime, calendar: TradingCalendar) -> dg.RunRequest | dg.SkipReason:
    """The reconcile run for the signal session whose orders traded today (today must be a session whose
    close has passed)."""
    today = now.astimezone(ZoneInfo(SESSION_TIMEZONE)).date()
    if not calendar.is_session(today):
        return dg.SkipReason(f"{today} is not an NYSE session: nothing traded")
    _, close = calendar.open_close(today)
    if now.astimezone(dt.UTC) < close:
        return dg.SkipReason(f"{today} closes at {close:%H:%M}Z: the P&L is taken after the close")
    signal = calendar.previous_session(today)
    if signal is None:
        return dg.SkipReason(f"no session before {today} in the calendar")
    return dg.RunRequest(run_key=f"pnl-{signal.isoformat()}", partition_key=signal.isoformat())


@dg.schedule(
    job=reconcile_job,
    cron_schedule="30 16 * * 1-5",
    execution_timezone=SESSION_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="16:30 New York on every session: the account after the close for the orders traded today "
    "(execution/fills and execution/account of the previous session). Skips market holidays.",
)
def trading_pnl_after_close_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    return after_close_request(now, xnys_trading_calendar())
