"""The raw zone: one Parquet object per NYSE session, on S3 or in a local directory.

Layout (docs/design.md): `{prefix}raw/prices/date=YYYY-MM-DD/prices.parquet`. Hive-style keys keep the
zone readable by DuckDB/Athena/polars without this code, and ISO dates sort lexicographically, which lets
S3 listing start at the first wanted session.

These classes are Dagster-free on purpose: the Dagster resources wrap them, and tests exercise them against
a real local S3 endpoint (moto) and a temporary directory with the same contract suite.

`RawStore` implements the whole contract on top of four byte-level primitives (`_put`, `_get`, `_has`,
`_iter_keys`), so a backend only has to move bytes and translate its errors.
"""

from __future__ import annotations

import abc
import datetime as dt
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.prices import PriceDataError, empty_raw_frame, split_by_session

RAW_PRICES_DIR = "raw/prices/"
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


def _from_parquet_bytes(data: bytes, key: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except pl.exceptions.PolarsError as exc:
        raise RawStoreError(f"raw object {key!r} is not readable Parquet: {exc}") from exc


def _check_single_session(session: dt.date, df: pl.DataFrame) -> None:
    """A session object must hold only that session's rows, or partitions would silently overlap."""
    if "date" not in df.columns:
        raise PriceDataError(f"cannot write session {session}: the frame has no 'date' column ({df.columns})")
    other = df.filter(pl.col("date").is_null() | (pl.col("date") != session))
    if other.height:
        dates = sorted({str(d) for d in other["date"].unique().to_list()})
        raise PriceDataError(
            f"cannot write session {session}: {other.height} row(s) are dated {dates[:_MAX_LISTED]} instead"
        )


class RawStore(abc.ABC):
    """Session-partitioned raw prices: write, read, list. Subclasses provide the byte-level primitives."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = normalize_prefix(prefix)

    # -- the primitives a backend implements ------------------------------------------------------------

    @abc.abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def _get(self, key: str) -> bytes:
        """The object's bytes; raise RawObjectMissing if it does not exist."""

    @abc.abstractmethod
    def _has(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _iter_keys(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[str]:
        """Keys under `prefix` in ascending order, strictly after `start_after` when given."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store lives, for messages (never a secret)."""

    # -- the contract -----------------------------------------------------------------------------------

    @property
    def sessions_prefix(self) -> str:
        return f"{self.prefix}{RAW_PRICES_DIR}"

    def key_for(self, session: dt.date) -> str:
        return f"{self.prefix}raw/prices/date={session:%Y-%m-%d}/prices.parquet"

    def write_session(self, session: dt.date, df: pl.DataFrame) -> str:
        """Write (or overwrite) one session's object as zstd Parquet; returns its key."""
        _check_single_session(session, df)
        key = self.key_for(session)
        self._put(key, _to_parquet_bytes(df))
        return key

    def write_sessions(
        self, df: pl.DataFrame, calendar: SessionCalendar, max_workers: int = DEFAULT_WORKERS
    ) -> list[str]:
        """Split a multi-session raw frame and write one object per session; returns the keys in order.

        Every row is checked against the calendar before anything is written, so a frame with a weekend
        row writes nothing rather than half of the partitions.
        """
        parts = split_by_session(df, calendar)
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            return list(pool.map(lambda item: self.write_session(*item), parts.items()))

    def read_session(self, session: dt.date) -> pl.DataFrame:
        key = self.key_for(session)
        return _from_parquet_bytes(self._get(key), key)

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

    def read_sessions(self, sessions: Iterable[dt.date], max_workers: int = DEFAULT_WORKERS) -> pl.DataFrame:
        """All rows of the given sessions, concatenated in session order.

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
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            frames = list(pool.map(self.read_session, wanted))
        return _concat_sessions(wanted, frames)


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

    def _path(self, key: str) -> Path:
        return self.root / key

    def _put(self, key: str, data: bytes) -> None:
        # Write to a temp file in the same directory, then rename: a reader never sees half an object.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
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

    def _iter_keys(self, prefix: str, start_after: str | None, page_size: int | None) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return iter(())
        keys = sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return (k for k in keys if start_after is None or k > start_after)


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

    def _put(self, key: str, data: bytes) -> None:
        with self._translated("write", key):
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/vnd.apache.parquet"
            )

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

    def _translated(self, action: str, key: str) -> _TranslateErrors:
        return _TranslateErrors(self, action, key)

    def _secret(self) -> str | None:
        """The client's secret key, only so that it can be redacted from any message we build."""
        try:
            creds = self.client._request_signer._credentials  # boto3 has no public accessor for this
            return getattr(creds, "secret_key", None)
        except AttributeError:
            return None


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
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

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
            hint = "the credentials were rejected: check the access key id, secret key and session token"
        else:
            hint = "unexpected S3 error"
        text = f"S3 {action} of {where} failed: {code}: {message} - {hint}"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        text = f"S3 {action} of {where} failed: no usable AWS credentials were configured ({exc})"
    elif isinstance(exc, BotoCoreError):  # EndpointConnectionError, timeouts, SSL errors, ...
        text = (
            f"S3 {action} of {where} failed: cannot reach the endpoint ({type(exc).__name__}: {exc}); "
            "check the endpoint URL and that the service is running"
        )
    else:
        return None
    secret = store._secret()
    if secret:
        text = text.replace(secret, "***")
    return RawStoreError(text)
