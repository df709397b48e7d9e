"""Re-running sessions is safe: the warehouse tables and the paper broker's ledger come out the same, and the
broker never holds an order twice (client order ids are deterministic and submission is idempotent)."""

from __future__ import annotations

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster.settings import Settings
from trading_dagster_tests.integration.conftest import read_table, run_range

WAREHOUSE = {
    "signals.signals": ["session", "symbol", "strategy"],
    "trading.orders": ["session", "symbol", "strategy", "side"],
    "trading.executions": ["session", "client_order_id", "event"],
    "pnl.positions": ["session", "symbol"],
    "pnl.equity": ["session"],
}
LEDGER = {  # the paper broker's tables (resources/backtest_book.py)
    "orders": ["client_order_id"],
    "fills": ["client_order_id"],
    "expirations": ["client_order_id"],
    "ledger_meta": ["key"],
}


def ledger(settings: Settings) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(settings.backtest_book_path), read_only=True)
    try:
        return {t: con.execute(f"select * from {t}").pl().sort(keys) for t, keys in LEDGER.items()}
    finally:
        con.close()


def snapshot(settings: Settings) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    return {t: read_table(settings, t).sort(keys) for t, keys in WAREHOUSE.items()}, ledger(settings)


def assert_ledger_has_each_order_once(book: dict[str, pl.DataFrame]) -> None:
    for table in ("orders", "fills", "expirations"):
        ids = book[table]["client_order_id"]
        assert ids.n_unique() == ids.len(), f"duplicate client_order_id in the ledger's {table}"
    # an order is worked at most once: filled or expired, never both
    assert set(book["fills"]["client_order_id"]).isdisjoint(book["expirations"]["client_order_id"])


def assert_same(first: dict[str, pl.DataFrame], second: dict[str, pl.DataFrame]) -> None:
    assert first.keys() == second.keys()
    for table in first:
        try:
            assert_frame_equal(first[table], second[table], check_exact=True)
        except AssertionError as e:
            raise AssertionError(f"{table} changed on the re-run: {e}") from e


def test_rerunning_the_same_range_changes_nothing(warm_copy):
    settings, sessions = warm_copy
    window = sessions[:5]
    defs = build_definitions(settings)

    assert run_range(defs, window[0], window[-1]).success
    tables_1, ledger_1 = snapshot(settings)
    assert run_range(defs, window[0], window[-1]).success
    tables_2, ledger_2 = snapshot(settings)

    assert_same(tables_1, tables_2)
    assert_same(ledger_1, ledger_2)
    assert_ledger_has_each_order_once(ledger_2)
    # not vacuous: the window traded, and the ledger holds exactly the approved orders of the warehouse
    orders = tables_2["trading.orders"]
    approved = orders.filter(pl.col("status") == "approved")
    assert approved.height > 0 and ledger_2["fills"].height > 0
    assert sorted(ledger_2["orders"]["client_order_id"]) == sorted(approved["client_order_id"])
    assert orders["client_order_id"].n_unique() == orders.height
    assert tables_2["pnl.equity"]["session"].to_list() == window  # one row per session, none doubled


def test_rerunning_the_tail_of_a_range_gives_the_same_rows(warm_copy):
    """A re-run that starts inside an earlier run's window (a retry of the last sessions) must rebuild the
    same book: the broker forgets those sessions, re-fills the previous session's orders at the open and
    takes the same orders again."""
    settings, sessions = warm_copy
    window = sessions[:5]
    defs = build_definitions(settings)

    assert run_range(defs, window[0], window[-1]).success
    tables_1, ledger_1 = snapshot(settings)
    assert run_range(defs, window[1], window[-1]).success
    tables_2, ledger_2 = snapshot(settings)

    assert_same(tables_1, tables_2)
    assert_same(ledger_1, ledger_2)
    assert_ledger_has_each_order_once(ledger_2)
    # the retried sessions held fills of orders placed before them (so the re-fill path was exercised)
    fills = ledger_2["fills"]
    assert fills.filter((pl.col("session") == window[1]) & (pl.col("order_session") == window[0])).height > 0
