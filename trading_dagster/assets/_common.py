"""Shared pieces of the asset layer: the session partitions, the single-run policy, check results."""


import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from trading_dagster.checks.rules import CheckOutcome
from trading_dagster.partitions import sessions_partitions_def
from trading_dagster.resources.configured import QualityGateResource

SINGLE_RUN = dg.BackfillPolicy.single_run()
PARTITION_EXPR = {"partition_expr": "session"}


def partitioned(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments every session-partitioned asset shares."""
    return {"partitions_def": sessions_partitions_def(), "backfill_policy": SINGLE_RUN, **kwargs}


def is_warning(outcome: CheckOutcome) -> bool:
    """A GX suite whose only failures are 'warning' expectations (e.g. raw rows that cleaning quarantines)."""
    return not outcome.passed and outcome.metadata.get("severity") == "warning"


def check_result(asset_key: list[str], name: str, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(asset_key),
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if is_warning(outcome) else dg.AssetCheckSeverity.ERROR,
        description=outcome.description,
        metadata={k: v if isinstance(v, int | float) else str(v) for k, v in outcome.metadata.items()},
    )


def gated_check_results(
    context: dg.AssetExecutionContext,
    gate: QualityGateResource,
    asset_key: list[str],
    sessions: list[dt.date],
    outcomes: dict[str, CheckOutcome],
) -> list[dg.AssetCheckResult]:
    """Record the checks' verdicts per session in the quality gate (so no later run reads a failed
    partition either: resources/quality_gate.py), then the check results for Dagster. A warning (see
    `is_warning`) is reported but does not close the gate, as it does not block the run."""
    gate.get().record(
        "/".join(asset_key),
        sessions,
        {name: (o.passed or is_warning(o), o.failed_sessions, o.description) for name, o in outcomes.items()},
        context.run_id,
    )
    return [check_result(asset_key, name, outcome) for name, outcome in outcomes.items()]


def blocking_failure(
    context: dg.AssetExecutionContext, asset_key: list[str], outcomes: dict[str, CheckOutcome]
) -> dg.Failure | None:
    """A Failure naming each selected blocking check that failed and why (its description, its sessions), or
    None: raised by the asset after its check results, so the run's error says the cause itself instead of
    Dagster's "1 blocking asset check failed" with the cause only in a check event."""
    selected = context.selected_asset_check_keys
    key = dg.AssetKey(asset_key)
    failed = [
        (name, o)
        for name, o in outcomes.items()
        if not o.passed and not is_warning(o) and dg.AssetCheckKey(key, name) in selected
    ]
    if not failed:
        return None
    lines = []
    for name, outcome in failed:
        sessions = ", ".join(str(d) for d in outcome.failed_sessions[:5])
        more = " ..." if len(outcome.failed_sessions) > 5 else ""
        lines.append(f"{name}: {outcome.description}" + (f" (sessions {sessions}{more})" if sessions else ""))
    return dg.Failure(
        description=f"{key.to_user_string()}: blocking check failed, nothing downstream runs on these sessions: "
        + "; ".join(lines),
        allow_retries=False,
    )


def gated_checks(
    context: dg.AssetExecutionContext,
    gate: QualityGateResource,
    asset_key: list[str],
    sessions: list[dt.date],
    outcomes: dict[str, CheckOutcome],
):
    """`gated_check_results`, yielded, then the `blocking_failure` raised when a blocking check failed."""
    yield from gated_check_results(context, gate, asset_key, sessions, outcomes)
    failure = blocking_failure(context, asset_key, outcomes)
    if failure is not None:
        raise failure


def gate_pending(
    context: dg.AssetExecutionContext, gate: QualityGateResource, asset_key: list[str], sessions: list[dt.date]
) -> None:
    """Call before a gated asset writes: its sessions are refused by every reader until
    `gated_check_results` records its checks (resources/quality_gate.py, `mark_pending`)."""
    gate.get().mark_pending("/".join(asset_key), sessions, context.run_id)


def blocking(asset_key: list[str], name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=dg.AssetKey(asset_key), blocking=True, description=description)


def gx_suite(asset_key: list[str], stage: str) -> dg.AssetCheckSpec:
    """The stage's Great Expectations 1.x suite (checks/gx_suites.py): schema, types, nulls, ranges, sets,
    uniqueness, sessions in the window. Blocking at ERROR severity."""
    name = f"{asset_key[-1]}__gx_suite"
    return blocking(asset_key, name, f"Great Expectations suite '{stage}' (schema, types, nulls, ranges, keys)")


def frame_metadata(df: pl.DataFrame, sessions: list[dt.date]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/row_count": df.height,
        "sessions": len(sessions),
        "first_session": str(sessions[0]),
        "last_session": str(sessions[-1]),
    }
    if "symbol" in df.columns:
        meta["symbols"] = df["symbol"].n_unique()
    return meta


def markdown_table(df: pl.DataFrame, rows: int = 10) -> str:
    if df.is_empty():
        return "(no rows)"
    head = df.head(rows)
    fmt = lambda v: f"{v:,.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)


TABLES_MAX_SESSIONS = 5


def tables(context: Any, sessions: list[dt.date], **frames: tuple[pl.DataFrame, int]) -> dict[str, Any]:
    """Markdown tables {name: (frame, rows)} as metadata of a short window's materializations; a longer
    range run writes them once to its log instead. Dagster gives every partition of a range run its own
    copy of the output metadata, and those copies are serialized one by one: on a ten-year backfill
    (2,485 partitions x 10 assets) table previews made Dagster's bookkeeping about twice as slow
    (benchmarks/README.md). They describe the whole window anyway, not the partition they would sit on."""
    if len(sessions) <= TABLES_MAX_SESSIONS:
        return {name: preview(frame, rows) for name, (frame, rows) in frames.items()}
    for name, (frame, rows) in frames.items():
        context.log.info(f"{name} ({sessions[0]}..{sessions[-1]}):\n{markdown_table(frame, rows)}")
    return {}


def preview(df: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(df, rows))


class Progress:
    """Logs `label: i/n (p%)` about every tenth of the way, so a ten-year run shows it is moving."""

    def __init__(self, log: Any, label: str, total: int, steps: int = 10) -> None:
        self.log, self.label, self.total = log, label, max(total, 1)
        self.every = max(self.total // steps, 1)

    def tick(self, i: int, extra: str = "") -> None:
        if i == self.total or i % self.every == 0:
            self.log.info(f"{self.label}: {i}/{self.total} ({100 * i // self.total}%) {extra}".rstrip())


def money(x: float | None) -> str:
    """Dollars as a person reads them: `$1,234,567.89`, `-$12.30`, `n/a`."""
    if x is None or x != x:
        return "n/a"
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def percent(x: float | None, signed: bool = True) -> str:
    """A fraction as a percent with two decimals: 0.2348 -> `+23.48%`; None -> `n/a`."""
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:+.2f}%" if signed else f"{100 * x:.2f}%"


TABLE_MAX_ROWS = 200
_TABLE_TYPES = {pl.Int64: "int", pl.Int32: "int", pl.Float64: "float", pl.Boolean: "bool"}


def table_preview(df: pl.DataFrame, columns: dict[str, str], rows: int = TABLE_MAX_ROWS) -> dg.MetadataValue:
    """`MetadataValue.table` of `df`'s first `rows` rows, columns {frame column: heading} in that order:
    what the UI shows as a sortable table on the materialization (a session's orders, its fills)."""
    present = {c: h for c, h in columns.items() if c in df.columns}
    head = df.select(list(present)).head(rows)
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name=h, type=_TABLE_TYPES.get(type(head.schema[c]), "string"))
            for c, h in present.items()
        ]
    )

    def cell(v: Any) -> Any:
        if v is None or isinstance(v, int | float | bool | str):
            return v
        return str(v)

    records = [
        dg.TableRecord({h: cell(v) for h, v in zip(present.values(), row, strict=True)})
        for row in head.iter_rows()
    ]
    return dg.MetadataValue.table(records=records, schema=schema)
