"""Alerts: where "something broke" goes. An `Alert` is a plain record; an `AlertSink` delivers it.

- `LogAlertSink` (built in, always on): the message at the alert's severity (ERROR by default) in the
  Dagster log of the sensor tick, and one JSON line appended to `$TRADING_DAGSTER_DATA_DIR/alerts.jsonl` (a record a person or a script can read).
- `WebhookAlertSink`: POSTs `{"text": ...}` (what Slack's incoming webhooks, and Mattermost's, Teams'
  workflows and most chat tools, accept) to a URL, with a timeout and a few retries on 5xx, 429 and network
  errors. The URL is a secret (a Slack webhook URL is its own credential): it comes only from
  `dg.EnvVar("TRADING_DAGSTER_ALERT_WEBHOOK_URL")`, is never logged or put in metadata, and is redacted
  from every error this module raises (only its host is named).
- `SlackAlertSink`: the same to a Slack incoming webhook, from `TRADING_DAGSTER_SLACK_WEBHOOK_URL`.
- `TelegramAlertSink`: a bot's sendMessage (`{api}/bot<token>/sendMessage`, chat id and text), from
  `TRADING_DAGSTER_TELEGRAM_BOT_TOKEN` and `TRADING_DAGSTER_TELEGRAM_CHAT_ID` (both or neither). The token
  is in the URL path, so the same redaction applies: never in a log line, an exception, `alerts.jsonl`
  or the resource's repr (a resolved resource shows `<redacted>`).
- `FanOutAlertSink`: every sink in turn, the built-in one first so an alert is on record even when the
  webhook is down; then an `AlertDeliveryError` naming the sinks that failed.

`AlertsResource` is the Dagster side: which sinks, built by `alerts_resource` from the settings when the
definitions load, and the freshness rule's lead before the open.
"""

import abc
import dataclasses
import datetime as dt
import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from trading_dagster.settings import SettingsError

WEBHOOK_ENV_VAR = "TRADING_DAGSTER_ALERT_WEBHOOK_URL"
SLACK_ENV_VAR = "TRADING_DAGSTER_SLACK_WEBHOOK_URL"
TELEGRAM_TOKEN_ENV_VAR = "TRADING_DAGSTER_TELEGRAM_BOT_TOKEN"
TELEGRAM_CHAT_ENV_VAR = "TRADING_DAGSTER_TELEGRAM_CHAT_ID"
TELEGRAM_API_URL = "https://api.telegram.org"
ALERTS_FILE_NAME = "alerts.jsonl"
REDACTED = "<redacted>"
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class AlertDeliveryError(RuntimeError):
    """An alert could not be delivered to one or more sinks; the message never holds a secret."""


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alert. `key` identifies what it is about (`raw_freshness:2024-07-08`, `run_failure:<run id>`),
    so a consumer of the JSON lines can tell a repeat from a new alert."""

    kind: str
    key: str
    title: str
    text: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    severity: str = "ERROR"
    created_at: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.created_at.isoformat(),
            "severity": self.severity,
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "text": self.text,
            "details": dict(self.details),
        }

    def message(self) -> str:
        """Title and body as one text (the log line, the chat message)."""
        return f"{self.title}\n{self.text}" if self.text else self.title


class AlertSink(abc.ABC):
    """Somewhere alerts go. `send` raises AlertDeliveryError if the alert did not get there."""

    @abc.abstractmethod
    def send(self, alert: Alert) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """What the sink is, for messages (never a secret)."""


class LogAlertSink(AlertSink):
    """The built-in sink: ERROR in the given log (the sensor's Dagster log) and a JSON line in a file."""

    def __init__(self, path: str | Path, log: logging.Logger | Any) -> None:
        self.path = Path(path)
        self.log = log

    def describe(self) -> str:
        return f"the Dagster log and {self.path}"

    def send(self, alert: Alert) -> None:
        # at the alert's severity (ERROR unless it says INFO or WARNING: a daily summary is not an error)
        emit = getattr(self.log, {"INFO": "info", "WARNING": "warning"}.get(alert.severity, "error"))
        emit(f"ALERT [{alert.kind}] {alert.message()}")
        line = json.dumps(alert.to_json(), default=str, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)  # one write of one line in append mode: concurrent appends do not interleave
        except OSError as exc:
            raise AlertDeliveryError(f"cannot append the alert to {self.path}: {exc}") from exc


class _HttpJsonSink(AlertSink):
    """POST one JSON document per alert to a URL that is itself a secret (it holds a token).

    Up to `retries` more attempts after the first on a network error, a timeout, 408/425/429 or a 5xx,
    `backoff_seconds` apart, doubling; any other status (a 4xx: a revoked or mistyped URL) fails at once.
    Every error it raises has the URL and each secret fragment replaced by `<redacted>`, and chains no
    exception (urllib's errors carry the URL)."""

    def __init__(
        self,
        url: str,
        *,
        env_var: str,
        secrets: Sequence[str] = (),
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            # not even the scheme is echoed: a value pasted into the wrong variable could be any secret
            raise ValueError(f"{env_var} must be an http(s) URL with a host")
        if timeout_seconds <= 0 or retries < 0:
            raise ValueError("the webhook timeout must be positive and the retries at least 0")
        self._url = url
        extra = [v for s in secrets for v in _variants(s)]
        self._secrets = sorted(set(_secret_fragments(url) + extra), key=len, reverse=True)
        self.host = parts.hostname
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, url={REDACTED!r})"

    @abc.abstractmethod
    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON document posted for the alert."""

    def redact(self, text: str) -> str:
        """`text` with the URL and every secret part of it (path, query, credentials, tokens) replaced."""
        for fragment in self._secrets:
            text = text.replace(fragment, REDACTED)
        return text

    def send(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert)).encode()
        attempts = self.retries + 1
        problem = ""
        for attempt in range(1, attempts + 1):
            retry, problem = self._post(body)
            if not problem:
                return
            if not retry or attempt == attempts:
                break
            self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise AlertDeliveryError(
            self.redact(f"{self.describe()} did not take the alert after {attempt} attempt(s): {problem}")
        )

    def _post(self, body: bytes) -> tuple[bool, str]:
        """One attempt: (whether another attempt may help, "" if delivered else why it was not)."""
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "trading-dagster-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                response.read()
                return False, ""
        except urllib.error.HTTPError as exc:
            try:
                with exc:
                    detail = exc.read(200).decode("utf-8", "replace").strip()
            except (OSError, http.client.HTTPException):
                detail = ""  # the status is what matters; a body cut short must not escape unredacted
            why = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
            return exc.code in _RETRY_STATUSES or exc.code >= 500, self.redact(why)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return True, self.redact(f"{type(reason).__name__}: {reason}")


class WebhookAlertSink(_HttpJsonSink):
    """POST `{"text": ...}` as JSON to a generic webhook URL (a secret: see the module docstring)."""

    def __init__(self, url: str, *, env_var: str = WEBHOOK_ENV_VAR, **kwargs: Any) -> None:
        super().__init__(url, env_var=env_var, **kwargs)

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {"text": alert.message()}

    def describe(self) -> str:
        return f"the webhook at {self.host}"


class SlackAlertSink(WebhookAlertSink):
    """A Slack incoming webhook (`https://hooks.slack.com/services/T.../B.../<token>`): `{"text": ...}`."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, env_var=SLACK_ENV_VAR, **kwargs)

    def describe(self) -> str:
        return f"the Slack webhook at {self.host}"


class TelegramAlertSink(_HttpJsonSink):
    """A Telegram bot's `sendMessage` (POST `{api_url}/bot<token>/sendMessage` with `chat_id` and `text`).

    The bot token is a credential and sits in the URL path, where urllib's errors would repeat it: it is
    kept only in the private URL, and redacted (as is, URL-quoted, and as `bot<token>`) from every error;
    the chat id is treated the same way. `api_url` is https://api.telegram.org unless a test points it at a
    local server. Texts are cut to Telegram's 4096 characters."""

    MAX_TEXT = 4096

    def __init__(
        self, bot_token: str, chat_id: str, *, api_url: str = TELEGRAM_API_URL, **kwargs: Any
    ) -> None:
        token, chat = str(bot_token or "").strip(), str(chat_id or "").strip()
        if not token or any(c.isspace() or c in "/?#" for c in token):
            raise ValueError(f"{TELEGRAM_TOKEN_ENV_VAR} must be a bot token (digits:letters), with no spaces")
        if not chat or any(c.isspace() for c in chat):
            raise ValueError(f"{TELEGRAM_CHAT_ENV_VAR} must be a chat id (a number, or @channel)")
        self.chat_id = chat
        url = f"{api_url.rstrip('/')}/bot{urllib.parse.quote(token, safe=':')}/sendMessage"
        super().__init__(url, env_var="the Telegram API URL", secrets=(token, chat), **kwargs)

    def __repr__(self) -> str:
        return f"TelegramAlertSink(host={self.host!r}, bot_token={REDACTED!r}, chat_id={REDACTED!r})"

    def payload(self, alert: Alert) -> dict[str, Any]:
        text = alert.message()
        if len(text) > self.MAX_TEXT:
            text = text[: self.MAX_TEXT - 3] + "..."
        return {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}

    def describe(self) -> str:
        return f"the Telegram bot API at {self.host}"


class _MisconfiguredSink(AlertSink):
    """Stands for a sink that cannot be built (half its settings): every send fails, naming what is missing,
    after the built-in sink has kept the alert."""

    def __init__(self, what: str, why: str) -> None:
        self.what, self.why = what, why

    def describe(self) -> str:
        return self.what

    def send(self, alert: Alert) -> None:
        raise AlertDeliveryError(f"{self.what} is not configured: {self.why}")


class FanOutAlertSink(AlertSink):
    """Every sink in order; AlertDeliveryError after all were tried if any failed."""

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.sinks)

    def send(self, alert: Alert) -> None:
        failures = []
        for sink in self.sinks:
            try:
                sink.send(alert)
            except AlertDeliveryError as exc:
                failures.append(str(exc))
        if failures:
            raise AlertDeliveryError(f"alert {alert.key} not delivered everywhere: " + "; ".join(failures))


def _variants(secret: str) -> list[str]:
    """A secret as is and as it may appear URL-quoted (only long enough ones: a 1-character "secret" would
    redact every occurrence of that character)."""
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret, safe=":"), f"bot{secret}"}
    return [v for v in out if len(v) > 3]


def _secret_fragments(url: str) -> list[str]:
    """The URL and the parts of it that may carry its secret, longest first (so the whole URL goes first)."""
    parts = urllib.parse.urlsplit(url)
    fragments = {url, parts.path, parts.query, parts.password or "", parts.username or ""}
    if parts.path:
        fragments.add(urllib.parse.unquote(parts.path))
        fragments.add(urllib.parse.urlunsplit(("", parts.netloc, parts.path, parts.query, "")).lstrip("/"))
    return sorted((f for f in fragments if len(f) > 1), key=len, reverse=True)


# ------------------------------------------------------------------------------------------------ Dagster


class AlertsResource(dg.ConfigurableResource):
    """Where alerts go and the freshness rule's lead time. The built-in sink is always on; the webhook is
    on when `webhook_url` is set, which `alerts_resource` does only with `dg.EnvVar`, so the UI shows the
    variable's name and never its value."""

    jsonl_path: str = Field(
        default=f".data/{ALERTS_FILE_NAME}", description="JSON-lines file alerts are appended to"
    )
    webhook_url: str | None = Field(
        default=None,
        description=f"Slack-compatible webhook; a secret, set only through dg.EnvVar({WEBHOOK_ENV_VAR!r})",
    )
    slack_webhook_url: str | None = Field(
        default=None,
        description=f"Slack incoming webhook; a secret, set only through dg.EnvVar({SLACK_ENV_VAR!r})",
    )
    telegram_bot_token: str | None = Field(
        default=None,
        description=f"Telegram bot token; a secret, set only through dg.EnvVar({TELEGRAM_TOKEN_ENV_VAR!r})",
    )
    telegram_chat_id: str | None = Field(
        default=None,
        description=f"Telegram chat the bot writes to; set through dg.EnvVar({TELEGRAM_CHAT_ENV_VAR!r})",
    )
    telegram_api_url: str = Field(
        default=TELEGRAM_API_URL, description="Telegram Bot API base URL (a local server in tests)"
    )
    webhook_timeout_seconds: float = Field(default=5.0, description="timeout of one webhook attempt")
    webhook_retries: int = Field(
        default=2, description="webhook attempts after the first (5xx, 429, network)"
    )
    raw_lead_minutes: int = Field(
        default=30,
        description="raw prices of the previous session must be on file this many minutes before the NYSE "
        "open (30: 09:00 New York); raw_freshness_sensor alerts after that",
    )

    def __repr_args__(self) -> Any:
        # once resolved (inside a run or a tick) the EnvVar fields hold the secrets themselves
        for name, value in super().__repr_args__():
            hidden = name in _SECRET_FIELDS and value and not isinstance(value, dg.EnvVar)
            yield name, REDACTED if hidden else value

    def sink(self, log: logging.Logger | Any) -> AlertSink:
        """The built-in sink first, then each configured channel. A channel whose settings are unusable
        (a URL that is not http(s), half of Telegram's pair) fails each send with the variable's name, after
        the built-in sink has the alert: it never stops the record nor raises while building."""
        http = {"timeout_seconds": self.webhook_timeout_seconds, "retries": self.webhook_retries}
        sinks: list[AlertSink] = [LogAlertSink(self.jsonl_path, log)]
        channels: list[tuple[str, Callable[[], AlertSink]]] = []
        if self.webhook_url:
            url = self.webhook_url
            channels.append(("the webhook", lambda: WebhookAlertSink(url, **http)))
        if self.slack_webhook_url:
            slack = self.slack_webhook_url
            channels.append(("the Slack webhook", lambda: SlackAlertSink(slack, **http)))
        token, chat = self.telegram_bot_token, self.telegram_chat_id
        if token and chat:
            api = self.telegram_api_url
            channels.append(("Telegram", lambda: TelegramAlertSink(token, chat, api_url=api, **http)))
        elif token or chat:
            missing = TELEGRAM_CHAT_ENV_VAR if token else TELEGRAM_TOKEN_ENV_VAR
            sinks.append(_MisconfiguredSink("Telegram", f"{missing} is not set"))
        for what, build in channels:
            try:
                sinks.append(build())
            except ValueError as exc:  # the message names the variable, never its value
                sinks.append(_MisconfiguredSink(what, str(exc)))
        return FanOutAlertSink(sinks)

    @property
    def raw_lead(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.raw_lead_minutes)


_SECRET_FIELDS = frozenset({"webhook_url", "slack_webhook_url", "telegram_bot_token", "telegram_chat_id"})
ALERTS_CONFIG_KEYS = ("raw_lead_minutes", "webhook_timeout_seconds", "webhook_retries", "telegram_api_url")


def alerts_resource(data_dir: Path, config: Mapping[str, Any] | None = None) -> AlertsResource:
    """The alerts resource of the definitions: `$TRADING_DAGSTER_DATA_DIR/alerts.jsonl`, and each channel
    whose variables are set: the webhook (TRADING_DAGSTER_ALERT_WEBHOOK_URL), Slack
    (TRADING_DAGSTER_SLACK_WEBHOOK_URL), Telegram (TRADING_DAGSTER_TELEGRAM_BOT_TOKEN and
    TRADING_DAGSTER_TELEGRAM_CHAT_ID, both or a SettingsError), each as an EnvVar: the value is resolved
    when a sensor runs and is never part of the config. `[alerts]` of trading_dagster.toml
    (`raw_lead_minutes`, `webhook_timeout_seconds`, `webhook_retries`, `telegram_api_url`) when present. A
    bad or unknown key is a SettingsError when the definitions load: a misspelt lead must not silently fall
    back to the default."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(ALERTS_CONFIG_KEYS))
    if unknown:
        raise SettingsError(
            f"[alerts] has unknown keys {unknown}; expected some of {list(ALERTS_CONFIG_KEYS)}"
        )
    lead = config.get("raw_lead_minutes", 30)
    timeout = config.get("webhook_timeout_seconds", 5.0)
    retries = config.get("webhook_retries", 2)
    if not isinstance(lead, int) or isinstance(lead, bool) or not 0 <= lead <= 570:
        raise SettingsError(
            f"[alerts] raw_lead_minutes must be whole minutes from 0 to 570 (00:00), not {lead!r}"
        )
    # bounded so a dead webhook (4 attempts timing out, plus the back-off) stays inside a sensor tick's 60 s
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 10:
        raise SettingsError(f"[alerts] webhook_timeout_seconds must be in (0, 10], not {timeout!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 3:
        raise SettingsError(f"[alerts] webhook_retries must be an integer from 0 to 3, not {retries!r}")
    api_url = config.get("telegram_api_url", TELEGRAM_API_URL)
    if not isinstance(api_url, str) or urllib.parse.urlsplit(api_url).scheme not in {"http", "https"}:
        raise SettingsError(f"[alerts] telegram_api_url must be an http(s) URL, not {api_url!r}")

    def env(name: str) -> dg.EnvVar | None:  # presence only; the value is not kept
        return dg.EnvVar(name) if dg.EnvVar(name).get_value() else None

    token, chat = env(TELEGRAM_TOKEN_ENV_VAR), env(TELEGRAM_CHAT_ENV_VAR)
    if (token is None) != (chat is None):
        missing = TELEGRAM_CHAT_ENV_VAR if token is not None else TELEGRAM_TOKEN_ENV_VAR
        present = TELEGRAM_TOKEN_ENV_VAR if token is not None else TELEGRAM_CHAT_ENV_VAR
        raise SettingsError(f"Telegram alerts need both variables: {present} is set but {missing} is not")
    return AlertsResource(
        jsonl_path=str(data_dir / ALERTS_FILE_NAME),
        webhook_url=env(WEBHOOK_ENV_VAR),
        slack_webhook_url=env(SLACK_ENV_VAR),
        telegram_bot_token=token,
        telegram_chat_id=chat,
        telegram_api_url=api_url,
        webhook_timeout_seconds=float(timeout),
        webhook_retries=retries,
        raw_lead_minutes=lead,
    )
