"""The dbt marts as Dagster assets, downstream of the Python P&L assets.

Every dbt source maps onto the Python asset that writes its table (`meta.dagster.asset_key` in
`dbt_project/models/staging/_sources.yml`), so lineage runs from `raw/raw_prices` to each mart. The models are
partitioned by session like the rest of the pipeline, with a single-run backfill policy: one `dbt build` per
run, the run's session window passed as `--vars` (`min_date`, `max_date`). Only the trade journal is
incremental (delete+insert of the window's sessions); the other marts are whole-history tables rebuilt on
every run, because FIFO lot attribution, cumulative P&L and drawdowns depend on the whole history and the
rebuild costs about a second on ten years of the sample.

dagster-dbt is not imported here. Importing it imports dbt-core, which every process that loads the
definitions would pay for (a run worker of the daily pipeline included) though only a marts step runs dbt.
So the marts' multi-asset is built from the specs dagster-dbt's `@dbt_assets` derives from the manifest
(keys, lineage, descriptions, metadata, tags, kinds, code versions, the dbt tests as blocking checks),
read from a snapshot beside the manifest (`SPECS_SNAPSHOT`): the code location shows exactly what
`@dbt_assets` shows. The snapshot is keyed by the manifest's bytes, the source of the two modules that
shape the specs and the Dagster and dagster-dbt versions; when it is missing or stale, `assets/dbt_marts.py`
(dagster-dbt) builds the specs and writes it again. A marts step imports dagster-dbt and runs `dbt build`
through it exactly as `@dbt_assets` would (`dbt_marts.build`).
"""

import datetime as dt
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from trading_dagster.assets.audit_export import AUDIT_LOG
from trading_dagster.partitions import sessions_partitions_def
from trading_dagster.resources.writer_lock import WRITER_TAG

MARTS_GROUP = "marts"
MARTS_NAME = "trading_marts"  # the multi-asset's op
# one partitions definition for the marts' assets (built on first use) and their job (built at import): the
# session range is read from the environment when this module is imported (partitions.py)
MARTS_PARTITIONS = sessions_partitions_def()
# dbt_project_def.py's (tested equal): that module imports dagster-dbt for its DbtProject
DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
WAREHOUSE_ENV = "TRADING_DAGSTER_WAREHOUSE"
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
SPECS_SNAPSHOT = MANIFEST.with_name("dagster_marts_specs.pickle")
# dagster-dbt's `op_tags` of a `@dbt_assets` with the default selection (tested equal)
MARTS_OP_TAGS = {"dagster_dbt/select": "fqn:*"}


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


_DOCS = "https://docs.getdbt.com/docs/core/connect-data-platform/connection-profiles"
T = TypeVar("T")


class WarehouseDbtResource(dg.ConfigurableResource):
    """dagster-dbt's `DbtCliResource` (the same fields) whose dbt runs on the warehouse file: the profile
    reads its path from TRADING_DAGSTER_WAREHOUSE, set for the dbt process only (the subprocess starts inside
    `cli`). dagster-dbt's resource is built when dbt runs, not when the definitions load."""

    # DbtCliResource's fields, as dagster-dbt declares them (tested equal)
    project_dir: str = Field(
        description=(
            "The path to your dbt project directory. This directory should contain a"
            " `dbt_project.yml`. See https://docs.getdbt.com/reference/dbt_project.yml for more"
            " information."
        ),
    )
    global_config_flags: list[str] = Field(
        default=[],
        description=(
            "A list of global flags configuration to pass to the dbt CLI invocation. See"
            " https://docs.getdbt.com/reference/global-configs for a full list of configuration."
        ),
    )
    profiles_dir: str | None = Field(
        default=None,
        description=(
            "The path to the directory containing your dbt `profiles.yml`. By default, the current"
            " working directory is used, which is the dbt project directory."
            f" See {_DOCS} for "
            " more information."
        ),
    )
    profile: str | None = Field(
        default=None,
        description=(
            "The profile from your dbt `profiles.yml` to use for execution. See"
            f" {_DOCS} for more"
            " information."
        ),
    )
    target: str | None = Field(
        default=None,
        description=(
            "The target from your dbt `profiles.yml` to use for execution. See"
            f" {_DOCS} for more"
            " information."
        ),
    )
    dbt_executable: str = Field(
        default="dbtf" if shutil.which("dbtf") else "dbt",
        description="The path to the dbt executable. Defaults to `dbtf` if available, otherwise `dbt`.",
    )
    state_path: str | None = Field(
        default=None,
        description=(
            "The path, relative to the project directory, to a directory of dbt artifacts to be"
            " used with --state / --defer-state."
            " This can be used with methods such as get_defer_args to allow for a @dbt_assets to"
            " use defer in the appropriate environments."
        ),
    )
    warehouse_path: str | None = None

    def dbt_cli_resource(self) -> Any:
        """dagster-dbt's `DbtCliResource` with these fields (imports dagster-dbt)."""
        from trading_dagster.assets.dbt_marts import dbt_cli_resource

        fields = self.model_dump()
        fields.pop("warehouse_path")
        return dbt_cli_resource(fields)

    def with_warehouse(self, call: Callable[[], T]) -> T:
        """`call()` with TRADING_DAGSTER_WAREHOUSE set to the warehouse (for the dbt process it starts)."""
        with _environment(WAREHOUSE_ENV, self.warehouse_path):
            return call()

    def cli(self, args, **kwargs):
        """`DbtCliResource.cli` on the warehouse."""
        cli = self.dbt_cli_resource()
        return self.with_warehouse(lambda: cli.cli(args, **kwargs))


def window_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The run's session window as dbt vars (the window's end is the next session's 00:00, exclusive)."""
    window = context.partition_time_window
    return {
        "min_date": f"{window.start:%Y-%m-%d}",
        "max_date": f"{(window.end - dt.timedelta(days=1)):%Y-%m-%d}",
    }


def dbt_build_args(context: dg.AssetExecutionContext) -> list[str]:
    return ["build", "--vars", json.dumps(window_vars(context))]


# ------------------------------------------------------------------------------------------------------------
# The specs dagster-dbt derives from the manifest, snapshotted. An AssetSpec or AssetCheckSpec is written as a
# dict of its fields (AssetDep does not pickle); dagster-dbt's own objects in a spec's metadata (the manifest,
# the translator, the project: read back only when dbt runs, from dagster-dbt's definition) become the text
# Dagster shows for them anyway, `[DbtManifestWrapper] (unserializable)`.
# ------------------------------------------------------------------------------------------------------------


def _unserializable(value: Any) -> dg.TextMetadataValue:
    return dg.MetadataValue.text(f"[{value.__class__.__name__}] (unserializable)")  # Dagster's own text for it


def _dep(dep: dg.AssetDep) -> dict[str, Any]:
    return {"asset": dep.asset_key, "partition_mapping": dep.partition_mapping, "metadata": dict(dep.metadata)}


def _spec_fields(spec: dg.AssetSpec, live: Callable[[Any], bool]) -> dict[str, Any]:
    return {
        "key": spec.key,
        "deps": [_dep(d) for d in spec.deps],
        "description": spec.description,
        "metadata": {k: _unserializable(v) if live(v) else v for k, v in spec.metadata.items()},
        "skippable": spec.skippable,
        "group_name": spec.group_name,
        "code_version": spec.code_version,
        "automation_condition": spec.automation_condition,
        "owners": list(spec.owners),
        "tags": dict(spec.tags),
        "kinds": set(spec.kinds),
        "partitions_def": None,  # the multi-asset's (MARTS_PARTITIONS: read from the environment)
    }


def _check_fields(spec: dg.AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "asset": spec.asset_key,
        "description": spec.description,
        "additional_deps": [_dep(d) for d in spec.additional_deps],
        "blocking": spec.blocking,
        "metadata": dict(spec.metadata or {}),
        "automation_condition": spec.automation_condition,
        "partitions_def": None,
    }


def _asset_spec(fields: Mapping[str, Any]) -> dg.AssetSpec:
    return dg.AssetSpec(**{**fields, "deps": [dg.AssetDep(**d) for d in fields["deps"]]})


def _check_spec(fields: Mapping[str, Any]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(**{**fields, "additional_deps": [dg.AssetDep(**d) for d in fields["additional_deps"]]})


def snapshot_key(manifest: bytes) -> str:
    """What the specs depend on: the manifest, the modules that shape them (the translator, the decorator's
    arguments), the Dagster and dagster-dbt versions (dagster-dbt's version file: importing it is the cost)."""
    spec = importlib.util.find_spec("dagster_dbt")
    dagster_dbt_version = Path(spec.origin).with_name("version.py").read_bytes() if spec and spec.origin else b""
    h = hashlib.sha256(manifest)
    for part in (Path(__file__).read_bytes(), (Path(__file__).with_name("dbt_marts.py")).read_bytes(),
                 dg.__version__.encode(), dagster_dbt_version):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def dbt_specs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fields of the specs and check specs dagster-dbt builds (imports dagster-dbt and dbt-core)."""
    from trading_dagster.assets.dbt_marts import dbt_assets_definition, is_live_metadata

    full = dbt_assets_definition()
    return [_spec_fields(s, is_live_metadata) for s in full.specs], [_check_fields(c) for c in full.check_specs]


def write_specs_snapshot(manifest: bytes, path: Path = SPECS_SNAPSHOT) -> tuple[list, list]:
    """Build the specs with dagster-dbt and write them beside the manifest (atomically: processes load the
    definitions side by side). Unwritable (a read-only image): the specs are still returned."""
    specs, checks = dbt_specs()
    blob = pickle.dumps({"key": snapshot_key(manifest), "specs": specs, "checks": checks})
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False) as f:
            tmp = f.name
            f.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return specs, checks


def marts_specs(path: Path = SPECS_SNAPSHOT) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """The marts' specs and check specs as dagster-dbt builds them from the manifest: from the snapshot when
    it matches, else built (dagster-dbt imported) and snapshotted."""
    if not MANIFEST.exists():
        raise FileNotFoundError(f"dbt manifest {MANIFEST} not found: run `trading-dagster prepare` (dbt parse)")
    manifest = MANIFEST.read_bytes()
    try:
        saved = pickle.loads(path.read_bytes())  # our own file, written by write_specs_snapshot
        if saved["key"] != snapshot_key(manifest):
            raise ValueError("stale")
        specs, checks = saved["specs"], saved["checks"]
    except (OSError, ValueError, KeyError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        specs, checks = write_specs_snapshot(manifest, path)
    return [_asset_spec(s) for s in specs], [_check_spec(c) for c in checks]


@cache
def marts_assets() -> dg.AssetsDefinition:
    """The marts' multi-asset, built on first call rather than at import: its specs come from
    `target/manifest.json`, which `trading-dagster prepare` writes (a fresh clone has none). The same
    multi-asset `@dbt_assets` makes (tested equal, snapshot for snapshot), whose step runs `dbt build`
    through dagster-dbt."""
    specs, checks = marts_specs()

    @dg.multi_asset(
        name=MARTS_NAME,
        specs=specs,
        check_specs=checks,
        can_subset=True,
        partitions_def=MARTS_PARTITIONS,
        op_tags=MARTS_OP_TAGS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        allow_arbitrary_check_specs=True,
    )
    def trading_marts(context: dg.AssetExecutionContext, dbt: WarehouseDbtResource):
        from trading_dagster.assets.dbt_marts import build

        # dbt's target and log folder for this run only (compiled SQL, run_results.json, dbt.log; about 3 MB):
        # dagster-dbt's default, a new folder under dbt_project/target/ per run, would pile up
        with tempfile.TemporaryDirectory(prefix="trading-marts-dbt-") as target:
            yield from build(context, dbt, Path(target))

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
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=dbt_executable(),
        warehouse_path=warehouse_path,
    )
