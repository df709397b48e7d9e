"""End to end: the pipeline on an unadjusted feed holds AAPL across its 7:1 split of 2014-06-09 (issue 8,
finding 6). Real AAPL and SPY rows (`data/aapl_spy_2014_04_07_adjusted.parquet`, un-adjusted as a raw feed
delivers them: AAPL's bars before the ex-date x 7, volume / 7) and the split in a corporate-actions file.

Proved through the assets: the split is a ledger event of the broker (`split` row), the position is x 7 from
the ex-date, its value moves only with the market, every check passes (also `equity__matches_fills`: cash
recomputed from the broker's fills and ledger events), and running the sessions around the split one at a
time gives the tables and the ledger of one range run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster_tests.domain.test_book_events import BEFORE_EX, EX, unadjusted
from trading_dagster_tests.integration.conftest import check_count, make_settings, read_table, run_range
from trading_dagster_tests.integration.test_idempotency import WAREHOUSE, ledger

CONFIG = """
[account]
name = "paper"
initial_cash = 100000
benchmark = "SPY"

[risk]
sizing = "fixed_notional"
notional = 5000
max_position_pct_equity = 50.0
monthly_share_limit = 4

[[strategies]]
name = "always_buy"   # rsi_14 below 99: a buy nearly every session, the quota keeps it to 4 shares a month
kind = "rsi"
params = { lower = 99, upper = 99.9 }

[universe]
symbols = ["AAPL", "SPY"]
"""
FIRST, LAST = dt.date(2014, 4, 1), dt.date(2014, 7, 31)


def _settings(tmp_path: Path, name: str):
    feed = tmp_path / "feed.parquet"
    if not feed.exists():
        unadjusted().rename({"symbol": "ticker", "session": "date"}).write_parquet(feed)
        (tmp_path / "splits.csv").write_text("symbol,ex_date,ratio\nAAPL,2014-06-09,7:1\n")
        (tmp_path / "config.toml").write_text(CONFIG)
    return make_settings(
        tmp_path / name,
        TRADING_DAGSTER_MARKET_DATA_FILE=str(feed),
        TRADING_DAGSTER_CORPORATE_ACTIONS_FILE=str(tmp_path / "splits.csv"),
        TRADING_DAGSTER_CONFIG=str(tmp_path / "config.toml"),
    )


@pytest.fixture(scope="module")
def range_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("split")
    settings = _settings(tmp, "range")
    defs = build_definitions(settings)
    result = run_range(defs, FIRST, LAST)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == check_count(defs) and all(e.passed for e in evaluations)
    return tmp, settings


def test_the_position_follows_the_split_with_no_jump(range_run):
    _, settings = range_run
    positions = read_table(settings, "pnl.positions").filter(pl.col("symbol") == "AAPL")
    held = dict(positions.select("session", "qty").iter_rows())
    value = dict(positions.select("session", "market_value").iter_rows())
    assert held[BEFORE_EX] > 0 and held[EX] == 7 * held[BEFORE_EX]  # June's shares bought before the ex-date
    close = dict(unadjusted().filter(pl.col("symbol") == "AAPL").select("session", "close").iter_rows())
    assert value[EX] - value[BEFORE_EX] == pytest.approx(held[EX] * (close[EX] - close[BEFORE_EX] / 7), abs=1e-6)
    executions = read_table(settings, "trading.executions")
    split = executions.filter(pl.col("event") == "split")
    assert split.select("session", "client_order_id", "symbol", "order_session", "qty", "price").rows() == [
        (EX, "split-20140609-AAPL", "AAPL", EX, held[EX], 7.0)  # price: the ratio
    ]
    assert executions.filter(pl.col("event") == "cash_in_lieu").is_empty()  # 7:1 leaves no fraction
    # the quota counted in post-split shares: June's 4 pre-split shares are 28, no buy of AAPL filled after
    june_buys = executions.filter(
        (pl.col("event") == "filled") & (pl.col("symbol") == "AAPL") & (pl.col("session").dt.month() == 6)
    )
    assert june_buys["session"].max() < EX
    equity = read_table(settings, "pnl.equity").sort("session")
    assert (equity["daily_return"].drop_nulls().abs() < 0.05).all()  # no -85% day


def test_sessions_run_one_at_a_time_across_the_split_equal_the_range_run(range_run):
    tmp, settings = range_run
    daily = _settings(tmp, "daily")
    defs = build_definitions(daily)
    cal = session_calendar()
    run_range(defs, FIRST, cal.offset(EX, -3))
    for day in cal.between(cal.offset(EX, -2), cal.offset(EX, 3)):
        run_range(defs, day, day)
    run_range(defs, cal.offset(EX, 4), LAST)
    for table, keys in WAREHOUSE.items():
        assert_frame_equal(read_table(daily, table).sort(keys), read_table(settings, table).sort(keys), check_exact=True)
    range_ledger, daily_ledger = ledger(settings), ledger(daily)
    for table in range_ledger:
        assert_frame_equal(daily_ledger[table], range_ledger[table], check_exact=True)
    assert book_events(daily).equals(book_events(settings)) and book_events(settings).height == 1


def book_events(settings) -> pl.DataFrame:
    con = duckdb.connect(str(settings.backtest_book_path), read_only=True)
    try:
        return con.execute("select * from book_events order by session, event_id").pl()
    finally:
        con.close()


def _settings_without_actions(tmp_path: Path, name: str, data_section: str = ""):
    """The same unadjusted feed with no corporate-actions file: the 7:1 break is confirmed by cleaning."""
    feed = tmp_path / "feed.parquet"
    unadjusted().rename({"symbol": "ticker", "session": "date"}).write_parquet(feed)
    config = tmp_path / f"config_{name}.toml"
    config.write_text(CONFIG + data_section)
    return make_settings(tmp_path / name, TRADING_DAGSTER_MARKET_DATA_FILE=str(feed), TRADING_DAGSTER_CONFIG=str(config))


@pytest.mark.parametrize("declared", ["auto", "no"])
def test_a_confirmed_break_moves_the_book_only_on_bars_declared_unadjusted(tmp_path, declared):
    """No split on file: cleaning confirms AAPL's 7:1 break on the 4th bar at the new level (a price_breaks
    row) and holds its new buys. With no corporate-actions source the bars count as split-adjusted ('auto'),
    where a break that held is a crash or a vendor fault: held shares must not change. Declared unadjusted
    (`[data] bars_split_adjusted = "no"`), the book follows the break on the confirming session."""
    data = '\n[data]\nbars_split_adjusted = "no"\n' if declared == "no" else ""
    settings = _settings_without_actions(tmp_path, declared, data)
    assert run_range(build_definitions(settings), FIRST, LAST).success
    breaks = read_table(settings, "prices.price_breaks")
    assert breaks.select("symbol", "break_date", "share_ratio", "kind").rows() == [("AAPL", EX, 7.0, "split")]
    confirmed = breaks["session"][0]
    assert confirmed > EX
    positions = read_table(settings, "pnl.positions").filter(pl.col("symbol") == "AAPL")
    held = dict(positions.select("session", "qty").iter_rows())
    before = session_calendar().previous_session(confirmed)
    executions = read_table(settings, "trading.executions")
    split = executions.filter(pl.col("event") == "split")
    if declared == "no":
        assert held[confirmed] == 7 * held[before]
        assert split.select("session", "symbol", "price").rows() == [(confirmed, "AAPL", 7.0)]
    else:
        assert held[confirmed] == held[before] > 0 and split.is_empty()
    buys_after = read_table(settings, "trading.orders").filter(
        (pl.col("symbol") == "AAPL") & (pl.col("side") == "buy") & (pl.col("session") >= confirmed)
    )
    assert buys_after.is_empty()  # held out for a year from the confirmation, either way
