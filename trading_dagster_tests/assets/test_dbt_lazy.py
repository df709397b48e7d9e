"""The marts' multi-asset without dagster-dbt at load (assets/dbt.py) against dagster-dbt's `@dbt_assets`
(assets/dbt_marts.py): the same snapshot in the code location, and no dbt import where dbt does not run.
Running `dbt build` through it is trading_dagster_tests/integration/test_dbt.py's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from trading_dagster.assets import dbt as marts
from trading_dagster.assets.dbt_marts import dbt_assets_definition, dbt_project

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(assets_def: dg.AssetsDefinition) -> dict:
    """What the code location shows for these assets, their checks, the dbt resource and a job of them."""
    job = dg.define_asset_job("marts", selection=dg.AssetSelection.groups(marts.MARTS_GROUP))
    defs = dg.Definitions(assets=[assets_def], jobs=[job], resources={"dbt": marts.dbt_resource("/tmp/w.duckdb")})
    snap = json.loads(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))
    # a check's additional deps come from a set in dagster-dbt: their order follows the process's hash seed
    for check in snap["external_asset_checks"]:
        check["additional_asset_keys"].sort(key=json.dumps)
    return snap


def test_the_code_location_shows_what_dbt_assets_shows(tmp_path):
    lazy = marts.marts_assets()
    full = dbt_assets_definition()
    assert lazy.keys == full.keys and lazy.check_keys == full.check_keys and len(lazy.check_keys) > 50
    assert _snapshot(lazy) == _snapshot(full)


def test_specs_from_the_snapshot_equal_those_built(tmp_path):
    path = tmp_path / "specs.pickle"
    built = marts.marts_specs(path)  # no snapshot there yet: built by dagster-dbt, then written
    assert path.exists()
    again = marts.marts_specs(path)
    assert again == built


def test_a_stale_or_broken_snapshot_is_rebuilt(tmp_path):
    path = tmp_path / "specs.pickle"
    marts.marts_specs(path)
    good = path.read_bytes()
    path.write_bytes(b"not a pickle")
    assert marts.marts_specs(path)[0] and path.read_bytes() == good
    import pickle

    saved = pickle.loads(good)
    saved["specs"] = saved["specs"][:1]
    saved["key"] = "another manifest"
    path.write_bytes(pickle.dumps(saved))
    assert len(marts.marts_specs(path)[0]) == len(dbt_assets_definition().keys)


def test_the_snapshot_key_follows_the_manifest():
    manifest = marts.MANIFEST.read_bytes()
    assert marts.snapshot_key(manifest) == marts.snapshot_key(manifest)
    assert marts.snapshot_key(manifest) != marts.snapshot_key(manifest + b" ")


def test_constants_equal_dbt_project_defs():
    from trading_dagster import dbt_project_def

    assert marts.DBT_PROJECT_DIR == dbt_project_def.DBT_PROJECT_DIR
    assert marts.WAREHOUSE_ENV == dbt_project_def.WAREHOUSE_ENV
    assert Path(dbt_project_def.dbt_project.manifest_path) == marts.MANIFEST
    assert Path(dbt_project().manifest_path) == marts.MANIFEST


def test_the_resource_has_dbt_cli_resources_fields():
    from dagster_dbt import DbtCliResource

    ours = marts.WarehouseDbtResource.model_fields
    theirs = DbtCliResource.model_fields
    assert set(ours) == set(theirs) | {"warehouse_path"}
    for name, field in theirs.items():
        assert (ours[name].annotation, ours[name].default, ours[name].description) == (
            field.annotation, field.default, field.description
        ), name
    # the values the previous resource (DbtCliResource(project_dir=dbt_project, ...)) held
    old = DbtCliResource(project_dir=dbt_project(), dbt_executable=marts.dbt_executable())
    resource = marts.dbt_resource("/tmp/w.duckdb")
    assert resource.dbt_cli_resource().model_dump() == old.model_dump()
    assert isinstance(resource.dbt_cli_resource(), DbtCliResource)


def test_the_resource_sets_the_warehouse_only_around_the_call(monkeypatch):
    monkeypatch.delenv(marts.WAREHOUSE_ENV, raising=False)
    resource = marts.dbt_resource("/tmp/w.duckdb")
    assert resource.with_warehouse(lambda: os.environ[marts.WAREHOUSE_ENV]) == "/tmp/w.duckdb"
    assert marts.WAREHOUSE_ENV not in os.environ


@pytest.mark.parametrize("module", ["trading_dagster.definitions"])
def test_loading_the_definitions_imports_no_dbt(module, tmp_path):
    """A process that loads the definitions (a run worker of the daily pipeline) imports neither dagster-dbt
    nor dbt-core once the snapshot is there (it is: the tests above and the conftest's manifest)."""
    marts.marts_specs()  # the snapshot, for this manifest
    code = (
        f"import sys; from {module} import defs; d = defs(); d.resolve_job_def('pipeline_job'); "
        "d.resolve_asset_graph(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster_dbt', 'dbt', 'dbt_common'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")},
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


def test_an_unwritable_folder_still_gives_the_specs(tmp_path, monkeypatch):
    def refused(src, dst):
        raise PermissionError(f"read-only: {dst}")

    monkeypatch.setattr(marts.os, "replace", refused)
    specs, checks = marts.marts_specs(tmp_path / "specs.pickle")
    assert len(specs) == len(dbt_assets_definition().keys) and checks
    assert list(tmp_path.iterdir()) == []  # no snapshot, no temporary file left


def test_a_missing_manifest_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(marts, "MANIFEST", tmp_path / "target" / "manifest.json")
    with pytest.raises(FileNotFoundError, match="trading-dagster prepare"):
        marts.marts_specs(tmp_path / "specs.pickle")


def test_prepare_writes_the_specs_snapshot_an_image_ships(capsys):
    """`trading-dagster prepare` (the Dockerfile's build step) leaves the snapshot beside the manifest, so a run
    worker's container never builds it through dagster-dbt."""
    import pickle

    from trading_dagster.cli import main

    marts.SPECS_SNAPSHOT.unlink(missing_ok=True)  # another worker may rebuild it meanwhile: it is written atomically
    assert main(["prepare"]) == 0
    saved = pickle.loads(marts.SPECS_SNAPSHOT.read_bytes())
    assert saved["key"] == marts.snapshot_key(marts.MANIFEST.read_bytes())
    assert len(saved["specs"]) == len(dbt_assets_definition().keys)
    assert f"marts specs: {marts.SPECS_SNAPSHOT} ({len(saved['specs'])} assets)" in capsys.readouterr().out
