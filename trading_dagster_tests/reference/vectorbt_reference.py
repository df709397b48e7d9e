"""The reference backtest of decision 0006: SMA fast/slow crossover run by vectorbt's `Portfolio.from_signals`.

`vectorbt_sma_cross(cleaned, ...)` takes a cleaned-prices frame (the pipeline's own `cleaned_prices`: session,
symbol, open, high, low, close, volume) and returns a `ReferenceResult`: total P&L, orders, trades, Sharpe, the
final value, the equity per session and the orders. Nothing of ours is imported: only the conventions below
are shared, and each one is written down here with what vectorbt 0.28.5 does (read in its source,
`vectorbt/generic/nb.py`, `vectorbt/portfolio/nb.py`, `vectorbt/portfolio/base.py`, `vectorbt/returns/`).

Signals (ours: `domain/strategies.py` `_sma_cross` on `domain/indicators.py`'s `sma_20` / `sma_50`)
------------------------------------------------------------------------------------------------------
* **The SMA is over the symbol's own bars (rows), not over sessions.** Ours is TA-Lib's SMA over each symbol's
  bars in session order, so a symbol with a gap (a quarantined bar) averages its last `n` bars across the gap.
  vectorbt's `MA` (`generic.nb.rolling_mean_nb`, `minp=window`) on a sessions x symbols frame with NaN for a
  missing bar gives NaN for every window that holds the NaN, i.e. no SMA for `window` sessions after each gap.
  Ours is the usual definition (a vendor's SMA is over bars), so the reference runs vectorbt's `MA` on each
  symbol's bars packed together (row k = the symbol's k-th bar) and puts the values back on their sessions.
  The values agree with ours to the last bits only: vectorbt's rolling mean is (cumsum_i - cumsum_{i-n}) / n
  over the whole series, TA-Lib's a running total restarted at each anchor block
  (`compute_indicators_anchored`). Only an exact tie (fast == slow) could turn that into a different signal.
* **The cross is ours, not vectorbt's `crossed_above`.** Ours: a buy on D when fast > slow on D and
  fast <= slow on the previous *session* (the symbol's row on the session before D; no row there, or a null
  SMA on either day, and there is no cross). vectorbt's `crossed_above_1d_nb` is a state machine: it fires on
  the first bar with fast > slow after a bar with fast < slow *strictly*; a bar with fast == slow neither
  arms nor disarms it (so below, equal, above fires; equal, above after a NaN or at the start does not), a
  NaN in either series disarms it, and the first valid bar never fires. So the two differ only when, since
  the symbol's last gap or its first SMA, the fast SMA was never strictly below (above, for a sell) the slow
  one: ours fires on equal -> above, vectorbt does not. The contract (decision 0006) asks for our tie
  semantics, so entries = (prev fast <= prev slow) & (fast > slow) and exits the mirror, computed here in
  numpy on the sessions x symbols frame (a missing bar is NaN and every comparison with NaN is False, which
  is the "no row on the previous session, no cross" rule). `vectorbt_crosses` gives vectorbt's own
  `crossed_above` / `crossed_below` of the same SMAs, for counting the differences.
* **Ties are decided by float rounding unless there is a band.** Prices have a few decimals, so SMA 20 and
  SMA 50 are sometimes *exactly* equal in decimal arithmetic (FLEX 2008-06-27: both 10.479; SYNA 2008-09-17:
  31.882; SGEN 2008-11-26: 9.644). In float64 each implementation lands a few ulps to one side or the other
  (TA-Lib: -1.2e-14, vectorbt's rolling mean: +8.9e-15 on FLEX), and with band 0 that sign decides whether
  the cross is on that session or the next. On the full shared dataset 93 bars are ties within 1e-12
  relative (73 of them not exactly 0 in floats), none in the shipped sample; they move 88 of 79,313 orders
  a session. The smallest genuine |fast - slow| / slow there is 1.2e-7, float noise at most ~1e-13, so
  `tie_band_pct=1e-7` (1e-9 relative) on both sides decides every tie as exact decimal arithmetic would
  (equal = "not above", "not below") and leaves every genuine cross where it is. `crosses(wide,
  tie_band_pct)` is the band of decision 0006 (ours: `_sma_cross`): above = fast > slow x (1 + band) after
  fast <= slow x (1 + band), below = fast < slow x (1 - band) after fast >= slow x (1 - band).

Execution (`Portfolio.from_signals`)
------------------------------------
* Signals of session D execute at D+1's open: `entries` / `exits` shifted one *session* (row) down,
  `price=open`. `size_on="close"`: `size_type="amount"`, size = floor(notional / close_D) (numpy floats)
  shifted the same way; `size_on="fill"`: `size_type="value"`, size = notional. For a value order vectorbt
  divides by the *valuation* price (`val_price`, default `np.inf` = the order price *before* slippage;
  `portfolio.nb.process_order_nb`) and applies slippage to the price paid afterwards, so by default the
  quantity would be notional / open, spending more than the notional. Ours (and Alpaca's notional orders)
  is notional / the fill price, slippage included, so the reference passes `val_price = open x (1 +
  slippage)`: only buys are value orders (an exit sells the position, an amount), and val_price only
  values positions *during* the simulation (the order of a bar's orders, percent sizes), never the reported
  value, which uses `close`.
* **A NaN price** (the symbol has no bar at D+1): `process_order_nb` returns `OrderStatus.Ignored`
  (`PriceNaN`) before anything else: no order, and the signal is *not* carried to a later bar. That is our
  day order expiring on a symbol without an open.
* **A NaN close in valuation** (a symbol that stops trading, or a gap): vectorbt values positions with
  `close` forward- then back-filled (`fillna_close=True`, the default; applied after the simulation), so a
  held position keeps its last close, as ours does (`mark_to_market`: last known close, `stale_price`). The
  back fill only touches sessions before a symbol's first bar, where nothing is held. A position in a symbol
  that stops trading is held to the end in both (no bar, no cross, no exit).
* **`size_granularity=1`** (whole shares): buys and sells floor the size to a multiple of 1
  (`size // granularity * granularity`, in `buy_nb` and `sell_nb`); a size that floors to 0 is
  `Ignored` (`SizeZero`): our SIZE_BELOW_ONE_SHARE denial. When cash is short vectorbt also floors the
  affordable size. `whole_shares=False` passes NaN (fractional sizes).
* **`accumulate=False`** (`AccumulationMode.Disabled`; `signals_to_size_nb`): an entry while long is ignored
  (no adding; ours with `add_to_positions=False`: ALREADY_HELD), an exit while long sells the whole position,
  an exit while flat does nothing (ours: SHORT_NOT_ALLOWED denial). An entry and an exit on the same bar
  cancel (`upon_long_conflict="ignore"`); the SMA cross cannot produce both for one symbol and session.
* **`call_seq="auto"`** with `cash_sharing=True, group_by=True` (one account): at each bar vectorbt sorts the
  group's orders by their approximate value (size x last valuation price for amounts, the value for value
  orders; sells are negative) with a stable insertion sort, so sells run first and release cash, then buys
  from the smallest value up, ties in column (symbol) order. Ours: sells first, then by strategy, symbol. The
  order only matters when cash binds.
* **Cash.** vectorbt never lets cash go below zero: a buy the cash cannot cover is cut to what it covers
  (floored to whole shares), or ignored. The reference convention `buying_power="off"` lets our cash go
  negative instead, which vectorbt cannot model, so by default (`cash_limited=False`) the simulation gets a
  credit line: `init_cash` plus the cost of every entry at its fill price (an upper bound on all buys), so no
  buy is ever cut, and the credit is subtracted again from the value series. `cash_limited=True` runs
  vectorbt's own cash rule on `init_cash` (close to ours with `buying_power="cash"`, which also caps at
  planning time against the close).
* Fees: `fees = fees_bps / 10,000` of the traded value at the slipped price; `slippage = slippage_bps /
  10,000` (buys pay open x (1 + s), sells get open x (1 - s)). No rounding anywhere (our `round_cents=False`).

Figures
-------
* total_pnl = final value - init_cash; final_value = the last session's value; equity = the value per session
  (credit removed), one row per session of `sessions` (a session without any bar is a row too, flat).
* n_orders: vectorbt's order records (each one a fill: an ignored order leaves none); n_trades: its positions
  (`pf.positions`), open ones included; with accumulate=False that is the number of buys that opened one.
* **Sharpe, our definition** (`domain/metrics.py` `series_stats`): simple session-to-session returns of the
  equity series from the first session's close (n sessions give n - 1 returns), zero risk-free rate, mean /
  sample standard deviation (ddof=1) x sqrt(252). vectorbt's `pf.sharpe_ratio()` is not that: its
  `pf.returns()` start from `init_cash` (one more return, value_0 / init_cash - 1), it annualizes with
  `year_freq / freq` (default `year_freq="365 days"`: sqrt(365)), and its `get_return_nb` flips the sign of a
  return whose starting value is negative; and the credit line would be in its denominator. So the reference
  computes the returns the way ours does (first one NaN) and hands them to vectorbt's returns accessor
  configured as ours: `freq="1D"`, `year_freq="252 days"` (ann_factor 252), `ddof=1`;
  `returns.nb.sharpe_ratio_1d_nb` takes `nanmean / nanstd(ddof)` x sqrt(ann_factor), skipping the NaN.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl

SizeOn = Literal["close", "fill"]

ORDER_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "symbol": pl.String(),
    "side": pl.String(),
    "qty": pl.Float64(),
    "price": pl.Float64(),
    "fees": pl.Float64(),
}
EQUITY_SCHEMA: dict[str, pl.DataType] = {"session": pl.Date(), "equity": pl.Float64()}


@dataclass(frozen=True)
class ReferenceResult:
    """The figures both sides report (`ours.run_ours` returns the same shape)."""

    total_pnl: float
    n_orders: int
    n_trades: int
    sharpe: float | None
    final_value: float
    equity: pl.DataFrame  # EQUITY_SCHEMA, one row per session
    orders: pl.DataFrame  # ORDER_SCHEMA, sorted by session, side (sells first), symbol


@dataclass(frozen=True)
class Wide:
    """A cleaned-prices frame as sessions x symbols arrays (NaN where a symbol has no bar)."""

    sessions: list[dt.date]
    symbols: list[str]
    open: np.ndarray
    close: np.ndarray
    fast: np.ndarray  # SMA over the symbol's own bars, on their sessions
    slow: np.ndarray


def to_wide(cleaned: pl.DataFrame, fast: int, slow: int, sessions: Sequence[dt.date] | None = None) -> Wide:
    """Open, close and the two SMAs (vectorbt's `MA` over each symbol's bars) as sessions x symbols arrays.

    `sessions`: the row index (e.g. the exchange calendar from the first to the last bar); default the
    sessions present in `cleaned`. A bar dated outside it is an error.
    """
    import vectorbt as vbt

    missing = [c for c in ("session", "symbol", "open", "close") if c not in cleaned.columns]
    if missing:
        raise ValueError(f"cleaned prices lack columns {missing}")
    frame = cleaned.select("symbol", "session", "open", "close").sort("symbol", "session")
    if frame.select(pl.struct("symbol", "session").is_duplicated().any()).item():
        raise ValueError("cleaned prices are not unique on (symbol, session)")
    if frame.null_count().select(pl.sum_horizontal(pl.all())).item():
        raise ValueError("cleaned prices hold nulls")
    days = sorted(set(frame["session"].to_list())) if sessions is None else list(sessions)
    day_index = np.array(days, dtype="datetime64[D]")
    bar_days = frame["session"].to_numpy().astype("datetime64[D]")
    rows = np.searchsorted(day_index, bar_days)
    if rows.size and (
        rows.max() >= len(days) or np.any(day_index[np.minimum(rows, len(days) - 1)] != bar_days)
    ):
        raise ValueError("cleaned prices hold a bar on a date outside `sessions`")
    symbols = frame["symbol"].unique().sort().to_list()
    cols = frame["symbol"].cast(pl.Enum(symbols)).to_physical().to_numpy().astype(np.int64)
    n, m = len(days), len(symbols)
    open_, close = np.full((n, m), np.nan), np.full((n, m), np.nan)
    open_[rows, cols] = frame["open"].to_numpy()
    close[rows, cols] = frame["close"].to_numpy()
    # each symbol's bars packed from row 0 (frame is sorted by symbol, session): rank = its k-th bar
    starts = np.searchsorted(cols, np.arange(m))
    rank = np.arange(cols.size) - starts[cols]
    packed = np.full((int(rank.max()) + 1 if rank.size else 0, m), np.nan)
    packed[rank, cols] = frame["close"].to_numpy()
    sma = {}
    for window in (fast, slow):
        ma = vbt.MA.run(pd.DataFrame(packed), window=window).ma.to_numpy()
        out = np.full((n, m), np.nan)
        out[rows, cols] = ma[rank, cols]
        sma[window] = out
    return Wide(days, symbols, open_, close, sma[fast], sma[slow])


def crosses(wide: Wide, tie_band_pct: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits) on the signal session D, our rule: prev fast <= prev slow x (1 + band) and fast > slow
    x (1 + band), exits the mirror with (1 - band); band = tie_band_pct / 100 (decision 0006); the previous row
    is the previous session; NaN on either session: no cross."""
    f, s = wide.fast, wide.slow
    up, down = (1.0, 1.0) if tie_band_pct == 0 else (1.0 + tie_band_pct / 100, 1.0 - tie_band_pct / 100)
    entries = np.zeros(f.shape, dtype=bool)
    exits = np.zeros(f.shape, dtype=bool)
    entries[1:] = (f[:-1] <= s[:-1] * up) & (f[1:] > s[1:] * up)
    exits[1:] = (f[:-1] >= s[:-1] * down) & (f[1:] < s[1:] * down)
    return entries, exits


def near_ties(wide: Wide, rel: float = 1e-12) -> int:
    """Bars whose fast and slow SMAs are equal up to float noise (|fast - slow| <= rel x |slow|): where the
    last bits of two SMA implementations decide the side of a tie (see the module docstring)."""
    with np.errstate(invalid="ignore"):
        return int(np.sum(np.abs(wide.fast - wide.slow) <= rel * np.abs(wide.slow)))


def vectorbt_crosses(wide: Wide) -> tuple[np.ndarray, np.ndarray]:
    """vectorbt's own `crossed_above` / `crossed_below` of the same SMAs (for counting the differences)."""
    from vectorbt.generic import nb

    return nb.crossed_above_nb(wide.fast, wide.slow), nb.crossed_above_nb(wide.slow, wide.fast)


def _shift_down(a: np.ndarray, fill: float | bool) -> np.ndarray:
    out = np.full(a.shape, fill, dtype=a.dtype)
    out[1:] = a[:-1]
    return out


def vectorbt_sma_cross(
    cleaned: pl.DataFrame,
    *,
    fast: int = 20,
    slow: int = 50,
    notional: float = 10_000,
    size_on: SizeOn = "close",
    whole_shares: bool = True,
    fees_bps: float = 0,
    slippage_bps: float = 0,
    init_cash: float = 100_000,
    cash_limited: bool = False,
    tie_band_pct: float = 0.0,
    sessions: Sequence[dt.date] | None = None,
    periods_per_year: int = 252,
) -> ReferenceResult:
    """The SMA `fast`/`slow` crossover on `cleaned`, signal at D's close, fill at D+1's open, run by vectorbt.

    See the module docstring for every convention. `cash_limited=False` (the reference's `buying_power="off"`)
    never cuts a buy for cash; True lets vectorbt cut buys to the cash left from `init_cash`. `tie_band_pct`:
    the sma_cross strategy's band (decision 0006), in percent.
    """
    import vectorbt as vbt

    if size_on not in ("close", "fill"):
        raise ValueError(f"size_on must be 'close' or 'fill', got {size_on!r}")
    if not 0 < fast < slow:
        raise ValueError(f"need 0 < fast < slow, got {fast}, {slow}")
    wide = to_wide(cleaned, fast, slow, sessions)
    entries, exits = crosses(wide, tie_band_pct)
    entries_at, exits_at = _shift_down(entries, False), _shift_down(exits, False)
    fees, slippage = fees_bps / 10_000, slippage_bps / 10_000
    has_open = ~np.isnan(wide.open)
    val_price = np.full(wide.open.shape, np.inf)  # vectorbt's default: the order price
    if size_on == "close":
        with np.errstate(invalid="ignore", divide="ignore"):
            per_share = notional / wide.close
        size = _shift_down(np.floor(per_share) if whole_shares else per_share, np.nan)
        size_type = "amount"
        cost = np.where(entries_at & has_open, size * wide.open, 0.0)
    else:
        size = np.full(wide.open.shape, float(notional))  # an array either way: one numba compilation
        size_type = "value"
        val_price = wide.open * (1 + slippage)  # notional / the fill price (see the module docstring)
        cost = np.where(entries_at & has_open, notional, 0.0)
    credit = 0.0 if cash_limited else float(np.nansum(cost)) * (1 + slippage) * (1 + fees) + 1.0

    index = pd.DatetimeIndex(pd.to_datetime(wide.sessions), name="session")
    frame = lambda a: pd.DataFrame(a, index=index, columns=wide.symbols)  # noqa: E731
    pf = vbt.Portfolio.from_signals(
        close=frame(wide.close),
        entries=frame(entries_at),
        exits=frame(exits_at),
        price=frame(wide.open),
        val_price=frame(val_price),
        size=frame(size),
        size_type=size_type,
        size_granularity=1.0 if whole_shares else np.nan,
        fees=fees,
        slippage=slippage,
        init_cash=init_cash + credit,
        cash_sharing=True,
        group_by=True,
        accumulate=False,
        call_seq="auto",
        direction="longonly",
        freq="1D",
    )
    value = pf.value().to_numpy() - credit
    returns = np.full(value.shape, np.nan)
    returns[1:] = value[1:] / value[:-1] - 1  # ours: series_stats' v[1:] / v[:-1] - 1
    sharpe = float(
        pd.Series(returns, index=index)
        .vbt.returns(freq="1D", year_freq=f"{periods_per_year} days")
        .sharpe_ratio(ddof=1)
    )
    records = pf.orders.records
    orders = pl.DataFrame(
        {
            "session": [wide.sessions[i] for i in records["idx"]],
            "symbol": [wide.symbols[c] for c in records["col"]],
            "side": ["buy" if s == 0 else "sell" for s in records["side"]],
            "qty": records["size"].astype(float),
            "price": records["price"].astype(float),
            "fees": records["fees"].astype(float),
        },
        schema=ORDER_SCHEMA,
    ).sort("session", pl.col("side") == "buy", "symbol")
    final = float(value[-1])
    return ReferenceResult(
        total_pnl=final - init_cash,
        n_orders=orders.height,
        n_trades=int(pf.positions.count()),
        sharpe=sharpe if np.isfinite(sharpe) else None,
        final_value=final,
        equity=pl.DataFrame({"session": wide.sessions, "equity": value}, schema=EQUITY_SCHEMA),
        orders=orders,
    )
