"""Vendor outages against the active-symbol baseline (domain/quality.py): sessions without usable bars,
many active symbols missing, zero-volume outages, degraded stretches; point in time, a range equal to
day-by-day runs; on real rows cut from the shared datasets. And the signals held out after an unexplained
split.

The real-row samples in trading_dagster_tests/data/ were cut from ../shared/data with a fixed seed:
`outages_main_2010_2011.parquet` (symbol, date, close, volume of AAPL, DIA, IWM, MSFT, SPY and 195 random
tickers of the 2008-2017 file, the 70 sessions before and 2 after each of its two outages, 2010-04-26 and
2011-02-17) and `outages_nasdaq_2023.parquet` (the 26 tickers with a bar on 2023-04-17 and 174 random
others of the NASDAQ file, from 70 sessions before 2023-04-14 to its end).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.bars import RAW_SCHEMA
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.prices import UNCONFIRMED_BREAK, UNEXPLAINED_SPLIT, clean_prices
from trading_dagster.domain.quality import (
    ACTIVE_SHARE,
    ACTIVE_WINDOW,
    BREAK_HOLD_SESSIONS,
    DEGRADED_MIN_SESSIONS,
    OUTAGE_DEGRADED,
    OUTAGE_HISTORY_SESSIONS,
    OUTAGE_MISSING_SYMBOLS,
    OUTAGE_NO_BARS,
    OUTAGE_SCHEMA,
    OUTAGE_ZERO_VOLUME,
    flag_outages,
    hold_out_unexplained_breaks,
    no_bar_sessions,
    outage_sessions,
    outage_stretches,
)

DATA = Path(__file__).parents[1] / "data"
SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
CAL = nyse_calendar()
SESSIONS = CAL.between(dt.date(2024, 1, 2), dt.date(2024, 12, 31))


def universe(n: int, days: list[dt.date], volume: int = 100) -> pl.DataFrame:
    """`n` symbols S000.. with a bar on every session of `days`."""
    return pl.DataFrame(
        {
            "symbol": [f"S{i:03d}" for _ in days for i in range(n)],
            "date": [d for d in days for _ in range(n)],
            "close": 10.0,
            "volume": volume,
        },
        schema={"symbol": pl.Utf8, "date": pl.Date, "close": pl.Float64, "volume": pl.Int64},
    )


def drop(bars: pl.DataFrame, day: dt.date, symbols) -> pl.DataFrame:
    return bars.filter(~((pl.col("date") == day) & pl.col("symbol").is_in(list(symbols))))


def names(n: int, first: int = 0) -> list[str]:
    return [f"S{i:03d}" for i in range(first, first + n)]


def flags_of(bars: pl.DataFrame, days: list[dt.date] = SESSIONS) -> pl.DataFrame:
    return flag_outages(bars, days, None, CAL)


def flagged(out: pl.DataFrame) -> dict[dt.date, str]:
    return dict(outage_sessions(out).select("session", "reason").iter_rows())


def row(out: pl.DataFrame, day: dt.date) -> dict:
    return out.filter(pl.col("session") == day).row(0, named=True)


def test_a_session_missing_a_fifth_of_the_active_symbols_is_an_outage():
    days = SESSIONS[:70]
    bars = drop(drop(universe(100, days), days[65], names(20)), days[67], names(19, 50))
    out = flags_of(bars, days)
    assert out.schema == pl.Schema(OUTAGE_SCHEMA)
    assert out["session"].to_list() == days  # one row per session, normal ones with a null reason
    assert flagged(out) == {days[65]: OUTAGE_MISSING_SYMBOLS}  # 20 of 100 missing; 19 is below 20%
    r = row(out, days[65])
    assert (r["rows"], r["active_symbols"], r["missing_count"], r["missing_share"]) == (80, 100, 20, 0.2)
    assert r["missing_sample"] == ", ".join(names(20))
    assert r["detail"] == (
        "20 of 100 active symbols have no usable bar (20.0%, at least 20%; active: a bar on at least 50% of "
        f"the {ACTIVE_WINDOW} sessions with data among the previous {ACTIVE_WINDOW})"
    )
    assert row(out, days[67])["missing_count"] == 19 and row(out, days[67])["reason"] is None


def test_a_session_without_rows_or_with_only_null_rows_is_OUTAGE_NO_BARS_even_without_a_baseline():
    days = SESSIONS[:40]
    bars = universe(10, days).filter(pl.col("date") != days[2])  # early: no baseline yet
    bars = bars.filter(pl.col("date") != days[30])  # the vendor delivered nothing
    nulls = pl.col("date") == days[31]  # every price null: delivered, but no bar
    bars = bars.with_columns(close=pl.when(nulls).then(None).otherwise(pl.col("close")))
    out = flags_of(bars, days)
    assert flagged(out) == {d: OUTAGE_NO_BARS for d in (days[2], days[30], days[31])}
    assert no_bar_sessions(out) == [days[2], days[30], days[31]]
    assert row(out, days[2])["detail"] == "no rows: the vendor delivered nothing"
    assert row(out, days[2])["active_symbols"] is None
    assert row(out, days[30])["detail"] == "no rows: the vendor delivered nothing; all 10 active symbols are missing"
    r = row(out, days[31])
    assert (r["rows"], r["null_rows"], r["missing_count"]) == (10, 10, 10)
    assert r["detail"].startswith("10 rows, none with a close (null rows); all 10 active symbols are missing")
    assert r["missing_sample"] == ", ".join(names(10))


def test_null_rows_count_as_missing_symbols():
    days = SESSIONS[:70]
    bars = universe(100, days).with_columns(
        close=pl.when((pl.col("date") == days[66]) & pl.col("symbol").is_in(names(25))).then(None).otherwise(pl.col("close"))
    )
    r = row(flags_of(bars, days), days[66])
    assert (r["reason"], r["rows"], r["null_rows"], r["missing_count"]) == (OUTAGE_MISSING_SYMBOLS, 100, 25, 25)


def test_one_missing_symbol_is_no_outage_two_of_three_are():
    days = SESSIONS[:70]
    bars = drop(drop(universe(3, days), days[66], ["S000"]), days[68], ["S000", "S001"])
    out = flags_of(bars, days)
    assert flagged(out) == {days[68]: OUTAGE_MISSING_SYMBOLS}
    assert row(out, days[66])["missing_share"] == pytest.approx(1 / 3)  # a third, but one symbol: a halt


def test_no_missing_symbol_verdict_before_the_baseline_has_twenty_sessions():
    days = SESSIONS[:30]
    bars = drop(drop(universe(10, days), days[19], names(5)), days[20], names(5))
    out = flags_of(bars, days)
    assert out["active_symbols"].null_count() == 20  # sessions 0..19 have fewer than 20 before them
    assert flagged(out) == {days[20]: OUTAGE_MISSING_SYMBOLS}


def test_sessions_without_bars_are_no_evidence_so_a_long_blackout_does_not_empty_the_baseline():
    days = SESSIONS[:110]
    blackout = set(days[30:70])
    bars = universe(10, days).filter(~pl.col("date").is_in(list(blackout)))
    bars = drop(bars, days[70], names(5))
    out = flags_of(bars, days)
    # 40 of the 63 sessions before days[70] had no bar: the 23 others make the baseline, all 10 are active
    assert row(out, days[70])["active_symbols"] == 10
    assert flagged(out) == {**{d: OUTAGE_NO_BARS for d in blackout}, days[70]: OUTAGE_MISSING_SYMBOLS}


def test_zero_volume_is_judged_among_the_symbols_that_usually_trade():
    days = SESSIONS[:70]
    bars = pl.concat([universe(80, days), universe(20, days, volume=0).with_columns(pl.col("symbol").str.replace("S", "W"))])
    zero = lambda day, n: (pl.col("date") == day) & pl.col("symbol").is_in(names(n))  # noqa: E731
    bars = bars.with_columns(
        volume=pl.when(zero(days[65], 9) | zero(days[67], 8)).then(0).otherwise(pl.col("volume"))
    )
    out = flags_of(bars, days)
    # every session has 20% of its rows at volume 0 (warrants that never trade): that is normal here
    assert flagged(out) == {days[65]: OUTAGE_ZERO_VOLUME}  # 9 of 80 traders (11.25%); 8 (10%) is not above
    assert row(out, days[65])["detail"] == "9 of 80 bars of symbols that usually trade have volume 0 (11.2%, above 10%)"
    # no verdict before the baseline exists (each zero-volume bar is quarantined by cleaning anyway)
    assert out.filter(pl.col("session") < days[20])["zero_volume_rows"].to_list() == [0] * 20


def _degrade(bars: pl.DataFrame, days: list[dt.date], low: float, high: float, most: float, seed: int) -> pl.DataFrame:
    """Drop a random `low`..`high` share of each day's symbols on a random `most` share of `days`."""
    rng = np.random.default_rng(seed)
    for day in days:
        if rng.random() < most:
            present = sorted(bars.filter(pl.col("date") == day)["symbol"].to_list())
            k = int(len(present) * rng.uniform(low, high))
            bars = drop(bars, day, rng.choice(present, k, replace=False).tolist())
    return bars


def test_the_baseline_does_not_sink_with_a_degraded_feed():
    """Issue 8, finding 9: for months 20-40% of the active symbols missing on most days. The median row
    count of the previous 10 sessions sank with the gaps; the active set does not."""
    days = SESSIONS[:200]
    bad = days[70:190]
    bars = _degrade(universe(100, days), bad, 0.2, 0.4, 0.8, seed=9)
    out = flags_of(bars, days)
    short = out.filter(pl.col("missing_share") >= 0.2)["session"].to_list()
    assert len(short) > 80 and set(short) <= set(bad)
    assert set(flagged(out)) == set(short)  # every such day is flagged, from the first to the last
    assert out.filter(pl.col("session").is_in(bad))["active_symbols"].min() >= 90
    [stretch] = outage_stretches(outage_sessions(out))
    assert (stretch.first, stretch.last) == (short[0], short[-1])
    assert stretch.label() == f"{short[0]}..{short[-1]} OUTAGE_MISSING_SYMBOLS (degraded stretch, {len(short)} session(s) flagged in this run)"
    detail = row(out, short[-1])["detail"]
    assert "(also OUTAGE_DEGRADED: degraded stretch since " in detail


def test_a_smaller_share_missing_on_most_sessions_is_a_degraded_stretch_reported_as_a_range():
    days = SESSIONS[:120]
    degraded = [d for i, d in enumerate(days[70:100]) if i % 4 != 3]  # 3 sessions of 4, 8% missing
    bars = universe(100, days)
    for i, day in enumerate(degraded):
        bars = drop(bars, day, names(8, first=(i * 8) % 90))
    bars = drop(bars, days[110], names(8))  # one such session alone is nothing
    out = flags_of(bars, days)
    first_flag = degraded[DEGRADED_MIN_SESSIONS - 1]  # the tenth degraded session of the last 20
    assert flagged(out) == {d: OUTAGE_DEGRADED for d in degraded if d >= first_flag}
    r = row(out, first_flag)
    assert r["stretch_start"] == degraded[0]
    assert r["detail"] == (
        f"degraded stretch since {degraded[0]} or earlier: 10 of the last 20 sessions miss at least 5% of the "
        "active symbols; this one 8 of 100 (8.0%)"
    )
    [stretch] = outage_stretches(outage_sessions(out))
    assert (stretch.first, stretch.last, stretch.reasons) == (degraded[0], degraded[-1], (OUTAGE_DEGRADED,))
    assert stretch.label().startswith(f"{degraded[0]}..{degraded[-1]} OUTAGE_DEGRADED (degraded stretch")


def test_a_delisted_symbol_leaves_the_active_set_and_is_never_an_outage():
    days = SESSIONS[:140]
    bars = universe(100, days).filter(~(pl.col("symbol").is_in(names(3)) & (pl.col("date") >= days[80])))
    out = flags_of(bars, days)
    assert flagged(out) == {}
    active = out["active_symbols"].to_list()
    gone = int(ACTIVE_WINDOW * (1 - ACTIVE_SHARE))  # they still had bars on half of the window until then
    assert active[80 + gone] == 100 and active[80 + gone + 1] == 97


def test_outage_stretches_keep_separate_outages_apart():
    days = SESSIONS[:70]
    bars = universe(20, days).filter(~pl.col("date").is_in([days[66], days[67]]))
    stretches = outage_stretches(outage_sessions(flags_of(bars, days)))
    assert [s.label() for s in stretches] == [f"{days[66]} OUTAGE_NO_BARS", f"{days[67]} OUTAGE_NO_BARS"]
    assert not stretches[0].is_stretch


def _by_day(bars: pl.DataFrame, window: list[dt.date]) -> pl.DataFrame:
    """What a run of `window` computes: its rows and the raw rows of the sessions before it it reads."""
    before = CAL.before(window[0], OUTAGE_HISTORY_SESSIONS)
    history = bars.filter(pl.col("date").is_in(before))
    return flag_outages(bars.filter(pl.col("date").is_in(window)), window, history, CAL)


def test_a_range_equals_the_same_sessions_one_by_one():
    days = SESSIONS[:160]
    bars = _degrade(universe(60, days), days[90:130], 0.05, 0.4, 0.7, seed=3)
    bars = bars.filter(pl.col("date") != days[100])  # an empty session inside the stretch
    bars = bars.with_columns(close=pl.when(pl.col("date") == days[140]).then(None).otherwise(pl.col("close")))
    window = days[85:150]
    whole = _by_day(bars, window)
    assert whole.equals(pl.concat([_by_day(bars, [d]) for d in window]))
    assert len(flagged(whole)) > 15 and flagged(whole)[days[140]] == OUTAGE_NO_BARS
    assert {OUTAGE_DEGRADED, OUTAGE_MISSING_SYMBOLS, OUTAGE_NO_BARS} <= set(flagged(whole).values())
    # history beyond OUTAGE_HISTORY_SESSIONS changes nothing
    assert flag_outages(bars.filter(pl.col("date").is_in(window)), window, bars.filter(pl.col("date") < window[0]), CAL).equals(whole)


def test_a_verdict_never_reads_its_own_session_or_the_future():
    days = SESSIONS[:10]
    bars = universe(5, days)
    with pytest.raises(ValueError, match="history holds 5 row"):
        flag_outages(bars.filter(pl.col("date") == days[5]), [days[5]], bars.filter(pl.col("date") == days[5]), CAL)
    with pytest.raises(ValueError, match="outside the window"):
        flag_outages(bars, days[:5], None, CAL)
    with pytest.raises(ValueError, match="not consecutive"):
        flag_outages(bars.head(0), [days[0], days[2]], None, CAL)


# ------------------------------------------------------------------------------------------- real rows


def _real_window(path: Path, first: dt.date, last: dt.date) -> tuple[pl.DataFrame, list[dt.date]]:
    bars = pl.read_parquet(path).filter(pl.col("date").is_between(first, last))
    return bars, CAL.between(first, last)


def test_real_2010_04_26_zero_volume_and_2011_02_17_missing_symbols_are_flagged_and_nothing_else():
    path = DATA / "outages_main_2010_2011.parquet"
    bars, _ = _real_window(path, dt.date(2010, 1, 1), dt.date(2010, 6, 30))
    days = CAL.between(bars["date"].min(), bars["date"].max())
    out = flags_of(bars, days)
    assert flagged(out) == {dt.date(2010, 4, 26): OUTAGE_ZERO_VOLUME}
    r = row(out, dt.date(2010, 4, 26))
    assert (r["rows"], r["zero_volume_rows"]) == (137, 30)  # AAPL among them (README: 317 of 1,339)
    assert bars.filter((pl.col("date") == dt.date(2010, 4, 26)) & (pl.col("symbol") == "AAPL"))["volume"].item() == 0

    bars, _ = _real_window(path, dt.date(2010, 11, 1), dt.date(2011, 3, 31))
    days = CAL.between(bars["date"].min(), bars["date"].max())
    out = flags_of(bars, days)
    assert flagged(out) == {dt.date(2011, 2, 17): OUTAGE_MISSING_SYMBOLS}
    r = row(out, dt.date(2011, 2, 17))
    assert (r["rows"], r["active_symbols"], r["missing_count"]) == (35, 141, 106)  # README: 374 of ~1,500
    day = set(bars.filter(pl.col("date") == dt.date(2011, 2, 17))["symbol"])
    assert {"AAPL", "MSFT"} <= day and not {"SPY", "IWM", "DIA"} & day


def test_real_nasdaq_partial_last_days_are_flagged():
    bars, _ = _real_window(DATA / "outages_nasdaq_2023.parquet", dt.date(2023, 1, 1), dt.date(2023, 4, 17))
    days = CAL.between(bars["date"].min(), dt.date(2023, 4, 17))
    out = flags_of(bars, days)
    assert flagged(out) == {dt.date(2023, 4, 14): OUTAGE_MISSING_SYMBOLS, dt.date(2023, 4, 17): OUTAGE_MISSING_SYMBOLS}
    assert out.filter(pl.col("session") >= dt.date(2023, 4, 14)).select("rows", "missing_count").rows() == [(27, 143), (26, 153)]


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"sample data not present at {SAMPLE}")
def test_real_rows_with_a_degraded_stretch_are_flagged_as_one_stretch_and_a_range_equals_day_by_day():
    """The shipped 42-symbol sample with 20-40% of its symbols dropped on 80% of the sessions of
    2012-02..2012-05: flagged as one stretch from its first degraded session; untouched, nothing in 2012."""
    sample = pl.read_parquet(SAMPLE).rename({"ticker": "symbol"}).filter(pl.col("date").is_between(dt.date(2011, 9, 1), dt.date(2012, 8, 31)))
    days = CAL.between(dt.date(2011, 9, 1), dt.date(2012, 8, 31))
    assert flagged(flags_of(sample, days)) == {}
    bad = CAL.between(dt.date(2012, 2, 1), dt.date(2012, 5, 31))
    bars = _degrade(sample, bad, 0.2, 0.4, 0.8, seed=2012)
    out = flags_of(bars, days)
    hit = outage_sessions(out)
    short = out.filter(pl.col("missing_share") >= 0.2)["session"]
    assert set(short) <= set(hit["session"]) <= set(bad) and len(short) > 40
    [stretch] = outage_stretches(hit)
    first_bad = out.filter(pl.col("missing_share") >= 0.05)["session"].min()
    assert (stretch.first, stretch.last) == (first_bad, hit["session"].max())
    assert out.filter(pl.col("session").is_in(bad))["active_symbols"].min() >= 40  # of 42: it did not sink
    window = CAL.between(dt.date(2012, 1, 20), dt.date(2012, 3, 15))
    assert _by_day(bars, window).equals(pl.concat([_by_day(bars, [d]) for d in window]))


# ------------------------------------------------------------------------------------ unexplained breaks


def _walk(symbol: str, closes: list[float]) -> list[dict]:
    return [
        {"symbol": symbol, "date": d, "open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": 100}
        for d, c in zip(SESSIONS[: len(closes)], closes, strict=True)
    ]


def test_a_decimal_break_that_held_holds_new_buys_from_its_confirmation_on_and_lets_sells_through():
    """An unadjusted 10:1 split with no action on file: its first BREAK_CONFIRM_SESSIONS bars are
    unconfirmed breaks (no bar, so no signal), the next one is the UNEXPLAINED_SPLIT and a price_breaks row,
    and from that session on the symbol's BUY signals are held out for `hold` sessions while its sells pass
    (a held position must stay closable); a one-day glitch holds nothing."""
    n = 20
    split = [100.0 + i % 3 for i in range(6)] + [10.0 + (i % 3) / 10 for i in range(n - 6)]
    glitch = [50.0 + i % 2 for i in range(n)]
    glitch[6] = glitch[6] / 10
    raw = pl.DataFrame(_walk("SPLIT", split) + _walk("GLITCH", glitch), schema=RAW_SCHEMA)
    result = clean_prices(raw, SESSIONS[:n])
    assert result.quarantine.select("symbol", "session", "reason").sort("symbol", "session").rows() == [
        ("GLITCH", SESSIONS[6], UNCONFIRMED_BREAK),
        ("SPLIT", SESSIONS[6], UNCONFIRMED_BREAK),
        ("SPLIT", SESSIONS[7], UNCONFIRMED_BREAK),
        ("SPLIT", SESSIONS[8], UNCONFIRMED_BREAK),
        ("SPLIT", SESSIONS[9], UNEXPLAINED_SPLIT),
    ]
    breaks = result.breaks  # what the signals asset reads (prices/price_breaks)
    assert breaks.select("symbol", "session", "break_date", "share_ratio", "kind").rows() == [
        ("SPLIT", SESSIONS[9], SESSIONS[6], 10.0, "split")
    ]
    signals = pl.DataFrame(
        [(d, s, "sma_cross", side) for s in ("SPLIT", "GLITCH") for d in SESSIONS[:n] for side in ("buy", "sell")],
        schema={"session": pl.Date, "symbol": pl.Utf8, "strategy": pl.Utf8, "side": pl.Utf8},
        orient="row",
    )
    kept, held = hold_out_unexplained_breaks(signals, breaks, SESSIONS, hold=5)
    assert held.select("symbol", "session", "side").rows() == [("SPLIT", d, "buy") for d in SESSIONS[9:14]]
    assert kept.filter(pl.col("side") == "sell").height == 2 * n  # every sell passes, the split's too
    assert kept.height + held.height == signals.height
    assert kept.equals(signals.join(held, on=signals.columns, how="anti", maintain_order="left"))  # order kept
    assert BREAK_HOLD_SESSIONS == 252  # the default: the 52-week high no longer spans the break
    _, default = hold_out_unexplained_breaks(signals, breaks, SESSIONS)
    assert default.select("symbol", "session").rows() == [("SPLIT", d) for d in SESSIONS[9:n]]
    collapse = breaks.with_columns(pl.lit("collapse").alias("kind"), pl.lit(None, dtype=pl.Float64).alias("share_ratio"))
    assert hold_out_unexplained_breaks(signals, collapse, SESSIONS)[1].is_empty()  # a real level holds nothing


def test_running_counts_are_the_cumulative_column_sums_of_the_rows_before():
    import numpy as np

    from trading_dagster.domain.quality import _running_counts

    rng = np.random.default_rng(3)
    matrix = rng.random((37, 11)) > 0.4
    out = _running_counts(matrix)
    assert out.shape == (38, 11) and out.dtype == np.int32
    assert (out[0] == 0).all()
    assert (out[1:] == np.cumsum(matrix, axis=0)).all()
