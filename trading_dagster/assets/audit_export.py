"""execution/audit_log: the trading ledger's audit events (SQLite, `resources/ledger.py`) copied into the
warehouse as a typed table, so the dbt marts can read the trading book's journal.

DuckDB reads SQLite only through its `sqlite` extension, which is not bundled and `INSTALL sqlite` needs the
network; Python's `sqlite3` reads the ledger instead. The copy is the whole ledger each time (idempotent: the
warehouse IO manager replaces the table; the ledger is append-only, so a later copy holds an earlier one),
and an empty ledger still creates the typed table, so the marts build on a deployment that never traded.
It runs in `marts_job`, before the dbt models that read it (`source('execution', 'audit_log')`).

Besides the ledger's columns the table has what the journal reads from each event's JSON `details`: the
strategy, the broker's order id and status, a submission's outcome, a kill-switch change's new state.
"""

import json

import dagster as dg
import polars as pl

from trading_dagster.checks.rules import CheckOutcome
from trading_dagster.domain.audit import EVENT_KINDS, KILL_SWITCH_ON
from trading_dagster.resources.ledger import AUDIT_SCHEMA, TradingLedgerResource

AUDIT_LOG = ["execution", "audit_log"]
AUDIT_LOG_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    **{c: t for c, t in AUDIT_SCHEMA.items() if c != "details"},
    "strategy": pl.String(),
    "broker_order_id": pl.String(),
    "order_status": pl.String(),
    "outcome": pl.String(),
    "engaged": pl.Boolean(),
    "details": pl.String(),  # JSON, as the ledger holds it
}
_NEEDS_REF = ("fill", "cancel")


def _detail(details: str | None) -> dict:
    try:
        value = json.loads(details) if details else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def audit_table(export: pl.DataFrame) -> pl.DataFrame:
    """`TradingLedger.export()` as the warehouse table (`AUDIT_LOG_SCHEMA`): the details' strategy, broker
    order id (a submission's `broker_order_id`, a fill's `order_id`, a cancel's `ref`), order status, a
    submission's outcome and a kill-switch event's new state as columns."""
    details = [_detail(d) for d in export["details"].to_list()]
    kinds = export["kind"].to_list()
    refs = export["ref"].to_list()
    extra = {
        "strategy": [d.get("strategy") for d in details],
        "broker_order_id": [
            d.get("broker_order_id") or d.get("order_id") or (ref if kind == "cancel" else None)
            for d, kind, ref in zip(details, kinds, refs, strict=True)
        ],
        "order_status": [None if d.get("status") is None else str(d["status"]) for d in details],
        "outcome": [d.get("outcome") for d in details],
        "engaged": [
            (code == KILL_SWITCH_ON) if kind == "kill_switch" else None
            for kind, code in zip(kinds, export["reason_code"].to_list(), strict=True)
        ],
    }
    return export.with_columns(
        [pl.Series(name, values, dtype=AUDIT_LOG_SCHEMA[name]) for name, values in extra.items()]
    ).select([pl.col(c).cast(t) for c, t in AUDIT_LOG_SCHEMA.items()])


def copy_is_complete(table: pl.DataFrame, ledger_rows: int) -> CheckOutcome:
    """The copy holds each of the ledger's events once (ids unique, as many rows as the ledger had up to the
    copy's last sequence number), of known kinds, a fill or cancel with its broker id."""
    problems = []
    if table["event_id"].n_unique() != table.height:
        problems.append(f"{table.height - table['event_id'].n_unique()} duplicate event ids")
    if table.height != ledger_rows:
        problems.append(f"{table.height} rows copied, the ledger has {ledger_rows}")
    unknown = sorted(set(table["kind"].to_list()) - set(EVENT_KINDS))
    if unknown:
        problems.append(f"unknown kinds {unknown}")
    no_ref = table.filter(pl.col("kind").is_in(_NEEDS_REF) & pl.col("ref").is_null()).height
    if no_ref:
        problems.append(f"{no_ref} fills or cancels without the broker's id")
    return CheckOutcome(
        not problems,
        f"{table.height} audit events copied, each once" if not problems else "; ".join(problems),
        {"rows": table.height, "ledger_rows": ledger_rows},
    )


@dg.asset(
    key=AUDIT_LOG,
    group_name="execution",
    kinds={"sqlite", "duckdb", "polars"},
    description="The trading ledger's audit log (SQLite) in the warehouse: every signal, decision, denial, "
    "approval, refusal, expiry, submission, rejection, fill, cancel, kill-switch change and flatten step, "
    "with when it happened and when it was recorded. A whole copy each run (the ledger is append-only); an "
    "empty, typed table before anything traded. Read by the marts' trading journal; built by marts_job.",
    check_specs=[
        dg.AssetCheckSpec(
            "audit_log__matches_ledger",
            asset=dg.AssetKey(AUDIT_LOG),
            blocking=True,
            description="every ledger event copied once (unique ids, the ledger's count), known kinds",
        )
    ],
)
def audit_log(context: dg.AssetExecutionContext, ledger: TradingLedgerResource):
    book = ledger.get()
    table = audit_table(book.export())
    last_seq = int(table["seq"].max()) if table.height else 0  # type: ignore[arg-type]
    outcome = copy_is_complete(table, book.count(up_to_seq=last_seq))
    kinds = table.group_by("kind").len().sort("kind") if table.height else table
    context.log.info(f"execution/audit_log: {table.height} events copied from {book.path}")
    yield dg.Output(
        table,
        metadata={
            "events": table.height,
            "last_seq": last_seq,
            **{f"kind_{k}": int(n) for k, n in (kinds.iter_rows() if table.height else [])},
            "ledger": str(book.path),
        },
    )
    yield dg.AssetCheckResult(
        check_name="audit_log__matches_ledger",
        passed=outcome.passed,
        description=outcome.description,
        metadata=dict(outcome.metadata),
    )
    if not outcome.passed:
        raise dg.Failure(f"execution/audit_log: the copy does not match the ledger: {outcome.description}")
