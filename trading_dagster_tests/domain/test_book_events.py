"""Splits in the book (decision 0004, section 4; issue 8, finding 6): one definition of a split for the planner,
the paper broker and mark-to-market, proved on real AAPL rows around its 7:1 split of 2014-06-09.

The sample (`data/aapl_spy_2014_04_07_adjusted.parquet`) is cut from the main shared file, which is
split-adjusted; `unadjusted()` turns it back into what an unadjusted feed delivers: AAPL's bars before the
ex-date have prices x 7 and volume / 7. The split is then on file as a corporate action, or found by cleaning
as a confirmed break (its bars from the break date to the confirming session quarantined).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain.book_events import (
    BREAKS_SCHEMA,
    Delisting,
    Rename,
    Split,
    book_events,
    empty_breaks,
    ratio_parts,
    split_events,
)
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.corporate_actions import normalize_corporate_actions
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.orders import Fill, Order
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import LastCloses, PortfolioState, Position, apply_book_events, simulate
from trading_dagster.domain.risk import RiskConfig

DATA = Path(__file__).resolve().parents[1] / "data"
CAL = nyse_calendar()
EX = dt.date(2014, 6, 9)  # AAPL 7:1
BEFORE_EX = dt.date(2014, 6, 6)
CONFIRMED = dt.date(2014, 6, 12)  # a break found on 06-09 holds through 06-12: confirmed there
SLIP, FEE = SlippageModel(), CommissionModel()


def unadjusted() -> pl.DataFrame:
    """Cleaned-prices frame of real AAPL and SPY rows, AAPL as an unadjusted feed delivers it."""
    bars = pl.read_parquet(DATA / "aapl_spy_2014_04_07_adjusted.parquet").rename({"ticker": "symbol", "date": "session"})
    before = (pl.col("symbol") == "AAPL") & (pl.col("session") < EX)
    return bars.with_columns(
        *(pl.when(before).then(pl.col(c) * 7).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")),
        pl.when(before).then(pl.col("volume") // 7).otherwise(pl.col("volume")).alias("volume"),
    ).sort("session", "symbol")


PRICES = unadjusted()
ACTIONS = normalize_corporate_actions(pl.DataFrame({"symbol": ["AAPL"], "ex_date": [EX], "ratio": ["7:1"]}))
BREAKS = pl.DataFrame(
    [("AAPL", CONFIRMED, EX, 7.0, "split", "UNEXPLAINED_SPLIT 7:1 since 2014-06-09")], schema=BREAKS_SCHEMA, orient="row"
)


def close(symbol: str, day: dt.date, prices: pl.DataFrame = PRICES) -> float:
    return prices.filter((pl.col("symbol") == symbol) & (pl.col("session") == day))["close"].item()


def quarantined(prices: pl.DataFrame) -> pl.DataFrame:
    """What cleaning leaves of the unadjusted feed when nothing explains the split: AAPL's bars from the break
    date through the confirming session are quarantined (unconfirmed, then UNEXPLAINED_SPLIT)."""
    return prices.filter(~((pl.col("symbol") == "AAPL") & pl.col("session").is_between(EX, CONFIRMED)))


def test_the_sample_is_what_an_unadjusted_feed_delivers():
    assert close("AAPL", BEFORE_EX) == pytest.approx(86.494 * 7)  # 605.46: AAPL's real close before its split
    assert close("AAPL", EX) == 87.879
    assert close("AAPL", EX) / close("AAPL", BEFORE_EX) == pytest.approx(0.145, abs=0.001)  # a -85% "crash"


# -- the one pure function --------------------------------------------------------------------------------


def test_split_events_from_an_action_and_from_a_confirmed_break():
    (from_action,) = split_events(ACTIONS, None, PRICES, CAL.sessions)
    assert from_action == Split(
        "AAPL", EX, EX, 7, 1, Decimal(repr(close("AAPL", BEFORE_EX))) / 7, "user"
    )  # cash in lieu at the split-adjusted last close before the ex-date
    (from_break,) = split_events(None, BREAKS, quarantined(PRICES), CAL.sessions)
    assert (from_break.session, from_break.ex_date, from_break.ratio, from_break.source) == (CONFIRMED, EX, 7, "price_breaks")
    assert from_break.price == from_action.price  # the same last trusted close
    # a break on an action's ex-date is the same split: never applied twice
    assert split_events(ACTIONS, BREAKS, PRICES, CAL.sessions) == [from_action]
    collapse = pl.DataFrame([("XYZ", CONFIRMED, EX, None, "collapse", "")], schema=BREAKS_SCHEMA, orient="row")
    assert split_events(None, collapse, PRICES, CAL.sessions) == []
    weekend = normalize_corporate_actions(pl.DataFrame({"symbol": ["AAPL"], "ex_date": ["2014-06-07"], "ratio": [7.0]}))
    assert split_events(weekend, None, PRICES, CAL.sessions)[0].session == EX  # the next session


@pytest.mark.parametrize(("ratio", "parts"), [(7.0, (7, 1)), (1.5, (3, 2)), (0.1, (1, 10)), (2 / 3, (2, 3)), (0.05, (1, 20))])
def test_ratio_parts(ratio, parts):
    assert ratio_parts(ratio) == parts


def test_ratio_parts_refuses_what_is_no_ratio():
    for bad in (0.0, -2.0, float("nan"), 1.2345678):
        with pytest.raises(ValueError):
            ratio_parts(bad)


# -- the book through the split -------------------------------------------------------------------------

START = PortfolioState(cash=Decimal(10_000), positions={"AAPL": Position(100, Decimal("590.00"))})
WINDOW = CAL.between(dt.date(2014, 6, 2), dt.date(2014, 6, 20))


def test_a_position_held_across_the_ex_date_books_no_jump():
    events = book_events(ACTIONS, empty_breaks(), None, PRICES, CAL.sessions, WINDOW[0], WINDOW[-1])
    positions, equity = mark_to_market(START, [], PRICES, WINDOW, events=events)
    held = dict(positions.filter(pl.col("symbol") == "AAPL").select("session", "qty").iter_rows())
    assert held[BEFORE_EX] == 100 and held[EX] == 700 and held[WINDOW[-1]] == 700
    by_day = dict(equity.select("session", "equity").iter_rows())
    # the equity change on the ex-date is the position's real market move: 700 shares from 86.494 to 87.879
    real_move = 700 * (close("AAPL", EX) - close("AAPL", BEFORE_EX) / 7)
    assert by_day[EX] - by_day[BEFORE_EX] == pytest.approx(real_move, abs=1e-6)
    assert abs(real_move) < 1_000  # ...while unadjusted the position "lost" 100 x (605.46 - 87.88) = $51,758
    assert equity["realized_pnl"].to_list() == [0.0] * len(WINDOW)
    assert positions.filter(pl.col("session") == EX)["avg_cost"].item() == pytest.approx(590 / 7)
    # every day's change is the market's: equity = cash + 700 x close after the split, 100 x close before
    for day, value in by_day.items():
        qty = 700 if day >= EX else 100
        assert value == pytest.approx(10_000 + qty * close("AAPL", day), abs=1e-6)


def test_without_the_split_on_file_the_book_shows_the_fake_loss_it_used_to():
    """The defect this fixes, kept visible: the same rows with no split event."""
    _, equity = mark_to_market(START, [], PRICES, WINDOW)
    by_day = dict(equity.select("session", "equity").iter_rows())
    assert by_day[EX] - by_day[BEFORE_EX] < -50_000


def test_the_same_through_a_confirmed_break():
    cleaned = quarantined(PRICES)
    events = book_events(None, BREAKS, None, cleaned, CAL.sessions, WINDOW[0], WINDOW[-1])
    positions, equity = mark_to_market(START, [], cleaned, WINDOW, events=events)
    aapl = positions.filter(pl.col("symbol") == "AAPL")
    rows = {d: (q, c, stale) for d, q, c, stale in aapl.select("session", "qty", "close", "stale_price").iter_rows()}
    last_trusted = close("AAPL", BEFORE_EX)
    assert rows[EX] == (100, last_trusted, True)  # quarantined bars: marked at the last trusted close
    assert rows[CONFIRMED] == (700, pytest.approx(last_trusted / 7), True)  # split when known, same value
    after = CAL.next_session(CONFIRMED)
    assert rows[after] == (700, close("AAPL", after), False)
    by_day = dict(equity.select("session", "equity").iter_rows())
    assert by_day[CONFIRMED] == pytest.approx(by_day[BEFORE_EX], abs=1e-9)  # no jump while quarantined
    assert by_day[after] - by_day[CONFIRMED] == pytest.approx(700 * (close("AAPL", after) - last_trusted / 7), abs=1e-6)


def test_a_one_day_mark_after_the_split_equals_the_range_run():
    """A day-by-day P&L starts each day from the broker's book (split already applied) and the closes before
    it (on the old basis while the bars were quarantined): the marks must follow the split there too."""
    cleaned = quarantined(PRICES)
    events = book_events(None, BREAKS, None, cleaned, CAL.sessions, WINDOW[0], WINDOW[-1])
    whole = mark_to_market(START, [], cleaned, WINDOW, events=events)
    state, parts = START, []
    for day in WINDOW:
        parts.append(mark_to_market(state, [], cleaned, [day], events=events))
        state = apply_book_events(state, [e for e in events if e.session == day], day).state
    assert pl.concat([p[0] for p in parts]).equals(whole[0])
    assert pl.concat([p[1] for p in parts]).equals(whole[1])


def _signals(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        [(d, s, "test", side, 1.0, "test") for d, s, side in rows],
        schema={"session": pl.Date, "symbol": pl.Utf8, "strategy": pl.Utf8, "side": pl.Utf8, "strength": pl.Float64, "reason": pl.Utf8},
        orient="row",
    )


def test_a_sell_after_the_split_sells_the_post_split_quantity():
    events = book_events(ACTIONS, None, None, PRICES, CAL.sessions, WINDOW[0], WINDOW[-1])
    sell_day = CAL.next_session(EX)
    proj = simulate(_signals([(sell_day, "AAPL", "sell")]), PRICES, START, WINDOW, RiskConfig(), SLIP, FEE, "paper", events=events)
    (order,) = proj.orders
    assert (order.requested_qty, order.qty, order.status) == (700, 700, "approved")
    (fill,) = proj.fills
    assert (fill.session, fill.qty) == (CAL.next_session(sell_day), 700)
    assert "AAPL" not in proj.end_state.positions
    # realized P&L against the split-adjusted cost: (fill price - 590/7) x 700 - commission
    assert proj.end_state.realized_pnl == (fill.price - Decimal("590.00") / 7) * 700 - fill.commission


def test_a_sell_placed_before_the_ex_date_is_scaled_and_a_buy_expires():
    """Orders sized on the old basis and worked at the ex-date's open: the sell of the whole position still
    sells the whole (post-split) position; a buy (sized, quota-counted and priced in old shares) expires."""
    events = book_events(ACTIONS, None, None, PRICES, CAL.sessions, WINDOW[0], WINDOW[-1])
    signals = _signals([(BEFORE_EX, "AAPL", "sell")])
    proj = simulate(signals, PRICES, START, WINDOW, RiskConfig(), SLIP, FEE, "paper", events=events)
    assert proj.orders[0].qty == 100
    assert [(f.session, f.qty) for f in proj.fills] == [(EX, 700)]
    assert proj.end_state.positions == {}
    buy = Order("b", BEFORE_EX, "AAPL", "test", "buy", 1, 1, Decimal("605.46"), "approved")
    out = apply_book_events(START, events, EX, [buy])
    assert out.pending == [] and [(e.event, e.session, e.qty) for e in out.expired] == [("expired", EX, 1)]


# -- cash in lieu, quotas ---------------------------------------------------------------------------------


def test_cash_in_lieu_for_a_three_for_two_split_of_an_odd_position():
    state = PortfolioState(
        cash=Decimal(1000), positions={"XYZ": Position(101, Decimal(30))}, monthly_buys={("XYZ", 2014, 6): 3}
    )
    split = Split("XYZ", EX, EX, 3, 2, Decimal(45) * 2 / 3, "test")  # last close 45 before: 30 a new share
    after, effect = state.apply_event(split)
    assert after.positions == {"XYZ": Position(151, Decimal(20))}  # 151.5 shares: 151 and half a share
    assert effect is not None and (effect.qty_before, effect.qty_after, effect.cash, effect.price) == (
        101, 151, Decimal("15.00"), Decimal(30)
    )
    assert after.cash == Decimal("1015.00")  # half a share at 30
    assert after.realized_pnl == Decimal(5)  # the fraction sold: 15 against its cost of 0.5 x 20
    # equity is continuous: 101 x 45 before, 151 x 30 + the cash after
    assert after.cash + after.market_value({"XYZ": Decimal(30)}) == state.cash + state.market_value({"XYZ": Decimal(45)})
    assert after.monthly_buys == {("XYZ", 2014, 6): 5}  # 3 old shares are 4.5 new ones: rounded up


def test_a_split_with_no_fraction_leaves_realized_pnl_alone_and_a_reverse_split_pays_the_fraction():
    state = PortfolioState(cash=Decimal(0), positions={"XYZ": Position(15, Decimal("2.10"))})
    forward, _ = state.apply_event(Split("XYZ", EX, EX, 2, 1, Decimal(1), "t"))
    assert forward.positions["XYZ"] == Position(30, Decimal("1.05")) and forward.realized_pnl == 0 and forward.cash == 0
    reverse, effect = state.apply_event(Split("XYZ", EX, EX, 1, 10, Decimal(25), "t"))  # 15 -> 1.5
    assert reverse.positions["XYZ"] == Position(1, Decimal(21)) and reverse.cash == Decimal("12.50")
    gone, effect = PortfolioState(cash=Decimal(0), positions={"XYZ": Position(5, Decimal(2))}).apply_event(
        Split("XYZ", EX, EX, 1, 10, None, "t")
    )
    assert gone.positions == {} and gone.cash == Decimal("10.00") and gone.realized_pnl == 0  # at cost: no made-up P&L


def test_last_closes_follow_splits_and_renames():
    marks = LastCloses({"XYZ": (BEFORE_EX, 45.0), "OLD": (BEFORE_EX, 9.0), "NEW": (dt.date(2010, 1, 4), 1.0)})
    marks.apply([Split("XYZ", EX, EX, 3, 2, None, "t"), Rename("OLD", EX, BEFORE_EX, "sec", "NEW")])
    assert marks.exact("XYZ") == Decimal(30) and marks.exact("NEW") == Decimal("9.0")
    marks.update(EX, {"XYZ": 31.0})
    marks.apply([Split("XYZ", EX, EX, 3, 2, None, "t")])  # a close on the new basis is not divided again
    assert marks.exact("XYZ") == Decimal("31.0")


def test_a_delisting_closes_at_its_price_and_a_rename_moves_the_position():
    state = PortfolioState(cash=Decimal(0), positions={"OLD": Position(10, Decimal(5))}, monthly_buys={("OLD", 2014, 6): 2})
    closed, effect = state.apply_event(Delisting("OLD", EX, BEFORE_EX, "old-co", Decimal("3.50")))
    assert closed.positions == {} and closed.cash == Decimal("35.00") and closed.realized_pnl == Decimal(-15)
    assert closed.monthly_buys == {("OLD", 2014, 6): 2} and effect is not None and effect.cash == Decimal("35.00")
    moved, _ = state.apply_event(Rename("OLD", EX, BEFORE_EX, "old-co", "NEW"))
    assert moved.positions == {"NEW": Position(10, Decimal(5))} and moved.monthly_buys == {("NEW", 2014, 6): 2}
    with pytest.raises(ValueError, match="already holds NEW"):
        PortfolioState(cash=Decimal(0), positions={"OLD": Position(1, Decimal(1)), "NEW": Position(1, Decimal(1))}).apply_event(
            Rename("OLD", EX, BEFORE_EX, "old-co", "NEW")
        )


def test_fills_after_a_split_use_the_split_state():
    """apply_fills after apply_event: a buy on the ex-date adds to the post-split position at its own price."""
    state, _ = START.apply_event(Split("AAPL", EX, EX, 7, 1, Decimal("86.494"), "t"))
    state = state.apply_fills([Fill("x", BEFORE_EX, EX, "AAPL", "buy", 7, Decimal("87.00"), Decimal("0.04"))])
    assert state.positions["AAPL"].qty == 707
    assert state.positions["AAPL"].avg_cost == (Decimal("590.00") * 100 + Decimal("609.04")) / 707
