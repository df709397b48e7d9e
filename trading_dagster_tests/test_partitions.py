"""The partitions are the NYSE sessions, from the exchange calendar, not a hand-written list, and end where
TRADING_DAGSTER_LAST_SESSION says (today, or the last session with data)."""

import datetime as dt
from collections import Counter

import pytest

from trading_dagster.partitions import (
    LAST_SESSION_ENV,
    build_sessions_partitions_def,
    last_session_setting,
    lookback_mapping,
    parse_last_session,
    partitions_range_text,
    session_calendar,
    sessions_partitions_def,
)


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return sessions_partitions_def().get_partition_keys()


@pytest.mark.parametrize(("year", "sessions"), [(2008, 253), (2012, 250), (2017, 251), (2018, 251), (2022, 251), (2024, 252)])
def test_sessions_per_year_match_the_exchange(keys, year, sessions):
    assert Counter(k[:4] for k in keys)[str(year)] == sessions


def test_partitions_equal_the_calendar_sessions(keys):
    cal = session_calendar()
    expected = [d.isoformat() for d in cal.between(dt.date(2008, 1, 2), dt.date.fromisoformat(keys[-1]))]
    assert keys == expected
    assert keys[0] == "2008-01-02"


@pytest.mark.parametrize(
    "closed",
    ["2012-10-29", "2012-10-30", "2018-12-05", "2022-06-20", "2023-06-19", "2024-06-19", "2008-03-21", "2016-12-26"],
)
def test_unscheduled_closures_and_holidays_are_not_partitions(keys, closed):
    assert closed not in keys


def test_juneteenth_was_a_session_before_2022(keys):
    assert "2021-06-18" in keys  # observed Friday 2021-06-18 was still a trading day
    assert "2022-06-20" not in keys


def test_lookback_counts_sessions_not_days():
    pdef = sessions_partitions_def()
    mapped = lookback_mapping(200).get_upstream_mapped_partitions_result_for_partitions(
        pdef.subset_with_partition_keys(["2017-11-10"]), pdef, pdef
    )
    got = mapped.partitions_subset.get_partition_keys()
    assert len(got) == 201
    assert got[0] == session_calendar().offset(dt.date(2017, 11, 10), -200).isoformat()


def test_lookback_is_clipped_at_the_first_session():
    pdef = sessions_partitions_def()
    mapped = lookback_mapping(200).get_upstream_mapped_partitions_result_for_partitions(
        pdef.subset_with_partition_keys(["2008-01-04"]), pdef, pdef
    )
    assert mapped.partitions_subset.get_partition_keys() == ["2008-01-02", "2008-01-03", "2008-01-04"]


def test_sessions_before_a_day_skip_holidays_and_stop_at_the_first_session():
    cal = session_calendar()
    # 2024-07-05: the 4th was a holiday and 06-29/30 a weekend
    assert cal.before(dt.date(2024, 7, 5), 4) == [dt.date(2024, 6, 28), dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3)]
    assert cal.before(dt.date(2024, 7, 4), 1) == [dt.date(2024, 7, 3)]  # a non-session day works too
    assert cal.before(cal.first, 10) == []
    assert cal.before(cal.sessions[2], 10) == list(cal.sessions[:2])


# ------------------------------------------------------------------------------------------------ where they end

TODAY = dt.date(2026, 12, 3)  # a Thursday


@pytest.mark.parametrize(
    ("value", "last"),
    [
        ("2017-11-10", dt.date(2017, 11, 10)),  # a session: kept
        ("2017-11-12", dt.date(2017, 11, 10)),  # a Sunday: the Friday before
        ("2017-11-23", dt.date(2017, 11, 22)),  # Thanksgiving: the day before
        ("2017-12-31", dt.date(2017, 12, 29)),  # "the end of 2017"
        (" 2008-01-02 ", dt.date(2008, 1, 2)),  # the first session itself
        ("today", None),
        ("TODAY", None),
        ("", None),
        (None, None),
    ],
)
def test_last_session_values(value, last):
    assert parse_last_session(value, session_calendar(), TODAY) == last


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2017/11/10", "must be a date"),
        ("yesterday", "must be a date"),
        ("2026-12-04", "after today"),
        ("2007-12-31", "before the first session"),
    ],
)
def test_a_bad_last_session_is_refused_naming_the_variable(value, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_last_session(value, session_calendar(), TODAY)
    assert LAST_SESSION_ENV in str(err.value)


@pytest.mark.parametrize("last", [dt.date(2017, 11, 10), dt.date(2017, 11, 22), dt.date(2017, 12, 29), dt.date(2008, 1, 2)])
def test_the_partitions_end_at_the_last_session_given(last):
    keys = build_sessions_partitions_def(last).get_partition_keys()
    assert keys[-1] == last.isoformat()
    assert keys == [d.isoformat() for d in session_calendar().between(dt.date(2008, 1, 2), last)]


def test_without_a_last_session_the_partitions_reach_today(keys):
    # today's session is a partition from the start of the day (end_offset=1), so the daily schedule finds it
    cal = session_calendar()
    latest = cal.before(dt.date.today() + dt.timedelta(days=2), 1)[0]
    assert dt.date.fromisoformat(keys[-1]) >= latest - dt.timedelta(days=4)
    assert build_sessions_partitions_def(None).get_partition_keys() == keys


def test_the_environment_variable_sets_the_range(monkeypatch):
    monkeypatch.setenv(LAST_SESSION_ENV, "2017-11-10")
    pdef = sessions_partitions_def()
    assert pdef.get_last_partition_key() == "2017-11-10"
    assert len(pdef.get_partition_keys()) == 2485  # the demo's sample: 2008-01-02 .. 2017-11-10
    assert pdef is sessions_partitions_def()  # one definition object per range: assets and jobs compare equal
    assert partitions_range_text() == "2008-01-02 .. 2017-11-10 (TRADING_DAGSTER_LAST_SESSION=2017-11-10)"
    monkeypatch.setenv(LAST_SESSION_ENV, "today")
    assert sessions_partitions_def().get_last_partition_key() > "2026-01-01"


@pytest.mark.parametrize(
    ("last_data", "live", "expected"),
    [
        (dt.date(2017, 11, 10), False, "2017-11-10"),  # the demo's sample in dev: historical
        (dt.date(2017, 11, 10), True, "today"),  # paper / live: always today, whatever the data
        (None, False, "today"),  # an empty store
        (dt.date(2026, 12, 3), False, "today"),  # today's data
        (dt.date(2026, 11, 25), False, "today"),  # 5 sessions behind (Thanksgiving between): a late feed
        (dt.date(2026, 11, 24), False, "2026-11-24"),  # 6 sessions behind: historical
    ],
)
def test_what_demo_and_ui_set(last_data, live, expected):
    assert last_session_setting(last_data, session_calendar(), TODAY, live_environment=live) == expected


def _settings_with_raw_sessions(tmp_path, sessions: list[str], environment: str = "dev"):
    import dataclasses

    from trading_dagster.settings import load_settings

    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")})
    for day in sessions:  # the raw store's key layout; listing the sessions reads only the keys
        key = settings.raw_root / "raw" / "prices" / f"date={day}" / "prices.parquet"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(b"")
    return dataclasses.replace(settings, environment=environment)


def test_ui_ends_the_partitions_at_the_raw_stores_last_session_on_historical_data(tmp_path):
    from trading_dagster.cli import partitions_environment

    settings = _settings_with_raw_sessions(tmp_path, ["2017-11-09", "2017-11-10"])
    assert partitions_environment(settings, {}, today=TODAY) == {LAST_SESSION_ENV: "2017-11-10"}
    # current data, an empty store, or a paper / live deployment: today, so the daily schedule has its partition
    current = _settings_with_raw_sessions(tmp_path / "current", ["2026-12-01", "2026-12-02"])
    assert partitions_environment(current, {}, today=TODAY) == {LAST_SESSION_ENV: "today"}
    assert partitions_environment(_settings_with_raw_sessions(tmp_path / "empty", []), {}, today=TODAY) == {
        LAST_SESSION_ENV: "today"
    }
    paper = _settings_with_raw_sessions(tmp_path / "paper", ["2017-11-10"], environment="paper")
    assert partitions_environment(paper, {}, today=TODAY) == {LAST_SESSION_ENV: "today"}


def test_an_explicit_last_session_wins_and_a_bad_one_is_refused(tmp_path):
    from trading_dagster.cli import partitions_environment

    settings = _settings_with_raw_sessions(tmp_path, ["2017-11-10"])
    assert partitions_environment(settings, {LAST_SESSION_ENV: "today"}, today=TODAY) == {LAST_SESSION_ENV: "today"}
    assert partitions_environment(settings, {LAST_SESSION_ENV: "2016-12-30"}, today=TODAY) == {
        LAST_SESSION_ENV: "2016-12-30"
    }
    with pytest.raises(ValueError, match="TRADING_DAGSTER_LAST_SESSION must be a date"):
        partitions_environment(settings, {LAST_SESSION_ENV: "last friday"}, today=TODAY)


def test_ui_hands_the_partitions_and_the_lineage_link_to_dagster_dev(tmp_path, monkeypatch, capsys):
    """`trading-dagster ui` sets the variable in its own environment before it becomes `dagster dev` (exec), so
    the webserver, the daemon, the code server and the run workers all inherit it."""
    import os

    from trading_dagster import cli

    settings = _settings_with_raw_sessions(tmp_path, ["2017-11-09", "2017-11-10"])
    environ = {k: v for k, v in os.environ.items() if k != LAST_SESSION_ENV}
    monkeypatch.setattr(os, "environ", environ)  # this test's copy: what the command sets goes nowhere else
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(cli, "prepare_manifest", lambda: None)
    execs = []
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append((path, argv, dict(os.environ))))

    assert cli.main(["--dagster-home", str(tmp_path / "home"), "ui", "--port", "3999"]) == 0
    (path, argv, env), = execs
    assert argv[1:3] == ["dev", "-w"] and argv[-2:] == ["-p", "3999"]
    assert env[LAST_SESSION_ENV] == "2017-11-10"  # the demo's sample ends there: historical, in dev
    out = capsys.readouterr().out
    assert "partitions end: 2017-11-10" in out
    assert "http://127.0.0.1:3999/asset-groups?expanded=global@global:raw,global@global:prices," in out
    assert "http://127.0.0.1:3999/locations/trading_dagster/asset-groups/portal" in out
