"""Great Expectations 1.x suites per pipeline stage, run on polars frames: `validate(stage, df, **params)`.

The suites (`SUITES`) are data: GX expectation configurations in GX's own `{"type", "kwargs"}` shape, one list
per stage (raw, cleaned, indicators, signals, orders), with `{"$PARAMETER": name}` placeholders (GX's syntax)
for what a run supplies: the partition's `sessions`, the configured `strategies`. `validate` returns the same
`CheckOutcome` as the polars rules in `rules.py`, so an asset check wraps it the same way.

GX is called directly (dagster-ge supports GX 0.x only): one ephemeral context per process, a pandas data
source, a whole-dataframe batch built from the polars frame through Arrow (`to_pandas`, which encodes dtypes so
GX's type checks tell Date from Datetime and Float64 from Float32, and its range checks stay vectorised). GX is
imported on first use, never at module import, with `GX_ANALYTICS_ENABLED=false` and two of its imports
deferred (`DEFERRED_IMPORTS`: import 3.3 s -> 1.9 s on a quiet machine; `warm_up()` pays it up front).

Measured with `benchmarks/gx_checks.py` (shared 2-core machine, load average 1-4, so +-50 %; seconds, best of 3;
frames: the shared 2008-2017 file, one session = 2017-11-10, full = all 2,485 sessions):

    stage        rows (one / full)     polars rules     GX whole suite    split          expectations
    raw          1,897 / 3,816,969     0.001 / 0.75     0.14 / 4.7        0.05 / 1.0     17
    cleaned      1,897 / 3,816,919     0.002 / 0.45     0.28 / 6.2        0.05 / 1.0     27
    indicators   1,897 / 3,816,919     0.001 / 1.1      0.27 / 16.4       0.06 / 0.5     38
    signals      1,045 / 2,158,273     0.001 / 0.20     0.13 / 8.0        0.06 / 0.35    18
    orders       1,045 / 2,158,273     0.001 / 0.11     0.35 / 14.5       0.12 / 0.35    31

(A busier run gave up to 2-3x these; "polars rules" are the rules.py checks covering the same ground, which
check less: no schema, no types, fewer ranges.) What the figures say:

* GX costs a fixed ~0.1-0.35 s per suite (its metric-graph machinery, ~10 ms per expectation) plus time per
  row. Even for a daily partition the whole suite in GX is 1.2 s of a daily run's five stages, against
  0.35 s for the split below (one session: 0.14 / 0.28 / 0.27 / 0.13 / 0.35 s against 0.05 / 0.05 / 0.06 /
  0.06 / 0.12 s), so "auto" splits at every size; `engine="gx"` still runs the whole suite in GX.
* On the ten-year window GX takes 5-16 s, more than "a few seconds", because GX fingerprints the pandas
  frame twice per call (`hash_pandas_object`, ~1.5 s on 3.8 M rows), copies it for each metric, and works
  column by column in pandas. It was 22-45 s on cleaned before `to_pandas` kept floats as numpy (GX runs a
  Python function per value for a range check on any other dtype) and handed pandas consolidated blocks.
* Per-session chunks are worse: 2,485 GX calls x ~0.2 s = ~500 s.
* So larger frames are split: GX still evaluates the schema (columns, types) and the value sets of up to 100
  values (side, status, strategy, reason code, a window of up to 100 sessions) on a tiny frame of the same
  schema holding each set-checked column's distinct values; polars evaluates the row-wise expectations
  (nulls, ranges, column pairs, uniqueness, regex, conditional ones, and larger sets: the 2,485 sessions of
  the full window alone cost GX ~1.5 s of re-serialising its kwargs) with GX's pandas semantics: nulls are not evaluated, a NaN fails a range, the unexpected % is of
  the evaluated values. The split costs 0.35-1 s on the full frames, in line with the polars rules.
  The tests run every bad frame through both engines and require the same failed expectations and counts.

A NaN is "missing" to GX in a numpy float column, so `to_pandas` sends a column that holds a NaN as an Arrow
float, where NaN is a value and fails ranges. Rules GX has no expectation for (an order id's date equals its
session, the monthly share quota, executions matching orders) stay in rules.py.

In an asset check (the asset yields it next to the rules.py checks; `check_result` is assets/_common.py's):

    outcome = gx_suites.validate("cleaned", cleaned, sessions=window_sessions(context))
    yield check_result(CLEANED, "cleaned_prices__gx_suite", outcome)

The raw suite's value expectations are "warning" (clean_prices quarantines those rows): when only warnings
failed, `metadata["severity"]` is "warning", so the raw check should be non-blocking or map that to WARN.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from trading_dagster.checks.rules import EXAMPLES, CheckOutcome, keys_proven_unique
from trading_dagster.domain.bars import CLEAN_SCHEMA, PRICE_COLUMNS, RAW_SCHEMA
from trading_dagster.domain.collector import collector_off
from trading_dagster.domain.indicators import OUTPUT_SCHEMA as INDICATOR_SCHEMA
from trading_dagster.domain.orders import ID_PREFIX, ORDER_SCHEMA, SIDES
from trading_dagster.domain.risk import REASON_CODES
from trading_dagster.domain.strategies import SIGNAL_SCHEMA

Engine = Literal["auto", "gx", "split"]

# --------------------------------------------------------------------------------------------------------
# Suites as data. Each entry is a GX expectation configuration ({"type", "kwargs"}, GX's JSON shape) plus
# GX's "severity" ("critical" | "warning"). {"$PARAMETER": name} is filled from validate's keyword
# parameters; passing None for one skips the expectations that use it (named in the metadata).
# --------------------------------------------------------------------------------------------------------

Expectation = dict[str, Any]


def _x(expectation_type: str, /, *, severity: str = "critical", **kwargs: Any) -> Expectation:
    return {"type": expectation_type, "kwargs": kwargs, "severity": severity}


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _where(column: str, value: str) -> dict[str, Any]:
    """GX row condition `Column(column) == value`, in GX's serialized form."""
    return {"type": "comparison", "column": {"name": column}, "operator": "==", "parameter": value}


def _gx_type(dtype: pl.DataType) -> str:
    """The `type_` GX's pandas type check accepts for this polars dtype once through `to_pandas`."""
    if dtype == pl.String:
        return "str"
    if dtype == pl.Float64:
        return "float"  # numpy float64, or Arrow float64 when the column holds a NaN
    if dtype == pl.Int64:
        return "int64"
    if dtype == pl.Date:
        return "datetime64"
    raise ValueError(f"no GX type for {dtype}")


def _schema(schema: Mapping[str, pl.DataType]) -> list[Expectation]:
    """Exactly these columns (in any order), each of its polars dtype."""
    return [
        _x("expect_table_columns_to_match_set", column_set=list(schema), exact_match=True),
        *(_x("expect_column_values_to_be_of_type", column=c, type_=_gx_type(t)) for c, t in schema.items()),
    ]


def _not_null(columns: Iterable[str]) -> list[Expectation]:
    return [_x("expect_column_values_to_not_be_null", column=c) for c in columns]


def _positive(columns: Iterable[str], severity: str = "critical") -> list[Expectation]:
    """> 0 where not null."""
    return [
        _x("expect_column_values_to_be_between", column=c, min_value=0, strict_min=True, severity=severity)
        for c in columns
    ]


def _at_least(a: str, b: str) -> Expectation:
    """a >= b on every row where both are present."""
    return _x(
        "expect_column_pair_values_a_to_be_greater_than_b",
        column_A=a,
        column_B=b,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )


def _unique(*columns: str, severity: str = "critical") -> Expectation:
    return _x(
        "expect_compound_columns_to_be_unique",
        column_list=list(columns),
        ignore_row_if="never",
        severity=severity,
    )


def _in_window(column: str) -> Expectation:
    """Every row's session is one of the partition's sessions (a run's time window)."""
    return _x("expect_column_values_to_be_in_set", column=column, value_set=_param("sessions"))


SUITES: dict[str, list[Expectation]] = {
    "raw": [
        *_schema(RAW_SCHEMA),
        *_not_null(["symbol", "date"]),
        _in_window("date"),
        # What a good vendor sends. A bad bar here is not yet an error: clean_prices quarantines it with a
        # reason code and de-duplicates, so these are "warning" (the outcome fails, with severity "warning").
        *_positive(PRICE_COLUMNS, severity="warning"),
        _x("expect_column_values_to_be_between", column="volume", min_value=0, severity="warning"),
        _unique("symbol", "date", severity="warning"),
    ],
    "cleaned": [
        *_schema(CLEAN_SCHEMA),
        *_not_null(CLEAN_SCHEMA),
        _in_window("session"),
        *_positive(PRICE_COLUMNS),
        _x("expect_column_values_to_be_between", column="volume", min_value=0),
        _at_least("high", "low"),
        _at_least("high", "open"),
        _at_least("open", "low"),
        _at_least("high", "close"),
        _at_least("close", "low"),
        _unique("symbol", "session"),
    ],
    "indicators": [
        *_schema(INDICATOR_SCHEMA),
        *_not_null(["symbol", "session", "close"]),
        _in_window("session"),
        _x("expect_column_values_to_be_between", column="rsi_14", min_value=0, max_value=100),
        # a percent, not a fraction: (high_52w - close) / high_52w * 100 (docs/design.md)
        _x("expect_column_values_to_be_between", column="pct_below_high_52w", min_value=0, max_value=100),
        *_positive(
            ["close", "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "bb_middle", "bb_upper", "high_52w"]
        ),
        _x("expect_column_values_to_be_between", column="atr_14", min_value=0),
        _at_least("bb_upper", "bb_middle"),
        _at_least("bb_middle", "bb_lower"),
        _unique("symbol", "session"),
    ],
    "signals": [
        *_schema(SIGNAL_SCHEMA),
        *_not_null(SIGNAL_SCHEMA),
        _in_window("session"),
        _x("expect_column_values_to_be_in_set", column="side", value_set=list(SIDES)),
        _x("expect_column_values_to_be_between", column="strength", min_value=0, max_value=1),
        _x("expect_column_values_to_be_in_set", column="strategy", value_set=_param("strategies")),
        _unique("session", "symbol", "strategy"),
    ],
    "orders": [
        *_schema(ORDER_SCHEMA),
        *_not_null(c for c in ORDER_SCHEMA if c not in ("ref_price", "reason_code", "notional")),
        _in_window("session"),
        _x("expect_column_values_to_be_in_set", column="side", value_set=list(SIDES)),
        _x("expect_column_values_to_be_in_set", column="status", value_set=["approved", "denied"]),
        _x("expect_column_values_to_be_in_set", column="strategy", value_set=_param("strategies")),
        _x("expect_column_values_to_be_in_set", column="reason_code", value_set=list(REASON_CODES)),
        _x(
            "expect_column_values_to_be_between",
            column="qty",
            min_value=1,
            row_condition=_where("status", "approved"),
        ),
        _x(
            "expect_column_values_to_be_between",
            column="qty",
            min_value=0,
            max_value=0,
            row_condition=_where("status", "denied"),
        ),
        _x(
            "expect_column_values_to_not_be_null",
            column="reason_code",
            row_condition=_where("status", "denied"),
        ),
        _at_least("requested_qty", "qty"),
        *_positive(["ref_price"]),
        _x("expect_column_values_to_be_unique", column="client_order_id"),
        # orders.client_order_id: td-YYYYMMDD-<up to 12 of the symbol's alnum . - characters>-<16 hex of sha256>
        _x(
            "expect_column_values_to_match_regex",
            column="client_order_id",
            regex=rf"^{ID_PREFIX}-[0-9]{{8}}-[A-Za-z0-9.\-]{{0,12}}-[0-9a-f]{{16}}$",
        ),
    ],
}

PARAMS: dict[str, tuple[str, ...]] = {
    "raw": ("sessions",),
    "cleaned": ("sessions",),
    "indicators": ("sessions",),
    "signals": ("sessions", "strategies"),
    "orders": ("sessions", "strategies"),
}
"""The keyword parameters each stage requires: `sessions` (sequence of dates), `strategies` (names or
StrategySpecs). None skips the expectations that use the parameter."""

_TABLE_LEVEL = {"expect_table_columns_to_match_set", "expect_column_values_to_be_of_type"}

_QTY_COLUMNS = {"orders": ("requested_qty", "qty")}
"""The quantity columns of a stage: Int64 with whole shares, Float64 with fractional ones (`[backtest] shares`,
domain/quantity.py)."""


def for_frame(stage: str, expectations: list[Expectation], df: pl.DataFrame) -> list[Expectation]:
    """The expectations for `df`'s share rule: a frame of fractional shares (a float quantity column) has its
    quantity columns typed float, and an approved order's qty must be > 0 rather than >= 1. A whole-share frame
    gets the suite unchanged (same labels either way)."""
    if stage == "indicators":
        return _with_extra_smas(expectations, df)
    columns = [c for c in _QTY_COLUMNS.get(stage, ()) if c in df.columns]
    if not any(df.schema[c].is_float() for c in columns):
        return expectations
    out = []
    for exp in expectations:
        kw = exp["kwargs"]
        if exp["type"] == "expect_column_values_to_be_of_type" and kw["column"] in columns:
            exp = {**exp, "kwargs": {**kw, "type_": "float"}}
        elif exp["type"] == "expect_column_values_to_be_between" and kw.get("column") == "qty" and kw.get("min_value") == 1:
            exp = {**exp, "kwargs": {**kw, "min_value": 0, "strict_min": True}}
        out.append(exp)
    return out


_EXTRA_SMA = re.compile(r"sma_\d+")


def _with_extra_smas(expectations: list[Expectation], df: pl.DataFrame) -> list[Expectation]:
    """The indicators suite for a table that also carries the SMAs of the configured crosses (`sma_<n>`
    beyond 20/50/200) and their marker (`sma_extra`): those columns are expected, typed, and an SMA > 0."""
    from trading_dagster.domain.indicators import SMA_MARKER

    extra = [c for c in df.columns if c not in INDICATOR_SCHEMA and _EXTRA_SMA.fullmatch(c)]
    marker = [SMA_MARKER] if SMA_MARKER in df.columns else []
    if not extra and not marker:
        return expectations
    schema = {**INDICATOR_SCHEMA, **{c: pl.Float64() for c in extra}, **{c: pl.Utf8() for c in marker}}
    out = [e for e in expectations if e["type"] != "expect_table_columns_to_match_set"]
    return [*_schema(schema)[:1], *out, *_schema({c: schema[c] for c in (*extra, *marker)})[1:], *_positive(extra)]


def label(exp: Expectation) -> str:
    """How an expectation is named in the outcome: GX type, its columns, and its row condition if any."""
    kw = exp["kwargs"]
    if "column" in kw:
        args = kw["column"]
    elif "column_list" in kw:
        args = ", ".join(kw["column_list"])
    elif "column_A" in kw:
        args = f"{kw['column_A']}, {kw['column_B']}"
    else:
        args = ""
    where = kw.get("row_condition")
    suffix = f" where {where['column']['name']} {where['operator']} {where['parameter']}" if where else ""
    return f"{exp['type']}({args}){suffix}"


def _params_of(exp: Expectation) -> set[str]:
    return {v["$PARAMETER"] for v in exp["kwargs"].values() if isinstance(v, dict) and "$PARAMETER" in v}


def resolve(stage: str, params: Mapping[str, Any]) -> tuple[list[Expectation], list[str]]:
    """The stage's expectations with their parameters filled in, and the labels of those skipped."""
    if stage not in SUITES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(SUITES)}")
    unknown, missing = sorted(set(params) - set(PARAMS[stage])), sorted(set(PARAMS[stage]) - set(params))
    if unknown or missing:
        raise TypeError(
            f"validate({stage!r}): unknown parameters {unknown}, missing {missing}; "
            f"give {list(PARAMS[stage])} (None skips the expectations that use one)"
        )
    values = {
        name: None if v is None else [getattr(s, "name", s) for s in v]  # StrategySpec -> its name
        for name, v in params.items()
    }
    out, skipped = [], []
    for exp in SUITES[stage]:
        if any(values[n] is None for n in _params_of(exp)):
            skipped.append(label(exp))
            continue
        kwargs = {
            k: values[v["$PARAMETER"]] if isinstance(v, dict) and "$PARAMETER" in v else v
            for k, v in exp["kwargs"].items()
        }
        out.append({**exp, "kwargs": kwargs})
    return out, skipped


# --------------------------------------------------------------------------------------------------------
# polars -> pandas, and the process's one GX context
# --------------------------------------------------------------------------------------------------------


def to_pandas(df: pl.DataFrame) -> Any:
    """The frame as pandas through Arrow, encoded so GX's pandas type check sees polars' dtypes and GX's range
    checks stay vectorised. GX compares `dtype.type` with the expected type name, so:

    * String -> pd.StringDtype("pyarrow") (`str`). Object strings would cost ~8 s on 3.8 M rows, this ~0.2 s.
    * Float64 -> numpy float64: GX vectorises range and pair checks only for numpy int/float columns and
      calls a Python function per value otherwise (~5 s per column on 3.8 M rows). A NaN in numpy is a
      missing value to GX, so a column holding a NaN goes as pd.ArrowDtype(float64) instead, where NaN is
      a value and fails ranges (slow path, but only for a frame that is already wrong). Both are `float`.
    * IntN -> numpy intN without nulls, pandas nullable IntN with nulls (`.type` numpy.intN for both).
    * Date -> numpy datetime64[ms] (`datetime64`); Datetime -> pd.ArrowDtype(timestamp), whose `.type`
      `datetime` fails where a Date belongs; Float32 stays numpy float32 and fails `float` too.
    """
    import pandas as pd
    import pyarrow as pa

    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    with_nulls = (
        {c for c, n in zip(df.columns, df.null_count().row(0), strict=True) if n} if df.width else set()
    )
    with_nan = {c for c in df.columns if df[c].dtype == pl.Float64 and df[c].is_nan().any()}
    table = df.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string, never string_view
    numpy_cols, extension = [], {}
    for name in table.column_names:
        t = table.schema.field(name).type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            extension[name] = pd.StringDtype("pyarrow")
        elif t in nullable and (name in with_nulls or t == pa.bool_()):
            extension[name] = nullable[t]
        elif (t == pa.float64() and name in with_nan) or pa.types.is_timestamp(t):
            extension[name] = pd.ArrowDtype(t)
        else:
            numpy_cols.append(name)
    # numpy columns in one call, so pandas holds them as consolidated blocks: GX copies the frame for every
    # metric, and an unconsolidated frame is re-consolidated on each copy (~5 s on 3.8 M rows).
    out = table.select(numpy_cols).to_pandas(date_as_object=False)
    for name, dtype in extension.items():
        out[name] = table.column(name).to_pandas(types_mapper=lambda _t, d=dtype: d)
    return out


_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()
_ENGINE: tuple[Any, Any] | None = None
_IMPORT_SECONDS: list[float] = []  # the first use's import + context cost, reported once in the metadata


DEFERRED_IMPORTS = ("scipy.stats", "altair", "boto3", "jsonschema", "mistune", "tzlocal")
"""Modules GX imports at its own import for what this project never uses through it (KL divergence and KS
tests, their charts, S3 data sources, schema rendering, local time zones): ~1.7 s of GX's ~3.3 s import, in
every run worker. `_defer` puts a stand-in in their place that imports the real module on first use, so
nothing breaks when something does use them (our S3 raw store uses boto3: its first call imports it)."""


class _Deferred(types.ModuleType):
    """Stands in for a module until an attribute is asked for, then imports the real one and takes its
    attributes. (importlib.util.LazyLoader does not help on 3.11: the import system reads `__spec__` of a
    module it finds in sys.modules, which makes LazyLoader load it on the spot.)"""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        parent, _, child = name.rpartition(".")
        if parent and sys.modules[parent].__dict__.get(child) is self:
            delattr(sys.modules[parent], child)
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def _defer(names: Iterable[str]) -> None:
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        if parent:
            importlib.import_module(parent)
        stub = _Deferred(name)
        sys.modules[name] = stub
        if parent:  # `from scipy import stats` finds it without going through scipy's lazy __getattr__
            setattr(sys.modules[parent], child, stub)


def _gx() -> tuple[Any, Any]:
    """(great_expectations module, whole-dataframe batch definition) of the process's ephemeral context."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            started = time.perf_counter()
            os.environ["GX_ANALYTICS_ENABLED"] = "false"  # before the import: no usage statistics
            _defer(DEFERRED_IMPORTS)
            # GX's import creates ~150,000 long-lived objects (its pydantic classes): no full collection while
            # they are made (domain/collector.py; not frozen after: this runs in the middle of a run)
            with collector_off():
                import great_expectations as gx
                from great_expectations.data_context.types.base import ProgressBarsConfig

                context = gx.get_context(mode="ephemeral")
                context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars on stderr
                batch_definition = (
                    context.data_sources.add_pandas("trading_dagster_frames")
                    .add_dataframe_asset("frame")
                    .add_batch_definition_whole_dataframe("whole_frame")
                )
            _ENGINE = (gx, batch_definition)
            _IMPORT_SECONDS.append(time.perf_counter() - started)
        return _ENGINE


def warm_up() -> float:
    """Import GX and build the context now (a test fixture, a long-lived process), not in the first check.
    Returns the seconds it took (0 if already done)."""
    _gx()
    return _IMPORT_SECONDS.pop() if _IMPORT_SECONDS else 0.0


# --------------------------------------------------------------------------------------------------------
# Engines. Both give one _Result per expectation; row indices refer to the polars frame.
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Result:
    exp: Expectation
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    rows: pl.Series | None = None  # UInt32 row indices of the unexpected rows
    observed: str | None = None  # table-level expectations: what was found
    error: str | None = None  # not evaluated (missing column, wrong type)


_RESULT_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


def _run_gx(pdf: Any, expectations: list[Expectation]) -> dict[str, Any]:
    """Validate `pdf` against `expectations` in GX; GX's result per expectation label."""
    if not expectations:
        return {}
    gx, batch_definition = _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = gx.ExpectationSuite(
        name="trading_dagster",
        expectations=[
            ExpectationConfiguration(
                type=e["type"],
                kwargs=_for_pandas(e["kwargs"]),
                meta={"label": label(e)},
                severity=e["severity"],
            ).to_domain_obj()
            for e in expectations
        ],
    )
    with _RUN_LOCK:  # one validation at a time through the shared context (GX does not say it is thread-safe)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": pdf})
        result = batch.validate(suite, result_format=_RESULT_FORMAT)
    return {r.expectation_config.meta["label"]: r for r in result.results}


def _for_pandas(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Dates in a value set as numpy datetime64[ms], the dtype of a Date column in pandas (see to_pandas)."""
    import numpy as np

    out = dict(kwargs)
    if "value_set" in out:
        out["value_set"] = [
            np.datetime64(v, "ms") if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else v
            for v in out["value_set"]
        ]
    return out


def _from_gx(exp: Expectation, r: Any) -> _Result:
    res = r.result or {}
    out = _Result(exp, bool(r.success))
    if r.success:
        return out
    if r.exception_info.get("raised_exception"):
        out.error = f"not evaluated: {str(r.exception_info.get('exception_message'))[:300]}"
    elif not res:  # GX returns an empty result for a missing column
        out.error = "not evaluated: column missing"
    elif "unexpected_count" not in res:  # table level
        details = (res.get("details") or {}).get("mismatched")
        out.observed = str(details or res.get("observed_value"))
        if exp["type"] == "expect_column_values_to_be_of_type":
            out.observed = f"{res.get('observed_value')}, expected {exp['kwargs']['type_']}"
    else:
        out.unexpected_count = int(res["unexpected_count"])
        out.unexpected_percent = float(res.get("unexpected_percent") or 0.0)
        out.rows = pl.Series(res.get("unexpected_index_list") or [], dtype=pl.UInt32)
    return out


def _gx_engine(df: pl.DataFrame, expectations: list[Expectation]) -> list[_Result]:
    results = _run_gx(to_pandas(df), expectations)
    return [_from_gx(e, results[label(e)]) for e in expectations]


_GX_MAX_SET = 100
"""Largest value set the split sends to GX. GX re-serialises an expectation's kwargs hundreds of times per
validation, so a set of a window's 2,485 sessions costs it ~1.5 s of pydantic work whatever the frame size."""


def _is_distinct_set(exp: Expectation) -> bool:
    """An unconditional value-set expectation with a small set: the split runs it in GX on distinct values."""
    kw = exp["kwargs"]
    return (
        exp["type"] == "expect_column_values_to_be_in_set"
        and "row_condition" not in kw
        and len(kw["value_set"]) <= _GX_MAX_SET
    )


def _split_engine(df: pl.DataFrame, expectations: list[Expectation]) -> list[_Result]:
    """GX for schema, types and value sets on a small frame of the same schema; polars for the rows."""
    in_gx = [e for e in expectations if e["type"] in _TABLE_LEVEL or _is_distinct_set(e)]
    set_columns = {
        e["kwargs"]["column"] for e in in_gx if _is_distinct_set(e) and e["kwargs"]["column"] in df.columns
    }
    distinct = {c: df[c].unique(maintain_order=True) for c in set_columns}
    n = max((s.len() for s in distinct.values()), default=0)
    # each set-checked column holds its distinct values (padded with nulls, which GX does not evaluate);
    # the other columns are all null, of their own dtype, so the schema GX sees is the frame's schema
    small = pl.DataFrame(
        [
            distinct[c].extend_constant(None, n - distinct[c].len())
            if c in distinct
            else pl.Series(c, [None] * n, dtype=t)
            for c, t in df.schema.items()
        ],
        schema=df.schema,
    )
    gx_results = _run_gx(to_pandas(small), in_gx)
    in_polars = {label(r.exp): r for r in _polars_results(df, [e for e in expectations if e not in in_gx])}
    out = []
    for exp in expectations:
        if exp in in_gx:
            r = _from_gx(exp, gx_results[label(exp)])
            if _is_distinct_set(exp) and r.rows is not None:  # distinct values -> the rows holding them
                column = exp["kwargs"]["column"]
                bad_values = distinct[column].gather(r.rows)
                mask = (
                    df[column].is_in(bad_values.implode())
                    if bad_values.len()
                    else pl.repeat(False, df.height, eager=True)
                )
                r.rows = mask.arg_true()
                r.unexpected_count = r.rows.len()
                present = df.height - df[column].null_count()
                r.unexpected_percent = 100.0 * r.unexpected_count / present if present else 0.0
            out.append(r)
        else:
            out.append(in_polars[label(exp)])
    return out


def _condition(kw: Mapping[str, Any]) -> pl.Expr:
    where = kw.get("row_condition")
    if where is None:
        return pl.repeat(True, pl.len())  # not pl.lit(True): its sum would be 1, not the row count
    assert where["operator"] == "==", where
    return (pl.col(where["column"]["name"]) == where["parameter"]).fill_null(False)


def _not_nan(df: pl.DataFrame, *columns: str) -> pl.Expr:
    ok = pl.lit(True)
    for c in columns:
        if df.schema[c].is_float():
            ok = ok & ~pl.col(c).is_nan()
    return ok


def _polars_masks(df: pl.DataFrame, exp: Expectation) -> tuple[pl.Expr, pl.Expr]:
    """(evaluated, unexpected) row masks with GX's pandas semantics for one row-level expectation."""
    t, kw = exp["type"], exp["kwargs"]
    cond = _condition(kw)
    if t == "expect_column_values_to_not_be_null":
        return cond, cond & pl.col(kw["column"]).is_null()
    if t == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = pl.col(kw["column_A"]), pl.col(kw["column_B"])
        evaluated = cond & a.is_not_null() & b.is_not_null()
        ok = (a >= b if kw.get("or_equal") else a > b) & _not_nan(df, kw["column_A"], kw["column_B"])
        return evaluated, evaluated & ~ok
    if t == "expect_compound_columns_to_be_unique":
        assert kw.get("ignore_row_if", "never") == "never", kw
        return cond, cond & (pl.len().over(kw["column_list"]) > 1)  # ~3x faster than is_duplicated on strings
    x = pl.col(kw["column"])
    evaluated = cond & x.is_not_null()
    if t == "expect_column_values_to_be_between":
        ok = _not_nan(df, kw["column"])
        if kw.get("min_value") is not None:
            ok = ok & (x > kw["min_value"] if kw.get("strict_min") else x >= kw["min_value"])
        if kw.get("max_value") is not None:
            ok = ok & (x < kw["max_value"] if kw.get("strict_max") else x <= kw["max_value"])
    elif t == "expect_column_values_to_be_in_set":
        ok = x.is_in(pl.Series(kw["value_set"], dtype=df.schema[kw["column"]]).implode())
    elif t == "expect_column_values_to_be_unique":
        ok = pl.len().over(kw["column"]) == 1  # nulls share a group, but are not evaluated
    elif t == "expect_column_values_to_match_regex":
        ok = x.cast(pl.String).str.contains(kw["regex"])
    else:
        raise NotImplementedError(f"no polars translation for {t}")
    return evaluated, evaluated & ~ok.fill_null(False)


def _columns_used(exp: Expectation) -> list[str]:
    kw = exp["kwargs"]
    used = [*kw.get("column_list", []), *(kw[k] for k in ("column", "column_A", "column_B") if k in kw)]
    if kw.get("row_condition"):
        used.append(kw["row_condition"]["column"]["name"])
    return used


def _polars_results(df: pl.DataFrame, expectations: list[Expectation]) -> list[_Result]:
    """All row-level expectations counted in one polars pass; the rows only for those that fail."""
    if not expectations:
        return []
    proven = [e for e in expectations if _proven_unique(df, e)]  # no hashing of 3.8 M keys for these
    if proven:
        rest = iter(_polars_results(df, [e for e in expectations if e not in proven]))
        return [_Result(e, True, 0, 0.0) if e in proven else next(rest) for e in expectations]
    try:
        masks = [_polars_masks(df, e) for e in expectations]
        counts = df.select(pl.concat_list(bad.sum() for _, bad in masks).alias("bad")).row(0)[0]
    except (pl.exceptions.PolarsError, TypeError, ValueError):  # one cannot be evaluated: say which, below
        counts = [None] * len(expectations)
    return [
        _Result(e, True, 0, 0.0) if n == 0 else _polars_result(df, e)
        for e, n in zip(expectations, counts, strict=True)
    ]


def _proven_unique(df: pl.DataFrame, exp: Expectation) -> bool:
    """An unconditional uniqueness expectation that `rules.keys_proven_unique` proves met (a frame strictly
    increasing on its keys, none null): the same verdict as counting, without hashing every key."""
    kw = exp["kwargs"]
    if kw.get("row_condition") is not None:
        return False
    if exp["type"] == "expect_compound_columns_to_be_unique":
        return keys_proven_unique(df, kw["column_list"])
    if exp["type"] == "expect_column_values_to_be_unique":
        return keys_proven_unique(df, [kw["column"]])
    return False


def _polars_result(df: pl.DataFrame, exp: Expectation) -> _Result:
    try:
        evaluated, unexpected = _polars_masks(df, exp)
        counts = df.select(evaluated.sum().alias("n"), unexpected.alias("bad"))
    except (pl.exceptions.PolarsError, TypeError, ValueError) as e:
        return _Result(exp, False, error=f"not evaluated: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    rows = counts["bad"].arg_true()
    n = int(counts["n"][0]) if counts.height else 0
    if rows.len() == 0:
        return _Result(exp, True, 0, 0.0, rows)
    return _Result(exp, False, rows.len(), 100.0 * rows.len() / n if n else 0.0, rows)


# --------------------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------------------

_MAX_LISTED = 20


def validate(stage: str, df: pl.DataFrame, *, engine: Engine = "auto", **params: Any) -> CheckOutcome:
    """Run the stage's suite on `df`. Passed only if every expectation succeeded; an empty frame passes when
    its schema is right.

    `params` are the stage's `PARAMS`: `sessions` (the partition's sessions; every row must be in one),
    `strategies` (signals, orders: configured names or StrategySpecs); None skips what uses one. `engine`:
    "gx" runs the whole suite in GX, "split" runs schema/types/sets in GX and the row-wise expectations in
    polars, "auto" is "split" (faster at every size; see the module docstring). Metadata: each failed expectation under its label
    (unexpected count and % of the evaluated values, up to 5 example rows, symbols and sessions involved),
    plus `failed_expectations`, `severity` (critical, or warning if only warnings failed), the union of
    offending rows with their symbols and sessions, and `engine` and `seconds`. `failed_sessions` names the
    sessions of the offending rows when every failure is such rows with a session; otherwise it is empty,
    meaning the whole window (a wrong schema, a row without a session). The orders suite takes whole-share
    (Int64) and fractional-share (Float64) quantity columns alike (`for_frame`).
    """
    expectations, skipped = resolve(stage, params)
    expectations = for_frame(stage, expectations, df)
    started = time.perf_counter()
    use = "split" if engine == "auto" else engine
    if use not in ("gx", "split"):
        raise ValueError(f"engine must be 'auto', 'gx' or 'split', got {engine!r}")
    # an expectation on a missing column is not evaluated (expect_table_columns_to_match_set names the column)
    runnable = [e for e in expectations if all(c in df.columns for c in _columns_used(e))]
    done = (_gx_engine if use == "gx" else _split_engine)(df, runnable)
    by_label = {label(r.exp): r for r in done}
    results = [
        by_label.get(label(e)) or _Result(e, False, error="not evaluated: column missing")
        for e in expectations
    ]
    outcome = _outcome(stage, df, results, skipped, use, time.perf_counter() - started)
    if _IMPORT_SECONDS:  # this call paid for importing GX (included in `seconds`)
        outcome.metadata["gx_import_seconds"] = round(_IMPORT_SECONDS.pop(), 3)
    return outcome


def _outcome(
    stage: str, df: pl.DataFrame, results: list[_Result], skipped: list[str], engine: str, seconds: float
) -> CheckOutcome:
    failures = sorted((r for r in results if not r.success), key=lambda r: r.exp["severity"] != "critical")
    meta: dict[str, Any] = {
        "stage": stage,
        "rows_checked": df.height,
        "expectations": len(results),
        "expectations_failed": len(failures),
        "engine": engine,
        "seconds": round(seconds, 3),
    }
    if skipped:
        meta["skipped"] = "; ".join(skipped)
    if not failures:
        return CheckOutcome(True, f"{stage}: all {len(results)} expectations met", meta)

    names = [label(r.exp) for r in failures]
    meta["failed_expectations"] = "; ".join(names)
    meta["severity"] = "critical" if any(r.exp["severity"] == "critical" for r in failures) else "warning"
    for r in failures:
        key = label(r.exp)
        if r.error:
            meta[f"{key} error"] = r.error
        elif r.observed is not None:
            meta[f"{key} observed"] = r.observed
        else:
            meta[f"{key} unexpected_count"] = r.unexpected_count
            meta[f"{key} unexpected_percent"] = round(r.unexpected_percent or 0.0, 4)
            if r.rows is not None and r.rows.len():
                bad = df[r.rows]
                meta.update(_symbols_and_sessions(bad, f"{key} "))
                meta[f"{key} examples"] = _examples(bad.select(_example_columns(r.exp, df)))
    rows = [r.rows for r in failures if r.rows is not None and r.rows.len()]
    failed_sessions: tuple = ()  # empty: the whole window failed (see CheckOutcome)
    if rows:
        bad = df[pl.concat(rows).unique().sort()]
        meta["offending_rows"] = bad.height
        meta.update(_symbols_and_sessions(bad, ""))
        key = next((c for c in ("session", "date") if c in df.columns and df.schema[c] == pl.Date), None)
        attributable = len(rows) == len(failures) and key is not None and bad[key].null_count() == 0
        if attributable:  # every failure is rows, every row has a session: name just those sessions
            failed_sessions = tuple(bad[key].unique().sort().to_list())
    description = f"{stage}: {len(failures)} of {len(results)} expectations failed: {'; '.join(names)}"
    return CheckOutcome(False, description, meta, failed_sessions=failed_sessions)


def _examples(bad: pl.DataFrame) -> str:
    """Up to EXAMPLES rows as dicts, dates as ISO text."""
    return str(bad.head(EXAMPLES).with_columns(pl.col(pl.Date, pl.Datetime).cast(pl.String)).to_dicts())


def _example_columns(exp: Expectation, df: pl.DataFrame) -> list[str]:
    keys = [c for c in ("session", "date", "symbol", "strategy") if c in df.columns]
    return list(dict.fromkeys(c for c in (*keys, *_columns_used(exp)) if c in df.columns))


def _symbols_and_sessions(bad: pl.DataFrame, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "symbol" in bad.columns and bad.schema["symbol"] == pl.String:
        symbols = bad["symbol"].drop_nulls().unique().sort()
        more = f" ... ({symbols.len()} symbols)" if symbols.len() > _MAX_LISTED else ""
        out[f"{prefix}symbols"] = ", ".join(symbols.head(_MAX_LISTED).to_list()) + more
    for col in ("session", "date"):
        if col in bad.columns and bad.schema[col] == pl.Date:
            s = bad[col].drop_nulls()
            if s.len():
                out[f"{prefix}sessions"] = f"{s.min()}..{s.max()} ({s.n_unique()} sessions)"
            break
    return out
