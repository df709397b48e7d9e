"""The broker interface the execution assets, jobs and commands trade through (decision 0005).

Plain Python, no Dagster: `resources/configured.py` wraps each implementation in a ConfigurableResource
subclass of the abstract `BrokerResource`. Two implementations, one contract suite
(`trading_dagster_tests/resources/test_broker_contract.py`):

* `brokers/paper.py`  `PaperBroker`: built in, in process, a ledger file, an injectable clock and quotes;
* `brokers/alpaca.py` `AlpacaBroker`: alpaca-py's `TradingClient` (paper API by default, live on opt-in).

Exactly once lives here, in `submit`, shared by both: one listing of the orders since the session started,
then one call per missing id; "client_order_id must be unique" and an uncertain answer (a 504 or a timeout
after the SDK's retries, a dropped connection) are looked up by id before anything is sent again.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from trading_dagster.domain.broker_records import (
    BrokerAccount,
    BrokerClock,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    BrokerSnapshot,
    CancelResult,
    CloseResult,
    OrderRequest,
    SubmitResult,
)

DEFAULT_SUBMIT_ATTEMPTS = 3


class DuplicateClientOrderId(Exception):
    """The broker already holds an order under this client order id (Alpaca: 422, "client_order_id must be
    unique"): look it up, never fail and never send it again."""


class SubmitUncertain(Exception):
    """The submit may or may not have created the order (a 504 or 429 after the SDK's retries, a timeout, a
    dropped connection): look it up by client order id before trying again."""


class OrderRejected(Exception):
    """The broker refused the order (Alpaca 403/422): not retried. `code` and `message` are the broker's."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Broker(ABC):
    """A brokerage account. Every method is one or a few API calls; nothing is cached between calls."""

    @property
    @abstractmethod
    def account_id(self) -> str:
        """A stable name of the account, hashed into every client order id (paper and live never collide)."""

    @property
    @abstractmethod
    def paper(self) -> bool:
        """True unless this is a live (real money) account."""

    @abstractmethod
    def clock(self) -> BrokerClock:
        """What "now" is: the broker's time, whether the market is open, the next open and close."""

    @abstractmethod
    def account(self) -> BrokerAccount: ...

    @abstractmethod
    def positions(self) -> list[BrokerPosition]: ...

    @abstractmethod
    def orders(
        self,
        *,
        status: Literal["open", "closed", "all"] = "all",
        after: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[BrokerOrder]:
        """Every order submitted after `after` (and before `until`), all pages, oldest first."""

    @abstractmethod
    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order under this client order id, or None when the broker has none."""

    @abstractmethod
    def fills(self, *, after: dt.datetime | None = None, until: dt.datetime | None = None) -> list[BrokerFill]:
        """Every execution (fill or partial fill) after `after`, oldest first, each once."""

    @abstractmethod
    def cancel(self, order_id: str) -> CancelResult:
        """Ask to cancel one order (a request: the order may still fill; poll to confirm)."""

    @abstractmethod
    def cancel_all(self) -> list[CancelResult]:
        """Ask to cancel every open order; one result per order (failures do not raise)."""

    @abstractmethod
    def close_all_positions(self, *, cancel_orders: bool = True) -> list[CloseResult]:
        """Submit a market order closing each position (open orders cancelled first); one result per
        symbol, failures included (they do not raise): the caller checks every item."""

    @abstractmethod
    def _submit_one(self, request: OrderRequest) -> BrokerOrder:
        """Send one order. Raise DuplicateClientOrderId, SubmitUncertain or OrderRejected as they apply;
        BrokerError for anything else."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release connections (nothing to do by default)."""

    def advance(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Let the market move before a poll: a real broker's market moves by itself (nothing to do); the
        built-in paper broker works its open orders here."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared behaviour ------------------------------------------------------------------------------

    def snapshot(self) -> BrokerSnapshot:
        """Clock, account, positions and open orders, read one after the other."""
        clock = self.clock()
        account = self.account()
        positions = {p.symbol: p for p in self.positions()}
        return BrokerSnapshot(clock, account, positions, tuple(self.orders(status="open")))

    def submit(
        self,
        requests: Sequence[OrderRequest],
        *,
        since: dt.datetime,
        attempts: int = DEFAULT_SUBMIT_ATTEMPTS,
    ) -> list[SubmitResult]:
        """Submit each request at most once, whatever happened before (decision 0005, section 3).

        One listing of the orders submitted after `since` (the signal session's start: every id of the
        session is dated by it) finds the ids the broker already has; each other request is sent, and an
        answer that does not say what happened is resolved by looking the id up before sending again.
        Results come in the order of `requests`."""
        ids = [r.client_order_id for r in requests]
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"client order id {dup} appears twice in one submission")
        existing = {o.client_order_id: o for o in self.orders(status="all", after=since)} if requests else {}
        out: list[SubmitResult] = []
        for request in requests:
            known = existing.get(request.client_order_id)
            if known is not None:
                out.append(SubmitResult(request, "already_existed", known))
            else:
                out.append(self._submit_exactly_once(request, attempts))
        return out

    def _submit_exactly_once(self, request: OrderRequest, attempts: int) -> SubmitResult:
        cid = request.client_order_id
        last: Exception | None = None
        for _ in range(max(1, attempts)):
            try:
                return SubmitResult(request, "submitted", self._submit_one(request))
            except OrderRejected as exc:
                return SubmitResult(request, "rejected", None, exc.code, exc.message)
            except DuplicateClientOrderId:
                found = self.order_by_client_id(cid)
                if found is None:
                    raise BrokerError(
                        f"submit {cid}: the broker says the id is taken, but has no order under it"
                    ) from None
                return SubmitResult(request, "already_existed", found)
            except SubmitUncertain as exc:
                last = exc
                found = self.order_by_client_id(cid)
                if found is not None:  # our earlier attempt reached the broker
                    return SubmitResult(request, "submitted", found)
        raise BrokerError(f"submit {cid}: no definite answer after {attempts} attempts ({last})")
