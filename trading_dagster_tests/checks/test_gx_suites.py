"""The GX suites: every stage passes on real sample data (the shipped sample run through the domain functions),
and each kind of bad frame fails naming the expectation that caught it, with the same verdict and counts
from both engines (whole suite in GX, and the split "auto" runs: GX for schema/types/sets,
polars for the rows).

GX is imported once (module-scoped `gx` fixture); every other fixture is module-scoped too.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from trading_dagster.checks import gx_suites
from trading_dagster.checks.gx_suites import PARAMS, SUITES, label, validate
from trading_dagster.domain.bars import RAW_SCHEMA
from trading_dagster.domain.calendar import nyse_calendar
from trading_dagster.domain.execution import CommissionModel, SlippageModel
from trading_dagster.domain.indicators import compute_indicators
from trading_dagster.domain.portfolio import PortfolioState, plan_orders
from trading_dagster.domain.risk import RiskConfig
from trading_dagster.domain.strategies import DEFAULT_STRATEGIES, generate_signals

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "us_equities_sample_2008_2017.parquet"
WINDOW = (dt.date(2017, 8, 1), dt.date(2017, 11, 10))  # the frames under test: ~70 sessions, 42 symbols
ENGINES = ["gx", "split"]


@pytest.fixture(scope="module")
def gx() -> None:
    gx_suites.warm_up()  # the ~3.5 s import, once for the module


@pytest.fixture(scope="module")
def frames() -> dict[str, tuple[pl.DataFrame, dict]]:
    """Each stage's frame for WINDOW, from the real sample through the domain functions, with its params."""
    # The sample has no bad bar and no duplicate (rules.cleaned_prices_sane passes on all of it), so the
    # cleaned frame is the raw one in the cleaned schema, which is what clean_prices returns for it.
    raw_all = pl.read_parquet(SAMPLE).rename({"ticker": "symbol"}).select(list(RAW_SCHEMA)).cast(RAW_SCHEMA)
    cleaned_all = raw_all.rename({"date": "session"}).sort("session", "symbol")
    sessions = nyse_calendar().between(*WINDOW)
    in_window = pl.col("session").is_between(*WINDOW)
    indicators_all = compute_indicators(cleaned_all.filter(pl.col("session") >= dt.date(2016, 1, 1)))
    signals = generate_signals(indicators_all, DEFAULT_STRATEGIES, *WINDOW)
    orders = plan_orders(
        signals,
        cleaned_all,
        PortfolioState.initial(Decimal(100_000)),
        sessions,
        RiskConfig(),
        SlippageModel(),
        CommissionModel(),
        "paper",
    )
    window = {"sessions": sessions}
    trading = {"sessions": sessions, "strategies": DEFAULT_STRATEGIES}
    return {
        "raw": (raw_all.filter(pl.col("date").is_between(*WINDOW)), window),
        "cleaned": (cleaned_all.filter(in_window), window),
        "indicators": (indicators_all.filter(in_window), window),
        "signals": (signals, trading),
        "orders": (orders, trading),
    }


def test_the_real_frames_are_what_the_stages_produce(frames):
    assert set(frames) == set(SUITES) == set(PARAMS)
    orders = frames["orders"][0]
    # both statuses, several reason codes and some null reason codes: the conditional expectations bite
    assert set(orders["status"]) == {"approved", "denied"} and orders["reason_code"].null_count() > 0
    assert frames["indicators"][0]["rsi_14"].null_count() < frames["indicators"][0].height


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("stage", list(SUITES))
def test_each_suite_passes_on_real_data(gx, frames, stage, engine):
    df, params = frames[stage]
    outcome = validate(stage, df, engine=engine, **params)
    assert outcome.passed, outcome.metadata
    assert outcome.metadata["expectations"] == len(SUITES[stage])
    assert outcome.metadata["expectations_failed"] == 0 and outcome.metadata["engine"] == engine


@pytest.mark.parametrize("stage", list(SUITES))
def test_one_session_and_an_empty_frame_pass(gx, frames, stage):
    df, params = frames[stage]
    key = "date" if stage == "raw" else "session"
    one = df.filter(pl.col(key) == df[key].max())
    assert validate(stage, one, **params).passed
    empty = validate(stage, df.head(0), **params)
    assert empty.passed and empty.metadata["rows_checked"] == 0


# ---------------------------------------------------------------- bad frames
# (stage, what is wrong, mutate(df) -> df, expected failed label, its unexpected count or None for table-level)


def _set_row(column: str, value, row: int = 3) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def mutate(df: pl.DataFrame) -> pl.DataFrame:
        idx = pl.int_range(pl.len()) == row
        return df.with_columns(
            pl.when(idx).then(pl.lit(value, dtype=df.schema[column])).otherwise(pl.col(column)).alias(column)
        )

    return mutate


def _duplicate_row(row: int = 3) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: pl.concat([df, df.slice(row, 1)])


def _swap_high_low(df: pl.DataFrame) -> pl.DataFrame:
    idx = pl.int_range(pl.len()) == 3
    return df.with_columns(
        high=pl.when(idx).then(pl.col("low") * 0.5).otherwise(pl.col("high")),
    )


def _first_denied(column: str, value) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def mutate(df: pl.DataFrame) -> pl.DataFrame:
        row = df.with_row_index().filter(pl.col("status") == "denied")["index"][0]
        return _set_row(column, value, int(row))(df)

    return mutate


def _first_approved_qty_zero(df: pl.DataFrame) -> pl.DataFrame:
    row = int(df.with_row_index().filter(pl.col("status") == "approved")["index"][0])
    df = _set_row("qty", 0, row)(df)
    return df


BETWEEN = "expect_column_values_to_be_between"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
UNIQUE = "expect_compound_columns_to_be_unique"
IN_SET = "expect_column_values_to_be_in_set"
NOT_NULL = "expect_column_values_to_not_be_null"
OF_TYPE = "expect_column_values_to_be_of_type"

BAD = [
    ("cleaned", "missing column", lambda df: df.drop("close"), "expect_table_columns_to_match_set()", None),
    (
        "cleaned",
        "volume as float",
        lambda df: df.with_columns(pl.col("volume").cast(pl.Float64)),
        f"{OF_TYPE}(volume)",
        None,
    ),
    (
        "cleaned",
        "session as datetime",
        lambda df: df.with_columns(pl.col("session").cast(pl.Datetime)),
        f"{OF_TYPE}(session)",
        None,
    ),
    (
        "cleaned",
        "close as float32",
        lambda df: df.with_columns(pl.col("close").cast(pl.Float32)),
        f"{OF_TYPE}(close)",
        None,
    ),
    ("cleaned", "null close", _set_row("close", None), f"{NOT_NULL}(close)", 1),
    ("cleaned", "negative price", _set_row("low", -1.0), f"{BETWEEN}(low)", 1),
    ("cleaned", "high below low", _swap_high_low, f"{PAIR}(high, low)", 1),
    ("cleaned", "close above high", _set_row("close", 1e9), f"{PAIR}(high, close)", 1),
    ("cleaned", "negative volume", _set_row("volume", -5), f"{BETWEEN}(volume)", 1),
    ("cleaned", "duplicate key", _duplicate_row(), f"{UNIQUE}(symbol, session)", 2),
    ("raw", "null date", _set_row("date", None), f"{NOT_NULL}(date)", 1),
    ("indicators", "rsi 120", _set_row("rsi_14", 120.0, row=100), f"{BETWEEN}(rsi_14)", 1),
    ("indicators", "rsi NaN", _set_row("rsi_14", float("nan"), row=100), f"{BETWEEN}(rsi_14)", 1),
    (
        "indicators",
        "pct below high as a fraction > 100",
        _set_row("pct_below_high_52w", 150.0, row=100),
        f"{BETWEEN}(pct_below_high_52w)",
        1,
    ),
    ("indicators", "sma 0", _set_row("sma_20", 0.0, row=100), f"{BETWEEN}(sma_20)", 1),
    ("indicators", "bands crossed", _set_row("bb_lower", 1e9, row=100), f"{PAIR}(bb_middle, bb_lower)", 1),
    ("indicators", "duplicate key", _duplicate_row(100), f"{UNIQUE}(symbol, session)", 2),
    ("signals", "bad side", _set_row("side", "hold"), f"{IN_SET}(side)", 1),
    ("signals", "strength 1.5", _set_row("strength", 1.5), f"{BETWEEN}(strength)", 1),
    ("signals", "unknown strategy", _set_row("strategy", "yolo"), f"{IN_SET}(strategy)", 1),
    ("signals", "null reason", _set_row("reason", None), f"{NOT_NULL}(reason)", 1),
    ("signals", "duplicate key", _duplicate_row(), f"{UNIQUE}(session, symbol, strategy)", 2),
    (
        "orders",
        "bad order id",
        _set_row("client_order_id", "td-2017-11-10-AAPL-xyz"),
        "expect_column_values_to_match_regex(client_order_id)",
        1,
    ),
    (
        "orders",
        "duplicate order id",
        _duplicate_row(),
        "expect_column_values_to_be_unique(client_order_id)",
        2,
    ),
    (
        "orders",
        "approved with qty 0",
        _first_approved_qty_zero,
        f"{BETWEEN}(qty) where status == approved",
        1,
    ),
    (
        "orders",
        "denied without reason",
        _first_denied("reason_code", None),
        f"{NOT_NULL}(reason_code) where status == denied",
        1,
    ),
    ("orders", "unknown reason code", _set_row("reason_code", "BECAUSE"), f"{IN_SET}(reason_code)", 1),
    ("orders", "bad status", _set_row("status", "filled"), f"{IN_SET}(status)", 1),
    ("orders", "bad side", _set_row("side", "short"), f"{IN_SET}(side)", 1),
    ("orders", "qty above request", _set_row("qty", 10**9), f"{PAIR}(requested_qty, qty)", 1),
]


@pytest.mark.parametrize(
    ("stage", "what", "mutate", "expected", "count"), BAD, ids=[f"{s}: {w}" for s, w, *_ in BAD]
)
def test_a_bad_frame_fails_naming_the_expectation_in_both_engines(
    gx, frames, stage, what, mutate, expected, count
):
    df, params = frames[stage]
    bad = mutate(df)
    by_engine = {engine: validate(stage, bad, engine=engine, **params) for engine in ENGINES}
    for engine, outcome in by_engine.items():
        meta = outcome.metadata
        assert not outcome.passed, (engine, meta)
        failed = meta["failed_expectations"].split("; ")
        assert expected in failed, (engine, failed)
        assert meta["severity"] == "critical"
        if count is None:  # table level: what was observed, or why a column expectation was not evaluated
            assert f"{expected} observed" in meta, (engine, meta)
        else:
            assert meta[f"{expected} unexpected_count"] == count, (engine, meta)
            assert 0 < meta[f"{expected} unexpected_percent"] <= 100
            examples = meta[f"{expected} examples"]
            assert examples.startswith("[{") and examples.count("{") <= 5
            assert meta[f"{expected} symbols"]
            if what != "null date":
                assert "sessions)" in meta[f"{expected} sessions"]
            assert meta["offending_rows"] >= 1 and meta["symbols"]
    gx_meta, split_meta = (by_engine[e].metadata for e in ENGINES)
    assert gx_meta["failed_expectations"] == split_meta["failed_expectations"]
    counts = {k: v for k, v in gx_meta.items() if k.endswith("unexpected_count")}
    assert counts == {k: v for k, v in split_meta.items() if k.endswith("unexpected_count")}


def test_a_missing_column_names_the_column_and_skips_its_expectations(gx, frames):
    df, params = frames["cleaned"]
    meta = validate("cleaned", df.drop("close"), **params).metadata
    assert "missing" in meta["expect_table_columns_to_match_set() observed"]
    assert "close" in meta["expect_table_columns_to_match_set() observed"]
    assert meta[f"{OF_TYPE}(close) error"] == "not evaluated: column missing"


def test_a_wrong_dtype_says_what_was_observed(gx, frames):
    df, params = frames["cleaned"]
    meta = validate("cleaned", df.with_columns(pl.col("session").cast(pl.Datetime)), **params).metadata
    assert meta[f"{OF_TYPE}(session) observed"] == "datetime, expected datetime64"


def test_examples_name_the_rows_a_person_must_look_at(gx, frames):
    df, params = frames["indicators"]
    row = df.row(100, named=True)
    meta = validate("indicators", _set_row("rsi_14", 120.0, row=100)(df), **params).metadata
    key = f"{BETWEEN}(rsi_14)"
    assert meta[f"{key} symbols"] == row["symbol"]
    assert meta[f"{key} sessions"] == f"{row['session']}..{row['session']} (1 sessions)"
    assert (
        f"'symbol': '{row['symbol']}'" in meta[f"{key} examples"]
        and "'rsi_14': 120.0" in meta[f"{key} examples"]
    )


def test_many_failures_list_at_most_five_examples_and_twenty_symbols(gx, frames):
    df, params = frames["indicators"]
    meta = validate("indicators", df.with_columns(rsi_14=pl.lit(120.0)), **params).metadata
    key = f"{BETWEEN}(rsi_14)"
    assert meta[f"{key} unexpected_count"] == df.height and meta[f"{key} unexpected_percent"] == 100.0
    assert meta[f"{key} examples"].count("{") == 5
    assert meta[f"{key} symbols"].endswith(f"({df['symbol'].n_unique()} symbols)")


def test_raw_value_problems_are_warnings_clean_prices_handles(gx, frames):
    df, params = frames["raw"]
    bad = _duplicate_row()(_set_row("low", 0.0)(df))
    outcome = validate("raw", bad, **params)
    assert not outcome.passed and outcome.metadata["severity"] == "warning"
    assert outcome.metadata["failed_expectations"] == f"{BETWEEN}(low); {UNIQUE}(symbol, date)"


@pytest.mark.parametrize("history", [0, 400], ids=["window sessions", "long session list"])
def test_rows_outside_the_partition_sessions_fail(gx, frames, history):
    """A short session list goes to GX in both engines; a long one (> 100) to polars in the split."""
    df, params = frames["cleaned"]
    last = params["sessions"][-1]
    sessions = nyse_calendar().between(dt.date(2015, 1, 1), last)[-(len(params["sessions"]) + history) : -1]
    for engine in ENGINES:
        meta = validate("cleaned", df, engine=engine, sessions=sessions).metadata
        assert meta["failed_expectations"] == f"{IN_SET}(session)"
        assert meta[f"{IN_SET}(session) unexpected_count"] == df.filter(pl.col("session") == last).height
        assert meta[f"{IN_SET}(session) sessions"] == f"{last}..{last} (1 sessions)"


def test_none_skips_a_parameter_and_says_so(gx, frames):
    df, _ = frames["signals"]
    outcome = validate("signals", df, sessions=None, strategies=None)
    assert outcome.passed
    assert outcome.metadata["skipped"] == f"{IN_SET}(session); {IN_SET}(strategy)"
    assert validate(
        "signals",
        _set_row("strategy", "yolo")(df),
        sessions=None,
        strategies=["yolo", *(s.name for s in DEFAULT_STRATEGIES)],
    ).passed


def test_parameters_are_checked_before_any_work():
    with pytest.raises(TypeError, match=r"missing \['strategies'\]"):
        validate("signals", pl.DataFrame(), sessions=None)
    with pytest.raises(TypeError, match=r"unknown parameters \['limit'\]"):
        validate("cleaned", pl.DataFrame(), sessions=None, limit=4)
    with pytest.raises(ValueError, match="unknown stage"):
        validate("fills", pl.DataFrame())


def test_auto_is_the_split_and_gx_runs_the_whole_suite_on_request(gx, frames):
    df, params = frames["cleaned"]
    assert validate("cleaned", df, **params).metadata["engine"] == "split"
    assert validate("cleaned", df, engine="gx", **params).metadata["engine"] == "gx"


def test_labels_are_unique_within_a_suite():
    for stage, suite in SUITES.items():
        labels = [label(e) for e in suite]
        assert len(labels) == len(set(labels)), stage


def test_to_pandas_keeps_dtypes_gx_can_tell_apart():
    df = pl.DataFrame(
        {
            "s": ["a", None],
            "f": [1.0, None],
            "nan": [1.0, float("nan")],
            "i": [1, 2],
            "i_null": [1, None],
            "d": [dt.date(2017, 1, 3), None],
            "ts": [dt.datetime(2017, 1, 3), None],
            "f32": pl.Series([1.0, 2.0], dtype=pl.Float32),
        }
    )
    types = {c: t.type.__name__ for c, t in gx_suites.to_pandas(df).dtypes.items()}
    assert types == {
        "s": "str",
        "f": "float64",
        "nan": "float",  # Arrow: NaN stays a value, not a missing one
        "i": "int64",
        "i_null": "int64",  # pandas nullable Int64
        "d": "datetime64",
        "ts": "datetime",
        "f32": "float32",
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_an_expectation_that_cannot_run_on_a_wrong_dtype_says_so(gx, frames, engine):
    df, params = frames["cleaned"]
    meta = validate(
        "cleaned", df.with_columns(pl.col("close").cast(pl.String)), engine=engine, **params
    ).metadata
    assert meta[f"{OF_TYPE}(close) observed"] == "str, expected float"
    assert meta[f"{BETWEEN}(close) error"].startswith("not evaluated: ")
    assert f"{PAIR}(high, close) error" in meta  # the other expectations still ran and passed
    assert meta["expectations_failed"] == 4  # type, > 0, and the two pairs with close


def test_failed_sessions_name_the_offending_sessions_or_the_whole_window(gx, frames):
    df, params = frames["indicators"]
    row = df.row(100, named=True)
    assert validate("indicators", _set_row("rsi_14", 120.0, row=100)(df), **params).failed_sessions == (
        row["session"],
    )
    wrong_type = validate("indicators", df.with_columns(pl.col("rsi_14").cast(pl.Float32)), **params)
    assert not wrong_type.passed and wrong_type.failed_sessions == ()  # not attributable: the window
    raw, raw_params = frames["raw"]
    assert (
        validate("raw", _set_row("date", None)(raw), **raw_params).failed_sessions == ()
    )  # a row without one
    assert validate("indicators", df, **params).failed_sessions == ()


def test_gx_imports_without_its_unused_heavy_modules_which_still_work_when_used():
    """In a fresh interpreter: after warm_up, scipy.stats and altair are stand-ins (their import is what
    the deferral saves), GX still validates, and the modules work on first use, from GX's own references
    and from a plain import alike."""
    code = """
import sys
from trading_dagster.checks import gx_suites
gx_suites.warm_up()
assert all(type(sys.modules[m]).__name__ == "_Deferred" for m in gx_suites.DEFERRED_IMPORTS), [
    type(sys.modules[m]) for m in gx_suites.DEFERRED_IMPORTS]
import polars as pl
assert not gx_suites.validate("raw", pl.DataFrame({"x": [1]}), sessions=None).passed  # wrong schema: GX ran
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
assert abs(kl.stats.entropy([0.5, 0.5], [0.9, 0.1]) - 0.5108256) < 1e-6
assert type(sys.modules["scipy.stats"]).__name__ == "module"
import scipy.stats
assert scipy.stats.norm.cdf(0.0) == 0.5
assert kl.alt.Chart.__name__ == "Chart"
import boto3  # the S3 raw store's first use, after GX deferred it
client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                      aws_access_key_id="k", aws_secret_access_key="s")
assert client.meta.endpoint_url == "http://127.0.0.1:9"
import boto3.session
assert isinstance(boto3.session.Session(region_name="eu-west-1").region_name, str)
import jsonschema, tzlocal
jsonschema.validate({"a": 1}, {"type": "object"})
assert tzlocal.get_localzone_name()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
