"""The daily schedule's tick as the scheduler daemon runs it, on the production instance.

`launch_scheduled_runs` is the function `dagster-daemon`'s scheduler calls every iteration: it reads the
schedules' state from the schedule storage, evaluates the ticks due up to `end_datetime_utc` over the
workspace's code location, records the tick, and submits each requested run to the run coordinator. Here the
workspace is our definitions (the module workspace.yaml names), loaded in this process instead of a gRPC code
server, and the instance is deploy/dagster.yaml's: the tick and the queued run land in PostgreSQL.
"""

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import dagster as dg
import dagster._daemon  # noqa: F401  (before dagster._scheduler: the two import each other, the daemon first)
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    ScheduleInstigatorData,
    TickStatus,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._scheduler.scheduler import launch_scheduled_runs

from trading_dagster.partitions import session_calendar
from trading_dagster.resources.writer_lock import WRITER_TAG

from .conftest import pg_connect

NY = ZoneInfo("America/New_York")


def last_evening_session(now: dt.datetime) -> dt.date:
    """The latest NYSE session whose 18:30 New York tick is before `now`: recent, so the tick is within the
    instance's tick retention (an old tick would be purged as soon as it is recorded)."""
    cal = session_calendar()
    day = now.astimezone(NY).date()
    while not (cal.is_session(day) and dt.datetime.combine(day, dt.time(18, 30), NY) < now):
        day -= dt.timedelta(days=1)
    return day


@pytest.fixture
def workspace(production_instance, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(tmp_path / "data"))
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="trading_dagster.definitions", attribute="defs"),
        location_name="trading_dagster",
    )
    with WorkspaceProcessContext(production_instance.instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


def test_the_daemon_tick_queues_the_run_of_the_session_that_just_closed(workspace, production_instance):
    instance = production_instance.instance
    session = last_evening_session(dt.datetime.now(dt.UTC))
    tick_time = dt.datetime.combine(session, dt.time(18, 30), NY)
    location = next(iter(workspace.create_request_context().get_code_location_entries().values()))
    assert location.code_location is not None, location.load_error
    repo = next(iter(location.code_location.get_repositories().values()))
    schedule = repo.get_schedule("daily_pipeline_schedule")
    # the schedule started (as `dagster schedule start` or the UI's toggle records it) an hour before the tick
    instance.add_instigator_state(
        InstigatorState(
            schedule.get_remote_origin(),
            InstigatorType.SCHEDULE,
            InstigatorStatus.RUNNING,
            ScheduleInstigatorData(schedule.cron_schedule, (tick_time - dt.timedelta(hours=1)).timestamp()),
        )
    )

    list(launch_scheduled_runs(
        workspace, logging.getLogger("scheduler"), tick_time.astimezone(dt.UTC) + dt.timedelta(minutes=1),
        iteration_times={},
    ))

    ticks = instance.get_ticks(schedule.get_remote_origin_id(), schedule.selector_id)
    assert [(t.status, t.timestamp) for t in ticks] == [(TickStatus.SUCCESS, tick_time.timestamp())]
    [run_id] = ticks[0].run_ids
    run = instance.get_run_by_id(run_id)
    assert run.job_name == "pipeline_job" and run.status == dg.DagsterRunStatus.QUEUED  # the daemon's queue
    assert run.tags["dagster/partition"] == session.isoformat()
    assert run.tags["dagster/schedule_name"] == "daily_pipeline_schedule"
    assert run.tags[WRITER_TAG] == "pipeline"  # what the queue's one-writer limit counts
    # the same facts read from PostgreSQL without Dagster
    with pg_connect(production_instance.db) as con, con.cursor() as cur:
        cur.execute("select pipeline_name, status, partition from runs where run_id = %s", (run_id,))
        assert cur.fetchall() == [("pipeline_job", "QUEUED", session.isoformat())]
        cur.execute("select status from job_ticks where selector_id = %s", (schedule.selector_id,))
        assert cur.fetchall() == [("SUCCESS",)]
