"""The quality gate: which (asset, session) partitions failed a blocking check, kept across runs.

Dagster stops the rest of a run when a blocking check fails, but the checked asset is already written
(dagster-notes: "a failing blocking check still leaves the checked table written"), and a LATER run, such
as tomorrow's daily run whose indicators look back 651 sessions, would read that partition as if nothing
had happened. So every gated asset records its checks' verdict per session here, and every read of a
gated asset's partitions goes through `require`, which refuses (with the asset, sessions, checks and the run
that failed them) when any of them failed its latest evaluation. Re-materializing a partition replaces
its verdicts, so fixing the data and re-running is how a partition is released. A gated asset marks its
sessions pending before it writes (`mark_pending`), so a run that dies between writing and recording its
checks leaves them refused, not unjudged.

A check's verdict is attributed to the sessions of its offending rows (`CheckOutcome.failed_sessions`);
a failed check that cannot name sessions fails every session of the window it checked.

The table lives in its own small SQLite file (not the warehouse), in WAL mode: a verdict is a few rows
written and read by key, which SQLite does in well under a millisecond, while opening a DuckDB file and
checkpointing it on close cost ~20-40 ms per call, ~17 calls in a daily run. Several processes (a
multiprocess executor, the UI) may read and write it at once. Plain Python, no Dagster.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

_SCHEMA = """
CREATE TABLE IF NOT EXISTS check_verdicts (
    asset TEXT NOT NULL, session TEXT NOT NULL, check_name TEXT NOT NULL, passed INTEGER NOT NULL,
    run_id TEXT NOT NULL, description TEXT, recorded_at TEXT NOT NULL,
    PRIMARY KEY (asset, session, check_name)
)
"""
_CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_changes (
    session TEXT PRIMARY KEY, changed_at TEXT NOT NULL, run_id TEXT
)
"""
_REPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reported (key TEXT PRIMARY KEY, run_id TEXT NOT NULL, reported_at TEXT NOT NULL)
"""
_FAILURES_SCHEMA = {"session": pl.Date, "check_name": pl.String, "run_id": pl.String, "description": pl.String}
_LISTED = 10
PENDING_CHECK = "checks_not_recorded"
"""The verdict a gated asset records before it writes (`mark_pending`), replaced by its checks' verdicts."""


class QualityGateError(RuntimeError):
    """Input partitions failed a blocking quality check (in this run or an earlier one)."""

    def __init__(self, message: str, failures: pl.DataFrame) -> None:
        super().__init__(message)
        self.failures = failures


class QualityGate:
    """Verdicts per (asset, session, check) in a SQLite file; `record` after checking, `require` before reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        con.execute("PRAGMA synchronous=FULL")  # a recorded failure survives a power loss: it is what blocks
        con.execute(_SCHEMA)
        con.execute(_CHANGES_SCHEMA)
        return con

    def record(
        self,
        asset: str,
        sessions: Sequence[dt.date],
        verdicts: Mapping[str, tuple[bool, Iterable[dt.date], str]],
        run_id: str,
    ) -> None:
        """Replace the window's verdicts of `asset`: {check: (passed, failed sessions, description)}.

        A failed check with no failed sessions named fails every session of the window.
        """
        if not sessions:
            return
        window = set(sessions)
        rows = []
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        for check, (passed, failed, description) in verdicts.items():
            bad = set() if passed else (set(failed) & window or window)
            rows += [
                (asset, s.isoformat(), check, s not in bad, run_id, description if s in bad else None, now)
                for s in sessions
            ]
        con = self._connect()
        try:
            with con:  # one transaction
                con.execute(
                    "DELETE FROM check_verdicts WHERE asset = ? AND session BETWEEN ? AND ?",
                    (asset, min(sessions).isoformat(), max(sessions).isoformat()),
                )
                con.executemany("INSERT INTO check_verdicts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        finally:
            con.close()

    def mark_pending(self, asset: str, sessions: Sequence[dt.date], run_id: str) -> None:
        """Before `asset` writes `sessions`: they count as failed (PENDING_CHECK) until `record` replaces the
        window's verdicts with its checks'. A run stopped between the write and the checks (killed, out of
        memory, terminated from the UI) thus leaves sessions that no reader takes, instead of written
        partitions that no check has judged."""
        self.record(
            asset,
            sessions,
            {PENDING_CHECK: (False, sessions, f"run {run_id} wrote these sessions and stopped before its checks recorded a verdict")},
            run_id,
        )

    def failures(self, asset: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Failed verdicts of `asset` for sessions in [start, end]: session, check_name, run_id, description."""
        if not self.path.exists():
            return pl.DataFrame(schema=_FAILURES_SCHEMA)
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT session, check_name, run_id, description FROM check_verdicts "
                "WHERE asset = ? AND session BETWEEN ? AND ? AND NOT passed ORDER BY session, check_name",
                (asset, start.isoformat(), end.isoformat()),
            ).fetchall()
        finally:
            con.close()
        frame = pl.DataFrame(rows, schema={**_FAILURES_SCHEMA, "session": pl.String}, orient="row")
        return frame.with_columns(pl.col("session").str.to_date())

    def passed_sessions(self, asset: str, start: dt.date, end: dt.date) -> list[dt.date]:
        """Sessions of `asset` in [start, end] for which it recorded verdicts and none failed, ascending.

        What a lookback counts as present (decision 0004, section 2): a materialized partition whose checks
        passed, also when it has no rows (a data outage: its check failed at WARN, which is recorded as
        passed). A session that was never materialized (no verdict) or is refused (a failed or pending
        verdict) is absent."""
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            rows = con.execute(
                "SELECT session FROM check_verdicts WHERE asset = ? AND session BETWEEN ? AND ? "
                "GROUP BY session HAVING MIN(passed) = 1 ORDER BY session",
                (asset, start.isoformat(), end.isoformat()),
            ).fetchall()
        finally:
            con.close()
        return [dt.date.fromisoformat(r[0]) for r in rows]

    def claim_reports(self, keys: Iterable[str], run_id: str) -> list[str]:
        """The keys of `keys` never claimed before, now claimed by `run_id` (one transaction): what an alert
        per *new* finding sends (a re-run of the same partitions finds the same outages and alerts nothing).
        `release_reports` gives keys back when their alert could not be delivered."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        con = self._connect()
        try:
            con.execute(_REPORTS_SCHEMA)
            with con:
                new = []
                for key in wanted:
                    cur = con.execute("INSERT OR IGNORE INTO reported VALUES (?, ?, ?)", (key, run_id, now))
                    if cur.rowcount:
                        new.append(key)
        finally:
            con.close()
        return new

    def release_reports(self, keys: Iterable[str]) -> None:
        """Forget claimed keys (their alert was not delivered: the next run claims and sends them again)."""
        wanted = [(k,) for k in dict.fromkeys(keys)]
        if not wanted or not self.path.exists():
            return
        con = self._connect()
        try:
            con.execute(_REPORTS_SCHEMA)
            with con:
                con.executemany("DELETE FROM reported WHERE key = ?", wanted)
        finally:
            con.close()

    def record_changes(self, sessions: Iterable[dt.date], run_id: str | None) -> None:
        """Raw sessions whose content changed (bars added or revised) now, in run `run_id`: what makes the
        partitions computed from them stale (domain/staleness.py). An import that changed nothing records
        nothing."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        rows = [(s.isoformat(), now, run_id) for s in sorted(set(sessions))]
        if not rows:
            return
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO raw_changes VALUES (?, ?, ?)", rows)
        finally:
            con.close()

    def changes(self) -> pl.DataFrame:
        """`session, changed_at (UTC), run_id`: when each raw session's content last changed."""
        schema = {"session": pl.Date(), "changed_at": pl.Datetime("us"), "run_id": pl.String()}
        if not self.path.exists():
            return pl.DataFrame(schema=schema)
        con = self._connect()
        try:
            rows = con.execute("SELECT session, changed_at, run_id FROM raw_changes ORDER BY session").fetchall()
        finally:
            con.close()
        frame = pl.DataFrame(rows, schema={k: pl.String() for k in schema}, orient="row")
        return frame.with_columns(pl.col("session").str.to_date(), pl.col("changed_at").str.to_datetime(time_unit="us"))

    def recorded(self, asset: str) -> pl.DataFrame:
        """When `asset` last recorded verdicts for each session, and by which run: `session, recorded_at
        (UTC), run_id`, one row per session (what staleness compares with the raw store's changes)."""
        schema = {"session": pl.Date(), "recorded_at": pl.Datetime("us"), "run_id": pl.String()}
        if not self.path.exists():
            return pl.DataFrame(schema=schema)
        con = self._connect()
        try:  # SQLite takes the bare run_id from the row holding the MAX
            rows = con.execute(
                "SELECT session, MAX(recorded_at), run_id FROM check_verdicts WHERE asset = ? GROUP BY session",
                (asset,),
            ).fetchall()
        finally:
            con.close()
        frame = pl.DataFrame(rows, schema={k: pl.String() for k in schema}, orient="row")
        return frame.with_columns(
            pl.col("session").str.to_date(), pl.col("recorded_at").str.to_datetime(time_unit="us")
        ).sort("session")

    def require(self, asset: str, start: dt.date, end: dt.date, reader: str = "") -> None:
        """Raise QualityGateError if any session of `asset` in [start, end] failed a blocking check."""
        failed = self.failures(asset, start, end)
        if failed.is_empty():
            return
        sessions = failed["session"].unique().sort()
        listed = ", ".join(str(s) for s in sessions.head(_LISTED)) + (" ..." if len(sessions) > _LISTED else "")
        checks = ", ".join(sorted(set(failed["check_name"])))
        first = failed.row(0, named=True)
        who = f"{reader} cannot read " if reader else "cannot read "
        raise QualityGateError(
            f"quality gate: {who}{asset} for {start}..{end}: {len(sessions)} session(s) failed blocking "
            f"check(s) {checks}: {listed}. First: {first['session']} {first['check_name']} in run "
            f"{first['run_id']}: {first['description']}. Fix the data and re-materialize those partitions "
            "of " + asset + "; nothing downstream runs on them until then.",
            failed,
        )
