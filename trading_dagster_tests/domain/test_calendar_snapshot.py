"""The NYSE calendar from the closures snapshot equals exchange_calendars' own, and the library is used
whenever the snapshot cannot stand in for it."""

import datetime as dt
import json

import exchange_calendars as xc
import pytest

from trading_dagster.domain import calendar as cal
from trading_dagster.domain.calendar import FIRST_SESSION, library_calendar, weekday_closures

uncached = cal.nyse_calendar.__wrapped__  # nyse_calendar caches per process


@pytest.mark.parametrize("start", [FIRST_SESSION, dt.date(2012, 10, 29), dt.date(2025, 1, 9)])
def test_the_snapshot_gives_the_librarys_sessions(start, monkeypatch):
    calls = []
    monkeypatch.setattr(cal, "library_calendar", lambda *a: calls.append(a))
    from_snapshot = uncached(start)
    assert calls == []  # the snapshot was used
    assert from_snapshot == library_calendar(start)


def test_the_committed_snapshot_is_the_installed_librarys():
    """Fails after an exchange_calendars upgrade (or a new closure it learns): run
    `python -c "from trading_dagster.domain.calendar import write_closures_snapshot; write_closures_snapshot()"`."""
    saved = json.loads(cal.CLOSURES_SNAPSHOT.read_text())
    assert saved["exchange_calendars"] == xc.__version__
    end = dt.date.fromisoformat(saved["end"])
    expected = weekday_closures(library_calendar(FIRST_SESSION, end), FIRST_SESSION, end)
    assert saved["closures"] == [d.isoformat() for d in expected]
    assert {"2012-10-29", "2012-10-30", "2018-12-05", "2025-01-09", "2022-06-20"} <= set(saved["closures"])


def _snapshot(tmp_path, **changes):
    saved = {**json.loads(cal.CLOSURES_SNAPSHOT.read_text()), **changes}
    path = tmp_path / "closures.json"
    path.write_text(json.dumps(saved))
    return path


@pytest.mark.parametrize(
    "changes",
    [
        {"exchange_calendars": "0.0.1"},  # written by another version
        {"end": "2020-12-31"},  # does not reach the library's end (a year from today)
        {"start": "2010-01-04"},  # starts after the start asked for
        {"calendar": "XLON"},
        {"closures": "not a list of dates"},
    ],
)
def test_a_snapshot_that_cannot_stand_in_leaves_it_to_the_library(changes, tmp_path, monkeypatch):
    monkeypatch.setattr(cal, "CLOSURES_SNAPSHOT", _snapshot(tmp_path, **changes))
    calls = []
    real = cal.library_calendar

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(cal, "library_calendar", spy)
    assert uncached(FIRST_SESSION) == real(FIRST_SESSION)
    assert calls == [(FIRST_SESSION,)]


def test_a_missing_snapshot_leaves_it_to_the_library(tmp_path, monkeypatch):
    monkeypatch.setattr(cal, "CLOSURES_SNAPSHOT", tmp_path / "absent.json")
    assert uncached(FIRST_SESSION) == library_calendar(FIRST_SESSION)


def test_a_written_snapshot_is_used_and_gives_the_librarys_sessions(tmp_path, monkeypatch):
    path = tmp_path / "closures.json"
    cal.write_closures_snapshot(path, end=dt.date(2030, 12, 31))
    monkeypatch.setattr(cal, "CLOSURES_SNAPSHOT", path)
    monkeypatch.setattr(cal, "library_calendar", lambda *a: pytest.fail("the snapshot was not used"))
    assert uncached(FIRST_SESSION) == library_calendar(FIRST_SESSION)  # the module-level import: the real one
