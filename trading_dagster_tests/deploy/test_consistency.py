"""The deployment files agree with each other and with the code, and hold no secret (issue 12, "Deployment").

deploy/docker-compose.yml, deploy/Dockerfile, deploy/workspace.yaml, deploy/dagster.yaml, deploy/ecs/ and
deploy/helm/values.yaml are parsed here (Docker has no daemon on this machine: the compose is checked, not
started). They must name the same image, the same ports and the same environment variables; nothing but the
proxy is published to the host; no secret value is written in any of them; paper is the default. The ECS
instance file is validated against Dagster's instance schema and its run launcher's own config schema the way
the instance loads it, without starting anything. Each check reads the real files; the helpers that could
pass vacuously are checked on a broken copy too.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from trading_dagster_tests.deploy.files import (
    BATCHING,
    CODE_PORT,
    COMPOSE,
    DAGSTER_SERVICES,
    DEPLOY,
    DOCKERFILE,
    ECS_INSTANCE,
    ECS_RUN_TASK,
    ENV_EXAMPLE,
    HELM_VALUES,
    IMAGE,
    INSTANCE,
    LOCATION,
    PROXY_PORT,
    REPO,
    REQUIRED_ENV,
    SECRET_NAME,
    WEBSERVER_PORT,
    WORKSPACE,
    _yaml,
    compose,
    dockerfile_instructions,
    ecs_run_container,
    env_references,
    helm_env,
    interpolate,
    service_env,
)

# -- parse --------------------------------------------------------------------------------------------------


def test_every_deployment_file_parses() -> None:
    assert set(compose()["services"]) == {"postgres", "code", "webserver", "daemon", "proxy"}
    assert _yaml(WORKSPACE)["load_from"][0]["grpc_server"]["location_name"] == LOCATION
    instance = _yaml(INSTANCE)
    assert "storage" not in instance  # three storages, so that the event log can be ours
    storages = {k: instance[k] for k in ("run_storage", "event_log_storage", "schedule_storage")}
    assert {k: (v["module"], v["class"]) for k, v in storages.items()} == {
        "run_storage": ("dagster_postgres", "PostgresRunStorage"),
        "event_log_storage": ("trading_dagster.event_log", "BatchedPostgresEventLogStorage"),
        "schedule_storage": ("dagster_postgres", "PostgresScheduleStorage"),
    }
    # one database: the same DAGSTER_PG_* block for all three
    assert all(v["config"] == storages["run_storage"]["config"] for v in storages.values())
    assert set(env_references(storages["run_storage"]["config"])) == {
        f"DAGSTER_PG_{name}" for name in ("HOST", "PORT", "USER", "PASSWORD", "DB")
    }
    assert _yaml(ECS_INSTANCE)["run_launcher"]["class"] == "EcsRunLauncher"
    assert _yaml(HELM_VALUES)["runLauncher"]["type"] == "K8sRunLauncher"
    assert json.loads(ECS_RUN_TASK.read_text())["containerDefinitions"]
    for policy in ("task-role-policy.json", "execution-role-policy.json"):
        assert json.loads((DEPLOY / "ecs" / policy).read_text())["Statement"]
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    runs = [args for word, args in instructions if word == "RUN"]
    # the dependencies, then the project, both from the lock file without the dev group
    assert any(re.search(r"uv sync --locked --no-dev --no-install-project$", a) for a in runs), runs
    assert any(re.search(r"uv sync --locked --no-dev(?! --no-install-project)", a) for a in runs), runs
    # the manifest is parsed by the user that runs the code, after the project is installed
    words = [word for word, _ in instructions]
    user_at = words.index("USER")
    assert dict(instructions)["USER"] not in ("root", "0")
    prepare_at = next(i for i, (w, a) in enumerate(instructions) if w == "RUN" and a == "trading-dagster prepare")
    assert user_at < prepare_at and words[-1] == "CMD"


def test_the_interpolation_helper_reads_compose_syntax() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $$x ${UNSET}", env) == "x d d  $x "
    with pytest.raises(KeyError, match="UNSET: say it"):
        interpolate("${UNSET:?say it}", env)


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_the_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in REQUIRED_ENV.items() if k != missing}
    with pytest.raises(KeyError, match=missing):
        compose(env)
    with pytest.raises(KeyError, match=missing):  # empty counts as unset (`:?`)
        compose(env | {missing: ""})


# -- what is published ----------------------------------------------------------------------------------------


def test_only_the_proxy_is_published_and_on_loopback_by_default() -> None:
    services = compose()["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"proxy"}
    assert all(s.get("network_mode") != "host" for s in services.values())
    (mapping,) = services["proxy"]["ports"]
    assert mapping == f"127.0.0.1:{PROXY_PORT}:{PROXY_PORT}"
    moved = compose(REQUIRED_ENV | {"TRADING_DAGSTER_PROXY_PORT": "9443"})["services"]["proxy"]["ports"]
    assert moved == [f"127.0.0.1:9443:{PROXY_PORT}"]
    # the webserver and the code server are reachable on the compose network only
    assert services["webserver"]["expose"] == [str(WEBSERVER_PORT)]
    assert services["code"]["expose"] == [str(CODE_PORT)]
    # and Helm exposes no Ingress and a cluster-internal webserver Service
    values = _yaml(HELM_VALUES)
    assert values["ingress"]["enabled"] is False
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"


# -- one image, the same ports -------------------------------------------------------------------------------


def test_every_dagster_process_runs_the_same_image() -> None:
    services = compose()["services"]
    images = {name: services[name]["image"] for name in DAGSTER_SERVICES}
    assert set(images.values()) == {IMAGE}, images
    for name in DAGSTER_SERVICES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert services[name]["init"] is True  # PID 1 would ignore SIGTERM and leave run workers unreaped
    assert f"-t {IMAGE} ." in DOCKERFILE.read_text()
    (deployment,) = _yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    assert f"{deployment['image']['repository'].rsplit('/', 1)[-1]}:{deployment['image']['tag']}" == IMAGE
    assert ecs_run_container()["image"].rsplit("/", 1)[-1] == IMAGE
    assert services["postgres"]["image"] == "postgres:15"


def test_ports_and_names_agree() -> None:
    services = compose()["services"]
    code_cmd = services["code"]["command"]
    assert code_cmd[:3] == ["dagster", "code-server", "start"]
    assert code_cmd[code_cmd.index("-p") + 1] == str(CODE_PORT)
    assert code_cmd[code_cmd.index("-m") + 1] == "trading_dagster.definitions"
    assert code_cmd[code_cmd.index("--location-name") + 1] == LOCATION
    dockerfile_cmd = json.loads(dict(dockerfile_instructions(DOCKERFILE.read_text()))["CMD"])
    assert dockerfile_cmd == code_cmd
    assert services["code"]["healthcheck"]["test"][-1] == str(CODE_PORT)

    grpc = _yaml(WORKSPACE)["load_from"][0]["grpc_server"]
    assert grpc["port"] == CODE_PORT and grpc["location_name"] == LOCATION
    local = _yaml(REPO / "workspace.yaml")["load_from"][0]["python_module"]
    assert local["location_name"] == LOCATION and local["module_name"] == "trading_dagster.definitions"
    host_var = grpc["host"]["env"]
    for name in ("webserver", "daemon"):
        assert service_env(services[name])[host_var] == "code"
        cmd = services[name]["command"]
        assert cmd[cmd.index("-w") + 1] == f"{service_env(services[name])['DAGSTER_HOME']}/workspace.yaml"

    web_cmd = services["webserver"]["command"]
    assert web_cmd[web_cmd.index("-p") + 1] == str(WEBSERVER_PORT)
    assert web_cmd[web_cmd.index("-h") + 1] == "0.0.0.0"  # inside its container; not published
    proxy = service_env(services["proxy"])
    assert (proxy["PROXY_UPSTREAM_HOST"], proxy["PROXY_UPSTREAM_PORT"]) == ("webserver", str(WEBSERVER_PORT))
    assert proxy["PROXY_LISTEN_PORT"] == str(PROXY_PORT)
    assert proxy["NGINX_ENVSUBST_FILTER"] == "^PROXY_"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["proxy"]["volumes"]}
    assert (DEPLOY / mounts["/etc/nginx/templates/default.conf.template"]).resolve() == DEPLOY / "proxy" / "default.conf.template"
    assert (DEPLOY / mounts["/docker-entrypoint.d/15-htpasswd.sh"]).resolve() == DEPLOY / "proxy" / "htpasswd.sh"

    (deployment,) = _yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == CODE_PORT
    assert deployment["codeServerArgs"] == ["-m", "trading_dagster.definitions"]


# -- environment variables -------------------------------------------------------------------------------------


def test_every_dagster_service_gets_what_the_instance_and_workspace_read() -> None:
    needed = set(env_references(_yaml(INSTANCE)))
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "TRADING_DAGSTER_COMPUTE_LOG_BUCKET"} <= needed
    services = compose()["services"]
    for name in DAGSTER_SERVICES:
        env = service_env(services[name])
        missing = {v for v in needed if not env.get(v)}
        assert not missing, f"compose service {name} lacks {sorted(missing)}"
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
        assert {k: env[k] for k in BATCHING} == BATCHING
    postgres = service_env(services["postgres"])
    code = service_env(services["code"])
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == (
        code["DAGSTER_PG_USER"], code["DAGSTER_PG_PASSWORD"], code["DAGSTER_PG_DB"],
    )
    assert code["DAGSTER_PG_HOST"] == "postgres"
    # the image puts deploy/dagster.yaml and the workspace in that DAGSTER_HOME, the ECS variant in its own
    copies = [a for w, a in dockerfile_instructions(DOCKERFILE.read_text()) if w == "COPY" and "deploy/" in a]
    assert "deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/" in copies
    assert "deploy/ecs/dagster.yaml deploy/workspace.yaml /opt/dagster/ecs/" in copies

    # ECS: the run task has every variable the ECS instance reads (the password as an SSM secret)
    run = ecs_run_container()
    env = {e["name"]: e["value"] for e in run["environment"]} | {s["name"]: s["valueFrom"] for s in run["secrets"]}
    missing = set(env_references(_yaml(ECS_INSTANCE))) - set(env)
    assert not missing, f"the ECS run task lacks {sorted(missing)}"
    assert env["DAGSTER_HOME"] == "/opt/dagster/ecs" and {k: env[k] for k in BATCHING} == BATCHING

    # Helm: the chart's instance reads the same compute-log variables, set on every pod that opens it
    values = _yaml(HELM_VALUES)
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    instance_logs = _yaml(INSTANCE)["compute_logs"]["config"]
    assert (s3["bucket"], s3["prefix"]) == (instance_logs["bucket"], instance_logs["prefix"])
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for where, entries in (
        ("dagsterWebserver", values["dagsterWebserver"]["env"]),
        ("dagsterDaemon", values["dagsterDaemon"]["env"]),
        ("user deployment", deployment["env"]),
    ):
        missing = set(env_references(s3)) - set(helm_env(entries))
        assert not missing, f"Helm {where} lacks {sorted(missing)}"
    assert {k: helm_env(deployment["env"])[k] for k in BATCHING} == BATCHING
    launcher_vars = dict(v.split("=", 1) for v in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"])
    assert launcher_vars == BATCHING


def _read_by_code(name: str) -> bool:
    source = "\n".join(p.read_text() for p in (REPO / "trading_dagster").rglob("*.py"))
    return f'"{name}"' in source or f"'{name}'" in source


def test_every_trading_variable_passed_is_one_the_code_reads() -> None:
    """A misspelt name would be passed to the container and silently ignored."""
    code = service_env(compose()["services"]["code"])
    ours = [k for k in code if k.startswith(("TRADING_DAGSTER_", "APCA_"))]
    assert len(ours) > 20
    # the variables the deployment's own files read (the instance files, the workspace), not the code
    deployment_only = {v for p in (INSTANCE, ECS_INSTANCE, WORKSPACE) for v in env_references(_yaml(p))}
    assert "TRADING_DAGSTER_ECS_RUN_TASK_DEFINITION" in deployment_only
    unknown = [k for k in ours if k not in deployment_only and not _read_by_code(k)]
    assert not unknown, f"passed to the code server but read nowhere in trading_dagster/: {unknown}"
    helm = helm_env(_yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"][0]["env"])
    ecs = {e["name"] for e in ecs_run_container()["environment"]}
    for where, names in (("helm", set(helm)), ("ecs", ecs)):
        unknown = [k for k in names if k.startswith("TRADING_DAGSTER_") and k not in deployment_only and not _read_by_code(k)]
        assert not unknown, f"{where}: {unknown}"
    assert _read_by_code("TRADING_DAGSTER_ENV") and not _read_by_code("TRADING_DAGSTER_NOT_A_SETTING")


def test_secrets_go_only_to_the_services_that_need_them() -> None:
    services = compose()["services"]
    for name in ("webserver", "daemon", "proxy", "postgres"):
        env = service_env(services[name])
        assert not {k for k in env if k.startswith("APCA_") or "TELEGRAM" in k or "WEBHOOK" in k}, name
    assert "DAGSTER_PG_PASSWORD" not in service_env(services["proxy"])
    assert [k for k in service_env(services["proxy"]) if SECRET_NAME.search(k)] == ["TRADING_DAGSTER_PROXY_HTPASSWD"]


# -- no secret value anywhere ------------------------------------------------------------------------------------

# what a secret looks like when someone pastes one: AWS access keys, Alpaca keys, htpasswd hashes, PEM keys,
# Slack and Telegram tokens
SECRET_SHAPES = re.compile(
    r"AKIA[0-9A-Z]{16}|\b[PA]K[0-9A-Z]{18}\b|\$apr1\$[./0-9A-Za-z]{8}\$|\$2[aby]\$\d\d\$|\$[56]\$[^$\s]+\$[./0-9A-Za-z]{20}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|hooks\.slack\.com/services/T\w+/|\b\d{8,10}:[A-Za-z0-9_-]{35}\b"
)


def deployment_files() -> list[Path]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"]
    assert {COMPOSE, DOCKERFILE, WORKSPACE, ECS_INSTANCE, HELM_VALUES, ENV_EXAMPLE} <= set(files)
    return files


def test_no_secret_value_is_written_in_any_deployment_file() -> None:
    for path in deployment_files():
        found = SECRET_SHAPES.findall(path.read_text())
        assert not found, f"{path.relative_to(REPO)} holds what looks like a secret: {found}"
    # the scanner sees each shape (it would not pass vacuously)
    for pasted in ("AKIAABCDEFGHIJKLMNOP", "PKABCDEFGHIJ12345678", "trader:$apr1$abcdefgh$paCto.rW8wn6thJ8b0QQY.",
                   "u:$2y$05$abcdefghijklmnopqrstuv", "-----BEGIN RSA PRIVATE KEY-----"):
        assert SECRET_SHAPES.search(pasted), pasted


def test_secret_variables_are_never_given_a_value() -> None:
    """In the compose a secret is an interpolation of deploy/.env or passed through by name, never a literal;
    in ECS it is an SSM reference; in Helm a Kubernetes Secret; in the Dockerfile, absent; in .env.example,
    empty."""
    raw = yaml.safe_load(COMPOSE.read_text())  # not interpolated: what is written in the file
    for name, service in raw["services"].items():
        for key, value in service_env(service).items():
            if SECRET_NAME.search(key):
                assert value is None or re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", value), f"{name}: {key}={value!r}"
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    for word, args in instructions:
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAME.search(args), f"Dockerfile {word} {args}"
    run = ecs_run_container()
    assert not [e["name"] for e in run["environment"] if SECRET_NAME.search(e["name"])]
    assert all(s["valueFrom"].startswith("arn:aws:ssm:") for s in run["secrets"])
    assert _yaml(ECS_INSTANCE)["run_launcher"]["config"]["secrets_tag"] is None
    values = _yaml(HELM_VALUES)
    assert values["postgresql"]["postgresqlPassword"] == "" and values["generatePostgresqlPasswordSecret"] is False
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for entries in (deployment["env"], values["dagsterWebserver"]["env"], values["dagsterDaemon"]["env"]):
        assert not [k for k in helm_env(entries) if SECRET_NAME.search(k)]
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith("#") and SECRET_NAME.search(key):
            assert value in ("", "''"), line


def test_the_image_build_leaves_local_secrets_and_data_out() -> None:
    ignored = [s.strip() for s in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if s.strip() and not s.startswith("#")]
    for pattern in ("**/.env", ".venv", ".data", ".dagster_home", ".git"):
        assert pattern in ignored, pattern
    copied = [a.split()[0] for w, a in dockerfile_instructions(DOCKERFILE.read_text()) if w == "COPY" and not a.startswith("--")]
    assert not [c for c in copied if ".env" in c or c in (".", "./")], copied


# -- paper by default -----------------------------------------------------------------------------------------


def test_paper_is_the_default_and_live_needs_the_opt_in() -> None:
    from trading_dagster.settings import SettingsError, trading_environment

    code = service_env(compose()["services"]["code"])
    assert code["TRADING_DAGSTER_ENV"] == "paper" and code["TRADING_DAGSTER_LIVE_TRADING"] is None
    # the code server's environment as compose gives it, with paper keys in deploy/.env
    given = {k: v for k, v in code.items() if v is not None} | {"APCA_API_KEY_ID": "x", "APCA_API_SECRET_KEY": "y"}
    assert trading_environment(given) == ("paper", "alpaca", False)
    with pytest.raises(SettingsError, match="live trading refused"):
        trading_environment(given | {"TRADING_DAGSTER_ENV": "live"})
    assert helm_env(_yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"][0]["env"])["TRADING_DAGSTER_ENV"] == "paper"
    assert {e["name"]: e["value"] for e in ecs_run_container()["environment"]}["TRADING_DAGSTER_ENV"] == "paper"
    for path in deployment_files():
        assert "yes-i-understand" not in path.read_text().replace("TRADING_DAGSTER_LIVE_TRADING=yes-i-understand", ""), path


# -- one writing run, one trader per account ---------------------------------------------------------------------


def test_run_queue_limits_and_pools_agree_everywhere() -> None:
    from trading_dagster.cli import DAGSTER_YAML
    from trading_dagster.resources.writer_lock import WRITER_TAG

    writer = {"key": WRITER_TAG, "limit": 1}
    assert writer in yaml.safe_load(DAGSTER_YAML.format(home="/h"))["run_coordinator"]["config"]["tag_concurrency_limits"]
    for path in (INSTANCE, ECS_INSTANCE):
        concurrency = _yaml(path)["concurrency"]
        assert writer in concurrency["runs"]["tag_concurrency_limits"], path
        assert concurrency["pools"]["default_limit"] == 1, path
    helm = _yaml(HELM_VALUES)["concurrency"]
    instance = _yaml(INSTANCE)["concurrency"]
    assert helm["enabled"] is True
    assert helm["runs"]["tagConcurrencyLimits"] == instance["runs"]["tag_concurrency_limits"]
    assert helm["runs"]["maxConcurrentRuns"] == instance["runs"]["max_concurrent_runs"]
    assert (helm["pools"]["defaultLimit"], helm["pools"]["granularity"]) == (
        instance["pools"]["default_limit"], instance["pools"]["granularity"],
    )
    coordinator = _yaml(HELM_VALUES)["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert not coordinator["config"]["queuedRunCoordinator"]  # the chart refuses limits in both places


def test_the_ecs_instance_is_the_production_instance_but_its_launcher() -> None:
    production, ecs = _yaml(INSTANCE), _yaml(ECS_INSTANCE)
    assert "run_launcher" not in production  # the default: runs beside the code server
    ecs_rest = {k: v for k, v in ecs.items() if k != "run_launcher"}
    differ = sorted(k for k in set(ecs_rest) | set(production) if ecs_rest.get(k) != production.get(k))
    assert not differ, (
        f"deploy/ecs/dagster.yaml differs from deploy/dagster.yaml in {differ}: copy deploy/dagster.yaml's "
        "sections below the ECS file's run_launcher block"
    )


# -- the ECS dagster.yaml against Dagster's schemas ------------------------------------------------------------


def validate_instance_file(path: Path) -> dict:
    """`path` validated the way DagsterInstance loads it, without building the instance (which would connect
    to PostgreSQL and ECS): the instance schema (`dagster_instance_config`, what `DagsterInstance.from_config`
    calls), then each configurable class's own schema (`config_type()`, what `ConfigurableClassData.rehydrate`
    checks before constructing the class). Dagster offers no public call for this (no CLI command validates a
    dagster.yaml without loading the instance), so this uses those two internals: an upgrade that moves them
    fails here by name. Raises DagsterInvalidConfigError on any error."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import ConfigurableClassData  # maps the documented `dagster.core...` module names

    config, _ = dagster_instance_config(str(path.parent), path.name)
    for section, value in config.items():
        if isinstance(value, dict) and {"module", "class"} <= set(value):
            data = ConfigurableClassData(value["module"], value["class"], yaml.safe_dump(value.get("config") or {}))
            klass = getattr(importlib.import_module(data.module_name), data.class_name)
            result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
            if not result.success:
                raise DagsterInvalidConfigError(f"{path.name}: {section} ({value['class']})", result.errors, value)
    return config


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Placeholders for the variables the files reference (StringSource values are resolved when validated)."""
    for name in set(env_references(_yaml(ECS_INSTANCE))) | set(env_references(_yaml(INSTANCE))):
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"placeholder-{name.lower()}")


def test_the_ecs_dagster_yaml_validates_against_dagsters_schemas(instance_env: None) -> None:
    config = validate_instance_file(ECS_INSTANCE)
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    from dagster_aws.ecs import EcsRunLauncher

    assert EcsRunLauncher.__name__ == "EcsRunLauncher"
    validate_instance_file(INSTANCE)  # and the compose's instance, by the same rules


@pytest.mark.parametrize(
    "path, breaks",
    [
        (["run_launcher", "config", "container_nam"], "run"),  # a misspelt launcher field
        (["run_launcher", "config", "use_current_ecs_task_config"], "yes please"),  # a wrong type
        (["run_launcher", "config", "secrets"], [{"name": "X"}]),  # a secret without valueFrom
        (["concurrency", "runs", "max_concurent_runs"], 1),  # a misspelt instance field
    ],
    ids=["unknown-launcher-field", "wrong-type", "incomplete-secret", "unknown-instance-field"],
)
def test_the_validation_refuses_a_broken_ecs_dagster_yaml(
    instance_env: None, tmp_path: Path, path: list[str], breaks: Any
) -> None:
    from dagster._core.errors import DagsterInvalidConfigError

    broken = copy.deepcopy(_yaml(ECS_INSTANCE))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = breaks
    target = tmp_path / "dagster.yaml"
    target.write_text(yaml.safe_dump(broken))
    with pytest.raises(DagsterInvalidConfigError):
        validate_instance_file(target)


def test_the_ecs_services_task_runs_the_compose_services_on_the_ecs_instance() -> None:
    """deploy/ecs/services-task-definition.json: the code server, webserver and daemon of the compose in one
    Fargate task (they reach each other on localhost), on the ECS instance file, with the password from SSM."""
    task = json.loads((DEPLOY / "ecs" / "services-task-definition.json").read_text())
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    assert set(containers) == set(DAGSTER_SERVICES)
    services = compose()["services"]
    run_image = ecs_run_container()["image"]
    needed = set(env_references(_yaml(ECS_INSTANCE))) | set(env_references(_yaml(WORKSPACE)))
    for name, container in containers.items():
        assert container["image"] == run_image, name
        expected = [a.replace("/opt/dagster/dagster_home", "/opt/dagster/ecs") for a in services[name]["command"]]
        assert container["command"] == expected, name
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert not [k for k in env if SECRET_NAME.search(k)], name
        given = set(env) | {s["name"] for s in container["secrets"]}
        assert not needed - given, f"{name} lacks {sorted(needed - given)}"
        assert env["DAGSTER_HOME"] == "/opt/dagster/ecs" and env["TRADING_DAGSTER_CODE_SERVER_HOST"] == "localhost"
        assert all(s["valueFrom"].startswith("arn:aws:ssm:") for s in container["secrets"])
    # only the webserver has a port for the load balancer (which authenticates: README "Deploy", ECS)
    assert [n for n, c in containers.items() if c.get("portMappings")] == ["webserver"]
    assert containers["webserver"]["portMappings"][0]["containerPort"] == WEBSERVER_PORT
    code_env = {e["name"]: e["value"] for e in containers["code"]["environment"]}
    run_env = {e["name"]: e["value"] for e in ecs_run_container()["environment"]}
    assert {k: v for k, v in code_env.items() if k.startswith("TRADING_DAGSTER_") and k in run_env} == {
        k: v for k, v in run_env.items() if k.startswith("TRADING_DAGSTER_")
    }, "the run tasks must see the settings the code server loaded the definitions with"
