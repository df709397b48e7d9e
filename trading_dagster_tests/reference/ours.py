"""Our pipeline's pure functions on a cleaned-prices frame, as one backtest: the side compared with the reference.

`run_ours` runs the stages the way `benchmarks/full_backfill.py`'s `run_pure` does (indicators anchored ->
signals of one strategy (an `sma_cross` of `fast` / `slow` by default, or any `StrategySpec` as `strategy`) ->
`plan_orders` -> `SimulatedBook` sync/submit session by session ->
`mark_to_market` -> `performance_summary`; the signals get the exchange calendar, so "the session before D" is
the calendar's), with one difference: no buy is held out after an unexplained split (the reference has no
such rule).

The conventions of decision 0006 are keyword arguments passed through to whichever of `RiskConfig`,
`SlippageModel`, `CommissionModel`, `SimulatedBook` and `plan_orders` takes them (found by their fields and
parameters, so a convention works here as soon as the code has it); `buying_power` also sets the book's
`cash_limited` (`"cash"` -> True) when the book has that parameter, and `tie_band_pct` goes to the strategy's
params. A convention that nothing takes is a TypeError naming it, never silently ignored.
`REFERENCE_CONVENTIONS` are the ones that make our run the reference's; with none, today's defaults apply
(rounding to the cent, the monthly quota, the 10 % position cap, the $1 minimum price, cash as buying power,
adding to a held position), except the money and costs named as arguments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import polars as pl

from trading_dagster_tests.reference.vectorbt_reference import EQUITY_SCHEMA, ORDER_SCHEMA, ReferenceResult

REFERENCE_CONVENTIONS: Mapping[str, Any] = {
    "monthly_share_limit": None,
    "max_position_pct_equity": None,
    "min_price": None,  # not in decision 0006's table, but the reference has no minimum price either
    "round_cents": False,
    "add_to_positions": False,
    "buying_power": "off",
}
"""With `size_on` (which the reference takes too) these make our run the reference's (decision 0006)."""


def _accepts(target: Callable[..., Any]) -> set[str]:
    if dataclasses.is_dataclass(target):
        return {f.name for f in dataclasses.fields(target) if f.init}
    params = inspect.signature(target).parameters.values()
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def route_conventions(conventions: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"risk" | "slippage" | "commission" | "book" | "plan" | "strategy": kwargs} for these conventions."""
    from trading_dagster.domain import strategies
    from trading_dagster.domain.execution import CommissionModel, SlippageModel
    from trading_dagster.domain.portfolio import plan_orders
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.resources.backtest_book import SimulatedBook

    targets: dict[str, set[str]] = {
        "risk": _accepts(RiskConfig),
        "slippage": _accepts(SlippageModel),
        "commission": _accepts(CommissionModel),
        "book": _accepts(SimulatedBook.__init__) - {"self", "path", "initial_cash", "slippage", "commission"},
        "plan": {
            p.name for p in inspect.signature(plan_orders).parameters.values() if p.kind == p.KEYWORD_ONLY
        },
        "strategy": (
            set(strategies.PARAMS["sma_cross"])
            | set(getattr(strategies, "OPTIONAL_PARAMS", {}).get("sma_cross", {}))
        )
        - {"fast", "slow"},
    }
    routed: dict[str, dict[str, Any]] = {name: {} for name in targets}
    for key, value in conventions.items():
        takers = [name for name, accepted in targets.items() if key in accepted]
        if key == "buying_power" and "cash_limited" in targets["book"]:
            routed["book"]["cash_limited"] = value == "cash"
            takers.append("book")
        if key == "tie_band_pct" and not takers and value == 0:
            continue  # today's cross has no band: 0 is what it does
        if not takers:
            raise TypeError(
                f"convention {key!r} is not supported by this code yet: none of RiskConfig, SlippageModel, "
                "CommissionModel, SimulatedBook, plan_orders or the sma_cross params takes it"
            )
        for name in takers:
            if key in targets[name]:
                routed[name][key] = value
    return routed


def _trades_opened(fills: pl.DataFrame) -> int:
    """Buys that opened a position (the symbol was flat before), walking fills in the book's order: a
    session's open (sells, then buys), then its exits (an `exit` column, when there is one: stop-loss /
    take-profit fills, which come after the open's, the entry's own session included)."""
    held: dict[str, int] = {}
    opened = 0
    exit_last = pl.col("exit") if "exit" in fills.columns else pl.lit(False)
    for symbol, side, qty in (
        fills.sort("session", exit_last, pl.col("side") == "buy").select("symbol", "side", "qty").iter_rows()
    ):
        before = held.get(symbol, 0)
        if side == "buy":
            opened += before == 0
            held[symbol] = before + qty
        else:
            held[symbol] = before - qty
    return opened


def run_ours(
    cleaned: pl.DataFrame,
    sessions: Sequence[dt.date],
    *,
    fast: int = 20,
    slow: int = 50,
    notional: float | int = 10_000,
    initial_cash: float | int = 100_000,
    fees_bps: float | int = 0,
    slippage_bps: float | int = 0,
    calendar: Sequence[dt.date] | None = None,
    benchmark: str = "SPY",
    strategy: Any = None,
    **conventions: Any,
) -> ReferenceResult:
    """Our backtest of the SMA `fast`/`slow` cross over the window `sessions` (ordered, consecutive sessions of
    `calendar`; default the NYSE calendar), in the shape of the reference's result.

    `strategy`: a `StrategySpec` of any kind to run instead of the SMA cross (`fast` / `slow` are then unused;
    a convention routed to the sma_cross params, `tie_band_pct`, is a TypeError naming it).

    Commission is `fees_bps` basis points of the traded value and nothing per share; slippage `slippage_bps`.
    `conventions`: see the module docstring (`REFERENCE_CONVENTIONS`, `size_on`, ...).
    """
    from trading_dagster.assets.trading import bars_by_session, session_bars
    from trading_dagster.domain import indicators as ind
    from trading_dagster.domain.calendar import nyse_calendar
    from trading_dagster.domain.execution import CommissionModel, SlippageModel, opens_by_session
    from trading_dagster.domain.exits import exit_levels_for_orders, is_exit_id
    from trading_dagster.domain.metrics import performance_summary
    from trading_dagster.domain.orders import orders_from_frame
    from trading_dagster.domain.pnl import mark_to_market
    from trading_dagster.domain.portfolio import PortfolioState, plan_orders
    from trading_dagster.domain.risk import RiskConfig
    from trading_dagster.domain.strategies import StrategySpec, generate_signals
    from trading_dagster.resources.backtest_book import SimulatedBook

    sessions = list(sessions)
    if not sessions:
        raise ValueError("no sessions")
    routed = route_conventions(conventions)
    days = list(calendar) if calendar is not None else list(nyse_calendar().sessions)
    cash = Decimal(str(initial_cash))
    risk = RiskConfig(notional=Decimal(str(notional)), initial_cash=cash, **routed["risk"])
    slippage = SlippageModel(bps=Decimal(str(slippage_bps)), **routed["slippage"])
    commission = CommissionModel(per_share=Decimal(0), bps=Decimal(str(fees_bps)), **routed["commission"])
    if strategy is None:
        spec = StrategySpec(
            name=f"sma_{fast}_{slow}_cross",
            kind="sma_cross",
            params={"fast": fast, "slow": slow, **routed["strategy"]},
        )
    elif routed["strategy"] and strategy.kind != "sma_cross":
        raise TypeError(
            f"conventions {sorted(routed['strategy'])} are sma_cross params, not {strategy.kind!r}'s"
        )
    else:
        spec = strategy

    indicators = ind.compute_indicators_anchored(cleaned, days, sessions[0], sessions[-1])
    signals = generate_signals(indicators, [spec], sessions[0], sessions[-1], days)
    start = PortfolioState.initial(cash)
    orders = plan_orders(signals, cleaned, start, days, risk, slippage, commission, "paper", **routed["plan"])

    opens = opens_by_session(cleaned)
    approved = orders.filter(pl.col("status") == "approved")
    by_session = {k[0]: v for k, v in approved.partition_by("session", as_dict=True).items()}
    # stop-loss / take-profit (risk conventions): the book works each entry's bracket as the executions asset
    levels = exit_levels_for_orders(approved, cleaned, risk) if risk.has_exits and approved.height else None
    bars = bars_by_session(cleaned, sessions) if risk.has_exits else None
    with SimulatedBook(
        None, initial_cash=cash, slippage=slippage, commission=commission, **routed["book"]
    ) as book:
        for s in sessions:
            book.sync(s, opens.get(s, {}), bars=session_bars(bars, s))
            if s in by_session:
                book.submit(orders_from_frame(by_session[s]), s, levels=levels)
        events = book.events(sessions[0], sessions[-1])
    fills = events.filter(pl.col("event") == "filled")
    _, equity = mark_to_market(start, fills, cleaned, sessions, benchmark)
    summary = performance_summary(equity)
    fills_out = (
        fills.select(
            "session", "symbol", "side", pl.col("qty").cast(pl.Float64), "price", fees=pl.col("commission")
        )
        .cast(ORDER_SCHEMA)
        .sort("session", pl.col("side") == "buy", "symbol")
    )
    final = float(summary["final_equity"])
    return ReferenceResult(
        total_pnl=final - float(cash),
        n_orders=fills_out.height,
        n_trades=_trades_opened(
            fills.select(
                "session",
                "symbol",
                "side",
                "qty",
                exit=pl.Series([is_exit_id(i) for i in fills["client_order_id"]], dtype=pl.Boolean),
            )
        ),
        sharpe=summary["sharpe"],
        final_value=final,
        equity=equity.select("session", "equity").cast(EQUITY_SCHEMA),
        orders=fills_out,
    )
