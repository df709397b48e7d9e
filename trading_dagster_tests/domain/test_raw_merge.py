"""domain/raw_merge.py: rows on no session are rejected and the rest imports; the latest row of a (symbol,
session) wins within a delivery; empty and all-null sessions are named; a merge adds and revises, never
deletes, and an identical delivery changes nothing.

Inputs are real rows: `trading_dagster_tests/data/raw_merge_nasdaq_2018_01_and_2023_04.parquet` is cut from
the shared NASDAQ file (`nasdaq_traded_2017_2023.parquet`: CLM, AAPL, ADBE, AMZN, AAIN, AAME on
2018-01-10..18, with CLM's all-NaN row on MLK Day 2018-01-15, and 2023-04-10..17, with the partial bars of
2023-04-17), and the repo's sample of the main dataset; each test applies its defect to them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import PriceDataError
from trading_dagster.domain.raw_merge import (
    EARLIER_ROW,
    FUTURE_SESSION,
    LATER_IMPORT,
    LATER_REVISION_TIME,
    MISSING_DATE,
    MISSING_SYMBOL,
    NEW_YORK,
    NON_SESSION_DATE,
    OLDER_THAN_ON_FILE,
    OUTSIDE_CALENDAR,
    SESSION_SCHEMA,
    SEVERAL_ON_FILE,
    format_import,
    make_import_id,
    merge_session,
    nyse_session_close,
    prepare_delivery,
    refuse_if_nothing_accepted,
    session_delivery,
)
from trading_dagster.domain.vendor_files import delivery_rows, normalize_vendor_frame
from trading_dagster.partitions import session_calendar
from trading_dagster.settings import SAMPLE_FILE

NASDAQ_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "raw_merge_nasdaq_2018_01_and_2023_04.parquet"
MLK_DAY = dt.date(2018, 1, 15)
LATER = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)  # an import long after every row's session closed
T0 = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def ny(y, m, d, hh, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=NEW_YORK)


def nasdaq(first: dt.date, last: dt.date) -> pl.DataFrame:
    """The real NASDAQ rows of [first, last], as a vendor file holds them (ticker, adj_close, asset_type...)."""
    return pl.read_parquet(NASDAQ_SAMPLE).filter(pl.col("date").is_between(first, last)).sort("ticker", "date")


def rows(vendor: pl.DataFrame, source: str = "vendor.csv") -> pl.DataFrame:
    return delivery_rows(normalize_vendor_frame(vendor), source)


def prepare(vendor: pl.DataFrame, as_of: dt.datetime = LATER, **kw):
    return prepare_delivery(rows(vendor), session_calendar(), as_of, **kw)


# --------------------------------------------------------------------------------------------- rejection


def test_the_real_mlk_day_row_is_rejected_and_the_rest_imports():
    vendor = nasdaq(dt.date(2018, 1, 10), dt.date(2018, 1, 18))
    d = prepare(vendor)
    assert d.rejected.select("symbol", "date", "reason").rows() == [("CLM", MLK_DAY, NON_SESSION_DATE)]
    assert "a weekday the exchange is closed" in d.rejected["detail"][0]
    assert d.rejected["source_row"][0] == vendor.with_row_index().filter(pl.col("date") == MLK_DAY)["index"][0]
    assert d.bars.height == vendor.height - 1 and MLK_DAY not in d.bars["date"].to_list()
    assert d.span == tuple(session_calendar().between(dt.date(2018, 1, 10), dt.date(2018, 1, 18)))
    assert d.empty_sessions == () and d.all_null_sessions == ()


def test_rows_without_a_date_or_symbol_are_rejected_with_their_reason():
    vendor = nasdaq(dt.date(2018, 1, 16), dt.date(2018, 1, 16))
    broken = vendor.with_columns(
        date=pl.when(pl.col("ticker") == "AAPL").then(None).otherwise(pl.col("date")),
        ticker=pl.when(pl.col("ticker") == "ADBE").then(pl.lit(" ")).otherwise(pl.col("ticker")),
    )
    d = prepare(broken)
    assert sorted(d.rejected.select("reason").to_series().to_list()) == [MISSING_DATE, MISSING_SYMBOL]
    assert d.bars.height == vendor.height - 2


def test_rows_before_the_calendar_are_outside_it_not_a_holiday():
    vendor = nasdaq(dt.date(2018, 1, 16), dt.date(2018, 1, 16)).with_columns(date=pl.lit(dt.date(1999, 3, 1)))
    d = prepare(pd_concat(vendor, nasdaq(dt.date(2018, 1, 17), dt.date(2018, 1, 17))))
    assert set(d.rejected["reason"]) == {OUTSIDE_CALENDAR}


def pd_concat(*frames: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(frames, how="vertical")


def test_partial_bars_of_a_session_that_has_not_closed_are_future_session_rows():
    """The real file's 2023-04-17 rows look intraday (AAIN open 22.73 above its high 22.65). Imported at
    14:30 New York that day they are FUTURE_SESSION; the rest of the file imports."""
    vendor = nasdaq(dt.date(2023, 4, 10), dt.date(2023, 4, 17))
    partial = vendor.filter(pl.col("date") == dt.date(2023, 4, 17))
    assert partial.height == 2
    d = prepare(vendor, as_of=ny(2023, 4, 17, 14, 30))
    assert d.rejected.select("symbol", "reason").sort("symbol").rows() == [
        (s, FUTURE_SESSION) for s in sorted(partial["ticker"])
    ]
    assert "closes at 16:00 New York, after the import time 14:30 New York" in d.rejected["detail"][0]
    assert d.span[-1] == dt.date(2023, 4, 14) and d.bars.height == vendor.height - 2
    # after the close they are bars; the day before, they are dated after the import day
    assert prepare(vendor, as_of=ny(2023, 4, 17, 16, 5)).rejected.is_empty()
    before = prepare(vendor, as_of=ny(2023, 4, 16, 9))
    assert set(before.rejected["reason"]) == {FUTURE_SESSION}
    assert "after the import day 2023-04-16" in before.rejected["detail"][0]


def test_a_half_day_closes_at_13_00():
    """The day after Thanksgiving 2023 closed at 13:00 New York (exchange_calendars): a bar imported at 13:30
    is final, one imported at 12:30 is partial."""
    half_day = dt.date(2023, 11, 24)
    assert nyse_session_close(half_day) == ny(2023, 11, 24, 13).astimezone(dt.UTC)
    vendor = nasdaq(dt.date(2023, 4, 14), dt.date(2023, 4, 14)).with_columns(date=pl.lit(half_day))
    assert prepare(vendor, as_of=ny(2023, 11, 24, 13, 30)).rejected.is_empty()
    assert set(prepare(vendor, as_of=ny(2023, 11, 24, 12, 30)).rejected["reason"]) == {FUTURE_SESSION}


def test_shifted_dates_refuse_the_whole_delivery():
    """Real bars stamped 20:00 New York and written in UTC: every session lands on the next day, Friday's on
    Saturday. That is no stray row: nothing is imported (else every bar would be filed a session late)."""
    vendor = pl.read_parquet(SAMPLE_FILE).filter(pl.col("date").is_between(dt.date(2017, 6, 5), dt.date(2017, 6, 9)))
    stamp = pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("America/New_York") + pl.duration(hours=20)
    shifted = vendor.with_columns(date=stamp.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with pytest.raises(PriceDataError, match=r"dated on days the exchange is closed: 2017-06-10 \(Saturday, \d+ rows\)"):
        prepare(shifted)
    assert prepare(vendor).rejected.is_empty()  # the same rows unshifted import


def test_a_file_with_only_rejected_rows_imports_nothing():
    d = prepare(nasdaq(MLK_DAY, MLK_DAY))
    assert d.bars.is_empty() and d.span == ()
    with pytest.raises(PriceDataError, match=r"none of its 1 row\(s\) belongs to a session that has closed \(NON_SESSION_DATE 1\)"):
        refuse_if_nothing_accepted(d)


def test_a_bar_outside_the_runs_window_is_an_error():
    vendor = nasdaq(dt.date(2018, 1, 16), dt.date(2018, 1, 18))
    with pytest.raises(PriceDataError, match=r"dated outside this run's window 2018-01-16\.\.2018-01-17: 2018-01-18 \(5 rows\)"):
        prepare(vendor, window=(dt.date(2018, 1, 16), dt.date(2018, 1, 17)))


# ------------------------------------------------------------------------------ the latest row of a bar


def preliminary_and_final(extra: dict | None = None) -> pl.DataFrame:
    """AAPL 2023-04-13 twice: a preliminary bar (80% of the volume, fetched intraday) before the final one."""
    day = nasdaq(dt.date(2023, 4, 13), dt.date(2023, 4, 13))
    final = day.filter(pl.col("ticker") == "AAPL")
    prelim = final.with_columns(volume=(pl.col("volume") * 0.8).cast(pl.Int64), close=pl.col("close") - 0.5)
    return pl.concat([prelim, day.filter(pl.col("ticker") != "AAPL"), final])


def test_the_later_row_of_the_file_wins_and_the_earlier_is_a_revision():
    vendor = preliminary_and_final()
    d = prepare(vendor)
    aapl = d.bars.filter(pl.col("symbol") == "AAPL")
    assert aapl["volume"].to_list() == [vendor["volume"][-1]]
    assert d.earlier.select("symbol", "volume").rows() == [("AAPL", vendor["volume"][0])]
    assert d.order == "row order in the delivery"
    assert d.bars.height == vendor.height - 1


def test_a_line_number_column_decides_over_file_order():
    vendor = preliminary_and_final().with_columns(line=pl.Series([9, 2, 3, 4, 5, 6, 1]))  # final first by line
    d = prepare(vendor, order_columns={"line_number": ["line"]})
    assert d.bars.filter(pl.col("symbol") == "AAPL")["volume"].to_list() == [vendor["volume"][0]]
    assert d.order == "line number column 'line'"


def test_a_revision_time_decides_over_line_and_file_order_and_a_missing_one_is_the_earliest():
    vendor = preliminary_and_final().with_columns(
        line=pl.Series([9, 2, 3, 4, 5, 6, 1]),
        updated_at=pl.Series(["2023-04-13T21:30:00Z", None, None, None, None, None, "2023-04-13T17:00:00Z"]),
    )
    d = prepare(vendor, order_columns={"revision_time": ["updated_at"], "line_number": ["line"]})
    aapl = d.bars.filter(pl.col("symbol") == "AAPL")
    assert aapl["volume"].to_list() == [vendor["volume"][0]]  # 21:30 UTC beats 17:00 UTC, whatever the line
    assert aapl["revision_time"].to_list() == [dt.datetime(2023, 4, 13, 21, 30, tzinfo=dt.UTC)]
    # no revision time counts as the earliest: a timed row beats an untimed one
    untimed_last = vendor.with_columns(updated_at=pl.Series([None, None, None, None, None, None, "2023-04-13T17:00:00Z"]))
    d = prepare(untimed_last.with_columns(line=pl.Series([1, 2, 3, 4, 5, 6, 0])))
    assert d.bars.filter(pl.col("symbol") == "AAPL")["volume"].to_list() == [vendor["volume"][-1]]


def test_empty_and_all_null_sessions_of_the_span_are_named():
    """A vendor delivered nothing on 2018-01-11 and only nulls on 2018-01-12 (real rows, defect applied)."""
    vendor = nasdaq(dt.date(2018, 1, 10), dt.date(2018, 1, 18)).filter(pl.col("date") != dt.date(2018, 1, 11))
    on_12th = pl.col("date") == dt.date(2018, 1, 12)
    vendor = vendor.with_columns(
        [pl.when(on_12th).then(None).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "volume")]
    )
    d = prepare(vendor)
    assert d.empty_sessions == (dt.date(2018, 1, 11),)
    assert d.all_null_sessions == (dt.date(2018, 1, 12),)
    assert d.bars.filter(on_12th).height == 5  # kept as delivered: cleaning quarantines them
    # a source asked for a window owes all of it: the sessions before its first row are empty too
    window = session_calendar().between(dt.date(2018, 1, 8), dt.date(2018, 1, 18))
    d = prepare(vendor, span=window)
    assert d.empty_sessions == (dt.date(2018, 1, 8), dt.date(2018, 1, 9), dt.date(2018, 1, 11))


# ------------------------------------------------------------------------------------------------- merge


def bars_of(vendor: pl.DataFrame, day: dt.date, source: str = "vendor.csv") -> pl.DataFrame:
    return prepare(vendor.filter(pl.col("date") == day)).bars


DAY = dt.date(2023, 4, 13)


def test_merging_adds_new_symbols_and_keeps_those_the_delivery_does_not_hold():
    day = nasdaq(DAY, DAY)
    first = merge_session(DAY, None, bars_of(day.filter(pl.col("ticker") == "AAPL"), DAY), None, import_id="a", imported_at=T0)
    assert first.outcome.created and first.outcome.added == 1
    second = merge_session(DAY, first.merged, bars_of(day.filter(pl.col("ticker") == "AMZN"), DAY), None, import_id="b", imported_at=T0)
    assert second.merged["symbol"].to_list() == ["AAPL", "AMZN"]
    assert second.merged["import_id"].to_list() == ["a", "b"]
    assert second.outcome.changed and second.outcome.added == 1 and second.superseded.is_empty()
    assert dict(second.merged.schema) == SESSION_SCHEMA


def test_an_identical_delivery_changes_nothing():
    bars = bars_of(nasdaq(DAY, DAY), DAY)
    on_file = merge_session(DAY, None, bars, None, import_id="a", imported_at=T0).merged
    again = merge_session(DAY, on_file, bars, None, import_id="b", imported_at=T0 + dt.timedelta(hours=1))
    assert not again.outcome.changed and again.outcome.unchanged == bars.height
    assert again.merged.equals(on_file) and again.superseded.is_empty()  # provenance stays the first import's


def test_a_changed_bar_is_revised_and_the_old_one_kept_with_its_provenance():
    bars = bars_of(nasdaq(DAY, DAY), DAY)
    on_file = merge_session(DAY, None, bars.with_columns(source=pl.lit("prelim.csv")), None, import_id="a", imported_at=T0).merged
    corrected = bars.with_columns(close=pl.when(pl.col("symbol") == "AMZN").then(pl.col("close") + 1).otherwise(pl.col("close")))
    later = T0 + dt.timedelta(days=1)
    m = merge_session(DAY, on_file, corrected.with_columns(source=pl.lit("final.csv")), None, import_id="b", imported_at=later)
    assert (m.outcome.revised, m.outcome.unchanged) == (1, bars.height - 1)
    amzn = m.merged.filter(pl.col("symbol") == "AMZN").row(0, named=True)
    assert (amzn["close"], amzn["source"], amzn["import_id"]) == (corrected.filter(pl.col("symbol") == "AMZN")["close"][0], "final.csv", "b")
    old = m.superseded.row(0, named=True)
    assert (old["symbol"], old["source"], old["import_id"], old["imported_at"]) == ("AMZN", "prelim.csv", "a", T0)
    assert (old["superseded_by"], old["superseded_at"], old["revision_reason"]) == ("b", later, LATER_IMPORT)


def test_with_revision_times_on_both_bars_the_later_revision_wins_across_imports():
    bars = bars_of(nasdaq(DAY, DAY), DAY).filter(pl.col("symbol") == "AAPL")
    final = bars.with_columns(revision_time=pl.lit(dt.datetime(2023, 4, 13, 21, tzinfo=dt.UTC)))
    prelim = bars.with_columns(revision_time=pl.lit(dt.datetime(2023, 4, 13, 17, tzinfo=dt.UTC)), volume=pl.lit(1, dtype=pl.Int64))
    on_file = merge_session(DAY, None, final, None, import_id="a", imported_at=T0).merged
    # a later import of an older revision: the bar on file stays, the delivered one is the revision
    m = merge_session(DAY, on_file, prelim, None, import_id="b", imported_at=T0 + dt.timedelta(days=1))
    assert not m.outcome.changed and m.outcome.kept_on_file == 1
    assert m.superseded.select("volume", "import_id", "superseded_by", "revision_reason").rows() == [
        (1, "b", "a", OLDER_THAN_ON_FILE)
    ]
    # the other way round the newer revision replaces the older
    on_file = merge_session(DAY, None, prelim, None, import_id="a", imported_at=T0).merged
    m = merge_session(DAY, on_file, final, None, import_id="b", imported_at=T0)
    assert m.outcome.revised == 1 and m.superseded["revision_reason"].to_list() == [LATER_REVISION_TIME]


def test_earlier_rows_of_the_delivery_go_to_the_revisions():
    d = prepare(preliminary_and_final())
    m = merge_session(DAY, None, d.bars, d.earlier, import_id="a", imported_at=T0)
    assert m.superseded.select("symbol", "revision_reason", "superseded_by").rows() == [("AAPL", EARLIER_ROW, "a")]
    assert m.outcome.earlier == 1 and m.merged["symbol"].is_unique().all()


def test_an_object_written_before_provenance_existed_merges():
    """Objects of the raw zone before the merge: the raw columns only, and duplicate rows allowed."""
    bars = bars_of(nasdaq(DAY, DAY), DAY)
    legacy = pl.concat([bars.select(bars.columns[:7]), bars.select(bars.columns[:7]).filter(pl.col("symbol") == "AAPL")])
    m = merge_session(DAY, legacy, bars.filter(pl.col("symbol") == "AAPL"), None, import_id="a", imported_at=T0)
    assert m.merged.filter(pl.col("symbol") == "AAPL").height == 1  # the two old rows were superseded by one
    assert m.superseded["revision_reason"].to_list() == [SEVERAL_ON_FILE] * 2
    assert m.merged.height == bars.height and m.merged["source"].null_count() == bars.height - 1


def test_session_delivery_keeps_the_latest_row_and_refuses_other_sessions():
    d = session_delivery(rows(preliminary_and_final()).select("symbol", "date", "open", "high", "low", "close", "volume"), DAY, T0, "test")
    assert d.bars.height == nasdaq(DAY, DAY).height and d.earlier.height == 1
    with pytest.raises(PriceDataError, match="cannot write session 2023-04-14"):
        session_delivery(d.bars, dt.date(2023, 4, 14), T0, "test")


def test_import_ids_sort_by_time():
    a = make_import_id(dt.datetime(2026, 1, 5, 12, 0, 0, 1, tzinfo=dt.UTC), "0123abcd99")
    b = make_import_id(ny(2026, 1, 5, 7, 1), "ffffffff")  # 12:01 UTC
    assert a == "20260105T120000000001Z-0123abcd" and a < b
    with pytest.raises(ValueError):
        make_import_id(dt.datetime(2026, 1, 5), "0123abcd")


def test_the_summary_names_what_a_person_needs():
    vendor = nasdaq(dt.date(2018, 1, 10), dt.date(2018, 1, 18))
    d = prepare(vendor, ignored_columns={"adj_close": ["v.parquet"], "asset_type": ["v.parquet"]})
    from trading_dagster.domain.raw_merge import SessionOutcome, build_manifest

    outcomes = [SessionOutcome(s, created=True, changed=True, added=5) for s in d.span]
    manifest = build_manifest(d, outcomes, import_id="x", imported_at=T0, store="here", rejected_key="raw/rejected/x.parquet", manifest_key="m")
    text = "\n".join(format_import(manifest))
    assert "sessions: 6 added, 0 revised, 0 unchanged" in text
    assert "NON_SESSION_DATE: 1" in text and "e.g. CLM 2018-01-15" in text
    assert "ignored columns (not imported): adj_close, asset_type" in text
    assert manifest["rejected"] == {NON_SESSION_DATE: 1}
    assert manifest["sessions_added"] == [s.isoformat() for s in d.span]
