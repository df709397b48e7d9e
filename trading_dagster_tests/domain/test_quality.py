"""Vendor-outage sessions: row counts against the previous sessions, zero-volume shares; and the signals
held out after an unexplained split (domain/quality)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.bars import RAW_SCHEMA
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.prices import DECIMAL_SHIFT, UNEXPLAINED_SPLIT, clean_prices
from trading_dagster.domain.quality import (
    BREAK_HOLD_SESSIONS,
    COUNTS_SCHEMA,
    OUTAGE_LOOKBACK,
    OUTAGE_MISSING_SYMBOLS,
    OUTAGE_SCHEMA,
    OUTAGE_ZERO_VOLUME,
    flag_outage_sessions,
    flag_outages,
    hold_out_unexplained_breaks,
    missing_symbols,
    outage_sessions,
    session_counts,
)

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
SESSIONS = nyse_calendar().between(dt.date(2024, 1, 2), dt.date(2024, 2, 29))


def counts(rows: list[int], zero: list[int] | None = None, days: list[dt.date] = SESSIONS) -> pl.DataFrame:
    zero = zero or [0] * len(rows)
    return pl.DataFrame(
        {"session": days[: len(rows)], "rows": rows, "zero_volume_rows": zero}, schema=COUNTS_SCHEMA
    )


def flagged(out: pl.DataFrame) -> dict[dt.date, str]:
    return dict(outage_sessions(out).select("session", "reason").iter_rows())


def test_session_counts_counts_symbols_once_and_zero_volume_symbols():
    d1, d2 = SESSIONS[:2]
    bars = pl.DataFrame(
        {
            "symbol": ["A", "A", "B", "C", None, "A"],
            "date": [d1, d1, d1, d1, d1, d2],
            "volume": [0, 5, 7, 0, 0, 1],
        }
    )
    out = session_counts(bars)
    assert out.schema == pl.Schema(COUNTS_SCHEMA)
    assert out.rows() == [(d1, 3, 2), (d2, 1, 0)]  # A twice counts once; the symbol-less row not at all
    assert session_counts(bars.rename({"date": "session"})).equals(out)
    assert session_counts(bars.head(0)).height == 0


def test_a_sharp_drop_in_rows_is_flagged_against_the_median_of_the_previous_sessions():
    out = flag_outage_sessions(counts([100] * 10 + [59, 60, 100]))
    assert out.schema == pl.Schema(OUTAGE_SCHEMA)
    assert out.height == 13  # one row per session, normal ones with a null reason
    assert flagged(out) == {SESSIONS[10]: OUTAGE_MISSING_SYMBOLS}  # 59% < 60%; 60% is not below
    row = out.filter(pl.col("session") == SESSIONS[10]).row(0, named=True)
    assert row["reference_rows"] == 100.0
    assert row["detail"] == (
        "59 rows against a reference of 100.0 (median of the previous 10 sessions): 59.0% of it, below 60%"
    )


def test_the_first_sessions_have_no_reference_and_are_not_flagged_for_missing_rows():
    out = flag_outage_sessions(counts([100, 100, 100, 100, 10, 100, 10]))
    assert out["reference_rows"].null_count() == 5
    assert flagged(out) == {SESSIONS[6]: OUTAGE_MISSING_SYMBOLS}


def test_one_earlier_outage_does_not_lower_the_reference():
    out = flag_outage_sessions(counts([100] * 6 + [30] + [100] * 3 + [30]))
    assert flagged(out) == {SESSIONS[6]: OUTAGE_MISSING_SYMBOLS, SESSIONS[10]: OUTAGE_MISSING_SYMBOLS}
    assert out["reference_rows"][10] == 100.0


def test_a_large_share_of_zero_volume_rows_is_flagged():
    out = flag_outage_sessions(counts([100, 100, 100], zero=[10, 11, 0]))
    assert flagged(out) == {SESSIONS[1]: OUTAGE_ZERO_VOLUME}  # 11% > 10%, exactly 10% is not
    assert out["detail"][1] == "11 of 100 rows have volume 0 (11.0%, above 10%)"


def test_both_reasons_name_the_second_in_detail():
    out = flag_outage_sessions(counts([100] * 10 + [40], zero=[0] * 10 + [20]))
    row = outage_sessions(out).row(0, named=True)
    assert row["reason"] == OUTAGE_MISSING_SYMBOLS
    assert row["detail"].endswith("(also OUTAGE_ZERO_VOLUME: 20 of 40 rows have volume 0 (50.0%, above 10%))")


def test_a_window_session_without_any_row_is_an_outage():
    c = counts([100] * 12).filter(pl.col("session") != SESSIONS[11])
    out = flag_outage_sessions(c, window=SESSIONS[10:12])
    assert out["session"].to_list() == SESSIONS[10:12]
    assert flagged(out) == {SESSIONS[11]: OUTAGE_MISSING_SYMBOLS}
    assert out.row(1, named=True)["rows"] == 0


def test_counts_must_have_one_row_per_session():
    with pytest.raises(ValueError, match="one row per session"):
        flag_outage_sessions(pl.concat([counts([1]), counts([2])]))


def test_range_equals_day_by_day_and_history_sessions_count_empty_days():
    rows = [100, 98, 0, 101, 99, 100, 97, 100, 40, 100, 99, 100, 100, 30, 100, 100, 100, 100, 100, 100, 100]
    zero = [0, 0, 0, 0, 0, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # Session 2 had no rows at all: it is absent from the counts, as session_counts would leave it.
    c = counts(rows, zero).filter(pl.col("rows") > 0)
    first = OUTAGE_LOOKBACK + 1
    window = SESSIONS[first : len(rows)]
    whole = flag_outage_sessions(c, window=window, history_sessions=SESSIONS[1:first])
    for i, day in enumerate(window):
        history = SESSIONS[first + i - OUTAGE_LOOKBACK : first + i]
        mine = c.filter(pl.col("session").is_in(pl.Series([*history, day]).implode()))
        assert flag_outage_sessions(mine, window=[day], history_sessions=history).equals(whole[i : i + 1])
    assert flagged(whole) == {SESSIONS[13]: OUTAGE_MISSING_SYMBOLS}


def test_missing_symbols_against_the_previous_session():
    d1, d2, d3 = SESSIONS[:3]
    bars = pl.DataFrame({"symbol": ["SPY", "IWM", "AAPL", "AAPL", "MSFT"], "date": [d1, d1, d1, d2, d2]})
    assert missing_symbols(bars, d2) == ["IWM", "SPY"]
    assert missing_symbols(bars, d1) == []
    assert missing_symbols(bars, d3) == ["AAPL", "MSFT"]  # the previous session is the latest one present


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample data not present at {SAMPLE}")
def test_sample_data_2010_04_26_is_a_zero_volume_outage():
    bars = pl.read_parquet(SAMPLE, columns=["ticker", "date", "volume"]).rename({"ticker": "symbol"})
    out = flag_outage_sessions(session_counts(bars))
    assert flagged(out) == {dt.date(2010, 4, 26): OUTAGE_ZERO_VOLUME}  # 33 of the 42 symbols
    # 2011-02-17 is the other outage of the source; in the 42-symbol sample only 6 are missing (86% of the
    # reference, not flagged), but they are named:
    assert missing_symbols(bars, dt.date(2011, 2, 17)) == ["DIA", "IWM", "MA", "NFLX", "SPY", "V"]


def test_flag_outages_of_a_partition_with_its_history():
    day = SESSIONS[OUTAGE_LOOKBACK]
    history = pl.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(10)] * OUTAGE_LOOKBACK,
            "date": [d for d in SESSIONS[:OUTAGE_LOOKBACK] for _ in range(10)],
            "volume": 100,
        }
    )
    raw = pl.DataFrame(
        {"symbol": ["S0", "S1", "S2", "S3", "S4"], "date": [day] * 5, "volume": [0, 1, 1, 1, 1]}
    )
    out = flag_outages(raw, [day], history=history, history_sessions=SESSIONS[:OUTAGE_LOOKBACK])
    assert out.select("session", "rows", "reference_rows", "zero_volume_rows", "reason").row(0) == (
        day,
        5,
        10.0,
        1,
        OUTAGE_MISSING_SYMBOLS,
    )
    assert flag_outages(raw, [day])["reason"].to_list() == [OUTAGE_ZERO_VOLUME]  # no history: 1 of 5 at 0


# ------------------------------------------------------------------------------------ unexplained breaks


def _walk(symbol: str, closes: list[float]) -> list[dict]:
    return [
        {"symbol": symbol, "date": d, "open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": 100}
        for d, c in zip(SESSIONS[: len(closes)], closes, strict=True)
    ]


def test_a_decimal_break_that_held_holds_the_signals_from_its_confirmation_on():
    """An unadjusted 10:1 split with no action on file: its first BREAK_CONFIRM_SESSIONS bars are decimal
    shifts (no bar, so no signal), the next one is the UNEXPLAINED_SPLIT, and from that session on the
    symbol's signals are held out for `hold` sessions; a one-day glitch holds nothing."""
    n = 20
    split = [100.0 + i % 3 for i in range(6)] + [10.0 + (i % 3) / 10 for i in range(n - 6)]
    glitch = [50.0 + i % 2 for i in range(n)]
    glitch[6] = glitch[6] / 10
    raw = pl.DataFrame(_walk("SPLIT", split) + _walk("GLITCH", glitch), schema=RAW_SCHEMA)
    quarantine = clean_prices(raw, SESSIONS[:n]).quarantine
    assert quarantine.select("symbol", "session", "reason").sort("symbol", "session").rows() == [
        ("GLITCH", SESSIONS[6], DECIMAL_SHIFT),
        ("SPLIT", SESSIONS[6], DECIMAL_SHIFT),
        ("SPLIT", SESSIONS[7], DECIMAL_SHIFT),
        ("SPLIT", SESSIONS[8], DECIMAL_SHIFT),
        ("SPLIT", SESSIONS[9], UNEXPLAINED_SPLIT),
    ]
    breaks = quarantine.filter(pl.col("reason") == UNEXPLAINED_SPLIT)  # what the signals asset reads
    signals = pl.DataFrame(
        [(d, s, "sma_cross") for s in ("SPLIT", "GLITCH") for d in SESSIONS[:n]],
        schema={"session": pl.Date, "symbol": pl.Utf8, "strategy": pl.Utf8},
        orient="row",
    )
    kept, held = hold_out_unexplained_breaks(signals, breaks, SESSIONS, hold=5)
    assert held.select("symbol", "session").rows() == [("SPLIT", d) for d in SESSIONS[9:14]]
    assert kept.height + held.height == signals.height
    assert BREAK_HOLD_SESSIONS == 252  # the default: the 52-week high no longer spans the break
    _, default = hold_out_unexplained_breaks(signals, breaks, SESSIONS)
    assert default.select("symbol", "session").rows() == [("SPLIT", d) for d in SESSIONS[9:n]]
