"""`collector.collector_paused_then_frozen`: the cyclic collector off inside, every object alive frozen after,
the collector as it was (also after an error); loading the code location freezes its objects, GX's first use
(in the middle of a run) only pauses the collector, and both leave it on."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap

import pytest

from trading_dagster.domain.collector import collector_paused_then_frozen


def test_paused_inside_frozen_after_and_restored():
    assert gc.isenabled()
    before = gc.get_freeze_count()
    with collector_paused_then_frozen():
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]  # tracked containers, alive after the block
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(made)


def test_an_error_inside_still_restores_the_collector():
    with pytest.raises(RuntimeError), collector_paused_then_frozen():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused_then_frozen():
            pass
        assert not gc.isenabled()  # someone else's off stays off
    finally:
        gc.enable()


PROBE = textwrap.dedent(
    """
    import gc, json, sys, warnings
    warnings.simplefilter("ignore")
    full = []
    gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2 and full.append(1))
    import dagster
    loaded_at = len(full)
    import trading_dagster.definitions as d
    d.defs().get_job_def("pipeline_job")
    after_load = (len(full) - loaded_at, gc.isenabled(), gc.get_freeze_count())
    from trading_dagster.checks import gx_suites
    frozen, before_gx = gc.get_freeze_count(), len(full)
    gx_suites.warm_up()
    after_gx = (len(full) - before_gx, gc.isenabled(), gc.get_freeze_count() - frozen)
    print(json.dumps({"load": after_load, "gx": after_gx}))
    """
)


def test_loading_the_code_location_freezes_its_objects_gx_only_pauses_and_both_leave_the_collector_on():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    full_collections, on, frozen = got["load"]
    assert on and frozen > 100_000  # the definitions' objects are frozen
    assert full_collections == 0  # none while the code location loaded (two before this change)
    gx_full_collections, gx_on, gx_frozen = got["gx"]
    assert gx_full_collections == 0 and gx_on  # none while GX was imported (one before this change)
    assert gx_frozen <= 0  # nothing of it frozen (it comes in the middle of a run): the count only fell
