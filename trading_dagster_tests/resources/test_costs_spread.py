"""`[costs] slippage_spread_fraction`: validated by the settings, carried by `CostsConfig` to the backtest book's
slippage model (and so to its planner), left out of the trading book's paper broker (it fills at quotes)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_dagster.domain.execution import SlippageModel
from trading_dagster.resources.configured import BacktestBookResource, CostsConfig
from trading_dagster.settings import SettingsError, costs_settings, load_settings


def test_the_fraction_is_off_by_default_and_a_number_from_zero_to_one():
    assert costs_settings({})["slippage_spread_fraction"] == 0.0
    assert costs_settings({"slippage_spread_fraction": 0.5, "slippage_bps": 2})["slippage_spread_fraction"] == 0.5
    assert costs_settings({"slippage_spread_fraction": 1})["slippage_spread_fraction"] == 1.0
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(SettingsError, match="slippage_spread_fraction"):
            costs_settings({"slippage_spread_fraction": bad})


def test_the_costs_config_builds_the_model_with_both_parts():
    off = CostsConfig().slippage_model()
    assert off == SlippageModel() and not off.uses_spread  # today's model, to the value
    model = CostsConfig(slippage_bps=2, slippage_spread_fraction=0.25).slippage_model(round_cents=False)
    assert model == SlippageModel(Decimal(2), round_cents=False, spread_fraction=Decimal("0.25"))
    book = BacktestBookResource(ledger_path=":memory:", costs=CostsConfig(slippage_spread_fraction=0.5))
    assert book.slippage_model().spread_fraction == Decimal("0.5")


def test_the_toml_key_reaches_the_backtest_book(tmp_path):
    from trading_dagster.definitions import build_resources

    config = tmp_path / "config.toml"
    config.write_text("[costs]\nslippage_bps = 3\nslippage_spread_fraction = 0.5\n")
    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path), "TRADING_DAGSTER_CONFIG": str(config)})
    model = build_resources(settings)["backtest_book"].slippage_model()
    assert (model.bps, model.spread_fraction) == (Decimal(3), Decimal("0.5"))
    config.write_text("[costs]\nslippage_spread_fraction = 2\n")
    with pytest.raises(SettingsError, match="at most 1"):
        load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path), "TRADING_DAGSTER_CONFIG": str(config)})
