"""A throwaway PostgreSQL 15 on 127.0.0.1, for the production tests and the benchmarks.

    with throwaway_postgres() as url:          # a fresh cluster, stopped and deleted afterwards
        db_url = create_database(url, "t1")    # one database per test: nothing shared between tests

The server binaries are Debian's `postgresql-15` package. `ensure_postgres_installed()` installs it where it is
missing and we are root with apt-get (`apt-get install -y --no-install-recommends postgresql-15`), once, under a
file lock: two pytest-xdist workers may ask at the same moment, and apt/dpkg refuse a second concurrent install.
Where it cannot (not root, no apt-get, apt-get failed) it raises `PostgresNotInstalled` with a message naming
what is missing; the tests skip with that message.

PostgreSQL refuses to run as root, so as root the cluster is created and run as the `postgres` OS user (which the
package creates); as any other user, as that user. The data directory and the Unix socket live in one temp folder
that is removed afterwards; the server listens on a free 127.0.0.1 port with trust auth (loopback only, throwaway
data).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from trading_dagster_tests.ports import PortTaken, on_free_port, port_taken

PG_VERSION = "15"
# One lock for every process of this machine that may install the package (both xdist workers, a benchmark).
INSTALL_LOCK = Path(tempfile.gettempdir()) / "trading-dagster-postgresql-install.lock"


class PostgresNotInstalled(RuntimeError):
    """The server binaries are missing and could not be installed here; the message says what is missing."""


def _bin_dir(version: str) -> Path:
    return Path(f"/usr/lib/postgresql/{version}/bin")


def _installed(version: str) -> bool:
    wanted = _bin_dir(version)
    return (wanted / "initdb").exists() and (wanted / "pg_ctl").exists()


def pg_bin_dir(version: str = PG_VERSION) -> Path:
    """The directory of `initdb` and `pg_ctl` of PostgreSQL `version`; PostgresNotInstalled when missing."""
    if _installed(version):
        return _bin_dir(version)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    hint = f" (found only: {', '.join(str(Path(f).parent) for f in found)})" if found else ""
    raise PostgresNotInstalled(
        f"PostgreSQL {version} server binaries not found in {_bin_dir(version)}{hint}: "
        f"`apt-get install -y --no-install-recommends postgresql-{version}` as root"
    )


def ensure_postgres_installed(version: str = PG_VERSION) -> Path:
    """pg_bin_dir(version), installing Debian's `postgresql-<version>` first when it is missing and we can
    (root, apt-get): once per machine, under INSTALL_LOCK. PostgresNotInstalled, naming what is missing, where
    we cannot."""
    if _installed(version):
        return _bin_dir(version)
    package = f"postgresql-{version}"
    apt = shutil.which("apt-get")
    if apt is None:
        raise PostgresNotInstalled(f"{_bin_dir(version)}/initdb is missing and there is no apt-get to install {package}")
    if os.geteuid() != 0:
        raise PostgresNotInstalled(
            f"{_bin_dir(version)}/initdb is missing; installing it needs root: "
            f"sudo apt-get install -y --no-install-recommends {package}"
        )
    INSTALL_LOCK.touch(exist_ok=True)
    with open(INSTALL_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker installs meanwhile; we then find it installed
        try:
            if _installed(version):
                return _bin_dir(version)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = [apt, "install", "-y", "--no-install-recommends", package]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:  # a stale package index on a fresh machine: update once and retry
                subprocess.run([apt, "update"], env=env, capture_output=True, text=True)
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0 or not _installed(version):
                raise PostgresNotInstalled(
                    f"apt-get could not install {package} (exit {out.returncode}): {out.stderr.strip()[-300:]}"
                )
            return _bin_dir(version)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
def throwaway_postgres(
    settings: dict[str, str] | None = None, version: str = PG_VERSION, *, install: bool = False
) -> Iterator[str]:
    """Start a fresh cluster, yield its SQLAlchemy URL (psycopg2 driver, database and user `postgres`), then stop
    and delete it.

    `settings` are extra server settings passed as `-c name=value` (e.g. {"synchronous_commit": "off"}); by
    default the server runs with PostgreSQL's defaults (durable commits). `install`: install the package first
    where missing (ensure_postgres_installed); else a missing package raises PostgresNotInstalled.
    """
    bindir = ensure_postgres_installed(version) if install else pg_bin_dir(version)
    tmp = Path(tempfile.mkdtemp(prefix="throwaway-pg-"))
    data, sock, log = tmp / "data", tmp / "sock", tmp / "server.log"
    started = False
    try:
        sock.mkdir()
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for p in (tmp, sock):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        _run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        opts = f"-c listen_addresses=127.0.0.1 -k {sock}"
        opts += "".join(f" -c {k}={v}" for k, v in (settings or {}).items())

        def start(port: int) -> int:
            try:
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                      "-o", f"{opts} -p {port}", "start"])
            except RuntimeError:
                text = log.read_text(errors="replace") if log.exists() else ""
                if port_taken(text):
                    raise PortTaken(f"PostgreSQL: 127.0.0.1:{port} was taken") from None
                raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}; {log}:\n{text[-2000:]}") from None
            return port

        port = on_free_port(start)  # another xdist worker may take a free port before the server binds it
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


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server of `server_url` (a URL from throwaway_postgres) and return its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    con = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        con.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()
    return url.set(database=name).render_as_string(hide_password=False)


if __name__ == "__main__":  # smoke test: start, connect, stop
    t = time.perf_counter()
    with throwaway_postgres(install=True) as url:
        print(f"up in {time.perf_counter() - t:.1f} s: {url}")
        import sqlalchemy as sa

        with sa.create_engine(create_database(url, "smoke")).connect() as c:
            print(c.execute(sa.text("select version(), current_database()")).one())
    print("stopped and removed")
