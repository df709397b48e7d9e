"""The dbt project (dbt-duckdb over the warehouse) as a `DbtProject`, and nothing else.

Kept apart from `assets/dbt.py` because `@dbt_assets` needs `target/manifest.json` when it is built, and the
manifest is prepared by `trading-dagster prepare` (run by `demo`, `ui` and the tests when it is missing; a
packaging step can run `dagster-dbt project prepare-and-package --file trading_dagster/dbt_project_def.py`,
which imports this module): never at import. Hence no `prepare_if_dev()` here either: under `dagster dev`
it would run `dbt parse` at every code-location load.
"""

from __future__ import annotations

from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
# the environment variable the dbt profile reads the warehouse's DuckDB file from (dbt_project/profiles.yml)
WAREHOUSE_ENV = "TRADING_DAGSTER_WAREHOUSE"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
