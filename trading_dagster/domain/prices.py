"""Raw OHLCV prices: read and normalize vendor frames, split them by session, and clean them.

Everything here is pure polars (no Dagster, no I/O except `read_ohlcv_file`), so the raw and cleaned-price
assets stay thin and every rule below is unit-tested on tiny frames.

Two principles drive the design:

* **Never lose a row silently.** A value that cannot be parsed, a row dated on a non-session or outside its
  partition raises `PriceDataError`; a row that parses but is not a believable bar goes to the quarantine
  frame with a reason code. `clean_prices` checks that cleaned + quarantine account for every
  de-duplicated input row.
* **Never guess what a vendor meant.** Column spellings are mapped only from an explicit alias table;
  adjusted prices are never used in place of raw ones; ambiguous inputs (two columns for one field, a date
  column in several formats) are errors, not heuristics.

Schemas are those of docs/design.md (raw: `symbol, date, open, high, low, close, volume`; cleaned and
quarantine: `date` renamed `session`, quarantine adds `reason` and `detail`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from trading_dagster.domain.calendar import SessionCalendar

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
RAW_COLUMNS: tuple[str, ...] = ("symbol", "date", *PRICE_COLUMNS, "volume")
RAW_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "date": pl.Date(),
    **{c: pl.Float64() for c in PRICE_COLUMNS},
    "volume": pl.Int64(),
}
CLEAN_COLUMNS: tuple[str, ...] = ("symbol", "session", *PRICE_COLUMNS, "volume")
CLEAN_SCHEMA: dict[str, pl.DataType] = {("session" if k == "date" else k): v for k, v in RAW_SCHEMA.items()}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**CLEAN_SCHEMA, "reason": pl.Utf8(), "detail": pl.Utf8()}

# Quarantine reason codes. A row with several problems gets the FIRST of SANITY_PRIORITY: a missing value
# makes every comparison meaningless, a non-positive price is the most basic impossibility, high < low makes
# the [low, high] range empty (so close/open "outside" it is a consequence, not a separate fault), and the
# open is checked after the close because the close is what every indicator consumes. The other codes that
# also apply are named in `detail`. DUPLICATE_CONFLICT is decided per (symbol, session) before any of these:
# when a vendor sends two different bars for one key we cannot tell which one is right, so none is kept.
NULL_VALUE = "NULL_VALUE"
NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
CLOSE_OUTSIDE_RANGE = "CLOSE_OUTSIDE_RANGE"
OPEN_OUTSIDE_RANGE = "OPEN_OUTSIDE_RANGE"
NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"
SANITY_PRIORITY: tuple[str, ...] = (
    NULL_VALUE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_LOW,
    CLOSE_OUTSIDE_RANGE,
    OPEN_OUTSIDE_RANGE,
    NEGATIVE_VOLUME,
)
REASON_CODES: tuple[str, ...] = (DUPLICATE_CONFLICT, *SANITY_PRIORITY)

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
_MAX_LISTED = 20


class PriceDataError(ValueError):
    """Price data that cannot be trusted as it stands: unparseable, incomplete or outside its partition."""


@dataclass(frozen=True)
class CleanResult:
    """The output of `clean_prices`: usable bars and the rejected rows with their reason."""

    cleaned: pl.DataFrame
    quarantine: pl.DataFrame


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


def _example_row(df: pl.DataFrame, bad: pl.Series) -> str:
    idx = int(bad.arg_true()[0])
    return f"row {idx} (0-based, header excluded): {df.row(idx, named=True)}"


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


def _parse_datetime_text(text: pl.Series) -> pl.Series:
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


def empty_raw_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)


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


# --------------------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------------------


def _describe_day(day: dt.date, calendar: SessionCalendar) -> str:
    if day < calendar.first or day > calendar.last:
        return f"outside the calendar {calendar.first}..{calendar.last}"
    if day.weekday() >= 5:
        return day.strftime("%A")
    return "a weekday the exchange is closed"


def _list_dates(counts: pl.DataFrame, describe: Any = None) -> str:
    items = []
    for day, n in counts.head(_MAX_LISTED).iter_rows():
        what = f"{describe(day)}, " if describe else ""
        items.append(f"{day} ({what}{n} row{'s' if n != 1 else ''})")
    more = counts.height - _MAX_LISTED
    return ", ".join(items) + (f", and {more} more date(s)" if more > 0 else "")


def _date_counts(df: pl.DataFrame, column: str) -> pl.DataFrame:
    return df.group_by(column).len().sort(column)


def _check_no_null_dates(df: pl.DataFrame, column: str) -> None:
    n = df[column].null_count()
    if n:
        bad = df[column].is_null()
        raise PriceDataError(
            f"{n} row(s) have no {column!r}, so they belong to no session; for example {_example_row(df, bad)}"
        )


def check_sessions(df: pl.DataFrame, calendar: SessionCalendar, column: str = "date") -> None:
    """Raise a PriceDataError listing every date in `df[column]` that is not a session of `calendar`.

    Rows on weekends or holidays are a vendor or import error (e.g. the Saturday rows in the source
    dataset); dropping them quietly would hide it, so they stop the run instead.
    """
    _check_no_null_dates(df, column)
    counts = _date_counts(df, column)
    off = [day for day in counts[column] if not calendar.is_session(day)]
    bad = counts.filter(pl.col(column).is_in(pl.Series(off, dtype=pl.Date)))
    if bad.height:
        raise PriceDataError(
            f"{int(bad['len'].sum())} row(s) on {bad.height} non-session date(s): "
            f"{_list_dates(bad, lambda d: _describe_day(d, calendar))}"
        )


def split_by_session(df: pl.DataFrame, calendar: SessionCalendar) -> dict[dt.date, pl.DataFrame]:
    """One frame per session (ascending), rows sorted by symbol, after checking every row is on a session.

    Sorting makes the object written for a session byte-identical whichever way its rows arrived.
    """
    check_sessions(df, calendar)
    if df.height == 0:
        return {}
    parts = df.sort("date", "symbol", maintain_order=True).partition_by("date", as_dict=True)
    return {key[0]: part for key, part in sorted(parts.items(), key=lambda kv: kv[0][0])}


# --------------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------------


def _check_expected_sessions(df: pl.DataFrame, expected_sessions: Sequence[dt.date]) -> None:
    expected = pl.Series("expected", list(expected_sessions), dtype=pl.Date)
    outside = df.filter(~pl.col("date").is_in(expected))
    if outside.height:
        counts = _date_counts(outside, "date")
        span = f"{expected.min()}..{expected.max()}" if len(expected) else "none"
        raise PriceDataError(
            f"{outside.height} row(s) dated outside this partition's {len(expected)} session(s) ({span}): "
            f"{_list_dates(counts)}. A partition must hold only its own sessions."
        )


def _repeated_keys(df: pl.DataFrame, date_col: str) -> pl.Series:
    """Rows whose (symbol, date) also occurs on another row, for a frame sorted by (date, symbol).

    Neighbour comparison instead of a hash group-by: the frame must be sorted for the output anyway, and
    this keeps de-duplication to one sort plus O(n) on 3.8M rows. Null symbols compare equal here, so
    exact duplicates of a symbol-less row still collapse.
    """
    same_as_previous = (
        (pl.col(date_col) == pl.col(date_col).shift(1))
        & pl.col("symbol").eq_missing(pl.col("symbol").shift(1))
    ).fill_null(False)
    return df.select(
        (same_as_previous | same_as_previous.shift(-1).fill_null(False)).alias("repeated")
    ).to_series()


def _deduplicate(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Sort by (date, symbol), collapse exact duplicate rows; return the frame and its conflict mask.

    After collapsing, any (symbol, date) that still repeats has rows that disagree: those are conflicts.
    Rows with a null symbol are not conflicts (they have no key); they are left to NULL_VALUE.
    Fast path: on clean vendor data no key repeats and the full-row `unique` is skipped.
    """
    df = df.sort("date", "symbol", maintain_order=True)
    repeated = _repeated_keys(df, "date")
    if repeated.any():
        collapsed = df.filter(repeated).unique(maintain_order=True)
        df = pl.concat([df.filter(~repeated), collapsed]).sort("date", "symbol", maintain_order=True)
        repeated = _repeated_keys(df, "date")
    return df, (repeated & df["symbol"].is_not_null()).alias("conflict")


def _flag_exprs() -> dict[str, pl.Expr]:
    prices = [pl.col(c) for c in PRICE_COLUMNS]
    missing = [pl.col("symbol").is_null(), pl.col("volume").is_null()]
    missing += [p.is_null() | ~p.is_finite() for p in prices]
    low, high = pl.col("low"), pl.col("high")
    return {
        NULL_VALUE: pl.any_horizontal(missing),
        NON_POSITIVE_PRICE: pl.any_horizontal([p <= 0 for p in prices]),
        HIGH_BELOW_LOW: high < low,
        CLOSE_OUTSIDE_RANGE: (pl.col("close") < low) | (pl.col("close") > high),
        OPEN_OUTSIDE_RANGE: (pl.col("open") < low) | (pl.col("open") > high),
        NEGATIVE_VOLUME: pl.col("volume") < 0,
    }


def _reason_expr(flags: Mapping[str, pl.Expr]) -> pl.Expr:
    expr: Any = pl
    for code in SANITY_PRIORITY:
        expr = expr.when(flags[code].fill_null(False)).then(pl.lit(code))
    return expr.otherwise(pl.lit(None, dtype=pl.Utf8))


def _fmt(name: str) -> pl.Expr:
    return pl.format(f"{name}={{}}", pl.col(name).cast(pl.Utf8).fill_null("null"))


def _detail_expr() -> pl.Expr:
    """Human-readable detail per reason, plus the other sanity codes that also apply to the row."""
    missing = pl.concat_str(
        [pl.when(pl.col("symbol").is_null()).then(pl.lit("symbol"))]
        + [pl.when(pl.col(c).is_null() | ~pl.col(c).is_finite()).then(pl.lit(c)) for c in PRICE_COLUMNS]
        + [pl.when(pl.col("volume").is_null()).then(pl.lit("volume"))],
        separator=", ",
        ignore_nulls=True,
    )
    non_positive = pl.concat_str(
        [pl.when(pl.col(c) <= 0).then(_fmt(c)) for c in PRICE_COLUMNS], separator=", ", ignore_nulls=True
    )
    range_ = pl.format("[low={}, high={}]", pl.col("low"), pl.col("high"))
    reason = pl.col("reason")
    main = (
        pl.when(reason == DUPLICATE_CONFLICT)
        .then(
            pl.format(
                "{} different rows for ({}, {}); none kept",
                pl.col("_key_rows"),
                pl.col("symbol"),
                pl.col("session"),
            )
        )
        .when(reason == NULL_VALUE)
        .then(pl.format("missing or non-finite: {}", missing))
        .when(reason == NON_POSITIVE_PRICE)
        .then(pl.format("price <= 0: {}", non_positive))
        .when(reason == HIGH_BELOW_LOW)
        .then(pl.format("high={} < low={}", pl.col("high"), pl.col("low")))
        .when(reason == CLOSE_OUTSIDE_RANGE)
        .then(pl.format("close={} outside {}", pl.col("close"), range_))
        .when(reason == OPEN_OUTSIDE_RANGE)
        .then(pl.format("open={} outside {}", pl.col("open"), range_))
        .when(reason == NEGATIVE_VOLUME)
        .then(pl.format("volume={} < 0", pl.col("volume")))
    )
    flags = _flag_exprs()
    others = pl.concat_str(
        [
            pl.when(flags[code].fill_null(False) & (reason != code)).then(pl.lit(code))
            for code in SANITY_PRIORITY[1:]
        ],
        separator=", ",
        ignore_nulls=True,
    )
    also = pl.when((reason != DUPLICATE_CONFLICT) & (others != "")).then(pl.format(" (also {})", others))
    return pl.concat_str([main, also.otherwise(pl.lit(""))])


def clean_prices(raw: pl.DataFrame, expected_sessions: Sequence[dt.date]) -> CleanResult:
    """Type, de-duplicate and sanity-check raw bars: one trusted row per (symbol, session), the rest quarantined.

    * Exact duplicate rows collapse to one; rows that share (symbol, date) but disagree all go to
      quarantine as DUPLICATE_CONFLICT (we cannot know which bar is right).
    * Other rejected rows get the first code of SANITY_PRIORITY that applies (see its comment).
    * A row dated outside `expected_sessions`, or with no date, raises PriceDataError: it belongs to another
      partition (or none), and cleaning it here would make re-runs of that partition disagree.
    """
    df = normalize_ohlcv(raw)
    _check_no_null_dates(df, "date")
    _check_expected_sessions(df, expected_sessions)
    deduped, conflict = _deduplicate(df)
    flags = _flag_exprs()
    labelled = deduped.with_columns(
        pl.when(conflict).then(pl.lit(DUPLICATE_CONFLICT)).otherwise(_reason_expr(flags)).alias("reason")
    ).rename({"date": "session"})

    cleaned = labelled.filter(pl.col("reason").is_null()).select(CLEAN_COLUMNS)  # already sorted
    rejected = labelled.filter(pl.col("reason").is_not_null())
    quarantine = (
        rejected.with_columns(pl.len().over("symbol", "session").alias("_key_rows"))
        .with_columns(_detail_expr().alias("detail"))
        .select(list(QUARANTINE_SCHEMA))
        .sort("session", "symbol", "reason", maintain_order=True)
    )
    _check_accounting(deduped.height, cleaned, quarantine)
    return CleanResult(cleaned=cleaned, quarantine=quarantine)


def _check_accounting(n_input: int, cleaned: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    """The invariant that makes quarantine trustworthy; an explicit raise so `python -O` cannot strip it."""
    if cleaned.height + quarantine.height != n_input:
        raise AssertionError(
            f"clean_prices lost rows: {cleaned.height} cleaned + {quarantine.height} quarantined "
            f"!= {n_input} de-duplicated input rows"
        )
    if _repeated_keys(cleaned, "session").any():
        raise AssertionError("clean_prices produced more than one row for a (symbol, session)")
