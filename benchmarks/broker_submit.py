"""A 500-order day submitted through AlpacaBroker to the Alpaca-compatible server on 127.0.0.1 with a
server-side rate limit (Alpaca: 200 requests per minute per key): how long it takes and whether the client-side
limiter (`max_requests_per_minute`, default 190) keeps every request clear of a 429.

    .venv/bin/python benchmarks/broker_submit.py                    # 200/min: about two minutes
    .venv/bin/python benchmarks/broker_submit.py --per-minute 6000  # fast

Prints the requests made, the elapsed time, the 429s seen (must be 0) and the reference: the least time the
server's limit allows for that many requests (a full minute's burst, then a wait for the window to pass).
Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trading_dagster.domain.broker_records import OrderRequest  # noqa: E402
from trading_dagster.resources.brokers.alpaca import AlpacaBroker  # noqa: E402
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer  # noqa: E402
from trading_dagster_tests.fakes.alpaca_trading import AlpacaTradingFake  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--per-minute", type=int, default=200, help="the server's limit (Alpaca: 200)")
    parser.add_argument(
        "--client-per-minute", type=int, default=None, help="the broker's limiter (default: 95%% of the server's)"
    )
    args = parser.parse_args()
    client_limit = args.client_per_minute or max(1, math.floor(args.per_minute * 0.95))

    with AlpacaFakeServer() as server:
        trading = AlpacaTradingFake(server, cash=Decimal(100_000_000))
        trading.set_now(dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.UTC))
        symbols = [f"S{i:03d}" for i in range(args.orders)]
        for s in symbols:
            trading.set_price(s, Decimal("50.00"))
        trading.set_rate_limit(args.per_minute)
        broker = AlpacaBroker(
            TEST_KEY_ID, TEST_SECRET_KEY, url=server.url, retry_wait_seconds=3, max_requests_per_minute=client_limit
        )
        requests = [
            OrderRequest(f"bench-{s}", dt.date(2024, 4, 30), "bench", s, "buy", qty=Decimal(10)) for s in symbols
        ]
        started = time.monotonic()
        results = broker.submit(requests, since=dt.datetime(2024, 4, 30, 20, 0, tzinfo=dt.UTC))
        elapsed = time.monotonic() - started
        made = broker.requests_made
        too_many = sum(1 for r in server.requests if r.status == 429)
        submitted = sum(1 for r in results if r.outcome == "submitted")
        duplicates = sum(1 for r in requests if trading.orders_on_server(r.client_order_id) != 1)
        broker.close()
    reference = 60.0 * (math.ceil(made / args.per_minute) - 1)
    print(f"orders: {args.orders} submitted: {submitted} not exactly once: {duplicates}")
    print(f"server limit: {args.per_minute}/min  client limiter: {client_limit}/min")
    print(f"requests made: {made}  elapsed: {elapsed:.1f} s  429s seen: {too_many}")
    print(
        f"reference: {reference:.0f} s = the least {made} requests need under {args.per_minute}/min in any 60 s "
        f"(steady rate: {60.0 * made / args.per_minute:.0f} s)"
    )
    if too_many or duplicates or submitted != args.orders:
        sys.exit(1)


if __name__ == "__main__":
    main()
