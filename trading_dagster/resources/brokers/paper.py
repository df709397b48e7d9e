"""The built-in paper broker: a simulated brokerage account that behaves, as far as the pipeline can tell,
like Alpaca's paper API (decision 0005; alpaca-notes sections 2, 4 and 5), so `dev` runs the execution code
`paper` and `live` run.

Plain Python, no Dagster. Not the backtest book (`SimulatedBook`, which rewinds itself): this is an account,
and nothing here ever rewinds it.

What it models, as Alpaca does:

* the clock: the NYSE calendar (exchange_calendars XNYS, early closes included) at an injectable "now";
* submit answers `accepted` while the market is closed and `new` while it is open, never a fill; the market
  works the orders on `work_orders()`: market orders fill at the quote plus or minus slippage, limits and
  stops when the quote crosses them, DAY orders expire after their session's close, bracket / oto legs are
  `held` until the entry fills, then the first exit to fill cancels the other (oco: both work at once);
* refusals with Alpaca's codes: `40310000` insufficient buying power (a cash account: no margin; open buys
  reserve what they may cost), insufficient qty available (open sells reserve their shares), no shorting;
  `42210000` sub-penny prices and invalid brackets; `40010001` an unknown symbol (no quote);
* a second order under a client order id is `DuplicateClientOrderId` (a UNIQUE constraint: two processes
  may share the account file), which the shared `Broker.submit` turns into a lookup;
* cancel / cancel_all / close_all_positions report every item like Alpaca's 207 lists, failures included.

Not modelled: trailing stops (refused with 42210000), margin and shorting, extended hours, opg/cls auctions
(accepted in Alpaca's windows and then worked like DAY orders), corporate actions, fees other than the
commission model.

The ledger (a SQLite file) is append-only, enforced by triggers: `orders` (one row per order or bracket leg,
its terms as submitted), `order_events` (every status an order takes: the current status is its latest
event, the history is the table), `executions` (one row per fill, a unique execution id). Positions and cash
are never stored: they are replayed from the executions (NautilusTrader: positions derived from fills).
Every row carries when it happened on the broker's clock (`submitted_at` / `occurred_at`) and when it was
written on the wall clock (`recorded_at`). Money and quantities are Decimal, stored as text.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from trading_dagster.domain.broker_records import (
    FINAL_STATUSES,
    BrokerAccount,
    BrokerClock,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    CancelResult,
    CloseResult,
    OrderRequest,
)
from trading_dagster.domain.calendar import CALENDAR_NAME, FIRST_SESSION
from trading_dagster.domain.execution import CENT, CommissionModel, SlippageModel
from trading_dagster.resources.brokers.base import Broker, DuplicateClientOrderId, OrderRejected

NEW_YORK = ZoneInfo("America/New_York")
CODE_FORBIDDEN = "40310000"  # Alpaca 403: buying power, qty available, shorting
CODE_INVALID = "42210000"  # Alpaca 422: sub-penny, invalid bracket, unsupported order
CODE_UNKNOWN_ASSET = "40010001"  # Alpaca 422: asset not found
QTY_STEP = Decimal("0.000000001")  # Alpaca's fractional shares: 9 decimals
PRICE_SHOWN = Decimal("0.0001")
BUSY_TIMEOUT_S = 30.0
_ZERO = Decimal(0)

Clock = Callable[[], dt.datetime]
Quotes = Callable[[str], Decimal | None]


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _no_quotes(symbol: str) -> Decimal | None:
    return None


# -- the calendar ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketHours:
    """Every NYSE session's open and close in UTC (early closes included), sorted, for bisection."""

    opens: tuple[dt.datetime, ...]
    closes: tuple[dt.datetime, ...]

    def clock(self, now: dt.datetime) -> BrokerClock:
        """Alpaca's clock at `now`: open on [open, close); next_open is the first open after now (when
        open: the next session's), next_close the first close after now (when open: today's)."""
        i = bisect.bisect_right(self.opens, now) - 1
        is_open = i >= 0 and now < self.closes[i]
        j = bisect.bisect_right(self.opens, now)
        k = bisect.bisect_right(self.closes, now)
        if j >= len(self.opens) or k >= len(self.closes):
            raise BrokerError(
                f"paper broker: {now.isoformat()} is past the end of the {CALENDAR_NAME} calendar"
            )
        return BrokerClock(timestamp=now, is_open=is_open, next_open=self.opens[j], next_close=self.closes[k])

    def previous_close(self, now: dt.datetime) -> dt.datetime | None:
        """The last close at or before `now` (during a session: the previous session's); None before the
        calendar's first close."""
        i = bisect.bisect_right(self.closes, now) - 1
        return self.closes[i] if i >= 0 else None


@cache
def market_hours() -> MarketHours:
    """XNYS opens and closes from the project's first session to the library's horizon (about a year ahead)."""
    import exchange_calendars as xc  # imported lazily, like domain/calendar.py

    schedule = xc.get_calendar(CALENDAR_NAME, start=FIRST_SESSION.isoformat()).schedule
    opens = tuple(ts.to_pydatetime() for ts in schedule["open"])
    closes = tuple(ts.to_pydatetime() for ts in schedule["close"])
    return MarketHours(opens, closes)


# -- text <-> values ---------------------------------------------------------------------------------------


def _ts(when: dt.datetime) -> str:
    """Fixed-width UTC text, so SQL compares times as strings."""
    if when.tzinfo is None:
        raise ValueError(f"a naive datetime reached the paper broker: {when!r}")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_ts(text: str | None) -> dt.datetime | None:
    return (
        None if text is None else dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    )


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _txt(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _sub_penny(price: Decimal) -> bool:
    """Alpaca's pricing rule: at most 2 decimals at >= $1, 4 below."""
    step = CENT if price >= 1 else PRICE_SHOWN
    return price != price.quantize(step)


# -- the ledger ---------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    account_id TEXT PRIMARY KEY,
    initial_cash TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL UNIQUE,
    parent_id TEXT REFERENCES orders(id),
    leg TEXT,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    type TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    order_class TEXT NOT NULL,
    qty TEXT,
    notional TEXT,
    limit_price TEXT,
    stop_price TEXT,
    expires_at TEXT,
    submitted_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL REFERENCES orders(id),
    status TEXT NOT NULL,
    note TEXT,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES orders(id),
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    qty TEXT NOT NULL,
    price TEXT NOT NULL,
    commission TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_by_order ON order_events (order_id, seq);
CREATE INDEX IF NOT EXISTS orders_by_submitted ON orders (submitted_at, seq);
"""
_TABLES = ("account", "orders", "order_events", "executions")
_APPEND_ONLY = "".join(
    f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}
BEGIN SELECT RAISE(ABORT, 'the paper account ledger is append-only'); END;"""
    for table in _TABLES
    for verb in ("update", "delete")
)


@dataclass
class _Order:
    """An order as the ledger knows it now: its terms, its latest status, its fills so far."""

    seq: int
    id: str
    client_order_id: str
    parent_id: str | None
    leg: str | None
    symbol: str
    side: str
    type: str
    time_in_force: str
    order_class: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    expires_at: dt.datetime | None
    submitted_at: dt.datetime
    status: str = "accepted"
    updated_at: dt.datetime | None = None
    filled_qty: Decimal = _ZERO
    filled_value: Decimal = _ZERO
    filled_at: dt.datetime | None = None
    canceled_at: dt.datetime | None = None
    triggered: bool = False
    legs: list[_Order] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def remaining(self) -> Decimal | None:
        """Shares left to fill (None for a notional order before its fill)."""
        return None if self.qty is None else self.qty - self.filled_qty

    def record(self) -> BrokerOrder:
        return BrokerOrder(
            id=self.id,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            time_in_force=self.time_in_force,
            status=self.status,
            qty=self.qty,
            notional=self.notional,
            filled_qty=self.filled_qty,
            filled_avg_price=(self.filled_value / self.filled_qty).quantize(PRICE_SHOWN)
            if self.filled_qty
            else None,
            submitted_at=self.submitted_at,
            updated_at=self.updated_at or self.submitted_at,
            filled_at=self.filled_at,
            canceled_at=self.canceled_at,
            order_class=self.order_class,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            legs=tuple(leg.record() for leg in self.legs),
        )


@dataclass
class _Holding:
    qty: Decimal = _ZERO
    cost: Decimal = _ZERO  # cost basis of the shares held (average cost: sells take it out pro rata)


@dataclass
class _Book:
    """Everything in the ledger, replayed: orders by id (legs nested in their parents too), cash, holdings."""

    orders: dict[str, _Order]
    cash: Decimal
    holdings: dict[str, _Holding]
    executions: list[tuple]  # rows of the executions table, oldest first

    def top_level(self) -> list[_Order]:
        return [o for o in self.orders.values() if o.parent_id is None]

    def group(self, order: _Order) -> list[_Order]:
        """The order with its parent and siblings (a bracket, oto or oco), parent first."""
        parent = self.orders[order.parent_id] if order.parent_id else order
        return [parent, *parent.legs]

    def open_orders(self) -> list[_Order]:
        return sorted((o for o in self.orders.values() if o.open), key=lambda o: o.seq)

    def held(self, symbol: str) -> Decimal:
        h = self.holdings.get(symbol)
        return h.qty if h else _ZERO

    def reserved_sells(self, symbol: str) -> Decimal:
        """Shares open sells hold (Alpaca's held_for_orders): the exits of one group (a bracket's, an oto's
        or an oco's) hold their shares once, held legs none yet (their entry has not filled)."""
        total = _ZERO
        groups: dict[str, Decimal] = {}
        for o in self.open_orders():
            if o.symbol != symbol or o.side != "sell" or o.status == "held":
                continue
            remaining = o.remaining if o.remaining is not None else _ZERO
            if o.parent_id is None and o.order_class != "oco":
                total += remaining
            else:
                key = o.parent_id or o.id
                groups[key] = max(groups.get(key, _ZERO), remaining)
        return total + sum(groups.values(), _ZERO)


# -- the broker ---------------------------------------------------------------------------------------------


class PaperBroker(Broker):
    """A paper account in a SQLite file (see the module docstring).

    `quotes(symbol)` is the price a marketable order fills at now (before slippage) and the mark of a
    position; None means the symbol is unknown (orders refused) or has no price yet (orders wait); without
    `quotes` every symbol is unknown. `clock` defaults to the wall clock (UTC).
    `market_buy_collar` (a fraction, default 0) inflates a market buy's estimated cost in the buying-power
    check, as Alpaca risk-checks market buys like limits 2.5-4 % away. `partial_fills` makes each work call
    fill at most half of a whole-share order's remaining shares (at least one), as paper fills sometimes are.
    """

    def __init__(
        self,
        path: str | Path,
        account_id: str,
        initial_cash: Decimal,
        *,
        quotes: Quotes | None = None,
        clock: Clock | None = None,
        slippage: SlippageModel | None = None,
        commission: CommissionModel | None = None,
        market_buy_collar: Decimal = _ZERO,
        partial_fills: bool = False,
    ) -> None:
        if not account_id:
            raise ValueError("account_id must not be empty")
        if initial_cash < 0:
            raise ValueError(f"initial_cash must be >= 0, got {initial_cash}")
        if market_buy_collar < 0:
            raise ValueError(f"market_buy_collar must be >= 0, got {market_buy_collar}")
        self._path = Path(path)
        self._account_id = account_id
        self._quotes: Quotes = quotes if quotes is not None else _no_quotes
        self._clock: Clock = clock if clock is not None else wall_clock
        self._slippage = slippage if slippage is not None else SlippageModel()
        self._commission = commission if commission is not None else CommissionModel()
        self._collar = Decimal(market_buy_collar)
        self._partial = partial_fills
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            row = conn.execute("SELECT account_id, initial_cash FROM account").fetchone()
            if row is None:
                now = self._now()
                conn.execute(
                    "INSERT INTO account VALUES (?, ?, ?, ?)",
                    (account_id, str(Decimal(initial_cash)), _ts(now), _ts(wall_clock())),
                )
                self._initial_cash = Decimal(initial_cash)
            elif row[0] != account_id:
                raise BrokerError(f"paper broker: {self._path} holds account {row[0]!r}, not {account_id!r}")
            else:
                self._initial_cash = Decimal(row[1])
                if self._initial_cash != Decimal(initial_cash):
                    raise BrokerError(
                        f"paper broker: account {account_id!r} was opened with {self._initial_cash} in cash, "
                        f"not {initial_cash}; use a new file to start again"
                    )

    # -- plumbing ------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            self._ensure_schema(conn)
            conn.execute("BEGIN")  # one consistent snapshot for the whole read
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the file's write lock from the start (BEGIN IMMEDIATE), so a check
        (buying power, an existing id) and the insert it allows cannot interleave with another process."""
        conn = self._connect()
        try:
            self._ensure_schema(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'executions_no_delete'").fetchone() is None:
            conn.executescript(_SCHEMA + _APPEND_ONLY)  # IF NOT EXISTS throughout: racing creators are fine

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError(f"the paper broker's clock returned a naive datetime: {now!r}")
        return now.astimezone(dt.UTC)

    def _quote(self, symbol: str) -> Decimal | None:
        q = self._quotes(symbol)
        return None if q is None else Decimal(q)

    def _load(self, conn: sqlite3.Connection) -> _Book:
        orders: dict[str, _Order] = {}
        for row in conn.execute(
            "SELECT seq, id, client_order_id, parent_id, leg, symbol, side, type, time_in_force, order_class, "
            "qty, notional, limit_price, stop_price, expires_at, submitted_at FROM orders ORDER BY seq"
        ):
            o = _Order(
                *row[:10],
                qty=_dec(row[10]),
                notional=_dec(row[11]),
                limit_price=_dec(row[12]),
                stop_price=_dec(row[13]),
                expires_at=_from_ts(row[14]),
                submitted_at=_from_ts(row[15]),  # type: ignore[arg-type]
            )
            orders[o.id] = o
            if o.parent_id is not None:
                orders[o.parent_id].legs.append(o)
        for order_id, status, note, occurred in conn.execute(
            "SELECT order_id, status, note, occurred_at FROM order_events ORDER BY seq"
        ):
            _apply_event(orders[order_id], status, note, _from_ts(occurred))  # type: ignore[arg-type]
        cash = self._initial_cash
        holdings: dict[str, _Holding] = {}
        executions = conn.execute(
            "SELECT execution_id, order_id, symbol, side, qty, price, commission, occurred_at FROM executions "
            "ORDER BY seq"
        ).fetchall()
        for _eid, order_id, symbol, side, qty_t, price_t, commission_t, _at in executions:
            qty, price, commission = Decimal(qty_t), Decimal(price_t), Decimal(commission_t)
            o = orders[order_id]
            o.filled_qty += qty
            o.filled_value += qty * price
            cash = _book_fill(holdings, cash, symbol, side, qty, price, commission)
        return _Book(orders, cash, holdings, executions)

    def _event(
        self, conn: sqlite3.Connection, o: _Order, status: str, at: dt.datetime, note: str | None = None
    ) -> None:
        conn.execute(
            "INSERT INTO order_events (order_id, status, note, occurred_at, recorded_at) VALUES (?, ?, ?, ?, ?)",
            (o.id, status, note, _ts(at), _ts(wall_clock())),
        )
        _apply_event(o, status, note, at)

    # -- reads ---------------------------------------------------------------------------------------------

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def paper(self) -> bool:
        return True

    def clock(self) -> BrokerClock:
        return market_hours().clock(self._now())

    def account(self) -> BrokerAccount:
        """Cash, buying power and equity now; `last_equity` is the equity at the previous close (below)."""
        now = self._now()
        with self._read() as conn:
            book = self._load(conn)
        previous_close = market_hours().previous_close(now)
        cash_then, holdings_then = self._initial_cash, {}
        for _eid, _order_id, symbol, side, qty_t, price_t, commission_t, at in book.executions:
            if previous_close is None or _from_ts(at) > previous_close:  # type: ignore[operator]
                continue
            cash_then = _book_fill(
                holdings_then, cash_then, symbol, side, Decimal(qty_t), Decimal(price_t), Decimal(commission_t)
            )
        return BrokerAccount(
            account_id=self._account_id,
            status="ACTIVE",
            cash=book.cash,
            buying_power=max(_ZERO, book.cash - self._reserved_cash(book)),
            equity=self._marked(book.cash, book.holdings),
            last_equity=self._marked(cash_then, holdings_then),
        )

    def _marked(self, cash: Decimal, holdings: dict[str, _Holding]) -> Decimal:
        """Cash plus the holdings at the quotes (at cost for a symbol without a quote), to the cent.

        `last_equity` replays the executions up to the previous session's close on the broker's clock (Alpaca:
        the equity at the previous close) and marks what was held then at the quotes *now*: the paper broker
        has one price per symbol, not a history. With the warehouse's quotes (the latest cleaned close) that
        is the previous close itself during a session, so the day's P&L (equity - last_equity) is what the
        day's fills cost (slippage, commission) and not a price move the paper broker cannot see."""
        equity = cash
        for symbol, h in holdings.items():
            if h.qty:
                mark = self._quote(symbol)
                equity += h.qty * mark if mark is not None else h.cost
        return equity.quantize(CENT, ROUND_HALF_UP)

    def positions(self) -> list[BrokerPosition]:
        with self._read() as conn:
            book = self._load(conn)
        out = []
        for symbol in sorted(book.holdings):
            h = book.holdings[symbol]
            if not h.qty:
                continue
            mark = self._quote(symbol)
            out.append(
                BrokerPosition(
                    symbol=symbol,
                    qty=h.qty,
                    avg_entry_price=(h.cost / h.qty).quantize(PRICE_SHOWN, ROUND_HALF_UP),
                    market_value=None if mark is None else (h.qty * mark).quantize(CENT, ROUND_HALF_UP),
                    current_price=mark,
                )
            )
        return out

    def orders(
        self,
        *,
        status: Literal["open", "closed", "all"] = "all",
        after: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[BrokerOrder]:
        """Top-level orders with their legs nested (Alpaca's `nested=True`), oldest first; `after` and `until`
        are exclusive bounds on the submission time. A bracket counts as open while any member is open."""
        if status not in ("open", "closed", "all"):
            raise ValueError(f"status must be open, closed or all, got {status!r}")
        with self._read() as conn:
            book = self._load(conn)
        out = []
        for o in sorted(book.top_level(), key=lambda o: (o.submitted_at, o.seq)):
            if after is not None and not o.submitted_at > after:
                continue
            if until is not None and not o.submitted_at < until:
                continue
            is_open = any(m.open for m in book.group(o))
            if (status == "open" and not is_open) or (status == "closed" and is_open):
                continue
            out.append(o.record())
        return out

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        with self._read() as conn:
            book = self._load(conn)
        for o in book.orders.values():
            if o.client_order_id == client_order_id:
                return o.record()
        return None

    def fills(
        self, *, after: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[BrokerFill]:
        """Every execution with after < time < until, oldest first; `cum_qty` / `leaves_qty` as of it."""
        with self._read() as conn:
            book = self._load(conn)
        cum: dict[str, Decimal] = {}
        out = []
        for eid, order_id, symbol, side, qty_t, price_t, commission_t, at_t in book.executions:
            o = book.orders[order_id]
            cum[order_id] = cum.get(order_id, _ZERO) + Decimal(qty_t)
            at = _from_ts(at_t)
            assert at is not None
            if (after is not None and not at > after) or (until is not None and not at < until):
                continue
            out.append(
                BrokerFill(
                    execution_id=eid,
                    order_id=order_id,
                    client_order_id=o.client_order_id,
                    symbol=symbol,
                    side=side,
                    qty=Decimal(qty_t),
                    price=Decimal(price_t),
                    transaction_time=at,
                    cum_qty=cum[order_id],
                    leaves_qty=None if o.qty is None else max(_ZERO, o.qty - cum[order_id]),
                    commission=Decimal(commission_t),
                )
            )
        return out

    # -- submit --------------------------------------------------------------------------------------------

    def _submit_one(self, request: OrderRequest) -> BrokerOrder:
        now = self._now()
        clock = market_hours().clock(now)
        try:
            with self._write() as conn:
                taken = conn.execute(
                    "SELECT 1 FROM orders WHERE client_order_id = ?", (request.client_order_id,)
                ).fetchone()
                if taken:
                    raise DuplicateClientOrderId(request.client_order_id)
                book = self._load(conn)
                self._validate(request, book, now)
                parent = self._insert_order(conn, request, clock, now)
        except sqlite3.IntegrityError as exc:  # another process inserted the id between our check and insert
            if "client_order_id" in str(exc):
                raise DuplicateClientOrderId(request.client_order_id) from exc
            raise BrokerError(f"paper broker: submit {request.client_order_id}: {exc}") from exc
        return parent.record()

    def _insert_order(
        self, conn: sqlite3.Connection, request: OrderRequest, clock: BrokerClock, now: dt.datetime
    ) -> _Order:
        tif = request.time_in_force
        expires = None if tif == "gtc" else clock.next_close  # DAY: the close of its session
        first = "new" if clock.is_open else "accepted"
        cls = request.order_class
        limit = request.limit_price
        if cls == "oco" and limit is None:
            limit = request.take_profit
        parent = self._insert_row(
            conn,
            request.client_order_id,
            None,
            None,
            request.symbol,
            request.side,
            request.type,
            tif,
            cls,
            request.qty,
            request.notional,
            limit,
            request.stop_price,
            expires,
            now,
        )
        self._event(conn, parent, first, now)
        if cls == "simple":
            return parent
        exit_side = "sell" if request.side == "buy" else "buy"
        legs: list[tuple[str, str, Decimal | None, Decimal | None]] = []
        if request.take_profit is not None and cls != "oco":
            legs.append(("take_profit", "limit", request.take_profit, None))
        if request.stop_loss is not None:
            stop_type = "stop" if request.stop_loss_limit is None else "stop_limit"
            legs.append(("stop_loss", stop_type, request.stop_loss_limit, request.stop_loss))
        leg_side = request.side if cls == "oco" else exit_side
        for leg, type_, leg_limit, leg_stop in legs:
            row = self._insert_row(
                conn,
                str(uuid.uuid4()),
                parent.id,
                leg,
                request.symbol,
                leg_side,
                type_,
                tif,
                cls,
                request.qty,
                None,
                leg_limit,
                leg_stop,
                expires,
                now,
            )
            parent.legs.append(row)
            self._event(conn, row, first if cls == "oco" else "held", now)
        return parent

    def _insert_row(
        self,
        conn: sqlite3.Connection,
        client_order_id: str,
        parent_id: str | None,
        leg: str | None,
        symbol: str,
        side: str,
        type_: str,
        tif: str,
        order_class: str,
        qty: Decimal | None,
        notional: Decimal | None,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        expires_at: dt.datetime | None,
        now: dt.datetime,
    ) -> _Order:
        order_id = str(uuid.uuid4())
        cur = conn.execute(
            "INSERT INTO orders (id, client_order_id, parent_id, leg, symbol, side, type, time_in_force, "
            "order_class, qty, notional, limit_price, stop_price, expires_at, submitted_at, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order_id,
                client_order_id,
                parent_id,
                leg,
                symbol,
                side,
                type_,
                tif,
                order_class,
                _txt(qty),
                _txt(notional),
                _txt(limit_price),
                _txt(stop_price),
                None if expires_at is None else _ts(expires_at),
                _ts(now),
                _ts(wall_clock()),
            ),
        )
        return _Order(
            cur.lastrowid or 0,
            order_id,
            client_order_id,
            parent_id,
            leg,
            symbol,
            side,
            type_,
            tif,
            order_class,
            qty,
            notional,
            limit_price,
            stop_price,
            expires_at,
            now,
        )

    def _validate(self, request: OrderRequest, book: _Book, now: dt.datetime) -> None:
        """Alpaca's refusals, in the order Alpaca's answers suggest: the asset, the terms, then the account."""
        quote = self._quote(request.symbol)
        if quote is None:
            raise OrderRejected(CODE_UNKNOWN_ASSET, f'asset "{request.symbol}" not found')
        if request.type == "trailing_stop":
            raise OrderRejected(CODE_INVALID, "trailing stop orders are not supported by the paper broker")
        for name, value in (
            ("limit_price", request.limit_price),
            ("stop_price", request.stop_price),
            ("take_profit.limit_price", request.take_profit),
            ("stop_loss.stop_price", request.stop_loss),
            ("stop_loss.limit_price", request.stop_loss_limit),
        ):
            if value is not None and _sub_penny(value):
                raise OrderRejected(
                    CODE_INVALID,
                    f"invalid {name} {value}. sub-penny increment does not fulfill minimum pricing criteria",
                )
        if request.notional is not None and request.notional != request.notional.quantize(CENT):
            raise OrderRejected(CODE_INVALID, f"invalid notional {request.notional}: at most 2 decimals")
        ny = now.astimezone(NEW_YORK).time()
        window = {"opg": (dt.time(9, 28), dt.time(19)), "cls": (dt.time(15, 50), dt.time(19))}.get(
            request.time_in_force
        )
        if window and window[0] <= ny < window[1]:
            raise OrderRejected(
                CODE_INVALID, f"{request.time_in_force} orders are not accepted at {ny:%H:%M} ET"
            )
        if request.order_class in ("bracket", "oto", "oco"):
            if request.time_in_force not in ("day", "gtc"):
                raise OrderRejected(CODE_INVALID, f"{request.order_class} orders must be day or gtc")
            self._validate_exits(request, quote)
        if request.side == "sell" or request.order_class == "oco":
            self._validate_sell(request, book, quote)
        if request.side == "buy" and request.order_class != "oco":
            cost = self._estimated_cost(
                request.type, request.qty, request.notional, request.limit_price, request.stop_price, quote
            )
            available = book.cash - self._reserved_cash(book)
            if cost > available:
                raise OrderRejected(CODE_FORBIDDEN, "insufficient buying power")

    def _validate_exits(self, request: OrderRequest, quote: Decimal) -> None:
        take, stop = request.take_profit, request.stop_loss
        base = request.limit_price if request.limit_price is not None else quote
        long_exit = request.side == "buy" if request.order_class != "oco" else request.side == "sell"
        if take is not None and stop is not None:
            if long_exit and not take > stop:
                raise OrderRejected(CODE_INVALID, "take_profit.limit_price must be > stop_loss.stop_price")
            if not long_exit and not take < stop:
                raise OrderRejected(CODE_INVALID, "take_profit.limit_price must be < stop_loss.stop_price")
        if request.order_class == "oco":
            return
        if stop is not None:
            if long_exit and stop > base - CENT:
                raise OrderRejected(
                    CODE_INVALID, f"stop_loss.stop_price must be <= base_price - 0.01 ({base})"
                )
            if not long_exit and stop < base + CENT:
                raise OrderRejected(
                    CODE_INVALID, f"stop_loss.stop_price must be >= base_price + 0.01 ({base})"
                )
        if take is not None:
            if long_exit and take < base + CENT:
                raise OrderRejected(
                    CODE_INVALID, f"take_profit.limit_price must be >= base_price + 0.01 ({base})"
                )
            if not long_exit and take > base - CENT:
                raise OrderRejected(
                    CODE_INVALID, f"take_profit.limit_price must be <= base_price - 0.01 ({base})"
                )

    def _validate_sell(self, request: OrderRequest, book: _Book, quote: Decimal) -> None:
        """Long only: a sell may use the shares held that open sells do not already hold."""
        if request.side == "buy":  # an oco buy would close a short: there are none
            raise OrderRejected(CODE_FORBIDDEN, "account is not allowed to short")
        held = book.held(request.symbol)
        if held <= 0:
            raise OrderRejected(CODE_FORBIDDEN, "account is not allowed to short")
        qty = request.qty if request.qty is not None else _notional_qty(request.notional, quote)  # type: ignore[arg-type]
        available = max(_ZERO, held - book.reserved_sells(request.symbol))
        if qty > available:
            raise OrderRejected(
                CODE_FORBIDDEN,
                f"insufficient qty available for order (requested: {qty}, available: {available})",
            )

    def _estimated_cost(
        self,
        type_: str,
        qty: Decimal | None,
        notional: Decimal | None,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        quote: Decimal | None,
    ) -> Decimal:
        """What a buy may cost: a limit at its limit, a market (or stop) at the slipped quote (times the
        collar), plus commission; a notional order its notional."""
        if notional is not None:
            return notional
        assert qty is not None
        if limit_price is not None:
            price = limit_price
        else:
            refs = [x for x in (quote, stop_price) if x is not None]
            if not refs:
                return _ZERO
            price = self._slippage.fill_price("buy", max(refs)) * (1 + self._collar)
        return qty * price + self._commission.cost(qty, price)  # type: ignore[arg-type]

    def _reserved_cash(self, book: _Book) -> Decimal:
        """Cash the open buys may still spend (held legs are sells; they reserve nothing)."""
        total = _ZERO
        for o in book.open_orders():
            if o.side != "buy" or o.status == "held":
                continue
            if o.notional is not None:
                total += max(_ZERO, o.notional - o.filled_value)
                continue
            total += self._estimated_cost(
                o.type, o.remaining, None, o.limit_price, o.stop_price, self._quote(o.symbol)
            )
        return total

    # -- the market ----------------------------------------------------------------------------------------

    def advance(self) -> None:
        """The market moves before a poll: the paper market moves only when asked (`work_orders`)."""
        self.work_orders()

    def work_orders(self) -> None:
        """Let the market work the open orders at the broker's "now": expire DAY orders whose session has
        closed, then (market open) fill what is marketable at the quotes, oldest order first, activating a
        bracket's legs when its entry fills and cancelling the other exit when one fills."""
        now = self._now()
        clock = market_hours().clock(now)
        with self._write() as conn:
            book = self._load(conn)
            for o in book.open_orders():
                if o.open and o.expires_at is not None and now >= o.expires_at:
                    for member in book.group(o):
                        if member.open:
                            self._event(conn, member, "expired", o.expires_at)
            if not clock.is_open:
                return
            filled: set[str] = set()  # an order fills at most once per call (partial fills come call by call)
            for _ in range(4):  # a fill may activate legs that are marketable at once
                if not self._work_pass(conn, book, now, filled):
                    break

    def _work_pass(self, conn: sqlite3.Connection, book: _Book, now: dt.datetime, filled: set[str]) -> bool:
        changed = False
        for o in book.open_orders():
            if not o.open or o.status == "held" or o.id in filled:
                continue
            if o.status == "accepted":
                self._event(conn, o, "new", now)  # it reached the market at the open
                changed = True
            quote = self._quote(o.symbol)
            if quote is None:
                continue
            price = self._marketable_price(conn, o, quote, now)
            if price is None:
                continue
            qty = self._fill_qty(o, book, price)
            if qty <= 0:
                continue
            self._fill(conn, book, o, qty, price, now)
            filled.add(o.id)
            changed = True
        return changed

    def _marketable_price(
        self, conn: sqlite3.Connection, o: _Order, quote: Decimal, now: dt.datetime
    ) -> Decimal | None:
        """The price `o` fills at now, or None while it is not marketable. Market and triggered stops take
        the slipped quote; limits fill at the slipped quote capped by the limit (never worse than it)."""
        buy = o.side == "buy"
        if o.type in ("stop", "stop_limit") and not o.triggered:
            assert o.stop_price is not None
            if not (quote >= o.stop_price if buy else quote <= o.stop_price):
                return None
            if o.type == "stop_limit":
                self._event(conn, o, o.status, now, note="triggered")  # the stop is now a limit order
        slipped = self._slippage.fill_price(o.side, quote)  # type: ignore[arg-type]
        if o.type in ("market", "stop"):
            return slipped
        assert o.limit_price is not None
        if buy:
            return min(slipped, o.limit_price) if quote <= o.limit_price else None
        return max(slipped, o.limit_price) if quote >= o.limit_price else None

    def _fill_qty(self, o: _Order, book: _Book, price: Decimal) -> Decimal:
        if o.qty is None:
            assert o.notional is not None
            qty = _notional_qty(o.notional, price)
        else:
            qty = o.qty - o.filled_qty
            if self._partial and qty >= 2 and qty == qty.to_integral_value():
                qty = max(Decimal(1), (qty / 2).to_integral_value(ROUND_DOWN))
        if o.side == "sell":
            qty = min(qty, book.held(o.symbol))  # never short, whatever happened since the submit
        return qty

    def _fill(
        self, conn: sqlite3.Connection, book: _Book, o: _Order, qty: Decimal, price: Decimal, now: dt.datetime
    ) -> None:
        commission = self._commission.cost(qty, price)  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO executions (execution_id, order_id, symbol, side, qty, price, commission, occurred_at, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                o.id,
                o.symbol,
                o.side,
                str(qty),
                str(price),
                str(commission),
                _ts(now),
                _ts(wall_clock()),
            ),
        )
        o.filled_qty += qty
        o.filled_value += qty * price
        book.cash = _book_fill(book.holdings, book.cash, o.symbol, o.side, qty, price, commission)
        complete = o.qty is None or o.filled_qty >= o.qty
        self._event(conn, o, "filled" if complete else "partially_filled", now)
        if not complete:
            return
        group = book.group(o)
        entry = group[0]
        if o is entry and o.order_class in ("bracket", "oto"):
            for leg in entry.legs:
                if leg.status == "held":
                    self._event(conn, leg, "new", now)
            return
        if o.order_class in ("bracket", "oto", "oco"):
            exits = group if o.order_class == "oco" else entry.legs
            for other in exits:
                if other is not o and other.open:
                    self._event(conn, other, "canceled", now, note="the other exit filled")

    # -- cancel and close ----------------------------------------------------------------------------------

    def cancel(self, order_id: str) -> CancelResult:
        """Cancel an open order at once (with its bracket group: cancelling any member cancels the group)."""
        now = self._now()
        with self._write() as conn:
            book = self._load(conn)
            o = book.orders.get(order_id)
            if o is None:
                return CancelResult(order_id, False, 404, "order not found")
            if not o.open:
                return CancelResult(order_id, False, 422, f'order is already in "{o.status}" state')
            for member in book.group(o):
                if member.open:
                    self._event(conn, member, "canceled", now)
        return CancelResult(order_id, True, 200)

    def cancel_all(self) -> list[CancelResult]:
        now = self._now()
        out = []
        with self._write() as conn:
            book = self._load(conn)
            for o in book.open_orders():
                if o.open:
                    self._event(conn, o, "canceled", now)
                out.append(CancelResult(o.id, True, 200))
        return out

    def close_all_positions(self, *, cancel_orders: bool = True) -> list[CloseResult]:
        """One market sell per position (sent as any order is: accepted while the market is closed), after
        cancelling the open orders if asked; every symbol gets a result, failures included."""
        if cancel_orders:
            self.cancel_all()
        out = []
        session = self._now().astimezone(NEW_YORK).date()
        for p in self.positions():
            request = OrderRequest(
                client_order_id=str(uuid.uuid4()),
                session=session,
                strategy="close_all_positions",
                symbol=p.symbol,
                side="sell",
                qty=p.qty,
            )
            try:
                order = self._submit_one(request)
            except OrderRejected as exc:
                status = 403 if exc.code == CODE_FORBIDDEN else 422
                out.append(CloseResult(p.symbol, False, status, None, f"{exc.code}: {exc.message}"))
            else:
                out.append(CloseResult(p.symbol, True, 200, order))
        return out


def _apply_event(o: _Order, status: str, note: str | None, at: dt.datetime) -> None:
    if note == "triggered":
        o.triggered = True
    o.status = status
    o.updated_at = at
    if status == "filled":
        o.filled_at = at
    elif status == "canceled":
        o.canceled_at = at


def _notional_qty(notional: Decimal, price: Decimal) -> Decimal:
    return (notional / price).quantize(QTY_STEP, ROUND_DOWN)


def _book_fill(
    holdings: dict[str, _Holding],
    cash: Decimal,
    symbol: str,
    side: str,
    qty: Decimal,
    price: Decimal,
    commission: Decimal,
) -> Decimal:
    """Apply one execution to the holdings; return the new cash (the gross rounded to the cent)."""
    gross = (qty * price).quantize(CENT, ROUND_HALF_UP)
    h = holdings.setdefault(symbol, _Holding())
    if side == "buy":
        h.cost += qty * price
        h.qty += qty
        return cash - gross - commission
    if h.qty:
        h.cost -= h.cost * min(qty, h.qty) / h.qty
    h.qty -= qty
    if h.qty <= 0:
        h.cost = _ZERO
    return cash + gross - commission
