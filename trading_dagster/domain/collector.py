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
        with collector_off():
            return fn(*args, **kwargs)

    return paused


@contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic collector off inside (when it was on), then as it was, also after an error: for a block
    that creates many objects that outlive it (a large library's import), which full collections would
    otherwise walk each time the heap grows by a quarter while they are being created."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """`collector_off`, then every object alive moved to the permanent generation (`gc.freeze`), which later
    collections skip: for a process's start-up (the code location's imports and definitions), the
    disable / freeze pattern Python's documentation recommends for long-lived start-up objects. Only where
    nothing else is alive yet: a frozen object that later becomes cyclic garbage is never freed (a run's
    frames caught in a cycle would be, so GX's import, which comes in the middle of a run, is only
    `collector_off`). Import-time cyclic garbage (~600 objects for the definitions) stays."""
    with collector_off():
        try:
            yield
        finally:
            gc.freeze()
