"""The deployment's authenticating proxy, for real (issue 12, "Who may press the buttons").

nginx runs the very server block the compose uses (deploy/proxy/default.conf.template, rendered only for the
listen port and the upstream host and port, as the nginx image's envsubst does) with the users that
deploy/proxy/htpasswd.sh writes from TRADING_DAGSTER_PROXY_HTPASSWD, in front of a real `dagster-webserver`
that loads deploy/workspace.yaml from a code server started with the compose's own command, everything on
127.0.0.1. The only thing not from the compose is nginx's main file around the server block (the image's
/etc/nginx/nginx.conf: here temp paths and logs in tmp_path).

nginx is Debian's package, installed with apt-get where missing and we are root, once per machine under a file
lock (two pytest-xdist workers may ask at once; dpkg refuses a second install); the tests skip, saying why,
only where it cannot be installed. Docker has no daemon here: the compose itself is checked by
test_consistency.py, not started.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from trading_dagster_tests.deploy.files import REPO, WORKSPACE, _yaml, compose
from trading_dagster_tests.ports import PortTaken, on_free_port, port_taken

pytestmark = pytest.mark.slow

PROXY_DIR = REPO / "deploy" / "proxy"
TEMPLATE = PROXY_DIR / "default.conf.template"
HTPASSWD_SH = PROXY_DIR / "htpasswd.sh"
# the three variables the compose gives the nginx image (NGINX_ENVSUBST_FILTER=^PROXY_), and nothing else
TEMPLATE_VARIABLES = ("PROXY_LISTEN_PORT", "PROXY_UPSTREAM_HOST", "PROXY_UPSTREAM_PORT")
INSTALL_LOCK = Path(tempfile.gettempdir()) / "trading-dagster-nginx-install.lock"
STARTUP_SECONDS = 90
USERS = {"trader": "correct horse battery staple", "ops": "another long passphrase"}
LOCATION = "trading_dagster"  # the compose's --location-name and deploy/workspace.yaml's location_name

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } } }
}"""
LAUNCH_VARIABLES = {
    "params": {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": "pipeline_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2008-01-02"}]},
    }
}
WORKSPACE_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename "
    "... on RepositoryLocation { repositories { name jobs { name } } } } } } } }"
)
RUNS_QUERY = "{ runsOrError { __typename ... on Runs { results { runId } } } }"


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def ensure_nginx() -> str:
    """Debian's nginx: installed with apt-get (root) when missing, under INSTALL_LOCK; else skip, saying why.
    The package's service is not started where /usr/sbin/policy-rc.d forbids it (containers); the tests never
    use the system nginx, only the binary with their own configuration."""
    found = _nginx_binary()
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("nginx is missing and there is no apt-get to install Debian's nginx")
    if os.geteuid() != 0:
        pytest.skip("nginx is missing; installing it needs root: sudo apt-get install -y --no-install-recommends nginx")
    INSTALL_LOCK.touch(exist_ok=True)
    with open(INSTALL_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker installs meanwhile; we then find it installed
        try:
            found = _nginx_binary()
            if found:
                return found
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            # wait for dpkg's own lock rather than fail while another package (chromium, PostgreSQL) installs
            cmd = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", "nginx"]
            t0 = time.monotonic()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:  # a stale package index on a fresh machine: update once and retry
                subprocess.run([apt, "-o", "DPkg::Lock::Timeout=300", "update"], env=env, capture_output=True, text=True)
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            found = _nginx_binary()
            if out.returncode != 0 or not found:
                pytest.skip(f"apt-get could not install nginx (exit {out.returncode}): {out.stderr.strip()[-300:]}")
            print(f"\ninstalled Debian's nginx in {time.monotonic() - t0:.0f} s")
            return found
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def render_template(text: str, values: dict[str, str]) -> str:
    """The nginx image's envsubst of the PROXY_* variables: exactly those, each present, nothing else touched."""
    assert sorted(values) == sorted(TEMPLATE_VARIABLES), sorted(values)
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used == set(TEMPLATE_VARIABLES), f"the template uses {sorted(used)}, the compose sets {TEMPLATE_VARIABLES}"
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def _bin(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name) or name


def _hash(password: str, scheme: str) -> str:
    """A crypt hash made by openssl (`-apr1`: nginx's own MD5; `-6`: SHA-512 crypt through libc)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to hash the test users' passwords")
    out = subprocess.run([openssl, "passwd", scheme, "-stdin"], input=password, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _request(url: str, *, data: dict | None = None, auth: tuple[str, str] | None = None, raw_auth: str | None = None):
    """(status, headers, body) of one request; HTTP errors are answers here, not exceptions."""
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body:
        req.add_header("Content-Type", "application/json")
    if auth:
        raw_auth = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if raw_auth:
        req.add_header("Authorization", raw_auth)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if proc.args[0].endswith("nginx") else signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the server and its children
            proc.wait(timeout=10)


def _wait(what: str, ready, procs: list[tuple[subprocess.Popen, Path]]) -> None:
    """Poll `ready()` until true; fail with the logs if a process exits or STARTUP_SECONDS pass."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        for proc, log in procs:
            if proc.poll() is not None:
                if port_taken(log.read_text()):
                    procs.remove((proc, log))
                    raise PortTaken(f"{proc.args[0]}: its port was taken before {what}")
                pytest.fail(f"{proc.args[0]} exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            logs = "\n".join(log.read_text()[-1500:] for _, log in procs)
            pytest.fail(f"{what}: not ready after {STARTUP_SECONDS} s:\n{logs}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The compose's chain behind the proxy, on 127.0.0.1: the code server started with the compose's `code`
    command, and a real dagster-webserver loading it through deploy/workspace.yaml (only its host and port
    set for this machine). The instance is a temp SQLite one (PostgreSQL is the `postgres` helper's tests)."""
    root = tmp_path_factory.mktemp("proxy_webserver")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    # runs wait in the queue (no daemon here): a launch that gets through creates a QUEUED run and executes nothing
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADING_DAGSTER_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "TRADING_DAGSTER_ENV": "dev",  # the built-in paper broker: no keys on this machine
        "TRADING_DAGSTER_DATA_DIR": str(data),
        "TRADING_DAGSTER_LAST_SESSION": "2008-03-07",
        "PYTHONWARNINGS": "ignore",
    }
    # the compose's code-server command, bound to loopback on a free port instead of 0.0.0.0:4000
    command = list(compose()["services"]["code"]["command"])
    command[command.index("-h") + 1] = "127.0.0.1"
    workspace = _yaml(WORKSPACE)
    grpc = workspace["load_from"][0]["grpc_server"]
    env[grpc["host"]["env"]] = "127.0.0.1"
    code_log, web_log = root / "code_server.log", root / "webserver.log"
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start_code_server(port: int) -> int:
        command[command.index("-p") + 1] = str(port)
        with code_log.open("w") as sink:
            code = subprocess.Popen(
                [_bin(command[0]), *command[1:]], env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append((code, code_log))
        health = [_bin("dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
        _wait("the code server", lambda: subprocess.run(health, env=env, capture_output=True).returncode == 0, procs)
        return port

    def start_webserver(port: int) -> str:
        with web_log.open("w") as sink:
            web = subprocess.Popen(
                [_bin("dagster-webserver"), "-w", str(root / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )
        procs.append((web, web_log))
        url = f"http://127.0.0.1:{port}"

        def loaded() -> bool:
            _, _, body = _request(f"{url}/graphql", data={"query": WORKSPACE_QUERY})
            if "PythonError" in body:
                pytest.fail(f"the code location did not load: {body[:2000]}")
            return "RepositoryLocation" in body

        _wait("the webserver", loaded, procs)
        return url

    try:
        grpc["port"] = on_free_port(start_code_server)
        (root / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        url = on_free_port(start_webserver)
        yield url
    finally:
        for proc, _ in reversed(procs):
            _stop(proc)


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The users file as the proxy container gets it: deploy/proxy/htpasswd.sh run on TRADING_DAGSTER_PROXY_HTPASSWD
    (one apr1 user and one SHA-512 user, space separated as in deploy/.env)."""
    conf = tmp_path_factory.mktemp("proxy_conf")
    target = conf / "htpasswd"
    line = f"trader:{_hash(USERS['trader'], '-apr1')} ops:{_hash(USERS['ops'], '-6')}"
    env = {"PATH": os.environ["PATH"], "TRADING_DAGSTER_PROXY_HTPASSWD": line, "TRADING_DAGSTER_PROXY_HTPASSWD_FILE": str(target)}
    out = subprocess.run(["sh", str(HTPASSWD_SH)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert target.read_text().splitlines() == line.split(" ")
    return target


@pytest.fixture(scope="module")
def proxy(webserver: str, htpasswd: Path) -> Iterator[str]:
    """nginx on 127.0.0.1 with deploy/proxy/default.conf.template in front of `webserver`."""
    nginx = ensure_nginx()
    conf = htpasswd.parent
    run = conf / "run"
    run.mkdir()
    upstream = webserver.removeprefix("http://")
    host, upstream_port = upstream.rsplit(":", 1)
    # the image's main file, reduced: the server block below inside `http`, temp files and logs in tmp_path
    temp = "\n".join(f"  {kind}_temp_path {run / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (conf / "nginx.conf").write_text(
        f"events {{}}\nhttp {{\n{temp}\n  access_log {run / 'access.log'};\n  include {conf / 'default.conf'};\n}}\n"
    )
    directives = f"daemon off; pid {run / 'nginx.pid'}; worker_processes 1;"
    if os.geteuid() == 0:
        directives += " user root;"  # the workers read the users file in tmp_path (mode 0700)
    cmd = [nginx, "-p", str(run), "-c", str(conf / "nginx.conf"), "-e", str(run / "error.log"), "-g", directives]
    procs: list[subprocess.Popen] = []

    def start(port: int) -> str:
        server = render_template(
            TEMPLATE.read_text(),
            {"PROXY_LISTEN_PORT": f"127.0.0.1:{port}", "PROXY_UPSTREAM_HOST": host, "PROXY_UPSTREAM_PORT": upstream_port},
        )
        (conf / "default.conf").write_text(server)
        test = subprocess.run([*cmd[:-2], "-t", "-g", directives], capture_output=True, text=True)
        assert test.returncode == 0, f"nginx -t refused the compose's server block:\n{test.stderr}"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            answered = False
            try:
                _request(url + "/")
                answered = True
            except OSError:
                pass
            if proc.poll() is not None:  # after the request too: an answer may come from whoever took the port
                stderr = proc.stderr.read().decode()
                if port_taken(stderr):
                    raise PortTaken(f"nginx: {url} was taken")
                pytest.fail(f"nginx exited {proc.returncode}: {stderr[-2000:]}")
            if answered:
                return url
            if time.monotonic() > deadline:
                pytest.fail(f"nginx not listening on {url} after 20 s")
            time.sleep(0.2)

    try:
        url = on_free_port(start)
        yield url
    finally:
        for proc in procs:
            _stop(proc)


def _assert_refused(status: int, headers: dict, body: str) -> None:
    assert status == 401, (status, body[:300])
    assert headers.get("WWW-Authenticate") == 'Basic realm="trading-dagster"', headers
    assert "dagster" not in body.lower().replace("trading-dagster", ""), body[:300]  # nginx's page, not the UI


def test_unauthenticated_requests_are_refused(proxy: str) -> None:
    _assert_refused(*_request(proxy + "/"))
    _assert_refused(*_request(proxy + "/runs"))
    _assert_refused(*_request(proxy + "/graphql", data={"query": WORKSPACE_QUERY}))


def _runs(webserver: str) -> list[str]:
    status, _, body = _request(webserver + "/graphql", data={"query": RUNS_QUERY})
    assert status == 200, body[:500]
    return [r["runId"] for r in json.loads(body)["data"]["runsOrError"]["results"]]


def test_an_unauthenticated_launch_is_refused_and_launches_nothing(proxy: str, webserver: str) -> None:
    launch = {"query": LAUNCH_MUTATION, "variables": LAUNCH_VARIABLES}
    _assert_refused(*_request(proxy + "/graphql", data=launch))
    _assert_refused(*_request(proxy + "/graphql", data=launch, auth=("trader", "wrong password")))
    assert _runs(webserver) == [], "a refused launch reached the webserver"
    # the same request with a user's credentials is a real launch (queued: no daemon in this test)
    status, _, body = _request(proxy + "/graphql", data=launch, auth=("trader", USERS["trader"]))
    assert status == 200, body[:500]
    launched = json.loads(body)["data"]["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert _runs(webserver) == [launched["run"]["runId"]]


@pytest.mark.parametrize(
    "auth",
    [
        ("trader", "wrong password"),
        ("trader", USERS["ops"]),  # another user's password
        ("nobody", USERS["trader"]),  # a user not in the file
        ("trader", ""),
        ("", ""),
    ],
    ids=["wrong-password", "other-users-password", "unknown-user", "empty-password", "empty-user"],
)
def test_wrong_credentials_are_refused(proxy: str, auth: tuple[str, str]) -> None:
    _assert_refused(*_request(proxy + "/graphql", data={"query": WORKSPACE_QUERY}, auth=auth))
    _assert_refused(*_request(proxy + "/", auth=auth))


def test_malformed_authorization_is_refused(proxy: str) -> None:
    for header in ("Basic", "Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"trader").decode()):
        status, _, _ = _request(proxy + "/", raw_auth=header)
        assert status in (400, 401), (header, status)


@pytest.mark.parametrize("user", sorted(USERS))
def test_good_credentials_reach_the_webserver(proxy: str, user: str) -> None:
    status, _, body = _request(proxy + "/graphql", data={"query": WORKSPACE_QUERY}, auth=(user, USERS[user]))
    assert status == 200, (status, body[:500])
    entries = json.loads(body)["data"]["workspaceOrError"]["locationEntries"]
    assert [e["name"] for e in entries] == [LOCATION]
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    jobs = {j["name"] for repo in location["repositories"] for j in repo["jobs"]}
    assert "pipeline_job" in jobs, sorted(jobs)
    # the UI's page itself comes through too
    status, _, page = _request(proxy + "/", auth=(user, USERS[user]))
    assert status == 200 and "<html" in page.lower()


def _websocket_handshake(url: str, auth: tuple[str, str] | None) -> str:
    """The status line of a websocket upgrade of /graphql (the UI's live run logs and statuses), via `url`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [
        "GET /graphql HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Protocol: graphql-ws",
    ]
    if auth:
        lines.append("Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_the_uis_websocket_goes_through_for_users_only(proxy: str) -> None:
    assert _websocket_handshake(proxy, None).startswith("HTTP/1.1 401")
    assert _websocket_handshake(proxy, ("trader", "wrong password")).startswith("HTTP/1.1 401")
    assert _websocket_handshake(proxy, ("trader", USERS["trader"])).startswith("HTTP/1.1 101")


@pytest.mark.parametrize(
    "value",
    ["", "   ", "trader:{PLAIN}secret", "trader:secret", "trader", "trader:$1$md5crypt$abcdefghijklmnopqrstuv"],
    ids=["empty", "blank", "plain-scheme", "plain-text", "no-hash", "md5-crypt"],
)
def test_htpasswd_sh_refuses_to_start_the_proxy_without_real_users(tmp_path: Path, value: str) -> None:
    target = tmp_path / "htpasswd"
    env = {"PATH": os.environ["PATH"], "TRADING_DAGSTER_PROXY_HTPASSWD": value, "TRADING_DAGSTER_PROXY_HTPASSWD_FILE": str(target)}
    out = subprocess.run(["sh", str(HTPASSWD_SH)], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "TRADING_DAGSTER_PROXY_HTPASSWD" in out.stderr, (out.returncode, out.stderr)
    assert not target.exists() and not (tmp_path / "htpasswd.new").exists()
