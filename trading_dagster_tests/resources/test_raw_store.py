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
import time
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
from trading_dagster.resources.configured import RawStoreResource
from trading_dagster.resources.raw_store import (
    LandingVersionChanged,
    LocalRawStore,
    RawObjectMissing,
    RawStore,
    RawStoreError,
    S3RawStore,
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
    """Nothing listens on the port: connection refused at once, one retry (botocore's legacy `max_attempts`
    counts retries), so the error comes in well under a second or two instead of after 5 backed-off tries."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = S3RawStore(s3_client(endpoint, secret=SECRET, max_attempts=1), "raw-bucket", prefix="p")
    for call in (lambda: store.write_session(D1, bars(D1)), store.list_landing, store.list_sessions):
        started = time.monotonic()
        with pytest.raises(RawStoreError) as err:
            call()
        assert time.monotonic() - started < 5
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
    # overwrite a partition: the new content wins, no duplicate rows, still one object
    store.write_session(D1, bars(D1, symbols=("IBM",), close=99.0))
    assert store.read_session(D1).equals(bars(D1, symbols=("IBM",), close=99.0))
    assert store.read_sessions([D1, D2])["symbol"].to_list() == ["IBM", "AAPL", "MSFT"]
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
    started = time.monotonic()
    with pytest.raises(RawStoreError) as err:
        store.list_landing()
    assert time.monotonic() - started < 10
    assert len(attempts) == 3  # total_max_attempts: the first try and 2 retries
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
    resource = RawStoreResource(
        kind="s3",
        bucket="raw-bucket",
        endpoint_url=endpoint,
        region_name="us-east-1",
        read_timeout=0.5,
        max_attempts=2,
    )
    store = resource.get()
    attempts: list[str] = []
    store.client.meta.events.register("before-send.s3.*", lambda **kw: attempts.append("sent"))
    for call in (
        lambda: store.read_session(D1),
        store.list_sessions,
        lambda: store.write_session(D1, bars(D1)),
    ):
        attempts.clear()
        started = time.monotonic()
        with pytest.raises(RawStoreError) as err:
            call()
        elapsed = time.monotonic() - started
        # 2 tries of 0.5 s and at most 1 s of backoff, where botocore's defaults (60 s, and dagster-aws's 5
        # retries) would have waited minutes
        assert 1.0 <= elapsed < 5, elapsed
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
        RawStoreResource(kind="s3", bucket="b", read_timeout=0).get()
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RawStoreResource(kind="s3", bucket="b", max_attempts=0).get()
