"""numba (and llvmlite, and the `coverage` package numba imports) is loaded only when a sweep, a walk-forward or
a threshold sweep runs: never by a process that loads the code location (a daily run worker) or imports the
research modules, and the kernels keep their compile options (research/kernels.py)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

RESEARCH_MODULES = (
    "trading_dagster.assets.research",
    "trading_dagster.assets.walk_forward",
    "trading_dagster.assets.ml",
    "trading_dagster.research.sweep",
    "trading_dagster.research.threshold_sweep",
    "trading_dagster.research.walk_forward",
    "trading_dagster.research.ml",
    "trading_dagster.research.ml_compare",
)
NEVER_AT_LOAD = ("numba", "llvmlite")


def _loaded_after(code: str, tmp_path: Path) -> list[str]:
    """The top-level packages of NEVER_AT_LOAD (and coverage, unless this run measures coverage) that a fresh
    Python process holds after `code`."""
    watched = set(NEVER_AT_LOAD)
    if not any(k.startswith(("COV_CORE", "COVERAGE_")) for k in os.environ):
        watched.add("coverage")
    script = (
        "import sys, warnings; warnings.filterwarnings('ignore'); "
        f"{code}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(watched)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "TRADING_DAGSTER_DATA_DIR": str(tmp_path / "data")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])  # a printed list of names


def test_loading_the_definitions_imports_no_numba(tmp_path):
    """What a daily run worker does before its run: import the code location, build it, resolve the job."""
    code = (
        "from trading_dagster.definitions import defs; d = defs(); d.resolve_job_def('pipeline_job'); "
        "d.resolve_asset_graph()"
    )
    assert _loaded_after(code, tmp_path) == []


def test_importing_the_research_modules_imports_no_numba(tmp_path):
    code = "; ".join(f"import {m}" for m in RESEARCH_MODULES)
    assert _loaded_after(code, tmp_path) == []


def test_a_sweep_loads_numba_when_it_runs(tmp_path):
    """The check above is not vacuous: the same kind of process holds numba once a kernel has run."""
    code = (
        "import numpy as np; from trading_dagster.research.sweep import Bars, anchored_sma; "
        "b = Bars([], ['A'], np.array([0, 3]), np.arange(3), np.arange(3), np.ones(3), np.ones(3)); "
        "anchored_sma(b, 2)"
    )
    assert set(NEVER_AT_LOAD) <= set(_loaded_after(code, tmp_path))


def test_the_kernels_keep_their_compile_options():
    from numba.core.caching import NullCache

    from trading_dagster.research import kernels

    plain = {"nopython": True, "boundscheck": None}  # what @numba.njit(cache=True) gives
    options = {
        "_kernel": {**plain, "parallel": True},
        "_event_kernel": {**plain, "parallel": True},
        "_sma_anchored": plain,
        "_floor_qty": plain,
    }
    for name, wanted in options.items():
        dispatcher = getattr(kernels, name)
        assert not isinstance(dispatcher._cache, NullCache), f"{name}: cache=True"
        assert dispatcher.targetoptions == wanted, name
    assert kernels._floor_qty(7.9, False) == 7.0
    assert kernels._floor_qty(0.1234567891234, True) == np.floor(0.1234567891234 * 1e9) / 1e9
