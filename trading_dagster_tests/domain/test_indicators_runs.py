"""The anchored computation row by row against its definition, on many short anchor blocks.

`compute_indicators_anchored` computes the recursions once per (symbol, anchor window) and the indicators that
depend only on the last bars (the 52-week high, ROCR for the returns) once over all symbols' bars, masked to
each window's lookback. Its definition is simpler: the row of session D is the last value of each indicator
computed with TA-Lib over the symbol's bars from D's anchor session to D. Checked here literally, one TA-Lib
run per output row, bit for bit (null where the definition gives NaN), with anchor blocks and warm-ups short
enough that rows sit on every side of every lookback: runs shorter than the 52-week window, runs that just
reach it, symbols listed mid-block, gaps, and extra SMA periods.
"""

from __future__ import annotations

import bisect
import datetime as dt

import numpy as np
import polars as pl
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_dagster.domain.indicators import INDICATOR_COLUMNS, compute_indicators_anchored

CALENDAR = tuple(dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(420))


def definition(bars: pl.DataFrame, extra_sma: tuple[int, ...]) -> dict[str, float]:
    """Every indicator's last value over `bars` (one symbol, session order), TA-Lib called as documented."""
    high, low, close = (bars[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close"))
    volume = bars["volume"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    high_52w = talib.MAX(high, timeperiod=252)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = volume / talib.SMA(volume, timeperiod=20)
    ratio[~np.isfinite(ratio)] = np.nan
    columns = {
        "sma_20": talib.SMA(close, timeperiod=20),
        "sma_50": talib.SMA(close, timeperiod=50),
        "sma_200": talib.SMA(close, timeperiod=200),
        "ema_12": talib.EMA(close, timeperiod=12),
        "ema_26": talib.EMA(close, timeperiod=26),
        "rsi_14": talib.RSI(close, timeperiod=14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr_14": talib.ATR(high, low, close, timeperiod=14),
        "high_52w": high_52w,
        "pct_below_high_52w": (high_52w - close) / high_52w * 100.0,
        **{f"ret_{n}": talib.ROCR(close, timeperiod=n) - 1.0 for n in (1, 5, 21, 63)},
        "volume_ratio_20": ratio,
        **{f"sma_{n}": talib.SMA(close, timeperiod=n) for n in extra_sma},
    }
    return {name: float(values[-1]) for name, values in columns.items()}


def assert_rows_follow_the_definition(
    bars: pl.DataFrame, out_start: dt.date, out_end: dt.date, anchor_block: int, warmup: int, extra_sma=()
) -> int:
    out = compute_indicators_anchored(bars, CALENDAR, out_start, out_end, anchor_block, warmup, extra_sma)
    expected_rows = bars.filter(pl.col("session").is_between(out_start, out_end)).sort("session", "symbol")
    assert out.select("symbol", "session").equals(expected_rows.select("symbol", "session"))
    assert out.columns == ["symbol", "session", "close", *INDICATOR_COLUMNS, *(f"sma_{n}" for n in extra_sma)]
    by_symbol = {key[0]: frame.sort("session") for key, frame in bars.partition_by("symbol", as_dict=True).items()}
    filled = 0
    for row in out.iter_rows(named=True):
        block = bisect.bisect_left(CALENDAR, row["session"]) // anchor_block
        anchor = CALENDAR[max(0, block * anchor_block - warmup)]
        history = by_symbol[row["symbol"]].filter(pl.col("session").is_between(anchor, row["session"]))
        for name, want in definition(history, extra_sma).items():
            got = row[name]
            if np.isnan(want):
                assert got is None, (row["symbol"], row["session"], name, got)
            else:
                filled += 1
                assert got is not None and np.float64(got).tobytes() == np.float64(want).tobytes(), (
                    row["symbol"], row["session"], name, got, want
                )
    return filled


def walk(seed: int, symbol: str, first: int, n: int, gap_every: int = 0, volume: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = list(CALENDAR[first : first + n])
    if gap_every:
        days = [d for i, d in enumerate(days) if i % gap_every != gap_every - 1]
    close = np.exp(np.log(50.0) + np.cumsum(rng.normal(0, 0.02, len(days))))
    return pl.DataFrame(
        {
            "symbol": symbol,
            "session": days,
            "high": close * (1 + rng.exponential(0.01, len(days))),
            "low": close * (1 - rng.exponential(0.01, len(days)).clip(0, 0.5)),
            "close": close,
            "volume": rng.integers(0, 10**6, len(days)) if volume else [None] * len(days),
        },
        schema_overrides={"volume": pl.Int64},
    )


BARS = pl.concat(
    [
        walk(1, "AAA", 0, 420),  # every session
        walk(2, "BBB", 37, 383, gap_every=7),  # listed mid-block, with gaps
        walk(3, "CCC", 150, 270),  # a late listing whose runs reach the 52-week window in some blocks only
        walk(4, "DDD", 400, 20),  # shorter than most lookbacks
    ]
)


@pytest.mark.parametrize(
    ("anchor_block", "warmup"),
    [(20, 260), (7, 255), (3, 251), (50, 0), (1, 300)],
    ids=["block20-warm260", "block7-warm255", "block3-warm251", "block50-nowarm", "block1-warm300"],
)
def test_every_row_is_its_anchored_definition(anchor_block: int, warmup: int) -> None:
    filled = assert_rows_follow_the_definition(BARS, CALENDAR[240], CALENDAR[419], anchor_block, warmup, (10, 120))
    assert filled > 1000  # the rows are not all null


def test_a_range_that_starts_mid_block_and_a_single_day() -> None:
    assert assert_rows_follow_the_definition(BARS, CALENDAR[333], CALENDAR[351], 20, 260) > 100
    assert assert_rows_follow_the_definition(BARS, CALENDAR[405], CALENDAR[405], 20, 260) > 20


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    anchor_block=st.integers(1, 60),
    warmup=st.integers(0, 320),
    lengths=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 420), st.integers(0, 9)), min_size=1, max_size=3),
    start=st.integers(250, 419),
)
def test_generated_symbols_blocks_and_warmups(seed, anchor_block, warmup, lengths, start) -> None:
    bars = pl.concat(
        [
            walk(seed + i, f"S{i}", first, min(n, 420 - first), gap_every=gap if gap > 1 else 0, volume=gap != 1)
            for i, (first, n, gap) in enumerate(lengths)
        ]
    )
    assert_rows_follow_the_definition(bars, CALENDAR[start], CALENDAR[-1], anchor_block, warmup)
