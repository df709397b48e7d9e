"""Whole-session data quality: vendor outages, told apart from ordinary missing bars, against a robust
baseline.

A vendor outage shows up as a session where many of the symbols that normally have a bar have none (the real
2011-02-17 of the shared dataset: 374 tickers against about 1,500; the partial last days of the NASDAQ
file), where the vendor delivered nothing usable at all (an empty session object, or only null rows), where
many symbols that usually trade report volume 0 (2010-04-26: 317 of 1,339), or as a *degraded stretch*: for
weeks or months a smaller share of the symbols is missing on most days. Such sessions are *flagged*, never
repaired: the cleaned-prices asset reports them (`prices/data_outages`, the WARN check
`cleaned_prices__no_outage`, an alert), the bars that were delivered flow on, and the missing symbols stay
missing downstream (no signal, orders due at that open expire, positions keep their last trusted close).

**The baseline is the set of active symbols, not a row count.** A symbol is *active* on session D when it
has a usable bar (a row with a close: a row whose prices are all null is the vendor's way of saying "no
bar", so it counts as missing) on at least ACTIVE_SHARE of the sessions with data among the ACTIVE_WINDOW
sessions before D. The old baseline (median row count of the 10 previous sessions) sank with a degraded
feed: after two weeks of 30% gaps, 30% gaps looked normal. A symbol missing on some days of a degraded
stretch still has a bar on most of the last 63 sessions, so it stays active and keeps counting as missing;
a symbol that stopped for good (delisted) leaves the active set after about ACTIVE_SHARE x ACTIVE_WINDOW
sessions, as it should. Sessions with no usable bar at all are no evidence about which symbols are active
and are left out of the window (so an outage does not shrink the next sessions' baseline).

**Point in time, and a range run equals day-by-day runs.** A session's verdict depends only on the raw rows
of the OUTAGE_HISTORY_SESSIONS calendar sessions before it and its own: the degraded-stretch rule looks at
the missing shares of the last DEGRADED_WINDOW sessions, each measured against its own ACTIVE_WINDOW. The
caller passes the raw rows of the OUTAGE_HISTORY_SESSIONS sessions before the window (those the raw store
holds: a session before the data begins is no evidence either way) and the calendar.

Thresholds, measured on both shared datasets (2008-2017 main file, 2,485 sessions x 1,920 tickers;
NASDAQ 2017-2023, 1,364 sessions x 2,757 tickers; see `benchmarks/README.md` and
trading_dagster_tests/domain/test_quality.py): on every normal session at most ~1% of the active symbols
lack a bar (99.9th percentile 1.05% on the main file, 0% on the NASDAQ file), and at most 5.4% of the
symbols that usually trade report volume 0 (NASDAQ 2022-11-25, the half day after Thanksgiving; the raw
share of zero-volume rows reaches 8.8% there because of warrants that never trade). Against that, the
real outages are 75% missing (2011-02-17), 24% at volume 0 (2010-04-26), 90% and 99% missing (NASDAQ
2023-04-14 and 2023-04-17). Pure polars and numpy; no Dagster import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from trading_dagster.domain.calendar import SessionCalendar

# Reason codes, in priority order (a session gets the first that applies; `detail` names the others).
OUTAGE_NO_BARS = "OUTAGE_NO_BARS"  # not one usable bar: an empty session object, or only null rows
OUTAGE_MISSING_SYMBOLS = "OUTAGE_MISSING_SYMBOLS"  # many active symbols without a bar on one session
OUTAGE_ZERO_VOLUME = "OUTAGE_ZERO_VOLUME"  # many symbols that usually trade report volume 0
OUTAGE_DEGRADED = "OUTAGE_DEGRADED"  # a smaller share missing, on most sessions of a stretch
OUTAGE_CODES: tuple[str, ...] = (OUTAGE_NO_BARS, OUTAGE_MISSING_SYMBOLS, OUTAGE_ZERO_VOLUME, OUTAGE_DEGRADED)

# Active symbols: a usable bar on at least ACTIVE_SHARE of the sessions with data among the ACTIVE_WINDOW
# sessions before the session. 63 sessions (a quarter): long enough that a stretch of random 20-40% gaps
# leaves a symbol active (it still has a bar on ~60-80% of them; with 40% gaps ~5% of symbols dip below
# half), short enough that a delisted symbol stops counting as missing after ~32 sessions. On both real
# files the choice of 21..252 sessions and of 0.5 or 0.8 moves the normal missing share by less than a
# percentage point and flags the same sessions.
ACTIVE_WINDOW = 63
ACTIVE_SHARE = 0.5
# Fewer sessions with data than this in the window: no baseline (the start of history), so no
# missing-symbol or degraded verdict; a session with no usable bar is still flagged.
MIN_BASELINE_SESSIONS = 20
# One session: at least this share of the active symbols without a usable bar (20x the worst normal day).
OUTAGE_MISSING_SHARE = 0.2
# ... and at least this many of them: one symbol without a bar is a halt or a thin name, not an outage.
OUTAGE_MIN_MISSING = 2
# More than this share of the symbols that traded (volume > 0) on at least ACTIVE_SHARE of the window's
# sessions report volume 0 (a warrant that never trades is no evidence; without a baseline, no verdict:
# each zero-volume bar is still quarantined as ZERO_VOLUME by cleaning).
OUTAGE_MAX_ZERO_VOLUME_SHARE = 0.1
# Degraded stretch: a session missing at least DEGRADED_SHARE of the active symbols (5x the worst normal
# day), when at least DEGRADED_MIN_SESSIONS of the last DEGRADED_WINDOW sessions (itself included) do too.
DEGRADED_SHARE = 0.05
DEGRADED_WINDOW = 20
DEGRADED_MIN_SESSIONS = 10
# What the caller reads before the window: the active window of the earliest session the stretch rule looks at.
OUTAGE_HISTORY_SESSIONS = ACTIVE_WINDOW + DEGRADED_WINDOW - 1
MISSING_SAMPLE = 20  # missing symbols named per session (alphabetical)

OUTAGE_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "reason": pl.Utf8(),  # null: a normal session
    "rows": pl.Int64(),  # distinct symbols with a row
    "null_rows": pl.Int64(),  # of those, without a close (null rows): counted as missing
    "active_symbols": pl.Int64(),  # the baseline; null without one (start of history)
    "missing_count": pl.Int64(),  # active symbols without a usable bar
    "missing_share": pl.Float64(),  # missing_count / active_symbols
    "zero_volume_rows": pl.Int64(),  # symbols that usually trade with a bar at volume 0
    "missing_sample": pl.Utf8(),  # up to MISSING_SAMPLE missing symbols, alphabetical
    "stretch_start": pl.Date(),  # a degraded stretch this session belongs to began on or before this date
    "detail": pl.Utf8(),
}
_ROW_BLOCK = 512  # sessions per block of the dense (session x symbol) arithmetic, to bound memory


@dataclass(frozen=True)
class OutageStretch:
    """Flagged sessions that belong together: one session, or a degraded stretch (`first` is where the
    stretch began as far as its sessions could see, possibly before the first flagged one)."""

    first: dt.date
    last: dt.date
    sessions: tuple[dt.date, ...]
    reasons: tuple[str, ...]  # distinct, in priority order

    @property
    def is_stretch(self) -> bool:
        return len(self.sessions) > 1 or self.first != self.last

    def label(self) -> str:
        span = str(self.last) if not self.is_stretch else f"{self.first}..{self.last}"
        what = " ".join(self.reasons)
        if self.is_stretch:
            what += f" (degraded stretch, {len(self.sessions)} session(s) flagged in this run)"
        return f"{span} {what}"


def _bars(raw: pl.DataFrame, history: pl.DataFrame | None) -> pl.DataFrame:
    """The rows that carry a symbol and a date, with what the rules read: `day` (days since the epoch),
    `usable` (a close), `zero` (a usable bar at volume 0), `positive` (a usable bar with volume > 0)."""

    def pick(frame: pl.DataFrame) -> pl.DataFrame:
        volume = pl.col("volume").cast(pl.Float64) if "volume" in frame.columns else pl.lit(None, pl.Float64)
        close = pl.col("close").cast(pl.Float64)
        usable = (close.is_not_null() & close.is_not_nan()).fill_null(False)
        return frame.filter(pl.col("symbol").is_not_null() & pl.col("date").is_not_null()).select(
            pl.col("symbol").cast(pl.Utf8),
            pl.col("date").cast(pl.Date).cast(pl.Int32).alias("day"),
            usable.alias("usable"),
            (usable & (volume == 0)).fill_null(False).alias("zero"),
            (usable & (volume > 0)).fill_null(False).alias("positive"),
        )

    return pl.concat([pick(raw)] + ([pick(history)] if history is not None and history.height else []))


def _matrix(cells: np.ndarray, where: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A (session x symbol) bool matrix, True where any row of that cell has `where` (every row: None), so a
    symbol with several rows on a session counts once, as it would after de-duplication. `cells`: each row's
    flat index (session x symbols + symbol): one index array instead of two, ~2x faster to scatter."""
    out = np.zeros(shape[0] * shape[1], dtype=bool)
    out[cells if where is None else cells[where]] = True
    return out.reshape(shape)


def _running_counts(matrix: np.ndarray) -> np.ndarray:
    """Row t of the result: the column sums of the rows of the bool `matrix` before t (one more row than
    it). Copied to int32 first and summed in place: a cumsum that casts each bool on the way is ~2x slower."""
    out = np.zeros((matrix.shape[0] + 1, matrix.shape[1]), dtype=np.int32)
    out[1:] = matrix
    np.add.accumulate(out, axis=0, out=out)
    return out


def _axis(window: Sequence[dt.date], calendar: SessionCalendar) -> tuple[list[dt.date], int]:
    """The calendar sessions from OUTAGE_HISTORY_SESSIONS before the window to its end, and where the
    window starts in it. The window must be consecutive sessions of the calendar."""
    if not window:
        raise ValueError("flag_outages needs at least one window session")
    i0, i1 = calendar.index(window[0]), calendar.index(window[-1])
    if list(window) != list(calendar.sessions[i0 : i1 + 1]):
        raise ValueError(f"the window {window[0]}..{window[-1]} is not consecutive sessions of the calendar")
    lo = max(0, i0 - OUTAGE_HISTORY_SESSIONS)
    return list(calendar.sessions[lo : i1 + 1]), i0 - lo


def flag_outages(
    raw: pl.DataFrame,
    window: Sequence[dt.date],
    history: pl.DataFrame | None,
    calendar: SessionCalendar,
) -> pl.DataFrame:
    """One row per session of `window` (OUTAGE_SCHEMA; `reason` null on a normal session).

    `raw`: the window's raw rows (`symbol`, `date`, `close`, `volume`; other columns are ignored).
    `history`: the raw rows of the OUTAGE_HISTORY_SESSIONS calendar sessions before the window that the
    raw store holds (older rows are ignored; a row dated in the window or later raises ValueError: a
    verdict never depends on itself or on the future). `calendar`: the exchange calendar of the window.
    """
    axis, w0 = _axis(window, calendar)
    if history is not None and history.height:
        late = history.filter(pl.col("date") >= window[0])
        if late.height:
            raise ValueError(
                f"history holds {late.height} row(s) dated on or after the window's first session {window[0]}"
            )
        history = history.filter(pl.col("date") >= axis[0])
    outside = raw.filter(~pl.col("date").is_in(pl.Series(list(window), dtype=pl.Date).implode()))
    if outside.height:
        raise ValueError(f"raw holds {outside.height} row(s) dated outside the window {window[0]}..{window[-1]}")

    # dense (session x symbol) matrices, filled row by row: no group-by over (date, symbol), whose hash
    # table took ~1 GiB on the 3.8 M rows of a ten-year range
    bars = _bars(raw, history)
    symbols = sorted(bars["symbol"].unique().to_list())
    n_t, n_s = len(axis), len(symbols)
    first_day = (axis[0] - dt.date(1970, 1, 1)).days
    lookup = np.full((axis[-1] - axis[0]).days + 1, -1, dtype=np.int64)
    lookup[[(d - axis[0]).days for d in axis]] = np.arange(n_t)
    t_idx = lookup[bars["day"].to_numpy() - first_day]
    if (t_idx < 0).any():
        raise ValueError("rows dated on a day that is no session of the calendar")
    s_idx = bars.select(pl.col("symbol").cast(pl.Enum(symbols)).to_physical()).to_series().to_numpy()
    shape = (n_t, n_s)
    cells = t_idx * n_s + s_idx
    usable = _matrix(cells, bars["usable"].to_numpy(), shape)
    zero = _matrix(cells, bars["zero"].to_numpy(), shape)
    traded = _matrix(cells, bars["positive"].to_numpy(), shape) & ~zero
    rows = _matrix(cells, None, shape).sum(axis=1)
    del bars, t_idx, s_idx, cells
    n_usable = usable.sum(axis=1)

    # counts over the ACTIVE_WINDOW sessions before t: cumulative sums, row t of C = sum of rows < t
    evidence = np.concatenate([[0], np.cumsum(n_usable > 0)])
    c_usable, c_traded = _running_counts(usable), _running_counts(traded)

    first = max(0, w0 - DEGRADED_WINDOW + 1)  # the stretch rule looks this far back
    n_active = np.full(n_t, -1, dtype=np.int64)  # -1: no baseline
    n_missing = np.zeros(n_t, dtype=np.int64)
    n_zero = np.zeros(n_t, dtype=np.int64)
    n_zero_base = np.zeros(n_t, dtype=np.int64)
    known = np.zeros(n_t, dtype=np.int64)
    missing_rows: dict[int, np.ndarray] = {}
    for b in range(first, n_t, _ROW_BLOCK):
        t = np.arange(b, min(n_t, b + _ROW_BLOCK))
        lo = np.maximum(0, t - ACTIVE_WINDOW)
        k = evidence[t] - evidence[lo]
        need = (ACTIVE_SHARE * k)[:, None]
        active = (c_usable[t] - c_usable[lo]) >= need
        usual = (c_traded[t] - c_traded[lo]) >= need
        based = k >= MIN_BASELINE_SESSIONS
        missing = active & ~usable[t] & based[:, None]
        zbase = usual & usable[t] & based[:, None]
        known[t] = k
        n_active[t] = np.where(based, active.sum(axis=1), -1)
        n_missing[t] = missing.sum(axis=1)
        n_zero_base[t] = zbase.sum(axis=1)
        n_zero[t] = (zbase & zero[t]).sum(axis=1)
        for j in np.flatnonzero(t >= w0):
            missing_rows[int(t[j])] = missing[j]

    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_active > 0, n_missing / np.maximum(n_active, 1), 0.0)
        zshare = np.where(n_zero_base > 0, n_zero / np.maximum(n_zero_base, 1), 0.0)
    degraded = (n_active > 0) & (n_missing >= OUTAGE_MIN_MISSING) & (share >= DEGRADED_SHARE)

    names = np.array(symbols, dtype=object)
    out = []
    for t in range(w0, n_t):
        recent = range(max(first, t - DEGRADED_WINDOW + 1), t + 1)
        count = sum(1 for p in recent if degraded[p])
        in_stretch = bool(degraded[t]) and count >= DEGRADED_MIN_SESSIONS
        start = axis[next(p for p in recent if degraded[p])] if in_stretch else None
        found = {
            OUTAGE_NO_BARS: n_usable[t] == 0,
            OUTAGE_MISSING_SYMBOLS: n_usable[t] > 0  # with no bar at all, OUTAGE_NO_BARS says it
            and n_active[t] > 0
            and n_missing[t] >= OUTAGE_MIN_MISSING
            and share[t] >= OUTAGE_MISSING_SHARE,
            OUTAGE_ZERO_VOLUME: n_zero_base[t] > 0 and zshare[t] > OUTAGE_MAX_ZERO_VOLUME_SHARE,
            OUTAGE_DEGRADED: in_stretch,
        }
        codes = [c for c in OUTAGE_CODES if found[c]]
        missing_names = sorted(names[missing_rows[t]].tolist()) if t in missing_rows else []
        facts = _Facts(
            rows=int(rows[t]),
            usable=int(n_usable[t]),
            active=int(n_active[t]),
            missing=int(n_missing[t]),
            share=float(share[t]),
            known=int(known[t]),
            zero=int(n_zero[t]),
            zero_base=int(n_zero_base[t]),
            stretch_count=count,
            stretch_start=start,
            based=n_active[t] >= 0,
        )
        out.append(
            {
                "session": axis[t],
                "reason": codes[0] if codes else None,
                "rows": int(rows[t]),
                "null_rows": int(rows[t] - n_usable[t]),
                "active_symbols": int(n_active[t]) if n_active[t] >= 0 else None,
                "missing_count": int(n_missing[t]) if n_active[t] >= 0 else None,
                "missing_share": float(share[t]) if n_active[t] >= 0 else None,
                "zero_volume_rows": int(n_zero[t]),
                "missing_sample": _sample(missing_names) if codes else None,
                "stretch_start": start,
                "detail": _detail(codes, facts) if codes else None,
            }
        )
    return pl.DataFrame(out, schema=OUTAGE_SCHEMA, orient="row")


@dataclass(frozen=True)
class _Facts:
    rows: int
    usable: int
    active: int
    missing: int
    share: float
    known: int
    zero: int
    zero_base: int
    stretch_count: int
    stretch_start: dt.date | None
    based: bool


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _sample(names: list[str]) -> str:
    return ", ".join(names[:MISSING_SAMPLE]) + (f" ... ({len(names)} in all)" if len(names) > MISSING_SAMPLE else "")


def _text(code: str, f: _Facts) -> str:
    baseline = (
        f"active: a bar on at least {ACTIVE_SHARE:.0%} of the {f.known} sessions with data among the previous "
        f"{ACTIVE_WINDOW}"
    )
    if code == OUTAGE_NO_BARS:
        what = "no rows: the vendor delivered nothing" if f.rows == 0 else f"{f.rows} rows, none with a close (null rows)"
        return what + (f"; all {f.missing} active symbols are missing" if f.based else "")
    if code == OUTAGE_MISSING_SYMBOLS:
        return (
            f"{f.missing} of {f.active} active symbols have no usable bar ({_pct(f.share)}, at least "
            f"{OUTAGE_MISSING_SHARE:.0%}; {baseline})"
        )
    if code == OUTAGE_ZERO_VOLUME:
        return (
            f"{f.zero} of {f.zero_base} bars of symbols that usually trade have volume 0 ({_pct(f.zero / f.zero_base)}, above "
            f"{OUTAGE_MAX_ZERO_VOLUME_SHARE:.0%})"
        )
    return (
        f"degraded stretch since {f.stretch_start} or earlier: {f.stretch_count} of the last {DEGRADED_WINDOW} "
        f"sessions miss at least {DEGRADED_SHARE:.0%} of the active symbols; this one {f.missing} of "
        f"{f.active} ({_pct(f.share)})"
    )


def _detail(codes: list[str], facts: _Facts) -> str:
    main = _text(codes[0], facts)
    others = "; ".join(f"{c}: {_text(c, facts)}" for c in codes[1:])
    return f"{main} (also {others})" if others else main


def outage_sessions(flags: pl.DataFrame) -> pl.DataFrame:
    """Only the flagged sessions of `flag_outages`' output (what `prices/data_outages` holds)."""
    return flags.filter(pl.col("reason").is_not_null())


def outage_stretches(flagged: pl.DataFrame) -> list[OutageStretch]:
    """Flagged sessions (of `outage_sessions`) grouped: a session of a degraded stretch joins every earlier
    group its `stretch_start` reaches back to (the first sessions of a stretch are flagged, if at all, before
    the stretch rule can know they begin one), the group's `first` being the earliest stretch start of its
    sessions; any other session is a group of its own. For the check's description and the alerts."""
    groups: list[list[dict]] = []
    for row in flagged.sort("session").iter_rows(named=True):
        start = row["stretch_start"]
        merged = [row]
        while groups and start is not None and start <= groups[-1][-1]["session"]:
            merged = groups.pop() + merged
        groups.append(merged)
    out = []
    for rows in groups:
        starts = [r["stretch_start"] for r in rows if r["stretch_start"] is not None]
        sessions = tuple(r["session"] for r in rows)
        present = {r["reason"] for r in rows}
        out.append(
            OutageStretch(
                first=min([sessions[0], *starts]),
                last=sessions[-1],
                sessions=sessions,
                reasons=tuple(c for c in OUTAGE_CODES if c in present),
            )
        )
    return out


def no_bar_sessions(flags: pl.DataFrame) -> list[dt.date]:
    """Sessions of `flag_outages`' output with no usable bar at all (OUTAGE_NO_BARS, whatever reason came
    first): the sessions whose empty cleaned partition is a data outage, not a cleaning fault."""
    return flags.filter(pl.col("reason") == OUTAGE_NO_BARS)["session"].to_list()


BREAK_HOLD_SESSIONS = 252  # the longest indicator window (the 52-week high): after it no indicator spans the break


def hold_out_unexplained_breaks(
    signals: pl.DataFrame, breaks: pl.DataFrame, cal_sessions: Sequence[dt.date], hold: int = BREAK_HOLD_SESSIONS
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Signals minus the BUY signals of a symbol with an unexplained split confirmed in its last `hold`
    sessions (the confirming session included): (kept, held out). Sells pass.

    `breaks` is the price_breaks frame (prices.BREAKS_SCHEMA: `symbol`, `session` = the confirming session,
    `kind`); only `kind == 'split'` rows hold (a collapse that held is a real level). The bars after a split
    are valid bars on a new price basis, so every indicator whose window spans the break (a 52-week high
    from before a 2:1 split reads as a 50% dip) is garbage until a corporate action explains the break and
    the partitions are re-run: no new buy may come of it. A position must stay closable, though: the book
    follows the split's ratio (domain/book_events.py), and a sell, even one an indicator spanning the break
    fired, only exits. Point in time: a signal of session D looks at breaks confirmed in the `hold` sessions
    up to D only, so a range run and a one-day run hold out the same signals.
    """
    if signals.is_empty() or breaks.is_empty():
        return signals, signals.clear()
    splits = breaks.filter(pl.col("kind") == "split") if "kind" in breaks.columns else breaks
    if splits.is_empty():
        return signals, signals.clear()
    index = {s: i for i, s in enumerate(cal_sessions)}
    spans = (
        splits.select("symbol", "session")
        .unique()
        .with_columns(pl.col("session").replace_strict(index, return_dtype=pl.Int64).alias("from_i"))
    )
    buys = signals.filter(pl.col("side") == "buy").select("symbol", "session").unique()
    held_keys = (
        buys.with_columns(pl.col("session").replace_strict(index, return_dtype=pl.Int64).alias("_i"))
        .join(spans.select("symbol", "from_i"), on="symbol")
        .filter((pl.col("_i") >= pl.col("from_i")) & (pl.col("_i") < pl.col("from_i") + hold))
        .select("symbol", "session", pl.lit(True).alias("_held"))
        .unique()
    )
    marked = signals.join(held_keys, on=["symbol", "session"], how="left", maintain_order="left")
    hold_it = (pl.col("side") == "buy") & pl.col("_held").fill_null(False)
    return marked.filter(~hold_it).drop("_held"), marked.filter(hold_it).drop("_held")

