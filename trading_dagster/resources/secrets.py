"""Secrets from the environment or AWS SSM Parameter Store (decision 0005, section 7).

`SecretsResource.get(name)` returns one secret by its name, the same name in both sources:

* `source = "env"`: the environment variable `name` (what `dg.EnvVar` reads; the default, for a laptop or a
  container that injects variables);
* `source = "ssm"`: the SSM parameter `<ssm_path><name>`, e.g. `/trading-dagster/paper/TRADING_DAGSTER_
  TELEGRAM_BOT_TOKEN`, read with `GetParameter(WithDecryption=True)` (SecureString or String). One path per
  environment (`/trading-dagster/paper/`, `/trading-dagster/live/`), so a paper deployment cannot read
  the live keys when its IAM policy allows only its own path.

A missing secret is a `SecretNotFound` naming where it was looked for (the variable, or the parameter's
full path and region), never a value. Values are kept only in a private per-instance cache (a run or a tick
reads each secret once), never in the resource's fields, repr, config, logs or any exception; every error
is raised `from None`, so no botocore exception is chained to it.

Why boto3 directly rather than dagster-aws (0.29.27): `ParameterStoreResource` fetches a whole list or path
of parameters into a dict at once (every secret in memory for every use) and leaves a missing name out of
the dict instead of failing on it; `SSMResource.get_client()` builds the client without connect and read
timeouts, so a hung endpoint would hang a sensor tick. Here the client has short timeouts and standard
retries, and only the parameter asked for is read.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SecretError(RuntimeError):
    """A secret could not be read (no credentials, access denied, endpoint down). Never holds a value."""


class SecretNotFound(SecretError, KeyError):
    """No such secret where the resource looks for it (the message names the variable or parameter path)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SecretsResource(dg.ConfigurableResource):
    """Where secrets come from: the environment, or SSM Parameter Store under `ssm_path`."""

    source: Literal["env", "ssm"] = Field(default="env", description="env | ssm")
    ssm_path: str = Field(
        default="/trading-dagster/paper/",
        description="SSM parameter path prefix; a secret NAME is the parameter <ssm_path><NAME>",
    )
    region: str | None = Field(default=None, description="AWS region of the parameters (default: boto3's)")
    endpoint_url: str | None = Field(default=None, description="SSM endpoint override (a local moto server)")
    timeout_seconds: float = Field(default=5.0, description="connect and read timeout of one SSM call")
    max_attempts: int = Field(default=3, description="SSM call attempts (botocore standard retries)")

    _cache: dict[str, str] = PrivateAttr(default_factory=dict)
    _client: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if isinstance(self.ssm_path, dg.EnvVar):
            return  # checked when resolved
        path = self.prefix
        if not path.startswith("/") or "//" in path or not SECRET_NAME.match(path.replace("/", "")):
            raise ValueError(
                f"ssm_path must be an absolute SSM path like /trading-dagster/paper/, not {self.ssm_path!r}"
            )
        if self.timeout_seconds <= 0 or not 1 <= self.max_attempts <= 10:
            raise ValueError("the SSM timeout must be positive and max_attempts from 1 to 10")

    @property
    def prefix(self) -> str:
        """`ssm_path` ending with one slash."""
        return self.ssm_path.rstrip("/") + "/"

    def where(self, name: str) -> str:
        """Where `name` is looked for (for messages: no value)."""
        _check_name(name)
        if self.source == "env":
            return f"environment variable {name}"
        return f"SSM parameter {self.prefix}{name}" + (f" ({self.region})" if self.region else "")

    def get(self, name: str) -> str:
        """The secret `name` (a non-empty string); SecretNotFound / SecretError otherwise."""
        _check_name(name)
        if name in self._cache:
            return self._cache[name]
        value = self._from_env(name) if self.source == "env" else self._from_ssm(name)
        self._cache[name] = value
        return value

    # -- sources ---------------------------------------------------------------------------------------

    def _from_env(self, name: str) -> str:
        value = os.environ.get(name, "")
        if not value.strip():
            raise SecretNotFound(f"secret {name}: {self.where(name)} is not set")
        return value

    def _ssm(self) -> Any:
        if self._client is None:
            import boto3  # imported lazily: only an SSM source pays for it
            from botocore.config import Config

            config = Config(
                connect_timeout=self.timeout_seconds,
                read_timeout=self.timeout_seconds,
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
            )
            self._client = boto3.client(
                "ssm", region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        return self._client

    def _from_ssm(self, name: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.where(name)
        try:
            response = self._ssm().get_parameter(Name=f"{self.prefix}{name}", WithDecryption=True)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code == "ParameterNotFound":
                raise SecretNotFound(f"secret {name}: no {where}") from None
            raise SecretError(f"secret {name}: reading {where} failed: {code}") from None
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, timeout: no value involved
            raise SecretError(f"secret {name}: reading {where} failed: {type(exc).__name__}") from None
        value = response.get("Parameter", {}).get("Value", "")
        if not value.strip():
            raise SecretNotFound(f"secret {name}: {where} is empty")
        return value


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        raise ValueError("a secret name is letters, digits, '_', '.' and '-' only (e.g. TRADING_DAGSTER_X)")
