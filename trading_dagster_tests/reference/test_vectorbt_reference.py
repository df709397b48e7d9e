"""The reference itself, on frames cut from the shipped real sample, against figures worked out by hand.

AAPL in 2008 (the sample's bars, split-adjusted) has four SMA 20/50 crosses:

| signal session D | cross | close_D | D+1 | open at D+1 |
| --- | --- | --- | --- | --- |
| 2008-03-31 | above | 18.377 | 2008-04-01 | 18.736 |
| 2008-06-27 | below | 21.780 | 2008-06-30 | 21.774 |
| 2008-08-27 | above | 22.369 | 2008-08-28 | 22.449 |
| 2008-09-12 | below | 19.073 | 2008-09-15 | 18.182 |

so with $10,000 a position sized at the close: buy floor(10000 / 18.377) = 544, sell 544, buy
floor(10000 / 22.369) = 447, sell 447; P&L 544 x (21.774 - 18.736) + 447 x (18.182 - 22.449) = -254.677.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from trading_dagster_tests.reference.vectorbt_reference import (
    Wide,
    crosses,
    near_ties,
    vectorbt_crosses,
    vectorbt_sma_cross,
)

Y2008 = (dt.date(2008, 1, 2), dt.date(2008, 12, 31))


def window(calendar: list[dt.date], first: dt.date, last: dt.date) -> list[dt.date]:
    return [d for d in calendar if first <= d <= last]


def cut(cleaned: pl.DataFrame, symbols: list[str], first: dt.date, last: dt.date) -> pl.DataFrame:
    return cleaned.filter(pl.col("symbol").is_in(symbols), pl.col("session").is_between(first, last))


def hand_backtest(
    frame: pl.DataFrame,
    sessions: list[dt.date],
    *,
    size_on: str = "close",
    fees: float = 0.0,
    slippage: float = 0.0,
    notional: float = 10_000,
) -> tuple[list[tuple], float]:
    """One symbol, written out plainly: (orders as (session, side, qty, price, fees), P&L).

    The SMA is the mean of the symbol's last n bars; a cross on D needs bars on D and on the session before;
    its order fills at the open of the session after D if there is a bar then; one position at a time."""
    bars = {s: (o, c) for s, o, c in frame.sort("session").select("session", "open", "close").iter_rows()}
    closes = [bars[s][1] for s in sessions if s in bars]
    index = {s: k for k, s in enumerate(s for s in sessions if s in bars)}

    def sma(s: dt.date, n: int) -> float | None:
        k = index.get(s)
        return None if k is None or k < n - 1 else sum(closes[k - n + 1 : k + 1]) / n

    qty, cash, orders = 0.0, 0.0, []
    for i in range(1, len(sessions) - 1):
        prev, day, nxt = sessions[i - 1], sessions[i], sessions[i + 1]
        f0, s0, f1, s1 = sma(prev, 20), sma(prev, 50), sma(day, 20), sma(day, 50)
        if None in (f0, s0, f1, s1) or nxt not in bars:
            continue
        open_next = bars[nxt][0]
        if qty == 0 and f0 <= s0 and f1 > s1:
            price = open_next * (1 + slippage)
            size = math.floor(notional / (bars[day][1] if size_on == "close" else price))
            qty, cash = size, cash - size * price * (1 + fees)
            orders.append((nxt, "buy", size, price, size * price * fees))
        elif qty > 0 and f0 >= s0 and f1 < s1:
            price = open_next * (1 - slippage)
            cash += qty * price * (1 - fees)
            orders.append((nxt, "sell", qty, price, qty * price * fees))
            qty = 0.0
    last_close = [bars[s][1] for s in sessions if s in bars][-1]
    return orders, cash + qty * last_close


def as_tuples(orders: pl.DataFrame) -> list[tuple]:
    return list(orders.select("session", "side", "qty", "price", "fees").iter_rows())


def test_aapl_2008_by_hand(cleaned, calendar):
    sessions = window(calendar, *Y2008)
    result = vectorbt_sma_cross(cut(cleaned, ["AAPL"], *Y2008), sessions=sessions)
    assert as_tuples(result.orders) == [
        (dt.date(2008, 4, 1), "buy", 544.0, 18.736, 0.0),
        (dt.date(2008, 6, 30), "sell", 544.0, 21.774, 0.0),
        (dt.date(2008, 8, 28), "buy", 447.0, 22.449, 0.0),
        (dt.date(2008, 9, 15), "sell", 447.0, 18.182, 0.0),
    ]
    assert result.total_pnl == pytest.approx(544 * (21.774 - 18.736) + 447 * (18.182 - 22.449), abs=1e-9)
    assert result.total_pnl == pytest.approx(-254.677, abs=1e-9)
    assert (result.n_orders, result.n_trades) == (4, 2)
    assert result.final_value == pytest.approx(100_000 - 254.677, abs=1e-9)
    assert result.equity["session"].to_list() == sessions
    # flat until the first fill, then cash + 544 shares at each close
    equity = dict(result.equity.iter_rows())
    assert equity[dt.date(2008, 3, 31)] == 100_000
    close_0401 = cleaned.filter(pl.col("symbol") == "AAPL", pl.col("session") == dt.date(2008, 4, 1))[
        "close"
    ].item()
    assert equity[dt.date(2008, 4, 1)] == pytest.approx(100_000 + 544 * (close_0401 - 18.736), abs=1e-9)


def test_size_on_fill_sizes_at_the_open(cleaned, calendar):
    result = vectorbt_sma_cross(
        cut(cleaned, ["AAPL"], *Y2008), sessions=window(calendar, *Y2008), size_on="fill"
    )
    # floor(10000 / 18.736) = 533, floor(10000 / 22.449) = 445
    assert result.orders["qty"].to_list() == [533.0, 533.0, 445.0, 445.0]
    assert result.total_pnl == pytest.approx(533 * (21.774 - 18.736) + 445 * (18.182 - 22.449), abs=1e-9)


def test_size_on_fill_sizes_at_the_fill_price_slippage_included(cleaned, calendar):
    result = vectorbt_sma_cross(
        cut(cleaned, ["AAPL"], *Y2008), sessions=window(calendar, *Y2008), size_on="fill", slippage_bps=50
    )
    # floor(10000 / (18.736 x 1.005)) = floor(531.07) = 531 (533 at the open alone),
    # floor(10000 / (22.449 x 1.005)) = floor(443.24) = 443 (445)
    assert result.orders["qty"].to_list() == [531.0, 531.0, 443.0, 443.0]


def test_fees_and_slippage_by_hand(cleaned, calendar):
    result = vectorbt_sma_cross(
        cut(cleaned, ["AAPL"], *Y2008), sessions=window(calendar, *Y2008), fees_bps=10, slippage_bps=5
    )
    buy1, sell1, buy2, sell2 = 18.736 * 1.0005, 21.774 * 0.9995, 22.449 * 1.0005, 18.182 * 0.9995
    assert result.orders["price"].to_list() == pytest.approx([buy1, sell1, buy2, sell2], rel=1e-12)
    assert result.orders["fees"].to_list() == pytest.approx(
        [544 * buy1 * 0.001, 544 * sell1 * 0.001, 447 * buy2 * 0.001, 447 * sell2 * 0.001], rel=1e-12
    )
    pnl = 544 * (sell1 * 0.999 - buy1 * 1.001) + 447 * (sell2 * 0.999 - buy2 * 1.001)
    assert result.total_pnl == pytest.approx(pnl, abs=1e-8)


@pytest.mark.parametrize("symbol", ["AAPL", "C", "GOOGL", "V", "XOM"])
@pytest.mark.parametrize("size_on", ["close", "fill"])
def test_one_symbol_over_ten_years_equals_the_hand_backtest(cleaned, calendar, symbol, size_on):
    """Every cross of ten years, gaps included (C lost 2009-08-05 and 2009-12-17/18 to cleaning, GOOGL
    2010-07-23, V 2008-03-18, all of them 2010-04-26)."""
    first, last = cleaned["session"].min(), cleaned["session"].max()
    sessions = window(calendar, first, last)
    frame = cut(cleaned, [symbol], first, last)
    result = vectorbt_sma_cross(frame, sessions=sessions, size_on=size_on, fees_bps=2, slippage_bps=3)
    orders, pnl = hand_backtest(frame, sessions, size_on=size_on, fees=2e-4, slippage=3e-4)
    assert len(orders) > 20
    got = as_tuples(result.orders)
    assert [o[:3] for o in got] == [o[:3] for o in orders]
    assert [x for o in got for x in o[3:]] == pytest.approx([x for o in orders for x in o[3:]], rel=1e-12)
    assert result.total_pnl == pytest.approx(pnl, rel=1e-9, abs=1e-6)


def test_no_bar_at_d_plus_1_the_order_expires(cleaned, calendar):
    """Drop AAPL's bar of 2008-04-01 (the first buy's fill session): vectorbt ignores a NaN price and does
    not carry the signal, so nothing is bought, and the exit of 2008-06-27 finds nothing to sell."""
    frame = cut(cleaned, ["AAPL"], *Y2008).filter(pl.col("session") != dt.date(2008, 4, 1))
    result = vectorbt_sma_cross(frame, sessions=window(calendar, *Y2008))
    assert as_tuples(result.orders) == [
        (dt.date(2008, 8, 28), "buy", 447.0, 22.449, 0.0),
        (dt.date(2008, 9, 15), "sell", 447.0, 18.182, 0.0),
    ]


def test_no_bar_on_the_previous_session_no_cross(cleaned, calendar):
    """Drop AAPL's bar of 2008-03-28, the session before the first cross: no cross on 2008-03-31 (ours needs
    the symbol's row on the previous session). The SMAs, over the remaining bars, then cross on 2008-04-01
    instead (buy at 2008-04-02's open), as the hand backtest finds too."""
    sessions = window(calendar, *Y2008)
    frame = cut(cleaned, ["AAPL"], *Y2008).filter(pl.col("session") != dt.date(2008, 3, 28))
    result = vectorbt_sma_cross(frame, sessions=sessions)
    orders, pnl = hand_backtest(frame, sessions)
    assert [o[:3] for o in as_tuples(result.orders)] == [o[:3] for o in orders]
    assert result.orders["session"].to_list()[0] == dt.date(2008, 4, 2)
    assert result.total_pnl == pytest.approx(pnl, abs=1e-9)


def test_a_symbol_that_stops_trading_is_valued_at_its_last_close(cleaned, calendar):
    """AAPL's bars end on 2008-08-29, one session after the second buy: the 447 shares stay at that close."""
    frame = cut(cleaned, ["AAPL"], *Y2008).filter(pl.col("session") <= dt.date(2008, 8, 29))
    with_spy = pl.concat([frame, cut(cleaned, ["SPY"], *Y2008)])  # keeps the sessions going to year end
    result = vectorbt_sma_cross(with_spy, sessions=window(calendar, *Y2008))
    aapl = result.orders.filter(pl.col("symbol") == "AAPL")
    assert as_tuples(aapl)[-1] == (dt.date(2008, 8, 28), "buy", 447.0, 22.449, 0.0)
    last_close = frame.filter(pl.col("session") == dt.date(2008, 8, 29))["close"].item()
    spy_only = vectorbt_sma_cross(cut(cleaned, ["SPY"], *Y2008), sessions=window(calendar, *Y2008))
    expected = 544 * (21.774 - 18.736) + 447 * (last_close - 22.449) + spy_only.total_pnl
    assert result.total_pnl == pytest.approx(expected, abs=1e-8)


def test_sma_is_over_the_symbols_bars_across_a_gap(cleaned, calendar):
    """C has no bar on 2009-12-17 and 2009-12-18; its SMA on 2009-12-21 is the mean of its last 20 bars."""
    from trading_dagster_tests.reference.vectorbt_reference import to_wide

    first, last = dt.date(2009, 1, 2), dt.date(2009, 12, 31)
    frame = cut(cleaned, ["C"], first, last)
    wide = to_wide(frame, 20, 50, window(calendar, first, last))
    row = wide.sessions.index(dt.date(2009, 12, 21))
    closes = frame.filter(pl.col("session") <= dt.date(2009, 12, 21)).sort("session")["close"].to_numpy()
    assert wide.fast[row, 0] == pytest.approx(closes[-20:].mean(), rel=1e-12)
    assert wide.slow[row, 0] == pytest.approx(closes[-50:].mean(), rel=1e-12)
    assert np.isnan(wide.close[wide.sessions.index(dt.date(2009, 12, 17)), 0])


def test_sharpe_is_ours(cleaned, calendar):
    """Session-to-session returns of the equity from the first close, mean / std(ddof=1) x sqrt(252); the
    same figure `domain/metrics.py` gives."""
    from trading_dagster.domain.metrics import series_stats

    first, last = dt.date(2012, 1, 3), dt.date(2014, 12, 31)
    symbols = ["AAPL", "C", "KO", "SPY", "XOM"]
    result = vectorbt_sma_cross(cut(cleaned, symbols, first, last), sessions=window(calendar, first, last))
    v = result.equity["equity"].to_numpy()
    r = v[1:] / v[:-1] - 1
    assert result.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert result.sharpe == pytest.approx(
        series_stats(result.equity["session"].to_list(), list(v))["sharpe"], rel=1e-12
    )


def test_without_cash_limit_no_buy_is_cut_and_pnl_does_not_depend_on_cash(cleaned, calendar):
    sessions = window(calendar, *Y2008)
    frame = cut(cleaned, ["AAPL"], *Y2008)
    rich = vectorbt_sma_cross(frame, sessions=sessions)
    poor = vectorbt_sma_cross(frame, sessions=sessions, init_cash=1_000)
    assert as_tuples(poor.orders) == as_tuples(rich.orders)
    assert poor.total_pnl == pytest.approx(rich.total_pnl, abs=1e-9)
    # the same P&L path on 1,000 of cash (which went below zero: buying power "off")
    assert (poor.equity["equity"] - 1_000).to_list() == pytest.approx(
        (rich.equity["equity"] - 100_000).to_list()
    )
    limited = vectorbt_sma_cross(frame, sessions=sessions, init_cash=5_000, cash_limited=True)
    # vectorbt cuts the buy to what 5,000 covers at the open: floor(5000 / 18.736) = 266
    assert limited.orders["qty"].to_list()[:2] == [266.0, 266.0]


def test_ties_ours_against_vectorbts_crossed_above():
    """After a NaN (a gap, or the start), fast == slow then fast > slow is a cross for us, not for vectorbt's
    `crossed_above` (it needs a bar strictly below first); below, equal, above is a cross for both."""
    nan = np.nan
    fast = np.array([[nan], [1.0], [2.0], [1.0], [1.0], [2.0]])
    slow = np.array([[nan], [1.0], [1.0], [1.5], [1.0], [1.0]])
    wide = Wide([dt.date(2020, 1, d) for d in range(1, 7)], ["X"], fast, fast, fast, slow)
    ours, _ = crosses(wide)
    theirs, _ = vectorbt_crosses(wide)
    assert ours[:, 0].tolist() == [False, False, True, False, False, True]
    assert theirs[:, 0].tolist() == [False, False, False, False, False, True]


def test_a_tie_band_decides_a_float_noise_tie_as_a_tie():
    """FLEX 2008-06-27 (shared dataset): SMA 20 and SMA 50 are both 10.479 in decimals; in floats one side
    lands 1e-14 below. With band 0 that is a cross below on the tie; with 1e-7 % the tie is "not below" and
    the cross is on the next session, as exact arithmetic has it."""
    slow = np.array([[10.4824], [10.479], [10.4688]])
    fast = np.array([[10.541], [10.479 - 1.2e-14], [10.4195]])
    wide = Wide([dt.date(2008, 6, d) for d in (26, 27, 30)], ["FLEX"], fast, fast, fast, slow)
    assert crosses(wide)[1][:, 0].tolist() == [False, True, False]
    assert crosses(wide, tie_band_pct=1e-7)[1][:, 0].tolist() == [False, False, True]
    assert near_ties(wide) == 1
