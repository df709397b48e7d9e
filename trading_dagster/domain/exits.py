"""Stop-loss and take-profit exits: ATR, the levels of an entry, and how the backtest fills them.

**Levels.** An approved buy of session D gets its exit levels when it is planned, from its reference price
(D's close) and, for ATR multiples, the symbol's ATR at D (`exit_levels`): stop = close x (1 - stop_loss_pct
/ 100) or close - stop_loss_atr x ATR; take-profit = close x (1 + take_profit_pct / 100) or close +
take_profit_atr x ATR, rounded to the tick (a stop at or below zero is none). They are fixed before the fill
because live they are the prices of an Alpaca bracket order's legs, which are sent with the entry.

**Lots.** A filled entry with levels becomes an `ExitLot` of the position (`PortfolioState.exits`): its
order id, its filled quantity and its two levels, i.e. one bracket per entry, as the broker holds them. A
position built by several entries has several lots. The lots are part of the book: they follow splits
(quantity x ratio, rounded down; levels / ratio), renames (moved) and delistings (dropped); a sell that is
no exit takes shares that belong to no lot first, then the oldest lots' (a signal's sell sells the whole
position, and with it every lot).

**Fills in the backtest** (`execute_exits`), on each session's bar after the open's fills, the entry's own
session included (a bracket's legs work as soon as the entry has filled at the open), per lot:

* a gap through a level fills at the open: open <= stop fills the stop at the open, open >= take-profit
  fills the take-profit at the open;
* else the stop fills at its level if the bar's low reaches it, else the take-profit at its level if the
  high reaches it; when both are inside one bar the stop is taken (we cannot know which came first: the
  conservative choice);
* a triggered stop is a market order: it fills at its trigger price less the slippage model's cost, and
  with a `spread_fraction` (`[costs] slippage_spread_fraction`) less that fraction of the spread proxy of
  the exit session's own bar (`execution.spread_proxies` over the session and the one before: the bar the
  stop is triggered on, so no later information); a take-profit is a limit order: at its level (or the
  better open), without slippage or spread (a resting limit is the side that earns the spread); both pay
  commission;
* the fill sells the lot (at most the shares still held); the other leg is cancelled with it (OCO). A bar
  without open, high or low leaves the lots as they are.

Exit fills carry deterministic client order ids, the entry's id plus `-sl` / `-tp` (`exit_order_id`), and
the entry's order session; they apply after the open's fills of their session (`is_exit_id`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import NamedTuple

import numpy as np
import polars as pl

from trading_dagster.domain.execution import CommissionModel, SlippageModel, round_price
from trading_dagster.domain.orders import MAX_CLIENT_ORDER_ID_LEN, Fill, as_decimal
from trading_dagster.domain.quantity import Qty, from_text, rule_of, to_json
from trading_dagster.domain.risk import RiskConfig

STOP_LOSS = "sl"
TAKE_PROFIT = "tp"
_EXIT_SUFFIXES = (f"-{STOP_LOSS}", f"-{TAKE_PROFIT}")
ATR_WINDOW_FACTOR = 4
"""The ATR of a session is Wilder's over the symbol's last `ATR_WINDOW_FACTOR x period` true ranges (see
`wilder_atr`)."""


def atr_lookback(period: int) -> int:
    """Bars of a symbol, the session's included, that its ATR at a session needs (57 for period 14): a run
    must read at least this many sessions of prices up to its first session for the ATR to be the same in a
    one-day run and a range run."""
    return ATR_WINDOW_FACTOR * period + 1


def wilder_atr(prices: pl.DataFrame, period: int) -> pl.Series:
    """Wilder's average true range at each row of `prices` (symbol, high, low, close), which must be *sorted
    by (symbol, session)*, per symbol, point in time (only the row's bar and earlier ones): TR = max(high -
    low, |high - prev close|, |low - prev close|); over the last W = ATR_WINDOW_FACTOR x period true ranges,
    the first `period` averaged, then ATR = (ATR_prev x (period - 1) + TR) / period for each later one
    (TA-Lib's ATR on those W + 1 bars, to the last bits).

    A fixed window, not the whole history: Wilder's recursion never forgets its seed, so an ATR over all
    history would depend on how far back a run's prices start; over a fixed window a one-day run and a
    range run compute the same value from the same bars (elementwise arithmetic in one fixed order). Null
    with fewer than W + 1 bars, or a null price among them.
    """
    if period < 1:
        raise ValueError(f"ATR period must be >= 1, got {period}")
    cols = prices.select(
        pl.int_range(pl.len()).over("symbol").alias("pos"),
        pl.col("high").cast(pl.Float64),
        pl.col("low").cast(pl.Float64),
        pl.col("close").shift(1).over("symbol").cast(pl.Float64).alias("prev_close"),
    )
    pos = cols["pos"].to_numpy()
    high, low, prev = (cols[c].fill_null(np.nan).to_numpy() for c in ("high", "low", "prev_close"))
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))  # NaN if any is NaN
    window = ATR_WINDOW_FACTOR * period

    def lag(k: int) -> np.ndarray:  # the TR k bars before each row (NaN before the symbol's first)
        out = np.full_like(tr, np.nan)
        if k < len(tr):
            out[k:] = tr[: len(tr) - k]
        out[pos < k] = np.nan
        return out

    atr = lag(window - 1)
    for j in range(1, period):  # the seed: the window's first TRs, summed oldest first
        atr = atr + lag(window - 1 - j)
    atr = atr / period
    for j in range(period, window):
        atr = (atr * (period - 1) + lag(window - 1 - j)) / period
    return pl.Series("atr", atr).fill_nan(None)


def with_atr(prices: pl.DataFrame, period: int) -> pl.DataFrame:
    """prices (symbol, session, high, low, close, ...) sorted by (symbol, session), with an `atr` column
    (`wilder_atr`); a frame that has an `atr` column already keeps it (an upstream indicator)."""
    if "atr" in prices.columns:
        return prices.sort("symbol", "session")
    px = prices.sort("symbol", "session")
    return px.with_columns(wilder_atr(px, period))


class ExitLevels(NamedTuple):
    """The exit levels of an entry: a stop-loss and a take-profit price (None: no such leg)."""

    stop_loss: Decimal | None
    take_profit: Decimal | None


NO_EXITS = ExitLevels(None, None)


def exit_levels(ref_price: Decimal | None, atr: Decimal | None, config: RiskConfig) -> ExitLevels:
    """The levels of a buy planned at `ref_price` (its session's close), with the symbol's ATR at that
    session for ATR multiples (an ATR exit without an ATR gives no such leg: the planner denies such a buy
    NO_ATR before it gets here). Rounded half up to the tick (`round_price`); a stop at or below zero is none.
    The bracket legs of the live order are these prices."""
    if ref_price is None or ref_price <= 0:
        return NO_EXITS
    stop = take = None
    if config.stop_loss_pct is not None:
        stop = ref_price * (1 - config.stop_loss_pct / 100)
    elif config.stop_loss_atr is not None and atr is not None:
        stop = ref_price - config.stop_loss_atr * atr
    if config.take_profit_pct is not None:
        take = ref_price * (1 + config.take_profit_pct / 100)
    elif config.take_profit_atr is not None and atr is not None:
        take = ref_price + config.take_profit_atr * atr
    stop = round_price(stop, ROUND_HALF_UP) if stop is not None and stop > 0 else None
    take = round_price(take, ROUND_HALF_UP) if take is not None else None
    if stop is not None and stop <= 0:  # rounding a tiny stop to the tick: never a zero price
        stop = None
    return ExitLevels(stop, take)


def exit_levels_for_orders(orders: pl.DataFrame, prices: pl.DataFrame, config: RiskConfig) -> pl.DataFrame:
    """(client_order_id, stop_loss, take_profit) of the approved buys of an `orders` frame: the bracket legs
    to send live, and what a backtest book must remember for each entry (`PortfolioState.apply_fills`'
    `levels`). `prices` must hold each order session's bars and the `atr_lookback` before it when an exit is
    an ATR multiple. Empty when no exit is configured."""
    schema = {"client_order_id": pl.String(), "stop_loss": pl.Float64(), "take_profit": pl.Float64()}
    buys = orders.filter((pl.col("status") == "approved") & (pl.col("side") == "buy"))
    if not config.has_exits or buys.height == 0:
        return pl.DataFrame(schema=schema)
    atrs: dict[tuple[str, dt.date], float] = {}
    if config.stop_loss_atr is not None or config.take_profit_atr is not None:
        px = with_atr(prices.filter(pl.col("session") <= buys["session"].max()), config.atr_period)
        keys = buys.select("symbol", "session").unique()
        rows = px.join(keys, on=["symbol", "session"]).select("symbol", "session", "atr").iter_rows()
        atrs = {(s, d): a for s, d, a in rows if a is not None and a > 0}  # as the planner: 0 is no ATR
    out = []
    for cid, symbol, session, ref in buys.select(
        "client_order_id", "symbol", "session", "ref_price"
    ).iter_rows():
        atr = atrs.get((symbol, session))
        levels = exit_levels(
            None if ref is None else as_decimal(ref), None if atr is None else as_decimal(atr), config
        )
        out.append((cid, *(None if v is None else float(v) for v in levels)))
    return pl.DataFrame(out, schema=schema, orient="row")


class ExitLot(NamedTuple):
    """The shares of one filled entry that its exit levels (its bracket) cover (an int, or a Decimal with
    fractional shares: `quantity.py`)."""

    entry_id: str
    order_session: dt.date
    qty: Qty
    stop_loss: Decimal | None
    take_profit: Decimal | None


ExitLots = Mapping[str, tuple[ExitLot, ...]]  # {symbol: its lots, oldest first}


def exit_order_id(entry_id: str, leg: str) -> str:
    """The client order id of an entry's exit leg ("sl" or "tp"): the entry's id plus `-sl` / `-tp`."""
    if leg not in (STOP_LOSS, TAKE_PROFIT):
        raise ValueError(f"exit leg must be {STOP_LOSS!r} or {TAKE_PROFIT!r}, got {leg!r}")
    out = f"{entry_id}-{leg}"
    if len(out) > MAX_CLIENT_ORDER_ID_LEN:
        raise ValueError(f"exit order id {out!r} is longer than {MAX_CLIENT_ORDER_ID_LEN} characters")
    return out


def is_exit_id(client_order_id: str) -> bool:
    """Whether a fill is an exit leg's (an entry's id ends in hex digits, never in `-sl` / `-tp`)."""
    return client_order_id.endswith(_EXIT_SUFFIXES)


def entry_id_of(exit_id: str) -> str:
    return exit_id[: -len(_EXIT_SUFFIXES[0])]


def trim_lots(lots: Sequence[ExitLot], qty: Qty) -> tuple[ExitLot, ...]:
    """The lots of a position of `qty` shares: when they cover more, the oldest give up the excess (shares
    that belong to no lot are sold first)."""
    excess = sum(lot.qty for lot in lots) - qty
    if excess <= 0:
        return tuple(lots)
    out = []
    for lot in lots:
        if excess >= lot.qty:
            excess -= lot.qty
            continue
        out.append(lot._replace(qty=lot.qty - excess) if excess else lot)
        excess = 0
    return tuple(out)


def execute_exits(
    lots: ExitLots,
    bars: Mapping[str, tuple[float | Decimal | None, float | Decimal | None, float | Decimal | None]],
    session: dt.date,
    held: Mapping[str, Qty],
    slippage: SlippageModel,
    commission: CommissionModel,
    spreads: Mapping[str, Decimal | float] | None = None,
) -> list[Fill]:
    """The exit fills of `session` (see the module docstring): `lots` of the book after the open's fills,
    `bars` {symbol: (open, high, low)} of the session, `held` the shares held after the open, `spreads`
    {symbol: spread proxy of the session} (required with a slippage model that uses the spread; a symbol
    without one: the bps alone). Deterministic: symbols in order, lots oldest first."""
    if slippage.uses_spread and spreads is None and lots:
        raise ValueError("the slippage model has a spread_fraction: execute_exits needs the session's spreads")
    fills: list[Fill] = []
    for symbol in sorted(lots):
        bar = bars.get(symbol)
        if bar is None or any(v is None or v <= 0 for v in bar):
            continue
        open_, high, low = (as_decimal(v) for v in bar)  # type: ignore[arg-type]
        left = held.get(symbol, 0)
        proxy = None if spreads is None else spreads.get(symbol)
        spread = None if proxy is None else as_decimal(proxy)
        for lot in lots[symbol]:
            qty = min(lot.qty, left)
            if qty < rule_of(lot.qty).min_qty:  # one share, or 1e-9 share of a fractional lot
                break
            hit = _exit_price(lot, open_, high, low, slippage, spread)
            if hit is None:
                continue
            leg, price = hit
            fills.append(
                Fill(
                    client_order_id=exit_order_id(lot.entry_id, leg),
                    order_session=lot.order_session,
                    session=session,
                    symbol=symbol,
                    side="sell",
                    qty=qty,
                    price=price,
                    commission=commission.cost(qty, price),
                )
            )
            left -= qty
    return fills


def _exit_price(
    lot: ExitLot,
    open_: Decimal,
    high: Decimal,
    low: Decimal,
    slippage: SlippageModel,
    spread: Decimal | None = None,
) -> tuple[str, Decimal] | None:
    stop, take = lot.stop_loss, lot.take_profit
    if stop is not None and open_ <= stop:
        return STOP_LOSS, slippage.fill_price("sell", open_, spread)
    if take is not None and open_ >= take:
        return TAKE_PROFIT, round_price(open_, ROUND_FLOOR)
    if stop is not None and low <= stop:
        return STOP_LOSS, slippage.fill_price("sell", stop, spread)
    if take is not None and high >= take:
        return TAKE_PROFIT, take
    return None


def lots_to_records(lots: ExitLots) -> list[list]:
    """JSON-ready rows of a book's lots (Decimals, fractional quantities included, as exact strings), for a
    ledger's account snapshot."""
    return [
        [
            symbol,
            lot.entry_id,
            lot.order_session.isoformat(),
            to_json(lot.qty),
            _text(lot.stop_loss),
            _text(lot.take_profit),
        ]
        for symbol in sorted(lots)
        for lot in lots[symbol]
    ]


def lots_from_records(records: Iterable[Sequence]) -> dict[str, tuple[ExitLot, ...]]:
    """`lots_to_records` back, exactly."""
    out: dict[str, list[ExitLot]] = {}
    for symbol, entry_id, session, qty, stop, take in records:
        n = qty if isinstance(qty, int) else from_text(qty)  # a fractional quantity is exact text
        lot = ExitLot(entry_id, dt.date.fromisoformat(session), n, _dec(stop), _dec(take))
        out.setdefault(symbol, []).append(lot)
    return {s: tuple(v) for s, v in out.items()}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
