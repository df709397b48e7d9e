"""Tests of the research functions (issue 11)."""
