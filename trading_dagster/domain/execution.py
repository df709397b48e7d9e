"""The fill model: how an order placed after D's close executes at D+1's open.

One implementation, used by both the paper broker and the order planner, so the planner's projected
fills are the broker's fills to the cent. Slippage and commission are swappable models (zipline style)
with realistic defaults; prices obey Alpaca's tick rules (cents at >= $1, 4 decimals below $1).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

import numpy as np
import polars as pl

from trading_dagster.domain.collector import collector_paused
from trading_dagster.domain.orders import (
    Fill,
    Order,
    OrderEvent,
    Side,
    as_decimal,
    min_qty_of,
    orders_from_frame,
)
from trading_dagster.domain.quantity import QTY_UNIT, WHOLE, Qty, ShareRule, rule_of

CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")
NANO = Decimal("1E-9")
"""What an unrounded price or commission (`round_cents=False`) is still kept to: a billionth of a dollar, so that
it survives a float64 frame and back (`orders.as_decimal`) and the ledger's arithmetic stays finite."""
_BPS = Decimal(10_000)


def round_price(price: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round to Alpaca's price increment: cents at or above $1, four decimals below.

    A sub-penny price at >= $1 is refused by Alpaca (422, alpaca-notes 2.4), and float arithmetic like
    `190 * 1.013` produces one easily; every price we compute goes through here.
    """
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    tick = CENT if price >= 1 else SUB_DOLLAR_TICK
    return price.quantize(tick, rounding=rounding)


@dataclass(frozen=True)
class SlippageModel:
    """Slippage against us: buys pay more, sells receive less. Two parts, which add:

        buy  = reference x (1 + bps / 10,000 + spread_fraction x spread)
        sell = reference x (1 - bps / 10,000 - spread_fraction x spread)

    `bps` is fixed; `spread` is the order's spread proxy as a fraction of the price (`spread_proxies`: the
    Corwin-Schultz estimate from the order session's bar and the one before, known when the order is placed),
    so `spread_fraction` x spread is the dollar spread proxy at the reference times the fraction: 0.5 pays
    half the estimated spread, crossing from the mid to the touch. `spread_fraction = 0` (the default), or no
    spread given (`spread=None`: the risk controls' estimates, a symbol without a proxy), is the bps model
    alone, to the digit.

    The slipped price is rounded away from us (up for buys, down for sells) so tick rounding can never
    turn slippage into price improvement; a sell never fills below one tick ($0.0001): rounding a price
    of 0.0001 down would make it 0, which no fill can have.

    `round_cents=False` (`[backtest] round_cents`, a reference convention): the price is open x (1 +/- bps)
    exactly (to `NANO`), no tick. Split-adjusted history is not a price anyone traded at, and rounding it
    away from the trader on every fill is a cost of its own (issue 10 measured $136k over 79k fills).
    """

    bps: Decimal = Decimal(5)
    round_cents: bool = True
    spread_fraction: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bps", as_decimal(self.bps))
        object.__setattr__(self, "spread_fraction", as_decimal(self.spread_fraction))
        if self.bps < 0:
            raise ValueError("slippage bps must be >= 0")
        if self.bps >= _BPS:
            raise ValueError(f"slippage bps must be below 10,000 (100 %), got {self.bps}")
        if not 0 <= self.spread_fraction <= 1:
            raise ValueError(f"slippage spread_fraction must be in [0, 1], got {self.spread_fraction}")
        # the factors once, not per price (the planner prices millions of intents); plain attributes, not
        # fields: they follow from bps and take no part in equality
        object.__setattr__(self, "_buy_factor", 1 + self.bps / _BPS)
        object.__setattr__(self, "_sell_factor", 1 - self.bps / _BPS)

    @property
    def uses_spread(self) -> bool:
        """Whether fills need the orders' spread proxies (`spread_fraction` > 0)."""
        return self.spread_fraction > 0

    def fill_price(self, side: Side, reference: Decimal, spread: Decimal | float | None = None) -> Decimal:
        """The fill at `reference` (an open, a stop level); `spread`: the order's spread proxy as a fraction
        of the price (`spread_proxies`), ignored when `spread_fraction` is 0. A price never goes below one
        tick (one `NANO` unrounded): a sell whose slippage and spread would take it to 0 or below fills there."""
        if not (isinstance(reference, Decimal) and reference.is_finite()):  # an exact open is taken as it is
            reference = as_decimal(reference)
        if spread is None or not self.spread_fraction or not spread:
            factor = self._buy_factor if side == "buy" else self._sell_factor  # type: ignore[attr-defined]
        else:
            extra = self.spread_fraction * as_decimal(spread)
            factor = self._buy_factor + extra if side == "buy" else self._sell_factor - extra  # type: ignore[attr-defined]
        if not self.round_cents:
            return max((reference * factor).quantize(NANO, rounding=ROUND_HALF_UP), NANO)
        price = reference * factor
        if side == "buy":
            return round_price(price, ROUND_CEILING)
        if price <= SUB_DOLLAR_TICK:
            return SUB_DOLLAR_TICK
        return max(round_price(price, ROUND_FLOOR), SUB_DOLLAR_TICK)


@dataclass(frozen=True)
class CommissionModel:
    """What a fill costs, rounded to the cent because that is what a cash ledger books:

        cost = per_share x qty + per_order + bps / 10,000 x qty x price, at least `minimum` per order,
               at most `maximum_pct` % of the trade's value (when set)

    The default is half a cent a share (Interactive Brokers' fixed tier without its minimum and cap);
    `COMMISSION_PRESETS` holds broker schedules (`CommissionModel.preset`). Non-decreasing in qty, so
    `affordable_qty`'s binary search holds for every model. `round_cents=False` (a reference convention):
    kept to `NANO` instead of the cent."""

    per_share: Decimal = Decimal("0.005")
    minimum: Decimal = Decimal(0)
    per_order: Decimal = Decimal(0)
    bps: Decimal = Decimal(0)
    maximum_pct: Decimal | None = None
    round_cents: bool = True

    def __post_init__(self) -> None:
        for name in ("per_share", "minimum", "per_order", "bps"):
            object.__setattr__(self, name, as_decimal(getattr(self, name)))
            if getattr(self, name) < 0:
                raise ValueError(f"commission {name} must be >= 0, got {getattr(self, name)}")
        if self.maximum_pct is not None:
            object.__setattr__(self, "maximum_pct", as_decimal(self.maximum_pct))
            if not 0 < self.maximum_pct <= 100:
                raise ValueError(f"commission maximum_pct must be in (0, 100], got {self.maximum_pct}")
        # the per-share-only model (the default) takes the short path: the planner prices millions of fills
        object.__setattr__(
            self, "_simple", self.per_order == 0 and self.bps == 0 and self.maximum_pct is None
        )
        object.__setattr__(self, "_unit", CENT if self.round_cents else NANO)

    @classmethod
    def preset(cls, name: str) -> CommissionModel:
        """A broker's published schedule by name (`COMMISSION_PRESETS`)."""
        try:
            return cls(**COMMISSION_PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown commission preset {name!r}; expected one of {sorted(COMMISSION_PRESETS)}") from None

    def cost(self, qty: int | Decimal, price: Decimal) -> Decimal:
        """Commission for `qty` shares at `price`."""
        if qty <= 0:
            return Decimal(0)
        if self._simple:  # type: ignore[attr-defined]
            return max(self.per_share * qty, self.minimum).quantize(self._unit, rounding=ROUND_HALF_UP)  # type: ignore[attr-defined]
        value = qty * price
        cost = max(self.per_share * qty + self.per_order + self.bps / _BPS * value, self.minimum)
        if self.maximum_pct is not None:
            cost = min(cost, self.maximum_pct / 100 * value)
        return cost.quantize(self._unit, rounding=ROUND_HALF_UP)  # type: ignore[attr-defined]


# Published US-equity schedules (as of 2026; check your broker's page before relying on one):
# Alpaca charges no commission on US equities (regulatory fees on sells are not modelled);
# Interactive Brokers' IBKR Pro Fixed: $0.005 a share, at least $1.00 an order, at most 1% of the trade value.
COMMISSION_PRESETS: dict[str, dict[str, Decimal]] = {
    "alpaca": {"per_share": Decimal(0)},
    "ibkr_fixed": {"per_share": Decimal("0.005"), "minimum": Decimal("1.00"), "maximum_pct": Decimal(1)},
}


def buy_cost(qty: Qty, price: Decimal, commission: CommissionModel) -> Decimal:
    """Cash a buy of `qty` at `price` consumes, commission included."""
    return qty * price + commission.cost(qty, price)


def affordable_qty(cash: Decimal, price: Decimal, commission: CommissionModel, max_qty: Qty) -> Qty:
    """Largest q <= max_qty whose buy cost fits in `cash` (binary search: cost is monotone in q, and a
    minimum commission or a penny stock would make a linear walk long). Whole shares for an int `max_qty`;
    for a Decimal one (fractional shares, `quantity`) the search runs over billionths of a share."""
    if cash <= 0 or max_qty <= 0:
        return 0
    if isinstance(max_qty, Decimal):
        return _affordable_units(cash, price, commission, max_qty)
    if buy_cost(max_qty, price, commission) <= cash:
        # what the search below finds when all of it fits (cost is monotone, and max_qty x price <= cash then,
        # so max_qty <= cash // price): most buys, at one cost instead of ~log2(max_qty)
        return max_qty
    lo, hi = 0, min(max_qty, int(cash // price))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if buy_cost(mid, price, commission) <= cash:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _affordable_units(cash: Decimal, price: Decimal, commission: CommissionModel, max_qty: Decimal) -> Qty:
    """`affordable_qty` over 1e-9 share steps; 0 (an int, as the whole rule's) when not one step fits."""
    rule = rule_of(max_qty)
    lo, hi = 0, int(min(max_qty, rule.buys(cash, price)) / QTY_UNIT)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if buy_cost(mid * QTY_UNIT, price, commission) <= cash:
            lo = mid
        else:
            hi = mid - 1
    return lo * QTY_UNIT if lo else 0


def fill_at_open(
    order: Order,
    open_price: Decimal,
    session: dt.date,
    slippage: SlippageModel,
    commission: CommissionModel,
    qty: Qty | None = None,
    spread: Decimal | None = None,
) -> Fill:
    """The fill of an approved order at `session`'s open (all of it, or `qty` shares of it; a notional order,
    `notional_qty` of the fill price unless `qty` says fewer); `spread`: the order's spread proxy
    (`SlippageModel.fill_price`)."""
    if not order.approved:
        raise ValueError(f"order {order.client_order_id} is denied; denied orders never reach a broker")
    price = slippage.fill_price(order.side, as_decimal(open_price), spread)
    most = order.qty if order.notional is None else notional_qty(order.notional, price, rule_of(order.qty))
    return _fill(order, price, most, session, commission, qty)


def _fill(order: Order, price: Decimal, most: Qty, session: dt.date, commission: CommissionModel, qty: Qty | None) -> Fill:
    """`fill_at_open` once the fill price and the most the order may fill (`most`) are known."""
    n = most if qty is None else qty
    least = min_qty_of(order.qty)
    if not least <= n <= most:
        raise ValueError(f"fill qty {n} outside {least}..{most} for {order.client_order_id}")
    return Fill(
        client_order_id=order.client_order_id,
        order_session=order.session,
        session=session,
        symbol=order.symbol,
        side=order.side,
        qty=n,
        price=price,
        commission=commission.cost(n, price),
    )


def notional_qty(notional: Decimal, price: Decimal, shares: ShareRule = WHOLE) -> Qty:
    """The shares a notional buys at the fill price (`[backtest] size_on = "fill"`), rounded down to a whole
    share or, with fractional shares, to 1e-9 share."""
    return shares.buys(notional, price)


def fill_priority(order: Order) -> tuple[dt.date, int, str, str, str]:
    """The order in which the open works pending orders: sells first (their cash funds the buys)."""
    return (
        order.session,
        0 if order.side == "sell" else 1,
        order.strategy,
        order.symbol,
        order.client_order_id,
    )


@dataclass(frozen=True)
class OpenResult:
    """What one session's open did to the pending orders."""

    fills: list[Fill] = field(default_factory=list)
    expired: list[OrderEvent] = field(default_factory=list)


def execute_open(
    pending: Sequence[Order],
    opens: Mapping[str, Decimal],
    session: dt.date,
    cash: Decimal,
    held: Mapping[str, Qty],
    slippage: SlippageModel,
    commission: CommissionModel,
    *,
    cash_limited: bool = True,
    spreads: Mapping[str, Decimal | float] | None = None,
) -> OpenResult:
    """Work every pending order at `session`'s open, as a cash account without margin would.

    * no bar for the symbol that session: the order expires (a day order on a halted/missing name);
    * sells first, capped at the shares held (long only: the broker never lets us go short);
    * buys capped at what the cash covers at the actual open (a gap up since the close we sized on can
      make the order unaffordable); the uncovered remainder expires. This is what keeps cash >= 0.
      `cash_limited=False` (`[backtest] buying_power = "off"`, a reference convention) fills buys whole
      whatever the cash: cash may go below zero;
    * a notional buy (`Order.notional`, `[backtest] size_on = "fill"`) wants notional / fill price shares
      (`notional_qty`), which may be more or fewer than the estimate at the close it was approved with;
    * `spreads` {symbol: spread proxy of the orders' session} (`spread_proxies`; the orders one open works
      are one session's): what a `SlippageModel` with a `spread_fraction` adds to the slippage. Required
      when the model uses the spread; a symbol without a proxy slips by the bps alone.
    """
    if slippage.uses_spread and spreads is None and pending:
        raise ValueError("the slippage model has a spread_fraction: execute_open needs the orders' spreads")
    cash = as_decimal(cash)
    moved: dict[str, Qty] = {}  # the shares this open's fills leave, over `held` (not copied: it is the book)
    result = OpenResult()
    for order in sorted(pending, key=fill_priority):
        open_price = opens.get(order.symbol)
        if open_price is None:
            result.expired.append(OrderEvent.expired(order, session, order.qty))
            continue
        proxy = None if spreads is None else spreads.get(order.symbol)
        spread = None if proxy is None else as_decimal(proxy)
        price = slippage.fill_price(order.side, as_decimal(open_price), spread)
        wanted = order.qty if order.notional is None else notional_qty(order.notional, price, rule_of(order.qty))
        symbol = order.symbol
        if order.side == "sell":
            qty = min(order.qty, moved[symbol] if symbol in moved else held.get(symbol, 0))
        elif cash_limited:
            qty = affordable_qty(cash, price, commission, wanted)
        else:
            qty = wanted
        if qty > 0:
            if not order.approved:  # as fill_at_open (a denied order has qty 0: it never gets here)
                raise ValueError(f"order {order.client_order_id} is denied; denied orders never reach a broker")
            fill = _fill(order, price, wanted, session, commission, qty)  # fill_at_open at the price just made
            result.fills.append(fill)
            now = moved[symbol] if symbol in moved else held.get(symbol, 0)
            if order.side == "sell":
                cash += fill.qty * fill.price - fill.commission
                moved[symbol] = now - fill.qty
            else:
                cash -= fill.qty * fill.price + fill.commission
                moved[symbol] = now + fill.qty
        if qty < wanted:
            result.expired.append(OrderEvent.expired(order, session, wanted - qty))
        elif wanted == 0:  # a notional below one share at the open: nothing of it fills
            result.expired.append(OrderEvent.expired(order, session, order.qty))
    return result


def opens_at(prices: pl.DataFrame, session: dt.date) -> dict[str, Decimal]:
    """{symbol: open} for one session of a cleaned-prices frame: what `Broker.sync` takes."""
    rows = prices.filter(pl.col("session") == session).select("symbol", "open").iter_rows()
    return {symbol: as_decimal(open_) for symbol, open_ in rows if open_ is not None}


def by_session(frame: pl.DataFrame, value: str) -> dict[dt.date, dict[str, object]]:
    """{session: {symbol: value}} of a frame with `session` and `symbol` columns, in one pass: one stable sort
    by session, three column lists, and a dict per session from its slice (a symbol's row order within its
    session kept; a `partition_by` into thousands of small frames costs several times more)."""
    if frame.height == 0:
        return {}
    rows = frame.select("session", "symbol", value)
    sessions = rows["session"]
    if not sessions.is_sorted():
        rows = rows.sort("session", maintain_order=True)
        sessions = rows["session"]
    days = sessions.to_physical().to_numpy()
    starts = np.flatnonzero(np.diff(days)) + 1
    bounds = [0, *starts.tolist(), rows.height]
    firsts = sessions.gather(bounds[:-1]).to_list()
    symbols, values = rows["symbol"].to_list(), rows[value].to_list()
    return {
        day: dict(zip(symbols[a:b], values[a:b], strict=True))
        for day, a, b in zip(firsts, bounds[:-1], bounds[1:], strict=True)
    }


class _Columns:
    """A frame's (session, symbol, value) rows sorted by session and symbol code, as arrays: what the
    `SessionValues` of its sessions look their symbols up in."""

    __slots__ = ("code", "codes", "nulls", "rows", "symbols", "values")

    def __init__(self, symbols: list[str], codes: np.ndarray, values: np.ndarray, nulls: np.ndarray | None, rows: np.ndarray):
        self.symbols = symbols  # by code
        self.code = {s: i for i, s in enumerate(symbols)}
        self.codes, self.values, self.nulls, self.rows = codes, values, nulls, rows


class SessionValues(Mapping[str, float | None]):
    """{symbol: value} of one session of a frame (`opens_by_session`): equal to the dict `by_session` builds for
    it (the last row of a symbol wins, a null value is None, iteration in the frame's row order), but read
    from the frame's sorted columns when asked. A backtest asks a session's opens for its due orders' symbols
    only (`values_of`), a few dozen of ~1,900: building every session's dict cost more than all its lookups."""

    __slots__ = ("_columns", "_hi", "_lo")

    def __init__(self, columns: _Columns, lo: int, hi: int) -> None:
        self._columns, self._lo, self._hi = columns, lo, hi

    def _position(self, symbol: str) -> int:
        """The row of `symbol` in the sorted columns, -1 when the session has none."""
        c = self._columns
        code = c.code.get(symbol)
        if code is None:
            return -1
        lo, hi = self._lo, self._hi
        i = lo + int(np.searchsorted(c.codes[lo:hi], code, side="right")) - 1
        return i if i >= lo and c.codes[i] == code else -1

    def _value(self, i: int) -> float | None:
        c = self._columns
        return None if c.nulls is not None and c.nulls[i] else float(c.values[i])

    def __getitem__(self, symbol: str) -> float | None:
        i = self._position(symbol)
        if i < 0:
            raise KeyError(symbol)
        return self._value(i)

    def get(self, symbol: str, default: object = None) -> object:  # type: ignore[override]
        i = self._position(symbol)
        return default if i < 0 else self._value(i)

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and self._position(symbol) >= 0

    def values_of(self, symbols: Sequence[str]) -> list[float | None]:
        """The value of each of `symbols` (None: no row that session, or a null value), in one search."""
        if not symbols:
            return []
        c = self._columns
        wanted = np.array([c.code.get(s, -1) for s in symbols], dtype=np.int64)
        codes = c.codes[self._lo : self._hi]
        at = np.searchsorted(codes, wanted, side="right") - 1
        safe = np.maximum(at, 0)
        found = (at >= 0) & (wanted >= 0) & (codes[safe] == wanted) if len(codes) else np.zeros(len(wanted), bool)
        if c.nulls is not None:
            found &= ~c.nulls[self._lo : self._hi][safe]
        values = c.values[self._lo : self._hi][safe].tolist() if len(codes) else [0.0] * len(wanted)
        return [v if ok else None for v, ok in zip(values, found.tolist(), strict=True)]

    def _symbols(self) -> list[str]:
        """The session's symbols in the frame's row order (a repeated symbol where it first appears)."""
        c = self._columns
        lo, hi = self._lo, self._hi
        firsts: dict[int, int] = {}
        for code, row in zip(c.codes[lo:hi].tolist(), c.rows[lo:hi].tolist(), strict=True):
            firsts.setdefault(code, row)  # rows ascend within a code: the first is the first row
        return [c.symbols[code] for code, _ in sorted(firsts.items(), key=lambda kv: kv[1])]

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols())

    def __len__(self) -> int:
        codes = self._columns.codes[self._lo : self._hi]
        return int(np.count_nonzero(np.diff(codes))) + 1 if len(codes) else 0

    def __repr__(self) -> str:
        return f"SessionValues({dict(self.items())!r})"


@collector_paused
def opens_by_session(prices: pl.DataFrame) -> dict[dt.date, Mapping[str, float | None]]:
    """{session: {symbol: open}} for every session of a cleaned-prices frame: what a multi-session window feeds
    `Broker.sync` session by session (the broker converts to Decimal). Equal to `by_session(prices, "open")`;
    for a Float64 `open` column each session's mapping is a `SessionValues` over the frame's columns sorted
    once, not a dict of every listed symbol (which cost a ten-year backfill more than its whole book)."""
    if (
        prices.height == 0
        or prices.schema["open"] != pl.Float64
        or prices.schema["symbol"] != pl.String
        or prices["symbol"].null_count()
    ):
        return by_session(prices, "open")
    symbols = prices["symbol"].unique().sort()
    # a symbol's code is its rank: an Enum of the sorted symbols (a join, or a rank, costs 3-20x more)
    rows = prices.select(
        "session", pl.col("symbol").cast(pl.Enum(symbols)).to_physical().cast(pl.Int64).alias("code"), "open"
    ).with_row_index("row")
    if not (rows["session"].is_sorted() and rows.select(
        ((pl.col("code") >= pl.col("code").shift(1)) | (pl.col("session") != pl.col("session").shift(1))).all()
    ).item()):
        rows = rows.sort("session", "code", maintain_order=True)  # stable: a repeated symbol's rows keep their order
    nulls = rows["open"].is_null().to_numpy() if rows["open"].null_count() else None
    columns = _Columns(
        symbols.to_list(), rows["code"].to_numpy(), rows["open"].to_numpy(), nulls, rows["row"].to_numpy()
    )
    sessions = rows["session"]
    starts = np.flatnonzero(np.diff(sessions.to_physical().to_numpy())) + 1
    bounds = [0, *starts.tolist(), rows.height]
    firsts = sessions.gather(bounds[:-1]).to_list()
    return {
        day: SessionValues(columns, lo, hi) for day, lo, hi in zip(firsts, bounds[:-1], bounds[1:], strict=True)
    }


@collector_paused
def orders_by_session(orders: pl.DataFrame, status: str | None = "approved") -> dict[dt.date, list[Order]]:
    """{session: [Order, ...]} of an `orders` frame's rows with `status` (None: every row), in the frame's row
    order: one `orders.orders_from_frame` over the whole frame instead of one per session (three frame
    selects each, ~1 ms a session: most of a ten-year backfill's executions time)."""
    if status is not None and orders.height:
        orders = orders.filter(pl.col("status") == status)
    out: dict[dt.date, list[Order]] = {}
    for order in orders_from_frame(orders) if orders.height else ():
        out.setdefault(order.session, []).append(order)
    return out


_CS_K = 3 - 2 * 2**0.5  # Corwin & Schultz's 3 - 2 sqrt(2)
SPREAD_DECIMALS = 9
"""A spread proxy is kept to 1e-9 of the price (1e-5 bps): the float a frame holds goes to the exact Decimal
the fill model multiplies (`orders.as_decimal`) the same way in the planner and the book."""


def spread_proxies(prices: pl.DataFrame, symbols: Iterable[str] | None = None) -> pl.DataFrame:
    """(session, symbol, spread): each bar's spread proxy as a fraction of the price, what a `SlippageModel`
    with a `spread_fraction` charges an order placed at that session's close.

    The Corwin & Schultz (2012) high-low estimator over the symbol's bar of session D and its bar of the
    session before (t = D-1, t+1 = D), both known at D's close:

        beta  = ln(H_t / L_t)^2 + ln(H_t+1 / L_t+1)^2
        gamma = ln(max(H_t, H_t+1) / min(L_t, L_t+1))^2
        alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt(2)) - sqrt(gamma / (3 - 2 sqrt(2)))
        S     = 2 (e^alpha - 1) / (1 + e^alpha) (= 2 tanh(alpha / 2), below 2), and 0 when negative (the
                paper sets negative two-day estimates to zero)

    with the paper's overnight adjustment: when D's low is above D-1's close (D's high below it), D's high and
    low are moved down (up) by the gap. A day's range holds volatility and the spread; two days' range holds
    twice the volatility (it scales with time) but the spread once, which is what separates them. S is a
    fraction of the price, so a split between the order and its fill changes nothing.

    "The session before" is the previous session of the frame (its distinct sessions, all symbols): a symbol
    without a bar there, or with a missing or non-positive high, low or close, has no proxy (null; its orders
    slip by the bps alone). Pure row arithmetic: a bar's proxy is the same in any frame that holds it and the
    session before, so a one-day run and a range run agree. `symbols`: only theirs (the sessions are still
    the whole frame's).
    """
    if prices.height == 0:
        return pl.DataFrame(schema={"session": pl.Date, "symbol": pl.String, "spread": pl.Float64})
    days = prices["session"].unique().sort()
    previous = pl.DataFrame({"session": days.slice(1), "prev_session": days.slice(0, len(days) - 1)})
    bars = prices.select("session", "symbol", "high", "low", "close")
    if symbols is not None:
        bars = bars.filter(pl.col("symbol").is_in(sorted(set(symbols))))
    before = bars.rename({"session": "prev_session", "high": "h0", "low": "l0", "close": "c0"})
    pairs = bars.join(previous, on="session", how="left").join(before, on=["prev_session", "symbol"], how="left")
    h1, l1, c0 = pl.col("high"), pl.col("low"), pl.col("c0")
    shift = pl.when(l1 > c0).then(l1 - c0).when(h1 < c0).then(h1 - c0).otherwise(0.0)
    h1, l1 = h1 - shift, l1 - shift
    beta = (pl.col("h0") / pl.col("l0")).log().pow(2) + (h1 / l1).log().pow(2)
    gamma = (pl.max_horizontal("h0", h1) / pl.min_horizontal("l0", l1)).log().pow(2)
    alpha = ((2 * beta).sqrt() - beta.sqrt()) / _CS_K - (gamma / _CS_K).sqrt()
    # 2 (e^a - 1) / (1 + e^a) is 2 tanh(a / 2): the same number without e^a overflowing on a wild bar pair
    spread = (2 * (alpha / 2).tanh()).clip(lower_bound=0.0).round(SPREAD_DECIMALS)
    valid = pl.all_horizontal((pl.col(c) > 0) for c in ("high", "low", "h0", "l0", "c0")) & spread.is_finite()
    return pairs.select(
        "session", "symbol", pl.when(valid).then(spread).otherwise(None).cast(pl.Float64).alias("spread")
    ).sort("session", "symbol")


def spreads_by_session(
    prices: pl.DataFrame, symbols: Iterable[str] | None = None
) -> dict[dt.date, dict[str, float]]:
    """{session: {symbol: spread proxy}} of a cleaned-prices frame (`spread_proxies`, nulls left out): what
    `SimulatedBook.sync` takes next to the opens."""
    return by_session(spread_proxies(prices, symbols).drop_nulls("spread"), "spread")
