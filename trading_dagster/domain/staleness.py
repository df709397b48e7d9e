"""Which partitions a data revision has made stale, and the runs that refresh exactly them (decision 0004 §5).

A vendor revises a past bar (a preliminary bar replaced by the final one, a corrected print), or a later
import adds symbols to a session that was already cleaned. Everything computed from the old bar is now
stale: the cleaned prices of that session and of the sessions whose history reaches back to it, the
indicators whose lookback holds it, the signals on those, and, because the book is path dependent, every
trading and P&L session from it on.

The facts this works from are two kinds of timestamp per (asset, session): when a raw session's content
last *changed* (the raw store's import manifests), and when each downstream asset last *recorded* its
checks' verdicts for the session (the quality gate, which every gated asset writes on every
materialization, with the run id). A partition is stale when something it reads, within its declared
reach, changed after it was recorded, or is itself stale (so staleness reaches the end of the chain before
anything is refreshed). Within one run the steps run upstream first, so an upstream record is always older
than its downstream's; the one exception is the trading chain, where a range run's executions of early
sessions are written after its orders of later sessions: those are the run's own consistent projection, so
the chain compares records of *different* runs only.

Pure Python and polars, no Dagster: the asset layer supplies the dependency table and the records.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

RECORDS_SCHEMA: dict[str, pl.DataType] = {"session": pl.Date(), "recorded_at": pl.Datetime("us"), "run_id": pl.Utf8()}
"""What each asset contributes: the session, when it was last recorded, by which run (one row per session)."""


@dataclass(frozen=True)
class Dep:
    """`asset` reads `upstream` for the sessions [S - back, S] (`back` sessions before S and S itself)."""

    upstream: str
    back: int = 0


@dataclass(frozen=True)
class Cause:
    """Why a partition is stale: `upstream` for `session` changed at `changed_at` (None: it is stale itself)."""

    upstream: str
    session: dt.date
    changed_at: dt.datetime | None

    def describe(self) -> str:
        when = f"changed at {self.changed_at:%Y-%m-%d %H:%M:%S} UTC" if self.changed_at else "is stale itself"
        return f"{self.upstream} for {self.session} {when}"


@dataclass(frozen=True)
class Stale:
    """The stale sessions of one asset (ascending) and the cause of the first."""

    asset: str
    sessions: tuple[dt.date, ...]
    cause: Cause

    def ranges(self, calendar: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
        return contiguous_ranges(self.sessions, calendar)


def contiguous_ranges(sessions: Sequence[dt.date], calendar: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """`sessions` as (first, last) runs of consecutive calendar sessions."""
    index = {s: i for i, s in enumerate(calendar)}
    out: list[tuple[dt.date, dt.date]] = []
    for s in sorted(sessions):
        if out and index[s] == index[out[-1][1]] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


_PENDING = math.inf  # a stale upstream partition counts as changing after everything


def _epoch(t: dt.datetime | None) -> float:
    if t is None:
        return -math.inf
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


class _Series:
    """One asset's per-calendar-session values: last change (epoch seconds, -inf where absent), run ids."""

    def __init__(self, n: int) -> None:
        self.changed = [-math.inf] * n
        self.run: list[str | None] = [None] * n
        self.present = [False] * n


def _series(frame: pl.DataFrame, index: Mapping[dt.date, int], column: str) -> _Series:
    out = _Series(len(index))
    for session, at, run in frame.select("session", column, "run_id").iter_rows():
        i = index.get(session)
        if i is None:
            continue
        t = _epoch(at)
        if t >= out.changed[i]:
            out.changed[i], out.run[i] = t, run
        out.present[i] = True
    return out


def _window_max(values: Sequence[float], back: int) -> list[tuple[float, int]]:
    """For each i, (max of values[i - back .. i], its index); ties keep the latest index."""
    out: list[tuple[float, int]] = []
    from collections import deque

    window: deque[int] = deque()
    for i, v in enumerate(values):
        while window and values[window[-1]] <= v:
            window.pop()
        window.append(i)
        if window[0] < i - back:
            window.popleft()
        out.append((values[window[0]], window[0]))
    return out


def stale_partitions(
    raw_asset: str,
    raw_changes: pl.DataFrame,
    records: Mapping[str, pl.DataFrame],
    graph: Sequence[tuple[str, Sequence[Dep]]],
    path_dependent: Sequence[str],
    calendar: Sequence[dt.date],
) -> dict[str, Stale]:
    """The stale partitions of every asset of `graph` (only assets with some; see the module docstring).

    raw_changes: `session, changed_at, run_id` (when the raw session's content last changed; `run_id` may be
    null). records: {asset: RECORDS_SCHEMA frame}. graph: (asset, its deps) in topological order, deps on
    `raw_asset` or earlier assets; the `path_dependent` assets (the trading chain, in graph order, the first
    of which plans from the book the others write) are stale from the first session any of them is stale on,
    and additionally when the book before a session was rewritten by another run after the session was
    recorded: their deps on each other are the book's and are handled by that rule, not listed.
    """
    index = {s: i for i, s in enumerate(calendar)}
    n = len(calendar)
    changes = _series(raw_changes.rename({"changed_at": "t"}), index, "t")
    pending: dict[str, list[float]] = {raw_asset: changes.changed}
    found: dict[str, Stale] = {}
    recorded: dict[str, _Series] = {}
    first_chain: tuple[int, Cause] | None = None

    for asset, deps in graph:
        rec = _series(records.get(asset, pl.DataFrame(schema=RECORDS_SCHEMA)), index, "recorded_at")
        recorded[asset] = rec
        stale_at: list[int] = []
        first_cause: Cause | None = None
        windows = [(dep, _window_max(pending[dep.upstream], dep.back)) for dep in deps]
        for i in range(n):
            if not rec.present[i]:
                continue
            for dep, maxima in windows:
                value, j = maxima[i]
                if value > rec.changed[i]:
                    stale_at.append(i)
                    if first_cause is None:
                        at = None if value == _PENDING else dt.datetime.fromtimestamp(value, dt.UTC)
                        first_cause = Cause(dep.upstream, calendar[j], at)
                    break
        if asset in path_dependent:  # the chain's staleness is settled as a whole below
            pending[asset] = rec.changed
            if stale_at and (first_chain is None or stale_at[0] < first_chain[0]):
                assert first_cause is not None
                first_chain = (stale_at[0], first_cause)
            continue
        values = list(rec.changed)
        for i in stale_at:
            values[i] = _PENDING
        pending[asset] = values
        if stale_at:
            assert first_cause is not None
            found[asset] = Stale(asset, tuple(calendar[i] for i in stale_at), first_cause)

    if path_dependent:
        rewritten = _book_rewritten(path_dependent, recorded, calendar)
        if rewritten is not None and (first_chain is None or rewritten[0] < first_chain[0]):
            first_chain = rewritten
        if first_chain is not None:
            start, cause = first_chain
            for asset in path_dependent:
                rec = recorded[asset]
                sessions = tuple(calendar[i] for i in range(start, n) if rec.present[i])
                if sessions:
                    found[asset] = Stale(asset, sessions, cause)
    return found


def _book_rewritten(
    chain: Sequence[str], recorded: Mapping[str, _Series], calendar: Sequence[dt.date]
) -> tuple[int, Cause] | None:
    """The first session whose book (the broker's events of the sessions before it: the chain's writer,
    `chain[1]`, the executions) was rewritten by another run after one of the chain's assets recorded the
    session (a past range re-run after later sessions were done)."""
    book = recorded[chain[1]] if len(chain) > 1 else recorded[chain[0]]
    latest_by_run: dict[str | None, tuple[float, int]] = {}
    for i in range(len(calendar)):
        for asset in chain:
            rec = recorded[asset]
            if not rec.present[i]:
                continue
            for run, (t, j) in latest_by_run.items():
                if run != rec.run[i] and t > rec.changed[i]:
                    at = dt.datetime.fromtimestamp(t, dt.UTC)
                    return i, Cause(chain[1] if len(chain) > 1 else chain[0], calendar[j], at)
        if book.present[i]:
            run, t = book.run[i], book.changed[i]
            if run not in latest_by_run or t > latest_by_run[run][0]:
                latest_by_run[run] = (t, i)
    return None
