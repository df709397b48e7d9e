"""Pure domain logic: no Dagster import anywhere below this package.

Each module is a set of plain functions over polars frames or small immutable records, unit-tested on
small inputs. Assets call exactly one of these per stage.
"""
