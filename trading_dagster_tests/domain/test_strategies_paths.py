"""`generate_signals`' two paths give one answer, and its number formatting is the plain one.

A table in (session, symbol) order finds each cross's previous-session row by position (`_previous_rows`); any
other order, or a session off the calendar, takes the join on (symbol, previous session). Both are run here on
the same random tables (the second by shuffling the rows), with and without the exchange calendar, outages
(calendar sessions with no rows), symbols missing bars, null SMAs, sessions off the calendar and rows outside
the window, and must give the same frame. The reasons' numbers are checked against Python's own formatting of
the same whole cents.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.strategies import _fixed2, generate_signals, parse_strategies

CALENDAR = [dt.date(2021, 1, 4) + dt.timedelta(days=i) for i in range(0, 40) if i % 7 < 5]  # weekdays
STRATEGIES = parse_strategies(
    [
        {"name": "cross_fast", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}},
        {"name": "cross_band", "kind": "sma_cross", "params": {"fast": 50, "slow": 200, "tie_band_pct": 1.0}},
        {"name": "dip", "kind": "dip_52w", "params": {"threshold_pct": 10}},
        {"name": "rsi", "kind": "rsi", "params": {"lower": 30, "upper": 70}},
    ]
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[pl.DataFrame, list[dt.date]]:
    """(an indicators table in (session, symbol) order, the calendar it is read with)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_days = draw(st.integers(1, len(CALENDAR)))
    days = CALENDAR[:n_days]
    outage = [d for d in days if rng.random() < 0.1]  # on the calendar, no rows
    off_calendar = [days[-1] + dt.timedelta(days=1)] if draw(st.booleans()) and n_days > 3 else []  # a Saturday
    rows = []
    for symbol in draw(st.lists(st.sampled_from(["AA", "B", "CCC", "D", "EE"]), min_size=1, max_size=5, unique=True)):
        level = rng.uniform(5, 500)
        walk = {c: level + np.cumsum(rng.normal(0, level / 100 * s, n_days + 1)) for c, s in (("f", 3), ("m", 1), ("s", 0.3))}
        for i, day in enumerate([*days, *off_calendar]):
            if day in outage or rng.random() < 0.2:
                continue
            i = min(i, n_days)
            pct = float(rng.uniform(-1, 40))
            rows.append(
                {
                    "symbol": symbol,
                    "session": day,
                    "close": float(level * rng.uniform(0.5, 1.5)),
                    "sma_20": None if rng.random() < 0.1 else float(walk["f"][i]),
                    "sma_50": float(walk["m"][i]),
                    "sma_200": None if rng.random() < 0.05 else float(walk["s"][i]),
                    "rsi_14": None if rng.random() < 0.1 else float(rng.uniform(0, 100)),
                    "high_52w": level * 2,
                    "pct_below_high_52w": None if rng.random() < 0.05 else pct,
                }
            )
    schema = {"symbol": pl.Utf8, "session": pl.Date, **{c: pl.Float64 for c in ("close", "sma_20", "sma_50", "sma_200",
                                                                               "rsi_14", "high_52w", "pct_below_high_52w")}}
    table = pl.DataFrame(rows, schema=schema, orient="row").sort("session", "symbol")
    return table, list(CALENDAR)


@settings(max_examples=150, deadline=None)
@given(tables(), st.data())
def test_ordered_and_shuffled_tables_give_the_same_signals(table_and_calendar, data) -> None:
    table, calendar = table_and_calendar
    present = table["session"].unique().sort().to_list() or [CALENDAR[0]]
    start = data.draw(st.sampled_from(present))
    end = data.draw(st.sampled_from([d for d in present if d >= start]))
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=data.draw(st.integers(0, 1000)))
    for sessions in (None, calendar):
        ordered = generate_signals(table, STRATEGIES, start, end, sessions)
        general = generate_signals(shuffled, STRATEGIES, start, end, sessions)
        assert ordered.equals(general), (start, end, sessions is None)
        # and a table that starts at the window (no previous session given) agrees on what it can see
        alone = generate_signals(table.filter(pl.col("session") >= start), STRATEGIES, start, end, sessions)
        first_day = pl.col("session") == start
        assert alone.filter(~first_day).equals(ordered.filter(~first_day))


def test_the_calendar_decides_the_previous_session_across_an_outage() -> None:
    """A cross needs the calendar's previous session: across a day with no rows there is none (with the
    calendar), while without it the previous session present in the table counts."""
    rows = [
        ("A", CALENDAR[0], 10.0, 11.0),  # fast below slow
        ("A", CALENDAR[2], 12.0, 11.0),  # fast above slow: CALENDAR[1] had no rows at all
        ("B", CALENDAR[0], 10.0, 11.0),
        ("B", CALENDAR[2], 12.0, 11.0),
    ]
    table = pl.DataFrame(rows, schema=["symbol", "session", "sma_20", "sma_50"], orient="row")
    cross = STRATEGIES[:1]
    for order in (table.sort("session", "symbol"), table):  # by position, and by the join
        assert generate_signals(order, cross, CALENDAR[2], CALENDAR[2], CALENDAR).height == 0
        assert generate_signals(order, cross, CALENDAR[2], CALENDAR[2])["symbol"].to_list() == ["A", "B"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e9, 1e9), st.integers(-10**6, 10**6).map(lambda c: c / 100),
                          st.integers(-10**6, 10**6).map(lambda c: c / 200)), min_size=1, max_size=50))
def test_fixed2_is_the_whole_cents_printed(values: list[float]) -> None:
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    got = frame.select(_fixed2(pl.col("x")))["x"].to_list()
    cents = frame.select((pl.col("x").abs() * 100).round(0).cast(pl.Int64))["x"].to_list()
    want = [f"{'-' if x < 0 and c > 0 else ''}{c // 100}.{c % 100:02d}" for x, c in zip(values, cents, strict=True)]
    assert got == want
