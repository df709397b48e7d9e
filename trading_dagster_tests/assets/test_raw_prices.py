"""raw_prices as an asset: every source merges (decision 0004 sections 1 and 2). A session the source has no
bar for is an outage at WARN severity (the run goes on, the quality gate stays open; `halt` is tested in
test_assets_direct.py); re-materializing unchanged data writes nothing and marks nothing stale; a revised
bar is recorded as a change for staleness. Real rows of the repo's sample (AAPL, MSFT, SPY), defects applied.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from trading_dagster.assets.raw import RAW_PRICES, raw_prices
from trading_dagster.definitions import ASSETS, build_resources
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.resources.raw_store import LocalRawStore
from trading_dagster.settings import SAMPLE_FILE, Settings
from trading_dagster_tests.integration.conftest import make_settings

RAW_KEY = dg.AssetKey(RAW_PRICES)
WEEK = [dt.date(2017, 6, d) for d in (5, 6, 7, 8, 9)]


def sample(first: dt.date, last: dt.date, symbols=("AAPL", "MSFT", "SPY")) -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_FILE).filter(
        pl.col("ticker").is_in(list(symbols)) & pl.col("date").is_between(first, last)
    )


def materialize(settings: Settings, first: dt.date, last: dt.date, config: dict | None = None, **kw):
    return dg.materialize(
        ASSETS,
        selection=[RAW_KEY],
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
        run_config={"ops": {raw_prices.op.name: {"config": config}}} if config else None,
        **kw,
    )


def checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_session_without_bars_is_an_outage_at_warn_and_the_run_goes_on(tmp_path):
    """The vendor delivered nothing on 06-07 and only nulls on 06-08: both are recorded and named, the
    check fails at WARN, the gate stays open for every session, and the other sessions are written."""
    rows = sample(WEEK[0], WEEK[-1]).filter(pl.col("date") != WEEK[2])
    rows = rows.with_columns(
        [pl.when(pl.col("date") == WEEK[3]).then(None).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "volume")]
    )
    source = tmp_path / "vendor.parquet"
    rows.write_parquet(source)
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source))

    result = materialize(settings, WEEK[0], WEEK[-1])

    assert result.success
    check = checks(result)["raw_prices__every_session_has_bars"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["missing_sessions"].value == f"{WEEK[2]}, {WEEK[3]}"
    assert check.metadata["all_null_sessions"].value == str(WEEK[3])
    assert checks(result)["raw_prices__gx_suite"].passed
    gate = QualityGate(settings.quality_gate_path)
    assert gate.failures("raw/raw_prices", WEEK[0], WEEK[-1]).is_empty()  # a warning does not close it
    store = LocalRawStore(settings.raw_root)
    assert store.list_sessions() == WEEK and store.read_session(WEEK[2]).height == 0
    (import_id,) = store.list_imports()
    manifest = store.read_manifest(import_id)
    assert manifest["empty_sessions"] == [str(WEEK[2])] and manifest["all_null_sessions"] == [str(WEEK[3])]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["empty_sessions"].value == str(WEEK[2]) and metadata["import_id"].value == import_id


def test_a_rerun_writes_nothing_and_a_revised_bar_is_recorded_as_a_change(tmp_path):
    source = tmp_path / "vendor.parquet"
    sample(WEEK[0], WEEK[-1]).write_parquet(source)
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source))
    assert materialize(settings, WEEK[0], WEEK[-1]).success
    gate = QualityGate(settings.quality_gate_path)
    first_changes = gate.changes()
    assert first_changes["session"].to_list() == WEEK  # every session was new
    store = LocalRawStore(settings.raw_root)
    objects = {s: (store.root / store.key_for(s)).stat().st_ino for s in WEEK}

    assert materialize(settings, WEEK[0], WEEK[-1]).success  # the same bars again
    assert {s: (store.root / store.key_for(s)).stat().st_ino for s in WEEK} == objects  # no object rewritten
    assert gate.changes().equals(first_changes)  # nothing downstream made stale

    fixed = sample(WEEK[0], WEEK[-1]).with_columns(
        close=pl.when((pl.col("ticker") == "MSFT") & (pl.col("date") == WEEK[1])).then(pl.col("close") + 0.25).otherwise(pl.col("close"))
    )
    fixed.write_parquet(source)
    assert materialize(settings, WEEK[0], WEEK[-1]).success
    changed = gate.changes().join(first_changes, on="session", suffix="_before")
    assert changed.filter(pl.col("changed_at") > pl.col("changed_at_before"))["session"].to_list() == [WEEK[1]]
    assert store.read_revisions(WEEK[1])["symbol"].to_list() == ["MSFT"]


def test_import_paths_merge_several_files_as_one_delivery(tmp_path):
    """What `trading-dagster import AAPL.csv MSFT.csv` runs: both files, one merge per session, a
    preliminary row kept as a revision, the extra column named as ignored."""
    paths = []
    for symbol in ("AAPL", "MSFT"):
        rows = sample(WEEK[0], WEEK[-1], [symbol]).with_columns(adj_close=pl.col("close") * 0.98)
        if symbol == "MSFT":  # a preliminary bar of 06-06 before the final one
            rows = pl.concat([rows.filter(pl.col("date") == WEEK[1]).with_columns(volume=pl.col("volume") // 2), rows])
        paths.append(tmp_path / f"{symbol}.csv")
        rows.write_csv(paths[-1])
    settings = make_settings(tmp_path / "data")
    as_of = dt.datetime(2026, 1, 5, tzinfo=dt.UTC).isoformat()

    result = materialize(settings, WEEK[0], WEEK[-1], {"import_paths": [str(p) for p in paths], "as_of": as_of})

    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    store = LocalRawStore(settings.raw_root)
    assert store.read_sessions(WEEK).sort("date", "symbol").select("symbol", "date", "volume").equals(
        sample(WEEK[0], WEEK[-1], ["AAPL", "MSFT"]).rename({"ticker": "symbol"}).sort("date", "symbol").select("symbol", "date", "volume")
    )
    (import_id,) = store.list_imports()
    manifest = store.read_manifest(import_id)
    assert manifest["ignored_columns"] == {"adj_close": [str(p) for p in paths]}
    assert manifest["earlier_rows"] == 1 and manifest["as_of"] == as_of
    assert store.read_revisions(WEEK[1])["revision_reason"].to_list() == ["earlier row of the same delivery"]
    assert sorted(Path(s).name for s in manifest["sources"]) == ["AAPL.csv", "MSFT.csv"]
