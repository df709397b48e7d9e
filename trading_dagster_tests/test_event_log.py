"""BatchedSqliteEventLogStorage records exactly what Dagster's stock SQLite storage records.

The same single-run backfill (8 partitions x 2 assets, with data-version tags) runs on the stock
consolidated SQLite storage without batching and on ours with DAGSTER_EVENT_BATCH_SIZE; everything the UI
and the asset graph read back must agree: materialized partitions, materialization records in order with
their partitions and metadata, the asset rows' latest materialization, and the asset-event tags.
"""

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from trading_dagster.cli import DAGSTER_YAML
from trading_dagster.event_log import BatchedSqliteEventLogStorage

STOCK_YAML = """\
event_log_storage:
  module: dagster._core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir: {home}/history
telemetry:
  enabled: false
"""

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-09")
KEYS = PARTITIONS.get_partition_keys()


@dg.asset(
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version="1",
    check_specs=[dg.AssetCheckSpec("sane", asset="upstream", blocking=True)],
)
def upstream(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(metadata={"rows": len(context.partition_keys)})
    yield dg.AssetCheckResult(check_name="sane", passed=True)


@dg.asset(
    partitions_def=PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), code_version="1", deps=[upstream]
)
def downstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"first": context.partition_keys[0]})


def _run(home, yaml: str, monkeypatch, batch: str | None) -> dict:
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.format(home=home))
    if batch is None:
        monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [upstream, downstream],
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: KEYS[0], ASSET_PARTITION_RANGE_END_TAG: KEYS[-1]},
        )
        assert result.success
        storage = instance.event_log_storage
        out = {"storage": type(storage).__name__}
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("upstream"), "sane"), limit=100)
        out["check_executions"] = sorted(((r.partition, r.status.value, r.run_id == result.run_id) for r in history), key=str)
        for asset in ("upstream", "downstream"):
            key = dg.AssetKey(asset)
            records = instance.fetch_materializations(key, limit=100, ascending=True).records
            out[asset] = {
                "materialized": sorted(instance.get_materialized_partitions(key)),
                "records": [(r.partition_key, r.asset_materialization.metadata) for r in records],
                "latest": instance.get_latest_materialization_event(key).dagster_event.partition,
                "record_latest": instance.get_asset_records([key])[0]
                .asset_entry.last_materialization_record.partition_key,
                "tags": [
                    (r.partition_key, storage.get_event_tags_for_asset(key, filter_event_id=r.storage_id))
                    for r in records
                ],
                "n_tags": len(storage.get_event_tags_for_asset(key)),
            }
        return out


def test_batched_storage_records_what_the_stock_storage_records(tmp_path, monkeypatch):
    stock = _run(tmp_path / "stock", STOCK_YAML, monkeypatch, batch=None)
    ours = _run(tmp_path / "ours", DAGSTER_YAML, monkeypatch, batch="3")
    assert stock["storage"] == "ConsolidatedSqliteEventLogStorage"
    assert ours["storage"] == BatchedSqliteEventLogStorage.__name__
    # one planned check execution per partition (the rows the linear planned-event path writes), then the
    # range's evaluation
    planned = [p for p, status, _ in stock["check_executions"] if status == "PLANNED"]
    assert planned == KEYS
    assert ours["check_executions"] == stock["check_executions"]
    for asset in ("upstream", "downstream"):
        assert stock[asset]["materialized"] == KEYS
        assert stock[asset]["latest"] == KEYS[-1]
        assert stock[asset]["n_tags"] == len(KEYS)  # a data-version tag set per partition materialization
        assert ours[asset] == stock[asset]


def test_batch_calls_take_the_one_transaction_path(tmp_path, monkeypatch):
    """With a batch size, the per-partition materializations reach `store_event_batch` (not one by one)."""
    calls = []
    original = BatchedSqliteEventLogStorage.store_event_batch

    def spy(self, events):
        if all(e.get_dagster_event().is_step_materialization for e in events):
            calls.append(len(events))
        return original(self, events)

    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", spy)
    _run(tmp_path / "h", DAGSTER_YAML, monkeypatch, batch="5")
    # 8 materializations per asset in batches of at most 5: 5 + 3 for each of the two assets
    assert sorted(calls) == [3, 3, 5, 5]


def test_without_batch_size_every_event_is_stored_alone(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(BatchedSqliteEventLogStorage, "store_event_batch", lambda self, ev: calls.append(ev))
    out = _run(tmp_path / "h", DAGSTER_YAML, monkeypatch, batch=None)
    assert calls == []
    assert out["downstream"]["materialized"] == KEYS


def _engine_event(run_id: str, i: int):
    import time

    from dagster._core.event_api import EventLogEntry
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData

    event = DagsterEvent(
        event_type_value=DagsterEventType.ENGINE_EVENT.value,
        job_name="job",
        message=f"event {i}",
        event_specific_data=EngineEventData(),
    )
    return EventLogEntry(
        error_info=None, level=20, user_message="", run_id=run_id, timestamp=time.time(), dagster_event=event
    )


def test_pooled_connections_serve_threads_and_a_second_storage_on_the_same_file(tmp_path):
    """Connections are pooled per process (not one per event): threads storing at once lose nothing, and
    another storage on the same file (the webserver next to a run) reads every event back."""
    from concurrent.futures import ThreadPoolExecutor

    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: storage.store_event(_engine_event(f"run-{i % 4}", i)), range(120)))
    reader = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        messages = {e.dagster_event.message for run in range(4) for e in reader.get_logs_for_run(f"run-{run}")}
        assert messages == {f"event {i}" for i in range(120)}
        assert storage._engine[1].pool.checkedout() == 0  # every connection went back to the pool
    finally:
        storage.dispose()
        reader.dispose()
    assert storage._engine is None


def test_connections_commit_in_wal_with_normal_sync(tmp_path):
    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        with storage._connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        storage.dispose()


def test_a_planned_row_holds_the_event_without_its_partition_subset(tmp_path):
    """On our sessions' partitions definition a range run's planned check event is ~19 KB (the NYSE closures
    in the definition); the stock storage stored it again in every partition's row (1.19 GB for a ten-year
    backfill). Ours stores it once in the event log and a bare copy in each row: the rows read back as the
    same planned executions."""
    from dagster import deserialize_value
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable

    from trading_dagster.partitions import sessions_partitions_def
    from trading_dagster_tests.dagster_events import planned_check_entry

    keys = ["2016-12-22", "2016-12-23", "2016-12-27", "2016-12-28"]  # Christmas is no session
    entry = planned_check_entry(dg.AssetKey("a"), "c", keys, run_id="r", partitions=sessions_partitions_def())
    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    try:
        storage.store_event(entry)
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("a"), "c"), limit=10)
        with storage._connect() as conn:
            column = AssetCheckExecutionsTable.c.evaluation_event
            stored = [r[0] for r in conn.execute(AssetCheckExecutionsTable.select().with_only_columns(column))]
        logged = storage.get_logs_for_run("r")
    finally:
        storage.dispose()
    assert sorted((r.partition, r.status.value, r.run_id) for r in history) == [(k, "PLANNED", "r") for k in keys]
    assert len(stored) == len(keys) and max(map(len, stored)) < 2_000
    planned = [deserialize_value(s, dg.EventLogEntry).dagster_event.event_specific_data for s in stored]
    assert [p.partitions_subset for p in planned] == [None] * len(keys)
    # the run's log keeps the whole event, subset and all
    assert len(logged) == 1
    assert sorted(logged[0].dagster_event.event_specific_data.partitions_subset.get_partition_keys()) == keys
