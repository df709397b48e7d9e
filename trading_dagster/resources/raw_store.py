"""The raw zone: one Parquet object per NYSE session, on S3 or in a local directory, and the landing zone
where vendor files arrive.

Layout (docs/design.md), the same keys in a bucket and under a local root:

    {prefix}raw/prices/date=YYYY-MM-DD/prices.parquet   one object per session: the merged view of it
    {prefix}raw/revisions/date=YYYY-MM-DD/<import_id>.parquet   the bars that import superseded
    {prefix}raw/rejected/<import_id>.parquet            the rows of that delivery that belong to no session
    {prefix}raw/imports/<import_id>.json                what that delivery did (its manifest)
    {prefix}landing/prices/<any/path>/<name>.csv        vendor file drops (CSV or Parquet, any column
    {prefix}landing/prices/<any/path>/<name>.parquet    spelling `normalize_ohlcv` accepts), read only

Hive-style raw keys keep the zone readable by DuckDB/Athena/polars without this code, and ISO dates sort
lexicographically, which lets S3 listing start at the first wanted session.

The landing zone is where exports from data vendors arrive (`raw_landing_sensor` watches it). Only keys
ending in `.csv` or `.parquet` (any case) count; names starting with `.` or `_` (in-progress uploads,
`_SUCCESS` markers) and every other suffix are ignored, so a writer on a local disk should write under a
dot-name and rename when done. Each file has a *version token* that changes whenever its content may
have: `<ETag>-<LastModified epoch seconds>` on S3 (what a listing returns; the same for versioned and
unversioned buckets) and `<mtime_ns>-<size>-<inode>` locally. `read_landing(key, version)` checks that
the bytes it returns are that version, so a run never ingests a file other than the one it was asked
for. Landing files are never modified or deleted here; expire them with a bucket lifecycle rule.

Writes merge (decision 0004, section 1; the rules are `domain/raw_merge.py`): `import_delivery` adds or
revises bars per (symbol, session) and never deletes one it does not hold. A first import into an empty store
lists the sessions once and reads no object. Two writers merging into one session object must not lose
each other's bars: locally a lock file per session (`raw/.locks/`, fcntl, so one host; not across NFS
clients) serializes read-merge-write; on S3 the write is conditional (`If-Match` on the ETag read, or
`If-None-Match: *` for a new object) and a conflict re-reads and merges again. An S3-compatible endpoint
that ignores those headers (older MinIO) gives no such guarantee: there one writer at a time is enforced a
level up (decision 0004, section 6). The revisions of an import are written before its session object and
its manifest last, so a crash can leave a revisions or rejected object of an import with no manifest (its
bars were not, or not all, written), never a superseded bar that is kept nowhere.

These classes are Dagster-free on purpose: the Dagster resources wrap them, and tests exercise them against
a real local S3 endpoint (moto) and a temporary directory with the same contract suite.

`RawStore` implements the whole contract on top of six byte-level primitives (`_put`, `_get`, `_has`,
`_iter_keys`, and for the landing zone `_iter_files` and `_get_versioned`), so a backend only has to move
bytes and translate its errors.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from trading_dagster.domain.bars import RAW_COLUMNS, PriceDataError, empty_raw_frame
from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.raw_merge import (
    REJECTED_SCHEMA,
    REVISION_SCHEMA,
    VALUE_COLUMNS,
    Delivery,
    SessionMerge,
    SessionOutcome,
    build_manifest,
    conform_session_frame,
    make_import_id,
    merge_session,
    new_session_merge,
    new_session_merges,
    prepare_delivery,
    session_delivery,
    stamp_import,
)
from trading_dagster.domain.vendor_files import (
    VendorDelivery,
    delivery_rows,
    read_vendor_file,
    single_file_delivery,
)

RAW_PRICES_DIR = "raw/prices/"
REVISIONS_DIR = "raw/revisions/"
REJECTED_DIR = "raw/rejected/"
IMPORTS_DIR = "raw/imports/"
LOCKS_DIR = "raw/.locks/"
PARQUET_TYPE = "application/vnd.apache.parquet"
MAX_WRITE_CONFLICTS = 8  # S3: re-read and merge again this many times before giving up
LANDING_PRICES_DIR = "landing/prices/"
LANDING_SUFFIXES = (".csv", ".parquet")
_KEY_PATTERN = re.compile(r"date=(\d{4}-\d{2}-\d{2})/prices\.parquet$")
_MAX_LISTED = 20
DEFAULT_WORKERS = 8  # objects are small and fetches are I/O bound; 8 keeps a 10-year backfill read short


class RawStoreError(RuntimeError):
    """The raw store cannot be reached or refused a request (endpoint, credentials, bucket, permissions)."""


class RawObjectMissing(RawStoreError, LookupError):
    """One or more session objects do not exist in the raw store."""

    def __init__(self, message: str, keys: Sequence[str] = (), sessions: Sequence[dt.date] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)
        self.sessions = tuple(sessions)


class WriteConflict(RawStoreError):
    """A conditional write lost: the object changed (or appeared) after it was read. Retried by the merge."""


@dataclass(frozen=True)
class ImportResult:
    """What `RawStore.import_delivery` did: the manifest it wrote and each touched session's outcome."""

    import_id: str
    manifest: dict[str, Any]
    outcomes: dict[dt.date, SessionOutcome]

    @property
    def changed_sessions(self) -> list[dt.date]:
        """Sessions whose object was written with bars added or revised (what makes downstream stale)."""
        return sorted(s for s, o in self.outcomes.items() if o.changed and (o.added or o.revised))


class LandingVersionChanged(RawStoreError):
    """A landing file is no longer the version that was asked for (overwritten or being written)."""

    def __init__(self, message: str, key: str, expected: str | None, actual: str | None) -> None:
        super().__init__(message)
        self.key, self.expected, self.actual = key, expected, actual


@dataclass(frozen=True)
class LandingFile:
    """One vendor file in the landing zone, as a listing sees it."""

    key: str  # the full key, store prefix included (what `read_landing` takes)
    version: str  # opaque; changes whenever the content may have changed (see the module docstring)
    size: int
    modified: dt.datetime  # UTC


def is_landing_name(relative_key: str) -> bool:
    """Whether a key below `landing/prices/` is a vendor file (not a marker, temp file or other suffix)."""
    path = PurePosixPath(relative_key)
    if not relative_key or relative_key.endswith("/") or any(part in ("", ".", "..") for part in path.parts):
        return False
    if any(part.startswith((".", "_")) for part in path.parts):
        return False
    return path.suffix.lower() in LANDING_SUFFIXES


def read_vendor_bytes(data: bytes, name: str) -> VendorDelivery:
    """`read_vendor_file` for bytes (a landing object), as a one-file delivery whose source is `name`.

    The bytes go to a private temporary file named with `name`'s suffix, so CSV and Parquet are told apart
    exactly as for a file on disk; the temporary path is replaced by `name` in any error.
    """
    suffix = PurePosixPath(name).suffix.lower() or ".csv"
    with tempfile.TemporaryDirectory(prefix="landing-") as tmp:
        path = Path(tmp) / f"landing{suffix}"
        path.write_bytes(data)
        try:
            return single_file_delivery(read_vendor_file(path), name)
        except PriceDataError as exc:
            raise PriceDataError(str(exc).replace(str(path), name)) from None


def read_ohlcv_bytes(data: bytes, name: str) -> pl.DataFrame:
    """`read_ohlcv_file` for bytes: the raw columns of `read_vendor_bytes`."""
    return read_vendor_bytes(data, name).rows.select(RAW_COLUMNS)


def normalize_prefix(prefix: str) -> str:
    """'' stays ''; anything else becomes 'a/b/' (no leading slash, one trailing slash).

    A leading slash makes an S3 "folder" with an empty name; a missing trailing slash would glue the prefix
    onto 'raw/'. Both are easy mistakes in an environment variable, so we normalize rather than fail.
    """
    stripped = prefix.strip().strip("/")
    return f"{stripped}/" if stripped else ""


def _to_parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def _from_parquet_bytes(data: bytes, key: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data), columns=list(columns) if columns is not None else None)
    except pl.exceptions.PolarsError as exc:
        raise RawStoreError(
            f"raw object {key!r} is not readable Parquet (or lacks columns {columns}): {exc}"
        ) from exc


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_import_id(now: dt.datetime) -> str:
    return make_import_id(now, uuid.uuid4().hex)


class RawStore(abc.ABC):
    """Session-partitioned raw prices: write, read, list. Subclasses provide the byte-level primitives."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = normalize_prefix(prefix)

    # -- the primitives a backend implements ------------------------------------------------------------

    @abc.abstractmethod
    def _put(self, key: str, data: bytes, content_type: str = PARQUET_TYPE) -> None: ...

    @abc.abstractmethod
    def _get(self, key: str) -> bytes:
        """The object's bytes; raise RawObjectMissing if it does not exist."""

    @abc.abstractmethod
    def _has(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _iter_keys(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[str]:
        """Keys under `prefix` in ascending order, strictly after `start_after` when given."""

    @abc.abstractmethod
    def _iter_files(self, prefix: str) -> Iterator[LandingFile]:
        """Every object under `prefix` with its version token, in any order."""

    @abc.abstractmethod
    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the version token of exactly those bytes; RawObjectMissing if absent."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store lives, for messages (never a secret)."""

    @abc.abstractmethod
    def location(self, key: str) -> str:
        """A key as a person would look it up (`s3://bucket/key` or a path), for messages."""

    # -- the contract -----------------------------------------------------------------------------------

    @property
    def sessions_prefix(self) -> str:
        return f"{self.prefix}{RAW_PRICES_DIR}"

    def key_for(self, session: dt.date) -> str:
        return f"{self.prefix}raw/prices/date={session:%Y-%m-%d}/prices.parquet"

    def revisions_key(self, session: dt.date, import_id: str) -> str:
        return f"{self.prefix}{REVISIONS_DIR}date={session:%Y-%m-%d}/{import_id}.parquet"

    def rejected_key(self, import_id: str) -> str:
        return f"{self.prefix}{REJECTED_DIR}{import_id}.parquet"

    def manifest_key(self, import_id: str) -> str:
        return f"{self.prefix}{IMPORTS_DIR}{import_id}.json"

    # -- writes: every one is a merge --------------------------------------------------------------------

    def _session_lock(self, session: dt.date) -> contextlib.AbstractContextManager[None]:
        """Held while one session is read, merged and written (a no-op where writes are conditional)."""
        return contextlib.nullcontext()

    def _get_for_update(self, key: str, known_absent: bool) -> tuple[bytes | None, str | None]:
        """(bytes, version) of an object about to be merged into, or (None, None) if it does not exist.
        `known_absent`: a listing just said so, so a backend whose write checks existence need not ask."""
        try:
            data, version = self._get_versioned(key)
        except RawObjectMissing:
            return None, None
        return data, version

    def _put_if(self, key: str, data: bytes, version: str | None) -> None:
        """Write `key` only if it is still at `version` (None: only if it does not exist); WriteConflict if
        not. The base class holds `_session_lock` around the read and the write, so a plain put does."""
        self._put(key, data)

    def _put_frame_if(self, key: str, frame: pl.DataFrame, version: str | None) -> None:
        """`_put_if` of `frame` as zstd Parquet (a backend that can write a frame straight to its place overrides
        this)."""
        self._put_if(key, _to_parquet_bytes(frame), version)

    def import_delivery(
        self,
        delivery: Delivery,
        *,
        import_id: str | None = None,
        imported_at: dt.datetime | None = None,
        max_workers: int = DEFAULT_WORKERS,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportResult:
        """Merge a delivery (`raw_merge.prepare_delivery`) into the store: every session with bars or earlier
        rows, and an empty object for each empty session that has none; then its rejected rows and its
        manifest. One listing of the delivery's sessions first, so no object that does not exist is read.
        `progress(done, total)` is called as sessions complete."""
        imported_at = imported_at or _utcnow()
        import_id = import_id or new_import_id(imported_at)
        stamped = stamp_import(delivery.bars, import_id, imported_at)  # one query, not one per session
        bars = _by_date(stamped)
        earlier = _by_date(delivery.earlier)
        targets = sorted(set(bars) | set(earlier) | set(delivery.empty_sessions))
        present = set(self.list_sessions(targets[0], targets[-1])) if targets else set()
        # sessions with no object and no earlier rows (every one of a first import): merged in one query
        new = new_session_merges(
            stamped, {s: part for s, part in bars.items() if s not in present and s not in earlier}
        )

        def merge(session: dt.date) -> SessionOutcome:
            return self._merge_session(
                session,
                bars.get(session),
                earlier.get(session),
                session in present,
                import_id,
                imported_at,
                new.get(session),
            )

        outcomes: dict[dt.date, SessionOutcome] = {}
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            for i, outcome in enumerate(pool.map(merge, targets), 1):
                outcomes[outcome.session] = outcome
                if progress:
                    progress(i, len(targets))
        rejected_key = None
        if delivery.rejected.height:
            rejected_key = self.rejected_key(import_id)
            rejected = delivery.rejected.with_columns(
                pl.lit(import_id).alias("import_id"), pl.lit(imported_at).alias("imported_at")
            ).select([pl.col(c).cast(t) for c, t in REJECTED_SCHEMA.items()])
            self._put(rejected_key, _to_parquet_bytes(rejected))
        manifest = build_manifest(
            delivery,
            list(outcomes.values()),
            import_id=import_id,
            imported_at=imported_at,
            store=self.describe(),
            rejected_key=rejected_key,
            manifest_key=self.manifest_key(import_id),
        )
        self._put(
            self.manifest_key(import_id), json.dumps(manifest, indent=1).encode(), content_type="application/json"
        )
        return ImportResult(import_id, manifest, outcomes)

    def _merge_session(
        self,
        session: dt.date,
        incoming: pl.DataFrame | None,
        earlier: pl.DataFrame | None,
        listed: bool,
        import_id: str,
        imported_at: dt.datetime,
        new: SessionMerge | None = None,
    ) -> SessionOutcome:
        """Read, merge and write one session under its lock (conditionally, retried on a conflict). `new`: the
        merge of `incoming` into nothing (`new_session_merges`), used when the session still has no object."""
        key = self.key_for(session)
        wrote_revisions = False
        with self._session_lock(session):
            for _ in range(MAX_WRITE_CONFLICTS):
                if incoming is None and earlier is None and listed:
                    return SessionOutcome(session, created=False, changed=False)  # empty, has an object: as is
                data, version = self._get_for_update(key, known_absent=not listed)
                existing = _from_parquet_bytes(data, key) if data is not None else None
                if existing is not None and incoming is None and earlier is None:
                    return SessionOutcome(session, created=False, changed=False)
                if existing is None and earlier is None and incoming is not None:
                    # `incoming` is stamped (import_delivery)
                    merged = new if new is not None else new_session_merge(session, incoming)
                else:
                    merged = merge_session(
                        session, existing, incoming, earlier, import_id=import_id, imported_at=imported_at
                    )
                if merged.superseded.height or wrote_revisions:  # a retry rewrites this import's own object
                    self._put(self.revisions_key(session, import_id), _to_parquet_bytes(merged.superseded))
                    wrote_revisions = True
                if not merged.outcome.changed:
                    return merged.outcome
                try:
                    self._put_frame_if(key, merged.merged, version)
                except WriteConflict:
                    listed = True  # it exists now: read it and merge again
                    continue
                return merged.outcome
        raise RawStoreError(
            f"session {session}: {MAX_WRITE_CONFLICTS} conditional writes of {self.location(key)} in a row lost "
            "to another writer; nothing of this import was lost, run it again"
        )

    def write_session(self, session: dt.date, df: pl.DataFrame, *, source: str = "direct write") -> str:
        """Merge one session's rows (the raw columns) into its object, as a one-session delivery with its
        own manifest: bars of other symbols are kept. Returns the object's key."""
        if "date" not in df.columns:
            raise PriceDataError(f"cannot write session {session}: the frame has no 'date' column ({df.columns})")
        now = _utcnow()
        self.import_delivery(session_delivery(df, session, now, source), imported_at=now)
        return self.key_for(session)

    def write_sessions(
        self,
        df: pl.DataFrame,
        calendar: SessionCalendar,
        max_workers: int = DEFAULT_WORKERS,
        *,
        source: str = "direct write",
    ) -> list[str]:
        """Merge a multi-session raw frame as one delivery (rows on no session are rejected and kept, as for
        any import); returns the keys of the sessions that got bars, in order."""
        now = _utcnow()
        delivery = prepare_delivery(delivery_rows(df, source), calendar, now, sources=(source,))
        self.import_delivery(delivery, imported_at=now, max_workers=max_workers)
        return [self.key_for(s) for s in delivery.sessions]  # computed once (the manifest asked first)

    # -- reads -------------------------------------------------------------------------------------------

    def read_session(self, session: dt.date, *, provenance: bool = False) -> pl.DataFrame:
        """The session's bars: the raw columns, or with `provenance` every column (SESSION_SCHEMA)."""
        key = self.key_for(session)
        try:
            data = self._get(key)
        except RawObjectMissing as exc:
            raise RawObjectMissing(
                f"session {session} has no raw object in {self.describe()}: key {key!r} does not exist",
                keys=[key],
                sessions=[session],
            ) from exc
        if provenance:
            return conform_session_frame(_from_parquet_bytes(data, key))
        return _from_parquet_bytes(data, key, RAW_COLUMNS)

    def read_manifest(self, import_id: str) -> dict[str, Any]:
        key = self.manifest_key(import_id)
        return json.loads(self._get(key))

    def list_imports(self) -> list[str]:
        """The import ids with a manifest, oldest first (ids sort by import time)."""
        base = f"{self.prefix}{IMPORTS_DIR}"
        return [k[len(base) : -len(".json")] for k in self._iter_keys(base, None, None) if k.endswith(".json")]

    def read_rejected(self, import_id: str) -> pl.DataFrame:
        """The rejected rows of an import (REJECTED_SCHEMA; none when it rejected nothing)."""
        key = self.rejected_key(import_id)
        try:
            return _from_parquet_bytes(self._get(key), key)
        except RawObjectMissing:
            return pl.DataFrame(schema=REJECTED_SCHEMA)

    def read_revisions(self, session: dt.date) -> pl.DataFrame:
        """Every bar ever superseded in `session` (REVISION_SCHEMA), oldest import first."""
        base = f"{self.prefix}{REVISIONS_DIR}date={session:%Y-%m-%d}/"
        keys = [k for k in self._iter_keys(base, None, None) if k.endswith(".parquet")]
        frames = [_from_parquet_bytes(self._get(k), k) for k in keys]
        return pl.concat(frames) if frames else pl.DataFrame(schema=REVISION_SCHEMA)

    def bar_counts(self, sessions: Sequence[dt.date]) -> dict[dt.date, tuple[int, int] | None]:
        """{session: (rows, rows with some value) of its object, or None when it has none}: one listing,
        then a read of the value columns of the sessions that have an object."""
        if not sessions:
            return {}
        present = set(self.list_sessions(min(sessions), max(sessions)))
        out: dict[dt.date, tuple[int, int] | None] = {s: None for s in sessions}

        def count(session: dt.date) -> tuple[dt.date, tuple[int, int]]:
            key = self.key_for(session)
            frame = _from_parquet_bytes(self._get(key), key, VALUE_COLUMNS)
            null = frame.select(pl.all_horizontal(pl.col(c).is_null() for c in VALUE_COLUMNS).sum()).item()
            return session, (frame.height, frame.height - int(null))

        with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS) as pool:
            out.update(pool.map(count, [s for s in sessions if s in present]))
        return out

    def exists(self, session: dt.date) -> bool:
        return self._has(self.key_for(session))

    def list_sessions(
        self, start: dt.date | None = None, end: dt.date | None = None, page_size: int | None = None
    ) -> list[dt.date]:
        """Sessions that have an object, ascending, within [start, end] when given.

        Keys that do not follow the layout (a stray `_SUCCESS`, a temp file) are ignored. `page_size`
        bounds each listing request (S3 allows at most 1000); tests use it to exercise pagination.
        """
        base = self.sessions_prefix
        start_after = f"{base}date={start:%Y-%m-%d}" if start else None  # sorts just before that day's key
        out: list[dt.date] = []
        for key in self._iter_keys(base, start_after, page_size):
            match = _KEY_PATTERN.fullmatch(key[len(base) :])
            if not match:
                continue
            session = dt.date.fromisoformat(match.group(1))
            if end is not None and session > end:
                break  # keys come in ascending order: nothing later is wanted
            if start is None or session >= start:
                out.append(session)
        return out

    def first_session(self) -> dt.date | None:
        """The earliest session with an object (None for an empty store), from the start of one listing."""
        base = self.sessions_prefix
        for key in self._iter_keys(base, None, 100):
            match = _KEY_PATTERN.fullmatch(key[len(base) :])
            if match:
                return dt.date.fromisoformat(match.group(1))
        return None

    def read_existing(self, sessions: Sequence[dt.date]) -> tuple[list[dt.date], pl.DataFrame | None]:
        """(the sessions of `sessions` that have an object, their rows), or ([], None): for reference history,
        where a session before the data begins is not missing, it never existed."""
        wanted = set(sessions)
        present = [s for s in self.list_sessions(start=min(sessions), end=max(sessions)) if s in wanted] if sessions else []
        return present, (self.read_sessions(present) if present else None)

    def read_sessions(
        self, sessions: Iterable[dt.date], max_workers: int = DEFAULT_WORKERS, *, provenance: bool = False
    ) -> pl.DataFrame:
        """All rows of the given sessions, concatenated in session order: the raw columns (or, with
        `provenance`, SESSION_SCHEMA). Objects written before provenance existed read the same.

        Raises RawObjectMissing naming EVERY missing session (found with one listing, before any
        download), so a backfill reports its whole gap at once instead of one day per retry.
        """
        wanted = sorted(set(sessions))
        if not wanted:
            return empty_raw_frame()
        present = set(self.list_sessions(wanted[0], wanted[-1]))
        missing = [s for s in wanted if s not in present]
        if missing:
            listed = ", ".join(str(s) for s in missing[:_MAX_LISTED])
            more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            raise RawObjectMissing(
                f"{len(missing)} of {len(wanted)} session(s) have no raw object in {self.describe()}: "
                f"{listed}{more} (e.g. key {self.key_for(missing[0])!r})",
                keys=[self.key_for(s) for s in missing],
                sessions=missing,
            )
        if not provenance:
            bulk = self._read_objects([self.key_for(s) for s in wanted], RAW_COLUMNS)
            if bulk is not None:
                return bulk
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            frames = list(pool.map(lambda s: self.read_session(s, provenance=provenance), wanted))
        return _concat_sessions(wanted, frames)

    def _read_objects(self, keys: Sequence[str], columns: Sequence[str]) -> pl.DataFrame | None:
        """`columns` of every object of `keys` concatenated in order, in one read, where a backend can (None:
        it cannot, or they do not all have those columns in one schema; the caller then reads them one by one,
        which names the object at fault)."""
        return None

    # -- the landing zone -------------------------------------------------------------------------------

    @property
    def landing_prefix(self) -> str:
        return f"{self.prefix}{LANDING_PRICES_DIR}"

    def list_landing(self) -> list[LandingFile]:
        """The vendor files in the landing zone (see `is_landing_name`), ascending by key."""
        base = self.landing_prefix
        files = (
            f
            for f in self._iter_files(base)
            if f.key.startswith(base) and is_landing_name(f.key[len(base) :])
        )
        return sorted(files, key=lambda f: f.key)

    def read_landing(self, key: str, version: str | None = None) -> bytes:
        """A landing file's bytes. With `version`, raise LandingVersionChanged unless they are that version.

        Raises ValueError for a key outside the landing zone (a run config cannot point the raw asset at
        a raw object or, locally, at a path outside the root) and RawObjectMissing if it does not exist.
        """
        self._check_landing_key(key)
        try:
            data, actual = self._get_versioned(key)
        except RawObjectMissing as exc:
            raise RawObjectMissing(
                f"landing file {self.location(key)} does not exist (in {self.describe()})", keys=[key]
            ) from exc
        if version is not None and actual != version:
            raise LandingVersionChanged(
                f"landing file {self.location(key)} is at version {actual}, not the requested {version}: "
                "it was overwritten after the run was requested (the new version gets its own run)",
                key=key,
                expected=version,
                actual=actual,
            )
        return data

    def read_landing_bars(self, key: str, version: str | None = None) -> pl.DataFrame:
        """A landing file parsed to the raw schema (PriceDataError naming the file if it cannot be)."""
        return read_ohlcv_bytes(self.read_landing(key, version), f"landing file {self.location(key)}")

    def read_landing_delivery(self, key: str, version: str | None = None) -> VendorDelivery:
        """A landing file read as a one-file delivery: its rows, what orders them, its ignored columns.
        The rows' source is the file's location; a PriceDataError names it."""
        data = self.read_landing(key, version)
        delivery = read_vendor_bytes(data, f"landing file {self.location(key)}")
        rows = delivery.rows.with_columns(pl.lit(self.location(key)).alias("source"))
        return VendorDelivery(rows, ((self.location(key), *delivery.files[0][1:]),))

    def _check_landing_key(self, key: str) -> None:
        base = self.landing_prefix
        if not key.startswith(base) or not is_landing_name(key[len(base) :]):
            raise ValueError(
                f"{key!r} is not a landing file key: expected {base}<name>.csv or {base}<name>.parquet "
                "(no '..', no name starting with '.' or '_')"
            )

    # -- artifacts: opaque files under the store's prefix (models/<name>/<period>/model.pkl, ...) -------------

    def artifact_key(self, key: str) -> str:
        """The full key of an artifact: the store's prefix + `key` (relative, '/'-separated, outside raw/ and
        landing/, no empty, '.' or '..' part); anything else is a ValueError naming the key."""
        parts = key.split("/")
        if (
            not key
            or key.startswith("/")
            or key.endswith("/")
            or any(part in ("", ".", "..") for part in parts)
            or parts[0] in ("raw", "landing")
        ):
            raise ValueError(
                f"{key!r} is not an artifact key: expected a relative path like models/<name>/<period>/model.pkl "
                "(no leading or trailing '/', no empty, '.' or '..' part, not under raw/ or landing/)"
            )
        return f"{self.prefix}{key}"

    def put_artifact(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Write (or overwrite) the artifact `key` whole (a reader never sees half of it); returns where it is
        (`location`)."""
        full = self.artifact_key(key)
        self._put(full, bytes(data), content_type)
        return self.location(full)

    def get_artifact(self, key: str) -> bytes:
        """The artifact's bytes; RawObjectMissing naming the key and the store when it does not exist."""
        full = self.artifact_key(key)
        try:
            return self._get(full)
        except RawObjectMissing as exc:
            raise RawObjectMissing(f"artifact {self.location(full)} does not exist in {self.describe()}", [full]) from exc

    def has_artifact(self, key: str) -> bool:
        return self._has(self.artifact_key(key))

    def artifact_location(self, key: str) -> str:
        """Where an artifact is (or would be), as a person looks it up (`s3://bucket/key` or a path)."""
        return self.location(self.artifact_key(key))


def _by_date(frame: pl.DataFrame) -> dict[dt.date, pl.DataFrame]:
    """{date: its rows, in frame order}. A frame sorted by date (a delivery in (date, symbol) order) is cut into
    zero-copy slices, one per run of a date, instead of gathered into new frames."""
    if not frame.height:
        return {}
    dates = frame["date"]
    if dates.null_count() == 0 and dates.is_sorted():
        runs = dates.rle().struct.unnest()
        out, start = {}, 0
        for length, day in runs.iter_rows():
            out[day] = frame.slice(start, length)
            start += length
        return out
    return {key[0]: part for key, part in frame.partition_by("date", as_dict=True, maintain_order=True).items()}


def _concat_sessions(sessions: Sequence[dt.date], frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    first = frames[0].schema
    for session, frame in zip(sessions, frames, strict=True):
        if frame.schema != first:
            raise RawStoreError(
                f"raw object for {session} has schema {dict(frame.schema)}, "
                f"but {sessions[0]} has {dict(first)}; the raw zone must have one schema"
            )
    return pl.concat(frames, how="vertical")


class LocalRawStore(RawStore):
    """The raw zone in a local directory: the same keys, as paths relative to `root`."""

    def __init__(self, root: str | Path, prefix: str = "") -> None:
        super().__init__(prefix)
        self.root = Path(root)

    def describe(self) -> str:
        return f"local directory {self.root}"

    def location(self, key: str) -> str:
        return str(self._path(key))

    def _path(self, key: str) -> Path:
        return self.root / key

    def _put(self, key: str, data: bytes, content_type: str = PARQUET_TYPE) -> None:
        # Write to a temp file in the same directory, then rename: a reader never sees half an object.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _put_frame_if(self, key: str, frame: pl.DataFrame, version: str | None) -> None:
        """The session lock is held (the local conditional write is a plain one): polars writes the Parquet
        straight into the temporary file, in Rust, instead of through a Python buffer, then it is renamed
        into place (the same bytes as `_to_parquet_bytes`)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise RawObjectMissing(
                f"raw object {key!r} does not exist in {self.describe()}", keys=[key]
            ) from None

    def _has(self, key: str) -> bool:
        return self._path(key).is_file()

    @contextlib.contextmanager
    def _session_lock(self, session: dt.date) -> Iterator[None]:
        """An exclusive fcntl lock on `raw/.locks/date=D.lock` (created once, never deleted: deleting a lock
        file races with a process about to lock it). Other processes on this host wait for it."""
        import fcntl

        path = self.root / f"{self.prefix}{LOCKS_DIR}date={session:%Y-%m-%d}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _read_objects(self, keys: Sequence[str], columns: Sequence[str]) -> pl.DataFrame | None:
        """One multi-file Parquet read (polars reads the files in parallel, in Rust): ~3x faster on ten
        years of sessions than a thread per object. Any error (a file that vanished, a column missing or of
        another type) returns None, and the object-by-object read reports it."""
        try:
            return pl.read_parquet(
                [str(self._path(k)) for k in keys], columns=list(columns), hive_partitioning=False
            )
        except (pl.exceptions.PolarsError, OSError):
            return None

    def _get_for_update(self, key: str, known_absent: bool) -> tuple[bytes | None, str | None]:
        path = self._path(key)
        if known_absent and not path.exists():  # a stat under the lock: another writer may have created it
            return None, None
        try:
            return path.read_bytes(), None
        except FileNotFoundError:
            return None, None

    def _iter_keys(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return iter(())
        return self._walk(base, base.relative_to(self.root).as_posix() + "/", start_after)

    def _walk(self, directory: Path, key_prefix: str, start_after: str | None) -> Iterator[str]:
        """Keys under `directory` after `start_after`, lazily, each folder's entries in name order (for
        the layout's keys, `date=YYYY-MM-DD/prices.parquet`, the order S3 lists them in). Folders whose
        keys all sort at or before `start_after` are skipped unread, so a daily run's listing touches a
        few folders, not ten years of them (a full walk was ~0.2 s per listing on 2,485 sessions)."""
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            key = key_prefix + entry.name
            if entry.is_dir():
                inside = key + "/"
                if start_after is None or inside > start_after or start_after.startswith(inside):
                    yield from self._walk(Path(entry.path), inside, start_after)
            elif entry.is_file() and (start_after is None or key > start_after):
                yield key

    @staticmethod
    def _version(st: os.stat_result) -> str:
        # mtime alone is not enough: file systems stamp times from a coarse clock (a few ms), so a quick
        # rewrite can keep it; size and inode (a new one on every atomic rename) catch those.
        return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"

    def _iter_files(self, prefix: str) -> Iterator[LandingFile]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for path in base.rglob("*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # removed while we walked
                continue
            if path.is_file():
                yield LandingFile(
                    key=path.relative_to(self.root).as_posix(),
                    version=self._version(st),
                    size=st.st_size,
                    modified=dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=dt.UTC),
                )

    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            before = path.stat()
            data = path.read_bytes()
            after = path.stat()
        except FileNotFoundError:
            raise RawObjectMissing(f"{path} does not exist", keys=[key]) from None
        if self._version(before) != self._version(after):
            raise LandingVersionChanged(
                f"landing file {path} changed while it was being read (still being written?)",
                key=key,
                expected=self._version(before),
                actual=self._version(after),
            )
        return data, self._version(after)


# Error codes that mean "your credentials or permissions are wrong", not "the object is missing".
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# An S3 client that cannot hang: botocore's defaults are 60 s for connect and read, and dagster-aws's
# S3Resource adds 5 retries, so an endpoint that drops packets held a request for minutes. Worst case with
# these: S3_MAX_ATTEMPTS x (connect or read timeout) plus botocore's backoff (standard mode, at most 1 + 2 s).
S3_CONNECT_TIMEOUT_SECONDS = 5.0
S3_READ_TIMEOUT_SECONDS = 30.0  # between two reads of the socket, not for a whole object
S3_MAX_ATTEMPTS = 3  # per request, the first try included


def s3_client(
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = S3_CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = S3_READ_TIMEOUT_SECONDS,
    max_attempts: int = S3_MAX_ATTEMPTS,
) -> Any:
    """A boto3 S3 client with bounded connect and read timeouts and a bounded number of tries.

    Credentials come from boto3's own chain (environment, profile, role), never from arguments, so they
    cannot leak through our settings, logs or metadata. Retries use botocore's standard mode (throttling,
    5xx, connection errors and timeouts, with jittered exponential backoff); `max_attempts` counts every
    try (botocore's `total_max_attempts`).
    """
    import boto3
    from botocore.config import Config

    if not (connect_timeout > 0 and read_timeout > 0):
        raise ValueError(f"S3 timeouts must be > 0 s, got connect {connect_timeout}, read {read_timeout}")
    if max_attempts < 1:
        raise ValueError(f"S3 max_attempts must be >= 1 (the first try included), got {max_attempts}")
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return boto3.session.Session().client(
        "s3", region_name=region_name, endpoint_url=endpoint_url, config=config
    )


class S3RawStore(RawStore):
    """The raw zone in an S3 bucket (or any S3-compatible endpoint) through a boto3 S3 client.

    Every botocore error is translated: a missing key becomes RawObjectMissing; an unreachable endpoint,
    a missing bucket or bad credentials become RawStoreError naming the bucket and endpoint, with a hint,
    and never the secret key.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        super().__init__(prefix)
        self.client = client
        self.bucket = bucket

    @property
    def endpoint(self) -> str:
        return str(
            getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "the default AWS endpoint"
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _put(self, key: str, data: bytes, content_type: str = PARQUET_TYPE) -> None:
        with self._translated("write", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def _get_for_update(self, key: str, known_absent: bool) -> tuple[bytes | None, str | None]:
        if known_absent:  # the conditional write (If-None-Match) catches an object created since the listing
            return None, None
        try:
            with self._translated("read", key):
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
                return resp["Body"].read(), resp["ETag"]
        except RawObjectMissing:
            return None, None

    def _put_if(self, key: str, data: bytes, version: str | None) -> None:
        """PUT with `If-Match: <ETag read>` or, for a new object, `If-None-Match: *` (S3 conditional writes;
        moto and AWS honour both). A 412, a 409 (a concurrent conditional write) or, for If-Match, a 404
        (deleted since) is a WriteConflict."""
        from botocore.exceptions import ClientError

        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        try:
            with self._translated("write", key):
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=key, Body=data, ContentType=PARQUET_TYPE, **condition
                    )
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    code = str(error.get("Code", ""))
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                        raise WriteConflict(f"{self.location(key)} changed since it was read ({code})") from exc
                    raise
        except RawObjectMissing as exc:  # If-Match on an object deleted since it was read
            raise WriteConflict(f"{self.location(key)} was deleted since it was read") from exc

    def _get(self, key: str) -> bytes:
        with self._translated("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _has(self, key: str) -> bool:
        # A listing rather than HEAD: HEAD answers a bare 404 for a missing bucket too, which would make
        # "bucket misspelled" look like "object not written yet".
        with self._translated("check", key):
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in resp.get("Contents", ()))

    def _iter_keys(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[str]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            params["StartAfter"] = start_after
        config = {"PageSize": page_size} if page_size else {}
        with self._translated("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(**params, PaginationConfig=config)
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"]

    def _iter_files(self, prefix: str) -> Iterator[LandingFile]:
        with self._translated("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    if obj["Key"].endswith("/"):  # a "folder" marker made by a console
                        continue
                    yield LandingFile(
                        key=obj["Key"],
                        version=_s3_version(obj["ETag"], obj["LastModified"]),
                        size=int(obj.get("Size", 0)),
                        modified=obj["LastModified"].astimezone(dt.UTC),
                    )

    def _get_versioned(self, key: str) -> tuple[bytes, str]:
        # ETag and Last-Modified of the GET response describe exactly the bytes in its body, so the
        # version check is atomic even if the object is overwritten while we read.
        with self._translated("read", key):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            data = resp["Body"].read()
        return data, _s3_version(resp["ETag"], resp["LastModified"])

    def _translated(self, action: str, key: str) -> _TranslateErrors:
        return _TranslateErrors(self, action, key)

    def _credentials(self) -> tuple[str | None, str | None, str | None]:
        """(access key id, secret key, session token) of the client, only to redact them from messages."""
        try:
            creds = self.client._request_signer._credentials  # boto3 has no public accessor for this
            return (
                getattr(creds, "access_key", None),
                getattr(creds, "secret_key", None),
                getattr(creds, "token", None),
            )
        except Exception:  # no credentials, a fake client, a failed refresh: nothing to redact
            return None, None, None

    def redact(self, text: str) -> str:
        """`text` without the secret key or session token ('***') and with only the last 4 characters of
        the access key id. Values shorter than 4 characters are left alone (they would mangle words)."""
        access_key, secret, token = self._credentials()
        for value in (secret, token):
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        if access_key and len(access_key) >= 4:
            text = text.replace(access_key, f"***{access_key[-4:]}")
        return text


def _s3_version(etag: str, last_modified: dt.datetime) -> str:
    # Whole seconds: a listing reports milliseconds, a GET's Last-Modified header only seconds.
    return f"{etag.strip(chr(34))}-{int(last_modified.timestamp())}"


class _TranslateErrors:
    """Context manager turning botocore exceptions into RawObjectMissing / RawStoreError."""

    def __init__(self, store: S3RawStore, action: str, key: str) -> None:
        self.store, self.action, self.key = store, action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, RawStoreError):
            return False
        translated = translate_s3_error(exc, self.store, self.action, self.key)
        if translated is None:
            return False
        raise translated from exc


def translate_s3_error(exc: BaseException, store: S3RawStore, action: str, key: str) -> RawStoreError | None:
    """The RawStoreError for a botocore exception (None if it is not one we know how to explain)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    where = f"s3://{store.bucket}/{key} at endpoint {store.endpoint}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        if code in _MISSING_CODES:
            return RawObjectMissing(f"raw object {key!r} does not exist in {store.describe()}", keys=[key])
        if code == "NoSuchBucket":
            hint = f"bucket {store.bucket!r} does not exist at {store.endpoint} (check the bucket name and endpoint)"
        elif code in _CREDENTIAL_CODES:
            access_key = store._credentials()[0]
            which = (
                f" (access key id ending {access_key[-4:]!r})" if access_key and len(access_key) >= 4 else ""
            )
            hint = (
                f"the credentials were rejected{which}: check the access key id, secret key and session "
                "token, and that they may use this bucket"
            )
        else:
            hint = "unexpected S3 error"
        text = f"S3 {action} of {where} failed: {code}: {message} - {hint}"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        text = f"S3 {action} of {where} failed: no usable AWS credentials were configured ({exc})"
    elif isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        text = (
            f"S3 {action} of {where} failed: the endpoint did not {_timeout_text(exc, store)} "
            f"({type(exc).__name__}: {exc}); check the endpoint URL, the network and that the service is up"
        )
    elif isinstance(exc, BotoCoreError):  # EndpointConnectionError, timeouts, SSL errors, ...
        text = (
            f"S3 {action} of {where} failed: cannot reach the endpoint ({type(exc).__name__}: {exc}); "
            "check the endpoint URL and that the service is running"
        )
    else:
        return None
    return RawStoreError(store.redact(text))


def _timeout_text(exc: BaseException, store: S3RawStore) -> str:
    """ "answer within the read timeout of 30 s (3 tries)", from the client's own config when it has one."""
    from botocore.exceptions import ConnectTimeoutError

    config = getattr(getattr(store.client, "meta", None), "config", None)
    connect = isinstance(exc, ConnectTimeoutError)
    what = "accept a connection" if connect else "answer"
    seconds = getattr(config, "connect_timeout" if connect else "read_timeout", None)
    retries = getattr(config, "retries", None) or {}
    tries = retries.get("total_max_attempts")
    limit = f" within the {'connect' if connect else 'read'} timeout of {seconds:g} s" if seconds else ""
    return f"{what}{limit}" + (
        f" (up to {tries} tr{'y' if tries == 1 else 'ies'} per request)" if tries else ""
    )
