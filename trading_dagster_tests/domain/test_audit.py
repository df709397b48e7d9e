"""Audit events: deterministic ids (what identifies an event, never when it was recorded) and the line."""

import datetime as dt
from decimal import Decimal

import pytest

from trading_dagster.domain.audit import EVENT_KINDS, KILL_SWITCH_ON, AuditEvent, audit_line

T = dt.datetime(2017, 6, 2, 13, 31, 7, tzinfo=dt.UTC)
D = dt.date(2017, 6, 1)
CID = "td-20170601-AAPL-0123456789abcdef"


def fill(**kw) -> AuditEvent:
    base = dict(kind="fill", occurred_at=T, session=D, client_order_id=CID, symbol="AAPL", side="buy",
                qty=Decimal("4"), price=Decimal("153.12"), ref="exec-1")
    return AuditEvent(**(base | kw))


def test_fill_line_reads_like_the_spec():
    assert audit_line(fill()) == f"2017-06-02 13:31:07Z  FILL  AAPL buy 4 @ 153.12  {CID}  (pipeline)"


def test_line_with_reason_and_no_order_is_one_line():
    e = AuditEvent(kind="kill_switch", occurred_at=T, actor="Ada Lovelace", reason_code=KILL_SWITCH_ON,
                   reason="broker outage\nstop buying", details={"engaged": True})
    line = audit_line(e)
    assert "\n" not in line
    assert line == "2017-06-02 13:31:07Z  KILL_SWITCH  KILL_SWITCH_ENGAGED: broker outage stop buying  (Ada Lovelace)"


def test_session_named_when_no_order_id():
    e = AuditEvent(kind="approval_expired", occurred_at=T, session=D, reason_code="APPROVAL_EXPIRED")
    assert "session 2017-06-01" in audit_line(e)


def test_fill_id_is_the_execution_id_only():
    a = fill()
    b = fill(occurred_at=T + dt.timedelta(hours=1), session=dt.date(2017, 6, 2), recorded_at=T)
    assert a.event_id == b.event_id  # same execution, reported again: the same event
    assert fill(ref="exec-2").event_id != a.event_id


def test_pipeline_order_events_ignore_time_but_not_outcome():
    d1 = AuditEvent(kind="denial", occurred_at=T, session=D, client_order_id=CID, qty=Decimal(0),
                    reason_code="QTY_OVER_MONTHLY_LIMIT", reason="4 shares this month")
    again = AuditEvent(kind="denial", occurred_at=T + dt.timedelta(days=3), session=D, client_order_id=CID,
                       qty=Decimal("0.0"), reason_code="QTY_OVER_MONTHLY_LIMIT", reason="other words")
    other = AuditEvent(kind="denial", occurred_at=T, session=D, client_order_id=CID, qty=Decimal(0),
                       reason_code="LONG_ONLY")
    assert d1.event_id == again.event_id
    assert d1.event_id != other.event_id
    sub = AuditEvent(kind="submission", occurred_at=T, session=D, client_order_id=CID)
    assert sub.event_id != AuditEvent(kind="rejection", occurred_at=T, session=D, client_order_id=CID).event_id


def test_human_acts_at_different_times_are_different_events():
    on1 = AuditEvent(kind="kill_switch", occurred_at=T, actor="ada", reason_code=KILL_SWITCH_ON)
    on2 = AuditEvent(kind="kill_switch", occurred_at=T + dt.timedelta(seconds=1), actor="ada",
                     reason_code=KILL_SWITCH_ON)
    assert on1.event_id != on2.event_id
    assert on1.engaged is True and fill().engaged is None
    a1 = AuditEvent(kind="approval", occurred_at=T, actor="ada", session=D, client_order_id=CID)
    assert a1.event_id == AuditEvent(kind="approval", occurred_at=T, actor="ada", session=D,
                                     client_order_id=CID, reason="typo fixed").event_id
    assert a1.event_id != AuditEvent(kind="approval", occurred_at=T, actor="bob", session=D,
                                     client_order_id=CID).event_id


def test_times_are_utc_and_must_be_aware():
    ny = dt.timezone(dt.timedelta(hours=-4))
    e = fill(occurred_at=dt.datetime(2017, 6, 2, 9, 31, 7, tzinfo=ny))
    assert e.occurred_at == T and e.occurred_at.tzinfo == dt.UTC
    assert e.event_id == fill().event_id
    with pytest.raises(ValueError, match="timezone-aware"):
        fill(occurred_at=dt.datetime(2017, 6, 2))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"kind": "bogus"}, "unknown audit event kind"),
        ({"ref": None}, "needs ref"),
        ({"actor": " "}, "needs an actor"),
        ({"details": {"x": object()}}, None),  # default=str makes anything serializable
    ],
)
def test_validation(kw, match):
    if match is None:
        fill(**kw)
        return
    with pytest.raises(ValueError, match=match):
        fill(**kw)


def test_every_kind_has_an_identity_and_floats_become_decimals():
    for kind in EVENT_KINDS:
        e = AuditEvent(kind=kind, occurred_at=T, ref="r", qty=3, price=1.5)
        assert len(e.event_id) == 32
        assert e.qty == Decimal(3) and e.price == Decimal("1.5")


def test_events_of_an_orders_frame_and_of_submit_results():
    import polars as pl

    from trading_dagster.domain.audit import expiry_events, order_events, submission_events
    from trading_dagster.domain.broker_records import BrokerOrder, OrderRequest, SubmitResult
    from trading_dagster.domain.orders import ORDER_SCHEMA

    rows = [
        (D, "AAPL", "sma", "buy", 4, 4, 153.12, "approved", None, "id-a"),
        (D, "GE", "sma", "buy", 4, 0, 27.0, "denied", "LONG_ONLY", "id-b"),
        (D, "MSFT", "man", "buy", 4, 3, 70.0, "pending_approval", "QTY_CLIPPED", "id-c"),
        (D, "IBM", "man", "buy", 4, 4, 150.0, "expired", "APPROVAL_EXPIRED", "id-d"),
    ]
    frame = pl.DataFrame([dict(zip(ORDER_SCHEMA, r, strict=False)) for r in rows], schema=ORDER_SCHEMA)  # no notional: null
    events = order_events(frame, T)
    assert [e.kind for e in events] == ["signal", "decision", "signal", "denial", "signal", "pending_approval",
                                        "signal"]
    assert events[1].price == Decimal("153.12") and events[3].reason_code == "LONG_ONLY"
    later = order_events(frame, T + dt.timedelta(days=1))
    assert [e.event_id for e in later] == [e.event_id for e in events]  # a re-run: the same events
    assert [e.client_order_id for e in expiry_events(frame, T)] == ["id-d"]

    req = OrderRequest(client_order_id="id-a", session=D, strategy="sma", symbol="AAPL", side="buy", qty=Decimal(4))
    order = BrokerOrder(id="o-1", client_order_id="id-a", symbol="AAPL", side="buy", type="market",
                        time_in_force="day", status="accepted", qty=Decimal(4), notional=None, filled_qty=Decimal(0),
                        filled_avg_price=None, submitted_at=T, updated_at=T)
    first = submission_events([SubmitResult(req, "submitted", order)], T)
    again = submission_events([SubmitResult(req, "already_existed", order)], T + dt.timedelta(hours=1))
    assert first[0].kind == "submission" and first[0].event_id == again[0].event_id
    (rej,) = submission_events([SubmitResult(req, "rejected", None, "40310000", "insufficient buying power")], T)
    assert rej.kind == "rejection" and "REJECTION  AAPL buy 4  id-a  40310000: insufficient buying power" in audit_line(rej)
