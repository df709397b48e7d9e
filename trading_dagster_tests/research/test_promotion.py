"""Promotions (issue 11, decision 0007): the journal, the overlay on the configuration, and promote_job."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from trading_dagster.assets.portal import WarehouseReader
from trading_dagster.assets.promotion import PROMOTIONS_KEY, promote_job
from trading_dagster.assets.research import sma_sweep
from trading_dagster.research.promotion import (
    PromotionError,
    append_promotion,
    apply_promotions,
    promote,
    read_promotions,
)
from trading_dagster.resources.configured import (
    BacktestBookResource,
    CostsConfig,
    StrategyConfig,
    TradingConfigResource,
)
from trading_dagster.resources.promotions import PromotionJournalResource
from trading_dagster.resources.warehouse import WarehouseIOManager
from trading_dagster.settings import SettingsError, load_settings, promotions_file
from trading_dagster_tests.research.conftest import write_warehouse

CONFIG = [
    {"name": "sma", "kind": "sma_cross", "params": {"fast": 20, "slow": 50, "tie_band_pct": 0.1}},
    {"name": "rsi_30_70", "kind": "rsi", "params": {"lower": 30, "upper": 70}},
]
SOURCE = {"asset": "research/sma_sweep", "run_id": "abcdef123456", "rank": 1, "sharpe": 0.9}
NOW = dt.datetime(2026, 12, 3, 17, 0, tzinfo=dt.UTC)


def _promote(params, strategies=CONFIG, name="sma", kind="sma_cross", **kwargs):
    return promote(
        strategies, CONFIG, name, kind, params,
        promoted_by=kwargs.pop("promoted_by", "Ada"), source=SOURCE, now=NOW, **kwargs,
    )


def test_a_promotion_replaces_the_params_it_names_and_keeps_the_others():
    p = _promote({"fast": 10, "slow": 120}, reason="best OOS")
    assert p.params == {"fast": 10.0, "slow": 120.0, "tie_band_pct": 0.1}
    assert p.previous_params == {"fast": 20.0, "slow": 50.0, "tie_band_pct": 0.1}
    assert p.config_params == p.previous_params
    assert p.promoted_at == "2026-12-03T17:00:00+00:00" and p.promoted_by == "Ada"
    assert "Ada promoted sma (sma_cross) from fast 20, slow 50" in p.describe() and "best OOS" in p.describe()


@pytest.mark.parametrize(
    ("params", "name", "kind", "by", "message"),
    [
        ({"fast": 10, "slow": 120}, "sma", "sma_cross", " ", "promoted_by is required"),
        ({"fast": 10, "slow": 120}, "nope", "sma_cross", "Ada", "no strategy 'nope'"),
        ({"lower": 20, "upper": 80}, "sma", "rsi", "Ada", "is a sma_cross strategy"),
        ({"fast": 120, "slow": 10}, "sma", "sma_cross", "Ada", "not valid for 'sma'"),
    ],
)
def test_a_promotion_that_cannot_be_made_says_why(params, name, kind, by, message):
    with pytest.raises(PromotionError, match=message):
        _promote(params, name=name, kind=kind, promoted_by=by)


def test_the_journal_keeps_every_promotion_and_the_latest_applies(tmp_path):
    journal = tmp_path / "research" / "promotions.jsonl"
    first = _promote({"fast": 10, "slow": 120})
    append_promotion(journal, first)
    in_force = apply_promotions(CONFIG, read_promotions(journal)).strategies
    second = _promote({"fast": 30, "slow": 200}, strategies=in_force)
    append_promotion(journal, second)

    records = read_promotions(journal)
    assert records == [first, second]  # nothing lost, in order
    applied = apply_promotions(CONFIG, records)
    assert applied.strategies[0]["params"] == {"fast": 30.0, "slow": 200.0, "tie_band_pct": 0.1}
    assert applied.strategies[1] == CONFIG[1]  # the other strategy is untouched
    assert applied.applied == {"sma": second} and applied.superseded == {}
    assert second.previous_params == first.params  # the second promotion records what the first put in force


def test_editing_the_config_file_supersedes_a_promotion_instead_of_mixing_with_it():
    p = _promote({"fast": 10, "slow": 120})
    edited = [{**CONFIG[0], "params": {"fast": 25, "slow": 50, "tie_band_pct": 0.1}}, CONFIG[1]]
    applied = apply_promotions(edited, [p])
    assert applied.strategies[0]["params"] == {"fast": 25, "slow": 50, "tie_band_pct": 0.1}
    assert applied.applied == {} and "changed its params since" in applied.superseded["sma"]

    rekinded = [{"name": "sma", "kind": "rsi", "params": {"lower": 30, "upper": 70}}]
    assert "made it a rsi strategy" in apply_promotions(rekinded, [p]).superseded["sma"]
    assert "no longer in the configuration" in apply_promotions(CONFIG[1:], [p]).superseded["sma"]


def test_a_damaged_journal_line_is_an_error_naming_the_file_and_line(tmp_path):
    journal = tmp_path / "promotions.jsonl"
    append_promotion(journal, _promote({"fast": 10, "slow": 120}))
    with journal.open("a") as f:
        f.write('{"strategy": "sma"}\n')
    with pytest.raises(PromotionError, match=r"promotions.jsonl, line 2: not a promotion record"):
        read_promotions(journal)


def _write_config(path: Path, strategies) -> Path:
    lines = []
    for s in strategies:
        params = ", ".join(f"{k} = {v}" for k, v in s["params"].items())
        lines += ["[[strategies]]", f'name = "{s["name"]}"', f'kind = "{s["kind"]}"', f"params = {{ {params} }}", ""]
    path.write_text("\n".join(lines))
    return path


def test_the_settings_lay_promotions_over_the_config_file(tmp_path):
    config = _write_config(tmp_path / "config.toml", CONFIG)
    env = {"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"), "TRADING_DAGSTER_CONFIG": str(config)}
    assert load_settings(env).trading.strategies[0]["params"] == CONFIG[0]["params"]

    promotion = _promote({"fast": 10, "slow": 120})
    append_promotion(promotions_file(tmp_path / "data"), promotion)
    trading = load_settings(env).trading
    assert trading.strategies[0]["params"] == promotion.params
    assert trading.promoted["sma"] == promotion

    with promotions_file(tmp_path / "data").open("a") as f:
        f.write("not json\n")
    with pytest.raises(SettingsError, match="promotions journal .*line 2"):
        load_settings(env)


# promote_job end to end: a real sweep materialization, then the job launched as from the UI


@pytest.fixture()
def swept(cleaned, tmp_path):
    """An instance and a warehouse holding one materialization of research/sma_sweep (a 2 x 2 grid)."""
    database = write_warehouse(tmp_path / "warehouse.duckdb", {"prices.cleaned_prices": cleaned})
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [sma_sweep],
        instance=instance,
        resources={
            "io_manager": WarehouseIOManager(database=database),
            "warehouse": WarehouseReader(database=database),
            "trading_config": TradingConfigResource(),
            "backtest_book": BacktestBookResource(ledger_path=str(tmp_path / "book.duckdb"), costs=CostsConfig()),
        },
        run_config={"ops": {"research__sma_sweep": {"config": {"fast": [20, 50], "slow": [50, 200]}}}},
    )
    assert result.success
    return instance, database, result.run_id


def _launch(instance, database, journal, **config):
    strategies = [StrategyConfig(**s) for s in CONFIG]
    return promote_job.execute_in_process(
        instance=instance,
        resources={
            "warehouse": WarehouseReader(database=database),
            "trading_config": TradingConfigResource(strategies=strategies),
            "promotions": PromotionJournalResource(path=str(journal), config_strategies=strategies),
        },
        run_config={"ops": {"promote_op": {"config": config}}},
        raise_on_error=False,
    )


def test_promote_job_records_who_promoted_what_from_which_sweep(swept, tmp_path):
    instance, database, sweep_run = swept
    journal = tmp_path / "promotions.jsonl"
    result = _launch(instance, database, journal, strategy="sma", rank=2, promoted_by="Ada", reason="robust")
    assert result.success

    con = duckdb.connect(database, read_only=True)
    try:
        second = con.execute("select fast, slow, sharpe from research.sma_sweep where rank = 2").fetchone()
    finally:
        con.close()
    [promotion] = read_promotions(journal)
    assert (promotion.params["fast"], promotion.params["slow"]) == (float(second[0]), float(second[1]))
    assert promotion.params["tie_band_pct"] == 0.1  # kept
    assert promotion.source["run_id"] == sweep_run and promotion.source["rank"] == 2
    assert promotion.source["sharpe"] == pytest.approx(second[2])
    assert promotion.promoted_by == "Ada" and promotion.reason == "robust" and promotion.run_id == result.run_id

    event = instance.get_latest_materialization_event(PROMOTIONS_KEY)
    assert event is not None and event.run_id == result.run_id
    metadata = event.asset_materialization.metadata
    assert metadata["sweep_run"].value == sweep_run and metadata["promoted_by"].value == "Ada"
    assert json.loads(json.dumps(metadata["params"].value)) == promotion.params


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"strategy": "sma", "rank": 9}, "has no rank 9"),
        ({"strategy": "sma", "params": {"fast": 50, "slow": 100}}, "no row of the sweep has"),
        ({"strategy": "rsi_30_70"}, "is a rsi strategy"),
        ({"strategy": "sma", "sweep": "rsi_sweep"}, "research/rsi_sweep has not been materialized"),
    ],
)
def test_promote_job_refuses_with_the_reason_and_records_nothing(swept, tmp_path, config, message):
    instance, database, _ = swept
    journal = tmp_path / "promotions.jsonl"
    result = _launch(instance, database, journal, promoted_by="Ada", **config)
    assert not result.success
    failure = result.failure_data_for_node("promote_op")
    assert failure is not None and message in failure.error.message
    assert not journal.exists()
    assert instance.get_latest_materialization_event(PROMOTIONS_KEY) is None


def test_a_row_swept_with_exits_is_not_promotable():
    from trading_dagster.assets.promotion import check_promotable

    check_promotable({"threshold_pct": 20.0, "take_profit_pct": None, "stop_loss_pct": None})  # no exits: fine
    with pytest.raises(PromotionError, match=r"swept with exits \{'stop_loss_pct': 10.0\}.*\[risk\]"):
        check_promotable({"threshold_pct": 20.0, "take_profit_pct": None, "stop_loss_pct": 10.0})
