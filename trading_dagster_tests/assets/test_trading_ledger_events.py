"""The trading assets' handling of the broker's ledger events: the cash they move for the equity check, and the
alert a delisted close or a rename raises (a person should know the book sold something no signal asked for)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import polars as pl

from trading_dagster.assets.trading import alert_ledger_events, ledger_cash_movements
from trading_dagster.domain.orders import EXECUTION_SCHEMA
from trading_dagster.resources.alerts import AlertsResource

D = dt.date(2017, 11, 13)
EVENTS = pl.DataFrame(
    [
        (D, "split-20171113-AAA", "AAA", None, "split", D, 151, 1.5, 0.0),
        (D, "cash-in-lieu-20171113-AAA", "AAA", "sell", "cash_in_lieu", D, 0, 15.0, 0.0),
        (D, "delisted-20171113-DAVE", "DAVE", "sell", "delisted_close", dt.date(2017, 11, 10), 100, 3.6827, 0.0),
        (D, "td-20171110-BBB-0123456789abcdef", "BBB", "buy", "filled", dt.date(2017, 11, 10), 2, 10.0, 0.01),
    ],
    schema=EXECUTION_SCHEMA,
    orient="row",
)


def test_ledger_cash_movements_are_cash_in_lieu_and_delisted_closes():
    assert ledger_cash_movements(EVENTS).rows() == [(D, 15.0), (D, 368.27)]
    assert ledger_cash_movements(EVENTS.clear()).is_empty()


def test_a_delisted_close_is_alerted_and_a_split_only_logged(tmp_path):
    alerts = AlertsResource(jsonl_path=str(tmp_path / "alerts.jsonl"))
    alert_ledger_events(dg.build_asset_context(), alerts, EVENTS)
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["kind"], a["key"], a["severity"]) for a in lines] == [
        ("delisted_close", "delisted_close:DAVE:2017-11-13", "WARNING")
    ]
    assert "100 shares closed at their last close $3.6827" in lines[0]["text"]
