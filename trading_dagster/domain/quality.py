"""Whole-session data quality: vendor outage days, told apart from ordinary missing bars.

A vendor outage shows up as a session with far fewer rows than usual (2011-02-17 in the shared dataset:
374 tickers against about 1,500) or with many rows that carry volume 0 (2010-04-26: 317 of 1,339). Such a
session is *flagged*, not repaired: the cleaned-prices asset reports it, the zero-volume rows themselves
go to quarantine as ZERO_VOLUME (prices.clean_prices), and downstream steps treat the missing symbols as
missing, never as zero.

Causal and range-independent like the price rules: a session's verdict depends on its own rows and on the
row counts of the OUTAGE_LOOKBACK sessions before it, so the caller passes the counts of those sessions
too (`session_counts` of the same raw history it gives `clean_prices`). Pure polars; no Dagster import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

OUTAGE_MISSING_SYMBOLS = "OUTAGE_MISSING_SYMBOLS"
OUTAGE_ZERO_VOLUME = "OUTAGE_ZERO_VOLUME"
OUTAGE_CODES: tuple[str, ...] = (OUTAGE_MISSING_SYMBOLS, OUTAGE_ZERO_VOLUME)

# The reference row count of a session: the median row count of the OUTAGE_LOOKBACK sessions before it
# (at least OUTAGE_MIN_REFERENCE of them; a median so that one earlier outage does not lower it).
OUTAGE_LOOKBACK = 10
OUTAGE_MIN_REFERENCE = 5
# Flag a session with fewer rows than this share of its reference ...
OUTAGE_MIN_ROW_SHARE = 0.6
# ... or with more than this share of its rows at volume 0.
OUTAGE_MAX_ZERO_VOLUME_SHARE = 0.1

OUTAGE_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "rows": pl.Int64(),
    "reference_rows": pl.Float64(),
    "zero_volume_rows": pl.Int64(),
    "reason": pl.Utf8(),
    "detail": pl.Utf8(),
}
COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "rows": pl.Int64(),
    "zero_volume_rows": pl.Int64(),
}


def _date_column(bars: pl.DataFrame) -> str:
    for name in ("session", "date"):
        if name in bars.columns:
            return name
    raise ValueError(f"bars need a 'session' or 'date' column; found {bars.columns}")


def session_counts(bars: pl.DataFrame) -> pl.DataFrame:
    """Per session: `rows` (distinct symbols with a row) and `zero_volume_rows` (of those, volume == 0).

    `bars` is raw (`date`) or cleaned/quarantine-like (`session`) with `symbol` and `volume`. A symbol
    with several rows on a session counts once (zero-volume if any of its rows is). Rows without a
    symbol or date are not counted.
    """
    col = _date_column(bars)
    if bars.height == 0:
        return pl.DataFrame(schema=COUNTS_SCHEMA)
    symbol = pl.col("symbol")
    return (
        bars.filter(symbol.is_not_null() & pl.col(col).is_not_null())
        .group_by(col)
        .agg(
            symbol.n_unique().cast(pl.Int64).alias("rows"),
            symbol.filter(pl.col("volume") == 0).n_unique().cast(pl.Int64).alias("zero_volume_rows"),
        )
        .rename({col: "session"})
        .sort("session")
        .cast(COUNTS_SCHEMA)  # type: ignore[arg-type]
    )


def flag_outage_sessions(
    counts: pl.DataFrame,
    window: Sequence[dt.date] | None = None,
    history_sessions: Sequence[dt.date] = (),
) -> pl.DataFrame:
    """One row per session of `window` (default: every session in `counts`), OUTAGE_SCHEMA.

    `counts` (see `session_counts`) must hold the window's sessions and the OUTAGE_LOOKBACK sessions
    before it. A session of `window` or `history_sessions` (pass the lookback sessions the caller read)
    that is missing from `counts` had no rows at all: it counts as rows = 0, so that a range run and
    day-by-day runs see the same lookback even around an empty session. `reference_rows` is the median `rows` of the OUTAGE_LOOKBACK sessions before the session
    (null with fewer than OUTAGE_MIN_REFERENCE of them: the start of history is never flagged for missing
    symbols). `reason` is null for a normal session; otherwise OUTAGE_MISSING_SYMBOLS (rows below
    OUTAGE_MIN_ROW_SHARE of the reference) or OUTAGE_ZERO_VOLUME (more than OUTAGE_MAX_ZERO_VOLUME_SHARE of
    the rows at volume 0), the first when both apply, with the other named in `detail`.
    """
    counts = counts.select(list(COUNTS_SCHEMA)).cast(COUNTS_SCHEMA)  # type: ignore[arg-type]
    if counts["session"].is_duplicated().any():
        raise ValueError("counts must hold one row per session")
    known = [*history_sessions, *(window or [])]
    if known:
        missing = (
            pl.DataFrame({"session": known}, schema={"session": pl.Date()})
            .unique()
            .join(counts, on="session", how="anti")
        )
        counts = pl.concat(
            [
                counts,
                missing.with_columns(
                    pl.lit(0, dtype=pl.Int64).alias("rows"),
                    pl.lit(0, dtype=pl.Int64).alias("zero_volume_rows"),
                ),
            ],
            how="diagonal",
        )
    counts = counts.sort("session")
    rows = pl.col("rows")
    previous = [rows.shift(k) for k in range(1, OUTAGE_LOOKBACK + 1)]
    n_previous = pl.sum_horizontal([p.is_not_null().cast(pl.Int32) for p in previous])
    reference = pl.when(n_previous >= OUTAGE_MIN_REFERENCE).then(pl.concat_list(previous).list.median())
    out = counts.with_columns(reference.alias("reference_rows"))
    few = rows < pl.col("reference_rows") * OUTAGE_MIN_ROW_SHARE
    zero_share = pl.col("zero_volume_rows") / rows
    many_zero = (rows > 0) & (zero_share > OUTAGE_MAX_ZERO_VOLUME_SHARE)
    few_text = pl.format(
        "{} rows against a reference of {} (median of the previous {} sessions): {}% of it, below {}%",
        rows,
        pl.col("reference_rows"),
        n_previous,
        (rows / pl.col("reference_rows") * 100).round(1),
        pl.lit(round(OUTAGE_MIN_ROW_SHARE * 100)),
    )
    zero_text = pl.format(
        "{} of {} rows have volume 0 ({}%, above {}%)",
        pl.col("zero_volume_rows"),
        rows,
        (zero_share * 100).round(1),
        pl.lit(round(OUTAGE_MAX_ZERO_VOLUME_SHARE * 100)),
    )
    out = out.with_columns(
        pl.when(few.fill_null(False))
        .then(pl.lit(OUTAGE_MISSING_SYMBOLS))
        .when(many_zero.fill_null(False))
        .then(pl.lit(OUTAGE_ZERO_VOLUME))
        .alias("reason"),
        pl.when(few.fill_null(False) & many_zero.fill_null(False))
        .then(pl.format("{} (also {}: {})", few_text, pl.lit(OUTAGE_ZERO_VOLUME), zero_text))
        .when(few.fill_null(False))
        .then(few_text)
        .when(many_zero.fill_null(False))
        .then(zero_text)
        .alias("detail"),
    )
    if window is not None:
        out = out.filter(pl.col("session").is_in(pl.Series(list(window), dtype=pl.Date).implode()))
    return out.select(list(OUTAGE_SCHEMA)).cast(OUTAGE_SCHEMA)  # type: ignore[arg-type]


def outage_sessions(flags: pl.DataFrame) -> pl.DataFrame:
    """Only the flagged sessions of `flag_outage_sessions`' output."""
    return flags.filter(pl.col("reason").is_not_null())


def missing_symbols(bars: pl.DataFrame, session: dt.date) -> list[str]:
    """Symbols that have a row on the last session before `session` in `bars` but none on `session`.

    For an outage report ("SPY, IWM, DIA have no row on 2011-02-17"). `bars` holds `symbol` and a `date`
    or `session` column; the previous session is the latest date before `session` present in `bars`
    (none: an empty list). Sorted.
    """
    col = _date_column(bars)
    before = bars.filter(pl.col(col) < session)[col]
    if before.len() == 0:
        return []
    previous_day = before.max()
    prev = bars.filter(pl.col(col) == previous_day)["symbol"].drop_nulls().unique()
    today = bars.filter(pl.col(col) == session)["symbol"].drop_nulls().unique()
    return sorted(set(prev.to_list()) - set(today.to_list()))


def flag_outages(
    raw: pl.DataFrame,
    window: Sequence[dt.date],
    history: pl.DataFrame | None = None,
    history_sessions: Sequence[dt.date] = (),
) -> pl.DataFrame:
    """`flag_outage_sessions` for a partition: the window's raw rows plus the raw rows of the
    OUTAGE_LOOKBACK sessions before it (`history`, the same frame `clean_prices` takes, and the list of
    those sessions, so that an empty one counts as 0 rows). One row per window session."""
    columns = ("symbol", pl.col("date").cast(pl.Date), pl.col("volume").cast(pl.Int64))
    frames = [raw.select(*columns)]
    if history is not None:
        frames.insert(0, history.select(*columns))
    return flag_outage_sessions(
        session_counts(pl.concat(frames)), window=window, history_sessions=history_sessions
    )


BREAK_HOLD_SESSIONS = 252  # the longest indicator window (the 52-week high): after it no indicator spans the break


def hold_out_unexplained_breaks(
    signals: pl.DataFrame, breaks: pl.DataFrame, cal_sessions: Sequence[dt.date], hold: int = BREAK_HOLD_SESSIONS
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Signals minus those of a symbol with an UNEXPLAINED_SPLIT in its last `hold` sessions (that session
    included): (kept, held out).

    The split bar itself is quarantined, but the bars after it are valid bars on a new price basis, so every
    indicator whose window spans the break (a 52-week high from before a 2:1 split reads as a 50% dip) is
    garbage until a corporate action explains the break and the partitions are re-run. Point in time: a
    signal of session D looks at breaks dated in the `hold` sessions up to D only, so a range run and a
    one-day run hold out the same signals. `breaks` holds `symbol` and `session` (quarantine rows).

    A break by a decimal factor (an unadjusted 10:1 or 1-for-100 split: prices.BREAK_CONFIRM_SESSIONS) is
    dated on the session that confirmed it, BREAK_CONFIRM_SESSIONS after the break: the bars in between are
    DECIMAL_SHIFT, so they have no indicators and no signal to hold, and the hold runs from the confirmation
    (a few sessions longer than from the break itself, never shorter).
    """
    if signals.is_empty() or breaks.is_empty():
        return signals, signals.clear()
    index = {s: i for i, s in enumerate(cal_sessions)}
    spans = (
        breaks.select("symbol", "session")
        .unique()
        .with_columns(
            pl.col("session").replace_strict(index, return_dtype=pl.Int64).alias("from_i"),
        )
    )
    keyed = signals.with_columns(pl.col("session").replace_strict(index, return_dtype=pl.Int64).alias("_i"))
    held_keys = (
        keyed.select("symbol", "session", "_i")
        .unique()
        .join(spans.select("symbol", "from_i"), on="symbol")
        .filter((pl.col("_i") >= pl.col("from_i")) & (pl.col("_i") < pl.col("from_i") + hold))
        .select("symbol", "session")
        .unique()
    )
    held = signals.join(held_keys, on=["symbol", "session"], how="semi")
    kept = signals.join(held_keys, on=["symbol", "session"], how="anti")
    return kept, held
