"""`collector.collector_paused`: the cyclic collector is off inside the call and as it was after it (also after an
error, and off when it was off); the bulk calls it wraps make no reference cycles, so pausing it frees the same
memory (a backtest through the book and its mark-to-market leave nothing for `gc.collect()`)."""

from __future__ import annotations

import datetime as dt
import gc
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.collector import collector_paused
from trading_dagster.domain.execution import opens_by_session, orders_by_session
from trading_dagster.domain.orders import Order
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState
from trading_dagster.resources.backtest_book import SimulatedBook


@collector_paused
def _state(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("boom")
    return gc.isenabled()


def test_paused_inside_and_restored_after():
    assert gc.isenabled()
    assert _state() is False
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        _state(fail=True)
    assert gc.isenabled()
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()  # someone else's off stays off
    finally:
        gc.enable()


def _prices() -> pl.DataFrame:
    days = [dt.date(2017, 3, 1) + dt.timedelta(days=i) for i in range(30)]
    days = [d for d in days if d.weekday() < 5]
    rows = [(s, d, 10.0 + i * 0.25 + j, 10.5 + i * 0.25 + j) for i, d in enumerate(days) for j, s in enumerate(["AAA", "BBB", "SPY"])]
    return pl.DataFrame(rows, schema={"symbol": pl.String, "session": pl.Date, "open": pl.Float64, "close": pl.Float64}, orient="row")


def _of_ours(obj: object) -> bool:
    """An instance of one of this package's classes, or a function, frame or generator of its code."""
    code = getattr(obj, "f_code", None) or getattr(obj, "gi_code", None) or getattr(obj, "__code__", None)
    if code is not None:
        return "trading_dagster" in code.co_filename
    return type(obj).__module__.startswith("trading_dagster")


def test_the_wrapped_calls_leave_no_cyclic_garbage(tmp_path):
    prices = _prices()
    sessions = sorted(set(prices["session"].to_list()))
    orders = [
        Order(f"o-{i}-{s}", day, s, "t", "buy" if i % 3 else "sell", 5, 5, Decimal("10.5"), "approved")
        for i, day in enumerate(sessions[:-1])
        for s in ("AAA", "BBB")
        if i % 3 or i > 2
    ]
    frame = pl.DataFrame(
        {
            "session": [o.session for o in orders], "symbol": [o.symbol for o in orders], "strategy": "t",
            "side": [o.side for o in orders], "requested_qty": 5, "qty": 5, "ref_price": 10.5, "status": "approved",
            "reason_code": None, "client_order_id": [o.client_order_id for o in orders], "notional": None,
        },
        schema_overrides={"reason_code": pl.String, "notional": pl.Float64},
    )

    def backtest(ledger: str) -> None:
        opens = opens_by_session(prices)
        by_session = orders_by_session(frame)
        with SimulatedBook(ledger, initial_cash=Decimal(10_000)) as book:
            for day in sessions:
                book.sync(day, opens.get(day, {}))
                if day in by_session:
                    book.submit(by_session[day], day)
            events = book.events(sessions[0], sessions[-1])
        assert events.filter(pl.col("event") == "filled").height > 10
        mark_to_market(PortfolioState.initial(10_000), events, prices, sessions)

    # once first: what these calls import on first use leaves import-time garbage. Then the cyclic garbage
    # found after a second run must hold nothing of ours: not a count of everything unreachable, since other
    # threads of this process (servers and pools earlier tests started) make garbage of their own meanwhile
    backtest(str(tmp_path / "warm.duckdb"))
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable stays in gc.garbage to look at
    try:
        backtest(str(tmp_path / "ledger.duckdb"))
        gc.collect()
        ours = [o for o in gc.garbage if _of_ours(o)]
        assert ours == [], ours[:5]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    for fn in (opens_by_session, orders_by_session, mark_to_market, SimulatedBook.sync, SimulatedBook.submit, SimulatedBook.events):
        assert hasattr(fn, "__wrapped__"), fn  # paused: collector_paused
