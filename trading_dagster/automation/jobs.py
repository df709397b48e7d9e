"""The main job and its daily schedule on the NYSE calendar."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from trading_dagster.assets.dbt import marts_job
from trading_dagster.assets.trading import PERFORMANCE
from trading_dagster.automation.staleness import UP_TO_DATE_CHECKS
from trading_dagster.partitions import SESSION_TIMEZONE, session_calendar, sessions_partitions_def
from trading_dagster.resources.writer_lock import WRITER_TAG

# the assets from raw to P&L with their checks, except the `__up_to_date` checks: the sensor reports those,
# so a daily run pays nothing for them (automation/staleness.py)
PIPELINE_ASSETS = (
    dg.AssetSelection.groups("raw", "prices", "indicators", "signals", "trading", "pnl")
    - dg.AssetSelection.assets(PERFORMANCE)
    - dg.AssetSelection.checks(*UP_TO_DATE_CHECKS)
)

pipeline_job = dg.define_asset_job(
    "pipeline_job",
    selection=PIPELINE_ASSETS,
    partitions_def=sessions_partitions_def(),
    description="Raw prices to P&L for a session, or a range of sessions in one run (the backtest).",
    tags={WRITER_TAG: "pipeline"},  # queued behind any other writing run (resources/writer_lock.py)
)

performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(PERFORMANCE),
    description="Whole-history performance, Sharpe and drawdown against the benchmark.",
)


@dg.schedule(
    job=pipeline_job,
    cron_schedule="30 18 * * 1-5",
    execution_timezone=SESSION_TIMEZONE,
    description="18:30 New York on every NYSE session: today's session through P&L. Skips market holidays.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext):
    now = context.scheduled_execution_time or dt.datetime.now(ZoneInfo(SESSION_TIMEZONE))
    today = now.astimezone(ZoneInfo(SESSION_TIMEZONE)).date()
    if not session_calendar().is_session(today):
        return dg.SkipReason(f"{today} is not an NYSE session (market holiday)")
    key = today.isoformat()
    return dg.RunRequest(run_key=f"pipeline-{key}", partition_key=key)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[pipeline_job], request_job=performance_job)
def performance_after_pipeline_sensor(context: dg.RunStatusSensorContext):
    """Refresh whole-history performance after every successful pipeline run."""
    return dg.RunRequest(run_key=f"performance-after-{context.dagster_run.run_id}")


RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def marts_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    """The marts for the sessions a successful pipeline run wrote: its range, or its one partition."""
    tags = run.tags or {}
    key = f"marts-after-{run.run_id}"
    if all(t in tags for t in RANGE_TAGS):
        return dg.RunRequest(run_key=key, tags={t: tags[t] for t in RANGE_TAGS})
    if tags.get("dagster/partition"):
        return dg.RunRequest(run_key=key, partition_key=tags["dagster/partition"])
    return dg.SkipReason(f"pipeline run {run.run_id} names no sessions")


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[pipeline_job], request_job=marts_job)
def marts_after_pipeline_sensor(context: dg.RunStatusSensorContext):
    """Rebuild the dbt marts for the sessions of every successful pipeline run (the daily run's session, or a
    backfill's range)."""
    return marts_request(context.dagster_run)
