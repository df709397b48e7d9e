"""The security master as a Dagster resource (`TRADING_DAGSTER_SECURITY_MASTER`; decision 0004, section 4):

* a folder of LEAN map files or a CSV `symbol,security_id,valid_from,valid_to` (see `domain/security_master.py`):
  parsed once per process, cached by the path and the files' sizes and modification times, so the four assets of
  a run that read it parse a LEAN folder (thousands of small files) once, and an edited file is read again;
* `alpaca`: Alpaca's asset list (`GET /v2/assets` through alpaca-py's `TradingClient.get_all_assets`, US
  equities, one request for all of them, filtered to the universe here), built point in time from snapshots
  appended to `$TRADING_DAGSTER_DATA_DIR/security_master/alpaca_assets.jsonl` (never rewritten);
* or none: nothing changes, a symbol is one security all along.

When a snapshot is recorded (Alpaca source). The list has no dates: it says what is true *now*. `get(as_of)`
takes the run's last session (its partition window's end). A snapshot is fetched and recorded, dated on
`as_of`, only when `as_of` is the latest completed session (the last one whose close has passed, by the NYSE
calendar's closes and this resource's clock), as in the daily run at 18:30 New York; a run whose window ends
earlier (a backfill of 2010, a re-run of last month) or later (today's partition before the close), or that
gives no `as_of`, only reads the snapshots on file: today's listing is never dated on a past session. With no
snapshot on file yet the master is empty (every symbol one security, as without a master), with a warning.
Every get() of one resource instance (one run) with the same `as_of` asks Alpaca at most once.

Alpaca's client is built as for market data (`resources/alpaca_data.py`: retries of 429/5xx, a timeout, errors
that name the endpoint and never the secret); the trading API is the paper one unless
`TRADING_DAGSTER_ALPACA_TRADING_URL` says otherwise (live keys: https://api.alpaca.markets). Keys come only
through `dg.EnvVar` (APCA_API_KEY_ID / APCA_API_SECRET_KEY) and stay out of repr, logs and messages.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field, PrivateAttr

from trading_dagster.domain.security_master import (
    ListedAsset,
    SecurityMaster,
    SecurityMasterError,
    append_asset_snapshot,
    build_asset_snapshot,
    latest_completed_session,
    master_from_asset_snapshots,
    read_asset_snapshots,
    read_security_master,
)
from trading_dagster.resources.secrets import SecretsResource

# alpaca-py and resources/alpaca_data.py are imported where a list is fetched: the assets import this module
# when the definitions load, and most configurations never ask Alpaca.

NEW_YORK = ZoneInfo("America/New_York")
DEFAULT_TRADING_URL = "https://paper-api.alpaca.markets"  # alpaca-py's TradingClient(paper=True)
ALPACA_SNAPSHOT_FILE = Path("security_master") / "alpaca_assets.jsonl"  # under the data dir
SOURCES = ("none", "file", "alpaca")
TIMEOUT_SECONDS = 30.0  # as alpaca_data.DEFAULT_TIMEOUT_SECONDS
RETRY_WAIT_SECONDS = 3.0  # as alpaca_data.DEFAULT_RETRY_WAIT_SECONDS (alpaca-py's fixed sleep)


def _now() -> dt.datetime:
    """The resource's clock (tests replace it); domain code is given the dates it needs."""
    return dt.datetime.now(NEW_YORK)


@functools.cache
def session_closes() -> Mapping[dt.date, dt.datetime]:
    """The close of every XNYS session (New York time, early closes included), from exchange_calendars."""
    import exchange_calendars as xc  # lazily: about 1.5 s, shared with the session calendar's import

    from trading_dagster.domain.calendar import CALENDAR_NAME, FIRST_SESSION

    cal = xc.get_calendar(CALENDAR_NAME, start=FIRST_SESSION.isoformat())
    return {s.date(): c.to_pydatetime().astimezone(NEW_YORK) for s, c in zip(cal.sessions, cal.closes, strict=True)}


class AlpacaAssetList:
    """Every US-equity asset Alpaca lists (`GET /v2/assets?asset_class=us_equity`, every status), as
    `ListedAsset`s: one request, whatever the universe."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        url_override: str | None = None,
        client: Any = None,
        retry_attempts: int | None = None,
        retry_wait_seconds: float = RETRY_WAIT_SECONDS,
        retry_codes: Sequence[int] | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS,
    ) -> None:
        """`client` (an alpaca-py TradingClient), when given, is used as is (its retry and timeout settings are
        not touched). Retries: alpaca_data's (429 and 5xx, 3 times) unless given."""
        from alpaca.trading.client import TradingClient

        from trading_dagster.resources import alpaca_data

        alpaca_data._check_credentials(api_key, secret_key)
        self.url = (url_override or DEFAULT_TRADING_URL).rstrip("/")
        self._key_id = api_key
        # the paper URL passed explicitly is what TradingClient(paper=True) uses, and names it in messages
        self._client, self._call = alpaca_data._client_and_call(
            TradingClient, "trading API", client, api_key, secret_key, self.url,
            alpaca_data.DEFAULT_RETRY_ATTEMPTS if retry_attempts is None else retry_attempts,
            retry_wait_seconds,
            alpaca_data.DEFAULT_RETRY_CODES if retry_codes is None else retry_codes,
            timeout_seconds,
        )  # fmt: skip

    def __repr__(self) -> str:
        from trading_dagster.resources.alpaca_data import _mask

        return f"AlpacaAssetList(url={self.url!r}, key_id={_mask(self._key_id)!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v2/assets"

    def fetch(self) -> list[ListedAsset]:
        """Raises MarketDataError (auth, outage, timeout, a body alpaca-py cannot read), naming the endpoint."""
        from alpaca.trading.enums import AssetClass
        from alpaca.trading.requests import GetAssetsRequest

        request = GetAssetsRequest(asset_class=AssetClass.US_EQUITY)
        with self._call.translate("/v2/assets", "the US-equity asset list"):
            assets = self._client.get_all_assets(request)
        return [
            ListedAsset(a.symbol.strip().upper(), str(a.id), a.status.value, bool(a.tradable))
            for a in assets  # type: ignore[union-attr]
        ]


def alpaca_security_master(
    snapshot_path: str | Path,
    symbols: Sequence[str],
    as_of: dt.date | None,
    *,
    latest_completed: dt.date | None,
    fetch: Callable[[], list[ListedAsset]],
    now: dt.datetime,
    source: str = "",
    log: Any = None,
) -> SecurityMaster | None:
    """Record a snapshot dated `as_of` when `as_of` is the latest completed session (then `fetch()` is called
    once), and derive the master from every snapshot on file. None when no snapshot is on file."""
    path = Path(snapshot_path)
    if as_of is not None and as_of == latest_completed:
        on_file, _ = read_asset_snapshots(path)
        known = {a.asset_id for s in on_file for a in s.assets}
        snapshot = build_asset_snapshot(
            as_of, symbols, fetch(), known, observed_at=now.astimezone(dt.UTC).isoformat(timespec="seconds"), source=source
        )
        written = append_asset_snapshot(path, snapshot)
        if log:
            log.info(
                f"security master: Alpaca's asset list of {as_of} ({len(snapshot.assets)} assets of "
                f"{len(snapshot.symbols)} symbols) {'recorded in' if written else 'unchanged, already in'} {path}"
            )
    elif log:
        log.info(
            f"security master: no Alpaca snapshot recorded (the run ends on {as_of or 'no session given'}, the "
            f"latest completed session is {latest_completed}); using the snapshots in {path}"
        )
    snapshots, skipped = read_asset_snapshots(path)
    for note in skipped:
        if log:
            log.warning(f"security master: {note}")
    if not snapshots:
        if log:
            log.warning(
                f"security master: no Alpaca snapshot in {path} yet: every symbol is one security until a run "
                "ending on the latest completed session records one"
            )
        return None
    return master_from_asset_snapshots(snapshots, str(path))


class SecurityMasterResource(dg.ConfigurableResource):
    """Which security (company) a ticker meant on a day: indicators never span two securities, a position in
    a security past its valid_to is closed at its last close (decision 0004, section 4)."""

    path: str | None = Field(
        default=None,
        description="a folder of QuantConnect LEAN map files, or a CSV symbol,security_id,valid_from,valid_to; "
        "unset: no security master (every symbol is one security)",
    )
    source: str | None = Field(
        default=None, description="'none', 'file' or 'alpaca'; unset: 'file' when a path is given, else 'none'"
    )
    symbols: list[str] = Field(default=[], description="the universe whose Alpaca assets are recorded")
    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None
    secrets: SecretsResource | None = Field(
        default=None, description="SSM Parameter Store the keys are read from at run time (TRADING_DAGSTER_SECRETS=ssm)"
    )
    alpaca_trading_url: str | None = Field(default=None, description=f"override of {DEFAULT_TRADING_URL}")
    snapshot_path: str | None = Field(default=None, description="the Alpaca snapshot file (append-only)")
    timeout_seconds: float = TIMEOUT_SECONDS
    retry_wait_seconds: float = RETRY_WAIT_SECONDS

    _alpaca_masters: dict = PrivateAttr(default_factory=dict)

    def __repr_args__(self):  # the secret never reaches a repr (logs, error messages)
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "alpaca_secret_key" and value else value)

    def source_kind(self) -> str:
        kind = (self.source or ("file" if self.path else "none")).strip().lower()
        if kind not in SOURCES:
            raise SecurityMasterError(f"unknown security-master source {kind!r}: expected one of {', '.join(SOURCES)}")
        return kind

    def get(self, as_of: dt.date | None = None) -> SecurityMaster | None:
        """The master for a run whose window ends on `as_of` (the Alpaca source records a snapshot only when
        that is the latest completed session; the file sources ignore it)."""
        kind = self.source_kind()
        if kind == "none":
            return None
        if kind == "file":
            if not self.path:
                raise SecurityMasterError("the file security master needs a path (TRADING_DAGSTER_SECURITY_MASTER)")
            return _load(self.path, _signature(Path(self.path)))
        if as_of not in self._alpaca_masters:
            self._alpaca_masters[as_of] = self._alpaca(as_of)
        return self._alpaca_masters[as_of]

    def _alpaca(self, as_of: dt.date | None) -> SecurityMaster | None:
        if not self.snapshot_path:
            raise SecurityMasterError("the Alpaca security master needs the snapshot file (snapshot_path)")
        if not self.symbols:
            raise SecurityMasterError(
                "the Alpaca security master needs the universe: [universe] symbols = [...] in the config"
            )

        def fetch() -> list[ListedAsset]:
            from trading_dagster.resources.alpaca_data import MarketDataError
            from trading_dagster.resources.configured import alpaca_keys

            try:
                key_id, secret_key = alpaca_keys(
                    self.alpaca_key_id, self.alpaca_secret_key, self.secrets, "the Alpaca security master"
                )
            except ValueError as exc:
                raise SecurityMasterError(str(exc)) from None
            listing = AlpacaAssetList(
                key_id,
                secret_key,
                url_override=self.alpaca_trading_url,
                timeout_seconds=self.timeout_seconds,
                retry_wait_seconds=self.retry_wait_seconds,
            )
            try:
                return listing.fetch()
            except MarketDataError as exc:  # its text is scrubbed of the secret and says what failed where
                error = SecurityMasterError(f"security master (TRADING_DAGSTER_SECURITY_MASTER=alpaca): {exc}")
            # raised outside the except block, so no exception chain: alpaca-py's APIError underneath holds
            # the raw response body, which a server may echo the secret in
            raise error

        now = _now()
        return alpaca_security_master(
            self.snapshot_path,
            self.symbols,
            as_of,
            latest_completed=latest_completed_session(now, session_closes()),
            fetch=fetch,
            now=now,
            source=f"{(self.alpaca_trading_url or DEFAULT_TRADING_URL).rstrip('/')}/v2/assets",
            log=dg.get_dagster_logger(),
        )


def _signature(path: Path) -> tuple:
    """What changes when the master's content may have: (name, size, mtime) of the file or of every file."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


@functools.lru_cache(maxsize=4)
def _load(path: str, signature: tuple) -> SecurityMaster:
    return read_security_master(path)
