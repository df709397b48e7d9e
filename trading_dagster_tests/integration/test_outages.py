"""Data outages through Dagster (decision 0004, section 2): a session the vendor delivered nothing for, or
only null rows for, is recorded, alerted and shown, and the pipeline goes on; `on_missing_session = "halt"`
makes it blocking again.

Built from the shipped sample's real rows after the warm history (integration/conftest.py), with the defect
applied: a session removed (the vendor delivered nothing), a session whose prices are all null, 20-40% of
the symbols dropped on most sessions of a stretch.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import polars as pl
import pytest

from trading_dagster.assets.prices import _send_outage_alerts
from trading_dagster.definitions import build_definitions
from trading_dagster.domain.prices import NULL_VALUE
from trading_dagster.domain.quality import (
    OUTAGE_MISSING_SYMBOLS,
    OUTAGE_NO_BARS,
    OUTAGE_SCHEMA,
    outage_stretches,
)
from trading_dagster.partitions import session_calendar
from trading_dagster.resources.alerts import AlertDeliveryError, AlertsResource
from trading_dagster.resources.configured import QualityGateResource
from trading_dagster.resources.quality_gate import QualityGate
from trading_dagster.resources.raw_store import LocalRawStore
from trading_dagster.settings import DEFAULT_CONFIG_FILE, SAMPLE_FILE, Settings
from trading_dagster_tests.integration.conftest import make_settings, read_table, run_range

PRICES = ["open", "high", "low", "close"]
CLEANED_STEP = [
    dg.AssetKey(["prices", "cleaned_prices"]),
    dg.AssetKey(["prices", "price_quarantine"]),
    dg.AssetKey(["prices", "data_outages"]),
]
INDICATORS = [dg.AssetKey(["indicators", "indicators"])]


def _sample(window: list[dt.date]) -> pl.DataFrame:
    return pl.read_parquet(SAMPLE_FILE).filter(pl.col("date").is_in(window))


def _halt_settings(settings: Settings, tmp_path: Path, **env: str) -> Settings:
    config = tmp_path / "halt.toml"
    config.write_text(DEFAULT_CONFIG_FILE.read_text() + '\n[data]\non_missing_session = "halt"\n')
    return make_settings(settings.data_dir, TRADING_DAGSTER_CONFIG=str(config), **env)


def _write_raw(settings: Settings, window: list[dt.date], empty: dt.date, null: dt.date) -> None:
    """Raw objects for `window` as the raw step leaves them after an outage (decision 0004, section 2): an
    empty object for `empty` (the vendor delivered nothing) and the delivered rows, every price null, for
    `null`; each object shaped like the warm history's (whatever provenance columns the raw zone holds)."""
    store = LocalRawStore(settings.raw_root)
    template = store.read_session(session_calendar().previous_session(window[0]))
    rows = _sample(window).rename({"ticker": "symbol"})
    for day in window:
        part = rows.filter(pl.col("date") == day)
        if day == empty:
            part = part.head(0)
        if day == null:
            part = part.with_columns([pl.lit(None, pl.Float64).alias(c) for c in PRICES], volume=pl.lit(None, pl.Int64))
        extra = [pl.lit(template[c][0] if template.height else None, dtype=t).alias(c) for c, t in template.schema.items() if c not in part.columns]
        store.write_session(day, part.with_columns(extra).select(template.columns).cast(dict(template.schema)))


def _evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _alerts(settings: Settings) -> list[dict]:
    path = settings.data_dir / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["kind"] == "data_outage"]


def test_an_empty_and_an_all_null_session_are_warned_outages_that_block_nothing(warm_copy):
    settings, sessions = warm_copy
    window = sessions[:4]
    empty, null = window[1], window[2]
    _write_raw(settings, window, empty, null)
    defs = build_definitions(settings)

    result = run_range(defs, window[0], window[-1], selection=CLEANED_STEP)

    assert result.success
    checks = _evaluations(result)
    rows = checks["cleaned_prices__every_session_has_rows"]
    assert not rows.passed and rows.severity == dg.AssetCheckSeverity.WARN
    assert rows.metadata["missing_sessions"].value == f"{empty}, {null}"
    outage = checks["cleaned_prices__no_outage"]
    assert not outage.passed and outage.severity == dg.AssetCheckSeverity.WARN
    assert outage.description == f"2 outage session(s): {empty} {OUTAGE_NO_BARS}; {null} {OUTAGE_NO_BARS}"
    assert all(e.passed for name, e in checks.items() if name not in ("cleaned_prices__every_session_has_rows", "cleaned_prices__no_outage"))

    table = read_table(settings, "prices.data_outages").sort("session")
    assert table.select("session", "reason", "rows", "null_rows", "active_symbols", "missing_count").rows() == [
        (empty, OUTAGE_NO_BARS, 0, 0, 42, 42),
        (null, OUTAGE_NO_BARS, 42, 42, 42, 42),
    ]
    assert table["detail"][1].startswith("42 rows, none with a close (null rows); all 42 active symbols are missing")
    cleaned = read_table(settings, "prices.cleaned_prices")
    assert sorted(cleaned.filter(pl.col("session").is_in(window))["session"].unique()) == [window[0], window[3]]
    quarantine = read_table(settings, "prices.price_quarantine").filter(pl.col("session") == null)
    assert quarantine.height == 42 and set(quarantine["reason"]) == {NULL_VALUE}  # kept as delivered

    # the gate counts them as judged and present: a later run whose lookback spans them is not refused
    gate = QualityGate(settings.quality_gate_path)
    assert gate.failures("prices/cleaned_prices", window[0], window[-1]).is_empty()
    assert gate.passed_sessions("prices/cleaned_prices", window[0], window[-1]) == window
    assert run_range(defs, window[3], window[3], selection=INDICATORS).success

    # one alert per outage, once: a re-run of the same partitions finds the same outages and alerts nothing
    alerts = _alerts(settings)
    assert [a["title"] for a in alerts] == [f"Data outage: {empty} {OUTAGE_NO_BARS}", f"Data outage: {null} {OUTAGE_NO_BARS}"]
    assert alerts[0]["severity"] == "WARNING" and "orders due at their open expire" in alerts[0]["text"]
    assert run_range(defs, window[0], window[-1], selection=CLEANED_STEP).success
    assert len(_alerts(settings)) == 2


def test_on_missing_session_halt_makes_an_empty_session_a_blocking_failure(warm_copy, tmp_path):
    settings, sessions = warm_copy
    window = sessions[:4]
    empty, null = window[1], window[2]
    _write_raw(settings, window, empty, null)
    defs = build_definitions(_halt_settings(settings, tmp_path))

    result = run_range(defs, window[0], window[-1], selection=CLEANED_STEP, raise_on_error=False)

    assert not result.success
    check = _evaluations(result)["cleaned_prices__every_session_has_rows"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["missing_sessions"].value == f"{empty}, {null}"
    failed = QualityGate(settings.quality_gate_path).failures("prices/cleaned_prices", window[0], window[-1])
    assert sorted(set(failed["session"])) == [empty, null]  # closed for every later reader
    later = run_range(defs, window[3], window[3], selection=INDICATORS, raise_on_error=False)
    assert not later.success  # its lookback reaches the halted sessions


def _degrade(rows: pl.DataFrame, days: list[dt.date], seed: int) -> pl.DataFrame:
    """Drop 20-40% of each session's symbols on 80% of `days` (real rows, the defect applied)."""
    rng = np.random.default_rng(seed)
    drops = []
    for day in days:
        if rng.random() < 0.8:
            present = sorted(rows.filter(pl.col("date") == day)["ticker"].to_list())
            k = int(len(present) * rng.uniform(0.2, 0.4))
            drops += [(day, s) for s in rng.choice(present, k, replace=False).tolist()]
    gone = pl.DataFrame(drops, schema={"date": pl.Date, "ticker": pl.Utf8}, orient="row")
    return rows.join(gone, on=["date", "ticker"], how="anti")


@pytest.mark.slow
def test_a_degraded_stretch_is_flagged_as_one_stretch_and_a_range_equals_day_by_day(warm_copy, tmp_path):
    """Six weeks of the sample with 20-40% of the symbols missing on most sessions, ingested through the raw
    step: every such session is in prices/data_outages, the check names one stretch, and the same sessions
    run one by one give the same table."""
    settings, sessions = warm_copy
    window = sessions[:30]
    source = tmp_path / "degraded.parquet"
    _degrade(_sample(window), window, seed=8).write_parquet(source)
    daily_dir = tmp_path / "daily"
    shutil.copytree(settings.data_dir, daily_dir)
    raw_and_cleaned = [dg.AssetKey(["raw", "raw_prices"]), *CLEANED_STEP]
    defs = build_definitions(make_settings(settings.data_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(source)))

    result = run_range(defs, window[0], window[-1], selection=raw_and_cleaned)

    assert result.success
    table = read_table(settings, "prices.data_outages").sort("session")
    short = set(_sample(window).group_by("date").len().filter(pl.col("len") < 42 * 0.8)["date"])  # none: control
    assert not short
    assert table.height >= 15 and set(table["reason"]) <= {OUTAGE_MISSING_SYMBOLS, "OUTAGE_DEGRADED"}
    assert table["missing_share"].min() >= 0.05 and table["active_symbols"].min() >= 40  # it did not sink
    description = _evaluations(result)["cleaned_prices__no_outage"].description
    start = table["stretch_start"].drop_nulls().min()
    assert f"{start}..{table['session'].max()} " in description and "degraded stretch" in description
    [alert] = _alerts(settings)  # one stretch, one alert
    assert alert["title"].startswith(f"Data outage: {start}..{table['session'].max()} ")
    assert alert["details"]["sessions"] == [str(d) for d in table["session"]]

    daily = build_definitions(make_settings(daily_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(source)))
    for day in window:
        assert run_range(daily, day, day, selection=raw_and_cleaned).success
    other = read_table(make_settings(daily_dir), "prices.data_outages").sort("session")
    assert other.equals(table)


class _Down(AlertsResource):
    def sink(self, log):  # a webhook that is down
        class Sink:
            def send(self, alert):
                raise AlertDeliveryError("the webhook at hooks.example did not take the alert")

        return Sink()


def test_an_undelivered_outage_alert_is_logged_and_sent_again_by_the_next_run(tmp_path):
    gate = QualityGateResource(path=str(tmp_path / "gate.sqlite"))
    day = dt.date(2011, 2, 17)
    outages = pl.DataFrame(
        [{"session": day, "reason": OUTAGE_MISSING_SYMBOLS, "rows": 374, "null_rows": 0, "active_symbols": 1390,
          "missing_count": 1019, "missing_share": 0.733, "zero_volume_rows": 0, "missing_sample": "DIA, IWM, SPY",
          "stretch_start": None, "detail": "1019 of 1390 active symbols have no usable bar"}],
        schema=OUTAGE_SCHEMA,
    )
    warnings = []
    context = SimpleNamespace(run_id="r1", log=SimpleNamespace(warning=warnings.append, error=lambda _: None))
    _send_outage_alerts(context, gate, _Down(), outages, outage_stretches(outages))
    assert "not delivered" in warnings[0] and "the next run sends it again" in warnings[0]
    sent = tmp_path / "alerts.jsonl"
    _send_outage_alerts(context, gate, AlertsResource(jsonl_path=str(sent)), outages, outage_stretches(outages))
    [alert] = [json.loads(line) for line in sent.read_text().splitlines()]
    assert alert["key"] == f"data_outage:{day}" and "missing on 2011-02-17: DIA, IWM, SPY" in alert["text"]
    _send_outage_alerts(context, gate, AlertsResource(jsonl_path=str(sent)), outages, outage_stretches(outages))
    assert len(sent.read_text().splitlines()) == 1  # delivered once: not again


# ------------------------------------------------------------------------------------- the whole pipeline


def _vendor_file(tmp_path: Path, window: list[dt.date], empty: dt.date, null: dt.date) -> Path:
    rows = _sample(window).filter(pl.col("date") != empty)
    rows = rows.with_columns(
        [pl.when(pl.col("date") == null).then(None).otherwise(pl.col(c)).alias(c) for c in [*PRICES, "volume"]]
    )
    path = tmp_path / "vendor_with_outages.parquet"
    rows.write_parquet(path)
    return path


def _table(settings: Settings, name: str, window: list[dt.date]) -> pl.DataFrame:
    return read_table(settings, name).filter(pl.col("session").is_between(window[0], window[-1]))


@pytest.mark.slow
def test_a_backfill_across_an_empty_and_an_all_null_session_succeeds_and_trades_nothing_on_them(warm_copy, tmp_path):
    """The whole pipeline_job over nine sessions of real rows, one delivered empty and one all null: the run
    succeeds, both are named as outages, nothing is cleaned, signalled or ordered on them, the orders due at
    their open expire, held positions keep the last trusted close; and the same sessions run one by one give
    the same tables."""
    settings, sessions = warm_copy
    window = sessions[:9]
    empty, null = window[3], window[6]  # orders are due at both opens (asserted below)
    source = _vendor_file(tmp_path, window, empty, null)
    daily_dir = tmp_path / "daily"
    shutil.copytree(settings.data_dir, daily_dir)
    defs = build_definitions(make_settings(settings.data_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(source)))

    result = run_range(defs, window[0], window[-1])

    assert result.success
    assert dict(_table(settings, "prices.data_outages", window).select("session", "reason").iter_rows()) == {
        empty: OUTAGE_NO_BARS,
        null: OUTAGE_NO_BARS,
    }
    warnings = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "cleaned_prices__every_session_has_rows" in warnings and "cleaned_prices__no_outage" in warnings
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in result.get_asset_check_evaluations() if not e.passed)
    for name in ("prices.cleaned_prices", "indicators.indicators", "signals.signals", "trading.orders"):
        assert not {empty, null} & set(_table(settings, name, window)["session"]), name

    orders = _table(settings, "trading.orders", window).filter(pl.col("status") == "approved")
    events = _table(settings, "trading.executions", window)
    for outage in (empty, null):
        due = orders.filter(pl.col("session") == session_calendar().previous_session(outage))
        assert due.height > 0, f"no order was due at {outage}'s open: the test would prove nothing"
        at_open = events.filter((pl.col("session") == outage) & pl.col("client_order_id").is_in(due["client_order_id"].implode()))
        assert set(at_open["event"]) == {"expired"}  # no fill without a bar
    positions = _table(settings, "pnl.positions", window)
    held = positions.filter(pl.col("session") == empty)
    assert held.height > 0 and held["stale_price"].all()
    before = positions.filter(pl.col("session") == window[2]).select("symbol", pl.col("close").alias("last"))
    assert held.join(before, on="symbol").filter(pl.col("close") != pl.col("last")).is_empty()
    assert _table(settings, "pnl.equity", window)["session"].to_list() == window

    daily = build_definitions(make_settings(daily_dir, TRADING_DAGSTER_MARKET_DATA_FILE=str(source)))
    for day in window:
        assert run_range(daily, day, day).success, day
    daily_settings = make_settings(daily_dir)
    keys = {
        "prices.cleaned_prices": ["session", "symbol"],
        "prices.data_outages": ["session"],
        "indicators.indicators": ["session", "symbol"],
        "signals.signals": ["session", "symbol", "strategy"],
        "trading.orders": ["session", "symbol", "strategy", "side"],
        "trading.executions": ["session", "client_order_id", "event"],
        "pnl.equity": ["session"],
    }
    for name, by in keys.items():
        a, b = _table(settings, name, window).sort(by), _table(daily_settings, name, window).sort(by)
        assert a.equals(b), (name, pl.concat([a, b]).filter(pl.concat([a, b]).is_unique()).to_dicts())
