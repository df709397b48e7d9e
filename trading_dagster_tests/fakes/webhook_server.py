"""A webhook receiver on 127.0.0.1 (http.server in a thread), for the alert sinks' tests.

It answers each POST with the next status of `statuses` (then 200), optionally after `delay` seconds, and
records what arrived. The URL it hands out has a distinctive secret path, like a Slack webhook's
`/services/T.../B.../<token>`, so tests can assert the secret never leaks. `echo_path` makes error
responses repeat the request path in their body, as some servers do.
"""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SECRET_TOKEN = "xoxb-s3cr3t-W3bh00k-T0k3n-9f2c"
SECRET_PATH = f"/services/T0TEST/B0TEST/{SECRET_TOKEN}"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    echo_path: bool = False
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self._lock:
            return self.statuses.pop(0) if self.statuses else 200


def _handler(server: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            server.received.append(Received(self.path, dict(self.headers), body))
            if server.delay:
                time.sleep(server.delay)
            status = server.next_status()
            payload = (
                b"ok" if status < 400 else f"error at {self.path}".encode() if server.echo_path else b"no"
            )
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet: and the request line holds the secret path

    return Handler


@contextlib.contextmanager
def serve_webhook() -> Iterator[WebhookServer]:
    """A running receiver on a free port of 127.0.0.1 (the OS picks it when binding), stopped on exit.
    Tests should clear the proxy variables first (`no_proxy_env`) so requests go straight to it."""
    state = WebhookServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}{SECRET_PATH}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
