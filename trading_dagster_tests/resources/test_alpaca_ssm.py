"""TRADING_DAGSTER_SECRETS=ssm: the Alpaca resources read APCA_API_KEY_ID / APCA_API_SECRET_KEY from SSM
Parameter Store at run time (the session's moto server, which serves SSM on the S3 endpoint; boto3 finds it
through AWS_ENDPOINT_URL_SSM) instead of dg.EnvVar. An AlpacaBrokerResource built by `build_definitions`
talks to the fake Alpaca server with those keys; the values never show in its repr, a config dump or an
error, and the settings no longer demand the keys in the environment."""

from __future__ import annotations

import json
import uuid

import boto3
import dagster as dg
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.resources.configured import (
    AlpacaBrokerResource,
    AlpacaCorporateActionsResource,
    AlpacaMarketDataResource,
)
from trading_dagster.resources.secrets import SecretNotFound, SecretsResource
from trading_dagster.resources.security_master import SecurityMasterResource
from trading_dagster.settings import SettingsError, load_settings
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer
from trading_dagster_tests.fakes.alpaca_trading import AlpacaTradingFake

UNIVERSE = '[universe]\nsymbols = ["AAPL"]\n'


@pytest.fixture
def ssm_path(s3_endpoint, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", s3_endpoint)
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    return f"/trading-dagster/test-{uuid.uuid4().hex[:8]}/"


def put(endpoint: str, path: str, **values: str) -> None:
    client = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    for name, value in values.items():
        client.put_parameter(Name=f"{path}{name}", Value=value, Type="SecureString", Overwrite=True)


@pytest.fixture
def alpaca():
    server = AlpacaFakeServer().start()
    AlpacaTradingFake(server)
    yield server
    server.stop()
    assert not server.errors, server.errors


def settings(tmp_path, **extra: str):
    config = tmp_path / "trading_dagster.toml"
    if not config.exists():
        from trading_dagster.settings import DEFAULT_CONFIG_FILE

        config.write_text(DEFAULT_CONFIG_FILE.read_text())
    env = {
        "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"),
        "TRADING_DAGSTER_CONFIG": str(config),
        "TRADING_DAGSTER_ENV": "paper",
        "TRADING_DAGSTER_SECRETS": "ssm",
        "AWS_REGION": "us-east-1",
        **extra,
    }
    return load_settings(env)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TEST_KEY_ID not in text and TEST_SECRET_KEY not in text, text


def test_the_broker_of_the_definitions_reads_its_keys_from_ssm(tmp_path, s3_endpoint, ssm_path, alpaca):
    put(s3_endpoint, ssm_path, APCA_API_KEY_ID=TEST_KEY_ID, APCA_API_SECRET_KEY=TEST_SECRET_KEY)
    s = settings(tmp_path, TRADING_DAGSTER_SSM_PATH=ssm_path, TRADING_DAGSTER_ALPACA_TRADING_URL=alpaca.url)
    assert (s.secrets, s.ssm_path) == ("ssm", ssm_path)
    broker = build_definitions(s).resources["broker"]
    assert isinstance(broker, AlpacaBrokerResource) and broker.alpaca_key_id is None
    assert broker.secrets.source == "ssm" and broker.secrets.ssm_path == ssm_path

    @dg.asset
    def account_id(broker: AlpacaBrokerResource) -> str:
        with broker.get() as b:
            return b.account().account_id

    result = dg.materialize([account_id], resources={"broker": broker})
    assert result.output_for_node("account_id") == "PA3FAKE00TEST"
    with broker.get() as b:  # outside a run too
        assert b.clock().timestamp is not None
        assert_no_secret(repr(b))
    assert_no_secret(repr(broker), json.dumps(broker.model_dump(), default=str), repr(broker.secrets))


def test_a_missing_parameter_names_its_path_and_no_value(tmp_path, s3_endpoint, ssm_path, alpaca):
    put(s3_endpoint, ssm_path, APCA_API_KEY_ID=TEST_KEY_ID)  # the secret key is missing
    s = settings(tmp_path, TRADING_DAGSTER_SSM_PATH=ssm_path, TRADING_DAGSTER_ALPACA_TRADING_URL=alpaca.url)
    broker = build_definitions(s).resources["broker"]
    with pytest.raises(SecretNotFound) as info:
        broker.get()
    assert f"no SSM parameter {ssm_path}APCA_API_SECRET_KEY" in str(info.value)
    assert_no_secret(str(info.value), repr(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no botocore error chained


def test_a_wrong_key_in_ssm_fails_at_the_broker_without_showing_it(tmp_path, s3_endpoint, ssm_path, alpaca):
    wrong = "fake-secret-WRONG-Zq8mW3vX9pL2"
    put(s3_endpoint, ssm_path, APCA_API_KEY_ID=TEST_KEY_ID, APCA_API_SECRET_KEY=wrong)
    s = settings(tmp_path, TRADING_DAGSTER_SSM_PATH=ssm_path, TRADING_DAGSTER_ALPACA_TRADING_URL=alpaca.url)
    broker = build_definitions(s).resources["broker"]
    with pytest.raises(Exception) as info, broker.get() as b:
        b.account()
    assert wrong not in str(info.value) and TEST_KEY_ID not in str(info.value)


def test_every_alpaca_resource_gets_the_ssm_secrets_and_no_env_var(tmp_path, ssm_path):
    from trading_dagster.settings import DEFAULT_CONFIG_FILE

    (tmp_path / "trading_dagster.toml").write_text(DEFAULT_CONFIG_FILE.read_text() + "\n" + UNIVERSE)
    s = settings(
        tmp_path,
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_ADJUSTMENT="raw",
        TRADING_DAGSTER_CORPORATE_ACTIONS="alpaca",
        TRADING_DAGSTER_SECURITY_MASTER="alpaca",  # no APCA keys in the environment: SSM has them
    )
    resources = build_definitions(s).resources
    for name, cls in (
        ("market_data", AlpacaMarketDataResource),
        ("corporate_actions", AlpacaCorporateActionsResource),
        ("broker", AlpacaBrokerResource),
        ("security_master", SecurityMasterResource),
    ):
        r = resources[name]
        assert isinstance(r, cls) and r.alpaca_key_id is None and r.alpaca_secret_key is None
        assert r.secrets == SecretsResource(
            source="ssm", ssm_path="/trading-dagster/paper/", region="us-east-1"
        )


def test_settings_parse_the_secrets_source_and_path(tmp_path, monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    assert settings(tmp_path).ssm_path == "/trading-dagster/paper/"  # no APCA keys in the environment: fine
    assert settings(tmp_path, TRADING_DAGSTER_SSM_PATH="/td/x").ssm_path == "/td/x/"
    dev = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "d")})
    assert (dev.secrets, dev.ssm_path) == ("env", None)
    with pytest.raises(SettingsError, match="TRADING_DAGSTER_SECRETS must be one of"):
        settings(tmp_path, TRADING_DAGSTER_SECRETS="vault")
    with pytest.raises(SettingsError, match="TRADING_DAGSTER_SSM_PATH"):
        settings(tmp_path, TRADING_DAGSTER_SSM_PATH="relative/path/")
    with pytest.raises(SettingsError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment"):
        settings(tmp_path, TRADING_DAGSTER_SECRETS="env")  # env: the keys must be there
