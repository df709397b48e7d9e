"""Revisions propagate (decision 0004 §5): what a revised raw session made stale, shown and refreshed.

* `stale_report` asks the quality gate when each raw session last changed and when each downstream asset
  last recorded each session, and `domain.staleness.stale_partitions` decides what is stale.
* `refresh_plan` turns that into the runs that re-materialize exactly those partitions, upstream first:
  one single-run range per asset and contiguous stretch, the trading chain (orders, executions, P&L: the
  book is path dependent) in one run from its first stale session on.
* In the UI: every downstream asset has an `<asset>__up_to_date` check (not part of the pipeline's runs,
  so a daily run pays nothing for it); `stale_partitions_sensor` reports it (a failed WARN evaluation naming
  the stale sessions and their cause, a passing one once refreshed) whenever the picture changes, and
  `refresh_stale_sensor` (off until turned on in the UI: that is the one launch; left on, every later
  revision refreshes itself) requests the plan's runs one at a time, upstream first.
* In the CLI: `trading-dagster status` prints the report, `trading-dagster refresh` runs the plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from trading_dagster.assets.indicators import INDICATORS, SIGNALS
from trading_dagster.assets.prices import CLEANED
from trading_dagster.assets.raw import RAW_PRICES
from trading_dagster.assets.trading import EQUITY, EXECUTIONS, MARK_LOOKBACK, ORDERS
from trading_dagster.domain import indicators as ind
from trading_dagster.domain import universe
from trading_dagster.domain.prices import HISTORY_SESSIONS
from trading_dagster.domain.quality import BREAK_HOLD_SESSIONS, OUTAGE_HISTORY_SESSIONS
from trading_dagster.domain.staleness import Dep, Stale, contiguous_ranges, stale_partitions
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.configured import QualityGateResource
from trading_dagster.resources.quality_gate import QualityGate

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
REFRESH_TAG = "trading_dagster/refresh"


def _name(key: list[str]) -> str:
    return "/".join(key)


RAW = _name(RAW_PRICES)
# (asset as the gate names it, what it reads and how far back), upstream first. The trading chain's reads
# of each other's book are the path dependence `stale_partitions` handles as a whole.
GRAPH: tuple[tuple[str, tuple[Dep, ...]], ...] = (
    # the raw history of the price rules (breaks) and of the outage baseline
    (_name(CLEANED), (Dep(RAW, back=max(HISTORY_SESSIONS, OUTAGE_HISTORY_SESSIONS)),)),
    (_name(INDICATORS), (Dep(_name(CLEANED), back=ind.LOOKBACK_SESSIONS),)),
    (
        _name(SIGNALS),
        (
            Dep(_name(INDICATORS), back=1),
            # the liquidity rule's bars and the unexplained-split hold-out read cleaned prices and quarantine
            Dep(_name(CLEANED), back=max(universe.LIQUIDITY_LOOKBACK_SESSIONS, BREAK_HOLD_SESSIONS)),
        ),
    ),
    # the trading assets read cleaned prices and confirmed breaks MARK_LOOKBACK sessions back (marks, book events)
    (_name(ORDERS), (Dep(_name(SIGNALS)), Dep(_name(CLEANED), back=MARK_LOOKBACK))),
    (_name(EXECUTIONS), (Dep(_name(ORDERS), back=1), Dep(_name(CLEANED), back=MARK_LOOKBACK))),
    (_name(EQUITY), (Dep(_name(EXECUTIONS)), Dep(_name(CLEANED), back=MARK_LOOKBACK))),
)
CHAIN = (_name(ORDERS), _name(EXECUTIONS), _name(EQUITY))
CHECKED = tuple(asset for asset, _ in GRAPH)


def stale_report(gate: QualityGate) -> dict[str, Stale]:
    """{asset: its stale sessions and their cause}, only for assets with some."""
    records = {asset: gate.recorded(asset) for asset in CHECKED}
    return stale_partitions(RAW, gate.changes(), records, GRAPH, CHAIN, session_calendar().sessions)


@dataclass(frozen=True)
class RefreshRun:
    """One run of the refresh: these assets (as the gate names them) over sessions start..end."""

    assets: tuple[str, ...]
    start: dt.date
    end: dt.date

    @property
    def label(self) -> str:
        return f"{', '.join(self.assets)} {self.start}..{self.end}"


def refresh_plan(report: Mapping[str, Stale]) -> list[RefreshRun]:
    """The runs that refresh exactly the stale partitions, upstream first (see the module docstring)."""
    calendar = session_calendar().sessions
    runs: list[RefreshRun] = []
    chain = [report[a] for a in CHAIN if a in report]
    for asset in CHECKED:
        if asset in CHAIN or asset not in report:
            continue
        runs += [RefreshRun((asset,), a, b) for a, b in contiguous_ranges(report[asset].sessions, calendar)]
    if chain:
        start = min(s.sessions[0] for s in chain)
        end = max(s.sessions[-1] for s in chain)
        runs.append(RefreshRun(tuple(s.asset for s in chain), start, end))
    return runs


def selection_for(graph: Any, assets: Sequence[str]) -> list[dg.AssetKey]:
    """The asset keys a run of `assets` must select: every output of their steps (cleaned prices come with
    the quarantine, the outages and the breaks, all computed from the same raw bars; equity with positions).
    `graph`: the definitions' asset graph."""
    keys: set[dg.AssetKey] = set()
    for asset in assets:
        keys |= set(graph.assets_def_for_key(dg.AssetKey(asset.split("/"))).keys)
    return sorted(keys, key=lambda k: k.to_user_string())


def execute_refresh(
    defs: dg.Definitions, instance: dg.DagsterInstance, gate: QualityGate, *, announce: Any = print
) -> tuple[bool, list[RefreshRun]]:
    """Run the refresh plan in this process, upstream first, stopping at the first failed run:
    (all succeeded, the plan). What `trading-dagster refresh` does; the sensor does the same one run a tick."""
    plan = refresh_plan(stale_report(gate))
    job = defs.resolve_job_def("pipeline_job")
    graph = defs.resolve_asset_graph()
    for i, run in enumerate(plan, 1):
        announce(f"refresh {i}/{len(plan)}: {run.label}")
        result = job.execute_in_process(
            instance=instance, asset_selection=selection_for(graph, run.assets), tags=range_tags(run), raise_on_error=False
        )
        if not result.success:
            announce(f"refresh run {result.run_id} failed; see the errors above. Nothing after it ran.")
            return False, plan
    return True, plan


def range_tags(run: RefreshRun) -> dict[str, str]:
    return {RANGE_START_TAG: run.start.isoformat(), RANGE_END_TAG: run.end.isoformat(), REFRESH_TAG: run.label}


def describe(report: Mapping[str, Stale], limit: int = 4) -> list[str]:
    """One line per stale asset: its stale stretches and the cause of the first."""
    calendar = session_calendar().sessions
    lines = []
    for asset in CHECKED:
        stale = report.get(asset)
        if stale is None:
            continue
        ranges = contiguous_ranges(stale.sessions, calendar)
        shown = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in ranges[:limit])
        more = f" and {len(ranges) - limit} more stretch(es)" if len(ranges) > limit else ""
        lines.append(f"{asset}: {len(stale.sessions)} stale session(s) {shown}{more}; first because {stale.cause.describe()}")
    return lines


# ------------------------------------------------------------------------------------------------ the UI

def check_name(asset: str) -> str:
    return f"{asset.split('/')[-1]}__up_to_date"


def _evaluation(asset: str, stale: Stale | None) -> dg.AssetCheckEvaluation:
    key = dg.AssetKey(asset.split("/"))
    if stale is None:
        return dg.AssetCheckEvaluation(
            asset_key=key, check_name=check_name(asset), passed=True, severity=dg.AssetCheckSeverity.WARN,
            description="no input changed since these partitions were computed",
        )
    ranges = contiguous_ranges(stale.sessions, session_calendar().sessions)
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=check_name(asset),
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=describe({asset: stale})[0] + ". Refresh: `trading-dagster refresh`, or turn on refresh_stale_sensor",
        metadata={
            "stale_sessions": len(stale.sessions),
            "first_stale_session": str(stale.sessions[0]),
            "last_stale_session": str(stale.sessions[-1]),
            "stretches": ", ".join(f"{a}..{b}" for a, b in ranges[:20]),
            "cause": stale.cause.describe(),
        },
    )


def _up_to_date_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(asset.split("/")),
        name=check_name(asset),
        description="No input of these partitions changed since they were computed (a revised raw bar makes "
        "everything computed from it stale; decision 0004). Reported by stale_partitions_sensor.",
        blocking=False,
    )
    def _check(quality_gate: QualityGateResource) -> dg.AssetCheckResult:
        stale = stale_report(quality_gate.get()).get(asset)
        e = _evaluation(asset, stale)
        return dg.AssetCheckResult(passed=e.passed, severity=e.severity, description=e.description, metadata=e.metadata)

    return _check


UP_TO_DATE_CHECKS = [_up_to_date_check(asset) for asset in CHECKED]


def _fingerprint(report: Mapping[str, Stale]) -> str:
    text = json.dumps({a: [str(s.sessions[0]), str(s.sessions[-1]), len(s.sessions)] for a, s in report.items()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dg.sensor(
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports the `__up_to_date` check of every downstream asset whenever what is stale changes "
    "(a revised raw session makes everything computed from it stale).",
)
def stale_partitions_sensor(context: dg.SensorEvaluationContext, quality_gate: QualityGateResource):
    report = stale_report(quality_gate.get())
    fingerprint = _fingerprint(report)
    if context.cursor == fingerprint:
        return dg.SkipReason("nothing changed since the last report")
    events = [_evaluation(asset, report.get(asset)) for asset in CHECKED]
    for line in describe(report):
        context.log.warning(line)
    return dg.SensorResult(asset_events=events, cursor=fingerprint)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    job_name="pipeline_job",
    description="Re-runs exactly the stale partitions, upstream first, one run at a time. Turn it on to refresh "
    "after a revision; left on, every later revision is refreshed by itself.",
)
def refresh_stale_sensor(context: dg.SensorEvaluationContext, quality_gate: QualityGateResource):
    active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    busy = context.instance.get_run_records(dg.RunsFilter(statuses=active), limit=50)
    if any(REFRESH_TAG in r.dagster_run.tags for r in busy):
        return dg.SkipReason("a refresh run is in progress; the next stage waits for it")
    report = stale_report(quality_gate.get())
    plan = refresh_plan(report)
    if not plan:
        return dg.SkipReason("nothing is stale")
    run = plan[0]  # upstream first: the next tick sees what this run refreshed
    return dg.RunRequest(
        run_key=f"refresh-{run.label}-{_fingerprint(report)}",
        asset_selection=selection_for(context.repository_def.asset_graph, run.assets),
        tags=range_tags(run),
    )
