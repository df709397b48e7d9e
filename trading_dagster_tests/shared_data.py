"""Where the shared real dataset (../shared/data, 3.8 M rows) is, for the tests that use it by path.

TRADING_DAGSTER_SHARED_DATA (a folder), else <repo>/../shared/data. A clone that is not beside ../shared
sets the variable; tests that need the data skip with this reason when it is absent.
"""

import os
from pathlib import Path

FILE_NAME = "us_equities_etfs_daily_2008_2017.parquet"
MISSING_REASON = (
    f"shared dataset {FILE_NAME} not found: set TRADING_DAGSTER_SHARED_DATA to its folder "
    "(looked in $TRADING_DAGSTER_SHARED_DATA and <repo>/../shared/data)"
)


def shared_data_file() -> Path | None:
    candidates = []
    if os.environ.get("TRADING_DAGSTER_SHARED_DATA"):
        candidates.append(Path(os.environ["TRADING_DAGSTER_SHARED_DATA"]))
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return next((p / FILE_NAME for p in candidates if (p / FILE_NAME).is_file()), None)
