"""`defs`, the code location's entry point: built once per process for the same settings (Dagster calls it
several times for one run), built again when anything the settings read changes."""

import shutil

from trading_dagster.definitions import defs
from trading_dagster.resources.alerts import WEBHOOK_ENV_VAR
from trading_dagster.settings import DEFAULT_CONFIG_FILE


def _initial_cash(d) -> float:
    return float(d.resources["trading_config"].initial_cash)


def test_the_same_settings_get_the_same_definitions(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(tmp_path / "a"))
    first = defs()
    assert defs() is first
    assert first.resolve_job_def("pipeline_job") is defs().resolve_job_def("pipeline_job")


def test_another_environment_config_or_webhook_builds_them_again(tmp_path, monkeypatch):
    config = tmp_path / "trading_dagster.toml"
    shutil.copy(DEFAULT_CONFIG_FILE, config)
    monkeypatch.setenv("TRADING_DAGSTER_CONFIG", str(config))
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(tmp_path / "a"))
    monkeypatch.delenv(WEBHOOK_ENV_VAR, raising=False)
    first = defs()
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(tmp_path / "b"))
    other_dir = defs()
    assert other_dir is not first
    text = config.read_text()
    assert "initial_cash = 100000" in text
    config.write_text(text.replace("initial_cash = 100000", "initial_cash = 250000"))
    edited = defs()
    assert edited is not other_dir and _initial_cash(edited) == 250_000 and _initial_cash(other_dir) == 100_000
    monkeypatch.setenv(WEBHOOK_ENV_VAR, "http://127.0.0.1:9/hook")
    with_webhook = defs()
    assert with_webhook is not edited and with_webhook.resources["ledger"].webhook_url is not None
    assert defs() is with_webhook
