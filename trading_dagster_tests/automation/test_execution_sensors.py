"""The execution chain on the calendar: pipeline -> orders -> submissions during D+1 -> reconcile until final.

Ticks are evaluated with Dagster's context builders on an ephemeral instance. The execution assets are the
lead's; here stub assets with the same keys stand in (materialized through `report_runless_asset_event`),
and a hand-written fake broker resource (`get().clock()`) sets "now", as the sensors read it from the
broker. Times are UTC: in 2025 the NYSE opens 13:30Z in summer and 14:30Z in winter.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest

from trading_dagster.automation import execution_sensors as es
from trading_dagster.automation.execution_sensors import (
    ALL_FINAL_KEY,
    CADENCE_TAG,
    EXECUTION_FILLS,
    EXECUTION_ORDERS,
    EXECUTION_SUBMISSIONS,
    build_execution_sensor,
    build_reconciliation_sensor,
    build_weekly_scan_schedule,
    execution_job,
    execution_orders_after_pipeline_sensor,
    execution_orders_job,
    execution_sensor,
    reconcile_job,
    reconciliation_sensor,
    weekly_scan_schedule,
)
from trading_dagster.domain.audit import AuditEvent
from trading_dagster.domain.broker_records import BrokerClock, BrokerError
from trading_dagster.domain.trading_calendar import xnys_trading_calendar
from trading_dagster.partitions import sessions_partitions_def
from trading_dagster.resources.configured import TradingConfigResource
from trading_dagster.resources.ledger import TradingLedger, TradingLedgerResource

PARTITIONS = sessions_partitions_def()


def z(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# ------------------------------------------------------------------------------------------- the fakes


class FakeBroker:
    def __init__(self, clock: BrokerClock) -> None:
        self._clock = clock
        self.closed = False

    def clock(self) -> BrokerClock:
        return self._clock

    def close(self) -> None:
        self.closed = True


class FakeBrokerResource:
    """What the sensors need of `BrokerResource`: `get()` -> a broker with `.clock()`. The market is open
    when the XNYS calendar says so, unless `is_open` says otherwise; `down` makes the clock call fail."""

    def __init__(self, now: dt.datetime, *, is_open: bool | None = None, down: bool = False) -> None:
        self.now, self.is_open, self.down = now, is_open, down
        self.brokers: list[FakeBroker] = []

    def get(self) -> FakeBroker:
        if self.down:
            raise BrokerError("GET /v2/clock: connection refused")
        cal = xnys_trading_calendar()
        current = cal.session_opened_last(self.now)
        calendar_open = current is not None and self.now < cal.open_close(current)[1]
        is_open = calendar_open if self.is_open is None else self.is_open
        broker = FakeBroker(BrokerClock(self.now, is_open, self.now, self.now))
        self.brokers.append(broker)
        return broker


# ------------------------------------------------------------------------- stub assets and definitions


def _stub(key: dg.AssetKey):
    @dg.asset(key=key, partitions_def=PARTITIONS)
    def _a() -> None:
        return None

    return _a


@dg.op
def _noop() -> None:
    return None


@dg.job(name="pipeline_job")
def stub_pipeline_job():
    _noop()


@dg.job(name="execution_job")
def stub_execution_run():
    _noop()


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[_stub(EXECUTION_ORDERS), _stub(EXECUTION_SUBMISSIONS), _stub(EXECUTION_FILLS)],
        jobs=[execution_orders_job, execution_job, reconcile_job],
    )


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def materialize(instance, key: dg.AssetKey, partition: str, **metadata) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
    )


LEDGER: dict[str, str] = {}


@pytest.fixture(autouse=True)
def ledger_path(tmp_path, monkeypatch) -> str:
    """A real trading ledger per test (the execution sensor counts its approvals)."""
    path = str(tmp_path / "trading_ledger.sqlite")
    monkeypatch.setitem(LEDGER, "path", path)
    return path


def resources(now: dt.datetime, **broker_kw) -> dict:
    return {
        "broker": FakeBrokerResource(now, **broker_kw),
        "ledger": TradingLedgerResource(
            path=LEDGER["path"], audit_dir=str(Path(LEDGER["path"]).parent / "audit")
        ),
        "trading_config": TradingConfigResource(),
    }


def tick(sensor, defs, instance, now: dt.datetime, *, cursor: str | None = None, **broker_kw):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=resources(now, **broker_kw)
    )
    return sensor.evaluate_tick(ctx)


def keys(result) -> list[str | None]:
    return [r.run_key for r in result.run_requests]


# -------------------------------------------------------------------------------------------- the jobs


def test_the_jobs_select_the_execution_assets_by_key_on_session_partitions(defs):
    for job, key in [
        (execution_orders_job, EXECUTION_ORDERS),
        (execution_job, EXECUTION_SUBMISSIONS),
        (reconcile_job, EXECUTION_FILLS),
    ]:
        resolved = defs.resolve_job_def(job.name)
        assert resolved.asset_layer.executable_asset_keys == {key}
        assert resolved.partitions_def == PARTITIONS


# -------------------------------------------------------------------------- pipeline -> execution/orders


def pipeline_success(instance, partition: str | None, tags: dict[str, str] | None = None):
    run_tags = dict(tags or {})
    if partition:
        run_tags["dagster/partition"] = partition
    result = stub_pipeline_job.execute_in_process(instance=instance, tags=run_tags)
    return result.dagster_run, result.get_run_success_event()


def orders_tick(instance, partition, now, *, tags=None, **broker_kw):
    run, event = pipeline_success(instance, partition, tags)
    ctx = dg.build_run_status_sensor_context(
        sensor_name=execution_orders_after_pipeline_sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"broker": FakeBrokerResource(now, **broker_kw)},
    )
    return execution_orders_after_pipeline_sensor(ctx)


@pytest.mark.parametrize(
    ("partition", "now"),
    [
        ("2025-07-03", "2025-07-03 22:30"),  # the early close before July 4th, evening
        ("2025-07-03", "2025-07-05 12:00"),  # a late run on the weekend: still the latest session
        ("2025-11-28", "2025-11-28 18:30"),  # 13:30 New York on an early close: the session is complete
        ("2025-03-10", "2025-03-10 22:30"),  # summer time
        ("2025-11-03", "2025-11-03 23:30"),  # winter time
        ("2025-04-17", "2025-04-18 15:00"),  # Good Friday
    ],
)
def test_a_successful_pipeline_run_of_the_latest_session_plans_its_orders_once(instance, partition, now):
    request = orders_tick(instance, partition, z(now))
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"orders-{partition}" and request.partition_key == partition


@pytest.mark.parametrize(
    ("partition", "now", "why"),
    [
        ("2025-07-02", "2025-07-07 22:00", "a later session has completed"),  # re-run of an old session
        ("2025-11-03", "2025-11-03 20:30", "it has not closed yet"),  # 15:30 EST
        ("2025-11-28", "2025-11-28 17:59", "it has not closed yet"),  # a minute before the early close
    ],
)
def test_a_pipeline_run_of_another_session_plans_nothing(instance, partition, now, why):
    result = orders_tick(instance, partition, z(now))
    assert (
        isinstance(result, dg.SkipReason) and why in result.skip_message and partition in result.skip_message
    )


def test_a_range_run_plans_nothing(instance):
    result = orders_tick(instance, None, z("2025-07-03 22:30"))
    assert isinstance(result, dg.SkipReason) and "range" in result.skip_message


def test_the_weekly_cadence_tag_follows_the_orders_run(instance):
    request = orders_tick(instance, "2025-07-03", z("2025-07-03 22:30"), tags={CADENCE_TAG: "weekly"})
    assert request.tags[CADENCE_TAG] == "weekly"


def test_an_unreachable_broker_falls_back_to_the_machine_clock_and_warns(instance, monkeypatch, capfd):
    # a run status sensor that raised would lose this run: Dagster moves its cursor past it either way
    monkeypatch.setattr(es, "now_utc", lambda: z("2025-07-03 22:30"))
    request = orders_tick(instance, "2025-07-03", z("2000-01-01 00:00"), down=True)
    assert isinstance(request, dg.RunRequest) and request.run_key == "orders-2025-07-03"
    assert (
        "clock could not be read (BrokerError); using the machine's clock 2025-07-03 22:30Z"
        in capfd.readouterr().err
    )


# ------------------------------------------------------------------------- execution/orders -> submit


@pytest.mark.parametrize(
    ("planned", "now", "code"),
    [
        ("2025-07-03", "2025-07-04 15:00", "BEFORE_WINDOW"),  # July 4th
        ("2025-07-03", "2025-07-05 15:00", "BEFORE_WINDOW"),  # Saturday
        ("2025-07-03", "2025-07-07 13:29", "BEFORE_WINDOW"),
        ("2025-07-03", "2025-07-07 20:00", "BEFORE_WINDOW"),  # closed: now 07-07's orders wait for 07-08
        ("2025-04-17", "2025-04-18 15:00", "BEFORE_WINDOW"),  # Good Friday
        ("2025-10-31", "2025-11-03 13:45", "BEFORE_WINDOW"),  # 08:45 EST: the summer open time is past
        ("2025-11-26", "2025-11-28 18:00", "BEFORE_WINDOW"),  # 13:00 New York: the early close
    ],
)
def test_no_submission_outside_the_next_session(defs, instance, planned, now, code):
    materialize(instance, EXECUTION_ORDERS, planned)
    result = tick(execution_sensor, defs, instance, z(now))
    assert keys(result) == [] and result.skip_message.startswith(code)


@pytest.mark.parametrize(
    ("planned", "now"),
    [
        ("2025-07-03", "2025-07-07 13:30"),  # after the holiday and the weekend
        ("2025-07-02", "2025-07-03 16:59"),  # a minute before the 13:00 early close
        ("2025-04-17", "2025-04-21 15:00"),  # after Good Friday
        ("2025-11-26", "2025-11-28 17:59"),  # the day after Thanksgiving
        ("2025-12-23", "2025-12-24 17:00"),  # Christmas Eve
        ("2025-03-07", "2025-03-10 13:30"),  # the first summer-time open
        ("2025-10-31", "2025-11-03 14:30"),  # the first winter-time open
    ],
)
def test_planned_orders_are_sent_once_during_the_next_session(defs, instance, planned, now):
    materialize(instance, EXECUTION_ORDERS, planned)
    result = tick(execution_sensor, defs, instance, z(now))
    assert keys(result) == [f"execute-{planned}-a0"]
    assert result.run_requests[0].partition_key == planned
    again = tick(execution_sensor, defs, instance, z(now), cursor=result.cursor)
    assert keys(again) == [] and "already requested" in again.skip_message


def test_nothing_is_sent_without_planned_orders(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-02")  # another session's orders do not count
    result = tick(execution_sensor, defs, instance, z("2025-07-07 15:00"))
    assert keys(result) == [] and result.skip_message.startswith("ORDERS_NOT_PLANNED")
    assert "execution/orders 2025-07-03 is not materialized" in result.skip_message


def test_the_cutoff_stops_submissions_before_an_early_close(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-11-26")
    sensor = build_execution_sensor(cutoff_minutes=30)
    assert keys(tick(sensor, defs, instance, z("2025-11-28 17:29"))) == ["execute-2025-11-26-a0"]
    late = tick(sensor, defs, instance, z("2025-11-28 17:30"))
    assert keys(late) == [] and late.skip_message.startswith("PAST_CUTOFF")
    with pytest.raises(ValueError, match="cutoff"):
        build_execution_sensor(cutoff_minutes=-5)


def test_the_broker_saying_closed_stops_submissions(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    result = tick(execution_sensor, defs, instance, z("2025-07-07 15:00"), is_open=False)
    assert keys(result) == [] and result.skip_message.startswith("BROKER_SAYS_CLOSED")


def test_the_broker_connection_is_released_after_reading_the_clock(defs, instance):
    res = resources(z("2025-07-07 15:00"))
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=res)
    execution_sensor.evaluate_tick(ctx)
    assert [b.closed for b in res["broker"].brokers] == [True]


def decide(kind: str, session: str, cid: str, at: dt.datetime) -> None:
    TradingLedger(LEDGER["path"]).append(
        [
            AuditEvent(
                kind=kind,
                occurred_at=at,
                actor="alice",
                session=dt.date.fromisoformat(session),
                client_order_id=cid,
            )
        ]
    )


def test_an_approval_after_the_first_run_launches_exactly_one_more_run(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    first = tick(execution_sensor, defs, instance, z("2025-07-07 13:31"))
    assert keys(first) == ["execute-2025-07-03-a0"]
    quiet = tick(execution_sensor, defs, instance, z("2025-07-07 13:40"), cursor=first.cursor)
    assert keys(quiet) == [] and "already requested" in quiet.skip_message
    decide("approval", "2025-07-03", "td-A", z("2025-07-07 14:00"))
    second = tick(execution_sensor, defs, instance, z("2025-07-07 14:01"), cursor=first.cursor)
    assert keys(second) == ["execute-2025-07-03-a1"] and second.run_requests[0].partition_key == "2025-07-03"
    again = tick(execution_sensor, defs, instance, z("2025-07-07 14:02"), cursor=second.cursor)
    assert keys(again) == []


def test_refusals_other_sessions_and_late_approvals_launch_nothing(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    first = tick(execution_sensor, defs, instance, z("2025-07-07 13:31"))
    decide("refusal", "2025-07-03", "td-A", z("2025-07-07 14:00"))  # a refusal sends nothing new
    decide("approval", "2025-07-02", "td-B", z("2025-07-07 14:00"))  # another session's approval
    decide("approval", "2025-07-03", "td-C", z("2025-07-07 19:30"))  # after the 15:30 New York deadline
    later = tick(execution_sensor, defs, instance, z("2025-07-07 19:31"), cursor=first.cursor)
    assert keys(later) == [] and "execute-2025-07-03-a0 already requested" in later.skip_message


def test_a_change_of_mind_still_counts_as_a_new_approval(defs, instance):
    # approve A, refuse A, approve B: one approved order before and after, but B is news
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    decide("approval", "2025-07-03", "td-A", z("2025-07-07 13:00"))
    first = tick(execution_sensor, defs, instance, z("2025-07-07 13:31"))
    assert keys(first) == ["execute-2025-07-03-a1"]
    decide("refusal", "2025-07-03", "td-A", z("2025-07-07 14:00"))
    decide("approval", "2025-07-03", "td-B", z("2025-07-07 14:00"))
    assert keys(tick(execution_sensor, defs, instance, z("2025-07-07 14:01"), cursor=first.cursor)) == [
        "execute-2025-07-03-a2"
    ]


def test_no_new_execution_run_while_one_is_running(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    instance.add_run(
        dg.DagsterRun(
            job_name="execution_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-07-03"},
        )
    )
    waiting = tick(execution_sensor, defs, instance, z("2025-07-07 13:31"))
    assert keys(waiting) == [] and "still queued or running" in waiting.skip_message


# ---------------------------------------------------------------------------------- reconciliation


def execution_succeeded(instance, partition: str) -> None:
    stub_execution_run.execute_in_process(instance=instance, tags={"dagster/partition": partition})


def test_no_reconciliation_before_the_execution_run_succeeded(defs, instance):
    result = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:02"))
    assert keys(result) == [] and "2025-07-03's execution run has not succeeded" in result.skip_message


def test_reconcile_every_bucket_until_all_orders_are_final(defs, instance):
    execution_succeeded(instance, "2025-07-03")
    first = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:02"))
    assert keys(first) == ["reconcile-2025-07-03-20250707T1400Z"]
    assert first.run_requests[0].partition_key == "2025-07-03"
    same_bucket = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:04"), cursor=first.cursor)
    assert keys(same_bucket) == [] and "already requested" in same_bucket.skip_message
    materialize(instance, EXECUTION_FILLS, "2025-07-03", **{ALL_FINAL_KEY: False})
    second = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:05"), cursor=first.cursor)
    assert keys(second) == ["reconcile-2025-07-03-20250707T1405Z"]
    materialize(instance, EXECUTION_FILLS, "2025-07-03", **{ALL_FINAL_KEY: True})
    done = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:10"), cursor=second.cursor)
    assert keys(done) == [] and "every order is final" in done.skip_message
    # a later reconciliation that found an order open again starts the polling again
    materialize(instance, EXECUTION_FILLS, "2025-07-03", **{ALL_FINAL_KEY: False})
    assert keys(tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:15"))) == [
        "reconcile-2025-07-03-20250707T1415Z"
    ]


def test_no_second_reconcile_while_one_is_queued(defs, instance):
    execution_succeeded(instance, "2025-07-03")
    instance.add_run(
        dg.DagsterRun(
            job_name="reconcile_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2025-07-03"},
        )
    )
    result = tick(reconciliation_sensor, defs, instance, z("2025-07-07 14:02"))
    assert keys(result) == [] and "still queued or running" in result.skip_message


@pytest.mark.parametrize(
    ("session", "inside", "outside"),
    [
        ("2025-07-03", ["2025-07-07 13:30", "2025-07-07 20:29"], ["2025-07-07 13:29", "2025-07-07 20:30"]),
        ("2025-07-02", ["2025-07-03 17:29"], ["2025-07-03 17:30", "2025-07-04 15:00"]),  # early close + 30
        ("2025-11-26", ["2025-11-28 14:30", "2025-11-28 18:29"], ["2025-11-28 18:30"]),
        ("2025-10-31", ["2025-11-03 14:30", "2025-11-03 21:29"], ["2025-11-03 14:29", "2025-11-03 21:30"]),
        ("2025-03-07", ["2025-03-10 13:30", "2025-03-10 20:29"], ["2025-03-10 13:29", "2025-03-10 20:30"]),
    ],
)
def test_reconciliation_runs_from_the_next_open_to_its_close_plus_grace(
    defs, instance, session, inside, outside
):
    execution_succeeded(instance, session)
    for now in inside:
        result = tick(reconciliation_sensor, defs, instance, z(now))
        assert [r.partition_key for r in result.run_requests] == [session], now
    for now in outside:
        result = tick(reconciliation_sensor, defs, instance, z(now))
        assert keys(result) == [], now


def test_submissions_on_record_without_a_run_start_reconciliation(defs, instance):
    materialize(instance, EXECUTION_SUBMISSIONS, "2025-11-26")  # e.g. `trading-dagster trade`
    sensor = build_reconciliation_sensor(every_minutes=15, grace_minutes=0)
    assert keys(tick(sensor, defs, instance, z("2025-11-28 17:59"))) == [
        "reconcile-2025-11-26-20251128T1745Z"
    ]
    assert keys(tick(sensor, defs, instance, z("2025-11-28 18:00"))) == []


def test_reconciliation_settings_are_bounded():
    with pytest.raises(ValueError, match="every"):
        build_reconciliation_sensor(every_minutes=0)
    with pytest.raises(ValueError, match="grace"):
        build_reconciliation_sensor(grace_minutes=24 * 60)


# ------------------------------------------------------------------------------------------ weekly scan


@pytest.fixture(scope="module")
def wired(tmp_path_factory) -> dg.Definitions:
    """The project's definitions with this module's jobs, sensors and schedule added as the lead wires
    them (stub execution assets stand in until the real ones are in the definitions)."""
    from trading_dagster.definitions import build_definitions
    from trading_dagster.settings import load_settings

    base = build_definitions(load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path_factory.mktemp("d"))}))
    have = {k for a in base.assets or [] for k in getattr(a, "keys", ())}
    jobs = {getattr(j, "name", None) for j in base.jobs or []}
    sensors = {s.name for s in base.sensors or []}
    schedules = {s.name for s in base.schedules or []}
    extra = dg.Definitions(
        assets=[
            _stub(k) for k in (EXECUTION_ORDERS, EXECUTION_SUBMISSIONS, EXECUTION_FILLS) if k not in have
        ],
        jobs=[j for j in (execution_orders_job, execution_job, reconcile_job) if j.name not in jobs],
        sensors=[
            s
            for s in (execution_orders_after_pipeline_sensor, execution_sensor, reconciliation_sensor)
            if s.name not in sensors
        ],
        schedules=[weekly_scan_schedule] if weekly_scan_schedule.name not in schedules else [],
    )
    return dg.Definitions.merge(base, extra)


def test_the_wiring_loads_with_the_project_definitions(wired):
    repo = wired.get_repository_def()
    for name, key in [
        ("execution_orders_job", EXECUTION_ORDERS),
        ("execution_job", EXECUTION_SUBMISSIONS),
        ("reconcile_job", EXECUTION_FILLS),
    ]:
        job = repo.get_job(name)  # a multi-asset that cannot be subset comes whole
        assert job.partitions_def == PARTITIONS and key in job.asset_layer.executable_asset_keys
    assert repo.get_sensor_def("execution_sensor").job_name == "execution_job"
    assert repo.get_sensor_def("reconciliation_sensor").job_name == "reconcile_job"
    assert repo.has_sensor_def("execution_orders_after_pipeline_sensor")
    assert repo.get_schedule_def("weekly_scan_schedule").job_name == "pipeline_job"


def schedule_tick(schedule, when: dt.datetime, wired: dg.Definitions):
    ctx = dg.build_schedule_context(scheduled_execution_time=when, repository_def=wired.get_repository_def())
    return schedule.evaluate_tick(ctx)


def ny(text: str) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2025-04-11 18:45", "2025-04-11"),  # an ordinary Friday
        ("2025-04-17 18:45", "2025-04-17"),  # Thursday before Good Friday
        ("2025-04-18 18:45", None),  # Good Friday
        ("2025-04-16 18:45", None),
        ("2025-07-03 18:45", "2025-07-03"),  # early close, then July 4th (Friday)
        ("2025-03-07 18:45", "2025-03-07"),  # the Friday before summer time
        ("2025-10-31 18:45", "2025-10-31"),  # the Friday before winter time
    ],
)
def test_the_weekly_scan_runs_the_pipeline_on_the_weeks_scan_session(wired, when, expected):
    result = schedule_tick(weekly_scan_schedule, ny(when), wired)
    if expected is None:
        assert result.run_requests == [] and result.skip_message
        return
    [request] = result.run_requests
    assert request.partition_key == expected and request.run_key == f"weekly-scan-{expected}"
    assert request.tags[CADENCE_TAG] == "weekly"


def test_the_weekly_scan_weekday_is_configurable_and_says_which_day_scans(wired):
    monday = build_weekly_scan_schedule("monday")
    assert (
        schedule_tick(monday, ny("2025-01-20 18:45"), wired).skip_message
        == "2025-01-20 is not an NYSE session"
    )
    assert [r.partition_key for r in schedule_tick(monday, ny("2025-01-21 18:45"), wired).run_requests] == [
        "2025-01-21"
    ]
    skipped = schedule_tick(monday, ny("2025-01-22 18:45"), wired)
    assert "not this week's weekly scan session (2025-01-21)" in skipped.skip_message
    assert monday.cron_schedule == "45 18 * * 1-5" and monday.execution_timezone == "America/New_York"
    with pytest.raises(ValueError, match="weekday"):
        build_weekly_scan_schedule("saturday")


def test_a_utc_tick_time_is_read_in_new_york(wired):
    # 2025-04-17 22:45Z is 18:45 EDT on Thursday (the scan session of Good Friday's week)
    [request] = schedule_tick(weekly_scan_schedule, z("2025-04-17 22:45"), wired).run_requests
    assert request.partition_key == "2025-04-17"


def test_everything_is_stopped_by_default():
    for sensor in (execution_orders_after_pipeline_sensor, execution_sensor, reconciliation_sensor):
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert weekly_scan_schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_an_unreadable_cursor_starts_afresh(defs, instance):
    materialize(instance, EXECUTION_ORDERS, "2025-07-03")
    result = tick(execution_sensor, defs, instance, z("2025-07-07 15:00"), cursor="not json")
    assert keys(result) == ["execute-2025-07-03-a0"]
    assert json.loads(result.cursor) == {"requested": "execute-2025-07-03-a0"}
