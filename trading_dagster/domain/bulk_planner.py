"""The order planner's bulk pass: a session's signals decided over arrays, the few that need the book one by one.

`portfolio.simulate` walks the sessions in order (the book is path dependent). Within a session most signals of
a long backtest are denied for reasons that the book at the session's start already settles: a sell of what is
not held, a buy without a price, below the minimum price, under one share, over the month's quota, or costing
more for one share than the cash left. This module decides those over numpy arrays and hands every other signal
(a sell of a held symbol, a buy that may fit, anything near a boundary in float) to the planner's exact
per-signal code (`risk.EarlyDenial` + `risk.check_order` on Decimals), in processing order.

Why a bulk decision equals the exact one: within a session the cash not yet reserved only falls (approved
buys reserve it; denials change nothing), so a buy whose one share costs more than the cash at the session's
start is denied at any later point as well; the per-symbol counts that do move within a session (pending buys
of a symbol) send that symbol's later signals to the exact path. Every float comparison decides only outside a
margin far wider than its rounding (a price tick plus a cent of commission, or a relative 1e-9); inside it the
signal goes to the exact path. So the bulk pass can only save time, never change a row
(`trading_dagster_tests/domain/test_portfolio_bulk.py` checks it against the frozen reference planner).

It applies to the chain `risk.EarlyDenial` covers (the default controls, whole shares, buying power on, no
session limits); any other configuration runs the planner's per-signal loop unchanged. The output is built as
columns, and the client order ids (`orders.client_order_id`) are hashed over a column of keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import polars as pl

from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.orders import _HASH_LEN, ID_PREFIX, ORDER_SCHEMA, SIDES, _readable_symbol
from trading_dagster.domain.risk import (
    ALREADY_HELD,
    INSUFFICIENT_BUYING_POWER,
    MAX_POSITION,
    NO_PRICE,
    PRICE_BELOW_MINIMUM,
    QTY_OVER_MONTHLY_LIMIT,
    REASON_CODES,
    SHORT_NOT_ALLOWED,
    SIZE_BELOW_ONE_SHARE,
    RiskConfig,
)

_EPOCH = dt.date(1970, 1, 1)


def _day(n: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(n))


# reason codes as small ints: 0 = none, i + 1 = REASON_CODES[i]
REASON_ID = {r: i + 1 for i, r in enumerate(REASON_CODES)}
EXACT = -1  # the per-signal code decides this row
_REL = 1e-9  # relative margin of a float comparison (float64 carries ~1e-16)
_CASH_MARGIN = 0.05  # USD: a buy's one-share cost in float vs exact (a tick of slippage, a cent of commission)


def applies(risk: RiskConfig, shortcut: object | None) -> bool:
    """Whether the bulk pass may decide for this configuration: the `EarlyDenial` chain, fixed-notional or
    percent-of-equity sizing (the others need an ATR and run every control anyway)."""
    return shortcut is not None and risk.sizing in ("fixed_notional", "pct_equity") and not risk.share_rule.fractional


class PriceTable:
    """The opens and closes of `symbols` in the walked sessions (`walked`: their day numbers) as (session x
    symbol) float arrays; NaN where a symbol has no bar, or a price that is not positive (the planner takes
    none: `portfolio._session_bars`). `ok` is False when a symbol has two rows in a session."""

    def __init__(self, prices: pl.DataFrame, symbols: Sequence[str], walked: np.ndarray) -> None:
        self.ok = False
        first, n_day, n_sym = int(walked[0]), len(walked), len(symbols)
        self._first = first
        self._column = np.full(int(walked[-1]) - first + 1, -1, dtype=np.int64)
        self._column[walked - first] = np.arange(n_day)
        names = pl.Series(list(symbols), dtype=pl.String)
        px = prices.select("symbol", "session", "open", "close").filter(
            pl.col("session").is_between(_day(first), _day(walked[-1])) & pl.col("symbol").is_in(names.implode())
        )
        ids = pl.int_range(n_sym, eager=True, dtype=pl.Int64)
        sym = px["symbol"].replace_strict(names, ids, return_dtype=pl.Int64).to_numpy()
        col = self._column[px["session"].cast(pl.Int64).to_numpy() - first]
        inside = col >= 0
        key = (col[inside] * n_sym + sym[inside]).astype(np.int64)
        if key.size and np.bincount(key, minlength=n_day * n_sym).max() > 1:
            return
        self.opens = self._table(px["open"], inside, key, n_day, n_sym)
        self.closes = self._table(px["close"], inside, key, n_day, n_sym)
        self.ok = True

    def column(self, days: np.ndarray) -> np.ndarray:
        """The walked-session index of day numbers that are walked sessions."""
        return self._column[days.astype(np.int64) - self._first]

    @staticmethod
    def _table(column: pl.Series, inside: np.ndarray, key: np.ndarray, n_day: int, n_sym: int) -> np.ndarray:
        values = column.cast(pl.Float64).fill_null(np.nan).to_numpy()[inside]
        table = np.full(n_day * n_sym, np.nan)
        table[key] = np.where(values > 0, values, np.nan)
        return table.reshape(n_day, n_sym)


class SignalArrays:
    """The window's signals in processing order (session; sells first; strategy; stronger first; symbol) as
    columns, each with its session's close (the reference price) and static per-signal figures.

    `frame` holds session, symbol, strategy, side (the output's first columns); `bounds[k]` is the first row of
    walked session k (rows of session k: bounds[k]:bounds[k+1]). `ok` is False when the frame holds something
    the bulk pass does not reason about (a NaN strength, a non-finite close): the caller then uses the
    per-signal loop for the whole window."""

    def __init__(
        self,
        keyed: pl.DataFrame,
        prices: pl.DataFrame,
        sessions: Sequence[dt.date],
        risk: RiskConfig,
        slippage: SlippageModel,
        commission: CommissionModel,
        extra: Sequence[str] = (),
    ) -> None:
        self.ok = True
        if keyed.height and keyed["neg_strength"].is_nan().any():
            self.ok = False  # Python's tuple order with NaN is not a total order: keep the per-signal loop
        frame = keyed  # in processing order already (`portfolio._keyed_signals`)
        bad_sides = frame.filter(~pl.col("side").is_in(list(SIDES)))["side"].unique().to_list()
        if bad_sides:
            raise ValueError(f"side must be 'buy' or 'sell', got {bad_sides[0]!r}")
        symbols = frame["symbol"].unique().sort()
        self.symbols: list[str] = symbols.to_list()
        self.symbol_index = {s: i for i, s in enumerate(self.symbols)}
        ids = pl.int_range(symbols.len(), eager=True, dtype=pl.Int32)
        self.sym = frame["symbol"].replace_strict(symbols, ids, return_dtype=pl.Int32).to_numpy().astype(np.int32)
        days = frame["session"].cast(pl.Int32).to_numpy().astype(np.int32)
        walked = np.array([(d - _EPOCH).days for d in sessions], dtype=np.int32)
        self.bounds = np.searchsorted(days, walked, side="left").tolist() + [frame.height]
        # the book's symbols: the signals', then those it may hold without a signal
        self.book_symbols = self.symbols + sorted(set(extra) - set(self.symbol_index))
        self.prices = PriceTable(prices, self.book_symbols, walked)
        if self.prices.ok:
            close = self.prices.closes[self.prices.column(days), self.sym]
        else:
            self.ok = False  # a symbol with two rows in a session: keep the per-signal loop
            close = np.full(frame.height, np.nan)
        valid = ~np.isnan(close)
        if not np.isfinite(close[valid]).all():
            self.ok = False
        self.ref = np.where(valid, close, np.nan)
        self.frame = frame.select("session", "symbol", "strategy", "side")
        self.buy = (frame["side"] == "buy").to_numpy()
        strategies = frame["strategy"].unique().sort()
        self.strategies: list[str] = strategies.to_list()
        strategy_ids = pl.int_range(strategies.len(), eager=True, dtype=pl.Int32)
        self.strat = frame["strategy"].replace_strict(strategies, strategy_ids, return_dtype=pl.Int32).to_numpy()
        self.n = frame.height
        # the cost of one share in float: the close plus slippage, rounded up to the tick, plus commission
        factor = float(1 + slippage.bps / 10_000)
        fill = self.ref * factor
        c = commission
        one = float(c.per_share) + float(c.per_order) + float(c.bps) / 10_000 * fill
        one = np.maximum(one, float(c.minimum))
        if c.maximum_pct is not None:
            one = np.minimum(one, float(c.maximum_pct) / 100 * fill)
        self.cost1 = fill + one
        self.min_price = float(risk.min_price) if risk.min_price else None
        self.min_price_exact = risk.min_price or None
        self.size_on_fill = risk.size_on == "fill"
        # outputs, filled session by session
        self.requested = np.zeros(self.n, dtype=np.int64)
        self.qty = np.zeros(self.n, dtype=np.int64)
        self.reason = np.zeros(self.n, dtype=np.int8)
        self.notional = np.full(self.n, np.nan)

    def requested_buys(self, lo: int, hi: int, budget: Decimal) -> np.ndarray:
        """`risk.size_order` of the buys of rows lo:hi (budget // close in whole shares, 0 without a price or
        below the minimum price), exact: a float quotient within 1e-9 of an integer is redone in Decimal."""
        ref = self.ref[lo:hi]
        b = float(budget)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = b / ref
        out = np.floor(np.nan_to_num(q, nan=0.0))
        near = np.abs(q - np.round(q)) <= _REL * np.maximum(np.abs(q), 1.0)
        for i in np.flatnonzero(near & ~np.isnan(ref)):
            out[i] = int(budget // Decimal(repr(float(ref[i]))))
        out[np.isnan(ref)] = 0
        below = np.zeros(len(ref), dtype=bool)
        if self.min_price is not None:
            below = ref < self.min_price * (1 - _REL)
            out[below] = 0
            edge = ~below & (ref < self.min_price * (1 + _REL))
            for i in np.flatnonzero(edge):
                if Decimal(repr(float(ref[i]))) < self.min_price_exact:
                    out[i] = 0
                    below[i] = True
        if self.size_on_fill and budget > 0:  # the smallest estimate: the open decides (`risk.size_order`)
            out[(out == 0) & ~np.isnan(ref) & ~below] = 1
        return out.astype(np.int64)

    def frame_of_orders(self, account: str) -> pl.DataFrame:
        """The `orders` frame (ORDER_SCHEMA) of every row, with its client order id."""
        reasons = pl.Series([None, *REASON_CODES], dtype=pl.String)
        qty = pl.Series(self.qty)
        out = self.frame.with_columns(
            requested_qty=pl.Series(self.requested),
            qty=qty,
            ref_price=pl.Series(self.ref).fill_nan(None),
            status=pl.when(qty > 0).then(pl.lit("approved")).otherwise(pl.lit("denied")),
            reason_code=reasons.gather(pl.Series(self.reason.astype(np.int64))),
            client_order_id=client_order_ids(self.frame, account),
            notional=pl.Series(self.notional).fill_nan(None),
        )
        return out.select(list(ORDER_SCHEMA)).cast(ORDER_SCHEMA)  # type: ignore[arg-type]


def client_order_ids(frame: pl.DataFrame, account: str) -> pl.Series:
    """`orders.client_order_id` of every (session, symbol, strategy, side) row of `frame`, over columns: the
    keys are formatted and SHA-256 hashed by polars (the hash by the polars-hash plugin, in Rust: hashlib's
    cost per call is mostly object overhead, and a ten-year backtest has millions of ids), and the readable
    symbol part is computed once per symbol. Byte for byte `orders.client_order_id` (tested)."""
    import polars_hash  # noqa: F401  (registers the `chash` expression namespace)

    key = pl.concat_str(
        pl.lit(f"{account}|"),
        pl.col("session").dt.strftime("%Y-%m-%d"),
        pl.lit("|"),
        "symbol",
        pl.lit("|"),
        "strategy",
        pl.lit("|"),
        "side",
    )
    symbols = frame["symbol"].unique()
    readable = pl.Series([_readable_symbol(s) for s in symbols.to_list()], dtype=pl.String)
    return frame.select(
        pl.concat_str(
            pl.lit(f"{ID_PREFIX}-"),
            pl.col("session").dt.strftime("%Y%m%d"),
            pl.lit("-"),
            pl.col("symbol").replace_strict(symbols, readable, return_dtype=pl.String),
            pl.lit("-"),
            key.chash.sha2_256().str.head(_HASH_LEN),  # type: ignore[attr-defined]
        )
    ).to_series()


def classify(
    arrays: SignalArrays,
    lo: int,
    hi: int,
    held: np.ndarray,
    bought: np.ndarray,
    requested: np.ndarray,
    equity: float,
    available: float,
    risk: RiskConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reason id each row of session rows lo:hi gets from the book at the session's start (no pending
    orders), or EXACT where the per-signal code must decide (it may be approved, or sits near a boundary);
    also which rows hinge only on the cash (`depends`) and the reason id each of them gets when one share costs
    more than the cash left (`poor_code`, EXACT where the float cannot tell). `held` / `bought` / `requested`:
    per row, shares held, bought in the fill month, and asked for."""
    n = hi - lo
    ref = arrays.ref[lo:hi]
    buy = arrays.buy[lo:hi]
    code = np.full(n, EXACT, dtype=np.int8)
    noprice = np.isnan(ref)
    undecided = np.ones(n, dtype=bool)

    def settle(mask: np.ndarray, value: int) -> None:
        nonlocal undecided
        m = mask & undecided
        code[m] = value
        undecided &= ~mask

    settle(noprice, REASON_ID[NO_PRICE])
    sell = ~buy
    settle(sell & (held <= 0), REASON_ID[SHORT_NOT_ALLOWED])
    settle(sell, EXACT)  # a sell of a held symbol
    if not risk.add_to_positions:
        settle(held > 0, REASON_ID[ALREADY_HELD])
    if arrays.min_price is not None:
        mp = arrays.min_price
        settle(ref < mp * (1 - _REL), REASON_ID[PRICE_BELOW_MINIMUM])
        settle(ref < mp * (1 + _REL), EXACT)
    settle(requested < 1, REASON_ID[SIZE_BELOW_ONE_SHARE])
    if risk.monthly_share_limit is not None:
        settle(risk.monthly_share_limit - bought <= 0, REASON_ID[QTY_OVER_MONTHLY_LIMIT])
    # the rest hinge on the cash: where one share is not affordable, MaxPosition's denial if it allows no share,
    # else BuyingPower's (EXACT where the float cannot tell); the cash only falls as the session goes on
    depends = undecided.copy()
    pct = float(risk.max_position_pct_equity)  # type: ignore[arg-type]
    cap = equity * pct / 100
    need = (held + 1) * ref
    poor_code = np.full(n, EXACT, dtype=np.int8)
    poor_code[cap < need * (1 - _REL) - _REL] = REASON_ID[MAX_POSITION]
    poor_code[cap > need * (1 + _REL) + _REL] = REASON_ID[INSUFFICIENT_BUYING_POWER]
    poor = arrays.cost1[lo:hi] > cash_limit(available)
    code[depends & poor] = poor_code[depends & poor]
    return code, depends, poor_code


def cash_limit(available: float) -> float:
    """A buy whose one share costs more than this in float costs more than `available` exactly."""
    return available + _CASH_MARGIN + _REL * abs(available)
