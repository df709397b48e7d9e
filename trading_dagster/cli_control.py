"""`trading-dagster approve | kill-switch | flatten`: the humans-in-the-loop commands (issue 9).

    trading-dagster approve D ID.. | --all [--refuse] [--actor NAME] [--reason TEXT]
    trading-dagster kill-switch on|off|status [--actor NAME] [--reason TEXT]
    trading-dagster flatten --yes [--timeout SECONDS] [--poll-interval SECONDS] [--actor NAME] [--reason TEXT]

Each handler calls the function the control job's op calls (`automation/control.py`), with the ledger,
broker and alerts the definitions bind (resource keys `ledger`, `broker`, `alerts`). `cli.py` registers
them with `add_control_commands(subparsers)`. Exit codes: 0 done, 1 refused or not flat, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trading_dagster.automation.control import (
    DEFAULT_FLATTEN_TIMEOUT_SECONDS,
    DEFAULT_POLL_INTERVAL_SECONDS,
    ControlError,
    decide_orders,
    flatten_account,
    switch_kill,
)
from trading_dagster.domain.approval import DEFAULT_DEADLINE_NY

if TYPE_CHECKING:
    from trading_dagster.resources.alerts import AlertSink
    from trading_dagster.resources.brokers.base import Broker
    from trading_dagster.resources.ledger import TradingLedger


class PrintLog:
    """What the control functions log, for a person at a terminal: info to stdout, the rest to stderr."""

    def info(self, message: str) -> None:
        print(message, flush=True)

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)


@dataclass
class ControlEnv:
    """What the commands act on. `open_broker` is called only by `flatten` (approve and the kill switch
    never reach the broker)."""

    ledger: TradingLedger
    open_broker: Callable[[], Broker]
    alerts: AlertSink | None = None
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    sleep: Callable[[float], None] = time.sleep
    deadline_ny: str = DEFAULT_DEADLINE_NY


def load_control_env() -> ControlEnv:
    """The ledger, broker and alerts of the definitions the settings build (EnvVar secrets resolved)."""
    from trading_dagster.definitions import build_definitions
    from trading_dagster.settings import load_settings

    resources = build_definitions(load_settings()).resources
    ledger = resources["ledger"].process_config_and_initialize().get()
    alerts = resources["alerts"].process_config_and_initialize().sink(PrintLog())
    broker = resources["broker"]
    return ControlEnv(ledger=ledger, open_broker=lambda: broker.process_config_and_initialize().get(), alerts=alerts)


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return args.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def cmd_approve(args: argparse.Namespace, env: ControlEnv | None = None) -> int:
    if bool(args.ids) == bool(args.all):
        print("name the client order ids to decide, or --all (every order of the session pending approval)",
              file=sys.stderr)
        return 2
    env = env or load_control_env()
    try:
        result = decide_orders(
            env.ledger, args.session, [] if args.all else args.ids, "refuse" if args.refuse else "approve",
            _actor(args), args.reason, now=env.now(), deadline_ny=env.deadline_ny,
        )
    except (ControlError, ValueError) as exc:  # ValueError: no session after D in the calendar
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def cmd_kill_switch(args: argparse.Namespace, env: ControlEnv | None = None) -> int:
    env = env or load_control_env()
    if args.state == "status":
        print(env.ledger.kill_switch().describe())
        return 0
    try:
        state = switch_kill(
            env.ledger, args.state == "on", _actor(args), args.reason, now=env.now(), alerts=env.alerts,
            log=PrintLog(),
        )
    except ControlError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0 if state.engaged == (args.state == "on") else 1


def cmd_flatten(args: argparse.Namespace, env: ControlEnv | None = None) -> int:
    if not args.yes:
        print("flatten cancels every open order and closes every position of the trading account at market: "
              "add --yes to do it", file=sys.stderr)
        return 2
    env = env or load_control_env()
    try:
        with env.open_broker() as broker:
            report = flatten_account(
                broker, env.ledger, actor=_actor(args), reason=args.reason, timeout_seconds=args.timeout,
                poll_interval_seconds=args.poll_interval, alerts=env.alerts, log=PrintLog(), now=env.now,
                sleep=env.sleep,
            )
    except ControlError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    return 0 if report.flat else 1


def add_control_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `approve`, `kill-switch` and `flatten` on the `trading-dagster` parser's subparsers."""
    actor_help = "who you are, for the audit log (default: your login name)"
    p = subparsers.add_parser("approve", help="approve (or --refuse) orders of a session pending approval")
    p.add_argument("session", type=dt.date.fromisoformat, help="the signal session D, YYYY-MM-DD")
    p.add_argument("ids", nargs="*", metavar="CLIENT_ORDER_ID", help="the orders to decide")
    p.add_argument("--all", action="store_true", help="every order of D pending approval")
    p.add_argument("--refuse", action="store_true", help="refuse instead of approve")
    p.add_argument("--actor", help=actor_help)
    p.add_argument("--reason", default="", help="why, for the audit log")
    p.set_defaults(func=cmd_approve)
    p = subparsers.add_parser("kill-switch", help="engage (on) or release (off) the kill switch, or show it")
    p.add_argument("state", choices=["on", "off", "status"])
    p.add_argument("--actor", help=actor_help)
    p.add_argument("--reason", default="", help="why, for the audit log and the alert")
    p.set_defaults(func=cmd_kill_switch)
    p = subparsers.add_parser(
        "flatten", help="kill switch on, cancel every order, close every position, wait until flat"
    )
    p.add_argument("--yes", action="store_true", help="yes, close the whole account")
    p.add_argument("--timeout", type=float, default=DEFAULT_FLATTEN_TIMEOUT_SECONDS,
                   help="seconds to wait for the closing orders to fill (default %(default)s)")
    p.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL_SECONDS,
                   help="seconds between polls of the account (default %(default)s)")
    p.add_argument("--actor", help=actor_help)
    p.add_argument("--reason", default="", help="why, for the audit log and the alert")
    p.set_defaults(func=cmd_flatten)
