"""Walk-forward selection (issue 11, decision 0007): folds on the calendar, selection by a second computation
path, the out-of-sample curve, no look-ahead, and a planted edge whose right answer is known.

On the whole shipped sample (42 symbols, 2,485 sessions, 7 rolling folds of 756 / 252) with a 6-pair grid.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.metrics import series_stats
from trading_dagster.research.sweep import (
    SweepResult,
    _anchoring,
    pack_bars,
    sma_grid,
    sweep_bars,
    sweep_sma_cross,
)
from trading_dagster.research.walk_forward import (
    Fold,
    folds,
    pick_winner,
    restrict,
    sma_backtest,
    walk_forward,
)

GRID = sma_grid((10, 20, 40), (60, 120))
CASH = 1_000_000.0
SETTINGS = {"initial_cash": CASH, "fees_bps": 1.0, "slippage_bps": 5.0, "tie_band_pct": 1e-7}


@pytest.fixture(scope="module")
def backtest(cleaned, calendar):
    return sma_backtest(cleaned, calendar, **SETTINGS)


@pytest.fixture(scope="module")
def rolling(sample_sessions, backtest):
    return walk_forward(backtest, GRID, folds(sample_sessions), CASH)


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_folds_tile_the_calendar_without_overlap_or_look_ahead(sample_sessions, mode):
    days = sample_sessions
    index = {d: i for i, d in enumerate(days)}
    out = folds(days, 756, 252, mode)
    assert len(out) == 7  # (2,485 - 756) / 252: six full test years and a last one of 217 sessions
    assert index[out[0].test_start] == 756 and out[-1].test_end == days[-1]
    for k, fold in enumerate(out):
        assert fold.train_start <= fold.train_end < fold.test_start <= fold.test_end
        assert index[fold.test_start] == index[fold.train_end] + 1  # the train window ends the session before
        length = index[fold.test_end] - index[fold.test_start] + 1
        assert length == (252 if k < len(out) - 1 else 217)
        if mode == "rolling":
            assert index[fold.train_end] - index[fold.train_start] + 1 == 756
        else:
            assert fold.train_start == days[0]
    for a, b in zip(out, out[1:], strict=False):  # test windows back to back
        assert index[b.test_start] == index[a.test_end] + 1


def test_a_remainder_too_short_to_test_is_left_out_and_short_windows_are_refused(sample_sessions):
    days = sample_sessions[:33]  # 20 + 10 + 3 (tested) ; then 20 + 10 + 1 (not)
    assert [f.test_end for f in folds(days, 20, 10)] == [days[29], days[32]]
    assert [f.test_end for f in folds(days[:31], 20, 10)] == [days[29]]
    with pytest.raises(ValueError, match="too few for one fold"):
        folds(days, 32, 10)
    with pytest.raises(ValueError, match="train_sessions"):
        folds(days, 2, 10)
    with pytest.raises(ValueError, match="test_sessions"):
        folds(days, 20, 1)
    with pytest.raises(ValueError, match="mode"):
        folds(days, 20, 10, "anchored")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly increasing"):
        folds(days[::-1], 20, 10)


def test_a_window_cut_from_the_packed_bars_is_the_window_packed(cleaned, calendar, backtest):
    pairs = [(7, 50), (20, 200)]
    for start, end in [
        (dt.date(2009, 3, 2), dt.date(2011, 6, 30)),
        (dt.date(2016, 1, 4), dt.date(2017, 11, 10)),
    ]:
        cut, packed = restrict(backtest.bars, calendar, start, end), pack_bars(cleaned, calendar, start, end)
        assert cut.sessions == packed.sessions and cut.symbols == packed.symbols
        for field in ("offsets", "cal", "row", "open", "close"):
            assert np.array_equal(getattr(cut, field), getattr(packed, field)), field
        # without the bars no anchored SMA of the window reads: fewer bars, the same figures to the last bit
        trimmed = restrict(backtest.bars, calendar, start, end, _anchoring(True))
        assert trimmed.sessions == packed.sessions
        full, short = sweep_bars(packed, pairs, **SETTINGS), sweep_bars(trimmed, pairs, **SETTINGS)
        assert short.stats.equals(full.stats) and np.array_equal(short.equity, full.equity)
        assert full.stats["orders"].min() > 0
    assert trimmed.close.size < 0.6 * packed.close.size  # 2016-2017: the years before 2014 are not read
    # an SMA over each symbol's whole history keeps every earlier bar
    assert np.array_equal(
        restrict(backtest.bars, calendar, start, end, _anchoring(False)).close, packed.close
    )
    with pytest.raises(ValueError, match="before the window's end"):
        restrict(backtest.bars, calendar, dt.date(2017, 1, 3), dt.date(2018, 6, 1))


def test_each_winner_is_the_argmax_of_an_independent_sweep_and_its_oos_is_the_sweeps(
    cleaned, calendar, sample_sessions, rolling
):
    table = rolling.folds
    assert table.columns == [
        "fold",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
        "fast",
        "slow",
        "is_sharpe",
        "oos_sharpe",
        "oos_return",
        "oos_max_drawdown",
        "trials",
        "deflated_sharpe",
    ]
    assert table.height == 7 and table["trials"].to_list() == [6] * 7
    level = CASH
    for row in table.iter_rows(named=True):
        # a second path: the sweep packed on the train window (not cut from one packing), argmax by numpy
        train = sweep_sma_cross(
            cleaned, calendar, GRID, start=row["train_start"], end=row["train_end"], **SETTINGS
        )
        sharpes = train.stats["sharpe"].to_numpy()
        best = int(np.nanargmax(sharpes))
        assert (row["fast"], row["slow"]) == GRID[best]
        assert row["is_sharpe"] == sharpes[best]
        test = sweep_sma_cross(
            cleaned, calendar, [GRID[best]], start=row["test_start"], end=row["test_end"], **SETTINGS
        )
        assert test.stats["orders"][0] > 0  # the winner traded out of sample: not an empty comparison
        assert row["oos_sharpe"] == test.stats["sharpe"][0]
        assert row["oos_return"] == pytest.approx(test.stats["total_return"][0], rel=1e-12)
        assert row["oos_max_drawdown"] == test.stats["max_drawdown"][0]
        assert 0 < row["deflated_sharpe"] < 1
        # the stitched curve over this test window is the window's equity scaled to where the last one ended
        part = rolling.equity.filter(pl.col("session").is_between(row["test_start"], row["test_end"]))
        assert part["session"].to_list() == test.sessions
        np.testing.assert_allclose(part["equity"].to_numpy(), level * test.equity[0] / CASH, rtol=1e-12)
        level = float(part["equity"][-1])
    assert len({(f, s) for f, s in table.select("fast", "slow").iter_rows()}) > 1  # selection did something
    eq = rolling.equity
    assert eq["session"].to_list() == sample_sessions[756:]  # the test windows back to back, nothing else
    overall = series_stats(eq["session"].to_list(), eq["equity"].to_list())
    assert rolling.summary["oos_sharpe"] == overall["sharpe"]
    assert rolling.summary["oos_return"] == pytest.approx(eq["equity"][-1] / CASH - 1, rel=1e-12)
    assert rolling.summary["oos_max_drawdown"] == overall["max_drawdown"] < 0
    assert rolling.summary["mean_is_sharpe"] == pytest.approx(table["is_sharpe"].mean(), rel=1e-12)
    assert rolling.winners == [(r["fast"], r["slow"]) for r in table.iter_rows(named=True)]


def test_expanding_trains_from_the_first_session(sample_sessions, backtest, rolling):
    expanding = walk_forward(backtest, GRID, folds(sample_sessions, mode="expanding"), CASH)
    e, r = expanding.folds, rolling.folds
    assert e["train_start"].to_list() == [sample_sessions[0]] * 7
    assert e["test_start"].to_list() == r["test_start"].to_list()
    assert e.row(0) == r.row(0)  # the first fold's train window is the same in both modes
    assert e["is_sharpe"].to_list() != r["is_sharpe"].to_list()


def test_no_look_ahead_altering_bars_after_a_train_window_keeps_its_choice(
    cleaned, calendar, sample_sessions, rolling
):
    plan = folds(sample_sessions)
    k = 2
    cut = plan[k].train_end
    rng = np.random.default_rng(11)
    factor = pl.Series(rng.uniform(0.5, 1.5, cleaned.height))
    later = pl.col("session") > cut
    altered = cleaned.with_columns(
        *(pl.when(later).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in ("open", "close"))
    )
    again = walk_forward(sma_backtest(altered, calendar, **SETTINGS), GRID, plan, CASH)
    kept = ["fold", "train_start", "train_end", "fast", "slow", "is_sharpe", "deflated_sharpe"]
    assert again.folds.head(k + 1).select(kept).equals(rolling.folds.head(k + 1).select(kept))
    assert again.folds.head(k).equals(rolling.folds.head(k))  # earlier folds: out of sample too
    # the alteration mattered after the cut
    assert again.folds["oos_sharpe"][k] != rolling.folds["oos_sharpe"][k]


# --- a planted edge: a fake backtest (the generic interface) whose right answer is known ---------------------

DAYS = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(80)]
SWITCH = 40  # "up" earns before it and loses after; "down" the reverse; "noise" never earns


def planted_return(name: str, i: int) -> float:
    noise = 0.0005 * math.sin(1.7 * i + len(name))  # deterministic, not constant: a Sharpe is defined
    drift = {"up": 0.002, "down": -0.002, "noise": 0.0, "noise2": 0.0}[name]
    return (drift if i < SWITCH else -drift) + noise


class Planted:
    param_names = ("name",)

    def __call__(self, params_list, start, end):
        lo, hi = DAYS.index(start), DAYS.index(end) + 1
        sessions = DAYS[lo:hi]
        equity = np.array(
            [
                CASH * np.cumprod([1.0] + [1 + planted_return(p[0], i) for i in range(lo + 1, hi)])
                for p in params_list
            ]
        )
        sharpes = [series_stats(sessions, list(v))["sharpe"] for v in equity]
        stats = pl.DataFrame({"sharpe": sharpes}, schema={"sharpe": pl.Float64})
        return SweepResult(sessions, list(params_list), stats, equity, np.zeros_like(equity))


PARAMS = [("noise",), ("down",), ("up",), ("noise2",)]


def test_a_planted_edge_is_found_and_followed_only_as_far_as_the_train_window_sees():
    rolling = walk_forward(Planted(), PARAMS, folds(DAYS, 20, 10), CASH)
    names = rolling.folds["name"].to_list()
    # train windows 0-19, 10-29, 20-39: "up"; 30-49: a tie of regimes (not asserted); 40-59, 50-69: "down"
    assert names[:3] == ["up"] * 3 and names[4:] == ["down"] * 2
    dsr = rolling.folds["deflated_sharpe"].to_list()
    assert min(dsr[:3] + dsr[4:]) > 0.9 and dsr[3] < 0.6  # the clear edges pass; the mixed window does not
    expanding = walk_forward(Planted(), PARAMS, folds(DAYS, 20, 10, "expanding"), CASH)
    assert expanding.folds["name"].to_list() == ["up"] * 6  # 0-69 still holds more "up" days than "down"
    # the stitched curve is known: each test window's own returns (its first day starts flat), chained
    expected = [CASH]
    for fold, name in zip(folds(DAYS, 20, 10), names, strict=True):
        lo, hi = DAYS.index(fold.test_start), DAYS.index(fold.test_end) + 1
        for i in range(lo + 1, hi):
            expected.append(expected[-1] * (1 + planted_return(name, i)))
        expected.append(expected[-1])  # the next window's first day: flat
    np.testing.assert_allclose(rolling.equity["equity"].to_numpy(), expected[:-1], rtol=1e-12)
    assert rolling.summary["oos_return"] == pytest.approx(expected[-2] / CASH - 1, rel=1e-12)
    assert rolling.folds["oos_return"][0] > 0.015  # nine days of +0.2 %


def test_ties_go_to_grid_order_and_an_undefined_sharpe_ranks_last():
    assert pick_winner([0.5, 0.7, 0.7]) == 1
    assert pick_winner([math.nan, -0.3, None, -0.1]) == 3
    assert pick_winner([math.nan, None]) == 0
    tie = walk_forward(Planted(), [("noise2",), ("up",), ("up",)], folds(DAYS[:40], 20, 10), CASH)
    assert tie.folds["name"].to_list() == ["up", "up"] and tie.winners == [("up",), ("up",)]


def test_a_backtest_with_another_initial_cash_is_refused():
    with pytest.raises(ValueError, match="initial cash"):
        walk_forward(Planted(), PARAMS, folds(DAYS, 20, 10), CASH * 2)
    with pytest.raises(ValueError, match="no parameter set"):
        walk_forward(Planted(), [], folds(DAYS, 20, 10), CASH)
    overlapping = [Fold(DAYS[0], DAYS[9], DAYS[10], DAYS[19]), Fold(DAYS[5], DAYS[14], DAYS[15], DAYS[25])]
    with pytest.raises(ValueError, match="overlap"):
        walk_forward(Planted(), PARAMS, overlapping, CASH)
