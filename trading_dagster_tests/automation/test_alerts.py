"""The alerting sensors: raw freshness before the open, and failed runs (including failed blocking checks).

Freshness ticks run through `build_sensor_context` with a real local raw store under tmp_path and the
sensor's clock set by the test (`now_utc` is the one thing replaced). Run-failure alerts come from real
failed runs on an ephemeral instance, fed to the sensor with `build_run_status_sensor_context`. The
built-in sink writes to a JSON-lines file the tests read back; the webhook goes to a server on 127.0.0.1.
"""

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from dagster._utils.error import SerializableErrorInfo

from trading_dagster.automation import alerts as alerts_module
from trading_dagster.automation.alerts import (
    FreshnessCursor,
    evaluate_raw_freshness,
    first_error_line,
    latest_stored_session,
    raw_freshness_sensor,
    run_failure_alert_sensor,
)
from trading_dagster.automation.sensors import RANGE_END_TAG, RANGE_START_TAG, raw_landing_job
from trading_dagster.definitions import build_definitions
from trading_dagster.domain.freshness import Freshness
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.alerts import WEBHOOK_ENV_VAR, AlertDeliveryError, AlertsResource
from trading_dagster.resources.configured import LocalRawStoreResource
from trading_dagster.resources.raw_store import LocalRawStore, RawStoreError
from trading_dagster.settings import DEFAULT_CONFIG_FILE, load_settings
from trading_dagster_tests.fakes.webhook_server import (
    SECRET_TOKEN,
    WebhookServer,
    no_proxy_env,
    serve_webhook,
)

NY = ZoneInfo("America/New_York")
D = dt.date.fromisoformat


@pytest.fixture
def webhook_server(monkeypatch) -> Iterator[WebhookServer]:
    no_proxy_env(monkeypatch)
    with serve_webhook() as server:
        yield server


@pytest.fixture(autouse=True)
def no_real_webhook(monkeypatch):
    monkeypatch.delenv(WEBHOOK_ENV_VAR, raising=False)  # a developer's own webhook must never be called


def bars(day: dt.date) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["AAPL"],
            "date": [day],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
            "volume": [1],
        }
    )


class Lake:
    """A local raw store, the alerts resource writing under the same folder, and the sensor's clock."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.raw_store = LocalRawStoreResource(local_root=str(root / "lake"))
        self.store: LocalRawStore = self.raw_store.get()  # type: ignore[assignment]
        self.alerts = AlertsResource(jsonl_path=str(root / "alerts.jsonl"))
        self._monkeypatch = monkeypatch

    def write(self, *days: str) -> None:
        for day in days:
            self.store.write_session(D(day), bars(D(day)))

    def tick(self, when: str, cursor: str | None = None, alerts: AlertsResource | None = None):
        now = dt.datetime.fromisoformat(when).replace(tzinfo=NY)
        self._monkeypatch.setattr(alerts_module, "now_utc", lambda: now.astimezone(dt.UTC))
        ctx = dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            cursor=cursor,
            resources={"raw_store": self.raw_store, "alerts": alerts or self.alerts},
        )
        return raw_freshness_sensor.evaluate_tick(ctx)

    def alerts_written(self) -> list[dict]:
        path = self.root / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def lake(tmp_path, monkeypatch) -> Lake:
    return Lake(tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------- freshness


def test_a_missing_previous_session_at_the_deadline_raises_one_alert(lake):
    lake.write("2024-07-01", "2024-07-02", "2024-07-03")  # Friday 07-05 never arrived
    result = lake.tick("2024-07-08T09:05")
    assert result.run_requests == []
    assert FreshnessCursor.parse(result.cursor).alerted == "2024-07-08"
    assert "alert sent for session 2024-07-08" in result.skip_message
    (alert,) = lake.alerts_written()
    assert alert["kind"] == "raw_freshness" and alert["key"] == "raw_freshness:2024-07-08"
    assert alert["title"] == "Stale raw prices: 2024-07-05 not on file before the NYSE open of 2024-07-08"
    assert "latest raw session on file is 2024-07-03 (1 session(s) behind)" in alert["text"]
    assert lake.store.describe() in alert["text"]
    assert alert["details"] == {
        "session": "2024-07-08",
        "required_session": "2024-07-05",
        "latest_session": "2024-07-03",
        "sessions_behind": 1,
        "deadline": "2024-07-08T09:00:00-04:00",
        "raw_store": lake.store.describe(),
    }


def test_the_same_session_is_alerted_once_and_the_next_session_again(lake):
    lake.write("2024-07-03")
    first = lake.tick("2024-07-08T09:05")
    again = lake.tick("2024-07-08T11:00", cursor=first.cursor)
    assert "still stale, already alerted for session 2024-07-08" in again.skip_message
    assert again.cursor == first.cursor and len(lake.alerts_written()) == 1
    tuesday = lake.tick("2024-07-09T09:00", cursor=first.cursor)  # still nothing: a new session, a new alert
    assert FreshnessCursor.parse(tuesday.cursor).alerted == "2024-07-09"
    assert [a["key"] for a in lake.alerts_written()] == [
        "raw_freshness:2024-07-08",
        "raw_freshness:2024-07-09",
    ]
    assert lake.alerts_written()[1]["details"]["sessions_behind"] == 2  # 07-05 and 07-08


def test_fresh_data_raises_nothing(lake):
    lake.write("2024-07-03", "2024-07-05")
    result = lake.tick("2024-07-08T09:05")
    assert result.skip_message.startswith("fresh: raw prices of 2024-07-05 are on file")
    assert lake.alerts_written() == []


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("2024-07-04T10:00", "2024-07-04 (Thursday) is not an NYSE session"),  # holiday
        ("2024-07-06T10:00", "2024-07-06 (Saturday) is not an NYSE session"),
        ("2024-07-08T08:55", "before the 09:00 deadline of session 2024-07-08"),
    ],
)
def test_no_alert_on_holidays_weekends_or_before_the_deadline(lake, when, why):
    lake.write("2024-07-01")  # stale for every session after 07-02
    result = lake.tick(when)
    assert result.skip_message.startswith(f"not_due: {why}")
    assert lake.alerts_written() == []


def test_the_lead_comes_from_the_alerts_resource(lake):
    early = AlertsResource(jsonl_path=lake.alerts.jsonl_path, raw_lead_minutes=90)  # deadline 08:00
    assert "not_due" in lake.tick("2024-07-08T07:59", alerts=early).skip_message
    assert FreshnessCursor.parse(lake.tick("2024-07-08T08:00", alerts=early).cursor).alerted == "2024-07-08"


def test_an_empty_store_and_an_old_store_are_both_stale(lake):
    lake.tick("2024-07-08T09:05")
    assert lake.alerts_written()[0]["details"]["latest_session"] is None
    lake.write("2024-05-01")  # older than the two weeks listed first: found by the full listing
    assert latest_stored_session(lake.store, D("2024-07-05")) == D("2024-05-01")
    assert latest_stored_session(lake.store, D("2024-04-30")) is None


def test_a_session_after_the_required_one_does_not_hide_the_gap(lake):
    lake.write("2024-07-03", "2024-07-08")  # today's object early, yesterday's missing
    assert latest_stored_session(lake.store, D("2024-07-05")) == D("2024-07-03")
    assert lake.tick("2024-07-08T09:05").cursor is not None  # alerted


class UnreachableStore(LocalRawStore):
    """A raw store whose listing fails, as S3 does when the endpoint is down or the credentials are wrong."""

    def list_sessions(self, *args, **kwargs):
        raise RawStoreError("cannot reach the endpoint http://127.0.0.1:1 (connection refused)")


def test_a_store_that_cannot_be_read_after_the_deadline_is_stale_with_its_error(tmp_path):
    store = UnreachableStore(tmp_path)
    cal, lead = session_calendar(), dt.timedelta(minutes=30)
    at = dt.datetime(2024, 7, 8, 9, 5, tzinfo=NY)
    verdict = evaluate_raw_freshness(at, store, cal, lead)
    assert verdict.is_stale and verdict.required == D("2024-07-05") and verdict.latest is None
    assert verdict.message == (
        "cannot tell whether the raw prices of session 2024-07-05 are on file at 2024-07-08 09:05 EDT, past "
        "the deadline before the NYSE open of 2024-07-08: the raw store failed: cannot reach the endpoint "
        "http://127.0.0.1:1 (connection refused)"
    )
    # before the deadline and on a holiday the store is not even listed
    assert evaluate_raw_freshness(at.replace(hour=8), store, cal, lead).status is Freshness.NOT_DUE
    assert evaluate_raw_freshness(at.replace(day=4), store, cal, lead).status is Freshness.NOT_DUE


def test_the_alert_reaches_the_webhook(lake, webhook_server):
    lake.write("2024-07-03")
    hooked = AlertsResource(jsonl_path=lake.alerts.jsonl_path, webhook_url=webhook_server.url)
    lake.tick("2024-07-08T09:05", alerts=hooked)
    (request,) = webhook_server.received
    text = request.json()["text"]
    assert text.startswith("Stale raw prices: 2024-07-05 not on file before the NYSE open of 2024-07-08\n")


def test_a_failed_delivery_fails_the_tick_keeps_the_local_record_and_is_retried(lake, webhook_server):
    lake.write("2024-07-03")
    webhook_server.statuses = [500] * 10
    hooked = AlertsResource(
        jsonl_path=lake.alerts.jsonl_path, webhook_url=webhook_server.url, webhook_retries=1
    )
    with pytest.raises(AlertDeliveryError) as info:  # the daemon shows the failed tick; the cursor stays
        lake.tick("2024-07-08T09:05", alerts=hooked)
    assert str(info.value) == (
        "alert raw_freshness:2024-07-08 not delivered everywhere: the webhook at 127.0.0.1 did not take the "
        "alert after 2 attempt(s): HTTP 500 Internal Server Error: no"
    )
    assert SECRET_TOKEN not in repr(info.value) and info.value.__cause__ is None
    assert [a["key"] for a in lake.alerts_written()] == ["raw_freshness:2024-07-08"]
    webhook_server.statuses = []  # the webhook is back: the next tick delivers
    retried = lake.tick("2024-07-08T09:10", alerts=hooked)
    assert FreshnessCursor.parse(retried.cursor).alerted == "2024-07-08"
    assert len(webhook_server.received) == 3  # two failed attempts, then the delivery


def test_an_unreadable_cursor_starts_afresh():
    assert FreshnessCursor.parse("{not json") == FreshnessCursor()
    assert FreshnessCursor.parse('["a"]') == FreshnessCursor()
    assert FreshnessCursor.parse(FreshnessCursor("2024-07-08").dumps()).alerted == "2024-07-08"


# ---------------------------------------------------------------------------------------- run failures


@dg.asset
def exploding_asset() -> None:
    raise ValueError("vendor file is empty\nsecond line that must not be in the alert")


exploding_job = dg.define_asset_job("exploding_job", selection=[exploding_asset])


def run_failure_context(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance):
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    return dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
    ).for_run_failure()


def read_alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_failed_run_alerts_with_job_run_step_and_first_error_line(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[exploding_asset], jobs=[exploding_job])
    result = defs.resolve_job_def("exploding_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    alerts = AlertsResource(jsonl_path=str(tmp_path / "alerts.jsonl"))
    run_failure_alert_sensor(run_failure_context(result, instance), alerts=alerts)
    (alert,) = read_alerts(tmp_path / "alerts.jsonl")
    run_id = result.run_id
    assert alert["kind"] == "run_failure" and alert["key"] == f"run_failure:{run_id}"
    assert alert["title"] == "exploding_job run failed"
    assert alert["text"] == f"run {run_id}\nstep exploding_asset: ValueError: vendor file is empty"
    assert alert["details"] == {
        "job": "exploding_job",
        "run_id": run_id,
        "partition": None,
        "failed_steps": ["exploding_asset"],
        "first_error": "ValueError: vendor file is empty",
        "failed_blocking_checks": [],
    }


def test_through_the_sensors_ticks_each_failed_run_is_alerted_once(tmp_path):
    """As the daemon runs it: the first tick starts at the newest event (no replay of old failures), the
    next one alerts the failure that happened since, and a third has nothing new."""
    alerts = AlertsResource(jsonl_path=str(tmp_path / "alerts.jsonl"))
    defs = dg.Definitions(
        assets=[exploding_asset],
        jobs=[exploding_job],
        sensors=[run_failure_alert_sensor],
        resources={"alerts": alerts},
    )
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("exploding_job")
    job.execute_in_process(instance=instance, raise_on_error=False)  # before the sensor was on

    def tick(cursor):
        ctx = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"alerts": alerts}, cursor=cursor
        )
        return run_failure_alert_sensor.evaluate_tick(ctx)

    first = tick(None)
    assert not (tmp_path / "alerts.jsonl").exists()
    failed = job.execute_in_process(instance=instance, raise_on_error=False)
    second = tick(first.cursor)
    assert [r.dagster_run.run_id for r in second.dagster_run_reactions] == [failed.run_id]
    assert [a["key"] for a in read_alerts(tmp_path / "alerts.jsonl")] == [f"run_failure:{failed.run_id}"]
    third = tick(second.cursor)
    assert third.dagster_run_reactions == []
    assert len(read_alerts(tmp_path / "alerts.jsonl")) == 1


def test_a_dead_webhook_shows_on_the_tick_and_the_failure_stays_on_record(tmp_path, webhook_server):
    webhook_server.statuses = [500] * 10
    alerts = AlertsResource(
        jsonl_path=str(tmp_path / "alerts.jsonl"), webhook_url=webhook_server.url, webhook_retries=0
    )
    defs = dg.Definitions(
        assets=[exploding_asset],
        jobs=[exploding_job],
        sensors=[run_failure_alert_sensor],
        resources={"alerts": alerts},
    )
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        ctx = dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"alerts": alerts}, cursor=cursor
        )
        return run_failure_alert_sensor.evaluate_tick(ctx)

    first = tick(None)
    failed = defs.resolve_job_def("exploding_job").execute_in_process(instance=instance, raise_on_error=False)
    second = tick(first.cursor)
    (reaction,) = second.dagster_run_reactions
    assert reaction.dagster_run.run_id == failed.run_id
    assert (
        "the webhook at 127.0.0.1 did not take the alert after 1 attempt(s): HTTP 500"
        in reaction.error.message
    )
    assert SECRET_TOKEN not in reaction.error.to_string()
    assert [a["key"] for a in read_alerts(tmp_path / "alerts.jsonl")] == [f"run_failure:{failed.run_id}"]
    assert tick(second.cursor).dagster_run_reactions == []  # Dagster moved past the run: no retry


def test_a_failed_blocking_check_in_a_pipeline_run_alerts_with_the_check(tmp_path):
    """A real raw_landing_job range run whose source has no bars for one session: the blocking check fails,
    which fails the run, and the alert names the check and what it found. ([data] on_missing_session =
    "halt": by default a session without bars is an outage reported at WARN severity, and the run goes on.)"""
    from trading_dagster_tests.halt_config import halt_config

    source = tmp_path / "bars.csv"
    source.write_text("symbol,date,open,high,low,close,volume\nAAPL,2024-01-02,10,11,9,10.5,1000\n")
    settings = load_settings(
        {
            "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"),
            "TRADING_DAGSTER_MARKET_DATA_FILE": str(source),
            "TRADING_DAGSTER_CONFIG": halt_config(tmp_path),
        }
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(raw_landing_job.name).execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: "2024-01-02", RANGE_END_TAG: "2024-01-03"},
        raise_on_error=False,
    )
    assert not result.success
    alerts = defs.resources["alerts"]
    assert alerts.jsonl_path == str(settings.data_dir / "alerts.jsonl")
    run_failure_alert_sensor(run_failure_context(result, instance), alerts=alerts)
    (alert,) = read_alerts(settings.data_dir / "alerts.jsonl")
    assert alert["title"] == "raw_landing_job blocking check failed (partition 2024-01-02..2024-01-03)"
    details = alert["details"]
    assert details["failed_steps"] == ["raw__raw_prices"]
    # the run's error says the cause itself: which check, what it found, which session
    assert details["first_error"].startswith(
        "Failure: raw/raw_prices: blocking check failed, nothing downstream runs on these sessions: "
        "raw_prices__every_session_has_bars: 1 sessions have no rows ("
    ), details["first_error"]
    assert "(sessions 2024-01-03)" in details["first_error"]
    (check,) = [c for c in details["failed_blocking_checks"] if "every_session_has_bars" in c]
    # the check's description and its metadata, which names the session without bars
    assert check.startswith("raw/raw_prices:raw_prices__every_session_has_bars: 1 sessions have no rows (")
    assert "missing_sessions=2024-01-03" in check and "count=1" in check
    assert f"blocking check failed: {check}" in alert["text"]


def test_first_error_line_skips_dagster_wrappers_and_module_paths():
    user = SerializableErrorInfo(
        "trading_dagster.resources.raw_store.RawObjectMissing: no key\nmore\n", [], "RawObjectMissing"
    )
    wrapper = SerializableErrorInfo(
        'dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "x":\n',
        [],
        "DagsterExecutionStepExecutionError",
        cause=user,
    )
    assert first_error_line(wrapper) == "RawObjectMissing: no key"
    assert first_error_line(user) == "RawObjectMissing: no key"
    chained = SerializableErrorInfo("KeyError: 'a'\n", [], "KeyError", cause=user)  # the user's own chain
    assert first_error_line(chained) == "KeyError: 'a'"
    assert first_error_line(SerializableErrorInfo("E: " + "x" * 1000, [], "E")).endswith("...")
    assert len(first_error_line(SerializableErrorInfo("E: " + "x" * 1000, [], "E"))) == 300
    assert first_error_line(None) == ""
    colon = SerializableErrorInfo("x.CheckFailed: 1 check failed:\n  a: b\nc\n", [], "CheckFailed")
    assert first_error_line(colon) == "CheckFailed: 1 check failed: a: b"


# ----------------------------------------------------------------------------------------- definitions


def test_the_sensors_are_in_the_definitions_with_their_default_status(tmp_path):
    defs = build_definitions(load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path)}))
    repo = defs.get_repository_def()
    freshness = repo.get_sensor_def("raw_freshness_sensor")
    failures = repo.get_sensor_def("run_failure_alert_sensor")
    assert freshness.default_status == dg.DefaultSensorStatus.STOPPED
    assert failures.default_status == dg.DefaultSensorStatus.RUNNING
    assert freshness.required_resource_keys == {"raw_store", "alerts"}
    assert failures.required_resource_keys == {"alerts"}
    assert freshness.minimum_interval_seconds == 300
    assert defs.resources["alerts"].webhook_url is None  # no variable set: the built-in sink only


def test_the_lead_is_read_from_the_alerts_section_of_the_config(tmp_path):
    config = tmp_path / "trading.toml"
    config.write_text(
        DEFAULT_CONFIG_FILE.read_text() + "\n[alerts]\nraw_lead_minutes = 45\nwebhook_retries = 1\n"
    )
    defs = build_definitions(
        load_settings(
            {"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "d"), "TRADING_DAGSTER_CONFIG": str(config)}
        )
    )
    alerts = defs.resources["alerts"]
    assert (alerts.raw_lead_minutes, alerts.webhook_retries) == (45, 1)
    assert alerts.raw_lead == dt.timedelta(minutes=45)
