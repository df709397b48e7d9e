"""The portal: the pages a trader opens in the Dagster UI (issue 10, "The UI as the admin portal").

Each asset of the group `portal` is a page, its metadata the content (tables and markdown), rebuilt by
`portal_job` after every successful `marts_job` (`portal_after_marts_sensor`) and at the end of `trading-dagster
demo`:

* `portal/upcoming_orders`: the latest session's signals and the orders that go out at the next open.
* `portal/strategy_equity`: each strategy's cumulative P&L over time (the dbt mart `fct_daily_pnl`: a lot's
  P&L belongs to the strategy that opened it), as a plot and a table.
* `portal/strategy_config`: each strategy's kind, params, approval and cadence, and the risk, costs and
  execution settings in force, as the runs see them (the `trading_config` and `backtest_book` resources).
* `portal/emergency_controls`: the kill switch's state and how to square off (`flatten_job`, `kill_switch_job`,
  their CLI twins), with links to their launchpads.
* `portal/tearsheet`: quantstats' full tear sheet of the whole equity curve against the benchmark, an HTML file
  next to the data, linked.

The assets are thin: they read the warehouse (DuckDB, read-only) or the resources and hand the rows to the
plain functions of `reporting.py`. They write nothing but their metadata (each returns a MaterializeResult).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from trading_dagster.assets.dbt import marts_job
from trading_dagster.automation.control import KILL_SWITCH_KEY
from trading_dagster.partitions import partitions_range_text, session_calendar
from trading_dagster.reporting import (
    UPCOMING_COLUMNS,
    settings_rows,
    strategy_equity_markdown,
    strategy_rows,
    strategy_summary,
    upcoming_orders,
)
from trading_dagster.resources.configured import BacktestBookResource, TradingConfigResource
from trading_dagster.resources.ledger import TradingLedgerResource
from trading_dagster.resources.promotions import PromotionJournalResource
from trading_dagster.resources.writer_lock import WRITER_TAG

PORTAL_GROUP = "portal"
UPCOMING = dg.AssetKey([PORTAL_GROUP, "upcoming_orders"])
STRATEGY_EQUITY = dg.AssetKey([PORTAL_GROUP, "strategy_equity"])
STRATEGY_CONFIG = dg.AssetKey([PORTAL_GROUP, "strategy_config"])
EMERGENCY = dg.AssetKey([PORTAL_GROUP, "emergency_controls"])
TEARSHEET = dg.AssetKey([PORTAL_GROUP, "tearsheet"])
# the code location's name in the UI (workspace.yaml): the launchpad links of the emergency page
LOCATION = "trading_dagster"

RISK_KEYS = (
    "sizing", "notional", "pct_equity", "risk_pct_equity", "atr_multiple", "atr_period",
    "max_position_pct_equity", "max_gross_exposure_pct_equity", "max_orders_per_session",
    "max_notional_per_session", "max_daily_loss_pct_equity", "max_daily_loss_usd", "long_only",
    "add_to_positions", "monthly_share_limit", "min_price", "stop_loss_pct", "stop_loss_atr", "take_profit_pct",
    "take_profit_atr",
)
ACCOUNT_KEYS = ("account", "benchmark", "initial_cash", "min_median_dollar_volume", "liquidity_window")
EXECUTION_KEYS = (
    "order_type", "limit_offset_bps", "time_in_force", "approval_deadline", "submit_cutoff_minutes",
    "weekly_scan_day", "pnl_alert_below_usd",
)
COSTS_KEYS = (
    "slippage_bps", "slippage_spread_fraction", "commission_per_share", "commission_per_order", "commission_bps", "commission_minimum",
    "commission_maximum_pct",
)


class WarehouseReader(dg.ConfigurableResource):
    """Read-only SQL on the warehouse's DuckDB file, for the portal's pages."""

    database: str = Field(description="the warehouse's DuckDB file")

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        import duckdb

        con = duckdb.connect(self.database, read_only=True)
        try:
            return con.execute(sql, params or []).pl()
        finally:
            con.close()

    def has_table(self, schema: str, table: str) -> bool:
        found = self.query(
            "select count(*) as n from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        )
        return bool(found["n"][0])


def _table(frame: pl.DataFrame, columns: list[str]) -> dg.MetadataValue:
    """A frame as a UI table with a schema (numbers stay numbers: the UI sorts them)."""
    kinds = {pl.Int64: "int", pl.Float64: "float"}
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, kinds.get(frame.schema[c], "string")) for c in columns]  # type: ignore[arg-type]
    )
    rows = [dg.TableRecord(dict(zip(columns, row, strict=True))) for row in frame.select(columns).iter_rows()]
    return dg.MetadataValue.table(rows, schema=schema)


def _rows_table(headers: list[str], rows: list[tuple]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(h, "string") for h in headers])
    return dg.MetadataValue.table([dg.TableRecord(dict(zip(headers, r, strict=True))) for r in rows], schema=schema)


@dg.asset(
    key=UPCOMING,
    group_name=PORTAL_GROUP,
    kinds={"duckdb"},
    deps=[dg.AssetKey(["signals", "signals"]), dg.AssetKey(["trading", "orders"])],
    description="Upcoming signals and orders: the latest session's signals and what became of each, the orders "
    "that go out at the next session's open (symbol, side, qty, price, strategy, status, reason) first, then "
    "the denied ones with their reason codes.",
)
def upcoming_orders_page(warehouse: WarehouseReader) -> dg.MaterializeResult:
    # the latest session the pipeline ran (its P&L is there), whether or not a signal fired on it
    if not all(warehouse.has_table(*t) for t in (("pnl", "equity"), ("signals", "signals"), ("trading", "orders"))):
        return dg.MaterializeResult(metadata={"session": "none", "note": "no pipeline run yet: run pipeline_job"})
    latest = warehouse.query("select max(session) as d from pnl.equity")["d"][0]
    if latest is None:
        return dg.MaterializeResult(metadata={"session": "none", "note": "no pipeline run yet: run pipeline_job"})
    signals = warehouse.query("select * from signals.signals where session = ?", [latest])
    orders = warehouse.query("select * from trading.orders where session = ?", [latest])
    table = upcoming_orders(signals, orders)
    next_open = session_calendar().offset(latest, 1) if session_calendar().is_session(latest) else None
    approved = table.filter(pl.col("status").str.starts_with("approved"))
    return dg.MaterializeResult(
        metadata={
            "session": str(latest),
            "next_open": str(next_open) if next_open else "beyond the calendar",
            "summary": dg.MetadataValue.md(
                f"Signals of **{latest}**; approved orders go out at the open of **{next_open}**: "
                f"{approved.height} order(s) ({', '.join(f'{r[1]} {r[2]} {r[0]}' for r in approved.iter_rows()) or 'none'}), "
                f"{table.height - approved.height} signal(s) with no order going out (denied, or none made)."
            ),
            "upcoming_orders": _table(table, UPCOMING_COLUMNS),
            "orders_going_out": dg.MetadataValue.int(approved.height),
            "signals": dg.MetadataValue.int(signals.height),
        }
    )


@dg.asset(
    key=STRATEGY_EQUITY,
    group_name=PORTAL_GROUP,
    kinds={"duckdb"},
    deps=[dg.AssetKey(["marts", "fct_daily_pnl"])],
    description="Per-strategy equity: each strategy's cumulative P&L over time (a lot's P&L belongs to the "
    "strategy that opened it; marts/fct_daily_pnl), the portfolio's total dashed, and a table of each "
    "strategy's total, realized and unrealized P&L, best and worst day and fills.",
)
def strategy_equity_page(warehouse: WarehouseReader) -> dg.MaterializeResult:
    if not warehouse.has_table("marts", "fct_daily_pnl"):
        return dg.MaterializeResult(metadata={"note": "no marts.fct_daily_pnl yet: run marts_job"})
    daily = warehouse.query(
        "select session, strategy, cast(pnl as double) as pnl, cast(realized_pnl as double) as realized_pnl, "
        "cast(fills as bigint) as fills from marts.fct_daily_pnl order by session, strategy"
    )
    summary = strategy_summary(daily)
    metadata: dict[str, Any] = {
        "plot": dg.MetadataValue.md(strategy_equity_markdown(daily)),
        "by_strategy": _table(summary, summary.columns),
    }
    if daily.height:
        metadata["sessions"] = f"{daily['session'].min()} .. {daily['session'].max()}"
    for strategy, pnl in summary.select("strategy", "pnl").iter_rows():
        metadata[f"pnl_{strategy}"] = dg.MetadataValue.float(round(float(pnl), 2))
    return dg.MaterializeResult(metadata=metadata)


def config_pages(trading_config: TradingConfigResource, costs: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    values = {k: getattr(trading_config, k) for k in (*RISK_KEYS, *ACCOUNT_KEYS, *EXECUTION_KEYS)}
    strategies = [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in trading_config.strategies]
    return {
        "strategies": _rows_table(
            ["strategy", "kind", "params", "approval", "cadence"], strategy_rows(strategies)
        ),
        "risk": _rows_table(["setting", "value"], settings_rows(values, RISK_KEYS)),
        "costs": _rows_table(["setting", "value"], settings_rows(costs, COSTS_KEYS)),
        "execution": _rows_table(["setting", "value"], settings_rows(values, EXECUTION_KEYS)),
        "account_and_universe": _rows_table(["setting", "value"], settings_rows(values, ACCOUNT_KEYS)),
    }


@dg.asset(
    key=STRATEGY_CONFIG,
    group_name=PORTAL_GROUP,
    description="Strategy configuration in force: each strategy's kind, params, approval (auto or manual) and "
    "cadence (daily or weekly), and the risk, costs, execution and account settings, as the runs see them "
    "(trading_dagster.toml, or TRADING_DAGSTER_CONFIG, with launchpad edits for a run; promote_job's promotions "
    "laid over it, listed with who made them and whether they are in force). The partition range too.",
)
def strategy_config_page(
    trading_config: TradingConfigResource, backtest_book: BacktestBookResource, promotions: PromotionJournalResource
) -> dg.MaterializeResult:
    costs = {k: getattr(backtest_book.costs, k) for k in COSTS_KEYS}
    promoted = promotions.status()
    columns = ["strategy", "params", "promoted_by", "promoted_at", "source", "status"]
    return dg.MaterializeResult(
        metadata={
            **config_pages(trading_config, costs),
            # research/promotions' history in one table: which params came from a sweep, and which are in force
            "promotions": _rows_table(columns, [[r[c] for c in columns] for r in promoted]),
            "promotions_in_force": dg.MetadataValue.int(sum(r["status"] == "in force" for r in promoted)),
            "strategies_configured": dg.MetadataValue.int(len(trading_config.strategies)),
            "partitions": partitions_range_text(),
        }
    )


def emergency_markdown(state_text: str, engaged: bool) -> str:
    play = f"/locations/{LOCATION}/jobs"
    return f"""**Kill switch now: {"ENGAGED (no new buys are sent)" if engaged else "released"}.** {state_text}.

**Emergency square-off** ([flatten_job]({play}/flatten_job/playground)): engages the kill switch, cancels every
open order, closes every position at the broker and waits until the account is flat; the run fails listing
whatever is not flat. Launch it with `actor` (your name) and `reason`. Same as `trading-dagster flatten --yes`.

**Kill switch** ([kill_switch_job]({play}/kill_switch_job/playground)): `engaged: true` stops every new buy
(sells still go out); `engaged: false` releases it (`[execution] kill_switch = true` in the config keeps it
engaged). Same as `trading-dagster kill-switch on|off|status`. Every change is a materialization of
`execution/kill_switch` and an audit event.

**Approvals** ([approve_orders_job]({play}/approve_orders_job/playground)): orders of strategies with
`approval = "manual"` wait for a person until `[execution] approval_deadline`.

None of these jobs waits behind a running backfill. Each acts on the broker account (the built-in paper broker
in `dev`, Alpaca otherwise), never on the backtest book."""


@dg.asset(
    key=EMERGENCY,
    group_name=PORTAL_GROUP,
    deps=[KILL_SWITCH_KEY],
    description="Emergency controls: the kill switch's state, and how to square off the broker account "
    "(flatten_job: kill switch, cancel all, close all, wait until flat) or stop new buys (kill_switch_job), "
    "with links to their launchpads and the CLI commands that do the same.",
)
def emergency_controls_page(ledger: TradingLedgerResource) -> dg.MaterializeResult:
    state = ledger.get().kill_switch()
    return dg.MaterializeResult(
        metadata={
            "kill_switch_engaged": dg.MetadataValue.bool(state.engaged),
            "how_to": dg.MetadataValue.md(emergency_markdown(state.describe(), state.engaged)),
            "flatten_job": dg.MetadataValue.url(f"/locations/{LOCATION}/jobs/flatten_job/playground"),
            "kill_switch_job": dg.MetadataValue.url(f"/locations/{LOCATION}/jobs/kill_switch_job/playground"),
        }
    )


@dg.asset(
    key=TEARSHEET,
    group_name=PORTAL_GROUP,
    kinds={"duckdb", "html"},
    deps=[dg.AssetKey(["pnl", "equity"])],
    description="The full tear sheet (quantstats): the backtest's whole equity curve against the benchmark as "
    "metrics (Sharpe, Sortino, Calmar, drawdowns, VaR, win rates, ...), cumulative and log returns, the worst "
    "drawdown periods, a monthly returns heatmap, rolling volatility, Sharpe and beta, and the return "
    "distribution; one HTML file next to the data (reports/quantstats.html), linked here.",
)
def tearsheet_page(
    warehouse: WarehouseReader, trading_config: TradingConfigResource, backtest_book: BacktestBookResource
) -> dg.MaterializeResult:
    from pathlib import Path

    from trading_dagster.tearsheet import write_quantstats_report

    if not warehouse.has_table("pnl", "equity"):
        return dg.MaterializeResult(metadata={"note": "no pnl.equity yet: run pipeline_job"})
    equity = warehouse.query("select * from pnl.equity order by session")
    if equity.height == 0:
        return dg.MaterializeResult(metadata={"note": "no pnl.equity yet: run pipeline_job"})
    first, last = equity["session"][0], equity["session"][-1]
    path = Path(backtest_book.ledger_path).resolve().parent / "reports" / "quantstats.html"
    title = f"trading-dagster backtest {first} .. {last}"
    try:
        sheet = write_quantstats_report(equity, trading_config.benchmark, path, title)
    except ValueError as exc:  # too short or flat a history (ours, named); the page says so
        return dg.MaterializeResult(metadata={"note": str(exc), "sessions": f"{first} .. {last} ({equity.height})"})
    return dg.MaterializeResult(
        metadata={
            "sessions": f"{first} .. {last} ({equity.height})",
            "tearsheet": dg.MetadataValue.path(str(sheet)),
            "tearsheet_url": dg.MetadataValue.url(sheet.as_uri()),
        }
    )


PORTAL_ASSETS = [
    upcoming_orders_page, strategy_equity_page, strategy_config_page, emergency_controls_page, tearsheet_page
]

portal_job = dg.define_asset_job(
    "portal_job",
    selection=dg.AssetSelection.groups(PORTAL_GROUP),
    description="Rebuild the portal's pages (upcoming orders, per-strategy equity, configuration, tear sheet, emergency "
    "controls) from the warehouse and the configuration.",
    # it only reads, but DuckDB lets no process read a file another process is writing: queued behind writers
    tags={WRITER_TAG: "portal"},
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[marts_job],
    request_job=portal_job,
)
def portal_after_marts_sensor(context: dg.RunStatusSensorContext):
    """Rebuild the portal's pages after every successful marts_job (itself after every pipeline run)."""
    return dg.RunRequest(run_key=f"portal-after-{context.dagster_run.run_id}")

