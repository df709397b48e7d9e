"""`trading-dagster` as a user meets it: `main([...])` in-process, on a throwaway data folder and DAGSTER_HOME.

What an import refuses it refuses before anything is written, with a message that names the file and the
problem; what it accepts lands as one raw object per session; the demo prints the report.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_dagster.cli import main
from trading_dagster.definitions import build_definitions
from trading_dagster.settings import SAMPLE_FILE, load_settings
from trading_dagster_tests.integration.conftest import check_count

SYMBOLS = ["AAPL", "MSFT", "SPY"]
# 2017-07-03 (Mon) .. 2017-07-07 (Fri): four sessions around Independence Day (Tue 2017-07-04, closed)
FIRST, LAST = dt.date(2017, 7, 3), dt.date(2017, 7, 7)
SESSIONS = [dt.date(2017, 7, 3), dt.date(2017, 7, 5), dt.date(2017, 7, 6), dt.date(2017, 7, 7)]
VENDOR_SPELLING = {"ticker": "Ticker", "date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Path:
    """TRADING_DAGSTER_DATA_DIR and DAGSTER_HOME in tmp; every variable the CLI sets is restored afterwards."""
    monkeypatch.setenv("TRADING_DAGSTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    # ensure_dagster_home sets this with os.environ.setdefault; setting it here makes monkeypatch undo it
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    for name in ("TRADING_DAGSTER_MARKET_DATA_FILE", "TRADING_DAGSTER_CONFIG", "TRADING_DAGSTER_RAW_STORE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def raw_objects(root: Path) -> list[str]:
    lake = root / "data" / "lake"
    return sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*")) if lake.exists() else []


def sample_bars(first: dt.date = FIRST, last: dt.date = LAST) -> pl.DataFrame:
    return (
        pl.read_parquet(SAMPLE_FILE)
        .filter(pl.col("ticker").is_in(SYMBOLS) & pl.col("date").is_between(first, last))
        .sort("date", "ticker")
    )


def write_vendor_csv(df: pl.DataFrame, path: Path) -> Path:
    df.rename(VENDOR_SPELLING, strict=False).write_csv(path)
    return path


def assert_nothing_materialized(root: Path) -> None:
    assert raw_objects(root) == []
    instance = dg.DagsterInstance.get()  # DAGSTER_HOME of the fixture
    assert instance.get_latest_materialization_event(dg.AssetKey(["raw", "raw_prices"])) is None
    assert instance.get_runs() == []  # refused before a run was even launched


def _html_page(path: Path) -> Path:
    path.write_text(
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
        "<body><h1>502 Bad Gateway</h1></body></html>\n"
    )
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _no_close(path: Path) -> Path:
    return write_vendor_csv(sample_bars().drop("close"), path)


def _holiday_row(path: Path) -> Path:
    """A row on Independence Day between good sessions (a vendor that fills holidays forward)."""
    bars = sample_bars()
    holiday = bars.filter(pl.col("date") == dt.date(2017, 7, 5)).head(1).with_columns(date=pl.lit(dt.date(2017, 7, 4)))
    return write_vendor_csv(pl.concat([bars, holiday]).sort("date", "ticker"), path)


def _saturday_row_at_the_end(path: Path) -> Path:
    """The last row is dated Saturday 2017-07-08: outside every session in the file's date range."""
    bars = sample_bars()
    saturday = bars.filter(pl.col("date") == LAST).head(1).with_columns(date=pl.lit(dt.date(2017, 7, 8)))
    return write_vendor_csv(pl.concat([bars, saturday]), path)


def _only_a_sunday(path: Path) -> Path:
    bars = sample_bars().filter(pl.col("date") == LAST).with_columns(date=pl.lit(dt.date(2017, 7, 9)))
    return write_vendor_csv(bars, path)


@pytest.mark.parametrize(
    ("make_file", "expected"),
    [
        pytest.param(_html_page, r"HTML.*not price data.*502 Bad Gateway", id="html-error-page"),
        pytest.param(_empty, r"the file is empty", id="empty-file"),
        pytest.param(_no_close, r"missing required price column\(s\) \['close'\]", id="no-close-column"),
        pytest.param(_holiday_row, r"1 row\(s\) on 1 non-session date\(s\): 2017-07-04 \(a weekday the exchange is closed", id="holiday-row"),
        pytest.param(_saturday_row_at_the_end, r"non-session date\(s\): 2017-07-08 \(Saturday, 1 row\)", id="saturday-row-at-the-end"),
        pytest.param(_only_a_sunday, r"3 row\(s\) on 1 non-session date\(s\): 2017-07-09 \(Sunday", id="only-a-sunday"),
    ],
)
def test_import_refuses_a_bad_file_and_writes_nothing(cli_env, capsys, make_file, expected):
    path = make_file(cli_env / "prices.csv")

    code = main(["import", str(path)])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith(f"cannot import {path}: "), err
    assert re.search(expected, err), err
    assert "backfill --start" not in out  # no follow-up command for a refused file
    assert_nothing_materialized(cli_env)


def test_import_of_a_good_csv_writes_one_object_per_session_and_names_the_range(cli_env, capsys):
    bars = sample_bars()
    assert bars.height == len(SYMBOLS) * len(SESSIONS)
    path = write_vendor_csv(bars, cli_env / "my_prices.csv")

    code = main(["import", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    files = [p for p in raw_objects(cli_env) if (cli_env / "data" / "lake" / p).is_file()]
    assert files == [f"raw/prices/date={s}/prices.parquet" for s in SESSIONS]  # none for the holiday, nothing else
    lake = cli_env / "data" / "lake"
    for session in SESSIONS:
        got = pl.read_parquet(lake / f"raw/prices/date={session}/prices.parquet")
        want = bars.filter(pl.col("date") == session).rename({"ticker": "symbol"})
        assert got.select(want.columns).sort("symbol").equals(want.sort("symbol")), session
    assert f"importing my_prices.csv: 4 sessions {FIRST}..{LAST}" in out
    assert f"trading-dagster backfill --start {FIRST} --end {LAST} --skip-raw" in out
    instance = dg.DagsterInstance.get()
    assert instance.get_latest_materialization_event(dg.AssetKey(["raw", "raw_prices"])) is not None


def test_demo_on_five_sessions_prints_the_report(cli_env, capsys):
    code = main(["demo", "--sessions", "5"])

    out, err = capsys.readouterr()
    assert code == 0, (out, err[-3000:])
    assert "trading-dagster: backtest report" in out
    # the sample starts 2008-01-02; five sessions end on Tuesday 2008-01-08
    assert "period            2008-01-02 .. 2008-01-08 (5 sessions)" in out
    checks = re.search(r"^checks +(\d+) passed, (\d+) failed, 0 warning\(s\)$", out, re.MULTILINE)
    assert checks is not None, out
    n_checks = check_count(build_definitions(load_settings()))
    assert int(checks.group(1)) == n_checks and int(checks.group(2)) == 0  # every check ran, none failed
    traded = pl.read_parquet(SAMPLE_FILE).filter(pl.col("date") <= dt.date(2008, 1, 8))["ticker"].n_unique()
    assert re.search(rf"^symbols +{traded}$", out, re.MULTILINE), out  # every ticker the sample has then
    objects = [p for p in raw_objects(cli_env) if p.endswith(".parquet")]
    assert len(objects) == 5 and objects[-1] == "raw/prices/date=2008-01-08/prices.parquet"
    assert (cli_env / "data" / "reports" / "equity_curve.png").stat().st_size > 0
