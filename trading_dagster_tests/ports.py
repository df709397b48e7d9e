"""Loopback ports for the servers the tests start as child processes (dagster-webserver, the gRPC code server,
nginx, PostgreSQL).

A child cannot be handed a bound socket, so a test asks the kernel for a free port, closes it, and gives the
number to the server. Between the two another process can take it: an xdist worker starting its own server at
the same moment. The server then fails to bind and exits. `on_free_port` starts the server again on another
port in that case (and only in that case: any other failure is the test's to report).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

ATTEMPTS = 5

# what the servers print when their port is taken: uvicorn (dagster-webserver) and nginx quote errno 98,
# grpc "Failed to bind", PostgreSQL "could not bind"
_IN_USE = ("address already in use", "failed to bind", "could not bind", "errno 98", "(98:")


class PortTaken(RuntimeError):
    """The server could not bind its port: another process took it after `free_port` released it."""


def free_port() -> int:
    """A port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(server_output: str) -> bool:
    """Whether a server's output says it failed because its address was in use."""
    text = server_output.lower()
    return any(marker in text for marker in _IN_USE)


def on_free_port(start: Callable[[int], T], attempts: int = ATTEMPTS) -> T:
    """`start(port)` on a free port; when it raises PortTaken, again on another port, up to `attempts` times."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        try:
            return start(port)
        except PortTaken as exc:
            if attempt == attempts:
                raise PortTaken(f"{exc} (tried {attempts} ports, the last {port})") from None
    raise AssertionError("unreachable")
