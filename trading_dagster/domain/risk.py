"""Sizing and pre-trade risk controls: our own decision to approve, clip or deny an order.

A denial here is *ours* (a reason code on the order row), kept apart from a broker rejection (theirs).
Each control is a small class (zipline style) that looks at one order intent and a snapshot of the book
and returns approve / clip / deny with a reason code; `check_order` runs them in sequence. A clipped
order stays approved and keeps the reason code of the control that cut it, so qty < requested_qty is
always explained.

Every limit can be off (`None`); the defaults are the controls this project always had (fixed notional,
10 % max position, 4 shares a month, $1 minimum price, long only, buying power). The exits (stop-loss,
take-profit) are levels fixed when an order is planned: `domain/exits.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol

from trading_dagster.domain.execution import CommissionModel, SlippageModel, affordable_qty, buy_cost
from trading_dagster.domain.orders import SIDES, Side, as_decimal
from trading_dagster.domain.quantity import SHARES, WHOLE, Qty, ShareRule, rule_of, share_rule

Sizing = Literal["fixed_notional", "pct_equity", "atr"]
SIZINGS: tuple[str, ...] = ("fixed_notional", "pct_equity", "atr")

SIZE_BELOW_ONE_SHARE = "SIZE_BELOW_ONE_SHARE"
QTY_OVER_MONTHLY_LIMIT = "QTY_OVER_MONTHLY_LIMIT"
MAX_POSITION = "MAX_POSITION"
INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
NO_PRICE = "NO_PRICE"
PRICE_BELOW_MINIMUM = "PRICE_BELOW_MINIMUM"
MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
MAX_ORDERS_PER_SESSION = "MAX_ORDERS_PER_SESSION"
MAX_NOTIONAL_PER_SESSION = "MAX_NOTIONAL_PER_SESSION"
DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
NO_ATR = "NO_ATR"
ALREADY_HELD = "ALREADY_HELD"
REASON_CODES = (
    SIZE_BELOW_ONE_SHARE,
    QTY_OVER_MONTHLY_LIMIT,
    MAX_POSITION,
    INSUFFICIENT_BUYING_POWER,
    SHORT_NOT_ALLOWED,
    NO_PRICE,
    PRICE_BELOW_MINIMUM,
    MAX_GROSS_EXPOSURE,
    MAX_ORDERS_PER_SESSION,
    MAX_NOTIONAL_PER_SESSION,
    DAILY_LOSS_LIMIT,
    NO_ATR,
    ALREADY_HELD,
)
BUYING_POWERS: tuple[str, ...] = ("cash", "off")
SIZE_ON: tuple[str, ...] = ("close", "fill")
DEFAULT_MIN_PRICE = Decimal(1)
MAX_ATR_PERIOD = 50

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class RiskConfig:
    """Sizing, limits and exits. Amounts are Decimal (floats/ints/strings are converted exactly); every
    limit that is None is off. `risk_config_from_mapping` parses a `[risk]` section into one.

    Sizing (`sizing`): "fixed_notional" buys `notional` USD; "pct_equity" buys `pct_equity` % of equity;
    "atr" risks `risk_pct_equity` % of equity per `atr_multiple` ATRs: qty = equity * risk_pct_equity / 100
    / (atr_multiple * ATR), ATR = Wilder's over `atr_period` sessions at the signal session (`exits.atr`);
    a buy without an ATR is denied NO_ATR. Sells always sell the whole position.

    Limits (each None = off): max_position_pct_equity (held + pending buys of one symbol, at the close);
    max_gross_exposure_pct_equity (long market value + the session's pending buys, at the close);
    max_orders_per_session (approved orders of one session, sells and buys, sells planned first);
    max_notional_per_session (USD, qty x close of the session's approved orders, sells and buys);
    max_daily_loss_pct_equity / max_daily_loss_usd (the session's loss, from the book after its open marked
    at the open to the book after its exits marked at the close; reaching either denies all of the session's
    buys, DAILY_LOSS_LIMIT, and the projection reports the session).
    monthly_share_limit: at most this many shares bought per stock per calendar month, months taken from
    the *fill* session, counting filled plus pending buys.
    min_price: a buy needs a reference price (the signal session's close) of at least this many USD
    (default $1: a sub-dollar or bogus near-zero close would size thousands to millions of shares); sells
    are never held back by it. None or 0 disables the control.

    add_to_positions: False denies a buy of a symbol already held or with a buy pending (ALREADY_HELD): one
    position per symbol, as vectorbt's `accumulate=False`.

    Exits (each None = off; at most one of the pair *_pct / *_atr each): stop_loss_pct / take_profit_pct
    (% below / above the entry order's reference close), stop_loss_atr / take_profit_atr (ATR multiples
    below / above it). See `exits.py` for the levels and how the backtest fills them.

    buying_power ("cash" | "off") and size_on ("close" | "fill") are backtest conventions (`[backtest]`,
    `BACKTEST_KEYS`), not `[risk]` keys. buying_power "off" takes the cash limit out of planning (no
    INSUFFICIENT_BUYING_POWER) and out of the fills (`execution.execute_open(cash_limited=False)`), so a
    reference run's result never depends on the order in which buys met the cash. size_on "fill": a buy
    carries its notional (`fill_notional`) and its shares are notional / fill price at the open; the controls
    judge the estimate at the close. shares ("whole" | "fractional", `quantity.py`) is the third: fractional
    sizes and clips to 1e-9 share (quantities are Decimals) instead of whole shares (ints). None of them is for
    a trading book.
    """

    sizing: Sizing = "fixed_notional"
    notional: Decimal = Decimal(1000)
    pct_equity: Decimal = Decimal(2)
    risk_pct_equity: Decimal = Decimal("0.5")
    atr_multiple: Decimal = Decimal(2)
    atr_period: int = 14
    max_position_pct_equity: Decimal | None = Decimal(10)
    max_gross_exposure_pct_equity: Decimal | None = None
    max_orders_per_session: int | None = None
    max_notional_per_session: Decimal | None = None
    max_daily_loss_pct_equity: Decimal | None = None
    max_daily_loss_usd: Decimal | None = None
    long_only: bool = True
    monthly_share_limit: int | None = 4
    initial_cash: Decimal = Decimal(100_000)
    min_price: Decimal | None = DEFAULT_MIN_PRICE
    stop_loss_pct: Decimal | None = None
    stop_loss_atr: Decimal | None = None
    take_profit_pct: Decimal | None = None
    take_profit_atr: Decimal | None = None
    add_to_positions: bool = True
    buying_power: str = "cash"
    size_on: str = "close"
    shares: str = "whole"

    def __post_init__(self) -> None:
        for name in _DECIMAL_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_decimal(value))
        if self.sizing not in SIZINGS:
            raise ValueError(f"sizing must be one of {', '.join(map(repr, SIZINGS))}, got {self.sizing!r}")
        for name in _INT_KEYS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(
                    f"{name} must be an integer{' or None' if name in _NULLABLE else ''}, got {value!r}"
                )
        max_position = self.max_position_pct_equity
        if self.notional <= 0 or self.pct_equity <= 0 or (max_position is not None and max_position <= 0):
            raise ValueError("notional, pct_equity and max_position_pct_equity must be > 0")
        if not 0 < self.risk_pct_equity <= _HUNDRED or self.atr_multiple <= 0:
            raise ValueError("risk_pct_equity must be in (0, 100] and atr_multiple > 0")
        if not 1 <= self.atr_period <= MAX_ATR_PERIOD:
            raise ValueError(f"atr_period must be in 1..{MAX_ATR_PERIOD}, got {self.atr_period}")
        for name in ("max_position_pct_equity", "max_gross_exposure_pct_equity", "max_daily_loss_pct_equity"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= _HUNDRED:
                raise ValueError(f"{name} must be in (0, 100] or None, got {value}")
        for name in (
            "max_notional_per_session",
            "max_daily_loss_usd",
            "stop_loss_atr",
            "take_profit_atr",
            "take_profit_pct",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if self.stop_loss_pct is not None and not 0 < self.stop_loss_pct < _HUNDRED:
            raise ValueError(f"stop_loss_pct must be in (0, 100) or None, got {self.stop_loss_pct}")
        for pct, atr in (("stop_loss_pct", "stop_loss_atr"), ("take_profit_pct", "take_profit_atr")):
            if getattr(self, pct) is not None and getattr(self, atr) is not None:
                raise ValueError(f"set at most one of {pct} and {atr}")
        if self.max_orders_per_session is not None and self.max_orders_per_session < 0:
            raise ValueError("max_orders_per_session must be >= 0 or None")
        if self.min_price is not None and self.min_price < 0:
            raise ValueError(f"min_price must be >= 0 or None, got {self.min_price}")
        if self.initial_cash < 0:
            raise ValueError("initial_cash must be >= 0")
        if self.monthly_share_limit is not None and self.monthly_share_limit < 0:
            raise ValueError("monthly_share_limit must be >= 0 or None")
        for name in ("long_only", "add_to_positions"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.buying_power not in BUYING_POWERS:
            raise ValueError(f"buying_power must be 'cash' or 'off', got {self.buying_power!r}")
        if self.size_on not in SIZE_ON:
            raise ValueError(f"size_on must be 'close' or 'fill', got {self.size_on!r}")
        if self.shares not in SHARES:
            raise ValueError(f"shares must be 'whole' or 'fractional', got {self.shares!r}")
        if self.size_on == "fill" and self.sizing == "atr":
            raise ValueError("size_on = 'fill' sizes a notional at the fill price; ATR sizing has no notional")
        if self.size_on == "fill" and self.monthly_share_limit is not None:
            raise ValueError(
                "size_on = 'fill' decides a buy's shares at the fill, after the share quota is checked: set "
                "[risk] monthly_share_limit = \"off\" with it"
            )
        if not self.long_only:
            # Short positions would need borrow costs and short P&L in the portfolio; not modelled.
            raise ValueError("only long_only=True is supported")

    @property
    def share_rule(self) -> ShareRule:
        """How this config's quantities round (`quantity.ShareRule`)."""
        return share_rule(self.shares)

    @property
    def has_exits(self) -> bool:
        return any(
            v is not None
            for v in (self.stop_loss_pct, self.stop_loss_atr, self.take_profit_pct, self.take_profit_atr)
        )

    @property
    def needs_atr(self) -> bool:
        """ATR sizing or an ATR exit: the planner then computes (or reads) an ATR per symbol and session."""
        return self.sizing == "atr" or self.stop_loss_atr is not None or self.take_profit_atr is not None

    @property
    def has_daily_loss_limit(self) -> bool:
        return self.max_daily_loss_pct_equity is not None or self.max_daily_loss_usd is not None

    @property
    def has_session_limits(self) -> bool:
        """A control beyond the original chain (its planner shortcut then stays off)."""
        return (
            self.max_gross_exposure_pct_equity is not None
            or self.max_orders_per_session is not None
            or self.max_notional_per_session is not None
            or self.has_daily_loss_limit
            or self.needs_atr
        )

    def daily_loss_limit(self, start_equity: Decimal) -> Decimal | None:
        """The session's loss that trips the limit (the smaller of the two when both are set), or None."""
        limits = [] if self.max_daily_loss_usd is None else [self.max_daily_loss_usd]
        if self.max_daily_loss_pct_equity is not None:
            limits.append(start_equity * self.max_daily_loss_pct_equity / _HUNDRED)
        return min(limits) if limits else None


_DECIMAL_KEYS = (
    "notional",
    "pct_equity",
    "risk_pct_equity",
    "atr_multiple",
    "max_position_pct_equity",
    "max_gross_exposure_pct_equity",
    "max_notional_per_session",
    "max_daily_loss_pct_equity",
    "max_daily_loss_usd",
    "initial_cash",
    "min_price",
    "stop_loss_pct",
    "stop_loss_atr",
    "take_profit_pct",
    "take_profit_atr",
)
_INT_KEYS = ("atr_period", "max_orders_per_session", "monthly_share_limit")
_NULLABLE = frozenset(
    {
        "max_position_pct_equity",
        "max_gross_exposure_pct_equity",
        "max_orders_per_session",
        "max_notional_per_session",
        "max_daily_loss_pct_equity",
        "max_daily_loss_usd",
        "monthly_share_limit",
        "min_price",
        "stop_loss_pct",
        "stop_loss_atr",
        "take_profit_pct",
        "take_profit_atr",
    }
)
OFF = "off"
"""What a `[risk]` key that can be off takes in TOML (which has no null): `monthly_share_limit = "off"`."""
BACKTEST_KEYS = ("buying_power", "size_on", "shares")
"""RiskConfig fields that are backtest conventions (`[backtest]`), not `[risk]` keys."""


def risk_config_from_mapping(
    section: Mapping[str, Any], *, initial_cash: Decimal | float | int | str
) -> RiskConfig:
    """A `[risk]` section (e.g. from TOML) as a RiskConfig, every key validated: an unknown key, a wrong type
    or a value out of range is a ValueError naming the key. Keys left out keep their defaults; a limit is off
    with None or the string "off". Numbers are int or float (a float is taken exactly as printed), never
    bool or str; `initial_cash` comes from the account section."""
    allowed = sorted(f.name for f in fields(RiskConfig) if f.name not in ("initial_cash", *BACKTEST_KEYS))
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"unknown [risk] key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    values: dict[str, Any] = {}
    for key, value in section.items():
        if value is None or (isinstance(value, str) and value.strip().lower() == OFF):
            if key not in _NULLABLE:
                raise ValueError(f"[risk] {key} cannot be off (None / {OFF!r})")
            values[key] = None
        elif key == "sizing":
            if not isinstance(value, str) or value not in SIZINGS:
                raise ValueError(
                    f"[risk] sizing must be one of {', '.join(map(repr, SIZINGS))}, got {value!r}"
                )
            values[key] = value
        elif key in ("long_only", "add_to_positions"):
            if not isinstance(value, bool):
                raise ValueError(f"[risk] {key} must be true or false, got {value!r}")
            values[key] = value
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"[risk] {key} must be an integer, got {value!r}")
            values[key] = value
        else:  # a Decimal key
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise ValueError(f"[risk] {key} must be a number, got {value!r}")
            try:
                values[key] = as_decimal(value)
            except ValueError as exc:
                raise ValueError(f"[risk] {key}: {exc}") from None
    try:
        return RiskConfig(**values, initial_cash=as_decimal(initial_cash))
    except ValueError as exc:
        raise ValueError(f"[risk] {exc}") from None


# The three records a control sees and returns are NamedTuples (immutable, and cheaper to build than frozen
# dataclasses: a backtest builds millions of them).


class OrderIntent(NamedTuple):
    """A sized order before the controls: `qty` is the requested quantity."""

    symbol: str
    side: Side
    qty: Qty
    ref_price: Decimal | None


class RiskContext(NamedTuple):
    """The book as the controls see it for one intent at session D (after D's open fills).

    pending_* are the approved orders of D planned before this one (they fill together at D+1's open);
    available_cash is cash minus what those pending buys reserve. The fields after available_cash have
    defaults so that the original controls' contexts stay six values.
    """

    held: Qty
    pending_buy_qty: Qty
    pending_sell_qty: Qty
    bought_in_fill_month: Qty
    equity: Decimal
    available_cash: Decimal
    # read only by the controls that are off by default (the planner fills them only when one is on)
    market_value: Decimal = Decimal(0)  # long positions at the marks equity is valued at
    pending_buy_notional: Decimal = Decimal(0)  # qty x ref_price of the session's approved buys so far
    session_orders: int = 0  # approved orders of the session so far (both sides)
    session_notional: Decimal = Decimal(0)  # qty x ref_price of the session's approved orders so far
    halted: bool = False  # the session's loss reached the daily loss limit
    atr: Decimal | None = None  # the symbol's ATR at the signal session (ATR sizing / ATR exits)


class Decision(NamedTuple):
    qty: Qty
    reason_code: str | None = None

    @property
    def denied(self) -> bool:
        return self.qty == 0


class PreTradeControl(Protocol):
    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision: ...


def _limit(intent: OrderIntent, allowed: Qty, reason: str) -> Decision:
    """Approve if within `allowed`, else clip to it (deny at 0), naming the reason."""
    if intent.qty <= allowed:
        return Decision(intent.qty)
    return Decision(max(allowed, 0), reason)


def _no_price(price: Decimal | None) -> bool:
    return price is None or price <= 0


@dataclass(frozen=True)
class NoPrice:
    """Without D's close (or with a close that is not positive, which cleaning never passes) we can neither
    size nor value the order."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        return Decision(0, NO_PRICE) if _no_price(intent.ref_price) else Decision(intent.qty)


@dataclass(frozen=True)
class MinimumPrice:
    """A buy needs a reference price of at least `min_price`. A price like 0.0001 (a collapsed stock, or a
    bogus bar) would otherwise size a fixed notional into millions of shares; sells are never held back,
    so a position in a collapsing stock stays closable."""

    min_price: Decimal

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side == "buy" and intent.ref_price is not None and intent.ref_price < self.min_price:
            return Decision(0, PRICE_BELOW_MINIMUM)
        return Decision(intent.qty)


@dataclass(frozen=True)
class LongOnly:
    """A sell may only sell shares we hold and have not already committed to another sell."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "sell":
            return Decision(intent.qty)
        available = ctx.held - ctx.pending_sell_qty
        if available <= 0:
            return Decision(0, SHORT_NOT_ALLOWED)
        return _limit(intent, available, SHORT_NOT_ALLOWED)


@dataclass(frozen=True)
class NoAddingToPositions:
    """`add_to_positions = false`: a buy of a symbol held, or with a buy of this session already approved, is
    denied (one position per symbol; a repeated buy signal does not add to it)."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side == "buy" and (ctx.held > 0 or ctx.pending_buy_qty > 0):
            return Decision(0, ALREADY_HELD)
        return Decision(intent.qty)


@dataclass(frozen=True)
class MinimumSize:
    """Sizing rounds down to whole shares; an expensive stock can round to zero. With fractional shares
    (`shares`) only a quantity of zero (a budget under 1e-9 share, or nothing sized) is denied."""

    shares: ShareRule = WHOLE

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.qty < self.shares.min_qty:
            return Decision(0, SIZE_BELOW_ONE_SHARE)
        return Decision(intent.qty)


@dataclass(frozen=True)
class MonthlyShareLimit:
    """At most `limit` shares of a stock bought per month (fill month; filled plus pending)."""

    limit: int

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "buy":
            return Decision(intent.qty)
        remaining = self.limit - ctx.bought_in_fill_month - ctx.pending_buy_qty
        return _limit(intent, remaining, QTY_OVER_MONTHLY_LIMIT)


@dataclass(frozen=True)
class MaxPosition:
    """The position (held plus pending buys) may not exceed `pct` % of equity, valued at D's close."""

    pct: Decimal
    shares: ShareRule = WHOLE

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "buy" or intent.ref_price is None:
            return Decision(intent.qty)
        room = ctx.equity * self.pct / 100 - (ctx.held + ctx.pending_buy_qty) * intent.ref_price
        allowed = self.shares.buys(room, intent.ref_price) if room > 0 else 0
        return _limit(intent, allowed, MAX_POSITION)


@dataclass(frozen=True)
class DailyLossLimit:
    """No buy once the session's loss reached the daily loss limit (`ctx.halted`); sells pass."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side == "buy" and ctx.halted:
            return Decision(0, DAILY_LOSS_LIMIT)
        return Decision(intent.qty)


@dataclass(frozen=True)
class NeedsAtr:
    """A buy sized by ATR, or bracketed by ATR exits, needs the symbol's ATR at the signal session (too
    little history: none); sells pass."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side == "buy" and (ctx.atr is None or ctx.atr <= 0):
            return Decision(0, NO_ATR)
        return Decision(intent.qty)


@dataclass(frozen=True)
class MaxOrdersPerSession:
    """At most `limit` approved orders per session, sells and buys (sells are planned first)."""

    limit: int

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if ctx.session_orders >= self.limit:
            return Decision(0, MAX_ORDERS_PER_SESSION)
        return Decision(intent.qty)


@dataclass(frozen=True)
class MaxGrossExposure:
    """Long market value plus the session's pending buys (at the close) may not exceed `pct` % of equity."""

    pct: Decimal
    shares: ShareRule = WHOLE

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "buy" or intent.ref_price is None:
            return Decision(intent.qty)
        room = ctx.equity * self.pct / 100 - ctx.market_value - ctx.pending_buy_notional
        allowed = self.shares.buys(room, intent.ref_price) if room > 0 else 0
        return _limit(intent, allowed, MAX_GROSS_EXPOSURE)


@dataclass(frozen=True)
class MaxNotionalPerSession:
    """The session's approved orders, sells and buys, may not exceed `usd` in qty x close."""

    usd: Decimal
    shares: ShareRule = WHOLE

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.ref_price is None:
            return Decision(intent.qty)
        room = self.usd - ctx.session_notional
        allowed = self.shares.buys(room, intent.ref_price) if room > 0 else 0
        return _limit(intent, allowed, MAX_NOTIONAL_PER_SESSION)


@dataclass(frozen=True)
class BuyingPower:
    """The buy, priced with slippage and commission, must fit in cash not reserved by pending buys."""

    slippage: SlippageModel
    commission: CommissionModel

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "buy" or intent.ref_price is None:
            return Decision(intent.qty)
        allowed = self.affordable(ctx.available_cash, intent.ref_price, intent.qty)
        return _limit(intent, allowed, INSUFFICIENT_BUYING_POWER)

    def affordable(self, cash: Decimal, ref_price: Decimal, max_qty: Qty) -> Qty:
        """Shares (at most max_qty) that `cash` buys at `ref_price` plus slippage, commission included (to
        1e-9 share for a Decimal `max_qty`: `execution.affordable_qty`)."""
        return affordable_qty(cash, self.slippage.fill_price("buy", ref_price), self.commission, max_qty)


def default_controls(
    config: RiskConfig, slippage: SlippageModel, commission: CommissionModel
) -> tuple[PreTradeControl, ...]:
    """The controls in the order they run: cheap denials first, then the clipping limits; a limit that is
    off (None) is left out. With the default config: NoPrice, LongOnly, MinimumPrice, MinimumSize,
    MonthlyShareLimit, MaxPosition, BuyingPower. The sizing controls round as `config.share_rule`."""
    rule = config.share_rule
    controls: list[PreTradeControl] = [NoPrice(), LongOnly()]
    if not config.add_to_positions:
        controls.append(NoAddingToPositions())
    if config.has_daily_loss_limit:
        controls.append(DailyLossLimit())
    if config.min_price:  # None or 0: off
        controls.append(MinimumPrice(config.min_price))
    if config.needs_atr:
        controls.append(NeedsAtr())
    controls.append(MinimumSize(rule))
    if config.monthly_share_limit is not None:
        controls.append(MonthlyShareLimit(config.monthly_share_limit))
    if config.max_orders_per_session is not None:
        controls.append(MaxOrdersPerSession(config.max_orders_per_session))
    if config.max_position_pct_equity is not None:
        controls.append(MaxPosition(config.max_position_pct_equity, rule))
    if config.max_gross_exposure_pct_equity is not None:
        controls.append(MaxGrossExposure(config.max_gross_exposure_pct_equity, rule))
    if config.max_notional_per_session is not None:
        controls.append(MaxNotionalPerSession(config.max_notional_per_session, rule))
    if config.buying_power == "cash":
        controls.append(BuyingPower(slippage, commission))
    return tuple(controls)


def check_order(intent: OrderIntent, ctx: RiskContext, controls: Sequence[PreTradeControl]) -> Decision:
    """Run the controls in sequence; the reason is that of the last control that cut the quantity."""
    qty, reason = intent.qty, None
    for control in controls:
        if qty != intent.qty:  # the next control sees the clipped quantity
            intent = OrderIntent(intent.symbol, intent.side, qty, intent.ref_price)
        decision = control.check(intent, ctx)
        if decision.reason_code is not None:
            qty, reason = decision.qty, decision.reason_code
            if qty == 0:
                return Decision(0, reason)
    if qty < rule_of(qty).min_qty:  # only reachable with a custom control list lacking MinimumSize
        return Decision(0, reason or SIZE_BELOW_ONE_SHARE)
    return Decision(qty, reason)


@dataclass(frozen=True)
class EarlyDenial:
    """Shortcut for the *default* chain (`default_controls`): the reason code when it would deny an intent
    before the full run is needed, else None (then run `check_order`).

    Most signals of a long backtest are denied (sells of what is not held, buys over the month's quota or
    beyond the cash left), and running every control costs more than the rest of planning them.
    `reason(intent, ctx) == r` implies `check_order(intent, ctx, chain) == Decision(0, r)`, because each
    test below is exactly one control's denial and every control before it passes the intent with >= 1
    share (the reason of a denial is the denying control's, whatever clipped before):

    * NoPrice denies first without a (positive) price;
    * LongOnly passes buys, and denies a sell when nothing held is left to sell;
    * NoAddingToPositions (present iff add_to_positions is false) denies a buy of a held or pending symbol;
    * MinimumPrice (present iff the config has a min_price) denies a buy below it;
    * MinimumSize denies a buy under one share;
    * MonthlyShareLimit (present iff the config has a limit) clips a buy of >= 1 share to
      max(remaining, 0): a denial when remaining <= 0;
    * otherwise the buy reaches MaxPosition with >= 1 share. If not even one share is affordable, BuyingPower
      denies whatever MaxPosition leaves: `affordable_qty` finds the largest affordable quantity, which is
      0 for any cap >= 1 iff it is 0 for a cap of 1 (buy cost is increasing in qty, which its binary search
      already assumes). MaxPosition denies iff it allows no share, whatever the quantity >= 1 it sees, so
      the outcome is MaxPosition's denial if it denies, else BuyingPower's.

    Build it with `for_chain`, which refuses any other control list, and any config with a control beyond
    these (`RiskConfig.has_session_limits`, or no max position): those configs run every control. Fractional
    shares (`RiskConfig.shares`) run every control too: the reasoning above is about whole shares (a buy
    "of >= 1 share", "one share affordable"), and a reference run does not need the speed.
    """

    monthly_share_limit: int | None
    min_price: Decimal | None
    max_position: MaxPosition
    buying_power: BuyingPower
    add_to_positions: bool = True

    @classmethod
    def for_chain(
        cls,
        controls: Sequence[PreTradeControl],
        config: RiskConfig,
        slippage: SlippageModel,
        commission: CommissionModel,
    ) -> EarlyDenial | None:
        """The shortcut if `controls` is the default chain for these models (controls compare by value),
        else None."""
        if (
            config.has_session_limits
            or config.max_position_pct_equity is None
            or config.buying_power != "cash"
            or config.share_rule.fractional
        ):
            return None
        default = default_controls(config, slippage, commission)
        if tuple(controls) != default:
            return None
        max_position, buying_power = default[-2:]  # the chain's own last two controls
        assert isinstance(max_position, MaxPosition) and isinstance(buying_power, BuyingPower)
        return cls(
            config.monthly_share_limit, config.min_price or None, max_position, buying_power, config.add_to_positions
        )

    def reason(self, intent: OrderIntent, ctx: RiskContext) -> str | None:
        if intent.ref_price is None or intent.ref_price <= 0:
            return NO_PRICE
        if intent.side == "sell":
            return SHORT_NOT_ALLOWED if ctx.held - ctx.pending_sell_qty <= 0 else None
        if intent.side != "buy":
            return None  # not a side the chain knows: let it decide
        if not self.add_to_positions and (ctx.held > 0 or ctx.pending_buy_qty > 0):
            return ALREADY_HELD
        if self.min_price is not None and intent.ref_price < self.min_price:
            return PRICE_BELOW_MINIMUM
        if intent.qty < 1:
            return SIZE_BELOW_ONE_SHARE
        limit = self.monthly_share_limit
        if limit is not None and limit - ctx.bought_in_fill_month - ctx.pending_buy_qty <= 0:
            return QTY_OVER_MONTHLY_LIMIT
        if self.buying_power.affordable(ctx.available_cash, intent.ref_price, 1) == 0:
            return MAX_POSITION if self.max_position.check(intent, ctx).denied else INSUFFICIENT_BUYING_POWER
        return None


    def decide(self, intent: OrderIntent, ctx: RiskContext, controls: Sequence[PreTradeControl]) -> Decision:
        """`check_order(intent, ctx, controls)` for the chain this shortcut was built for (`for_chain`), in one
        pass without a Decision per control: the denials of `reason`, then, as the chain runs them, LongOnly's
        clip of a sell (and MinimumSize after it), MonthlyShareLimit's, MaxPosition's and BuyingPower's clips
        of a buy, each seeing the quantity the one before left, the reason that of the last control that cut.
        (`reason`'s one-share affordability test is not needed here: BuyingPower denies exactly then, and
        MaxPosition's denial, which `reason` puts first, comes first in the chain too.) A side the chain does
        not know goes to `check_order`."""
        ref = intent.ref_price
        if intent.side not in SIDES and ref is not None and ref > 0:
            return check_order(intent, ctx, controls)
        return Decision(
            *self.decide_values(
                intent.side == "buy",
                intent.qty,
                ref,
                ctx.held,
                ctx.pending_buy_qty,
                ctx.pending_sell_qty,
                ctx.bought_in_fill_month,
                ctx.equity,
                ctx.available_cash,
            )[:2]
        )

    def decide_values(
        self,
        buy: bool,
        qty: Qty,
        ref: Decimal | None,
        held: Qty,
        pending_buy: Qty,
        pending_sell: Qty,
        bought: Qty,
        equity: Decimal,
        available: Decimal,
    ) -> tuple[Qty, str | None, Decimal | None]:
        """`decide` of a buy (`buy`) or a sell of `qty` shares at `ref` over the context's values, as (quantity,
        reason, cost): what the planner's bulk pass calls without building an intent and a context per signal.
        `cost` is the approved buy's cost at the buying-power price (`BuyingPower`'s: the close plus slippage,
        commission included; what `estimated_buy_cost` reserves), where that check computed it, else None."""
        if ref is None or ref <= 0:
            return 0, NO_PRICE, None
        reason = None
        if not buy:
            available_qty = held - pending_sell
            if available_qty <= 0:
                return 0, SHORT_NOT_ALLOWED, None
            if qty > available_qty:
                qty, reason = available_qty, SHORT_NOT_ALLOWED
            if qty < 1:
                return 0, SIZE_BELOW_ONE_SHARE, None
            return qty, reason, None
        if not self.add_to_positions and (held > 0 or pending_buy > 0):
            return 0, ALREADY_HELD, None
        if self.min_price is not None and ref < self.min_price:
            return 0, PRICE_BELOW_MINIMUM, None
        if qty < 1:
            return 0, SIZE_BELOW_ONE_SHARE, None
        limit = self.monthly_share_limit
        if limit is not None:
            remaining = limit - bought - pending_buy
            if remaining <= 0:
                return 0, QTY_OVER_MONTHLY_LIMIT, None
            if qty > remaining:
                qty, reason = remaining, QTY_OVER_MONTHLY_LIMIT
        position = self.max_position
        room = equity * position.pct / 100 - (held + pending_buy) * ref
        allowed = position.shares.buys(room, ref) if room > 0 else 0
        if qty > allowed:
            if allowed <= 0:
                return 0, MAX_POSITION, None
            qty, reason = allowed, MAX_POSITION
        # BuyingPower.affordable: `affordable_qty` at the fill price, whose first step is this cost of all of it
        power = self.buying_power
        fill = power.slippage.fill_price("buy", ref)
        if type(qty) is int:
            cost = buy_cost(qty, fill, power.commission)
            if cost <= available:
                return qty, reason, cost
        allowed = affordable_qty(available, fill, power.commission, qty)
        if qty > allowed:
            if allowed <= 0:
                return 0, INSUFFICIENT_BUYING_POWER, None
            qty, reason = allowed, INSUFFICIENT_BUYING_POWER
        return qty, reason, None


def size_order(
    side: Side,
    ref_price: Decimal | None,
    equity: Decimal,
    held: Qty,
    config: RiskConfig,
    atr: Decimal | None = None,
) -> Qty:
    """Requested quantity: whole shares for the configured notional / equity share / risk per ATR; sells sell
    all held. ATR sizing: equity * risk_pct_equity / 100 / (atr_multiple * atr) shares (the limits: max
    position, gross exposure, buying power, clip it); without an ATR it asks for nothing (NeedsAtr denies it
    NO_ATR).

    A buy without a positive price, or below the configured `min_price`, asks for nothing (the controls
    deny it with NO_PRICE / PRICE_BELOW_MINIMUM): with the default $1 minimum a buy never asks for more
    than notional (or pct_equity of equity) / $1 shares, never the ten million a 0.0001 bar would size.
    Fractional shares (`config.shares`): rounded down to 1e-9 share instead of a whole one. Sized at the fill
    (`config.size_on = "fill"`) the quantity is only the estimate the controls judge, and a budget below one
    share at the close asks for the smallest quantity: the open decides what it buys.
    """
    if side == "sell":
        return held
    if _no_price(ref_price) or (config.min_price and ref_price < config.min_price):
        return 0
    assert ref_price is not None
    if config.sizing == "atr":
        if atr is None or atr <= 0:
            return 0
        return max(config.share_rule.buys(equity * config.risk_pct_equity / 100, config.atr_multiple * atr), 0)
    budget = config.notional if config.sizing == "fixed_notional" else equity * config.pct_equity / 100
    qty = max(config.share_rule.buys(budget, ref_price), 0)
    if config.size_on == "fill" and qty == 0 and budget > 0:
        # the open decides a notional order's shares: a budget below one share at the close may still buy one
        # at a lower open, so the order goes out with the smallest estimate (vectorbt's value orders agree)
        return config.share_rule.min_qty
    return qty


def fill_notional(
    requested_qty: Qty, approved_qty: Qty, ref_price: Decimal, equity: Decimal, config: RiskConfig
) -> Decimal:
    """What a buy of a `size_on = "fill"` backtest spends at the fill: the sizing's budget (the notional, or
    pct_equity of equity), or the approved quantity at the close when a control clipped the order."""
    if approved_qty < requested_qty:
        return approved_qty * ref_price
    return config.notional if config.sizing == "fixed_notional" else equity * config.pct_equity / 100


def estimated_buy_cost(
    qty: Qty, ref_price: Decimal, slippage: SlippageModel, commission: CommissionModel
) -> Decimal:
    """Cash reserved by a pending buy: the close plus slippage and commission (the open may still gap)."""
    return buy_cost(qty, slippage.fill_price("buy", ref_price), commission)
