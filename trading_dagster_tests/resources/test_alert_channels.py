"""Telegram and Slack alert channels against a real HTTP server on 127.0.0.1, and the resource that builds
them from environment variables.

The bot token is a credential in the URL path (`/bot<token>/sendMessage`): every test that can fail a
delivery checks that it appears in no exception (nor a chained one), log line, repr or alerts.jsonl.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal

import dagster as dg
import pytest

from trading_dagster.resources.alerts import (
    SLACK_ENV_VAR,
    TELEGRAM_CHAT_ENV_VAR,
    TELEGRAM_TOKEN_ENV_VAR,
    WEBHOOK_ENV_VAR,
    Alert,
    AlertDeliveryError,
    AlertsResource,
    LogAlertSink,
    SlackAlertSink,
    TelegramAlertSink,
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

BOT_TOKEN = "7301946528:AAF-t3l3gr4mS3cr3t-Zq9xK2mWv"
CHAT_ID = "-1009876543210"
ALERT = Alert(
    kind="test", key="test:1", title="Order rejected", text="AAPL buy 10: insufficient buying power"
)


@pytest.fixture
def server(monkeypatch) -> Iterator[WebhookServer]:
    no_proxy_env(monkeypatch)
    for name in (WEBHOOK_ENV_VAR, SLACK_ENV_VAR, TELEGRAM_TOKEN_ENV_VAR, TELEGRAM_CHAT_ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    with serve_webhook() as s:
        yield s


def api_url(server: WebhookServer) -> str:
    parts = urllib.parse.urlsplit(server.url)
    return f"{parts.scheme}://{parts.netloc}"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (BOT_TOKEN, urllib.parse.quote(BOT_TOKEN, safe=""), "AAF-t3l3gr4mS3cr3t", SECRET_TOKEN):
            assert secret not in text, text
        assert SECRET_PATH not in text


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("trading_dagster_tests.alert_channels")


# ---------------------------------------------------------------------------------------------- Telegram


def test_telegram_posts_send_message_with_the_chat_and_the_text(server):
    TelegramAlertSink(BOT_TOKEN, CHAT_ID, api_url=api_url(server)).send(ALERT)
    (request,) = server.received
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "chat_id": CHAT_ID,
        "text": "Order rejected\nAAPL buy 10: insufficient buying power",
        "disable_web_page_preview": True,
    }


def test_telegram_cuts_a_long_text_to_its_limit(server):
    TelegramAlertSink(BOT_TOKEN, CHAT_ID, api_url=api_url(server)).send(
        Alert(kind="t", key="t", title="long", text="x" * 10_000)
    )
    text = server.received[0].json()["text"]
    assert len(text) == 4096 and text.endswith("...")


def test_telegram_failures_never_show_the_token(server, caplog):
    server.statuses = [502] * 10
    server.echo_path = True  # the error body repeats /bot<token>/sendMessage
    sink = TelegramAlertSink(BOT_TOKEN, CHAT_ID, api_url=api_url(server), retries=2, sleep=Sleeps())
    with caplog.at_level(logging.DEBUG), pytest.raises(AlertDeliveryError) as info:
        sink.send(ALERT)
    assert len(server.received) == 3
    message = str(info.value)
    assert "the Telegram bot API at 127.0.0.1 did not take the alert after 3 attempt(s): HTTP 502" in message
    assert "<redacted>" in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert_no_secret(message, repr(info.value), caplog.text, repr(sink), sink.describe())
    assert CHAT_ID not in repr(sink)


def test_telegram_does_not_retry_a_revoked_token(server):
    server.statuses = [401]
    server.echo_path = True
    with pytest.raises(AlertDeliveryError, match=r"after 1 attempt\(s\): HTTP 401") as info:
        TelegramAlertSink(BOT_TOKEN, CHAT_ID, api_url=api_url(server), sleep=Sleeps()).send(ALERT)
    assert len(server.received) == 1
    assert_no_secret(str(info.value))


def test_telegram_to_a_closed_port_is_a_redacted_error(monkeypatch):
    no_proxy_env(monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = TelegramAlertSink(
        BOT_TOKEN, CHAT_ID, api_url=f"http://127.0.0.1:{port}", retries=1, sleep=Sleeps()
    )
    with pytest.raises(AlertDeliveryError, match="Connection ?Refused|refused") as info:
        sink.send(ALERT)
    assert_no_secret(str(info.value))


def test_telegram_times_out_without_the_token(server):
    server.delay = 0.6
    sink = TelegramAlertSink(
        BOT_TOKEN, CHAT_ID, api_url=api_url(server), timeout_seconds=0.2, retries=0, sleep=Sleeps()
    )
    with pytest.raises(AlertDeliveryError, match="timed out") as info:
        sink.send(ALERT)
    assert_no_secret(str(info.value))


@pytest.mark.parametrize(
    ("token", "chat", "variable"),
    [
        ("", CHAT_ID, TELEGRAM_TOKEN_ENV_VAR),
        (f"{BOT_TOKEN} ", CHAT_ID, None),  # surrounding spaces are trimmed: accepted
        (f"{BOT_TOKEN}/x", CHAT_ID, TELEGRAM_TOKEN_ENV_VAR),
        (f"ab cd{BOT_TOKEN}", CHAT_ID, TELEGRAM_TOKEN_ENV_VAR),
        (BOT_TOKEN, "", TELEGRAM_CHAT_ENV_VAR),
    ],
)
def test_a_malformed_token_or_chat_is_refused_without_echoing_it(token, chat, variable):
    if variable is None:
        TelegramAlertSink(token, chat)
        return
    with pytest.raises(ValueError, match=variable) as info:
        TelegramAlertSink(token, chat)
    assert_no_secret(str(info.value))


# ------------------------------------------------------------------------------------------------- Slack


def test_slack_posts_text_json_and_redacts_its_url(server):
    SlackAlertSink(server.url).send(ALERT)
    assert [r.json() for r in server.received] == [
        {"text": "Order rejected\nAAPL buy 10: insufficient buying power"}
    ]
    server.statuses = [500] * 3
    server.echo_path = True
    sink = SlackAlertSink(server.url, retries=1, sleep=Sleeps())
    with pytest.raises(AlertDeliveryError, match="the Slack webhook at 127.0.0.1 did not take") as info:
        sink.send(ALERT)
    assert_no_secret(str(info.value), repr(sink))


def test_a_bad_slack_url_names_the_slack_variable():
    with pytest.raises(ValueError, match=SLACK_ENV_VAR) as info:
        SlackAlertSink(SECRET_TOKEN)
    assert_no_secret(str(info.value))


# ---------------------------------------------------------------------------------------------- resource


def test_every_configured_channel_is_a_sink_after_the_local_one(tmp_path, log):
    resource = AlertsResource(
        jsonl_path=str(tmp_path / "a.jsonl"),
        webhook_url="http://127.0.0.1:9/hook",
        slack_webhook_url="http://127.0.0.1:9/services/x",
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
    )
    kinds = [type(s) for s in resource.sink(log).sinks]
    assert kinds == [LogAlertSink, WebhookAlertSink, SlackAlertSink, TelegramAlertSink]
    assert_no_secret(repr(resource))
    assert CHAT_ID not in repr(resource)


def test_the_resource_reads_every_channel_from_its_variable_and_delivers_everywhere(
    tmp_path, monkeypatch, server, capfd
):
    monkeypatch.setenv(SLACK_ENV_VAR, server.url)
    monkeypatch.setenv(TELEGRAM_TOKEN_ENV_VAR, BOT_TOKEN)
    monkeypatch.setenv(TELEGRAM_CHAT_ENV_VAR, CHAT_ID)
    resource = alerts_resource(tmp_path, {"telegram_api_url": api_url(server)})
    assert isinstance(resource.telegram_bot_token, dg.EnvVar)
    assert (
        resource.telegram_bot_token == TELEGRAM_TOKEN_ENV_VAR and resource.slack_webhook_url == SLACK_ENV_VAR
    )
    assert resource.webhook_url is None
    assert_no_secret(repr(resource), json.dumps(resource.model_dump(), default=str))

    seen: list[str] = []

    @dg.sensor()
    def probe(context: dg.SensorEvaluationContext, alerts: AlertsResource):
        seen.append(repr(alerts))  # resolved here: the fields hold the secrets themselves
        context.log.info(f"alerting through {alerts!r}")
        alerts.sink(context.log).send(ALERT)
        return dg.SkipReason("sent")

    probe.evaluate_tick(dg.build_sensor_context(resources={"alerts": resource}))
    assert sorted(r.path for r in server.received) == sorted([SECRET_PATH, f"/bot{BOT_TOKEN}/sendMessage"])
    assert "<redacted>" in seen[0]
    jsonl = (tmp_path / "alerts.jsonl").read_text()
    assert json.loads(jsonl)["key"] == "test:1"
    assert_no_secret(seen[0], jsonl, capfd.readouterr().err)


def test_a_failing_channel_keeps_the_local_record_and_leaks_nothing(tmp_path, monkeypatch, server, capfd):
    server.statuses = [500] * 20
    server.echo_path = True
    monkeypatch.setenv(TELEGRAM_TOKEN_ENV_VAR, BOT_TOKEN)
    monkeypatch.setenv(TELEGRAM_CHAT_ENV_VAR, CHAT_ID)
    resource = alerts_resource(tmp_path, {"telegram_api_url": api_url(server), "webhook_retries": 0})

    @dg.sensor()
    def probe(context: dg.SensorEvaluationContext, alerts: AlertsResource):
        alerts.sink(context.log).send(ALERT)

    with pytest.raises(Exception) as info:  # noqa: PT011 - Dagster wraps the sensor's error
        probe.evaluate_tick(dg.build_sensor_context(resources={"alerts": resource}))
    chain, error = [], info.value
    while error is not None:
        chain.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    assert any("Telegram bot API at 127.0.0.1" in c for c in chain)
    jsonl = (tmp_path / "alerts.jsonl").read_text()
    assert json.loads(jsonl)["title"] == "Order rejected"
    assert_no_secret(*chain, jsonl, capfd.readouterr().err)


@pytest.mark.parametrize(
    ("present", "missing"),
    [(TELEGRAM_TOKEN_ENV_VAR, TELEGRAM_CHAT_ENV_VAR), (TELEGRAM_CHAT_ENV_VAR, TELEGRAM_TOKEN_ENV_VAR)],
)
def test_half_of_telegram_is_refused_when_the_definitions_load(
    tmp_path, monkeypatch, server, present, missing
):
    monkeypatch.setenv(present, BOT_TOKEN if present == TELEGRAM_TOKEN_ENV_VAR else CHAT_ID)
    with pytest.raises(SettingsError, match=f"{present} is set but {missing} is not") as info:
        alerts_resource(tmp_path)
    assert_no_secret(str(info.value))
    assert CHAT_ID not in str(info.value)


def test_half_of_telegram_in_a_resource_fails_each_send_after_the_local_record(tmp_path, log):
    resource = AlertsResource(jsonl_path=str(tmp_path / "a.jsonl"), telegram_bot_token=BOT_TOKEN)
    with pytest.raises(
        AlertDeliveryError, match=f"Telegram is not configured: {TELEGRAM_CHAT_ENV_VAR} is not set"
    ):
        resource.sink(log).send(ALERT)
    assert json.loads((tmp_path / "a.jsonl").read_text())["key"] == "test:1"


def test_an_unusable_url_fails_sends_with_the_variable_name_not_the_tick(tmp_path, log):
    resource = AlertsResource(jsonl_path=str(tmp_path / "a.jsonl"), slack_webhook_url=SECRET_TOKEN)
    with pytest.raises(
        AlertDeliveryError, match=f"the Slack webhook is not configured: {SLACK_ENV_VAR}"
    ) as info:
        resource.sink(log).send(ALERT)
    assert_no_secret(str(info.value))
    assert (tmp_path / "a.jsonl").exists()


def test_a_bad_telegram_api_url_is_refused(tmp_path, server):
    with pytest.raises(SettingsError, match="telegram_api_url must be an http"):
        alerts_resource(tmp_path, {"telegram_api_url": "ftp://x"})


# ------------------------------------------------------------------------------ trading alerts (builders)


def _request(**kw):
    from trading_dagster.domain.broker_records import OrderRequest

    base = dict(
        client_order_id="cid-1", session=dt.date(2025, 7, 3), strategy="sma_cross", symbol="AAPL", side="buy"
    )
    base.update(kw)
    if "notional" not in kw:
        base.setdefault("qty", Decimal("10"))
    return OrderRequest(**base)


def test_an_order_rejection_names_the_order_and_the_brokers_reason():
    from trading_dagster.automation.trading_alerts import order_rejected_alert
    from trading_dagster.domain.broker_records import SubmitResult

    result = SubmitResult(_request(), "rejected", None, "40310000", "insufficient buying power")
    alert = order_rejected_alert(result, book="live")
    assert (
        alert.kind == "order_rejected" and alert.key == "order_rejected:cid-1" and alert.severity == "ERROR"
    )
    assert alert.title == "Order rejected by the broker (live): buy AAPL 10 shares"
    assert "insufficient buying power [40310000]" in alert.text and "2025-07-03" in alert.text
    assert alert.details["code"] == "40310000" and alert.details["qty"] == "10"
    notional = order_rejected_alert(SubmitResult(_request(notional=Decimal("1500.5")), "rejected"))
    assert notional.title.endswith("buy AAPL $1,500.50") and "no message" in notional.text
    with pytest.raises(ValueError, match="submitted, not rejected"):
        order_rejected_alert(SubmitResult(_request(), "submitted"))


def test_a_reconciliation_mismatch_lists_each_item_with_its_difference():
    from trading_dagster.automation.trading_alerts import Mismatch, reconciliation_mismatch_alert

    alert = reconciliation_mismatch_alert(
        dt.date(2025, 7, 3),
        [
            Mismatch("AAPL", Decimal("10"), Decimal("7.5")),
            Mismatch("cash", Decimal("1000"), Decimal("1250.25")),
            Mismatch("MSFT", None, Decimal("3")),
        ],
    )
    assert alert.key == "reconciliation_mismatch:2025-07-03"
    assert alert.text.splitlines() == [
        "AAPL: ledger 10, broker 7.5 (-2.5)",
        "cash: ledger $1,000.00, broker $1,250.25 (+$250.25)",
        "MSFT: ledger ?, broker 3",
    ]
    assert alert.details["items"] == ["AAPL", "cash", "MSFT"]
    with pytest.raises(ValueError):
        reconciliation_mismatch_alert(dt.date(2025, 7, 3), [])


def test_the_kill_switch_alerts_when_engaged_and_released():
    from trading_dagster.automation.trading_alerts import kill_switch_alert

    at = dt.datetime(2025, 7, 7, 14, 0, tzinfo=dt.UTC)
    on = kill_switch_alert(True, at=at, by="ops@desk", reason="drawdown limit")
    off = kill_switch_alert(False, at=at + dt.timedelta(hours=1), by="ops@desk", reason="reviewed")
    assert on.severity == "ERROR" and off.severity == "WARNING"
    assert on.title == "Kill switch engaged (paper) by ops@desk" and "no buy reaches the broker" in on.text
    assert off.key == "kill_switch:released:2025-07-07T15:00:00+00:00" and on.key != off.key


def test_pnl_below_the_threshold():
    from trading_dagster.automation.trading_alerts import pnl_below_threshold_alert

    alert = pnl_below_threshold_alert(
        dt.date(2025, 7, 3), Decimal("-1234.5"), Decimal("-1000"), equity=Decimal("100000")
    )
    assert alert.title == "P&L of session 2025-07-03 (paper) is -$1,234.50, below -$1,000.00"
    assert "(-1.23% of equity $100,000.00)" in alert.text and alert.details["pnl"] == "-1234.5"
    with pytest.raises(ValueError, match="not below"):
        pnl_below_threshold_alert(dt.date(2025, 7, 3), Decimal("-10"), Decimal("-1000"))


def test_the_daily_fills_summary_groups_by_symbol_and_side_and_logs_at_info(tmp_path, log, caplog):
    from trading_dagster.automation.trading_alerts import fills_summary_alert
    from trading_dagster.domain.broker_records import BrokerFill

    t = dt.datetime(2025, 7, 7, 13, 31, tzinfo=dt.UTC)

    def fill(i, symbol, side, qty, price):
        return BrokerFill(f"e{i}", f"o{i}", f"c{i}", symbol, side, Decimal(qty), Decimal(price), t)

    fills = [
        fill(1, "AAPL", "buy", "4", "200"),
        fill(2, "AAPL", "buy", "6", "201"),
        fill(3, "MSFT", "sell", "2.5", "400"),
    ]
    alert = fills_summary_alert(dt.date(2025, 7, 3), fills)
    assert alert.severity == "INFO" and alert.key == "fills_summary:2025-07-03"
    assert alert.title == "Fills of session 2025-07-03 (paper): 3 fill(s), bought $2,006.00, sold $1,000.00"
    assert alert.text.splitlines() == [
        "buy AAPL 10 @ $200.60 = $2,006.00 (2 fill(s))",
        "sell MSFT 2.5 @ $400.00 = $1,000.00 (1 fill(s))",
    ]
    assert fills_summary_alert(dt.date(2025, 7, 3), []).text == "no fills"
    with caplog.at_level(logging.INFO, logger=log.name):
        LogAlertSink(tmp_path / "a.jsonl", log).send(alert)
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert json.loads((tmp_path / "a.jsonl").read_text())["severity"] == "INFO"
