"""`trading-dagster` as a user meets it: `main([...])` in-process, on a throwaway data folder and DAGSTER_HOME.

What an import refuses (file-level garbage) it refuses before anything is written, with a message that names
the file and the problem, and no stack trace; what it accepts it merges into one raw object per session
(decision 0004): rows on no session are rejected and named, empty and all-null sessions are named, extra
columns are named as ignored, and nothing already in the store is lost. The demo prints the report.
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


def session_objects(root: Path) -> list[str]:
    return [p for p in raw_objects(root) if p.startswith("raw/prices/") and p.endswith(".parquet")]


def lake(root: Path):
    from trading_dagster.resources.raw_store import LocalRawStore

    return LocalRawStore(root / "data" / "lake")


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


def _only_a_sunday(path: Path) -> Path:
    bars = sample_bars().filter(pl.col("date") == LAST).with_columns(date=pl.lit(dt.date(2017, 7, 9)))
    return write_vendor_csv(bars, path)


def _two_close_columns(path: Path) -> Path:
    """A header with `Close` twice (polars reads the second as `Close_duplicated_0`): which is the close?"""
    write_vendor_csv(sample_bars(), path)
    lines = path.read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    i = header.index("Close")
    path.write_text("\n".join(",".join([*r[: i + 1], r[i], *r[i + 1 :]]) for r in [header, *rows]) + "\n")
    return path


def _shifted_dates(path: Path) -> Path:
    """Every bar stamped 20:00 New York and written in UTC: each session lands on the next day (Friday's on
    Saturday), the whole file a session late."""
    bars = sample_bars(dt.date(2017, 6, 5), dt.date(2017, 6, 30))
    stamp = pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("America/New_York") + pl.duration(hours=20)
    return write_vendor_csv(bars.with_columns(date=stamp.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")), path)


@pytest.mark.parametrize(
    ("make_file", "expected"),
    [
        pytest.param(_html_page, r"HTML.*not price data.*502 Bad Gateway", id="html-error-page"),
        pytest.param(_empty, r"the file is empty", id="empty-file"),
        pytest.param(_no_close, r"missing required price column\(s\) \['close'\]", id="no-close-column"),
        pytest.param(_only_a_sunday, r"none of its 3 row\(s\) belongs to a session that has closed \(NON_SESSION_DATE 3\)", id="only-a-sunday"),
        pytest.param(_two_close_columns, r"'close' from \['Close', 'Close_duplicated_0'\]", id="two-close-columns"),
        pytest.param(_shifted_dates, r"dates look shifted", id="dates-shifted-a-day"),
    ],
)
def test_import_refuses_a_bad_file_and_writes_nothing(cli_env, capsys, make_file, expected):
    path = make_file(cli_env / "prices.csv")

    code = main(["import", str(path)])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith(f"cannot import {path}: "), err
    assert re.search(expected, err), err
    assert "Traceback" not in err and len(err.splitlines()) <= 3  # a message, not a stack trace
    assert "backfill --start" not in out  # no follow-up command for a refused file
    assert_nothing_materialized(cli_env)


def test_import_of_a_good_csv_writes_one_object_per_session_and_names_the_range(cli_env, capsys):
    bars = sample_bars()
    assert bars.height == len(SYMBOLS) * len(SESSIONS)
    path = write_vendor_csv(bars, cli_env / "my_prices.csv")

    code = main(["import", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert session_objects(cli_env) == [f"raw/prices/date={s}/prices.parquet" for s in SESSIONS]  # none for the holiday
    lake = cli_env / "data" / "lake"
    for session in SESSIONS:
        got = pl.read_parquet(lake / f"raw/prices/date={session}/prices.parquet")
        want = bars.filter(pl.col("date") == session).rename({"ticker": "symbol"})
        assert got.select(want.columns).sort("symbol").equals(want.sort("symbol")), session
    assert f"importing my_prices.csv: 4 sessions {FIRST}..{LAST}" in out
    assert f"trading-dagster backfill --start {FIRST} --end {LAST} --skip-raw" in out
    instance = dg.DagsterInstance.get()
    assert instance.get_latest_materialization_event(dg.AssetKey(["raw", "raw_prices"])) is not None


def test_import_of_per_symbol_files_and_a_later_one_keeps_every_symbol(cli_env, capsys):
    """Two per-symbol files in one call (one delivery), then a third in another call: nothing is replaced."""
    paths = []
    for symbol in SYMBOLS:
        paths.append(write_vendor_csv(sample_bars().filter(pl.col("ticker") == symbol), cli_env / f"{symbol}.csv"))

    assert main(["import", str(paths[0]), str(paths[1])]) == 0
    out, _ = capsys.readouterr()
    assert "importing 2 files (AAPL.csv .. MSFT.csv): 4 sessions 2017-07-03..2017-07-07" in out
    assert "sessions: 4 added, 0 revised, 0 unchanged" in out and "bars: 8 added" in out
    assert main(["import", str(paths[2])]) == 0
    out, _ = capsys.readouterr()
    assert "sessions: 0 added, 4 revised, 0 unchanged" in out and "bars: 4 added, 0 revised" in out

    store = lake(cli_env)
    assert store.read_sessions(SESSIONS).sort("date", "symbol").equals(
        sample_bars().rename({"ticker": "symbol"}).select(store.read_sessions(SESSIONS).columns).sort("date", "symbol")
    )
    assert len(store.list_imports()) == 2


def test_import_of_a_folder_names_rejected_rows_outages_and_ignored_columns(cli_env, capsys):
    """A vendor folder (real rows, defects applied): a holiday row, a Saturday row at the end, no row at all on
    07-05, only nulls on 07-06, an extra column. The rest imports; everything is named; exit 0."""
    folder = cli_env / "export"
    folder.mkdir()
    bars = sample_bars().with_columns(adj_close=pl.col("close") * 0.97)
    holiday = bars.filter(pl.col("date") == dt.date(2017, 7, 3)).head(1).with_columns(date=pl.lit(dt.date(2017, 7, 4)))
    saturday = bars.filter(pl.col("date") == LAST).head(1).with_columns(date=pl.lit(dt.date(2017, 7, 8)))
    delivered = pl.concat([bars.filter(pl.col("date") != SESSIONS[1]), holiday, saturday]).with_columns(
        [pl.when(pl.col("date") == SESSIONS[2]).then(None).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "volume")]
    )
    write_vendor_csv(delivered.filter(pl.col("ticker") != "SPY"), folder / "part1.csv")
    write_vendor_csv(delivered.filter(pl.col("ticker") == "SPY"), folder / "part2.csv")
    (folder / "_SUCCESS").write_text("")

    code = main(["import", str(folder)])

    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "rejected rows (belong to no session)" in out and "NON_SESSION_DATE: 2" in out
    assert "e.g. AAPL 2017-07-04: 2017-07-04 is a weekday the exchange is closed" in out
    assert "2017-07-08 is Saturday" in out
    assert "empty sessions (no row delivered; data outages): 1: 2017-07-05" in out
    assert "all-null sessions (every value null; data outages): 1: 2017-07-06" in out
    assert "ignored columns (not imported): adj_close" in out
    assert session_objects(cli_env) == [f"raw/prices/date={s}/prices.parquet" for s in SESSIONS]
    store = lake(cli_env)
    assert store.read_session(SESSIONS[1]).height == 0  # the record that the vendor delivered nothing
    (import_id,) = store.list_imports()
    assert sorted(store.read_rejected(import_id)["date"].to_list()) == [dt.date(2017, 7, 4), dt.date(2017, 7, 8)]


def test_import_of_the_real_nasdaq_rows_rejects_the_mlk_day_row(cli_env, capsys):
    """Real rows cut from the shared NASDAQ file: CLM's all-NaN row on MLK Day 2018-01-15 is rejected and named,
    the rest imports, adj_close and asset_type are named as ignored."""
    sample = Path(__file__).parent / "data" / "raw_merge_nasdaq_2018_01_and_2023_04.parquet"
    path = cli_env / "nasdaq.parquet"
    pl.read_parquet(sample).filter(pl.col("date") < dt.date(2019, 1, 1)).write_parquet(path)

    code = main(["import", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "NON_SESSION_DATE: 1" in out and "e.g. CLM 2018-01-15" in out
    assert "ignored columns (not imported): adj_close, asset_type" in out
    assert "empty sessions (no row delivered; data outages): 0" in out
    assert len(session_objects(cli_env)) == 6


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
