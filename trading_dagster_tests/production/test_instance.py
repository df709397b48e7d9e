"""deploy/dagster.yaml loads into the instance production needs: every storage on PostgreSQL, compute logs on
S3, the run queue's limits, the `trading_account` pool at one slot, run monitoring and tick retention."""

import dagster as dg
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from trading_dagster.event_log import BatchedPostgresEventLogStorage
from trading_dagster.resources.writer_lock import WRITER_TAG

from .conftest import COMPUTE_LOG_PREFIX, pg_connect


def test_every_storage_is_the_test_database_and_compute_logs_go_to_the_bucket(production_instance):
    instance = production_instance.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    # ours (the linear planned-check write), not the stock class dagster-postgres's from_config_value names
    assert type(instance.event_log_storage) is BatchedPostgresEventLogStorage
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    manager = instance.compute_log_manager
    assert isinstance(manager, S3ComputeLogManager)
    assert (manager._s3_bucket, manager._s3_prefix) == (production_instance.bucket, COMPUTE_LOG_PREFIX)
    # Dagster created its tables in the database the DAGSTER_PG_* variables name, not in another one
    with pg_connect(production_instance.db) as con, con.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'public'")
        tables = {r[0] for r in cur.fetchall()}
    assert {"runs", "event_logs", "jobs", "job_ticks", "asset_check_executions", "concurrency_limits"} <= tables


def test_the_queue_admits_one_writer_and_the_trading_account_pool_one_step(production_instance):
    instance = production_instance.instance
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    config = instance.get_concurrency_config()
    queue = config.run_queue_config
    assert queue is not None and queue.max_concurrent_runs >= 1
    assert {"key": WRITER_TAG, "limit": 1} in queue.tag_concurrency_limits
    assert config.pool_config.pool_granularity.value == "op"
    # what a run worker does on a pool's first use: the pool starts at the default limit, one slot
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("trading_account")
    assert storage.get_concurrency_info("trading_account").slot_count == 1
    first = storage.claim_concurrency_slot("trading_account", "run-a", "execution_step")
    second = storage.claim_concurrency_slot("trading_account", "run-b", "execution_step")
    assert first.is_claimed and not second.is_claimed


def test_run_monitoring_is_on_and_ticks_are_purged(production_instance):
    instance = production_instance.instance
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds > 0 and instance.run_monitoring_max_runtime_seconds > 0
    assert instance.run_retries_enabled is False  # a retried execution run could submit orders twice
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickStatus

    sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
    assert 0 < sensor[TickStatus.SKIPPED] <= 30 and sensor[TickStatus.SUCCESS] > 0
    assert all(days > 0 for days in schedule.values())
