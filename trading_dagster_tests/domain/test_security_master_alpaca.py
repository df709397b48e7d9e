"""The security master derived from snapshots of Alpaca's asset list (decision 0004, section 4; issue 8, "Security
identity over time"): the intervals each sequence of snapshots implies, the append-only snapshot file, and the
master driving delistings and indicators exactly as a CSV with the same intervals does, on the real reused
tickers of `data/reused_tickers_amtd_dave.parquet` (see test_security_master.py for where those rows come from).

Pure: no server, no clock (the resource's side is in resources/test_security_master_alpaca.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from trading_dagster.domain import indicators as ind
from trading_dagster.domain.book_events import Delisting, Rename, book_events
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.security_master import (
    ALPACA_OPEN_START,
    AssetSnapshot,
    ListedAsset,
    SecurityMasterError,
    append_asset_snapshot,
    build_asset_snapshot,
    latest_completed_session,
    master_from_asset_snapshots,
    read_asset_snapshots,
    read_security_master,
    snapshot_line,
)

DATA = Path(__file__).resolve().parents[1] / "data"
CAL = nyse_calendar()
NY = ZoneInfo("America/New_York")

# asset ids as Alpaca gives them (UUIDs); the names say which company
FAMOUS_DAVES = "3b9a1a39-0d4c-4b5e-9d6f-0000000000da"
DAVE_INC = "7c2f6e51-8a3b-4d1c-b0a2-0000000000de"
TD_AMERITRADE = "11111111-2222-4333-8444-00000000a317"
AMTD_INTL = "11111111-2222-4333-8444-00000000a3f2"
META = "55555555-6666-4777-8888-0000000000fb"
SPY = "99999999-aaaa-4bbb-8ccc-000000000599"

MON, TUE, WED, THU, FRI = (dt.date(2024, 5, d) for d in (6, 7, 8, 9, 10))
NEXT_MON = dt.date(2024, 5, 13)


def asset(symbol: str, asset_id: str, status: str = "active") -> ListedAsset:
    return ListedAsset(symbol, asset_id, status, status == "active")


def snap(session: dt.date, symbols, *assets: ListedAsset, known=()) -> AssetSnapshot:
    return build_asset_snapshot(session, symbols, assets, known)


def intervals(snapshots) -> list[tuple]:
    return master_from_asset_snapshots(snapshots).frame.drop("origin").rows()


# -- intervals from snapshots --------------------------------------------------------------------------------


def test_the_first_snapshot_gives_open_intervals():
    """Existing history is one security: open start, open end. An asset that was inactive already (an older
    company's leftover on the ticker) and a universe symbol Alpaca does not list give no interval."""
    first = snap(
        MON,
        ["DAVE", "SPY", "ZZZZ"],
        asset("DAVE", DAVE_INC),
        asset("DAVE", FAMOUS_DAVES, "inactive"),
        asset("SPY", SPY),
        asset("QQQ", "00000000-0000-4000-8000-000000000000"),  # not in the universe: not kept
    )
    assert [a.symbol for a in first.assets] == ["DAVE", "DAVE", "SPY"]
    assert intervals([first]) == [
        ("DAVE", DAVE_INC, ALPACA_OPEN_START, None),
        ("SPY", SPY, ALPACA_OPEN_START, None),
    ]
    master = master_from_asset_snapshots([first])
    assert master.security_on("DAVE", dt.date(2001, 1, 2)) == DAVE_INC
    assert master.ends(dt.date(1990, 1, 1), dt.date(2100, 1, 1)).height == 0


def test_a_changed_asset_id_closes_the_old_security_and_opens_the_new_one():
    """Consecutive sessions (the daily run): the old security ends the session before the new one is first
    seen, the new one starts on it; a Delisting of the old one, not a Rename."""
    snaps = [
        snap(THU, ["DAVE"], asset("DAVE", FAMOUS_DAVES)),
        snap(FRI, ["DAVE"], asset("DAVE", FAMOUS_DAVES)),
        snap(NEXT_MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES, "inactive"), asset("DAVE", DAVE_INC)),
    ]
    assert intervals(snaps) == [
        ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, FRI),
        ("DAVE", DAVE_INC, NEXT_MON, None),
    ]
    master = master_from_asset_snapshots(snaps)
    keys = pl.DataFrame({"symbol": ["DAVE"] * 2, "session": [FRI, NEXT_MON]})
    assert master.segment_keys(keys).to_list() == [FAMOUS_DAVES, DAVE_INC]
    assert master.ends(MON, NEXT_MON).rows() == [("DAVE", FAMOUS_DAVES, FRI, None)]
    # the old asset may also vanish from the list instead of turning inactive: the same intervals
    vanished = [*snaps[:2], snap(NEXT_MON, ["DAVE"], asset("DAVE", DAVE_INC))]
    assert intervals(vanished) == intervals(snaps)


@pytest.mark.parametrize("status", ["inactive", None])
def test_an_asset_that_went_inactive_or_vanished_ends_on_its_last_active_session(status):
    later = (asset("DAVE", FAMOUS_DAVES, status),) if status else ()
    snaps = [
        snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES)),
        snap(TUE, ["DAVE"], asset("DAVE", FAMOUS_DAVES)),
        snap(WED, ["DAVE"], *later),
        snap(THU, ["DAVE"], *later),
    ]
    assert intervals(snaps) == [("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, TUE)]
    events = book_events(None, None, master_from_asset_snapshots(snaps), _closes("DAVE", [MON, TUE]), CAL.sessions, MON, FRI)
    assert [(type(e).__name__, e.session, e.valid_to, e.price) for e in events] == [("Delisting", WED, TUE, 2)]


def _closes(symbol: str, days) -> pl.DataFrame:
    return pl.DataFrame({"symbol": [symbol] * len(days), "session": days, "close": [float(i + 1) for i in range(len(days))]})


def test_a_renamed_asset_is_a_rename_across_a_weekend():
    """The same asset id under another ticker (FB -> META; META is not in the universe, but the id is known, so
    it is kept): the old interval ends the day before the new ticker is first seen, so the book moves the
    position (a Rename on Monday), even with Friday and Monday as the two snapshots."""
    snaps = [snap(THU, ["FB"], asset("FB", META)), snap(FRI, ["FB"], asset("FB", META))]
    listing = [asset("META", META), asset("FB", "77777777-0000-4000-8000-000000000001", "inactive")]
    monday = build_asset_snapshot(NEXT_MON, ["FB"], listing, known_ids={META})
    assert [a.symbol for a in monday.assets] == ["FB", "META"]
    snaps.append(monday)
    assert intervals(snaps) == [
        ("FB", META, ALPACA_OPEN_START, NEXT_MON - dt.timedelta(days=1)),
        ("META", META, NEXT_MON, None),
    ]
    events = book_events(None, None, master_from_asset_snapshots(snaps), _closes("FB", [THU, FRI]), CAL.sessions, MON, NEXT_MON)
    assert events == [Rename("FB", NEXT_MON, dt.date(2024, 5, 12), META, "META")]


def test_across_a_gap_the_sessions_between_belong_to_no_known_security():
    """Runs missed between Monday and Friday: when the ticker changed hands in between is unknown, so the old
    security ends on the last session it was seen and the new one starts on the first session it was seen.
    Ending the old one on Thursday instead could close its position at the new company's close."""
    snaps = [
        snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES)),
        snap(FRI, ["DAVE"], asset("DAVE", FAMOUS_DAVES, "inactive"), asset("DAVE", DAVE_INC)),
    ]
    assert intervals(snaps) == [
        ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, MON),
        ("DAVE", DAVE_INC, FRI, None),
    ]
    keys = pl.DataFrame({"symbol": ["DAVE"] * 5, "session": [MON, TUE, WED, THU, FRI]})
    assert master_from_asset_snapshots(snaps).segment_keys(keys).to_list() == [
        FAMOUS_DAVES, "?@2024-05-07", "?@2024-05-07", "?@2024-05-07", DAVE_INC,
    ]  # fmt: skip
    # a rename spans the gap: both tickers are one security
    renamed = [snap(MON, ["FB"], asset("FB", META)), snap(FRI, ["FB"], asset("META", META), known=[META])]
    assert intervals(renamed) == [("FB", META, ALPACA_OPEN_START, THU), ("META", META, FRI, None)]


def test_a_symbol_added_to_the_universe_later_starts_open_and_a_new_listing_on_its_first_session():
    snaps = [
        snap(MON, ["SPY", "NEWCO"], asset("SPY", SPY)),  # NEWCO asked about, not listed yet
        snap(TUE, ["SPY", "NEWCO", "DAVE"], asset("SPY", SPY), asset("DAVE", DAVE_INC)),  # DAVE added
        snap(WED, ["SPY", "NEWCO", "DAVE"], asset("SPY", SPY), asset("DAVE", DAVE_INC), asset("NEWCO", AMTD_INTL)),
    ]
    assert intervals(snaps) == [
        ("DAVE", DAVE_INC, ALPACA_OPEN_START, None),  # its history before Tuesday is one security, as without a master
        ("NEWCO", AMTD_INTL, WED, None),  # listed on Wednesday: a new security from then
        ("SPY", SPY, ALPACA_OPEN_START, None),
    ]


def test_the_last_observation_of_a_session_wins_and_order_on_file_does_not_matter():
    early = snap(TUE, ["DAVE"], asset("DAVE", FAMOUS_DAVES))
    late = snap(TUE, ["DAVE"], asset("DAVE", DAVE_INC))
    first = snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES))
    assert intervals([early, first, late]) == intervals([first, late]) == [
        ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, MON),
        ("DAVE", DAVE_INC, TUE, None),
    ]


def test_two_active_assets_on_one_symbol_are_refused():
    with pytest.raises(SecurityMasterError, match=r"asset list of 2024-05-06.*two active assets on DAVE"):
        snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES), asset("DAVE", DAVE_INC))
    with pytest.raises(SecurityMasterError, match="needs the universe"):
        snap(MON, [], asset("DAVE", DAVE_INC))


# -- the snapshot file ------------------------------------------------------------------------------------------


def test_the_snapshot_file_is_append_only(tmp_path):
    path = tmp_path / "security_master" / "alpaca_assets.jsonl"
    assert read_asset_snapshots(path) == ([], [])
    one = snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES))
    assert append_asset_snapshot(path, one) is True
    before = path.read_bytes()
    assert append_asset_snapshot(path, snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES))) is False  # a re-run
    assert path.read_bytes() == before
    revised = snap(MON, ["DAVE"], asset("DAVE", DAVE_INC))  # the same session observed again, differently
    assert append_asset_snapshot(path, revised) is True
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 2  # nothing rewritten, nothing lost
    snapshots, skipped = read_asset_snapshots(path)
    assert [s.content for s in snapshots] == [one.content, revised.content] and skipped == []
    assert snapshots[1].origin == f"{path}:2"
    assert intervals(snapshots) == [("DAVE", DAVE_INC, ALPACA_OPEN_START, None)]  # the later one is used
    assert snapshot_line(snapshots[0]) == snapshot_line(one)  # read back as written


def test_a_line_cut_short_is_skipped_and_the_next_snapshot_starts_its_own_line(tmp_path):
    path = tmp_path / "alpaca_assets.jsonl"
    append_asset_snapshot(path, snap(MON, ["DAVE"], asset("DAVE", FAMOUS_DAVES)))
    with path.open("ab") as fh:  # a crash in the middle of a write
        fh.write(snapshot_line(snap(TUE, ["DAVE"], asset("DAVE", DAVE_INC))).encode()[:40])
    before = path.read_bytes()
    assert append_asset_snapshot(path, snap(WED, ["DAVE"], asset("DAVE", DAVE_INC))) is True
    assert path.read_bytes().startswith(before)
    snapshots, skipped = read_asset_snapshots(path)
    assert [s.session for s in snapshots] == [MON, WED]
    assert skipped == [f"{path}:2: not a JSON line (a write cut short?), skipped"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"v":2,"session":"2024-05-06","symbols":["A"],"assets":[]}', "unknown format v=2"),
        ('{"v":1,"session":"20240506x","symbols":["A"],"assets":[]}', "is not a YYYY-MM-DD date"),
        ('{"v":1,"session":"2024-05-06","symbols":[],"assets":[]}', "non-empty list of tickers"),
        ('{"v":1,"session":"2024-05-06","symbols":["A"],"assets":[["A","x","active"]]}', "is not \\[symbol, asset_id"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_snapshot_line_that_is_not_a_snapshot_names_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "alpaca_assets.jsonl"
    append_asset_snapshot(path, snap(MON, ["A"], asset("A", SPY)))
    with path.open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(SecurityMasterError, match=f"{path}:2: .*{message}"):
        read_asset_snapshots(path)


def test_two_active_assets_on_file_name_the_line(tmp_path):
    path = tmp_path / "alpaca_assets.jsonl"
    path.write_text(
        f'{{"v":1,"session":"2024-05-06","symbols":["A"],"assets":[["A","{SPY}","active",true],["A","{DAVE_INC}","active",true]]}}\n'
    )
    snapshots, _ = read_asset_snapshots(path)
    with pytest.raises(SecurityMasterError, match=f"{path}:1: two active assets on A"):
        master_from_asset_snapshots(snapshots)


# -- which session is the latest completed one -----------------------------------------------------------------


def test_latest_completed_session():
    closes = {
        dt.date(2024, 7, 2): dt.datetime(2024, 7, 2, 16, tzinfo=NY),
        dt.date(2024, 7, 3): dt.datetime(2024, 7, 3, 13, tzinfo=NY),  # an early close
        dt.date(2024, 7, 5): dt.datetime(2024, 7, 5, 16, tzinfo=NY),
    }
    at = lambda day, h, m=0: dt.datetime(2024, 7, day, h, m, tzinfo=NY)  # noqa: E731
    assert latest_completed_session(at(3, 12, 59), closes) == dt.date(2024, 7, 2)
    assert latest_completed_session(at(3, 13), closes) == dt.date(2024, 7, 3)
    assert latest_completed_session(at(4, 18, 30), closes) == dt.date(2024, 7, 3)  # the holiday
    assert latest_completed_session(at(5, 18, 30).astimezone(dt.UTC), closes) == dt.date(2024, 7, 5)
    assert latest_completed_session(at(2, 9), closes) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_completed_session(dt.datetime(2024, 7, 5, 18), closes)


# -- the derived master drives the book and the indicators exactly as a CSV with the same intervals ------------

OLD_LAST, AFTER_OLD = dt.date(2017, 11, 10), dt.date(2017, 11, 13)
AMTD_NEW, DAVE_NEW = dt.date(2019, 8, 5), dt.date(2021, 4, 26)
UNIVERSE = ["AMTD", "DAVE"]


def real_bars() -> pl.DataFrame:
    frame = pl.read_parquet(DATA / "reused_tickers_amtd_dave.parquet")
    return frame.rename({"ticker": "symbol", "date": "session"}).drop("source").sort("session", "symbol")


def observed_history() -> list[AssetSnapshot]:
    """What daily runs would have recorded: both old companies active until their last session, inactive
    after it, the new companies listed from their first session."""
    old = [asset("AMTD", TD_AMERITRADE), asset("DAVE", FAMOUS_DAVES)]
    gone = [asset("AMTD", TD_AMERITRADE, "inactive"), asset("DAVE", FAMOUS_DAVES, "inactive")]
    return [
        snap(dt.date(2017, 11, 9), UNIVERSE, *old),
        snap(OLD_LAST, UNIVERSE, *old),
        snap(AFTER_OLD, UNIVERSE, *gone),
        snap(dt.date(2019, 8, 2), UNIVERSE, *gone),
        snap(AMTD_NEW, UNIVERSE, *gone, asset("AMTD", AMTD_INTL)),
        snap(dt.date(2021, 4, 23), UNIVERSE, *gone, asset("AMTD", AMTD_INTL)),
        snap(DAVE_NEW, UNIVERSE, *gone, asset("AMTD", AMTD_INTL), asset("DAVE", DAVE_INC)),
    ]


@pytest.fixture
def alpaca_master():
    return master_from_asset_snapshots(observed_history())


@pytest.fixture
def same_csv(tmp_path):
    path = tmp_path / "master.csv"
    path.write_text(
        "symbol,security_id,valid_from,valid_to\n"
        f"AMTD,{TD_AMERITRADE},1900-01-01,2017-11-10\n"
        f"AMTD,{AMTD_INTL},2019-08-05,\n"
        f"DAVE,{FAMOUS_DAVES},1900-01-01,2017-11-10\n"
        f"DAVE,{DAVE_INC},2021-04-26,\n"
    )
    return read_security_master(path)


@pytest.fixture
def hand_written(tmp_path):
    """test_security_master.py's master for these rows (its own ids and valid_from dates)."""
    path = tmp_path / "hand.csv"
    path.write_text(
        "symbol,security_id,valid_from,valid_to\n"
        "AMTD,td_ameritrade,1997-03-04,2017-11-10\nAMTD,amtd_international,2019-08-05,\n"
        "DAVE,famous_daves,1996-11-01,20171110\nDAVE,dave_inc,2021-04-26,\n"
    )
    return read_security_master(path)


def test_the_snapshots_give_the_csvs_intervals(alpaca_master, same_csv):
    assert alpaca_master.frame.drop("origin").equals(same_csv.frame.drop("origin"))


def test_the_book_closes_a_delisted_position_as_with_the_csv(alpaca_master, same_csv, hand_written):
    prices = real_bars()
    window = CAL.between(dt.date(2017, 11, 6), dt.date(2021, 5, 7))
    got = book_events(None, None, alpaca_master, prices, CAL.sessions, window[0], window[-1])
    assert got == book_events(None, None, same_csv, prices, CAL.sessions, window[0], window[-1])
    assert [(type(e), e.symbol, e.session, e.valid_to, e.price) for e in got] == [
        (type(e), e.symbol, e.session, e.valid_to, e.price)
        for e in book_events(None, None, hand_written, prices, CAL.sessions, window[0], window[-1])
    ]
    dave = next(e for e in got if e.symbol == "DAVE")
    assert dave == Delisting("DAVE", AFTER_OLD, OLD_LAST, FAMOUS_DAVES, dave.price)
    assert str(dave.price) == "3.6827"  # Famous Dave's last close, never Dave Inc.'s


@pytest.mark.parametrize(("start", "end"), [(dt.date(2017, 6, 1), OLD_LAST), (AMTD_NEW, dt.date(2021, 9, 30))])
def test_the_indicators_are_those_of_the_csv(alpaca_master, same_csv, hand_written, start, end):
    bars = real_bars()
    got = ind.compute_indicators_adjusted(bars, None, CAL.sessions, start, end, securities=alpaca_master)
    assert got.height > 0
    assert got.equals(ind.compute_indicators_adjusted(bars, None, CAL.sessions, start, end, securities=same_csv))
    assert got.equals(ind.compute_indicators_adjusted(bars, None, CAL.sessions, start, end, securities=hand_written))
    if start == AMTD_NEW:  # AMTD International's first SMA-50 is 49 sessions after its first bar: no TD Ameritrade
        amtd = got.filter(pl.col("symbol") == "AMTD")
        assert amtd.filter(pl.col("sma_50").is_not_null())["session"].min() == CAL.offset(AMTD_NEW, 49)
