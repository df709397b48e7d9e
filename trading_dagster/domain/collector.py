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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """The collector off inside (when it was on), then every object alive moved to the permanent
    generation (`gc.freeze`): for a block that creates objects that live as long as the process (imports
    of a large library, the code location's definitions). Full collections otherwise walk them again each
    time the heap grows by a quarter while they are being created, and again later; Python's documentation
    recommends this disable / freeze pattern for a process's long-lived start-up objects. Cyclic garbage made
    inside is not freed (reference counting still frees the rest): import-time garbage, a few objects."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_on:
            gc.enable()
