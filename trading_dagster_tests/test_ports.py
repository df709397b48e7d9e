"""The tests' servers start again on another port when theirs was taken between `free_port` and their bind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from trading_dagster_tests import ports


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another process (this one) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _http_server(port: int, started: list[subprocess.Popen]) -> str:
    """Python's http.server on `port`: a real server that exits with errno 98 when the port is taken."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    started.append(proc)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read()
            if ports.port_taken(err):
                raise ports.PortTaken(f"http.server: {port} was taken")
            raise RuntimeError(f"http.server exited {proc.returncode}: {err[-500:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("http.server did not start")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_server_whose_port_was_taken_starts_on_another(monkeypatch, taken, started) -> None:
    handed = iter([taken])  # the first "free" port is taken by the time the server binds it
    real = ports.free_port
    monkeypatch.setattr(ports, "free_port", lambda: next(handed, None) or real())
    tried: list[int] = []

    def start(port: int) -> str:
        tried.append(port)
        return _http_server(port, started)

    url = ports.on_free_port(start)
    assert tried[0] == taken and len(tried) == 2 and tried[1] != taken
    assert url == f"http://127.0.0.1:{tried[1]}/"
    assert urllib.request.urlopen(url, timeout=5).status == 200
    assert started[0].returncode not in (None, 0)  # the first server did exit on the taken port


def test_other_failures_are_not_retried(started) -> None:
    tried: list[int] = []

    def start(port: int) -> str:
        tried.append(port)
        raise RuntimeError("the code location did not load")

    with pytest.raises(RuntimeError, match="did not load"):
        ports.on_free_port(start)
    assert len(tried) == 1


def test_it_gives_up_after_its_attempts(monkeypatch, taken, started) -> None:
    monkeypatch.setattr(ports, "free_port", lambda: taken)
    with pytest.raises(ports.PortTaken, match=f"tried 3 ports, the last {taken}"):
        ports.on_free_port(lambda port: _http_server(port, started), attempts=3)
    assert len(started) == 3


@pytest.mark.parametrize(
    "output",
    [
        "OSError: [Errno 98] Address already in use",  # http.server, uvicorn
        'nginx: [emerg] bind() to 127.0.0.1:8080 failed (98: Address already in use)',
        "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use",  # PostgreSQL
        "E0000 chttp2_server.cc: Failed to bind to address",  # grpc
    ],
)
def test_the_servers_messages_for_a_taken_port_are_recognised(output: str) -> None:
    assert ports.port_taken(output)


def test_other_messages_are_not_a_taken_port() -> None:
    assert not ports.port_taken("ModuleNotFoundError: No module named 'trading_dagster'")
    assert not ports.port_taken("")
