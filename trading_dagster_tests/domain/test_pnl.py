"""Mark-to-market against hand-computed numbers, stale prices, and range run == split runs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.orders import Fill, Order, OrderEvent, events_to_frame
from trading_dagster.domain.pnl import EQUITY_SCHEMA, POSITION_SCHEMA, mark_to_market
from trading_dagster.domain.portfolio import PortfolioState

D0, D1, D2, D3 = dt.date(2017, 3, 1), dt.date(2017, 3, 2), dt.date(2017, 3, 3), dt.date(2017, 3, 6)
BEFORE = dt.date(2017, 2, 28)
SESSIONS = [D0, D1, D2, D3]


def _fill(cid: str, session: dt.date, symbol: str, side: str, qty: int, price: str, commission: str) -> Fill:
    return Fill(cid, session, session, symbol, side, qty, Decimal(price), Decimal(commission))


FILLS = [
    _fill("a", D1, "AAA", "buy", 10, "10.00", "0.05"),
    _fill("b", D3, "AAA", "sell", 10, "12.00", "0.05"),
    _fill("c", D3, "BBB", "buy", 5, "20.00", "0.03"),
]


def _prices() -> pl.DataFrame:
    closes = {
        "AAA": {BEFORE: 9.0, D0: 9.5, D1: 11.0, D3: 12.5},  # no bar on D2
        "BBB": {D3: 21.0},
        "SPY": {BEFORE: 199.0, D0: 200.0, D1: 202.0, D3: 199.0},  # no bar on D2
    }
    rows = [(s, d, c, c, c, c, 100) for s, by in closes.items() for d, c in by.items()]
    return pl.DataFrame(
        rows, schema=["symbol", "session", "open", "high", "low", "close", "volume"], orient="row"
    ).cast({"session": pl.Date, "volume": pl.Int64})


def _executions() -> pl.DataFrame:
    """The broker's events: fills plus accepted/expired rows that mark-to-market must ignore."""
    order = Order("z", D0, "CCC", "s", "buy", 1, 1, Decimal(5), "approved")
    return events_to_frame([*FILLS, OrderEvent.accepted(order), OrderEvent.expired(order, D1, 1)])


def test_mark_to_market_by_hand():
    positions, equity = mark_to_market(PortfolioState.initial(1000), _executions(), _prices(), SESSIONS)
    assert positions.schema == pl.Schema(POSITION_SCHEMA)
    assert equity.schema == pl.Schema(EQUITY_SCHEMA)
    assert positions.rows() == [
        (D1, "AAA", 10, 10.005, 11.0, 110.0, pytest.approx(9.95), False),
        (D2, "AAA", 10, 10.005, 11.0, 110.0, pytest.approx(9.95), True),  # last known close, flagged
        (D3, "BBB", 5, 20.006, 21.0, 105.0, pytest.approx(4.97), False),
    ]
    assert equity.select("session", "cash", "market_value", "equity", "n_positions", "trades").rows() == [
        (D0, 1000.0, 0.0, 1000.0, 0, 0),
        (D1, 899.95, 110.0, 1009.95, 1, 1),
        (D2, 899.95, 110.0, 1009.95, 1, 0),
        (D3, 919.87, 105.0, 1024.87, 1, 2),
    ]
    assert equity["realized_pnl"].to_list() == [
        0.0,
        0.0,
        0.0,
        pytest.approx(19.90),
    ]  # (12 - 10.005) * 10 - 0.05
    assert equity["unrealized_pnl"].to_list() == pytest.approx([0.0, 9.95, 9.95, 4.97])
    assert equity["daily_return"].to_list() == pytest.approx([0.0, 0.00995, 0.0, 1024.87 / 1009.95 - 1])
    assert equity["benchmark_close"].to_list() == [200.0, 202.0, 202.0, 199.0]  # carried over D2


def test_first_daily_return_uses_the_close_before_the_window():
    start = PortfolioState(cash=Decimal(100), positions={"AAA": (10, Decimal(8))})
    _, equity = mark_to_market(start, [], _prices(), [D0])
    assert equity["daily_return"].to_list() == [pytest.approx((100 + 95) / (100 + 90) - 1)]
    # no close at all before the window for a held symbol: unknown, not a made-up number
    _, equity = mark_to_market(start, [], _prices().filter(pl.col("session") >= D0), [D0])
    assert equity["daily_return"].to_list() == [None]


def test_a_symbol_never_priced_is_marked_at_cost_and_flagged():
    start = PortfolioState(cash=Decimal(0), positions={"ZZZ": (2, Decimal("7.5"))})
    positions, equity = mark_to_market(start, [], _prices(), [D0])
    assert positions.rows() == [(D0, "ZZZ", 2, 7.5, 7.5, 15.0, 0.0, True)]
    assert equity["equity"].to_list() == [15.0]


def test_range_run_equals_day_by_day_runs():
    start = PortfolioState.initial(1000)
    whole = mark_to_market(start, FILLS, _prices(), SESSIONS)
    parts = []
    for i, day in enumerate(SESSIONS):
        before = start.apply_fills([f for f in FILLS if f.session < day]) if i else start
        parts.append(mark_to_market(before, FILLS, _prices(), [day]))
    assert pl.concat([p[0] for p in parts]).equals(whole[0])
    assert pl.concat([p[1] for p in parts]).equals(whole[1])


def test_fills_on_a_non_session_inside_the_window_are_an_error():
    bad = [_fill("x", dt.date(2017, 3, 4), "AAA", "buy", 1, "10", "0")]
    with pytest.raises(ValueError):
        mark_to_market(PortfolioState.initial(1000), bad, _prices(), SESSIONS)


def test_empty_window():
    positions, equity = mark_to_market(PortfolioState.initial(1000), [], _prices(), [])
    assert positions.height == equity.height == 0
