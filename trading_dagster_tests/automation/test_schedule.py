"""The daily schedule ticks on NYSE sessions only, for the session that just closed."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from trading_dagster.automation.jobs import daily_pipeline_schedule
from trading_dagster.definitions import build_definitions
from trading_dagster.settings import load_settings

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return build_definitions(load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path_factory.mktemp("d"))}))


def tick(defs, when: dt.datetime):
    ctx = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    return daily_pipeline_schedule.evaluate_tick(ctx)


@pytest.mark.parametrize("day", ["2024-03-15", "2022-06-17", "2012-10-31", "2024-12-24"])
def test_a_session_evening_requests_that_session(defs, day):
    result = tick(defs, dt.datetime.fromisoformat(f"{day}T18:30").replace(tzinfo=NY))
    assert [r.partition_key for r in result.run_requests] == [day]
    assert result.run_requests[0].run_key == f"pipeline-{day}"


@pytest.mark.parametrize("day", ["2024-07-04", "2022-06-20", "2012-10-29", "2018-12-05", "2024-03-29"])
def test_a_weekday_holiday_is_skipped_with_a_reason(defs, day):
    result = tick(defs, dt.datetime.fromisoformat(f"{day}T18:30").replace(tzinfo=NY))
    assert result.run_requests == []
    assert "not an NYSE session" in result.skip_message


def test_utc_evening_is_read_in_new_york_time(defs):
    # 2024-03-15 22:30 UTC is 18:30 in New York (EDT): Friday's session, not Saturday
    result = tick(defs, dt.datetime(2024, 3, 15, 22, 30, tzinfo=dt.UTC))
    assert [r.partition_key for r in result.run_requests] == ["2024-03-15"]


def test_the_marts_follow_each_successful_pipeline_run_over_its_sessions():
    import dagster as dg

    from trading_dagster.automation.jobs import marts_request

    def run(tags):
        return dg.DagsterRun(job_name="pipeline_job", run_id="r1", tags=tags)

    ranged = marts_request(run({"dagster/asset_partition_range_start": "2017-06-01",
                                "dagster/asset_partition_range_end": "2017-06-30"}))
    assert isinstance(ranged, dg.RunRequest) and ranged.run_key == "marts-after-r1"
    assert ranged.tags["dagster/asset_partition_range_end"] == "2017-06-30"
    one = marts_request(run({"dagster/partition": "2017-06-02"}))
    assert isinstance(one, dg.RunRequest) and one.partition_key == "2017-06-02"
    assert isinstance(marts_request(run({})), dg.SkipReason)
