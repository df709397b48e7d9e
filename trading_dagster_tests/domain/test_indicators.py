"""Indicators against independent references, on real bars from the shipped sample.

Two references, both written here and not taken from the code under test:
* TA-Lib called directly on each symbol's full, single-symbol series (the spec of every column), and
* plain numpy / Python formulas for the indicators whose definition is short (SMA, population-std
  Bollinger bands, Wilder RSI and ATR, SMA-seeded EMA, 52-week high), so that a wrong TA-Lib parameter
  in both places would still be caught.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.indicators import (
    ANCHOR_BLOCK,
    LOOKBACK_SESSIONS,
    WARMUP,
    compute_indicators,
    compute_indicators_anchored,
    required_input_start,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"

EXPECTED_COLUMNS = [
    "symbol",
    "session",
    "close",
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "high_52w",
    "pct_below_high_52w",
    "ret_1",
    "ret_5",
    "ret_21",
    "ret_63",
    "volume_ratio_20",
]
VALUE_COLUMNS = EXPECTED_COLUMNS[3:]

# Index of the first non-null value in a symbol's series, from the definitions: an n-bar average needs n
# bars (n - 1 before), RSI/ATR need n price changes (n bars before), MACD needs the 26-bar EMA plus a 9-bar
# signal EMA over it (25 + 8), the 52-week high needs 252 bars.
FIRST_VALUE = {
    "sma_20": 19,
    "sma_50": 49,
    "sma_200": 199,
    "ema_12": 11,
    "ema_26": 25,
    "rsi_14": 14,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "bb_upper": 19,
    "bb_middle": 19,
    "bb_lower": 19,
    "atr_14": 14,
    "high_52w": 251,
    "pct_below_high_52w": 251,
    "ret_1": 1,  # close / close n bars earlier - 1: n bars before
    "ret_5": 5,
    "ret_21": 21,
    "ret_63": 63,
    "volume_ratio_20": 19,
}
# Differences of two price-level quantities cross zero, where a relative error means nothing; their
# tolerance is relative to the price level instead.
PRICE_SCALED = {"macd", "macd_signal", "macd_hist"}
RTOL = 1e-9


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sessions() -> tuple[dt.date, ...]:
    return nyse_calendar().sessions


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    """The sample plus three made-up symbols: a late listing, a 100-bar symbol, and one with gaps."""
    raw = pl.read_parquet(SAMPLE).rename({"ticker": "symbol", "date": "session"})
    sample = raw.select("symbol", "session", "open", "high", "low", "close", "volume")
    ipo = sample.filter((pl.col("symbol") == "AAPL") & (pl.col("session") >= dt.date(2013, 3, 1)))
    tiny = sample.filter(pl.col("symbol") == "MSFT").sort("session").slice(1500, 100)
    gappy = (
        sample.filter(pl.col("symbol") == "XOM")
        .sort("session")
        .with_row_index()
        .filter((pl.col("index") % 9) != 4)
        .drop("index")
    )
    extra = [
        ipo.with_columns(symbol=pl.lit("ZIPO")),
        tiny.with_columns(symbol=pl.lit("ZTINY")),
        gappy.with_columns(symbol=pl.lit("ZGAP")),
    ]
    return pl.concat([sample, *extra]).sort("session", "symbol")


@pytest.fixture(scope="module")
def full(prices: pl.DataFrame) -> pl.DataFrame:
    return compute_indicators(prices)


@pytest.fixture(scope="module")
def anchored_all(prices: pl.DataFrame, sessions: tuple[dt.date, ...]) -> pl.DataFrame:
    return compute_indicators_anchored(prices, sessions, prices["session"].min(), prices["session"].max())


def talib_reference(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """TA-Lib over one symbol's whole series, parameters spelled out from docs/design.md."""
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2, matype=talib.MA_Type.SMA)
    high_52w = talib.MAX(high, timeperiod=252)
    return {
        "sma_20": talib.SMA(close, 20),
        "sma_50": talib.SMA(close, 50),
        "sma_200": talib.SMA(close, 200),
        "ema_12": talib.EMA(close, 12),
        "ema_26": talib.EMA(close, 26),
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr_14": talib.ATR(high, low, close, 14),
        "high_52w": high_52w,
        "pct_below_high_52w": (high_52w - close) / high_52w * 100,  # the formula of docs/design.md
        **{f"ret_{n}": talib.ROCR(close, n) - 1 for n in (1, 5, 21, 63)},
        "volume_ratio_20": volume / talib.SMA(volume, 20),  # the sample's volumes are never all 0 for 20 bars
    }


def series_of(frame: pl.DataFrame, symbol: str) -> pl.DataFrame:
    return frame.filter(pl.col("symbol") == symbol).sort("session")


def as_float(frame: pl.DataFrame, column: str) -> np.ndarray:
    """Nulls as NaN, for numeric comparison (the no-NaN contract is tested separately)."""
    return frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray, label: str) -> None:
    """Same null positions, and |actual - expected| <= RTOL * scale elsewhere."""
    nulls_a, nulls_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nulls_a, nulls_e), (
        f"{label}: null positions differ at {np.flatnonzero(nulls_a != nulls_e)[:5]}"
    )
    bad = np.flatnonzero(np.abs(actual - expected) > RTOL * scale)
    assert bad.size == 0, (
        f"{label}: {bad.size} values off, first at {bad[0]}: {actual[bad[0]]!r} vs {expected[bad[0]]!r}"
    )


# ---------------------------------------------------------------- shape and contract


def test_columns_types_and_row_per_bar(prices: pl.DataFrame, full: pl.DataFrame) -> None:
    assert full.columns == EXPECTED_COLUMNS
    assert full.schema["symbol"] == pl.Utf8 and full.schema["session"] == pl.Date
    assert all(full.schema[c] == pl.Float64 for c in ["close", *VALUE_COLUMNS])
    assert full.height == prices.height
    keys = full.select("session", "symbol")
    assert keys.equals(prices.select("session", "symbol").sort("session", "symbol"))
    assert full.select("symbol", "session", "close").equals(
        prices.select("symbol", "session", "close").sort("session", "symbol")
    )


def test_no_nan_only_nulls(full: pl.DataFrame, anchored_all: pl.DataFrame) -> None:
    for frame in (full, anchored_all):
        nans = frame.select(pl.col(VALUE_COLUMNS).is_nan().sum()).row(0)
        assert sum(nans) == 0
        # and nulls do occur (the lookbacks), so the check above is not vacuous
        assert frame["sma_200"].null_count() > 0


# ---------------------------------------------------------------- against TA-Lib on full single-symbol series


def test_full_history_matches_talib_per_symbol(prices: pl.DataFrame, full: pl.DataFrame) -> None:
    for symbol in prices["symbol"].unique().sort():
        bars = series_of(prices, symbol)
        got = series_of(full, symbol)
        assert got["session"].equals(bars["session"])
        ref = talib_reference(*(bars[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close", "volume")))
        close = bars["close"].to_numpy()
        for column in VALUE_COLUMNS:
            expected = ref[column]
            scale = np.maximum(np.abs(expected), close) if column in PRICE_SCALED else np.abs(expected)
            assert_close(as_float(got, column), expected, scale, f"{symbol}.{column}")


def test_anchored_matches_talib_over_full_history(
    prices: pl.DataFrame, anchored_all: pl.DataFrame, sessions: tuple[dt.date, ...]
) -> None:
    """Where the anchor window holds all of a symbol's earlier bars the inputs are the same, so the values
    must be identical; where it holds >= WARMUP of them, the recursions must have converged."""
    index = {d: i for i, d in enumerate(sessions)}
    exact_rows = converged_rows = 0
    for symbol in prices["symbol"].unique().sort():
        bars = series_of(prices, symbol)
        got = series_of(anchored_all, symbol)
        assert got["session"].equals(bars["session"])
        ref = talib_reference(*(bars[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close", "volume")))
        close = bars["close"].to_numpy()
        days = bars["session"].to_list()
        # first bar of the symbol inside the anchor window of each session
        window_start = [sessions[max(0, index[d] // ANCHOR_BLOCK * ANCHOR_BLOCK - WARMUP)] for d in days]
        first_in_window = np.searchsorted(np.array(days), np.array(window_start))
        bars_before_in_window = np.arange(len(days)) - first_in_window
        exact = first_in_window == 0
        converged = ~exact & (bars_before_in_window >= WARMUP)
        exact_rows += int(exact.sum())
        converged_rows += int(converged.sum())
        for column in VALUE_COLUMNS:
            actual, expected = as_float(got, column), ref[column]
            assert np.array_equal(actual[exact], expected[exact], equal_nan=True), (
                f"{symbol}.{column} not exact"
            )
            scale = np.maximum(np.abs(expected), close) if column in PRICE_SCALED else np.abs(expected)
            assert_close(actual[converged], expected[converged], scale[converged], f"{symbol}.{column}")
    # the two comparisons cover (nearly) everything: liquid names miss a session or two at most
    assert exact_rows > 0 and converged_rows > 0
    assert exact_rows + converged_rows >= 0.99 * prices.height


def test_simple_indicators_match_numpy_definitions(full: pl.DataFrame) -> None:
    """Definitions written out without TA-Lib, on SPY: catches a wrong parameter shared with the reference."""
    spy = series_of(full, "SPY")
    close = spy["close"].to_numpy()
    n = close.size

    def windows(x: np.ndarray, w: int) -> np.ndarray:
        return np.lib.stride_tricks.sliding_window_view(x, w)

    def padded(values: np.ndarray, first: int) -> np.ndarray:
        return np.concatenate([np.full(first, np.nan), values])

    def check(column: str, expected: np.ndarray) -> None:
        assert_close(as_float(spy, column), expected, np.abs(np.nan_to_num(expected)) + 1e-300, column)

    for w in (20, 50, 200):
        check(f"sma_{w}", padded(windows(close, w).mean(axis=1), w - 1))
    mean20, std20 = windows(close, 20).mean(axis=1), windows(close, 20).std(axis=1, ddof=0)  # population
    check("bb_middle", padded(mean20, 19))
    check("bb_upper", padded(mean20 + 2 * std20, 19))
    check("bb_lower", padded(mean20 - 2 * std20, 19))

    # 52-week high needs the day's high, which the output does not carry: take it from the sample.
    raw = pl.read_parquet(SAMPLE).filter(pl.col("ticker") == "SPY").sort("date")
    high = raw["high"].to_numpy()
    low = raw["low"].to_numpy()
    h52 = padded(windows(high, 252).max(axis=1), 251)
    check("high_52w", h52)
    check("pct_below_high_52w", (h52 - close) / h52 * 100)
    for lag in (1, 5, 21, 63):
        check(f"ret_{lag}", padded(close[lag:] / close[:-lag] - 1, lag))
    volume = raw["volume"].cast(pl.Float64).to_numpy()
    check("volume_ratio_20", padded(volume[19:] / windows(volume, 20).mean(axis=1), 19))

    def ema(x: np.ndarray, period: int) -> np.ndarray:
        out = np.full(x.size, np.nan)
        out[period - 1] = x[:period].mean()
        alpha = 2.0 / (period + 1)
        for i in range(period, x.size):
            out[i] = alpha * x[i] + (1 - alpha) * out[i - 1]
        return out

    check("ema_12", ema(close, 12))
    check("ema_26", ema(close, 26))

    def wilder(x: np.ndarray, period: int, first: int) -> np.ndarray:
        """Wilder smoothing of x[1:], seeded with the mean of the first `period` values."""
        out = np.full(n, np.nan)
        avg = x[first - period + 1 : first + 1].mean()
        out[first] = avg
        for i in range(first + 1, n):
            avg = (avg * (period - 1) + x[i]) / period
            out[i] = avg
        return out

    change = np.concatenate([[np.nan], np.diff(close)])
    gain = wilder(np.where(change > 0, change, 0.0), 14, 14)
    loss = wilder(np.where(change < 0, -change, 0.0), 14, 14)
    check("rsi_14", 100 * gain / (gain + loss))
    prev_close = np.concatenate([[np.nan], close[:-1]])
    true_range = np.maximum.reduce([high - low, np.abs(high - prev_close), np.abs(low - prev_close)])
    check("atr_14", wilder(true_range, 14, 14))

    # MACD: TA-Lib seeds its EMAs its own way; after 500 bars any seed has decayed below 1e-12.
    macd = ema(close, 12) - ema(close, 26)
    signal = np.full(n, np.nan)
    signal[25:] = ema(macd[25:], 9)
    late = slice(500, n)
    for column, expected in (("macd", macd), ("macd_signal", signal), ("macd_hist", macd - signal)):
        assert np.all(np.abs(as_float(spy, column)[late] - expected[late]) <= RTOL * close[late]), column


# ---------------------------------------------------------------- lookbacks and late listings


def first_non_null(frame: pl.DataFrame, column: str) -> int | None:
    values = frame[column]
    return None if values.null_count() == values.len() else int(values.is_not_null().arg_max())


@pytest.mark.parametrize("which", ["full", "anchored"])
def test_nulls_until_full_lookback(which: str, full: pl.DataFrame, anchored_all: pl.DataFrame) -> None:
    frame = full if which == "full" else anchored_all
    ipo = series_of(frame, "ZIPO")  # anchored: its first bar is inside the anchor window of early sessions
    for column, first in FIRST_VALUE.items():
        assert first_non_null(ipo, column) == first, column
        assert ipo[column][first:].null_count() == 0, column
    tiny = series_of(frame, "ZTINY")  # 100 bars
    assert tiny.height == 100
    for column in ("sma_200", "high_52w", "pct_below_high_52w"):
        assert tiny[column].null_count() == 100
    assert first_non_null(tiny, "sma_50") == 49


# ---------------------------------------------------------------- anchored recursion: range == one day at a time


def test_constants_and_required_input_start(sessions: tuple[dt.date, ...]) -> None:
    assert (ANCHOR_BLOCK, WARMUP, LOOKBACK_SESSIONS) == (252, 400, 651)
    assert required_input_start(sessions, sessions[100]) == sessions[0]
    assert required_input_start(sessions, sessions[1007]) == sessions[3 * 252 - 400]
    assert required_input_start(sessions, sessions[1008]) == sessions[4 * 252 - 400]
    # a non-session (a Saturday) starts at the next session's block
    saturday = dt.date(2012, 3, 10)
    assert required_input_start(sessions, saturday) == required_input_start(sessions, dt.date(2012, 3, 12))
    lookbacks = [i - sessions.index(required_input_start(sessions, d)) for i, d in enumerate(sessions[:2600])]
    assert max(lookbacks) == LOOKBACK_SESSIONS


def input_for(
    prices: pl.DataFrame, sessions: tuple[dt.date, ...], start: dt.date, end: dt.date
) -> pl.DataFrame:
    """Exactly the bars an asset run for [start, end] loads: from required_input_start to end."""
    first = required_input_start(sessions, start)
    return prices.filter(pl.col("session").is_between(first, end))


def test_range_equals_one_session_at_a_time_across_a_block_boundary(
    prices: pl.DataFrame, anchored_all: pl.DataFrame, sessions: tuple[dt.date, ...]
) -> None:
    boundary = 4 * ANCHOR_BLOCK
    days = sessions[boundary - 5 : boundary + 5]
    ranged = compute_indicators_anchored(
        input_for(prices, sessions, days[0], days[-1]), sessions, days[0], days[-1]
    )
    one_by_one = pl.concat(
        [compute_indicators_anchored(input_for(prices, sessions, d, d), sessions, d, d) for d in days]
    )
    assert ranged.height == prices.filter(pl.col("session").is_between(days[0], days[-1])).height
    assert ranged.equals(one_by_one)
    # and the ten-year run over everything gives the same bits for those sessions
    assert anchored_all.filter(pl.col("session").is_between(days[0], days[-1])).equals(ranged)


def test_anchoring_is_what_makes_runs_agree(prices: pl.DataFrame, sessions: tuple[dt.date, ...]) -> None:
    """Without the anchor, a one-day run's EMA/SMA bits depend on how much history it was given."""
    day = sessions[1500]
    short = compute_indicators(prices.filter(pl.col("session").is_between(sessions[1500 - 500], day)))
    long = compute_indicators(prices.filter(pl.col("session") <= day))
    assert not short.filter(pl.col("session") == day).equals(long.filter(pl.col("session") == day))
    a = compute_indicators_anchored(prices.filter(pl.col("session") <= day), sessions, day, day)
    b = compute_indicators_anchored(input_for(prices, sessions, day, day), sessions, day, day)
    assert a.equals(b) and a.height > 40


def test_input_order_does_not_matter(
    prices: pl.DataFrame, full: pl.DataFrame, sessions: tuple[dt.date, ...]
) -> None:
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled.equals(prices)
    assert compute_indicators(shuffled).equals(full)
    start, end = sessions[1200], sessions[1300]
    assert compute_indicators_anchored(shuffled, sessions, start, end).equals(
        compute_indicators_anchored(prices, sessions, start, end)
    )


def test_empty_range_and_input(prices: pl.DataFrame, sessions: tuple[dt.date, ...]) -> None:
    saturday = dt.date(2012, 3, 10)
    assert compute_indicators_anchored(prices, sessions, saturday, saturday).columns == EXPECTED_COLUMNS
    assert compute_indicators_anchored(prices, sessions, saturday, saturday).height == 0
    assert compute_indicators(prices.head(0)).columns == EXPECTED_COLUMNS
    with pytest.raises(ValueError, match="after"):
        compute_indicators_anchored(prices, sessions, sessions[10], sessions[5])


def test_rejects_duplicate_bars_and_nulls(prices: pl.DataFrame) -> None:
    spy = series_of(prices, "SPY").head(30)
    with pytest.raises(ValueError, match="unique"):
        compute_indicators(pl.concat([spy, spy.tail(1)]))
    with pytest.raises(ValueError, match="null"):
        compute_indicators(
            spy.with_columns(
                close=pl.when(pl.col("session") == spy["session"][3]).then(None).otherwise("close")
            )
        )


# ---------------------------------------------------------------- invariants on generated bars


@st.composite
def bar_sets(draw: st.DrawFn) -> pl.DataFrame:
    """One to three symbols with random walks, flat stretches, late starts and missing sessions."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_symbols = draw(st.integers(1, 3))
    rng = np.random.default_rng(seed)
    frames = []
    calendar = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(400)]
    for s in range(n_symbols):
        n = draw(st.integers(1, 320))
        flat = draw(st.floats(0.0, 0.9))
        steps = np.where(rng.random(n) < flat, 0.0, rng.normal(0, draw(st.floats(0.001, 0.2)), n))
        close = np.exp(np.log(draw(st.floats(0.5, 2000.0))) + np.cumsum(steps))
        high = close * (1 + np.where(rng.random(n) < flat, 0.0, rng.exponential(0.01, n)))
        low = close * (1 - np.minimum(0.9, np.where(rng.random(n) < flat, 0.0, rng.exponential(0.01, n))))
        start = int(rng.integers(0, len(calendar) - n + 1))
        days = sorted(rng.choice(calendar[start:], size=n, replace=False))  # gaps
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{s}",
                    "session": days,
                    "open": (high + low) / 2,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": rng.integers(0, 10**6, n),
                }
            )
        )
    return pl.concat(frames)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bar_sets())
def test_invariants_on_generated_bars(bars: pl.DataFrame) -> None:
    out = compute_indicators(bars).join(bars.select("symbol", "session", "high"), on=["symbol", "session"])
    assert out.height == bars.height
    v = out.drop_nulls("rsi_14")
    assert ((v["rsi_14"] >= 0) & (v["rsi_14"] <= 100)).all()
    v = out.drop_nulls("bb_middle")
    assert ((v["bb_lower"] <= v["bb_middle"]) & (v["bb_middle"] <= v["bb_upper"])).all()
    v = out.drop_nulls("high_52w")
    assert (v["high_52w"] >= v["high"]).all()
    assert (v["pct_below_high_52w"] >= 0).all()
    assert (out.drop_nulls("atr_14")["atr_14"] >= 0).all()
    sma = out.sort("symbol", "session").with_columns(
        lo=pl.col("close").rolling_min(20).over("symbol"), hi=pl.col("close").rolling_max(20).over("symbol")
    )
    v = sma.drop_nulls("sma_20")
    assert ((v["sma_20"] >= v["lo"] * (1 - 1e-12)) & (v["sma_20"] <= v["hi"] * (1 + 1e-12))).all()
    counts = out.group_by("symbol").agg(pl.len().cast(pl.Int64), pl.col(VALUE_COLUMNS).count().cast(pl.Int64))
    for column, first in FIRST_VALUE.items():
        assert (counts[column] == (counts["len"] - first).clip(0)).all(), column


def test_volume_is_optional_and_only_the_volume_ratio_needs_it(prices: pl.DataFrame, full: pl.DataFrame) -> None:
    """Prices without a volume column (or with null volumes) give a null volume_ratio_20 and the same bits
    for every other column; the full computation does fill it in (so the nulls are not vacuous)."""
    others = [c for c in EXPECTED_COLUMNS if c != "volume_ratio_20"]
    assert full["volume_ratio_20"].null_count() < full.height // 2
    no_volume = compute_indicators(prices.drop("volume"))
    assert no_volume.columns == EXPECTED_COLUMNS
    assert no_volume["volume_ratio_20"].null_count() == no_volume.height
    assert no_volume.select(others).equals(full.select(others))
    null_volume = compute_indicators(prices.with_columns(pl.lit(None, dtype=pl.Int64).alias("volume")))
    assert null_volume.equals(no_volume)


def test_the_feature_columns_are_anchored_like_the_rest(prices: pl.DataFrame, sessions: tuple[dt.date, ...]) -> None:
    """ret_1/5/21/63 and volume_ratio_20 of a one-session run are the range run's bits, across a block boundary,
    and are filled in there (so the equality is not one of nulls)."""
    boundary = 6 * ANCHOR_BLOCK
    days = sessions[boundary - 3 : boundary + 3]
    ranged = compute_indicators_anchored(input_for(prices, sessions, days[0], days[-1]), sessions, days[0], days[-1])
    features = ["symbol", "session", "ret_1", "ret_5", "ret_21", "ret_63", "volume_ratio_20"]
    for day in days:
        alone = compute_indicators_anchored(input_for(prices, sessions, day, day), sessions, day, day)
        assert alone.select(features).equals(ranged.filter(pl.col("session") == day).select(features)), day
    spy = ranged.filter(pl.col("symbol") == "SPY")
    assert spy.select(features[2:]).null_count().row(0) == (0,) * 5 and spy.height == len(days)
