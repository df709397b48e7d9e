"""Sensors that raise alerts (resources/alerts.py says where they go): stale raw prices, failed runs.

`raw_freshness_sensor` (STOPPED by default): every 5 minutes, on an NYSE session from its deadline (the
`alerts` resource's `raw_lead_minutes` before the open: 09:00 New York by default), the raw prices of the
previous session must be in the raw store; if not (or if the store cannot be read), one alert for that
session (the cursor remembers the last session alerted). The rule is `domain.freshness.raw_freshness`;
this module only gathers its inputs.

Why not Dagster's own freshness machinery (checked against dagster 1.13.27):

- `build_time_partition_freshness_checks(deadline_cron=...)` (superseded in 1.13 by FreshnessPolicy)
  expects the partition window that is last *as of the deadline tick*. Our partitions have `end_offset=1`
  (today's session is a partition from 00:00, so the evening schedule can run it), so at 09:05 on session D
  it expects partition D itself, which cannot exist before D's close: it would fail every morning. On a
  weekday holiday (2024-07-04 09:05) it expects the *next* session (2024-07-05) and fails; a cron cannot
  skip holidays, and a deadline cron with weekdays only would still fire on them. Measured with the real
  check on our `sessions_partitions_def()`. It also reads Dagster's materialization records, while
  `trading-dagster import` writes raw objects straight into the store without one.
- `build_sensor_for_freshness_checks` only launches those checks; a failed check alerts nobody by itself.
- `FreshnessPolicy.cron/time_window` (the successor) compare the time of the *last materialization* with a
  cron window: not which session is on file (a re-run of an old partition counts as fresh), no holiday
  calendar, and the freshness states it keeps raise alerts only in Dagster+.

`run_failure_alert_sensor` (RUNNING by default): one alert per failed run of any job of this code location
(the pipeline, the landing runs, a materialization launched from the UI) with the job, run id, partition,
the failed step(s) and the first line of each error, and the blocking checks that failed. A failed blocking
check fails its run (`DagsterAssetCheckFailedError` in the checked asset's step), so that alert covers it.
It is on by default because it launches nothing and reads only run history: "alerts when something breaks"
should not depend on someone remembering to switch it on, and it needs no configuration (without a
webhook alerts go to the log and `alerts.jsonl`). Dagster starts a run-status sensor at the newest event
the first time it ticks, so turning it on never replays old failures. The freshness sensor is off by
default because it expects a live daily feed: on the shipped sample (it ends 2017-11-10) it would alert
every session morning.
"""

import dataclasses
import datetime as dt
import json
import re

import dagster as dg

from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.freshness import Freshness, RawFreshness, raw_freshness, session_opens
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.alerts import Alert, AlertsResource
from trading_dagster.resources.configured import RawStoreResource
from trading_dagster.resources.raw_store import RawStore, RawStoreError

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RECENT_DAYS = 14  # list only the last two weeks of raw keys each tick; a full listing only if they are empty
MAX_ERROR_LINE = 300
MAX_LISTED = 5
MAX_METADATA = 4  # metadata entries quoted per failed check
MAX_METADATA_CHARS = 120


def now_utc() -> dt.datetime:
    """The sensor's clock (a function so tests can set the time)."""
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------------------- raw freshness


@dataclasses.dataclass(frozen=True)
class FreshnessCursor:
    alerted: str | None = None  # the last session (ISO date) an alert was sent for

    @classmethod
    def parse(cls, text: str | None) -> "FreshnessCursor":
        try:
            return cls(alerted=json.loads(text).get("alerted") if text else None)
        except (ValueError, AttributeError):
            return cls()  # unreadable: at worst one repeated alert

    def dumps(self) -> str:
        return json.dumps({"alerted": self.alerted})


def latest_stored_session(store: RawStore, up_to: dt.date) -> dt.date | None:
    """The newest session with a raw object on or before `up_to` (None if there is none)."""
    recent = store.list_sessions(start=up_to - dt.timedelta(days=RECENT_DAYS), end=up_to)
    if recent:
        return recent[-1]
    older = store.list_sessions(end=up_to)
    return older[-1] if older else None


def evaluate_raw_freshness(
    now: dt.datetime, store: RawStore, calendar: SessionCalendar, lead: dt.timedelta
) -> RawFreshness:
    """The verdict at `now`; the store is listed only when something is due. A store that cannot be read
    then is stale too (nobody can use prices nobody can read), with the store's error as the reason."""
    opens = session_opens()
    verdict = raw_freshness(now, calendar, None, opens=opens, lead=lead)
    if verdict.status is Freshness.NOT_DUE or verdict.required is None:
        return verdict
    try:
        latest = latest_stored_session(store, verdict.required)
    except RawStoreError as exc:
        return dataclasses.replace(
            verdict,
            message=f"cannot tell whether the raw prices of session {verdict.required} are on file at "
            f"{verdict.now:%Y-%m-%d %H:%M %Z}, past the deadline before the NYSE open of {verdict.session}: "
            f"the raw store failed: {exc}",
        )
    return raw_freshness(now, calendar, latest, opens=opens, lead=lead)


def freshness_alert(verdict: RawFreshness, where: str) -> Alert:
    assert verdict.session is not None and verdict.required is not None and verdict.deadline is not None
    return Alert(
        kind="raw_freshness",
        key=f"raw_freshness:{verdict.session.isoformat()}",
        title=f"Stale raw prices: {verdict.required} not on file before the NYSE open of {verdict.session}",
        text=f"{verdict.message}. Raw store: {where}.",
        details={
            "session": verdict.session.isoformat(),
            "required_session": verdict.required.isoformat(),
            "latest_session": verdict.latest.isoformat() if verdict.latest else None,
            "sessions_behind": verdict.sessions_behind,
            "deadline": verdict.deadline.isoformat(),
            "raw_store": where,
        },
    )


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Alerts once per NYSE session if the previous session's raw prices are not in the raw store by the "
        "deadline before the open (09:00 New York by default). Quiet on weekends and holidays."
    ),
)
def raw_freshness_sensor(
    context: dg.SensorEvaluationContext, raw_store: RawStoreResource, alerts: AlertsResource
) -> dg.SensorResult | dg.SkipReason:
    store = raw_store.get()
    verdict = evaluate_raw_freshness(now_utc(), store, session_calendar(), alerts.raw_lead)
    if not verdict.is_stale:
        return dg.SkipReason(f"{verdict.status.value}: {verdict.message}")
    assert verdict.session is not None
    session = verdict.session.isoformat()
    if FreshnessCursor.parse(context.cursor).alerted == session:
        return dg.SkipReason(f"still stale, already alerted for session {session}: {verdict.message}")
    alerts.sink(context.log).send(freshness_alert(verdict, store.describe()))  # raises: retried next tick
    return dg.SensorResult(
        skip_reason=f"alert sent for session {session}: {verdict.message}",
        cursor=FreshnessCursor(alerted=session).dumps(),
    )


# ------------------------------------------------------------------------------------------ run failures


def first_error_line(error: object | None) -> str:
    """`Class: first line` of the error that explains a failure (and the second line when the first ends
    with a colon): Dagster's wrappers (the step execution error around the user's exception) are skipped
    for their cause; the module path is dropped."""
    if error is None:
        return ""
    while getattr(error, "cause", None) is not None and getattr(error, "cls_name", "").startswith("Dagster"):
        error = error.cause  # type: ignore[attr-defined]
    lines = [part.strip() for part in str(getattr(error, "message", error)).strip().splitlines()]
    line = lines[0] if lines else getattr(error, "cls_name", "") or ""
    if line.endswith(":") and len(lines) > 1:  # "...failed with ERROR severity:" goes on to say which
        line = f"{line} {lines[1]}"
    line = re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=[A-Za-z_]\w*:)", "", line)  # trading_dagster.x.Error: -> Error:
    return line if len(line) <= MAX_ERROR_LINE else line[: MAX_ERROR_LINE - 3] + "..."


def run_partition(tags: dict[str, str]) -> str | None:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG, '')}"
    return None


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """`asset:check: description (metadata)` of each blocking check that failed in the run: the first few
    metadata entries, shortened, since they name what failed (missing sessions, symbols, counts)."""
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None or evaluation.passed or not evaluation.blocking:
            continue
        line = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        description = (evaluation.description or "").strip().splitlines()
        if description:
            line += f": {description[0][:MAX_ERROR_LINE]}"
        facts = [
            f"{k}={_short(getattr(v, 'value', v))}"
            for k, v in list(evaluation.metadata.items())[:MAX_METADATA]
            if not k.startswith("dagster/")
        ]
        out.append(line + (f" ({'; '.join(facts)})" if facts else ""))
    return out


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_METADATA_CHARS else text[: MAX_METADATA_CHARS - 3] + "..."


def run_failure_alert(context: dg.RunFailureSensorContext) -> Alert:
    run = context.dagster_run
    partition = run_partition(dict(run.tags))
    steps = [
        (e.step_key or "?", first_error_line(e.step_failure_data.error))
        for e in context.get_step_failure_events()
    ]
    checks = failed_blocking_checks(context.instance, run.run_id)
    failure_data = context.failure_event.job_failure_data if context.failure_event else None
    run_error = (
        first_error_line(failure_data.error if failure_data else None) or context.failure_event.message
    )
    where = f" (partition {partition})" if partition else ""
    lines = [f"run {run.run_id}"]
    lines += [f"step {key}: {line}" for key, line in steps[:MAX_LISTED]]
    if len(steps) > MAX_LISTED:
        lines.append(f"... and {len(steps) - MAX_LISTED} more failed step(s)")
    if not steps:
        lines.append(f"error: {run_error}")
    lines += [f"blocking check failed: {c}" for c in checks[:MAX_LISTED]]
    if len(checks) > MAX_LISTED:
        lines.append(f"... and {len(checks) - MAX_LISTED} more failed blocking check(s)")
    what = "blocking check failed" if checks else "run failed"
    return Alert(
        kind="run_failure",
        key=f"run_failure:{run.run_id}",
        title=f"{run.job_name} {what}{where}",
        text="\n".join(lines),
        details={
            "job": run.job_name,
            "run_id": run.run_id,
            "partition": partition,
            "failed_steps": [key for key, _ in steps],
            "first_error": steps[0][1] if steps else run_error,
            "failed_blocking_checks": checks,
        },
    )


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts on every failed run of this code location: job, run id, partition, failed steps with the "
        "first error line, and the blocking checks that failed (a failed blocking check fails the run)."
    ),
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    alerts.sink(context.log).send(run_failure_alert(context))
