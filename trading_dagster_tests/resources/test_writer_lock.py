"""One writing run at a time (resources/writer_lock.py, decision 0004 section 6)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from trading_dagster.definitions import build_definitions
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.resources.writer_lock import WriterLock, WriterLockHeld
from trading_dagster_tests.integration.conftest import make_settings, run_range


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_is_released(tmp_path):
    path = tmp_path / "writer.lock"
    first = WriterLock(path)
    first.acquire(run_id="run-1", job="pipeline_job", sessions="2017-06-01..2017-06-30")
    with pytest.raises(WriterLockHeld, match=r"run_id run-1.*job pipeline_job.*sessions 2017-06-01\.\.2017-06-30"):
        WriterLock(path).acquire(run_id="run-2")
    first.release()
    with WriterLock(path) as second:  # free again
        second.acquire(run_id="run-2")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "writer.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from trading_dagster.resources.writer_lock import WriterLock
                lock = WriterLock({str(path)!r})  # kept referenced: closing its file would release it
                lock.acquire(run_id="doomed")
                print("held", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterLockHeld, match="doomed"):
            WriterLock(path).acquire(run_id="mine")
    finally:
        holder.kill()
        holder.wait()
    lock = WriterLock(path)
    lock.acquire(run_id="mine")  # the kernel released the dead process's lock
    lock.release()


def test_a_run_while_another_writes_is_refused_with_a_message_saying_so_and_writes_nothing(tmp_path):
    settings = make_settings(tmp_path / "data")
    defs = build_definitions(settings)
    other = WriterLock(settings.quality_gate_path.with_name("writer.lock"))
    other.acquire(run_id="the-other-run", job="pipeline_job", sessions="2017-06-01..2017-06-02")
    try:
        day = dg.AssetKey(["raw", "raw_prices"])
        result = run_range(defs, dt.date(2017, 6, 1), dt.date(2017, 6, 2), selection=[day], raise_on_error=False)
    finally:
        other.release()
    assert not result.success
    text = " ".join(
        str(e.event_specific_data.error) for e in result.all_events if e.event_type_value in ("RUN_FAILURE", "STEP_FAILURE", "RESOURCE_INIT_FAILURE")
        if getattr(e.event_specific_data, "error", None)
    )
    assert "another run is writing" in text and "the-other-run" in text, text
    assert "checks_not_recorded" not in text
    gate = QualityGate(settings.quality_gate_path)  # nothing marked pending, nothing judged
    assert gate.failures("raw/raw_prices", dt.date(2017, 6, 1), dt.date(2017, 6, 2)).is_empty()
    assert not (settings.raw_root / "raw").exists()
