"""The indicators table carries the SMA periods of the configured crosses (issue 11: a swept pair such as 10/120
can be promoted and traded), computed exactly as its own SMAs: bit for bit the sweep kernel's, one session
equal to a range, split-adjusted point in time."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import talib

from trading_dagster.domain.indicators import (
    OUTPUT_COLUMNS,
    compute_indicators_adjusted,
    compute_indicators_anchored,
    sma_columns,
)
from trading_dagster.domain.strategies import parse_strategies, sma_periods
from trading_dagster.research.sweep import anchored_sma, pack_bars

EXTRA = [10, 120, 240]


def test_the_periods_needed_are_the_tables_and_the_crosses():
    specs = parse_strategies(
        [
            {"name": "a", "kind": "sma_cross", "params": {"fast": 10, "slow": 120}},
            {"name": "b", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}},
            {"name": "c", "kind": "rsi", "params": {"lower": 30, "upper": 70}},
        ]
    )
    assert sma_periods(specs) == (10, 20, 50, 120, 200)
    assert sma_columns([10, 20, 120, 200]) == ("sma_10", "sma_120")


def test_extra_smas_are_the_sweep_kernels_bit_for_bit(cleaned, calendar, sample_sessions):
    start, end = sample_sessions[300], sample_sessions[-1]
    table = compute_indicators_anchored(cleaned, calendar, start, end, extra_sma=EXTRA).sort("symbol", "session")
    assert table.columns == [*OUTPUT_COLUMNS, "sma_10", "sma_120", "sma_240"]
    bars = pack_bars(cleaned, calendar, start, end)
    in_window = bars.row >= 0
    for period in EXTRA:
        ours = table[f"sma_{period}"].to_numpy()
        kernel = anchored_sma(bars, period)[in_window]
        assert np.array_equal(np.isnan(ours), np.isnan(kernel))
        assert np.array_equal(ours[~np.isnan(ours)], kernel[~np.isnan(kernel)])
        assert (~np.isnan(ours)).sum() > 10_000  # defined on most rows: not a comparison of two empty columns
    plain = compute_indicators_anchored(cleaned, calendar, start, end).sort("symbol", "session")
    assert table.select(OUTPUT_COLUMNS).equals(plain)  # the other columns do not move


def test_one_session_equals_the_range_with_extra_smas(cleaned, calendar, sample_sessions):
    start, end = sample_sessions[1000], sample_sessions[1010]
    whole = compute_indicators_anchored(cleaned, calendar, start, end, extra_sma=EXTRA)
    for day in (start, sample_sessions[1005], end):
        alone = compute_indicators_anchored(cleaned, calendar, day, day, extra_sma=EXTRA)
        assert alone.equals(whole.filter(pl.col("session") == day))


def test_extra_smas_are_split_adjusted_point_in_time(cleaned, calendar, sample_sessions):
    symbol = "AAPL"
    bars = cleaned.filter(pl.col("symbol") == symbol).sort("session")
    ex_date = bars["session"][1500]
    actions = pl.DataFrame({"symbol": [symbol], "ex_date": [ex_date], "ratio": [2.0]})
    day = bars["session"][1505]
    out = compute_indicators_adjusted(cleaned, actions, calendar, day, day, extra_sma=[10, 120])
    row = out.filter(pl.col("symbol") == symbol).row(0, named=True)
    closes = bars.filter(pl.col("session") <= day)["close"].to_numpy().copy()
    dates = bars.filter(pl.col("session") <= day)["session"].to_list()
    closes[np.asarray([d < ex_date for d in dates])] /= 2.0  # as known on `day`: earlier bars in new shares
    for period in (10, 120):
        assert row[f"sma_{period}"] == pytest.approx(closes[-period:].mean(), rel=1e-12)
    assert row["sma_10"] == pytest.approx(talib.SMA(closes, 10)[-1], rel=1e-12)
    other = out.filter(pl.col("symbol") != symbol)
    plain = compute_indicators_anchored(cleaned, calendar, day, day, extra_sma=[10, 120])
    assert other.equals(plain.filter(pl.col("symbol") != symbol))


def test_bad_extra_periods_are_refused(cleaned, calendar, sample_sessions):
    day = sample_sessions[500]
    with pytest.raises(ValueError, match="distinct whole numbers >= 2"):
        compute_indicators_anchored(cleaned, calendar, day, day, extra_sma=[1])
    with pytest.raises(ValueError, match="distinct"):
        compute_indicators_anchored(cleaned, calendar, day, day, extra_sma=[10, 10])
