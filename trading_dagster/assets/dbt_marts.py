"""Everything of the marts that needs dagster-dbt, imported only where dbt runs or the specs are first built.

Importing dagster-dbt imports dbt-core (~1.1 s on a quiet 2-core machine), which a run worker of the daily
pipeline has no use for. `assets/dbt.py` therefore builds the marts' multi-asset from the specs dagster-dbt
derives from the manifest (`dbt_assets_definition` here), snapshotted beside the manifest; this module is
imported when that snapshot is missing or stale, and when a marts step runs (`build`).
"""

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from trading_dagster.assets.dbt import (
    DBT_PROJECT_DIR,
    MARTS_GROUP,
    MARTS_NAME,
    MARTS_PARTITIONS,
    WarehouseDbtResource,
    dbt_build_args,
)


def is_live_metadata(value: Any) -> bool:
    """What dagster-dbt keeps in each spec's metadata for itself, read back from `context.assets_def` when
    dbt runs: the manifest (wrapped), the translator, the project."""
    return isinstance(value, DagsterDbtTranslator) or type(value).__module__.split(".")[0] == "dagster_dbt"


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


@cache
def dbt_project() -> DbtProject:
    """dbt_project_def's project (the same directory, its own profiles.yml)."""
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


@cache
def dbt_assets_definition() -> dg.AssetsDefinition:
    """The marts as dagster-dbt's `@dbt_assets` builds them from `target/manifest.json`: the specs
    `assets/dbt.py` snapshots, and the definition dagster-dbt reads its manifest, translator and project from
    when dbt runs. Its body is never executed (the definitions' marts run `build`)."""
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        name=MARTS_NAME,
        partitions_def=MARTS_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=MartsTranslator(),
    )
    def trading_marts(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource):
        raise NotImplementedError("assets/dbt.py's marts run `build`")

    return trading_marts


class _DbtAssetsContext(dg.AssetExecutionContext):
    """The step's own context, except that `assets_def` is dagster-dbt's definition of the same assets,
    subset like the step's: dagster-dbt reads the manifest, the translator and the project from its specs'
    metadata (the definitions' marts carry the specs only). The events dbt's output turns into (outputs by
    name, check results) are the same for both definitions, which have the same outputs and checks."""

    def __init__(self, context: dg.AssetExecutionContext, assets_def: dg.AssetsDefinition) -> None:
        super().__init__(context.op_execution_context)
        self._dbt_assets_def = assets_def

    @property
    def assets_def(self) -> dg.AssetsDefinition:
        return self._dbt_assets_def


def _as_subset_as(step_def: dg.AssetsDefinition, full: dg.AssetsDefinition, context) -> dg.AssetsDefinition:
    """`full`, subset like the step's definition (dagster-dbt selects dbt nodes from the subset)."""
    subset = (
        step_def.keys_by_output_name != step_def.node_keys_by_output_name
        or step_def.check_specs_by_output_name != step_def.node_check_specs_by_output_name
    )
    return full.subset_for(context.selected_asset_keys, context.selected_asset_check_keys) if subset else full


def build(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource, target_path) -> Iterator[Any]:
    """`dbt build` of the run's window and selection through dagster-dbt, its events as the step's."""
    dbt_context = _DbtAssetsContext(context, _as_subset_as(context.assets_def, dbt_assets_definition(), context))
    cli = dbt.dbt_cli_resource()
    yield from dbt.with_warehouse(
        lambda: cli.cli(dbt_build_args(context), context=dbt_context, target_path=target_path)
    ).stream()


def dbt_cli_resource(fields: Mapping[str, Any]) -> DbtCliResource:
    return DbtCliResource(**fields)
