"""Data-quality rules per stage: plain polars functions returning a `CheckOutcome` (no Dagster import).

Assets evaluate them on the frame they are about to write and yield the outcome as a blocking asset-check
result, so a failure stops every downstream step of the run. Metadata says what a person needs to act:
how many rows, which symbols and sessions, and an example.
"""
