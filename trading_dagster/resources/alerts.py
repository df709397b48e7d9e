"""Alerts: where "something broke" goes. An `Alert` is a plain record; an `AlertSink` delivers it.

- `LogAlertSink` (built in, always on): the message at ERROR in the Dagster log of the sensor tick, and one
  JSON line appended to `$TRADING_DAGSTER_DATA_DIR/alerts.jsonl` (a record a person or a script can read).
- `WebhookAlertSink`: POSTs `{"text": ...}` (what Slack's incoming webhooks, and Mattermost's, Teams'
  workflows and most chat tools, accept) to a URL, with a timeout and a few retries on 5xx, 429 and network
  errors. The URL is a secret (a Slack webhook URL is its own credential): it comes only from
  `dg.EnvVar("TRADING_DAGSTER_ALERT_WEBHOOK_URL")`, is never logged or put in metadata, and is redacted
  from every error this module raises (only its host is named).
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
        self.log.error(f"ALERT [{alert.kind}] {alert.message()}")
        line = json.dumps(alert.to_json(), default=str, separators=(",", ":")) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)  # one write of one line in append mode: concurrent appends do not interleave
        except OSError as exc:
            raise AlertDeliveryError(f"cannot append the alert to {self.path}: {exc}") from exc


class WebhookAlertSink(AlertSink):
    """POST `{"text": ...}` as JSON to a webhook URL (a secret: see the module docstring).

    Up to `retries` more attempts after the first on a network error, a timeout, 408/425/429 or a 5xx,
    `backoff_seconds` apart, doubling; any other status (a 4xx: a revoked or mistyped URL) fails at once.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            # not even the scheme is echoed: a value pasted into the wrong variable could be any secret
            raise ValueError(f"{WEBHOOK_ENV_VAR} must be an http(s) URL with a host")
        if timeout_seconds <= 0 or retries < 0:
            raise ValueError("the webhook timeout must be positive and the retries at least 0")
        self._url = url
        self._secrets = _secret_fragments(url)
        self.host = parts.hostname
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WebhookAlertSink(host={self.host!r}, url={REDACTED!r})"

    def describe(self) -> str:
        return f"the webhook at {self.host}"

    def redact(self, text: str) -> str:
        """`text` with the URL and every secret part of it (path, query, credentials) replaced."""
        for fragment in self._secrets:
            text = text.replace(fragment, REDACTED)
        return text

    def send(self, alert: Alert) -> None:
        body = json.dumps({"text": alert.message()}).encode()
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
    webhook_timeout_seconds: float = Field(default=5.0, description="timeout of one webhook attempt")
    webhook_retries: int = Field(
        default=2, description="webhook attempts after the first (5xx, 429, network)"
    )
    raw_lead_minutes: int = Field(
        default=30,
        description="raw prices of the previous session must be on file this many minutes before the NYSE "
        "open (30: 09:00 New York); raw_freshness_sensor alerts after that",
    )

    def sink(self, log: logging.Logger | Any) -> AlertSink:
        sinks: list[AlertSink] = [LogAlertSink(self.jsonl_path, log)]
        if self.webhook_url:
            sinks.append(
                WebhookAlertSink(
                    self.webhook_url,
                    timeout_seconds=self.webhook_timeout_seconds,
                    retries=self.webhook_retries,
                )
            )
        return FanOutAlertSink(sinks)

    @property
    def raw_lead(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.raw_lead_minutes)


ALERTS_CONFIG_KEYS = ("raw_lead_minutes", "webhook_timeout_seconds", "webhook_retries")


def alerts_resource(data_dir: Path, config: Mapping[str, Any] | None = None) -> AlertsResource:
    """The alerts resource of the definitions: `$TRADING_DAGSTER_DATA_DIR/alerts.jsonl`, the webhook if
    TRADING_DAGSTER_ALERT_WEBHOOK_URL is set (as an EnvVar: the value is resolved when a sensor runs and is
    never part of the config), and `[alerts]` of trading_dagster.toml (`raw_lead_minutes`,
    `webhook_timeout_seconds`, `webhook_retries`) when present. A bad or unknown key is a SettingsError when
    the definitions load: a misspelt lead must not silently fall back to the default."""
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
    webhook_set = bool(dg.EnvVar(WEBHOOK_ENV_VAR).get_value())  # presence only; the value is not kept
    return AlertsResource(
        jsonl_path=str(data_dir / ALERTS_FILE_NAME),
        webhook_url=dg.EnvVar(WEBHOOK_ENV_VAR) if webhook_set else None,
        webhook_timeout_seconds=float(timeout),
        webhook_retries=retries,
        raw_lead_minutes=lead,
    )
