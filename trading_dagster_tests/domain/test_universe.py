"""The trading universe's liquidity rule on small frames: the median against an independent numpy reference,
threshold edges, the warm-up, gaps, no look-ahead, a one-day run equal to a range, the signal filter."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from trading_dagster.domain.universe import (
    LIQUIDITY_LOOKBACK_SESSIONS,
    MAX_LIQUIDITY_WINDOW,
    MEDIAN_DOLLAR_VOLUME,
    UniverseRule,
    apply_liquidity_rule,
    median_dollar_volume,
    required_input_start,
    tradeable,
)

# The functions take any ordered calendar: consecutive days keep the frames small and need no exchange data.
SESSIONS = tuple(dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(120))
WINDOW = 5


def bars(symbol: str, days: list[int], dollar_volumes: list[float]) -> pl.DataFrame:
    """Bars of one symbol on SESSIONS[i] for i in `days`, close 10 and volume = dollar volume / 10."""
    return pl.DataFrame(
        {
            "symbol": symbol,
            "session": [SESSIONS[i] for i in days],
            "close": 10.0,
            "volume": [round(v / 10) for v in dollar_volumes],
        },
        schema={"symbol": pl.Utf8, "session": pl.Date, "close": pl.Float64, "volume": pl.Int64},
    )


def reference(prices: pl.DataFrame, window: int, day: dt.date, symbol: str) -> float | None:
    """The rule written out with numpy: the median of the symbol's last `window` bars up to `day`, if they
    all lie within the 2 x window sessions ending at `day`."""
    own = prices.filter((pl.col("symbol") == symbol) & (pl.col("session") <= day)).sort("session")
    if own.height < window:
        return None
    last = own.tail(window)
    span_start = SESSIONS[max(0, SESSIONS.index(day) - (2 * window - 1))]
    if last["session"][0] < span_start:
        return None
    return float(np.median((last["close"] * last["volume"]).to_numpy()))


def value(out: pl.DataFrame, symbol: str, day: dt.date) -> float | None:
    return out.filter((pl.col("symbol") == symbol) & (pl.col("session") == day))[MEDIAN_DOLLAR_VOLUME].item()


def random_prices(seed: int, symbols: int = 4, holes: float = 0.15) -> pl.DataFrame:
    """Symbols with random closes and volumes and random missing sessions (holes), over SESSIONS."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(symbols):
        keep = rng.random(len(SESSIONS)) >= holes
        n = int(keep.sum())
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{k}",
                    "session": [s for s, kept in zip(SESSIONS, keep, strict=True) if kept],
                    "close": rng.uniform(1, 200, n),
                    "volume": rng.integers(0, 10**6, n),
                },
                schema={"symbol": pl.Utf8, "session": pl.Date, "close": pl.Float64, "volume": pl.Int64},
            )
        )
    return pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=seed)  # any row order


# ---------------------------------------------------------------- the median


@pytest.mark.parametrize("window", [1, 2, WINDOW, 20])
def test_median_equals_a_numpy_reference_with_gaps_and_any_row_order(window):
    prices = random_prices(seed=window)
    out = median_dollar_volume(prices, window, SESSIONS, SESSIONS[0], SESSIONS[-1])
    assert out.columns == ["symbol", "session", MEDIAN_DOLLAR_VOLUME]
    assert out.height == prices.height  # one row per bar, none invented for the holes
    assert out.select("session", "symbol").equals(out.select("session", "symbol").sort("session", "symbol"))
    checked = 0
    for symbol, day, got in out.iter_rows():
        expected = reference(prices, window, day, symbol)
        if expected is None:
            assert got is None, (symbol, day)
        else:
            assert got is not None and math.isclose(got, expected, rel_tol=1e-12), (symbol, day)
            checked += 1
    assert checked > out.height // 2  # most rows have a value: the comparison was not all nulls


def test_warm_up_is_null_never_a_partial_median():
    prices = bars("NEW", list(range(10)), [1e6] * 10)
    out = median_dollar_volume(prices, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[9])
    values = out.sort("session")[MEDIAN_DOLLAR_VOLUME].to_list()
    assert values[: WINDOW - 1] == [None] * (WINDOW - 1)
    assert values[WINDOW - 1 :] == [1e6] * (10 - WINDOW + 1)
    # with the rule on, even a tiny minimum does not make the warm-up tradeable
    tiny = UniverseRule(min_median_dollar_volume=0.01, liquidity_window=WINDOW)
    verdicts = tradeable(out, tiny).sort("session")
    assert verdicts["tradeable"].to_list() == [False] * (WINDOW - 1) + [True] * (10 - WINDOW + 1)


def test_a_missing_bar_is_skipped_not_counted_as_zero():
    # bars on 0..9 except 6: the window on day 9 is the last five own bars (4, 5, 7, 8, 9)
    days = [0, 1, 2, 3, 4, 5, 7, 8, 9]
    volumes = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0]
    out = median_dollar_volume(bars("GAP", days, volumes), WINDOW, SESSIONS, SESSIONS[0], SESSIONS[9])
    assert value(out, "GAP", SESSIONS[9]) == 700.0  # median of 500, 600, 700, 800, 900
    assert value(out, "GAP", SESSIONS[7]) == 500.0  # median of 300, 400, 500, 600, 700


def test_bars_spread_over_more_than_twice_the_window_are_not_history():
    # five bars, but the first lies outside the 10 sessions ending at day 12 (days 3..12): null there;
    # the same five bars ending on day 10 lie within days 1..10: a median
    days = [2, 4, 6, 8, 10]
    prices = pl.concat([bars("SPARSE", days, [1e6] * 5), bars("SPARSE", [12], [1e6])])
    out = median_dollar_volume(prices, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[12])
    assert value(out, "SPARSE", SESSIONS[10]) == 1e6
    assert value(out, "SPARSE", SESSIONS[12]) == 1e6  # last five bars: 4..12, within 3..12
    late = pl.concat([bars("SPARSE", days, [1e6] * 5), bars("SPARSE", [14], [1e6])])
    out = median_dollar_volume(late, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[14])
    assert value(out, "SPARSE", SESSIONS[14]) is None  # last five bars 4..14 reach before 5..14


def test_even_window_takes_the_mean_of_the_two_middle_values():
    prices = bars("E", [0, 1, 2, 3], [10.0, 40.0, 20.0, 30.0])
    out = median_dollar_volume(prices, 4, SESSIONS, SESSIONS[0], SESSIONS[3])
    assert value(out, "E", SESSIONS[3]) == 25.0


# ---------------------------------------------------------------- the rule


def test_threshold_edges_are_inclusive():
    prices = bars("EDGE", list(range(WINDOW)), [1_000.0] * WINDOW)
    out = median_dollar_volume(prices, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[WINDOW - 1])
    last = out.filter(pl.col("session") == SESSIONS[WINDOW - 1])
    at = tradeable(last, UniverseRule(min_median_dollar_volume=1_000, liquidity_window=WINDOW))
    above = tradeable(
        last, UniverseRule(min_median_dollar_volume=math.nextafter(1_000.0, 2e3), liquidity_window=WINDOW)
    )
    below = tradeable(last, UniverseRule(min_median_dollar_volume=999.99, liquidity_window=WINDOW))
    assert at["tradeable"].to_list() == [True]
    assert above["tradeable"].to_list() == [False]
    assert below["tradeable"].to_list() == [True]
    assert tradeable(out, UniverseRule())["tradeable"].all()  # rule off: everything, the warm-up included


def test_a_symbol_that_becomes_liquid_later():
    # dollar volume grows 100 per session: the median crosses 2,000 when the window's middle bar reaches it
    growing = [100.0 * (i + 1) for i in range(40)]
    prices = pl.concat([bars("GROW", list(range(40)), growing), bars("BIG", list(range(40)), [1e9] * 40)])
    rule = UniverseRule(min_median_dollar_volume=2_000, liquidity_window=WINDOW)
    verdicts = tradeable(median_dollar_volume(prices, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[39]), rule)
    grow = verdicts.filter(pl.col("symbol") == "GROW").sort("session")
    expected = [
        (m := reference(prices, WINDOW, SESSIONS[i], "GROW")) is not None and m >= 2_000 for i in range(40)
    ]
    assert grow["tradeable"].to_list() == expected
    first = expected.index(True)
    assert 0 < first < 39 and all(expected[first:])  # not tradeable, then tradeable for good
    assert verdicts.filter(pl.col("symbol") == "BIG")["tradeable"].to_list() == [False] * 4 + [True] * 36


def test_no_look_ahead_altering_data_after_d_does_not_change_d():
    prices = random_prices(seed=7)
    d = SESSIONS[60]
    altered = pl.concat(
        [
            prices.filter(pl.col("session") <= d),
            prices.filter(pl.col("session") > d).with_columns(pl.col("volume") * 1000),
            bars("LATE", [61, 62, 63, 64, 65], [5e9] * 5),  # a symbol that appears after D
        ]
    )
    rule = UniverseRule(min_median_dollar_volume=5e7, liquidity_window=WINDOW)
    before = tradeable(median_dollar_volume(prices, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[-1]), rule)
    after = tradeable(median_dollar_volume(altered, WINDOW, SESSIONS, SESSIONS[0], SESSIONS[-1]), rule)
    until_d = pl.col("session") <= d
    assert before.filter(until_d).equals(after.filter(until_d))
    assert before.filter(until_d)["tradeable"].n_unique() == 2  # both verdicts occur: the rule bites
    assert not before.filter(~until_d).equals(after.filter(~until_d).filter(pl.col("symbol") != "LATE"))


@pytest.mark.parametrize("window", [1, WINDOW, 12])
def test_each_day_alone_equals_the_range(window):
    """A day computed from just its required input equals the same day inside a range, bit for bit."""
    prices = random_prices(seed=100 + window)
    start, end = SESSIONS[30], SESSIONS[60]
    ranged = median_dollar_volume(
        prices.filter(pl.col("session") >= required_input_start(SESSIONS, start, window)),
        window,
        SESSIONS,
        start,
        end,
    )
    days = [s for s in SESSIONS if start <= s <= end]
    alone = pl.concat(
        median_dollar_volume(
            prices.filter(pl.col("session").is_between(required_input_start(SESSIONS, d, window), d)),
            window,
            SESSIONS,
            d,
            d,
        )
        for d in days
    )
    assert ranged.equals(alone)
    assert ranged[MEDIAN_DOLLAR_VOLUME].null_count() < ranged.height


def test_required_input_start_and_the_lookback_constant():
    assert required_input_start(SESSIONS, SESSIONS[50], WINDOW) == SESSIONS[50 - (2 * WINDOW - 1)]
    assert required_input_start(SESSIONS, SESSIONS[3], WINDOW) == SESSIONS[0]  # clipped at the calendar
    # the signals asset's lookback covers the longest window's span
    assert LIQUIDITY_LOOKBACK_SESSIONS == 2 * MAX_LIQUIDITY_WINDOW - 1


def test_bad_input_is_refused():
    prices = bars("X", [0, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not unique"):
        median_dollar_volume(pl.concat([prices, prices.tail(1)]), 2, SESSIONS, SESSIONS[0], SESSIONS[2])
    with pytest.raises(ValueError, match="off the session calendar"):
        median_dollar_volume(prices, 2, SESSIONS[1:], SESSIONS[1], SESSIONS[2])
    with pytest.raises(ValueError, match="lack columns"):
        median_dollar_volume(prices.drop("volume"), 2, SESSIONS, SESSIONS[0], SESSIONS[2])
    with pytest.raises(ValueError, match="window"):
        median_dollar_volume(prices, 0, SESSIONS, SESSIONS[0], SESSIONS[2])
    with pytest.raises(ValueError, match="after"):
        median_dollar_volume(prices, 2, SESSIONS, SESSIONS[2], SESSIONS[0])


# ---------------------------------------------------------------- the signal filter


def test_signals_outside_the_universe_are_dropped_and_counted():
    prices = pl.concat(
        [
            bars("LIQ", list(range(10)), [1e9] * 10),
            bars("ILLIQ", list(range(10)), [1e3] * 10),
            bars("NEW", list(range(7, 10)), [1e9] * 3),  # too little history
        ]
    )
    day = SESSIONS[9]
    liquidity = median_dollar_volume(prices, WINDOW, SESSIONS, day, day)
    signals = pl.DataFrame(
        {
            "session": [day] * 5,
            "symbol": ["ILLIQ", "ILLIQ", "LIQ", "LIQ", "NEW"],
            "strategy": ["a", "b", "a", "b", "a"],
            "side": ["buy", "sell", "buy", "buy", "buy"],
        }
    )
    rule = UniverseRule(min_median_dollar_volume=1e6, liquidity_window=WINDOW)
    kept, counts = apply_liquidity_rule(signals, liquidity, rule)
    # buys only where tradeable; the sell of ILLIQ passes (a held position must stay closable); order kept
    assert kept.equals(signals.filter((pl.col("symbol") == "LIQ") | (pl.col("side") == "sell")))
    assert counts == {
        "universe_symbol_sessions": 3,
        "universe_excluded_symbol_sessions": 2,
        "universe_excluded_no_history": 1,
        "universe_excluded_symbols": 2,
        "universe_excluded_signals": 2,
    }
    off, none = apply_liquidity_rule(signals, liquidity, UniverseRule())
    assert off is signals and set(none.values()) == {0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_median_dollar_volume": -1}, ">= 0"),
        ({"min_median_dollar_volume": float("nan")}, "number"),
        ({"min_median_dollar_volume": True}, "number"),
        ({"liquidity_window": 0}, "1..252"),
        ({"liquidity_window": 253}, "1..252"),
        ({"liquidity_window": 60.0}, "whole number"),
        ({"liquidity_window": True}, "whole number"),
        ({"symbols": "SPY"}, "sequence of tickers"),
    ],
)
def test_invalid_rules_cannot_exist(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UniverseRule(**kwargs)


def test_a_valid_rule():
    rule = UniverseRule(symbols=["SPY"], min_median_dollar_volume=5, liquidity_window=MAX_LIQUIDITY_WINDOW)
    assert rule.symbols == ("SPY",) and rule.min_median_dollar_volume == 5.0 and rule.liquidity_rule_on
    assert not UniverseRule().liquidity_rule_on
