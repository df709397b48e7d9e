"""Manual approval: pending orders become approved / refused / expired; the deadline on D+1."""

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from trading_dagster.domain.approval import (
    apply_decisions,
    approval_deadline,
    pending_ids,
    require_approval,
)
from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.orders import ORDER_SCHEMA

NY = ZoneInfo("America/New_York")
D = dt.date(2017, 6, 1)


def frame(rows):
    cols = list(ORDER_SCHEMA)
    return pl.DataFrame([dict(zip(cols, r, strict=False)) for r in rows], schema=ORDER_SCHEMA)  # no notional: null


def orders():
    return frame(
        [
            (D, "AAPL", "manual_sma", "buy", 4, 4, 153.1, "pending_approval", None, "id-a"),
            (D, "MSFT", "manual_sma", "buy", 4, 3, 70.0, "pending_approval", "QTY_CLIPPED", "id-b"),
            (D, "SPY", "manual_sma", "sell", 2, 2, 240.0, "pending_approval", None, "id-c"),
            (D, "IBM", "auto", "buy", 4, 4, 150.0, "approved", None, "id-d"),
            (D, "GE", "auto", "buy", 4, 0, 27.0, "denied", "LONG_ONLY", "id-e"),
        ]
    )


NOW = dt.datetime(2017, 6, 2, 14, 0, tzinfo=dt.UTC)
DEADLINE = dt.datetime(2017, 6, 2, 19, 30, tzinfo=dt.UTC)


def test_before_the_deadline():
    out = apply_decisions(orders(), {"id-a": "approval", "id-b": "refusal", "id-d": "refusal"}, NOW, DEADLINE)
    assert out.columns == list(ORDER_SCHEMA) and out.schema == orders().schema
    status = dict(zip(out["client_order_id"], out["status"], strict=True))
    reason = dict(zip(out["client_order_id"], out["reason_code"], strict=True))
    assert status == {"id-a": "approved", "id-b": "refused", "id-c": "pending_approval",
                      "id-d": "approved", "id-e": "denied"}  # a decision on a non-pending order changes nothing
    assert reason["id-b"] == "REFUSED_BY_APPROVER" and reason["id-e"] == "LONG_ONLY" and reason["id-a"] is None
    assert pending_ids(out) == ["id-c"]


def test_at_the_deadline_undecided_orders_expire():
    out = apply_decisions(orders(), {"id-b": "approval"}, DEADLINE, DEADLINE)
    status = dict(zip(out["client_order_id"], out["status"], strict=True))
    assert status["id-a"] == status["id-c"] == "expired"
    assert status["id-b"] == "approved"
    assert out.filter(pl.col("client_order_id") == "id-b")["reason_code"][0] == "QTY_CLIPPED"  # kept
    assert set(out.filter(pl.col("status") == "expired")["reason_code"]) == {"APPROVAL_EXPIRED"}


def test_validation_and_empty():
    with pytest.raises(ValueError, match="approval"):
        apply_decisions(orders(), {"id-a": "yes"}, NOW, DEADLINE)
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_decisions(orders(), {}, NOW.replace(tzinfo=None), DEADLINE)
    empty = frame([])
    assert apply_decisions(empty, {"x": "approval"}, NOW, DEADLINE).is_empty()


def test_require_approval_only_touches_approved_orders_of_manual_strategies():
    base = orders().with_columns(status=pl.when(pl.col("status") == "pending_approval")
                                 .then(pl.lit("approved")).otherwise(pl.col("status")))
    out = require_approval(base, {"manual_sma"})
    assert out["status"].to_list() == ["pending_approval"] * 3 + ["approved", "denied"]
    assert out["reason_code"].to_list() == base["reason_code"].to_list()
    assert require_approval(base, []).equals(base)


CAL = SessionCalendar((dt.date(2017, 6, 30), dt.date(2017, 7, 3), dt.date(2017, 7, 5)))


def closes(day):
    return dt.datetime.combine(day, dt.time(13 if day == dt.date(2017, 7, 3) else 16), NY)


def test_deadline_on_the_next_session():
    assert approval_deadline(dt.date(2017, 6, 30), CAL, session_close=closes) == dt.datetime(
        2017, 7, 3, 12, 30, tzinfo=NY)  # early close 13:00: 30 minutes before it
    got = approval_deadline(dt.date(2017, 7, 3), CAL, session_close=closes)
    assert got == dt.datetime(2017, 7, 5, 15, 30, tzinfo=NY) and got.tzinfo == dt.UTC  # skips the holiday
    assert approval_deadline(dt.date(2017, 7, 3), CAL, "10:00", session_close=closes) == dt.datetime(
        2017, 7, 5, 10, 0, tzinfo=NY)
    with pytest.raises(ValueError, match="no session after"):
        approval_deadline(dt.date(2017, 7, 5), CAL, session_close=closes)
    with pytest.raises(ValueError, match="HH:MM"):
        approval_deadline(dt.date(2017, 6, 30), CAL, "3pm", session_close=closes)


def test_deadline_with_the_real_calendar():
    from trading_dagster.domain.calendar import nyse_calendar

    # 2017-11-24 (day after Thanksgiving) closed at 13:00
    assert approval_deadline(dt.date(2017, 11, 22), nyse_calendar()) == dt.datetime(
        2017, 11, 24, 12, 30, tzinfo=NY)
    assert approval_deadline(dt.date(2017, 6, 1), nyse_calendar()) == dt.datetime(
        2017, 6, 2, 15, 30, tzinfo=NY)
