"""`daily_loss_breach` at its boundaries: a loss just under, at and over each limit; the smaller limit wins;
a gain, off limits and no previous-close equity never breach."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_dagster.domain.broker_records import BrokerAccount
from trading_dagster.domain.daily_loss import daily_loss, daily_loss_breach


def account(equity: str, last: str | None = "100000") -> BrokerAccount:
    d = Decimal(equity)
    return BrokerAccount("A1", "ACTIVE", d, d, d, last_equity=None if last is None else Decimal(last))


@pytest.mark.parametrize(
    ("equity", "breached"),
    [("99000.01", False), ("99000.00", True), ("98999.99", True), ("100000", False), ("101000", False)],
)
def test_the_usd_limit_trips_when_the_loss_reaches_it(equity, breached):
    reason = daily_loss_breach(account(equity), None, Decimal("1000"))
    assert (reason is not None) is breached
    if breached:
        assert reason.startswith("DAILY_LOSS_LIMIT") and "max_daily_loss_usd $1,000.00" in reason


@pytest.mark.parametrize(("equity", "breached"), [("98000.01", False), ("98000", True), ("97000", True)])
def test_the_pct_limit_is_a_share_of_the_equity_at_the_previous_close(equity, breached):
    reason = daily_loss_breach(account(equity), Decimal("2"), None)
    assert (reason is not None) is breached
    if breached:
        assert "max_daily_loss_pct_equity 2%" in reason and "$100,000.00 at the previous close" in reason


def test_the_smaller_limit_wins_and_floats_are_accepted():
    # 2% of 100,000 = 2,000 > 1,500: the USD limit trips first
    assert "max_daily_loss_usd" in daily_loss_breach(account("98500"), 2.0, 1500.0)
    assert daily_loss_breach(account("98500.01"), 2.0, 1500.0) is None
    # 1% = 1,000 < 1,500: the percentage trips first
    assert "max_daily_loss_pct_equity 1%" in daily_loss_breach(account("99000"), 1, 1500)


def test_nothing_to_measure_or_nothing_set_never_breaches():
    assert daily_loss_breach(account("50000", last=None), 1, 100) is None
    assert daily_loss_breach(account("50000"), None, None) is None
    assert daily_loss_breach(account("100000"), 0, 0) is None  # no loss: even a zero limit holds
    assert daily_loss_breach(account("99999.99"), None, 0) is not None
    assert daily_loss(account("99000")) == Decimal(1000) and daily_loss(account("1", last=None)) is None


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="max_daily_loss_usd"):
        daily_loss_breach(account("99000"), None, -1)
