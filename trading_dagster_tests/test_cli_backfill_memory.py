"""`trading-dagster backfill` (cli.run_backfill) frees each step's output frames when the step is done: a ten-year
range run must not hold the cleaned bars, indicators, signals and orders at once (Dagster's `execute_in_process`
keeps every output to return it; `run_backfill` executes the job as a run worker does)."""

import datetime as dt
import gc
import weakref

from trading_dagster.cli import ensure_dagster_home, run_backfill
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.warehouse import WarehouseTypeHandler


def test_a_backfill_frees_each_steps_output_when_the_step_is_done(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ensure_dagster_home(str(home))
    written: list[tuple[str, weakref.ref]] = []
    alive_when_written: dict[str, list[str]] = {}
    handle_output = WarehouseTypeHandler.handle_output

    def recording(self, context, table_slice, obj, connection):
        table = f"{table_slice.schema}.{table_slice.table}"
        gc.collect()
        alive_when_written[table] = [name for name, ref in written if ref() is not None]
        handle_output(self, context, table_slice, obj, connection)
        written.append((table, weakref.ref(obj)))

    monkeypatch.setattr(WarehouseTypeHandler, "handle_output", recording)
    sessions = session_calendar().between(dt.date(2008, 1, 2), dt.date(2008, 1, 8))
    secret = "not-a-real-key-3f9c2d"
    environ = {"TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data"), "ALPACA_SECRET_KEY": secret}
    outcome = run_backfill(sessions[0], sessions[-1], environ=environ)
    assert outcome["success"] and outcome["checks_failed"] == 0
    # the environ it was given (secrets included) is not in the run Dagster recorded (its code origin)
    import dagster as dg
    from dagster import serialize_value

    run = dg.DagsterInstance.get().get_run_by_id(outcome["run_id"])
    recorded = serialize_value(run)
    assert "backfill_pipeline_job" in recorded and str(tmp_path) not in recorded and secret not in recorded
    # by the time a later step writes, no earlier step's output frame is alive (execute_in_process kept them
    # all: 8 frames by pnl.positions). One exception, not accumulating: the first frame written (the cleaned
    # bars) stays referenced as `obj` from a module dictionary inside Dagster's metadata code until the run
    # ends; it is allowed here, and only it.
    later = ["indicators.indicators", "signals.signals", "trading.orders", "trading.executions", "pnl.positions"]
    for table in later:
        assert set(alive_when_written[table]) <= {"prices.cleaned_prices"}, (table, alive_when_written[table])
