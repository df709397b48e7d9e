"""domain/vendor_files.py, what a delivery's columns are: two columns for one field are refused naming both,
revision-time and line-number columns are kept to order rows, every other column is named as ignored, and
several files (or a folder) are read as one delivery. Real rows: the NASDAQ sample cut for test_raw_merge.py
(it has `adj_close` and `asset_type`) and the repo's sample of the main dataset.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import PriceDataError
from trading_dagster.domain.vendor_files import (
    VendorFileError,
    classify_columns,
    find_vendor_files,
    read_delivery,
    read_ohlcv_file,
    read_vendor_file,
)

NASDAQ_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "raw_merge_nasdaq_2018_01_and_2023_04.parquet"


def nasdaq_csv(tmp_path: Path, name: str = "nasdaq.csv", **columns: pl.Expr) -> Path:
    path = tmp_path / name
    pl.read_parquet(NASDAQ_SAMPLE).filter(pl.col("date") < dt.date(2019, 1, 1)).with_columns(**columns).write_csv(path)
    return path


def test_the_real_files_extra_columns_are_named_as_ignored():
    frame = read_vendor_file(NASDAQ_SAMPLE)
    assert frame.columns.ignored == ("adj_close", "asset_type")
    assert frame.columns.revision_time is None and frame.columns.line_number is None
    assert frame.bars.columns == ["symbol", "date", "open", "high", "low", "close", "volume"]


def test_two_close_columns_are_refused_naming_both(tmp_path):
    """`close,close` in a header: polars reads the second as `close_duplicated_0`; neither is guessed."""
    path = nasdaq_csv(tmp_path, close_2=pl.col("close") + 1)
    path.write_text(path.read_text().replace("close_2", "close", 1))
    with pytest.raises(VendorFileError, match=r"'close' from \['close', 'close_duplicated_0'\].*repeats a name") as err:
        read_vendor_file(path)
    assert err.value.path == str(path)
    with pytest.raises(PriceDataError, match=r"ambiguous price columns: 'close' from \['Close', 'close'\]"):
        classify_columns(["Ticker", "Date", "Open", "High", "Low", "Close", "close", "Volume"])
    with pytest.raises(PriceDataError, match=r"'revision_time' from \['updated_at', 'as_of'\]"):
        classify_columns(["ticker", "date", "open", "high", "low", "close", "volume", "updated_at", "as_of"])


def test_a_repeated_ignored_column_is_just_ignored():
    cols = classify_columns(["ticker", "date", "open", "high", "low", "close", "volume", "note", "note_duplicated_0"])
    assert cols.ignored == ("note", "note_duplicated_0")


def test_revision_times_and_line_numbers_are_parsed(tmp_path):
    path = nasdaq_csv(
        tmp_path,
        **{
            "Updated At": pl.lit("2018-01-19T21:05:00-05:00"),
            "Line": pl.int_range(pl.len()) + 2,
        },
    )
    frame = read_vendor_file(path)
    assert (frame.columns.revision_time, frame.columns.line_number) == ("Updated At", "Line")
    assert frame.bars["revision_time"].unique().to_list() == [dt.datetime(2018, 1, 20, 2, 5, tzinfo=dt.UTC)]
    assert frame.bars["line_number"].head(3).to_list() == [2, 3, 4]
    # no zone: taken as UTC; a date alone: midnight UTC
    naive = read_vendor_file(nasdaq_csv(tmp_path, "b.csv", as_of=pl.lit("2018-01-19 21:05:00")))
    assert naive.bars["revision_time"][0] == dt.datetime(2018, 1, 19, 21, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"updated_at": pl.lit("yesterday")}, r"column 'updated_at': \d+ value\(s\) cannot be read as a revision timestamp"),
        ({"line": pl.lit("12.5")}, r"column 'line': \d+ value\(s\) cannot be read as a line number"),
    ],
)
def test_an_unreadable_ordering_column_is_file_level_garbage(tmp_path, column, message):
    with pytest.raises(VendorFileError, match=message):
        read_vendor_file(nasdaq_csv(tmp_path, **column))


def test_epoch_numbers_are_no_revision_time(tmp_path):
    path = tmp_path / "epoch.parquet"
    pl.read_parquet(NASDAQ_SAMPLE).with_columns(updated_at=pl.lit(1516400000)).write_parquet(path)
    with pytest.raises(VendorFileError, match=r"column 'updated_at' has type Int32; expected revision timestamps"):
        read_vendor_file(path)


def test_read_ohlcv_file_keeps_its_raw_schema_and_its_error_type(tmp_path):
    assert read_ohlcv_file(NASDAQ_SAMPLE).columns == ["symbol", "date", "open", "high", "low", "close", "volume"]
    bad = tmp_path / "bad.csv"
    bad.write_text("<html>502</html>")
    with pytest.raises(PriceDataError) as err:
        read_ohlcv_file(bad)
    assert type(err.value) is PriceDataError and str(err.value).startswith(f"{bad}: this is HTML")


def test_a_folder_is_its_vendor_files_and_one_delivery_keeps_their_order(tmp_path):
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    rows = pl.read_parquet(NASDAQ_SAMPLE).filter(pl.col("date") < dt.date(2019, 1, 1))
    rows.filter(pl.col("ticker") == "AAPL").write_csv(folder / "b_AAPL.csv")
    rows.filter(pl.col("ticker") == "CLM").write_parquet(folder / "sub" / "a_CLM.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / ".partial.csv").write_text("x")
    (folder / "notes.txt").write_text("x")
    found = find_vendor_files([folder, folder / "b_AAPL.csv"])  # a file named twice is read once
    assert [p.relative_to(folder).as_posix() for p in found] == ["b_AAPL.csv", "sub/a_CLM.parquet"]
    delivery = read_delivery(found)
    assert delivery.rows["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "CLM"]
    assert delivery.rows.filter(pl.col("symbol") == "CLM")["source_row"].to_list() == list(range(7))
    assert delivery.ignored_columns == {"adj_close": [str(p) for p in found], "asset_type": [str(p) for p in found]}
    with pytest.raises(VendorFileError, match="no such file or folder"):
        find_vendor_files([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(VendorFileError, match="the folder holds no"):
        find_vendor_files([tmp_path / "empty"])
