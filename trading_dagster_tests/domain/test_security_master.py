"""Security identity over time (decision 0004, section 4; issue 8, finding 7): parsing LEAN map files and the
CSV master with errors that name the file and line, indicators that never span two securities, and a position
in a security past its valid_to closed at its last close, never sold at the next company's price.

The real reused tickers come from the two shared datasets (`data/reused_tickers_amtd_dave.parquet`, rows cut
unchanged): AMTD is TD Ameritrade in the main file (to 2017-11-10) and AMTD International in the NASDAQ file
(from 2019-08-05, as Yahoo files that company's history under its current ticker); DAVE is Famous Dave's of
America (to 2017-11-10) and Dave Inc. (from 2021-04-26). The masters below are hand-written for these rows:
the old security's valid_to is its last bar in the main file.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.domain import indicators as ind
from trading_dagster.domain.book_events import Delisting, Rename, book_events, identity_events
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel, opens_at
from trading_dagster.domain.orders import Order
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import (
    PortfolioState,
    Position,
    apply_book_events,
    plan_orders,
    simulate,
)
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.security_master import (
    SecurityMaster,
    SecurityMasterError,
    parse_lean_map_file,
    read_security_master,
)
from trading_dagster.resources.backtest_book import SimulatedBook
from trading_dagster.resources.security_master import SecurityMasterResource

DATA = Path(__file__).resolve().parents[1] / "data"
CAL = nyse_calendar()
SLIP, FEE = SlippageModel(), CommissionModel()
OLD_LAST = dt.date(2017, 11, 10)  # the main file's last session
AFTER_OLD = dt.date(2017, 11, 13)  # the first session after it
AMTD_NEW, DAVE_NEW = dt.date(2019, 8, 5), dt.date(2021, 4, 26)


def bars(symbol: str) -> pl.DataFrame:
    frame = pl.read_parquet(DATA / "reused_tickers_amtd_dave.parquet")
    return (
        frame.filter(pl.col("ticker") == symbol)
        .rename({"ticker": "symbol", "date": "session"})
        .drop("source")
        .sort("session", "symbol")
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def csv_master(tmp_path: Path) -> SecurityMaster:
    return read_security_master(
        write(
            tmp_path / "master.csv",
            "symbol,security_id,valid_from,valid_to\n"
            "AMTD,td_ameritrade,1997-03-04,2017-11-10\n"
            "AMTD,amtd_international,2019-08-05,\n"
            "DAVE,famous_daves,1996-11-01,20171110\n"
            "DAVE,dave_inc,2021-04-26,\n",
        )
    )


@pytest.fixture
def lean_master(tmp_path: Path) -> SecurityMaster:
    """The same identities as LEAN map files: the old security a `.1` file, as LEAN names it."""
    folder = tmp_path / "map_files"
    write(folder / "amtd.1.csv", "19970304,amtd,Q\n20171110,amtd,Q\n")
    write(folder / "amtd.csv", "20190805,amtd,N\n20501231,amtd,N\n")
    write(folder / "dave.1.csv", "19961101,dave,Q\n20171110,dave,Q\n")
    write(folder / "dave.csv", "20210426,dave,Q\n20501231,dave,Q\n")
    return read_security_master(folder)


# -- parsing ------------------------------------------------------------------------------------------------


def test_lean_map_file_rows_name_the_ticker_in_use_up_to_each_date():
    # LEAN's own example: AOL renamed to TWX after 2003-10-15; 2050-12-31 means still trading
    rows = parse_lean_map_file("19980102,aol\n20031015,aol\n20501231,twx\n", "twx.csv", "twx")
    assert rows == [
        ("AOL", "twx", dt.date(1998, 1, 2), dt.date(2003, 10, 15), "twx.csv:1"),
        ("TWX", "twx", dt.date(2003, 10, 16), None, "twx.csv:3"),
    ]


def test_both_formats_give_the_same_identities(csv_master, lean_master):
    for master in (csv_master, lean_master):
        assert master.security_on("AMTD", dt.date(2017, 11, 10)) in ("td_ameritrade", "amtd.1")
        assert master.security_on("AMTD", dt.date(2018, 6, 1)) is None  # the gap: no security
        assert master.security_on("AMTD", AMTD_NEW) in ("amtd_international", "amtd")
        assert master.security_on("DAVE", dt.date(2030, 1, 2)) in ("dave_inc", "dave")
        assert master.security_on("SPY", dt.date(2017, 1, 3)) is None  # not listed
    assert csv_master.frame.drop("security_id", "origin").equals(lean_master.frame.drop("security_id", "origin"))


def test_segment_keys(csv_master):
    keys = pl.DataFrame(
        {
            "symbol": ["AMTD", "AMTD", "AMTD", "SPY", "DAVE"],
            "session": [OLD_LAST, dt.date(2018, 1, 2), AMTD_NEW, OLD_LAST, dt.date(1990, 1, 2)],
        }
    )
    assert csv_master.segment_keys(keys).to_list() == [
        "td_ameritrade",
        "?@2017-11-11",  # after TD Ameritrade's valid_to, before the next security
        "amtd_international",
        None,  # a symbol the master does not list: one security all along
        "?@",  # before the symbol's first security
    ]


def test_ends_tell_a_rename_from_a_delisting(tmp_path):
    master = read_security_master(
        write(tmp_path / "m" / "meta.csv", "20120518,fb,Q\n20220608,fb,Q\n20501231,meta,Q\n")
        .parent
    )
    assert master.ends(dt.date(2022, 1, 1), dt.date(2022, 12, 31)).rows() == [
        ("FB", "meta", dt.date(2022, 6, 8), "META")
    ]
    (event,) = identity_events(master, pl.DataFrame(schema={"symbol": pl.Utf8, "session": pl.Date, "close": pl.Float64}),
                               CAL.sessions, dt.date(2022, 6, 1), dt.date(2022, 6, 30))
    assert event == Rename("FB", dt.date(2022, 6, 9), dt.date(2022, 6, 8), "meta", "META")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"x.csv": "20100104,xx\n2010-13-01,xx\n"}, r"x.csv:2: '2010-13-01' is not a date"),
        ({"x.csv": "20100104,xx\n20100104,xx\n"}, r"x.csv:2: 2010-01-04 is not after"),
        ({"x.csv": "20100104\n"}, r"x.csv:1: '20100104' is not 'YYYYMMDD,ticker"),
        ({"x.csv": "\n"}, r"x.csv: empty map file"),
        ({"a.csv": "20100104,zz\n20120104,zz\n", "b.csv": "20110104,zz\n20501231,zz\n"}, r"ZZ: a .*a.csv:1.* and b .*b.csv:1"),
    ],
)
def test_lean_errors_name_the_file_and_line(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / "maps" / name, text)
    with pytest.raises(SecurityMasterError, match=message):
        read_security_master(tmp_path / "maps")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("symbol,security_id,valid_from\nX,x,2010-01-04\n", r"master.csv:1: missing column\(s\) \['valid_to'\]"),
        ("symbol,security_id,valid_from,valid_to\nX,x,2010-01-04,\nX,y,2010-02-01,2010-01-01\n", r"master.csv:3: valid_to"),
        ("symbol,security_id,valid_from,valid_to\nX,,2010-01-04,\n", r"master.csv:2: symbol and security_id"),
        ("symbol,security_id,valid_from,valid_to\nX,x,04/01/2010,\n", r"master.csv:2: '04/01/2010' is not a date"),
        ("symbol,security_id,valid_from,valid_to\nX,x,2010-01-04,\nX,y,2011-01-03,\n", r"X: x .*master.csv:2"),
        ("symbol,security_id,valid_from,valid_to\n", r"master.csv: no rows"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(SecurityMasterError, match=message):
        read_security_master(write(tmp_path / "master.csv", text))


def test_contiguous_rows_of_one_security_merge(tmp_path):
    master = read_security_master(
        write(
            tmp_path / "m.csv",
            "symbol,security_id,valid_from,valid_to,note\nX,x,2010-01-04,2010-12-31,a\nX,x,2011-01-01,,b\n",
        )
    )
    assert master.frame.select("symbol", "security_id", "valid_from", "valid_to").rows() == [
        ("X", "x", dt.date(2010, 1, 4), None)
    ]


def test_the_resource_loads_the_master_or_nothing(tmp_path, csv_master):
    assert SecurityMasterResource().get() is None
    path = write(tmp_path / "again.csv", "symbol,security_id,valid_from,valid_to\nAMTD,a,2019-08-05,\n")
    first = SecurityMasterResource(path=str(path)).get()
    assert first is not None and first.security_on("AMTD", AMTD_NEW) == "a"
    assert SecurityMasterResource(path=str(path)).get() is first  # parsed once per process...
    write(path, "symbol,security_id,valid_from,valid_to\nAMTD,b,2019-08-05,\n")
    assert SecurityMasterResource(path=str(path)).get().security_on("AMTD", AMTD_NEW) == "b"  # ...until it changes


# -- indicators never span two securities ---------------------------------------------------------------

START, END = AMTD_NEW, dt.date(2020, 9, 30)


def test_without_a_master_the_new_companys_indicators_average_the_old_one():
    """The defect, kept visible: AMTD International's first day has TD Ameritrade's $48 closes in its SMA-50."""
    out = ind.compute_indicators_adjusted(bars("AMTD"), None, CAL.sessions, START, END)
    first = out.filter(pl.col("session") == AMTD_NEW).row(0, named=True)
    assert first["close"] == pytest.approx(20.18) and first["sma_50"] > 40


@pytest.mark.parametrize("master", ["csv_master", "lean_master"])
def test_with_a_master_each_security_is_its_own_series(master, request):
    securities = request.getfixturevalue(master)
    amtd = bars("AMTD")
    out = ind.compute_indicators_adjusted(amtd, None, CAL.sessions, START, END, securities=securities)
    alone = ind.compute_indicators_adjusted(
        amtd.filter(pl.col("session") >= AMTD_NEW), None, CAL.sessions, START, END
    )
    assert out.equals(alone)  # exactly what the new company's own bars give, as for an IPO
    assert out.filter(pl.col("sma_50").is_not_null())["session"].min() == CAL.offset(AMTD_NEW, 49)
    assert out.filter(pl.col("sma_200").is_not_null())["session"].min() == CAL.offset(AMTD_NEW, 199)
    assert out.filter(pl.col("high_52w").is_not_null())["session"].min() == CAL.offset(AMTD_NEW, 251)
    # and the old company's rows are its own series too
    old = ind.compute_indicators_adjusted(amtd, None, CAL.sessions, dt.date(2017, 6, 1), OLD_LAST, securities=securities)
    assert old.equals(ind.compute_indicators_adjusted(amtd, None, CAL.sessions, dt.date(2017, 6, 1), OLD_LAST))


def test_a_range_run_equals_day_by_day_runs_with_a_master(csv_master):
    """Anchored recursion per security: one session computed alone equals the same session in a range run."""
    two = pl.concat([bars("AMTD"), bars("AMTD").with_columns(pl.lit("COPY").alias("symbol"))]).sort("session", "symbol")
    whole = ind.compute_indicators_adjusted(two, None, CAL.sessions, START, END, securities=csv_master)
    for day in (AMTD_NEW, CAL.offset(AMTD_NEW, 60), dt.date(2019, 12, 31), dt.date(2020, 1, 2), END):
        need = ind.required_input_start(CAL.sessions, day)
        alone = ind.compute_indicators_adjusted(
            two.filter(pl.col("session").is_between(need, day)), None, CAL.sessions, day, day, securities=csv_master
        )
        assert alone.equals(whole.filter(pl.col("session") == day))
    assert whole.filter(pl.col("symbol") == "COPY")["sma_50"].drop_nulls()[0] > 40  # COPY is not in the master


# -- a position in a delisted security ----------------------------------------------------------------------

DAVE_WINDOW = CAL.between(dt.date(2017, 11, 6), dt.date(2021, 5, 7))
HELD = PortfolioState(cash=Decimal(1000), positions={"DAVE": Position(100, Decimal("3.60"))})


def _sell(day: dt.date) -> pl.DataFrame:
    return pl.DataFrame(
        [(day, "DAVE", "test", "sell", 1.0, "test")],
        schema={"session": pl.Date, "symbol": pl.Utf8, "strategy": pl.Utf8, "side": pl.Utf8, "strength": pl.Float64, "reason": pl.Utf8},
        orient="row",
    )


def test_without_a_master_a_stale_position_is_sold_at_the_next_companys_price():
    """Finding 7 as it was: Famous Dave's shares 'sold' at Dave Inc.'s $313 for a fake gain of ~$31,000."""
    proj = simulate(_sell(DAVE_NEW), bars("DAVE"), HELD, DAVE_WINDOW, RiskConfig(), SLIP, FEE, "paper")
    assert proj.fills[0].price > 300 and proj.end_state.realized_pnl > 30_000


def test_a_position_past_its_valid_to_is_closed_at_its_last_close(csv_master):
    prices = bars("DAVE")
    events = book_events(None, None, csv_master, prices, CAL.sessions, DAVE_WINDOW[0], DAVE_WINDOW[-1])
    assert events == [
        Delisting("AMTD", AFTER_OLD, OLD_LAST, "td_ameritrade", None),  # no AMTD close given: at cost if held
        Delisting("DAVE", AFTER_OLD, OLD_LAST, "famous_daves", Decimal("3.6827")),  # its last close
    ]
    proj = simulate(_sell(DAVE_NEW), prices, HELD, DAVE_WINDOW, RiskConfig(), SLIP, FEE, "paper", events=events)
    assert proj.fills == [] and proj.end_state.positions == {}
    assert proj.end_state.cash == Decimal("1368.27")  # 100 x 3.6827, no commission: a ledger event, no trade
    assert proj.end_state.realized_pnl == Decimal("8.27")
    assert proj.orders[0].reason_code == "SHORT_NOT_ALLOWED"  # nothing of Dave Inc. is held to sell
    positions, equity = mark_to_market(HELD, [], prices, DAVE_WINDOW, events=events)
    assert positions["session"].max() == OLD_LAST  # never marked at Dave Inc.'s prices
    assert set(equity.filter(pl.col("session") >= AFTER_OLD)["equity"]) == {1368.27}


def test_orders_pending_on_a_delisted_security_expire(csv_master):
    events = book_events(None, None, csv_master, bars("DAVE"), CAL.sessions, DAVE_WINDOW[0], DAVE_WINDOW[-1])
    buy = Order("b", OLD_LAST, "DAVE", "test", "buy", 5, 5, Decimal("3.68"), "approved")
    later = Order("c", AFTER_OLD, "DAVE", "test", "buy", 5, 5, Decimal("300"), "approved")  # Dave Inc.'s
    out = apply_book_events(HELD, events, AFTER_OLD, [buy, later])
    assert out.pending == [later] and [(e.client_order_id, e.event) for e in out.expired] == [("b", "expired")]


def test_the_broker_books_the_delisting_as_a_ledger_event(csv_master):
    prices = bars("DAVE")
    events = book_events(None, None, csv_master, prices, CAL.sessions, DAVE_WINDOW[0], DAVE_WINDOW[-1])
    with SimulatedBook(initial_cash=Decimal(1000), slippage=SLIP, commission=FEE) as broker:
        broker.submit(
            [Order("td-buy", DAVE_WINDOW[0], "DAVE", "test", "buy", 100, 100, Decimal("3.6"), "approved")], DAVE_WINDOW[0]
        )
        for day in DAVE_WINDOW[1:]:
            broker.sync(day, opens_at(prices, day), events)
            state = broker.account(day)
            orders = plan_orders(_sell(DAVE_NEW), prices, state, [day], RiskConfig(), SLIP, FEE, "paper", events=events)
            broker.submit(orders.filter(pl.col("status") == "approved"), day)
        frame = broker.events(DAVE_WINDOW[0], DAVE_WINDOW[-1])
        account = broker.account(DAVE_WINDOW[-1])
    closed = frame.filter(pl.col("event") == "delisted_close")
    assert closed.select("session", "client_order_id", "symbol", "side", "order_session", "qty", "price", "commission").rows() == [
        (AFTER_OLD, "delisted-20171113-DAVE", "DAVE", "sell", OLD_LAST, 100, 3.6827, 0.0)
    ]
    assert frame.filter((pl.col("event") == "filled") & (pl.col("side") == "sell")).height == 0
    (bought,) = frame.filter(pl.col("event") == "filled").select("qty", "price", "commission").rows()
    assert account.positions == {}
    assert account.cash == Decimal(1000) - bought[0] * Decimal(repr(bought[1])) - Decimal(repr(bought[2])) + Decimal("368.27")
