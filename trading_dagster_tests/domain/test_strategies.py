"""Strategies: config validation, hand-computed signals, point in time, range == one session at a time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.indicators import compute_indicators
from trading_dagster.domain.strategies import (
    DEFAULT_STRATEGIES,
    StrategySpec,
    generate_signals,
    parse_strategies,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
SIGNAL_COLUMNS = ["session", "symbol", "strategy", "side", "strength", "reason"]
D = [dt.date(2020, 3, 2) + dt.timedelta(days=i) for i in range(8)]  # plain dates stand in for sessions

CROSS = parse_strategies([{"name": "x", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}}])
DIP = parse_strategies([{"name": "dip", "kind": "dip_52w", "params": {"threshold_pct": 10}}])
RSI = parse_strategies([{"name": "rsi", "kind": "rsi", "params": {"lower": 30, "upper": 70}}])


def frame(rows: list[dict]) -> pl.DataFrame:
    """An indicators frame from partial rows; absent indicator columns are null."""
    schema = {
        "symbol": pl.Utf8,
        "session": pl.Date,
        "close": pl.Float64,
        "sma_20": pl.Float64,
        "sma_50": pl.Float64,
        "sma_200": pl.Float64,
        "rsi_14": pl.Float64,
        "high_52w": pl.Float64,
        "pct_below_high_52w": pl.Float64,
    }
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema, orient="row")


def as_tuples(signals: pl.DataFrame) -> list[tuple]:
    return signals.select("session", "symbol", "side", "strength", "reason").rows()


# ---------------------------------------------------------------- hand-made frames


def test_sma_cross_fires_on_the_cross_bar_only() -> None:
    fast_slow = {
        # session: (sma_20, sma_50) for symbol A
        D[0]: (10.0, 11.0),
        D[1]: (10.5, 11.0),  # still below: nothing
        D[2]: (11.2, 11.1),  # crossed above: buy
        D[3]: (11.3, 11.1),  # still above: nothing
        D[4]: (11.0, 11.1),  # crossed below: sell
        D[5]: (11.1, 11.1),  # touches: nothing (not above)
        D[6]: (11.15, 11.1),  # from equal to above: buy (fast_prev <= slow_prev)
    }
    rows = [{"symbol": "A", "session": d, "sma_20": f, "sma_50": s} for d, (f, s) in fast_slow.items()]
    out = generate_signals(frame(rows), CROSS, D[1], D[6])
    assert as_tuples(out) == [
        (D[2], "A", "buy", 1.0, "sma_20 11.20 crossed above sma_50 11.10"),
        (D[4], "A", "sell", 1.0, "sma_20 11.00 crossed below sma_50 11.10"),
        (D[6], "A", "buy", 1.0, "sma_20 11.15 crossed above sma_50 11.10"),
    ]
    assert out.columns == SIGNAL_COLUMNS and set(out["strategy"]) == {"x"}


def test_sma_cross_uses_the_bar_before_out_start_and_needs_both_bars() -> None:
    rows = [
        {"symbol": "A", "session": D[0], "sma_20": 9.0, "sma_50": 10.0},
        {"symbol": "A", "session": D[1], "sma_20": 11.0, "sma_50": 10.0},  # cross at out_start
        {"symbol": "B", "session": D[0], "sma_20": 9.0, "sma_50": None},  # slow not yet available
        {"symbol": "B", "session": D[1], "sma_20": 11.0, "sma_50": 10.0},
        {"symbol": "C", "session": D[1], "sma_20": 11.0, "sma_50": 10.0},  # no previous bar at all
        {"symbol": "E", "session": D[0], "sma_20": 12.0, "sma_50": 10.0},
        {"symbol": "E", "session": D[1], "sma_20": 9.0, "sma_50": 10.0},
    ]
    out = generate_signals(frame(rows), CROSS, D[1], D[1])
    assert out.select("symbol", "side").rows() == [("A", "buy"), ("E", "sell")]
    # the bar of D[0] is the look-back, not an output session
    assert generate_signals(frame(rows), CROSS, D[0], D[0]).height == 0


def test_sma_cross_previous_bar_is_the_previous_session_not_the_previous_row() -> None:
    """A symbol without a bar on the previous session gets no cross: a one-session run could not see it."""
    rows = [
        {"symbol": "A", "session": D[0], "sma_20": 9.0, "sma_50": 10.0},
        {"symbol": "SPY", "session": D[0], "sma_20": 1.0, "sma_50": 1.0},
        {"symbol": "SPY", "session": D[1], "sma_20": 1.0, "sma_50": 1.0},  # A missed D[1]
        {"symbol": "A", "session": D[2], "sma_20": 11.0, "sma_50": 10.0},
        {"symbol": "SPY", "session": D[2], "sma_20": 1.0, "sma_50": 1.0},
    ]
    assert generate_signals(frame(rows), CROSS, D[1], D[2]).height == 0


def test_other_sma_pairs_read_their_columns() -> None:
    spec = parse_strategies([{"name": "golden", "kind": "sma_cross", "params": {"fast": 50, "slow": 200}}])
    rows = [
        {"symbol": "A", "session": D[0], "sma_20": 1.0, "sma_50": 99.0, "sma_200": 100.0},
        {"symbol": "A", "session": D[1], "sma_20": 1.0, "sma_50": 101.0, "sma_200": 100.0},
    ]
    assert as_tuples(generate_signals(frame(rows), spec, D[1], D[1])) == [
        (D[1], "A", "buy", 1.0, "sma_50 101.00 crossed above sma_200 100.00")
    ]


def test_dip_52w_threshold_strength_and_reason() -> None:
    cases = {"A": 9.99, "B": 10.0, "C": 15.0, "E": 25.0, "F": None}
    rows = [
        {"symbol": s, "session": D[3], "close": 50.0, "high_52w": 60.0, "pct_below_high_52w": p}
        for s, p in cases.items()
    ]
    out = generate_signals(frame(rows), DIP, D[3], D[3])
    assert out.select("symbol", "side", "strength").rows() == [
        ("B", "buy", 0.5),
        ("C", "buy", 0.75),
        ("E", "buy", 1.0),
    ]
    assert out["reason"][0] == "close 50.00 is 10.00% below the 52-week high 60.00 (threshold 10%)"


def test_rsi_bounds_strength_and_reason() -> None:
    cases = {"A": 29.5, "B": 30.0, "C": 50.0, "E": 70.0, "F": 85.0, "G": 0.0, "H": 100.0, "I": None}
    rows = [{"symbol": s, "session": D[3], "rsi_14": r} for s, r in cases.items()]
    out = generate_signals(frame(rows), RSI, D[3], D[3])
    got = {
        s: (side, strength, reason)
        for s, side, strength, reason in out.select("symbol", "side", "strength", "reason").rows()
    }
    assert set(got) == {"A", "F", "G", "H"}
    assert got["A"][:2] == ("buy", pytest.approx(0.5 / 30)) and got["A"][2] == "rsi_14 29.50 below 30"
    assert got["F"] == ("sell", 0.5, "rsi_14 85.00 above 70")
    assert got["G"][:2] == ("buy", 1.0) and got["H"][:2] == ("sell", 1.0)


ML = [
    {"name": "rsi", "kind": "rsi", "params": {"lower": 30, "upper": 70}, "trades": False},
    {"name": "rsi_ml", "kind": "ml_filter", "refines": "rsi", "params": {"min_probability": 0.55}},
]


def _probabilities(values: dict[str, float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": list(values), "session": [D[3]] * len(values), "probability": list(values.values())},
        schema={"symbol": pl.Utf8, "session": pl.Date, "probability": pl.Float64},
    )


def test_an_ml_filter_keeps_the_buys_the_model_backs_and_every_sell() -> None:
    rows = [{"symbol": s, "session": D[3], "rsi_14": r} for s, r in {"A": 20.0, "B": 25.0, "C": 10.0, "F": 85.0}.items()]
    probabilities = _probabilities({"A": 0.60, "B": 0.54, "C": None, "F": 0.10})
    out = generate_signals(frame(rows), parse_strategies(ML), D[3], D[3], probabilities=probabilities)
    got = {s: (strategy, side, strength, reason) for s, strategy, side, strength, reason in
           out.select("symbol", "strategy", "side", "strength", "reason").rows()}
    # A backed (0.60 >= 0.55); B below the floor and C unscored are dropped; F's sell passes whatever p says;
    # the base (trades = false) is not in the output
    assert set(got) == {"A", "F"}
    assert got["A"] == ("rsi_ml", "buy", pytest.approx(10 / 30), "rsi_14 20.00 below 30; model p=0.60 >= 0.55")
    assert got["F"] == ("rsi_ml", "sell", 0.5, "rsi_14 85.00 above 70")

    scaled = [ML[0], {**ML[1], "params": {"min_probability": 0.5, "scale": 1}}]
    out = generate_signals(frame(rows), parse_strategies(scaled), D[3], D[3], probabilities=probabilities)
    strength = dict(out.select("symbol", "strength").rows())
    assert strength["A"] == pytest.approx(10 / 30 * 0.60) and strength["B"] == pytest.approx(5 / 30 * 0.54)

    with pytest.raises(ValueError, match=r"\['rsi_ml'\] \(ml_filter\) need the model's probabilities"):
        generate_signals(frame(rows), parse_strategies(ML), D[3], D[3])


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ([{"name": "m", "kind": "ml_filter", "params": {"min_probability": 0.5}}], "an ml_filter needs refines"),
        ([{**ML[1], "refines": "nope"}], "refines 'nope', which is not configured"),
        ([ML[0], {**ML[1], "params": {"min_probability": 1.5}}], r"min_probability must be in \[0, 1\]"),
        ([ML[0], {**ML[1], "params": {"min_probability": 0.5, "scale": 0.5}}], "scale must be 0"),
        ([{**ML[0], "refines": "x"}], "refines is for ml_filter strategies only"),
        ([ML[0], ML[1], {**ML[1], "name": "m2", "refines": "rsi_ml"}], "another ml_filter"),
    ],
)
def test_an_ml_filter_is_validated(configs, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_strategies(configs)


def test_several_strategies_sorted_and_typed() -> None:
    rows = [
        {
            "symbol": s,
            "session": d,
            "close": 50.0,
            "high_52w": 60.0,
            "pct_below_high_52w": 16.7,
            "rsi_14": 20.0,
        }
        for d in (D[2], D[1])
        for s in ("B", "A")
    ]
    specs = (
        *RSI,
        *DIP,
        *parse_strategies([{"name": "a_rsi", "kind": "rsi", "params": {"lower": 25, "upper": 75}}]),
    )
    out = generate_signals(frame(rows), specs, D[1], D[2])
    assert out.schema == pl.Schema(
        {
            "session": pl.Date,
            "symbol": pl.Utf8,
            "strategy": pl.Utf8,
            "side": pl.Utf8,
            "strength": pl.Float64,
            "reason": pl.Utf8,
        }
    )
    assert out.select("session", "symbol", "strategy").rows() == [
        (d, s, k) for d in (D[1], D[2]) for s in ("A", "B") for k in ("a_rsi", "dip", "rsi")
    ]


def test_no_signals_gives_an_empty_typed_frame() -> None:
    out = generate_signals(frame([{"symbol": "A", "session": D[0], "rsi_14": 50.0}]), RSI, D[0], D[0])
    assert out.height == 0 and out.columns == SIGNAL_COLUMNS and out.schema["session"] == pl.Date
    assert generate_signals(frame([]), DEFAULT_STRATEGIES, D[0], D[1]).columns == SIGNAL_COLUMNS


def test_generate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lack columns"):
        generate_signals(frame([]).drop("rsi_14"), RSI, D[0], D[0])
    with pytest.raises(ValueError, match="after"):
        generate_signals(frame([]), RSI, D[1], D[0])
    with pytest.raises(ValueError, match="unique"):
        generate_signals(frame([]), (*RSI, *RSI), D[0], D[0])
    dup = [{"symbol": "A", "session": D[0], "rsi_14": 10.0}] * 2
    with pytest.raises(ValueError, match="unique"):
        generate_signals(frame(dup), RSI, D[0], D[0])


# ---------------------------------------------------------------- configuration


def test_default_strategies() -> None:
    assert [(s.name, s.kind, dict(s.params)) for s in DEFAULT_STRATEGIES] == [
        ("sma_20_50_cross", "sma_cross", {"fast": 20.0, "slow": 50.0}),
        ("dip_10pct_52w_high", "dip_52w", {"threshold_pct": 10.0}),
        ("rsi_30_70", "rsi", {"lower": 30.0, "upper": 70.0}),
    ]


def test_spec_is_an_immutable_value() -> None:
    params = {"lower": 30, "upper": 70}
    spec = StrategySpec("r", "rsi", params)
    params["lower"] = 99  # the caller's dict is copied, not kept
    assert spec.params["lower"] == 30.0
    with pytest.raises(TypeError):
        spec.params["lower"] = 10  # type: ignore[index]
    assert spec == StrategySpec("r", "rsi", {"upper": 70.0, "lower": 30.0})
    assert len({spec, StrategySpec("r", "rsi", {"upper": 70, "lower": 30})}) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "a", "kind": "macd", "params": {}}, "unknown kind 'macd'"),
        (
            {"name": "a", "kind": "rsi", "params": {"lower": 30, "upper": 70, "period": 14}},
            r"unknown params \['period'\]",
        ),
        ({"name": "a", "kind": "rsi", "params": {"lower": 30}}, r"missing params \['upper'\]"),
        (
            {"name": "a", "kind": "sma_cross", "params": {"fast": 50, "slow": 20}},
            r"fast \(50\) must be < slow \(20\)",
        ),
        ({"name": "a", "kind": "sma_cross", "params": {"fast": 50, "slow": 50}}, "must be < slow"),
        (
            {"name": "a", "kind": "sma_cross", "params": {"fast": 1, "slow": 50}},
            r"fast=1 must be a whole number of sessions in \[2, 400\]",
        ),
        (
            {"name": "a", "kind": "sma_cross", "params": {"fast": 20, "slow": 401}},
            "slow=401 must be a whole number",
        ),
        (
            {"name": "a", "kind": "sma_cross", "params": {"fast": 20.5, "slow": 100}},
            "fast=20.5 must be a whole number",
        ),
        (
            {"name": "a", "kind": "dip_52w", "params": {"threshold_pct": 0}},
            r"threshold_pct must be in \(0, 100\)",
        ),
        ({"name": "a", "kind": "dip_52w", "params": {"threshold_pct": 100}}, "threshold_pct must be in"),
        ({"name": "a", "kind": "rsi", "params": {"lower": 70, "upper": 30}}, "0 < lower < upper < 100"),
        ({"name": "a", "kind": "rsi", "params": {"lower": 0, "upper": 70}}, "0 < lower < upper < 100"),
        ({"name": "a", "kind": "rsi", "params": {"lower": 30, "upper": 100}}, "0 < lower < upper < 100"),
        (
            {"name": "a", "kind": "rsi", "params": {"lower": "30", "upper": 70}},
            "'lower' must be a finite number",
        ),
        (
            {"name": "a", "kind": "rsi", "params": {"lower": True, "upper": 70}},
            "'lower' must be a finite number",
        ),
        (
            {"name": "a", "kind": "rsi", "params": {"lower": float("nan"), "upper": 70}},
            "must be a finite number",
        ),
        ({"name": "a", "kind": "rsi", "params": [30, 70]}, "params must be a mapping"),
        ({"name": "my rsi", "kind": "rsi", "params": {"lower": 30, "upper": 70}}, "name must match"),
        ({"name": "", "kind": "rsi", "params": {"lower": 30, "upper": 70}}, "name must match"),
        ({"name": "a", "kind": "rsi"}, r"missing keys \['params'\]"),
        (
            {"name": "a", "kind": "rsi", "params": {"lower": 30, "upper": 70}, "extra": 1},
            r"unknown keys \['extra'\]",
        ),
    ],
)
def test_parse_rejects_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_strategies([config])


def test_parse_rejects_duplicate_names_and_non_mappings() -> None:
    entry = {"name": "a", "kind": "rsi", "params": {"lower": 30, "upper": 70}}
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        parse_strategies([entry, {**entry, "params": {"lower": 20, "upper": 80}}])
    with pytest.raises(ValueError, match="must be a mapping"):
        parse_strategies(["rsi"])  # type: ignore[list-item]
    assert parse_strategies([]) == ()


# ---------------------------------------------------------------- point in time and range == per session


@pytest.fixture(scope="module")
def real_indicators() -> pl.DataFrame:
    """Indicators of the sample's first three years: enough crosses, dips and RSI extremes."""
    prices = pl.read_parquet(SAMPLE).rename({"ticker": "symbol", "date": "session"})
    return compute_indicators(prices.filter(pl.col("session") < dt.date(2011, 1, 1)))


def one_session_at_a_time(indicators: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Each session run as its own partition would be: input = [previous session, D]."""
    days = indicators["session"].unique().sort().to_list()
    outs = []
    for i, day in enumerate(days):
        if start <= day <= end:
            window = indicators.filter(pl.col("session").is_between(days[max(0, i - 1)], day))
            outs.append(generate_signals(window, DEFAULT_STRATEGIES, day, day))
    return pl.concat(outs)


def test_range_equals_one_session_at_a_time_on_real_data(real_indicators: pl.DataFrame) -> None:
    start, end = dt.date(2009, 2, 2), dt.date(2009, 6, 30)
    days = real_indicators["session"].unique().sort().to_list()
    previous = days[days.index(start) - 1]
    ranged = generate_signals(
        real_indicators.filter(pl.col("session").is_between(previous, end)), DEFAULT_STRATEGIES, start, end
    )
    counts = dict(ranged.group_by("strategy").len().rows())
    assert all(counts.get(s.name, 0) > 5 for s in DEFAULT_STRATEGIES), counts  # every kind fires
    assert ranged.equals(one_session_at_a_time(real_indicators, start, end))
    # extra rows on either side of the needed input change nothing
    assert generate_signals(real_indicators, DEFAULT_STRATEGIES, start, end).equals(ranged)
    assert ranged["strength"].is_between(0.0, 1.0).all()


def test_no_look_ahead_on_real_data(real_indicators: pl.DataFrame) -> None:
    day = dt.date(2009, 3, 10)
    before = generate_signals(real_indicators, DEFAULT_STRATEGIES, dt.date(2009, 1, 5), dt.date(2009, 12, 31))
    later = pl.col("session") > day
    numeric = [c for c, t in real_indicators.schema.items() if t == pl.Float64]
    scrambled = real_indicators.with_columns(
        [pl.when(later).then(pl.col(c).reverse() * 1.7).otherwise(pl.col(c)).alias(c) for c in numeric]
    )
    after = generate_signals(scrambled, DEFAULT_STRATEGIES, dt.date(2009, 1, 5), dt.date(2009, 12, 31))
    up_to_day = pl.col("session") <= day
    assert after.filter(up_to_day).equals(before.filter(up_to_day))
    assert not after.filter(later).equals(before.filter(later))  # the scrambling did change later signals
    dropped = generate_signals(real_indicators.filter(~later), DEFAULT_STRATEGIES, dt.date(2009, 1, 5), day)
    assert dropped.equals(before.filter(up_to_day))


@st.composite
def indicator_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Small random indicator tables: several symbols, missing bars, nulls, crosses and extremes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_days = draw(st.integers(2, 12))
    rows = []
    for symbol in ("A", "B", "C"):
        fast, slow = 10 + np.cumsum(rng.normal(0, 1, n_days)), 10 + np.cumsum(rng.normal(0, 0.3, n_days))
        for i in range(n_days):
            if rng.random() < 0.15:
                continue  # missing bar
            pct = float(rng.uniform(0, 30))
            rows.append(
                {
                    "symbol": symbol,
                    "session": D[0] + dt.timedelta(days=i),
                    "close": 50.0,
                    "sma_20": None if rng.random() < 0.1 else float(fast[i]),
                    "sma_50": float(slow[i]),
                    "rsi_14": None if rng.random() < 0.1 else float(rng.uniform(0, 100)),
                    "high_52w": 50.0 / (1 - pct / 100),
                    "pct_below_high_52w": pct,
                }
            )
    return frame(rows)


@settings(max_examples=80, deadline=None)
@given(indicator_frames(), st.data())
def test_range_equals_per_session_and_ignores_the_future(
    indicators: pl.DataFrame, data: st.DataObject
) -> None:
    days = indicators["session"].unique().sort().to_list()
    if len(days) < 2:
        return
    start = data.draw(st.sampled_from(days[1:]))
    end = data.draw(st.sampled_from([d for d in days if d >= start]))
    ranged = generate_signals(indicators, DEFAULT_STRATEGIES, start, end)
    assert ranged.equals(one_session_at_a_time(indicators, start, end).select(ranged.columns))
    assert ranged["strength"].is_between(0.0, 1.0).all()
    cut = data.draw(st.sampled_from([d for d in days if start <= d <= end]))
    future = indicators.with_columns(
        sma_20=pl.when(pl.col("session") > cut).then(-pl.col("sma_20")).otherwise(pl.col("sma_20")),
        rsi_14=pl.when(pl.col("session") > cut).then(100 - pl.col("rsi_14")).otherwise(pl.col("rsi_14")),
    )
    past = pl.col("session") <= cut
    assert generate_signals(future, DEFAULT_STRATEGIES, start, end).filter(past).equals(ranged.filter(past))


def test_any_row_order_gives_the_same_signals_and_duplicates_are_refused(real_indicators: pl.DataFrame) -> None:
    """The indicators table's (session, symbol) order is the fast path (signals ordered by row number); a
    shuffled table takes the general path and must give the same frame; a repeated row in either order is
    refused."""
    start, end = dt.date(2009, 2, 2), dt.date(2009, 6, 30)
    ordered = generate_signals(real_indicators, DEFAULT_STRATEGIES, start, end)
    shuffled = generate_signals(real_indicators.sample(fraction=1.0, shuffle=True, seed=5), DEFAULT_STRATEGIES, start, end)
    assert ordered.height > 100 and ordered.equals(shuffled)
    assert ordered.equals(ordered.sort("session", "symbol", "strategy"))
    repeated = real_indicators.filter(pl.col("session") == start).head(1)
    for table in (pl.concat([real_indicators, repeated]).sort("session", "symbol"), pl.concat([real_indicators, repeated])):
        with pytest.raises(ValueError, match="unique"):
            generate_signals(table, DEFAULT_STRATEGIES, start, end)
