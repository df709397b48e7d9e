"""Helpers for the rule tests: derive a bad frame from a good one, and assert a rule's whole verdict."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.checks.rules import CheckOutcome


def at(symbol: str, session: dt.date) -> pl.Expr:
    return (pl.col("symbol") == symbol) & (pl.col("session") == session)


def with_values(df: pl.DataFrame, where: pl.Expr, **values) -> pl.DataFrame:
    """`df` with `values` (literals or expressions over the row) set on the one row where `where` holds."""
    assert df.filter(where).height == 1, df.filter(where)
    return df.with_columns(
        pl.when(where)
        .then(v if isinstance(v, pl.Expr) else pl.lit(v, dtype=df.schema[c]))
        .otherwise(pl.col(c))
        .alias(c)
        for c, v in values.items()
    )


def conditions(outcome: CheckOutcome) -> dict[str, int]:
    text = outcome.metadata.get("failed_conditions", "")
    return {name: int(n) for name, n in (part.split(": ") for part in text.split(", ") if part)}


def assert_passes(outcome: CheckOutcome, rows: int | None = None, what: str | None = None) -> None:
    assert outcome.passed, outcome.description
    assert outcome.failed_sessions == () and outcome.metadata["offending_rows"] == 0
    assert outcome.description.startswith("no ")
    if what is not None:
        assert outcome.description == f"no {what}"
    if rows is not None:
        assert outcome.metadata["rows_checked"] == rows


def assert_fails(
    outcome: CheckOutcome, sessions: tuple, failed: dict[str, int] | None = None, rows: int = 1
) -> None:
    """Failed, naming exactly `sessions` for the gate, `rows` offending rows and (when given) exactly the
    `failed` conditions with their row counts."""
    assert outcome.passed is False  # the gate and Dagster take a bool
    assert outcome.failed_sessions == sessions
    assert outcome.metadata["offending_rows"] == rows
    assert outcome.description.startswith(f"{rows} rows with ")
    if failed is not None:
        assert conditions(outcome) == failed
        for name in failed:
            assert name in outcome.description
