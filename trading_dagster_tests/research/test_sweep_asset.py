"""`research/sma_sweep`, `research/rsi_sweep`, `research/dip_sweep` (issue 11): the sweeps as assets.

On the shipped sample's cleaned prices and its indicators table in a small warehouse, small grids: each table is
its kernel's, ranked by Sharpe, the heatmap / plot is there, and the backtest's default (non-reference)
settings fail naming a setting.
"""

from __future__ import annotations

import base64
import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.assets.research import (
    DIP_SWEEP,
    RSI_SWEEP,
    SMA_SWEEP,
    SWEEP_COLUMNS,
    dip_sweep,
    rank_by_sharpe,
    rsi_sweep,
    sma_sweep,
    sweep_columns,
)
from trading_dagster.research.sweep import sweep_sma_cross
from trading_dagster.research.threshold_sweep import (
    DIP_COLUMN,
    RSI_COLUMN,
    pack_indicator_bars,
    sweep_dip,
    sweep_rsi,
)
from trading_dagster_tests.research.conftest import research_resources, write_warehouse

FAST, SLOW = [10, 20], [50, 100]
GRID = {"fast": FAST, "slow": SLOW, "notional": 10_000.0, "initial_cash": 1_000_000.0, "tie_band_pct": 0.1}


RSI_GRID = {"lower": [25.0, 30.0], "upper": [70.0, 75.0], "notional": 10_000.0, "initial_cash": 1_000_000.0}
DIP_GRID = {"thresholds": [10.0, 15.0, 20.0], "notional": 10_000.0, "initial_cash": 1_000_000.0}
COSTS = {"fees_bps": 1, "slippage_bps": 5}


@pytest.fixture(scope="module")
def indicators(sample_indicators):
    return sample_indicators


@pytest.fixture(scope="module")
def database(cleaned, indicators, tmp_path_factory) -> str:
    return write_warehouse(
        tmp_path_factory.mktemp("research") / "warehouse.duckdb",
        {"prices.cleaned_prices": cleaned, "indicators.indicators": indicators},
    )


def _read(database: str, table: str):
    con = duckdb.connect(database, read_only=True)
    try:
        return con.execute(f"select * from research.{table}").pl()
    finally:
        con.close()


def _materialize(database: str, tmp_path, asset=sma_sweep, grid=GRID, **config):
    op = "__".join(asset.key.path)
    return dg.materialize(
        [asset],
        resources=research_resources(database, tmp_path),
        run_config={"ops": {op: {"config": {**grid, **config}}}},
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
        cleaned,
        calendar,
        [(f, s) for f in FAST for s in SLOW],
        notional=10_000,
        initial_cash=1_000_000,
        fees_bps=1,
        slippage_bps=5,
        tie_band_pct=0.1,
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
    assert job.asset_layer.selected_asset_keys == {SMA_SWEEP, RSI_SWEEP, DIP_SWEEP}
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    for key in (SMA_SWEEP, RSI_SWEEP, DIP_SWEEP):
        spec = specs[key]
        assert spec.group_name == "research" and spec.owners == ["team:quant-research"], key
        assert spec.tags["step"] == "10-research" and spec.tags["book"] == "backtest", key
        assert spec.partitions_def is None, key
    cleaned_prices, indicators = (
        dg.AssetKey(["prices", "cleaned_prices"]),
        dg.AssetKey(["indicators", "indicators"]),
    )
    assert {d.asset_key for d in specs[SMA_SWEEP].deps} == {cleaned_prices}
    for key in (RSI_SWEEP, DIP_SWEEP):
        assert {d.asset_key for d in specs[key].deps} == {cleaned_prices, indicators}, key
        assert indicators in specs and cleaned_prices in specs  # the deps are the pipeline's assets


def test_the_rsi_sweep_asset_writes_the_kernels_figures_with_a_heatmap(
    cleaned, calendar, indicators, database, tmp_path
):
    result = _materialize(database, tmp_path, rsi_sweep, RSI_GRID)
    assert result.success
    table = _read(database, "rsi_sweep")
    assert table.columns == sweep_columns(("lower", "upper")) and table.height == 4
    data = pack_indicator_bars(cleaned, indicators, calendar, [RSI_COLUMN])
    direct = sweep_rsi(
        data,
        [(lo, hi) for lo in RSI_GRID["lower"] for hi in RSI_GRID["upper"]],
        initial_cash=1_000_000,
        **COSTS,
    ).stats
    assert direct["orders"].min() > 0
    assert table.equals(rank_by_sharpe(direct, ("lower", "upper")))
    assert table["rank"].to_list() == [1, 2, 3, 4]
    assert table["sharpe"].to_list() == sorted(direct["sharpe"].to_list(), reverse=True)

    metadata = result.asset_materializations_for_node("research__rsi_sweep")[0].metadata
    heatmap = metadata["sharpe_heatmap"].value
    assert heatmap.startswith("![Sharpe by RSI bounds](data:image/png;base64,")
    assert base64.b64decode(heatmap.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")
    best = table.row(0, named=True)
    assert metadata["best_bounds"].value.startswith(
        f"lower {best['lower']:g} / upper {best['upper']:g}: Sharpe"
    )
    assert metadata["bound_pairs"].value == 4 and len(metadata["top_10"].value.records) == 4
    assert "reference conventions" in metadata["conventions"].value
    in_window = indicators.height
    assert metadata["indicator_coverage"].value.endswith(
        f"of the window's {in_window:,} bars have a rsi_14 value"
    )
    assert "tie_band_pct" not in metadata["settings"].value


def test_the_dip_sweep_asset_writes_the_kernels_figures_by_threshold(
    cleaned, calendar, indicators, database, tmp_path
):
    result = _materialize(database, tmp_path, dip_sweep, DIP_GRID, start="2012-01-03")
    assert result.success
    table = _read(database, "dip_sweep")
    assert table.columns == sweep_columns(("threshold_pct",)) and table.height == 3
    data = pack_indicator_bars(cleaned, indicators, calendar, [DIP_COLUMN], start=dt.date(2012, 1, 3))
    direct = sweep_dip(data, DIP_GRID["thresholds"], initial_cash=1_000_000, **COSTS).stats
    assert direct["trades"].min() > 0
    assert table.equals(rank_by_sharpe(direct, ("threshold_pct",)))

    metadata = result.asset_materializations_for_node("research__dip_sweep")[0].metadata
    page = metadata["sharpe_by_threshold"].value
    assert page.startswith("![Sharpe by dip threshold](data:image/png;base64,")
    for threshold, sharpe in direct.select("threshold_pct", "sharpe").iter_rows():
        assert f"| {threshold:g} | {sharpe:.3f} |" in page  # the table row of every threshold
    assert metadata["thresholds"].value == 3
    assert metadata["sessions"].value.startswith("2012-01-03 ..")
    best = table.row(0, named=True)
    assert metadata["best_threshold"].value.startswith(f"threshold_pct {best['threshold_pct']:g}: Sharpe")


def test_a_sweep_without_the_indicators_table_fails_naming_it(cleaned, tmp_path):
    path = write_warehouse(tmp_path / "prices_only.duckdb", {"prices.cleaned_prices": cleaned.head(1_000)})
    result = _materialize(path, tmp_path, dip_sweep, DIP_GRID)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "no indicators.indicators" in message and "pct_below_high_52w" in message


@pytest.mark.parametrize(("asset", "grid"), [(rsi_sweep, RSI_GRID), (dip_sweep, DIP_GRID)])
def test_the_threshold_sweeps_refuse_the_default_backtest_settings_by_name(database, tmp_path, asset, grid):
    result = _materialize(database, tmp_path, asset, grid, reference_conventions=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "buying_power='cash'" in message and "A backtest you can check" in message


def test_an_empty_rsi_grid_fails_naming_the_bounds(database, tmp_path):
    result = _materialize(database, tmp_path, rsi_sweep, {"lower": [70.0], "upper": [30.0]})
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "0 < lower < upper < 100" in message and "lower=[70.0]" in message


def test_the_dip_sweep_asset_with_an_exit_grid(cleaned, calendar, indicators, database, tmp_path):
    """take_profit_pct / stop_loss_pct lists add grid dimensions (each leg also off): thresholds x (takes + 1)
    x (stops + 1) rows, the kernel's, with a heatmap of thresholds by exits."""
    exits = {"thresholds": [10.0, 20.0], "take_profit_pct": [15.0], "stop_loss_pct": [8.0]}
    result = _materialize(database, tmp_path, dip_sweep, {**DIP_GRID, **exits})
    assert result.success
    params = ("threshold_pct", "take_profit_pct", "stop_loss_pct")
    # the table of an earlier run without exits gains the two columns (at its end: the IO manager's evolution)
    table = _read(database, "dip_sweep")
    assert sorted(table.columns) == sorted(sweep_columns(params)) and table.height == 8
    table = table.select(sweep_columns(params)).sort("rank")
    data = pack_indicator_bars(cleaned, indicators, calendar, [DIP_COLUMN], price_columns=("high", "low"))
    direct = sweep_dip(
        data,
        [10.0, 20.0],
        take_profit_pct=[None, 15.0],
        stop_loss_pct=[None, 8.0],
        initial_cash=1_000_000,
        **COSTS,
    ).stats
    assert table.equals(rank_by_sharpe(direct, params))
    assert table.filter(pl.col("take_profit_pct").is_null() & pl.col("stop_loss_pct").is_null()).height == 2
    metadata = result.asset_materializations_for_node("research__dip_sweep")[0].metadata
    assert metadata["sharpe_by_threshold"].value.startswith(
        "![Sharpe by dip threshold and exits](data:image/png"
    )
    assert metadata["thresholds"].value == 8
    best = table.row(0, named=True)
    assert metadata["best_threshold"].value.startswith(
        f"threshold_pct {best['threshold_pct']:g} / take_profit_pct"
    )


def test_a_bad_exit_grid_fails_naming_it(database, tmp_path):
    result = _materialize(database, tmp_path, dip_sweep, {**DIP_GRID, "stop_loss_pct": [120.0]})
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "stop_loss_pct" in message and "120" in message
