"""The raw store's bulk paths, on real rows (data/sample, 2008): a first import stamps a whole delivery in one
query and writes each new session without a merge query of its own (`raw_merge.new_session_merge`); a local
read of many sessions is one multi-file Parquet read. Each must give exactly what the per-session path gives,
and a read of objects that do not share one schema must still fail naming the session at fault."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import RAW_COLUMNS
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.market_data import FileMarketDataSource
from trading_dagster.resources.raw_store import LocalRawStore, RawStoreError

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
FIRST, LAST = dt.date(2008, 1, 2), dt.date(2008, 3, 31)


class ObjectByObjectStore(LocalRawStore):
    """The local store without its bulk read: what every backend without one (S3) does."""

    def _read_objects(self, keys, columns):
        return None


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, list[dt.date]]:
    cal = session_calendar()
    bars = FileMarketDataSource(SAMPLE).fetch_bars(FIRST, LAST)
    assert bars.height > 1000 and bars["symbol"].n_unique() > 20
    return bars, cal.between(FIRST, LAST)


def test_a_first_import_writes_each_session_as_the_delivered_bars_stamped_with_the_import(tmp_path, sample):
    bars, sessions = sample
    store = LocalRawStore(tmp_path)
    keys = store.write_sessions(bars, session_calendar())
    assert keys == [store.key_for(s) for s in sessions]
    (import_id,) = store.list_imports()
    manifest = store.read_manifest(import_id)
    assert manifest["bars"] == {
        "delivered": bars.height,
        "added": bars.height,
        "revised": 0,
        "unchanged": 0,
        "kept_on_file": 0,
    }
    assert manifest["sessions_added"] == [s.isoformat() for s in sessions]
    imported_at = dt.datetime.fromisoformat(manifest["imported_at"])
    for session in (sessions[0], sessions[17], sessions[-1]):
        obj = store.read_session(session, provenance=True)
        expected = bars.filter(pl.col("date") == session).sort("symbol")
        assert obj.select(RAW_COLUMNS).equals(expected)
        assert obj["symbol"].is_sorted()
        assert obj["import_id"].unique().to_list() == [import_id]
        assert obj["imported_at"].unique().to_list() == [imported_at]
        assert obj["source"].unique().to_list() == ["direct write"]
        assert store.read_revisions(session).height == 0


def test_the_bulk_read_returns_what_reading_object_by_object_returns(tmp_path, sample):
    bars, sessions = sample
    LocalRawStore(tmp_path).write_sessions(bars, session_calendar())
    bulk = LocalRawStore(tmp_path).read_sessions(sessions)
    one_by_one = ObjectByObjectStore(tmp_path).read_sessions(sessions)
    assert bulk.height == bars.height
    assert bulk.equals(one_by_one)
    assert bulk.equals(bars.sort("date", "symbol"))


def test_an_object_written_before_provenance_reads_the_same_in_bulk(tmp_path, sample):
    bars, sessions = sample
    store = LocalRawStore(tmp_path)
    store.write_sessions(bars, session_calendar())
    old = sessions[5]
    store.read_session(old).write_parquet(
        tmp_path / store.key_for(old)
    )  # the raw columns only, as once written
    assert pl.read_parquet(tmp_path / store.key_for(old)).columns == list(RAW_COLUMNS)
    assert store.read_sessions(sessions).equals(ObjectByObjectStore(tmp_path).read_sessions(sessions))


def test_objects_of_two_schemas_still_fail_naming_the_session(tmp_path, sample):
    bars, sessions = sample
    store = LocalRawStore(tmp_path)
    store.write_sessions(bars, session_calendar())
    odd = sessions[9]
    store.read_session(odd, provenance=True).with_columns(pl.col("volume").cast(pl.Float64)).write_parquet(
        tmp_path / store.key_for(odd)
    )
    with pytest.raises(RawStoreError, match=f"raw object for {odd} has schema"):
        store.read_sessions(sessions)


@pytest.mark.parametrize("order", ["by date", "shuffled"])
def test_a_delivery_is_cut_by_date_as_partition_by_cuts_it(sample, order):
    from trading_dagster.resources.raw_store import _by_date

    bars, _ = sample
    frame = bars if order == "by date" else bars.sample(fraction=1.0, shuffle=True, seed=2)
    expected = {k[0]: v for k, v in frame.partition_by("date", as_dict=True, maintain_order=True).items()}
    got = _by_date(frame)
    assert list(got) == list(expected) and len(got) > 50
    assert all(got[d].equals(expected[d]) for d in expected)
