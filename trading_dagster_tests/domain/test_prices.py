"""Raw price normalization, file reading, session splitting and cleaning (trading_dagster.domain.prices)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_dagster.domain.bars import (
    CLEAN_SCHEMA,
    RAW_COLUMNS,
    RAW_SCHEMA,
    PriceDataError,
    check_sessions,
    split_by_session,
)
from trading_dagster.domain.calendar import SessionCalendar, nyse_calendar
from trading_dagster.domain.corporate_actions import CORPORATE_ACTIONS_SCHEMA
from trading_dagster.domain.prices import (
    BREAK_CONFIRM_SESSIONS,
    CLOSE_OUTSIDE_RANGE,
    DECIMAL_SHIFT,
    DUPLICATE_CONFLICT,
    FIELD_OUTLIER,
    HIGH_BELOW_LOW,
    HISTORY_SESSIONS,
    NEGATIVE_VOLUME,
    NON_POSITIVE_PRICE,
    NULL_VALUE,
    OPEN_OUTSIDE_RANGE,
    QUARANTINE_SCHEMA,
    REASON_CODES,
    REFERENCE_DAYS,
    UNEXPLAINED_SPLIT,
    ZERO_VOLUME,
    clean_prices,
)
from trading_dagster.domain.vendor_files import normalize_ohlcv, read_ohlcv_file
from trading_dagster_tests.shared_data import FILE_NAME, MISSING_REASON, shared_data_file

SHARED_DATA = shared_data_file() or Path("/nonexistent") / FILE_NAME

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
SATURDAY, MLK_DAY = dt.date(2024, 1, 6), dt.date(2024, 1, 15)


@pytest.fixture(scope="module")
def calendar() -> SessionCalendar:
    return nyse_calendar()


def bar(symbol="AAPL", date=D1, open=10.0, high=11.0, low=9.0, close=10.5, volume=1000) -> dict:  # noqa: A002
    return {
        "symbol": symbol,
        "date": date,
        "open": open,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
    }


def frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=RAW_SCHEMA)


# ------------------------------------------------------------------------------------------------ normalize


@pytest.mark.parametrize(
    "names",
    [
        ["symbol", "date", "open", "high", "low", "close", "volume"],
        ["Ticker", "Date", "Open", "High", "Low", "Close", "Volume"],
        ["Symbol", "timestamp", "o", "h", "l", "c", "v"],
        ["ticker", "session", "OPEN", " High ", "low", "close", "vol"],
    ],
)
def test_normalize_accepts_common_spellings(names):
    df = pl.DataFrame(
        {
            names[0]: [" aapl ", "msft"],
            names[1]: ["2024-01-02", "2024-01-03"],
            names[2]: ["10", "20.5"],
            names[3]: [11.0, 21.0],
            names[4]: [9, 19],
            names[5]: ["10.5", "20"],
            names[6]: ["1000", "2000.0"],
            "asset_type": ["stock", "stock"],
        }
    )
    out = normalize_ohlcv(df)
    assert out.schema == pl.Schema(RAW_SCHEMA)
    assert out["symbol"].to_list() == ["AAPL", "MSFT"]
    assert out["date"].to_list() == [D1, D2]
    assert out["open"].to_list() == [10.0, 20.5]
    assert out["volume"].to_list() == [1000, 2000]


def test_normalize_is_identity_on_the_raw_schema():
    df = frame(bar(), bar(symbol="MSFT"))
    assert normalize_ohlcv(df).equals(df)


def test_normalize_only_adjusted_close_is_refused_with_a_reason():
    df = pl.DataFrame(
        {
            "symbol": ["A"],
            "date": [D1],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "Adj Close": [1.0],
            "volume": [1],
        }
    )
    with pytest.raises(
        PriceDataError, match=r"(?s)missing required price column\(s\) \['close'\].*adjusted.*Adj Close"
    ):
        normalize_ohlcv(df)


def test_normalize_ignores_adjusted_close_when_the_raw_close_exists():
    df = frame(bar(close=10.5)).with_columns(pl.lit(5.0).alias("Adj Close"))
    assert normalize_ohlcv(df)["close"].to_list() == [10.5]


def test_normalize_missing_column_lists_found_and_expected():
    df = pl.DataFrame({"symbol": ["A"], "date": [D1], "open": [1.0], "high": [1.0], "low": [1.0]})
    with pytest.raises(PriceDataError) as err:
        normalize_ohlcv(df)
    msg = str(err.value)
    assert "['close', 'volume']" in msg
    assert "Found columns: ['symbol', 'date', 'open', 'high', 'low']" in msg
    assert f"Expected: {list(RAW_COLUMNS)}" in msg


def test_normalize_two_columns_for_one_field_is_ambiguous():
    df = frame(bar()).with_columns(pl.col("close").alias("Close"))
    with pytest.raises(PriceDataError, match=r"ambiguous.*'close' from \['close', 'Close'\]"):
        normalize_ohlcv(df)


def test_normalize_unparseable_number_names_column_count_and_row():
    df = pl.DataFrame(
        {
            "symbol": ["A", "B", "C"],
            "date": ["2024-01-02"] * 3,
            "open": ["1", "1", "1"],
            "high": ["2", "2", "2"],
            "low": ["1", "1", "1"],
            "close": ["1.5", "n/a?", "1,5"],
            "volume": ["10", "10", "10"],
        }
    )
    with pytest.raises(PriceDataError) as err:
        normalize_ohlcv(df)
    msg = str(err.value)
    assert "column 'close': 2 value(s) cannot be read as a number" in msg
    assert "row 1" in msg and "'n/a?'" in msg


def test_normalize_blank_and_na_cells_become_null_not_errors():
    df = pl.DataFrame(
        {
            "symbol": ["A", " "],
            "date": ["2024-01-02", "2024-01-02"],
            "open": ["", "NA"],
            "high": ["NaN", "2"],
            "low": ["null", "1"],
            "close": ["1", "1"],
            "volume": ["", "5"],
        }
    )
    out = normalize_ohlcv(df)
    assert out.height == 2
    assert out.row(0) == ("A", D1, None, None, None, 1.0, None)
    assert out["symbol"].to_list() == ["A", None]


def test_normalize_fractional_volume_is_an_error_not_a_truncation():
    df = frame(bar()).with_columns(pl.Series("volume", [12.5]))
    with pytest.raises(PriceDataError, match="column 'volume': 1 value.*whole number of shares"):
        normalize_ohlcv(df)


def test_normalize_unparseable_date_is_an_error():
    df = frame(bar(), bar(symbol="B")).with_columns(pl.Series("date", ["2024-01-02", "01/03/2024"]))
    with pytest.raises(PriceDataError, match="column 'date': 1 value.*a date.*'01/03/2024'"):
        normalize_ohlcv(df)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["20240102", "20240103"], [D1, D2]),
        (["2024/01/02", "2024/01/03"], [D1, D2]),
        # Alpaca/Polygon stamp New York midnight, Tiingo UTC midnight: both are the UTC date.
        (["2024-01-02T05:00:00Z", "2024-01-03T05:00:00Z"], [D1, D2]),
        (["2024-01-02T00:00:00.000Z", "2024-01-03T00:00:00.000Z"], [D1, D2]),
        (["2024-01-02 00:00:00", "2024-01-03 00:00:00"], [D1, D2]),
    ],
)
def test_normalize_date_formats(values, expected):
    df = frame(bar(), bar(symbol="B")).with_columns(pl.Series("date", values))
    assert normalize_ohlcv(df)["date"].to_list() == expected


def test_normalize_tz_aware_datetime_column_keeps_the_utc_date():
    stamps = pl.Series([dt.datetime(2024, 1, 2, 5), dt.datetime(2024, 1, 3, 0)]).dt.replace_time_zone("UTC")
    df = frame(bar(), bar(symbol="B")).with_columns(
        stamps.dt.convert_time_zone("America/New_York").alias("date")
    )
    assert normalize_ohlcv(df)["date"].to_list() == [D1, D2]


# ------------------------------------------------------------------------------------------------ files


def test_read_csv_and_parquet(tmp_path):
    df = frame(bar(), bar(symbol="MSFT", date=D2))
    csv = tmp_path / "bars.csv"
    # semicolons, a UTF-8 byte-order mark and Windows line ends, as spreadsheet exports have them
    csv.write_bytes(
        b"\xef\xbb\xbfDate;Ticker;Open;High;Low;Close;Volume\r\n2024-01-02;aapl;10;11;9;10.5;1000\r\n"
    )
    assert read_ohlcv_file(csv).row(0) == ("AAPL", D1, 10.0, 11.0, 9.0, 10.5, 1000)
    pq = tmp_path / "bars.dat"  # the content decides, not the extension
    df.rename({"symbol": "ticker"}).with_columns(pl.lit("stock").alias("asset_type")).write_parquet(pq)
    assert read_ohlcv_file(pq).equals(df)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML/XML.*502 Bad Gateway"),
        (b"\xef\xbb\xbf  <?xml version='1.0'?><Error>AccessDenied</Error>", "HTML/XML"),
        (json.dumps({"message": "rate limit exceeded"}).encode(), "JSON.*rate limit exceeded"),
        (b'[{"t": "2024-01-02"}]', "JSON"),
    ],
)
def test_read_vendor_error_page_saved_as_csv(tmp_path, content, match):
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(PriceDataError, match=match):
        read_ohlcv_file(path)


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_read_empty_file(tmp_path, content):
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(PriceDataError, match="empty"):
        read_ohlcv_file(path)


def test_read_header_only_csv(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("symbol,date,open,high,low,close,volume\n")
    with pytest.raises(PriceDataError, match="no data rows"):
        read_ohlcv_file(path)


def test_read_parquet_named_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "prices.parquet"
    path.write_text("symbol,date\n")
    with pytest.raises(PriceDataError, match="no Parquet header"):
        read_ohlcv_file(path)


def test_read_error_names_the_file(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("symbol,date,open,high,low,close,volume\nA,2024-01-02,x,1,1,1,1\n")
    with pytest.raises(PriceDataError, match=r"prices\.csv: column 'open'"):
        read_ohlcv_file(path)


# ------------------------------------------------------------------------------------------------ sessions


def test_split_by_session(calendar):
    df = frame(bar(symbol="MSFT", date=D2), bar(symbol="AAPL", date=D2), bar(date=D1))
    parts = split_by_session(df, calendar)
    assert list(parts) == [D1, D2]
    assert parts[D2]["symbol"].to_list() == ["AAPL", "MSFT"]
    assert sum(p.height for p in parts.values()) == df.height


def test_split_by_session_empty_frame(calendar):
    assert split_by_session(frame(), calendar) == {}


def test_rows_on_non_sessions_raise_listing_them(calendar):
    df = frame(bar(date=D1), bar(date=SATURDAY), bar(symbol="B", date=SATURDAY), bar(date=MLK_DAY))
    with pytest.raises(PriceDataError) as err:
        split_by_session(df, calendar)
    msg = str(err.value)
    assert "3 row(s) on 2 non-session date(s)" in msg
    assert "2024-01-06 (Saturday, 2 rows)" in msg
    assert "2024-01-15 (a weekday the exchange is closed, 1 row)" in msg


def test_rows_without_a_date_raise(calendar):
    with pytest.raises(PriceDataError, match="no 'date'"):
        check_sessions(frame(bar(date=None)), calendar)


# ------------------------------------------------------------------------------------------------ clean


def reasons(result) -> list[str]:
    return result.quarantine["reason"].to_list()


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (bar(close=None), NULL_VALUE, "missing or non-finite: close"),
        (bar(symbol=None), NULL_VALUE, "missing or non-finite: symbol"),
        (bar(high=float("inf")), NULL_VALUE, "missing or non-finite: high"),
        (bar(volume=None), NULL_VALUE, "missing or non-finite: volume"),
        (bar(low=0.0), NON_POSITIVE_PRICE, "price <= 0: low=0.0"),
        (bar(open=-1.0, low=-2.0), NON_POSITIVE_PRICE, "price <= 0: open=-1.0, low=-2.0"),
        (
            bar(high=5.0, low=9.0, open=5.0, close=5.0),
            HIGH_BELOW_LOW,
            "high=5.0 < low=9.0 (also CLOSE_OUTSIDE_RANGE, OPEN_OUTSIDE_RANGE)",  # an empty range holds nothing
        ),
        (bar(close=12.0), CLOSE_OUTSIDE_RANGE, "close=12.0 outside [low=9.0, high=11.0]"),
        (bar(open=8.0), OPEN_OUTSIDE_RANGE, "open=8.0 outside [low=9.0, high=11.0]"),
        (bar(volume=-5), NEGATIVE_VOLUME, "volume=-5 < 0"),
    ],
)
def test_each_quarantine_reason(row, reason, detail):
    result = clean_prices(frame(row, bar(symbol="GOOD")), [D1])
    assert result.cleaned["symbol"].to_list() == ["GOOD"]
    assert reasons(result) == [reason]
    assert result.quarantine["detail"].item() == detail


def test_zero_volume_is_quarantined():
    # Changed with the ZERO_VOLUME code: a bar without a trade is a carried-forward quote (or a vendor
    # outage, see domain/quality.py), not a price anyone could have traded at.
    result = clean_prices(frame(bar(volume=0), bar(symbol="GOOD")), [D1])
    assert result.cleaned["symbol"].to_list() == ["GOOD"]
    assert result.quarantine.select("reason", "detail").row(0) == (ZERO_VOLUME, "volume=0: no trade reported")


def test_first_reason_by_priority_and_the_others_in_detail():
    # null open beats everything; high < low beats the close/open range checks it implies.
    result = clean_prices(
        frame(
            bar(symbol="A", open=None, low=0.0, volume=-1),
            bar(symbol="B", low=0.0, high=-1.0, volume=-1),
            bar(symbol="C", high=5.0, low=9.0, volume=-1),
            bar(symbol="D", open=20.0, close=20.0),
        ),
        [D1],
    )
    q = result.quarantine
    assert q["reason"].to_list() == [NULL_VALUE, NON_POSITIVE_PRICE, HIGH_BELOW_LOW, CLOSE_OUTSIDE_RANGE]
    assert (
        q["detail"][2] == "high=5.0 < low=9.0 (also CLOSE_OUTSIDE_RANGE, OPEN_OUTSIDE_RANGE, NEGATIVE_VOLUME)"
    )
    assert q["detail"][3].endswith("(also OPEN_OUTSIDE_RANGE)")


def test_exact_duplicates_collapse_to_one_row():
    result = clean_prices(frame(bar(), bar(), bar(), bar(symbol="MSFT")), [D1])
    assert result.cleaned["symbol"].to_list() == ["AAPL", "MSFT"]
    assert result.quarantine.height == 0


def test_symbol_less_rows_collapse_when_identical_but_are_never_conflicts():
    result = clean_prices(frame(bar(symbol=None), bar(symbol=None), bar(symbol=None, close=10.6)), [D1])
    assert reasons(result) == [NULL_VALUE, NULL_VALUE]


def test_disagreeing_duplicates_all_go_to_quarantine():
    rows = [bar(close=10.5), bar(close=10.6), bar(close=10.6), bar(close=99.0), bar(symbol="MSFT")]
    result = clean_prices(frame(*rows), [D1])
    assert result.cleaned["symbol"].to_list() == ["MSFT"]
    # three distinct rows after the exact duplicate collapses, including the insane one: none is kept
    assert reasons(result) == [DUPLICATE_CONFLICT] * 3
    assert set(result.quarantine["detail"]) == {"3 different rows for (AAPL, 2024-01-02); none kept"}
    assert sorted(result.quarantine["close"]) == [10.5, 10.6, 99.0]


def test_rows_outside_the_expected_sessions_raise():
    with pytest.raises(PriceDataError, match=r"1 row\(s\) dated outside.*2024-01-03 \(1 row\)"):
        clean_prices(frame(bar(date=D1), bar(date=D2)), [D1])


def test_clean_outputs_schemas_sorting_and_accounting():
    raw = frame(
        bar(symbol="msft", date=D2),
        bar(symbol="AAPL", date=D2, close=99.0),
        bar(symbol="AAPL", date=D1),
        bar(symbol="AAPL", date=D1),
        bar(symbol="IBM", date=D1),
    )
    result = clean_prices(raw, [D1, D2, D3])
    assert result.cleaned.schema == pl.Schema(CLEAN_SCHEMA)
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert result.cleaned.select("session", "symbol").rows() == [(D1, "AAPL"), (D1, "IBM"), (D2, "MSFT")]
    assert result.cleaned.height + result.quarantine.height == raw.unique().height


def test_clean_empty_input():
    result = clean_prices(frame(), [D1])
    assert result.cleaned.height == result.quarantine.height == 0
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)


def test_clean_accepts_vendor_columns():
    raw = pl.DataFrame(
        {"Ticker": ["aapl"], "Date": ["2024-01-02"], "o": [10], "h": [11], "l": [9], "c": [10], "v": [5]}
    )
    assert clean_prices(raw, [D1]).cleaned.row(0) == ("AAPL", D1, 10.0, 11.0, 9.0, 10.0, 5)


price = st.one_of(st.sampled_from([0.0, -1.0, 9.0, 10.0, 11.0]), st.none(), st.floats(0.5, 20))
raw_rows = st.lists(
    st.fixed_dictionaries(
        {
            "symbol": st.sampled_from(["A", "B", "C", None]),
            "date": st.sampled_from([D1, D2]),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": st.one_of(st.none(), st.integers(-2, 3)),
        }
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_rows)
def test_invariants_every_row_accounted_for_and_cleaned_rows_sane(rows):
    raw = frame(*rows)
    result = clean_prices(raw, [D1, D2])
    c = result.cleaned
    assert c.height + result.quarantine.height == raw.unique().height
    assert c.select("session", "symbol").is_unique().all()
    assert c.equals(c.sort("session", "symbol"))
    assert c.null_count().sum_horizontal().item() == 0
    assert result.quarantine["detail"].null_count() == 0
    sane = (
        (pl.min_horizontal("open", "high", "low", "close") > 0)
        & (pl.col("low") <= pl.col("high"))
        & pl.col("open").is_between(pl.col("low"), pl.col("high"))
        & pl.col("close").is_between(pl.col("low"), pl.col("high"))
        & (pl.col("volume") > 0)  # > 0 since ZERO_VOLUME
        & (pl.col("high") <= 5 * pl.max_horizontal("open", "close"))  # FIELD_OUTLIER
        & (pl.col("low") * 5 >= pl.min_horizontal("open", "close"))
    )
    assert c.select(sane.all()).item() in (True, None)
    assert set(result.quarantine["reason"]) <= set(REASON_CODES)


# ------------------------------------------------------------------------------------------------ real data

# The 21 high < low rows of the shared dataset (its README counts 21; listed here so the test does not
# derive its expectation with the same comparison it checks).
HIGH_BELOW_LOW_ROWS = {
    ("ARE", "2009-02-27"), ("ARE", "2010-05-27"), ("AVB", "2012-11-19"), ("BEN", "2011-02-14"),
    ("BEN", "2011-05-04"), ("CCJ", "2011-09-19"), ("DDS", "2012-08-15"), ("DRH", "2012-05-07"),
    ("DRH", "2012-05-08"), ("EIX", "2010-07-12"), ("EPR", "2008-12-04"), ("FITB", "2008-03-28"),
    ("HUM", "2008-01-08"), ("LII", "2008-06-09"), ("PCG", "2012-09-27"), ("PSEC", "2013-07-12"),
    ("PXD", "2012-08-20"), ("PXD", "2013-01-02"), ("TRP", "2009-03-09"), ("TRP", "2012-05-04"),
    ("TWO", "2013-06-14"),
}  # fmt: skip
ZERO_PRICE_ROWS = {("FLAT", "2010-08-24"), ("IWV", "2008-09-19"), ("MLN", "2009-04-20")}


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=MISSING_REASON)
def test_real_dataset_glitches_land_in_quarantine():
    raw = pl.read_parquet(SHARED_DATA, columns=["ticker", "date", "open", "high", "low", "close", "volume"])
    sessions = raw["date"].unique().sort().to_list()
    result = clean_prices(raw, sessions)  # `ticker` is an accepted spelling of `symbol`
    q = result.quarantine.with_columns(pl.col("session").cast(pl.Utf8))

    def keys(reason: str) -> set[tuple[str, str]]:
        return set(q.filter(pl.col("reason") == reason).select("symbol", "session").iter_rows())

    assert keys(HIGH_BELOW_LOW) == HIGH_BELOW_LOW_ROWS
    assert keys(NON_POSITIVE_PRICE) == ZERO_PRICE_ROWS
    # README: 35 close and 33 open outside [low, high], 21 of each are the high < low rows. The other
    # 14 + 12 are decimal shifts of the close or open: since DECIMAL_SHIFT (which names the broken field)
    # they carry that code, with CLOSE/OPEN_OUTSIDE_RANGE in the detail; 2 more decimal shifts (ARE
    # 2010-11-24, PCG 2012-10-08: open = low, both shifted) were accepted before. The new codes and their
    # rows are checked one by one in test_real_glitches.py.
    assert dict(q.group_by("reason").len().iter_rows()) == {
        HIGH_BELOW_LOW: 21,
        NON_POSITIVE_PRICE: 3,
        DECIMAL_SHIFT: 28,
        FIELD_OUTLIER: 17,
        UNEXPLAINED_SPLIT: 1,
        ZERO_VOLUME: 1_923,
    }
    moved = q.filter(pl.col("reason") == DECIMAL_SHIFT)["detail"]
    assert moved.str.contains("CLOSE_OUTSIDE_RANGE").sum() == 14
    assert moved.str.contains("OPEN_OUTSIDE_RANGE").sum() == 12
    assert result.cleaned.height + q.height == raw.height == 3_816_969


# ------------------------------------------------------------------------------------------------ history rules

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"


@pytest.fixture(scope="module")
def days(calendar) -> list[dt.date]:
    """40 consecutive NYSE sessions from 2024-01-02."""
    return calendar.between(D1, dt.date(2024, 3, 1))[:40]


def walk(symbol: str, days: list[dt.date], closes: list[float], volume: int = 1000) -> list[dict]:
    """One bar per day: open = close, a 1% range around it."""
    return [
        bar(
            symbol=symbol,
            date=d,
            open=c,
            high=round(c * 1.01, 6),
            low=round(c * 0.99, 6),
            close=c,
            volume=volume,
        )
        for d, c in zip(days, closes, strict=True)
    ]


def quarantined(result) -> dict[tuple[str, dt.date], str]:
    return {(s, d): r for s, d, r in result.quarantine.select("symbol", "session", "reason").iter_rows()}


def detail_of(result, symbol: str, day: dt.date) -> str:
    q = result.quarantine.filter((pl.col("symbol") == symbol) & (pl.col("session") == day))
    return q["detail"].item()


def splits(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [{"symbol": s, "ex_date": d, "ratio": r, "source": "test"} for s, d, r in rows],
        schema=CORPORATE_ACTIONS_SCHEMA,
    )


def test_decimal_shift_of_the_close_against_the_median_of_the_previous_closes(days):
    closes = [100.0, 101.0, 99.0, 100.0, 102.0, 10.05]
    rows = walk("X", days[:6], closes)
    rows[-1].update(open=100.0, high=101.0, low=99.5)  # only the close lost a digit
    result = clean_prices(frame(*rows), days[:6])
    assert quarantined(result) == {("X", days[5]): DECIMAL_SHIFT}
    assert detail_of(result, "X", days[5]) == (
        "close=10.05 is x0.1005 of the reference 100.0 (median of the 5 previous closes), ~x0.1 "
        "(also FIELD_OUTLIER, CLOSE_OUTSIDE_RANGE)"
    )


def test_history_gives_the_first_sessions_of_a_window_their_reference(days):
    rows = walk("X", days[:6], [100.0, 101.0, 99.0, 100.0, 102.0, 1000.0])  # the whole bar x10
    window, history = frame(*rows[5:]), frame(*rows[:5])
    assert quarantined(clean_prices(window, days[5:6])) == {}  # no earlier bars: nothing to compare with
    result = clean_prices(window, days[5:6], history=history)
    assert quarantined(result) == {("X", days[5]): DECIMAL_SHIFT}
    assert detail_of(result, "X", days[5]) == (
        "close=1000.0 is x10.0 of the reference 100.0 (median of the 5 previous closes), ~x10; "
        "open=1000.0 is x10.0 of the reference 100.0 (median of the 5 previous closes), ~x10"
    )


def test_decimal_shift_detail_has_no_float_noise(days):
    # 51.37 * 0.1 is 5.1370000000000005 in binary floating point; the factor is x0.1, not x0.09999999...
    close = 51.37 * 0.1
    assert repr(close) == "5.1370000000000005"
    rows = walk("X", days[:6], [51.35, 51.2, 51.5, 51.3, 51.4, close])
    detail = detail_of(clean_prices(frame(*rows), days[:6]), "X", days[5])
    assert detail.startswith(
        "close=5.137 is x0.1 of the reference 51.35 (median of the 5 previous closes), ~x0.1; open=5.137 is"
    )
    assert "0000" not in detail and "9999" not in detail


def test_one_glitch_among_the_reference_bars_does_not_poison_it(days):
    closes = [100.0, 100.5, 100.2, 99.8, 10.0, 100.1, 100.3, 99.9]  # day 4 is x0.1 (a whole-bar glitch)
    result = clean_prices(frame(*walk("X", days[:8], closes)), days[:8])
    assert quarantined(result) == {("X", days[4]): DECIMAL_SHIFT}  # and the days after it are fine


def test_the_previous_close_stands_in_after_a_real_move(days):
    # PXD 2013-08: +12% and +4% on earnings, then a close that lost a digit. Against the median of 5
    # (154.5) it is x0.116, no decimal factor; against the previous close (180.8, trusted: within x2 of the
    # median) it is x0.0994.
    closes = [154.5, 153.0, 154.4, 173.8, 180.8, 17.97]
    rows = walk("PXD", days[:6], closes)
    rows[-1].update(open=179.6, high=182.3, low=178.3)
    result = clean_prices(frame(*rows), days[:6])
    assert quarantined(result) == {("PXD", days[5]): DECIMAL_SHIFT}
    assert detail_of(result, "PXD", days[5]).startswith(
        "close=17.97 is x0.09939 of the previous close 180.8, ~x0.1 (median of the 5 previous closes: 154.5)"
    )


def test_the_day_after_a_glitch_is_not_a_decimal_shift_against_it(days):
    # The previous close is the glitch: it is not trusted, so the recovery is not "x10 of the previous close".
    closes = [100.0, 100.0, 100.0, 100.0, 100.0, 10.0, 100.0]
    result = clean_prices(frame(*walk("X", days[:7], closes)), days[:7])
    assert quarantined(result) == {("X", days[5]): DECIMAL_SHIFT}


def test_a_split_on_file_explains_the_jump(days):
    # Unadjusted 10:1 split on days[5]: the whole bar x0.1. With the action it is no jump at all.
    closes = [500.0, 502.0, 498.0, 501.0, 500.0, 50.2, 50.4, 49.9, 50.1, 50.3]
    raw = frame(*walk("X", days[:10], closes))
    kept = clean_prices(raw, days[:10], actions=splits(("X", days[5], 10.0)))
    assert kept.quarantine.height == 0
    # Without it, the ex day and the two after it (until the median of 5 has moved) are decimal shifts, and
    # the session on which the x0.1 level has held for BREAK_CONFIRM_SESSIONS closes is the unexplained split.
    flagged = clean_prices(raw, days[:10])
    assert quarantined(flagged) == {
        **{("X", d): DECIMAL_SHIFT for d in days[5:8]},
        ("X", days[8]): UNEXPLAINED_SPLIT,
    }


def test_an_unexplained_split_is_flagged_on_its_day_only(days):
    closes = [100.0, 101.0, 99.0, 100.0, 100.5, 50.1, 50.3, 49.9, 50.2]
    raw = frame(*walk("X", days[:9], closes))
    result = clean_prices(raw, days[:9])
    # The days after the break are consistent with the previous close: only the break is flagged.
    assert quarantined(result) == {("X", days[5]): UNEXPLAINED_SPLIT}
    assert detail_of(result, "X", days[5]) == (
        "open=50.1, close=50.1 are x0.501, x0.501 of the reference 100.0 (median of the 5 previous closes) "
        "and the close is x0.4985 of the previous close 100.5: looks like a 2:1 split, but no corporate "
        f"action on file for X on {days[5]}"
    )
    assert clean_prices(raw, days[:9], actions=splits(("X", days[5], 2.0))).quarantine.height == 0
    wrong = clean_prices(raw, days[:9], actions=splits(("X", days[5], 4.0)))  # leaves a x2: reverse 1:2
    assert quarantined(wrong) == {("X", days[5]): UNEXPLAINED_SPLIT}
    assert detail_of(wrong, "X", days[5]).endswith(
        "looks like a 1-for-2 reverse split, but the corporate action on file (ratio 4.0) does not match it"
    )


@pytest.mark.parametrize(
    ("factor", "bar", "name"),
    [
        (
            0.1,
            "open=8.08, close=8.08 are x0.101, x0.101",
            "a x0.1 move that has not reverted looks like a 10:1 split",
        ),
        (
            10.0,
            "open=808.0, close=808.0 are x10.1, x10.1",
            "a x10 move that has not reverted looks like a 1-for-10 reverse split",
        ),
        (
            0.01,
            "open=0.808, close=0.808 are x0.0101, x0.0101",
            "a x0.01 move that has not reverted looks like a 100:1 split",
        ),
        (
            100.0,
            "open=8080.0, close=8080.0 are x101.0, x101.0",
            "a x100 move that has not reverted looks like a 1-for-100 reverse split",
        ),
    ],
)
def test_a_decimal_break_that_does_not_revert_is_an_unexplained_split(days, factor, bar, name):
    """An unadjusted 10:1 (1:10, 100:1, 1:100) split with no action on file. The break day and the two after
    it cannot be told from a glitch yet: DECIMAL_SHIFT, nothing trades. The next session, the level has held:
    UNEXPLAINED_SPLIT, dated on its own session (causal) and naming the break. Afterwards: kept."""
    assert BREAK_CONFIRM_SESSIONS == 3
    before = [80.0, 80.6, 79.5, 80.2, 80.0]
    after = [80.3, 81.9, 79.4, 80.8, 82.0, 81.1, 80.7, 83.0, 82.2, 81.5]  # ordinary moves on the new basis
    rows = walk("X", days[:15], before + [round(c * factor, 6) for c in after])
    result = clean_prices(frame(*rows), days[:15])
    assert quarantined(result) == {
        ("X", days[5]): DECIMAL_SHIFT,
        ("X", days[6]): DECIMAL_SHIFT,
        ("X", days[7]): DECIMAL_SHIFT,
        ("X", days[8]): UNEXPLAINED_SPLIT,
    }
    # days[8] is the 4th session at the new level; the level before it is the median of days[0..4]
    assert detail_of(result, "X", days[8]) == (
        f"{bar} of the level before 2024-01-09 (80.0, median of the 5 closes before it), as were the 3 closes "
        f"from 2024-01-09 on: {name} on 2024-01-09, but no corporate action on file for X on 2024-01-09"
    )
    assert days[5] == dt.date(2024, 1, 9)
    # the split on file explains it all
    assert clean_prices(
        frame(*rows), days[:15], actions=splits(("X", days[5], 1 / factor))
    ).quarantine.is_empty()


def test_a_decimal_break_is_caught_when_the_split_day_also_moves(days):
    # A 10:1 split on a +8% day, and the stock keeps drifting: x0.108 .. x0.112 of the old level, outside
    # RATIO_TOLERANCE of x0.1 but within LEVEL_TOLERANCE, for the whole bar.
    closes = [50.0, 50.2, 49.8, 50.1, 50.0, 5.4, 5.5, 5.6, 5.55, 5.5, 5.45]
    result = clean_prices(frame(*walk("X", days[:11], closes)), days[:11])
    assert quarantined(result) == {
        **{("X", d): DECIMAL_SHIFT for d in days[5:8]},
        ("X", days[8]): UNEXPLAINED_SPLIT,
    }
    # only one field at x0.108 is not a decimal shift (no whole bar moved): the tight tolerance applies
    rows = walk("X", days[:6], [50.0, 50.2, 49.8, 50.1, 50.0, 5.4])
    rows[-1].update(open=50.0, high=50.5)
    assert clean_prices(frame(*rows), days[:6]).quarantine["reason"].to_list() == [FIELD_OUTLIER]


@pytest.mark.parametrize("sessions_shifted", [1, 2, 3])
def test_a_glitch_that_reverts_within_the_confirmation_stays_a_decimal_shift(days, sessions_shifted):
    closes = (
        [100.0, 100.5, 99.8, 100.2, 100.0] + [10.01] * sessions_shifted + [100.3] * (14 - sessions_shifted)
    )
    result = clean_prices(frame(*walk("X", days[:19], closes)), days[:19])
    got = quarantined(result)
    assert UNEXPLAINED_SPLIT not in got.values()
    glitch = {("X", d) for d in days[5 : 5 + sessions_shifted]}
    assert {k for k, r in got.items() if r == DECIMAL_SHIFT} >= glitch
    if sessions_shifted == 1:  # the one-day glitch: only itself, the days after it are kept
        assert got == dict.fromkeys(glitch, DECIMAL_SHIFT)
    # after the glitch (and the sessions whose median it still fools) everything is kept
    assert all(d < days[5 + 2 * sessions_shifted] for _, d in got)


def test_an_intraday_halving_is_not_a_split(days):
    # Opened at the old level, closed at half: a crash inside the bar, not a split (a split moves the open).
    closes = [100.0, 101.0, 99.0, 100.0, 100.5, 50.0]
    rows = walk("X", days[:6], closes)
    rows[-1].update(open=100.0, high=100.0, low=49.0)
    assert clean_prices(frame(*rows), days[:6]).quarantine.height == 0


def test_penny_prices_do_not_match_split_ratios(days):
    closes = [0.02, 0.02, 0.02, 0.02, 0.02, 0.01, 0.02]  # one cent is half the price
    rows = [{**r, "high": r["close"], "low": r["close"]} for r in walk("X", days[:7], closes)]
    assert clean_prices(frame(*rows), days[:7]).quarantine.height == 0


def test_the_reference_only_reaches_back_reference_days(days):
    # Bars on days 0-4 (2024-01-02 .. 01-08), then a x0.1 bar. It needs MIN_REFERENCE_BARS (3) bars dated
    # within REFERENCE_DAYS (14) calendar days before it: 14 days after days[2] it has days[2..4], one
    # session later only days[3..4].
    def run(late: dt.date) -> dict:
        rows = [*walk("X", days[:5], [100.0] * 5), *walk("X", [late], [10.0])]
        return quarantined(clean_prices(frame(*rows), days[:20]))

    reach = days[2] + dt.timedelta(days=REFERENCE_DAYS)
    assert reach == dt.date(2024, 1, 18) and reach in days
    assert run(reach) == {("X", reach): DECIMAL_SHIFT}
    assert run(days[days.index(reach) + 1]) == {}


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        (bar(high=60.0), "high=60.0 is x5.714 of max(open, close)=10.5"),
        (bar(low=1.0), "low=1.0 is x0.1 of min(open, close)=10.0"),
        (bar(open=1.0, low=1.0), "open=1.0 is x0.09524 of close=10.5"),
        (
            bar(open=100.0, high=100.0, low=1.0),
            "low=1.0 is x0.09524 of min(open, close)=10.5; open=100.0 is x9.524 of close=10.5",
        ),
    ],
)
def test_field_outlier(row, detail):
    result = clean_prices(frame(row, bar(symbol="GOOD")), [D1])
    assert reasons(result) == [FIELD_OUTLIER]
    assert result.quarantine["detail"].item() == detail


def test_history_must_end_before_the_window(days):
    with pytest.raises(PriceDataError, match=r"history holds 1 row.*on or after the window's first session"):
        clean_prices(frame(bar(date=days[1])), [days[1]], history=frame(bar(date=days[0]), bar(date=days[1])))


def test_a_longer_history_changes_nothing(days):
    # A longer history than needed gives the same result as exactly HISTORY_SESSIONS sessions.
    rows = walk("X", days[:30], [100.0 + (i % 3) for i in range(29)] + [10.0])
    window, older = frame(*rows[-1:]), frame(*rows[:-1])
    exact = older.filter(pl.col("date") >= days[29 - HISTORY_SESSIONS])
    a = clean_prices(window, [days[29]], history=older)
    b = clean_prices(window, [days[29]], history=exact)
    assert a.quarantine.equals(b.quarantine) and quarantined(a) == {("X", days[29]): DECIMAL_SHIFT}


def _inject(raw: pl.DataFrame, symbol: str, day: dt.date, **changes: float) -> pl.DataFrame:
    """Multiply fields of one bar."""
    hit = (pl.col("symbol") == symbol) & (pl.col("date") == day)
    return raw.with_columns(
        [pl.when(hit).then(pl.col(c) * f).otherwise(pl.col(c)).alias(c) for c, f in changes.items()]
    )


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample data not present at {SAMPLE}")
def test_a_range_run_equals_day_by_day_runs_on_sample_data_with_glitches():
    """The HARD requirement: the same cleaned and quarantine rows whether a session is cleaned alone (with
    its HISTORY_SESSIONS sessions of history) or inside a long window, and never from later sessions."""
    raw = normalize_ohlcv(pl.read_parquet(SAMPLE))
    sessions = raw["date"].unique().sort().to_list()
    start = sessions.index(dt.date(2010, 4, 12))
    window = sessions[start : start + 30]  # holds the 2010-04-26 zero-volume outage
    w = window
    raw = raw.filter(pl.col("date").is_between(sessions[start - 2 * HISTORY_SESSIONS], window[-1]))
    raw = _inject(raw, "SPY", sessions[start - 2], close=0.1, low=0.1)  # a glitch inside the history
    raw = _inject(raw, "INTC", w[0], open=10.0, high=10.0, low=10.0, close=10.0)  # day 1: needs history
    raw = _inject(raw, "AAPL", w[3], close=0.1)
    raw = _inject(raw, "MSFT", w[5], open=0.01)
    raw = _inject(raw, "JPM", w[6], high=20.0)
    ko_from = pl.col("date") >= w[8]  # KO: an unadjusted 2:1 split nobody told us about
    ibm_from = pl.col("date") >= w[12]  # IBM: an unadjusted 4:1 split that is on file
    xom_from = pl.col("date") >= w[17]  # XOM: an unadjusted 10:1 split nobody told us about, across chunks
    raw = raw.with_columns(
        [
            pl.when((pl.col("symbol") == "KO") & ko_from)
            .then(pl.col(c) / 2)
            .when((pl.col("symbol") == "IBM") & ibm_from)
            .then(pl.col(c) / 4)
            .when((pl.col("symbol") == "XOM") & xom_from)
            .then(pl.col(c) / 10)
            .otherwise(pl.col(c))
            .alias(c)
            for c in ("open", "high", "low", "close")
        ]
    )
    ge = raw.filter((pl.col("symbol") == "GE") & (pl.col("date") == w[9]))
    raw = pl.concat([raw, ge.with_columns(pl.col("close") + 0.01)])  # a duplicate conflict
    acts = splits(("IBM", w[12], 4.0))

    def rows_in(days: list[dt.date]) -> pl.DataFrame:
        return raw.filter(pl.col("date").is_in(pl.Series(days, dtype=pl.Date).implode()))

    def run(days: list[dt.date]):
        first = sessions.index(days[0])
        history = rows_in(sessions[first - HISTORY_SESSIONS : first])
        return clean_prices(rows_in(days), days, history=history, actions=acts)

    whole = run(window)
    one_by_one = [run([d]) for d in window]
    chunks = [run(window[:7]), run(window[7:19]), run(window[19:])]
    for parts in (one_by_one, chunks):
        assert pl.concat([p.cleaned for p in parts]).equals(whole.cleaned)
        assert pl.concat([p.quarantine for p in parts]).equals(whole.quarantine)

    got = quarantined(whole)
    assert got[("INTC", w[0])] == DECIMAL_SHIFT
    assert got[("AAPL", w[3])] == DECIMAL_SHIFT
    assert got[("MSFT", w[5])] == DECIMAL_SHIFT
    assert got[("JPM", w[6])] == FIELD_OUTLIER
    assert got[("KO", w[8])] == UNEXPLAINED_SPLIT
    # XOM: decimal shifts until the x0.1 level has held BREAK_CONFIRM_SESSIONS closes, then the split
    assert [got.get(("XOM", d)) for d in w[17:22]] == [DECIMAL_SHIFT] * 3 + [UNEXPLAINED_SPLIT, None]
    assert got[("GE", w[9])] == DUPLICATE_CONFLICT
    assert got[("AAPL", dt.date(2010, 4, 26))] == ZERO_VOLUME
    price_flags = {k for k, r in got.items() if r != ZERO_VOLUME}  # 2010-04-26 hits IBM, SPY and KO too
    assert not any(s == "IBM" for s, _ in price_flags)  # the split on file explains IBM's jump
    assert not any(s == "SPY" for s, _ in price_flags)  # the glitch in the history poisons nothing
    assert not any(s == "KO" and d > w[8] for s, d in price_flags)  # only the break is flagged
    assert not any(s == "XOM" and (d < w[17] or d > w[20]) for s, d in price_flags)
    assert whole.cleaned.height + whole.quarantine.height == rows_in(window).unique().height


glitch = st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.1, 10.0, 0.01, 0.5, 2.0, 0.25])


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 13), glitch, glitch, st.integers(0, 2)),
        max_size=60,
    ),
    st.integers(1, 13),
)
def test_invariant_range_equals_day_by_day(days, cells, cut):
    """Whatever the glitches, whole-bar jumps and gaps: cleaning 14 sessions at once, in two chunks, or one
    by one (each with the HISTORY_SESSIONS sessions before it as history) gives the same rows."""
    window = days[:14]
    rows = {}
    for symbol, i, whole, close_only, volume in cells:
        level = {"A": 50.0, "B": 8.0, "C": 120.0}[symbol] * (1 + i / 100) * whole
        rows[(symbol, i)] = bar(
            symbol=symbol,
            date=window[i],
            open=level,
            high=level * 1.02,
            low=level * 0.98 * min(close_only, 1.0),
            close=level * close_only,
            volume=volume,
        )
    raw = frame(*rows.values())

    def run(part: list[dt.date]):
        first = window.index(part[0])
        history = raw.filter(
            pl.col("date").is_in(pl.Series(window[max(0, first - HISTORY_SESSIONS) : first]).implode())
        )
        mine = raw.filter(pl.col("date").is_in(pl.Series(part).implode()))
        return clean_prices(mine, part, history=history)

    whole = run(window)
    for parts in ([run([d]) for d in window], [run(window[:cut]), run(window[cut:])]):
        assert pl.concat([p.cleaned for p in parts]).equals(whole.cleaned)
        assert pl.concat([p.quarantine for p in parts]).equals(whole.quarantine)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 19),  # the break day
            st.sampled_from([0.1, 10.0, 0.01, 100.0, 0.5]),  # its factor
            st.one_of(st.none(), st.integers(1, 6)),  # reverts after this many sessions, or never
            st.integers(0, 3),  # a missing bar after the break, at this offset (0: none)
        ),
        min_size=3,
        max_size=3,
    ),
    st.integers(1, 19),
)
def test_invariant_range_equals_day_by_day_with_level_breaks(days, breaks, cut):
    """Decimal breaks that revert after 1..6 sessions or never (and a few missing bars): cleaning 20 sessions
    at once, in two chunks, or one by one gives the same rows, and a level that held is an UNEXPLAINED_SPLIT
    on the first session after BREAK_CONFIRM_SESSIONS at it."""
    window = days[:20]
    rows = []
    for symbol, (start, factor, revert, gap), base in zip("ABC", breaks, (50.0, 8.0, 120.0), strict=True):
        for i, day in enumerate(window):
            if gap and i == start + gap:
                continue
            shifted = start <= i and (revert is None or i < start + revert)
            level = base * (1 + (i % 4) / 100) * (factor if shifted else 1.0)
            rows.append(
                bar(symbol=symbol, date=day, open=level, high=level * 1.01, low=level * 0.99, close=level)
            )
    raw = frame(*rows)

    def run(part: list[dt.date]):
        first = window.index(part[0])
        history = raw.filter(
            pl.col("date").is_in(pl.Series(window[max(0, first - HISTORY_SESSIONS) : first]).implode())
        )
        mine = raw.filter(pl.col("date").is_in(pl.Series(part).implode()))
        return clean_prices(mine, part, history=history)

    whole = run(window)
    for parts in ([run([d]) for d in window], [run(window[:cut]), run(window[cut:])]):
        assert pl.concat([p.cleaned for p in parts]).equals(whole.cleaned)
        assert pl.concat([p.quarantine for p in parts]).equals(whole.quarantine)
    got = quarantined(whole)
    for symbol, (start, factor, revert, gap) in zip("ABC", breaks, strict=True):
        splits_of = [d for (s, d), r in got.items() if s == symbol and r == UNEXPLAINED_SPLIT]
        if factor == 0.5 or start < 5:  # a 2:1 split is flagged on its day; no full reference before day 5
            continue
        if revert is None and not gap and start + 3 < len(window):  # caught on its 4th session, only there
            assert splits_of == [window[start + 3]]
        if revert is not None and revert <= BREAK_CONFIRM_SESSIONS:  # a glitch, however long its recovery
            assert splits_of == []
