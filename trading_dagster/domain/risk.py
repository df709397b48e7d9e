"""Sizing and pre-trade risk controls: our own decision to approve, clip or deny an order.

A denial here is *ours* (a reason code on the order row), kept apart from a broker rejection (theirs).
Each control is a small class (zipline style) that looks at one order intent and a snapshot of the book
and returns approve / clip / deny with a reason code; `check_order` runs them in sequence. A clipped
order stays approved and keeps the reason code of the control that cut it, so qty < requested_qty is
always explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple, Protocol

from trading_dagster.domain.execution import CommissionModel, SlippageModel, affordable_qty, buy_cost
from trading_dagster.domain.orders import Side, as_decimal

Sizing = Literal["fixed_notional", "pct_equity"]

SIZE_BELOW_ONE_SHARE = "SIZE_BELOW_ONE_SHARE"
QTY_OVER_MONTHLY_LIMIT = "QTY_OVER_MONTHLY_LIMIT"
MAX_POSITION = "MAX_POSITION"
INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
NO_PRICE = "NO_PRICE"
PRICE_BELOW_MINIMUM = "PRICE_BELOW_MINIMUM"
REASON_CODES = (
    SIZE_BELOW_ONE_SHARE,
    QTY_OVER_MONTHLY_LIMIT,
    MAX_POSITION,
    INSUFFICIENT_BUYING_POWER,
    SHORT_NOT_ALLOWED,
    NO_PRICE,
    PRICE_BELOW_MINIMUM,
)
DEFAULT_MIN_PRICE = Decimal(1)


@dataclass(frozen=True)
class RiskConfig:
    """Sizing and limits. Amounts are Decimal (floats/ints/strings are converted exactly).

    monthly_share_limit: at most this many shares bought per stock per calendar month, months taken from
    the *fill* session, counting filled plus pending buys; None disables the control.
    min_price: a buy needs a reference price (the signal session's close) of at least this many USD
    (default $1: a sub-dollar or bogus near-zero close would size thousands to millions of shares); sells
    are never held back by it. None or 0 disables the control.
    """

    sizing: Sizing = "fixed_notional"
    notional: Decimal = Decimal(1000)
    pct_equity: Decimal = Decimal(2)
    max_position_pct_equity: Decimal = Decimal(10)
    long_only: bool = True
    monthly_share_limit: int | None = 4
    initial_cash: Decimal = Decimal(100_000)
    min_price: Decimal | None = DEFAULT_MIN_PRICE

    def __post_init__(self) -> None:
        for name in ("notional", "pct_equity", "max_position_pct_equity", "initial_cash"):
            object.__setattr__(self, name, as_decimal(getattr(self, name)))
        if self.min_price is not None:
            object.__setattr__(self, "min_price", as_decimal(self.min_price))
            if self.min_price < 0:
                raise ValueError(f"min_price must be >= 0 or None, got {self.min_price}")
        if self.sizing not in ("fixed_notional", "pct_equity"):
            raise ValueError(f"sizing must be 'fixed_notional' or 'pct_equity', got {self.sizing!r}")
        if self.notional <= 0 or self.pct_equity <= 0 or self.max_position_pct_equity <= 0:
            raise ValueError("notional, pct_equity and max_position_pct_equity must be > 0")
        if self.initial_cash < 0:
            raise ValueError("initial_cash must be >= 0")
        if self.monthly_share_limit is not None and self.monthly_share_limit < 0:
            raise ValueError("monthly_share_limit must be >= 0 or None")
        if not self.long_only:
            # Short positions would need borrow costs and short P&L in the portfolio; not modelled.
            raise ValueError("only long_only=True is supported")


# The three records a control sees and returns are NamedTuples (immutable, and cheaper to build than frozen
# dataclasses: a backtest builds millions of them).


class OrderIntent(NamedTuple):
    """A sized order before the controls: `qty` is the requested quantity."""

    symbol: str
    side: Side
    qty: int
    ref_price: Decimal | None


class RiskContext(NamedTuple):
    """The book as the controls see it for one intent at session D (after D's open fills).

    pending_* are the approved orders of D planned before this one (they fill together at D+1's open);
    available_cash is cash minus what those pending buys reserve.
    """

    held: int
    pending_buy_qty: int
    pending_sell_qty: int
    bought_in_fill_month: int
    equity: Decimal
    available_cash: Decimal


class Decision(NamedTuple):
    qty: int
    reason_code: str | None = None

    @property
    def denied(self) -> bool:
        return self.qty == 0


class PreTradeControl(Protocol):
    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision: ...


def _limit(intent: OrderIntent, allowed: int, reason: str) -> Decision:
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
class MinimumSize:
    """Sizing rounds down to whole shares; an expensive stock can round to zero."""

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        return Decision(0, SIZE_BELOW_ONE_SHARE) if intent.qty < 1 else Decision(intent.qty)


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

    def check(self, intent: OrderIntent, ctx: RiskContext) -> Decision:
        if intent.side != "buy" or intent.ref_price is None:
            return Decision(intent.qty)
        room = ctx.equity * self.pct / 100 - (ctx.held + ctx.pending_buy_qty) * intent.ref_price
        allowed = int(room // intent.ref_price) if room > 0 else 0
        return _limit(intent, allowed, MAX_POSITION)


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

    def affordable(self, cash: Decimal, ref_price: Decimal, max_qty: int) -> int:
        """Shares (at most max_qty) that `cash` buys at `ref_price` plus slippage, commission included."""
        return affordable_qty(cash, self.slippage.fill_price("buy", ref_price), self.commission, max_qty)


def default_controls(
    config: RiskConfig, slippage: SlippageModel, commission: CommissionModel
) -> tuple[PreTradeControl, ...]:
    """The controls in the order they run: cheap denials first, then the clipping limits."""
    controls: list[PreTradeControl] = [NoPrice(), LongOnly()]
    if config.min_price:  # None or 0: off
        controls.append(MinimumPrice(config.min_price))
    controls.append(MinimumSize())
    if config.monthly_share_limit is not None:
        controls.append(MonthlyShareLimit(config.monthly_share_limit))
    controls += [MaxPosition(config.max_position_pct_equity), BuyingPower(slippage, commission)]
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
    if qty < 1:  # only reachable with a custom control list lacking MinimumSize
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
    * MinimumPrice (present iff the config has a min_price) denies a buy below it;
    * MinimumSize denies a buy under one share;
    * MonthlyShareLimit (present iff the config has a limit) clips a buy of >= 1 share to
      max(remaining, 0): a denial when remaining <= 0;
    * otherwise the buy reaches MaxPosition with >= 1 share. If not even one share is affordable, BuyingPower
      denies whatever MaxPosition leaves: `affordable_qty` finds the largest affordable quantity, which is
      0 for any cap >= 1 iff it is 0 for a cap of 1 (buy cost is increasing in qty, which its binary search
      already assumes). MaxPosition denies iff it allows no share, whatever the quantity >= 1 it sees, so
      the outcome is MaxPosition's denial if it denies, else BuyingPower's.

    Build it with `for_chain`, which refuses any other control list.
    """

    monthly_share_limit: int | None
    min_price: Decimal | None
    max_position: MaxPosition
    buying_power: BuyingPower

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
        default = default_controls(config, slippage, commission)
        if tuple(controls) != default:
            return None
        max_position, buying_power = default[-2:]  # the chain's own last two controls
        assert isinstance(max_position, MaxPosition) and isinstance(buying_power, BuyingPower)
        return cls(config.monthly_share_limit, config.min_price or None, max_position, buying_power)

    def reason(self, intent: OrderIntent, ctx: RiskContext) -> str | None:
        if intent.ref_price is None or intent.ref_price <= 0:
            return NO_PRICE
        if intent.side == "sell":
            return SHORT_NOT_ALLOWED if ctx.held - ctx.pending_sell_qty <= 0 else None
        if intent.side != "buy":
            return None  # not a side the chain knows: let it decide
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


def size_order(side: Side, ref_price: Decimal | None, equity: Decimal, held: int, config: RiskConfig) -> int:
    """Requested quantity: whole shares for the configured notional / equity share; sells sell all held.

    A buy without a positive price, or below the configured `min_price`, asks for nothing (the controls
    deny it with NO_PRICE / PRICE_BELOW_MINIMUM): with the default $1 minimum a buy never asks for more
    than notional (or pct_equity of equity) / $1 shares, never the ten million a 0.0001 bar would size.
    """
    if side == "sell":
        return held
    if _no_price(ref_price) or (config.min_price and ref_price < config.min_price):
        return 0
    assert ref_price is not None
    budget = config.notional if config.sizing == "fixed_notional" else equity * config.pct_equity / 100
    return max(int(budget // ref_price), 0)


def estimated_buy_cost(
    qty: int, ref_price: Decimal, slippage: SlippageModel, commission: CommissionModel
) -> Decimal:
    """Cash reserved by a pending buy: the close plus slippage and commission (the open may still gap)."""
    return buy_cost(qty, slippage.fill_price("buy", ref_price), commission)
