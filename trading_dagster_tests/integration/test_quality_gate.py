"""A partition that failed a blocking check is never consumed, in the same run or any later one.

Dagster's blocking checks stop the rest of the run that found the problem; the quality gate
(resources/quality_gate.py) stops every later run too, until the partition is re-materialized and passes.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.resources.quality_gate import QualityGate, QualityGateError
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
RAW = [dg.AssetKey(["raw", "raw_prices"])]
CLEANED = [dg.AssetKey(["prices", "cleaned_prices"]), dg.AssetKey(["prices", "price_quarantine"])]
INDICATORS = [dg.AssetKey(["indicators", "indicators"])]


def _errors(result) -> str:
    return " ".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def test_a_raw_session_that_failed_its_check_blocks_cleaning_in_later_runs(warm_copy, tmp_path):
    settings, sessions = warm_copy
    window = sessions[:4]
    gap_file = tmp_path / "gap.parquet"
    pl.read_parquet(SAMPLE).filter(pl.col("date") != window[1]).write_parquet(gap_file)  # a vendor gap day
    # halt: a session without bars is a blocking failure (by default it is an outage at WARN severity)
    from trading_dagster_tests.halt_config import halt_config

    gappy = build_definitions(
        make_settings(
            settings.data_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(gap_file), TRADING_DAGSTER_CONFIG=halt_config(tmp_path)
        )
    )

    first = run_range(gappy, window[0], window[-1], selection=RAW + CLEANED, raise_on_error=False)
    assert not first.success  # raw_prices__every_session_has_bars failed; cleaning did not run
    failed = QualityGate(settings.quality_gate_path).failures("raw/raw_prices", window[0], window[-1])
    assert failed.select("session", "check_name").rows() == [(window[1], "raw_prices__every_session_has_bars")]

    later = run_range(gappy, window[0], window[-1], selection=CLEANED, raise_on_error=False)
    assert not later.success
    message = _errors(later)
    assert "quality gate" in message and "raw/raw_prices" in message and str(window[1]) in message
    assert read_table(settings, "prices.cleaned_prices").filter(pl.col("session").is_in(window)).height == 0

    fixed = build_definitions(settings)  # the full file: re-materializing raw releases the session
    assert run_range(fixed, window[0], window[-1], selection=RAW).success
    assert run_range(fixed, window[0], window[-1], selection=CLEANED).success
    assert read_table(settings, "prices.cleaned_prices").filter(pl.col("session").is_in(window))["session"].n_unique() == 4


def test_a_failed_cleaned_partition_is_refused_by_every_reader_until_rerun(warm_copy):
    settings, sessions = warm_copy
    window = sessions[:3]
    defs = build_definitions(settings)
    assert run_range(defs, window[0], window[-1], selection=RAW + CLEANED).success
    gate = QualityGate(settings.quality_gate_path)
    assert gate.failures("prices/cleaned_prices", window[0], window[-1]).is_empty()

    # an earlier run's verdict: the middle session failed a blocking check (e.g. found by a later check version)
    gate.record(
        "prices/cleaned_prices",
        [window[1]],
        {"cleaned_prices__ohlc_sane": (False, [window[1]], "1 rows with prices that fail OHLC sanity")},
        run_id="earlier-run",
    )
    with pytest.raises(QualityGateError, match=r"prices/cleaned_prices.*1 session\(s\).*earlier-run"):
        gate.require("prices/cleaned_prices", window[0], window[-1])

    blocked = run_range(defs, window[0], window[-1], selection=INDICATORS, raise_on_error=False)
    assert not blocked.success
    assert "cleaned_prices__ohlc_sane" in _errors(blocked) and str(window[1]) in _errors(blocked)
    assert blocked.get_asset_materialization_events() == []  # nothing downstream was written

    # a window that does not touch the failed session (and whose lookback does not either) is not blocked
    assert gate.failures("prices/cleaned_prices", window[2], window[2]).is_empty()

    assert run_range(defs, window[1], window[1], selection=CLEANED).success  # re-materialized, passes again
    assert run_range(defs, window[0], window[-1], selection=INDICATORS).success
    assert read_table(settings, "indicators.indicators").filter(pl.col("session").is_in(window))["session"].n_unique() == 3


def test_verdicts_are_per_session_and_replaced_by_a_rerun(tmp_path):
    gate = QualityGate(tmp_path / "q.duckdb")
    days = [dt.date(2024, 1, d) for d in (2, 3, 4, 5)]
    gate.record("a/b", days, {"c1": (False, [days[2]], "bad row"), "c2": (True, [], "ok")}, "r1")
    assert gate.failures("a/b", days[0], days[-1]).select("session", "check_name").rows() == [(days[2], "c1")]
    gate.record("a/b", days, {"c3": (False, [], "window-level failure")}, "r2")  # no sessions named: all
    assert gate.failures("a/b", days[0], days[-1])["session"].to_list() == days
    gate.record("a/b", days[1:3], {"c3": (True, [], "ok")}, "r3")  # re-run of two sessions releases them
    assert gate.failures("a/b", days[0], days[-1])["session"].to_list() == [days[0], days[3]]
    assert gate.failures("other/asset", days[0], days[-1]).is_empty()
    gate.require("a/b", days[1], days[2])
    with pytest.raises(QualityGateError, match="c3"):
        gate.require("a/b", days[2], days[3])


def test_passed_sessions_are_those_judged_with_no_failed_verdict(tmp_path):
    """What a lookback counts as present (assets/indicators.py `check_lookback`): verdicts recorded and none
    failed. A warning is recorded as passed; a pending or failed session and a session never judged are not."""
    gate = QualityGate(tmp_path / "q.sqlite")
    days = [dt.date(2011, 2, d) for d in (14, 15, 16, 17, 18)]
    assert gate.passed_sessions("a/b", days[0], days[-1]) == []  # no file yet
    gate.record("a/b", days[:3], {"c1": (True, [], "ok"), "c2": (False, [days[1]], "bad row")}, "r1")
    gate.mark_pending("a/b", [days[3]], "r2")  # written, its checks not recorded (yet)
    gate.record("other/asset", [days[4]], {"c1": (True, [], "ok")}, "r3")
    assert gate.passed_sessions("a/b", days[0], days[-1]) == [days[0], days[2]]
    assert gate.passed_sessions("a/b", days[1], days[2]) == [days[2]]
    gate.record("a/b", days[1:4], {"c1": (True, [], "ok")}, "r4")  # re-run: released, judged
    assert gate.passed_sessions("a/b", days[0], days[-1]) == days[:4]  # days[4] never judged for a/b


def test_reports_are_claimed_once_and_released_when_undelivered(tmp_path):
    gate = QualityGate(tmp_path / "q.sqlite")
    assert gate.claim_reports(["k1", "k2", "k1"], "r1") == ["k1", "k2"]
    assert gate.claim_reports(["k2", "k3"], "r2") == ["k3"]  # a re-run reports only what is new
    gate.release_reports(["k3"])
    assert gate.claim_reports(["k3"], "r3") == ["k3"]
    assert gate.claim_reports([], "r4") == []


def test_a_run_that_dies_between_writing_and_checking_leaves_its_sessions_refused(warm_copy, monkeypatch):
    """The cleaned rows are written, then the step dies before its checks record a verdict (killed, out of
    memory, terminated): those sessions stay pending, and a later reader refuses them until re-materialized."""
    settings, sessions = warm_copy
    window = sessions[:2]
    defs = build_definitions(settings)
    assert run_range(defs, window[0], window[-1], selection=RAW).success

    from trading_dagster.checks import gx_suites

    real_validate = gx_suites.validate

    def dies(stage, *args, **kwargs):
        if stage == "cleaned":
            raise MemoryError("killed while checking")  # after cleaned_prices was written
        return real_validate(stage, *args, **kwargs)

    monkeypatch.setattr(gx_suites, "validate", dies)
    died = run_range(defs, window[0], window[-1], selection=CLEANED, raise_on_error=False)
    assert not died.success
    written = read_table(settings, "prices.cleaned_prices").filter(pl.col("session").is_in(window))
    assert written["session"].n_unique() == 2  # the partitions were written ...
    pending = QualityGate(settings.quality_gate_path).failures("prices/cleaned_prices", window[0], window[-1])
    assert pending.select("session", "check_name").rows() == [(s, "checks_not_recorded") for s in window]
    assert all(died.run_id in d for d in pending["description"])

    blocked = run_range(defs, window[0], window[-1], selection=INDICATORS, raise_on_error=False)
    assert not blocked.success and "checks_not_recorded" in _errors(blocked)  # ... and nobody reads them
    assert blocked.get_asset_materialization_events() == []

    monkeypatch.setattr(gx_suites, "validate", real_validate)
    assert run_range(defs, window[0], window[-1], selection=CLEANED).success  # a full run releases them
    assert QualityGate(settings.quality_gate_path).failures("prices/cleaned_prices", window[0], window[-1]).is_empty()
    assert run_range(defs, window[0], window[-1], selection=INDICATORS).success
