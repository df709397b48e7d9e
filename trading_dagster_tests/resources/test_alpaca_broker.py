"""AlpacaBroker against the Alpaca-compatible server on 127.0.0.1 (alpaca-py's real TradingClient in
between): exactly once under every failure of a submit, rejections, fills, close-all, paging, timeouts, the
rate limiter, tick rounding and secrets. The broker-independent contract is test_broker_contract.py."""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from trading_dagster.domain.broker_records import BrokerError, OrderRequest
from trading_dagster.resources.brokers.alpaca import AlpacaBroker, RequestRateLimiter, round_to_tick
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY
from trading_dagster_tests.resources.alpaca_harness import AlpacaHarness

OPEN = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.UTC)  # Wednesday 10:00 New York
SATURDAY = dt.datetime(2024, 5, 4, 15, 0, tzinfo=dt.UTC)
SINCE = dt.datetime(2024, 4, 30, 20, 0, tzinfo=dt.UTC)  # the signal session's close
SESSION = dt.date(2024, 4, 30)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[AlpacaHarness]:
    h = AlpacaHarness(tmp_path, cash=Decimal(100_000))
    h.set_now(OPEN)
    for symbol, price in (("AAPL", "190.00"), ("MSFT", "400.00"), ("PENNY", "0.5000")):
        h.set_price(symbol, Decimal(price))
    yield h
    h.close()


def order(cid: str, symbol: str = "AAPL", qty: int = 10, side: str = "buy", **kw: object) -> OrderRequest:
    return OrderRequest(cid, SESSION, "momentum", symbol, side, qty=Decimal(qty), **kw)  # type: ignore[arg-type]


def batch(n: int = 3) -> list[OrderRequest]:
    return [order(f"cid-{i:04d}", qty=1) for i in range(n)]


def assert_exactly_once(h: AlpacaHarness, requests: list[OrderRequest]) -> None:
    for r in requests:
        assert h.orders_on_server(r.client_order_id) == 1, r.client_order_id


# -- exactly once -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4], ids=["sdk-retry-sees-duplicate", "after-sdk-retries"])
def test_504_on_submit_with_the_order_created_is_one_order(harness: AlpacaHarness, count: int) -> None:
    # count=1: the SDK retries the POST and meets 422 duplicate; count=4: every attempt answers 504, the
    # broker reports SubmitUncertain and base.submit finds the order by id
    harness.trading.fail_submit(504, created=True, count=count)
    [result] = harness.broker.submit([order("c-504")], since=SINCE)
    assert result.outcome in ("submitted", "already_existed")
    assert result.order is not None and result.order.client_order_id == "c-504"
    assert harness.orders_on_server("c-504") == 1


@pytest.mark.parametrize("count", [1, 4, 5], ids=["sdk-retry", "after-sdk-retries", "second-attempt-too"])
def test_504_on_submit_without_the_order_is_sent_again_once(harness: AlpacaHarness, count: int) -> None:
    harness.trading.fail_submit(504, created=False, count=count)
    [result] = harness.broker.submit([order("c-504n")], since=SINCE)
    assert result.outcome == "submitted"
    assert harness.orders_on_server("c-504n") == 1


def test_timeout_on_submit_with_the_order_created(tmp_path: Path) -> None:
    h = AlpacaHarness(tmp_path, timeout_seconds=0.3)
    try:
        h.set_now(OPEN)
        h.set_price("AAPL", Decimal(190))
        h.trading.stall_submit(2.0, created=True)
        started = time.monotonic()
        [result] = h.broker.submit([order("c-slow")], since=SINCE)
        assert time.monotonic() - started < 1.5  # the timeout fired; the lookup found the order
        assert result.outcome == "submitted" and result.order is not None
        assert h.orders_on_server("c-slow") == 1
        assert h.trading.submits_for("c-slow") == 1
    finally:
        h.close()


def test_timeout_on_submit_created_late_is_still_one_order(tmp_path: Path) -> None:
    # the stalled POST creates the order after the client gave up and resent it: the server's
    # "client_order_id must be unique" keeps it at one
    h = AlpacaHarness(tmp_path, timeout_seconds=0.3)
    try:
        h.set_now(OPEN)
        h.set_price("AAPL", Decimal(190))
        h.trading.stall_submit(0.8, created=False)
        [result] = h.broker.submit([order("c-late")], since=SINCE)
        assert result.outcome == "submitted"
        time.sleep(1.0)  # let the stalled request finish
        assert h.orders_on_server("c-late") == 1
        assert h.trading.submits_for("c-late") == 2
    finally:
        h.close()


@pytest.mark.parametrize("created", [True, False])
def test_dropped_connection_on_submit(harness: AlpacaHarness, created: bool) -> None:
    harness.trading.drop_submit(created=created)
    [result] = harness.broker.submit([order("c-drop")], since=SINCE)
    assert result.outcome == "submitted" and result.order is not None
    assert harness.orders_on_server("c-drop") == 1
    assert harness.trading.submits_for("c-drop") == (1 if created else 2)
    assert [r.status for r in harness.server.requests_to("/v2/orders") if r.method == "POST"][0] == 0


def test_422_duplicate_is_looked_up_not_failed(harness: AlpacaHarness) -> None:
    # the order exists but the listing since `since` misses it (submitted before it): the POST meets 422
    harness.broker._submit_one(order("c-dup"))
    [result] = harness.broker.submit([order("c-dup")], since=OPEN + dt.timedelta(hours=1))
    assert result.outcome == "already_existed" and result.order is not None
    assert harness.orders_on_server("c-dup") == 1
    assert harness.trading.submits_for("c-dup") == 2


def test_the_same_requests_twice_and_a_crash_between_submit_and_record(harness: AlpacaHarness) -> None:
    requests = batch(5)
    first = harness.broker.submit(requests, since=SINCE)
    assert [r.outcome for r in first] == ["submitted"] * 5
    # a retried run in a new process (the results were never recorded): a new broker, the same requests
    again = harness.make_broker().submit(requests, since=SINCE)
    assert [r.outcome for r in again] == ["already_existed"] * 5
    assert [r.order.id for r in again] == [r.order.id for r in first]  # type: ignore[union-attr]
    assert_exactly_once(harness, requests)
    assert sum(harness.trading.submits_for(r.client_order_id) for r in requests) == 5  # nothing re-sent


def test_two_runs_at_once(harness: AlpacaHarness) -> None:
    requests = batch(20)
    brokers = [harness.make_broker(), harness.make_broker()]
    barrier = threading.Barrier(2)
    results: dict[int, list] = {}

    def run(i: int) -> None:
        barrier.wait()
        results[i] = brokers[i].submit(requests, since=SINCE)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert_exactly_once(harness, requests)
    for j, r in enumerate(requests):
        outcomes = sorted(results[i][j].outcome for i in range(2))
        assert outcomes == ["already_existed", "submitted"], (r.client_order_id, outcomes)
        assert results[0][j].order.id == results[1][j].order.id


def test_429_then_success(harness: AlpacaHarness) -> None:
    harness.trading.fail_submit(429, created=False, count=2)  # the SDK retries (wait 0 here)
    [result] = harness.broker.submit([order("c-429")], since=SINCE)
    assert result.outcome == "submitted"
    assert harness.orders_on_server("c-429") == 1
    assert harness.trading.submits_for("c-429") == 3


def test_429_after_the_sdk_retries_is_uncertain_then_resolved(harness: AlpacaHarness) -> None:
    harness.trading.fail_submit(
        429, created=False, count=4
    )  # every SDK attempt: SubmitUncertain, lookup, resend
    [result] = harness.broker.submit([order("c-429b")], since=SINCE)
    assert result.outcome == "submitted"
    assert harness.orders_on_server("c-429b") == 1
    assert harness.trading.submits_for("c-429b") == 5
    lookups = harness.server.requests_to("/v2/orders:by_client_order_id")
    assert [r.status for r in lookups] == [404]


def test_no_definite_answer_raises_without_a_second_order(harness: AlpacaHarness) -> None:
    harness.trading.fail_submit(504, created=False, count=12)  # 3 attempts x 4 SDK tries
    with pytest.raises(BrokerError, match="no definite answer"):
        harness.broker.submit([order("c-never")], since=SINCE)
    assert harness.orders_on_server("c-never") == 0


# -- rejections ----------------------------------------------------------------------------------------------


def test_insufficient_buying_power_is_rejected_with_the_code(harness: AlpacaHarness) -> None:
    [ok, refused] = harness.broker.submit([order("c-ok", qty=10), order("c-big", qty=1000)], since=SINCE)
    assert ok.outcome == "submitted"
    assert refused.outcome == "rejected"
    assert refused.code == "40310000" and refused.message == "insufficient buying power"
    assert harness.orders_on_server("c-big") == 0


def test_selling_more_than_held_and_unknown_symbol_are_rejected(harness: AlpacaHarness) -> None:
    sell, unknown, subpenny_ok = harness.broker.submit(
        [
            order("c-sell", side="sell"),
            order("c-zzzz", symbol="ZZZZ"),
            order("c-tick", type="limit", limit_price=Decimal("190.123")),
        ],
        since=SINCE,
    )
    assert sell.outcome == "rejected" and sell.code == "40310000"
    assert sell.message is not None and sell.message.startswith("insufficient qty available")
    assert unknown.outcome == "rejected" and unknown.code == "40010001"
    # refused before sending, as Alpaca and the paper broker refuse it: never rounded to a price nobody chose
    assert subpenny_ok.outcome == "rejected" and subpenny_ok.code == "42210000"
    assert harness.orders_on_server("c-tick") == 0


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("190.123", "190.12"),
        ("190.125", "190.13"),
        ("1.005", "1.01"),
        ("1", "1.00"),
        ("0.12345", "0.1235"),
        ("0.5", "0.5000"),
        ("0.99996", "1.00"),
        ("0.00004", None),
    ],
)
def test_round_to_tick(price: str, tick: str | None) -> None:
    if tick is None:
        with pytest.raises(ValueError, match="smallest tick"):
            round_to_tick(Decimal(price))
    else:
        assert round_to_tick(Decimal(price)) == Decimal(tick)
        assert str(round_to_tick(Decimal(price))) == tick


def test_every_order_kind_on_valid_ticks_reaches_the_server(harness: AlpacaHarness) -> None:
    harness.trading.set_position("MSFT", Decimal(20), Decimal(380))
    kinds = [
        order("k-limit", type="limit", limit_price=Decimal("189.99")),
        order("k-stop", type="stop", stop_price=Decimal("195.00")),
        order(
            "k-stoplimit", type="stop_limit", stop_price=Decimal("195.00"), limit_price=Decimal("196.00")
        ),
        order(
            "k-trail", symbol="MSFT", side="sell", qty=5, type="trailing_stop", trail_percent=Decimal("2.5")
        ),
        order(
            "k-bracket",
            type="limit",
            limit_price=Decimal("190.00"),
            order_class="bracket",
            take_profit=Decimal("199.50"),
            stop_loss=Decimal("180.50"),
            stop_loss_limit=Decimal("180.00"),
        ),
        order("k-oto", qty=2, order_class="oto", stop_loss=Decimal("170.33")),
        order(
            "k-oco",
            symbol="MSFT",
            side="sell",
            qty=5,
            type="limit",
            order_class="oco",
            take_profit=Decimal("420.01"),
            stop_loss=Decimal("380.00"),
        ),
        order("k-penny", symbol="PENNY", qty=100, type="limit", limit_price=Decimal("0.4999")),
        OrderRequest("k-notional", SESSION, "momentum", "AAPL", "buy", notional=Decimal("1000.50")),
        OrderRequest(
            "k-frac",
            SESSION,
            "momentum",
            "AAPL",
            "buy",
            qty=Decimal("0.5"),
            type="limit",
            limit_price=Decimal(190),
        ),
    ]
    results = harness.broker.submit(kinds, since=SINCE)
    assert [(r.request.client_order_id, r.outcome) for r in results] == [
        (k.client_order_id, "submitted") for k in kinds
    ], [r.message for r in results]
    by_id = {r.request.client_order_id: r.order for r in results}
    bracket = by_id["k-bracket"]
    assert bracket is not None and bracket.order_class == "bracket"
    assert [(leg.type, leg.status, leg.limit_price, leg.stop_price) for leg in bracket.legs] == [
        ("limit", "held", Decimal("199.50"), None),
        ("stop_limit", "held", Decimal("180.00"), Decimal("180.50")),
    ]
    assert by_id["k-penny"].limit_price == Decimal("0.4999")  # type: ignore[union-attr]
    assert [leg.type for leg in by_id["k-oco"].legs] == ["stop"]  # type: ignore[union-attr]
    assert all(o is not None and o.status == "new" and o.filled_qty == 0 for o in by_id.values())


# -- fills, close-all, closed market ------------------------------------------------------------------------


def test_partial_fills_are_cumulative_and_each_execution_is_read_once(harness: AlpacaHarness) -> None:
    harness.trading.partial_fills("c-part", ["0.3", "0.3"])
    [result] = harness.broker.submit([order("c-part", qty=10)], since=SINCE)
    assert result.order is not None and result.order.filled_qty == 0  # never filled in the POST answer
    seen = []
    for expected in ("3", "6", "10", "10"):
        harness.work_orders()
        o = harness.broker.order_by_client_id("c-part")
        assert o is not None
        seen.append((o.status, o.filled_qty))
        assert o.filled_qty == Decimal(expected)
    assert seen[-1][0] == "filled" and seen[0][0] == "partially_filled"
    fills = harness.broker.fills(after=SINCE)
    assert [(f.qty, f.cum_qty, f.leaves_qty) for f in fills] == [
        (Decimal(3), Decimal(3), Decimal(7)),
        (Decimal(3), Decimal(6), Decimal(4)),
        (Decimal(4), Decimal(10), Decimal(0)),
    ]
    assert {f.client_order_id for f in fills} == {"c-part"}
    assert harness.broker.fills(after=SINCE) == fills  # read again: the same executions, once each
    assert len({f.execution_id for f in fills}) == 3
    [position] = harness.broker.positions()
    assert position.qty == Decimal(10) and position.avg_entry_price == Decimal(190)
    assert harness.broker.account().cash == Decimal(100_000) - Decimal(1900)


def test_fills_page_past_one_hundred(harness: AlpacaHarness) -> None:
    requests = [order(f"f-{i:03d}", qty=1) for i in range(130)]
    harness.broker.submit(requests, since=SINCE)
    harness.work_orders()
    fills = harness.broker.fills(after=SINCE)
    assert len(fills) == 130 and len({f.execution_id for f in fills}) == 130
    assert [f.client_order_id for f in fills] == [r.client_order_id for r in requests]
    pages = [r for r in harness.server.requests if r.path == "/v2/account/activities/FILL"]
    assert len(pages) == 2 and "page_token" in pages[1].params


def test_bracket_exit_fills_and_the_other_is_canceled(harness: AlpacaHarness) -> None:
    req = order("c-br", qty=5, order_class="bracket", take_profit=Decimal(200), stop_loss=Decimal(180))
    harness.broker.submit([req], since=SINCE)
    harness.work_orders()  # the entry fills; exits become active
    harness.set_price("AAPL", Decimal("201.00"))
    harness.work_orders()
    o = harness.broker.order_by_client_id("c-br")
    assert o is not None and o.status == "filled"
    assert sorted((leg.type, leg.status) for leg in o.legs) == [("limit", "filled"), ("stop", "canceled")]
    assert harness.broker.positions() == []


def test_close_all_returns_every_item_of_the_207_failures_included(harness: AlpacaHarness) -> None:
    harness.broker.submit([order("c-a", qty=5), order("c-m", symbol="MSFT", qty=3)], since=SINCE)
    harness.work_orders()
    harness.broker.submit(
        [order("c-resting", side="sell", qty=1, type="limit", limit_price=Decimal(250))], since=SINCE
    )
    harness.trading.fail_close("MSFT")
    results = {r.symbol: r for r in harness.broker.close_all_positions(cancel_orders=True)}
    assert set(results) == {"AAPL", "MSFT"}
    assert results["AAPL"].ok and results["AAPL"].status == 200
    assert results["AAPL"].order is not None and results["AAPL"].order.side == "sell"
    assert results["AAPL"].order.qty == Decimal(5)
    assert not results["MSFT"].ok and results["MSFT"].status == 403 and results["MSFT"].order is None
    assert results["MSFT"].message == "insufficient qty available for order"
    assert harness.broker.order_by_client_id("c-resting").status == "canceled"  # type: ignore[union-attr]
    req = [r for r in harness.server.requests if r.method == "DELETE" and r.path == "/v2/positions"]
    assert req[0].params == {"cancel_orders": "True"}


def test_cancel_and_cancel_all(harness: AlpacaHarness) -> None:
    results = harness.broker.submit(
        [order(f"c-x{i}", type="limit", limit_price=Decimal(100)) for i in range(3)], since=SINCE
    )
    first = results[0].order.id  # type: ignore[union-attr]
    assert harness.broker.cancel(first).ok
    again = harness.broker.cancel(first)
    assert (again.ok, again.status) == (False, 422)
    missing = harness.broker.cancel("00000000-0000-4000-8000-000000000000")
    assert (missing.ok, missing.status) == (False, 404)
    rest = harness.broker.cancel_all()
    assert len(rest) == 2 and all(r.ok and r.status == 200 for r in rest)
    assert harness.broker.orders(status="open") == []


def test_orders_accepted_while_the_market_is_closed(harness: AlpacaHarness) -> None:
    harness.set_now(SATURDAY)
    clock = harness.broker.clock()
    assert not clock.is_open and clock.next_open == dt.datetime(2024, 5, 6, 13, 30, tzinfo=dt.UTC)
    [result] = harness.broker.submit([order("c-weekend")], since=SINCE)
    assert result.outcome == "submitted" and result.order.status == "accepted"  # type: ignore[union-attr]
    harness.work_orders()
    assert harness.broker.order_by_client_id("c-weekend").status == "accepted"  # type: ignore[union-attr]
    harness.set_now(dt.datetime(2024, 5, 6, 13, 31, tzinfo=dt.UTC))
    harness.work_orders()
    assert harness.broker.order_by_client_id("c-weekend").status == "filled"  # type: ignore[union-attr]


def test_orders_page_past_500(harness: AlpacaHarness) -> None:
    harness.trading.set_cash(Decimal(10_000_000))
    requests = [order(f"p-{i:04d}", qty=1) for i in range(1100)]
    harness.broker.submit(requests[:600], since=SINCE)
    harness.server.clear_log()
    # the second run lists 600 orders (two pages) before sending the other 500
    results = harness.broker.submit(requests, since=SINCE)
    assert [r.outcome for r in results] == ["already_existed"] * 600 + ["submitted"] * 500
    listings = [r for r in harness.server.requests if r.method == "GET" and r.path == "/v2/orders"]
    assert len(listings) == 2 and all(r.params["limit"] == "500" for r in listings)
    orders = harness.broker.orders(after=SINCE)
    assert [o.client_order_id for o in orders] == [r.client_order_id for r in requests]
    assert_exactly_once(harness, requests)


# -- timeouts, rate limit, secrets --------------------------------------------------------------------------


def test_request_timeout_fires_against_a_stalled_server(tmp_path: Path) -> None:
    h = AlpacaHarness(tmp_path, timeout_seconds=0.3)
    try:
        h.server.stall_next(3.0, path="/v2/clock")
        started = time.monotonic()
        with pytest.raises(BrokerError, match=r"get clock: no answer within 0.3 s"):
            h.broker.clock()
        assert time.monotonic() - started < 2.0
    finally:
        h.close()


def test_rate_limiter_never_lets_more_than_the_limit_into_a_minute() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RequestRateLimiter(5, sleep=sleep, clock=lambda: now[0])
    times = []
    for _ in range(12):
        limiter.acquire()
        times.append(now[0])
        now[0] += 0.5
    assert times[:5] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert times[5] == 60.0 and times[10] == 120.0
    assert all(sum(1 for t in times if start <= t < start + 60) <= 5 for start in times)


def test_the_broker_waits_for_the_limiter_before_each_request(harness: AlpacaHarness) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    broker = AlpacaBroker(
        TEST_KEY_ID,
        TEST_SECRET_KEY,
        url=harness.server.url,
        retry_wait_seconds=0,
        max_requests_per_minute=3,
        sleep=sleep,
        clock=lambda: now[0],
    )
    for _ in range(7):
        broker.clock()
    assert slept == [60.0, 60.0] and broker.requests_made == 7
    broker.close()


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_secrets_appear_in_no_exception_and_no_log(harness: AlpacaHarness, tmp_path: Path) -> None:
    broker = harness.broker
    raised: list[BaseException] = []

    def catch(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001
            raised.append(exc)

    harness.server.fail_next(
        1, 401, {"code": 40110000, "message": "request is not authorized"}, path="/v2/account"
    )
    catch(broker.account)
    harness.server.fail_next(1, 500, "<html>internal error</html>", path="/v2/positions")
    catch(broker.positions)
    harness.trading.fail_submit(504, created=False, count=12)
    catch(lambda: broker.submit([order("c-secret")], since=SINCE))
    slow = AlpacaHarness(tmp_path, timeout_seconds=0.2)
    slow.server.stall_next(1.0)
    catch(slow.broker.clock)
    slow.close()
    catch(slow.broker.clock)  # the server is gone: connection refused
    wrong = AlpacaBroker(
        TEST_KEY_ID, "wrong-" + TEST_SECRET_KEY, url=harness.server.url, retry_wait_seconds=0
    )
    catch(wrong.account)
    assert len(raised) == 6 and all(isinstance(e, BrokerError) for e in raised)
    for exc in raised:
        text = _text(exc)
        assert TEST_SECRET_KEY not in text and TEST_KEY_ID not in text, text
    assert TEST_SECRET_KEY not in repr(broker) and TEST_SECRET_KEY not in repr(harness.server.requests)
    assert all(r.key_id in (TEST_KEY_ID, None) for r in harness.server.requests)
