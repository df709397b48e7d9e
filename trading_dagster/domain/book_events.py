"""Book events: what changes a held position without a trade (decision 0004, section 4).

* `Split`: a forward or reverse split takes effect. From a corporate action (the corporate-actions file or
  Alpaca: effective on its ex_date) or from a split that cleaning confirmed in the prices themselves
  (`prices/price_breaks`, kind 'split': effective on its confirming `session`, when it became known; the bars
  from its break_date until then were quarantined, so the book marked the position at its last trusted close).
* `Delisting`: the security a symbol meant ended (`valid_to` in the security master) and the symbol does not
  go on as that security: a position in it is closed at its last close on or before valid_to, on the first
  session after valid_to, never marked or sold at the price of whatever trades under the ticker later.
* `Rename`: the same security goes on under another ticker from the day after valid_to (FB -> META): the
  position moves to the new ticker unchanged.

An event takes effect on its `session`, *before* that session's fills. `book_events` is the one function that
builds them; the planner (`portfolio.simulate`), the paper broker (`SimulatedBook.sync`, which records them in
its ledger) and mark-to-market (`pnl.mark_to_market`) all apply the same records with the same
`portfolio.apply_book_events`, so a planned window, a broker driven day by day and the P&L agree to the cent.

Prices on the records are exact (Decimal): a split's `price` is the cash-in-lieu price of one post-split
share (the last close before the ex-date divided by the ratio), a delisting's the close it is closed at.
Either is None when the prices given hold no such close (the book then uses the position's average cost:
no P&L is made up). Pure polars and Python; no Dagster import.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar

import polars as pl

from trading_dagster.domain.orders import as_decimal
from trading_dagster.domain.security_master import SecurityMaster

try:  # the confirmed breaks of cleaning (decision 0004, section 3: prices/price_breaks)
    from trading_dagster.domain.prices import BREAKS_SCHEMA
except ImportError:  # pragma: no cover - until domain/prices.py defines it; the same contract
    BREAKS_SCHEMA = {
        "symbol": pl.Utf8(),
        "session": pl.Date(),  # the confirming session: when the break became known
        "break_date": pl.Date(),  # the ex-date: the first bar on the new basis
        "share_ratio": pl.Float64(),  # new shares per old; null for a collapse
        "kind": pl.Utf8(),  # 'split' | 'collapse'
        "detail": pl.Utf8(),
    }

SPLIT_SOURCE_BREAK = "price_breaks"
MAX_RATIO_DENOMINATOR = 1000  # 7.0 -> 7/1, 1.5 -> 3/2, 0.05 -> 1/20, 0.6666... -> 2/3


def empty_breaks() -> pl.DataFrame:
    """A price_breaks frame with no rows (what the trading assets use until that asset exists)."""
    return pl.DataFrame(schema=BREAKS_SCHEMA)


@dataclass(frozen=True, slots=True)
class Split:
    """`new` shares for every `old` share of `symbol` (7:1 -> 7, 1; 3:2 -> 3, 2; 1:10 -> 1, 10), applied to
    the book before `session`'s fills. `ex_date`: the first session traded on the new basis (closes before
    it are in old shares). `price`: cash in lieu of a fraction, per post-split share (whole shares only: a
    fractional-share book keeps shares x new / old to 1e-9 and pays no cash in lieu, `quantity.ShareRule.scale`)."""

    kind: ClassVar[str] = "split"
    symbol: str
    session: dt.date
    ex_date: dt.date
    new: int
    old: int
    price: Decimal | None
    source: str

    def __post_init__(self) -> None:
        if self.new < 1 or self.old < 1 or self.new == self.old:
            raise ValueError(f"split of {self.symbol} on {self.session}: ratio {self.new}:{self.old}")
        if self.ex_date > self.session:
            raise ValueError(f"split of {self.symbol}: ex_date {self.ex_date} after its session {self.session}")

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.new, self.old)

    @property
    def event_id(self) -> str:
        return f"split-{self.session:%Y%m%d}-{self.symbol}"

    def adjust_price(self, price: Decimal) -> Decimal:
        """A price per old share expressed per new share (exact Decimal arithmetic, one fixed order)."""
        return price * self.old / self.new


@dataclass(frozen=True, slots=True)
class Delisting:
    """The security `security_id` that `symbol` meant until `valid_to` has ended: a position is closed at
    `price` (its last close on or before valid_to) before `session`'s fills (the first session after)."""

    kind: ClassVar[str] = "delisting"
    symbol: str
    session: dt.date
    valid_to: dt.date
    security_id: str
    price: Decimal | None

    @property
    def event_id(self) -> str:
        return f"delisted-{self.session:%Y%m%d}-{self.symbol}"


@dataclass(frozen=True, slots=True)
class Rename:
    """The security `security_id` trades as `new_symbol` from the day after `valid_to`: a position in
    `symbol` moves to `new_symbol` before `session`'s fills."""

    kind: ClassVar[str] = "rename"
    symbol: str
    session: dt.date
    valid_to: dt.date
    security_id: str
    new_symbol: str

    @property
    def event_id(self) -> str:
        return f"renamed-{self.session:%Y%m%d}-{self.symbol}-to-{self.new_symbol}"


BookEvent = Split | Delisting | Rename
_KIND_RANK = {"split": 0, "delisting": 1, "rename": 2}


def event_order(event: BookEvent) -> tuple[dt.date, int, str]:
    """The order events are applied in: by session, splits, then delistings (a ticker's old security leaves
    the book before a renamed one takes the ticker over), then renames; then symbol."""
    return (event.session, _KIND_RANK[event.kind], event.symbol)


def ratio_parts(ratio: float) -> tuple[int, int]:
    """(new, old) small integers for a split ratio given as a float (new shares per old)."""
    if not ratio > 0 or ratio != ratio or ratio == float("inf"):
        raise ValueError(f"split ratio must be a positive number, got {ratio!r}")
    frac = Fraction(ratio).limit_denominator(MAX_RATIO_DENOMINATOR)
    if frac == 0 or abs(float(frac) - ratio) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"split ratio {ratio!r} is not a ratio of small integers (new:old)")
    return frac.numerator, frac.denominator


def _session_on_or_after(sessions: Sequence[dt.date], day: dt.date) -> dt.date:
    i = bisect.bisect_left(sessions, day)
    return sessions[i] if i < len(sessions) else day


def _last_close(
    prices: pl.DataFrame, wanted: list[tuple[str, dt.date]], *, inclusive: bool
) -> list[Decimal | None]:
    """Per (symbol, day): the symbol's last non-null close on a session before `day` (or on it, if
    `inclusive`), exactly; None when `prices` holds none."""
    if not wanted:
        return []
    symbols = sorted({s for s, _ in wanted})
    px = (
        prices.select(pl.col("symbol").cast(pl.Utf8), pl.col("session").cast(pl.Date), pl.col("close").cast(pl.Float64))
        .filter(pl.col("symbol").is_in(symbols) & pl.col("close").is_not_null())
        .rename({"session": "_on"})
        .sort("_on")
    )
    shift = 0 if inclusive else 1
    keys = pl.DataFrame(
        {"symbol": [s for s, _ in wanted], "_on": [d - dt.timedelta(days=shift) for _, d in wanted]},
        schema={"symbol": pl.Utf8, "_on": pl.Date},
    ).with_row_index("_row")
    hit = keys.sort("_on").join_asof(px, on="_on", by="symbol", strategy="backward", check_sortedness=False)
    return [None if c is None else as_decimal(c) for c in hit.sort("_row")["close"].to_list()]


def split_events(
    actions: pl.DataFrame | None,
    breaks: pl.DataFrame | None,
    prices: pl.DataFrame,
    sessions: Sequence[dt.date],
) -> list[Split]:
    """The splits of corporate actions (CORPORATE_ACTIONS_SCHEMA, effective on the first session on or
    after ex_date) and of confirmed breaks (BREAKS_SCHEMA rows of kind 'split' with a share_ratio, effective
    on their confirming `session`, ex-date `break_date`), in `event_order`.

    A break on the (symbol, ex-date) of an action is the same split (cleaning should not report it at all)
    and is dropped. Two splits of one symbol on one session are composed into one. `prices` (symbol,
    session, close: cleaned prices with a lookback before the window) give the cash-in-lieu price: the last
    close before the ex-date divided by the ratio. `sessions` is the NYSE calendar.
    """
    raw: list[tuple[str, dt.date, dt.date, float, str]] = []  # symbol, session, ex_date, ratio, source
    action_keys: set[tuple[str, dt.date]] = set()
    if actions is not None and actions.height:
        for symbol, ex_date, ratio, source in actions.select("symbol", "ex_date", "ratio", "source").iter_rows():
            session = _session_on_or_after(sessions, ex_date)
            action_keys.add((symbol, session))
            raw.append((symbol, session, session, ratio, source or "corporate actions"))
    if breaks is not None and breaks.height:
        confirmed = breaks.filter(
            (pl.col("kind") == "split") & pl.col("share_ratio").is_not_null() & (pl.col("share_ratio") > 0)
        )
        for symbol, session, break_date, ratio in confirmed.select(
            "symbol", "session", "break_date", "share_ratio"
        ).iter_rows():
            if (symbol, _session_on_or_after(sessions, break_date)) in action_keys:
                continue
            raw.append((symbol, session, break_date, ratio, SPLIT_SOURCE_BREAK))
    by_key: dict[tuple[str, dt.date], tuple[dt.date, Fraction, str]] = {}
    for symbol, session, ex_date, ratio, source in raw:
        new, old = ratio_parts(ratio)
        if (symbol, session) in by_key:
            ex0, r0, s0 = by_key[(symbol, session)]
            by_key[(symbol, session)] = (min(ex0, ex_date), r0 * Fraction(new, old), f"{s0}+{source}")
        else:
            by_key[(symbol, session)] = (ex_date, Fraction(new, old), source)
    items = [(k, v) for k, v in by_key.items() if v[1] != 1]
    closes = _last_close(prices, [(symbol, ex) for (symbol, _), (ex, _, _) in items], inclusive=False)
    out = []
    for ((symbol, session), (ex_date, ratio, source)), close in zip(items, closes, strict=True):
        split = Split(symbol, session, ex_date, ratio.numerator, ratio.denominator, None, source)
        out.append(split if close is None else replace(split, price=split.adjust_price(close)))
    return sorted(out, key=event_order)


def identity_events(
    master: SecurityMaster | None, prices: pl.DataFrame, sessions: Sequence[dt.date], start: dt.date, end: dt.date
) -> list[Delisting | Rename]:
    """The delistings and renames of the security master effective on a session in [start, end]: every
    interval with a valid_to, on the first session after valid_to. A security that goes on under another
    ticker the next day is a Rename; otherwise a Delisting at its last close on or before valid_to (from
    `prices`: symbol, session, close). No master: no events."""
    if master is None:
        return []
    ends = master.ends(start - dt.timedelta(days=10), end)  # a valid_to just before start may take effect in it
    rows = []
    for symbol, security_id, valid_to, continues_as in ends.iter_rows():
        i = bisect.bisect_right(sessions, valid_to)
        if i >= len(sessions) or not start <= sessions[i] <= end:
            continue
        rows.append((symbol, sessions[i], valid_to, security_id, continues_as))
    delisted = [r for r in rows if r[4] is None]
    closes = _last_close(prices, [(r[0], r[2]) for r in delisted], inclusive=True)
    price = dict(zip([(r[0], r[2]) for r in delisted], closes, strict=True))
    out: list[Delisting | Rename] = []
    for symbol, session, valid_to, security_id, continues_as in rows:
        if continues_as is None:
            out.append(Delisting(symbol, session, valid_to, security_id, price[(symbol, valid_to)]))
        else:
            out.append(Rename(symbol, session, valid_to, security_id, continues_as))
    return sorted(out, key=event_order)


def book_events(
    actions: pl.DataFrame | None,
    breaks: pl.DataFrame | None,
    master: SecurityMaster | None,
    prices: pl.DataFrame,
    sessions: Sequence[dt.date],
    start: dt.date,
    end: dt.date,
) -> list[BookEvent]:
    """Every book event effective on a session in [start, end], in `event_order`: `split_events` of the
    actions and breaks, and `identity_events` of the security master. Give `prices` from a lookback before
    `start` (the closes that price cash in lieu and delistings), and [start, end] from that lookback too when
    the events serve marks before the window (see `portfolio.LastCloses`)."""
    splits = [e for e in split_events(actions, breaks, prices, sessions) if start <= e.session <= end]
    return sorted([*splits, *identity_events(master, prices, sessions, start, end)], key=event_order)


def events_between(events: Iterable[BookEvent], after: dt.date | None, through: dt.date) -> list[BookEvent]:
    """The events with after < session <= through (after None: no lower bound), in `event_order`."""
    return sorted(
        (e for e in events if e.session <= through and (after is None or e.session > after)), key=event_order
    )
