"""The raw store contract, run against every implementation: a local directory and S3 (a moto server).

Then the store as the definitions build it from environment variables (settings -> RawStoreResource ->
boto3 with bounded timeouts and tries), against the same moto server: the layout, errors for a missing
bucket, an endpoint that is down or accepts connections and never answers, and credentials the server rejects (moto's IAM emulation, switched on per test).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import polars as pl
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource

from trading_dagster.definitions import build_resources
from trading_dagster.domain.bars import RAW_SCHEMA, PriceDataError
from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.resources.configured import S3RawStoreResource
from trading_dagster.resources.raw_store import (
    LandingVersionChanged,
    LocalRawStore,
    RawObjectMissing,
    RawStore,
    RawStoreError,
    S3RawStore,
    WriteConflict,
)
from trading_dagster.settings import load_settings

D1, D2, D3, D4, D5 = (dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8))
SESSIONS = (D1, D2, D3, D4, D5)
# A tiny calendar (Jan 2024, MLK day 01-15 closed) keeps these tests free of exchange_calendars' import time.
CALENDAR = SessionCalendar(tuple(dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11, 12, 16)))
SECRET = "sEcReT-do-not-leak-4f1c"


def bars(session: dt.date, symbols=("AAPL", "MSFT"), close: float = 10.5) -> pl.DataFrame:
    n = len(symbols)
    return pl.DataFrame(
        {
            "symbol": list(symbols),
            "date": [session] * n,
            "open": [10.0] * n,
            "high": [11.0] * n,
            "low": [9.0] * n,
            "close": [close] * n,
            "volume": [1000] * n,
        },
        schema=RAW_SCHEMA,
    )


def s3_client(endpoint: str, secret: str = "testing", max_attempts: int = 5):
    return S3Resource(
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key=secret,
        region_name="us-east-1",
        max_attempts=max_attempts,
    ).get_client()


def new_bucket(client) -> str:
    name = f"raw-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


# A store plus a way to drop an arbitrary object into it (stray files the listing must ignore).
StoreCase = tuple[RawStore, Callable[[str, bytes], None]]


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    """One client for the module (building one costs ~0.3 s); each test gets its own bucket."""
    return s3_client(s3_endpoint)


@pytest.fixture(params=["local", "local-prefixed", "s3", "s3-prefixed"])
def case(request, tmp_path) -> StoreCase:
    prefix = "lake/v1/" if request.param.endswith("prefixed") else ""
    if request.param.startswith("local"):
        store = LocalRawStore(tmp_path, prefix=prefix)

        def put_local(key: str, data: bytes) -> None:
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / key).write_bytes(data)

        return store, put_local
    client = request.getfixturevalue("s3")
    bucket = new_bucket(client)
    return S3RawStore(client, bucket, prefix=prefix), lambda key, data: client.put_object(
        Bucket=bucket, Key=key, Body=data
    )


@pytest.fixture
def store(case) -> RawStore:
    return case[0]


# ------------------------------------------------------------------------------------------------ contract


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("", "raw/prices/date=2024-01-02/prices.parquet"),
        ("lake/", "lake/raw/prices/date=2024-01-02/prices.parquet"),
        ("lake", "lake/raw/prices/date=2024-01-02/prices.parquet"),
        ("/a/b/", "a/b/raw/prices/date=2024-01-02/prices.parquet"),
    ],
)
def test_key_for(tmp_path, prefix, key):
    assert LocalRawStore(tmp_path, prefix=prefix).key_for(D1) == key
    assert S3RawStore(client=None, bucket="b", prefix=prefix).key_for(D1) == key


def test_write_then_read_back(store):
    df = bars(D1)
    key = store.write_session(D1, df)
    assert key == store.key_for(D1)
    assert store.exists(D1)
    assert not store.exists(D2)
    assert store.read_session(D1).equals(df)


def test_objects_are_zstd_parquet_at_the_documented_key(case, tmp_path):
    store, _ = case
    store.write_session(D1, bars(D1))
    if isinstance(store, LocalRawStore):
        path = tmp_path / store.key_for(D1)
    else:
        path = tmp_path / "object.parquet"
        obj = store.client.get_object(Bucket=store.bucket, Key=store.key_for(D1))
        path.write_bytes(obj["Body"].read())
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_second_write_merges_into_the_partition(store):
    """Writes merge per (symbol, session): a write of IBM keeps AAPL and MSFT; a changed bar is revised."""
    store.write_session(D1, bars(D1, close=10.5))
    store.write_session(D1, bars(D1, symbols=("IBM", "MSFT"), close=99.0))
    out = store.read_session(D1)
    assert out["symbol"].to_list() == ["AAPL", "IBM", "MSFT"]
    assert out["close"].to_list() == [10.5, 99.0, 99.0]
    assert store.list_sessions() == [D1]
    assert store.read_revisions(D1).select("symbol", "close", "revision_reason").rows() == [
        ("MSFT", 10.5, "revised by a later import")
    ]


def test_list_sessions_filters_and_ignores_stray_keys(case):
    store, put = case
    for s in (D3, D1, D5, D2):
        store.write_session(s, bars(s))
    put(f"{store.prefix}raw/prices/_SUCCESS", b"")
    put(f"{store.prefix}raw/prices/date=2024-01-04/notes.txt", b"x")
    put(f"{store.prefix}raw/other/date=2024-01-04/prices.parquet", b"x")
    assert store.list_sessions() == [D1, D2, D3, D5]
    assert store.list_sessions(start=D2) == [D2, D3, D5]
    assert store.list_sessions(end=D3) == [D1, D2, D3]
    assert store.list_sessions(start=D2, end=D4) == [D2, D3]
    assert store.list_sessions(start=dt.date(2025, 1, 1)) == []


def test_list_sessions_of_an_empty_store(store):
    assert store.list_sessions() == []
    assert store.first_session() is None
    assert store.read_existing([D1, D2]) == ([], None)


def test_first_session_and_reading_the_existing_part_of_a_history(case):
    store, put = case
    put(f"{store.prefix}raw/prices/_SUCCESS", b"")  # sorts before the sessions' keys: not a session
    for s in (D3, D2, D5):
        store.write_session(s, bars(s))
    assert store.first_session() == D2
    present, rows = store.read_existing([D1, D2, D3, D4])  # D1 and D4 never existed: no error
    assert present == [D2, D3]
    assert rows is not None and sorted(set(rows["date"].to_list())) == [D2, D3]
    assert store.read_existing([]) == ([], None)


def test_local_listing_skips_folders_before_the_start(tmp_path, monkeypatch):
    """A listing from a start reads the folders at or after it only (a daily run lists a few sessions of a
    ten-year store), with the same answer as a full walk."""
    store = LocalRawStore(tmp_path)
    for s in SESSIONS:
        store.write_session(s, bars(s))
    opened: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: opened.append(Path(path).name) or real_scandir(path))
    assert store.list_sessions(start=SESSIONS[-2]) == list(SESSIONS[-2:])
    assert [name for name in opened if name.startswith("date=")] == [f"date={s}" for s in SESSIONS[-2:]]


def test_list_sessions_paginates(store):
    for s in SESSIONS:
        store.write_session(s, bars(s))
    requests: list[str] = []

    def count(**kwargs) -> None:
        requests.append("ListObjectsV2")

    if isinstance(store, S3RawStore):  # count the HTTP requests with botocore's own event hooks
        store.client.meta.events.register("before-call.s3.ListObjectsV2", count)
    try:
        assert store.list_sessions(page_size=2) == list(SESSIONS)
        assert store.list_sessions(start=D2, end=D4, page_size=1) == [D2, D3, D4]
    finally:
        if isinstance(store, S3RawStore):
            store.client.meta.events.unregister("before-call.s3.ListObjectsV2", count)
    if isinstance(store, S3RawStore):
        # 5 keys at 2 per page = 3 requests; then 1 per page from D2 until the key past D4 stops it = 4
        assert len(requests) == 3 + 4


def test_read_missing_session_names_the_key_and_session(store):
    store.write_session(D2, bars(D2))
    with pytest.raises(RawObjectMissing) as err:
        store.read_session(D1)
    assert store.key_for(D1) in str(err.value) and "session 2024-01-02" in str(err.value)
    assert err.value.keys == (store.key_for(D1),)
    assert err.value.sessions == (D1,)


def test_read_sessions_concatenates_in_session_order(store):
    for s in (D3, D1, D2):
        store.write_session(s, bars(s))
    out = store.read_sessions([D3, D1, D2, D1])
    assert out["date"].to_list() == [D1, D1, D2, D2, D3, D3]
    assert out.schema == pl.Schema(RAW_SCHEMA)


def test_read_sessions_lists_all_missing_sessions(store):
    store.write_session(D2, bars(D2))
    store.write_session(D4, bars(D4))
    with pytest.raises(RawObjectMissing) as err:
        store.read_sessions(SESSIONS)
    assert err.value.sessions == (D1, D3, D5)
    msg = str(err.value)
    assert "3 of 5 session(s)" in msg
    assert "2024-01-02, 2024-01-04, 2024-01-08" in msg


def test_read_sessions_of_nothing_is_an_empty_raw_frame(store):
    assert store.read_sessions([]).schema == pl.Schema(RAW_SCHEMA)


def test_write_session_refuses_rows_of_another_session(store):
    with pytest.raises(PriceDataError, match="cannot write session 2024-01-02: 2 row"):
        store.write_session(D1, bars(D2))
    assert not store.exists(D1)


def test_write_sessions_splits_by_session(store):
    df = pl.concat([bars(D2), bars(D1, symbols=("IBM",))])
    keys = store.write_sessions(df, CALENDAR)
    assert keys == [store.key_for(D1), store.key_for(D2)]
    assert store.read_session(D1)["symbol"].to_list() == ["IBM"]
    assert store.read_sessions([D1, D2]).height == 3


def test_write_sessions_keeps_a_weekend_row_as_a_rejected_row_and_writes_the_rest(store):
    df = pl.concat([bars(D1), bars(dt.date(2024, 1, 6), symbols=("AAPL",))])
    assert store.write_sessions(df, CALENDAR) == [store.key_for(D1)]
    assert store.list_sessions() == [D1]
    (import_id,) = store.list_imports()
    rejected = store.read_rejected(import_id)
    assert rejected.select("symbol", "date", "reason").rows() == [("AAPL", dt.date(2024, 1, 6), "NON_SESSION_DATE")]
    assert "Saturday" in rejected["detail"][0]


# ------------------------------------------------------------------------------------------------ S3 errors


def test_s3_missing_bucket_is_a_store_error_naming_bucket_and_endpoint(s3_endpoint):
    store = S3RawStore(s3_client(s3_endpoint, secret=SECRET), "no-such-bucket-here")
    for call in (lambda: store.read_session(D1), store.list_sessions, lambda: store.exists(D1)):
        with pytest.raises(RawStoreError) as err:
            call()
        assert not isinstance(err.value, RawObjectMissing)
        msg = str(err.value)
        assert "no-such-bucket-here" in msg and s3_endpoint in msg and "NoSuchBucket" in msg
        assert SECRET not in msg


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


def test_s3_endpoint_down_is_a_store_error(tmp_path):
    """Nothing listens on the port: connection refused at once, one retry (botocore's legacy `max_attempts`
    counts retries: 2 tries), so the error comes after one backoff instead of after 5 backed-off tries.
    Counted in requests sent, not seconds: a busy machine must not fail it."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = S3RawStore(s3_client(endpoint, secret=SECRET, max_attempts=1), "raw-bucket", prefix="p")
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3.*", lambda **kw: attempts.append("sent"))
    for call in (lambda: store.write_session(D1, bars(D1)), store.list_landing, store.list_sessions):
        attempts.clear()
        with pytest.raises(RawStoreError) as err:
            call()
        assert len(attempts) == 2
        msg = str(err.value)
        assert "raw-bucket" in msg and endpoint in msg and "cannot reach the endpoint" in msg
        assert SECRET not in msg


class RejectingS3Client:
    """A hand-written fake for what no real server does: echo the secret key in its error message.

    It answers with the botocore ClientError a real endpoint produces, with the secret embedded in the
    message to prove the store redacts it whatever the server says. (The real rejections, through the
    deployed code path and moto's IAM emulation, are tested below.)
    """

    def __init__(self, code: str, secret: str) -> None:
        self.code = code
        real = boto3.client(
            "s3",
            endpoint_url="http://s3.example.invalid",
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key=secret,
        )
        # Borrow the real client's metadata and signer: the store reads the endpoint and (to redact it)
        # the secret from there.
        self.meta, self._request_signer = real.meta, real._request_signer

    def _reject(self, operation: str):
        message = f"The request signature we calculated does not match (key {SECRET})"
        raise ClientError({"Error": {"Code": self.code, "Message": message}}, operation)

    def get_object(self, **kwargs):
        self._reject("GetObject")

    def put_object(self, **kwargs):
        self._reject("PutObject")

    def get_paginator(self, name: str):
        reject = self._reject

        class Paginator:
            def paginate(self, **kwargs):
                reject("ListObjectsV2")

        return Paginator()


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_a_secret_echoed_in_an_s3_error_is_redacted(code):
    store = S3RawStore(RejectingS3Client(code, SECRET), "raw-bucket")
    for call in (lambda: store.read_session(D1), lambda: store.write_session(D1, bars(D1))):
        with pytest.raises(RawStoreError) as err:
            call()
        msg = str(err.value)
        assert code in msg and "raw-bucket" in msg and "http://s3.example.invalid" in msg
        assert "credentials were rejected" in msg
        assert SECRET not in msg and "***" in msg


# ------------------------------------------------------------------------------------------- landing zone

VENDOR_CSV = b"Ticker,Date,Open,High,Low,Close,Volume\naapl,2024-01-02,10,11,9,10.5,1000\nMSFT,2024-01-02,20,21,19,20.5,2000\n"


def landing_key(store: RawStore, name: str) -> str:
    return f"{store.landing_prefix}{name}"


def test_landing_zone_layout(tmp_path):
    assert LocalRawStore(tmp_path).landing_prefix == "landing/prices/"
    assert S3RawStore(client=None, bucket="b", prefix="/lake/v1").landing_prefix == "lake/v1/landing/prices/"


def test_list_landing_of_an_empty_store(store):
    assert store.list_landing() == []


def test_list_landing_finds_vendor_files_only(case):
    store, put = case
    wanted = ["a.csv", "vendor/2024/b.PARQUET", "z.parquet"]
    for name in [*wanted, ".c.csv", "_SUCCESS", "_tmp/d.csv", "notes.txt", "e.csv.partial", "sub/.f.parquet"]:
        put(landing_key(store, name), VENDOR_CSV)
    put(f"{store.prefix}landing/other/x.csv", VENDOR_CSV)
    put(f"{store.prefix}landing/pricesx/y.csv", VENDOR_CSV)
    store.write_session(D1, bars(D1))
    files = store.list_landing()
    assert [f.key for f in files] == [landing_key(store, n) for n in wanted]
    assert all(f.size == len(VENDOR_CSV) and f.version and f.modified.tzinfo is not None for f in files)


def test_landing_version_is_stable_and_changes_on_overwrite(case):
    store, put = case
    key = landing_key(store, "session.csv")
    put(key, VENDOR_CSV)
    (first,) = store.list_landing()
    assert store.list_landing() == [first]  # nothing changed: same token
    assert store.read_landing(key, first.version) == VENDOR_CSV  # the read sees the listed version
    put(key, VENDOR_CSV + b"IBM,2024-01-02,30,31,29,30.5,3000\n")
    (second,) = store.list_landing()
    assert second.version != first.version
    assert store.read_landing(key, second.version).endswith(b"IBM,2024-01-02,30,31,29,30.5,3000\n")
    with pytest.raises(LandingVersionChanged) as err:
        store.read_landing(key, first.version)
    assert (err.value.expected, err.value.actual) == (first.version, second.version)
    assert store.location(key) in str(err.value) and "overwritten" in str(err.value)


def test_read_missing_landing_file_names_it(store):
    key = landing_key(store, "gone.csv")
    with pytest.raises(RawObjectMissing) as err:
        store.read_landing(key)
    assert store.location(key) in str(err.value)
    assert err.value.keys == (key,)


@pytest.mark.parametrize(
    "name",
    ["raw/prices/date=2024-01-02/prices.parquet", "landing/prices/../../etc/x.csv", "landing/prices/.a.csv"],
)
def test_read_landing_refuses_keys_outside_the_landing_zone(store, name):
    with pytest.raises(ValueError, match="is not a landing file key"):
        store.read_landing(f"{store.prefix}{name}")


def test_read_landing_bars_parses_csv_and_parquet(case):
    store, put = case
    put(landing_key(store, "a.csv"), VENDOR_CSV)
    buf = io.BytesIO()
    bars(D2, symbols=("IBM",)).rename({"symbol": "ticker"}).write_parquet(buf)
    put(landing_key(store, "b.parquet"), buf.getvalue())
    csv = store.read_landing_bars(landing_key(store, "a.csv"))
    assert csv.schema == pl.Schema(RAW_SCHEMA)
    assert csv["symbol"].to_list() == ["AAPL", "MSFT"] and csv["date"].to_list() == [D1, D1]
    assert store.read_landing_bars(landing_key(store, "b.parquet")).equals(bars(D2, symbols=("IBM",)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<!DOCTYPE html><html>503 Service Unavailable</html>", "HTML/XML, not price data"),
        (b"Ticker,Date,Open,High,Low,Close,Volume\n", "no data rows"),
        (b"foo,bar\n1,2\n", "symbol"),
        (b"Ticker,Date,Open,High,Low,Close,Volume\nAAPL,2024-01-02,ten,11,9,10.5,1000\n", "column 'Open'"),
    ],
)
def test_unparseable_landing_file_names_the_file(case, content, message):
    store, put = case
    key = landing_key(store, "bad.csv")
    put(key, content)
    with pytest.raises(PriceDataError) as err:
        store.read_landing_bars(key)
    msg = str(err.value)
    assert msg.startswith(f"landing file {store.location(key)}: ") and message in msg
    assert "landing-" not in msg.replace(store.location(key), "")  # no temporary path leaks into it


def test_parquet_named_landing_file_without_parquet_content(case):
    store, put = case
    key = landing_key(store, "bad.parquet")
    put(key, VENDOR_CSV)
    with pytest.raises(PriceDataError, match="named like Parquet but has no Parquet header"):
        store.read_landing_bars(key)


# ------------------------------------------------------------------- from the environment, as deployed


def store_from_env(tmp_path: Path, **env: str) -> RawStore:
    """The raw store exactly as the definitions build it: settings from variables -> RawStoreResource."""
    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"), **env})
    return build_resources(settings)["raw_store"].get()


def s3_env(endpoint: str, bucket: str, prefix: str = "lake/v1/") -> dict[str, str]:
    return {
        "TRADING_DAGSTER_RAW_STORE": "s3",
        "TRADING_DAGSTER_S3_BUCKET": bucket,
        "TRADING_DAGSTER_S3_PREFIX": prefix,
        "TRADING_DAGSTER_S3_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
    }


def test_default_is_the_local_folder_with_the_bucket_layout(tmp_path):
    store = store_from_env(tmp_path)
    assert isinstance(store, LocalRawStore) and store.root == tmp_path / "data" / "lake"
    store.write_session(D1, bars(D1))
    assert (tmp_path / "data/lake/raw/prices/date=2024-01-02/prices.parquet").is_file()
    s3_store = store_from_env(tmp_path, **s3_env("http://127.0.0.1:1", "b", prefix=""))
    assert s3_store.key_for(D1) == store.key_for(D1) and s3_store.landing_prefix == store.landing_prefix


def test_s3_from_environment_upload_list_read_overwrite_missing(s3_endpoint, s3, tmp_path):
    bucket = new_bucket(s3)
    store = store_from_env(tmp_path, **s3_env(s3_endpoint, bucket, prefix="/lake/v1"))
    assert isinstance(store, S3RawStore) and store.endpoint == s3_endpoint
    assert store.client.meta.region_name == "us-east-1"
    # upload, at the documented key under the prefix
    store.write_session(D1, bars(D1))
    store.write_session(D2, bars(D2))
    s3.head_object(Bucket=bucket, Key="lake/v1/raw/prices/date=2024-01-02/prices.parquet")
    # list and read back
    assert store.list_sessions() == [D1, D2]
    assert store.read_session(D1).equals(bars(D1))
    # a second write merges: IBM is added, AAPL revised, MSFT kept; no duplicate rows, still one object
    store.write_session(D1, bars(D1, symbols=("IBM", "AAPL"), close=99.0))
    assert store.read_session(D1).select("symbol", "close").rows() == [("AAPL", 99.0), ("IBM", 99.0), ("MSFT", 10.5)]
    assert store.read_sessions([D1, D2])["symbol"].to_list() == ["AAPL", "IBM", "MSFT", "AAPL", "MSFT"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="lake/v1/raw/prices/")["Contents"]
    assert [o["Key"] for o in listed] == [store.key_for(D1), store.key_for(D2)]
    # a missing object names its key and session
    with pytest.raises(RawObjectMissing) as err:
        store.read_session(D3)
    assert store.key_for(D3) in str(err.value) and "session 2024-01-04" in str(err.value)
    assert (err.value.keys, err.value.sessions) == ((store.key_for(D3),), (D3,))
    with pytest.raises(RawObjectMissing) as err:
        store.read_sessions([D1, D3, D4])
    assert err.value.sessions == (D3, D4)


def test_s3_from_environment_missing_bucket(s3_endpoint, tmp_path):
    store = store_from_env(tmp_path, **s3_env(s3_endpoint, "no-such-raw-bucket"))
    for call in (lambda: store.write_session(D1, bars(D1)), store.list_sessions, store.list_landing):
        with pytest.raises(RawStoreError) as err:
            call()
        assert not isinstance(err.value, RawObjectMissing)
        msg = str(err.value)
        assert "NoSuchBucket" in msg and "no-such-raw-bucket" in msg and s3_endpoint in msg


def test_s3_from_environment_endpoint_down(tmp_path):
    """The deployed client (3 tries per request): a refused connection is retried with botocore's standard
    jittered backoff (at most 1 + 2 s), then a RawStoreError naming the endpoint."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = store_from_env(tmp_path, **s3_env(endpoint, "raw-bucket"))
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3.*", lambda **kw: attempts.append("sent"))
    with pytest.raises(RawStoreError) as err:
        store.list_landing()
    assert len(attempts) == 3  # total_max_attempts: the first try and 2 retries
    assert store.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    msg = str(err.value)
    assert "cannot reach the endpoint" in msg and endpoint in msg and "raw-bucket" in msg
    assert "testing" not in msg  # the session's dummy secret


# -------------------------------------------------------------------- credentials the server rejects


def reset_moto_auth(endpoint: str, count: str) -> str:
    """Moto server's switch for its IAM emulation: after `count` more requests (0: at once, 'inf': never)
    every request must be signed by an IAM access key it knows and be allowed by that user's policy.
    Returns the previous setting. (Server mode's counterpart of `moto.core.set_initial_no_auth_action_count`.)
    """
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]


@dataclass(frozen=True)
class IamUser:
    access_key_id: str
    secret: str
    allowed_bucket: str
    other_bucket: str


@pytest.fixture
def moto_iam(s3_endpoint, s3) -> Iterator[IamUser]:
    """An IAM user that may use one bucket only; moto enforces signatures and policies during the test.

    The switch is process-wide in moto (the server runs in this process), so it is turned back off in
    `finally`; pytest runs tests one at a time, so no other test sees it on.
    """
    iam = boto3.client(
        "iam",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    allowed, other = new_bucket(s3), new_bucket(s3)
    user = f"raw-writer-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{allowed}", f"arn:aws:s3:::{allowed}/*"],
            }
        ],
    }
    iam.put_user_policy(UserName=user, PolicyName="raw-zone", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    previous = reset_moto_auth(s3_endpoint, "0")
    try:
        yield IamUser(key["AccessKeyId"], key["SecretAccessKey"], allowed, other)
    finally:
        reset_moto_auth(s3_endpoint, previous)


def env_credentials(monkeypatch, access_key_id: str, secret: str) -> None:
    """Credentials the way a deployment passes them: boto3's chain reads them from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def test_s3_credentials_of_the_iam_user_work_on_its_bucket(moto_iam, s3_endpoint, tmp_path, monkeypatch):
    """The control for the rejections below: the same server, user and store, with the right secret."""
    env_credentials(monkeypatch, moto_iam.access_key_id, moto_iam.secret)
    store = store_from_env(tmp_path, **s3_env(s3_endpoint, moto_iam.allowed_bucket))
    store.write_session(D1, bars(D1))
    assert store.list_sessions() == [D1] and store.read_session(D1).equals(bars(D1))


@pytest.mark.parametrize("case_name", ["wrong secret", "unknown access key", "bucket not allowed"])
def test_s3_credentials_rejected_by_the_server_are_a_store_error_without_secrets(
    moto_iam, s3_endpoint, tmp_path, monkeypatch, case_name
):
    key_id, secret, bucket, code = {
        "wrong secret": (moto_iam.access_key_id, SECRET, moto_iam.allowed_bucket, "SignatureDoesNotMatch"),
        "unknown access key": ("AKIAUNKNOWNKEY123456", SECRET, moto_iam.allowed_bucket, "InvalidAccessKeyId"),
        "bucket not allowed": (
            moto_iam.access_key_id,
            moto_iam.secret,
            moto_iam.other_bucket,
            "AccessDenied",
        ),
    }[case_name]
    env_credentials(monkeypatch, key_id, secret)
    store = store_from_env(tmp_path, **s3_env(s3_endpoint, bucket))
    calls = [
        lambda: store.write_session(D1, bars(D1)),
        lambda: store.read_session(D1),
        store.list_sessions,
        lambda: store.exists(D1),
        store.list_landing,
        lambda: store.read_landing(landing_key(store, "a.csv")),
    ]
    for call in calls:
        with pytest.raises(RawStoreError) as err:
            call()
        assert not isinstance(err.value, RawObjectMissing)  # "denied" must never read as "not there"
        msg = str(err.value)
        assert code in msg and bucket in msg and s3_endpoint in msg and "credentials were rejected" in msg
        assert f"ending {key_id[-4:]!r}" in msg
        assert secret not in msg and moto_iam.secret not in msg and key_id not in msg


# ----------------------------------------------------------------------- an endpoint that never answers


@pytest.fixture
def silent_endpoint() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte (an endpoint behind a
    firewall that drops packets looks the same to a client once connected); its URL and the connections."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_s3_endpoint_that_never_answers_fails_in_seconds_naming_it(silent_endpoint, monkeypatch):
    endpoint, held = silent_endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTSILENT000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look for credentials off this machine
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    resource = S3RawStoreResource(
        bucket="raw-bucket",
        endpoint_url=endpoint,
        region_name="us-east-1",
        read_timeout=0.5,
        max_attempts=2,
    )
    store = resource.get()
    # 2 tries of 0.5 s each, where botocore's defaults (60 s, and dagster-aws's 5 retries) would have waited
    # minutes: checked on the client that sends the requests and on the tries, not with a clock (a busy
    # machine would make any time limit flaky)
    assert store.client.meta.config.read_timeout == 0.5
    assert store.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3.*", lambda **kw: attempts.append("sent"))
    for call in (
        lambda: store.read_session(D1),
        store.list_sessions,
        lambda: store.write_session(D1, bars(D1)),
    ):
        attempts.clear()
        with pytest.raises(RawStoreError) as err:
            call()
        assert len(attempts) == 2
        msg = str(err.value)
        assert endpoint in msg and "raw-bucket" in msg, msg
        assert "did not answer within the read timeout of 0.5 s (up to 2 tries per request)" in msg, msg
        assert "ReadTimeoutError" in msg
        assert SECRET not in msg and "AKIATESTSILENT000001" not in msg
    assert len(held) >= 6  # it was the silence that failed them: every try got a connection


def test_the_deployed_s3_client_has_bounded_timeouts_and_tries(tmp_path):
    store = store_from_env(tmp_path, **s3_env("http://127.0.0.1:1", "raw-bucket"))
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5.0, 30.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    with pytest.raises(ValueError, match="timeouts must be > 0"):
        S3RawStoreResource(bucket="b", read_timeout=0).get()
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        S3RawStoreResource(bucket="b", max_attempts=0).get()


# ----------------------------------------------------------------------------------- merge (decision 0004)
# The same contract on all four stores (local and S3, with and without a prefix), on real rows of the repo's
# sample (cut from the shared main dataset): AAPL, MSFT and SPY around Independence Day 2017.

JULY = [dt.date(2017, 7, 3), dt.date(2017, 7, 5), dt.date(2017, 7, 6), dt.date(2017, 7, 7)]


def real(symbols=("AAPL", "MSFT", "SPY"), first: dt.date = JULY[0], last: dt.date = JULY[-1]) -> pl.DataFrame:
    from trading_dagster.settings import SAMPLE_FILE

    return (
        pl.read_parquet(SAMPLE_FILE)
        .filter(pl.col("ticker").is_in(list(symbols)) & pl.col("date").is_between(first, last))
        .rename({"ticker": "symbol"})
        .select(list(RAW_SCHEMA))
        .sort("date", "symbol")
    )


def deliver(store: RawStore, vendor: pl.DataFrame, source: str, as_of: dt.datetime | None = None, **kw):
    """One delivery of `vendor` (raw columns, plus optional ordering columns) as an import would make it."""
    from trading_dagster.domain.raw_merge import prepare_delivery
    from trading_dagster.domain.vendor_files import delivery_rows
    from trading_dagster.partitions import session_calendar

    delivery = prepare_delivery(
        delivery_rows(vendor, source), session_calendar(), as_of or dt.datetime(2026, 1, 5, tzinfo=dt.UTC), sources=(source,), **kw
    )
    return store.import_delivery(delivery)


class Counting:
    """Counts the store's object writes and reads by key (wraps the byte-level primitives)."""

    def __init__(self, store: RawStore, monkeypatch) -> None:
        self.puts: list[str] = []
        self.reads: list[str] = []
        put, put_if, put_frame_if, get = store._put, store._put_if, store._put_frame_if, store._get_for_update
        # a put inside a counted put of the same thread (the local conditional put is a plain one): count once
        local = threading.local()

        def inside() -> list[bool]:
            if not hasattr(local, "stack"):
                local.stack = []
            return local.stack

        def counted_put(key, data, *a, **k):
            if not inside():
                self.puts.append(key)
            return put(key, data, *a, **k)

        def counted_put_if(key, data, version):
            if not inside():
                self.puts.append(key)
            inside().append(True)
            try:
                return put_if(key, data, version)
            finally:
                inside().pop()

        def counted_put_frame_if(key, frame, version):  # a session object written from its frame
            if not inside():
                self.puts.append(key)
            inside().append(True)
            try:
                return put_frame_if(key, frame, version)
            finally:
                inside().pop()

        monkeypatch.setattr(store, "_put", counted_put)
        monkeypatch.setattr(store, "_put_if", counted_put_if)
        monkeypatch.setattr(store, "_put_frame_if", counted_put_frame_if)

        def counted_get(key, known_absent):
            data, version = get(key, known_absent)
            if data is not None or not known_absent:
                self.reads.append(key)
            return data, version

        monkeypatch.setattr(store, "_get_for_update", counted_get)

    def session_puts(self, store: RawStore) -> list[str]:
        return [k for k in self.puts if k.startswith(store.sessions_prefix)]


def test_two_per_symbol_imports_keep_both(store):
    deliver(store, real(["AAPL"]), "AAPL.csv")
    deliver(store, real(["MSFT"]), "MSFT.csv")
    out = store.read_sessions(JULY, provenance=True)
    assert out.select("symbol", "date").sort("date", "symbol").rows() == real(["AAPL", "MSFT"]).select("symbol", "date").rows()
    assert set(out.filter(pl.col("symbol") == "AAPL")["source"]) == {"AAPL.csv"}
    assert set(out.filter(pl.col("symbol") == "MSFT")["source"]) == {"MSFT.csv"}
    assert store.read_sessions(JULY).select(list(RAW_SCHEMA)).sort("date", "symbol").equals(real(["AAPL", "MSFT"]))


def test_a_one_session_file_with_only_spy_keeps_the_other_symbols(store):
    deliver(store, real(), "week.csv")
    spy = real(["SPY"], JULY[1], JULY[1]).with_columns(close=pl.col("close") + 0.01)  # a corrected SPY close
    result = deliver(store, spy, "spy_fix.csv")
    assert store.read_session(JULY[1])["symbol"].to_list() == ["AAPL", "MSFT", "SPY"]
    assert store.read_session(JULY[1]).filter(pl.col("symbol") == "SPY")["close"].to_list() == spy["close"].to_list()
    assert result.manifest["sessions_revised"] == [str(JULY[1])] and result.manifest["span"]["sessions"] == 1
    assert result.manifest["empty_sessions"] == []  # a one-session file's span is its session only
    assert result.changed_sessions == [JULY[1]]


def test_preliminary_and_final_rows_in_one_file_keep_the_final_and_the_preliminary_in_revisions(store):
    final = real(["AAPL", "MSFT"], JULY[2], JULY[2])
    prelim = final.filter(pl.col("symbol") == "AAPL").with_columns(volume=(pl.col("volume") * 0.8).cast(pl.Int64))
    result = deliver(store, pl.concat([prelim, final]), "feed.csv")
    assert store.read_session(JULY[2]).equals(final)
    revised = store.read_revisions(JULY[2])
    assert revised.select("symbol", "volume", "revision_reason", "superseded_by", "source").rows() == [
        ("AAPL", prelim["volume"][0], "earlier row of the same delivery", result.import_id, "feed.csv")
    ]
    assert result.manifest["earlier_rows"] == 1


def test_a_reimport_with_a_changed_bar_moves_the_old_bar_to_revisions_with_its_source_and_time(store):
    first = deliver(store, real(), "vendor_monday.csv")
    fixed = real().with_columns(
        close=pl.when((pl.col("symbol") == "MSFT") & (pl.col("date") == JULY[3])).then(pl.col("close") * 1.01).otherwise(pl.col("close"))
    )
    second = deliver(store, fixed, "vendor_tuesday.csv")
    assert second.manifest["sessions_revised"] == [str(JULY[3])]
    assert second.manifest["sessions_unchanged"] == [str(s) for s in JULY[:3]]
    assert second.manifest["bars"] == {"delivered": 12, "added": 0, "revised": 1, "unchanged": 11, "kept_on_file": 0}
    (old,) = store.read_revisions(JULY[3]).iter_rows(named=True)
    assert (old["symbol"], old["close"], old["source"], old["import_id"]) == (
        "MSFT", real(["MSFT"], JULY[3], JULY[3])["close"][0], "vendor_monday.csv", first.import_id
    )
    assert old["imported_at"] == dt.datetime.fromisoformat(first.manifest["imported_at"])
    assert (old["superseded_by"], old["revision_reason"]) == (second.import_id, "revised by a later import")
    assert old["superseded_at"] == dt.datetime.fromisoformat(second.manifest["imported_at"])
    now = store.read_session(JULY[3], provenance=True).filter(pl.col("symbol") == "MSFT").row(0, named=True)
    assert (now["source"], now["import_id"]) == ("vendor_tuesday.csv", second.import_id)


def test_an_identical_reimport_rewrites_nothing(case, monkeypatch):
    store, _ = case
    deliver(store, real(), "a.csv")
    before = {s: store._get(store.key_for(s)) for s in JULY}
    counted = Counting(store, monkeypatch)
    again = deliver(store, real(), "a_again.csv")
    assert counted.session_puts(store) == []  # not one session object written...
    assert [k for k in counted.puts if "/revisions/" in k] == []  # ...nor a revision
    assert counted.puts == [store.manifest_key(again.import_id)]  # only the delivery's record
    assert {s: store._get(store.key_for(s)) for s in JULY} == before
    assert again.manifest["sessions_unchanged"] == [str(s) for s in JULY] and again.changed_sessions == []


def test_a_first_import_into_an_empty_store_lists_once_and_reads_no_object(case, monkeypatch):
    store, _ = case
    lists: list[str] = []
    real_iter = store._iter_keys
    monkeypatch.setattr(store, "_iter_keys", lambda *a: lists.append(a[0]) or real_iter(*a))
    counted = Counting(store, monkeypatch)
    deliver(store, real(), "a.csv")
    assert lists == [store.sessions_prefix] and counted.reads == []
    assert sorted(counted.session_puts(store)) == [store.key_for(s) for s in JULY]  # one write per session


def test_many_files_of_one_delivery_write_each_session_once(case, monkeypatch, tmp_path):
    """A per-symbol export read as one delivery (the import command's several files): one merge per session,
    not one per file."""
    from trading_dagster.domain.raw_merge import prepare_delivery
    from trading_dagster.domain.vendor_files import read_delivery
    from trading_dagster.partitions import session_calendar

    store, _ = case
    paths = []
    for symbol in ("AAPL", "MSFT", "SPY"):
        paths.append(tmp_path / f"{symbol}.csv")
        real([symbol]).rename({"symbol": "Ticker"}).write_csv(paths[-1])
    vendor = read_delivery(paths)
    counted = Counting(store, monkeypatch)
    delivery = prepare_delivery(vendor.rows, session_calendar(), dt.datetime(2026, 1, 5, tzinfo=dt.UTC), sources=vendor.sources)
    store.import_delivery(delivery)
    assert sorted(counted.session_puts(store)) == [store.key_for(s) for s in JULY]
    assert store.read_sessions(JULY).sort("date", "symbol").equals(real())


def test_rejected_rows_empty_and_all_null_sessions_are_recorded(case):
    """Real rows with the defects applied: a holiday row (Independence Day), nothing on 07-05, every value
    null on 07-06. The rest imports; 07-05 gets an empty object; the manifest names it all."""
    store, _ = case
    rows = real()
    holiday = rows.filter(pl.col("date") == JULY[0]).head(1).with_columns(date=pl.lit(dt.date(2017, 7, 4)))
    null_day = pl.col("date") == JULY[2]
    vendor = pl.concat([rows.filter(pl.col("date") != JULY[1]), holiday]).with_columns(
        [pl.when(null_day).then(None).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "volume")]
    )
    result = deliver(store, vendor.with_columns(adj_close=pl.col("close")), "vendor.csv", ignored_columns={"adj_close": ["vendor.csv"]})
    manifest = store.read_manifest(result.import_id)
    assert manifest == result.manifest
    assert manifest["empty_sessions"] == manifest["empty_sessions_recorded"] == [str(JULY[1])]
    assert manifest["all_null_sessions"] == [str(JULY[2])]
    assert manifest["rejected"] == {"NON_SESSION_DATE": 1} and manifest["ignored_columns"] == {"adj_close": ["vendor.csv"]}
    assert store.list_sessions() == JULY
    assert store.read_session(JULY[1]).height == 0  # the record that the vendor delivered nothing
    assert store.read_session(JULY[2])["close"].null_count() == 3  # kept as delivered
    rejected = store.read_rejected(result.import_id)
    assert rejected.select("symbol", "date", "reason", "source").rows() == [("AAPL", dt.date(2017, 7, 4), "NON_SESSION_DATE", "vendor.csv")]
    assert store.bar_counts(JULY) == {JULY[0]: (3, 3), JULY[1]: (0, 0), JULY[2]: (3, 0), JULY[3]: (3, 3)}
    # the vendor delivers 07-05 later: the empty object is filled (a late-added session: revised)
    late = deliver(store, real(first=JULY[1], last=JULY[1]), "late.csv")
    assert late.manifest["sessions_revised"] == [str(JULY[1])] and store.read_session(JULY[1]).height == 3


def test_a_future_session_row_is_rejected_and_the_rest_imports(case):
    store, _ = case
    as_of = dt.datetime(2017, 7, 7, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))  # 14:30 New York
    result = deliver(store, real(), "intraday.csv", as_of=as_of)
    assert store.list_sessions() == JULY[:3]
    assert result.manifest["rejected"] == {"FUTURE_SESSION": 3}
    assert store.read_rejected(result.import_id)["date"].unique().to_list() == [JULY[3]]


# --------------------------------------------------------------------------------------------- concurrency


def test_s3_writes_are_conditional(s3):
    store = S3RawStore(s3, new_bucket(s3))
    key = store.key_for(D1)
    store._put_if(key, b"one", None)  # If-None-Match: *
    with pytest.raises(WriteConflict):
        store._put_if(key, b"two", None)  # it exists now
    data, etag = store._get_for_update(key, known_absent=False)
    with pytest.raises(WriteConflict):
        store._put_if(key, b"two", '"0123456789abcdef0123456789abcdef"')  # another version
    store._put_if(key, b"two", etag)
    assert store._get(key) == b"two"


def test_a_merge_that_loses_a_race_on_s3_merges_again_and_loses_nothing(s3, monkeypatch):
    """Import B writes the session between import A's read and A's write: A's conditional write fails, A
    reads again and merges onto B's object. Without the condition A would overwrite B's MSFT bars."""
    store = S3RawStore(s3, new_bucket(s3))
    deliver(store, real(["SPY"]), "spy.csv")
    reads: list[str] = []
    real_get = store._get_for_update

    def get_then_let_b_in(key, known_absent):
        out = real_get(key, known_absent)
        if key == store.key_for(JULY[0]) and not reads:
            reads.append(key)
            other = S3RawStore(store.client, store.bucket)  # another process, as far as S3 can tell
            deliver(other, real(["MSFT"], JULY[0], JULY[0]), "msft.csv")
        return out

    monkeypatch.setattr(store, "_get_for_update", get_then_let_b_in)
    deliver(store, real(["AAPL"], JULY[0], JULY[0]), "aapl.csv")
    assert store.read_session(JULY[0])["symbol"].to_list() == ["AAPL", "MSFT", "SPY"]


def test_a_session_another_import_creates_after_the_listing_is_merged_into_not_overwritten(case, monkeypatch):
    """A first import lists the store once and writes each session it did not see from the bars merged in
    bulk; if another import created one of them in between, its bars must survive (locally the write finds
    the object under the lock; on S3 the If-None-Match write fails and the merge reads it)."""
    store, _ = case
    real_list = store.list_sessions
    done: list[bool] = []

    def list_then_other_import(*a, **k):
        out = real_list(*a, **k)
        if not done:
            done.append(True)
            deliver(store, real(["MSFT"], JULY[0], JULY[0]), "msft.csv")  # after the listing, before the writes
        return out

    monkeypatch.setattr(store, "list_sessions", list_then_other_import)
    result = deliver(store, real(["AAPL"]), "aapl.csv")
    assert done == [True]
    assert store.read_session(JULY[0])["symbol"].to_list() == ["AAPL", "MSFT"]
    assert [store.read_session(s)["symbol"].to_list() for s in JULY[1:]] == [["AAPL"]] * 3
    assert result.manifest["sessions_added"] == [str(s) for s in JULY[1:]]
    assert result.manifest["sessions_revised"] == [str(JULY[0])]
    assert result.manifest["bars"]["added"] == 4


def test_a_local_session_object_written_from_its_frame_is_the_bytes_of_the_frame(tmp_path, monkeypatch):
    from trading_dagster.resources.raw_store import _to_parquet_bytes

    store = LocalRawStore(tmp_path)
    frame = real()
    key = store.key_for(JULY[0])
    store._put_frame_if(key, frame, None)
    assert (tmp_path / key).read_bytes() == _to_parquet_bytes(frame)
    store._put_frame_if(key, frame.head(2), None)  # a rewrite replaces it whole
    two = _to_parquet_bytes(frame.head(2))
    assert (tmp_path / key).read_bytes() == two
    assert sorted(p.name for p in (tmp_path / key).parent.iterdir()) == ["prices.parquet"]

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        store._put_frame_if(key, frame, None)
    assert sorted(p.name for p in (tmp_path / key).parent.iterdir()) == ["prices.parquet"]  # no temp file left
    assert (tmp_path / key).read_bytes() == two


def test_a_local_merge_waits_for_the_session_lock(tmp_path, monkeypatch):
    """While import A holds session D's lock between its read and its write, import B (another thread: a
    separate open file, so flock excludes it as it would another process) waits, then merges onto A's result."""
    store = LocalRawStore(tmp_path)
    deliver(store, real(["SPY"]), "spy.csv")
    other = LocalRawStore(tmp_path)
    b = threading.Thread(target=deliver, args=(other, real(["MSFT"], JULY[0], JULY[0]), "msft.csv"))
    real_get = store._get_for_update
    waited: list[bool] = []

    def get_then_start_b(key, known_absent):
        out = real_get(key, known_absent)
        if key == store.key_for(JULY[0]) and not waited:
            b.start()
            b.join(timeout=0.5)  # B must still be waiting for the lock A holds
            waited.append(b.is_alive())
        return out

    monkeypatch.setattr(store, "_get_for_update", get_then_start_b)
    deliver(store, real(["AAPL"], JULY[0], JULY[0]), "aapl.csv")
    b.join()
    assert waited == [True]
    assert store.read_session(JULY[0])["symbol"].to_list() == ["AAPL", "MSFT", "SPY"]


def _merge_symbols_in_a_process(root: str, symbols: list[str]) -> None:
    store = LocalRawStore(root)
    for symbol in symbols:  # one import per symbol: as many read-merge-write cycles as possible
        frame = real([symbol], JULY[0], JULY[1]) if symbol in ("AAPL", "MSFT", "SPY") else None
        if frame is None:
            frame = real(["SPY"], JULY[0], JULY[1]).with_columns(symbol=pl.lit(symbol))
        store.write_sessions(frame, _calendar(), source=f"{symbol}.csv")


def _calendar() -> SessionCalendar:
    return SessionCalendar(tuple(JULY))


def test_two_processes_merging_into_the_same_sessions_lose_nothing(tmp_path):
    import multiprocessing

    names = [[f"P{i}S{j}" for j in range(12)] for i in range(2)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_merge_symbols_in_a_process, args=(str(tmp_path), n)) for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    store = LocalRawStore(tmp_path)
    want = sorted(names[0] + names[1])
    for session in JULY[:2]:
        assert store.read_session(session)["symbol"].to_list() == want
    assert len(store.list_imports()) == 24
