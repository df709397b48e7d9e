"""The shipped sample cleaned by the pipeline, its indicators and the NYSE calendar (the reference tests'
fixtures and one more), and a warehouse file holding given frames as tables: the research assets' inputs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from trading_dagster_tests.reference.conftest import calendar, cleaned, sample_sessions

__all__ = ["calendar", "cleaned", "sample_sessions", "sample_indicators", "write_warehouse"]


@pytest.fixture(scope="session")
def sample_indicators(cleaned, calendar, sample_sessions) -> pl.DataFrame:
    """The indicators table of the whole sample, as the pipeline computes it."""
    from trading_dagster.domain.indicators import compute_indicators_anchored

    return compute_indicators_anchored(cleaned, calendar, sample_sessions[0], sample_sessions[-1])


def write_warehouse(path: Path | str, tables: dict[str, pl.DataFrame | None]) -> str:
    """A DuckDB file at `path` with each frame as the table named "schema.table" (None: no table)."""
    con = duckdb.connect(str(path))
    try:
        for name, frame in tables.items():
            if frame is None:
                continue
            schema = name.split(".")[0]
            arrow = frame.to_arrow()  # noqa: F841  (read by DuckDB's replacement scan)
            con.execute(f"create schema if not exists {schema}; create table {name} as select * from arrow")
    finally:
        con.close()
    return str(path)


def research_resources(database: str, tmp_path: Path, **overrides) -> dict:
    """The resources a research asset runs with on the warehouse `database`: its IO manager and reader, the
    default trading config, and a backtest book with 1 bp commission and 5 bp slippage; `overrides` replace."""
    from trading_dagster.assets.portal import WarehouseReader
    from trading_dagster.resources.configured import BacktestBookResource, CostsConfig, TradingConfigResource
    from trading_dagster.resources.warehouse import WarehouseIOManager

    return {
        "io_manager": WarehouseIOManager(database=database),
        "warehouse": WarehouseReader(database=database),
        "trading_config": TradingConfigResource(),
        "backtest_book": BacktestBookResource(
            ledger_path=str(tmp_path / "book.duckdb"), costs=CostsConfig(commission_bps=1.0, slippage_bps=5.0)
        ),
        **overrides,
    }
