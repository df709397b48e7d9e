"""SecretsResource: the environment, or SSM Parameter Store on the session's moto server (moto serves SSM
on the same endpoint as S3). A secret's value must never show in a repr, a config dump, an error or a log.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import boto3
import dagster as dg
import pytest

from trading_dagster.resources.secrets import SecretError, SecretNotFound, SecretsResource

TOKEN = "7301946528:AAF-ssm-S3cr3t-Value-Zq9x"
NAME = "TRADING_DAGSTER_TELEGRAM_BOT_TOKEN"


@pytest.fixture
def ssm_path(s3_endpoint) -> str:
    """A fresh parameter path per test (the moto server lives for the whole session)."""
    return f"/trading-dagster/test-{uuid.uuid4().hex[:8]}/"


def put(endpoint: str, name: str, value: str, kind: str = "SecureString") -> None:
    client = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
    client.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)


def ssm(endpoint: str, path: str, **kw) -> SecretsResource:
    return SecretsResource(source="ssm", ssm_path=path, region="us-east-1", endpoint_url=endpoint, **kw)


def assert_no_value(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and "S3cr3t" not in text, text


# -------------------------------------------------------------------------------------------------- env


def test_env_reads_the_variable_of_the_same_name(monkeypatch):
    monkeypatch.setenv(NAME, TOKEN)
    secrets = SecretsResource()
    assert secrets.source == "env" and secrets.get(NAME) == TOKEN
    assert_no_value(repr(secrets), json.dumps(secrets.model_dump()))


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_or_empty_variable_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, value)
    with pytest.raises(SecretNotFound, match=f"secret {NAME}: environment variable {NAME} is not set"):
        SecretsResource().get(NAME)


@pytest.mark.parametrize("name", ["", "../etc/passwd", "A B", "X/Y", f"{TOKEN} "])
def test_a_malformed_name_is_refused_without_echoing_it(name):
    with pytest.raises(ValueError, match="a secret name is") as info:
        SecretsResource().get(name)
    assert_no_value(str(info.value))


# -------------------------------------------------------------------------------------------------- SSM


def test_ssm_reads_a_secure_string_under_the_path(s3_endpoint, ssm_path):
    put(s3_endpoint, f"{ssm_path}{NAME}", TOKEN)
    put(s3_endpoint, f"{ssm_path}PLAIN", "not-encrypted", kind="String")
    secrets = ssm(s3_endpoint, ssm_path)
    assert secrets.get(NAME) == TOKEN
    assert secrets.get("PLAIN") == "not-encrypted"
    assert_no_value(repr(secrets), str(secrets), json.dumps(secrets.model_dump()))


def test_the_path_may_omit_its_trailing_slash(s3_endpoint, ssm_path):
    put(s3_endpoint, f"{ssm_path}{NAME}", TOKEN)
    assert ssm(s3_endpoint, ssm_path.rstrip("/")).get(NAME) == TOKEN


def test_a_missing_parameter_names_its_full_path_and_no_value(s3_endpoint, ssm_path):
    put(s3_endpoint, f"{ssm_path}{NAME}", TOKEN)
    with pytest.raises(SecretNotFound) as info:
        ssm(s3_endpoint, ssm_path).get("TRADING_DAGSTER_SLACK_WEBHOOK_URL")
    message = str(info.value)
    assert message == (
        f"secret TRADING_DAGSTER_SLACK_WEBHOOK_URL: no SSM parameter {ssm_path}TRADING_DAGSTER_SLACK_WEBHOOK_URL "
        "(us-east-1)"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert isinstance(info.value, KeyError)  # a missing secret is also a KeyError, like os.environ[...]


def test_an_env_variable_does_not_stand_in_for_a_parameter(s3_endpoint, ssm_path, monkeypatch):
    monkeypatch.setenv(NAME, TOKEN)
    with pytest.raises(SecretNotFound, match="no SSM parameter"):
        ssm(s3_endpoint, ssm_path).get(NAME)


def test_each_secret_is_read_once_per_resource(s3_endpoint, ssm_path):
    put(s3_endpoint, f"{ssm_path}{NAME}", TOKEN)
    secrets = ssm(s3_endpoint, ssm_path)
    assert secrets.get(NAME) == TOKEN
    boto3.client("ssm", endpoint_url=s3_endpoint, region_name="us-east-1").delete_parameter(
        Name=f"{ssm_path}{NAME}"
    )
    assert secrets.get(NAME) == TOKEN  # cached for the run or tick this resource serves
    assert_no_value(repr(secrets))
    with pytest.raises(SecretNotFound):
        ssm(s3_endpoint, ssm_path).get(NAME)  # a new resource (the next run) reads again


def test_an_unreachable_endpoint_is_a_quick_clear_error(ssm_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the block ends
    secrets = ssm(f"http://127.0.0.1:{port}", ssm_path, timeout_seconds=1, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(
        SecretError, match=f"secret {NAME}: reading SSM parameter {ssm_path}{NAME} .*failed"
    ) as info:
        secrets.get(NAME)
    assert time.monotonic() - started < 5
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("path", ["trading-dagster/paper/", "/a//b/", "/bad path/", ""])
def test_a_bad_path_is_refused_when_the_resource_is_built(path):
    with pytest.raises(ValueError, match="ssm_path must be an absolute SSM path"):
        SecretsResource(source="ssm", ssm_path=path)


def test_an_unknown_source_is_refused():
    with pytest.raises(ValueError, match="source"):
        SecretsResource(source="vault")  # type: ignore[arg-type]


def test_the_resource_serves_a_sensor_without_the_value_in_its_log(s3_endpoint, ssm_path, capfd):
    put(s3_endpoint, f"{ssm_path}{NAME}", TOKEN)
    got: list[str] = []

    @dg.sensor()
    def probe(context: dg.SensorEvaluationContext, secrets: SecretsResource):
        got.append(secrets.get(NAME))
        context.log.info(f"read {secrets.where(NAME)} through {secrets!r}")
        return dg.SkipReason("read")

    probe.evaluate_tick(dg.build_sensor_context(resources={"secrets": ssm(s3_endpoint, ssm_path)}))
    assert got == [TOKEN]
    err = capfd.readouterr().err
    assert f"read SSM parameter {ssm_path}{NAME} (us-east-1)" in err
    assert_no_value(err)
