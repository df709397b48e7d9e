"""The RSI and 52-week-dip sweeps (issue 11) equal our own backtest, never look ahead, refuse what they cannot do.

On the whole shipped sample (42 symbols, 2,485 sessions), cleaned by the pipeline, with the indicators table
computed by the pipeline (`compute_indicators_anchored`). Our side is `run_ours` (indicators -> signals of
the strategy -> `plan_orders` -> `SimulatedBook`, Decimal arithmetic) with the reference conventions: the
equity series are compared to 1e-9 relative (the kernel sums floats in another order than the Decimal book,
so not bit for bit; the differences seen are ~1e-13).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.strategies import StrategySpec
from trading_dagster.research.sweep import UnsupportedSetting, pack_bars
from trading_dagster.research.threshold_sweep import (
    DIP_COLUMN,
    RSI_COLUMN,
    STATS_COLUMNS,
    IndicatorBars,
    align_indicators,
    backtest_events,
    pack_indicator_bars,
    rsi_grid,
    sweep_dip,
    sweep_rsi,
)
from trading_dagster_tests.reference.ours import REFERENCE_CONVENTIONS, run_ours

TOLERANCE = 1e-9
# no cash limit: with $100,000 the dip's 42 buys take equity below zero and the Sharpe means little
CASH = 1_000_000


def _indicators(cleaned: pl.DataFrame, calendar, end: dt.date | None = None) -> pl.DataFrame:
    from trading_dagster.domain.indicators import compute_indicators_anchored

    first = cleaned["session"].min()
    return compute_indicators_anchored(cleaned, calendar, first, end or cleaned["session"].max())


@pytest.fixture(scope="module")
def indicators(cleaned, calendar):
    return _indicators(cleaned, calendar)


@pytest.fixture(scope="module")
def data(cleaned, indicators, calendar):
    return pack_indicator_bars(cleaned, indicators, calendar, [RSI_COLUMN, DIP_COLUMN])


def _assert_equal_to_ours(result, ours, sessions):
    row = result.stats.row(0, named=True)
    assert ours.n_orders > 10  # the comparison is not of empty books
    assert (row["orders"], row["trades"]) == (ours.n_orders, ours.n_trades)
    assert row["total_pnl"] == pytest.approx(ours.total_pnl, rel=TOLERANCE)
    assert row["final_value"] == pytest.approx(ours.final_value, rel=TOLERANCE)
    assert row["sharpe"] == pytest.approx(ours.sharpe, rel=TOLERANCE)
    assert result.sessions == sessions
    np.testing.assert_allclose(result.equity[0], ours.equity["equity"].to_numpy(), rtol=TOLERANCE, atol=0)


def test_the_default_grids():
    assert len(rsi_grid()) == 25 and rsi_grid()[0] == (20.0, 60.0) and rsi_grid()[-1] == (40.0, 80.0)
    assert rsi_grid([30, 70], [50, 70]) == [(30.0, 50.0), (30.0, 70.0)]  # lower >= upper skipped


def test_the_aligned_values_are_the_indicators_tables(cleaned, calendar, indicators, data):
    table = indicators.sort("symbol", "session")
    bars = data.bars
    assert table["symbol"].to_list() == [
        bars.symbols[j] for j in np.repeat(np.arange(len(bars.symbols)), np.diff(bars.offsets))
    ]
    for column in (RSI_COLUMN, DIP_COLUMN):
        theirs = table[column].to_numpy()  # nulls -> NaN
        assert np.array_equal(theirs, data.values[column], equal_nan=True)
        assert np.isnan(theirs).any() and not np.isnan(theirs).all()
    # a shuffled table, or one holding rows the bars do not have, aligns the same
    shuffled = indicators.sample(fraction=1.0, shuffle=True, seed=7)
    extra = shuffled.vstack(shuffled.head(3).with_columns(symbol=pl.lit("NOT_A_SYMBOL")))
    again = align_indicators(bars, extra, calendar, [RSI_COLUMN])
    assert np.array_equal(again[RSI_COLUMN], data.values[RSI_COLUMN], equal_nan=True)
    with pytest.raises(ValueError, match="not unique"):
        align_indicators(bars, indicators.vstack(indicators.head(1)), calendar, [RSI_COLUMN])
    with_nan = indicators.with_columns(pl.col(RSI_COLUMN).fill_null(float("nan")))
    with pytest.raises(ValueError, match="NaN in 'rsi_14'"):
        align_indicators(bars, with_nan, calendar, [RSI_COLUMN])


def test_the_binary_search_aligns_as_the_dense_table(calendar, indicators, data, monkeypatch):
    """Past `DENSE_LIMIT` (many symbols over a long calendar) bars are found by binary search: the same values."""
    from trading_dagster.research import threshold_sweep

    monkeypatch.setattr(threshold_sweep, "DENSE_LIMIT", 0)
    shuffled = indicators.sample(fraction=1.0, shuffle=True, seed=3)
    extra = shuffled.vstack(shuffled.head(3).with_columns(symbol=pl.lit("NOT_A_SYMBOL")))
    searched = align_indicators(data.bars, extra, calendar, [RSI_COLUMN, DIP_COLUMN])
    for column in (RSI_COLUMN, DIP_COLUMN):
        assert np.array_equal(searched[column], data.values[column], equal_nan=True)
    with pytest.raises(ValueError, match="not unique"):
        align_indicators(data.bars, indicators.vstack(indicators.tail(1)), calendar, [RSI_COLUMN])
    with pytest.raises(ValueError, match="lack columns"):
        align_indicators(data.bars, indicators.drop(RSI_COLUMN), calendar, [RSI_COLUMN])


@pytest.mark.parametrize(
    ("lower", "upper", "size_on", "shares", "fees_bps", "slippage_bps"),
    [
        (30, 70, "close", "whole", 1, 5),
        (25, 75, "fill", "fractional", 2, 3),
        (40, 60, "fill", "whole", 0, 0),
    ],
)
def test_rsi_bounds_equal_our_backtest(
    cleaned, calendar, sample_sessions, data, lower, upper, size_on, shares, fees_bps, slippage_bps
):
    settings = dict(
        size_on=size_on, shares=shares, fees_bps=fees_bps, slippage_bps=slippage_bps, initial_cash=CASH
    )
    spec = StrategySpec(name=f"rsi_{lower}_{upper}", kind="rsi", params={"lower": lower, "upper": upper})
    ours = run_ours(
        cleaned, sample_sessions, calendar=calendar, strategy=spec, **settings, **REFERENCE_CONVENTIONS
    )
    result = sweep_rsi(data, [(lower, upper)], **settings)
    assert result.stats.columns == ["lower", "upper", *STATS_COLUMNS]
    assert ours.n_orders > ours.n_trades  # sells happened: both signals are compared
    _assert_equal_to_ours(result, ours, sample_sessions)


@pytest.mark.parametrize(
    ("threshold", "size_on", "shares", "fees_bps", "slippage_bps"),
    [(10, "close", "whole", 1, 5), (22.5, "fill", "fractional", 2, 3)],
)
def test_dip_thresholds_equal_our_backtest(
    cleaned, calendar, sample_sessions, data, threshold, size_on, shares, fees_bps, slippage_bps
):
    settings = dict(
        size_on=size_on, shares=shares, fees_bps=fees_bps, slippage_bps=slippage_bps, initial_cash=CASH
    )
    spec = StrategySpec(name="dip", kind="dip_52w", params={"threshold_pct": threshold})
    ours = run_ours(
        cleaned, sample_sessions, calendar=calendar, strategy=spec, **settings, **REFERENCE_CONVENTIONS
    )
    result = sweep_dip(data, [threshold], **settings)
    assert result.stats.columns == ["threshold_pct", *STATS_COLUMNS]
    # no adding, no sell signal: one position per symbol that ever dips, held to the end
    assert ours.n_orders == ours.n_trades <= cleaned["symbol"].n_unique()
    _assert_equal_to_ours(result, ours, sample_sessions)


def test_each_set_of_a_grid_is_its_own_run(data):
    """The sets share signal rows (one per lower bound, one per upper bound): each equals its run alone."""
    bounds = [(20, 70), (35, 65), (35, 80), (40, 65)]
    grid = sweep_rsi(data, bounds, initial_cash=CASH, fees_bps=1)
    assert grid.stats.select("lower", "upper").rows() == [(float(a), float(b)) for a, b in bounds]
    for p, pair in enumerate(bounds):
        alone = sweep_rsi(data, [pair], initial_cash=CASH, fees_bps=1)
        assert grid.stats[p].equals(alone.stats)
        assert np.array_equal(grid.equity[p], alone.equity[0])
    assert grid.stats["orders"].n_unique() == len(bounds)  # the sets differ: the indexing is exercised
    dips = sweep_dip(data, [5, 15, 30], initial_cash=CASH)
    assert dips.stats["trades"].to_list() == sorted(dips.stats["trades"].to_list(), reverse=True)
    assert dips.stats["trades"][0] > dips.stats["trades"][-1]  # a deeper dip is rarer


def test_no_look_ahead(cleaned, calendar):
    """A window ending at T depends on no bar after T: prices altered after T (and the indicators computed
    on them) change nothing up to T, to the last bit."""
    cut = dt.date(2012, 6, 29)
    later = pl.col("session") > cut
    altered = cleaned.with_columns(
        *(
            pl.when(later).then(pl.col(c) * 1.37).otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        )
    )
    truncated_prices = cleaned.filter(~later)
    truncated = pack_indicator_bars(
        truncated_prices, _indicators(truncated_prices, calendar), calendar, [RSI_COLUMN, DIP_COLUMN]
    )
    on_altered = pack_indicator_bars(
        altered, _indicators(altered, calendar), calendar, [RSI_COLUMN, DIP_COLUMN], end=cut
    )
    assert truncated.bars.sessions[-1] == cut == on_altered.bars.sessions[-1]
    for sweep, grid in ((sweep_rsi, [(30, 70), (40, 60)]), (sweep_dip, [10, 20])):
        a = sweep(truncated, grid, initial_cash=CASH)
        b = sweep(on_altered, grid, initial_cash=CASH)
        assert a.stats.equals(b.stats) and np.array_equal(a.equity, b.equity)
        assert a.stats["orders"].min() > 0
    full = pack_indicator_bars(altered, _indicators(altered, calendar), calendar, [RSI_COLUMN])
    n = len(truncated.bars.sessions)
    whole = sweep_rsi(full, [(30, 70)], initial_cash=CASH)
    assert np.array_equal(whole.equity[:, :n], sweep_rsi(truncated, [(30, 70)], initial_cash=CASH).equity)


def test_no_entry_is_flat_equity_at_the_initial_cash(data):
    bars = data.bars
    flat = backtest_events(bars, np.zeros((2, bars.close.size), dtype=bool), initial_cash=123_456.0)
    assert flat.stats["orders"].to_list() == [0, 0] and flat.stats["set"].to_list() == [0, 1]
    assert np.all(flat.equity == 123_456.0) and np.all(flat.positions_value == 0)
    assert flat.stats["total_pnl"].to_list() == [0.0, 0.0]
    # exits alone do nothing either (a sell when flat)
    exits_only = backtest_events(
        bars, np.zeros(bars.close.size, dtype=bool), np.ones(bars.close.size, dtype=bool)
    )
    assert exits_only.stats["orders"][0] == 0


def test_signals_before_the_window_never_trade(cleaned, calendar, indicators):
    start = dt.date(2013, 1, 2)
    data = pack_indicator_bars(cleaned, indicators, calendar, [DIP_COLUMN], start=start)
    bars = data.bars
    assert (bars.row < 0).any()  # warm-up bars are packed
    everywhere = backtest_events(bars, np.ones(bars.close.size, dtype=bool))
    # a buy at every bar: the warm-up bar before the window would fill at the window's first open
    assert everywhere.sessions[0] == start and everywhere.equity[0, 0] == 100_000
    assert everywhere.positions_value[0, 0] == 0 and everywhere.positions_value[0, 1] > 0
    assert 0 < everywhere.stats["trades"][0] <= len(bars.symbols)  # held from then on: one buy a symbol


def test_bad_signal_shapes_are_refused(data):
    n = data.bars.close.size
    with pytest.raises(ValueError, match="entries must be"):
        backtest_events(data.bars, np.zeros((1, n - 1), dtype=bool))
    with pytest.raises(ValueError, match="booleans"):
        backtest_events(data.bars, np.zeros((1, n)))
    with pytest.raises(ValueError, match="combine"):
        backtest_events(data.bars, np.zeros((2, n), dtype=bool), np.zeros((3, n), dtype=bool))
    with pytest.raises(ValueError, match="lower < upper"):
        sweep_rsi(data, [(70, 30)])
    with pytest.raises(ValueError, match="threshold_pct"):
        sweep_dip(data, [0])
    with pytest.raises(ValueError, match="no 'rsi_14'"):
        sweep_rsi(IndicatorBars(data.bars, {DIP_COLUMN: data.values[DIP_COLUMN]}), [(30, 70)])


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("buying_power", "cash"),
        ("monthly_share_limit", 4),
        ("max_position_pct_equity", 10),
        ("min_price", 1),
        ("stop_loss_pct", 5),
        ("take_profit_pct", 10),
        ("round_cents", True),
        ("add_to_positions", True),
        ("commission_per_share", 0.005),
        ("tie_band_pct", 0.1),
        ("no_such_setting", 1),
    ],
)
def test_unsupported_settings_are_refused_by_name(data, setting, value):
    with pytest.raises(UnsupportedSetting, match=setting):
        sweep_rsi(data, [(30, 70)], **{setting: value})
    if setting not in ("stop_loss_pct", "take_profit_pct"):  # the dip's exit grid dimensions (lists)
        with pytest.raises(UnsupportedSetting, match=setting):
            sweep_dip(data, [10], **{setting: value})
    with pytest.raises(UnsupportedSetting, match=setting):
        backtest_events(data.bars, np.zeros(data.bars.close.size, dtype=bool), **{setting: value})


def test_the_packed_bars_are_the_sma_sweeps(cleaned, calendar, data):
    plain = pack_bars(cleaned, calendar)
    for name in ("offsets", "cal", "row", "open", "close"):
        assert np.array_equal(getattr(plain, name), getattr(data.bars, name))


# --- the dip with stop-loss / take-profit exits (domain/exits.py's backtest rule) ---


@pytest.fixture(scope="module")
def with_high_low(cleaned, indicators, calendar):
    return pack_indicator_bars(cleaned, indicators, calendar, [DIP_COLUMN], price_columns=("high", "low"))


@pytest.mark.parametrize(
    ("threshold", "take_profit", "stop_loss", "size_on", "shares"),
    [
        (10, 15, 8, "close", "whole"),  # both legs: positions cycle (exit, buy again on the next dip)
        (5, None, 5, "fill", "fractional"),
        (20, 10, None, "close", "whole"),
    ],
)
def test_dip_with_exits_equals_our_backtest(
    cleaned, calendar, sample_sessions, with_high_low, threshold, take_profit, stop_loss, size_on, shares
):
    settings = dict(size_on=size_on, shares=shares, fees_bps=1, slippage_bps=5, initial_cash=CASH)
    exits = {
        k: v for k, v in (("take_profit_pct", take_profit), ("stop_loss_pct", stop_loss)) if v is not None
    }
    spec = StrategySpec(name="dip", kind="dip_52w", params={"threshold_pct": threshold})
    ours = run_ours(
        cleaned,
        sample_sessions,
        calendar=calendar,
        strategy=spec,
        **settings,
        **exits,
        **REFERENCE_CONVENTIONS,
    )
    result = sweep_dip(
        with_high_low, [threshold], take_profit_pct=[take_profit], stop_loss_pct=[stop_loss], **settings
    )
    assert result.stats.columns == ["threshold_pct", "take_profit_pct", "stop_loss_pct", *STATS_COLUMNS]
    assert result.stats.row(0)[:3] == (float(threshold), take_profit, stop_loss)
    # the exits sold, and positions were bought again: more buys than symbols
    assert ours.n_orders > ours.n_trades > cleaned["symbol"].n_unique()
    _assert_equal_to_ours(result, ours, sample_sessions)


def test_an_exit_grid_set_is_its_own_run(with_high_low):
    """The sets of thresholds x take-profits x stop-losses share level rows: each equals its run alone."""
    kwargs = dict(take_profit_pct=[None, 10, 20], stop_loss_pct=[None, 5], initial_cash=CASH, fees_bps=1)
    grid = sweep_dip(with_high_low, [10, 20], **kwargs)
    assert grid.stats.height == 12
    assert grid.stats.row(0)[:3] == (10.0, None, None) and grid.stats.row(11)[:3] == (20.0, 20.0, 5.0)
    for p, (threshold, tp, sl) in enumerate(
        grid.stats.select("threshold_pct", "take_profit_pct", "stop_loss_pct").rows()
    ):
        alone = sweep_dip(
            with_high_low,
            [threshold],
            take_profit_pct=[tp],
            stop_loss_pct=[sl],
            initial_cash=CASH,
            fees_bps=1,
        )
        assert np.array_equal(grid.equity[p], alone.equity[0]), (threshold, tp, sl)
        assert grid.stats.row(p)[3:] == alone.stats.row(0)[3:]
    no_exit = sweep_dip(with_high_low, [10], initial_cash=CASH, fees_bps=1)
    assert np.array_equal(grid.equity[0], no_exit.equity[0])  # no leg: the plain dip
    assert grid.stats["orders"].n_unique() > 6  # the exits changed the trading


def test_exit_levels_are_the_pipelines_ties_included():
    """`exit_levels_per_bar` equals `exits.exit_levels` (Decimal, half up to the tick), on exact ties where the
    float product falls on the wrong side (10.10 x 0.95 = 9.595 -> 9.60; float: 9.594999...), below $1, and
    for a stop that rounds to nothing."""
    from decimal import Decimal

    from trading_dagster.domain.exits import exit_levels
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.research.threshold_sweep import exit_levels_per_bar

    assert 10.1 * 0.95 < 9.595  # the float product is below the tie
    closes = np.array([10.1, 10.01, 0.5151, 1.0526315789, 2.345, 187.33, 0.00004, 19.99, 0.9999])
    for pct in (5.0, 7.5, 10.0, 33.3):
        config = RiskConfig(stop_loss_pct=Decimal(str(pct)), take_profit_pct=Decimal(str(pct)))
        stops = exit_levels_per_bar(closes, pct, "stop")
        takes = exit_levels_per_bar(closes, pct, "take")
        for close, stop, take in zip(closes, stops, takes, strict=True):
            want = exit_levels(Decimal(repr(float(close))), None, config)
            assert (np.nan if want.stop_loss is None else float(want.stop_loss)) == pytest.approx(
                stop, nan_ok=True, rel=0, abs=0
            ), (close, pct)
            assert float(want.take_profit) == take, (close, pct)
    assert exit_levels_per_bar(np.array([10.1]), 5.0, "stop")[0] == 9.6


def test_exits_need_high_and_low(data):
    with pytest.raises(ValueError, match="high"):
        sweep_dip(data, [10], stop_loss_pct=[5])


def test_the_open_floored_to_the_tick_is_the_pipelines(cleaned):
    """A take-profit gapped through fills at `round_price(open, ROUND_FLOOR)`: equal on every sample open and
    where float multiplication misses a tick (0.29 x 100 = 28.999999999999996)."""
    from decimal import ROUND_FLOOR, Decimal

    from trading_dagster.domain.execution import round_price
    from trading_dagster.research.threshold_sweep import open_floor_per_bar

    crafted = np.array([0.29, 1.0, 0.99995, 4.35, 1.005, 0.57, 2.3, 1234.56, 0.12345])
    opens = np.concatenate([crafted, cleaned["open"].to_numpy()])
    want = [float(round_price(Decimal(repr(float(o))), ROUND_FLOOR)) for o in opens]
    assert np.array_equal(open_floor_per_bar(opens), np.array(want))
    assert open_floor_per_bar(np.array([0.29]))[0] == 0.29 and np.floor(0.29 * 100) / 100 == 0.28
