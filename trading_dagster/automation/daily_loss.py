"""The max daily loss engages the kill switch (issue 9; decision 0005, section 5).

`daily_loss_sensor`, every minute while the broker's clock says the market is open: reads the account, and
when the day's loss (`last_equity` at the previous close minus the equity now) has reached `[risk]
max_daily_loss_pct_equity` or `max_daily_loss_usd` (`domain/daily_loss.py`; `TradingConfigResource.
risk_config()`, the risk engine's parser), appends one kill_switch event, actor `daily-loss-limit`, with the
reason, and sends the kill-switch alert. From then on the submissions drop every buy; sells still go out.

It engages the switch at most once a day (New York): not while the switch is engaged (by anyone, or by the
configuration), and not again the same day once it engaged it, so a person who releases it after reading
the alert is not overruled a minute later; the next session starts afresh. It launches no run: its
SkipReason says what it saw. STOPPED by default, like the other trading sensors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from trading_dagster.automation.trading_alerts import kill_switch_alert
from trading_dagster.domain.broker_records import BrokerAccount, BrokerClock
from trading_dagster.domain.daily_loss import daily_loss_breach
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.resources.alerts import AlertDeliveryError, AlertSink, AlertsResource
from trading_dagster.resources.configured import BrokerResource, TradingConfigResource
from trading_dagster.resources.ledger import TradingLedger, TradingLedgerResource

DAILY_LOSS_ACTOR = "daily-loss-limit"
NEW_YORK = ZoneInfo("America/New_York")


def _day_start(now: dt.datetime) -> dt.datetime:
    """Midnight New York of `now`'s day (the session's day), in UTC."""
    day = now.astimezone(NEW_YORK).date()
    return dt.datetime.combine(day, dt.time(0), NEW_YORK).astimezone(dt.UTC)


def engaged_today(ledger: TradingLedger, now: dt.datetime) -> bool:
    """Whether this sensor engaged the kill switch earlier on `now`'s New York day."""
    return any(
        e.actor == DAILY_LOSS_ACTOR and e.engaged
        for e in ledger.audit_events(kinds=["kill_switch"], since=_day_start(now))
    )


def check_daily_loss(
    clock: BrokerClock,
    read_account: Callable[[], BrokerAccount],
    risk: RiskConfig,
    ledger: TradingLedger,
    *,
    alerts: AlertSink | None = None,
    book: str = "paper",
    log: Any = None,
) -> dg.SkipReason:
    """One tick's decision; engages the switch (and alerts) when the loss has reached a limit. What it did or
    why not, as a SkipReason (the sensor launches no run). `read_account` is called only while the market is
    open and a limit is set."""
    if not clock.is_open:
        return dg.SkipReason(f"{clock.timestamp:%Y-%m-%d %H:%MZ}: the market is closed (broker clock)")
    if not risk.has_daily_loss_limit:
        return dg.SkipReason(
            "no daily loss limit: [risk] max_daily_loss_pct_equity and max_daily_loss_usd are off"
        )
    account = read_account()
    if account.last_equity is None:
        return dg.SkipReason(
            "the broker reports no equity at the previous close (last_equity): no daily loss"
        )
    reason = daily_loss_breach(account, risk.max_daily_loss_pct_equity, risk.max_daily_loss_usd)
    if reason is None:
        return dg.SkipReason(
            f"within the daily loss limit: equity {account.equity}, {account.last_equity} at the previous close"
        )
    state = ledger.kill_switch()
    if state.engaged:
        return dg.SkipReason(f"{reason}; {state.describe()} already: not engaged again")
    if engaged_today(ledger, clock.timestamp):
        return dg.SkipReason(
            f"{reason}; the daily loss limit engaged the kill switch earlier today and it was released since "
            f"({state.describe()}): not engaged again before the next session"
        )
    now = clock.timestamp
    ledger.set_kill_switch(True, DAILY_LOSS_ACTOR, reason, now=now)
    if log is not None:
        log.error(f"kill switch ENGAGED by {DAILY_LOSS_ACTOR}: {reason}")
    if alerts is not None:
        try:
            alerts.send(kill_switch_alert(True, at=now, by=DAILY_LOSS_ACTOR, reason=reason, book=book))
        except AlertDeliveryError as exc:  # the event is in the ledger and the alerts file: carry on
            if log is not None:
                log.warning(f"kill-switch alert not delivered everywhere: {exc}")
    return dg.SkipReason(f"kill switch engaged by {DAILY_LOSS_ACTOR}: {reason}")


def build_daily_loss_sensor(
    *,
    name: str = "daily_loss_sensor",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Every minute while the market is open (broker clock): when the day's loss since the previous "
            "close reaches [risk] max_daily_loss_pct_equity or max_daily_loss_usd, engage the kill switch "
            "(once a day) and alert."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        broker: BrokerResource,
        ledger: TradingLedgerResource,
        trading_config: TradingConfigResource,
        alerts: AlertsResource,
    ):
        risk = trading_config.risk_config()
        client = broker.get()
        try:
            return check_daily_loss(
                client.clock(),
                client.account,
                risk,
                ledger.get(),
                alerts=alerts.sink(context.log),
                book="paper" if client.paper else "LIVE",
                log=context.log,
            )
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()

    return _sensor


daily_loss_sensor = build_daily_loss_sensor()
