"""trading/orders, trading/executions, pnl/positions, pnl/equity, pnl/performance.

The backtest (decision 0005, section 1). The portfolio is path dependent, so its state lives in the backtest
book (`BacktestBookResource`, a simulated account nobody trades on). Orders for window [a, b] start from the
book's account at a's open and project the paper fills of their own orders inside the window with the book's
own fill model; executions submit them (idempotent by client order id); P&L replays the window's fills from
the book's account before a. See docs/design.md. The account daily runs trade on is the broker's
(`assets/execution.py`).

Book events (splits from corporate actions and confirmed price breaks, delistings and renames from the
security master: `domain/book_events.py`) are built by each of the three from the same inputs with the same
pure function, and applied before their session's fills by the planner, the broker and mark-to-market alike.

Stop-loss / take-profit exits (`[risk] stop_loss_* / take_profit_*`, `domain/exits.py`): the book works each
session's open and then its exits on the session's bar (`sync(..., bars=)`), orders start from the book after
both, and executions hand the book each approved buy's levels (`exits.exit_levels_for_orders`, the planner's
own levels). Exit fills are `filled` rows with ids `<entry>-sl` / `<entry>-tp`.
"""


import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from trading_dagster.assets._common import (
    PARTITION_EXPR,
    Progress,
    blocking,
    frame_metadata,
    gate_pending,
    gated_checks,
    gx_suite,
    money,
    partitioned,
    percent,
    table_preview,
    tables,
)
from trading_dagster.assets.indicators import SIGNALS
from trading_dagster.assets.prices import CLEANED, PRICE_BREAKS
from trading_dagster.checks import gx_suites, rules
from trading_dagster.domain.book_events import BookEvent, book_events
from trading_dagster.domain.execution import opens_by_session, orders_by_session, spreads_by_session
from trading_dagster.domain.exits import atr_lookback, exit_levels_for_orders
from trading_dagster.domain.metrics import monthly_returns, performance_summary
from trading_dagster.domain.pnl import mark_to_market
from trading_dagster.domain.portfolio import plan_orders
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.partitions import lookback_mapping, session_calendar, window_sessions
from trading_dagster.reporting import performance_plots_markdown
from trading_dagster.resources.alerts import Alert, AlertDeliveryError, AlertsResource
from trading_dagster.resources.configured import (
    BacktestBookResource,
    CorporateActionsResource,
    QualityGateResource,
    TradingConfigResource,
)
from trading_dagster.resources.security_master import SecurityMasterResource

ORDERS = ["trading", "orders"]
EXECUTIONS = ["trading", "executions"]
POSITIONS = ["pnl", "positions"]
EQUITY = ["pnl", "equity"]
PERFORMANCE = ["pnl", "performance"]
MARK_LOOKBACK = 63  # sessions of closes before a trading or P&L window (a quarter)
# the cleaned prices every trading asset reads: the window and MARK_LOOKBACK sessions before it, for the marks
# of a symbol without a bar, the cash-in-lieu price of a split and a delisted security's last close; high and
# low for the exits (worked on each session's bar) and the ATR (ATR sizing and exits), whose
# `exits.atr_lookback(atr_period)` bars up to the window's first session must be inside it
TRADING_PRICES = dg.AssetIn(
    key=CLEANED,
    partition_mapping=lookback_mapping(MARK_LOOKBACK),
    metadata={"columns": ["symbol", "session", "open", "high", "low", "close"]},
)
MAX_ATR_PERIOD_IN_LOOKBACK = max(p for p in range(1, MARK_LOOKBACK + 2) if atr_lookback(p) <= MARK_LOOKBACK + 1)
"""The longest ATR period whose bars fit the window's first session plus MARK_LOOKBACK (15): a longer one
would give a one-day run another ATR than a range run (`require_atr_within_lookback`)."""


def require_atr_within_lookback(risk: RiskConfig) -> None:
    """Refuse an ATR (ATR sizing or an ATR exit) whose period reads more bars than the trading assets get
    before a window (`exits.atr_lookback`): a one-day run and a range run would size and place exits on
    different ATRs. The settings refuse it when they load (`settings.risk_settings`); this guards a config
    edited in the launchpad."""
    if risk.needs_atr and risk.atr_period > MAX_ATR_PERIOD_IN_LOOKBACK:
        raise ValueError(
            f"[risk] atr_period = {risk.atr_period} needs {atr_lookback(risk.atr_period)} bars up to a session, "
            f"the trading assets read {MARK_LOOKBACK + 1} (MARK_LOOKBACK): at most {MAX_ATR_PERIOD_IN_LOOKBACK}"
        )


def bars_by_session(cleaned_prices: pl.DataFrame, sessions: list[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """{session: its (symbol, open, high, low) rows} for the window's sessions: what the book works exits on
    (`session_bars` turns one into the book's mapping when it is synced)."""
    window = cleaned_prices.filter(pl.col("session").is_between(sessions[0], sessions[-1]))
    parts = window.select("session", "symbol", "open", "high", "low").partition_by("session", as_dict=True)
    return {key[0]: part for key, part in parts.items()}


def session_bars(parts: dict[dt.date, pl.DataFrame] | None, session: dt.date) -> dict[str, tuple] | None:
    """{symbol: (open, high, low)} of `session` (None without exits: `parts` is None); built one session at
    a time, since a ten-year window's bars as Python tuples would take gigabytes."""
    if parts is None:
        return None
    part = parts.get(session)
    if part is None:
        return {}
    return {s: (o, h, lo) for s, o, h, lo in part.select("symbol", "open", "high", "low").iter_rows()}


def window_book_events(
    context: dg.AssetExecutionContext,
    sessions: list[dt.date],
    cleaned_prices: pl.DataFrame,
    price_breaks: pl.DataFrame,
    corporate_actions: CorporateActionsResource,
    security_master: SecurityMasterResource,
    trading_config: TradingConfigResource,
) -> list[BookEvent]:
    """The book events of the window and of the MARK_LOOKBACK sessions before it (the marks before the window
    follow those): the same list in orders, executions and pnl for the same window. `price_breaks` is the
    confirmed breaks frame (BREAKS_SCHEMA) over the same sessions; the book follows them only on bars that are
    not split-adjusted (`[data] bars_split_adjusted`): on adjusted bars a break that held at a split ratio is
    a crash or a vendor fault (measured: every one in both shared files), and multiplying held shares on it
    would hide a real loss."""
    cal = session_calendar()
    start = (cal.before(sessions[0], MARK_LOOKBACK) or [sessions[0]])[0]
    actions = corporate_actions.get(start, sessions[-1])
    if not trading_config.book_follows_confirmed_breaks(corporate_actions.source_kind()):
        price_breaks = price_breaks.clear()
    events = book_events(
        actions, price_breaks, security_master.get(sessions[-1]), cleaned_prices, cal.sessions, start, sessions[-1]
    )
    inside = [e for e in events if e.session >= sessions[0]]
    if inside:
        context.log.info(
            f"book events in the window: {len(inside)} ("
            + ", ".join(f"{e.kind} {e.symbol} {e.session}" for e in inside[:10])
            + (" ..." if len(inside) > 10 else "")
            + ")"
        )
    return events


def window_spreads(cleaned_prices: pl.DataFrame, backtest_book: BacktestBookResource) -> dict | None:
    """{session: {symbol: spread proxy}} of the frame (`execution.spreads_by_session`) when the book's slippage
    charges a fraction of the spread (`[costs] slippage_spread_fraction`), else None: the proxies the planner
    computes from the same frame, so its projected fills are the book's."""
    return spreads_by_session(cleaned_prices) if backtest_book.slippage_model().uses_spread else None


# confirmed splits (decision 0004, section 3) of the window and the MARK_LOOKBACK sessions before it: the book
# adjusts held shares on the session a break was confirmed
TRADING_BREAKS = dg.AssetIn(
    key=PRICE_BREAKS,
    partition_mapping=lookback_mapping(MARK_LOOKBACK),
    metadata={"where": "kind = 'split'"},
)


@dg.asset(
    key=ORDERS,
    group_name="trading",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="Risk-checked orders from session D's signals, to fill at D+1's open. Denied orders are kept "
    "with a reason code; client order ids are deterministic.",
    ins={"signals": dg.AssetIn(key=SIGNALS), "cleaned_prices": TRADING_PRICES, "price_breaks": TRADING_BREAKS},
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
    price_breaks: pl.DataFrame,
    backtest_book: BacktestBookResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
    security_master: SecurityMasterResource,
):
    sessions = window_sessions(context)
    cal = session_calendar()
    risk = backtest_book.planner_risk(trading_config.risk_config())
    require_atr_within_lookback(risk)
    opens = opens_by_session(cleaned_prices)
    events = window_book_events(
        context, sessions, cleaned_prices, price_breaks, corporate_actions, security_master, trading_config
    )
    bars = bars_by_session(cleaned_prices, sessions[:1]) if risk.has_exits else None
    spreads = window_spreads(cleaned_prices, backtest_book)
    # read only: the book projected to a's open (pending orders filled, book events, a's exits), never moved:
    # planning reads the book; only `executions` writes it
    with backtest_book.get(read_only=True) as b:
        # fills what an earlier run left pending at a's open, after the book events up to a, then a's exits
        b.sync(
            sessions[0], opens.get(sessions[0], {}), events, bars=session_bars(bars, sessions[0]), spreads=spreads
        )
        start_state = b.account(sessions[0])
        account_id = b.account_id
    out = plan_orders(
        trading_config.traded_signals(signals),
        cleaned_prices,
        start_state,
        cal.sessions,
        risk,
        backtest_book.slippage_model(),
        backtest_book.commission_model(),
        account_id,
        events=events,
        as_of=sessions[0],
    )
    n_ok = out.filter(pl.col("status") == "approved").height if out.height else 0
    context.log.info(f"orders: {n_ok:,} approved, {out.height - n_ok:,} denied (kept with a reason code)")
    counts = (
        out.group_by("status", "reason_code").len(name="orders").sort("orders", descending=True) if out.height else out
    )
    outcome = rules.orders_within_limits(out, risk.monthly_share_limit)
    gate_pending(context, quality_gate, ORDERS, sessions)
    yield dg.Output(
        out,
        metadata={
            **frame_metadata(out, sessions),
            "approved": n_ok,
            "denied": out.height - n_ok,
            **tables(context, sessions, by_status_and_reason=(counts, 20)),
            **session_orders_table(out, sessions),
            "start_cash": float(start_state.cash),
        },
    )
    suite = gx_suites.validate("orders", out, sessions=sessions, strategies=trading_config.strategy_specs())
    yield from gated_checks(
        context, quality_gate, ORDERS, sessions, {"orders__within_limits": outcome, "orders__gx_suite": suite}
    )


@dg.asset(
    key=EXECUTIONS,
    group_name="trading",
    kinds={"duckdb", "polars"},
    metadata=PARTITION_EXPR,
    description="Broker events by session: orders accepted on D, filled (or expired) at D+1's open. The built-in "
    "backtest book fills with slippage and commission; with stop-loss / take-profit exits it fills them on each "
    "session's bar after the open (`filled` sells with ids `<entry>-sl` / `<entry>-tp`). Ledger events that are no trade come first in a session: "
    "'split' (qty = shares after, price = the ratio), 'cash_in_lieu' (price = the amount), 'delisted_close' (a "
    "security past its valid_to closed at its last close, alerted) and 'renamed'.",
    # only what the book needs: approved orders (not the ~35x more denials) and the prices
    ins={"orders": dg.AssetIn(key=ORDERS, metadata={"where": "status = 'approved'"}), "cleaned_prices": TRADING_PRICES, "price_breaks": TRADING_BREAKS},
    check_specs=[
        blocking(
            EXECUTIONS,
            "executions__match_orders",
            "every accepted order is an approved order; an exit fill sells no more than its entry bought",
        ),
        blocking(
            EXECUTIONS,
            "executions__monthly_quota",
            "shares bought per stock and month within the quota, the month's fills before the window included",
        ),
        blocking(EXECUTIONS, "executions__no_nulls", "session, order id, symbol, event, order session, qty, commission"),
        blocking(EXECUTIONS, "executions__in_window", "every event dated inside the partition window"),
    ],
    **partitioned(),
)
def executions(
    context: dg.AssetExecutionContext,
    orders: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    price_breaks: pl.DataFrame,
    backtest_book: BacktestBookResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
    security_master: SecurityMasterResource,
    alerts: AlertsResource,
):
    sessions = window_sessions(context)
    risk = trading_config.risk_config()
    require_atr_within_lookback(risk)
    opens = opens_by_session(cleaned_prices)
    book = window_book_events(context, sessions, cleaned_prices, price_breaks, corporate_actions, security_master, trading_config)
    approved = orders.filter(pl.col("status") == "approved") if orders.height else orders  # the input already is
    by_session = orders_by_session(approved, status=None)  # the orders of each session, converted in one pass
    # each approved buy's stop-loss / take-profit, as the planner set them: its fill opens the book's exit lot
    levels = exit_levels_for_orders(approved, cleaned_prices, risk) if risk.has_exits and approved.height else None
    bars = bars_by_session(cleaned_prices, sessions) if risk.has_exits else None
    spreads = window_spreads(cleaned_prices, backtest_book)
    progress = Progress(context.log, "executions", len(sessions))
    with backtest_book.get() as b:
        b.reset_from(sessions[0])
        for i, session in enumerate(sessions, 1):
            b.sync(session, opens.get(session, {}), book, bars=session_bars(bars, session), spreads=spreads)
            todays = by_session.get(session)
            if todays is not None:
                b.submit(todays, session, levels=levels)
            progress.tick(i)
        events = b.events(sessions[0], sessions[-1])
        # the quota counts the month's fills before the window too (a daily run sees one day of events)
        month = b.events(sessions[0].replace(day=1), sessions[-1])
    context.log.info(f"executions: {events.filter(pl.col('event') == 'filled').height if events.height else 0:,} fills")
    counts = events.group_by("event").len(name="events").sort("event") if events.height else events
    alert_ledger_events(context, alerts, events)
    gate_pending(context, quality_gate, EXECUTIONS, sessions)
    yield dg.Output(
        events,
        metadata={
            **frame_metadata(events, sessions),
            **tables(context, sessions, by_event=(counts, 10)),
            **session_fills_table(events, sessions),
        },
    )
    quota = rules.fills_within_monthly_quota(month, trading_config.monthly_share_limit, window=sessions)
    # side and price are null on acceptances, expiries and splits; the rest never is
    keys = ["session", "client_order_id", "symbol", "event", "order_session", "qty", "commission"]
    yield from gated_checks(
        context,
        quality_gate,
        EXECUTIONS,
        sessions,
        {
            "executions__match_orders": rules.executions_match_orders(events, orders),
            "executions__monthly_quota": quota,
            "executions__no_nulls": rules.no_nulls(events, keys),
            "executions__in_window": rules.sessions_in_window(events, sessions),
        },
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
        # the fills, and the ledger events that move cash without one (for the equity check)
        "executions": dg.AssetIn(key=EXECUTIONS, metadata={"where": "event IN ('filled', 'cash_in_lieu', 'delisted_close')"}),
        "cleaned_prices": TRADING_PRICES,
        "price_breaks": TRADING_BREAKS,
    },
    group_name="pnl",
    check_specs=[
        blocking(POSITIONS, "positions__complete", "no null session, symbol, qty, close or market value"),
        blocking(POSITIONS, "positions__in_window", "every position dated inside the partition window"),
        blocking(EQUITY, "equity__in_window", "every equity row dated inside the partition window"),
        blocking(EQUITY, "equity__accounting_identity", "equity = cash + market value; cash >= 0"),
        blocking(
            EQUITY,
            "equity__matches_fills",
            "cash = the book's cash before the window + the book's fills and ledger cash (cash in lieu, "
            "delisted closes); market value = positions' qty x close",
        ),
    ],
    **partitioned(),
)
def pnl(
    context: dg.AssetExecutionContext,
    executions: pl.DataFrame,
    cleaned_prices: pl.DataFrame,
    price_breaks: pl.DataFrame,
    backtest_book: BacktestBookResource,
    trading_config: TradingConfigResource,
    quality_gate: QualityGateResource,
    corporate_actions: CorporateActionsResource,
    security_master: SecurityMasterResource,
):
    sessions = window_sessions(context)
    prev = session_calendar().previous_session(sessions[0])
    book = window_book_events(context, sessions, cleaned_prices, price_breaks, corporate_actions, security_master, trading_config)
    with backtest_book.get() as b:
        start_state = b.account(prev or sessions[0] - dt.timedelta(days=1))
    fills = executions.filter(pl.col("event") == "filled") if executions.height else executions
    positions, equity = mark_to_market(
        start_state, fills, cleaned_prices, sessions, trading_config.benchmark, events=book
    )
    last = equity.tail(1).to_dicts()[0] if equity.height else {}
    context.log.info(f"pnl: equity ${last.get('equity', 0.0):,.2f} at {last.get('session')}")
    gate_pending(context, quality_gate, EQUITY, sessions)
    gate_pending(context, quality_gate, POSITIONS, sessions)
    add_session_figures(context, equity, previous_peak(context, prev))
    one = len(sessions) == 1
    yield dg.Output(
        positions,
        "positions",
        metadata={
            **frame_metadata(positions, sessions),
            **({"positions": table_preview(positions, POSITION_COLUMNS)} if one else {}),
        },
    )
    yield dg.Output(
        equity,
        "equity",
        metadata={
            **frame_metadata(equity, sessions),
            "final_equity": float(last.get("equity", 0.0)),
            "final_cash": float(last.get("cash", 0.0)),
            "final_equity_text": money(last.get("equity")),
        },
    )
    identity = rules.equity_identity(equity, cash_limited=backtest_book.buying_power == "cash")
    matches = rules.equity_matches_fills(
        equity, positions, executions, start_state.cash, extra_cash_movements=ledger_cash_movements(executions)
    )
    yield from gated_checks(
        context,
        quality_gate,
        POSITIONS,
        sessions,
        {
            "positions__complete": rules.no_nulls(positions, ["session", "symbol", "qty", "close", "market_value"]),
            "positions__in_window": rules.sessions_in_window(positions, sessions),
        },
    )
    in_window = rules.sessions_in_window(equity, sessions)
    yield from gated_checks(
        context,
        quality_gate,
        EQUITY,
        sessions,
        {"equity__in_window": in_window, "equity__accounting_identity": identity, "equity__matches_fills": matches},
    )


def ledger_cash_movements(executions: pl.DataFrame) -> pl.DataFrame:
    """(session, amount) of the cash the broker's ledger events moved without a fill: cash in lieu of a
    split's fraction (a `cash_in_lieu` row's price is the amount) and a delisted security's close (qty x price)."""
    if executions.is_empty():
        return pl.DataFrame(schema={"session": pl.Date, "amount": pl.Float64})
    return executions.filter(pl.col("event").is_in(["cash_in_lieu", "delisted_close"])).select(
        "session",
        pl.when(pl.col("event") == "cash_in_lieu")
        .then(pl.col("price"))
        .otherwise(pl.col("qty") * pl.col("price"))
        .alias("amount"),
    )


def alert_ledger_events(context: dg.AssetExecutionContext, alerts: AlertsResource, events: pl.DataFrame) -> None:
    """An alert for each position the broker closed because its security ended (or moved to a new ticker):
    a person should know the book sold something no signal asked for. Splits are logged."""
    if events.is_empty():
        return
    for row in events.filter(pl.col("event").is_in(["split", "delisted_close", "renamed"])).iter_rows(named=True):
        if row["event"] == "split":
            context.log.info(
                f"split: {row['symbol']} on {row['session']} (ex-date {row['order_session']}, {row['price']:g} new "
                f"shares per old): {row['qty']} shares held after it"
            )
            continue
        if row["event"] == "delisted_close":
            title = f"{row['symbol']}: position closed, its security ended on {row['order_session']}"
            text = (
                f"{row['qty']} shares closed at their last close ${row['price']:,.4f} on {row['session']} "
                "(security master: the ticker no longer means this security); no order was sent"
            )
        else:
            title = f"{row['symbol']}: position moved to a new ticker ({row['client_order_id']})"
            text = f"{row['qty']} shares, effective {row['session']} (security master)"
        alert = Alert(
            kind=row["event"],
            key=f"{row['event']}:{row['symbol']}:{row['session']}",
            title=title,
            text=text,
            details={k: str(v) for k, v in row.items()},
            severity="WARNING",
        )
        try:
            alerts.sink(context.log).send(alert)
        except AlertDeliveryError as exc:  # the ledger event stands; the alert is in the log and alerts.jsonl
            context.log.warning(f"alert not delivered everywhere: {exc}")


ORDER_COLUMNS = {
    "symbol": "symbol", "side": "side", "qty": "qty", "requested_qty": "requested", "ref_price": "price",
    "strategy": "strategy", "status": "status", "reason_code": "reason", "client_order_id": "client_order_id",
}
FILL_COLUMNS = {
    "symbol": "symbol", "side": "side", "qty": "qty", "price": "price", "event": "event",
    "commission": "commission", "order_session": "ordered", "client_order_id": "client_order_id",
}
POSITION_COLUMNS = {
    "symbol": "symbol", "qty": "qty", "avg_cost": "avg_cost", "close": "close", "market_value": "market_value",
    "unrealized_pnl": "unrealized_pnl",
}


def session_orders_table(out: pl.DataFrame, sessions: list[dt.date]) -> dict[str, dg.MetadataValue]:
    """A one-session run's orders as a table (approved first, then denied with their reason codes). A range
    run has no such table: Dagster would copy it onto every partition of the range (see `tables`)."""
    if len(sessions) != 1:
        return {}
    ranked = out.sort(pl.col("status") != "approved", "symbol") if out.height else out
    return {"orders": table_preview(ranked, ORDER_COLUMNS)}


def session_fills_table(events: pl.DataFrame, sessions: list[dt.date]) -> dict[str, dg.MetadataValue]:
    """A one-session run's broker events (fills first) as a table."""
    if len(sessions) != 1:
        return {}
    ranked = events.sort(pl.col("event") != "filled", "symbol") if events.height else events
    return {"fills": table_preview(ranked, FILL_COLUMNS)}


def previous_peak(context: dg.AssetExecutionContext, prev: dt.date | None) -> float | None:
    """The running equity peak recorded on the session before the window (`peak_equity`), so a one-day run
    draws the same drawdown as a range run; None when that session has not been materialized."""
    if prev is None:
        return None
    try:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(EQUITY), asset_partitions=[prev.isoformat()]),
            limit=1,
            ascending=False,
        ).records
    except Exception:  # noqa: BLE001 - a figure for the UI, never a reason to fail the P&L
        return None
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("peak_equity")
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) else None


def add_session_figures(context: dg.AssetExecutionContext, equity: pl.DataFrame, peak: float | None) -> None:
    """Each session's figures as numeric metadata on its own partition of pnl/equity, so the Plots tab draws
    equity, daily P&L, drawdown and exposure per session. Partition-scoped (`add_asset_metadata` with a
    partition key): a range run gives each partition its own six numbers, not a copy of the whole range's."""
    rows = equity.sort("session").to_dicts()
    for row in rows:
        value = float(row["equity"])
        peak = value if peak is None else max(peak, value)
        r = row.get("daily_return")
        day_pnl = value - value / (1 + r) if r is not None and r > -1 else 0.0
        drawdown = value / peak - 1 if peak > 0 else 0.0
        exposure = float(row["market_value"]) / value if value > 0 else 0.0
        figures: dict[str, object] = {
            "equity": dg.MetadataValue.float(value),
            "daily_pnl": dg.MetadataValue.float(round(day_pnl, 2)),
            "daily_return_pct": dg.MetadataValue.float(round(100 * (r or 0.0), 4)),
            "drawdown_pct": dg.MetadataValue.float(round(100 * drawdown, 4)),
            "exposure_pct": dg.MetadataValue.float(round(100 * exposure, 4)),
            "peak_equity": dg.MetadataValue.float(peak),
        }
        if len(rows) == 1:
            figures["summary"] = dg.MetadataValue.text(
                f"equity {money(value)}, day {money(day_pnl)} ({percent(r)}), drawdown {percent(drawdown)}, "
                f"exposure {percent(exposure, signed=False)}, {row.get('n_positions') or 0} positions"
            )
        context.add_asset_metadata(figures, asset_key=dg.AssetKey(EQUITY), partition_key=row["session"].isoformat())


RATIO_KEYS = ("sharpe", "benchmark_sharpe")
MONEY_KEYS = ("initial_equity", "final_equity", "benchmark_final_equity")


def performance_metadata(summary: dict[str, object]) -> dict[str, object]:
    """The summary as a person reads it (`+23.48%`, `$1,234,567.89`, `0.78`), each number also as a typed
    float under `<key>_raw` for code and for the Plots tab (its history over runs)."""
    shown: dict[str, object] = {}
    raw: dict[str, object] = {}
    for key, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown[key] = "n/a" if value is None else str(value)
            continue
        if key == "sessions":
            shown[key] = int(value)
            continue
        raw[f"{key}_raw"] = dg.MetadataValue.float(float(value))
        if key in MONEY_KEYS:
            shown[key] = money(float(value))
        elif key in RATIO_KEYS:
            shown[key] = f"{value:.2f}"
        else:
            shown[key] = percent(float(value), signed="volatility" not in key)
    return {**shown, **raw}


@dg.asset(
    key=PERFORMANCE,
    group_name="pnl",
    kinds={"duckdb", "polars"},
    description="Whole-history performance: cumulative and annualized return, Sharpe, max drawdown, against "
    "buy-and-hold of the benchmark over the same sessions. Plots (equity against the benchmark, drawdown, "
    "monthly returns heatmap, daily P&L, rolling Sharpe) and an HTML tear sheet in `<data dir>/reports/`.",
    ins={"equity": dg.AssetIn(key=EQUITY)},
)
def performance(
    context: dg.AssetExecutionContext,
    equity: pl.DataFrame,
    trading_config: TradingConfigResource,
    backtest_book: BacktestBookResource,
):
    from trading_dagster.tearsheet import write_tearsheet

    equity = equity.sort("session")
    summary = performance_summary(equity)
    months = monthly_returns(equity)
    out = pl.DataFrame([{k: (str(v) if isinstance(v, dt.date) else v) for k, v in summary.items()}])
    reports = Path(backtest_book.ledger_path).resolve().parent / "reports"
    sheet = write_tearsheet(equity, summary, months, trading_config.benchmark, reports / "tearsheet.html")
    context.log.info(f"tear sheet: {sheet}")
    return dg.Output(
        out,
        metadata={
            **performance_metadata(summary),
            "plots": dg.MetadataValue.md(performance_plots_markdown(equity, months, trading_config.benchmark)),
            "tearsheet": dg.MetadataValue.path(str(sheet)),
            "tearsheet_url": dg.MetadataValue.url(sheet.as_uri()),
        },
    )
