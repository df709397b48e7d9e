"""The raw store contract, run against every implementation: a local directory and S3 (a moto server)."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Callable

import boto3
import polars as pl
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource

from trading_dagster.domain.calendar import SessionCalendar
from trading_dagster.domain.prices import RAW_SCHEMA, PriceDataError
from trading_dagster.resources.raw_store import (
    LocalRawStore,
    RawObjectMissing,
    RawStore,
    RawStoreError,
    S3RawStore,
)

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


def test_overwrite_a_partition(store):
    store.write_session(D1, bars(D1, close=10.5))
    store.write_session(D1, bars(D1, symbols=("IBM",), close=99.0))
    out = store.read_session(D1)
    assert out["symbol"].to_list() == ["IBM"]
    assert out["close"].to_list() == [99.0]
    assert store.list_sessions() == [D1]


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


def test_read_missing_session_names_the_key(store):
    with pytest.raises(RawObjectMissing) as err:
        store.read_session(D1)
    assert store.key_for(D1) in str(err.value)
    assert err.value.keys == (store.key_for(D1),)


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


def test_write_sessions_with_a_weekend_row_writes_nothing(store):
    df = pl.concat([bars(D1), bars(dt.date(2024, 1, 6))])
    with pytest.raises(PriceDataError, match="2024-01-06 \\(Saturday, 2 rows\\)"):
        store.write_sessions(df, CALENDAR)
    assert store.list_sessions() == []


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
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = S3RawStore(s3_client(endpoint, secret=SECRET, max_attempts=1), "raw-bucket", prefix="p")
    with pytest.raises(RawStoreError) as err:
        store.write_session(D1, bars(D1))
    msg = str(err.value)
    assert "raw-bucket" in msg and endpoint in msg and "cannot reach the endpoint" in msg
    assert SECRET not in msg


class RejectingS3Client:
    """A hand-written fake for what moto does not emulate by default: S3 rejecting the credentials.

    It answers with the exact botocore ClientError a real endpoint produces, with the secret embedded
    in the message to prove the store redacts it whatever the server says.
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


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_s3_rejected_credentials_are_a_store_error_without_the_secret(code):
    store = S3RawStore(RejectingS3Client(code, SECRET), "raw-bucket")
    for call in (lambda: store.read_session(D1), lambda: store.write_session(D1, bars(D1))):
        with pytest.raises(RawStoreError) as err:
            call()
        msg = str(err.value)
        assert code in msg and "raw-bucket" in msg and "http://s3.example.invalid" in msg
        assert "credentials were rejected" in msg
        assert SECRET not in msg and "***" in msg
