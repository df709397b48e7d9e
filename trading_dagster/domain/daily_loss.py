"""The max daily loss of the trading book (issue 9: "a max daily loss that engages the kill switch").

The day's loss is the broker account's equity at the previous session's close (`BrokerAccount.last_equity`)
minus its equity now. The limits are `[risk] max_daily_loss_pct_equity` (a percentage of that previous-close
equity) and `max_daily_loss_usd`, each None = off, as in the risk engine (`RiskConfig.daily_loss_limit`):
reaching either trips it (the smaller one when both are set). A gain, or no loss at all, never does.

Pure: no Dagster, no broker calls; `automation/daily_loss.py` reads the account and acts on the verdict.
"""

from __future__ import annotations

from decimal import Decimal

from trading_dagster.domain.broker_records import BrokerAccount

_HUNDRED = Decimal(100)
DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"  # the risk engine's reason code for the same limit


def _dec(value: Decimal | float | int | None) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _money(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def daily_loss(account: BrokerAccount) -> Decimal | None:
    """The day's loss so far (positive = lost money), or None when the broker gives no previous-close equity."""
    if account.last_equity is None:
        return None
    return account.last_equity - account.equity


def daily_loss_breach(
    account: BrokerAccount,
    max_loss_pct: Decimal | float | None,
    max_loss_usd: Decimal | float | None,
) -> str | None:
    """Why the day's loss has reached a limit (a sentence naming the loss, the limit and the equities), or
    None: within both limits, both limits off, a gain, or no `last_equity` (nothing to measure from)."""
    pct, usd = _dec(max_loss_pct), _dec(max_loss_usd)
    for name, value in (("max_daily_loss_pct_equity", pct), ("max_daily_loss_usd", usd)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0 or off (None), not {value}")
    loss = daily_loss(account)
    if loss is None or loss <= 0 or (pct is None and usd is None):
        return None
    assert account.last_equity is not None
    limits: list[tuple[Decimal, str]] = []
    if usd is not None:
        limits.append((usd, f"max_daily_loss_usd {_money(usd)}"))
    if pct is not None:
        limits.append(
            (account.last_equity * pct / _HUNDRED, f"max_daily_loss_pct_equity {pct.normalize():f}%")
        )
    limit, which = min(limits, key=lambda item: item[0])
    if loss < limit:
        return None
    share = f" ({loss / account.last_equity:.2%})" if account.last_equity > 0 else ""
    return (
        f"{DAILY_LOSS_LIMIT}: the day's loss {_money(loss)}{share} reached the limit {_money(limit)} "
        f"({which}): equity {_money(account.equity)}, {_money(account.last_equity)} at the previous close"
    )
