"""The dbt marts as Dagster assets, downstream of the Python P&L assets.

Every dbt source maps onto the Python asset that writes its table (`meta.dagster.asset_key` in
`dbt_project/models/staging/_sources.yml`), so lineage runs from `raw/raw_prices` to each mart. The models are
partitioned by session like the rest of the pipeline, with a single-run backfill policy: one `dbt build` per
run, the run's session window passed as `--vars` (`min_date`, `max_date`). Only the trade journal is
incremental (delete+insert of the window's sessions); the other marts are whole-history tables rebuilt on
every run, because FIFO lot attribution, cumulative P&L and drawdowns depend on the whole history and the
rebuild costs about a second on ten years of the sample.
"""

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from trading_dagster.assets.audit_export import AUDIT_LOG
from trading_dagster.dbt_project_def import WAREHOUSE_ENV, dbt_project
from trading_dagster.partitions import sessions_partitions_def
from trading_dagster.resources.writer_lock import WRITER_TAG

MARTS_GROUP = "marts"
# one partitions definition for the marts' assets (built on first use) and their job (built at import): the
# session range is read from the environment when this module is imported (partitions.py)
MARTS_PARTITIONS = sessions_partitions_def()


def dbt_executable() -> str:
    """The venv's `dbt` next to this Python (the venv need not be activated), else `dbt` on PATH."""
    local = Path(sys.executable).parent / "dbt"
    return str(local) if local.exists() else (shutil.which("dbt") or "dbt")


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class WarehouseDbtResource(DbtCliResource):
    """`DbtCliResource` whose dbt runs on the warehouse file: the profile reads its path from
    TRADING_DAGSTER_WAREHOUSE, set for the dbt process only (the subprocess starts inside `cli`)."""

    warehouse_path: str | None = None

    def cli(self, args, **kwargs):  # type: ignore[override]
        with _environment(WAREHOUSE_ENV, self.warehouse_path):
            return super().cli(args, **kwargs)


class MartsTranslator(DagsterDbtTranslator):
    """Models as `marts/<model>` in the `marts` group; sources keep the Python assets' keys (their meta)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([MARTS_GROUP, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return MARTS_GROUP

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        """dbt's tags, and `book` from a model's `meta` (the trading book's marts say `broker`; the group's
        tag, `backtest`, is the default: definitions.GROUP_ANNOTATIONS)."""
        tags = dict(super().get_tags(dbt_resource_props))
        meta = (dbt_resource_props.get("config") or {}).get("meta") or dbt_resource_props.get("meta") or {}
        if meta.get("book"):
            tags["book"] = str(meta["book"])
        return tags


def window_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The run's session window as dbt vars (the window's end is the next session's 00:00, exclusive)."""
    window = context.partition_time_window
    return {
        "min_date": f"{window.start:%Y-%m-%d}",
        "max_date": f"{(window.end - dt.timedelta(days=1)):%Y-%m-%d}",
    }


@cache
def marts_assets() -> dg.AssetsDefinition:
    """The `@dbt_assets` definition, built on first call rather than at import: it reads
    `target/manifest.json`, which `trading-dagster prepare` writes (a fresh clone has none)."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        name="trading_marts",
        partitions_def=MARTS_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=MartsTranslator(),
    )
    def trading_marts(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource):
        # dbt's target and log folder for this run only (compiled SQL, run_results.json, dbt.log; about 3 MB):
        # dagster-dbt's default, a new folder under dbt_project/target/ per run, would pile up
        with tempfile.TemporaryDirectory(prefix="trading-marts-dbt-") as target:
            args = ["build", "--vars", json.dumps(window_vars(context))]
            yield from dbt.cli(args, context=context, target_path=Path(target)).stream()

    return trading_marts


marts_job = dg.define_asset_job(
    "marts_job",
    # the trading ledger's audit log is copied into the warehouse first: the trading journal reads it
    selection=dg.AssetSelection.groups(MARTS_GROUP) | dg.AssetSelection.assets(dg.AssetKey(AUDIT_LOG)),
    description="The trading ledger's audit log copied into the warehouse (execution/audit_log), then dbt build "
    "of the marts (staging -> intermediate -> marts, with their tests) for a session range.",
    partitions_def=MARTS_PARTITIONS,
    tags={WRITER_TAG: "marts"},  # queued behind any other writing run (resources/writer_lock.py)
)


def dbt_resource(warehouse_path: str) -> WarehouseDbtResource:
    return WarehouseDbtResource(
        project_dir=dbt_project, dbt_executable=dbt_executable(), warehouse_path=warehouse_path
    )
