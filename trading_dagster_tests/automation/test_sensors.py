"""raw_landing_sensor: vendor files in the landing zone -> one raw_prices run per file version.

Ticks are evaluated with `build_sensor_context(definitions=..., resources=...)` on definitions built from
settings, with the raw store resource those definitions carry (the local folder, or S3 on the session's
moto server). `build_sensor_context` does not take resources from the definitions by itself (1.13.27), so
they are passed explicitly. The requested runs are then executed in process with the request's own run
config, tags and partition, as the daemon would launch them.
"""

import datetime as dt
import os
import socket
import uuid
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from trading_dagster.automation.sensors import (
    LANDING_KEY_TAG,
    LANDING_VERSION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    LandingCursor,
    evaluate_landing,
    raw_landing_job,
    raw_landing_sensor,
)
from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.configured import RawStoreResource
from trading_dagster.resources.raw_store import RawStore, RawStoreError, S3RawStore
from trading_dagster.settings import Settings, load_settings

HEADER = "Ticker,Date,Open,High,Low,Close,Volume\n"
D1, D2, D3, D4 = "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"
NOW = dt.datetime(2024, 1, 31, 23, tzinfo=dt.UTC)  # 18:00 New York: 2024-01-31's session has closed


def vendor_csv(*days: str, symbols=("AAPL", "MSFT"), close: float = 10.5) -> bytes:
    rows = [f"{s},{d},10,11,9,{close},1000" for d in days for s in symbols]
    return (HEADER + "\n".join(rows) + "\n").encode()


class Env:
    """Definitions on a throwaway data folder (local store, or S3 on moto) and a way to drop files."""

    def __init__(self, settings: Settings, put, delete) -> None:
        self.settings = settings
        self.defs = build_definitions(settings)
        self.raw_store: RawStoreResource = self.defs.resources["raw_store"]
        self.store: RawStore = self.raw_store.get()
        self._put, self._delete = put, delete

    def key(self, name: str) -> str:
        return f"{self.store.landing_prefix}{name}"

    def drop(self, name: str, data: bytes) -> str:
        self._put(self.key(name), data)
        return self.key(name)

    def delete(self, name: str) -> None:
        self._delete(self.key(name))

    def version(self, name: str) -> str:
        return {f.key: f.version for f in self.store.list_landing()}[self.key(name)]

    def tick(self, cursor: str | None = None) -> dg.SensorResult:
        ctx = dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            cursor=cursor,
            definitions=self.defs,
            resources={"raw_store": self.raw_store},
        )
        return raw_landing_sensor.evaluate_tick(ctx)

    def execute(self, request: dg.RunRequest, raise_on_error: bool = True):
        return self.defs.resolve_job_def(raw_landing_job.name).execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            partition_key=request.partition_key,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=raise_on_error,
        )


def local_env(tmp_path: Path) -> Env:
    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")})

    def put(key: str, data: bytes) -> None:
        path = settings.raw_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")  # the atomic drop the landing zone asks writers for
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return Env(settings, put, lambda key: (settings.raw_root / key).unlink())


def s3_env(tmp_path: Path, endpoint: str) -> Env:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"landing-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    settings = load_settings(
        {
            "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"),
            "TRADING_DAGSTER_RAW_STORE": "s3",
            "TRADING_DAGSTER_S3_BUCKET": bucket,
            "TRADING_DAGSTER_S3_PREFIX": "lake",
            "TRADING_DAGSTER_S3_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        }
    )
    return Env(
        settings,
        lambda key, data: client.put_object(Bucket=bucket, Key=key, Body=data),
        lambda key: client.delete_object(Bucket=bucket, Key=key),
    )


@pytest.fixture(params=["local", "s3"])
def env(request, tmp_path) -> Env:
    if request.param == "local":
        return local_env(tmp_path)
    return s3_env(tmp_path, request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def local(tmp_path) -> Env:
    return local_env(tmp_path)


def by_key(result) -> dict[str, dg.RunRequest]:
    return {r.tags[LANDING_KEY_TAG]: r for r in result.run_requests}


def failure_message(result) -> str:
    """The step failure's error and its causes (the user's exception is the cause of Dagster's wrapper)."""
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error, parts = failure.step_failure_data.error, []
    while error is not None:
        parts.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return "\n".join(parts)


def landing_config(request: dg.RunRequest) -> dict:
    return request.run_config["ops"]["raw__raw_prices"]["config"]


# --------------------------------------------------------------------------------------------- the ticks


def test_sensor_is_off_by_default_and_targets_the_raw_landing_job(local):
    sensor = local.defs.get_repository_def().get_sensor_def("raw_landing_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.job_name == "raw_landing_job"
    job = local.defs.resolve_job_def("raw_landing_job")
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey(["raw", "raw_prices"])}


def test_first_tick_requests_one_run_per_file_with_its_sessions(env):
    single = env.drop("vendor_2024-01-02.csv", vendor_csv(D1))
    week = env.drop("weekly/2024-w01.csv", vendor_csv(D4, D2, D1, D3))  # rows in any order
    result = env.tick()
    runs = by_key(result)
    assert sorted(runs) == sorted([single, week])

    one = runs[single]
    version = env.version("vendor_2024-01-02.csv")
    assert one.run_key == f"{single}@{version}"
    assert one.partition_key == D1
    assert one.job_name in (None, "raw_landing_job")
    assert one.tags[LANDING_KEY_TAG] == single and one.tags[LANDING_VERSION_TAG] == version
    config = landing_config(one)
    assert {k: config[k] for k in ("landing_key", "landing_version")} == {"landing_key": single, "landing_version": version}
    assert dt.datetime.fromisoformat(config["as_of"]).tzinfo is not None  # the run judges rows at the tick's time

    rng = runs[week]
    assert rng.run_key == f"{week}@{env.version('weekly/2024-w01.csv')}"
    assert rng.partition_key is None  # one single-run range for the whole file
    assert (rng.tags[RANGE_START_TAG], rng.tags[RANGE_END_TAG]) == (D1, D4)
    assert landing_config(rng)["landing_key"] == week

    assert LandingCursor.parse(result.cursor).seen == {
        single: version,
        week: env.version("weekly/2024-w01.csv"),
    }


def test_second_tick_without_changes_requests_nothing(env):
    env.drop("a.csv", vendor_csv(D1))
    first = env.tick()
    second = env.tick(first.cursor)
    assert second.run_requests == []
    assert "no new or changed files" in second.skip_message
    assert second.cursor == first.cursor


def test_an_overwritten_file_is_requested_again_with_its_new_version(env):
    key = env.drop("a.csv", vendor_csv(D1))
    first = env.tick()
    old = env.version("a.csv")
    env.drop("a.csv", vendor_csv(D1, symbols=("AAPL", "MSFT", "IBM")))  # the vendor re-sends a fuller file
    new = env.version("a.csv")
    assert new != old
    again = env.tick(first.cursor)
    assert [r.run_key for r in again.run_requests] == [f"{key}@{new}"]
    assert again.run_requests[0].partition_key == D1
    assert env.tick(again.cursor).run_requests == []


def test_a_new_file_next_to_seen_ones_is_the_only_request(env):
    env.drop("a.csv", vendor_csv(D1))
    first = env.tick()
    b = env.drop("b.csv", vendor_csv(D2))
    assert list(by_key(env.tick(first.cursor))) == [b]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "HTML/XML, not price data"),
        (b"foo,bar\n1,2\n", "symbol"),
        (HEADER.encode(), "no data rows"),
        (b"Ticker,Date,Open,High,Low,Close,Close,Volume\nAAPL,2024-01-02,10,11,9,10.5,10.6,1000\n", "'close' from ['Close', 'Close_duplicated_0']"),
        (vendor_csv("2024-02-01"), "none of its 2 row(s) belongs to a session that has closed (FUTURE_SESSION 2)"),
        (vendor_csv("2024-01-06", "2024-01-07"), "none of its 4 row(s) belongs to a session"),  # a weekend only
        # every session stamped a day late (an evening New York time written in UTC): Friday's on Saturday
        (vendor_csv(*(f"2024-01-{d:02d}" for d in (3, 4, 5, 6, 9, 10, 11, 12, 13)), symbols=tuple("ABCDE")), "dates look shifted"),
    ],
)
def test_an_unusable_file_is_skipped_with_a_message_and_remembered(local, content, why):
    key = local.drop("bad.csv", content)
    tick = evaluate_landing(local.store, LandingCursor(), session_calendar(), NOW)
    assert tick.run_requests == []
    (message,) = tick.rejected
    assert f"landing file {local.store.location(key)}: " in message and why in message
    assert tick.cursor.seen == {key: local.version("bad.csv")}  # not re-read every tick...
    assert evaluate_landing(local.store, tick.cursor, session_calendar(), NOW).rejected == []
    local.drop("bad.csv", vendor_csv(D1))  # ...until a new version arrives
    fixed = evaluate_landing(local.store, tick.cursor, session_calendar(), NOW)
    assert [r.partition_key for r in fixed.run_requests] == [D1] and fixed.rejected == []


def test_the_sensor_reports_an_unparseable_file_as_its_skip_reason(env):
    key = env.drop("broken.parquet", b"PAR1 not really parquet")
    result = env.tick()
    assert result.run_requests == []
    assert "1 landing file(s) not ingested" in result.skip_message
    assert env.store.location(key) in result.skip_message
    assert "new version of the file is looked at again" in result.skip_message
    assert "no new or changed files" in env.tick(result.cursor).skip_message


def test_good_and_bad_files_in_one_tick(local):
    good = local.drop("good.csv", vendor_csv(D1))
    bad = local.drop("bad.csv", b"garbage")
    result = local.tick()
    assert list(by_key(result)) == [good]
    assert set(LandingCursor.parse(result.cursor).seen) == {good, bad}


def test_non_vendor_names_are_never_requested(local):
    for name in ("_SUCCESS", ".upload.csv", "readme.txt", "x.csv.partial"):
        local.drop(name, vendor_csv(D1))
    assert local.tick().run_requests == []


# ------------------------------------------------------------------------------------------------- cursor


def test_cursor_forgets_files_that_left_the_landing_zone(local):
    local.drop("a.csv", vendor_csv(D1))
    b = local.drop("b.csv", vendor_csv(D2))
    first = local.tick()
    local.delete("a.csv")
    second = local.tick(first.cursor)
    assert LandingCursor.parse(second.cursor).seen == {b: local.version("b.csv")}


def test_cursor_is_bounded_and_a_floor_keeps_dropped_files_seen(local):
    cal = session_calendar()
    keys = []
    for i, day in enumerate((D1, D2, D3, D4)):
        keys.append(local.drop(f"f{i}.csv", vendor_csv(day)))
        path = local.settings.raw_root / keys[-1]
        os.utime(path, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)  # distinct, ordered mtimes
    tick = evaluate_landing(local.store, LandingCursor(), cal, NOW, max_tracked=2)
    assert len(tick.run_requests) == 4
    assert sorted(tick.cursor.seen) == keys[2:]  # the two newest are kept...
    assert tick.cursor.floor == dt.datetime.fromtimestamp(1_700_000_001, tz=dt.UTC)
    # ...and the two dropped ones are older than the floor: still seen, never requested again
    restored = LandingCursor.parse(tick.cursor.dumps())
    assert restored == tick.cursor
    assert evaluate_landing(local.store, restored, cal, NOW, max_tracked=2).run_requests == []


def test_a_backlog_is_worked_off_oldest_first_a_few_files_per_tick(local):
    cal = session_calendar()
    for i, day in enumerate((D4, D3, D2, D1)):
        key = local.drop(f"f{i}.csv", vendor_csv(day))
        os.utime(local.settings.raw_root / key, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)
    first = evaluate_landing(local.store, LandingCursor(), cal, NOW, max_files=3)
    assert [r.partition_key for r in first.run_requests] == [D4, D3, D2] and first.pending == 1
    second = evaluate_landing(local.store, first.cursor, cal, NOW, max_files=3)
    assert [r.partition_key for r in second.run_requests] == [D1] and second.pending == 0


def test_an_unreadable_cursor_starts_afresh():
    assert LandingCursor.parse("not json") == LandingCursor()
    assert LandingCursor.parse('{"seen": [1, 2]}') == LandingCursor()


def test_an_unreachable_store_fails_the_tick(tmp_path):
    """The tick raises (the daemon shows the error, the cursor stays where it was): nothing is marked seen."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = S3Resource(
        endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", max_attempts=1
    ).get_client()
    with pytest.raises(RawStoreError, match="cannot reach the endpoint"):
        evaluate_landing(S3RawStore(client, "bucket"), LandingCursor(), session_calendar(), NOW)


# ------------------------------------------------------------------------------------ the requested runs


@pytest.mark.parametrize(
    ("content", "sessions", "rejected", "empty"),
    [
        (vendor_csv(D1, "2024-01-06", D4, symbols=("AAPL",)), (D1, D4), {"NON_SESSION_DATE": 1}, (D2, D3)),  # a weekend row
        (vendor_csv(D1, "2024-01-15"), (D1,), {"NON_SESSION_DATE": 2}, ()),  # MLK day
        (vendor_csv(D1, D3), (D1, D3), {}, (D2,)),  # a gap: an outage the run records, no reason to skip
        (vendor_csv("2024-01-31", "2024-02-01"), ("2024-01-31",), {"FUTURE_SESSION": 2}, ()),  # after NOW
    ],
)
def test_a_file_with_rows_on_no_session_or_a_gap_is_planned_with_what_the_run_will_reject(local, content, sessions, rejected, empty):
    key = local.drop("vendor.csv", content)
    tick = evaluate_landing(local.store, LandingCursor(), session_calendar(), NOW)
    assert tick.rejected == []
    (plan,) = tick.plans
    assert (plan.sessions[0].isoformat(), plan.sessions[-1].isoformat()) == (sessions[0], sessions[-1])
    assert plan.rejected == rejected and tuple(d.isoformat() for d in plan.empty) == empty
    assert plan.file.key == key and plan.as_of == NOW


def test_the_run_rejects_what_the_tick_saw_as_future_and_records_the_gap(local):
    """The tick at 14:00 New York on 2024-01-05 sees that day's rows as partial bars; its run, whenever it
    runs, judges them at the tick's time too: it writes 01-02 and 01-04, keeps 01-05's rows as rejected, and
    records 01-03 (no row) as an outage at WARN severity."""
    local.drop("vendor.csv", vendor_csv(D1, D3, D4))
    tick = evaluate_landing(local.store, LandingCursor(), session_calendar(), dt.datetime(2024, 1, 5, 19, tzinfo=dt.UTC))
    (request,) = tick.run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (D1, D3)
    result = local.execute(request)
    assert result.success
    store = local.store
    assert store.list_sessions() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    assert store.read_session(dt.date(2024, 1, 3)).height == 0  # the record that the vendor delivered nothing
    (import_id,) = store.list_imports()
    assert store.read_rejected(import_id).select("date", "reason").unique().rows() == [(dt.date(2024, 1, 5), "FUTURE_SESSION")]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    bars_check = checks["raw_prices__every_session_has_bars"]
    assert not bars_check.passed and bars_check.severity == dg.AssetCheckSeverity.WARN
    assert bars_check.metadata["missing_sessions"].value == D2
    assert checks["raw_prices__gx_suite"].passed
    (mat,) = result.get_asset_materialization_events()[:1]
    assert mat.materialization.metadata["rejected_by_reason"].value == "FUTURE_SESSION 2"


def test_requested_runs_write_the_files_sessions(env):
    """End to end: tick, then execute each request as the daemon would (its config, tags, partition)."""
    env.drop("single.csv", vendor_csv(D2, symbols=("msft", "AAPL")))
    env.drop("week.csv", vendor_csv(D1, D2, D3, D4, symbols=("SPY",), close=12.0))
    runs = by_key(env.tick())
    single = env.execute(runs[env.key("single.csv")])
    assert single.success
    assert [e.passed for e in single.get_asset_check_evaluations()] == [True, True]  # bars for every session; GX suite
    (mat,) = single.get_asset_materialization_events()
    assert mat.materialization.metadata["source"].value == env.store.location(env.key("single.csv"))
    assert env.store.list_sessions() == [dt.date(2024, 1, 3)]
    part = env.store.read_session(dt.date(2024, 1, 3))
    assert part["symbol"].to_list() == ["AAPL", "MSFT"] and part["close"].to_list() == [10.5, 10.5]

    week = env.execute(runs[env.key("week.csv")])
    assert week.success
    sessions = [dt.date(2024, 1, d) for d in (2, 3, 4, 5)]
    assert env.store.list_sessions() == sessions  # the week's run merged into 01-03: nothing was deleted
    out = env.store.read_sessions(sessions)
    assert out.select("date", "symbol").rows() == [
        (sessions[0], "SPY"), (sessions[1], "AAPL"), (sessions[1], "MSFT"), (sessions[1], "SPY"),
        (sessions[2], "SPY"), (sessions[3], "SPY"),
    ]
    assert len(env.store.list_imports()) == 2  # one manifest per delivery


def test_a_run_for_a_window_that_does_not_hold_the_file_fails_and_writes_nothing(local):
    local.drop("week.csv", vendor_csv(D1, D2, D3, D4))
    (request,) = local.tick().run_requests
    # the same file, launched by hand for one of its sessions only
    wrong = dg.RunRequest(run_config=request.run_config, tags={LANDING_KEY_TAG: "manual"}, partition_key=D2)
    result = local.execute(wrong, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "6 row(s) are dated outside this run's window 2024-01-03..2024-01-03" in message
    assert "2024-01-02 (2 rows), 2024-01-04 (2 rows), 2024-01-05 (2 rows)" in message
    assert local.store.list_sessions() == []


def test_a_file_overwritten_after_the_request_is_not_ingested_by_the_old_run(local):
    local.drop("a.csv", vendor_csv(D1))
    (request,) = local.tick().run_requests
    local.drop("a.csv", vendor_csv(D1, symbols=("IBM",)) + b"IBM,2024-01-02,1,1,1,1,1\n")
    result = local.execute(request, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "LandingVersionChanged" in message and "it was overwritten after the run was requested" in message
    assert local.store.list_sessions() == []


def test_without_landing_config_raw_prices_still_reads_the_market_data_source(local):
    """The default path is unchanged: no config, bars from the market-data file."""
    result = local.defs.resolve_job_def(raw_landing_job.name).execute_in_process(
        partition_key="2008-01-02", instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    assert mat.materialization.metadata["source"].value == str(local.settings.market_data_file)  # the sample
    assert local.store.list_sessions() == [dt.date(2008, 1, 2)]
