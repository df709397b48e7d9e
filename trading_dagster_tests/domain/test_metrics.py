"""Performance metrics against numbers worked out by hand (exact fractions, then the float)."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from trading_dagster.domain.metrics import monthly_returns, performance_summary

D = [dt.date(2017, 3, 1), dt.date(2017, 3, 2), dt.date(2017, 3, 3), dt.date(2017, 3, 6)]


def _equity(sessions: list[dt.date], equity: list[float], bench: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": sessions, "equity": equity, "benchmark_close": bench},
        schema={"session": pl.Date, "equity": pl.Float64, "benchmark_close": pl.Float64},
    )


def test_performance_summary_by_hand():
    # equity 100 -> 110 -> 99 -> 121: returns 1/10, -1/10, 2/9; mean 2/27;
    # deviations 7/270, -47/270, 40/270, so the sample variance is (49 + 2209 + 1600) / 72900 / 2 = 1929/72900
    frame = _equity(D, [100, 110, 99, 121], [10, None, 11, 12])
    out = performance_summary(frame, periods_per_year=3)
    std = math.sqrt(1929 / 72900)
    assert (out["start"], out["end"], out["sessions"]) == (D[0], D[-1], 4)
    assert (out["initial_equity"], out["final_equity"]) == (100, 121)
    assert out["cumulative_return"] == pytest.approx(0.21)
    assert out["annualized_return"] == pytest.approx(0.21)  # three returns, three periods a year
    assert out["annualized_volatility"] == pytest.approx(std * math.sqrt(3))
    assert out["sharpe"] == pytest.approx((2 / 27) / std * math.sqrt(3))
    assert out["max_drawdown"] == pytest.approx(-0.1)  # 110 -> 99
    assert (out["max_drawdown_peak"], out["max_drawdown_trough"]) == (D[1], D[2])
    # buy and hold at the first close: 10 -> 10 (D1's missing close carried) -> 11 -> 12
    assert out["benchmark_cumulative_return"] == pytest.approx(0.2)
    assert out["benchmark_max_drawdown"] == 0.0
    assert out["benchmark_max_drawdown_peak"] is None
    assert out["benchmark_final_equity"] == pytest.approx(120)
    assert out["excess_return"] == pytest.approx(0.01)


def test_annualization_uses_sessions_per_year():
    out = performance_summary(_equity(D, [100, 110, 99, 121], [10, 10, 11, 12]))
    assert out["annualized_return"] == pytest.approx(1.21 ** (252 / 3) - 1)
    assert out["annualized_volatility"] == pytest.approx(math.sqrt(1929 / 72900) * math.sqrt(252))


def test_drawdown_peak_is_the_last_high_before_the_trough():
    days = D + [dt.date(2017, 3, 7)]
    out = performance_summary(_equity(days, [100, 120, 120, 90, 95], [1, 1, 1, 1, 1]))
    assert out["max_drawdown"] == pytest.approx(-0.25)
    assert (out["max_drawdown_peak"], out["max_drawdown_trough"]) == (days[2], days[3])
    assert out["benchmark_sharpe"] is None  # a flat benchmark has no volatility


def test_degenerate_series():
    one = performance_summary(_equity(D[:1], [100], [None]))
    assert one["cumulative_return"] == 0.0
    assert one["annualized_return"] is None and one["sharpe"] is None and one["annualized_volatility"] is None
    assert one["benchmark_cumulative_return"] is None and one["excess_return"] is None
    with pytest.raises(ValueError):
        performance_summary(_equity([], [], []))


def test_monthly_returns_compound_to_the_cumulative_return():
    days = [
        dt.date(2017, 1, 30),
        dt.date(2017, 1, 31),
        dt.date(2017, 2, 1),
        dt.date(2017, 2, 28),
        dt.date(2017, 3, 1),
    ]
    frame = _equity(days, [100, 105, 110, 99, 120], [None, 10, 10, 11, 12])
    months = monthly_returns(frame)
    assert months["month"].to_list() == [dt.date(2017, 1, 1), dt.date(2017, 2, 1), dt.date(2017, 3, 1)]
    assert months["return"].to_list() == pytest.approx([0.05, 99 / 105 - 1, 120 / 99 - 1])
    assert months["benchmark_return"].to_list() == pytest.approx([0.0, 0.1, 12 / 11 - 1])
    growth = math.prod(1 + r for r in months["return"].to_list())
    assert growth - 1 == pytest.approx(performance_summary(frame)["cumulative_return"])
