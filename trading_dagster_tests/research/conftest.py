"""The shipped sample cleaned by the pipeline and the NYSE calendar: the reference tests' fixtures."""

from trading_dagster_tests.reference.conftest import calendar, cleaned, sample_sessions

__all__ = ["calendar", "cleaned", "sample_sessions"]
