"""The backtest book: the simulated account of the partitioned trading assets (decision 0005, section 1).

It is nobody's brokerage account: the book daily runs trade on is the broker's (`resources/brokers/`), and
nothing here can reach it. The backtest's state lives in this book, as it would in a broker (docs/design.md,
"Trading"): assets ask it to work pending orders at an open (`sync`), read the account, submit orders and
read back events. It keeps its ledger (orders, fills, expiries) in a DuckDB file
(`.data/backtest_book.duckdb`) so a backtest can go on session by session between runs, may rewind itself
(`reset_from`) when a range is re-run, and fills with exactly the planner's fill model
(`execution.execute_open`).
It serves every call from an in-memory mirror and writes the ledger file in batches (see `SimulatedBook`).
Book events (splits, delistings, renames: `domain/book_events.py`) reach the broker through `sync`; the paper
broker applies them with the planner's own `portfolio.apply_book_events` and records them in its ledger, so a
reopened ledger replays them and its account snapshots stay consistent.

Stop-loss / take-profit exits (`domain/exits.py`): `submit` takes the exit levels of approved buys and the
ledger keeps them with the order (`orders.stop_loss`, `orders.take_profit`); a filled entry with levels opens
an exit lot of the account; `sync(D, ..., bars=)` works D's open, then D's exits on D's bar
(`exits.execute_exits`, the planner's own rule), and records the exit fills (ids `<entry>-sl` / `<entry>-tp`)
as fills. The lots are in the account snapshots (`exits.lots_to_records`), and a replay of the fills re-opens
them from the orders' levels, so a reopened ledger and `account(past session)` give the same lots.

Fractional shares (`[backtest] shares = "fractional"`, `domain/quantity.py`): the book's quantities are Decimals
to 1e-9 share. Its ledger records the convention (`ledger_meta`, so a ledger is never reopened under the other
one) and keeps its quantity columns as DOUBLE (a new fractional ledger's BIGINT columns are altered when it is
created; 9 decimals below 1e6 shares go to float64 and back exactly), and its snapshots hold them as exact text.
A whole-share ledger is what it always was (BIGINT quantities).

Plain Python, no Dagster: `resources/configured.py` wraps it in a ConfigurableResource.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal

import duckdb
import polars as pl

from trading_dagster.domain.book_events import (
    BookEvent,
    Delisting,
    Rename,
    Split,
    event_order,
    events_between,
)
from trading_dagster.domain.collector import collector_paused
from trading_dagster.domain.execution import (
    CommissionModel,
    OpenResult,
    SessionValues,
    SlippageModel,
    execute_open,
)
from trading_dagster.domain.exits import (
    NO_EXITS,
    ExitLevels,
    execute_exits,
    lots_from_records,
    lots_to_records,
)
from trading_dagster.domain.orders import (
    Fill,
    Order,
    OrderEvent,
    as_decimal,
    execution_schema,
    orders_from_frame,
)
from trading_dagster.domain.portfolio import (
    EventEffect,
    PortfolioState,
    Position,
    apply_book_events,
    fill_apply_order,
)
from trading_dagster.domain.quantity import WHOLE, Qty, ShareRule, share_rule, to_json

Bar = tuple[Decimal | float | None, Decimal | float | None, Decimal | float | None]
"""A session's (open, high, low) of a symbol, what `exits.execute_exits` fills the exits on."""
Spreads = Mapping[dt.date, Mapping[str, Decimal | float]]
"""{session: {symbol: spread proxy}} (`execution.spreads_by_session`), what a spread slippage fills with."""


class BacktestBook(ABC):
    """What the partitioned trading assets need from their simulated book."""

    @property
    @abstractmethod
    def account_id(self) -> str:
        """The account the client order ids are derived for."""

    @abstractmethod
    def sync(
        self,
        session: dt.date,
        opens: Mapping[str, Decimal],
        events: Sequence[BookEvent] = (),
        bars: Mapping[str, Bar] | None = None,
        spreads: Spreads | None = None,
    ) -> list[Fill]:
        """Work the orders pending from sessions before `session` at its open, then the exits of the
        account's exit lots on the session's bar; return the new fills.

        `events`: the book events (splits, delistings, renames) known up to `session`; those the account has
        not seen yet take effect before the open's fills (`portfolio.apply_book_events`). A live broker books
        corporate actions itself and only reports them. `bars`: {symbol: (open, high, low)} of `session`,
        required when the account holds (or the open opens) exit lots. `spreads`: {session: {symbol: spread
        proxy}} (`execution.spreads_by_session` of the cleaned prices), required when the slippage model
        charges a fraction of the spread (`[costs] slippage_spread_fraction`): an order fills with its own
        session's proxy, an exit with `session`'s."""

    @abstractmethod
    def account(self, session: dt.date) -> PortfolioState:
        """The book after every fill whose fill session is <= `session`."""

    @abstractmethod
    def submit(
        self,
        orders: Iterable[Order] | pl.DataFrame,
        session: dt.date,
        levels: Mapping[str, ExitLevels] | pl.DataFrame | None = None,
    ) -> list[OrderEvent]:
        """Submit approved orders of `session` (after its close); idempotent by client order id: an id
        the broker already has returns the existing order's acceptance, never a second order. `levels`: the
        exit levels of approved buys by client order id (`Projection.exit_levels`, or the frame of
        `exits.exit_levels_for_orders`): each such buy's fill opens an exit lot (a bracket)."""

    @abstractmethod
    def events(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The executions frame (docs/design.md) of events with start <= event session <= end."""

    @abstractmethod
    def reset_from(self, session: dt.date) -> None:
        """Forget everything from `session` on, so the sessions can be re-run (a live broker refuses)."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release connections (nothing to do by default)."""

    def __enter__(self) -> BacktestBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS ledger_meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id VARCHAR NOT NULL, session DATE NOT NULL, symbol VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL, side VARCHAR NOT NULL, requested_qty BIGINT NOT NULL, qty BIGINT NOT NULL,
    ref_price VARCHAR, reason_code VARCHAR, stop_loss VARCHAR, take_profit VARCHAR
);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id VARCHAR NOT NULL, order_session DATE NOT NULL, session DATE NOT NULL,
    symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty BIGINT NOT NULL,
    price VARCHAR NOT NULL, commission VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS expirations (
    client_order_id VARCHAR NOT NULL, order_session DATE NOT NULL, session DATE NOT NULL,
    symbol VARCHAR NOT NULL, side VARCHAR NOT NULL, qty BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS account_snapshots (session DATE PRIMARY KEY, state VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS book_events (
    session DATE NOT NULL, event_id VARCHAR NOT NULL, symbol VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    ref_date DATE NOT NULL, qty_before BIGINT NOT NULL, qty_after BIGINT NOT NULL, ratio VARCHAR,
    price VARCHAR, cash VARCHAR NOT NULL, held BOOLEAN NOT NULL, record VARCHAR NOT NULL
);
-- a ledger written before exits: the orders' exit levels (NULL: none)
ALTER TABLE orders ADD COLUMN IF NOT EXISTS stop_loss VARCHAR;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS take_profit VARCHAR;
-- a ledger written before notional orders ([backtest] size_on = "fill"): NULL, a quantity order
ALTER TABLE orders ADD COLUMN IF NOT EXISTS notional VARCHAR;
"""

# A fractional ledger's quantity columns (`[backtest] shares = "fractional"`): DOUBLE instead of BIGINT. Altering
# a column to its own type is a no-op, so this runs on every open of a fractional ledger.
_QTY_COLUMNS = {
    "orders": ("requested_qty", "qty"),
    "fills": ("qty",),
    "expirations": ("qty",),
    "book_events": ("qty_before", "qty_after"),
}
_FRACTIONAL_SQL = "\n".join(
    f"ALTER TABLE {table} ALTER {column} TYPE DOUBLE;" for table, columns in _QTY_COLUMNS.items() for column in columns
)


def _table_cols(shares: ShareRule) -> dict[str, dict[str, pl.DataType]]:
    """`_TABLE_COLS` with the quantity columns of the share rule's dtype."""
    if not shares.fractional:
        return _TABLE_COLS
    return {
        table: {c: shares.dtype if c in _QTY_COLUMNS[table] else t for c, t in cols.items()}
        for table, cols in _TABLE_COLS.items()
    }


# Money is stored as exact decimal text (a DECIMAL column would come back with its scale's trailing
# zeros); SQL readers cast it (see `events`).
_ORDER_COLS = {
    "client_order_id": pl.String(),
    "session": pl.Date(),
    "symbol": pl.String(),
    "strategy": pl.String(),
    "side": pl.String(),
    "requested_qty": pl.Int64(),
    "qty": pl.Int64(),
    "ref_price": pl.String(),
    "reason_code": pl.String(),
    "stop_loss": pl.String(),
    "take_profit": pl.String(),
    "notional": pl.String(),
}
_FILL_COLS = {
    "client_order_id": pl.String(),
    "order_session": pl.Date(),
    "session": pl.Date(),
    "symbol": pl.String(),
    "side": pl.String(),
    "qty": pl.Int64(),
    "price": pl.String(),
    "commission": pl.String(),
}
_EXPIRY_COLS = {
    "client_order_id": pl.String(),
    "order_session": pl.Date(),
    "session": pl.Date(),
    "symbol": pl.String(),
    "side": pl.String(),
    "qty": pl.Int64(),
}

# A book event as the ledger keeps it: `record` is the event itself (exact JSON, replayed on open), the other
# columns what it did, for the executions frame (`_EVENTS_SQL`); `held`: it touched a position.
_BOOK_EVENT_COLS = {
    "session": pl.Date(),
    "event_id": pl.String(),
    "symbol": pl.String(),
    "kind": pl.String(),
    "ref_date": pl.Date(),
    "qty_before": pl.Int64(),
    "qty_after": pl.Int64(),
    "ratio": pl.String(),
    "price": pl.String(),
    "cash": pl.String(),
    "held": pl.Boolean(),
    "record": pl.String(),
}

_VALUES_BATCH = 200
_SNAPSHOT_DAYS = 21
"""Calendar days between the account snapshots a backtest stores on its way (besides the one after its last
fill session): reopening the ledger at, or asking `account` of, any earlier session replays at most this many
days of fills from the snapshot before it, never the years since the previous flush."""
_FLUSH_ROWS = 50_000  # buffered ledger rows that trigger a write without waiting for events()/close()
_TABLE_COLS = {
    "orders": _ORDER_COLS,
    "fills": _FILL_COLS,
    "expirations": _EXPIRY_COLS,
    "book_events": _BOOK_EVENT_COLS,
}

# The ledger events of a session come first (they take effect before its open): a split (qty = shares after,
# price = the ratio, new per old; also with no position, when it only rescaled the month's purchase counts,
# which the quota check reads), its cash in lieu (qty 0, price = the amount paid), a delisted security's close
# (a sell of qty at price, no commission) and a rename (the id names the new ticker).
_EVENTS_SQL = """
SELECT session, event_id AS client_order_id, symbol, CAST(NULL AS VARCHAR) AS side, 'split' AS event,
       ref_date AS order_session, qty_after AS qty, CAST(ratio AS DOUBLE) AS price,
       CAST(0 AS DOUBLE) AS commission, -1 AS rank
FROM book_events WHERE kind = 'split' AND session BETWEEN $start AND $end
UNION ALL
SELECT session, 'cash-in-lieu-' || strftime(session, '%Y%m%d') || '-' || symbol, symbol, 'sell', 'cash_in_lieu',
       ref_date, 0, CAST(cash AS DOUBLE), 0, -1
FROM book_events WHERE held AND kind = 'split' AND CAST(cash AS DECIMAL(38, 10)) > 0
  AND session BETWEEN $start AND $end
UNION ALL
SELECT session, event_id, symbol, 'sell', 'delisted_close', ref_date, qty_before, CAST(price AS DOUBLE), 0, -1
FROM book_events WHERE held AND kind = 'delisting' AND session BETWEEN $start AND $end
UNION ALL
SELECT session, event_id, symbol, NULL, 'renamed', ref_date, qty_before, NULL, 0, -1
FROM book_events WHERE held AND kind = 'rename' AND session BETWEEN $start AND $end
UNION ALL
SELECT session, client_order_id, symbol, side, 'accepted' AS event, session AS order_session, qty,
       CAST(NULL AS DOUBLE) AS price, CAST(0 AS DOUBLE) AS commission, 1 AS rank
FROM orders WHERE session BETWEEN $start AND $end
UNION ALL
SELECT session, client_order_id, symbol, side, 'filled', order_session, qty,
       CAST(price AS DOUBLE), CAST(commission AS DOUBLE), 0
FROM fills WHERE session BETWEEN $start AND $end
UNION ALL
SELECT session, client_order_id, symbol, side, 'expired', order_session, qty, NULL, 0, 0
FROM expirations WHERE session BETWEEN $start AND $end
ORDER BY session, rank, client_order_id, event
"""


def _sql_literal(value: object) -> str:
    """SQL literal for the ledger's value types (str, int, Decimal (a fractional quantity), date, None); strings
    are quoted with '' escapes."""
    if value is None:
        return "NULL"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"unexpected ledger value {value!r}")
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"unexpected ledger value {value!r}")


def _order_row(o: Order, levels: ExitLevels = NO_EXITS) -> tuple:
    ref = None if o.ref_price is None else str(o.ref_price)
    stop_level, take_level = levels
    stop = None if stop_level is None else str(stop_level)
    take = None if take_level is None else str(take_level)
    return (
        o.client_order_id,
        o.session,
        o.symbol,
        o.strategy,
        o.side,
        o.requested_qty,
        o.qty,
        ref,
        o.reason_code,
        stop,
        take,
        None if o.notional is None else str(o.notional),
    )


def _fill_row(f: Fill) -> tuple:
    return (
        f.client_order_id,
        f.order_session,
        f.session,
        f.symbol,
        f.side,
        f.qty,
        str(f.price),
        str(f.commission),
    )


def _expiry_row(e: OrderEvent) -> tuple:
    return (e.client_order_id, e.order_session, e.session, e.symbol, e.side, e.qty)


class _Held(Mapping[str, Qty]):
    """{symbol: shares held} of a state's positions, read through (`PortfolioState.held` builds the dict of
    every position, every session; an open looks up its sells' symbols only)."""

    __slots__ = ("_positions",)

    def __init__(self, positions: Mapping[str, Position]) -> None:
        self._positions = positions

    def __getitem__(self, symbol: str) -> Qty:
        return self._positions[symbol].qty

    def get(self, symbol: str, default: object = None) -> object:  # type: ignore[override]
        position = self._positions.get(symbol)
        return default if position is None else position.qty

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


def _due_opens(due: Iterable[Order], opens: Mapping[str, Decimal | float | None]) -> dict[str, Decimal]:
    """Exact opens of the due orders' symbols only: `execute_open` looks up nothing else, and a session's
    opens hold every listed symbol (~1,900 float -> Decimal conversions a session if all were taken). An
    open that is not positive is no open (the order expires), as in the planner."""
    symbols = [order.symbol for order in due]
    # a `SessionValues` (execution.opens_by_session) finds them all in one search
    prices = opens.values_of(symbols) if isinstance(opens, SessionValues) else [opens.get(s) for s in symbols]
    out = {}
    for symbol, price in zip(symbols, prices, strict=True):
        if price is not None and price > 0:
            out[symbol] = as_decimal(price)
    return out


def _levels_from_text(stop: str | None, take: str | None) -> ExitLevels:
    return ExitLevels(None if stop is None else Decimal(stop), None if take is None else Decimal(take))


def _levels_by_id(levels: Mapping[str, ExitLevels] | pl.DataFrame | None) -> dict[str, ExitLevels]:
    """{client order id: ExitLevels} from a mapping or an `exits.exit_levels_for_orders` frame (its float
    levels are tick prices: back to the exact Decimal through their shortest repr, `as_decimal`)."""
    if levels is None:
        return {}
    if not isinstance(levels, pl.DataFrame):
        return {cid: ExitLevels(*lv) for cid, lv in levels.items()}
    rows = levels.select("client_order_id", "stop_loss", "take_profit").iter_rows()
    return {
        cid: ExitLevels(None if stop is None else as_decimal(stop), None if take is None else as_decimal(take))
        for cid, stop, take in rows
    }


def _event_to_json(event: BookEvent) -> str:
    """A book event as exact text (Decimals as strings), for the ledger's replay."""
    fields: dict[str, object] = {"kind": event.kind, "symbol": event.symbol, "session": event.session.isoformat()}
    if isinstance(event, Split):
        fields |= {
            "ex_date": event.ex_date.isoformat(),
            "new": event.new,
            "old": event.old,
            "price": None if event.price is None else str(event.price),
            "source": event.source,
        }
    elif isinstance(event, Delisting):
        fields |= {
            "valid_to": event.valid_to.isoformat(),
            "security_id": event.security_id,
            "price": None if event.price is None else str(event.price),
        }
    else:
        fields |= {
            "valid_to": event.valid_to.isoformat(),
            "security_id": event.security_id,
            "new_symbol": event.new_symbol,
        }
    return json.dumps(fields, sort_keys=True)


def _event_from_json(text: str) -> BookEvent:
    data = json.loads(text)
    day = dt.date.fromisoformat
    price = None if data.get("price") is None else Decimal(data["price"])
    if data["kind"] == "split":
        return Split(
            data["symbol"], day(data["session"]), day(data["ex_date"]), data["new"], data["old"], price, data["source"]
        )
    if data["kind"] == "delisting":
        return Delisting(data["symbol"], day(data["session"]), day(data["valid_to"]), data["security_id"], price)
    return Rename(data["symbol"], day(data["session"]), day(data["valid_to"]), data["security_id"], data["new_symbol"])


def _book_event_row(event: BookEvent, effect: EventEffect | None) -> tuple:
    """The ledger row of a book event that changed the account (a position, or only the month's purchase
    counts: `held` false, no executions row). ref_date: a split's ex-date, a security's valid_to."""
    ref_date = event.ex_date if isinstance(event, Split) else event.valid_to
    ratio = str(Decimal(event.new) / Decimal(event.old)) if isinstance(event, Split) else None
    before, after, price, cash = (
        (effect.qty_before, effect.qty_after, str(effect.price), str(effect.cash)) if effect else (0, 0, None, "0")
    )
    return (
        event.session, event.event_id, event.symbol, event.kind, ref_date, before, after, ratio, price, cash,
        effect is not None, _event_to_json(event),
    )


def _state_to_json(state: PortfolioState) -> str:
    """Exact text: Decimals as strings, so a snapshot reads back equal to the state it was taken of."""
    return json.dumps(
        {
            "cash": str(state.cash),
            "realized_pnl": str(state.realized_pnl),
            "positions": {s: [to_json(p.qty), str(p.avg_cost)] for s, p in sorted(state.positions.items())},
            "monthly_buys": sorted([s, y, m, to_json(n)] for (s, y, m), n in state.monthly_buys.items()),
            "exits": lots_to_records(state.exits),
        }
    )


def _state_from_json(text: str, shares: ShareRule = WHOLE) -> PortfolioState:
    """`_state_to_json` back, under the book's share rule (fractional quantities are exact text)."""
    data = json.loads(text)
    return PortfolioState(
        cash=Decimal(data["cash"]),
        positions={s: (q, Decimal(c)) for s, (q, c) in data["positions"].items()},
        realized_pnl=Decimal(data["realized_pnl"]),
        monthly_buys={(s, y, m): n for s, y, m, n in data["monthly_buys"]},
        exits=lots_from_records(data.get("exits", [])),  # a snapshot from before exits has none
        shares=shares,
    )


class SimulatedBook(BacktestBook):
    """A simulated broker for a cash account (long only, no margin) with a DuckDB ledger at `path`
    (in memory when None or ':memory:').

    Approved orders submitted after session D's close fill at the open of the next `sync` session with the
    slippage and commission models; an order on a symbol without an open that session expires, a buy the
    cash cannot cover is cut to what it covers (the rest expires).

    The ledger is mirrored in memory on open and every call works on the mirror, so this object assumes it
    is the only writer while open (DuckDB allows one writing process per file anyway). Writes are
    *buffered*: `sync` and `submit` append their rows in memory, and the buffer goes to the file in one
    transaction at `events()`, `reset_from()`, `close()` (so also on leaving a `with` block, error or not)
    and whenever it holds `_FLUSH_ROWS` rows. A file commit per call cost ~2.5 ms, which a ten-year backtest
    paid twice per session (most of its broker time). A call's rows enter the buffer together, after the
    call has succeeded, so the file always holds the ledger as it was after some call: a process killed
    before `close()` loses the calls since the last write, never half a call. `close()` (or a context
    manager) is therefore required, not just tidy.
    """

    def __init__(
        self,
        path: str | None = None,
        initial_cash: Decimal | int | str = Decimal(100_000),
        slippage: SlippageModel | None = None,
        commission: CommissionModel | None = None,
        account: str = "paper",
        *,
        read_only: bool = False,
        cash_limited: bool = True,
        shares: str = "whole",
    ) -> None:
        self.path = path or ":memory:"
        # "fractional": quantities are Decimals to 1e-9 share (`[backtest] shares`, domain/quantity.py)
        self.shares = share_rule(shares)
        self._table_cols = _table_cols(self.shares)
        # False: buys fill whole whatever the cash (`[backtest] buying_power = "off"`, execution.execute_open)
        self.cash_limited = cash_limited
        # read only: `sync` and `submit` work on the in-memory mirror as usual, but nothing reaches the file,
        # so an asset that plans can project the book to an open without moving it (decision 0005)
        self.read_only = read_only
        self.slippage = slippage or SlippageModel()
        self.commission = commission or CommissionModel()
        self._con = duckdb.connect(self.path)
        # one thread for this file's database: the ledger's statements are batches of tens of thousands of rows
        # and one query of the executions, where a second thread costs more in coordination than it saves. A
        # setting, not a connect config, so another connection to the same file in the process still opens.
        self._con.execute("SET threads = 1")
        self._con.execute(_SCHEMA_SQL)
        meta = dict(self._con.execute("SELECT key, value FROM ledger_meta").fetchall())
        cash = as_decimal(initial_cash)
        if not meta:
            rows = [("account", account), ("initial_cash", str(cash)), ("shares", self.shares.name)]
            self._con.executemany("INSERT INTO ledger_meta VALUES (?, ?)", rows)
        elif meta.get("account") != account or as_decimal(meta["initial_cash"]) != cash:
            raise ValueError(
                f"ledger {self.path} belongs to account {meta.get('account')!r} with initial cash "
                f"{meta.get('initial_cash')}, not {account!r} with {cash}: use another ledger path, or delete it"
            )
        elif meta.get("shares", "whole") != self.shares.name:  # a ledger from before the key is whole shares
            raise ValueError(
                f"ledger {self.path} keeps {meta.get('shares', 'whole')} shares, not {self.shares.name} ([backtest] "
                "shares): use another ledger path, or delete it"
            )
        if self.shares.fractional:
            self._con.execute(_FRACTIONAL_SQL)
        self._account_id = account
        self._initial = PortfolioState.initial(cash, self.shares)
        self._buffer: dict[str, list[tuple]] = {table: [] for table in _TABLE_COLS}
        self._load()

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the buffered rows, then release the file (idempotent)."""
        try:
            self._flush()
        finally:
            self._con.close()

    def __enter__(self) -> SimulatedBook:
        return self

    def _load(self) -> None:
        """Open the account: the latest end-of-session snapshot plus the fills after it, the pending orders.

        O(pending orders + fills since the snapshot), not O(ledger): a daily run opening a ten-year ledger
        (~60,000 orders and fills) reads one snapshot row instead of rebuilding every order and replaying
        every fill (~1 s each time, four times per daily run). Every flush stores a snapshot.
        """
        # the account after sessions of the buffer's span, every `_SNAPSHOT_DAYS`: written with the buffer
        self._snapshots: dict[dt.date, PortfolioState] = {}
        self._levels: dict[str, ExitLevels] = {}  # of the orders in memory that have exit levels
        self._orders: dict[str, Order] = {
            o.client_order_id: o
            for o in self._select_orders(
                "NOT EXISTS (SELECT 1 FROM fills f WHERE f.client_order_id = o.client_order_id) "
                "AND NOT EXISTS (SELECT 1 FROM expirations e WHERE e.client_order_id = o.client_order_id)"
            )
        }
        self._pending: dict[str, Order] = dict(self._orders)
        (self._last_event_session,) = self._con.execute(
            "SELECT max(s) FROM (SELECT max(session) AS s FROM fills UNION ALL SELECT max(session) FROM expirations "
            "UNION ALL SELECT max(session) FROM book_events)"
        ).fetchone()
        (last_change,) = self._con.execute(
            "SELECT max(s) FROM (SELECT max(session) AS s FROM fills UNION ALL SELECT max(session) FROM book_events)"
        ).fetchone()
        (self._last_order_session,) = self._con.execute("SELECT max(session) FROM orders").fetchone()
        self._state_session: dt.date | None = last_change
        self._state = self._state_at(last_change) if last_change is not None else self._initial
        (self._snapshot_session,) = self._con.execute("SELECT max(session) FROM account_snapshots").fetchone()

    def _select_orders(self, where: str, params: dict | None = None) -> list[Order]:
        """The orders of the file matching `where`; their exit levels go to `self._levels`."""
        rows = self._con.execute(
            f"SELECT {', '.join('o.' + c for c in _ORDER_COLS)} FROM orders o WHERE {where}", params or {}
        ).fetchall()
        out = []
        qty_of = self.shares.qty
        for cid, session, symbol, strategy, side, req, qty, ref, reason, stop, take, notional in rows:
            out.append(
                Order(
                    client_order_id=cid,
                    session=session,
                    symbol=symbol,
                    strategy=strategy,
                    side=side,
                    requested_qty=qty_of(req),
                    qty=qty_of(qty),
                    ref_price=None if ref is None else Decimal(ref),
                    status="approved",
                    reason_code=reason,
                    notional=None if notional is None else Decimal(notional),
                )
            )
            if stop is not None or take is not None:
                self._levels[cid] = _levels_from_text(stop, take)
        return out

    def _state_at(self, session: dt.date) -> PortfolioState:
        """The account after every fill and book event with session <= `session`, from the file (flushed):
        the latest snapshot at or before `session`, then session by session after it the book events (before
        the open) and the fills, in the canonical order: exactly what `sync` did."""
        snap = self._con.execute(
            "SELECT session, state FROM account_snapshots WHERE session <= $s ORDER BY session DESC LIMIT 1",
            {"s": session},
        ).fetchone()
        base, after = (self._initial, None) if snap is None else (_state_from_json(snap[1], self.shares), snap[0])
        rows = self._con.execute(
            f"SELECT {', '.join('f.' + c for c in _FILL_COLS)}, o.stop_loss, o.take_profit FROM fills f "
            "LEFT JOIN orders o ON o.client_order_id = f.client_order_id AND f.side = 'buy' "
            "WHERE f.session <= $s AND ($a IS NULL OR f.session > $a)",
            {"s": session, "a": after},
        ).fetchall()
        fills: dict[dt.date, list[Fill]] = {}
        levels: dict[str, ExitLevels] = {}  # of the replayed entries: their fills open exit lots again
        qty_of = self.shares.qty
        for cid, osess, sess, sym, side, qty, price, comm, stop, take in rows:
            fill = Fill(cid, osess, sess, sym, side, qty_of(qty), Decimal(price), Decimal(comm))
            fills.setdefault(sess, []).append(fill)
            if stop is not None or take is not None:
                levels[cid] = _levels_from_text(stop, take)
        events: dict[dt.date, list[BookEvent]] = {}
        for sess, record in self._con.execute(
            "SELECT session, record FROM book_events WHERE session <= $s AND ($a IS NULL OR session > $a)",
            {"s": session, "a": after},
        ).fetchall():
            events.setdefault(sess, []).append(_event_from_json(record))
        state = base
        for day in sorted(fills.keys() | events.keys()):
            if day in events:
                state = apply_book_events(state, events[day], day).state
            # the open's fills and then the exits', as `sync` applied them (`fill_apply_order` ranks exits last)
            state = state.apply_fills(sorted(fills.get(day, []), key=fill_apply_order), levels)
        return state

    def _insert(self, table: str, rows: list[tuple], schema: dict[str, pl.DataType]) -> None:
        """One INSERT per batch: a literal multi-row VALUES statement for a session's handful of rows (about
        1 ms; binding the same rows as parameters, or registering an Arrow table, measured 4-8 ms, which a
        ten-year backtest pays twice per session), an Arrow scan for a large batch."""
        columns = ", ".join(schema)
        if len(rows) <= _VALUES_BATCH:
            values = ", ".join("(" + ", ".join(_sql_literal(v) for v in row) + ")" for row in rows)
            self._con.execute(f"INSERT INTO {table} ({columns}) VALUES {values}")
            return
        if self.shares.fractional:  # Decimal quantities as the DOUBLE they are stored as (exact: quantity.py)
            rows = [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in rows]
        by_column = dict(zip(schema, map(list, zip(*rows, strict=True)), strict=True))  # several times a row frame's speed
        self._con.register("_batch", pl.DataFrame(by_column, schema=schema).to_arrow())
        try:
            self._con.execute(f"INSERT INTO {table} ({columns}) SELECT * FROM _batch")
        finally:
            self._con.unregister("_batch")

    def _write(self, rows: dict[str, list[tuple]]) -> None:
        """Buffer one call's rows ({table: rows}), all together and last, once the mirror is updated: if a
        write fails, buffer and mirror still agree and the next flush retries."""
        for table, new in rows.items():
            self._buffer[table] += new
        if sum(len(b) for b in self._buffer.values()) >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Write the buffer in one transaction: a crash leaves the file before or after it, never between.
        A read-only book writes nothing (its projection is dropped with the object)."""
        if self.read_only:
            return
        batches = [(table, rows, self._table_cols[table]) for table, rows in self._buffer.items() if rows]
        if not batches:
            return
        self._con.execute("BEGIN TRANSACTION")
        try:
            for table, rows, schema in batches:
                self._insert(table, rows, schema)
            snapshots = dict(self._snapshots)
            if (self._buffer["fills"] or self._buffer["book_events"]) and self._state_session is not None:
                # the account after the last fill session: what the next open of the ledger starts from
                snapshots[self._state_session] = self._state
            if snapshots:
                self._insert_snapshots(snapshots)
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        for rows in self._buffer.values():
            rows.clear()
        self._snapshots.clear()

    def _insert_snapshots(self, snapshots: Mapping[dt.date, PortfolioState]) -> None:
        frame = pl.DataFrame(
            [(day, _state_to_json(state)) for day, state in sorted(snapshots.items())],
            schema={"session": pl.Date(), "state": pl.String()},
            orient="row",
        )
        self._con.register("_snapshots", frame.to_arrow())
        try:
            self._con.execute("INSERT OR REPLACE INTO account_snapshots SELECT session, state FROM _snapshots")
        finally:
            self._con.unregister("_snapshots")

    def _remember_state(self, session: dt.date) -> None:
        """Buffer a snapshot of the account after `session` when the last stored one is `_SNAPSHOT_DAYS` old."""
        last = self._snapshot_session
        if last is None or (session - last).days >= _SNAPSHOT_DAYS:
            self._snapshots[session] = self._state
            self._snapshot_session = session

    # -- Broker ------------------------------------------------------------------------------------

    @property
    def account_id(self) -> str:
        return self._account_id

    @collector_paused
    def sync(
        self,
        session: dt.date,
        opens: Mapping[str, Decimal | float],
        events: Sequence[BookEvent] = (),
        bars: Mapping[str, Bar] | None = None,
        spreads: Spreads | None = None,
    ) -> list[Fill]:
        """Apply the book events dated after the ledger's last event and up to `session` (those at or before
        it are in the account already: nothing traded since, so applying them now is applying them on their
        own session), then work the due orders at the open, then the exits of the account's lots on the
        session's `bars` ({symbol: (open, high, low)}; `exits.execute_exits`). A book event is recorded when it
        changed the account (a position, or the month's purchase counts).

        Working a session's exits again is a no-op (a lot its bar triggered is gone; the others stay
        untriggered on the same bar), so a session may be synced twice; a session before the ledger's last
        event is not worked (its account is `account(session)`). `spreads` (see `BacktestBook.sync`): due
        orders of several order sessions (a session that was never synced) each fill with their own
        session's proxies, in `execution.fill_priority` order (oldest session first), as one open works them."""
        due = [o for o in self._pending.values() if o.session < session]
        todays = sorted(
            (e for e in events_between(events, self._last_event_session, session)), key=event_order
        )
        past = self._last_event_session is not None and self._last_event_session > session
        lots = not past and (bool(self._state.exits) or any(o.client_order_id in self._levels for o in due))
        if not due and not todays and not lots:
            return []
        if due and past:
            raise ValueError(f"sync({session}) after events at {self._last_event_session}: reset_from first")
        if lots and bars is None:
            raise ValueError(
                f"sync({session}): the book holds exit lots (stop-loss / take-profit) but got no bars to work "
                "them on: pass the session's {symbol: (open, high, low)}, or reset_from the first session of "
                "a backtest without exits"
            )
        state, changed = self._state, False
        booked: list[tuple] = []
        expired: list[OrderEvent] = []
        working = due
        for event in todays:
            outcome = apply_book_events(state, [event], session, working)
            if outcome.state != state:
                booked.append(_book_event_row(event, outcome.effects[0] if outcome.effects else None))
                changed = True
            state, working = outcome.state, outcome.pending
            expired += outcome.expired
        if self.slippage.uses_spread and spreads is None and (working or lots):
            raise ValueError(
                f"sync({session}): the slippage model charges a fraction of the spread: pass the spreads "
                "({session: {symbol: proxy}}, execution.spreads_by_session)"
            )
        result = self._work_open(working, opens, session, state, spreads)
        new = result.fills  # apply_fills puts them in `fill_apply_order` itself
        levels = {o.client_order_id: self._levels[o.client_order_id] for o in due if o.client_order_id in self._levels}
        state = state.apply_fills(new, levels)
        exit_fills: list[Fill] = []
        if state.exits and bars is not None and not past:
            exit_fills = execute_exits(
                state.exits,
                bars,
                session,
                state.held(),
                self.slippage,
                self.commission,
                spreads=None if spreads is None else spreads.get(session, {}),
            )
            state = state.apply_fills(exit_fills)
        for order in due:
            del self._pending[order.client_order_id]
            self._levels.pop(order.client_order_id, None)
        if new or changed or exit_fills:
            self._state, self._state_session = state, session
            if not self.read_only:
                self._remember_state(session)
        if due or booked or exit_fills:
            self._last_event_session = session
        fills = [*result.fills, *exit_fills]
        self._write(
            {
                "book_events": booked,
                "fills": [_fill_row(f) for f in fills],
                "expirations": [_expiry_row(e) for e in [*expired, *result.expired]],
            }
        )
        return fills

    def _work_open(
        self,
        working: list[Order],
        opens: Mapping[str, Decimal | float],
        session: dt.date,
        state: PortfolioState,
        spreads: Spreads | None,
    ) -> OpenResult:
        """`execute_open` of the due orders; with a spread slippage one call per order session, oldest first,
        each with its session's proxies and the cash and shares the calls before left: `fill_priority` ranks
        the order session first, so this is what one call would do if it could take per-session spreads."""
        if spreads is None or not self.slippage.uses_spread:
            return execute_open(
                working,
                _due_opens(working, opens),
                session,
                state.cash,
                _Held(state.positions),
                self.slippage,
                self.commission,
                cash_limited=self.cash_limited,
            )
        cash, held = state.cash, state.held()
        out = OpenResult()
        for order_session in sorted({o.session for o in working}):
            group = [o for o in working if o.session == order_session]
            result = execute_open(
                group,
                _due_opens(group, opens),
                session,
                cash,
                held,
                self.slippage,
                self.commission,
                cash_limited=self.cash_limited,
                spreads=spreads.get(order_session, {}),
            )
            for fill in result.fills:
                sign = 1 if fill.side == "sell" else -1
                cash += sign * fill.qty * fill.price - fill.commission
                held[fill.symbol] = held.get(fill.symbol, 0) - sign * fill.qty
            out.fills.extend(result.fills)
            out.expired.extend(result.expired)
        return out

    def account(self, session: dt.date) -> PortfolioState:
        """The latest state is kept, so asking for the current session costs nothing; an earlier session
        starts from the latest snapshot before it and replays the fills after that."""
        if self._state_session is None or session >= self._state_session:
            return self._state
        self._flush()
        return self._state_at(session)

    @collector_paused
    def submit(
        self,
        orders: Iterable[Order] | pl.DataFrame,
        session: dt.date,
        levels: Mapping[str, ExitLevels] | pl.DataFrame | None = None,
    ) -> list[OrderEvent]:
        """Denied orders are skipped: they are our own decisions and never leave the house. The exit levels
        of a new order are kept with it (`levels`: by client order id; those of other orders are ignored);
        a re-submitted order keeps the levels it was first submitted with."""
        records = orders_from_frame(orders) if isinstance(orders, pl.DataFrame) else list(orders)
        by_id = _levels_by_id(levels)
        accepted: list[OrderEvent] = []
        new: dict[str, Order] = {}
        self._remember([o for o in records if o.approved])
        for order in records:
            if not order.approved:
                continue
            if order.session != session:
                raise ValueError(
                    f"order {order.client_order_id} is for {order.session}, submitted at {session}"
                )
            known = self._orders.get(order.client_order_id) or new.get(order.client_order_id)
            if known is None:
                new[order.client_order_id] = known = order
            accepted.append(OrderEvent.accepted(known))
        if new:
            if self._last_event_session is not None and session < self._last_event_session:
                raise ValueError(
                    f"new orders for {session}, but the ledger has events at {self._last_event_session}: "
                    "reset_from first"
                )
            self._orders.update(new)
            self._pending.update(new)
            for cid in new.keys() & by_id.keys():
                if by_id[cid] != NO_EXITS:
                    self._levels[cid] = by_id[cid]
            self._write({"orders": [_order_row(o, self._levels.get(o.client_order_id, NO_EXITS)) for o in new.values()]})
        return accepted

    def _remember(self, orders: list[Order]) -> None:
        """Bring the orders the file already has under these ids into memory (an idempotent re-submission
        of orders already filled or expired; pending and new ones are in memory). An id carries its order's
        session, so ids of sessions after the file's last order cannot be there: a backtest never asks."""
        last = self._last_order_session
        unknown = [o.client_order_id for o in orders if o.client_order_id not in self._orders
                   and last is not None and o.session <= last]
        if unknown:
            for order in self._select_orders("o.client_order_id IN (SELECT unnest($ids))", {"ids": unknown}):
                self._orders[order.client_order_id] = order

    @collector_paused
    def events(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        self._flush()
        frame = self._con.execute(_EVENTS_SQL, {"start": start, "end": end}).pl()
        return frame.select([pl.col(c).cast(t) for c, t in execution_schema(self.shares).items()])

    def reset_from(self, session: dt.date) -> None:
        """Make the ledger what it was right after session-1's close: delete the orders of `session` and
        later with their fills and expiries, the book events from `session` on, and also undo what the opens
        from `session` on did to earlier orders (those become pending again, so the next `sync(session, ...)`
        works them afresh)."""
        if self.read_only:
            raise ValueError(f"reset_from({session}) on a read-only book: only the executions asset moves it")
        self._flush()
        self._con.execute("BEGIN TRANSACTION")
        try:
            for table in ("fills", "expirations"):
                self._con.execute(
                    f"DELETE FROM {table} WHERE order_session >= $s OR session >= $s", {"s": session}
                )
            self._con.execute("DELETE FROM book_events WHERE session >= $s", {"s": session})
            self._con.execute("DELETE FROM orders WHERE session >= $s", {"s": session})
            self._con.execute("DELETE FROM account_snapshots WHERE session >= $s", {"s": session})
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._load()

    def pending_orders(self) -> list[Order]:
        """Orders accepted and not yet worked (for inspection and tests)."""
        return sorted(self._pending.values(), key=lambda o: (o.session, o.client_order_id))
