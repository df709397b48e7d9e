"""Vendor files: read an OHLCV CSV or Parquet file, map its column spellings and parse its values into
the raw schema, or say exactly what is wrong with it (which column, how many values, an example row).

Never guess what a vendor meant: column spellings are mapped only from an explicit alias table; adjusted
prices are never used in place of raw ones; ambiguous inputs (two columns for one field, a date column in
several formats) are errors, not heuristics. Pure polars, no Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from trading_dagster.domain.bars import (
    PRICE_COLUMNS,
    RAW_COLUMNS,
    RAW_SCHEMA,
    PriceDataError,
    _example_row,
)

# Column spellings we accept, keyed by the canonical name. Names are compared after `_canonical_name`
# (lower case, spaces and dashes as underscores), so "Close", " close " and "CLOSE" are all "close".
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker"),
    "date": ("date", "timestamp", "session", "datetime", "t"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
_ADJUSTED_NAME = re.compile(r"^adj(usted)?_?(open|high|low|close|volume)$")
# Cell texts that mean "no value" in vendor CSVs; they become null (and so NULL_VALUE in quarantine),
# whereas any other text that does not parse is an error.
_NULL_TOKENS: tuple[str, ...] = ("", "na", "n/a", "nan", "null", "none")
_DATE_FORMATS: tuple[str, ...] = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d")


# --------------------------------------------------------------------------------------------------------
# Column mapping and normalization
# --------------------------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def resolve_columns(columns: Sequence[str]) -> dict[str, str]:
    """Map each raw column to the source column that holds it, or raise a PriceDataError that says why not.

    Kept separate from `normalize_ohlcv` so a lazy Parquet scan can select just these columns.
    """
    by_alias = {alias: canon for canon, aliases in COLUMN_ALIASES.items() for alias in aliases}
    found: dict[str, list[str]] = {}
    for col in columns:
        canon = by_alias.get(_canonical_name(col))
        if canon is not None:
            found.setdefault(canon, []).append(col)

    ambiguous = {canon: cols for canon, cols in found.items() if len(cols) > 1}
    if ambiguous:
        parts = "; ".join(f"{canon!r} from {cols}" for canon, cols in ambiguous.items())
        raise PriceDataError(f"ambiguous price columns: {parts}. Keep exactly one source column per field.")

    missing = [c for c in RAW_COLUMNS if c not in found]
    if missing:
        adjusted = [c for c in columns if _ADJUSTED_NAME.match(_canonical_name(c))]
        hint = ""
        if adjusted:
            hint = (
                f" Only adjusted columns were found for these ({adjusted}); adjusted prices are not used "
                "in place of raw ones silently. Rename them explicitly if that is really what you want."
            )
        accepted = "; ".join(f"{c}: {'|'.join(COLUMN_ALIASES[c])}" for c in missing)
        raise PriceDataError(
            f"missing required price column(s) {missing}. Found columns: {list(columns)}. "
            f"Expected: {list(RAW_COLUMNS)} (accepted spellings, case-insensitive: {accepted}).{hint}"
        )
    return {canon: cols[0] for canon, cols in found.items()}


def _raise_unparseable(
    source: pl.DataFrame, column: str, bad: pl.Series, wanted: str, hint: str = ""
) -> None:
    n = int(bad.sum())
    if n:
        raise PriceDataError(
            f"column {column!r}: {n} value(s) cannot be read as {wanted}{hint}; "
            f"for example {_example_row(source, bad)}"
        )


def _blank_to_null(s: pl.Series) -> pl.Series:
    """Strip text and turn the vendor spellings of "no value" into null."""
    stripped = s.str.strip_chars()
    return (
        pl.select(
            pl.when(stripped.str.to_lowercase().is_in(list(_NULL_TOKENS))).then(None).otherwise(stripped)
        )
        .to_series()
        .alias(s.name)
    )


def _parse_symbol(s: pl.Series) -> pl.Series:
    """Strip and upper-case; a blank symbol is missing (NULL_VALUE). "NA" or "NAN" are real tickers here."""
    s = s.cast(pl.Utf8).str.strip_chars()
    return pl.select(pl.when(s == "").then(None).otherwise(s.str.to_uppercase())).to_series()


def _parse_float(source: pl.DataFrame, column: str, s: pl.Series) -> pl.Series:
    if s.dtype == pl.Null:  # an all-empty column built in memory: all missing, not an error
        return s.cast(pl.Float64)
    if s.dtype == pl.Float64:
        out = s
    elif s.dtype.is_numeric():
        out = s.cast(pl.Float64)
    elif s.dtype == pl.Utf8:
        text = _blank_to_null(s)
        out = text.cast(pl.Float64, strict=False)
        _raise_unparseable(source, column, out.is_null() & text.is_not_null(), "a number")
    else:
        raise PriceDataError(f"column {column!r} has type {s.dtype}; expected numbers")
    return out.fill_nan(None)  # NaN is "no value": it must reach quarantine as NULL_VALUE, not poison sums


def _parse_volume(source: pl.DataFrame, column: str, s: pl.Series) -> pl.Series:
    if s.dtype == pl.Int64:
        return s
    if s.dtype.is_integer() or s.dtype == pl.Null:
        return s.cast(pl.Int64)
    # Floats and text go through Float64, so "1200.0" (pandas writes that when a column had a NaN) is
    # accepted, but a fractional share count is an error rather than a silent truncation.
    as_float = _parse_float(source, column, s)
    fractional = as_float.is_not_null() & (as_float.is_infinite() | (as_float != as_float.floor()))
    _raise_unparseable(source, column, fractional.fill_null(False), "a whole number of shares")
    return as_float.cast(pl.Int64, strict=False)


def _parse_date(source: pl.DataFrame, column: str, s: pl.Series) -> pl.Series:
    """Parse a date column; datetimes keep their UTC calendar date.

    Why UTC and not New York time: daily-bar vendors stamp a session either at New York midnight
    (Alpaca, Polygon: 04:00/05:00Z) or at UTC midnight (Tiingo: 00:00Z); the UTC date is right for both,
    the New York date would shift the second one to the previous day.
    """
    if s.dtype in (pl.Date, pl.Null):
        return s.cast(pl.Date)
    if isinstance(s.dtype, pl.Datetime):
        if s.dtype.time_zone is not None:
            s = s.dt.convert_time_zone("UTC")
        return s.dt.date()
    if s.dtype.is_integer():
        s = s.cast(pl.Utf8)  # 20240102
    elif s.dtype != pl.Utf8:
        raise PriceDataError(f"column {column!r} has type {s.dtype}; expected dates")

    text = _blank_to_null(s)
    present = text.is_not_null()
    best: pl.Series | None = None
    best_bad: pl.Series | None = None
    for parsed in _date_candidates(text):
        bad = present & parsed.is_null()
        if not bad.any():
            return parsed
        if best_bad is None or bad.sum() < best_bad.sum():
            best, best_bad = parsed, bad
    assert best is not None and best_bad is not None
    _raise_unparseable(
        source,
        column,
        best_bad,
        "a date",
        " (one format per column: YYYY-MM-DD, YYYYMMDD, YYYY/MM/DD or an ISO datetime; "
        "day-first and month-first slash dates are ambiguous and not accepted)",
    )
    return best  # pragma: no cover - _raise_unparseable raised


def _date_candidates(text: pl.Series) -> Iterator[pl.Series]:
    """The column parsed with each accepted format in turn, lazily: most files stop at the first."""
    for fmt in _DATE_FORMATS:
        yield text.str.to_date(fmt, strict=False)
    yield _parse_datetime_text(text)


_SLASH_DATE = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}")


def _parse_datetime_text(text: pl.Series) -> pl.Series:
    """ISO-like timestamps (with a time, a 'T', an offset). Never a day/month or month/day date: polars would
    guess its order (06/01/2017 read as 6 January), so those stay unparsed and are refused by the caller."""
    if text.drop_nulls().str.contains(_SLASH_DATE.pattern).any():
        return pl.Series(text.name, [None] * len(text), dtype=pl.Date)
    try:
        parsed = text.str.to_datetime(strict=False, time_unit="us")
    except pl.exceptions.PolarsError:  # polars could not infer any datetime pattern from the values
        return pl.Series(text.name, [None] * len(text), dtype=pl.Date)
    if parsed.dtype.time_zone is not None:  # type: ignore[union-attr]
        parsed = parsed.dt.convert_time_zone("UTC")
    return parsed.dt.date()


def normalize_ohlcv(df: pl.DataFrame) -> pl.DataFrame:
    """Rename and cast a vendor OHLCV frame to the raw schema, or raise a PriceDataError that says why.

    Symbols are stripped and upper-cased; blank cells and "NA"/"NaN"/"null" become null (the cleaning step
    quarantines them as NULL_VALUE); any other value that does not parse is an error naming the column,
    the number of bad values and an example row. Columns outside the raw schema (e.g. `asset_type`, `vwap`)
    are dropped; rows never are.
    """
    mapping = resolve_columns(df.columns)
    columns = {
        "symbol": _parse_symbol(df[mapping["symbol"]]),
        "date": _parse_date(df, mapping["date"], df[mapping["date"]]),
        **{c: _parse_float(df, mapping[c], df[mapping[c]]) for c in PRICE_COLUMNS},
        "volume": _parse_volume(df, mapping["volume"], df[mapping["volume"]]),
    }
    return pl.DataFrame([s.alias(name) for name, s in columns.items()]).cast(RAW_SCHEMA)  # type: ignore[arg-type]



# --------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------

_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 4096


def _snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def sniff_format(path: Path) -> str:
    """'parquet' or 'csv' from the file's content; a vendor error page (HTML/JSON) or an empty file raises.

    The extension is only a hint: vendors answer with an HTML or JSON error body under a URL ending in
    .csv, and a download script saves it as prices.csv. Reading that as CSV would yield a frame with a
    column called '<!DOCTYPE html>' and an unhelpful error far away.
    """
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    if not text:
        raise PriceDataError(f"{path}: the file is empty ({path.stat().st_size} bytes, no data)")
    if text[0] == "<":
        raise PriceDataError(
            f"{path}: this is HTML/XML, not price data (a vendor error page?): {_snippet(text)!r}"
        )
    if text[0] in "{[":
        raise PriceDataError(
            f"{path}: this is JSON, not CSV/Parquet price data (a vendor error response?): {_snippet(text)!r}"
        )
    if head.startswith(b"\x1f\x8b"):
        raise PriceDataError(f"{path}: the file is gzip-compressed; decompress it first")
    if head.startswith(b"PK\x03\x04"):
        raise PriceDataError(f"{path}: the file is a zip archive (or an Excel .xlsx); extract or export it as CSV first")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PriceDataError(f"{path}: the file is UTF-16 text (an Excel 'Unicode text' export?); save it as UTF-8 CSV")
    if path.suffix.lower() in (".parquet", ".pq"):
        raise PriceDataError(f"{path}: named like Parquet but has no Parquet header: {_snippet(text)!r}")
    return "csv"


def _csv_separator(path: Path) -> str:
    with path.open("rb") as fh:
        first_line = fh.readline(_SNIFF_BYTES).decode("utf-8", errors="replace")
    counts = {sep: first_line.count(sep) for sep in (",", "\t", ";", "|")}
    return max(counts, key=lambda k: counts[k]) if any(counts.values()) else ","


def _read_parquet(path: Path) -> pl.DataFrame:
    lf = pl.scan_parquet(path)
    mapping = resolve_columns(lf.collect_schema().names())
    # Project only the price columns: the shared 3.8M-row file also carries `asset_type`.
    return lf.select([pl.col(src).alias(src) for src in mapping.values()]).collect()


def _read_csv(path: Path) -> pl.DataFrame:
    # Everything as text: normalize_ohlcv then parses with errors that name the bad column and row,
    # instead of polars' schema inference guessing from the first rows.
    return pl.read_csv(path, infer_schema=False, separator=_csv_separator(path), encoding="utf8-lossy")


def read_ohlcv_file(path: str | Path) -> pl.DataFrame:
    """Read an OHLCV CSV or Parquet file (format from its content) and normalize it to the raw schema."""
    path = Path(path)
    if not path.is_file():
        raise PriceDataError(f"{path}: no such file")
    fmt = sniff_format(path)
    try:
        df = _read_parquet(path) if fmt == "parquet" else _read_csv(path)
    except PriceDataError:
        raise
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise PriceDataError(f"{path}: cannot be read as {fmt}: {exc}") from exc
    if df.height == 0:
        raise PriceDataError(f"{path}: has a header ({df.columns}) but no data rows")
    try:
        return normalize_ohlcv(df)
    except PriceDataError as exc:
        raise PriceDataError(f"{path}: {exc}") from exc
