"""Daily bars and splits from Alpaca's market-data API, through alpaca-py (pinned 0.44.0).

`AlpacaMarketDataSource` is the `MarketDataSource` for paper/live: the same raw schema as the file source, so
the raw-prices asset does not know which one it runs on. `AlpacaCorporateActions` reads forward and reverse
splits (`fetch_splits`, and `splits_by_ex_date` for a window of sessions): the corporate-actions source of
cleaning and indicators when the bars are not split-adjusted (`TRADING_DAGSTER_CORPORATE_ACTIONS=alpaca`).

What alpaca-py does and does not do for us (0.44.0, see ../shared/docs/alpaca-notes.md):

* Pagination: `get_stock_bars` / `get_corporate_actions` follow `next_page_token` until it is null and merge
  the pages per symbol, *unless* the request carries a `limit`, in which case they stop once that many items
  arrived even if a token remains. `StockBarsRequest.limit` defaults to None (fine), but
  `CorporateActionsRequest.limit` defaults to **1000**: we pass `limit=None`, or a range with more than 1000
  splits would be cut silently.
* Retries: only the status codes in the private `_retry_codes` (default 429 and 504), `_retry` times
  (default 3), with a fixed `_retry_wait` sleep (default 3 s) and no back-off; not configurable through the
  constructors. We set those attributes (hence the exact pin) and also retry 500/502/503: every call here is
  an idempotent GET. Connection errors are never retried by the SDK.
* No timeout: a stalled server blocks forever. We mount a requests adapter with a default timeout.
* Errors: `APIError` whose text is the raw body; the data API's bodies are `{"message": ...}` without a
  `code`, so `APIError.code` would raise KeyError. We read the status and parse the body defensively.

The secret key is kept out of `repr`, logs and exception messages (any message is scrubbed of it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import pydantic
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CorporateActionsType, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.models import BarSet
from alpaca.data.models.corporate_actions import CorporateActionsSet
from alpaca.data.requests import CorporateActionsRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from requests.adapters import HTTPAdapter

from trading_dagster.domain.bars import RAW_COLUMNS, PriceDataError, empty_raw_frame
from trading_dagster.domain.vendor_files import normalize_ohlcv
from trading_dagster.resources.market_data import MarketDataSource, _check_range, _normalize_symbols

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
DEFAULT_DATA_URL = "https://data.alpaca.markets"
DEFAULT_FEED = "iex"  # free plans: IEX only; "sip" (all US exchanges) needs a paid plan
DEFAULT_ADJUSTMENT = "split"
ADJUSTMENTS = tuple(a.value for a in Adjustment)  # raw, split, dividend, all
FEEDS = tuple(f.value for f in DataFeed)
MAX_SYMBOLS_PER_REQUEST = 100  # Alpaca takes more; this keeps URLs short and one failure small
DEFAULT_RETRY_ATTEMPTS = 3  # as alpaca-py: 4 attempts in all
DEFAULT_RETRY_WAIT_SECONDS = 3.0  # as alpaca-py: a fixed sleep between attempts
DEFAULT_RETRY_CODES = (429, 500, 502, 503, 504)  # alpaca-py alone: 429, 504
DEFAULT_TIMEOUT_SECONDS = 30.0
# Alpaca's corporate-actions window filters on the process date, which for splits has been observed equal
# to the ex-date [REPORT]; `splits_by_ex_date` asks for this many extra days on each side so that a split
# processed a few days off its ex-date is still found, then keeps the ex-dates of the window.
EX_DATE_PAD_DAYS = 7

SPLIT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "ex_date": pl.Date(),
    "ratio": pl.Float64(),  # new shares per old share: 7-for-1 -> 7.0, 1-for-10 -> 0.1
    "source": pl.Utf8(),
}
SPLIT_SOURCE = "alpaca"


class MarketDataError(RuntimeError):
    """The market-data vendor could not be asked or refused to answer (auth, parameters, limits, outage).

    Distinct from `PriceDataError`, which is about the data itself once received.
    """

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


# --------------------------------------------------------------------------------------------------------
# Client set-up and error translation (shared by bars and corporate actions)
# --------------------------------------------------------------------------------------------------------


class _TimeoutAdapter(HTTPAdapter):
    """alpaca-py calls `session.request` without a timeout; this supplies one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def _configure_client(
    client: Any, *, retry_attempts: int, retry_wait_seconds: float, retry_codes: Sequence[int], timeout: float
) -> None:
    # Private attributes of alpaca.common.rest.RESTClient (0.44.0): the constructors do not pass them through.
    client._retry = retry_attempts
    client._retry_wait = retry_wait_seconds
    client._retry_codes = list(retry_codes)
    adapter = _TimeoutAdapter(timeout)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)


def _check_credentials(api_key: str, secret_key: str) -> None:
    if not api_key or not secret_key:
        raise ValueError(
            "Alpaca market data needs an API key id and a secret key (APCA_API_KEY_ID / APCA_API_SECRET_KEY)"
        )


def _mask(key_id: str) -> str:
    return f"{key_id[:4]}..." if len(key_id) > 4 else "..."


def _endpoint(url: str | None, fallback: str) -> str:
    """scheme://host/path of a request URL: the query (symbols, dates) would drown the message."""
    if not url:
        return fallback
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _alpaca_message(body: str) -> str:
    """Alpaca's `message` from an error body; data-API bodies have no `code`, gateways send HTML."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return _snippet(body) or "(empty body)"
    if isinstance(parsed, dict) and "message" in parsed:
        return str(parsed["message"])
    return _snippet(body)


def _transport_reason(exc: BaseException) -> str:
    match = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return match.group(0).strip() if match else type(exc).__name__


class _AlpacaCall:
    """Runs alpaca-py calls and turns their failures into MarketDataError with a message that says what to do."""

    def __init__(
        self,
        *,
        api: str,
        base_url: str,
        key_id: str,
        secret_key: str,
        retry_attempts: int,
        retry_codes: Sequence[int],
        timeout: float,
    ) -> None:
        self.api = api
        self.base_url = base_url
        self._key_id = key_id
        self._secret_key = secret_key
        self.retry_attempts = retry_attempts
        self.retry_codes = tuple(retry_codes)
        self.timeout = timeout

    def _redact(self, text: str) -> str:
        return text.replace(self._secret_key, "***") if self._secret_key else text

    def _error(self, message: str, status: int | None, url: str) -> MarketDataError:
        return MarketDataError(self._redact(message), status_code=status, url=url)

    @contextlib.contextmanager
    def translate(self, path: str, what: str, auth_hint: str = "") -> Iterator[None]:
        fallback = f"{self.base_url.rstrip('/')}{path}"
        try:
            yield
        except APIError as exc:
            response = exc.response
            url = _endpoint(getattr(response, "url", None), fallback)
            status = exc.status_code
            message = _alpaca_message(str(exc))
            attempts = self.retry_attempts + 1 if status in self.retry_codes else 1
            tried = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
            if status in (401, 403):
                text = (
                    f"Alpaca {self.api} refused {what} at {url}: HTTP {status} {message!r}; "
                    f"check APCA key id / secret (key id {_mask(self._key_id)}){auth_hint}."
                )
            elif status in (400, 404, 422):
                text = f"Alpaca {self.api} rejected {what} at {url}: HTTP {status} {message!r}."
            elif status == 429:
                text = (
                    f"Alpaca {self.api} rate limit hit for {what} at {url} {tried} "
                    f"(HTTP 429 {message!r}); wait a minute or lower the request rate."
                )
            else:
                text = f"Alpaca {self.api} failed for {what} at {url} {tried}: HTTP {status} {message!r}."
            raise self._error(text, status, url) from exc
        except requests.exceptions.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            url = _endpoint(getattr(exc.request, "url", None), fallback)
            raise self._error(
                f"Alpaca {self.api} at {url} did not answer {what} within {self.timeout:g} s",
                None,
                url,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            url = _endpoint(getattr(exc.request, "url", None), fallback)
            raise self._error(
                f"cannot connect to Alpaca {self.api} at {url} ({_transport_reason(exc)}) for {what}; "
                "check the URL and the network",
                None,
                url,
            ) from exc
        except requests.exceptions.RequestException as exc:
            url = _endpoint(getattr(exc.request, "url", None), fallback)
            raise self._error(
                f"request to Alpaca {self.api} at {url} failed for {what}: {exc}", None, url
            ) from exc
        except (pydantic.ValidationError, ValueError) as exc:
            # alpaca-py's strict models or its "no known data key" check: the answer is not what 0.44.0 parses.
            raise self._error(
                f"Alpaca {self.api} answered {what} at {fallback} with a body alpaca-py 0.44.0 cannot read: "
                f"{_snippet(str(exc), 400)}",
                None,
                fallback,
            ) from exc


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


# --------------------------------------------------------------------------------------------------------
# Pure conversions (unit-testable without a server)
# --------------------------------------------------------------------------------------------------------


def bars_to_raw_frame(barset: BarSet) -> pl.DataFrame:
    """alpaca-py daily bars -> the raw schema, `date` = the New York date of each bar's timestamp.

    Alpaca stamps a daily bar at midnight New York (05:00Z in winter, 04:00Z in summer). A bar stamped at
    any other New York time means that assumption broke (an intraday timeframe, a vendor change), and the
    date it belongs to would be a guess: PriceDataError. Volumes must be whole (`normalize_ohlcv`).
    """
    symbols: list[str] = []
    stamps: list[dt.datetime] = []
    prices: dict[str, list[float]] = {"open": [], "high": [], "low": [], "close": []}
    volumes: list[float] = []
    for symbol, bars in barset.data.items():
        for bar in bars:
            symbols.append(symbol)
            stamps.append(bar.timestamp)
            prices["open"].append(bar.open)
            prices["high"].append(bar.high)
            prices["low"].append(bar.low)
            prices["close"].append(bar.close)
            volumes.append(bar.volume)
    if not symbols:
        return empty_raw_frame()
    frame = pl.DataFrame(
        {"symbol": symbols, "timestamp": stamps, **prices, "volume": volumes},
        schema={
            "symbol": pl.Utf8,
            "timestamp": pl.Datetime("us", "UTC"),
            **dict.fromkeys(prices, pl.Float64),
            "volume": pl.Float64,
        },
    )
    local = pl.col("timestamp").dt.convert_time_zone("America/New_York")
    frame = frame.with_columns(local.dt.date().alias("date"), local.dt.time().alias("_ny_time"))
    off = frame.filter(pl.col("_ny_time") != dt.time(0))
    if off.height:
        examples = ", ".join(
            f"{s} {t:%Y-%m-%dT%H:%M:%SZ}" for s, t in off.select("symbol", "timestamp").head(5).rows()
        )
        raise PriceDataError(
            f"{off.height} Alpaca daily bar(s) are not stamped at midnight New York, so their session date is "
            f"ambiguous: {examples}"
        )
    return normalize_ohlcv(frame.select(RAW_COLUMNS))


def splits_to_frame(actions: CorporateActionsSet) -> pl.DataFrame:
    """Forward and reverse splits -> symbol, ex_date, ratio (new shares per old share), source.

    Alpaca's rates read "new_rate new shares for old_rate old shares": 7-for-1 is new 7 / old 1 (ratio 7.0),
    a 1-for-10 reverse split is new 1 / old 10 (ratio 0.1). A forward split with ratio <= 1 or a reverse
    split with ratio >= 1 means the rates were not what we think they are: PriceDataError, not a guess.
    Other action types in the answer are ignored (we ask for splits only).
    """
    rows: list[tuple[str, dt.date, float]] = []
    for group, items in actions.data.items():
        if group not in ("forward_splits", "reverse_splits"):
            continue
        for item in items:
            symbol, ex_date = item.symbol, item.ex_date
            new_rate, old_rate = float(item.new_rate), float(item.old_rate)
            if new_rate <= 0 or old_rate <= 0:
                raise PriceDataError(
                    f"{group} {symbol} {ex_date}: rates must be > 0, got {new_rate}/{old_rate}"
                )
            ratio = new_rate / old_rate
            if (group == "forward_splits") != (ratio > 1):
                raise PriceDataError(
                    f"{group} {symbol} {ex_date}: new_rate {new_rate} / old_rate {old_rate} = {ratio:g} "
                    "contradicts the split direction"
                )
            rows.append((symbol, ex_date, ratio))
    frame = pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ex_date": [r[1] for r in rows],
            "ratio": [r[2] for r in rows],
            "source": [SPLIT_SOURCE] * len(rows),
        },
        schema=SPLIT_SCHEMA,
    )
    return frame.sort("ex_date", "symbol")


def empty_splits_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=SPLIT_SCHEMA)


# --------------------------------------------------------------------------------------------------------
# Corporate actions
# --------------------------------------------------------------------------------------------------------


def _client_and_call(
    client_cls: Any,
    api: str,
    client: Any,
    api_key: str,
    secret_key: str,
    url_override: str | None,
    retry_attempts: int,
    retry_wait_seconds: float,
    retry_codes: Sequence[int],
    timeout_seconds: float,
) -> tuple[Any, _AlpacaCall]:
    """The alpaca-py client (built and configured unless one is given, which is used as is) and the call
    wrapper that translates its errors, for one Alpaca API."""
    if client is None:
        client = client_cls(api_key=api_key, secret_key=secret_key, url_override=url_override)
        _configure_client(
            client,
            retry_attempts=retry_attempts,
            retry_wait_seconds=retry_wait_seconds,
            retry_codes=retry_codes,
            timeout=timeout_seconds,
        )
    call = _AlpacaCall(
        api=api,
        base_url=url_override or DEFAULT_DATA_URL,
        key_id=api_key,
        secret_key=secret_key,
        retry_attempts=getattr(client, "_retry", 0),
        retry_codes=getattr(client, "_retry_codes", ()),
        timeout=timeout_seconds,
    )
    return client, call


class AlpacaCorporateActions:
    """Forward and reverse splits from `GET /v1/corporate-actions` (alpaca-py's CorporateActionsClient)."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        url_override: str | None = None,
        client: CorporateActionsClient | None = None,
        max_symbols_per_request: int = MAX_SYMBOLS_PER_REQUEST,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        retry_wait_seconds: float = DEFAULT_RETRY_WAIT_SECONDS,
        retry_codes: Sequence[int] = DEFAULT_RETRY_CODES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`client`, when given, is used as is (its retry and timeout settings are not touched)."""
        _check_credentials(api_key, secret_key)
        if max_symbols_per_request < 1:
            raise ValueError("max_symbols_per_request must be >= 1")
        self.url = url_override or DEFAULT_DATA_URL
        self.max_symbols_per_request = max_symbols_per_request
        self._key_id = api_key
        self._client, self._call = _client_and_call(
            CorporateActionsClient, "corporate actions API", client, api_key, secret_key, url_override,
            retry_attempts, retry_wait_seconds, retry_codes, timeout_seconds,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"AlpacaCorporateActions(url={self.url!r}, key_id={_mask(self._key_id)!r})"

    def fetch_splits(
        self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Splits Alpaca records between start and end (inclusive), for `symbols` (every symbol when None).

        The window is Alpaca's: it filters on the action's process date, which for splits has been observed
        equal to the ex-date [REPORT]. Empty range -> empty frame with SPLIT_SCHEMA.
        """
        _check_range(start, end)
        chunks: list[list[str] | None]
        if symbols is None:
            chunks = [None]
        else:
            wanted = _normalize_symbols(symbols)
            if not wanted:
                return empty_splits_frame()
            chunks = list(_chunks(wanted, self.max_symbols_per_request))
        frames = [empty_splits_frame()]
        for chunk in chunks:
            request = CorporateActionsRequest(
                symbols=chunk,
                types=[CorporateActionsType.FORWARD_SPLIT, CorporateActionsType.REVERSE_SPLIT],
                start=start,
                end=end,
                limit=None,  # the default 1000 would make alpaca-py stop after 1000 splits in all
            )
            what = f"splits {start}..{end} for {len(chunk) if chunk else 'all'} symbol(s)"
            with self._call.translate("/v1/corporate-actions", what):
                actions = self._client.get_corporate_actions(request)
            frames.append(splits_to_frame(actions))  # type: ignore[arg-type]
        return pl.concat(frames).sort("ex_date", "symbol")

    def splits_by_ex_date(
        self,
        start: dt.date,
        end: dt.date,
        symbols: Sequence[str] | None = None,
        *,
        pad_days: int = EX_DATE_PAD_DAYS,
    ) -> pl.DataFrame:
        """Splits with start <= ex_date <= end: what the sessions start..end need (`fetch_splits` filters on
        Alpaca's process date, so the request is widened by `pad_days` on each side and the answer cut to the
        ex-dates of the window). The same frame whatever the padding found outside it."""
        _check_range(start, end)
        if pad_days < 0:
            raise ValueError("pad_days must be >= 0")
        pad = dt.timedelta(days=pad_days)
        found = self.fetch_splits(start - pad, end + pad, symbols)
        return found.filter(pl.col("ex_date").is_between(start, end))


# --------------------------------------------------------------------------------------------------------
# Bars
# --------------------------------------------------------------------------------------------------------


class AlpacaMarketDataSource(MarketDataSource):
    """Daily bars from Alpaca (`GET /v2/stocks/bars`, `timeframe=1Day`) in the raw schema.

    `symbols` is the universe used when `fetch_bars` gets `symbols=None` (Alpaca has no "all symbols" bars
    call). `feed` is "iex" (free) or "sip" (paid; "delayed_sip" avoids the free plan's 15-minute SIP
    embargo); `adjustment` "split" (default), "raw", "dividend" or "all". Requests are bounded to
    `max_symbols_per_request` symbols; every page of every request is read.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        symbols: Sequence[str] | None = None,
        *,
        feed: str = DEFAULT_FEED,
        adjustment: str = DEFAULT_ADJUSTMENT,
        url_override: str | None = None,
        client: StockHistoricalDataClient | None = None,
        corporate_actions: AlpacaCorporateActions | None = None,
        max_symbols_per_request: int = MAX_SYMBOLS_PER_REQUEST,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        retry_wait_seconds: float = DEFAULT_RETRY_WAIT_SECONDS,
        retry_codes: Sequence[int] = DEFAULT_RETRY_CODES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`client`, when given, is used as is (its retry and timeout settings are not touched)."""
        _check_credentials(api_key, secret_key)
        feed, adjustment = feed.strip().lower(), adjustment.strip().lower()
        if feed not in FEEDS:
            raise ValueError(f"unknown Alpaca feed {feed!r}: expected one of {', '.join(FEEDS)}")
        if adjustment not in ADJUSTMENTS:
            raise ValueError(
                f"unknown Alpaca adjustment {adjustment!r}: expected one of {', '.join(ADJUSTMENTS)}"
            )
        if max_symbols_per_request < 1:
            raise ValueError("max_symbols_per_request must be >= 1")
        self.feed = feed
        self.adjustment = adjustment
        self.url = url_override or DEFAULT_DATA_URL
        self.symbols: tuple[str, ...] | None = None if symbols is None else tuple(_normalize_symbols(symbols))
        self.max_symbols_per_request = max_symbols_per_request
        self._key_id = api_key
        self._client, self._call = _client_and_call(
            StockHistoricalDataClient, "market data API", client, api_key, secret_key, url_override,
            retry_attempts, retry_wait_seconds, retry_codes, timeout_seconds,
        )  # fmt: skip
        self._corporate_actions = corporate_actions or AlpacaCorporateActions(
            api_key,
            secret_key,
            url_override=url_override,
            max_symbols_per_request=max_symbols_per_request,
            retry_attempts=retry_attempts,
            retry_wait_seconds=retry_wait_seconds,
            retry_codes=retry_codes,
            timeout_seconds=timeout_seconds,
        )

    def __repr__(self) -> str:
        universe = "None" if self.symbols is None else f"<{len(self.symbols)} symbols>"
        return (
            f"AlpacaMarketDataSource(url={self.url!r}, feed={self.feed!r}, adjustment={self.adjustment!r}, "
            f"symbols={universe}, key_id={_mask(self._key_id)!r})"
        )

    def _resolve_symbols(self, symbols: Sequence[str] | None) -> list[str]:
        if symbols is not None:
            return _normalize_symbols(symbols)
        if self.symbols is None:
            raise ValueError(
                "AlpacaMarketDataSource.fetch_bars(symbols=None) needs a configured universe (symbols=...): "
                "Alpaca has no 'all symbols' bars call"
            )
        return list(self.symbols)

    def describe(self) -> str:
        return f"Alpaca market data at {self.url} (feed {self.feed}, adjustment {self.adjustment})"

    def fetch_bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """Bars for sessions start <= date <= end (New York dates), sorted by (date, symbol); raw schema.

        Symbols or days without a bar are simply absent (an empty frame if none has any).
        """
        _check_range(start, end)
        wanted = self._resolve_symbols(symbols)
        if not wanted:
            return empty_raw_frame()
        # Daily bars are stamped at midnight New York: ask from the first session's stamp to the last
        # second of the last day (whole seconds: Alpaca refuses fractions). Aware datetimes; alpaca-py
        # sends them in UTC.
        window_start = dt.datetime.combine(start, dt.time(0), NEW_YORK)
        window_end = dt.datetime.combine(end, dt.time(23, 59, 59), NEW_YORK)
        chunks = list(_chunks(wanted, self.max_symbols_per_request))
        log.debug(
            "Alpaca bars %s..%s: %d symbol(s) in %d request(s), feed=%s adjustment=%s",
            start, end, len(wanted), len(chunks), self.feed, self.adjustment,
        )  # fmt: skip
        frames = [empty_raw_frame()]
        for chunk in chunks:
            request = StockBarsRequest(
                symbol_or_symbols=chunk,
                timeframe=TimeFrame.Day,
                start=window_start,
                end=window_end,
                feed=DataFeed(self.feed),
                adjustment=Adjustment(self.adjustment),
            )
            what = f"daily bars {start}..{end} for {len(chunk)} symbol(s) (feed={self.feed})"
            hint = f", and that the plan covers feed={self.feed}" if self.feed != "iex" else ""
            with self._call.translate("/v2/stocks/bars", what, auth_hint=hint):
                barset = self._client.get_stock_bars(request)
            frames.append(self._checked(bars_to_raw_frame(barset), chunk, start, end))  # type: ignore[arg-type]
        return pl.concat(frames).sort("date", "symbol")

    @staticmethod
    def _checked(frame: pl.DataFrame, asked: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Bars for symbols or dates we did not ask for mean the request was misread: stop, don't filter."""
        extra = sorted(set(frame["symbol"].unique()) - set(asked))
        if extra:
            raise PriceDataError(f"Alpaca returned bars for symbols that were not requested: {extra[:20]}")
        outside = frame.filter(~pl.col("date").is_between(start, end))
        if outside.height:
            dates = sorted(set(outside["date"]))
            raise PriceDataError(
                f"Alpaca returned {outside.height} bar(s) dated outside {start}..{end}: {dates[:10]}"
            )
        return frame

    def fetch_splits(
        self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Splits for `symbols` (the configured universe when None; every symbol if there is none)."""
        if symbols is None:
            symbols = self.symbols
        return self._corporate_actions.fetch_splits(start, end, symbols)
