"""The ML-filtered strategy against its base on the same sessions (issue 11): on the real sample, with
probabilities that keep everything, nothing, or a known subset."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.indicators import compute_indicators_anchored
from trading_dagster.domain.strategies import parse_strategies
from trading_dagster.research.ml_compare import VARIANTS, compare_filter
from trading_dagster.research.threshold_sweep import pack_indicator_bars, sweep_rsi

[RSI] = parse_strategies([{"name": "rsi", "kind": "rsi", "params": {"lower": 35, "upper": 65}, "trades": False}])
MONEY = {"notional": 10_000.0, "initial_cash": 1_000_000.0, "fees_bps": 1.0, "slippage_bps": 5.0}


@pytest.fixture(scope="module")
def window(cleaned, sample_sessions):
    return sample_sessions[-500], sample_sessions[-1]


@pytest.fixture(scope="module")
def indicators(cleaned, calendar, sample_sessions, window):
    first = sample_sessions[sample_sessions.index(window[0]) - 1]
    return compute_indicators_anchored(cleaned, calendar, first, window[1])


def _probabilities(indicators: pl.DataFrame, values) -> pl.DataFrame:
    return indicators.select("symbol", "session").with_columns(pl.Series("probability", values, dtype=pl.Float64))


def _compare(cleaned, indicators, calendar, window, probabilities, floor=0.5):
    return compare_filter(
        cleaned, indicators, probabilities, calendar, RSI, floor, [("all", *window)], **MONEY
    )


def test_the_unfiltered_row_is_the_rsi_sweep_of_the_same_bounds(cleaned, indicators, calendar, window):
    table = _compare(cleaned, indicators, calendar, window, _probabilities(indicators, [1.0] * indicators.height))
    assert table["variant"].to_list() == list(VARIANTS)
    data = pack_indicator_bars(cleaned, indicators, calendar, ["rsi_14"], *window)
    direct = sweep_rsi(data, [(35.0, 65.0)], **MONEY).stats.row(0, named=True)
    unfiltered = table.row(0, named=True)
    assert unfiltered["orders"] == direct["orders"] > 0
    assert unfiltered["total_pnl"] == pytest.approx(direct["total_pnl"], rel=1e-12)
    assert unfiltered["sharpe"] == pytest.approx(direct["sharpe"], rel=1e-12)
    # every buy backed: the filtered run is the same run
    assert table.row(1, named=True) | {"variant": "unfiltered"} == unfiltered


def test_no_backed_buy_trades_nothing_but_the_signals_are_counted(cleaned, indicators, calendar, window):
    table = _compare(cleaned, indicators, calendar, window, _probabilities(indicators, [0.1] * indicators.height))
    filtered = table.row(1, named=True)
    assert filtered["buy_signals"] == 0 and filtered["orders"] == 0 and filtered["total_pnl"] == 0.0
    assert table.row(0, named=True)["buy_signals"] > 0


def test_the_filter_keeps_exactly_the_backed_buys(cleaned, indicators, calendar, window):
    rng = np.random.default_rng(7)
    probabilities = _probabilities(indicators, rng.uniform(size=indicators.height))
    table = _compare(cleaned, indicators, calendar, window, probabilities, floor=0.6)
    unfiltered, filtered = table.row(0, named=True), table.row(1, named=True)
    assert 0 < filtered["buy_signals"] < unfiltered["buy_signals"]
    assert filtered["trades"] < unfiltered["trades"]
    # the same as sweeping the rsi rule on bars whose rsi is hidden where the model does not back a buy
    hidden = indicators.join(probabilities, on=["symbol", "session"]).with_columns(
        pl.when((pl.col("rsi_14") < 35) & (pl.col("probability") < 0.6)).then(None).otherwise(pl.col("rsi_14"))
        .alias("rsi_14")
    )
    data = pack_indicator_bars(cleaned, hidden, calendar, ["rsi_14"], *window)
    direct = sweep_rsi(data, [(35.0, 65.0)], **MONEY).stats.row(0, named=True)
    assert filtered["orders"] == direct["orders"]
    assert filtered["total_pnl"] == pytest.approx(direct["total_pnl"], rel=1e-12)


def test_an_ml_filter_cannot_be_a_base(cleaned, indicators, calendar, window):
    [_, refiner] = parse_strategies(
        [{"name": "rsi", "kind": "rsi", "params": {"lower": 35, "upper": 65}},
         {"name": "m", "kind": "ml_filter", "refines": "rsi", "params": {"min_probability": 0.5}}]
    )
    with pytest.raises(ValueError, match="not an ml_filter"):
        compare_filter(cleaned, indicators, _probabilities(indicators, [1.0] * indicators.height), calendar,
                       refiner, 0.5, [("all", *window)])
