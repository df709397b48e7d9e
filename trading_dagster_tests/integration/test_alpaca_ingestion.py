"""Raw partitions filled from Alpaca's market-data API: settings -> definitions -> raw_prices -> raw store;
and Alpaca's splits as the corporate-actions source of cleaning and indicators, on unadjusted bars.

The Alpaca-compatible server of trading_dagster_tests/fakes serves the shipped sample on 127.0.0.1; the
keys come from the environment through dg.EnvVar and must not appear anywhere in the run's event log.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from trading_dagster.definitions import build_definitions
from trading_dagster.domain.indicators import INDICATOR_COLUMNS, compute_indicators_anchored
from trading_dagster.domain.prices import UNCONFIRMED_BREAK, UNEXPLAINED_SPLIT, clean_prices
from trading_dagster.domain.vendor_files import normalize_ohlcv
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.raw_store import LocalRawStore
from trading_dagster.settings import SettingsError
from trading_dagster_tests.fakes import alpaca_server as fake_alpaca
from trading_dagster_tests.fakes.alpaca_server import TEST_KEY_ID, TEST_SECRET_KEY
from trading_dagster_tests.integration.conftest import make_settings, read_table

alpaca_server = fake_alpaca.alpaca_server

SAMPLE = Path(__file__).parents[2] / "data/sample/us_equities_sample_2008_2017.parquet"
UNIVERSE = ["AAPL", "MSFT", "SPY", "KO"]
SESSIONS = ["2017-11-06", "2017-11-10"]


def _config(tmp_path: Path, symbols: list[str]) -> Path:
    base = (Path(__file__).parents[2] / "trading_dagster.toml").read_text()
    path = tmp_path / "alpaca.toml"
    path.write_text(base + "\n[universe]\nsymbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]\n")
    return path


def test_raw_partitions_come_from_alpaca_and_the_keys_never_reach_the_event_log(tmp_path, alpaca_server, monkeypatch):
    sample = pl.read_parquet(SAMPLE).filter(pl.col("date") >= dt.date(2017, 10, 1))
    alpaca_server.set_bars(sample)
    monkeypatch.setenv("APCA_API_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", TEST_SECRET_KEY)
    settings = make_settings(
        tmp_path / "data",
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_DATA_URL=alpaca_server.url,
        TRADING_DAGSTER_CONFIG=str(_config(tmp_path, UNIVERSE)),
    )
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("pipeline_job").execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["raw", "raw_prices"])],
        tags={"dagster/asset_partition_range_start": SESSIONS[0], "dagster/asset_partition_range_end": SESSIONS[1]},
    )
    assert result.success

    stored = LocalRawStore(settings.raw_root).read_sessions(
        [dt.date.fromisoformat(d) for d in ("2017-11-06", "2017-11-07", "2017-11-08", "2017-11-09", "2017-11-10")]
    )
    expected = (
        sample.filter(pl.col("ticker").is_in(UNIVERSE) & pl.col("date").is_between(dt.date(2017, 11, 6), dt.date(2017, 11, 10)))
        .select(pl.col("ticker").alias("symbol"), "date", "open", "high", "low", "close", "volume")
        .sort("date", "symbol")
    )
    assert stored.sort("date", "symbol").select(expected.columns).equals(expected)
    assert {r.path for r in alpaca_server.requests} >= {"/v2/stocks/bars"}

    logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
    assert TEST_SECRET_KEY not in logged and TEST_KEY_ID not in logged


def test_alpaca_without_a_universe_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match=r"\[universe\] symbols"):
        make_settings(tmp_path, TRADING_DAGSTER_MARKET_DATA="alpaca")


def test_alpaca_without_keys_fails_the_run_with_a_clear_error(tmp_path, alpaca_server, monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    settings = make_settings(
        tmp_path / "data",
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_DATA_URL=alpaca_server.url,
        TRADING_DAGSTER_CONFIG=str(_config(tmp_path, UNIVERSE)),
    )
    job = build_definitions(settings).resolve_job_def("pipeline_job")
    with pytest.raises(Exception, match="APCA_API_KEY_ID"):
        job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            asset_selection=[dg.AssetKey(["raw", "raw_prices"])],
            partition_key=SESSIONS[1],
        )


# ------------------------------------------------------------------------------------ splits from Alpaca

SPLIT_SYMBOL = "MSFT"
PRICES = ("open", "high", "low", "close")


def test_splits_from_alpaca_explain_an_unadjusted_split_end_to_end(tmp_path, alpaca_server, monkeypatch):
    """Raw (unadjusted) Alpaca bars in which MSFT splits 4:1, and the split in Alpaca's corporate actions:
    cleaning quarantines nothing, and from the ex-date on MSFT's indicators are exactly those of the
    vendor-adjusted series (before it, point in time, those of the prices as they traded)."""
    cal = session_calendar()
    window = cal.between(dt.date(2017, 8, 1), dt.date(2017, 11, 10))
    ex_date = window[50]
    adjusted = pl.read_parquet(SAMPLE).filter(
        pl.col("ticker").is_in(UNIVERSE) & pl.col("date").is_between(window[0], window[-1])
    )
    # what the vendor sends unadjusted: before the split MSFT traded at 4x, on a quarter of the shares
    before_split = (pl.col("ticker") == SPLIT_SYMBOL) & (pl.col("date") < ex_date)
    raw = adjusted.with_columns(
        *[pl.when(before_split).then(pl.col(c) * 4).otherwise(pl.col(c)).alias(c) for c in PRICES],
        pl.when(before_split).then(pl.col("volume") // 4).otherwise(pl.col("volume")).alias("volume"),
    )
    alpaca_server.set_bars(raw)
    alpaca_server.set_splits(
        pl.DataFrame({"symbol": [SPLIT_SYMBOL], "ex_date": [ex_date], "new_rate": [4], "old_rate": [1]})
    )
    monkeypatch.setenv("APCA_API_KEY_ID", TEST_KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", TEST_SECRET_KEY)
    settings = make_settings(
        tmp_path / "data",
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_DATA_URL=alpaca_server.url,
        TRADING_DAGSTER_ALPACA_ADJUSTMENT="raw",
        TRADING_DAGSTER_CORPORATE_ACTIONS="alpaca",
        TRADING_DAGSTER_CONFIG=str(_config(tmp_path, UNIVERSE)),
    )
    assert settings.corporate_actions == "alpaca"
    instance = dg.DagsterInstance.ephemeral()
    result = (
        build_definitions(settings)
        .resolve_job_def("pipeline_job")
        .execute_in_process(
            instance=instance,
            asset_selection=[
                dg.AssetKey(["raw", "raw_prices"]),
                dg.AssetKey(["prices", "cleaned_prices"]),
                dg.AssetKey(["prices", "price_quarantine"]),
                dg.AssetKey(["indicators", "indicators"]),
            ],
            tags={
                "dagster/asset_partition_range_start": window[0].isoformat(),
                "dagster/asset_partition_range_end": window[-1].isoformat(),
            },
        )
    )
    assert result.success

    # the raw store holds the unadjusted bars, and without the split they would quarantine the ex-date
    stored = LocalRawStore(settings.raw_root).read_sessions(window)
    msft = stored.filter(pl.col("symbol") == SPLIT_SYMBOL).sort("date")
    assert (
        msft.filter(pl.col("date") == window[49])["close"].item()
        > 3 * msft.filter(pl.col("date") == ex_date)["close"].item()
    )
    no_actions = clean_prices(stored, window)
    # ... from the ex-date until the level has held BREAK_CONFIRM_SESSIONS closes, then confirmed on the next
    assert no_actions.quarantine.select("symbol", "session", "reason").rows() == [
        *((SPLIT_SYMBOL, d, UNCONFIRMED_BREAK) for d in window[50:53]),
        (SPLIT_SYMBOL, window[53], UNEXPLAINED_SPLIT),
    ]
    assert no_actions.breaks.select("symbol", "session", "break_date", "share_ratio").rows() == [
        (SPLIT_SYMBOL, window[53], ex_date, 4.0)
    ]

    # with Alpaca's splits: nothing quarantined, every bar kept as it traded
    assert read_table(settings, "prices.price_quarantine").is_empty()
    cleaned = read_table(settings, "prices.cleaned_prices")
    assert cleaned.height == stored.height == raw.height

    # indicators: split-adjusted point in time
    got = (
        read_table(settings, "indicators.indicators").filter(pl.col("symbol") == SPLIT_SYMBOL).sort("session")
    )
    vendor = normalize_ohlcv(adjusted).rename({"date": "session"})
    expected = compute_indicators_anchored(vendor, cal.sessions, window[0], window[-1]).filter(
        pl.col("symbol") == SPLIT_SYMBOL
    )
    # volume_ratio_20 apart: the fake's unadjusted volume is the adjusted volume // 4, so x 4 is not exact
    columns = ["symbol", "session", "close", *(c for c in INDICATOR_COLUMNS if c != "volume_ratio_20")]
    after = pl.col("session") >= ex_date
    assert_frame_equal(got.filter(after).select(columns), expected.filter(after).select(columns), rtol=1e-9)
    ratio = ["volume_ratio_20"]
    assert_frame_equal(got.filter(after).select(ratio), expected.filter(after).select(ratio), rtol=1e-5)
    assert got.filter(after)["sma_20"].drop_nulls().len() > 0  # not vacuous: the 20 sessions before are there
    # before the ex-date the split was not known yet: the indicators of the prices as they traded (x4)
    day_before = got.filter(pl.col("session") == window[49])
    assert day_before["close"].item() == pytest.approx(
        4 * expected.filter(pl.col("session") == window[49])["close"].item()
    )

    # Alpaca was asked for the universe's splits, covering cleaning's sessions and its history
    calls = alpaca_server.requests_to("/v1/corporate-actions")
    assert calls and all(c.params["symbols"] == ",".join(sorted(UNIVERSE)) for c in calls)
    assert any(
        dt.date.fromisoformat(c.params["start"]) <= cal.offset(window[0], -10)
        and dt.date.fromisoformat(c.params["end"]) >= window[-1]
        for c in calls
    )

    logged = " ".join(str(e) for e in instance.all_logs(result.run_id))
    assert TEST_SECRET_KEY not in logged and TEST_KEY_ID not in logged


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TRADING_DAGSTER_CORPORATE_ACTIONS": "vendor"},
            r"must be 'none', 'file' or 'alpaca', not 'vendor'",
        ),
        (
            {"TRADING_DAGSTER_CORPORATE_ACTIONS": "file"},
            r"=file needs TRADING_DAGSTER_CORPORATE_ACTIONS_FILE",
        ),
        (
            {
                "TRADING_DAGSTER_CORPORATE_ACTIONS": "alpaca",
                "TRADING_DAGSTER_CORPORATE_ACTIONS_FILE": "splits.csv",
            },
            r"=alpaca but TRADING_DAGSTER_CORPORATE_ACTIONS_FILE is set too",
        ),
        (  # Alpaca's bars are split-adjusted by default: Alpaca's splits on top would adjust twice
            {"TRADING_DAGSTER_MARKET_DATA": "alpaca", "TRADING_DAGSTER_CORPORATE_ACTIONS": "alpaca"},
            r"ALPACA_ADJUSTMENT=split\) would adjust every split twice: set TRADING_DAGSTER_ALPACA_ADJUSTMENT=raw",
        ),
        (
            {
                "TRADING_DAGSTER_MARKET_DATA": "alpaca",
                "TRADING_DAGSTER_ALPACA_ADJUSTMENT": "all",
                "TRADING_DAGSTER_CORPORATE_ACTIONS_FILE": "splits.csv",
            },
            r"CORPORATE_ACTIONS=file with Alpaca bars adjusted for splits \(TRADING_DAGSTER_ALPACA_ADJUSTMENT=all",
        ),
    ],
)
def test_corporate_actions_settings_that_make_no_sense_are_refused(tmp_path, env, message):
    config = str(_config(tmp_path, UNIVERSE))
    with pytest.raises(SettingsError, match=message):
        make_settings(tmp_path, TRADING_DAGSTER_CONFIG=config, **env)


def test_corporate_actions_settings(tmp_path):
    config = str(_config(tmp_path, UNIVERSE))
    assert make_settings(tmp_path).corporate_actions == "none"
    with_file = make_settings(tmp_path, TRADING_DAGSTER_CORPORATE_ACTIONS_FILE="splits.csv")
    assert (with_file.corporate_actions, with_file.corporate_actions_file.name) == ("file", "splits.csv")
    # bars from a file (or an import, a landing drop) may be unadjusted: the user's call
    assert make_settings(tmp_path, TRADING_DAGSTER_CONFIG=config, TRADING_DAGSTER_CORPORATE_ACTIONS="alpaca")
    dividend_only = make_settings(
        tmp_path,
        TRADING_DAGSTER_CONFIG=config,
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_ADJUSTMENT="dividend",  # not split-adjusted
        TRADING_DAGSTER_CORPORATE_ACTIONS="alpaca",
    )
    assert dividend_only.corporate_actions == "alpaca"
    alpaca = make_settings(
        tmp_path,
        TRADING_DAGSTER_CONFIG=config,
        TRADING_DAGSTER_MARKET_DATA="alpaca",
        TRADING_DAGSTER_ALPACA_ADJUSTMENT="raw",
        TRADING_DAGSTER_CORPORATE_ACTIONS="Alpaca",
    )
    assert (alpaca.corporate_actions, alpaca.corporate_actions_file) == ("alpaca", None)
    with pytest.raises(SettingsError, match=r"CORPORATE_ACTIONS=alpaca needs the symbols"):
        make_settings(tmp_path, TRADING_DAGSTER_CORPORATE_ACTIONS="alpaca")
