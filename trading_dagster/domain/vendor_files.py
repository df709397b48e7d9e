"""Vendor files: read an OHLCV CSV or Parquet file, map its column spellings and parse its values into
the raw schema, or say exactly what is wrong with it (which column, how many values, an example row).

Never guess what a vendor meant: column spellings are mapped only from an explicit alias table; adjusted
prices are never used in place of raw ones; ambiguous inputs (two columns for one field, a date column in
several formats) are errors, not heuristics. Pure polars, no Dagster.

Besides the raw columns a file may carry what orders its rows (decision 0004, section 1): a revision
timestamp column (`REVISION_TIME_ALIASES`, parsed to `revision_time`, UTC) and a line-number column
(`LINE_NUMBER_ALIASES`, parsed to `line_number`); `read_vendor_file` keeps them, with `source_row` (the
row's 0-based position in the file) and `source` (the file), for `domain/raw_merge.py` to tell the later
row of a (symbol, session) from the earlier. Every other column is named as ignored, never dropped
silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
# Columns that order the rows of one (symbol, session) within a delivery (`domain/raw_merge.py`): the later
# revision time wins; without one, the higher line number; without either, the later row of the file.
REVISION_TIME_ALIASES: tuple[str, ...] = (
    "revision_time",
    "revision_timestamp",
    "revised_at",
    "updated_at",
    "update_time",
    "last_updated",
    "as_of",
    "asof",
    "fetched_at",
    "retrieved_at",
)
LINE_NUMBER_ALIASES: tuple[str, ...] = ("line", "line_number", "line_no", "lineno", "row_number", "row_no", "rownum")
REVISION_TIME = "revision_time"
LINE_NUMBER = "line_number"
# polars reads a repeated CSV header `close,close` as `close` and `close_duplicated_0`
_DUPLICATED = re.compile(r"^(?P<base>.+)_duplicated_\d+$")
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


@dataclass(frozen=True)
class VendorColumns:
    """What each column of a vendor file is: a raw field, the revision time, the line number, or ignored."""

    mapping: dict[str, str]  # raw field -> source column
    revision_time: str | None = None  # the source column holding revision timestamps
    line_number: str | None = None  # the source column holding line numbers
    ignored: tuple[str, ...] = ()  # every other column, in file order

    @property
    def used(self) -> list[str]:
        return [*self.mapping.values(), *(c for c in (self.revision_time, self.line_number) if c)]


def classify_columns(columns: Sequence[str]) -> VendorColumns:
    """Say what each column is, or raise a PriceDataError that says why the columns cannot be used.

    Two columns for one role are refused, naming both: two spellings (`Close` and `close`) or one header
    repeated (`close,close`, which polars reads as `close` and `close_duplicated_0`).
    """
    roles = {alias: canon for canon, aliases in COLUMN_ALIASES.items() for alias in aliases}
    roles.update({alias: REVISION_TIME for alias in REVISION_TIME_ALIASES})
    roles.update({alias: LINE_NUMBER for alias in LINE_NUMBER_ALIASES})
    present = set(columns)
    found: dict[str, list[str]] = {}
    ignored: list[str] = []
    for col in columns:
        duplicate = _DUPLICATED.match(col)
        name = duplicate.group("base") if duplicate and duplicate.group("base") in present else col
        role = roles.get(_canonical_name(name))
        if role is None:
            ignored.append(col)
        else:
            found.setdefault(role, []).append(col)

    ambiguous = {role: cols for role, cols in found.items() if len(cols) > 1}
    if ambiguous:
        parts = "; ".join(f"{role!r} from {cols}{_repeated_note(cols)}" for role, cols in ambiguous.items())
        raise PriceDataError(
            f"ambiguous price columns: {parts}. Keep exactly one source column per field."
        )

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
    return VendorColumns(
        mapping={canon: found[canon][0] for canon in RAW_COLUMNS},
        revision_time=found.get(REVISION_TIME, [None])[0],
        line_number=found.get(LINE_NUMBER, [None])[0],
        ignored=tuple(ignored),
    )


def _repeated_note(cols: Sequence[str]) -> str:
    repeated = [c for c in cols if _DUPLICATED.match(c)]
    if not repeated:
        return ""
    return f" (the header repeats a name: {repeated} is how the reader names its second occurrence)"


def resolve_columns(columns: Sequence[str]) -> dict[str, str]:
    """Map each raw column to the source column that holds it, or raise a PriceDataError that says why not.

    Kept separate from `normalize_ohlcv` so a lazy Parquet scan can select just these columns.
    """
    return classify_columns(columns).mapping


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
    """Strip and upper-case; a blank symbol is missing (NULL_VALUE). "NA" or "NAN" are real tickers here.

    A vendor file holds each symbol's rows together, so the text is parsed once per run of equal values and
    spread back over the run's rows (the same values; ~4x less than parsing every row of a 3.8M-row file)."""
    s = s.cast(pl.Utf8)
    runs = s.rle()
    if 2 * len(runs) > len(s):  # few repeats in a row: parse the rows themselves
        return _parse_symbols(s)
    lengths = runs.struct.field("len").to_numpy()
    return _parse_symbols(runs.struct.field("value")).gather(np.repeat(np.arange(len(lengths)), lengths))


def _parse_symbols(s: pl.Series) -> pl.Series:
    s = s.str.strip_chars()
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


def _parse_revision_time(source: pl.DataFrame, column: str, s: pl.Series) -> pl.Series:
    """Revision timestamps as Datetime(us, UTC). Zone-less values are taken as UTC; dates are midnight UTC.
    Numbers are refused (seconds, milliseconds or nanoseconds since 1970 cannot be told apart)."""
    if s.dtype == pl.Null:
        return s.cast(pl.Datetime("us", "UTC"))
    if isinstance(s.dtype, pl.Datetime):
        out = s.dt.cast_time_unit("us")
    elif s.dtype == pl.Date:
        out = s.cast(pl.Datetime("us"))
    elif s.dtype == pl.Utf8:
        text = _blank_to_null(s)
        try:
            out = text.str.to_datetime(strict=False, time_unit="us")
        except pl.exceptions.PolarsError:  # no datetime pattern could be inferred at all
            out = pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us"))
        _raise_unparseable(
            source,
            column,
            out.is_null() & text.is_not_null(),
            "a revision timestamp",
            " (one ISO format per column, e.g. 2024-01-02T21:05:00Z)",
        )
    else:
        raise PriceDataError(
            f"column {column!r} has type {s.dtype}; expected revision timestamps (ISO date-times)"
        )
    if out.dtype.time_zone is None:  # type: ignore[union-attr]
        return out.dt.replace_time_zone("UTC")
    return out.dt.convert_time_zone("UTC")


def _parse_line_number(source: pl.DataFrame, column: str, s: pl.Series) -> pl.Series:
    if s.dtype.is_integer() or s.dtype == pl.Null:
        return s.cast(pl.Int64)
    as_float = _parse_float(source, column, s)
    fractional = as_float.is_not_null() & (as_float.is_infinite() | (as_float != as_float.floor()))
    _raise_unparseable(source, column, fractional.fill_null(False), "a line number")
    return as_float.cast(pl.Int64, strict=False)


@dataclass(frozen=True)
class VendorFrame:
    """A vendor frame in the raw schema plus `revision_time` / `line_number` when the file has them."""

    bars: pl.DataFrame
    columns: VendorColumns


def normalize_vendor_frame(df: pl.DataFrame) -> VendorFrame:
    """`normalize_ohlcv`, keeping the columns that order rows (see the module docstring)."""
    cols = classify_columns(df.columns)
    mapping = cols.mapping
    columns = {
        "symbol": _parse_symbol(df[mapping["symbol"]]),
        "date": _parse_date(df, mapping["date"], df[mapping["date"]]),
        **{c: _parse_float(df, mapping[c], df[mapping[c]]) for c in PRICE_COLUMNS},
        "volume": _parse_volume(df, mapping["volume"], df[mapping["volume"]]),
    }
    bars = pl.DataFrame([s.alias(name) for name, s in columns.items()]).cast(RAW_SCHEMA)  # type: ignore[arg-type]
    extra = []
    if cols.revision_time:
        extra.append(_parse_revision_time(df, cols.revision_time, df[cols.revision_time]).alias(REVISION_TIME))
    if cols.line_number:
        extra.append(_parse_line_number(df, cols.line_number, df[cols.line_number]).alias(LINE_NUMBER))
    return VendorFrame(bars.with_columns(extra) if extra else bars, cols)


def normalize_ohlcv(df: pl.DataFrame) -> pl.DataFrame:
    """Rename and cast a vendor OHLCV frame to the raw schema, or raise a PriceDataError that says why.

    Symbols are stripped and upper-cased; blank cells and "NA"/"NaN"/"null" become null (the cleaning step
    quarantines them as NULL_VALUE); any other value that does not parse is an error naming the column,
    the number of bad values and an example row. Columns outside the raw schema (e.g. `asset_type`, `vwap`)
    are not in the result (`normalize_vendor_frame` names them); rows are never dropped.
    """
    return normalize_vendor_frame(df).bars.select(RAW_COLUMNS)


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


def _read_parquet(path: Path) -> tuple[pl.DataFrame, list[str]]:
    lf = pl.scan_parquet(path)
    names = lf.collect_schema().names()
    # Project only the columns that are used: the shared 3.8M-row file also carries `asset_type`. The
    # ignored ones are still named (VendorFrame.columns.ignored).
    used = classify_columns(names).used
    return lf.select([pl.col(src) for src in names if src in used]).collect(), names


def _read_csv(path: Path) -> pl.DataFrame:
    # Everything as text: normalize_ohlcv then parses with errors that name the bad column and row,
    # instead of polars' schema inference guessing from the first rows.
    return pl.read_csv(path, infer_schema=False, separator=_csv_separator(path), encoding="utf8-lossy")


class VendorFileError(PriceDataError):
    """A vendor file that cannot be imported at all (file-level garbage): `path` and what is wrong."""

    def __init__(self, path: Path | str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = str(path), detail


def read_vendor_file(path: str | Path) -> VendorFrame:
    """Read an OHLCV CSV or Parquet file (format from its content) and normalize it (`normalize_vendor_frame`);
    a VendorFileError (a PriceDataError) naming the file if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise VendorFileError(path, "no such file")
    try:
        fmt = sniff_format(path)
        try:
            if fmt == "parquet":
                df, names = _read_parquet(path)
            else:
                df = _read_csv(path)
                names = df.columns
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise PriceDataError(f"cannot be read as {fmt}: {exc}") from exc
        if df.height == 0:
            raise PriceDataError(f"has a header ({names}) but no data rows")
        frame = normalize_vendor_frame(df)
    except VendorFileError:
        raise
    except PriceDataError as exc:
        detail = str(exc)
        detail = detail[len(f"{path}: ") :] if detail.startswith(f"{path}: ") else detail
        raise VendorFileError(path, detail) from None
    if fmt == "parquet" and len(names) != len(df.columns):  # the projection: name what it left out
        frame = VendorFrame(frame.bars, classify_columns(names))
    return frame


def read_ohlcv_file(path: str | Path) -> pl.DataFrame:
    """Read an OHLCV CSV or Parquet file (format from its content) and normalize it to the raw schema; a
    PriceDataError naming the file if it cannot be."""
    try:
        return read_vendor_file(path).bars.select(RAW_COLUMNS)
    except VendorFileError as exc:
        raise PriceDataError(str(exc)) from None


# --------------------------------------------------------------------------------------------------------
# Deliveries: several files read as one
# --------------------------------------------------------------------------------------------------------

SOURCE = "source"
SOURCE_ROW = "source_row"
DELIVERY_SCHEMA: dict[str, pl.DataType] = {
    **RAW_SCHEMA,
    REVISION_TIME: pl.Datetime("us", "UTC"),
    LINE_NUMBER: pl.Int64(),
    SOURCE: pl.Utf8(),
    SOURCE_ROW: pl.Int64(),
}
"""A delivery's rows: the raw columns, what orders them (null when a file has no such column), the file
they came from and their 0-based position in it (header excluded). `domain/raw_merge.py` takes this."""


def delivery_rows(frame: VendorFrame | pl.DataFrame, source: str) -> pl.DataFrame:
    """A file's (or a source's) rows as DELIVERY_SCHEMA."""
    bars = frame.bars if isinstance(frame, VendorFrame) else frame
    missing = [
        pl.lit(None, dtype=DELIVERY_SCHEMA[c]).alias(c) for c in (REVISION_TIME, LINE_NUMBER) if c not in bars.columns
    ]
    return bars.with_columns(
        *missing,
        pl.lit(source, dtype=pl.Utf8).alias(SOURCE),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(SOURCE_ROW),
    ).select(list(DELIVERY_SCHEMA))


@dataclass(frozen=True)
class VendorDelivery:
    """The files of one delivery, read: their rows in file order (DELIVERY_SCHEMA) and what each holds."""

    rows: pl.DataFrame
    files: tuple[tuple[str, int, VendorColumns], ...]  # (file, rows, its columns)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.files)

    @property
    def ignored_columns(self) -> dict[str, list[str]]:
        """{ignored column: the files that have it}, in first-seen order."""
        out: dict[str, list[str]] = {}
        for name, _, cols in self.files:
            for col in cols.ignored:
                out.setdefault(col, []).append(name)
        return out

    @property
    def order_columns(self) -> dict[str, list[str]]:
        """{'revision_time' | 'line_number': the source columns that held it}."""
        out: dict[str, list[str]] = {}
        for _, _, cols in self.files:
            for role, col in ((REVISION_TIME, cols.revision_time), (LINE_NUMBER, cols.line_number)):
                if col and col not in out.get(role, []):
                    out.setdefault(role, []).append(col)
        return out


def single_file_delivery(frame: VendorFrame, source: str) -> VendorDelivery:
    return VendorDelivery(delivery_rows(frame, source), ((source, frame.bars.height, frame.columns),))


def read_delivery(paths: Sequence[str | Path]) -> VendorDelivery:
    """Read every file as one delivery (rows in the order of `paths`, then file order); the first file that
    cannot be read raises its VendorFileError: a delivery is imported whole or not at all."""
    frames, files = [], []
    for path in paths:
        frame = read_vendor_file(path)
        frames.append(delivery_rows(frame, str(path)))
        files.append((str(path), frame.bars.height, frame.columns))
    rows = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=DELIVERY_SCHEMA)
    return VendorDelivery(rows, tuple(files))


VENDOR_SUFFIXES = (".csv", ".parquet", ".pq")


def find_vendor_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files a user named: each file as given, and every .csv/.parquet below each folder (by path, names
    starting with '.' or '_' skipped: temp files, `_SUCCESS` markers). A path that does not exist, or a
    folder with no such file, is a VendorFileError."""
    out: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in VENDOR_SUFFIXES
                and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            )
            if not found:
                raise VendorFileError(path, f"the folder holds no {'/'.join(VENDOR_SUFFIXES)} file")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise VendorFileError(path, "no such file or folder")
    seen: set[Path] = set()
    unique = []
    for p in out:  # a file named twice (directly and through its folder) is read once
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
