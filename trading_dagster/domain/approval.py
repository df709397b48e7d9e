"""Manual approval of orders (decision 0005, section 5): a strategy with `approval = "manual"` plans its
orders as usual, but an order our risk engine approved waits, as `pending_approval`, for a person to
approve or refuse it before a deadline on the execution session D+1.

* `require_approval`: the approved orders of manual strategies become `pending_approval`;
* `approval_deadline`: D+1 at 15:30 New York, or 30 minutes before an early close;
* `apply_decisions`: each pending order's effective status: `approved` (a person approved it before the
  deadline), `refused`, `expired` (nobody decided by the deadline), or still `pending_approval`.

Pure: orders frames have `orders.ORDER_SCHEMA`'s columns; "now" and the decisions are given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from zoneinfo import ZoneInfo

import polars as pl

from trading_dagster.domain.calendar import SessionCalendar

NEW_YORK = ZoneInfo("America/New_York")
PENDING_APPROVAL = "pending_approval"
APPROVED = "approved"
REFUSED = "refused"
EXPIRED = "expired"
APPROVAL_STATUSES = (APPROVED, REFUSED, EXPIRED, PENDING_APPROVAL)
REASON_REFUSED = "REFUSED_BY_APPROVER"
REASON_EXPIRED = "APPROVAL_EXPIRED"
DEFAULT_DEADLINE_NY = "15:30"
MIN_BEFORE_CLOSE = dt.timedelta(minutes=30)  # a deadline leaves the submission this long before the close
DECISIONS = {"approval": APPROVED, "refusal": REFUSED}


def require_approval(orders: pl.DataFrame, manual_strategies: Collection[str]) -> pl.DataFrame:
    """The orders with each approved order of a manual strategy set to `pending_approval` (its reason code,
    e.g. a clip's, kept); denied orders stay denied (a person cannot override our risk engine)."""
    manual = list(manual_strategies)
    if not manual or orders.is_empty():
        return orders
    waits = (pl.col("status") == APPROVED) & pl.col("strategy").is_in(manual)
    return orders.with_columns(status=pl.when(waits).then(pl.lit(PENDING_APPROVAL)).otherwise(pl.col("status")))


def _parse_hhmm(text: str) -> dt.time:
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return dt.time(hour, minute)
    except ValueError as exc:
        raise ValueError(f"approval deadline must be HH:MM New York time, not {text!r}") from exc


def _default_close(day: dt.date) -> dt.datetime:
    from trading_dagster.domain.raw_merge import nyse_session_close  # exchange_calendars, lazily

    return nyse_session_close(day)


def approval_deadline(
    session: dt.date,
    calendar: SessionCalendar,
    time_ny: str = DEFAULT_DEADLINE_NY,
    *,
    session_close: Callable[[dt.date], dt.datetime] | None = None,
) -> dt.datetime:
    """When decisions on signal session D's pending orders stop counting (UTC): D+1 (the next session of
    `calendar`) at `time_ny` New York time, but at most 30 minutes before D+1's close (an early close at
    13:00 gives 12:30). `session_close(day)` is the close of a session, early closes included (default:
    exchange_calendars' XNYS)."""
    nxt = calendar.next_session(session)
    if nxt is None:
        raise ValueError(f"no session after {session} in the calendar (it ends {calendar.last})")
    at = dt.datetime.combine(nxt, _parse_hhmm(time_ny), NEW_YORK)
    close = (session_close or _default_close)(nxt)
    if close.tzinfo is None:
        raise ValueError("a session close must be timezone-aware")
    return min(at, close - MIN_BEFORE_CLOSE).astimezone(dt.UTC)


def apply_decisions(
    orders: pl.DataFrame,
    decisions: Mapping[str, str],
    now: dt.datetime,
    deadline: dt.datetime,
) -> pl.DataFrame:
    """Each `pending_approval` order's effective status; every other row unchanged.

    `decisions` maps a client order id to "approval" or "refusal": the decisions made before the deadline
    (`TradingLedger.decisions(session, until=deadline)`). A pending order with an approval is `approved`
    (its reason code, e.g. a clip's, kept), with a refusal `refused` (REFUSED_BY_APPROVER); without one it is `expired` (APPROVAL_EXPIRED) once
    `now >= deadline`, else still `pending_approval`. A decision on an order that is not pending changes
    nothing."""
    if now.tzinfo is None or deadline.tzinfo is None:
        raise ValueError("now and the deadline must be timezone-aware")
    unknown = sorted({v for v in decisions.values() if v not in DECISIONS})
    if unknown:
        raise ValueError(f"a decision is 'approval' or 'refusal', not {unknown}")
    if orders.is_empty():
        return orders
    expired = now >= deadline
    decided = pl.DataFrame(
        {"client_order_id": list(decisions), "_decision": [DECISIONS[v] for v in decisions.values()]},
        schema={"client_order_id": pl.String(), "_decision": pl.String()},
    )
    pending = pl.col("status") == PENDING_APPROVAL
    out = orders.join(decided, on="client_order_id", how="left", maintain_order="left")
    new_status = (
        pl.when(~pending)
        .then(pl.col("status"))
        .when(pl.col("_decision").is_not_null())
        .then(pl.col("_decision"))
        .when(pl.lit(expired))
        .then(pl.lit(EXPIRED))
        .otherwise(pl.col("status"))
    )
    new_reason = (
        pl.when(~pending)
        .then(pl.col("reason_code"))
        .when(pl.col("_decision") == APPROVED)
        .then(pl.col("reason_code"))
        .when(pl.col("_decision") == REFUSED)
        .then(pl.lit(REASON_REFUSED))
        .when(pl.lit(expired))
        .then(pl.lit(REASON_EXPIRED))
        .otherwise(pl.col("reason_code"))
    )
    return out.with_columns(status=new_status, reason_code=new_reason).drop("_decision").select(orders.columns)


def pending_ids(orders: pl.DataFrame) -> list[str]:
    """The client order ids still waiting for a person, in frame order."""
    return orders.filter(pl.col("status") == PENDING_APPROVAL)["client_order_id"].to_list()
