"""`research/sma_sweep` (issue 11): the sweep kernel as an asset launched from the UI.

On the shipped sample's cleaned prices in a small warehouse, a 2 x 2 grid: the table is the kernel's, ranked by
Sharpe, the heatmap is there, and the backtest's default (non-reference) settings fail naming a setting.
"""

from __future__ import annotations

import base64

import dagster as dg
import duckdb
import pytest

from trading_dagster.assets.portal import WarehouseReader
from trading_dagster.assets.research import SMA_SWEEP, SWEEP_COLUMNS, sma_sweep
from trading_dagster.research.sweep import sweep_sma_cross
from trading_dagster.resources.configured import BacktestBookResource, CostsConfig, TradingConfigResource
from trading_dagster.resources.warehouse import WarehouseIOManager

FAST, SLOW = [10, 20], [50, 100]
GRID = {"fast": FAST, "slow": SLOW, "notional": 10_000.0, "initial_cash": 1_000_000.0, "tie_band_pct": 0.1}


@pytest.fixture(scope="module")
def database(cleaned, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("research") / "warehouse.duckdb")
    con = duckdb.connect(path)
    try:
        frame = cleaned.to_arrow()  # noqa: F841  (read by DuckDB's replacement scan)
        con.execute("create schema prices; create table prices.cleaned_prices as select * from frame")
    finally:
        con.close()
    return path


def _materialize(database: str, tmp_path, **config):
    return dg.materialize(
        [sma_sweep],
        resources={
            "io_manager": WarehouseIOManager(database=database),
            "warehouse": WarehouseReader(database=database),
            "trading_config": TradingConfigResource(),
            "backtest_book": BacktestBookResource(
                ledger_path=str(tmp_path / "book.duckdb"), costs=CostsConfig(commission_bps=1.0, slippage_bps=5.0)
            ),
        },
        run_config={"ops": {"research__sma_sweep": {"config": {**GRID, **config}}}},
        raise_on_error=False,
    )


def test_the_sweep_asset_writes_the_kernels_figures_ranked_by_sharpe(cleaned, calendar, database, tmp_path):
    result = _materialize(database, tmp_path)
    assert result.success
    con = duckdb.connect(database, read_only=True)
    try:
        table = con.execute("select * from research.sma_sweep").pl()
    finally:
        con.close()
    assert table.columns == SWEEP_COLUMNS and table.height == 4

    direct = sweep_sma_cross(
        cleaned, calendar, [(f, s) for f in FAST for s in SLOW],
        notional=10_000, initial_cash=1_000_000, fees_bps=1, slippage_bps=5, tie_band_pct=0.1,
    ).stats
    kept = [c for c in SWEEP_COLUMNS if c != "rank"]
    assert table.sort("fast", "slow").select(kept).equals(direct.sort("fast", "slow").select(kept))

    assert table["rank"].to_list() == [1, 2, 3, 4]
    assert table["sharpe"].to_list() == sorted(direct["sharpe"].to_list(), reverse=True)
    assert direct["orders"].min() > 0  # the pairs traded: the comparison is not of empty books

    metadata = result.asset_materializations_for_node("research__sma_sweep")[0].metadata
    heatmap = metadata["sharpe_heatmap"].value
    assert heatmap.startswith("![Sharpe by SMA pair](data:image/png;base64,")
    assert base64.b64decode(heatmap.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")
    best = table.row(0, named=True)
    assert metadata["best_pair"].value.startswith(f"fast {best['fast']} / slow {best['slow']}")
    assert len(metadata["top_10"].value.records) == 4
    assert metadata["symbols"].value == cleaned["symbol"].n_unique()
    assert metadata["session_count"].value == len(sweep_sma_cross(cleaned, calendar, [(10, 50)]).sessions)
    assert metadata["elapsed_seconds"].value > 0
    assert "reference conventions" in metadata["conventions"].value
    assert "buying_power" in metadata["conventions"].value  # the default book differs: said, not hidden

    # a second run replaces the table (not partitioned), with a window
    again = _materialize(database, tmp_path, start="2012-01-03", end="2013-12-31")
    assert again.success
    con = duckdb.connect(database, read_only=True)
    try:
        assert con.execute("select count(*) from research.sma_sweep").fetchone() == (4,)
    finally:
        con.close()


def test_the_default_backtest_settings_fail_naming_the_setting(database, tmp_path):
    result = _materialize(database, tmp_path, reference_conventions=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    message = failure.user_failure_data.description
    assert "buying_power='cash'" in message
    assert "reference conventions" in message and "A backtest you can check" in message


def test_sweep_job_is_wired_with_the_research_groups_owner(tmp_path):
    from trading_dagster.definitions import build_definitions
    from trading_dagster_tests.integration.conftest import make_settings

    defs = build_definitions(make_settings(tmp_path))
    job = defs.resolve_job_def("sweep_job")
    assert job.asset_layer.selected_asset_keys == {SMA_SWEEP}
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == SMA_SWEEP)
    assert spec.group_name == "research" and spec.owners == ["team:quant-research"]
    assert spec.tags["step"] == "10-research" and spec.tags["book"] == "backtest"
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey(["prices", "cleaned_prices"])}
