"""`AlpacaBroker`: the `Broker` interface on Alpaca's Trading API through alpaca-py's `TradingClient`
(decision 0005). Plain Python, no Dagster; the paper API unless a URL says otherwise.

What alpaca-py 0.44.0 does and does not do for us (pinned exactly: the private attributes below; see
../shared/docs/alpaca-notes.md):

* No timeout: `RESTClient` calls `self._session.request(...)` without one, so a hung server hangs the run. We
  wrap that one bound method of the client's own `requests.Session` (`_session`, private in 0.44.0) to add a
  default timeout and to take a token from the client-side rate limiter before every HTTP request, the SDK's
  own retries included.
* Retries: 429 and 504 are retried by the SDK (3 more attempts, a fixed `_retry_wait` sleep, private); the
  POST of an order included, which is safe only because every order carries a deterministic
  `client_order_id` and Alpaca refuses a second one with 422 "client_order_id must be unique". Connection
  errors are not retried. What still fails after that is mapped here (`_submit_one`): duplicate ->
  `DuplicateClientOrderId`; 5xx / 429 / timeout / dropped connection -> `SubmitUncertain` (the shared
  `Broker.submit` looks the id up before sending again); other 4xx -> `OrderRejected(code, message)`.
* Rate limit: Alpaca allows 200 requests per minute per key. `max_requests_per_minute` (default 190) is
  enforced by `RequestRateLimiter`: no more than that many requests in any 60 seconds (a token comes back
  60 s after it was spent), so a 500-order day never meets a 429.
* Errors: `APIError`'s text is the raw body, which may be JSON without a `code` or a gateway's HTML page;
  bodies are parsed defensively. Messages never contain the key or the secret, and are raised outside the
  `except` block, so no chained exception (which holds the request and its headers) rides along.
* Activities: `TradingClient` has no account-activities method and the SDK's `TradeActivity` model requires
  an `account_id` the Trading API does not send; `fills()` calls `GET /v2/account/activities/FILL` with
  `client.get` and parses the rows itself.
* A price off the tick (more than 2 decimals at or above $1, 4 below; `round_to_tick`) is refused here, as
  Alpaca (422, 42210000) and the built-in paper broker refuse it, without a request: rounding it would send a
  price nobody chose (a buy limit paying more, a stop triggering earlier). Our own prices are rounded to the
  tick where they are computed.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import pydantic
import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from trading_dagster.domain.broker_records import (
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
from trading_dagster.domain.execution import round_price
from trading_dagster.resources.brokers.base import (
    Broker,
    DuplicateClientOrderId,
    OrderRejected,
    SubmitUncertain,
)

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRY_WAIT_SECONDS = 3.0  # alpaca-py's own default
DEFAULT_MAX_REQUESTS_PER_MINUTE = 190  # Alpaca: 200 per minute per key; 10 to spare
ORDERS_PAGE = 500  # Alpaca's maximum `limit` for GET /v2/orders
ACTIVITIES_PAGE = 100  # Alpaca's maximum `page_size` for activities
DUPLICATE_MESSAGE = "client_order_id must be unique"

T = TypeVar("T")


def round_to_tick(price: Decimal) -> Decimal:
    """The nearest valid price (half up), by the one tick rule (`execution.round_price`: cents at or above
    $1, hundredths of a cent below), written as a cent price when it rounds up to $1."""
    rounded = round_price(price, ROUND_HALF_UP) if price > 0 else price
    if rounded >= 1:  # 0.99996 rounds to 1.0000: write it as a cent price
        rounded = rounded.quantize(Decimal("0.01"))
    if rounded <= 0:
        raise ValueError(f"price {price} rounds to {rounded}: below the smallest tick")
    return rounded


class RequestRateLimiter:
    """At most `per_minute` requests in any 60 seconds: each request spends a token that comes back 60 s
    later (a token bucket of `per_minute` tokens refilled per token, which, unlike a steadily refilled bucket,
    can never let more than `per_minute` through in one window). `sleep` and `clock` are injectable."""

    def __init__(
        self,
        per_minute: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = 60.0,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.per_minute = per_minute
        self.window = window_seconds
        self._sleep = sleep
        self._clock = clock
        self._spent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self) -> None:
        with self._lock:  # one caller at a time: the waits queue up in order
            while True:
                now = self._clock()
                while self._spent and self._spent[0] <= now - self.window:
                    self._spent.popleft()
                if len(self._spent) < self.per_minute:
                    self._spent.append(now)
                    return
                wait = self._spent[0] + self.window - now
                self.waited_seconds += wait
                self._sleep(wait)


class AlpacaBroker(Broker):
    """An Alpaca account (paper unless `paper=False` and a live URL). `url` None = Alpaca's paper or live
    host by `paper`; otherwise the host root without /v2 (a local test server)."""

    def __init__(
        self,
        key: str,
        secret: str,
        *,
        url: str | None = None,
        paper: bool = True,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        retry_wait_seconds: float = DEFAULT_RETRY_WAIT_SECONDS,
        max_requests_per_minute: int | None = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not key or not secret:
            raise ValueError(
                "Alpaca trading needs an API key id and a secret key (APCA_API_KEY_ID / APCA_API_SECRET_KEY)"
            )
        self._key = key
        self._secret = secret
        self._paper = paper
        self.url = url or (PAPER_URL if paper else LIVE_URL)
        self.timeout_seconds = timeout_seconds
        self.limiter = (
            RequestRateLimiter(max_requests_per_minute, sleep=sleep, clock=clock)
            if max_requests_per_minute
            else None
        )
        self._client = TradingClient(key, secret, paper=paper, url_override=url)
        # Private attribute of alpaca.common.rest.RESTClient (alpaca-py==0.44.0, pinned): the seconds slept
        # between the SDK's retries of a 429 / 504. Tests use 0.
        self._client._retry_wait = retry_wait_seconds  # type: ignore[assignment]
        self._install_session_hook()
        self._account_id: str | None = None
        self.requests_made = 0

    def _install_session_hook(self) -> None:
        # alpaca-py 0.44.0 (pinned) sends every request through `self._session.request(method, url, **opts)`
        # with no timeout; this wraps that bound method of the client's own session only.
        session: requests.Session = self._client._session
        send = session.request
        limiter = self.limiter
        timeout = self.timeout_seconds

        def request(method: str, url: str, **kwargs: Any) -> requests.Response:
            if limiter is not None:
                limiter.acquire()
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            self.requests_made += 1
            return send(method, url, **kwargs)

        session.request = request  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"AlpacaBroker(url={self.url!r}, paper={self._paper}, key={self._key[:4]}...)"

    # -- errors --------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in (self._secret, self._key):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _call(self, what: str, fn: Callable[[], T], *, tolerate: tuple[int, ...] = ()) -> T | _Refused:
        """Run one SDK call; an HTTP status in `tolerate` comes back as `_Refused`, any other failure becomes a
        BrokerError naming `what`, the status and Alpaca's code (never a secret; no chained exception)."""
        try:
            return fn()
        except APIError as exc:
            status, code, message = _api_error(exc)
            if status in tolerate:
                return _Refused(status, code, self._redact(message))
            error = BrokerError(self._redact(f"{what}: HTTP {status}{_code(code)}: {message}"))
        except requests.Timeout:
            error = BrokerError(f"{what}: no answer within {self.timeout_seconds:g} s")
        except requests.RequestException as exc:
            error = BrokerError(self._redact(f"{what}: {type(exc).__name__} talking to {self.url}"))
        except pydantic.ValidationError as exc:
            error = BrokerError(self._redact(f"{what}: malformed reply ({exc.error_count()} field errors)"))
        raise error

    # -- identity ------------------------------------------------------------------------------------------

    @property
    def account_id(self) -> str:
        """Alpaca's account number (read once from GET /v2/account)."""
        if self._account_id is None:
            acct = self._call("get account", self._client.get_account)
            self._account_id = str(acct.account_number)  # type: ignore[union-attr]
        return self._account_id

    @property
    def paper(self) -> bool:
        return self._paper

    # -- reads ---------------------------------------------------------------------------------------------

    def clock(self) -> BrokerClock:
        c: Any = self._call("get clock", self._client.get_clock)
        return BrokerClock(_utc(c.timestamp), bool(c.is_open), _utc(c.next_open), _utc(c.next_close))

    def account(self) -> BrokerAccount:
        a: Any = self._call("get account", self._client.get_account)
        self._account_id = str(a.account_number)
        status = getattr(a.status, "value", a.status)
        return BrokerAccount(
            account_id=str(a.account_number),
            status=str(status),
            cash=_dec(a.cash) or Decimal(0),
            buying_power=_dec(a.buying_power) or Decimal(0),
            equity=_dec(a.equity) or Decimal(0),
            trading_blocked=bool(a.trading_blocked),
            last_equity=_dec(a.last_equity),  # the equity at the previous session's close
        )

    def positions(self) -> list[BrokerPosition]:
        rows: Any = self._call("get positions", self._client.get_all_positions)
        return [
            BrokerPosition(
                symbol=p.symbol,
                qty=Decimal(str(p.qty)),
                avg_entry_price=Decimal(str(p.avg_entry_price)),
                market_value=_dec(p.market_value),
                current_price=_dec(p.current_price),
            )
            for p in rows
        ]

    def orders(
        self,
        *,
        status: Literal["open", "closed", "all"] = "all",
        after: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[BrokerOrder]:
        """All pages of GET /v2/orders (500 a page, oldest first, bracket legs nested under their entry).

        The next page starts 1 µs before the last order's submission time (`after` is exclusive and Alpaca's
        nanoseconds arrive truncated to microseconds), so an order sharing that time is not lost; the
        overlap is dropped by id. A full page with nothing new (over 500 orders in one microsecond) raises."""
        seen: dict[str, BrokerOrder] = {}
        cursor = after
        while True:
            request = GetOrdersRequest(
                status=QueryOrderStatus(status),
                limit=ORDERS_PAGE,
                after=cursor,
                until=until,
                direction=Sort.ASC,
                nested=True,
            )
            page: Any = self._call("list orders", lambda r=request: self._client.get_orders(r))
            new = 0
            for o in page:
                if str(o.id) not in seen:
                    seen[str(o.id)] = _order(o)
                    new += 1
            if len(page) < ORDERS_PAGE:
                break
            if new == 0:
                raise BrokerError(f"list orders: more than {ORDERS_PAGE} orders share one submission time")
            cursor = _utc(page[-1].submitted_at) - dt.timedelta(microseconds=1)
        return sorted(seen.values(), key=lambda o: o.submitted_at)

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        o: Any = self._call(
            f"get order {client_order_id}",
            lambda: self._client.get_order_by_client_id(client_order_id),
            tolerate=(404,),
        )
        return None if isinstance(o, _Refused) else _order(o)

    def fills(
        self, *, after: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[BrokerFill]:
        """FILL activities (each execution once, oldest first), all pages; the client order id comes from one
        listing of the orders since `after` (None for an order older than that)."""
        params: dict[str, Any] = {"direction": "asc", "page_size": ACTIVITIES_PAGE}
        if after is not None:
            params["after"] = _utc(after).isoformat()
        if until is not None:
            params["until"] = _utc(until).isoformat()
        rows: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            query = dict(params, **({"page_token": token} if token else {}))
            page: Any = self._call(
                "list fills", lambda q=query: self._client.get("/account/activities/FILL", q)
            )
            if not isinstance(page, list):
                raise BrokerError("list fills: malformed reply (not a list)")
            rows.extend(page)
            if len(page) < ACTIVITIES_PAGE:
                break
            token = str(page[-1]["id"])
        client_ids: dict[str, str] = {}
        if rows:
            for o in self.orders(status="all", after=after - dt.timedelta(days=7) if after else None):
                client_ids[o.id] = o.client_order_id
                for leg in o.legs:
                    client_ids[leg.id] = leg.client_order_id
        fills: dict[str, BrokerFill] = {}
        for row in rows:
            fill = _fill(row, client_ids)
            fills.setdefault(fill.execution_id, fill)
        return sorted(fills.values(), key=lambda f: (f.transaction_time, f.execution_id))

    # -- writes --------------------------------------------------------------------------------------------

    def cancel(self, order_id: str) -> CancelResult:
        """204 -> ok (a request: the order may still fill); 404 unknown and 422 no longer cancelable -> not ok."""
        try:
            result = self._call(
                f"cancel {order_id}", lambda: self._client.cancel_order_by_id(order_id), tolerate=(404, 422)
            )
        except ValueError:  # alpaca-py refuses a non-UUID id before sending
            return CancelResult(order_id, False, 404, "not an Alpaca order id")
        if isinstance(result, _Refused):
            return CancelResult(order_id, False, result.status, result.message)
        return CancelResult(order_id, True, 200)

    def cancel_all(self) -> list[CancelResult]:
        rows: Any = self._call("cancel all orders", self._client.cancel_orders)
        return [
            CancelResult(str(r.id), 200 <= r.status < 300, int(r.status), _body_message(r.body)) for r in rows
        ]

    def close_all_positions(self, *, cancel_orders: bool = True) -> list[CloseResult]:
        rows: Any = self._call(
            "close all positions", lambda: self._client.close_all_positions(cancel_orders=cancel_orders)
        )
        out = []
        for r in rows:
            status = int(r.status) if r.status is not None else 0
            ok = 200 <= status < 300
            if isinstance(r.body, Order):
                out.append(CloseResult(str(r.symbol), ok, status, _order(r.body), None))
            else:
                out.append(CloseResult(str(r.symbol), ok, status, None, getattr(r.body, "message", None)))
        return out

    def _submit_one(self, request: OrderRequest) -> BrokerOrder:
        try:
            alpaca_request = build_order_request(request)
        except (ValueError, pydantic.ValidationError) as exc:
            raise OrderRejected(None, f"refused before sending: {_first_line(exc)}") from None
        what = f"submit {request.client_order_id}"
        outcome: Exception
        try:
            return _order(self._client.submit_order(alpaca_request))  # type: ignore[arg-type]
        except APIError as exc:
            status, code, message = _api_error(exc)
            message = self._redact(message)
            if status == 422 and DUPLICATE_MESSAGE in message:
                outcome = DuplicateClientOrderId(f"{what}: {message}")
            elif status == 429 or status >= 500:
                outcome = SubmitUncertain(f"{what}: HTTP {status}{_code(code)}: {message}")
            elif status in (400, 403, 422):
                outcome = OrderRejected(code, message)
            else:
                outcome = BrokerError(f"{what}: HTTP {status}{_code(code)}: {message}")
        except requests.Timeout:
            outcome = SubmitUncertain(f"{what}: no answer within {self.timeout_seconds:g} s")
        except requests.ConnectionError as exc:
            outcome = SubmitUncertain(self._redact(f"{what}: {type(exc).__name__} (connection lost)"))
        except requests.RequestException as exc:
            outcome = SubmitUncertain(self._redact(f"{what}: {type(exc).__name__}"))
        except pydantic.ValidationError as exc:
            outcome = BrokerError(self._redact(f"{what}: malformed reply ({exc.error_count()} field errors)"))
        raise outcome

    def close(self) -> None:
        self._client._session.close()


# --------------------------------------------------------------------------------------------------------
# Requests out
# --------------------------------------------------------------------------------------------------------


def _price(value: Decimal | None) -> float | None:
    if value is None:
        return None
    if round_to_tick(value) != value:
        raise OrderRejected(
            "42210000", f"invalid price {value}. sub-penny increment does not fulfill minimum pricing criteria"
        )
    return float(value)


def build_order_request(r: OrderRequest) -> Any:
    """The alpaca-py request for one of our orders (prices on a valid tick; alpaca-py sends floats)."""
    common: dict[str, Any] = {
        "symbol": r.symbol,
        "side": OrderSide(r.side),
        "time_in_force": TimeInForce(r.time_in_force),
        "client_order_id": r.client_order_id,
    }
    if r.qty is not None:
        common["qty"] = float(r.qty)
    else:
        common["notional"] = float(r.notional)  # type: ignore[arg-type]
    if r.order_class != "simple":
        common["order_class"] = OrderClass(r.order_class)
    if r.take_profit is not None:
        common["take_profit"] = TakeProfitRequest(limit_price=_price(r.take_profit))  # type: ignore[arg-type]
    if r.stop_loss is not None:
        common["stop_loss"] = StopLossRequest(
            stop_price=_price(r.stop_loss),  # type: ignore[arg-type]
            limit_price=_price(r.stop_loss_limit),
        )
    if r.type == "market":
        return MarketOrderRequest(**common)
    if r.type == "limit":
        return LimitOrderRequest(limit_price=_price(r.limit_price), **common)
    if r.type == "stop":
        return StopOrderRequest(stop_price=_price(r.stop_price), **common)
    if r.type == "stop_limit":
        return StopLimitOrderRequest(
            stop_price=_price(r.stop_price), limit_price=_price(r.limit_price), **common
        )
    return TrailingStopOrderRequest(
        trail_price=_price(r.trail_price),
        trail_percent=None if r.trail_percent is None else float(r.trail_percent),
        **common,
    )


# --------------------------------------------------------------------------------------------------------
# Replies in
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refused:
    """An HTTP refusal a caller asked to handle itself (`_call(..., tolerate=...)`)."""

    status: int
    code: str | None
    message: str


def _api_error(exc: APIError) -> tuple[int, str | None, str]:
    """(status, Alpaca's code or None, message) from an APIError, whatever its body (JSON without a code,
    a gateway's HTML, nothing)."""
    status = getattr(exc, "status_code", None) or 0
    text = str(exc)
    try:
        body = json.loads(text)
    except ValueError:
        flat = " ".join(text.split())
        return int(status), None, (flat[:200] + "...") if len(flat) > 200 else (flat or "(empty body)")
    if not isinstance(body, dict):
        return int(status), None, text[:200]
    code = body.get("code")
    message = body.get("message")
    return (
        int(status),
        None if code is None else str(code),
        str(message) if message is not None else text[:200],
    )


def _code(code: str | None) -> str:
    return f" (code {code})" if code else ""


def _body_message(body: Any) -> str | None:
    if isinstance(body, Mapping) and body.get("message") is not None:
        return str(body["message"])
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise BrokerError(f"malformed number in a reply: {value!r}") from None


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _order(o: Order) -> BrokerOrder:
    otype = o.type or o.order_type
    return BrokerOrder(
        id=str(o.id),
        client_order_id=o.client_order_id,
        symbol=str(o.symbol),
        side=_enum(o.side),
        type=_enum(otype),
        time_in_force=_enum(o.time_in_force),
        status=_enum(o.status),
        qty=_dec(o.qty),
        notional=_dec(o.notional),
        filled_qty=_dec(o.filled_qty) or Decimal(0),
        filled_avg_price=_dec(o.filled_avg_price),
        submitted_at=_utc(o.submitted_at),
        updated_at=_utc(o.updated_at),
        filled_at=_utc(o.filled_at) if o.filled_at else None,
        canceled_at=_utc(o.canceled_at) if o.canceled_at else None,
        order_class=_enum(o.order_class) or "simple",
        limit_price=_dec(o.limit_price),
        stop_price=_dec(o.stop_price),
        legs=tuple(_order(leg) for leg in (o.legs or ())),
    )


def _parse_time(text: str) -> dt.datetime:
    """RFC 3339 as Alpaca writes it (`Z`, up to nanoseconds; Python keeps microseconds)."""
    return _utc(dt.datetime.fromisoformat(text))


def _fill(row: Mapping[str, Any], client_ids: Mapping[str, str]) -> BrokerFill:
    """One FILL activity (our own parsing: the SDK's TradeActivity requires an account_id Alpaca omits)."""
    try:
        order_id = str(row["order_id"])
        return BrokerFill(
            execution_id=str(row["id"]),
            order_id=order_id,
            client_order_id=client_ids.get(order_id),
            symbol=str(row["symbol"]),
            side=str(row["side"]),
            qty=Decimal(str(row["qty"])),
            price=Decimal(str(row["price"])),
            transaction_time=_parse_time(str(row["transaction_time"])),
            cum_qty=_dec(row.get("cum_qty")),
            leaves_qty=_dec(row.get("leaves_qty")),
        )
    except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
        raise BrokerError(f"list fills: malformed FILL activity ({type(exc).__name__}: {exc})") from None
