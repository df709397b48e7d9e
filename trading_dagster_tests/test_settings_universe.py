"""`[universe]` in the config: parsed and validated by `settings.universe_rule`, carried to the resources."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from trading_dagster.definitions import build_resources, market_data_resource
from trading_dagster.domain.universe import DEFAULT_LIQUIDITY_WINDOW, UniverseRule
from trading_dagster.settings import DEFAULT_CONFIG_FILE, SettingsError, load_settings, universe_rule


def test_defaults_and_the_shipped_config_keep_the_rule_off():
    assert universe_rule({}) == UniverseRule()
    shipped = universe_rule(tomllib.loads(DEFAULT_CONFIG_FILE.read_text()))
    assert shipped.symbols == () and not shipped.liquidity_rule_on
    assert shipped.liquidity_window == DEFAULT_LIQUIDITY_WINDOW == 60


def test_a_full_universe():
    config = {
        "universe": {
            "symbols": [" spy", "aapl", "SPY"],
            "min_median_dollar_volume": 25_000_000,
            "liquidity_window": 20,
        }
    }
    assert universe_rule(config) == UniverseRule(
        symbols=("SPY", "AAPL"), min_median_dollar_volume=25e6, liquidity_window=20
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"min_median_dollar_volume": -1}, r"min_median_dollar_volume must be >= 0"),
        ({"min_median_dollar_volume": "1e6"}, r"min_median_dollar_volume must be a number"),
        ({"min_median_dollar_volume": float("inf")}, r"min_median_dollar_volume must be a number"),
        ({"liquidity_window": -5}, r"liquidity_window must be in 1\.\.252"),
        ({"liquidity_window": 0}, r"liquidity_window must be in 1\.\.252"),
        ({"liquidity_window": 253}, r"liquidity_window must be in 1\.\.252"),
        ({"liquidity_window": 60.5}, r"liquidity_window must be a whole number"),
        ({"liquidity_window": 60.0}, r"liquidity_window must be a whole number"),
        ({"liquidity_window": "60"}, r"liquidity_window must be a whole number"),
        ({"liquidity_window": True}, r"liquidity_window must be a whole number"),
        ({"min_median_dolar_volume": 1e6}, r"has unknown keys \['min_median_dolar_volume'\]"),
    ],
)
def test_bad_values_are_settings_errors_naming_the_key(section, message):
    with pytest.raises(SettingsError, match=r"\[universe\] " + message):
        universe_rule({"universe": section})


def _settings(tmp_path: Path, universe: str):
    config = tmp_path / "config.toml"
    config.write_text(DEFAULT_CONFIG_FILE.read_text() + "\n[universe]\n" + universe)
    return load_settings(
        {"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"), "TRADING_DAGSTER_CONFIG": str(config)}
    )


def test_the_rule_reaches_the_trading_config_and_the_symbols_the_file_source(tmp_path):
    settings = _settings(
        tmp_path, 'symbols = ["msft", "SPY"]\nmin_median_dollar_volume = 1.5e8\nliquidity_window = 30\n'
    )
    resources = build_resources(settings)
    rule = resources["trading_config"].universe_rule()
    assert (rule.min_median_dollar_volume, rule.liquidity_window) == (1.5e8, 30)
    market = resources["market_data"]
    assert (type(market).__name__, market.symbols) == ("FileMarketDataResource", ["MSFT", "SPY"])
    assert market_data_resource(settings).symbols == ["MSFT", "SPY"]
    assert isinstance(market.get().symbols, tuple) and market.get().symbols == ("MSFT", "SPY")


def test_without_a_universe_the_file_source_has_every_symbol(tmp_path):
    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")})
    resources = build_resources(settings)
    assert resources["market_data"].symbols == [] and resources["market_data"].get().symbols is None
    assert not resources["trading_config"].universe_rule().liquidity_rule_on


def test_a_bad_universe_fails_when_the_resources_are_built(tmp_path):
    with pytest.raises(SettingsError, match=r"liquidity_window must be in 1\.\.252"):
        build_resources(_settings(tmp_path, "liquidity_window = 400\n"))


def test_a_bad_rule_set_in_the_launchpad_is_refused_by_the_resource(tmp_path):
    resources = build_resources(load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")}))
    edited = resources["trading_config"].model_copy(update={"min_median_dollar_volume": -1.0})
    with pytest.raises(ValueError, match=">= 0"):
        edited.universe_rule()
