"""The paper broker: idempotent submission, fills at the next open, its DuckDB ledger, and the property the
pipeline relies on: planning a window equals driving the broker one session at a time, also across splits
(book events the broker applies and records in its ledger)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.assets.trading import ledger_cash_movements
from trading_dagster.checks import rules
from trading_dagster.domain.book_events import BookEvent, book_events
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.corporate_actions import normalize_corporate_actions
from trading_dagster.domain.execution import CommissionModel, SlippageModel, opens_at
from trading_dagster.domain.exits import ExitLevels, exit_levels_for_orders, is_exit_id, lots_to_records
from trading_dagster.domain.orders import (
    EXECUTION_SCHEMA,
    Fill,
    Order,
    client_order_id,
    fills_from_frame,
    orders_from_frame,
)
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import PortfolioState, fill_apply_order, plan_orders, simulate
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.resources import backtest_book
from trading_dagster.resources.backtest_book import BacktestBook, SimulatedBook

SLIP, FEE = SlippageModel(), CommissionModel()
CASH = Decimal(5_000)
RISK = RiskConfig(notional=Decimal(800), max_position_pct_equity=Decimal(40), initial_cash=CASH)
CAL = nyse_calendar()
DAYS = CAL.between(dt.date(2017, 3, 1), dt.date(2017, 3, 31))[:10]
NEXT = CAL.next_session(DAYS[-1])


def _market(seed: int = 7, splits: dict[str, tuple[int, float]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Prices (random walks with gaps; EEE has no bar on DAYS[3]) and buy/sell signals of two strategies.
    `splits` {symbol: (index in DAYS of the ex-date, ratio)}: the bars from the ex-date on are unadjusted (/ ratio)."""
    rng = np.random.default_rng(seed)
    rows = []
    for sym, price in {"AAA": 12.0, "BBB": 95.0, "CCC": 310.0, "DDD": 0.9, "EEE": 40.0}.items():
        for i, day in enumerate([CAL.previous_session(DAYS[0]), *DAYS, NEXT]):
            open_ = round(price * (1 + rng.normal(0, 0.03)), 2 if price >= 1 else 4)
            price = round(open_ * (1 + rng.normal(0, 0.02)), 2 if open_ >= 1 else 4)
            if not (sym == "EEE" and i == 4):
                rows.append((sym, day, open_, max(open_, price), min(open_, price), price, 1000))
    prices = pl.DataFrame(
        rows, schema=["symbol", "session", "open", "high", "low", "close", "volume"], orient="row"
    ).cast({"session": pl.Date, "volume": pl.Int64})
    for sym, (i, ratio) in (splits or {}).items():
        after = (pl.col("symbol") == sym) & (pl.col("session") >= DAYS[i])
        prices = prices.with_columns(
            pl.when(after).then((pl.col(c) / ratio).round(2)).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close")
        )
    sig = [
        (day, sym, strat, side, float(rng.random()), "test")
        for day in DAYS
        for sym in ("AAA", "BBB", "CCC", "DDD")
        for strat, side in (("mom", "buy"), ("rev", "buy"), ("rev", "sell"))
        if rng.random() < (0.45 if side == "buy" else 0.2)
    ]
    # EEE is bought on DAYS[2] and has no bar on DAYS[3]: the order expires, and a signal that day has no price
    sig += [(DAYS[2], "EEE", "mom", "buy", 1.0, "test"), (DAYS[3], "EEE", "mom", "buy", 1.0, "test")]
    signals = pl.DataFrame(
        sig, schema=["session", "symbol", "strategy", "side", "strength", "reason"], orient="row"
    )
    return prices, signals.cast({"session": pl.Date}).unique(["session", "symbol", "strategy"], keep="first")


PRICES, SIGNALS = _market()


def _broker(path: str | None = None, cash: Decimal = CASH) -> SimulatedBook:
    return SimulatedBook(path, initial_cash=cash, slippage=SLIP, commission=FEE)


def _events(prices: pl.DataFrame, splits: dict[str, tuple[int, float]]) -> list[BookEvent]:
    actions = normalize_corporate_actions(
        pl.DataFrame(
            {"symbol": list(splits), "ex_date": [DAYS[i] for i, _ in splits.values()], "ratio": [r for _, r in splits.values()]}
        )
    ) if splits else None
    return book_events(actions, None, None, prices, CAL.sessions, DAYS[0], NEXT)


def _bars_at(prices: pl.DataFrame, day: dt.date) -> dict[str, tuple]:
    """{symbol: (open, high, low)} of a session: what the book works the exits on."""
    rows = prices.filter(pl.col("session") == day).select("symbol", "open", "high", "low").iter_rows()
    return {s: (o, h, lo) for s, o, h, lo in rows}


def _drive(
    broker: BacktestBook,
    days: list[dt.date],
    risk: RiskConfig = RISK,
    prices: pl.DataFrame = PRICES,
    signals: pl.DataFrame = SIGNALS,
    events: list[BookEvent] | tuple = (),
) -> pl.DataFrame:
    """What a live loop does each session: sync the open, read the account, plan the close, submit."""
    planned = []
    for day in days:
        broker.sync(day, opens_at(prices, day), events, bars=_bars_at(prices, day))
        state = broker.account(day)
        following = CAL.next_session(day)
        orders = plan_orders(
            signals, prices, state, [day], risk, SLIP, FEE, broker.account_id, next_session=following, events=events
        )
        broker.submit(orders_from_frame(orders), day, levels=exit_levels_for_orders(orders, prices, risk))
        planned.append(orders)
    return pl.concat(planned)


def _order(symbol: str = "AAA", qty: int = 3, session: dt.date = DAYS[0], side: str = "buy") -> Order:
    cid = client_order_id("paper", session, symbol, "mom", side)
    return Order(cid, session, symbol, "mom", side, qty, qty, Decimal("12.5"), "approved")


def _check_plan_equals_driven(
    prices: pl.DataFrame,
    signals: pl.DataFrame,
    risk: RiskConfig,
    cash: Decimal,
    book: list[BookEvent] | tuple = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Plan the window the pipeline's way and drive a second broker the live way; both must agree on every
    order, every broker event, the account, and the planner's projected fills; and mark-to-market over the
    broker's fills ends on the broker's account. Returns (orders, events)."""
    # the pipeline: plan the window from the broker's account at its first open, then submit day by day
    with _broker(cash=cash) as pipeline, _broker(cash=cash) as live:
        pipeline.sync(DAYS[0], opens_at(prices, DAYS[0]), book, bars=_bars_at(prices, DAYS[0]))
        start = pipeline.account(DAYS[0])
        planned = plan_orders(
            signals, prices, start, CAL.sessions, risk, SLIP, FEE, pipeline.account_id, events=book, as_of=DAYS[0]
        )
        approved = planned.filter(pl.col("status") == "approved")
        by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()}
        levels = exit_levels_for_orders(approved, prices, risk)
        for day in DAYS:
            pipeline.sync(day, opens_at(prices, day), book, bars=_bars_at(prices, day))
            if day in by_session:
                pipeline.submit(orders_from_frame(by_session[day]), day, levels=levels)

        driven = _drive(live, DAYS, risk, prices, signals, book)

        assert driven.equals(planned)
        events = live.events(DAYS[0], NEXT)
        assert events.equals(pipeline.events(DAYS[0], NEXT))
        assert live.account(DAYS[-1]) == pipeline.account(DAYS[-1])
        # and the planner's projected fills are the broker's fills, to the cent
        projection = simulate(signals, prices, start, DAYS, risk, SLIP, FEE, "paper", next_session=NEXT, events=book)
        # the levels the book got (from the orders frame) are the planner's, exactly
        assert _levels_by_id(levels) == projection.exit_levels
        broker_fills = fills_from_frame(live.events(DAYS[0], DAYS[-1]))
        assert sorted(projection.fills, key=_by_id) == sorted(broker_fills, key=_by_id)
        assert projection.end_state == live.account(DAYS[-1])
        # mark-to-market replays the broker's fills and the same book events to the broker's account
        before = CAL.previous_session(DAYS[0])
        positions, equity = mark_to_market(live.account(before), broker_fills, prices, DAYS, "AAA", events=book)
        end = live.account(DAYS[-1])
        assert equity["cash"][-1] == float(end.cash) and equity["realized_pnl"][-1] == float(end.realized_pnl)
        last = positions.filter(pl.col("session") == DAYS[-1])
        assert dict(last.select("symbol", "qty").iter_rows()) == end.held()
        # the pipeline's blocking checks hold on the broker's events, across splits too
        window = live.events(DAYS[0], DAYS[-1])
        assert rules.executions_match_orders(window, planned).passed
        assert rules.fills_within_monthly_quota(window, risk.monthly_share_limit).passed
        start_cash = live.account(before).cash
        assert rules.equity_matches_fills(
            equity, positions, window, start_cash, extra_cash_movements=ledger_cash_movements(window)
        ).passed
    return planned, events


def _levels_by_id(frame: pl.DataFrame) -> dict[str, ExitLevels]:
    from trading_dagster.resources.backtest_book import _levels_by_id

    return {cid: lv for cid, lv in _levels_by_id(frame).items() if lv != ExitLevels(None, None)}


def _by_id(f: Fill) -> tuple[dt.date, str]:
    return (f.session, f.client_order_id)


# no minimum price: DDD trades below $1 (sub-dollar ticks), RISK keeps the default $1 minimum (DDD denied)
TIGHT_CASH = RiskConfig(
    notional=Decimal(1500), max_position_pct_equity=Decimal(30), monthly_share_limit=None, min_price=None
)


@pytest.mark.parametrize(
    ("risk", "reasons"),
    [
        (RISK, {"QTY_OVER_MONTHLY_LIMIT", "SHORT_NOT_ALLOWED", "NO_PRICE", "PRICE_BELOW_MINIMUM"}),
        (TIGHT_CASH, {"INSUFFICIENT_BUYING_POWER", "MAX_POSITION", "SHORT_NOT_ALLOWED", "NO_PRICE"}),
    ],
    ids=["monthly_quota", "tight_cash"],
)
def test_plan_orders_over_a_window_equals_driving_the_broker_session_by_session(risk, reasons):
    planned, events = _check_plan_equals_driven(PRICES, SIGNALS, risk, CASH)
    # the scenario is not trivial: sells, expiries (EEE's missing bar), clipped and denied orders
    assert events.filter((pl.col("event") == "filled") & (pl.col("side") == "sell")).height > 0
    assert events.filter(pl.col("event") == "expired").height > 0
    assert set(planned["reason_code"].drop_nulls()) >= reasons


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    risk=st.sampled_from([RISK, TIGHT_CASH, RiskConfig(sizing="pct_equity", pct_equity=Decimal(15))]),
    cash=st.sampled_from([Decimal(700), CASH, Decimal(100_000)]),
)
def test_plan_equals_driven_broker_on_random_markets(seed, risk, cash):
    prices, signals = _market(seed)
    _check_plan_equals_driven(prices, signals, risk, cash)


SPLITS = {"AAA": (3, 0.1), "BBB": (5, 1.5), "CCC": (7, 2.0)}  # 1:10 reverse, 3:2, 2:1 inside the window


@pytest.mark.parametrize("risk", [RISK, TIGHT_CASH], ids=["monthly_quota", "tight_cash"])
def test_plan_equals_driven_broker_across_splits(risk):
    prices, signals = _market(7, SPLITS)
    book = _events(prices, SPLITS)
    assert [(e.symbol, e.session, e.ratio) for e in book] == [
        ("AAA", DAYS[3], Decimal("0.1")), ("BBB", DAYS[5], Decimal("1.5")), ("CCC", DAYS[7], 2)
    ]
    _, events = _check_plan_equals_driven(prices, signals, risk, CASH, book)
    splits = events.filter(pl.col("event") == "split")
    assert splits.height >= 2  # the scenario holds split positions...
    assert set(splits["price"]) <= {0.1, 1.5, 2.0}  # a split row's price is its ratio
    if risk is TIGHT_CASH:  # ...and pays cash in lieu of a fraction
        cash = events.filter(pl.col("event") == "cash_in_lieu")
        assert cash.height >= 1 and (cash["price"] > 0).all() and (cash["qty"] == 0).all()
    assert set(splits["client_order_id"].str.slice(0, 6)) == {"split-"}


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    risk=st.sampled_from([RISK, TIGHT_CASH]),
    day=st.integers(1, len(DAYS) - 1),
    ratio=st.sampled_from([0.1, 0.5, 1.5, 2.0, 3.0, 7.0]),
)
def test_plan_equals_driven_broker_across_random_splits(seed, risk, day, ratio):
    splits = {"AAA": (day, ratio), "BBB": (len(DAYS) - day, 1 / ratio if ratio > 1 else 4.0)}
    prices, signals = _market(seed, splits)
    _check_plan_equals_driven(prices, signals, risk, CASH, _events(prices, splits))


def test_the_ledger_records_a_split_and_a_reopened_ledger_replays_it(tmp_path: Path):
    prices, signals = _market(7, SPLITS)
    book = _events(prices, SPLITS)
    path = str(tmp_path / "ledger.duckdb")
    with _broker(path, cash=CASH) as broker:
        _drive(broker, DAYS[:6], TIGHT_CASH, prices, signals, book)
        accounts = [broker.account(day) for day in DAYS[:6]]
        events = broker.events(DAYS[0], NEXT)
    assert events.filter(pl.col("event") == "split").height >= 1
    with _broker(path, cash=CASH) as reopened:
        assert [reopened.account(day) for day in DAYS[:6]] == accounts  # snapshot + replay
        reopened._con.execute("DELETE FROM account_snapshots")
    with _broker(path, cash=CASH) as reopened:
        assert [reopened.account(day) for day in DAYS[:6]] == accounts  # replay from the start
        assert reopened.events(DAYS[0], NEXT).equals(events)
        _drive(reopened, DAYS[6:], TIGHT_CASH, prices, signals, book)
        resumed = reopened.events(DAYS[0], NEXT), reopened.account(DAYS[-1])
        reopened.reset_from(DAYS[3])  # the AAA split's session: undone, and done again by the re-run
        assert reopened.account(DAYS[-1]) == accounts[2]
        _drive(reopened, DAYS[3:], TIGHT_CASH, prices, signals, book)
        assert reopened.events(DAYS[0], NEXT).equals(resumed[0])
        assert reopened.account(DAYS[-1]) == resumed[1]
    uninterrupted = _broker(cash=CASH)
    _drive(uninterrupted, DAYS, TIGHT_CASH, prices, signals, book)
    assert uninterrupted.events(DAYS[0], NEXT).equals(resumed[0])


def test_resubmitting_creates_no_duplicate():
    broker = _broker()
    orders = [_order("AAA"), _order("BBB", qty=2)]
    first = broker.submit(orders, DAYS[0])
    again = broker.submit(orders, DAYS[0])
    resized = broker.submit([_order("AAA", qty=1)], DAYS[0])  # same id, other sizing: still the first order
    assert again == first
    assert [(e.client_order_id, e.qty) for e in resized] == [(orders[0].client_order_id, 3)]
    assert broker.events(DAYS[0], DAYS[0])["event"].to_list() == ["accepted", "accepted"]
    broker.sync(DAYS[1], {"AAA": Decimal(12), "BBB": Decimal(90)})
    broker.submit(orders, DAYS[0])  # after the fill too
    assert len(broker.pending_orders()) == 0
    assert broker.events(DAYS[0], DAYS[1])["event"].to_list() == ["accepted", "accepted", "filled", "filled"]


def test_submit_skips_denied_orders_and_checks_the_session():
    broker = _broker()
    denied = Order("td-x", DAYS[0], "AAA", "mom", "buy", 0, 0, None, "denied", "NO_PRICE")
    assert broker.submit([denied], DAYS[0]) == []
    with pytest.raises(ValueError):
        broker.submit([_order(session=DAYS[1])], DAYS[0])


def test_sync_fills_at_the_open_with_the_models_and_expires_without_a_bar():
    broker = _broker()
    broker.submit([_order("AAA", qty=3), _order("BBB", qty=2)], DAYS[0])
    assert broker.sync(DAYS[0], {"AAA": Decimal(12)}) == []  # same session: nothing is due yet
    fills = broker.sync(DAYS[1], {"AAA": 12.0})  # a float open from a frame is taken exactly
    assert [(f.symbol, f.qty, f.price, f.commission, f.session) for f in fills] == [
        ("AAA", 3, Decimal("12.01"), Decimal("0.02"), DAYS[1])
    ]
    assert broker.sync(DAYS[1], {"AAA": 12.0}) == []  # idempotent
    events = broker.events(DAYS[0], DAYS[1])
    assert events.schema == pl.Schema(EXECUTION_SCHEMA)
    assert events.select("session", "symbol", "event", "qty", "price").rows() == [
        (DAYS[0], "AAA", "accepted", 3, None),
        (DAYS[0], "BBB", "accepted", 2, None),
        (DAYS[1], "AAA", "filled", 3, 12.01),
        (DAYS[1], "BBB", "expired", 2, None),
    ]
    assert broker.account(DAYS[0]) == PortfolioState.initial(CASH)
    after = broker.account(DAYS[1])
    assert after.cash == CASH - Decimal("36.05") and after.qty("AAA") == 3


def test_reset_from_then_rerun_gives_the_same_ledger():
    broker = _broker()
    _drive(broker, DAYS)
    before = broker.events(DAYS[0], NEXT)
    state = broker.account(DAYS[-1])

    broker.reset_from(DAYS[4])
    assert broker.events(DAYS[4], NEXT).filter(pl.col("order_session") >= DAYS[4]).height == 0
    assert broker.events(DAYS[0], DAYS[3]).equals(before.filter(pl.col("session") <= DAYS[3]))
    _drive(broker, DAYS[4:])
    assert broker.events(DAYS[0], NEXT).equals(before)
    assert broker.account(DAYS[-1]) == state

    broker.reset_from(DAYS[0])
    assert broker.events(DAYS[0], NEXT).height == 0
    assert broker.account(DAYS[-1]) == PortfolioState.initial(CASH)


def test_new_orders_for_a_session_before_the_ledgers_last_event_are_refused():
    broker = _broker()
    _drive(broker, DAYS[:3])
    with pytest.raises(ValueError):
        broker.submit([_order("ZZZ", session=DAYS[0])], DAYS[0])


def test_state_survives_reopening_the_ledger_file(tmp_path: Path):
    path = str(tmp_path / "ledger.duckdb")
    with _broker(path) as broker:
        _drive(broker, DAYS[:5])
        events, state, pending = (
            broker.events(DAYS[0], NEXT),
            broker.account(DAYS[4]),
            broker.pending_orders(),
        )
    assert pending  # orders of DAYS[4] wait for the next open

    with _broker(path) as reopened:
        assert reopened.events(DAYS[0], NEXT).equals(events)
        assert reopened.account(DAYS[4]) == state
        assert reopened.pending_orders() == pending
        _drive(reopened, DAYS[5:])
        resumed = reopened.events(DAYS[0], NEXT)

    uninterrupted = _broker()
    _drive(uninterrupted, DAYS)
    assert resumed.equals(uninterrupted.events(DAYS[0], NEXT))


def test_buffered_writes_reach_the_file_at_close(tmp_path: Path):
    """sync/submit only buffer their rows; close() (here: leaving the with block) writes them."""
    path = str(tmp_path / "ledger.duckdb")
    with _broker(path) as broker:
        _drive(broker, DAYS[:6])  # no events() call, which would write the buffer earlier
        state, pending = broker.account(DAYS[5]), broker.pending_orders()
    in_memory = _broker()
    _drive(in_memory, DAYS[:6])
    with _broker(path) as reopened:
        assert reopened.events(DAYS[0], NEXT).equals(in_memory.events(DAYS[0], NEXT))
        assert reopened.account(DAYS[5]) == state
        assert reopened.pending_orders() == pending


def test_a_ledger_belongs_to_one_account_and_starting_cash(tmp_path: Path):
    path = str(tmp_path / "ledger.duckdb")
    _broker(path).close()
    with pytest.raises(ValueError):
        SimulatedBook(path, initial_cash=Decimal(1), slippage=SLIP, commission=FEE)
    with pytest.raises(ValueError):
        SimulatedBook(path, initial_cash=CASH, slippage=SLIP, commission=FEE, account="other")


def test_a_gap_up_open_is_filled_only_as_far_as_the_cash_goes():
    broker = _broker()
    broker.submit([_order("AAA", qty=450)], DAYS[0])  # 450 * 10 fits 5000 at the close...
    fills = broker.sync(DAYS[1], {"AAA": Decimal(12)})  # ...not at a 12.00 open
    assert [f.qty for f in fills] == [416]  # 416 * 12.01 + 2.08 = 4998.24 <= 5000
    assert broker.account(DAYS[1]).cash == Decimal("1.76")
    expired = broker.events(DAYS[1], DAYS[1]).filter(pl.col("event") == "expired")
    assert expired["qty"].to_list() == [34]


def _replayed(events: pl.DataFrame, day: dt.date) -> PortfolioState:
    fills = [f for f in fills_from_frame(events.filter(pl.col("event") == "filled")) if f.session <= day]
    return PortfolioState.initial(CASH).apply_fills(sorted(fills, key=fill_apply_order))


def test_account_snapshots_give_every_past_account_exactly(tmp_path: Path):
    """Opening the ledger reads the latest end-of-session snapshot, not the whole history; the account at
    any past session (snapshot + fills after it) equals a replay of all fills from the start, also with
    the snapshots deleted (an old ledger) and after a reset."""
    path = str(tmp_path / "ledger.duckdb")
    for chunk in (DAYS[:3], DAYS[3:6], DAYS[6:]):  # three runs: three flushes, three snapshots
        with _broker(path) as broker:
            _drive(broker, chunk)
    with _broker(path) as broker:
        events = broker.events(DAYS[0], NEXT)
        snapshots = broker._con.execute("SELECT count(*) FROM account_snapshots").fetchone()[0]
        via_snapshots = [broker.account(day) for day in DAYS]
    assert snapshots >= 3  # one per flush, and those a run stores on its way (`_SNAPSHOT_DAYS`)
    assert via_snapshots == [_replayed(events, day) for day in DAYS]
    assert via_snapshots[-1].positions and via_snapshots[0] != via_snapshots[-1]  # the check has teeth

    with _broker(path) as broker:
        broker._con.execute("DELETE FROM account_snapshots")
    with _broker(path) as broker:
        assert [broker.account(day) for day in DAYS] == via_snapshots
        broker.reset_from(DAYS[5])
        assert broker.account(DAYS[-1]) == _replayed(events, DAYS[4])


def test_one_long_run_stores_snapshots_on_its_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A backfill in one run (one flush at the end) still leaves a snapshot every `_SNAPSHOT_DAYS`, so a
    daily run that reopens the ledger, resets its session and reads the account before it replays a few days
    of fills, not the whole backfill; every past account is still exactly the replay of all fills."""
    monkeypatch.setattr(backtest_book, "_SNAPSHOT_DAYS", 3)
    path = str(tmp_path / "ledger.duckdb")
    with _broker(path) as broker:
        _drive(broker, DAYS)
        events = broker.events(DAYS[0], NEXT)
    fill_days = sorted(set(events.filter(pl.col("event") == "filled")["session"].to_list()))
    with _broker(path) as broker:
        stored = [d for (d,) in broker._con.execute("SELECT session FROM account_snapshots ORDER BY 1").fetchall()]
        assert [broker.account(day) for day in DAYS] == [_replayed(events, day) for day in DAYS]
    assert len(stored) >= 3 and set(stored) <= set(fill_days) and stored[-1] == fill_days[-1]
    # between two stored snapshots lies no fill session that is _SNAPSHOT_DAYS after the first
    for a, b in zip(stored, stored[1:], strict=False):
        assert not [d for d in fill_days if a < d < b and (d - a).days >= 3]
    with _broker(path) as broker:  # the daily run's reset, then the account of the session before
        broker.reset_from(DAYS[-1])
        assert broker.account(DAYS[-2]) == _replayed(events, DAYS[-2])
        left = [d for (d,) in broker._con.execute("SELECT session FROM account_snapshots").fetchall()]
    assert left and max(left) < DAYS[-1]


def test_resubmitting_a_filled_order_after_reopening_creates_no_duplicate(tmp_path: Path):
    path = str(tmp_path / "ledger.duckdb")
    orders = [_order("AAA"), _order("BBB", qty=2)]
    with _broker(path) as broker:
        first = broker.submit(orders, DAYS[0])
        broker.sync(DAYS[1], {"AAA": Decimal(12), "BBB": Decimal(90)})
    with _broker(path) as reopened:  # the filled orders are no longer in memory: found in the file
        assert reopened.submit(orders, DAYS[0]) == first
        assert reopened.pending_orders() == []
        assert reopened.events(DAYS[0], DAYS[1])["event"].to_list() == ["accepted", "accepted", "filled", "filled"]


# -- stop-loss / take-profit exits: the book works them between runs as the planner simulates them ------------

EXITS_PCT = RiskConfig(
    notional=Decimal(800), max_position_pct_equity=Decimal(40), initial_cash=CASH,
    stop_loss_pct=Decimal(3), take_profit_pct=Decimal(4),
)
# ATR exits need 4 x period + 1 bars: period 2 gives levels from the window's ninth bar of a symbol on
EXITS_ATR = RiskConfig(
    notional=Decimal(800), max_position_pct_equity=Decimal(40), initial_cash=CASH, atr_period=2,
    stop_loss_atr=Decimal("1.5"), take_profit_atr=Decimal(2), monthly_share_limit=None,
)


def _exit_fills(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(
        (pl.col("event") == "filled") & pl.col("client_order_id").map_elements(is_exit_id, return_dtype=pl.Boolean)
    )


@pytest.mark.parametrize("risk", [EXITS_PCT, EXITS_ATR], ids=["pct", "atr"])
def test_plan_equals_driven_broker_with_exits(risk):
    prices, signals = _market(7)
    _, events = _check_plan_equals_driven(prices, signals, risk, CASH)
    exits = _exit_fills(events)
    assert exits.height > 0 and (exits["side"] == "sell").all()
    if risk is EXITS_PCT:  # both legs fire in the scenario
        assert {cid[-3:] for cid in exits["client_order_id"]} == {"-sl", "-tp"}


@pytest.mark.parametrize("risk", [EXITS_PCT, EXITS_ATR], ids=["pct", "atr"])
def test_plan_equals_driven_broker_with_exits_across_splits(risk):
    prices, signals = _market(7, SPLITS)
    _, events = _check_plan_equals_driven(prices, signals, risk, CASH, _events(prices, SPLITS))
    assert _exit_fills(events).height > 0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), risk=st.sampled_from([EXITS_PCT, EXITS_ATR]), split=st.booleans())
def test_plan_equals_driven_broker_with_exits_on_random_markets(seed, risk, split):
    splits = {"AAA": (4, 2.0), "CCC": (6, 0.5)} if split else {}
    prices, signals = _market(seed, splits)
    _check_plan_equals_driven(prices, signals, risk, CASH, _events(prices, splits))


def test_sync_works_the_exits_on_the_bar_after_the_open():
    """The entry fills at the open and its stop fires on the same bar (low through it): a market sell at the
    stop less slippage, id `<entry>-sl`, the entry's order session; the next session a gap through the
    take-profit of the second entry fills it at the open, without slippage."""
    aaa, bbb = _order("AAA", qty=4), _order("BBB", qty=2)
    levels = {aaa.client_order_id: ExitLevels(Decimal("11.50"), Decimal(14)), bbb.client_order_id: ExitLevels(None, Decimal(95))}
    with _broker() as broker:
        broker.submit([aaa, bbb], DAYS[0], levels=levels)
        fills = broker.sync(DAYS[1], {"AAA": Decimal(12), "BBB": Decimal(90)}, bars={"AAA": (12, 12.4, 11.2), "BBB": (90, 94.99, 89)})
        assert [(f.client_order_id, f.side, f.qty) for f in fills] == [
            (aaa.client_order_id, "buy", 4), (bbb.client_order_id, "buy", 2), (aaa.client_order_id + "-sl", "sell", 4)
        ]
        stop = fills[-1]
        assert stop.price == SLIP.fill_price("sell", Decimal("11.50")) and stop.order_session == DAYS[0]
        assert stop.commission == FEE.cost(4, stop.price) and stop.session == DAYS[1]
        assert broker.account(DAYS[1]).held() == {"BBB": 2}
        assert broker.sync(DAYS[1], {}, bars={"AAA": (12, 12.4, 11.2), "BBB": (90, 94.99, 89)}) == []  # a no-op again
        (take,) = broker.sync(DAYS[2], {}, bars={"BBB": (96.5, 97, 96)})
        assert (take.client_order_id, take.price, take.qty) == (bbb.client_order_id + "-tp", Decimal("96.5"), 2)
        assert broker.account(DAYS[2]).positions == {} and broker.account(DAYS[2]).exits == {}
        with pytest.raises(ValueError, match="no bars"):
            broker.submit([_order("CCC", qty=1, session=DAYS[2])], DAYS[2], levels={
                _order("CCC", qty=1, session=DAYS[2]).client_order_id: ExitLevels(Decimal(1), None)
            })
            broker.sync(DAYS[3], {"CCC": Decimal(2)})


def test_reopened_ledgers_and_past_accounts_keep_the_exit_lots(tmp_path: Path):
    """Driven in three runs on one file, the ledger gives every past account, lots included, as one run in
    memory does; also from the fills alone (snapshots deleted: the lots come back from the orders' levels)
    and after a reset and re-run."""
    prices, signals = _market(7)
    with _broker() as memory:
        _drive(memory, DAYS, EXITS_PCT, prices, signals)
        expected = [memory.account(day) for day in DAYS]
        events = memory.events(DAYS[0], NEXT)
    assert any(state.exits for state in expected) and _exit_fills(events).height > 0
    path = str(tmp_path / "ledger.duckdb")
    for chunk in (DAYS[:3], DAYS[3:6], DAYS[6:]):
        with _broker(path) as broker:
            _drive(broker, chunk, EXITS_PCT, prices, signals)
    with _broker(path) as broker:
        assert [broker.account(day) for day in DAYS] == expected
        assert broker.events(DAYS[0], NEXT).equals(events)
        snapshot = broker._con.execute("SELECT state FROM account_snapshots ORDER BY session DESC LIMIT 1").fetchone()[0]
        assert f'"exits": {lots_to_records(expected[-1].exits)}'.replace("'", '"').replace("None", "null") in snapshot
        broker._con.execute("DELETE FROM account_snapshots")
    with _broker(path) as broker:
        assert [broker.account(day) for day in DAYS] == expected
        broker.reset_from(DAYS[4])
        assert broker.account(DAYS[-1]) == expected[3]
        _drive(broker, DAYS[4:], EXITS_PCT, prices, signals)
        assert [broker.account(day) for day in DAYS] == expected
        assert broker.events(DAYS[0], NEXT).equals(events)


def test_a_ledger_from_before_exits_opens_and_gains_the_level_columns(tmp_path: Path):
    path = str(tmp_path / "old.duckdb")
    with _broker(path) as broker:
        broker.submit([_order("AAA")], DAYS[0])
        broker.sync(DAYS[1], {"AAA": Decimal(12)})
    with _broker(path) as broker:  # the ledger as an earlier version wrote it
        broker._con.execute("ALTER TABLE orders DROP COLUMN stop_loss")
        broker._con.execute("ALTER TABLE orders DROP COLUMN take_profit")
        (state,) = broker._con.execute("SELECT state FROM account_snapshots").fetchone()
        old = {k: v for k, v in json.loads(state).items() if k != "exits"}
        broker._con.execute("UPDATE account_snapshots SET state = $s", {"s": json.dumps(old)})
        assert "exits" not in broker._con.execute("SELECT state FROM account_snapshots").fetchone()[0]
    with _broker(path) as broker:
        assert broker.account(DAYS[1]).held() == {"AAA": 3}
        cols = [r[0] for r in broker._con.execute("DESCRIBE orders").fetchall()]
        assert cols[-2:] == ["stop_loss", "take_profit"]


def test_executions_match_orders_holds_exit_fills_to_their_entry():
    """Exit fills need no acceptance of their own, but each condition on them fails on its own: a buy, more
    shares than the entry bought, an entry that is no filled buy of the frame."""
    prices, signals = _market(7)
    with _broker() as broker:
        planned = _drive(broker, DAYS, EXITS_PCT, prices, signals)
        events = broker.events(DAYS[0], DAYS[-1])
    assert rules.executions_match_orders(events, planned).passed
    exit_id = _exit_fills(events)["client_order_id"][0]
    one = pl.col("client_order_id") == exit_id
    for change, condition in [
        (pl.when(one).then(pl.lit("buy")).otherwise(pl.col("side")).alias("side"), "exit_not_a_sell"),
        (pl.when(one).then(pl.col("qty") + 1).otherwise(pl.col("qty")).alias("qty"), "exit_more_than_entry_bought"),
        (
            pl.when(one).then(pl.lit("td-unknown-sl")).otherwise(pl.col("client_order_id")).alias("client_order_id"),
            "exit_without_filled_buy",
        ),
    ]:
        outcome = rules.executions_match_orders(events.with_columns(change), planned)
        assert not outcome.passed and outcome.metadata["failed_conditions"] == f"{condition}: 1", outcome


def test_a_read_only_book_projects_an_open_without_moving_the_ledger(tmp_path):
    """What the orders asset does: sync to a's open and read the account there, leaving the file as it was
    (decision 0005: assets that plan read the book; only executions write it)."""
    path = str(tmp_path / "book.duckdb")
    day1, day2 = dt.date(2017, 6, 1), dt.date(2017, 6, 2)
    order = Order("td-x", day1, "AAPL", "s", "buy", 4, 4, Decimal("150"), "approved")
    with _broker(path) as book:
        book.submit([order], day1)
    with SimulatedBook(path, initial_cash=CASH, slippage=SLIP, commission=FEE, read_only=True) as projected:
        projected.sync(day2, {"AAPL": Decimal("151")})
        assert projected.account(day2).qty("AAPL") == 4  # the projection filled it at day 2's open
        with pytest.raises(ValueError, match="read-only"):
            projected.reset_from(day1)
    with _broker(path) as book:
        assert book.events(day2, day2).is_empty()  # nothing was written
        assert [o.client_order_id for o in book.pending_orders()] == ["td-x"]
        assert book.account(day2).qty("AAPL") == 0
