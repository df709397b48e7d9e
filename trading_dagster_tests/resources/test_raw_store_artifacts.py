"""Artifacts in the raw store (the ML models of issue 11): `put_artifact`, `get_artifact`, `has_artifact` on a
local directory and on S3 (the moto server), with and without a prefix."""

from __future__ import annotations

import uuid

import pytest
from dagster_aws.s3 import S3Resource

from trading_dagster.resources.raw_store import LocalRawStore, RawObjectMissing, RawStore, S3RawStore

KEY = "models/signal_model/2015/model.pkl"


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    return S3Resource(
        endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1", max_attempts=5,
    ).get_client()


@pytest.fixture(params=["local", "local-prefixed", "s3", "s3-prefixed"])
def store(request, tmp_path) -> RawStore:
    prefix = "lake/v1/" if request.param.endswith("prefixed") else ""
    if request.param.startswith("local"):
        return LocalRawStore(tmp_path, prefix=prefix)
    client = request.getfixturevalue("s3")
    bucket = f"art-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3RawStore(client, bucket, prefix=prefix)


def test_put_get_has_and_overwrite(store: RawStore) -> None:
    assert not store.has_artifact(KEY)
    data = bytes(range(256)) * 10
    where = store.put_artifact(KEY, data)
    assert store.has_artifact(KEY) and store.get_artifact(KEY) == data
    assert where == store.artifact_location(KEY) and where.endswith(f"{store.prefix}{KEY}")
    store.put_artifact(KEY, b"second", content_type="application/json")
    assert store.get_artifact(KEY) == b"second"
    # a sibling key is another object; the artifact is not a session for the raw-prices listing
    assert not store.has_artifact("models/signal_model/2016/model.pkl")
    assert store.list_sessions() == []


def test_missing_artifact_names_key_and_store(store: RawStore) -> None:
    with pytest.raises(RawObjectMissing, match="models/signal_model/2099/model.pkl"):
        store.get_artifact("models/signal_model/2099/model.pkl")


def test_local_artifact_is_a_file_under_the_prefix(tmp_path) -> None:
    store = LocalRawStore(tmp_path, prefix="lake")
    store.put_artifact(KEY, b"abc")
    assert (tmp_path / "lake" / KEY).read_bytes() == b"abc"
    assert not list((tmp_path / "lake" / "models").rglob(".tmp-*"))  # written whole, no temp left behind


def test_s3_artifact_has_its_content_type(s3) -> None:
    bucket = f"art-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    store = S3RawStore(s3, bucket, prefix="p/")
    store.put_artifact("models/m/2015/metadata.json", b"{}", content_type="application/json")
    head = s3.head_object(Bucket=bucket, Key="p/models/m/2015/metadata.json")
    assert head["ContentType"] == "application/json"


@pytest.mark.parametrize(
    "bad", ["", "/models/x", "models/x/", "models//x", "models/../raw/x", "./x", "raw/prices/x", "landing/prices/x.csv"]
)
def test_bad_keys_are_refused(tmp_path, bad: str) -> None:
    store = LocalRawStore(tmp_path)
    with pytest.raises(ValueError, match="not an artifact key"):
        store.put_artifact(bad, b"x")
    with pytest.raises(ValueError, match="not an artifact key"):
        store.get_artifact(bad)
    assert not any(tmp_path.rglob("*"))
