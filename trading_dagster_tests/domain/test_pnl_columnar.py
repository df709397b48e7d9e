"""The columnar mark-to-market against the per-position loop it replaced (`reference/pnl_reference.py`): the same
positions and equity frames, row for row and value for value, on random books and on the awkward cases (stale
bars, a close on a non-session, a repeated price row, closes that are no short decimals, splits and renames,
fractional shares, an integer close column), and the same error for a close that is not finite."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.book_events import Rename, Split
from trading_dagster.domain.orders import Fill, events_to_frame
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState
from trading_dagster.domain.quantity import FRACTIONAL
from trading_dagster_tests.reference import pnl_reference

DAYS = [dt.date(2017, 3, 1) + dt.timedelta(days=i) for i in range(60)]
DAYS = [d for d in DAYS if d.weekday() < 5]
WINDOW = DAYS[8:]
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "SPY"]


def _prices(rng: random.Random, days=DAYS, symbols=SYMBOLS) -> pl.DataFrame:
    rows = []
    for day in days:
        for symbol in symbols:
            if rng.random() < 0.15:
                continue  # no bar: the position keeps its last close, flagged stale
            kind = rng.random()
            if kind < 0.6:
                close = round(rng.uniform(0.5, 400), rng.choice([2, 3, 4]))
            elif kind < 0.9:
                close = rng.uniform(0.5, 400)  # 16-17 significant digits
            else:
                close = rng.randint(1, 300) / 3
            rows.append((symbol, day, close))
    return pl.DataFrame(rows, schema={"symbol": pl.String, "session": pl.Date, "close": pl.Float64}, orient="row")


def _fills(rng: random.Random, start: PortfolioState, fractional: bool = False) -> list[Fill]:
    """Long-only fills over WINDOW: buys of any symbol, sells of at most what is held."""
    held = {s: p.qty for s, p in start.positions.items()}
    out = []
    for day in WINDOW:
        sellable = dict(held)  # a session's sells apply before its buys: what was held at its open
        for i in range(rng.randint(0, 4)):
            symbol = rng.choice(SYMBOLS[:-1])
            price = Decimal(str(round(rng.uniform(1, 300), 2)))
            fee = Decimal(str(round(rng.uniform(0, 2), 2)))
            if sellable.get(symbol) and rng.random() < 0.4:
                qty = sellable[symbol] if rng.random() < 0.5 else min(sellable[symbol], rng.randint(1, 10))
                if fractional and rng.random() < 0.5:
                    qty = min(sellable[symbol], Decimal(rng.randint(1, 10**9)) / 10**9)
                side = "sell"
                sellable[symbol] -= qty
                held[symbol] -= qty
            else:
                qty = rng.randint(1, 97)
                if fractional:
                    qty = Decimal(rng.randint(1, 97 * 10**9)) / 10**9
                side = "buy"
                held[symbol] = held.get(symbol, 0) + qty
            out.append(Fill(f"id-{day:%m%d}-{i}", day, day, symbol, side, qty, price, fee))
    return out


def _same(start, fills, prices, window=WINDOW, benchmark="SPY", events=()):
    new = mark_to_market(start, fills, prices, window, benchmark, events=events)
    old = pnl_reference.mark_to_market(start, fills, prices, window, benchmark, events=events)
    assert new[0].schema == old[0].schema and new[1].schema == old[1].schema
    assert new[0].equals(old[0]), "positions differ"
    assert new[1].equals(old[1]), "equity differs"
    return new


START = PortfolioState(cash=Decimal("25000"), positions={"AAA": (7, Decimal("12.34567890123456789")), "ZZZ": (3, Decimal(5))})


@pytest.mark.parametrize("seed", range(6))
def test_random_books_equal_the_loop(seed):
    rng = random.Random(seed)
    prices = _prices(rng)
    fills = _fills(rng, START)
    positions, equity = _same(START, fills, prices)
    assert positions.height > 100 and equity.height == len(WINDOW)
    assert positions["stale_price"].any() and not positions["stale_price"].all()
    # and given as an executions frame, as the pnl asset does
    _same(START, events_to_frame(fills), prices)


def test_awkward_price_frames_equal_the_loop():
    rng = random.Random(11)
    prices = _prices(rng)
    fills = _fills(rng, START)
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=2)
    _same(START, fills, shuffled)
    # a repeated (session, symbol) row: the last one wins, as a dict of the rows keeps it
    dup = prices.filter(pl.col("session") == WINDOW[3]).with_columns(pl.col("close") * 2)
    _same(START, fills, pl.concat([prices, dup]))
    # a close dated on a day that is no session of the window: never a mark, as before
    weekend = pl.DataFrame({"symbol": ["AAA"], "session": [dt.date(2017, 3, 18)], "close": [999.0]})
    assert dt.date(2017, 3, 18) not in WINDOW
    _same(START, fills, pl.concat([prices, weekend]))
    # the benchmark never priced, a window without fills, a one-day window, closes only inside the window
    _same(START, fills, prices, benchmark="NOPE")
    _same(START, [], prices)
    _same(START, fills, prices, window=WINDOW[5:6])
    _same(START, fills, prices.filter(pl.col("session") >= WINDOW[0]))
    # an integer close column
    ints = prices.with_columns(pl.col("close").round(0).cast(pl.Int64))
    _same(START, fills, ints)


def test_fractional_books_equal_the_loop():
    rng = random.Random(5)
    start = START.in_shares(FRACTIONAL)
    _same(start, _fills(rng, start, fractional=True), _prices(rng))
    _same(START, _fills(random.Random(6), START, fractional=True), _prices(random.Random(6)))


def test_splits_and_renames_equal_the_loop():
    rng = random.Random(7)
    prices = _prices(rng, symbols=[*SYMBOLS, "NEW"])
    # no BBB fills (renamed), no CCC fills from its reverse split on (sized on the old share count)
    fills = [f for f in _fills(rng, START) if f.symbol != "BBB" and not (f.symbol == "CCC" and f.session >= WINDOW[10])]
    start = PortfolioState(cash=Decimal(5000), positions={**START.positions, "BBB": (30, Decimal("41.5"))})
    events = [
        Split("AAA", WINDOW[4], WINDOW[3], 3, 2, Decimal("10.01"), "corporate_actions"),  # known after its ex-date
        Split("CCC", WINDOW[10], WINDOW[10], 1, 4, None, "corporate_actions"),
        Split("AAA", DAYS[2], DAYS[2], 2, 1, None, "corporate_actions"),  # before the window: marks only
        Rename("BBB", WINDOW[12], WINDOW[11], "sec-bbb", "NEW"),
    ]
    # NEW has bars only from the rename on; BBB none after it
    prices = prices.filter(
        ~((pl.col("symbol") == "NEW") & (pl.col("session") <= WINDOW[12]))
        & ~((pl.col("symbol") == "BBB") & (pl.col("session") > WINDOW[11]))
    )
    positions, _ = _same(start, fills, prices, events=events)
    assert "NEW" in positions["symbol"].to_list()
    _same(start, fills, prices, benchmark="BBB", events=events)


def test_a_close_that_is_not_finite_is_the_same_error():
    rng = random.Random(3)
    prices = _prices(rng)
    fills = _fills(rng, START)
    bad = prices.with_columns(
        pl.when((pl.col("symbol") == "AAA") & (pl.col("session") == WINDOW[6])).then(float("nan")).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(ValueError) as new:
        mark_to_market(START, fills, bad, WINDOW)
    with pytest.raises(ValueError) as old:
        pnl_reference.mark_to_market(START, fills, bad, WINDOW)
    assert str(new.value) == str(old.value) and "not a finite close" in str(new.value)


def test_a_repeated_session_is_refused():
    with pytest.raises(ValueError, match="repeats"):
        mark_to_market(START, [], _prices(random.Random(1)), [WINDOW[0], WINDOW[0]])
