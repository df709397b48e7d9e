"""`PortfolioState.apply_fills` keeps only the month counts from its last fill's month on; it skips that cut
when the book was cut at that month already and every fill is of it. The counts (and their order) equal a
model that cuts after every batch, whatever the batches: months that change, batches across months, books
built by hand with older months, books moved by a book event in between."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.book_events import Rename
from trading_dagster.domain.orders import Fill
from trading_dagster.domain.portfolio import PortfolioState, Position

DAYS = [dt.date(2017, 1, 30), dt.date(2017, 1, 31), dt.date(2017, 2, 1), dt.date(2017, 2, 2), dt.date(2017, 3, 1)]
SYMBOLS = ["A", "B", "C"]


def buy(day: dt.date, symbol: str, qty: int, n: int) -> Fill:
    return Fill(f"id-{n}", day, day, symbol, "buy", qty, Decimal("10.5"), Decimal("0.01"))


def model(counts: dict, fills: list[Fill]) -> list:
    """The counts after `fills` as apply_fills computed them before the skip: add, then cut at the last month."""
    out = dict(counts)
    ordered = sorted(fills, key=lambda f: (f.session, f.client_order_id))
    for f in ordered:
        key = (f.symbol, f.session.year, f.session.month)
        out[key] = out.get(key, 0) + f.qty
    last = ordered[-1].session
    return [(k, v) for k, v in out.items() if (k[1], k[2]) >= (last.year, last.month)]


batches = st.lists(
    st.lists(st.tuples(st.sampled_from(DAYS), st.sampled_from(SYMBOLS), st.integers(1, 9)), min_size=1, max_size=5),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(batches=batches, start_month=st.sampled_from([None, (2016, 12), (2017, 1), (2017, 2)]),
       rename_after=st.integers(-1, 7))
def test_month_counts_equal_a_cut_after_every_batch(batches, start_month, rename_after):
    counts = {} if start_month is None else {("A", *start_month): 3, ("B", 2017, 3): 1}
    state = PortfolioState(Decimal(10**6), {"A": Position(3, Decimal(10))}, monthly_buys=counts)
    expected = list(state.monthly_buys.items())
    n = 0
    for b, batch in enumerate(batches):
        # fills of one batch are of increasing days (a batch is one open's fills, or a replay's)
        fills = [buy(day, symbol, qty, n + i) for i, (day, symbol, qty) in enumerate(sorted(batch))]
        n += len(fills)
        expected = model(dict(expected), fills)
        state = state.apply_fills(fills)
        assert list(state.monthly_buys.items()) == expected
        if b == rename_after:  # a book event between batches: its state carries no cut of its own
            day = state_session(fills)
            state, _ = state.apply_event(Rename("C", day, day - dt.timedelta(days=1), "sec-c", "D"))
            expected = list(state.monthly_buys.items())


def state_session(fills: list[Fill]) -> dt.date:
    return max(f.session for f in fills)


def test_a_book_built_by_hand_is_cut_at_its_first_batch():
    stale = PortfolioState(Decimal(1000), monthly_buys={("A", 2016, 11): 5, ("A", 2017, 1): 2})
    after = stale.apply_fills([buy(dt.date(2017, 1, 31), "B", 1, 0)])
    assert dict(after.monthly_buys) == {("A", 2017, 1): 2, ("B", 2017, 1): 1}
    again = after.apply_fills([buy(dt.date(2017, 1, 31), "A", 1, 1)])
    assert dict(again.monthly_buys) == {("A", 2017, 1): 3, ("B", 2017, 1): 1}
    assert again == PortfolioState(again.cash, again.positions, again.realized_pnl, again.monthly_buys)
