"""Environments, the live-trading opt-in and the trading sections of the config, parsed once (decision 0005)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_dagster.domain.broker_records import LiveTradingRefused
from trading_dagster.resources.configured import AlpacaBrokerResource
from trading_dagster.settings import SettingsError, load_settings

KEYS = {"APCA_API_KEY_ID": "PKTESTKEY", "APCA_API_SECRET_KEY": "sekret-value-123"}
LIVE = {
    "TRADING_DAGSTER_ENV": "live",
    "TRADING_DAGSTER_BROKER": "alpaca",
    "TRADING_DAGSTER_LIVE_TRADING": "yes-i-understand",
    "TRADING_DAGSTER_ALPACA_TRADING_URL": "https://api.alpaca.markets",
    **KEYS,
}


def _settings(tmp_path, **env):
    return load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path), **env})


def test_dev_trades_on_the_built_in_paper_broker_and_paper_on_alpaca(tmp_path):
    dev = _settings(tmp_path)
    assert (dev.environment, dev.broker, dev.live_trading) == ("dev", "paper", False)
    paper = _settings(tmp_path, TRADING_DAGSTER_ENV="paper", **KEYS)
    assert (paper.environment, paper.broker, paper.live_trading) == ("paper", "alpaca", False)
    with pytest.raises(SettingsError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        _settings(tmp_path, TRADING_DAGSTER_ENV="paper")


@pytest.mark.parametrize(
    "missing", ["TRADING_DAGSTER_LIVE_TRADING", "TRADING_DAGSTER_ALPACA_TRADING_URL", "paper broker"]
)
def test_live_needs_every_part_of_the_opt_in(tmp_path, missing):
    assert _settings(tmp_path, **LIVE).live_trading is True
    env = {k: v for k, v in LIVE.items() if k != missing}
    if missing == "paper broker":  # the built-in broker has no real account to trade
        env["TRADING_DAGSTER_BROKER"] = "paper"
    with pytest.raises(SettingsError, match="live trading refused") as err:
        _settings(tmp_path, **env)
    assert KEYS["APCA_API_SECRET_KEY"] not in str(err.value)


def test_the_live_url_outside_live_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="TRADING_DAGSTER_ENV=live"):
        _settings(tmp_path, TRADING_DAGSTER_ENV="paper", TRADING_DAGSTER_ALPACA_TRADING_URL="https://api.alpaca.markets", **KEYS)


def test_a_launchpad_edit_cannot_turn_paper_live():
    resource = AlpacaBrokerResource(alpaca_key_id="k", alpaca_secret_key="s", live=True)
    with pytest.raises(LiveTradingRefused, match="TRADING_DAGSTER_LIVE_TRADING=yes-i-understand"):
        resource.get()


def test_the_paper_clock_is_for_the_built_in_broker_only(tmp_path):
    assert _settings(tmp_path, TRADING_DAGSTER_PAPER_CLOCK="2017-06-02T14:00:00Z").paper_clock == "2017-06-02T14:00:00+00:00"
    with pytest.raises(SettingsError, match="with an offset"):
        _settings(tmp_path, TRADING_DAGSTER_PAPER_CLOCK="2017-06-02T14:00:00")
    with pytest.raises(SettingsError, match="built-in paper broker only"):
        _settings(tmp_path, TRADING_DAGSTER_ENV="paper", TRADING_DAGSTER_PAPER_CLOCK="2017-06-02T14:00:00Z", **KEYS)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[execution]\nkill_swich = true\n", "unknown keys"),
        ("[execution]\napproval_deadline = \"25:00\"\n", "HH:MM"),
        ("[execution]\nweekly_scan_day = \"sunday\"\n", "weekly_scan_day"),
        ("[risk]\nmax_orders_per_session = 2.5\n", "max_orders_per_session"),
        ("[risk]\nstop_loss_atr = 2\natr_period = 20\n", "atr_period"),
        ("[[strategies]]\nname = \"a\"\nkind = \"rsi\"\nparams = { lower = 30, upper = 70 }\napproval = \"maybe\"\n", "approval"),
        ("[backtest]\nsize_on = \"open\"\n", "size_on must be one of"),
        ("[backtest]\nround_cents = \"no\"\n", "round_cents must be true or false"),
        ("[backtest]\nbuying_power = \"margin\"\n", "buying_power must be"),
        ("[backtest]\nsizeon = \"fill\"\n", "unknown keys"),
        ("[risk]\nbuying_power = \"off\"\n", "unknown \\[risk\\] key"),
        ("[risk]\nadd_to_positions = 1\n", "add_to_positions must be true or false"),
        ("[[strategies]]\nname = \"a\"\nkind = \"sma_cross\"\nparams = { fast = 20, slow = 50, tie_band_pct = 12 }\n", "tie_band_pct"),
    ],
)
def test_bad_trading_sections_are_refused_when_the_settings_load(tmp_path, toml, message):
    config = tmp_path / "config.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=message):
        _settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config))


def test_limits_can_be_off_and_reach_the_risk_engine(tmp_path):
    from trading_dagster.definitions import build_resources

    config = tmp_path / "config.toml"
    config.write_text('[risk]\nmonthly_share_limit = "off"\nmax_orders_per_session = 3\n')
    settings = _settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config))
    risk = build_resources(settings)["trading_config"].risk_config()
    assert risk.monthly_share_limit is None and risk.max_orders_per_session == 3


def test_costs_take_a_preset_or_the_parts_never_both(tmp_path):
    from trading_dagster.definitions import build_resources

    config = tmp_path / "config.toml"
    config.write_text('[costs]\ncommission_preset = "ibkr_fixed"\nslippage_bps = 2\n')
    settings = _settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config))
    model = build_resources(settings)["backtest_book"].commission_model()
    assert (model.per_share, model.minimum, model.maximum_pct) == (Decimal("0.005"), Decimal("1.0"), Decimal("1.0"))
    assert build_resources(settings)["broker"].costs.commission_model() == model  # one model, both books
    config.write_text('[costs]\ncommission_preset = "ibkr_fixed"\ncommission_minimum = 2\n')
    with pytest.raises(SettingsError, match="one or the other"):
        _settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config))
    config.write_text('[costs]\ncommission_bps = -1\n')
    with pytest.raises(SettingsError, match="commission_bps"):
        _settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config))


def test_backtest_conventions_reach_the_simulated_book_only(tmp_path):
    from trading_dagster.definitions import build_resources

    config = tmp_path / "config.toml"
    config.write_text(
        '[risk]\nmonthly_share_limit = "off"\nadd_to_positions = false\n'
        '[backtest]\nsize_on = "fill"\nround_cents = false\nbuying_power = "off"\n'
    )
    resources = build_resources(_settings(tmp_path, TRADING_DAGSTER_CONFIG=str(config)))
    book = resources["backtest_book"]
    risk = book.planner_risk(resources["trading_config"].risk_config())
    assert (risk.size_on, risk.buying_power, risk.add_to_positions) == ("fill", "off", False)
    assert not book.slippage_model().round_cents and not book.commission_model().round_cents
    with book.get(read_only=True) as simulated:
        assert simulated.cash_limited is False
    # the trading book keeps its own: sized at the close, cash-limited, fills rounded to the tick
    trading_risk = resources["trading_config"].risk_config()
    assert (trading_risk.size_on, trading_risk.buying_power) == ("close", "cash")
    assert resources["broker"].costs.slippage_model().round_cents
    # and the default is today's behaviour
    default = build_resources(_settings(tmp_path))["backtest_book"]
    assert (default.size_on, default.round_cents, default.buying_power) == ("close", True, "cash")
