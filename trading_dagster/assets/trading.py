"""trading/orders, trading/executions, pnl/positions, pnl/equity, pnl/performance.

The portfolio is path dependent, so its state lives where it lives in real trading: in the broker. Orders
for window [a, b] start from the broker's account at a's open and project the paper fills of their own
orders inside the window with the broker's own fill model; executions submit them (idempotent by client
order id); P&L replays the window's fills from the broker's account before a. See docs/design.md.
"""


import datetime as dt

import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    Progress,
    blocking,
    frame_metadata,
    gate_pending,
    gated_check_results,
    gx_suite,
    partitioned,
    preview,
    tables,
)
from trading_dagster.assets.indicators import SIGNALS
from trading_dagster.assets.prices import CLEANED
from trading_dagster.checks import gx_suites, rules
from trading_dagster.domain.execution import opens_by_session
from trading_dagster.domain.metrics import monthly_returns, performance_summary
from trading_dagster.domain.orders import orders_from_frame
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import plan_orders
from trading_dagster.partitions import lookback_mapping, session_calendar, window_sessions
from trading_dagster.reporting import equity_plot_markdown
from trading_dagster.resources.configured import BrokerResource, QualityGateResource, TradingConfigResource

ORDERS = ["trading", "orders"]
EXECUTIONS = ["trading", "executions"]
POSITIONS = ["pnl", "positions"]
EQUITY = ["pnl", "equity"]
PERFORMANCE = ["pnl", "performance"]
MARK_LOOKBACK = 63  # sessions of closes before a P&L window (a quarter)


@dg.asset(
    key=ORDERS,
    group_name="trading",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="Risk-checked orders from session D's signals, to fill at D+1's open. Denied orders are kept "
    "with a reason code; client order ids are deterministic.",
    ins={
        "signals": dg.AssetIn(key=SIGNALS),
        "cleaned_prices": dg.AssetIn(key=CLEANED, metadata={"columns": ["symbol", "session", "open", "close"]}),
    },
    check_specs=[
        blocking(ORDERS, "orders__within_limits", "0 < qty <= requested and <= quota, unique client order id"),
        gx_suite(ORDERS, "orders"),
    ],
    **partitioned(),
)
def orders(
    context: dg.AssetExecutionContext,
    signals: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    broker: BrokerResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
):
    sessions = window_sessions(context)
    cal = session_calendar()
    opens = opens_by_session(cleaned_prices)
    with broker.get() as b:
        b.sync(sessions[0], opens.get(sessions[0], {}))  # fills what an earlier run left pending at a's open
        start_state = b.account(sessions[0])
        account_id = b.account_id
    risk = trading_config.risk_config()
    out = plan_orders(
        signals,
        cleaned_prices,
        start_state,
        cal.sessions,
        risk,
        broker.slippage_model(),
        broker.commission_model(),
        account_id,
    )
    n_ok = out.filter(pl.col("status") == "approved").height if out.height else 0
    context.log.info(f"orders: {n_ok:,} approved, {out.height - n_ok:,} denied (kept with a reason code)")
    counts = out.group_by("status", "reason_code").len().sort("len", descending=True) if out.height else out
    outcome = rules.orders_within_limits(out, risk.monthly_share_limit)
    gate_pending(context, quality_gate, ORDERS, sessions)
    yield dg.Output(
        out,
        metadata={
            **frame_metadata(out, sessions),
            "approved": n_ok,
            "denied": out.height - n_ok,
            **tables(context, sessions, by_status_and_reason=(counts, 20)),
            "start_cash": float(start_state.cash),
        },
    )
    suite = gx_suites.validate("orders", out, sessions=sessions, strategies=trading_config.strategy_specs())
    yield from gated_check_results(
        context, quality_gate, ORDERS, sessions, {"orders__within_limits": outcome, "orders__gx_suite": suite}
    )


@dg.asset(
    key=EXECUTIONS,
    group_name="trading",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="Broker events by session: orders accepted on D, filled (or expired) at D+1's open. The built-in "
    "paper broker fills with slippage and commission.",
    # only what the broker needs: approved orders (not the ~35x more denials) and the opens
    ins={
        "orders": dg.AssetIn(key=ORDERS, metadata={"where": "status = 'approved'"}),
        "cleaned_prices": dg.AssetIn(key=CLEANED, metadata={"columns": ["symbol", "session", "open"]}),
    },
    check_specs=[
        blocking(EXECUTIONS, "executions__match_orders", "every accepted order is an approved order"),
        blocking(EXECUTIONS, "executions__monthly_quota", "shares bought per stock and month within the quota"),
    ],
    **partitioned(),
)
def executions(
    context: dg.AssetExecutionContext,
    orders: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    broker: BrokerResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
):
    sessions = window_sessions(context)
    opens = opens_by_session(cleaned_prices)
    approved = orders.filter(pl.col("status") == "approved") if orders.height else orders  # the input already is
    by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()} if approved.height else {}
    progress = Progress(context.log, "executions", len(sessions))
    with broker.get() as b:
        b.reset_from(sessions[0])
        for i, session in enumerate(sessions, 1):
            b.sync(session, opens.get(session, {}))
            todays = by_session.get(session)
            if todays is not None:
                b.submit(orders_from_frame(todays), session)
            progress.tick(i)
        events = b.events(sessions[0], sessions[-1])
    context.log.info(f"executions: {events.filter(pl.col('event') == 'filled').height if events.height else 0:,} fills")
    counts = events.group_by("event").len().sort("event") if events.height else events
    gate_pending(context, quality_gate, EXECUTIONS, sessions)
    yield dg.Output(
        events, metadata={**frame_metadata(events, sessions), **tables(context, sessions, by_event=(counts, 10))}
    )
    quota = rules.fills_within_monthly_quota(events, trading_config.monthly_share_limit)
    yield from gated_check_results(
        context,
        quality_gate,
        EXECUTIONS,
        sessions,
        {"executions__match_orders": rules.executions_match_orders(events, orders), "executions__monthly_quota": quota},
    )


@dg.multi_asset(
    outs={
        "positions": dg.AssetOut(
            key=POSITIONS, metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="Held positions at each session's close: quantity, average cost, mark, unrealized P&L.",
        ),
        "equity": dg.AssetOut(
            key=EQUITY, metadata=PARTITION_EXPR, kinds={"duckdb", "polars"},
            description="The equity curve: cash, market value, equity, realized and unrealized P&L, daily "
            "return, and the benchmark's close, per session.",
        ),
    },
    # closes before the window mark a held symbol that has no bar on a session (an outage day), the same
    # way in a one-day run and a range run, as long as its last bar is within MARK_LOOKBACK sessions
    ins={
        "executions": dg.AssetIn(key=EXECUTIONS, metadata={"where": "event = 'filled'"}),
        "cleaned_prices": dg.AssetIn(
            key=CLEANED,
            partition_mapping=lookback_mapping(MARK_LOOKBACK),
            metadata={"columns": ["symbol", "session", "close"]},
        ),
    },
    group_name="pnl",
    check_specs=[blocking(EQUITY, "equity__accounting_identity", "equity = cash + market value; cash >= 0")],
    **partitioned(),
)
def pnl(
    context: dg.AssetExecutionContext,
    executions: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    broker: BrokerResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
):
    sessions = window_sessions(context)
    prev = session_calendar().previous_session(sessions[0])
    with broker.get() as b:
        start_state = b.account(prev or sessions[0] - dt.timedelta(days=1))
    fills = executions.filter(pl.col("event") == "filled") if executions.height else executions
    positions, equity = mark_to_market(start_state, fills, cleaned_prices, sessions, trading_config.benchmark)
    last = equity.tail(1).to_dicts()[0] if equity.height else {}
    context.log.info(f"pnl: equity ${last.get('equity', 0.0):,.2f} at {last.get('session')}")
    gate_pending(context, quality_gate, EQUITY, sessions)
    yield dg.Output(positions, "positions", metadata=frame_metadata(positions, sessions))
    yield dg.Output(
        equity,
        "equity",
        metadata={
            **frame_metadata(equity, sessions),
            "final_equity": float(last.get("equity", 0.0)),
            "final_cash": float(last.get("cash", 0.0)),
        },
    )
    identity = rules.equity_identity(equity)
    yield from gated_check_results(context, quality_gate, EQUITY, sessions, {"equity__accounting_identity": identity})


@dg.asset(
    key=PERFORMANCE,
    group_name="pnl",
    kinds={"duckdb", "polars"},
    description="Whole-history performance: cumulative and annualized return, Sharpe, max drawdown, against "
    "buy-and-hold of the benchmark over the same sessions; monthly returns and the equity-curve plot.",
    ins={"equity": dg.AssetIn(key=EQUITY)},
)
def performance(context: dg.AssetExecutionContext, equity: pl.DataFrame, trading_config: TradingConfigResource):
    equity = equity.sort("session")
    summary = performance_summary(equity)
    months = monthly_returns(equity)
    out = pl.DataFrame([{k: (str(v) if isinstance(v, dt.date) else v) for k, v in summary.items()}])
    return dg.Output(
        out,
        metadata={
            **{k: (float(v) if isinstance(v, int | float) else str(v)) for k, v in summary.items()},
            "equity_curve": dg.MetadataValue.md(equity_plot_markdown(equity, trading_config.benchmark)),
            "monthly_returns": preview(months.tail(24), 24),
        },
    )
