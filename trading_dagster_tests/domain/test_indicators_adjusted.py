"""Indicators on split-adjusted prices, point in time: `compute_indicators_adjusted`.

The fixture takes real, already adjusted (smooth) bars from the shipped sample and "un-adjusts" them: the
prices before a chosen ex-date are multiplied by the split ratio (a 2:1 split doubles the old price), which
creates the break that unadjusted vendor data has, and the matching action is provided. Adjusting must then
make the split invisible from the ex-date on, change nothing before it (the split was not known yet), and
keep the anchored guarantee: a one-day run gives the bits of a range run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.corporate_actions import CORPORATE_ACTIONS_SCHEMA, back_adjust
from trading_dagster.domain.indicators import (
    ANCHOR_BLOCK,
    INDICATOR_COLUMNS,
    OUTPUT_COLUMNS,
    compute_indicators_adjusted,
    compute_indicators_anchored,
    required_input_start,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
SYMBOLS = ("AAPL", "MSFT", "SPY")  # AAPL one 2:1 split, MSFT a 3:1 then a 1-for-10, SPY none
N_SESSIONS = 1300
AAPL_EX = 600  # session indices of the ex-dates
MSFT_EX = (450, 560)
RTOL = 1e-9
PRICE_SCALED = {"macd", "macd_signal", "macd_hist"}  # cross zero: tolerance relative to the price level


@pytest.fixture(scope="module")
def sessions() -> tuple[dt.date, ...]:
    return nyse_calendar().sessions


@pytest.fixture(scope="module")
def smooth(sessions: tuple[dt.date, ...]) -> pl.DataFrame:
    """Adjusted sample bars of SYMBOLS over the first N_SESSIONS sessions, in the cleaned-prices schema."""
    return (
        pl.read_parquet(SAMPLE)
        .rename({"ticker": "symbol", "date": "session"})
        .filter(pl.col("symbol").is_in(SYMBOLS) & (pl.col("session") <= sessions[N_SESSIONS - 1]))
        .select("symbol", "session", "open", "high", "low", "close", "volume")
        .sort("session", "symbol")
    )


@pytest.fixture(scope="module")
def actions(sessions: tuple[dt.date, ...]) -> pl.DataFrame:
    rows = [
        ("AAPL", sessions[AAPL_EX], 2.0),
        ("MSFT", sessions[MSFT_EX[0]], 3.0),
        ("MSFT", sessions[MSFT_EX[1]], 0.1),
    ]
    return pl.DataFrame(
        [(s, d, r, "test") for s, d, r in rows], schema=CORPORATE_ACTIONS_SCHEMA, orient="row"
    )


def unadjust(bars: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    """Bars as an unadjusted vendor delivers them: before each ex-date prices x ratio, volume / ratio."""
    factor = pl.lit(1.0)
    for symbol, ex_date, ratio, _ in actions.iter_rows():
        factor = factor * pl.when((pl.col("symbol") == symbol) & (pl.col("session") < ex_date)).then(
            ratio
        ).otherwise(1.0)
    return bars.with_columns(
        *(pl.col(c) * factor for c in ("open", "high", "low", "close")),
        (pl.col("volume") / factor).round(0).cast(pl.Int64),
    )


@pytest.fixture(scope="module")
def raw(smooth: pl.DataFrame, actions: pl.DataFrame) -> pl.DataFrame:
    return unadjust(smooth, actions)


@pytest.fixture(scope="module")
def span(raw: pl.DataFrame, sessions: tuple[dt.date, ...]) -> tuple[dt.date, dt.date]:
    """The output range: from a session whose whole lookback is in the data, to the last bar."""
    return sessions[300], raw["session"].max()


def input_for(
    bars: pl.DataFrame, sessions: tuple[dt.date, ...], start: dt.date, end: dt.date
) -> pl.DataFrame:
    """Exactly the bars an asset run for [start, end] loads: from required_input_start to end."""
    return bars.filter(pl.col("session").is_between(required_input_start(sessions, start), end))


def assert_close(actual: pl.DataFrame, expected: pl.DataFrame, label: str) -> None:
    """Same keys and null positions; values equal to RTOL (relative; to the price level for MACD)."""
    assert actual.select("symbol", "session").equals(expected.select("symbol", "session")), label
    close = expected["close"].to_numpy()
    for column in ("close", *INDICATOR_COLUMNS):
        a = actual[column].fill_null(np.nan).to_numpy()
        e = expected[column].fill_null(np.nan).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(e)), f"{label}.{column}: null positions differ"
        scale = np.maximum(np.abs(e), close) if column in PRICE_SCALED else np.abs(e)
        bad = np.flatnonzero(np.abs(a - e) > RTOL * scale)
        assert bad.size == 0, f"{label}.{column}: {bad.size} values off, first {a[bad[0]]!r} vs {e[bad[0]]!r}"


def rows_of(
    frame: pl.DataFrame, symbol: str, after: dt.date | None = None, before: dt.date | None = None
) -> pl.DataFrame:
    out = frame.filter(pl.col("symbol") == symbol)
    if after is not None:
        out = out.filter(pl.col("session") >= after)
    if before is not None:
        out = out.filter(pl.col("session") < before)
    return out


@pytest.fixture(scope="module")
def adjusted(raw, actions, sessions, span) -> pl.DataFrame:
    return compute_indicators_adjusted(raw, actions, sessions, *span)


# ---------------------------------------------------------------- the split is invisible from the ex-date on


def test_split_is_invisible_on_and_after_the_ex_date(adjusted, smooth, raw, sessions, span) -> None:
    reference = compute_indicators_anchored(smooth, sessions, *span)
    assert adjusted.columns == list(OUTPUT_COLUMNS)
    assert adjusted.schema == reference.schema
    assert adjusted.height == reference.height
    aapl_ex, msft_last_ex = sessions[AAPL_EX], sessions[MSFT_EX[1]]
    assert_close(rows_of(adjusted, "AAPL", after=aapl_ex), rows_of(reference, "AAPL", after=aapl_ex), "AAPL")
    assert_close(
        rows_of(adjusted, "MSFT", after=msft_last_ex), rows_of(reference, "MSFT", after=msft_last_ex), "MSFT"
    )
    assert rows_of(adjusted, "SPY").equals(rows_of(reference, "SPY"))  # no action: the fast path, untouched
    # not vacuous: without the actions the break shows in every lookback that crosses the ex-date
    unadjusted = compute_indicators_anchored(raw, sessions, *span)
    day_after = rows_of(unadjusted, "AAPL", after=aapl_ex).head(1)
    assert day_after["sma_200"].item() > 1.5 * day_after["close"].item()
    assert day_after["high_52w"].item() > 1.9 * day_after["close"].item()


def test_between_two_splits_only_the_first_is_applied(adjusted, smooth, sessions, span) -> None:
    """MSFT between its 3:1 and its 1-for-10: in units of the share of that time (smooth x 0.1)."""
    lo, hi = sessions[MSFT_EX[0]], sessions[MSFT_EX[1]]
    reference = compute_indicators_anchored(
        unadjust(
            smooth, pl.DataFrame([("MSFT", hi, 0.1, "t")], schema=CORPORATE_ACTIONS_SCHEMA, orient="row")
        ),
        sessions,
        *span,
    )
    got = rows_of(adjusted, "MSFT", after=lo, before=hi)
    assert got.height == MSFT_EX[1] - MSFT_EX[0]
    assert_close(got, rows_of(reference, "MSFT", after=lo, before=hi), "MSFT between splits")


# ---------------------------------------------------------------- point in time: before the ex-date nothing changes


def test_rows_before_the_ex_date_are_the_unadjusted_computation(adjusted, raw, sessions, span) -> None:
    unadjusted = compute_indicators_anchored(raw, sessions, *span)
    for symbol, first_ex in (("AAPL", sessions[AAPL_EX]), ("MSFT", sessions[MSFT_EX[0]])):
        before = rows_of(adjusted, symbol, before=first_ex)
        assert before.height > 100
        assert before.equals(rows_of(unadjusted, symbol, before=first_ex)), symbol


def test_close_column_is_the_raw_close(adjusted, raw, span) -> None:
    """A session's own bar is never adjusted: no split known on D is dated after D."""
    expected = raw.filter(pl.col("session").is_between(*span)).select("symbol", "session", "close")
    assert adjusted.select("symbol", "session", "close").equals(expected.sort("session", "symbol"))


def test_same_rule_as_back_adjust(adjusted, raw, actions, sessions) -> None:
    """Each row equals the anchored computation on `back_adjust(bars up to D, actions, as_of=D)`."""
    for i in (AAPL_EX - 1, AAPL_EX, AAPL_EX + 7, MSFT_EX[0] + 3, MSFT_EX[1], MSFT_EX[1] + 120):
        day = sessions[i]
        bars = input_for(raw, sessions, day, day)
        reference = compute_indicators_anchored(back_adjust(bars, actions, as_of=day), sessions, day, day)
        assert_close(adjusted.filter(pl.col("session") == day), reference, str(day))


# ---------------------------------------------------------------- range == one day at a time, bit for bit


def test_range_equals_one_session_at_a_time(adjusted, raw, actions, sessions, span) -> None:
    around = {AAPL_EX, *MSFT_EX, 2 * ANCHOR_BLOCK, 3 * ANCHOR_BLOCK, 4 * ANCHOR_BLOCK}
    indices = sorted({i + k for i in around for k in range(-3, 4)} | {N_SESSIONS - 1})
    days = [sessions[i] for i in indices]
    one_by_one = pl.concat(
        [compute_indicators_adjusted(input_for(raw, sessions, d, d), actions, sessions, d, d) for d in days]
    )
    assert one_by_one.equals(adjusted.filter(pl.col("session").is_in(days)))
    # a range run that starts elsewhere, and a day run given all of history, give the same bits too; from
    # session 4 * 252 on, MSFT's splits are before the day run's input (its fast path) but inside the range's
    short_range = compute_indicators_adjusted(
        input_for(raw, sessions, days[0], days[-1]), actions, sessions, days[0], days[-1]
    )
    assert short_range.filter(pl.col("session").is_in(days)).equals(one_by_one)
    for d in (sessions[AAPL_EX + 2], sessions[4 * ANCHOR_BLOCK + 1]):
        everything = compute_indicators_adjusted(raw.filter(pl.col("session") <= d), actions, sessions, d, d)
        assert everything.equals(one_by_one.filter(pl.col("session") == d)), d


# ---------------------------------------------------------------- no actions, irrelevant actions


def test_no_actions_is_exactly_the_anchored_computation(raw, sessions, span) -> None:
    expected = compute_indicators_anchored(raw, sessions, *span)
    assert compute_indicators_adjusted(raw, None, sessions, *span).equals(expected)
    assert compute_indicators_adjusted(
        raw, pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA), sessions, *span
    ).equals(expected)
    # actions of a symbol that is not in the frame go through the slow path and change nothing
    other = pl.DataFrame([("NOPE", sessions[700], 4.0, "t")], schema=CORPORATE_ACTIONS_SCHEMA, orient="row")
    assert compute_indicators_adjusted(raw, other, sessions, *span).equals(expected)


def test_an_action_after_end_changes_nothing(raw, sessions) -> None:
    start, end = sessions[400], sessions[900]
    bars = raw.filter(pl.col("session") <= sessions[1100])  # the input even holds bars past the action
    later = pl.DataFrame(
        [("AAPL", sessions[901], 2.0, "t"), ("MSFT", sessions[1000], 0.5, "t")],
        schema=CORPORATE_ACTIONS_SCHEMA,
        orient="row",
    )
    assert compute_indicators_adjusted(bars, later, sessions, start, end).equals(
        compute_indicators_anchored(bars, sessions, start, end)
    )


def test_actions_before_the_input_change_nothing(raw, sessions) -> None:
    start, end = sessions[1000], sessions[1100]
    bars = input_for(raw, sessions, start, end)
    early = pl.DataFrame([("AAPL", sessions[10], 7.0, "t")], schema=CORPORATE_ACTIONS_SCHEMA, orient="row")
    assert compute_indicators_adjusted(bars, early, sessions, start, end).equals(
        compute_indicators_anchored(bars, sessions, start, end)
    )


def test_user_spelled_actions_and_empty_range(raw, sessions, span, adjusted) -> None:
    """Actions in any form `normalize_corporate_actions` accepts: ticker/date/'2:1' text."""
    spelled = pl.DataFrame(
        {
            "ticker": ["aapl", "MSFT", "MSFT"],
            "date": [str(sessions[AAPL_EX]), str(sessions[MSFT_EX[0]]), str(sessions[MSFT_EX[1]])],
            "ratio": ["2:1", "3:1", "1:10"],
        }
    )
    assert compute_indicators_adjusted(raw, spelled, sessions, *span).equals(adjusted)
    saturday = dt.date(2010, 3, 13)
    empty = compute_indicators_adjusted(raw, spelled, sessions, saturday, saturday)
    assert empty.height == 0 and empty.columns == list(OUTPUT_COLUMNS)
    with pytest.raises(ValueError, match="after"):
        compute_indicators_adjusted(raw, spelled, sessions, sessions[10], sessions[5])
