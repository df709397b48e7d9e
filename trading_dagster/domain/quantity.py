"""Share quantities of the backtest: whole shares or fractional ones (`[backtest] shares`, decision 0006).

The one place that knows how a quantity is rounded. Whole shares (the default, and the only rule of the trading
book) are Python `int`s; fractional shares are `Decimal`s kept to `QTY_UNIT` (1e-9 share, Alpaca's nine
decimal places), always rounded *down* when a budget buys them, so a buy never costs more than its budget.

The type of a quantity is its rule: an `int` is whole shares, a `Decimal` fractional (`rule_of`). So the records
(orders, fills, exit lots) carry their convention without a flag, and code that only looks at a record
(`Order` validation, `execution.fill_at_open`, `exits.execute_exits`) asks the quantity. Code that sizes from
money (`risk.size_order`, the clipping controls) is told the rule (`RiskConfig.shares`, `PortfolioState.shares`).

Frames: a whole quantity column is Int64, a fractional one Float64; a Decimal of nine decimals below 1e6 shares
goes to float64 and back (`from_frame`, through `orders.as_decimal`'s shortest repr) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import polars as pl

Qty = int | Decimal
QTY_UNIT = Decimal("1E-9")
"""The smallest fractional quantity: a billionth of a share (Alpaca accepts nine decimal places)."""
_SCALE = 9
SHARES: tuple[str, ...] = ("whole", "fractional")


@dataclass(frozen=True, slots=True)
class ShareRule:
    """How quantities are rounded: `fractional` False (whole shares, `int`) or True (`Decimal` to 1e-9)."""

    fractional: bool = False

    @property
    def name(self) -> str:
        return "fractional" if self.fractional else "whole"

    @property
    def unit(self) -> Qty:
        """The step between two quantities: one share, or 1e-9 share."""
        return QTY_UNIT if self.fractional else 1

    @property
    def min_qty(self) -> Qty:
        """The smallest quantity an order or fill may have (below it: nothing to trade)."""
        return self.unit

    @property
    def dtype(self) -> pl.DataType:
        """A quantity column's dtype in a frame."""
        return pl.Float64() if self.fractional else pl.Int64()

    def buys(self, amount: Decimal, price: Decimal) -> Qty:
        """The quantity `amount` buys at `price`, rounded down (whole: `int(amount // price)`, as always; an
        amount <= 0 gives 0 or less: callers clip). Fractional: the exact quotient rounded down to 1e-9 (Decimal
        `//` is exact, so no intermediate rounding can push it over the budget)."""
        if not self.fractional:
            return int(amount // price)
        return _units(int(amount.scaleb(_SCALE) // price))

    def floor(self, value: Decimal | int) -> Qty:
        """`value` (>= 0) rounded down to a quantity."""
        if not self.fractional:
            return int(value)
        return Decimal(value).quantize(QTY_UNIT, rounding=ROUND_FLOOR)

    def scale(self, qty: Qty, new: int, old: int) -> tuple[Qty, Qty]:
        """(qty x new / old rounded down, what the rounding left over x old): a split of `qty` shares.

        Whole: (whole shares, the remainder in 1/old shares) = divmod(qty x new, old); the remainder is paid as
        cash in lieu. Fractional: the exact quotient to 1e-9 and no remainder to pay (what is under a billionth
        of a share is dropped: no cash in lieu)."""
        if not self.fractional:
            return divmod(qty * new, old)
        return _units(int(Decimal(qty).scaleb(_SCALE) * new // old)), 0

    def scale_up(self, qty: Qty, new: int, old: int) -> Qty:
        """qty x new / old rounded *up* (a quota's count of shares bought: it never gains room from rounding)."""
        if not self.fractional:
            return -(-qty * new // old)
        return (Decimal(qty) * new / old).quantize(QTY_UNIT, rounding=ROUND_CEILING)

    def qty(self, value: object) -> Qty:
        """A stored quantity (int, Decimal, float of a frame, exact text of JSON) in this rule's type."""
        if not self.fractional:
            return int(value)  # type: ignore[call-overload]
        return from_text(value)

    def to_frame(self, values: list) -> list:
        """A quantity column's Python values for a frame of `dtype` (Decimals as floats)."""
        if not self.fractional:
            return values
        return [None if v is None else float(v) for v in values]


WHOLE = ShareRule(False)
FRACTIONAL = ShareRule(True)


def share_rule(shares: str) -> ShareRule:
    """The rule for `[backtest] shares` ("whole" | "fractional")."""
    if shares not in SHARES:
        raise ValueError(f"shares must be 'whole' or 'fractional', got {shares!r}")
    return FRACTIONAL if shares == "fractional" else WHOLE


def rule_of(qty: object) -> ShareRule:
    """The rule a quantity was made under: a Decimal is fractional, anything else whole."""
    return FRACTIONAL if isinstance(qty, Decimal) else WHOLE


def is_fractional_dtype(dtype: pl.DataType) -> bool:
    """A frame's quantity column holds fractional shares (a float column) rather than whole ones."""
    return dtype.is_float()


def from_frame(value: int | float | Decimal) -> Qty:
    """A quantity read back from a frame: an int stays an int (whole), a float becomes its exact Decimal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return from_text(value)


def from_text(value: object) -> Decimal:
    """A fractional quantity from a float (its shortest repr), an int, a Decimal or exact text, to 1e-9."""
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise TypeError(f"not a quantity: {value!r}")
    out = Decimal(value)
    if not out.is_finite():
        raise ValueError(f"not a quantity: {value!r}")
    return out.quantize(QTY_UNIT)


def to_json(qty: Qty) -> int | str:
    """A quantity for a JSON snapshot: an int as a number, a Decimal as exact text."""
    return str(qty) if isinstance(qty, Decimal) else qty


def _units(n: int) -> Decimal:
    """`n` billionths of a share."""
    return Decimal(n).scaleb(-_SCALE)
