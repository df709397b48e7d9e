"""Assets run one at a time with `dg.materialize` on a subset, explicit resources from `build_resources`, and
the warehouse IO manager: the behaviour of each asset at its edges, without the whole job around it."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from trading_dagster.assets.indicators import INDICATORS, SIGNALS, LookbackIncomplete
from trading_dagster.assets.prices import CLEANED, PRICE_BREAKS, QUARANTINE
from trading_dagster.assets.raw import RAW_PRICES
from trading_dagster.definitions import ASSETS, build_resources
from trading_dagster.domain.prices import HIGH_BELOW_LOW
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.raw_store import LocalRawStore
from trading_dagster.settings import SAMPLE_FILE, Settings
from trading_dagster_tests.halt_config import halt_config
from trading_dagster_tests.integration.conftest import make_settings, read_table

SYMBOLS = ["AAPL", "MSFT", "SPY"]
RAW_KEY, CLEANED_KEY, QUARANTINE_KEY = dg.AssetKey(RAW_PRICES), dg.AssetKey(CLEANED), dg.AssetKey(QUARANTINE)
BREAKS_KEY = dg.AssetKey(PRICE_BREAKS)  # what signals read for the unexplained-split hold-out


def materialize(settings: Settings, keys: list[dg.AssetKey], first: dt.date, last: dt.date | None = None, **kw):
    """Materialize `keys` (only those) over the session range [first, last] with the real resources."""
    last = last or first
    return dg.materialize(
        ASSETS,
        selection=keys,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        **kw,
    )


def table_exists(settings: Settings, schema: str, table: str) -> bool:
    if not settings.warehouse_path.exists():
        return False
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        q = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
        return con.execute(q, [schema, table]).fetchone()[0] == 1
    finally:
        con.close()


def sample_bars(first: dt.date, last: dt.date) -> pl.DataFrame:
    """Sample bars of three symbols in the raw schema (`symbol`, not the file's `ticker`)."""
    return (
        pl.read_parquet(SAMPLE_FILE)
        .rename({"ticker": "symbol"})
        .filter(pl.col("symbol").is_in(SYMBOLS) & pl.col("date").is_between(first, last))
        .sort("date", "symbol")
    )


# ------------------------------------------------------------------------------------------------ signals


def test_signals_refuse_a_gap_in_the_indicators_lookback(tmp_path):
    """Indicators for D-1 and D+1 but not D: signals over [D, D+1] (lookback D-1) must fail naming D, not
    run on a hole. Sessions at the start of the partitions, where the indicators' lookback is clipped, so
    four sessions of cleaned prices are all the history they need."""
    before, gap, day = dt.date(2008, 1, 3), dt.date(2008, 1, 4), dt.date(2008, 1, 7)
    source = tmp_path / "vendor.parquet"
    sample_bars(dt.date(2008, 1, 2), day).write_parquet(source)
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source))
    assert materialize(settings, [RAW_KEY, CLEANED_KEY, QUARANTINE_KEY, BREAKS_KEY], dt.date(2008, 1, 2), day).success
    for session in (before, day):  # `gap` skipped
        assert materialize(settings, [dg.AssetKey(INDICATORS)], session).success
    assert sorted(read_table(settings, "indicators.indicators")["session"].unique().to_list()) == [before, day]

    with pytest.raises(LookbackIncomplete) as err:
        materialize(settings, [dg.AssetKey(SIGNALS)], gap, day)

    assert f"signals: upstream partitions missing inside the lookback: 1 sessions, {gap}." in str(err.value)
    assert not table_exists(settings, "signals", "signals")  # nothing written for the window

    # the same window once the hole is filled runs (so it was the gap, and only the gap, that failed it)
    assert materialize(settings, [dg.AssetKey(INDICATORS)], gap).success
    assert materialize(settings, [dg.AssetKey(SIGNALS)], gap, day).success


def test_signals_refuse_a_missing_partition_at_the_front_of_the_lookback(tmp_path):
    """The raw store's history starts 2008-01-02, so indicators missing for 01-02..01-04 are a hole, not the
    start of history: signals for 01-07 (lookback 01-04) must fail, not run with no previous bar."""
    day = dt.date(2008, 1, 7)
    source = tmp_path / "vendor.parquet"
    sample_bars(dt.date(2008, 1, 2), day).write_parquet(source)
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source))
    assert materialize(settings, [RAW_KEY, CLEANED_KEY, QUARANTINE_KEY, BREAKS_KEY], dt.date(2008, 1, 2), day).success
    assert materialize(settings, [dg.AssetKey(INDICATORS)], day).success  # only the window's own session

    with pytest.raises(LookbackIncomplete, match=r"1 sessions, 2008-01-04\. The raw store holds history from 2008-01-04 or earlier"):
        materialize(settings, [dg.AssetKey(SIGNALS)], day)
    assert not table_exists(settings, "signals", "signals")


# ------------------------------------------------------------------------------------------ cleaned prices


def test_cleaned_prices_quarantine_a_high_below_low_bar(tmp_path):
    settings = make_settings(tmp_path / "data")
    session = dt.date(2017, 6, 1)
    bars = sample_bars(session, session)
    assert bars.height == 3
    # MSFT's high and low swapped: a bar whose [low, high] range is empty
    bad = pl.col("symbol") == "MSFT"
    broken = bars.with_columns(
        high=pl.when(bad).then(pl.col("low")).otherwise(pl.col("high")),
        low=pl.when(bad).then(pl.col("high")).otherwise(pl.col("low")),
    )
    LocalRawStore(settings.raw_root).write_session(session, broken)

    result = materialize(settings, [CLEANED_KEY, QUARANTINE_KEY], session)

    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())  # the bad bar never reached the table
    cleaned = read_table(settings, "prices.cleaned_prices")
    quarantine = read_table(settings, "prices.price_quarantine")
    assert sorted(cleaned["symbol"].to_list()) == ["AAPL", "SPY"]
    assert quarantine.select("symbol", "session", "reason").to_dicts() == [
        {"symbol": "MSFT", "session": session, "reason": HIGH_BELOW_LOW}
    ]
    msft = bars.filter(bad).row(0, named=True)
    assert quarantine["detail"][0].startswith(f"high={msft['low']} < low={msft['high']}")
    assert quarantine["close"][0] == msft["close"]  # the row is kept as delivered, not dropped


# ------------------------------------------------------------------------------------------------ raw prices


def test_a_session_missing_from_the_source_fails_raw_and_stops_everything_downstream(tmp_path):
    """With [data] on_missing_session = "halt" (the default records it as an outage at WARN severity:
    trading_dagster_tests/assets/test_raw_prices.py)."""
    first, last, hole = dt.date(2017, 6, 1), dt.date(2017, 6, 7), dt.date(2017, 6, 5)
    source = tmp_path / "vendor.parquet"
    sample_bars(first, last).filter(pl.col("date") != hole).write_parquet(source)
    settings = make_settings(
        tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source), TRADING_DAGSTER_CONFIG=halt_config(tmp_path)
    )

    result = materialize(settings, [RAW_KEY, CLEANED_KEY, QUARANTINE_KEY], first, last, raise_on_error=False)

    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["raw_prices__gx_suite"].passed  # what was delivered is well formed; a session is missing
    check = checks["raw_prices__every_session_has_bars"]
    assert not check.passed
    assert check.metadata["missing_sessions"].value == str(hole)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert CLEANED_KEY not in materialized and QUARANTINE_KEY not in materialized
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert (failure.step_key, failure.step_failure_data.error.cls_name) == ("raw__raw_prices", "Failure")
    # the cause is in the run's error, not only in the check event
    message = failure.step_failure_data.error.message
    assert "raw_prices__every_session_has_bars" in message and str(hole) in message, message
    started = {e.step_key for e in result.all_events if e.is_step_start}
    assert started == {"raw__raw_prices"}  # cleaned_prices was stopped by the blocking check, never ran
    assert not table_exists(settings, "prices", "cleaned_prices")


@pytest.mark.parametrize(
    ("last", "off_day", "what"),
    [
        (dt.date(2017, 6, 9), dt.date(2017, 6, 10), "Saturday"),  # the weekend after Friday's session
        (dt.date(2017, 7, 3), dt.date(2017, 7, 4), "a weekday the exchange is closed"),  # Independence Day
    ],
)
def test_raw_rejects_a_non_session_row_just_after_the_window_and_keeps_it(tmp_path, last, off_day, what):
    """The day after a window's last session belongs to that window's partition: its row is a rejected row
    of that run (kept with its reason in raw/rejected/, named in the manifest), never a bar, and does not
    fall between two partitions and disappear (decision 0004 section 1)."""
    first = session_calendar().offset(last, -1)
    bars = sample_bars(first, last)
    extra = bars.filter(pl.col("date") == last).head(1).with_columns(date=pl.lit(off_day))
    source = tmp_path / "vendor.parquet"
    pl.concat([bars, extra]).write_parquet(source)
    settings = make_settings(tmp_path / "data", TRADING_DAGSTER_MARKET_DATA_FILE=str(source))

    assert materialize(settings, [RAW_KEY], first, last).success

    store = LocalRawStore(settings.raw_root)
    (import_id,) = store.list_imports()
    rejected = store.read_rejected(import_id)
    assert rejected.select("symbol", "date", "reason").rows() == [(extra["symbol"][0], off_day, "NON_SESSION_DATE")]
    assert what in rejected["detail"][0]
    assert store.list_sessions() == [first, last]
    assert store.read_sessions([first, last]).height == bars.height  # the rest imported, nothing on off_day
    assert store.read_manifest(import_id)["rejected"] == {"NON_SESSION_DATE": 1}
