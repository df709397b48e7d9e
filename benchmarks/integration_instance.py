"""The integration tests' instance: `pipeline_job` over a range of the shipped sample, in one process, on
`DagsterInstance.ephemeral()` and on the throwaway batched-SQLite instance the tests use
(trading_dagster_tests/integration/conftest.py `batched_instance`), each on a fresh data folder; prints each
run's time and the ratio (the two in the order given, so run it both ways on a busy machine).

    .venv/bin/python benchmarks/integration_instance.py                       # the full sample, batched first
    .venv/bin/python benchmarks/integration_instance.py --order ephemeral,batched --start 2015-11-02
"""

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")  # as the tests' conftest

import dagster as dg  # noqa: E402

from trading_dagster.cli import prepare_manifest  # noqa: E402
from trading_dagster.definitions import build_definitions  # noqa: E402
from trading_dagster.settings import load_settings  # noqa: E402
from trading_dagster_tests.integration.conftest import batched_instance  # noqa: E402


def run(kind: str, start: dt.date, end: dt.date) -> float:
    root = Path(tempfile.mkdtemp(prefix=f"integration-instance-{kind}-"))
    defs = build_definitions(load_settings({"TRADING_DAGSTER_DATA_DIR": str(root / "data")}))
    job = defs.resolve_job_def("pipeline_job")
    tags = {"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    t0 = time.perf_counter()
    if kind == "ephemeral":
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags=tags, run_config=quiet)
    else:
        with batched_instance() as instance:
            result = job.execute_in_process(instance=instance, tags=tags, run_config=quiet)
    seconds = time.perf_counter() - t0
    assert result.success, kind
    print(f"{kind:9s} {seconds:7.1f} s  ({len(result.all_events)} events)", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", default="batched,ephemeral")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2008, 1, 2))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2017, 11, 10))
    args = parser.parse_args()
    prepare_manifest()
    seconds = {kind: run(kind, args.start, args.end) for kind in args.order.split(",")}
    if {"batched", "ephemeral"} <= seconds.keys():
        print(f"batched / ephemeral: {seconds['batched'] / seconds['ephemeral']:.2f}")


if __name__ == "__main__":
    main()
