"""The alerts of trading for real (decision 0005, sections 4, 5 and 7): plain builders returning `Alert`s,
sent by whoever noticed (`alerts.sink(context.log).send(...)`): the submissions asset (a rejection), the
fills asset (a mismatch, the day's summary, P&L), the kill switch.

Each alert has a `key` naming what it is about, so a reader of alerts.jsonl can tell a repeat from news:
`order_rejected:<client order id>`, `reconciliation_mismatch:<session>`, `kill_switch:<engaged|released>:<time>`,
`pnl_below_threshold:<session>`, `fills_summary:<session>`. Money is shown exactly as the broker records
have it (Decimal), never rounded through float. Nothing here is a secret: the records hold no keys.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal

from trading_dagster.domain.broker_records import BrokerFill, SubmitResult
from trading_dagster.domain.live_book import Mismatch
from trading_dagster.resources.alerts import Alert

MAX_LINES = 20  # lines listed in one alert; the rest are counted


def _money(value: Decimal | None) -> str:
    if value is None:
        return "?"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _qty(value: Decimal | None) -> str:
    return "?" if value is None else format(value.normalize(), "f")


def _listed(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return lines[:MAX_LINES] + [f"... and {len(lines) - MAX_LINES} more"]


def order_rejected_alert(result: SubmitResult, *, book: str = "paper") -> Alert:
    """The broker refused an order (its code and message: e.g. 40310000 insufficient buying power)."""
    if result.outcome != "rejected":
        raise ValueError(f"{result.request.client_order_id} was {result.outcome}, not rejected")
    r = result.request
    size = f"{_qty(r.qty)} shares" if r.qty is not None else _money(r.notional)
    code = f" [{result.code}]" if result.code else ""
    return Alert(
        kind="order_rejected",
        key=f"order_rejected:{r.client_order_id}",
        title=f"Order rejected by the broker ({book}): {r.side} {r.symbol} {size}",
        text=(
            f"{r.strategy}, signal session {r.session}, {r.type} {r.time_in_force}: "
            f"{result.message or 'no message'}{code}\nclient order id {r.client_order_id}"
        ),
        details={
            "book": book,
            "session": r.session.isoformat(),
            "strategy": r.strategy,
            "symbol": r.symbol,
            "side": r.side,
            "qty": None if r.qty is None else str(r.qty),
            "notional": None if r.notional is None else str(r.notional),
            "client_order_id": r.client_order_id,
            "code": result.code,
            "message": result.message,
        },
    )


def reconciliation_mismatch_alert(
    session: dt.date, mismatches: Sequence[Mismatch], *, book: str = "paper"
) -> Alert:
    """The broker's positions or cash differ from the ledger after D's fills."""
    if not mismatches:
        raise ValueError("a reconciliation mismatch alert needs at least one mismatch")

    def fmt(m: Mismatch) -> str:
        show = _money if m.item == "cash" else _qty
        diff = m.difference
        sign = "+" if diff is not None and diff > 0 else ""
        return f"{m.item}: ledger {show(m.ledger)}, broker {show(m.broker)}" + (
            f" ({sign}{show(diff)})" if diff is not None else ""
        )

    items = [m.item for m in mismatches]
    return Alert(
        kind="reconciliation_mismatch",
        key=f"reconciliation_mismatch:{session.isoformat()}",
        title=f"Reconciliation mismatch ({book}) after session {session}: {len(mismatches)} item(s)",
        text="\n".join(_listed([fmt(m) for m in mismatches])),
        details={
            "book": book,
            "session": session.isoformat(),
            "items": items,
            "mismatches": [
                {"item": m.item, "ledger": _s(m.ledger), "broker": _s(m.broker)} for m in mismatches
            ],
        },
    )


def kill_switch_alert(engaged: bool, *, at: dt.datetime, by: str, reason: str, book: str = "paper") -> Alert:
    """The kill switch was engaged (buys dropped from now on) or released."""
    state = "engaged" if engaged else "released"
    effect = "no buy reaches the broker until it is released" if engaged else "buys may be sent again"
    return Alert(
        kind="kill_switch",
        key=f"kill_switch:{state}:{at.astimezone(dt.UTC).isoformat()}",
        title=f"Kill switch {state} ({book}) by {by}",
        text=f"{reason}\n{effect} (at {at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%SZ})",
        details={"book": book, "state": state, "by": by, "reason": reason, "at": at.isoformat()},
        severity="ERROR" if engaged else "WARNING",
    )


def pnl_below_threshold_alert(
    session: dt.date,
    pnl: Decimal,
    threshold: Decimal,
    *,
    equity: Decimal | None = None,
    book: str = "paper",
) -> Alert:
    """Session D's P&L fell below the threshold (a negative amount: -500 means "lost more than $500")."""
    if pnl >= threshold:
        raise ValueError(f"P&L {pnl} is not below the threshold {threshold}")
    pct = f" ({pnl / equity:.2%} of equity {_money(equity)})" if equity else ""
    return Alert(
        kind="pnl_below_threshold",
        key=f"pnl_below_threshold:{session.isoformat()}",
        title=f"P&L of session {session} ({book}) is {_money(pnl)}, below {_money(threshold)}",
        text=f"P&L {_money(pnl)}{pct}; threshold {_money(threshold)}",
        details={
            "book": book,
            "session": session.isoformat(),
            "pnl": str(pnl),
            "threshold": str(threshold),
            "equity": _s(equity),
        },
    )


def fills_summary_alert(session: dt.date, fills: Iterable[BrokerFill], *, book: str = "paper") -> Alert:
    """Session D's orders' fills (executed during D+1), by symbol and side: shares, average price, amount."""
    by_line: dict[tuple[str, str], list[BrokerFill]] = defaultdict(list)
    for f in fills:
        by_line[(f.symbol, f.side)].append(f)
    lines, bought, sold = [], Decimal(0), Decimal(0)
    for (symbol, side), group in sorted(by_line.items()):
        qty = sum((f.qty for f in group), Decimal(0))
        amount = sum((f.qty * f.price for f in group), Decimal(0))
        avg = (amount / qty) if qty else None
        if side == "buy":
            bought += amount
        else:
            sold += amount
        lines.append(f"{side} {symbol} {_qty(qty)} @ {_money(avg)} = {_money(amount)} ({len(group)} fill(s))")
    count = sum(len(g) for g in by_line.values())
    text = "\n".join(_listed(lines)) if lines else "no fills"
    return Alert(
        kind="fills_summary",
        key=f"fills_summary:{session.isoformat()}",
        title=(
            f"Fills of session {session} ({book}): {count} fill(s), bought {_money(bought)}, sold {_money(sold)}"
        ),
        text=text,
        details={
            "book": book,
            "session": session.isoformat(),
            "fills": count,
            "symbols": sorted({s for s, _ in by_line}),
            "bought": str(bought),
            "sold": str(sold),
        },
        severity="INFO",
    )


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
