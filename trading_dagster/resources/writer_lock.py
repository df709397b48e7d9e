"""One writing run at a time (decision 0004, section 6).

Every run of the pipeline's assets writes shared state: the raw store's session objects, the warehouse's
partitions, the quality gate's verdicts and the broker's ledger. Two such runs at once (two backfills of
the same range, a backfill during the daily run) interleave those writes: one run's pending marks make
the other's reads fail with a `checks_not_recorded` message that reads like a data failure, and the
broker's book is walked by two planners. So a run takes this lock for its whole duration, and a second
run is refused at once with a message that names the run holding it. Runs launched through the daemon
queue instead (the CLI's dagster.yaml sets a tag concurrency limit on `WRITER_TAG`), so the lock is what
they meet only when something bypasses the queue (an in-process run from the CLI or a notebook).

An advisory `fcntl` lock on a file beside the data: the kernel releases it when the holding process dies,
so a killed run never leaves a stale lock behind. Plain Python, no Dagster.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

WRITER_TAG = "trading_dagster/writer"
"""Run tag the pipeline's jobs carry; the run queue admits one run with it at a time."""


class WriterLockHeld(RuntimeError):
    """Another run holds the writer lock: this one must not write."""


class WriterLock:
    """An exclusive, non-blocking, process-wide lock on `path`, with who holds it written inside."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self, **holder: Any) -> None:
        """Take the lock or raise WriterLockHeld naming the holder (`holder`: run id, job, sessions...)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read()
            fh.close()
            raise WriterLockHeld(
                f"another run is writing the pipeline's data ({_describe(text)}); this run was refused before "
                f"writing anything. Wait for that run to finish (or terminate it), then launch this one again. "
                f"Lock file: {self.path}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **holder}))
        fh.flush()
        self._file = fh

    def release(self) -> None:
        if self._file is None:
            return
        fh, self._file = self._file, None
        try:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return "holder unknown"
    return ", ".join(f"{k} {v}" for k, v in holder.items() if v not in (None, ""))
