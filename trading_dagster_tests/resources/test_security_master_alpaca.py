"""The security master from Alpaca's asset list, through the real alpaca-py 0.44.0 TradingClient against the
Alpaca-compatible server of trading_dagster_tests/fakes (127.0.0.1, real HTTP): when a snapshot is recorded
(only for a run ending on the latest completed session), what successive runs derive, errors that say what
failed where without the secret, and settings -> definitions -> resource with the keys through dg.EnvVar.

The resource's clock is replaced (`_now`): nothing here depends on today's date.
"""

from __future__ import annotations

import datetime as dt
import traceback
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.security_master import (
    ALPACA_OPEN_START,
    SecurityMasterError,
    read_asset_snapshots,
)
from trading_dagster.resources import security_master as sm
from trading_dagster.resources.security_master import (
    ALPACA_SNAPSHOT_FILE,
    AlpacaAssetList,
    SecurityMasterResource,
)
from trading_dagster.settings import SettingsError, load_settings
from trading_dagster_tests.fakes import alpaca_server as fake_alpaca
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY, AlpacaFakeServer

alpaca_server = fake_alpaca.alpaca_server

NY = ZoneInfo("America/New_York")
THU, FRI, MON = dt.date(2024, 5, 9), dt.date(2024, 5, 10), dt.date(2024, 5, 13)
FAMOUS_DAVES = "3b9a1a39-0d4c-4b5e-9d6f-0000000000da"
DAVE_INC = "7c2f6e51-8a3b-4d1c-b0a2-0000000000de"
SPY = "99999999-aaaa-4bbb-8ccc-000000000599"
OTHER = "00000000-0000-4000-8000-000000000abc"


def evening(day: dt.date) -> dt.datetime:
    """The daily schedule's time, 18:30 New York: `day` is then the latest completed session."""
    return dt.datetime.combine(day, dt.time(18, 30), NY)


@pytest.fixture
def clock(monkeypatch):
    """Set the resource's clock: `clock(datetime)`."""

    def set_now(now: dt.datetime) -> None:
        monkeypatch.setattr(sm, "_now", lambda: now)

    return set_now


def resource(server: AlpacaFakeServer, tmp_path: Path, **kwargs) -> SecurityMasterResource:
    kwargs.setdefault("alpaca_secret_key", TEST_SECRET_KEY)
    return SecurityMasterResource(
        source="alpaca",
        symbols=["DAVE", "SPY"],
        alpaca_key_id=TEST_KEY_ID,
        alpaca_trading_url=server.url,
        snapshot_path=str(tmp_path / ALPACA_SNAPSHOT_FILE),
        retry_wait_seconds=0,  # retries stay real, the 3 s sleeps do not
        timeout_seconds=5,
        **kwargs,
    )


def listing(*dave: tuple[str, str]) -> list[dict]:
    """SPY, another symbol of the US-equity list, and DAVE's assets as (id, status)."""
    return [
        {"symbol": "SPY", "id": SPY, "exchange": "ARCA"},
        {"symbol": "QQQ", "id": OTHER},
        *({"symbol": "DAVE", "id": i, "status": s} for i, s in dave),
    ]


def rows(master) -> list[tuple]:
    return master.frame.drop("origin").rows()


# -- when a snapshot is recorded --------------------------------------------------------------------------------


def test_a_run_ending_on_the_latest_completed_session_records_one_snapshot(alpaca_server, tmp_path, clock):
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "active")))
    clock(evening(THU))
    res = resource(alpaca_server, tmp_path)
    master = res.get(THU)
    assert rows(master) == [
        ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, None),
        ("SPY", SPY, ALPACA_OPEN_START, None),
    ]
    for _ in range(3):  # the run's other assets: the same master, no second request
        assert res.get(THU) is master
    asked = alpaca_server.requests_to("/v2/assets")
    assert len(asked) == 1 and asked[0].params == {"asset_class": "us_equity"}  # one request, all assets
    snapshots, _ = read_asset_snapshots(tmp_path / ALPACA_SNAPSHOT_FILE)
    assert [(s.session, s.symbols, [a.symbol for a in s.assets]) for s in snapshots] == [
        (THU, ("DAVE", "SPY"), ["DAVE", "SPY"])  # filtered to the universe
    ]
    assert snapshots[0].source == f"{alpaca_server.url}/v2/assets"
    assert snapshots[0].observed_at == "2024-05-09T22:30:00+00:00"


def test_daily_runs_close_the_old_security_when_the_ticker_changes_hands(alpaca_server, tmp_path, clock):
    """Three daily runs (a fresh resource each, as each run gets its own): Thursday and Friday Famous Dave's,
    Monday Dave Inc. on DAVE. Friday's run on the same session again records nothing new."""
    path = tmp_path / ALPACA_SNAPSHOT_FILE
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "active")))
    for day in (THU, FRI, FRI):
        clock(evening(day))
        resource(alpaca_server, tmp_path).get(day)
    assert len(read_asset_snapshots(path)[0]) == 2
    before = path.read_bytes()
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "inactive"), (DAVE_INC, "active")))
    clock(evening(MON))
    master = resource(alpaca_server, tmp_path).get(MON)
    assert rows(master) == [
        ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, FRI),  # the session before Dave Inc. is first seen
        ("DAVE", DAVE_INC, MON, None),
        ("SPY", SPY, ALPACA_OPEN_START, None),
    ]
    assert master.ends(FRI, MON).rows() == [("DAVE", FAMOUS_DAVES, FRI, None)]  # a delisting on Monday
    assert path.read_bytes().startswith(before)  # appended, never rewritten
    assert len(alpaca_server.requests_to("/v2/assets")) == 4


def test_an_asset_that_went_inactive_ends_on_its_last_active_session(alpaca_server, tmp_path, clock):
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "active")))
    clock(evening(THU))
    resource(alpaca_server, tmp_path).get(THU)
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "inactive")))
    clock(evening(FRI))
    assert rows(resource(alpaca_server, tmp_path).get(FRI))[0] == ("DAVE", FAMOUS_DAVES, ALPACA_OPEN_START, THU)


@pytest.mark.parametrize(
    ("as_of", "now"),
    [
        (dt.date(2010, 3, 1), evening(MON)),  # a backfill of a past window
        (FRI, evening(MON)),  # a re-run of last week
        (MON, dt.datetime.combine(MON, dt.time(12), NY)),  # today's partition before the close
        (None, evening(MON)),  # no window given
    ],
)
def test_other_runs_only_read_the_snapshots_on_file(alpaca_server, tmp_path, clock, as_of, now):
    """Today's listing is never dated on a past session (nor on one not closed yet): no request, no line."""
    alpaca_server.set_assets(listing((DAVE_INC, "active")))
    clock(now)
    assert resource(alpaca_server, tmp_path).get(as_of) is None  # nothing on file yet: no master
    assert not (tmp_path / ALPACA_SNAPSHOT_FILE).exists()
    clock(evening(THU))  # a daily run on file, then the same run again
    resource(alpaca_server, tmp_path).get(THU)
    before = (tmp_path / ALPACA_SNAPSHOT_FILE).read_bytes()
    alpaca_server.clear_log()
    clock(now)
    master = resource(alpaca_server, tmp_path).get(as_of)
    assert rows(master)[0] == ("DAVE", DAVE_INC, ALPACA_OPEN_START, None)  # the snapshot on file
    assert alpaca_server.requests == []
    assert (tmp_path / ALPACA_SNAPSHOT_FILE).read_bytes() == before


# -- errors: what failed where, never the secret ----------------------------------------------------------------


def _everything_said(exc: BaseException, res: SecurityMasterResource) -> str:
    return "".join(traceback.format_exception(exc)) + repr(res) + str(res)


def test_bad_keys_give_a_clear_error_without_the_secret(alpaca_server, tmp_path, clock):
    secret = "wrong-secret-Pv81zQm4"
    alpaca_server.set_assets(listing((DAVE_INC, "active")))
    clock(evening(THU))
    res = resource(alpaca_server, tmp_path, alpaca_secret_key=secret)
    with pytest.raises(SecurityMasterError) as info:
        res.get(THU)
    message = str(info.value)
    assert message.startswith("security master (TRADING_DAGSTER_SECURITY_MASTER=alpaca): Alpaca trading API refused")
    assert f"{alpaca_server.url}/v2/assets: HTTP 401 'request is not authorized'" in message
    assert "check APCA key id / secret (key id PKFA...)" in message
    said = _everything_said(info.value, res)
    assert secret not in said and TEST_KEY_ID not in message
    assert len(alpaca_server.requests) == 1  # 401 is not retried
    assert not (tmp_path / ALPACA_SNAPSHOT_FILE).exists()  # nothing recorded


def test_a_secret_echoed_by_the_server_is_scrubbed_and_not_chained(alpaca_server, tmp_path, clock):
    """alpaca-py's APIError holds the raw body: the error raised has no exception chain to carry it."""
    alpaca_server.fail_next(1, 403, {"code": 40310000, "message": f"key {TEST_SECRET_KEY} is disabled"})
    clock(evening(THU))
    res = resource(alpaca_server, tmp_path)
    with pytest.raises(SecurityMasterError, match=r"HTTP 403 'key \*\*\* is disabled'") as info:
        res.get(THU)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert TEST_SECRET_KEY not in _everything_said(info.value, res)


def test_server_errors_are_retried_then_named(alpaca_server, tmp_path, clock):
    alpaca_server.set_assets(listing((DAVE_INC, "active")))
    clock(evening(THU))
    alpaca_server.fail_next(2, 503)
    assert rows(resource(alpaca_server, tmp_path).get(THU))[0][1] == DAVE_INC  # third attempt answered
    alpaca_server.fail_next(4, 500)
    clock(evening(FRI))
    res = resource(alpaca_server, tmp_path)
    with pytest.raises(SecurityMasterError, match=r"failed for the US-equity asset list at .*/v2/assets after 4 attempts: HTTP 500") as info:
        res.get(FRI)
    assert TEST_SECRET_KEY not in _everything_said(info.value, res)
    assert [s.session for s in read_asset_snapshots(tmp_path / ALPACA_SNAPSHOT_FILE)[0]] == [THU]


def test_a_stalled_server_times_out(alpaca_server, tmp_path, clock):
    alpaca_server.stall_next(3.0)
    clock(evening(THU))
    res = resource(alpaca_server, tmp_path)
    res = SecurityMasterResource(**{**res.model_dump(), "timeout_seconds": 0.3})
    with pytest.raises(SecurityMasterError, match=r"did not answer the US-equity asset list within 0.3 s") as info:
        res.get(THU)
    assert TEST_SECRET_KEY not in _everything_said(info.value, res)


def test_an_unreachable_server_names_the_url(tmp_path, clock):
    with AlpacaFakeServer() as gone:
        url = gone.url
    clock(evening(THU))
    res = SecurityMasterResource(
        source="alpaca", symbols=["SPY"], alpaca_key_id=TEST_KEY_ID, alpaca_secret_key=TEST_SECRET_KEY,
        alpaca_trading_url=url, snapshot_path=str(tmp_path / "s.jsonl"),
    )  # fmt: skip
    with pytest.raises(SecurityMasterError, match=f"cannot connect to Alpaca trading API at {url}/v2/assets"):
        res.get(THU)


def test_two_active_assets_on_a_universe_symbol_stop_the_run_before_anything_is_written(alpaca_server, tmp_path, clock):
    alpaca_server.set_assets(listing((FAMOUS_DAVES, "active"), (DAVE_INC, "active")))
    clock(evening(THU))
    with pytest.raises(SecurityMasterError, match="two active assets on DAVE"):
        resource(alpaca_server, tmp_path).get(THU)
    assert not (tmp_path / ALPACA_SNAPSHOT_FILE).exists()


def test_missing_pieces_are_named(tmp_path, clock):
    clock(evening(THU))
    with pytest.raises(SecurityMasterError, match="needs the universe"):
        SecurityMasterResource(source="alpaca", snapshot_path=str(tmp_path / "s.jsonl")).get(THU)
    with pytest.raises(SecurityMasterError, match="needs APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        SecurityMasterResource(source="alpaca", symbols=["SPY"], snapshot_path=str(tmp_path / "s.jsonl")).get(THU)
    with pytest.raises(SecurityMasterError, match="unknown security-master source 'lean'"):
        SecurityMasterResource(source="lean").get()
    assert "***" in repr(SecurityMasterResource(alpaca_secret_key=TEST_SECRET_KEY))
    assert TEST_SECRET_KEY not in repr(SecurityMasterResource(alpaca_secret_key=TEST_SECRET_KEY))
    assert TEST_SECRET_KEY not in repr(AlpacaAssetList(TEST_KEY_ID, TEST_SECRET_KEY))


# -- settings -> definitions -> the resource, keys through dg.EnvVar -------------------------------------------


def _config(tmp_path: Path, symbols: list[str] | None) -> str:
    base = (Path(__file__).parents[2] / "trading_dagster.toml").read_text()
    path = tmp_path / f"config_{'_'.join(symbols) if symbols is not None else 'no_universe'}.toml"
    universe = "" if symbols is None else "\n[universe]\nsymbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]\n"
    path.write_text(base + universe)
    return str(path)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"),
        "TRADING_DAGSTER_CONFIG": _config(tmp_path, ["DAVE", "SPY"]),
        "TRADING_DAGSTER_SECURITY_MASTER": "alpaca",
        "APCA_API_KEY_ID": TEST_KEY_ID,
        "APCA_API_SECRET_KEY": TEST_SECRET_KEY,
        **extra,
    }


def test_settings_validate_the_alpaca_source(tmp_path):
    settings = load_settings(_env(tmp_path, TRADING_DAGSTER_ALPACA_TRADING_URL="http://127.0.0.1:9/"))
    assert (settings.security_master_source, settings.security_master) == ("alpaca", None)
    assert settings.alpaca_trading_url == "http://127.0.0.1:9"
    assert TEST_SECRET_KEY not in repr(settings)
    assert load_settings(_env(tmp_path, TRADING_DAGSTER_SECURITY_MASTER=" ALPACA ")).security_master_source == "alpaca"
    with pytest.raises(SettingsError, match=r"SECURITY_MASTER=alpaca needs the symbols.*\[universe\] symbols"):
        load_settings(_env(tmp_path, TRADING_DAGSTER_CONFIG=_config(tmp_path, None)))
    env = _env(tmp_path)
    del env["APCA_API_SECRET_KEY"]
    with pytest.raises(SettingsError, match="SECURITY_MASTER=alpaca needs APCA_API_SECRET_KEY in the environment"):
        load_settings(env)
    for bad in ("127.0.0.1:8765", "http://127.0.0.1:8765/v2", "ftp://host"):
        with pytest.raises(SettingsError, match="TRADING_DAGSTER_ALPACA_TRADING_URL=.*must be a host root"):
            load_settings(_env(tmp_path, TRADING_DAGSTER_ALPACA_TRADING_URL=bad))
    # a path is still a path (one that must exist), and unset is none
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(_env(tmp_path, TRADING_DAGSTER_SECURITY_MASTER=str(tmp_path / "nope.csv")))
    csv = tmp_path / "m.csv"
    csv.write_text("symbol,security_id,valid_from,valid_to\nA,a,2020-01-02,\n")
    assert load_settings(_env(tmp_path, TRADING_DAGSTER_SECURITY_MASTER=str(csv))).security_master_source == "file"
    assert load_settings(_env(tmp_path, TRADING_DAGSTER_SECURITY_MASTER="")).security_master_source == "none"


@dg.asset
def _probe(context, security_master: SecurityMasterResource) -> None:
    master = security_master.get(sm._now().date())  # a daily run: the window ends on the session just closed
    context.log.info(f"probe: {master.frame.height if master else 0} intervals")


def test_definitions_wire_the_keys_through_env_vars_and_they_never_reach_the_event_log(
    alpaca_server, tmp_path, clock, monkeypatch
):
    env = _env(tmp_path, TRADING_DAGSTER_ALPACA_TRADING_URL=alpaca_server.url)
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
        monkeypatch.setenv(name, env[name])
    settings = load_settings(env)
    res = build_definitions(settings).resources["security_master"]
    assert isinstance(res.alpaca_secret_key, dg.EnvVar) and res.alpaca_secret_key.env_var_name == "APCA_API_SECRET_KEY"
    assert res.snapshot_path == str(settings.data_dir / ALPACA_SNAPSHOT_FILE)
    assert res.alpaca_trading_url == alpaca_server.url and res.symbols == ["DAVE", "SPY"]

    alpaca_server.set_assets(listing((DAVE_INC, "active")))
    clock(evening(THU))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([_probe], resources={"security_master": res}, instance=instance)
    assert result.success
    logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
    assert "probe: 2 intervals" in logged and "recorded in" in logged
    assert TEST_SECRET_KEY not in logged and TEST_KEY_ID not in logged
    assert len(read_asset_snapshots(settings.data_dir / ALPACA_SNAPSHOT_FILE)[0]) == 1

    monkeypatch.setenv("APCA_API_SECRET_KEY", "rotated-but-wrong-Hx72")  # a failing run: the error event too
    clock(evening(FRI))
    failed = dg.materialize([_probe], resources={"security_master": res}, instance=instance, raise_on_error=False)
    assert not failed.success
    logged = " ".join(str(e) for e in instance.all_logs(failed.run_id))
    assert "HTTP 401" in logged and "rotated-but-wrong-Hx72" not in logged and TEST_SECRET_KEY not in logged


def test_the_client_is_set_up_as_for_market_data():
    """The same retries, sleep and timeout as resources/alpaca_data.py (which this module imports lazily)."""
    from trading_dagster.resources import alpaca_data

    assert (sm.TIMEOUT_SECONDS, sm.RETRY_WAIT_SECONDS) == (
        alpaca_data.DEFAULT_TIMEOUT_SECONDS,
        alpaca_data.DEFAULT_RETRY_WAIT_SECONDS,
    )
    client = AlpacaAssetList(TEST_KEY_ID, TEST_SECRET_KEY)._client
    assert (client._retry, client._retry_wait, client._retry_codes) == (3, 3.0, [429, 500, 502, 503, 504])
    assert AlpacaAssetList(TEST_KEY_ID, TEST_SECRET_KEY).endpoint == "https://paper-api.alpaca.markets/v2/assets"
