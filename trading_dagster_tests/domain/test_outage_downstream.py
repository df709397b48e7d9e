"""Downstream of a data outage (decision 0004, section 2): a session with no indicators at all gives no
signal, and a cross is never taken across it, so a range run equals the same sessions run one by one."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.strategies import generate_signals, parse_strategies

CROSS = parse_strategies([{"name": "x", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}}])
CAL = nyse_calendar()
D = CAL.between(dt.date(2017, 6, 1), dt.date(2017, 6, 7))  # 06-01, 02, 05, 06, 07


def indicators(rows: dict[dt.date, tuple[float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": "INTC", "session": list(rows), "sma_20": [r[0] for r in rows.values()], "sma_50": [r[1] for r in rows.values()]},
        schema={"symbol": pl.Utf8, "session": pl.Date, "sma_20": pl.Float64, "sma_50": pl.Float64},
    )


def test_a_cross_is_never_taken_across_a_session_without_indicators():
    # fast above slow on 06-02, no indicators on 06-05 (an outage), fast below slow on 06-06
    ind = indicators({D[0]: (10.0, 9.0), D[1]: (10.0, 9.0), D[3]: (8.0, 9.0), D[4]: (8.0, 9.0)})
    whole = generate_signals(ind, CROSS, D[1], D[4], CAL.sessions)
    days = [generate_signals(ind.filter(pl.col("session").is_between(CAL.previous_session(d), d)), CROSS, d, d, CAL.sessions) for d in D[1:]]
    assert whole.height == 0 and all(d.height == 0 for d in days)
    # without the calendar the range run took the cross 06-02 -> 06-06, which a one-day run of 06-06 cannot see
    assert generate_signals(ind, CROSS, D[1], D[4]).select("session", "side").rows() == [(D[3], "sell")]


def test_a_cross_on_consecutive_sessions_still_fires_with_the_calendar():
    ind = indicators({D[0]: (10.0, 9.0), D[1]: (8.0, 9.0)})
    assert generate_signals(ind, CROSS, D[1], D[1], CAL.sessions).select("session", "side").rows() == [(D[1], "sell")]
