"""From research to trading (issue 11), end to end on the real sample: a swept SMA pair the indicators table did
not carry is traded once configured (or promoted), and an ml_filter strategy trades its base strategy's buys
that the period's model backs, with the same code for one day and a range."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.strategies import generate_signals, parse_strategies
from trading_dagster.partitions import session_calendar
from trading_dagster.research import ml
from trading_dagster.settings import Settings
from trading_dagster_tests.integration.conftest import (
    assert_range_equals_days,
    make_settings,
    read_table,
    run_range,
)

INDICATORS = dg.AssetKey(["indicators", "indicators"])
SIGNALS = dg.AssetKey(["signals", "signals"])


def _configured(settings: Settings, tmp_path: Path, strategies: str, name: str) -> Settings:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        "[account]\ninitial_cash = 100000\n[risk]\nnotional = 2000\nmonthly_share_limit = \"off\"\n" + strategies
    )
    return make_settings(settings.data_dir, TRADING_DAGSTER_CONFIG=str(config))


CROSS_10_120 = """
[[strategies]]
name = "sma_10_120"
kind = "sma_cross"
params = { fast = 10, slow = 120 }
"""


def test_a_cross_on_periods_the_table_did_not_carry_is_computed_and_traded(warm_copy, tmp_path):
    settings, sessions = warm_copy
    days = sessions[:15]
    configured = _configured(settings, tmp_path, CROSS_10_120, "cross")
    defs = build_definitions(configured)
    # the warm indicators were computed without SMA 10 / 120: the signals refuse rather than miss crosses
    refused = run_range(defs, days[0], days[-1], raise_on_error=False)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    previous = session_calendar().previous_session(days[0])
    message = failure.step_failure_data.error.message
    assert "need SMA 10, 120" in message and f"from {previous} to {previous}" in message
    assert "re-materialize indicators/indicators" in message

    # as the message says: the indicators of that session again (that asset alone), then the range
    assert run_range(defs, previous, previous, selection=[INDICATORS]).success
    assert run_range(defs, days[0], days[-1]).success
    indicators = read_table(configured, "indicators.indicators").filter(pl.col("session") >= previous)
    assert indicators["sma_extra"].unique().to_list() == ["10,120"]
    assert indicators["sma_120"].null_count() < indicators.height  # computed
    signals = read_table(configured, "signals.signals")
    expected = generate_signals(
        indicators, parse_strategies([{"name": "sma_10_120", "kind": "sma_cross", "params": {"fast": 10, "slow": 120}}]),
        days[0], days[-1], session_calendar().sessions,
    )
    assert signals.height > 0 and signals.sort("session", "symbol").equals(expected.sort("session", "symbol"))
    assert all("sma_10 " in r and "sma_120 " in r for r in signals["reason"])
    assert read_table(configured, "trading.orders").height > 0


ML = """
[[strategies]]
name = "rsi_30_70"
kind = "rsi"
params = { lower = 35, upper = 65 }
trades = false

[[strategies]]
name = "rsi_ml"
kind = "ml_filter"
refines = "rsi_30_70"
params = { min_probability = %s }
"""
BASE = [{"name": "rsi_30_70", "kind": "rsi", "params": {"lower": 35, "upper": 65}}]


def _train(settings: Settings, period: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_job_def("model_job")
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=period,
        run_config={"ops": {"research__signal_model": {"config": {"hidden_layer_sizes": [8], "max_iter": 50}}}},
    )


def test_an_ml_filter_trades_the_buys_its_period_model_backs(warm_copy, tmp_path):
    settings, sessions = warm_copy
    days = sessions[:5]
    untrained = _configured(settings, tmp_path, ML % 0.5, "ml")
    missing = run_range(build_definitions(untrained), days[0], days[-1], raise_on_error=False)
    assert not missing.success
    [failure] = [e for e in missing.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "materialize research/signal_model partition 2017 (model_job)" in failure.step_failure_data.error.message

    assert _train(untrained, "2017").success
    # the floor: the median probability the trained model gives the base's buys in the window, so the filter
    # must both keep and drop some
    store = build_definitions(untrained).resources["raw_store"].get()
    prefix = ml.model_key("signal_model", "2017")
    meta = json.loads(store.get_artifact(prefix + ml.METADATA_FILE))
    model = ml.model_from_bytes(store.get_artifact(prefix + ml.MODEL_FILE), meta["sha256"])
    indicators = read_table(untrained, "indicators.indicators")
    base = generate_signals(indicators, parse_strategies(BASE), days[0] - dt.timedelta(days=400), days[0])
    base = base.filter(pl.col("session") >= dt.date(2017, 1, 1))  # 2017's model, 2017's sessions before the window
    scored = ml.score(model, indicators).join(base.filter(pl.col("side") == "buy"), on=["symbol", "session"])
    floor = round(float(scored["probability"].drop_nulls().median()), 4)

    configured = _configured(settings, tmp_path, ML % floor, "ml_floor")
    daily_dir = tmp_path / "daily" / "data"
    shutil.copytree(configured.data_dir, daily_dir)
    daily = _configured(make_settings(daily_dir), tmp_path, ML % floor, "ml_daily")
    assert_range_equals_days(configured, daily, days)  # the model's signals: one day equals the range

    signals = read_table(configured, "signals.signals")
    assert set(signals["strategy"]) == {"rsi_ml"}  # the base (trades = false) is not traded itself
    buys = signals.filter(pl.col("side") == "buy")
    probabilities = [float(re.search(r"model p=([0-9.]+)", r).group(1)) for r in buys["reason"]]
    assert buys.height > 0 and min(probabilities) >= floor - 0.005  # two decimals in the reason
    indicators = read_table(configured, "indicators.indicators")
    base = generate_signals(indicators, parse_strategies(BASE), days[0], days[-1], session_calendar().sessions)
    base_buys = set(base.filter(pl.col("side") == "buy").select("session", "symbol").iter_rows())
    kept = set(buys.select("session", "symbol").iter_rows())
    assert kept < base_buys  # a strict subset: the model dropped some, kept others
    dropped = ml.score(model, indicators).join(
        pl.DataFrame(sorted(base_buys - kept), schema=["session", "symbol"], orient="row"), on=["symbol", "session"]
    )
    assert dropped.height and (dropped["probability"].fill_null(0.0) < floor).all()
    sells = signals.filter(pl.col("side") == "sell").select("session", "symbol").sort("session", "symbol")
    assert sells.equals(base.filter(pl.col("side") == "sell").select("session", "symbol").sort("session", "symbol"))


@pytest.mark.parametrize("period", ["2017"])
def test_the_model_is_trained_on_labels_known_before_its_period(warm_copy, tmp_path, period):
    settings, _ = warm_copy
    result = _train(settings, period)
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert f"before {period}-01-01" in meta["training_window"]
    last_label = re.search(r"labels up to (\d{4}-\d{2}-\d{2})", meta["training_window"]).group(1)
    assert dt.date.fromisoformat(last_label) < dt.date(int(period), 1, 1)
