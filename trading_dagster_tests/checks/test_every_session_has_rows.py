"""`every_session_has_rows`: an empty session is an error, unless it is a recorded data outage (then a
warning, which the quality gate lets through; decision 0004, section 2)."""

import datetime as dt

import polars as pl

from trading_dagster.assets._common import check_result, is_warning
from trading_dagster.checks.rules import every_session_has_rows

D = [dt.date(2011, 2, 15), dt.date(2011, 2, 16), dt.date(2011, 2, 17), dt.date(2011, 2, 18)]


def frame(sessions: list[dt.date]) -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["AAPL"] * len(sessions), "session": sessions}, schema={"symbol": pl.Utf8, "session": pl.Date})


def test_every_session_with_rows_passes():
    out = every_session_has_rows(frame(D), D, outages=D)
    assert out.passed and not is_warning(out)


def test_an_empty_session_is_an_error_by_default_and_under_halt():
    out = every_session_has_rows(frame([D[0], D[1], D[3]]), D)
    assert not out.passed and not is_warning(out)
    assert out.failed_sessions == (D[2],)
    assert out.metadata["missing_sessions"] == "2011-02-17"
    assert check_result(["prices", "cleaned_prices"], "c", out).severity.value == "ERROR"


def test_an_empty_session_that_is_a_recorded_outage_is_a_warning_naming_it():
    out = every_session_has_rows(frame([D[0], D[3]]), D, outages=[D[1], D[2]])
    assert not out.passed and is_warning(out)
    assert out.failed_sessions == (D[1], D[2])
    assert "2011-02-16, 2011-02-17" in out.description and "outage" in out.description
    assert check_result(["prices", "cleaned_prices"], "c", out).severity.value == "WARN"


def test_an_empty_session_that_is_no_outage_keeps_the_error_and_names_only_it():
    out = every_session_has_rows(frame([D[0], D[3]]), D, outages=[D[2]])
    assert not out.passed and not is_warning(out)
    assert out.failed_sessions == (D[1],)  # the gate closes this one only
    assert out.metadata["outage_sessions"] == "2011-02-17"
    assert out.description.startswith("1 sessions have no rows and are no data outage; 1 more are outages")


def test_an_empty_frame_with_every_session_an_outage():
    empty = frame([]).head(0)
    assert is_warning(every_session_has_rows(empty, D[:1], outages=D[:1]))
    assert not is_warning(every_session_has_rows(empty, D[:1], outages=[]))
