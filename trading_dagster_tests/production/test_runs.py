"""Runs of the pipeline on the production instance, recorded in PostgreSQL: one session as the daily schedule
runs it, and a single-run backfill of several sessions as `trading-dagster backfill` runs it, whose
materializations reach PostgreSQL in batches (DAGSTER_EVENT_BATCH_SIZE). What Dagster recorded is read through
the instance and again from the database with psycopg2. The shipped sample's first sessions (January 2008)."""

import datetime as dt

import boto3
import dagster as dg
import pytest

from trading_dagster.cli import run_backfill
from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster_tests.integration.conftest import check_count, make_settings

from .conftest import COMPUTE_LOG_PREFIX, pg_connect

pytestmark = pytest.mark.slow

SESSION = dt.date(2008, 1, 2)
CLEANED = dg.AssetKey(["prices", "cleaned_prices"])


def test_one_sessions_run_is_recorded_in_postgres(production_instance, tmp_path):
    instance = production_instance.instance
    defs = build_definitions(make_settings(tmp_path / "data"))
    job = defs.resolve_job_def("pipeline_job")
    result = job.execute_in_process(instance=instance, partition_key=SESSION.isoformat(), raise_on_error=False)
    assert result.success
    run_id = result.run_id
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    checks = result.get_asset_check_evaluations()
    assert CLEANED in materialized and len(checks) == check_count(defs) and all(c.passed for c in checks)

    # through the instance
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    latest = instance.get_latest_materialization_event(CLEANED)
    assert latest.run_id == run_id and latest.asset_materialization.partition == SESSION.isoformat()
    assert instance.get_materialized_partitions(CLEANED) == {SESSION.isoformat()}
    recorded_checks = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert len(recorded_checks) == len(checks)

    # from PostgreSQL, without Dagster
    with pg_connect(production_instance.db) as con, con.cursor() as cur:
        cur.execute("select status, partition from runs where run_id = %s", (run_id,))
        assert cur.fetchall() == [("SUCCESS", SESSION.isoformat())]
        cur.execute(
            "select asset_key, partition from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        rows = cur.fetchall()
        assert {k for k, _ in rows} == {dg.AssetKey.to_string(k) for k in materialized}
        assert {p for _, p in rows} == {SESSION.isoformat()}
        # one SUCCEEDED row per check evaluated (Dagster 1.13 also leaves each check's per-partition PLANNED row
        # beside it: the evaluation of a check on a partitioned asset is recorded without its partition)
        cur.execute(
            "select check_name from asset_check_executions where run_id = %s and execution_status = 'SUCCEEDED'",
            (run_id,),
        )
        assert sorted(r[0] for r in cur.fetchall()) == sorted(c.check_name for c in checks)
        cur.execute(
            "select count(*) from asset_check_executions where run_id = %s and execution_status = 'FAILED'", (run_id,)
        )
        assert cur.fetchone() == (0,)

    # the run's captured stdout/stderr went to the compute-log bucket
    s3 = boto3.client("s3", endpoint_url=production_instance.s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=production_instance.bucket).get("Contents", [])]
    assert any(k.startswith(f"{COMPUTE_LOG_PREFIX}/storage/{run_id}/") for k in keys), keys


def test_a_single_run_backfill_writes_its_materializations_in_batches(production_instance, tmp_path, monkeypatch):
    """Several sessions in one run, as `trading-dagster backfill` runs them (cli.run_backfill, on the instance
    of DAGSTER_HOME: deploy/dagster.yaml's). With DAGSTER_EVENT_BATCH_SIZE a step's materializations reach
    dagster-postgres as a batch, stored by one multi-row INSERT: one transaction for many rows, so rows of
    that run share a transaction id (PostgreSQL's `xmin`). Unbatched, each event is its own INSERT and its own
    transaction: every xmin holds exactly one row, and this test fails."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "500")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    sessions = session_calendar().between(SESSION, dt.date(2008, 1, 8))
    assert len(sessions) == 5
    outcome = run_backfill(sessions[0], sessions[-1], environ={"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")})
    assert outcome["success"] and outcome["checks_failed"] == 0
    run_id = outcome["run_id"]
    instance = production_instance.instance
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    assert instance.get_materialized_partitions(CLEANED) == {s.isoformat() for s in sessions}

    with pg_connect(production_instance.db) as con, con.cursor() as cur:
        cur.execute(
            "select asset_key, count(*), count(distinct partition), count(distinct xmin::text) from event_logs "
            "where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION' group by asset_key",
            (run_id,),
        )
        per_asset = {key: (n, partitions, transactions) for key, n, partitions, transactions in cur.fetchall()}
    assert dg.AssetKey.to_string(CLEANED) in per_asset
    # every partitioned asset of the range: one materialization per session, all in one transaction
    partitioned = {k: v for k, v in per_asset.items() if v[1] == len(sessions)}
    assert dg.AssetKey.to_string(CLEANED) in partitioned
    assert all(n == len(sessions) and transactions == 1 for n, _, transactions in partitioned.values()), per_asset
