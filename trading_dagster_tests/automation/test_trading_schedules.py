"""The after-close P&L schedule on the exchange calendar: a session, an early close, a holiday, a weekend."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from trading_dagster.automation.trading_schedules import trading_pnl_after_close_schedule

NY = ZoneInfo("America/New_York")


def _tick(when: dt.datetime):
    return trading_pnl_after_close_schedule(dg.build_schedule_context(scheduled_execution_time=when))


@pytest.mark.parametrize(
    ("when", "signal"),
    [
        (dt.datetime(2025, 6, 3, 16, 30, tzinfo=NY), "2025-06-02"),  # a Tuesday: Monday's orders
        (dt.datetime(2025, 6, 2, 16, 30, tzinfo=NY), "2025-05-30"),  # a Monday: Friday's orders
        (dt.datetime(2025, 11, 28, 16, 30, tzinfo=NY), "2025-11-26"),  # closes 13:00; Thanksgiving before it
        (dt.datetime(2025, 7, 7, 16, 30, tzinfo=NY), "2025-07-03"),  # after the July 4th holiday
    ],
)
def test_after_close_reconciles_the_orders_traded_today(when, signal):
    request = _tick(when)
    assert isinstance(request, dg.RunRequest)
    assert (request.partition_key, request.run_key) == (signal, f"pnl-{signal}")


@pytest.mark.parametrize(
    ("when", "why"),
    [
        (dt.datetime(2025, 7, 4, 16, 30, tzinfo=NY), "not an NYSE session"),
        (dt.datetime(2025, 6, 7, 16, 30, tzinfo=NY), "not an NYSE session"),  # a Saturday
        (dt.datetime(2025, 6, 3, 15, 0, tzinfo=NY), "after the close"),  # a manual tick before the close
    ],
)
def test_no_run_on_a_holiday_a_weekend_or_before_the_close(when, why):
    skip = _tick(when)
    assert isinstance(skip, dg.SkipReason) and why in skip.skip_message
