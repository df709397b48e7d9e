"""The deployment files as docker compose, Dagster and the tests read them: paths, the compose's
interpolation of deploy/.env, each service's environment, `{env: NAME}` references, Dockerfile instructions."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
WORKSPACE = DEPLOY / "workspace.yaml"
INSTANCE = DEPLOY / "dagster.yaml"
ECS_INSTANCE = DEPLOY / "ecs" / "dagster.yaml"
ECS_RUN_TASK = DEPLOY / "ecs" / "run-task-definition.json"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"

DAGSTER_SERVICES = ("code", "webserver", "daemon")
CODE_PORT, WEBSERVER_PORT, PROXY_PORT = 4000, 3000, 8080
LOCATION = "trading_dagster"
BATCHING = {"DAGSTER_EVENT_BATCH_SIZE": "500", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}
# names of variables that hold secrets (TRADING_DAGSTER_SECRETS, which says where they come from, is not one)
SECRET_NAME = re.compile(r"PASSWORD|SECRET_KEY|SECRET_ACCESS|_TOKEN|KEY_ID|HTPASSWD|WEBHOOK", re.I)


def _version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


IMAGE = f"trading-dagster:{_version()}"


def _yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


# -- compose interpolation (the subset docker compose documents: ${V}, ${V:-d}, ${V-d}, ${V:?msg}, $$) --------

INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """What docker compose makes of `text` with `env` as deploy/.env: a required variable that is unset raises."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", ":?") and value == "":
            value = None
        if value is not None:
            return value
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg or "" if op else ""

    return INTERPOLATION.sub(one, text)


def compose(env: Mapping[str, str] | None = None) -> dict:
    """The compose file as docker compose reads it with deploy/.env = `env` (default: the secrets set to
    placeholders, everything else at its default)."""
    env = dict(REQUIRED_ENV if env is None else env)
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


REQUIRED_ENV = {
    "DAGSTER_PG_PASSWORD": "pg-placeholder",
    "TRADING_DAGSTER_COMPUTE_LOG_BUCKET": "logs-placeholder",
    "TRADING_DAGSTER_PROXY_HTPASSWD": "user:$apr1$placeholder",
}


def service_env(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def env_references(node: Any) -> Iterator[str]:
    """Every `{env: NAME}` in a Dagster config tree."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            yield node["env"]
        for value in node.values():
            yield from env_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_references(value)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(s for s in text.splitlines() if not s.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ecs_run_container() -> dict:
    task = json.loads(ECS_RUN_TASK.read_text())
    (container,) = [c for c in task["containerDefinitions"] if c["name"] == _yaml(ECS_INSTANCE)["run_launcher"]["config"]["container_name"]]
    return container


def helm_env(entries: list[dict] | dict) -> dict[str, str]:
    if isinstance(entries, dict):
        return {k: str(v) for k, v in entries.items()}
    return {e["name"]: str(e.get("value")) for e in entries}
