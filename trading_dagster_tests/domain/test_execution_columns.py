"""`opens_by_session`'s per-session mappings against the dicts `by_session` builds, and `affordable_qty`'s short
path (all of it fits) against the binary search alone."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import polars as pl
import pytest

from trading_dagster.domain.execution import (
    COMMISSION_PRESETS,
    CommissionModel,
    SessionValues,
    affordable_qty,
    buy_cost,
    by_session,
    opens_by_session,
)

D1, D2, D3 = dt.date(2017, 6, 1), dt.date(2017, 6, 2), dt.date(2017, 6, 5)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"session": pl.Date, "symbol": pl.String, "open": pl.Float64}, orient="row")


def test_session_values_are_the_dicts_of_the_rows():
    rows = [(D2, "KO", 45.2), (D1, "AAPL", 153.17), (D1, "KO", None), (D2, "AAPL", 153.58), (D1, "MSFT", 70.1),
            (D2, "KO", 46.0), (D3, "ZZ", 1.0)]  # unsorted, a null open, KO twice on D2 (the last row wins)
    frame = _frame(rows)
    table, expected = opens_by_session(frame), by_session(frame, "open")
    assert all(isinstance(v, SessionValues) for v in table.values())
    assert table == expected and list(table) == list(expected)
    for day, row in table.items():
        assert list(row) == list(expected[day]) and len(row) == len(expected[day])
        assert dict(row.items()) == expected[day]
    assert table[D2]["KO"] == 46.0 and list(table[D2]) == ["KO", "AAPL"]
    assert "KO" in table[D1] and table[D1]["KO"] is None and table[D1].get("KO", 0) is None
    assert "ZZ" not in table[D1] and table[D1].get("ZZ") is None and table[D1].get("ZZ", 7) == 7
    with pytest.raises(KeyError):
        table[D1]["ZZ"]
    assert table[D1].values_of(["MSFT", "KO", "ZZ", "NOPE", "AAPL"]) == [70.1, None, None, None, 153.17]
    assert table[D1].values_of([]) == []


def test_session_values_on_a_random_frame():
    rng = random.Random(4)
    symbols = [f"S{i:03d}" for i in range(60)]
    rows = [(D1 + dt.timedelta(days=rng.randint(0, 9)), rng.choice(symbols), rng.choice([None, rng.uniform(1, 99)]))
            for _ in range(800)]
    frame = _frame(rows)
    table, expected = opens_by_session(frame), by_session(frame, "open")
    assert table == expected
    for day, row in table.items():
        asked = rng.sample(symbols, 20) + ["NOPE"]
        assert row.values_of(asked) == [expected[day].get(s) for s in asked]
        assert list(row) == list(expected[day])


def test_other_frames_keep_the_dicts():
    assert opens_by_session(_frame([])) == {}
    ints = pl.DataFrame({"session": [D1], "symbol": ["A"], "open": [5]})
    assert opens_by_session(ints) == {D1: {"A": 5}} and isinstance(opens_by_session(ints)[D1], dict)


def _searched(cash: Decimal, price: Decimal, commission: CommissionModel, max_qty: int) -> int:
    """affordable_qty before its short path: the binary search alone."""
    if cash <= 0 or max_qty <= 0:
        return 0
    lo, hi = 0, min(max_qty, int(cash // price))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if buy_cost(mid, price, commission) <= cash:
            lo = mid
        else:
            hi = mid - 1
    return lo


@pytest.mark.parametrize("model", [CommissionModel(), *(CommissionModel.preset(n) for n in COMMISSION_PRESETS),
                                   CommissionModel(per_share=Decimal(0), per_order=Decimal("1.5"), bps=Decimal(3))])
def test_affordable_qty_is_the_search_s_answer(model):
    rng = random.Random(9)
    for _ in range(3000):
        price = Decimal(str(round(rng.uniform(0.01, 500), rng.choice([2, 4]))))
        cash = Decimal(str(round(rng.uniform(-10, 20_000), 2)))
        max_qty = rng.choice([0, 1, rng.randint(1, 50), rng.randint(1, 5000)])
        assert affordable_qty(cash, price, model, max_qty) == _searched(cash, price, model, max_qty)
