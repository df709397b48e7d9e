"""AlpacaMarketDataSource and AlpacaCorporateActions through the real alpaca-py 0.44.0 client, against the
Alpaca-compatible server in trading_dagster_tests/fakes (127.0.0.1, real HTTP), serving the shipped sample."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from alpaca.data.enums import CorporateActionsType
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.models import BarSet
from alpaca.data.models.corporate_actions import CorporateActionsSet
from alpaca.data.requests import CorporateActionsRequest

from trading_dagster.domain.bars import RAW_SCHEMA, PriceDataError
from trading_dagster.resources.alpaca_data import (
    SPLIT_SCHEMA,
    AlpacaCorporateActions,
    AlpacaMarketDataSource,
    MarketDataError,
    bars_to_raw_frame,
    splits_to_frame,
)
from trading_dagster.resources.market_data import FileMarketDataSource, MarketDataSource
from trading_dagster_tests.fakes import alpaca_server as fake_alpaca
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer

alpaca_server = fake_alpaca.alpaca_server  # the fixture: a started fake server, no data

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
SYMBOLS = ["AAPL", "MSFT", "SPY"]


@pytest.fixture(scope="module")
def sample() -> FileMarketDataSource:
    return FileMarketDataSource(SAMPLE)


@pytest.fixture(scope="module")
def sample_bars() -> pl.DataFrame:
    """The shipped sample in its vendor spelling (ticker, date, ...), 2016-2017, served by the fake."""
    return pl.read_parquet(SAMPLE).filter(pl.col("date") >= dt.date(2016, 1, 1))


def make_source(server: AlpacaFakeServer, symbols=None, **kwargs) -> AlpacaMarketDataSource:
    kwargs.setdefault("retry_wait_seconds", 0)  # retries stay real, the 3 s sleeps do not
    kwargs.setdefault("timeout_seconds", 5)
    return AlpacaMarketDataSource(TEST_KEY_ID, TEST_SECRET_KEY, symbols, url_override=server.url, **kwargs)


# --------------------------------------------------------------------------------------------------------
# Bars: values, dates, pagination, parameters
# --------------------------------------------------------------------------------------------------------


def test_bars_convert_exactly_to_the_raw_schema(alpaca_server, sample, sample_bars):
    """Several symbols over the March 2017 DST switch (bars at 05:00Z before, 04:00Z after): same frame as
    the file source gives for the same data."""
    alpaca_server.set_bars(sample_bars)
    source = make_source(alpaca_server)
    assert isinstance(source, MarketDataSource)
    start, end = dt.date(2017, 3, 8), dt.date(2017, 3, 15)
    out = source.fetch_bars(start, end, ["spy", "MSFT", "AAPL"])
    assert out.schema == pl.Schema(RAW_SCHEMA)
    expected = sample.fetch_bars(start, end, SYMBOLS)
    assert out.height == 3 * 6  # 6 sessions (Mar 11/12 is a weekend)
    assert out.equals(expected)
    assert out.row(0) == ("AAPL", dt.date(2017, 3, 8), 137.35, 138.19, 137.22, 137.4, 18180205)


def test_dates_are_new_york_dates_of_midnight_stamps():
    barset = BarSet(
        {
            "X": [
                {
                    "t": "2024-01-02T05:00:00Z",
                    "o": 1,
                    "h": 2,
                    "l": 0.5,
                    "c": 1.5,
                    "v": 100,
                    "n": 3,
                    "vw": 1.2,
                },
                {
                    "t": "2024-07-01T04:00:00Z",
                    "o": 1,
                    "h": 2,
                    "l": 0.5,
                    "c": 1.5,
                    "v": 7.0,
                    "n": None,
                    "vw": None,
                },
            ]
        }
    )
    out = bars_to_raw_frame(barset)
    assert out.schema == pl.Schema(RAW_SCHEMA)
    assert out["date"].to_list() == [dt.date(2024, 1, 2), dt.date(2024, 7, 1)]
    assert out["volume"].to_list() == [100, 7]
    # UTC midnight is 19:00 the previous evening in New York: whose session is that? Refuse to guess.
    utc_midnight = BarSet(
        {"X": [{"t": "2024-01-02T00:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "n": 1, "vw": 1}]}
    )
    with pytest.raises(PriceDataError, match="not stamped at midnight New York.*X 2024-01-02T00:00:00Z"):
        bars_to_raw_frame(utc_midnight)
    fractional = BarSet(
        {"X": [{"t": "2024-01-02T05:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1.5, "n": 1, "vw": 1}]}
    )
    with pytest.raises(PriceDataError, match="whole number of shares"):
        bars_to_raw_frame(fractional)


def test_pagination_reads_every_page_once(sample, sample_bars):
    """A page holds at most 7 bars (pages split inside a symbol and across symbols): all rows, once each."""
    server = AlpacaFakeServer(bars=sample_bars, max_page_size=7)
    with server:
        source = make_source(server)
        start, end = dt.date(2017, 1, 3), dt.date(2017, 2, 28)
        out = source.fetch_bars(start, end, SYMBOLS)
        expected = sample.fetch_bars(start, end, SYMBOLS)
        assert out.height == expected.height == 3 * 39  # 39 sessions, 117 bars: 17 pages of <= 7
        assert out.equals(expected)
        assert out.select("symbol", "date").is_unique().all()
        calls = server.requests_to("/v2/stocks/bars")
        assert len(calls) == math.ceil(expected.height / 7)
        assert "page_token" not in calls[0].params
        assert all(c.params.get("page_token") for c in calls[1:])
        assert len({c.params["page_token"] for c in calls[1:]}) == len(calls) - 1
        # the rest of the query is the same on every page
        assert (
            len({tuple(sorted((k, v) for k, v in c.params.items() if k != "page_token")) for c in calls}) == 1
        )
        assert not server.errors


def test_query_parameters_reach_the_server(alpaca_server, sample_bars):
    alpaca_server.set_bars(sample_bars)
    make_source(alpaca_server, feed="sip", adjustment="raw").fetch_bars(
        dt.date(2017, 3, 8), dt.date(2017, 3, 15), ["SPY", "AAPL"]
    )
    make_source(alpaca_server).fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3), ["SPY"])
    first, second = alpaca_server.requests_to("/v2/stocks/bars")
    assert first.params == {
        "symbols": "AAPL,SPY",
        "timeframe": "1Day",
        "feed": "sip",
        "adjustment": "raw",
        # midnight New York of the first day (EST) .. 23:59:59 New York of the last (EDT), sent in UTC
        "start": "2017-03-08T05:00:00+00:00",
        "end": "2017-03-16T03:59:59+00:00",
        "limit": "10000",  # alpaca-py always sends one; the server may still page below it
    }
    assert (second.params["feed"], second.params["adjustment"]) == ("iex", "split")  # the defaults
    assert second.key_id == TEST_KEY_ID and second.authorized


def test_symbols_none_uses_the_universe_in_bounded_chunks(alpaca_server, sample, sample_bars):
    alpaca_server.set_bars(sample_bars)
    universe = ["XOM", "aapl", "SPY", "MSFT", "GE"]
    source = make_source(alpaca_server, universe, max_symbols_per_request=2)
    day = dt.date(2017, 11, 10)
    out = source.fetch_bars(day, day)
    assert out.equals(sample.fetch_bars(day, day, universe))
    assert out["symbol"].to_list() == ["AAPL", "GE", "MSFT", "SPY", "XOM"]
    assert [c.params["symbols"] for c in alpaca_server.requests] == ["AAPL,GE", "MSFT,SPY", "XOM"]
    assert source.fetch_bars(day, day, []).equals(pl.DataFrame(schema=RAW_SCHEMA))
    assert len(alpaca_server.requests) == 3  # an empty symbol list asks nothing

    no_universe = make_source(alpaca_server)
    with pytest.raises(ValueError, match="needs a configured universe"):
        no_universe.fetch_bars(day, day)
    with pytest.raises(ValueError, match="start 2017-11-10 is after end 2017-11-09"):
        no_universe.fetch_bars(day, dt.date(2017, 11, 9), ["SPY"])
    with pytest.raises(ValueError, match="unknown Alpaca feed 'nyse'"):
        make_source(alpaca_server, feed="nyse")
    with pytest.raises(ValueError, match="unknown Alpaca adjustment 'splits'"):
        make_source(alpaca_server, adjustment="splits")


def test_empty_days_and_missing_symbols(alpaca_server, sample_bars):
    alpaca_server.set_bars(sample_bars)
    source = make_source(alpaca_server, ["SPY", "NOSUCH"])
    for start, end in [
        (dt.date(2016, 12, 26), dt.date(2016, 12, 26)),  # Christmas observed: no session
        (dt.date(2017, 7, 1), dt.date(2017, 7, 2)),  # a weekend
        (dt.date(2030, 1, 1), dt.date(2030, 1, 31)),  # no data at all
    ]:
        out = source.fetch_bars(start, end)
        assert out.height == 0
        assert out.schema == pl.Schema(RAW_SCHEMA)
    out = source.fetch_bars(dt.date(2016, 12, 27), dt.date(2016, 12, 27))  # NOSUCH is simply absent
    assert out.select("symbol", "date").rows() == [("SPY", dt.date(2016, 12, 27))]
    assert all(r.status == 200 for r in alpaca_server.requests)


# --------------------------------------------------------------------------------------------------------
# Errors and retries
# --------------------------------------------------------------------------------------------------------


def test_bad_credentials_name_the_endpoint_and_never_the_secret(alpaca_server):
    secret = "wrong-secret-Kq93xVb7"
    source = AlpacaMarketDataSource(TEST_KEY_ID, secret, ["SPY"], url_override=alpaca_server.url)
    with pytest.raises(MarketDataError) as info:
        source.fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))
    message = str(info.value)
    assert f"{alpaca_server.url}/v2/stocks/bars" in message
    assert "HTTP 401 'unauthorized'" in message
    assert "check APCA key id / secret" in message
    assert secret not in message and secret not in repr(source)
    assert TEST_KEY_ID not in message  # only a masked prefix
    assert info.value.status_code == 401
    assert len(alpaca_server.requests) == 1  # 401 is not retried
    with pytest.raises(ValueError, match="needs an API key id and a secret key"):
        AlpacaMarketDataSource(TEST_KEY_ID, "", ["SPY"])


def test_error_text_is_scrubbed_of_the_secret_and_plan_refusals_say_so(alpaca_server, sample_bars):
    alpaca_server.set_bars(sample_bars)
    source = make_source(alpaca_server, ["SPY"])
    alpaca_server.fail_next(1, 403, {"message": f"key {TEST_SECRET_KEY} is disabled"})
    with pytest.raises(MarketDataError) as info:
        source.fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))
    assert TEST_SECRET_KEY not in str(info.value) and "key *** is disabled" in str(info.value)

    sip_refused = AlpacaFakeServer(bars=sample_bars, forbidden_feeds=("sip",))
    with (
        sip_refused,
        pytest.raises(MarketDataError, match="subscription does not permit.*plan covers feed=sip"),
    ):
        make_source(sip_refused, ["SPY"], feed="sip").fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))


@pytest.mark.parametrize("status", [400, 422])
def test_rejected_parameters_carry_alpacas_message(alpaca_server, status):
    alpaca_server.fail_next(1, status, {"message": "invalid symbol: BRK$B"})
    with pytest.raises(
        MarketDataError, match=f"rejected daily bars.*HTTP {status} 'invalid symbol: BRK\\$B'"
    ):
        make_source(alpaca_server, ["SPY"]).fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))


def test_a_real_422_from_the_server(alpaca_server):
    """The fake's own validation (not an injected fault): alpaca-py lets `limit=0` through."""
    client = StockHistoricalDataClient(TEST_KEY_ID, TEST_SECRET_KEY, url_override=alpaca_server.url)
    from alpaca.common.exceptions import APIError

    with pytest.raises(APIError) as info:
        client.get("/stocks/bars", {"symbols": "SPY", "timeframe": "1Day", "limit": 0})
    assert info.value.status_code == 422
    assert "invalid limit" in info.value.message
    with pytest.raises(KeyError):  # data-API bodies have no code: APIError.code raises
        _ = info.value.code


def test_an_answer_alpaca_py_cannot_parse(alpaca_server):
    """A bar without the `vw` key (alpaca-py requires the key, null allowed): a clear error, not a pydantic dump."""
    bar = {"t": "2017-01-03T05:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "n": 1}
    alpaca_server.fail_next(1, 200, {"bars": {"SPY": [bar]}, "next_page_token": None})
    with pytest.raises(MarketDataError, match="a body alpaca-py 0.44.0 cannot read.*vwap"):
        make_source(alpaca_server, ["SPY"]).fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))


def test_429_is_retried_by_alpaca_py_then_succeeds(alpaca_server, sample, sample_bars):
    alpaca_server.set_bars(sample_bars)
    alpaca_server.fail_next(2, 429)
    day = dt.date(2017, 6, 1)
    out = make_source(alpaca_server, SYMBOLS).fetch_bars(day, day)
    assert out.equals(sample.fetch_bars(day, day, SYMBOLS))
    assert [r.status for r in alpaca_server.requests] == [429, 429, 200]


def test_alpaca_py_retry_defaults_and_ours():
    """What alpaca-py 0.44.0 does alone (notes section 3.3), and what the source sets on its client."""
    plain = StockHistoricalDataClient(TEST_KEY_ID, TEST_SECRET_KEY)
    assert (plain._retry, plain._retry_wait, plain._retry_codes) == (3, 3, [429, 504])
    ours = AlpacaMarketDataSource(TEST_KEY_ID, TEST_SECRET_KEY)._client
    assert (ours._retry, ours._retry_wait, ours._retry_codes) == (3, 3.0, [429, 500, 502, 503, 504])


def test_rate_limit_that_does_not_clear(alpaca_server):
    alpaca_server.fail_next(3, 429)
    with pytest.raises(MarketDataError, match="rate limit hit.*after 3 attempts") as info:
        make_source(alpaca_server, ["SPY"], retry_attempts=2).fetch_bars(
            dt.date(2017, 1, 3), dt.date(2017, 1, 3)
        )
    assert info.value.status_code == 429
    assert len(alpaca_server.requests) == 3


def test_server_errors_retried_then_reported(alpaca_server, sample_bars):
    alpaca_server.set_bars(sample_bars)
    source = make_source(alpaca_server, ["SPY"])
    day = dt.date(2017, 1, 3)
    alpaca_server.fail_next(1, 500)  # one blip: retried (GETs are idempotent)
    assert source.fetch_bars(day, day).height == 1
    alpaca_server.clear_log()
    alpaca_server.fail_next(4, 502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
    with pytest.raises(MarketDataError) as info:
        source.fetch_bars(day, day)
    message = str(info.value)
    assert "after 4 attempts: HTTP 502" in message and "502 Bad Gateway" in message
    assert f"{alpaca_server.url}/v2/stocks/bars" in message
    assert len(alpaca_server.requests) == 4

    no_retry = make_source(alpaca_server, ["SPY"], retry_codes=(429, 504))  # alpaca-py's own choice
    alpaca_server.clear_log()
    alpaca_server.fail_next(1, 500)
    with pytest.raises(MarketDataError, match="after 1 attempt: HTTP 500"):
        no_retry.fetch_bars(day, day)
    assert len(alpaca_server.requests) == 1


def test_connection_refused_names_the_url():
    with AlpacaFakeServer() as gone:
        url = gone.url
    source = AlpacaMarketDataSource(TEST_KEY_ID, TEST_SECRET_KEY, ["SPY"], url_override=url)
    with pytest.raises(MarketDataError, match="cannot connect") as info:
        source.fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))
    assert f"{url}/v2/stocks/bars" in str(info.value)
    assert "Connection refused" in str(info.value)
    assert TEST_SECRET_KEY not in str(info.value)


def test_a_stalled_server_times_out_instead_of_hanging(alpaca_server):
    alpaca_server.stall_next(3.0)
    source = make_source(alpaca_server, ["SPY"], timeout_seconds=0.3)
    with pytest.raises(MarketDataError, match="did not answer daily bars.*within 0.3 s"):
        source.fetch_bars(dt.date(2017, 1, 3), dt.date(2017, 1, 3))


# --------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------

SPLITS = pl.DataFrame(
    {
        "symbol": ["AAPL", "XYZ", "NVDA", "ABC", "AAPL"],
        "ex_date": [
            dt.date(2014, 6, 9),
            dt.date(2014, 6, 10),
            dt.date(2014, 7, 1),
            dt.date(2014, 9, 2),
            dt.date(2020, 8, 31),
        ],
        "new_rate": [7, 1, 3, 1, 4],
        "old_rate": [1, 10, 2, 50, 1],
    }
)


def test_splits_ratio_direction_and_pagination(alpaca_server):
    alpaca_server.set_splits(SPLITS)
    alpaca_server.max_page_size = 2
    actions = AlpacaCorporateActions(
        TEST_KEY_ID, TEST_SECRET_KEY, url_override=alpaca_server.url, retry_wait_seconds=0
    )
    out = actions.fetch_splits(dt.date(2014, 1, 1), dt.date(2014, 12, 31))
    assert out.schema == pl.Schema(SPLIT_SCHEMA)
    assert out.rows() == [
        ("AAPL", dt.date(2014, 6, 9), 7.0, "alpaca"),  # 7-for-1
        ("XYZ", dt.date(2014, 6, 10), 0.1, "alpaca"),  # 1-for-10 reverse
        ("NVDA", dt.date(2014, 7, 1), 1.5, "alpaca"),  # 3-for-2
        ("ABC", dt.date(2014, 9, 2), 0.02, "alpaca"),  # 1-for-50 reverse
    ]
    calls = alpaca_server.requests_to("/v1/corporate-actions")
    assert len(calls) == 2  # 4 splits, 2 per page
    assert calls[0].params == {
        "types": "forward_split,reverse_split",
        "start": "2014-01-01",
        "end": "2014-12-31",
        "sort": "asc",
        "limit": "1000",
    }
    assert actions.fetch_splits(dt.date(2015, 1, 1), dt.date(2015, 12, 31)).equals(
        pl.DataFrame(schema=SPLIT_SCHEMA)
    )


def test_splits_for_the_universe_through_the_source(alpaca_server):
    alpaca_server.set_splits(SPLITS)
    source = make_source(alpaca_server, ["aapl", "XYZ"])
    out = source.fetch_splits(dt.date(2014, 1, 1), dt.date(2020, 12, 31))
    assert out.select("symbol", "ratio").rows() == [("AAPL", 7.0), ("XYZ", 0.1), ("AAPL", 4.0)]
    assert alpaca_server.requests[-1].params["symbols"] == "AAPL,XYZ"
    alpaca_server.fail_next(1, 401, {"message": "unauthorized"})
    with pytest.raises(MarketDataError, match="/v1/corporate-actions.*check APCA key id / secret"):
        source.fetch_splits(dt.date(2014, 1, 1), dt.date(2014, 12, 31))


def test_splits_by_ex_date_cover_a_window_of_sessions(alpaca_server):
    """Alpaca filters on the process date: the request is padded, the answer cut to the window's ex-dates."""
    alpaca_server.set_splits(
        pl.DataFrame(
            {
                "symbol": ["EARLY", "LATE", "OUT"],
                "ex_date": [dt.date(2024, 3, 4), dt.date(2024, 3, 8), dt.date(2024, 3, 11)],
                "process_date": [dt.date(2024, 2, 29), dt.date(2024, 3, 11), dt.date(2024, 3, 8)],
                "new_rate": [4, 1, 2],
                "old_rate": [1, 10, 1],
            }
        )
    )
    actions = AlpacaCorporateActions(TEST_KEY_ID, TEST_SECRET_KEY, url_override=alpaca_server.url)
    window = (dt.date(2024, 3, 4), dt.date(2024, 3, 8))
    assert actions.fetch_splits(*window)["symbol"].to_list() == ["OUT"]  # by process date: the wrong one
    got = actions.splits_by_ex_date(*window)
    assert got.rows() == [
        ("EARLY", dt.date(2024, 3, 4), 4.0, "alpaca"),
        ("LATE", dt.date(2024, 3, 8), 0.1, "alpaca"),
    ]
    params = alpaca_server.requests_to("/v1/corporate-actions")[-1].params
    assert (params["start"], params["end"]) == ("2024-02-26", "2024-03-15")  # 7 days each side
    assert actions.splits_by_ex_date(*window, ["late"])["symbol"].to_list() == ["LATE"]
    with pytest.raises(ValueError, match="pad_days"):
        actions.splits_by_ex_date(*window, pad_days=-1)


def test_corporate_actions_resource_sources(alpaca_server, tmp_path):
    from trading_dagster.resources.configured import (
        AlpacaCorporateActionsResource,
        FileCorporateActionsResource,
        NoCorporateActionsResource,
    )

    alpaca_server.set_splits(SPLITS)
    alpaca = AlpacaCorporateActionsResource(
        symbols=["AAPL", "XYZ"],
        alpaca_key_id=TEST_KEY_ID,
        alpaca_secret_key=TEST_SECRET_KEY,
        alpaca_data_url=alpaca_server.url,
    )
    window = alpaca.get(dt.date(2014, 6, 1), dt.date(2014, 6, 30))
    assert window.select("symbol", "ex_date", "ratio").rows() == [
        ("AAPL", dt.date(2014, 6, 9), 7.0),
        ("XYZ", dt.date(2014, 6, 10), 0.1),
    ]
    everything = alpaca.get(dt.date(2008, 1, 2), dt.date(2020, 12, 31))
    assert everything.select("symbol", "ratio").rows() == [("AAPL", 7.0), ("AAPL", 4.0), ("XYZ", 0.1)]
    assert alpaca_server.requests_to("/v1/corporate-actions")[-1].params["start"] == "2007-12-26"  # padded
    no_keys = AlpacaCorporateActionsResource(symbols=["AAPL"], alpaca_data_url=alpaca_server.url)
    with pytest.raises(ValueError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        no_keys.get(dt.date(2014, 6, 1), dt.date(2014, 6, 30))
    alpaca_server.fail_next(1, 401, {"message": "unauthorized"})
    with pytest.raises(MarketDataError, match="check APCA key id / secret") as failed:
        alpaca.get(dt.date(2014, 6, 1), dt.date(2014, 6, 30))
    assert TEST_SECRET_KEY not in str(failed.value)

    path = tmp_path / "splits.csv"
    path.write_text("symbol,ex_date,ratio\nKO,2012-08-13,2:1\n")
    on_file = FileCorporateActionsResource(path=str(path)).get(dt.date(2020, 1, 1), dt.date(2020, 1, 31))
    assert on_file.select("symbol", "ratio").rows() == [("KO", 2.0)]  # a file gives all its rows
    assert NoCorporateActionsResource().get(dt.date(2012, 8, 1), dt.date(2012, 8, 31)).is_empty()
    assert NoCorporateActionsResource().source_kind() == "none" and on_file.shape[0] == 1


def test_alpaca_py_default_limit_would_cut_splits_at_1000(alpaca_server):
    """CorporateActionsRequest.limit defaults to 1000 and alpaca-py stops paging once it holds that many."""
    many = pl.DataFrame(
        {
            "symbol": [f"S{i:04d}" for i in range(1001)],
            "ex_date": [dt.date(2014, 6, 9)] * 1001,
            "new_rate": [2] * 1001,
            "old_rate": [1] * 1001,
        }
    )
    alpaca_server.set_splits(many)
    client = CorporateActionsClient(TEST_KEY_ID, TEST_SECRET_KEY, url_override=alpaca_server.url)
    default = client.get_corporate_actions(
        CorporateActionsRequest(
            start=dt.date(2014, 6, 1), end=dt.date(2014, 6, 30), types=[CorporateActionsType.FORWARD_SPLIT]
        )
    )
    assert len(default.data["forward_splits"]) == 1000  # a token remained, alpaca-py stopped
    ours = AlpacaCorporateActions(TEST_KEY_ID, TEST_SECRET_KEY, url_override=alpaca_server.url)
    assert ours.fetch_splits(dt.date(2014, 6, 1), dt.date(2014, 6, 30)).height == 1001


def test_split_rates_that_contradict_the_type_are_refused():
    raw = {
        "forward_splits": [
            {
                "id": "a7932b15-f816-4f83-921e-998b524487b1",
                "symbol": "ODD",
                "cusip": "C1",
                "new_rate": 1,
                "old_rate": 2,
                "process_date": "2024-01-02",
                "ex_date": "2024-01-02",
            }
        ]
    }
    with pytest.raises(PriceDataError, match="ODD 2024-01-02.*= 0.5 contradicts the split direction"):
        splits_to_frame(CorporateActionsSet(raw))
    assert splits_to_frame(CorporateActionsSet({})).schema == pl.Schema(SPLIT_SCHEMA)
