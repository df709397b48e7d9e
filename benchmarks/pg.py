"""A throwaway PostgreSQL cluster for benchmarks: `with throwaway_postgres() as url: ...`.

Needs the server binaries of Debian's `postgresql-15` package (`apt-get install postgresql-15`); a benchmark-only
requirement, not the test suite's. PostgreSQL refuses to run as root, so as root the cluster is created and run as
the `postgres` OS user (which the package creates); as any other user, as that user. The data directory and the
Unix socket live in one temp folder that is removed afterwards; the server listens on a free 127.0.0.1 port with
trust auth (loopback only, throwaway data).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_VERSION = "15"


class PostgresNotInstalled(RuntimeError):
    pass


def pg_bin_dir(version: str = PG_VERSION) -> Path:
    wanted = Path(f"/usr/lib/postgresql/{version}/bin")
    if (wanted / "initdb").exists() and (wanted / "pg_ctl").exists():
        return wanted
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    hint = f" (found only: {', '.join(str(Path(f).parent) for f in found)})" if found else ""
    raise PostgresNotInstalled(
        f"PostgreSQL {version} server binaries not found in {wanted}{hint}: "
        f"`apt-get install postgresql-{version}` (benchmark-only requirement, see benchmarks/README.md)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise PostgresNotInstalled("running as root but there is no `postgres` OS user to run the server as") from e
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str]) -> None:
    r = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


@contextlib.contextmanager
def throwaway_postgres(settings: dict[str, str] | None = None, version: str = PG_VERSION) -> Iterator[str]:
    """Start a fresh cluster, yield its SQLAlchemy URL (psycopg2 driver, database and user `postgres`), then stop and
    delete it.

    `settings` are extra server settings passed as `-c name=value` (e.g. {"synchronous_commit": "off"});
    by default the server runs with PostgreSQL's defaults (durable commits).
    """
    bindir = pg_bin_dir(version)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, sock, log = tmp / "data", tmp / "sock", tmp / "server.log"
    started = False
    try:
        sock.mkdir()
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for p in (tmp, sock):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        port = free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}"
        opts += "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"])
        started = True
        # The driver is named: SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg (3), while dagster-postgres
        # installs (and is tested with) psycopg2.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            try:
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
            except RuntimeError as e:
                print(f"warning: {e}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # smoke test: start, connect, stop
    import time

    t = time.perf_counter()
    with throwaway_postgres() as url:
        print(f"up in {time.perf_counter() - t:.1f} s: {url}")
        import sqlalchemy as sa

        with sa.create_engine(url).connect() as c:
            print(c.execute(sa.text("select version()")).scalar())
    print("stopped and removed")
