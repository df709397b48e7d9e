"""Security identity over time: which security (company) a ticker meant on a given day.

A ticker is not an identity. Tickers are reused (a delisted company's symbol goes to a new listing years
later), renamed (FB became META) and re-issued after a bankruptcy (new shares, same letters). A security
master maps a symbol to a stable `security_id` over a date range, so that

* indicators never span two securities (`indicators.compute_indicators_adjusted(..., securities=...)`), and
* a position in a security past its `valid_to` is closed at its last close (`book_events.delisting_events`),
  never marked or sold at another company's price.

Two formats (decision 0004, section 4), set with `TRADING_DAGSTER_SECURITY_MASTER`:

* a folder of QuantConnect LEAN map files (`*.csv`), one file per security, its id the file name without
  `.csv` (LEAN names an older security that used a ticker `twx.1.csv`, the current one `twx.csv`). Each line is
  `YYYYMMDD,ticker[,exchange]`: the ticker in use *up to and including* that date, from the day after the
  previous line's date (the first line: the security's first date). A last date of 2050-12-31 (LEAN's
  sentinel) means "still trading" (no valid_to). Example, `twx.csv`:
  `19980102,aol` / `20031015,aol` / `20501231,twx`: AOL from 1998-01-02 to 2003-10-15, then TWX.
* a CSV with the header `symbol,security_id,valid_from,valid_to` (dates YYYY-MM-DD or YYYYMMDD; an empty
  valid_to means still trading).

The parsed master is a frame of SECURITY_MASTER_SCHEMA, one row per (symbol, security) interval: contiguous
lines of one ticker are merged, and two securities may not claim one symbol on the same day (an error that
names both files and lines). Pure polars; no Dagster import.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

SECURITY_MASTER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "security_id": pl.Utf8(),
    "valid_from": pl.Date(),
    "valid_to": pl.Date(),  # null: still trading
    "origin": pl.Utf8(),  # file:line of the row (the first line of a merged interval), for messages
}
LEAN_OPEN_END = dt.date(2050, 12, 31)
"""LEAN's last date for a security that still trades: read as no valid_to."""
CSV_COLUMNS = ("symbol", "security_id", "valid_from", "valid_to")
UNMAPPED = "?"
"""Prefix of the segment key of bars the master lists their symbol for, but on a day no security covers."""
_MAX_LISTED = 10


class SecurityMasterError(ValueError):
    """A security master that cannot be trusted; the message names the file and line."""


def _parse_date(text: str, where: str) -> dt.date:
    text = text.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise SecurityMasterError(f"{where}: {text!r} is not a date (YYYYMMDD or YYYY-MM-DD)")


Row = tuple[str, str, dt.date, dt.date | None, str]


def parse_lean_map_file(text: str, name: str, security_id: str) -> list[Row]:
    """The (symbol, security_id, valid_from, valid_to, origin) intervals of one LEAN map file's text.

    `name` is how messages name the file. Blank lines are skipped; dates must increase.
    """
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise SecurityMasterError(f"{name}: empty map file (expected lines 'YYYYMMDD,ticker[,exchange]')")
    parsed: list[tuple[dt.date, str, str]] = []
    for number, line in lines:
        where = f"{name}:{number}"
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[1]:
            raise SecurityMasterError(f"{where}: {line!r} is not 'YYYYMMDD,ticker[,exchange]'")
        day = _parse_date(fields[0], where)
        if parsed and day <= parsed[-1][0]:
            raise SecurityMasterError(f"{where}: {day} is not after the previous line's {parsed[-1][0]}")
        parsed.append((day, fields[1].upper(), where))
    rows: list[Row] = []
    start = parsed[0][0]
    for i, (day, ticker, where) in enumerate(parsed):
        if rows and rows[-1][0] == ticker:  # the same ticker as the line before: the interval goes on
            symbol, sid, valid_from, _, origin = rows[-1]
            rows[-1] = (symbol, sid, valid_from, day, origin)
        else:
            rows.append((ticker, security_id, start if i == 0 else parsed[i - 1][0] + dt.timedelta(days=1), day, where))
    last = rows[-1]
    if last[3] is not None and last[3] >= LEAN_OPEN_END:
        rows[-1] = (*last[:3], None, last[4])
    return rows


def read_lean_map_files(folder: str | Path) -> pl.DataFrame:
    """Every `*.csv` of a LEAN `map_files` folder, one security per file (its id: the file name without
    `.csv`). Raises SecurityMasterError naming the file and line of anything it cannot read."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise SecurityMasterError(f"{folder}: no LEAN map files (*.csv) in the folder")
    rows: list[Row] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityMasterError(f"{path}: cannot be read: {exc}") from exc
        rows += parse_lean_map_file(text, str(path), path.name[: -len(".csv")].lower())
    return normalize_security_master(_frame(rows))


def read_security_master_csv(path: str | Path) -> pl.DataFrame:
    """A CSV `symbol,security_id,valid_from,valid_to` (header required, extra columns ignored, valid_to
    empty for a security still trading). Raises SecurityMasterError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityMasterError(f"{path}: cannot be read: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise SecurityMasterError(f"{path}: empty file (expected the header {','.join(CSV_COLUMNS)})")
    names = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise SecurityMasterError(
            f"{path}:1: missing column(s) {missing}; the header must hold {','.join(CSV_COLUMNS)} (found {header})"
        )
    at = {c: names.index(c) for c in CSV_COLUMNS}
    rows: list[Row] = []
    for number, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        where = f"{path}:{number}"
        if len(fields) < len(names):
            raise SecurityMasterError(f"{where}: {len(fields)} fields, the header has {len(names)}")
        symbol, sid = fields[at["symbol"]].strip().upper(), fields[at["security_id"]].strip()
        if not symbol or not sid:
            raise SecurityMasterError(f"{where}: symbol and security_id must not be empty")
        valid_from = _parse_date(fields[at["valid_from"]], where)
        to_text = fields[at["valid_to"]].strip()
        valid_to = _parse_date(to_text, where) if to_text else None
        if valid_to is not None and valid_to < valid_from:
            raise SecurityMasterError(f"{where}: valid_to {valid_to} is before valid_from {valid_from}")
        rows.append((symbol, sid, valid_from, valid_to, where))
    if not rows:
        raise SecurityMasterError(f"{path}: no rows after the header")
    return normalize_security_master(_frame(rows))


def _frame(rows: Iterable[Row]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SECURITY_MASTER_SCHEMA, orient="row")


def normalize_security_master(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by (symbol, valid_from), merge contiguous or overlapping rows of one (symbol, security), and
    refuse two securities on one symbol and day (naming both rows' origins)."""
    rows = sorted(frame.select(list(SECURITY_MASTER_SCHEMA)).iter_rows(), key=lambda r: (r[0], r[2]))
    merged: list[Row] = []
    clashes: list[str] = []
    for row in rows:
        if merged and merged[-1][0] == row[0]:
            prev = merged[-1]
            prev_end = prev[3]
            touches = prev_end is None or row[2] <= prev_end + dt.timedelta(days=1)
            if touches and prev[1] == row[1]:
                end = None if prev_end is None or row[3] is None else max(prev_end, row[3])
                merged[-1] = (prev[0], prev[1], prev[2], end, prev[4])
                continue
            if prev_end is None or row[2] <= prev_end:
                clashes.append(
                    f"{row[0]}: {prev[1]} ({prev[4]}, {prev[2]}..{prev_end or 'open'}) and {row[1]} "
                    f"({row[4]}, from {row[2]})"
                )
        merged.append(row)
    if clashes:
        raise SecurityMasterError(
            f"{len(clashes)} symbol(s) claimed by two securities on the same days: " + "; ".join(clashes[:_MAX_LISTED])
        )
    return _frame(merged)


def read_security_master(path: str | Path) -> SecurityMaster:
    """A folder is read as LEAN map files, a file as the CSV format."""
    path = Path(path)
    if path.is_dir():
        return SecurityMaster(read_lean_map_files(path), str(path))
    if path.is_file():
        return SecurityMaster(read_security_master_csv(path), str(path))
    raise SecurityMasterError(f"{path}: no such file or folder")


@dataclass(frozen=True)
class SecurityMaster:
    """The parsed master (`frame`: SECURITY_MASTER_SCHEMA, normalized) and where it came from."""

    frame: pl.DataFrame
    source: str = "security master"

    def security_on(self, symbol: str, day: dt.date) -> str | None:
        """The security the symbol meant on `day`; None when the master lists no security for it then."""
        hit = self.frame.filter(
            (pl.col("symbol") == symbol)
            & (pl.col("valid_from") <= day)
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= day))
        )
        return hit["security_id"][0] if hit.height else None

    def segment_keys(self, keys: pl.DataFrame, date_column: str = "session") -> pl.Series:
        """Per row of `keys` (`symbol`, `date_column`): which security the bar belongs to.

        * a symbol the master does not list: null (the symbol is one security all along);
        * a day inside one of the symbol's intervals: that interval's security_id;
        * a day the master lists the symbol for no security (before its first interval, or in a gap after one):
          `?@<the day the gap starts>` (the first uncovered day; `?@` alone before the first interval), so
          bars of an unknown security never join a known one, nor the unknown bars of another gap.
        Row order of `keys` is kept.
        """
        if keys.height == 0:
            return pl.Series("security", [], dtype=pl.Utf8)
        table = self.frame.select(
            "symbol", pl.col("valid_from").alias("_on"), "security_id", "valid_to"
        ).sort("_on")
        left = keys.select(pl.col("symbol").cast(pl.Utf8), pl.col(date_column).alias("_on")).with_row_index("_row")
        listed = pl.col("symbol").is_in(self.frame["symbol"].unique().implode())
        joined = left.sort("_on").join_asof(table, on="_on", by="symbol", strategy="backward", check_sortedness=False)
        covered = pl.col("security_id").is_not_null() & (pl.col("valid_to").is_null() | (pl.col("_on") <= pl.col("valid_to")))
        gap = pl.when(pl.col("valid_to").is_null()).then(pl.lit(UNMAPPED + "@")).otherwise(
            pl.lit(UNMAPPED + "@") + (pl.col("valid_to") + pl.duration(days=1)).cast(pl.Utf8)
        )
        out = joined.with_columns(
            pl.when(~listed).then(None).when(covered).then(pl.col("security_id")).otherwise(gap).alias("security")
        )
        return out.sort("_row")["security"]

    def ends(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The intervals with a valid_to in [start, end]: `symbol, security_id, valid_to, continues_as` (the
        symbol the same security goes on under from the next day, for a rename; null when it ends)."""
        ending = self.frame.filter(pl.col("valid_to").is_between(start, end))
        nxt = self.frame.select(
            pl.col("security_id"),
            pl.col("valid_from").alias("_next_from"),
            pl.col("symbol").alias("continues_as"),
        )
        joined = ending.with_columns((pl.col("valid_to") + pl.duration(days=1)).alias("_next_from")).join(
            nxt, on=["security_id", "_next_from"], how="left"
        )
        return joined.select("symbol", "security_id", "valid_to", "continues_as").sort("valid_to", "symbol")
