"""The stale-partition report in the UI and the refresh requests (automation/staleness.py)."""

from __future__ import annotations

import time

import dagster as dg

from trading_dagster.automation.staleness import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    REFRESH_TAG,
    refresh_plan,
    refresh_stale_sensor,
    stale_partitions_sensor,
    stale_report,
)
from trading_dagster.definitions import build_definitions
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.configured import QualityGateResource
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.settings import load_settings

CLEANED, INDICATORS, SIGNALS = "prices/cleaned_prices", "indicators/indicators", "signals/signals"
TRADING = ("trading/orders", "trading/executions", "pnl/equity")


def _pipeline(gate: QualityGate, sessions, run_id: str) -> None:
    """What a range run leaves in the gate: raw changed, then every asset recorded, upstream first."""
    gate.record_changes(sessions, run_id)
    for asset in (CLEANED, INDICATORS, SIGNALS, *TRADING):
        time.sleep(0.002)  # records a run writes come one after another, upstream first
        gate.record(asset, sessions, {"a_check": (True, (), "ok")}, run_id)


def _setup(tmp_path):
    settings = load_settings({"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")})
    gate = QualityGate(settings.quality_gate_path)
    sessions = session_calendar().between(session_calendar().sessions[700], session_calendar().sessions[760])
    _pipeline(gate, sessions, "backfill")
    return settings, gate, sessions


def _tick(sensor, settings, cursor=None):
    with dg.build_sensor_context(  # the gate resource holds the writer lock in runs: a context manager
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        definitions=build_definitions(settings),
        resources={"quality_gate": QualityGateResource(path=str(settings.quality_gate_path))},
    ) as context:
        return sensor.evaluate_tick(context)


def test_the_report_fails_the_up_to_date_checks_of_what_a_revision_made_stale(tmp_path):
    settings, gate, sessions = _setup(tmp_path)
    first = _tick(stale_partitions_sensor, settings)
    assert all(e.passed for e in first.asset_events) and len(first.asset_events) == 6
    assert _tick(stale_partitions_sensor, settings, first.cursor).skip_message  # nothing changed: no report

    time.sleep(0.002)
    gate.record_changes([sessions[30]], None)  # a vendor revised one bar of a past session
    second = _tick(stale_partitions_sensor, settings, first.cursor)
    verdicts = {e.asset_key.to_user_string(): e for e in second.asset_events}
    assert not verdicts[CLEANED].passed and verdicts[CLEANED].severity == dg.AssetCheckSeverity.WARN
    assert verdicts[CLEANED].metadata["first_stale_session"].value == str(sessions[30])
    assert f"raw/raw_prices for {sessions[30]} changed" in verdicts[CLEANED].description
    for asset in TRADING:  # the book is path dependent: stale from the revised session to the last
        assert verdicts[asset].metadata["first_stale_session"].value == str(sessions[30])
        assert verdicts[asset].metadata["last_stale_session"].value == str(sessions[-1])


def test_the_refresh_sensor_requests_the_first_stage_and_waits_for_it(tmp_path):
    settings, gate, sessions = _setup(tmp_path)
    assert _tick(refresh_stale_sensor, settings).skip_message == "nothing is stale"
    time.sleep(0.002)
    gate.record_changes([sessions[30]], None)
    result = _tick(refresh_stale_sensor, settings)
    (request,) = result.run_requests
    assert {k.to_user_string() for k in request.asset_selection} == {  # every output of the cleaning step
        "prices/cleaned_prices", "prices/price_quarantine", "prices/data_outages", "prices/price_breaks"
    }
    assert request.tags[RANGE_START_TAG] == str(sessions[30]) and REFRESH_TAG in request.tags
    plan = refresh_plan(stale_report(gate))
    assert [r.assets for r in plan] == [(CLEANED,), (INDICATORS,), (SIGNALS,), TRADING]
    assert request.tags[RANGE_END_TAG] == str(plan[0].end)
    assert plan[-1].start == sessions[30] and plan[-1].end == sessions[-1]
