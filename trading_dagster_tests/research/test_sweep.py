"""The SMA sweep kernel (issue 11) equals our backtest and vectorbt, refuses what it cannot do, never looks ahead.

On the whole shipped sample (42 symbols, 2,485 sessions), cleaned by the pipeline.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from trading_dagster.research.sweep import (
    UnsupportedSetting,
    anchored_sma,
    pack_bars,
    settings_from_models,
    sma_grid,
    sweep_bars,
    sweep_sma_cross,
)
from trading_dagster_tests.reference.ours import REFERENCE_CONVENTIONS, run_ours
from trading_dagster_tests.reference.vectorbt_reference import vectorbt_sma_cross

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def bars(cleaned, calendar):
    return pack_bars(cleaned, calendar)


def test_the_default_grid_is_ten_by_ten():
    grid = sma_grid()
    assert len(grid) == 100 and grid[0] == (5, 60) and grid[-1] == (50, 240)


def test_the_kernels_sma_is_the_indicators_tables_bit_for_bit(cleaned, calendar, sample_sessions, bars):
    from trading_dagster.domain.indicators import compute_indicators_anchored

    table = compute_indicators_anchored(cleaned, calendar, sample_sessions[0], sample_sessions[-1]).sort(
        "symbol", "session"
    )
    assert table["symbol"].to_list() == [
        bars.symbols[j] for j in np.repeat(np.arange(len(bars.symbols)), np.diff(bars.offsets))
    ]
    for period in (20, 50, 200):
        ours = table[f"sma_{period}"].to_numpy()  # nulls -> NaN
        kernel = anchored_sma(bars, period)
        assert np.array_equal(np.isnan(ours), np.isnan(kernel))
        defined = ~np.isnan(ours)
        assert np.array_equal(ours[defined], kernel[defined])  # bit for bit, not approximately


def test_unanchored_the_sma_is_talibs_over_each_symbols_whole_history(bars):
    import talib

    for period in (7, 150):
        kernel = anchored_sma(bars, period, anchored=False)
        for j in range(len(bars.symbols)):
            a, b = bars.offsets[j], bars.offsets[j + 1]
            np.testing.assert_array_equal(kernel[a:b], talib.SMA(bars.close[a:b], timeperiod=period))
    # on the sample no symbol is sparse enough for the anchoring to matter
    assert sweep_bars(bars, GRID, anchored=False).stats.equals(sweep_bars(bars, GRID).stats)


@pytest.mark.parametrize(
    ("size_on", "fees_bps", "slippage_bps", "shares"),
    [
        ("close", 0, 0, "whole"),
        ("fill", 0, 0, "whole"),
        ("close", 1, 5, "whole"),
        ("fill", 1, 5, "whole"),
        ("fill", 1, 5, "fractional"),
        ("close", 1, 5, "fractional"),
    ],
)
def test_the_pair_20_50_equals_our_backtest(
    cleaned, sample_sessions, calendar, bars, size_on, fees_bps, slippage_bps, shares
):
    costs = {"fees_bps": fees_bps, "slippage_bps": slippage_bps}
    ours = run_ours(
        cleaned,
        sample_sessions,
        calendar=calendar,
        size_on=size_on,
        shares=shares,
        **costs,
        **REFERENCE_CONVENTIONS,
    )
    assert ours.n_orders > 2_000
    result = sweep_bars(bars, [(20, 50)], size_on=size_on, shares=shares, **costs, **REFERENCE_CONVENTIONS)
    row = result.stats.row(0, named=True)
    assert (row["orders"], row["trades"]) == (ours.n_orders, ours.n_trades)
    assert row["total_pnl"] == pytest.approx(ours.total_pnl, rel=TOLERANCE)
    assert row["final_value"] == pytest.approx(ours.final_value, rel=TOLERANCE)
    assert row["sharpe"] == pytest.approx(ours.sharpe, rel=TOLERANCE)
    assert result.sessions == sample_sessions
    np.testing.assert_allclose(result.equity[0], ours.equity["equity"].to_numpy(), rtol=1e-9)


GRID = [(f, s) for f in (7, 20, 33) for s in (50, 90, 150)]  # 7, 33, 90, 150: not in the indicators table


@pytest.mark.parametrize(
    ("size_on", "shares", "fees_bps", "slippage_bps", "pairs"),
    [("close", "whole", 1, 5, GRID), ("fill", "fractional", 2, 3, GRID[::4])],
)
def test_every_pair_equals_vectorbt(
    cleaned, sample_sessions, bars, size_on, shares, fees_bps, slippage_bps, pairs
):
    costs = {"fees_bps": fees_bps, "slippage_bps": slippage_bps}
    band = 1e-7  # decision 0006: exact decimal ties decided as ties on both sides, whatever the float bits
    result = sweep_bars(bars, pairs, size_on=size_on, shares=shares, tie_band_pct=band, **costs)
    for row in result.stats.iter_rows(named=True):
        ref = vectorbt_sma_cross(
            cleaned,
            fast=row["fast"],
            slow=row["slow"],
            sessions=sample_sessions,
            size_on=size_on,
            whole_shares=shares == "whole",
            tie_band_pct=band,
            **costs,
        )
        pair = (row["fast"], row["slow"])
        assert (row["orders"], row["trades"]) == (ref.n_orders, ref.n_trades), pair
        assert row["total_pnl"] == pytest.approx(ref.total_pnl, rel=TOLERANCE), pair
        assert row["sharpe"] == pytest.approx(ref.sharpe, rel=TOLERANCE), pair


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("buying_power", "cash"),
        ("monthly_share_limit", 4),
        ("max_position_pct_equity", 10),
        ("max_gross_exposure_pct_equity", 50),
        ("max_daily_loss_usd", 1_000),
        ("min_price", 1),
        ("stop_loss_pct", 5),
        ("take_profit_atr", 3),
        ("sizing", "atr"),
        ("round_cents", True),
        ("add_to_positions", True),
        ("slippage_spread_fraction", 0.5),
        ("commission_per_share", 0.005),
        ("no_such_setting", 1),
    ],
)
def test_unsupported_settings_are_refused_by_name(bars, setting, value):
    with pytest.raises(UnsupportedSetting, match=setting):
        sweep_bars(bars, [(20, 50)], **{setting: value})


def test_the_backtest_models_pass_only_with_the_reference_conventions(bars):
    from trading_dagster.domain.execution import CommissionModel, SlippageModel
    from trading_dagster.domain.risk import RiskConfig

    today = settings_from_models(RiskConfig(), SlippageModel(), CommissionModel())
    with pytest.raises(UnsupportedSetting):
        sweep_bars(bars, [(20, 50)], **today)
    reference = RiskConfig(
        notional=10_000,
        max_position_pct_equity=None,
        monthly_share_limit=None,
        min_price=None,
        add_to_positions=False,
        buying_power="off",
    )
    settings = settings_from_models(
        reference,
        SlippageModel(bps=5, round_cents=False),
        CommissionModel(per_share=0, bps=1, round_cents=False),
    )
    direct = sweep_bars(bars, [(20, 50)], fees_bps=1, slippage_bps=5, notional=10_000)
    assert sweep_bars(bars, [(20, 50)], **settings).stats.equals(direct.stats)


def test_no_look_ahead(cleaned, calendar, sample_sessions):
    """Results over a window ending at T depend on no bar after T: altering every later bar changes nothing up
    to T (the same equity to the last bit), and the full run's first sessions are the truncated run's."""
    cut = dt.date(2012, 6, 29)
    pairs = [(7, 50), (20, 90)]
    later = pl.col("session") > cut
    altered = cleaned.with_columns(
        *(pl.when(later).then(pl.col(c) * 1.37).otherwise(pl.col(c)).alias(c) for c in ("open", "close"))
    )
    truncated = sweep_sma_cross(cleaned.filter(~later), calendar, pairs)
    on_altered = sweep_sma_cross(altered, calendar, pairs, end=cut)
    assert truncated.sessions[-1] == cut
    assert truncated.stats.equals(on_altered.stats)
    assert np.array_equal(truncated.equity, on_altered.equity)
    full, full_altered = (sweep_sma_cross(c, calendar, pairs) for c in (cleaned, altered))
    n = len(truncated.sessions)
    assert np.array_equal(full.equity[:, :n], truncated.equity)
    assert np.array_equal(full_altered.equity[:, :n], truncated.equity)
    assert not np.array_equal(full.equity[:, n:], full_altered.equity[:, n:])  # the alteration mattered later


def test_a_window_starts_flat_with_warm_sma(cleaned, calendar, sample_sessions):
    """A window from 2013 uses earlier bars for the SMAs only: no order before its second session."""
    start = dt.date(2013, 1, 2)
    result = sweep_sma_cross(cleaned, calendar, [(20, 50)], start=start)
    assert result.sessions[0] == start and result.sessions[-1] == sample_sessions[-1]
    assert result.equity[0, 0] == 100_000 and result.stats["orders"][0] > 0
