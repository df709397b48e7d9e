"""The bulk planner's client order ids (`bulk_planner.client_order_ids`, hashed by polars) against the one
definition, `orders.client_order_id` (hashlib): byte for byte, for any account, symbol, strategy and side."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain.bulk_planner import client_order_ids
from trading_dagster.domain.orders import client_order_id

KEY_SCHEMA = {"session": pl.Date, "symbol": pl.String, "strategy": pl.String, "side": pl.String}

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
rows = st.lists(
    st.tuples(st.dates(dt.date(1990, 1, 1), dt.date(2099, 12, 31)), text, text, st.sampled_from(["buy", "sell"])),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(account=st.text(max_size=80), rows=rows)
def test_bulk_order_ids_equal_the_one_definition(account, rows):
    frame = pl.DataFrame(rows, schema=KEY_SCHEMA, orient="row")
    ids = client_order_ids(frame, account)
    assert ids.dtype == pl.String
    assert ids.to_list() == [client_order_id(account, *row) for row in rows]


def test_bulk_order_ids_of_real_looking_keys():
    rows = [
        (dt.date(2017, 11, 10), "AAPL", "sma_cross", "buy"),
        (dt.date(2008, 1, 2), "BRK.B", "rsi_reversion", "sell"),
        (dt.date(2012, 6, 29), "A-VERY-LONG-SYMBOL.WS", "dip", "buy"),
        (dt.date(2012, 6, 29), "ÄÖ$^", "dip", "buy"),
    ]
    frame = pl.DataFrame(rows, schema=KEY_SCHEMA, orient="row")
    for account in ("paper", "live", ""):
        assert client_order_ids(frame, account).to_list() == [client_order_id(account, *r) for r in rows]
    assert client_order_ids(frame.clear(), "paper").to_list() == []
