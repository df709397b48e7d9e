"""Corporate actions: reading a user's split list and point-in-time back-adjustment (domain/corporate_actions)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.corporate_actions import (
    CORPORATE_ACTIONS_SCHEMA,
    CorporateActionError,
    back_adjust,
    cumulative_factor,
    normalize_corporate_actions,
    read_corporate_actions,
)

# AAPL's 7:1 split: ex_date 2014-06-09. Unadjusted closes around it (as printed on the tape at the time).
THU, FRI, EX, TUE = dt.date(2014, 6, 5), dt.date(2014, 6, 6), dt.date(2014, 6, 9), dt.date(2014, 6, 10)


def actions(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [{"symbol": s, "ex_date": d, "ratio": r, "source": "test"} for s, d, r in rows],
        schema=CORPORATE_ACTIONS_SCHEMA,
    )


def unadjusted_aapl() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["AAPL"] * 4,
            "date": [THU, FRI, EX, TUE],
            "open": [646.20, 649.90, 92.70, 94.73],
            "high": [649.37, 651.26, 93.88, 95.05],
            "low": [642.61, 644.47, 91.75, 93.57],
            "close": [647.35, 645.57, 93.70, 94.25],
            "volume": [10_000_000, 12_000_000, 75_000_000, 62_000_000],
        }
    )


AAPL_7_1 = actions(("AAPL", EX, 7.0))


# ------------------------------------------------------------------------------------------------ back_adjust


def test_back_adjust_7_for_1_divides_earlier_prices_and_multiplies_volume():
    out = back_adjust(unadjusted_aapl(), AAPL_7_1, as_of=TUE)
    raw = unadjusted_aapl()
    before = out.filter(pl.col("date") < EX)
    assert before["close"].to_list() == pytest.approx([647.35 / 7, 645.57 / 7])
    assert before["open"].to_list() == pytest.approx([646.20 / 7, 649.90 / 7])
    assert before["volume"].to_list() == [70_000_000, 84_000_000]
    # on and after the ex_date nothing changes, and the series is now continuous (-0.4% and +1.6%, not -85%)
    assert out.filter(pl.col("date") >= EX).equals(raw.filter(pl.col("date") >= EX))
    closes = out["close"].to_list()
    assert closes[2] / closes[1] == pytest.approx(93.70 / (645.57 / 7))
    assert 0.98 < closes[2] / closes[1] < 1.03
    assert out.columns == raw.columns and out.schema == raw.schema


def test_back_adjust_is_point_in_time():
    bars = unadjusted_aapl().filter(pl.col("date") <= FRI)
    # As of Friday the split (ex Monday) is not known: nothing changes, even if the list already holds it.
    assert back_adjust(bars, AAPL_7_1, as_of=FRI).equals(bars)
    with pytest.raises(ValueError, match="after as_of=2014-06-06"):
        back_adjust(unadjusted_aapl(), AAPL_7_1, as_of=FRI)


def test_back_adjust_compounds_and_ignores_other_symbols():
    bars = pl.DataFrame(
        {
            "symbol": ["X", "X", "X", "Y"],
            "session": [dt.date(2020, 1, 2), dt.date(2020, 3, 2), dt.date(2020, 6, 1), dt.date(2020, 1, 2)],
            "open": [100.0, 50.0, 100.0, 7.0],
            "high": [100.0, 50.0, 100.0, 7.0],
            "low": [100.0, 50.0, 100.0, 7.0],
            "close": [100.0, 50.0, 100.0, 7.0],
            "volume": [3, 5, 7, 11],
        }
    )
    acts = actions(("X", dt.date(2020, 2, 3), 2.0), ("X", dt.date(2020, 4, 1), 0.1))  # 2:1, then 1-for-10
    out = back_adjust(bars, acts, as_of=dt.date(2020, 6, 1))
    # first bar: both actions apply (x2 then x0.1 -> factor 0.2): 100 / 0.2 = 500; volume 3 * 0.2 = 0.6 -> 1
    assert out["close"].to_list() == pytest.approx([500.0, 500.0, 100.0, 7.0])
    assert out["volume"].to_list() == [1, 0, 7, 11]  # rounded to whole shares (5 * 0.1 = 0.5 -> 0)
    # as of before the reverse split only the 2:1 applies
    early = back_adjust(
        bars.filter(pl.col("session") <= dt.date(2020, 3, 2)), acts, as_of=dt.date(2020, 3, 2)
    )
    assert early["close"].to_list() == pytest.approx([50.0, 50.0, 7.0])


def test_back_adjust_without_actions_returns_the_bars():
    bars = unadjusted_aapl()
    assert back_adjust(bars, actions(), as_of=TUE).equals(bars)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.1, 0.25, 0.5, 2.0, 3.0, 4.0, 7.0]), min_size=1, max_size=4))
def test_back_adjusting_an_ideal_split_series_makes_it_flat(ratios):
    """A constant-value stock that splits several times is flat after adjustment, whatever the ratios."""
    days = [dt.date(2021, 1, 4) + dt.timedelta(days=7 * i) for i in range(len(ratios) + 1)]
    price, prices = 100.0, []
    for i in range(len(days)):
        prices.append(price)
        if i < len(ratios):
            price /= ratios[i]
    bars = pl.DataFrame(
        {
            "symbol": "S",
            "date": days,
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": 1000,
        }
    )
    acts = actions(*[("S", days[i + 1], r) for i, r in enumerate(ratios)])
    out = back_adjust(bars, acts, as_of=days[-1])
    assert out["close"].to_list() == pytest.approx([prices[-1]] * len(days))


def test_cumulative_factor_uses_only_actions_on_or_before_the_row():
    keys = pl.DataFrame({"symbol": ["AAPL", "AAPL", "AAPL", "MSFT"], "date": [FRI, EX, TUE, EX]})
    assert cumulative_factor(keys, AAPL_7_1, "date").to_list() == [1.0, 7.0, 7.0, 1.0]


# ------------------------------------------------------------------------------------------------ reading


def test_read_csv_with_text_ratios_and_aliases(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text(
        "Ticker,Date,Split Ratio\n"
        "aapl,2014-06-09,7:1\n"
        "XYZ,2020-01-02,1:10\n"
        "nflx,2015-07-15,7-for-1\n"
        "v,2015-03-19,4\n"
        "AAPL,2014-06-09,7/1\n"  # the same split twice, spelled differently: one row
    )
    out = read_corporate_actions(path)
    assert out.schema == pl.Schema(CORPORATE_ACTIONS_SCHEMA)
    assert out.select("symbol", "ex_date", "ratio").rows() == [
        ("AAPL", EX, 7.0),
        ("NFLX", dt.date(2015, 7, 15), 7.0),
        ("V", dt.date(2015, 3, 19), 4.0),
        ("XYZ", dt.date(2020, 1, 2), 0.1),
    ]
    assert set(out["source"]) == {"splits.csv"}  # no source column: the file name


def test_read_parquet(tmp_path):
    path = tmp_path / "splits.bin"
    AAPL_7_1.write_parquet(path)
    assert read_corporate_actions(path).equals(AAPL_7_1)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("symbol,ratio\nAAPL,7\n", r"missing corporate-action column\(s\) \['ex_date'\]"),
        ("symbol,ex_date,ratio\nAAPL,2014-06-09,0\n", "ratio <= 0"),
        ("symbol,ex_date,ratio\nAAPL,2014-06-09,-7\n", "ratio <= 0"),
        ("symbol,ex_date,ratio\nAAPL,2014-06-09,0:1\n", "ratio <= 0"),
        ("symbol,ex_date,ratio\nAAPL,2014-06-09,seven\n", "neither a number nor 'new:old' text.*seven"),
        ("symbol,ex_date,ratio\nAAPL,2014-06-09,7:0\n", "neither a number"),
        ("symbol,ex_date,ratio\nAAPL,09/06/2014,7\n", "'ex_date'.*not dates"),
        ("symbol,ex_date,ratio\n,2014-06-09,7\n", "lack a symbol"),
        (
            "symbol,ex_date,ratio\nAAPL,2014-06-09,7:1\nAAPL,2014-06-09,4:1\n",
            r"disagreeing ratios.*AAPL 2014-06-09: \[7.0, 4.0\]",
        ),
    ],
)
def test_read_errors_are_clear_and_name_the_file(tmp_path, content, match):
    path = tmp_path / "splits.csv"
    path.write_text(content)
    with pytest.raises(CorporateActionError, match=match) as err:
        read_corporate_actions(path)
    assert "splits.csv" in str(err.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(CorporateActionError, match="no such file"):
        read_corporate_actions(tmp_path / "nope.csv")


def test_normalize_keeps_a_given_source():
    df = pl.DataFrame(
        {"symbol": ["ko"], "ex_date": [dt.date(2012, 8, 13)], "ratio": [2], "source": ["vendor"]}
    )
    assert normalize_corporate_actions(df).row(0) == ("KO", dt.date(2012, 8, 13), 2.0, "vendor")
