"""The execution chain on the exchange calendar (decision 0005, section 4): jobs, sensors and the weekly
scan schedule. The rules are `domain/trading_calendar.py`'s; this module gathers their inputs (the broker's
clock, Dagster's run and materialization records) and turns verdicts into run requests or skip reasons.

Jobs (partitioned by session D; the assets are referred to by key, so this module does not import them):

* `execution_orders_job`  `execution/orders`       plan D's orders against the broker's snapshot;
* `execution_job`         `execution/submissions`  send them during D+1;
* `reconcile_job`         `execution/fills`        poll D's orders, record fills, compare with the ledger.

Sensors ("now" is the broker's clock, `BrokerResource.get().clock()`):

* `execution_orders_after_pipeline_sensor` (run status): a successful `pipeline_job` run of one partition D,
  when D is the latest completed session -> `execution_orders_job` for D, run key `orders-{D}` (once per
  D). A range run (a backfill) or an old D requests nothing. A run status sensor that raises loses the run
  it was looking at (Dagster moves its cursor past it either way), so if the broker's clock cannot be read
  this sensor falls back to the machine's clock with a warning rather than miss D; the orders asset checks
  the broker's clock again before it plans anything.
* `execution_sensor`: every minute, D = the latest completed session on the broker's clock; if D's orders
  may be sent now (`may_submit`: during D+1, before its close minus the cutoff, the broker saying the market
  is open) and `execution/orders` D is materialized -> `execution_job` for D, run key `execute-{D}-a{k}`,
  k = the number of approval events recorded for D in the trading ledger before the approval deadline. So
  an order a person approves after D's first execution run launches one more run (submission is exactly
  once: it sends only what is new), and nothing else does. k counts approval *events*, not the orders
  whose latest decision is an approval: that count can go back to a value already used (approve A,
  refuse A, approve B) and the run key would then hide B's approval. Never while an execution run for D
  is queued or running (the next tick after it requests what it did not see). A SkipReason says which
  condition is missing. The cursor remembers the last run key requested.
* `reconciliation_sensor`: from D+1's open to its close plus a grace period, once D's execution run has
  succeeded (or `execution/submissions` D is materialized, as `trading-dagster trade` may do) ->
  `reconcile_job` for D every `every_minutes`, run key `reconcile-{D}-{bucket start}`; never while a
  reconcile run for D is still queued or running; stops once the latest `execution/fills` D
  materialization has the metadata `all_final = true`.

Schedule:

* `weekly_scan_schedule`: every weekday at 18:45 New York; on the week's scan session of the configured
  weekday (`scan_session`: a holiday moves it to the last session before it in that week) -> `pipeline_job`
  for that session tagged `trading_dagster/cadence=weekly`, run key `weekly-scan-{D}`. Meant for books whose
  strategies are all weekly, instead of the daily schedule.

All four are STOPPED by default (they trade, or run the pipeline a second time); `build_*` make them with
other settings (cutoff, cadence, grace, weekday, default status) for the definitions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from trading_dagster.automation.jobs import pipeline_job
from trading_dagster.domain.approval import approval_deadline
from trading_dagster.domain.broker_records import BrokerClock
from trading_dagster.domain.trading_calendar import (
    TradingCalendar,
    parse_weekday,
    xnys_trading_calendar,
)
from trading_dagster.partitions import SESSION_TIMEZONE, session_calendar, sessions_partitions_def
from trading_dagster.resources.configured import BrokerResource, TradingConfigResource
from trading_dagster.resources.ledger import TradingLedger, TradingLedgerResource

EXECUTION_ORDERS = dg.AssetKey(["execution", "orders"])
EXECUTION_SUBMISSIONS = dg.AssetKey(["execution", "submissions"])
EXECUTION_FILLS = dg.AssetKey(["execution", "fills"])
PARTITION_TAG = "dagster/partition"
CADENCE_TAG = "trading_dagster/cadence"
SIGNAL_SESSION_TAG = "trading_dagster/signal_session"
ALL_FINAL_KEY = "all_final"

DEFAULT_CUTOFF_MINUTES = 0
DEFAULT_RECONCILE_EVERY_MINUTES = 5
DEFAULT_RECONCILE_GRACE_MINUTES = 30
DEFAULT_SCAN_WEEKDAY = "friday"

_IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def now_utc() -> dt.datetime:
    """The machine's clock: only the fallback of the run status sensor (a function so tests can set it)."""
    return dt.datetime.now(dt.UTC)


def trading_calendar() -> TradingCalendar:
    return xnys_trading_calendar()


# ------------------------------------------------------------------------------------------------ jobs


def _with_siblings(key: dg.AssetKey) -> dg.AssetSelection:
    """The asset, its checks, and the other keys of its multi-asset when that cannot be subset (the
    submissions asset also writes execution/book_before): a job can only run such an asset whole."""
    return dg.AssetSelection.assets(key).required_multi_asset_neighbors()


execution_orders_job = dg.define_asset_job(
    "execution_orders_job",
    selection=_with_siblings(EXECUTION_ORDERS),
    partitions_def=sessions_partitions_def(),
    description="Plan session D's orders against the broker's snapshot (reads the broker, never writes it).",
)

execution_job = dg.define_asset_job(
    "execution_job",
    selection=_with_siblings(EXECUTION_SUBMISSIONS),
    partitions_def=sessions_partitions_def(),
    description="Send session D's approved orders to the broker during session D+1, before its close.",
)

reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=_with_siblings(EXECUTION_FILLS),
    partitions_def=sessions_partitions_def(),
    description="Poll session D's orders, record their fills once, reconcile positions and cash.",
)

EXECUTION_JOBS = (execution_orders_job, execution_job, reconcile_job)


# ------------------------------------------------------------------------------------------ the records


def broker_clock(broker: Any) -> BrokerClock:
    """The broker's clock: one call, the connection released."""
    client = broker.get()
    try:
        return client.clock()
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> dg.AssetMaterialization | None:
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1, ascending=False
    )
    return result.records[0].asset_materialization if result.records else None


def metadata_true(materialization: dg.AssetMaterialization | None, name: str) -> bool:
    """Whether the materialization's metadata `name` is true (a bool, or the text "true")."""
    if materialization is None or name not in materialization.metadata:
        return False
    value = materialization.metadata[name]
    value = getattr(value, "value", value)
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def runs_of(
    instance: dg.DagsterInstance, job_name: str, partition: str, statuses: list[dg.DagsterRunStatus]
) -> list[dg.DagsterRun]:
    return list(
        instance.get_runs(
            filters=dg.RunsFilter(job_name=job_name, statuses=statuses, tags={PARTITION_TAG: partition}),
            limit=1,
        )
    )


def _cursor(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


# ---------------------------------------------------------------------- pipeline -> execution/orders


def orders_request(
    run_tags: Mapping[str, str], now: dt.datetime | BrokerClock, calendar: TradingCalendar
) -> dg.RunRequest | dg.SkipReason:
    """After a successful pipeline run: orders for its session D when D is the latest completed session."""
    key = run_tags.get(PARTITION_TAG)
    if not key:
        return dg.SkipReason("the pipeline run was not of one session (a range backfill): nothing to trade")
    try:
        session = dt.date.fromisoformat(key)
    except ValueError:
        return dg.SkipReason(f"the pipeline run's partition {key!r} is not a session date")
    latest = calendar.latest_completed_session(now)
    if session != latest:
        why = "a later session has completed" if latest and session < latest else "it has not closed yet"
        return dg.SkipReason(
            f"pipeline run of {session} succeeded, but {session} is not the latest completed session "
            f"({latest}): {why}, so its orders are not planned"
        )
    tags = {SIGNAL_SESSION_TAG: key}
    if CADENCE_TAG in run_tags:
        tags[CADENCE_TAG] = run_tags[CADENCE_TAG]
    return dg.RunRequest(run_key=f"orders-{key}", partition_key=key, tags=tags)


def build_execution_orders_after_pipeline_sensor(
    *,
    name: str = "execution_orders_after_pipeline_sensor",
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[pipeline_job],
        request_job=execution_orders_job,
        default_status=default_status,
        description=(
            "After a successful pipeline run of session D, when D is the broker clock's latest completed "
            "session: plan D's orders (execution_orders_job, once per D)."
        ),
    )
    def _sensor(context: dg.RunStatusSensorContext, broker: BrokerResource):
        try:
            now: dt.datetime | BrokerClock = broker_clock(broker)
        except Exception as exc:  # noqa: BLE001 - raising here would lose this run (module docstring)
            now = now_utc()
            context.log.warning(
                f"the broker's clock could not be read ({type(exc).__name__}); using the machine's clock "
                f"{now:%Y-%m-%d %H:%MZ}: the orders asset checks the broker's clock again"
            )
        return orders_request(dict(context.dagster_run.tags), now, trading_calendar())

    return _sensor


# ------------------------------------------------------------------------- execution/orders -> submit


def approvals_before_deadline(ledger: TradingLedger, session: dt.date, deadline: dt.datetime) -> int:
    """How many approval events the ledger holds for session D's orders before the approval deadline
    (every decision event counts, a change of mind included, so the number only grows)."""
    return sum(
        1 for e in ledger.audit_events(kinds=["approval"], session=session) if e.occurred_at < deadline
    )


def execution_run_key(session: dt.date, approvals: int) -> str:
    return f"execute-{session.isoformat()}-a{approvals}"


def execution_request(
    instance: dg.DagsterInstance,
    clock: BrokerClock,
    calendar: TradingCalendar,
    *,
    cutoff_minutes: int = DEFAULT_CUTOFF_MINUTES,
    cursor: str | None = None,
    approvals: Callable[[dt.date], int] | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """`approvals(D)`: the approval events of D before the deadline (None: 0, no approvals read)."""
    session = calendar.latest_completed_session(clock)
    if session is None:
        return dg.SkipReason("no session has completed yet on the broker's clock")
    verdict = calendar.may_submit(session, clock, cutoff_minutes)
    if not verdict:
        return dg.SkipReason(f"{verdict.code}: {verdict.reason}")
    key = session.isoformat()
    if latest_materialization(instance, EXECUTION_ORDERS, key) is None:
        return dg.SkipReason(
            f"ORDERS_NOT_PLANNED: {verdict.reason}, but execution/orders {key} is not materialized"
        )
    run_key = execution_run_key(session, approvals(session) if approvals is not None else 0)
    if _cursor(cursor).get("requested") == run_key:
        return dg.SkipReason(f"{run_key} already requested (no approval since)")
    if runs_of(instance, execution_job.name, key, _IN_PROGRESS):
        return dg.SkipReason(f"an execution run for {key} is still queued or running; {run_key} waits for it")
    request = dg.RunRequest(run_key=run_key, partition_key=key, tags={SIGNAL_SESSION_TAG: key})
    return dg.SensorResult(run_requests=[request], cursor=json.dumps({"requested": run_key}))


def build_execution_sensor(
    *,
    name: str = "execution_sensor",
    cutoff_minutes: int = DEFAULT_CUTOFF_MINUTES,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    if not 0 <= cutoff_minutes < 390:
        raise ValueError(
            f"the submission cutoff must be 0..389 minutes before the close, not {cutoff_minutes}"
        )

    @dg.sensor(
        name=name,
        job=execution_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "During session D+1 (broker clock, early closes included), before its close"
            + (f" minus {cutoff_minutes} min" if cutoff_minutes else "")
            + ": send session D's planned orders (execution_job), and again after each approval recorded "
            "before the approval deadline."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        broker: BrokerResource,
        ledger: TradingLedgerResource,
        trading_config: TradingConfigResource,
    ):
        book = ledger.get()

        def approvals(session: dt.date) -> int:
            deadline = approval_deadline(session, session_calendar(), trading_config.approval_deadline)
            return approvals_before_deadline(book, session, deadline)

        return execution_request(
            context.instance,
            broker_clock(broker),
            trading_calendar(),
            cutoff_minutes=cutoff_minutes,
            cursor=context.cursor,
            approvals=approvals,
        )

    return _sensor


# ---------------------------------------------------------------------------------- reconciliation


def execution_succeeded(instance: dg.DagsterInstance, partition: str) -> bool:
    """D's execution run succeeded, or `execution/submissions` D is on record (the `trade` command)."""
    if runs_of(instance, execution_job.name, partition, [dg.DagsterRunStatus.SUCCESS]):
        return True
    return latest_materialization(instance, EXECUTION_SUBMISSIONS, partition) is not None


def bucket_start(now: dt.datetime, every_minutes: int) -> dt.datetime:
    """The start of the `every_minutes` bucket (aligned on the UTC epoch) holding `now`."""
    epoch_minutes = int(now.astimezone(dt.UTC).timestamp() // 60)
    start = epoch_minutes - epoch_minutes % every_minutes
    return dt.datetime.fromtimestamp(start * 60, dt.UTC)


def reconcile_request(
    instance: dg.DagsterInstance,
    clock: BrokerClock,
    calendar: TradingCalendar,
    *,
    every_minutes: int = DEFAULT_RECONCILE_EVERY_MINUTES,
    grace_minutes: int = DEFAULT_RECONCILE_GRACE_MINUTES,
    cursor: str | None = None,
) -> dg.SensorResult | dg.SkipReason:
    now = clock.timestamp.astimezone(dt.UTC)
    session = calendar.reconcile_session(now, dt.timedelta(minutes=grace_minutes))
    if session is None:
        return dg.SkipReason(
            f"{now:%Y-%m-%d %H:%MZ}: no session's orders are being filled (outside D+1's open to its close "
            f"plus {grace_minutes} min)"
        )
    key = session.isoformat()
    if not execution_succeeded(instance, key):
        return dg.SkipReason(f"{key}'s execution run has not succeeded yet: nothing to reconcile")
    if metadata_true(latest_materialization(instance, EXECUTION_FILLS, key), ALL_FINAL_KEY):
        return dg.SkipReason(f"{key}: every order is final (execution/fills {ALL_FINAL_KEY} = true)")
    if runs_of(instance, reconcile_job.name, key, _IN_PROGRESS):
        return dg.SkipReason(f"a reconcile run for {key} is still queued or running")
    run_key = f"reconcile-{key}-{bucket_start(now, every_minutes):%Y%m%dT%H%MZ}"
    if _cursor(cursor).get("requested") == run_key:
        return dg.SkipReason(f"{run_key} already requested; the next in {every_minutes} min bucket")
    request = dg.RunRequest(run_key=run_key, partition_key=key, tags={SIGNAL_SESSION_TAG: key})
    return dg.SensorResult(run_requests=[request], cursor=json.dumps({"requested": run_key}))


def build_reconciliation_sensor(
    *,
    name: str = "reconciliation_sensor",
    every_minutes: int = DEFAULT_RECONCILE_EVERY_MINUTES,
    grace_minutes: int = DEFAULT_RECONCILE_GRACE_MINUTES,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    if not 1 <= every_minutes <= 120:
        raise ValueError(f"reconcile every 1..120 minutes, not {every_minutes}")
    # the window of D ends before D+1's own window can start (the next open, 17.5 hours later at least)
    if not 0 <= grace_minutes <= 600:
        raise ValueError(
            f"the reconcile grace period must be 0..600 minutes after the close, not {grace_minutes}"
        )

    @dg.sensor(
        name=name,
        job=reconcile_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"From session D+1's open to {grace_minutes} min after its close, once D's execution run "
            f"succeeded: reconcile D's fills every {every_minutes} min until every order is final."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, broker: BrokerResource):
        return reconcile_request(
            context.instance,
            broker_clock(broker),
            trading_calendar(),
            every_minutes=every_minutes,
            grace_minutes=grace_minutes,
            cursor=context.cursor,
        )

    return _sensor


# ------------------------------------------------------------------------------------------ weekly scan


def weekly_scan_request(
    now: dt.datetime, weekday: int | str, calendar: TradingCalendar
) -> dg.RunRequest | dg.SkipReason:
    today = now.astimezone(ZoneInfo(SESSION_TIMEZONE)).date()
    if not calendar.is_session(today):
        return dg.SkipReason(f"{today} is not an NYSE session")
    wd = parse_weekday(weekday)
    if not calendar.scan_session("weekly", wd, today):
        scan = calendar.weekly_scan_session(wd, today)
        return dg.SkipReason(f"{today} is not this week's weekly scan session ({scan})")
    key = today.isoformat()
    return dg.RunRequest(run_key=f"weekly-scan-{key}", partition_key=key, tags={CADENCE_TAG: "weekly"})


def build_weekly_scan_schedule(
    weekday: int | str = DEFAULT_SCAN_WEEKDAY,
    *,
    name: str = "weekly_scan_schedule",
    hour: int = 18,
    minute: int = 45,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    wd = parse_weekday(weekday)  # a bad weekday fails when the definitions load
    if not (16 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(
            f"the weekly scan must tick after the close (16:00..23:59 New York), not {hour}:{minute}"
        )

    @dg.schedule(
        name=name,
        job=pipeline_job,
        cron_schedule=f"{minute} {hour} * * 1-5",  # every weekday: a holiday moves the scan to another day
        execution_timezone=SESSION_TIMEZONE,
        default_status=default_status,
        description=(
            f"{hour:02d}:{minute:02d} New York on the week's scan session ({weekday}, or the last session "
            "before it that week): the pipeline for that session, tagged trading_dagster/cadence=weekly."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        return weekly_scan_request(now, wd, trading_calendar())

    return _schedule


execution_orders_after_pipeline_sensor = build_execution_orders_after_pipeline_sensor()
execution_sensor = build_execution_sensor()
reconciliation_sensor = build_reconciliation_sensor()
weekly_scan_schedule = build_weekly_scan_schedule()
