"""Alert sinks: the built-in log + JSON-lines sink, and the webhook against a real HTTP server on 127.0.0.1.

The webhook URL is a secret: every test that can fail a delivery also checks that neither the URL nor its
token appears in the exception, the log records or the sink's repr.
"""

import json
import logging
import socket
from collections.abc import Iterator

import dagster as dg
import pytest

from trading_dagster.resources.alerts import (
    WEBHOOK_ENV_VAR,
    Alert,
    AlertDeliveryError,
    AlertsResource,
    FanOutAlertSink,
    LogAlertSink,
    WebhookAlertSink,
    alerts_resource,
)
from trading_dagster.settings import SettingsError
from trading_dagster_tests.fakes.webhook_server import (
    SECRET_PATH,
    SECRET_TOKEN,
    WebhookServer,
    no_proxy_env,
    serve_webhook,
)

ALERT = Alert(kind="test", key="test:1", title="Something broke", text="line one\nline two", details={"n": 3})


@pytest.fixture
def webhook_server(monkeypatch) -> Iterator[WebhookServer]:
    no_proxy_env(monkeypatch)
    with serve_webhook() as server:
        yield server


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_TOKEN not in text and SECRET_PATH not in text and "/services/" not in text


class Sleeps(list):
    """A fake sleep that records the back-off instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("trading_dagster_tests.alerts")


# --------------------------------------------------------------------------------------- built-in sink


def test_log_sink_logs_at_error_and_appends_one_json_line_per_alert(tmp_path, log, caplog):
    path = tmp_path / "nested" / "alerts.jsonl"
    sink = LogAlertSink(path, log)
    with caplog.at_level(logging.INFO, logger=log.name):
        sink.send(ALERT)
        sink.send(Alert(kind="test", key="test:2", title="Again", text=""))
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert caplog.records[0].getMessage() == "ALERT [test] Something broke\nline one\nline two"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["kind"] == "test" and first["key"] == "test:1" and first["severity"] == "ERROR"
    assert first["title"] == "Something broke" and first["text"] == "line one\nline two"
    assert first["details"] == {"n": 3} and first["time"].endswith("+00:00")
    assert json.loads(lines[1])["key"] == "test:2"


def test_log_sink_that_cannot_write_raises_a_delivery_error(tmp_path, log):
    (tmp_path / "alerts.jsonl").mkdir()  # a folder where the file should be
    with pytest.raises(AlertDeliveryError, match="cannot append the alert to"):
        LogAlertSink(tmp_path / "alerts.jsonl", log).send(ALERT)


# ------------------------------------------------------------------------------------------ webhook sink


def test_webhook_posts_slack_compatible_json(webhook_server):
    WebhookAlertSink(webhook_server.url).send(ALERT)
    (request,) = webhook_server.received
    assert request.path == SECRET_PATH
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {"text": "Something broke\nline one\nline two"}


def test_webhook_retries_a_500_then_succeeds(webhook_server):
    webhook_server.statuses = [500, 503]
    sleeps = Sleeps()
    WebhookAlertSink(webhook_server.url, retries=2, backoff_seconds=0.5, sleep=sleeps).send(ALERT)
    assert len(webhook_server.received) == 3
    assert sleeps == [0.5, 1.0]


def test_webhook_gives_up_on_a_server_that_keeps_failing_without_leaking_the_url(webhook_server, caplog):
    webhook_server.statuses = [500] * 10
    webhook_server.echo_path = True  # the error body repeats the secret path
    sink = WebhookAlertSink(webhook_server.url, retries=2, sleep=Sleeps())
    with caplog.at_level(logging.DEBUG), pytest.raises(AlertDeliveryError) as info:
        sink.send(ALERT)
    assert len(webhook_server.received) == 3
    message = str(info.value)
    assert "the webhook at 127.0.0.1 did not take the alert after 3 attempt(s): HTTP 500" in message
    assert "<redacted>" in message  # the echoed path was replaced
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained error to leak it
    assert_no_secret(message, repr(info.value), caplog.text, repr(sink), sink.describe())


def test_webhook_does_not_retry_a_client_error(webhook_server):
    webhook_server.statuses = [404]
    with pytest.raises(AlertDeliveryError, match="after 1 attempt\\(s\\): HTTP 404") as info:
        WebhookAlertSink(webhook_server.url, sleep=Sleeps()).send(ALERT)
    assert len(webhook_server.received) == 1
    assert_no_secret(str(info.value))


def test_webhook_times_out_and_retries(webhook_server):
    webhook_server.delay = 0.6
    sink = WebhookAlertSink(webhook_server.url, timeout_seconds=0.2, retries=1, sleep=Sleeps())
    with pytest.raises(AlertDeliveryError, match="after 2 attempt\\(s\\): .*timed out") as info:
        sink.send(ALERT)
    assert len(webhook_server.received) == 2
    assert_no_secret(str(info.value))


def test_webhook_to_a_closed_port_is_a_redacted_delivery_error(monkeypatch):
    no_proxy_env(monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the with-block ends: nothing listens there
    sink = WebhookAlertSink(f"http://127.0.0.1:{port}{SECRET_PATH}", retries=1, sleep=Sleeps())
    with pytest.raises(AlertDeliveryError, match="Connection ?Refused|refused") as info:
        sink.send(ALERT)
    assert_no_secret(str(info.value))


@pytest.mark.parametrize("url", [f"ftp://hooks.example{SECRET_PATH}", SECRET_TOKEN, f"http://{SECRET_PATH}"])
def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it(url):
    with pytest.raises(ValueError, match=WEBHOOK_ENV_VAR) as info:
        WebhookAlertSink(url)
    assert_no_secret(str(info.value))


def test_fan_out_keeps_the_local_record_when_the_webhook_fails(tmp_path, log, webhook_server):
    webhook_server.statuses = [500] * 10
    path = tmp_path / "alerts.jsonl"
    sink = FanOutAlertSink([LogAlertSink(path, log), WebhookAlertSink(webhook_server.url, retries=0)])
    with pytest.raises(
        AlertDeliveryError, match="alert test:1 not delivered everywhere: the webhook at"
    ) as info:
        sink.send(ALERT)
    assert json.loads(path.read_text())["key"] == "test:1"
    assert_no_secret(str(info.value))


# -------------------------------------------------------------------------------------------- resource


def test_the_resource_has_the_webhook_only_when_a_url_is_set(tmp_path, log):
    local = AlertsResource(jsonl_path=str(tmp_path / "a.jsonl"))
    assert [type(s) for s in local.sink(log).sinks] == [LogAlertSink]
    both = AlertsResource(jsonl_path=str(tmp_path / "a.jsonl"), webhook_url="http://127.0.0.1:9/x")
    assert [type(s) for s in both.sink(log).sinks] == [LogAlertSink, WebhookAlertSink]


def test_alerts_resource_refers_to_the_env_var_and_never_holds_the_url(tmp_path, monkeypatch, webhook_server):
    monkeypatch.delenv(WEBHOOK_ENV_VAR, raising=False)
    assert alerts_resource(tmp_path).webhook_url is None

    monkeypatch.setenv(WEBHOOK_ENV_VAR, webhook_server.url)
    resource = alerts_resource(tmp_path, {"raw_lead_minutes": 45, "webhook_retries": 1})
    assert isinstance(resource.webhook_url, dg.EnvVar) and resource.webhook_url == WEBHOOK_ENV_VAR
    assert resource.jsonl_path == str(tmp_path / "alerts.jsonl")
    assert resource.raw_lead_minutes == 45 and resource.webhook_retries == 1
    assert_no_secret(repr(resource), json.dumps(resource.model_dump(), default=str))

    # the value is resolved only where the resource is used (here a sensor), and the alert gets there
    @dg.sensor()
    def probe(context: dg.SensorEvaluationContext, alerts: AlertsResource):
        alerts.sink(context.log).send(ALERT)
        return dg.SkipReason("sent")

    probe.evaluate_tick(dg.build_sensor_context(resources={"alerts": resource}))
    assert [r.json() for r in webhook_server.received] == [{"text": "Something broke\nline one\nline two"}]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"raw_lead_minute": 45}, r"\[alerts\] has unknown keys \['raw_lead_minute'\]"),  # a typo
        ({"raw_lead_minutes": -5}, "raw_lead_minutes must be whole minutes from 0 to 570"),
        ({"raw_lead_minutes": 1.5}, "raw_lead_minutes must be whole minutes"),
        ({"webhook_timeout_seconds": 0}, r"webhook_timeout_seconds must be in \(0, 10\]"),
        ({"webhook_timeout_seconds": 60}, r"webhook_timeout_seconds must be in \(0, 10\]"),
        ({"webhook_retries": 9}, "webhook_retries must be an integer from 0 to 3"),
        ({"webhook_retries": True}, "webhook_retries must be an integer"),
    ],
)
def test_a_bad_alerts_section_is_refused_when_the_definitions_load(tmp_path, config, message):
    with pytest.raises(SettingsError, match=message):
        alerts_resource(tmp_path, config)
