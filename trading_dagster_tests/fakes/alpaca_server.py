"""An Alpaca-compatible HTTP server on 127.0.0.1, for driving the real alpaca-py client in tests.

What it serves (market-data API, the part the pipeline uses today):

* `GET /v2/stocks/bars`: daily bars (`timeframe=1Day`) for several symbols from a polars frame, with
  `start`/`end` (RFC 3339, inclusive), `limit`, `page_token`/`next_page_token`, `feed`, `adjustment`, `sort`.
* `GET /v1/corporate-actions`: forward and reverse splits from a polars frame, paginated the same way.
* `GET /v2/assets` (trading API): the asset list set with `set_assets` (a list of dicts), filtered by `status`,
  `asset_class` and `exchange` as Alpaca does; every status when `status` is not given [FAKE: Alpaca's
  default is not documented unambiguously]. Not paginated (Alpaca returns the whole list at once).

It is a small class with a route table (`add_route`), so the trading API (`/v2/account`, `/v2/orders`, ...)
can be added to the same server later: alpaca-py's data and trading clients can both point at one port.

Faithfulness (see ../shared/docs/alpaca-notes.md): paths, query encodings and the JSON shapes follow what
alpaca-py 0.44.0 sends and parses (bars `{"bars": {"SYM": [{t,o,h,l,c,v,n,vw}]}, "next_page_token"}`, `bars`
is `{}` when empty, `n`/`vw` always present, daily bars stamped at midnight New York in UTC; corporate actions
`{"corporate_actions": {"forward_splits": [...], "reverse_splits": [...]}, "next_page_token"}` with UUID ids
and numeric rates). Choices marked [FAKE] below are placeholders where nothing authoritative was found:
exact error wording, 400 vs 422 for a given bad parameter, the page-token format, and that the
corporate-actions `start`/`end` window applies to `process_date`.

Test hooks: `fail_next` (the next N requests get 429/500/504/... before reaching a route; 429 is what
alpaca-py retries), `stall_next` (answer late, for client timeouts), `requests` (a log of what arrived, the
secret header never recorded) and `errors` (exceptions raised inside handlers: a fake bug, asserted empty by
the fixture). For the trading API (`alpaca_trading.py`): `add_before_hook` (runs before faults and routes: a
server-side rate limit), `FakeResponse(drop_connection=True)` (the socket closes without a reply; logged with
status 0) and `sleep` (a slow answer that ends when the server stops).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import pytest

NEW_YORK = ZoneInfo("America/New_York")
TEST_KEY_ID = "PKFAKE0TEST0KEY0ID01"
TEST_SECRET_KEY = "fake-secret-Zq8mW3vX9pL2"  # distinctive, so tests can assert it never leaks

KEY_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"

FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
ADJUSTMENTS = ("raw", "split", "dividend", "all")
BARS_MAX_LIMIT = 10_000  # Alpaca's cap for one page of bars
CORPORATE_ACTIONS_MAX_LIMIT = 1_000
CORPORATE_ACTION_TYPES = (
    "reverse_split",
    "forward_split",
    "unit_split",
    "cash_dividend",
    "stock_dividend",
    "spin_off",
    "cash_merger",
    "stock_merger",
    "stock_and_cash_merger",
    "redemption",
    "name_change",
    "worthless_removal",
    "rights_distribution",
)


# --------------------------------------------------------------------------------------------------------
# Requests, responses and the log
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    """One request as a handler sees it. `params` keeps the last value of a repeated query name."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any = None  # decoded JSON body (POST/PATCH/PUT), None otherwise
    path_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: Any = None  # JSON-serialisable; a str is sent as is (e.g. an HTML gateway page)
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # Close the socket without answering (a dropped connection: the client sees a ConnectionError).
    drop_connection: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    """What arrived and what was answered. The secret header is never recorded, only whether it matched."""

    method: str
    path: str
    params: Mapping[str, str]
    key_id: str | None
    authorized: bool
    status: int


class FakeApiError(Exception):
    """Raised by a handler to answer with an Alpaca-shaped error body."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def response(self) -> FakeResponse:
        body: dict[str, Any] = {"message": self.message}
        if self.code is not None:  # the trading API adds an 8-digit code; the data API does not
            body = {"code": self.code, **body}
        return FakeResponse(self.status, body)


@dataclass
class _Fault:
    status: int | None  # None: no error, only the delay
    body: Any
    headers: Mapping[str, str]
    delay: float
    path_prefix: str | None


Handler = Callable[[FakeRequest], "FakeResponse | dict[str, Any] | list[Any]"]
# Runs before the faults and the routes (method, path, key id sent): a FakeResponse answers instead of them.
BeforeHook = Callable[[str, str, "str | None"], "FakeResponse | None"]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api: str  # "data" or "trading": selects the shape of auth errors


def _compile_template(template: str) -> re.Pattern[str]:
    """A path template such as /v2/orders/{order_id} -> a regex with a named group per {name} segment."""
    parts = re.split(r"(\{[a-z_]+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


# --------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------


class AlpacaFakeServer:
    """A threaded Alpaca-compatible server on 127.0.0.1 (port 0: the OS picks a free one).

    Use as a context manager or call `start()` / `stop()`. `url` is what alpaca-py's `url_override` takes
    (the host root, without `/v2`).
    """

    def __init__(
        self,
        *,
        key_id: str = TEST_KEY_ID,
        secret_key: str = TEST_SECRET_KEY,
        bars: pl.DataFrame | None = None,
        splits: pl.DataFrame | None = None,
        max_page_size: int = BARS_MAX_LIMIT,
        forbidden_feeds: tuple[str, ...] = (),
    ) -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        # A page never holds more than this, whatever `limit` the client sends (alpaca-py always sends
        # 10000 for bars and 1000 for corporate actions): set it small to force pagination.
        self.max_page_size = max_page_size
        # Feeds the simulated plan does not include: 403 like a free plan asking for recent SIP data.
        self.forbidden_feeds = forbidden_feeds
        self._lock = threading.Lock()
        self._log: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._errors: list[BaseException] = []
        self._routes: list[_Route] = []
        self._before: list[BeforeHook] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bars = _bars_table(None)
        self._splits = _splits_table(None)
        self._assets: list[dict[str, Any]] = []
        self.set_bars(bars)
        self.set_splits(splits)
        self.add_route("GET", "/v2/stocks/bars", self._get_stock_bars)
        self.add_route("GET", "/v1/corporate-actions", self._get_corporate_actions)
        self.add_route("GET", "/v2/assets", self._get_assets, api="trading")

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> AlpacaFakeServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler_class(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="alpaca-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> AlpacaFakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- configuration and test hooks --------------------------------------------------------------------

    def add_route(self, method: str, template: str, handler: Handler, *, api: str = "data") -> None:
        """Serve `method template` (e.g. "GET", "/v2/orders/{order_id}") with `handler`.

        A handler returns a FakeResponse, or a dict/list sent as 200 JSON, or raises FakeApiError.
        `api` picks the auth-error body: the data API answers `{"message": ...}`, the trading API adds a code.
        """
        route = _Route(method.upper(), _compile_template(template), handler, api)
        with self._lock:
            self._routes.append(route)

    def add_before_hook(self, hook: BeforeHook) -> None:
        """Run `hook(method, path, key_id)` on every request before the faults and the routes; a FakeResponse it
        returns is the answer (e.g. a server-side rate limit)."""
        with self._lock:
            self._before.append(hook)

    def sleep(self, seconds: float) -> None:
        """Wait in a handler (a slow answer); returns early when the server stops."""
        self._stopping.wait(seconds)

    def set_bars(self, bars: pl.DataFrame | None) -> None:
        """Daily bars to serve: symbol (or ticker), date, open, high, low, close, volume[, trade_count, vwap]."""
        table = _bars_table(bars)
        with self._lock:
            self._bars = table

    def set_splits(self, splits: pl.DataFrame | None) -> None:
        """Splits to serve: symbol, ex_date, new_rate, old_rate[, process_date, record_date, payable_date,
        cusip, old_cusip, new_cusip, id]. new_rate > old_rate is a forward split, < a reverse split."""
        table = _splits_table(splits)
        with self._lock:
            self._splits = table

    def set_assets(self, assets: list[Mapping[str, Any]]) -> None:
        """The asset list `GET /v2/assets` serves: dicts with `symbol` and `id` (a UUID) and optionally `status`
        ("active"/"inactive", default active), `tradable` (default: active), `class` (default us_equity),
        `exchange` (default NASDAQ), `name`; the other fields alpaca-py's Asset requires get defaults."""
        table = [_asset_json(a) for a in assets]
        with self._lock:
            self._assets = table

    def fail_next(
        self,
        count: int = 1,
        status: int = 429,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """The next `count` requests (to paths starting with `path`, if given) get `status` before any route.

        Default bodies: 429 -> `{"message": "too many requests."}` with X-Ratelimit-* headers [FAKE wording];
        other statuses -> `{"message": "<reason phrase>"}`. Pass a str body for a non-JSON (HTML) answer, or
        status 200 with a body of your own for a canned (e.g. malformed) success.
        """
        if body is None:
            phrase = "too many requests." if status == 429 else HTTPStatus(status).phrase.lower()
            body = {"message": phrase}
        if headers is None and status == 429:
            reset = int(dt.datetime.now(dt.UTC).timestamp()) + 60
            headers = {
                "X-Ratelimit-Limit": "200",
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Reset": str(reset),
            }
        fault = _Fault(status, body, dict(headers or {}), 0.0, path)
        with self._lock:
            self._faults.extend([fault] * count)

    def stall_next(self, seconds: float, count: int = 1, *, path: str | None = None) -> None:
        """The next `count` requests are answered normally, but only after `seconds`."""
        fault = _Fault(None, None, {}, seconds, path)
        with self._lock:
            self._faults.extend([fault] * count)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def errors(self) -> list[BaseException]:
        with self._lock:
            return list(self._errors)

    # -- dispatch ----------------------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path_prefix is None or path.startswith(fault.path_prefix):
                    return self._faults.pop(i)
        return None

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        with self._lock:
            routes = list(self._routes)
        for route in routes:
            m = route.pattern.match(path)
            if m and route.method == method:
                return route, m.groupdict()
        return None

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get(KEY_HEADER) == self.key_id and headers.get(SECRET_HEADER) == self.secret_key

    def dispatch(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes
    ) -> FakeResponse:
        parts = urlsplit(raw_path)
        path = parts.path
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        authorized = self._authorized(headers)
        response = self._respond(method, path, params, headers, raw_body, authorized)
        logged_headers_key = headers.get(KEY_HEADER)
        status = 0 if response.drop_connection else response.status  # 0: no answer at all
        with self._lock:
            self._log.append(LoggedRequest(method, path, params, logged_headers_key, authorized, status))
        return response

    def _respond(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        raw_body: bytes,
        authorized: bool,
    ) -> FakeResponse:
        with self._lock:
            before = list(self._before)
        for hook in before:
            answer = hook(method, path, headers.get(KEY_HEADER))
            if answer is not None:
                return answer
        fault = self._take_fault(path)
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                return FakeResponse(fault.status, fault.body, fault.headers)
        matched = self._match(method, path)
        if matched is None:
            return FakeResponse(404, {"message": "Not Found"})  # [FAKE] wording
        route, path_params = matched
        if not authorized:
            if route.api == "trading":
                return FakeApiError(401, "request is not authorized", 40110000).response()
            return FakeApiError(401, "unauthorized").response()  # data API: no code [REPORT]/[FAKE]
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                return FakeApiError(400, "request body format is invalid", 40010000).response()
        safe_headers = {k: ("***" if k.lower() == SECRET_HEADER.lower() else v) for k, v in headers.items()}
        request = FakeRequest(method, path, params, safe_headers, body, path_params)
        try:
            result = route.handler(request)
        except FakeApiError as exc:
            return exc.response()
        except Exception as exc:  # a bug in the fake: answer 500 and let the fixture fail the test
            with self._lock:
                self._errors.append(exc)
            return FakeResponse(500, {"message": f"fake server error: {exc!r}"})
        if isinstance(result, FakeResponse):
            return result
        return FakeResponse(200, result)

    # -- market data: bars -------------------------------------------------------------------------------

    def _get_stock_bars(self, request: FakeRequest) -> dict[str, Any]:
        p = request.params
        symbols = _symbols_param(p, required=True)
        timeframe = p.get("timeframe")
        if not timeframe:
            raise FakeApiError(400, "missing timeframe")  # [FAKE] wording
        if timeframe != "1Day":
            raise FakeApiError(422, f"invalid timeframe {timeframe!r}: this fake serves 1Day bars only")
        feed = _choice_param(p, "feed", FEEDS, default="sip")
        _choice_param(p, "adjustment", ADJUSTMENTS, default="raw")
        sort = _choice_param(p, "sort", ("asc", "desc"), default="asc")
        if feed in self.forbidden_feeds:
            raise FakeApiError(403, f"subscription does not permit querying recent {feed.upper()} data")
        today_start = dt.datetime.combine(dt.datetime.now(NEW_YORK).date(), dt.time(0), NEW_YORK)
        start = _time_param(p, "start", default=today_start)
        end = _time_param(p, "end", default=dt.datetime.now(dt.UTC))
        if end < start:
            raise FakeApiError(422, "end should not be before start")  # [FAKE] wording
        limit = _limit_param(p, default=1000, maximum=BARS_MAX_LIMIT)

        with self._lock:
            table = self._bars
        rows = table.filter(
            pl.col("symbol").is_in(symbols) & pl.col("t").is_between(start, end, closed="both")
        ).sort(["symbol", "t"], descending=[False, sort == "desc"])
        offset = _offset_from_token(p, _fingerprint(p))
        page_size = min(limit, self.max_page_size)
        page = rows.slice(offset, page_size)
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, t, o, h, low, c, v, n, vw in page.select(
            "symbol", pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "o", "h", "l", "c", "v", "n", "vw"
        ).iter_rows():
            bars.setdefault(symbol, []).append(
                {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw}
            )
        next_offset = offset + page.height
        token = _make_token(next_offset, _fingerprint(p)) if next_offset < rows.height else None
        return {"bars": bars, "next_page_token": token}

    # -- market data: corporate actions ------------------------------------------------------------------

    def _get_corporate_actions(self, request: FakeRequest) -> dict[str, Any]:
        p = request.params
        for unsupported in ("cusips", "ids"):
            if p.get(unsupported):
                raise FakeApiError(400, f"{unsupported} filter not supported by the fake server")
        symbols = _symbols_param(p, required=False)
        types = [t for t in p.get("types", "").split(",") if t] or list(CORPORATE_ACTION_TYPES)
        bad = [t for t in types if t not in CORPORATE_ACTION_TYPES]
        if bad:
            raise FakeApiError(422, f"invalid types: {','.join(bad)}")  # [FAKE] wording
        today = dt.datetime.now(NEW_YORK).date()
        start = _date_param(p, "start", default=today)
        end = _date_param(p, "end", default=today)
        if end < start:
            raise FakeApiError(422, "end should not be before start")
        sort = _choice_param(p, "sort", ("asc", "desc"), default="asc")
        limit = _limit_param(p, default=100, maximum=CORPORATE_ACTIONS_MAX_LIMIT)

        with self._lock:
            table = self._splits
        predicate = pl.col("type").is_in(types) & pl.col("process_date").is_between(start, end)
        if symbols is not None:
            predicate &= pl.col("symbol").is_in(symbols)
        rows = table.filter(predicate).sort(
            ["process_date", "symbol", "type"], descending=[sort == "desc", False, False]
        )
        offset = _offset_from_token(p, _fingerprint(p))
        page = rows.slice(offset, min(limit, self.max_page_size))
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in page.iter_rows(named=True):
            groups.setdefault(f"{row['type']}s", []).append(_split_json(row))
        next_offset = offset + page.height
        token = _make_token(next_offset, _fingerprint(p)) if next_offset < rows.height else None
        return {"corporate_actions": groups, "next_page_token": token}


    # -- trading: assets ---------------------------------------------------------------------------------

    def _get_assets(self, request: FakeRequest) -> list[dict[str, Any]]:
        p = request.params
        if p.get("attributes"):
            raise FakeApiError(400, "attributes filter not supported by the fake server", 40010000)
        status = p.get("status")
        if status is not None and status not in ("active", "inactive"):
            raise FakeApiError(422, f"invalid status {status!r}", 40010001)  # [FAKE] wording
        asset_class = p.get("asset_class")
        if asset_class is not None and asset_class not in ASSET_CLASSES:
            raise FakeApiError(422, f"invalid asset_class {asset_class!r}", 40010001)  # [FAKE] wording
        exchange = p.get("exchange")
        with self._lock:
            table = list(self._assets)
        return [
            a
            for a in table
            if (status is None or a["status"] == status)
            and (asset_class is None or a["class"] == asset_class)
            and (exchange is None or a["exchange"] == exchange)
        ]


# --------------------------------------------------------------------------------------------------------
# Data tables
# --------------------------------------------------------------------------------------------------------

ASSET_CLASSES = ("us_equity", "us_option", "crypto")


def _asset_json(asset: Mapping[str, Any]) -> dict[str, Any]:
    """An Asset as Alpaca sends it (the fields alpaca-py 0.44.0 requires, with plausible defaults)."""
    status = asset.get("status", "active")
    if status not in ("active", "inactive"):
        raise ValueError(f"asset status must be 'active' or 'inactive', not {status!r}")
    return {
        "id": str(uuid.UUID(str(asset["id"]))),  # alpaca-py requires a UUID
        "class": asset.get("class", "us_equity"),
        "exchange": asset.get("exchange", "NASDAQ"),
        "symbol": asset["symbol"],
        "name": asset.get("name", f"{asset['symbol']} Inc."),
        "status": status,
        "tradable": asset.get("tradable", status == "active"),
        "marginable": asset.get("marginable", True),
        "shortable": asset.get("shortable", True),
        "easy_to_borrow": asset.get("easy_to_borrow", True),
        "fractionable": asset.get("fractionable", True),
        "attributes": list(asset.get("attributes", [])),
    }

_BARS_SCHEMA = {
    "symbol": pl.Utf8(),
    "t": pl.Datetime("us", "UTC"),
    "o": pl.Float64(),
    "h": pl.Float64(),
    "l": pl.Float64(),
    "c": pl.Float64(),
    "v": pl.Int64(),
    "n": pl.Int64(),
    "vw": pl.Float64(),
}


def _bars_table(bars: pl.DataFrame | None) -> pl.DataFrame:
    """The served table: one row per bar, `t` = midnight New York of the session, in UTC (as Alpaca)."""
    if bars is None:
        return pl.DataFrame(schema=_BARS_SCHEMA)
    symbol = "symbol" if "symbol" in bars.columns else "ticker"
    midnight_ny = (
        pl.col("date")
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("America/New_York", ambiguous="raise", non_existent="raise")
    )
    optional_int = pl.col("trade_count") if "trade_count" in bars.columns else pl.lit(None)
    optional_float = pl.col("vwap") if "vwap" in bars.columns else pl.lit(None)
    return (
        bars.select(
            pl.col(symbol).alias("symbol"),
            midnight_ny.dt.convert_time_zone("UTC").alias("t"),
            pl.col("open").alias("o"),
            pl.col("high").alias("h"),
            pl.col("low").alias("l"),
            pl.col("close").alias("c"),
            pl.col("volume").alias("v"),
            optional_int.alias("n"),
            optional_float.alias("vw"),
        )
        .cast(_BARS_SCHEMA)  # type: ignore[arg-type]
        .sort("symbol", "t")
    )


_SPLITS_SCHEMA = {
    "id": pl.Utf8(),
    "type": pl.Utf8(),
    "symbol": pl.Utf8(),
    "cusip": pl.Utf8(),
    "old_cusip": pl.Utf8(),
    "new_cusip": pl.Utf8(),
    "new_rate": pl.Float64(),
    "old_rate": pl.Float64(),
    "process_date": pl.Date(),
    "ex_date": pl.Date(),
    "record_date": pl.Date(),
    "payable_date": pl.Date(),
}


def _splits_table(splits: pl.DataFrame | None) -> pl.DataFrame:
    if splits is None or splits.height == 0:
        return pl.DataFrame(schema=_SPLITS_SCHEMA)
    cols = splits.columns

    def opt(name: str, default: pl.Expr) -> pl.Expr:
        return (pl.col(name) if name in cols else default).alias(name)

    placeholder_cusip = pl.format("FAKE{}", pl.col("symbol"))
    table = splits.select(
        pl.col("symbol"),
        pl.col("new_rate").cast(pl.Float64),
        pl.col("old_rate").cast(pl.Float64),
        pl.col("ex_date"),
        opt("process_date", pl.col("ex_date")),
        opt("record_date", pl.lit(None, dtype=pl.Date)),
        opt("payable_date", pl.lit(None, dtype=pl.Date)),
        opt("cusip", placeholder_cusip),
        opt("old_cusip", placeholder_cusip),
        opt("new_cusip", pl.format("NEW{}", pl.col("symbol"))),
    )
    if table.filter(pl.col("new_rate") == pl.col("old_rate")).height:
        raise ValueError("a split needs new_rate != old_rate")
    table = table.with_columns(
        pl.when(pl.col("new_rate") > pl.col("old_rate"))
        .then(pl.lit("forward_split"))
        .otherwise(pl.lit("reverse_split"))
        .alias("type")
    )
    if "id" in cols:
        ids = splits["id"].cast(pl.Utf8)
    else:  # deterministic UUIDs (alpaca-py's models require a UUID id)
        ids = pl.Series(
            [
                str(uuid.uuid5(uuid.NAMESPACE_URL, f"split/{r['symbol']}/{r['ex_date']}/{r['type']}"))
                for r in table.iter_rows(named=True)
            ]
        )
    return table.with_columns(ids.alias("id")).select(list(_SPLITS_SCHEMA)).cast(_SPLITS_SCHEMA)  # type: ignore[arg-type]


def _number(x: float) -> int | float:
    """Rates as Alpaca writes them: 7 rather than 7.0 when whole."""
    return int(x) if float(x).is_integer() else x


def _split_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row["id"], "symbol": row["symbol"]}
    if row["type"] == "forward_split":
        out["cusip"] = row["cusip"]
    else:
        out["old_cusip"] = row["old_cusip"]
        out["new_cusip"] = row["new_cusip"]
    out["new_rate"] = _number(row["new_rate"])
    out["old_rate"] = _number(row["old_rate"])
    for name in ("process_date", "ex_date", "record_date", "payable_date"):
        if row[name] is not None:  # Alpaca omits dates it does not have
            out[name] = row[name].isoformat()
    return out


# --------------------------------------------------------------------------------------------------------
# Parameter parsing (400: missing/unparseable structure, 422: an invalid value; both [FAKE] choices)
# --------------------------------------------------------------------------------------------------------


def _symbols_param(params: Mapping[str, str], *, required: bool) -> list[str] | None:
    raw = params.get("symbols", "")
    symbols = [s for s in raw.split(",") if s]
    if not symbols:
        if required:
            raise FakeApiError(400, "missing symbols")  # [FAKE] wording
        return None
    return symbols


def _choice_param(params: Mapping[str, str], name: str, allowed: tuple[str, ...], *, default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise FakeApiError(422, f"invalid {name}: {value!r} (expected one of {', '.join(allowed)})")
    return value


def _time_param(params: Mapping[str, str], name: str, *, default: dt.datetime) -> dt.datetime:
    """RFC 3339 with an offset, or YYYY-MM-DD (read as midnight UTC [FAKE]). Fractions are refused [DOC]."""
    value = params.get(name)
    if value is None:
        return default
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    if re.search(r"T\d{2}:\d{2}:\d{2}\.", value):
        raise FakeApiError(422, f"invalid {name}: fractions of a second are not accepted ({value})")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FakeApiError(422, f"invalid {name}: {value!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise FakeApiError(422, f"invalid {name}: {value!r} has no time zone offset")
    return parsed


def _date_param(params: Mapping[str, str], name: str, *, default: dt.date) -> dt.date:
    value = params.get(name)
    if value is None:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise FakeApiError(422, f"invalid {name}: {value!r} is not YYYY-MM-DD") from None


def _limit_param(params: Mapping[str, str], *, default: int, maximum: int) -> int:
    value = params.get("limit")
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise FakeApiError(422, f"invalid limit: {value!r}") from None
    if not 1 <= limit <= maximum:
        raise FakeApiError(422, f"invalid limit: {limit} (must be between 1 and {maximum})")
    return limit


def _fingerprint(params: Mapping[str, str]) -> str:
    """The query minus paging parameters: a token is only valid for the query that produced it."""
    stable = sorted((k, v) for k, v in params.items() if k not in ("page_token", "limit"))
    return hashlib.sha256(json.dumps(stable).encode()).hexdigest()[:16]


def _make_token(offset: int, fingerprint: str) -> str:
    # [FAKE] format: Alpaca's tokens are opaque base64 too, but encode the last item, not an offset.
    return base64.urlsafe_b64encode(f"{fingerprint}:{offset}".encode()).decode()


def _offset_from_token(params: Mapping[str, str], fingerprint: str) -> int:
    token = params.get("page_token")
    if not token:
        return 0
    try:
        got_fingerprint, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if got_fingerprint != fingerprint:
            raise ValueError("token from another query")
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise FakeApiError(400, "invalid page token") from None  # [FAKE] wording


# --------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------


def _make_handler_class(server: AlpacaFakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind requests.Session
        server_version = "alpaca-fake/1"
        # headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per request
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            response = server.dispatch(self.command, self.path, headers, raw_body)
            if response.drop_connection:
                self.close_connection = True  # no status line at all: the socket just closes
                return
            if isinstance(response.body, str):
                payload = response.body.encode()
                content_type = "text/html; charset=utf-8"
            elif response.body is None:
                payload = b""
                content_type = response.content_type
            else:
                payload = json.dumps(response.body).encode()
                content_type = response.content_type
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # the request log replaces stderr lines

    return _Handler


# --------------------------------------------------------------------------------------------------------
# pytest fixture
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def alpaca_server() -> Iterator[AlpacaFakeServer]:
    """A started AlpacaFakeServer with no data (tests call set_bars / set_splits / set_assets); stopped afterwards.

    Fails the test if a handler raised (a bug in the fake, reported as a 500 to the client).
    """
    with AlpacaFakeServer() as server:
        yield server
        assert not server.errors, f"the fake Alpaca server raised: {server.errors!r}"
