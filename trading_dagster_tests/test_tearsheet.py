"""quantstats' full tear sheet (tearsheet.write_quantstats_report) on real closes of the shipped sample: it is fed
our own daily returns and a benchmark Series, so its figures are ours and it downloads nothing."""

from __future__ import annotations

import datetime as dt
import re
import socket

import polars as pl
import pytest

from trading_dagster.domain.metrics import performance_summary
from trading_dagster.settings import SAMPLE_FILE
from trading_dagster.tearsheet import daily_returns, write_quantstats_report


@pytest.fixture(scope="module")
def equity() -> pl.DataFrame:
    """2008-2009 of the sample: equity that holds AAPL from $100,000, SPY as the benchmark (real closes, the
    crash included)."""
    bars = pl.read_parquet(SAMPLE_FILE).filter(
        pl.col("ticker").is_in(["AAPL", "SPY"]) & pl.col("date").is_between(dt.date(2008, 1, 2), dt.date(2009, 12, 31))
    )
    wide = bars.pivot(on="ticker", index="date", values="close").sort("date").drop_nulls()
    return wide.select(
        pl.col("date").alias("session"),
        (100_000 * pl.col("AAPL") / pl.col("AAPL").first()).alias("equity"),
        pl.col("SPY").alias("benchmark_close"),
    )


def test_the_returns_are_ours(equity):
    strategy, bench = daily_returns(equity)
    values = equity["equity"].to_list()
    assert len(strategy) == equity.height - 1
    assert strategy.iloc[0] == pytest.approx(values[1] / values[0] - 1, rel=1e-12)
    assert bench is not None and len(bench) == len(strategy)


def test_the_tear_sheet_is_written_offline_and_its_sharpe_is_ours(equity, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the tear sheet tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = write_quantstats_report(equity, "SPY", tmp_path / "reports" / "quantstats.html", "AAPL 2008-2009")
    text = path.read_text(encoding="utf-8")
    assert "AAPL 2008-2009" in text and "SPY" in text
    assert not list(path.parent.glob("*.tmp"))  # written atomically
    # quantstats' Sharpe ratios (columns Benchmark, Strategy; two decimals): the same figures as our summary's
    header = re.search(r"<tr><th>Metric</th><th>([^<]+)</th><th>([^<]+)</th></tr>", text)
    assert header is not None and header.groups() == ("SPY", "Strategy"), header
    row = re.search(r"<td>Sharpe</td><td>(-?[0-9.]+)</td><td>(-?[0-9.]+)</td>", text)
    assert row is not None, "no Sharpe row in the tear sheet"
    ours = performance_summary(equity)
    assert float(row.group(2)) == pytest.approx(ours["sharpe"], abs=0.006)
    assert float(row.group(1)) == pytest.approx(ours["benchmark_sharpe"], abs=0.006)


def test_too_short_or_flat_an_equity_curve_is_refused_naming_it(equity, tmp_path):
    with pytest.raises(ValueError, match="at least 20 sessions"):
        write_quantstats_report(equity.head(5), "SPY", tmp_path / "q.html", "t")
    # a demo of a few weeks in which nothing traded: quantstats itself would fail on its regressions
    flat = equity.head(30).with_columns(equity=pl.lit(100_000.0))
    with pytest.raises(ValueError, match="never moved"):
        write_quantstats_report(flat, "SPY", tmp_path / "q.html", "t")
    assert not (tmp_path / "q.html").exists()
