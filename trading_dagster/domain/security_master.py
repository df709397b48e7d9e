"""Security identity over time: which security (company) a ticker meant on a given day.

A ticker is not an identity. Tickers are reused (a delisted company's symbol goes to a new listing years
later), renamed (FB became META) and re-issued after a bankruptcy (new shares, same letters). A security
master maps a symbol to a stable `security_id` over a date range, so that

* indicators never span two securities (`indicators.compute_indicators_adjusted(..., securities=...)`), and
* a position in a security past its `valid_to` is closed at its last close (`book_events.delisting_events`),
  never marked or sold at another company's price.

Three sources (decision 0004, section 4), set with `TRADING_DAGSTER_SECURITY_MASTER`; the first two are files:

* a folder of QuantConnect LEAN map files (`*.csv`), one file per security, its id the file name without
  `.csv` (LEAN names an older security that used a ticker `twx.1.csv`, the current one `twx.csv`). Each line is
  `YYYYMMDD,ticker[,exchange]`: the ticker in use *up to and including* that date, from the day after the
  previous line's date (the first line: the security's first date). A last date of 2050-12-31 (LEAN's
  sentinel) means "still trading" (no valid_to). Example, `twx.csv`:
  `19980102,aol` / `20031015,aol` / `20501231,twx`: AOL from 1998-01-02 to 2003-10-15, then TWX.
* a CSV with the header `symbol,security_id,valid_from,valid_to` (dates YYYY-MM-DD or YYYYMMDD; an empty
  valid_to means still trading).

* `alpaca`: Alpaca's asset list (`GET /v2/assets`: a stable asset `id` per security, its `symbol` and `status`,
  but no dates), built point in time from observations: see "Alpaca's assets" below. This module holds the
  pure part (the snapshot file's format, appending to it, and the intervals derived from it);
  `resources/security_master.py` fetches the list and decides when a snapshot is recorded.

The parsed master is a frame of SECURITY_MASTER_SCHEMA, one row per (symbol, security) interval: contiguous
lines of one ticker are merged, and two securities may not claim one symbol on the same day (an error that
names both files and lines). Pure polars; no Dagster import.

Alpaca's assets
---------------
Each observation of the list is a snapshot dated on a session (the caller says which: this module never reads
the clock) and appended as one JSON line to a file that is never rewritten (`append_asset_snapshot`):
`{"v": 1, "session", "observed_at", "source", "symbols": [the universe asked about], "assets": [[symbol,
asset_id, status, tradable], ...]}`. Only the universe's assets are kept, plus every asset id already on file
whatever its symbol now (so a rename or a delisting of a known security is seen). Observing the same session
again appends only when the list differs; the last observation of a session is the one used, and every
earlier one stays on file. A line that is not JSON (a write cut short by a crash) is skipped and reported.

`master_from_asset_snapshots` derives the intervals, per asset id, from the runs of consecutive snapshots in
which it is `active` under one symbol:

* it starts on the session of the run's first snapshot; the open start ALPACA_OPEN_START when that is the
  first snapshot that asked about the symbol and the asset's first appearance (the very first snapshot, or
  a symbol added to the universe later: the history before it is one security, as without a master);
* it is open (valid_to null) while the latest snapshot still shows it active under that symbol;
* an asset found active under another symbol in the next snapshot was renamed: the old symbol's interval
  ends the day before that snapshot's session, so `SecurityMaster.ends` sees the same security go on under
  the new ticker the next day (a Rename: the position moves);
* otherwise (inactive, no longer listed, or its symbol now another asset's) it ends on the last session it
  was seen active: a Delisting on the next session, closed at its last close on or before that day.

When two snapshots are consecutive sessions (the daily run), a reused ticker's old security therefore ends
the session before the new one is first seen. Across a gap (runs missed) the old one still ends on the last
session it was seen and the new one starts on the first session it was seen: the sessions between belong to
no known security (`segment_keys` gives them `?@<day>`), because nothing says when in the gap the ticker
changed hands; ending the old security at the gap's end could close its position at the new company's price.
Only a rename (the same asset id) spans a gap, since both tickers are the same security. A session's list
observed after the close may already show a change Alpaca applies before the next open: the change is then
dated one session early, which ends the old security one bar early (its position closed at its own earlier
close), never late. Two active assets on one symbol in one snapshot are refused (naming the line).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
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


# --------------------------------------------------------------------------------------------------------
# Alpaca's assets: a master built point in time from snapshots of the asset list (see the module docstring)
# --------------------------------------------------------------------------------------------------------

ALPACA_OPEN_START = dt.date(1900, 1, 1)
"""valid_from of an asset in the first snapshot that asked about its symbol: before any bar on file."""
SNAPSHOT_FORMAT = 1
ACTIVE = "active"


@dataclass(frozen=True, slots=True, order=True)
class ListedAsset:
    """One asset of Alpaca's list as a snapshot keeps it."""

    symbol: str
    asset_id: str  # Alpaca's asset id (a UUID): the security_id of the derived master
    status: str  # "active" | "inactive"
    tradable: bool  # kept for the record; an asset that is active but not tradable is still the security

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class AssetSnapshot:
    """The universe's assets as observed once, dated on a session."""

    session: dt.date
    symbols: tuple[str, ...]  # the universe asked about (sorted)
    assets: tuple[ListedAsset, ...]  # sorted by (symbol, asset_id)
    observed_at: str = ""  # when the list was fetched (ISO 8601): for the record only
    source: str = ""  # the endpoint it came from
    origin: str = ""  # file:line, once read back

    @property
    def content(self) -> tuple[tuple[str, ...], tuple[ListedAsset, ...]]:
        """What the derivation reads: equal contents make a second observation of a session redundant."""
        return self.symbols, self.assets


def build_asset_snapshot(
    session: dt.date,
    symbols: Iterable[str],
    listing: Iterable[ListedAsset],
    known_ids: Iterable[str] = (),
    *,
    observed_at: str = "",
    source: str = "",
) -> AssetSnapshot:
    """The snapshot of `listing` (every asset Alpaca returned) dated on `session`: the assets whose symbol is in
    `symbols` (the universe), plus those whose id is in `known_ids` (every id already on file) whatever their
    symbol now. Raises SecurityMasterError when a universe symbol has two active assets."""
    wanted = {s.strip().upper() for s in symbols if s.strip()}
    if not wanted:
        raise SecurityMasterError("an Alpaca asset snapshot needs the universe's symbols ([universe] symbols)")
    known = set(known_ids)
    kept = sorted({a for a in listing if a.symbol in wanted or a.asset_id in known})
    snapshot = AssetSnapshot(session, tuple(sorted(wanted)), tuple(kept), observed_at, source)
    _active_symbols(snapshot, f"Alpaca's asset list of {session} ({source or 'Alpaca'})")
    return snapshot


def snapshot_line(snapshot: AssetSnapshot) -> str:
    """One JSON line (no newline) holding the snapshot."""
    return json.dumps(
        {
            "v": SNAPSHOT_FORMAT,
            "session": snapshot.session.isoformat(),
            "observed_at": snapshot.observed_at,
            "source": snapshot.source,
            "symbols": list(snapshot.symbols),
            "assets": [[a.symbol, a.asset_id, a.status, a.tradable] for a in snapshot.assets],
        },
        separators=(",", ":"),
    )


def _parse_snapshot(record: object, where: str) -> AssetSnapshot:
    def bad(what: str) -> SecurityMasterError:
        return SecurityMasterError(f"{where}: {what} (an Alpaca asset snapshot line, format {SNAPSHOT_FORMAT})")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    if record.get("v") != SNAPSHOT_FORMAT:
        raise bad(f"unknown format v={record.get('v')!r}")
    try:
        session = dt.date.fromisoformat(str(record["session"]))
    except (KeyError, ValueError):
        raise bad(f"session {record.get('session')!r} is not a YYYY-MM-DD date") from None
    symbols, assets = record.get("symbols"), record.get("assets")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s for s in symbols):
        raise bad("'symbols' must be a non-empty list of tickers")
    if not isinstance(assets, list):
        raise bad("'assets' must be a list")
    listed = []
    for item in assets:
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not all(isinstance(x, str) and x for x in item[:3])
            or not isinstance(item[3], bool)
        ):
            raise bad(f"asset {item!r} is not [symbol, asset_id, status, tradable]")
        listed.append(ListedAsset(item[0], item[1], item[2], item[3]))
    return AssetSnapshot(
        session,
        tuple(sorted(symbols)),
        tuple(sorted(listed)),
        str(record.get("observed_at", "")),
        str(record.get("source", "")),
        where,
    )


def parse_asset_snapshots(text: str, name: str) -> tuple[list[AssetSnapshot], list[str]]:
    """The snapshots of a snapshot file's text, in file order, and a note per line skipped because it is not
    JSON (a write cut short). A JSON line that is not a snapshot raises SecurityMasterError naming the line."""
    snapshots: list[AssetSnapshot] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except ValueError:
            skipped.append(f"{where}: not a JSON line (a write cut short?), skipped")
            continue
        snapshots.append(_parse_snapshot(record, where))
    return snapshots, skipped


def read_asset_snapshots(path: str | Path) -> tuple[list[AssetSnapshot], list[str]]:
    """`parse_asset_snapshots` of the file; no file yet: no snapshots."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityMasterError(f"{path}: cannot be read: {exc}") from exc
    return parse_asset_snapshots(text, str(path))


def append_asset_snapshot(path: str | Path, snapshot: AssetSnapshot) -> bool:
    """Append the snapshot as one line (written in one call and fsynced, under an exclusive lock on the file);
    the file is never rewritten. Returns False, writing nothing, when the last observation of the same session
    on file has the same content (a re-run of that session)."""
    import fcntl  # POSIX: the pipeline's one host (as the raw store's locks)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as fh:  # "a": every write goes to the end, whatever was read before
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            text = fh.read().decode("utf-8")
            on_file, _ = parse_asset_snapshots(text, str(path))
            same_session = [s for s in on_file if s.session == snapshot.session]
            if same_session and same_session[-1].content == snapshot.content:
                return False
            # a line cut short by a crash stays as it is (skipped when read); the new one starts on its own line
            prefix = "\n" if text and not text.endswith("\n") else ""
            fh.write((prefix + snapshot_line(snapshot) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
            return True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _active_symbols(snapshot: AssetSnapshot, where: str) -> dict[str, str | None]:
    """Per asset id of the snapshot: the symbol it is active under (None: listed but not active). Refuses an
    asset listed twice and a symbol with two active assets."""
    state: dict[str, str | None] = {}
    active_on: dict[str, str] = {}
    for asset in snapshot.assets:
        if asset.asset_id in state:
            raise SecurityMasterError(f"{where}: asset {asset.asset_id} is listed twice")
        state[asset.asset_id] = asset.symbol if asset.active else None
        if asset.active:
            if asset.symbol in active_on:
                raise SecurityMasterError(
                    f"{where}: two active assets on {asset.symbol} ({active_on[asset.symbol]} and "
                    f"{asset.asset_id}): which security the ticker means is ambiguous"
                )
            active_on[asset.symbol] = asset.asset_id
    return state


_END = object()


def master_from_asset_snapshots(snapshots: Sequence[AssetSnapshot], source: str = "Alpaca assets") -> SecurityMaster:
    """The security master the snapshots imply (rules in the module docstring): one interval per run of
    consecutive snapshots in which an asset is active under one symbol, its security_id the asset id.

    Snapshots may come in any order; of several observations of one session the last one given is used."""
    latest: dict[dt.date, AssetSnapshot] = {}
    for snapshot in snapshots:
        latest[snapshot.session] = snapshot
    snaps = [latest[day] for day in sorted(latest)]
    first_asked: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    states: list[dict[str, str | None]] = []
    for i, snapshot in enumerate(snaps):
        for symbol in snapshot.symbols:
            first_asked.setdefault(symbol, i)
        states.append(_active_symbols(snapshot, snapshot.origin or f"{source} snapshot of {snapshot.session}"))
        for asset_id in states[-1]:
            first_seen.setdefault(asset_id, i)
    rows: list[Row] = []
    for asset_id, seen in sorted(first_seen.items()):
        run: tuple[str, int] | None = None  # (symbol, index of the run's first snapshot)
        for i in range(seen, len(snaps) + 1):
            symbol = states[i].get(asset_id) if i < len(snaps) else _END
            if run is not None and symbol != run[0]:
                run_symbol, start = run
                if symbol is _END:
                    valid_to = None  # still active under that symbol in the latest snapshot
                elif symbol is not None:
                    valid_to = snaps[i].session - dt.timedelta(days=1)  # renamed: goes on under `symbol`
                else:
                    valid_to = snaps[i - 1].session  # the last session it was seen active
                open_start = start == seen and first_asked.get(run_symbol) == seen
                first = snaps[start]
                rows.append(
                    (
                        run_symbol,
                        asset_id,
                        ALPACA_OPEN_START if open_start else first.session,
                        valid_to,
                        f"{first.origin or source} ({first.session})",
                    )
                )
                run = None
            if run is None and isinstance(symbol, str):
                run = (symbol, i)
    return SecurityMaster(normalize_security_master(_frame(rows)), source)


def latest_completed_session(now: dt.datetime, closes: Mapping[dt.date, dt.datetime]) -> dt.date | None:
    """The last session whose close (`closes`: session -> aware close time) is at or before `now` (aware);
    None when none is."""
    if now.tzinfo is None:
        raise ValueError("latest_completed_session needs a timezone-aware `now`")
    done = [day for day, close in closes.items() if close <= now]
    return max(done) if done else None
