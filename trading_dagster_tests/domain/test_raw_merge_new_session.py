"""`new_session_merge` on bars `stamp_import` stamped for a whole delivery is `merge_session` with nothing on
file and no earlier rows, session by session, on real rows (data/sample, 2008, shuffled so that the sort
matters)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.raw_merge import merge_session, new_session_merge, stamp_import
from trading_dagster.domain.vendor_files import REVISION_TIME, SOURCE
from trading_dagster.resources.market_data import FileMarketDataSource

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
IMPORT_ID = "20260101T000000000000Z-0123abcd"
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_new_session_merge_is_merge_session_with_nothing_on_file():
    bars = (
        FileMarketDataSource(SAMPLE)
        .fetch_bars(dt.date(2008, 1, 2), dt.date(2008, 2, 29))
        .with_columns(
            pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(REVISION_TIME), pl.lit("f.csv").alias(SOURCE)
        )
        .sample(fraction=1.0, shuffle=True, seed=7)
    )
    bars = bars.with_columns(  # an all-null bar: not usable
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close", "volume")
    )
    stamped = stamp_import(bars, IMPORT_ID, AT)
    assert stamp_import(stamped, IMPORT_ID, AT).equals(stamped)
    parts = stamped.partition_by("date", as_dict=True, maintain_order=True)
    raw_parts = bars.partition_by("date", as_dict=True, maintain_order=True)
    assert len(parts) > 30
    unsorted = 0
    for (session,), part in parts.items():
        fast = new_session_merge(session, part)
        slow = merge_session(session, None, raw_parts[(session,)], None, import_id=IMPORT_ID, imported_at=AT)
        assert fast.merged.equals(slow.merged)
        assert fast.outcome == slow.outcome
        assert fast.superseded.equals(slow.superseded) and fast.superseded.height == 0
        assert fast.outcome.created and fast.outcome.added == part.height
        unsorted += not part["symbol"].is_sorted()
    assert unsorted > 30  # the shuffle made the sort do something
    assert sum(new_session_merge(s, p).outcome.usable for (s,), p in parts.items()) == bars.height - 1


def test_a_delivery_in_date_order_skips_the_sort_and_gives_the_same_bars():
    from trading_dagster.domain.raw_merge import prepare_delivery
    from trading_dagster.domain.vendor_files import delivery_rows
    from trading_dagster.partitions import session_calendar

    cal = session_calendar()
    by_date = FileMarketDataSource(SAMPLE).fetch_bars(dt.date(2008, 1, 2), dt.date(2008, 2, 29))
    assert by_date.equals(by_date.sort("date", "symbol"))
    shuffled = by_date.sample(fraction=1.0, shuffle=True, seed=11)
    fast = prepare_delivery(delivery_rows(by_date, "f"), cal, AT)
    slow = prepare_delivery(delivery_rows(shuffled, "f"), cal, AT)
    assert slow.bars.equals(slow.bars.sort("symbol", "date"))  # the sorting path's documented order
    assert fast.bars.equals(slow.bars.sort("date", "symbol"))
    assert fast.earlier.height == slow.earlier.height == 0
    assert fast.sessions == slow.sessions and fast.empty_sessions == slow.empty_sessions
    assert fast.all_null_sessions == slow.all_null_sessions
    # a key twice, in date order: the rows are no longer strictly increasing, so the latest-row rule runs
    twice = pl.concat([by_date, by_date.head(1)]).sort("date", "symbol")
    d = prepare_delivery(delivery_rows(twice, "f"), cal, AT)
    assert d.earlier.height == 1 and d.bars.height == by_date.height


def _stamped_sample(order: str) -> pl.DataFrame:
    bars = FileMarketDataSource(SAMPLE).fetch_bars(dt.date(2008, 1, 2), dt.date(2008, 2, 29))
    bars = bars.with_columns(  # an all-null bar: not usable
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close", "volume")
    ).with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(REVISION_TIME), pl.lit("f.csv").alias(SOURCE))
    if order == "shuffled":
        bars = bars.sample(fraction=1.0, shuffle=True, seed=3)
    elif order == "by date, symbols shuffled":  # one run per date, the symbols of some runs out of order
        bars = bars.sample(fraction=1.0, shuffle=True, seed=5).sort("date", maintain_order=True)
        bars = pl.concat([bars.filter(pl.col("date") <= dt.date(2008, 1, 15)), bars.filter(pl.col("date") > dt.date(2008, 1, 15)).sort("date", "symbol")])
    return stamp_import(bars, IMPORT_ID, AT)


@pytest.mark.parametrize("order", ["by date and symbol", "by date, symbols shuffled", "shuffled"])
def test_new_session_merges_is_new_session_merge_of_each_session(order):
    from trading_dagster.domain.raw_merge import new_session_merges

    stamped = _stamped_sample(order)
    parts = {k[0]: v for k, v in stamped.partition_by("date", as_dict=True, maintain_order=True).items()}
    wanted = {s: p for i, (s, p) in enumerate(parts.items()) if i % 3}  # a subset, as a partly stored delivery
    bulk = new_session_merges(stamped, wanted)
    assert list(bulk) == list(wanted) and len(bulk) > 20
    unsorted = 0
    for session, part in wanted.items():
        one = new_session_merge(session, part)
        assert bulk[session].merged.equals(one.merged)
        assert bulk[session].outcome == one.outcome
        assert bulk[session].superseded.equals(one.superseded)
        unsorted += not part["symbol"].is_sorted()
    assert (unsorted > 5) == (order != "by date and symbol")  # the order check had something to find
    assert sum(m.outcome.usable for m in new_session_merges(stamped, parts).values()) == stamped.height - 1


def test_new_session_merges_with_a_null_symbol_or_a_part_not_cut_from_the_frame():
    from trading_dagster.domain.raw_merge import new_session_merges

    stamped = _stamped_sample("shuffled")
    with_null = stamped.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("symbol")).alias("symbol")
    )
    parts = {k[0]: v for k, v in with_null.partition_by("date", as_dict=True, maintain_order=True).items()}
    bulk = new_session_merges(with_null, parts)
    for session, part in parts.items():
        one = new_session_merge(session, part)
        assert bulk[session].merged.equals(one.merged) and bulk[session].outcome == one.outcome
    day, part = next(iter(parts.items()))
    with pytest.raises(ValueError, match="bars, but"):
        new_session_merges(stamped, {day: part.head(2)})
    assert new_session_merges(stamped, {}) == {}
