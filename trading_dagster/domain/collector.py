"""Python's cyclic garbage collector paused for the length of a bulk call (`collector_paused`).

A full collection walks every tracked container alive in the process. A ten-year backtest's book and its
mark-to-market create a few hundred thousand records (orders, fills, events, their rows) that live for the stage,
and the full collections their allocations trigger walked them, and everything imported, again and again: about
a sixth of the executions stage and a fifth of P&L on the full dataset (benchmarks/README.md). These calls make no
reference cycles (a whole backtest run with the collector off leaves nothing for `gc.collect()` to find; a test
keeps it so), so reference counting frees all they drop, and pausing the collector inside them changes no memory
and no result. It is restored on the way out, error or not, and a collector someone else turned off stays off.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def collector_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` run with the cyclic garbage collector off (when it was on), then on again."""

    @functools.wraps(fn)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused
