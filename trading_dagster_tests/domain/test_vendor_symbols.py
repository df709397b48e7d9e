"""`vendor_files._parse_symbol` parses each run of equal symbols once and spreads it back: the same values as
parsing every row (strip, upper-case, blank -> missing), whatever the order, the blanks and the nulls."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_dagster.domain import vendor_files


def _row_by_row(s: pl.Series) -> list[str | None]:
    out = []
    for v in s.cast(pl.Utf8).to_list():
        text = None if v is None else v.strip()
        out.append(None if text is None or text == "" else text.upper())
    return out


symbols = st.sampled_from([" aapl", "AAPL", "aapl ", "", "  ", "NA", "nan", "Ñx", "brk.b", None, "msft"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(symbols, st.integers(1, 6)), max_size=40))
def test_runs_parse_as_rows(runs):
    values = [v for v, n in runs for _ in range(n)]
    s = pl.Series("ticker", values, dtype=pl.Utf8)
    got = vendor_files._parse_symbol(s)
    assert got.dtype == pl.Utf8 and got.to_list() == _row_by_row(s)


def test_a_grouped_file_and_other_column_types():
    grouped = pl.Series("ticker", [f" t{i % 50:02d}" for i in range(5000)]).sort()
    assert vendor_files._parse_symbol(grouped).to_list() == _row_by_row(grouped)
    for s in (
        pl.Series("s", [], dtype=pl.Utf8),
        pl.Series("s", [None, None], dtype=pl.Null),
        pl.Series("s", [1, 1, 2, 2, 2]),
        pl.Series("s", ["a", "a", "b", "b"], dtype=pl.Categorical),
    ):
        assert vendor_files._parse_symbol(s).to_list() == _row_by_row(s)
