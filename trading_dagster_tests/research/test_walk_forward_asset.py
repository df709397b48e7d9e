"""The walk-forward as assets launched from the UI (issue 11, decision 0007): `research__walk_forward` writes
research.walk_forward_folds and research.walk_forward_equity, the domain's figures, with the page's metadata.

On the shipped sample's cleaned prices in a small warehouse, a 2 x 2 grid and short folds (2012-2015).
"""

from __future__ import annotations

import base64
import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.assets.portal import WarehouseReader
from trading_dagster.assets.walk_forward import (
    KINDS,
    WALK_FORWARD_ASSETS,
    WALK_FORWARD_EQUITY,
    WALK_FORWARD_FOLDS,
    WALK_FORWARD_OP,
    walk_forward_job,
)
from trading_dagster.research.walk_forward import folds, sma_backtest, walk_forward
from trading_dagster.resources.configured import BacktestBookResource, TradingConfigResource
from trading_dagster.resources.warehouse import WarehouseIOManager
from trading_dagster_tests.research.conftest import research_resources, write_warehouse

FAST, SLOW = [10, 20], [50, 100]
CONFIG = {
    "fast": FAST,
    "slow": SLOW,
    "notional": 10_000.0,
    "initial_cash": 1_000_000.0,
    "tie_band_pct": 0.1,
    "start": "2012-01-03",
    "end": "2015-12-31",
    "train_sessions": 252,
    "test_sessions": 126,
}


@pytest.fixture(scope="module")
def indicators(sample_indicators) -> pl.DataFrame:
    return sample_indicators


@pytest.fixture(scope="module")
def database(cleaned, indicators, tmp_path_factory) -> str:
    return write_warehouse(
        tmp_path_factory.mktemp("walk_forward") / "warehouse.duckdb",
        {"prices.cleaned_prices": cleaned, "indicators.indicators": indicators},
    )


def _materialize(database: str, tmp_path, **config):
    return dg.materialize(
        WALK_FORWARD_ASSETS,
        resources=research_resources(database, tmp_path),
        run_config={"ops": {WALK_FORWARD_OP: {"config": {**CONFIG, **config}}}},
        raise_on_error=False,
    )


def _tables(database: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    con = duckdb.connect(database, read_only=True)
    try:
        return (
            con.execute("select * from research.walk_forward_folds order by fold").pl(),
            con.execute("select * from research.walk_forward_equity order by session").pl(),
        )
    finally:
        con.close()


def test_the_walk_forward_assets_write_the_domains_figures(cleaned, calendar, database, tmp_path):
    result = _materialize(database, tmp_path)
    assert result.success
    table, equity = _tables(database)

    sessions = [d for d in calendar if dt.date(2012, 1, 3) <= d <= dt.date(2015, 12, 31)]
    plan = folds(sessions, 252, 126)
    direct = walk_forward(
        sma_backtest(
            cleaned,
            calendar,
            notional=10_000,
            initial_cash=1_000_000,
            fees_bps=1,
            slippage_bps=5,
            tie_band_pct=0.1,
        ),
        [(f, s) for f in FAST for s in SLOW],
        plan,
        1_000_000,
    )
    assert table.height == len(plan) == 6
    assert table.columns == direct.folds.columns
    assert table.equals(direct.folds)
    assert equity.equals(direct.equity) and equity.height == len(sessions) - 252

    materializations = result.asset_materializations_for_node(WALK_FORWARD_OP)
    assert {m.asset_key for m in materializations} == {WALK_FORWARD_FOLDS, WALK_FORWARD_EQUITY}
    metadata = next(m for m in materializations if m.asset_key == WALK_FORWARD_FOLDS).metadata
    plot = metadata["equity_plot"].value
    assert plot.startswith("![Walk-forward out-of-sample equity](data:image/png;base64,")
    assert base64.b64decode(plot.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")
    assert len(metadata["folds_table"].value.records) == 6
    by_fold = metadata["sharpe_by_fold"].value
    first = direct.folds.row(0, named=True)
    assert f"fast {first['fast']}, slow {first['slow']}" in by_fold and by_fold.count("\n") == 6 + 1
    assert metadata["oos_sharpe"].value == pytest.approx(direct.summary["oos_sharpe"], rel=1e-12)
    assert metadata["mean_is_sharpe"].value == pytest.approx(direct.summary["mean_is_sharpe"], rel=1e-12)
    assert metadata["mean_deflated_sharpe"].value == pytest.approx(
        direct.summary["mean_deflated_sharpe"], rel=1e-12
    )
    assert metadata["fold_count"].value == 6 and metadata["trials"].value == 4
    assert metadata["symbols"].value == cleaned["symbol"].n_unique()
    assert metadata["elapsed_seconds"].value > 0
    assert "reference conventions" in metadata["conventions"].value
    assert metadata["windows"].value.startswith("rolling: 252 sessions in sample, 126 out")

    # a second run replaces both tables (not partitioned): expanding, fewer folds
    again = _materialize(database, tmp_path, mode="expanding", test_sessions=252)
    assert again.success
    table, equity = _tables(database)
    assert table.height == 3 and table["train_start"].to_list() == [sessions[0]] * 3
    assert equity.height == len(sessions) - 252


@pytest.mark.parametrize(
    ("kind", "grid", "names"),
    [
        ("rsi", {"lower": [30.0, 35.0], "upper": [65.0, 70.0]}, ["lower", "upper"]),
        ("dip_52w", {"thresholds": [10.0, 20.0, 30.0]}, ["threshold_pct"]),
    ],
)
def test_rsi_and_dip_walk_forward_on_the_indicators_table(
    cleaned, indicators, calendar, database, tmp_path, kind, grid, names
):
    from trading_dagster.research.threshold_sweep import pack_indicator_bars, sweep_dip, sweep_rsi

    result = _materialize(database, tmp_path, kind=kind, **grid)
    assert result.success
    table, equity = _tables(database)
    assert table.height == 6 and table.columns[5 : 5 + len(names)] == names
    column = "rsi_14" if kind == "rsi" else "pct_below_high_52w"
    sweep = sweep_rsi if kind == "rsi" else sweep_dip
    money = {"notional": 10_000.0, "initial_cash": 1_000_000.0, "fees_bps": 1.0, "slippage_bps": 5.0}
    sets = [(lo, hi) for lo in grid.get("lower", []) for hi in grid["upper"]] if kind == "rsi" else grid["thresholds"]
    for fold in table.iter_rows(named=True):
        # the winner is the best in-sample Sharpe of an independent sweep of the train window (ties: grid order)
        data = pack_indicator_bars(cleaned, indicators, calendar, [column], fold["train_start"], fold["train_end"])
        stats = sweep(data, sets, **money).stats
        best = stats.with_row_index().sort("sharpe", "index", descending=[True, False], nulls_last=True).row(0, named=True)
        assert [fold[n] for n in names] == [best[n] for n in names]
        assert fold["is_sharpe"] == pytest.approx(best["sharpe"], rel=1e-12)
        # and its out-of-sample figures are the sweep of the test window, starting flat
        data = pack_indicator_bars(cleaned, indicators, calendar, [column], fold["test_start"], fold["test_end"])
        chosen = [tuple(fold[n] for n in names)] if kind == "rsi" else [fold["threshold_pct"]]
        oos = sweep(data, chosen, **money).stats.row(0, named=True)
        assert fold["oos_sharpe"] == pytest.approx(oos["sharpe"], rel=1e-12, nan_ok=True)
    assert equity.height > 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "macd"}, "kind 'macd' cannot be walked forward yet (known: sma_cross, rsi, dip_52w)"),
        ({"mode": "anchored"}, "mode must be 'rolling' or 'expanding'"),
        ({"train_sessions": 2_000}, "too few for one fold"),
        ({"fast": [50], "slow": [20]}, "no pair with 0 < fast < slow"),
        ({"reference_conventions": False}, "buying_power='cash'"),
    ],
)
def test_a_bad_config_fails_naming_what_is_wrong(database, tmp_path, config, message):
    result = _materialize(database, tmp_path, **config)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert message in failure.user_failure_data.description


def test_the_job_selects_both_tables_and_the_kind_registry_has_the_sma_cross(database, tmp_path):
    assert set(KINDS) == {"sma_cross", "rsi", "dip_52w"}
    resources = {
        "io_manager": WarehouseIOManager(database=database),
        "warehouse": WarehouseReader(database=database),
        "trading_config": TradingConfigResource(),
        "backtest_book": BacktestBookResource(ledger_path=str(tmp_path / "book.duckdb")),
    }
    defs = dg.Definitions(assets=WALK_FORWARD_ASSETS, jobs=[walk_forward_job], resources=resources)
    job = defs.resolve_job_def("walk_forward_job")
    assert job.asset_layer.selected_asset_keys == {WALK_FORWARD_FOLDS, WALK_FORWARD_EQUITY}
    specs = [s for s in defs.resolve_all_asset_specs() if s.key in (WALK_FORWARD_FOLDS, WALK_FORWARD_EQUITY)]
    assert len(specs) == 2
    for spec in specs:
        assert spec.group_name == "research"
        assert {d.asset_key for d in spec.deps} == {
            dg.AssetKey(["prices", "cleaned_prices"]), dg.AssetKey(["indicators", "indicators"])
        }
        assert set(spec.kinds) == {"duckdb", "polars"}
