"""Dagster event-log entries built by hand, for the tests of our event-log storages."""

import time

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned


def planned_check_entry(
    asset_key: dg.AssetKey,
    check: str,
    keys: list[str] | None,
    *,
    run_id: str = "run-1",
    partitions: dg.PartitionsDefinition | None = None,
) -> dg.EventLogEntry:
    """A check's planned evaluation as a run records it at creation: over the partitions `keys` of
    `partitions` (default: daily from 2008; the partition subset a range run's planned event carries), or
    unpartitioned for None."""
    subset = None
    if keys is not None:
        partitions = partitions or dg.DailyPartitionsDefinition(start_date="2008-01-01")
        subset = partitions.subset_with_partition_keys(keys).to_serializable_subset()
    planned = AssetCheckEvaluationPlanned(asset_key=asset_key, check_name=check, partitions_subset=subset)
    return dg.EventLogEntry(
        error_info=None,
        level=20,
        user_message="",
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
            job_name="pipeline_job",
            event_specific_data=planned,
        ),
    )


def engine_event(run_id: str, i: int) -> dg.EventLogEntry:
    """An engine event with the message `event {i}`: the plainest event a run stores one at a time."""
    from dagster._core.events import EngineEventData

    event = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.ENGINE_EVENT.value,
        job_name="job",
        message=f"event {i}",
        event_specific_data=EngineEventData(),
    )
    return dg.EventLogEntry(
        error_info=None, level=20, user_message="", run_id=run_id, timestamp=time.time(), dagster_event=event
    )
