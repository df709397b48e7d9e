"""Cleaning raw bars: one trusted row per (symbol, session), every other row quarantined with a reason.

Reading vendor files lives in `vendor_files`, the shared schemas and the split by session in `bars`.
Everything here is pure (polars, and numpy on the few rows near a price break; no Dagster, no I/O), so the
cleaned-price asset stays thin and every rule below is unit-tested on tiny frames.

**Never lose a row silently.** A row dated outside its partition raises `PriceDataError`; a row that
parses but is not a believable bar goes to the quarantine frame with a reason code. `clean_prices` checks
that cleaned + quarantine account for every de-duplicated input row.

Quarantine: the raw columns renamed as in cleaned (`date` is `session`), plus `reason` and `detail`.
Breaks (`BREAKS_SCHEMA`): one row per confirmed price break (an unexplained split or a collapse that held).

**Splits, glitches and collapses are told apart by what happens next** (decision 0004 section 3). A bar
whose whole bar moved from the previous close by a split ratio or a decimal factor cannot be told, on its
own day, from a vendor glitch: it is UNCONFIRMED_BREAK (quarantined, nothing trades on it) on the break day
and while its level holds, for BREAK_CONFIRM_SESSIONS closes. A move that reverts within them was a
glitch, whatever its ratio: those bars stay quarantined and the bars after the reversion are clean. A level
that held is a split: the next bar (the confirming bar, when it became known) is UNEXPLAINED_SPLIT and a row
of `breaks`; the bars after it are kept, on the new basis. A fall of more than 80% at no split ratio is
PRICE_COLLAPSE the same way; once it held, it is a `collapse` row of `breaks` and the bars are kept.
Every verdict is a function of the bar and the raw bars dated in the BREAK_REACH_DAYS before it, so a
range run equals day-by-day runs (given HISTORY_SESSIONS sessions of history) and no verdict uses a later
bar.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from trading_dagster.domain.bars import (
    CLEAN_COLUMNS,
    CLEAN_SCHEMA,
    PRICE_COLUMNS,
    PriceDataError,
    _check_no_null_dates,
    _date_counts,
    _list_dates,
)
from trading_dagster.domain.corporate_actions import cumulative_factor, normalize_corporate_actions
from trading_dagster.domain.vendor_files import normalize_ohlcv

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**CLEAN_SCHEMA, "reason": pl.Utf8(), "detail": pl.Utf8()}
# One row per confirmed break: `session` is the confirming session (when the break became known, and when
# the book applies it), `break_date` the first bar at the new level (the ex-date of a split), `share_ratio`
# new shares per old share (2.0 for a 2:1 split, 0.05 for a 1-for-20 reverse split; null for a collapse),
# `kind` 'split' | 'collapse'. Only unexplained splits (none on file) and collapses: a split on file is no
# break at all (prices are compared in units of the original share).
BREAKS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session": pl.Date(),
    "break_date": pl.Date(),
    "share_ratio": pl.Float64(),
    "kind": pl.Utf8(),
    "detail": pl.Utf8(),
}
BREAK_KINDS: tuple[str, ...] = ("split", "collapse")

# Quarantine reason codes. A row with several problems gets the FIRST of SANITY_PRIORITY: a missing value
# makes every comparison meaningless, a non-positive price is the most basic impossibility, and a price
# below NEAR_ZERO_THRESHOLD is the same fault one step removed (a placeholder such as 0.0001 for "no
# price": every ratio against it, a x0.000004 "collapse", an open 250,000x the close, is a consequence).
# high < low makes the [low, high] range empty (so close/open "outside" it is a consequence, not a separate
# fault). A decimal shift comes next because it names the broken field (a close of 0.8997 in a 90-dollar
# stock also puts the close outside the range and makes the open look 100x the close, which are
# consequences); FIELD_OUTLIER (one field absurdly far from the rest of the bar) comes before the plain
# range checks for the same reason. The open is checked after the close because the close is what every
# indicator consumes. The three break codes come after every check inside the bar: they are about a bar
# that is consistent in itself but sits at a surprising level (the whole bar moved), so a bar whose fields
# disagree with each other is named by that first. They exclude each other (one state per bar: a fall
# pending confirmation, a split-ratio move pending confirmation, or the bar that confirmed a split), so
# their order among themselves is only the reading order: fall, pending break, confirmed split. Volume
# problems come last: the prices of such a bar can be fine.
# The other codes that also apply are named in `detail`. DUPLICATE_CONFLICT is decided per (symbol,
# session) before any of these: when a vendor sends two different bars for one key we cannot tell which
# one is right, so none is kept.
NULL_VALUE = "NULL_VALUE"
NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
NEAR_ZERO_PRICE = "NEAR_ZERO_PRICE"
HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
DECIMAL_SHIFT = "DECIMAL_SHIFT"
FIELD_OUTLIER = "FIELD_OUTLIER"
CLOSE_OUTSIDE_RANGE = "CLOSE_OUTSIDE_RANGE"
OPEN_OUTSIDE_RANGE = "OPEN_OUTSIDE_RANGE"
PRICE_COLLAPSE = "PRICE_COLLAPSE"
UNCONFIRMED_BREAK = "UNCONFIRMED_BREAK"
UNEXPLAINED_SPLIT = "UNEXPLAINED_SPLIT"
NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
ZERO_VOLUME = "ZERO_VOLUME"
DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"
SANITY_PRIORITY: tuple[str, ...] = (
    NULL_VALUE,
    NON_POSITIVE_PRICE,
    NEAR_ZERO_PRICE,
    HIGH_BELOW_LOW,
    DECIMAL_SHIFT,
    FIELD_OUTLIER,
    CLOSE_OUTSIDE_RANGE,
    OPEN_OUTSIDE_RANGE,
    PRICE_COLLAPSE,
    UNCONFIRMED_BREAK,
    UNEXPLAINED_SPLIT,
    NEGATIVE_VOLUME,
    ZERO_VOLUME,
)
REASON_CODES: tuple[str, ...] = (DUPLICATE_CONFLICT, *SANITY_PRIORITY)
# Codes whose verdict needs earlier bars (the `history` argument of clean_prices); the others look at
# one row only.
HISTORY_CODES: tuple[str, ...] = (DECIMAL_SHIFT, PRICE_COLLAPSE, UNCONFIRMED_BREAK, UNEXPLAINED_SPLIT)

# Below this a positive price is no price (NEAR_ZERO_PRICE). Measured (strictly positive prices of any
# field): in the 2008-2017 file 453 rows of 5 tickers are below $0.01 (449 of them CYHHZ, a right trading
# at 0.4-2.3 cents) but only 1 below $0.001 (CYHHZ 2016-03-23, open = low = 0.0002 against a close of
# 0.006, already a FIELD_OUTLIER); in the 2017-2023 NASDAQ file 59 rows of 22 tickers (warrants, rights,
# OTC names: ALPP, COOLW, ADALW) are below $0.01 and none below $0.001. Sub-penny prices are real; a
# hundredth of a cent (24.93 -> 0.0001) is a placeholder.
NEAR_ZERO_THRESHOLD = 0.001

# Thresholds of the decimal-shift rule, measured on the shared 2008-2017 dataset (the counts are asserted
# in trading_dagster_tests/domain/test_real_glitches.py).
# The reference of a bar is the median close of its symbol's previous REFERENCE_BARS usable raw bars
# (close > 0; duplicate conflicts excluded) dated within REFERENCE_DAYS calendar days before it; with
# fewer than MIN_REFERENCE_BARS of them there is no reference and the rule does not apply. A median
# of 5 is not moved by one or two glitches among them.
# The reach is in calendar days, not in sessions, so that it is a function of the dates alone: a session
# with no rows at all (an outage, a tiny universe) cannot shift it, and a range run equals day-by-day runs
# whatever sessions the history happens to contain.
REFERENCE_DAYS = 14
REFERENCE_BARS = 5
MIN_REFERENCE_BARS = 3
# A ratio "matches" decimal factor k when it lies in [k / (1 + tol), k * (1 + tol)]: one field off by a
# decimal point is off by the factor itself, to the cent.
RATIO_TOLERANCE = 0.03
# Price factors of a decimal-point error in one field (x0.1 = a digit lost, x10 = one gained).
DECIMAL_SHIFT_FACTORS: tuple[float, ...] = (0.01, 0.1, 10.0, 100.0)
# Open and close both at one decimal level of the reference within this tolerance: the whole bar moved,
# which is the break rule's to judge (a split, or a whole-bar glitch), not a one-field DECIMAL_SHIFT.
LEVEL_TOLERANCE = 0.15
# The previous close may stand in for the median reference (it reacts at once to a real move that the
# median of 5 has not caught up with) only if it is itself within this factor of the median: otherwise
# it is the glitch, or a crash, and not a reference.
TRUSTED_PREVIOUS_FACTOR = 2.0
# FIELD_OUTLIER: high, low or open more than this factor away from the open/close of the same bar.
FIELD_OUTLIER_FACTOR = 5.0

# ---- the break rule (decision 0004 section 3) ----
# Share ratios (new shares per old share) of the splits we recognise, both directions (a 4:1 split moves the
# price x1/4, a 1-for-4 reverse split x4); 100 only as a decimal factor (a 100:1 split or a digit error).
SPLIT_SHARE_RATIOS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 20.0, 50.0)
BREAK_FACTORS: tuple[float, ...] = tuple(
    sorted({1.0 / r for r in SPLIT_SHARE_RATIOS} | set(SPLIT_SHARE_RATIOS) | set(DECIMAL_SHIFT_FACTORS))
)
# A break's close matches the NEAREST factor k (in log distance) when close / previous close lies within
# k's band, and the open the same factor likewise (the whole bar moved). A split day also moves with the
# market: the ratio is k times that day's move, so the band is as wide as it can be without two bands
# overlapping: BREAK_BAND_SHARE of the way (in log) to halfway to the nearest other factor or to 1. That is
# +-6.2% for x7 and x8 (8/7 = 1.143), +-10.6% for x4, x5, x10 (a 10:1 split on a +8% day) and +-37% for x20,
# x50, x100 (AIG's 1-for-20 reverse split moved -22% on its ex-date 2009-07-01, as distressed companies
# that reverse-split that far do), and the reverses alike. Where real news moves are common, at x2/3,
# x1/2, x1/3 and their reverses (-33%, -50%, +50%, x2 on earnings), the band is at most BREAK_TOLERANCE:
# measured, the 9 real splits of the task list moved -4.2% (MNST 3:1 2016-11-10) to +4.6% (BRK-B 50:1
# 2010-01-21) on their ex-date, and liquid names move more than 6% on 3.5% of their sessions (2.1% in
# 2010-2017). Of 200 2:1 splits made at random sessions of liquid names (benchmarks/split_detection.py)
# a band of 4% confirms 180, 6% 193, 6.9% 197; on the split-adjusted 2008-2017 file, where every
# confirmed split is a false alarm, they confirm 3, 7 and 11 (test_real_glitches.py lists them).
BREAK_TOLERANCE = 0.06
BREAK_BAND_SHARE = 0.9
# The factors from x1/3 to x3 are those of common real moves (the bound lies between x3 and x4).
COMMON_MOVES = 3.5
# A fall of more than 80% in a day (close < 0.2 x the previous close) that matches no factor is a collapse.
COLLAPSE_RATIO = 0.2
# The level before a break: the median of the LONG_REFERENCE_BARS traded closes before the break bar (at
# least MIN_REFERENCE_BARS of them). A break must have LEFT that level: its close is more than
# OLD_LEVEL_BAND (sqrt(1.5), halfway in log between 1 and the nearest factors 2/3 and 3/2) away from it.
# This is what tells a split from the good bar right after a one-field glitch (EIX's close of 2.73 in a
# 27-dollar stock makes the next bar look x10 of its previous close). A run of up to BREAK_CONFIRM_SESSIONS
# bars at another level cannot move a median of 2 * 3 + 1 closes; and a bar that returns from a pending
# break (BREAK_CONFIRM_SESSIONS bars back at most) is never a break itself, however few bars came before.
BREAK_CONFIRM_SESSIONS = 3
LONG_REFERENCE_BARS = 2 * BREAK_CONFIRM_SESSIONS + 1
OLD_LEVEL_BAND = math.sqrt(1.5)
# A whole-bar move at a factor on volume more than REAL_MOVE_VOLUME x the median of the 5 bars before, in
# shares AND in dollars, is a real move (news: a crash or a rally), not a split or a glitch: a split scales
# the share volume by its ratio and leaves the dollar volume where it was; a glitch in the prices leaves the
# share volume where it was. A fall of more than 80% on such volume is still a collapse. (For a fall to k the
# two hypotheses lie on one line, dollars = k x shares: the volume tells only how big the spike is.)
# Measured: the dollar volume of the 10 real split days of test_real_breaks.py was x0.13 to x1.7 of the 5
# bars before (AIG's x15 on its 1-for-20 came with x1 the shares: the vendor left the day's volume in old
# shares), but a random session of a liquid name is above x3 on 1.8% of days, x4 on 0.9%, x5 on 0.5% (index
# events, news), so the gate costs splits: of 200 2:1 splits made at random sessions of liquid names
# (benchmarks/split_detection.py) it confirms 188 with a gate at 3x, 192 at 4x, 193 at 5x, 194 at 10x and
# 194 without one (the rest moved more than BREAK_TOLERANCE). On the split-adjusted 2008-2017 file, where
# every confirmed split is a false alarm (a real -33% / +50% day that held: TRIB 2016-10-04 fell 50% on x76
# the dollar volume), it leaves 5 (3x), 5 (4x), 7 (5x), 18 (10x) of 35; 4x drops NFLX's -35% of 2011-10-25
# (x4.75, in the repo's sample data) and VMW's -34% of 2008-01-29 (x4.67).
REAL_MOVE_VOLUME = 4.0
# Prices so low that one cent is a big step (0.01 -> 0.02 is "x2"), or where +-50% is an ordinary day, say
# nothing about splits or decimal points: the decimal rule needs a reference of at least this many dollars,
# the break rule both sides of a move from x1/3 to x3 (one side of a farther one: a 1-for-20 reverse split
# of a 30-cent stock is a break, and so is a 30-dollar stock printed at 0.30).
MIN_RATIO_PRICE = 0.5
# The reach of the break rule, in calendar days (a function of the dates alone, like REFERENCE_DAYS). A break
# bar's previous close and the LONG_REFERENCE_BARS before it must be dated within BREAK_REFERENCE_DAYS
# before it (8 traded bars; 21 days hold 14 or 15 sessions). A break is judged by the bars after it within
# BREAK_RUN_DAYS (the BREAK_CONFIRM_SESSIONS bars of its run and the one that confirms it), and a bar is
# the end of a glitch when the break it returns from is within BREAK_RUN_DAYS before it. Each bar's own
# test reads only its own reach, so a bar is a break or not whichever later bar asks.
BREAK_REFERENCE_DAYS = 21
BREAK_RUN_DAYS = 14
# What a verdict reads in all: the bars dated within BREAK_REACH_DAYS before it.
BREAK_REACH_DAYS = BREAK_REFERENCE_DAYS + 2 * BREAK_RUN_DAYS
# What the caller passes as `history`: the raw rows of this many sessions before the window. 35 sessions
# always reach back at least BREAK_REACH_DAYS = 49 days (35 weekdays are seven weeks, holidays only push
# them further); REFERENCE_DAYS is shorter.
HISTORY_SESSIONS = 35


@dataclass(frozen=True)
class CleanResult:
    """The output of `clean_prices`: usable bars, the rejected rows with their reason, confirmed breaks."""

    cleaned: pl.DataFrame
    quarantine: pl.DataFrame
    breaks: pl.DataFrame


# --------------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------------


def _check_expected_sessions(df: pl.DataFrame, expected_sessions: Sequence[dt.date]) -> None:
    expected = pl.Series("expected", list(expected_sessions), dtype=pl.Date)
    dates = df["date"].unique()  # a few thousand dates to look up, not every row's
    if dates.is_in(expected.implode()).all():
        return
    outside = df.filter(~pl.col("date").is_in(expected.implode()))
    if outside.height:
        counts = _date_counts(outside, "date")
        span = f"{expected.min()}..{expected.max()}" if len(expected) else "none"
        raise PriceDataError(
            f"{outside.height} row(s) dated outside this partition's {len(expected)} session(s) ({span}): "
            f"{_list_dates(counts)}. A partition must hold only its own sessions."
        )


def _same_key_as_previous(date_col: str) -> pl.Expr:
    """Per row: the previous row has the same (symbol, `date_col`) (null symbols equal; False on the first)."""
    return (
        (pl.col(date_col) == pl.col(date_col).shift(1)) & pl.col("symbol").eq_missing(pl.col("symbol").shift(1))
    ).fill_null(False)


def _repeated_keys(df: pl.DataFrame, date_col: str) -> pl.Series:
    """Rows whose (symbol, date) also occurs on another row, for a frame sorted by (date, symbol).

    Neighbour comparison instead of a hash group-by: the frame must be sorted for the output anyway, and
    this keeps de-duplication to one sort plus O(n) on 3.8M rows. Null symbols compare equal here, so
    exact duplicates of a symbol-less row still collapse.
    """
    same_as_previous = _same_key_as_previous(date_col)
    return df.select(
        (same_as_previous | same_as_previous.shift(-1).fill_null(False)).alias("repeated")
    ).to_series()


def _each_key_once_in_order(df: pl.DataFrame) -> bool:
    """Whether `df` is strictly increasing by (date, symbol) with no null key: already in the order
    `_deduplicate` sorts to, each (symbol, date) once. One pass of comparisons, ~20x cheaper than the sort."""
    if df["symbol"].null_count() or df["date"].null_count():
        return False
    if df.height < 2:
        return True
    date, symbol = pl.col("date"), pl.col("symbol")
    later = (date > date.shift(1)) | ((date == date.shift(1)) & (symbol > symbol.shift(1)))
    return bool(df.select(later.slice(1).fill_null(False).all()).item())


def _deduplicate(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Sort by (date, symbol), collapse exact duplicate rows; return the frame and its conflict mask.

    After collapsing, any (symbol, date) that still repeats has rows that disagree: those are conflicts.
    Rows with a null symbol are not conflicts (they have no key); they are left to NULL_VALUE.
    Fast paths: rows already strictly in (date, symbol) order (the raw store's) skip the sort; on clean vendor
    data no key repeats and the full-row `unique` is skipped.
    """
    if _each_key_once_in_order(df):  # the raw store's order: the sort would be the identity, no key repeats
        return df, pl.repeat(False, df.height, eager=True, dtype=pl.Boolean).alias("conflict")
    df = df.sort("date", "symbol", maintain_order=True)
    repeated = _repeated_keys(df, "date")
    if repeated.any():
        collapsed = df.filter(repeated).unique(maintain_order=True)
        df = pl.concat([df.filter(~repeated), collapsed]).sort("date", "symbol", maintain_order=True)
        repeated = _repeated_keys(df, "date")
    return df, (repeated & df["symbol"].is_not_null()).alias("conflict")


# Columns the history rules add to each window row (null where the rule does not fire).
_HISTORY_COLUMNS: dict[str, pl.DataType] = {
    "_ref_today": pl.Float64(),  # the median reference in units of today's share
    "_prev_today": pl.Float64(),  # the previous usable close, same units
    "_nref": pl.Int32(),  # how many closes the median used
    "_action": pl.Float64(),  # the ratio of a split on file on exactly this session
    "_dc_ref": pl.Float64(),  # decimal factor the close alone matches against the median reference
    "_dc_prev": pl.Float64(),  # ... against the trusted previous close
    "_do_ref": pl.Float64(),  # the same two for the open
    "_do_prev": pl.Float64(),
}
# Columns of the break rule (see _break_columns), null where the bar is not in a break.
_BREAK_COLUMNS: dict[str, pl.DataType] = {
    "_bstate": pl.Int8(),  # one of the _STATE_* values below
    "_bk": pl.Float64(),  # the price factor of the break (0.5 for a 2:1 split); null for a fall
    "_bj": pl.Int32(),  # how many bars after the break this one is (0: the break bar itself)
    "_bdate": pl.Date(),  # the break bar's date
    "_bprev": pl.Float64(),  # the close before the break, in units of this bar's share
    "_bratio": pl.Float64(),  # the break bar's close / the close before it
    "_bdv": pl.Float64(),  # the break bar's dollar volume / the median of the 5 bars before it
    "_baction": pl.Float64(),  # the ratio of a split on file on the break date (one that does not explain it)
}
_STATE_PENDING_COLLAPSE = 1
_STATE_PENDING_BREAK = 2
_STATE_SPLIT = 3  # the confirming bar of a split
_STATE_COLLAPSE = 4  # the confirming bar of a collapse: kept, and a `collapse` row of breaks
# The previous closes a row looks at for the decimal rule (all dated within REFERENCE_DAYS before it).
_PREVIOUS = tuple(f"_p{k}" for k in range(1, REFERENCE_BARS + 1))
# A 5-input sorting network (9 compare-exchanges), checked against all 5^5 inputs: the median of up to 5
# columns with elementwise min/max is far faster than building a list per row.
_SORT5: tuple[tuple[int, int], ...] = ((0, 1), (3, 4), (2, 4), (2, 3), (1, 4), (0, 3), (0, 2), (1, 3), (1, 2))


def _usable_for_reference(df: pl.DataFrame, conflict: pl.Series) -> pl.Series:
    """Raw rows whose close may enter a reference: keyed, not a duplicate conflict, close a positive number."""
    close = df["close"]
    return (~conflict & df["symbol"].is_not_null() & close.is_finite() & (close > 0)).fill_null(False)


def _prepare_history(history: pl.DataFrame, first_session: dt.date | None) -> pl.DataFrame:
    """Usable (symbol, date, open, close, volume, _level) rows of `history` dated within the reach of the
    window (`_level`: the bar is one the break rule reads, _break_level).

    History must end before the window: a row dated inside or after it would let a verdict depend on
    itself or on the future, and would make a range run differ from day-by-day runs.
    """
    h = normalize_ohlcv(history)
    _check_no_null_dates(h, "date")
    if first_session is not None:
        late = h.filter(pl.col("date") >= first_session)
        if late.height:
            raise PriceDataError(
                f"history holds {late.height} row(s) dated on or after the window's first session "
                f"{first_session}: {_list_dates(_date_counts(late, 'date'))}. History is the raw rows of the "
                f"{HISTORY_SESSIONS} sessions before the window, never the window itself or later."
            )
        reach = max(REFERENCE_DAYS, BREAK_REACH_DAYS)
        h = h.filter(pl.col("date") >= first_session - dt.timedelta(days=reach))
    h, conflict = _deduplicate(h)
    h = h.filter(_usable_for_reference(h, conflict))
    return h.select("symbol", "date", "open", "close", "volume", _break_level().alias("_level"))


def _median(frame: pl.DataFrame, names: Sequence[str]) -> tuple[pl.Series, pl.Series]:
    """The median of the non-null values of the REFERENCE_BARS columns `names` of each row (null with fewer
    than MIN_REFERENCE_BARS of them), and how many there were."""
    names = list(names)
    n = frame.select(pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int32) for c in names])).to_series()
    if len(names) != 5:  # pragma: no cover - the sorting network below is for 5 values
        median = frame.select(pl.concat_list(names).list.median()).to_series()
    else:
        # one lazy query for the network (not nine eager steps): ~40% less CPU on 3.8M rows
        s = frame.lazy().select([pl.col(c).fill_null(float("inf")) for c in names])
        for i, j in _SORT5:
            a, b = names[i], names[j]
            s = s.with_columns(pl.min_horizontal(a, b).alias(a), pl.max_horizontal(a, b).alias(b))
        median = (
            s.select(
                pl.when(n == 5)
                .then(pl.col(names[2]))
                .when(n == 4)
                .then((pl.col(names[1]) + pl.col(names[2])) / 2)
                .when(n == 3)
                .then(pl.col(names[1]))
            )
            .collect()
            .to_series()
        )
    return pl.select(pl.when(n >= MIN_REFERENCE_BARS).then(median)).to_series(), n


def _median_of_previous(rows: pl.DataFrame) -> pl.DataFrame:
    """`_ref`, `_nref` and the previous closes `_p1`.. `_p{REFERENCE_BARS}` for `rows` sorted by (symbol,
    date) with `_sym` and `_nc`. The previous k-th bar counts when it is the same symbol and at most
    REFERENCE_DAYS days older."""
    day = pl.col("date").cast(pl.Int32)

    def reachable(k: int) -> pl.Expr:
        return (pl.col("_sym") == pl.col("_sym").shift(k)) & (day - day.shift(k) <= REFERENCE_DAYS)

    prev = rows.select(
        [
            pl.when(reachable(k)).then(pl.col("_nc").shift(k)).alias(name)
            for k, name in enumerate(_PREVIOUS, start=1)
        ]
    )
    ref, nref = _median(prev, _PREVIOUS)
    return prev.with_columns(ref.alias("_ref"), nref.alias("_nref"))


def _near(ratio: pl.Expr, factor: float, tolerance: float = RATIO_TOLERANCE) -> pl.Expr:
    tol = 1.0 + tolerance
    return ratio.is_between(factor / tol, factor * tol)


def _matched_factor(ratio: pl.Expr, factors: Sequence[float], tolerance: float = RATIO_TOLERANCE) -> pl.Expr:
    """The first of `factors` that `ratio` matches within `tolerance`, or null."""
    expr: Any = pl
    for k in factors:
        expr = expr.when(_near(ratio, k, tolerance)).then(pl.lit(k))
    return expr.otherwise(pl.lit(None, dtype=pl.Float64))


def _match_columns() -> list[pl.Expr]:
    """The decimal-shift rule's matched factors (null = no match), from `_ref_today`, `_prev_today` and the
    bar.

    `_d{c,o}_ref`: the decimal factor the close/open matches against the median reference, within
    RATIO_TOLERANCE; `_d{c,o}_prev`: the same against the previous close, used only when that close is
    trusted (within TRUSTED_PREVIOUS_FACTOR of the median: otherwise it is itself the glitch, or a crash) -
    it catches a glitch right after a real move that the median of 5 has not caught up with (PXD
    2013-08-05). Both are null when the open and the close are at one decimal level of the reference
    (within LEVEL_TOLERANCE): the whole bar moved, which is a break (or the return from one) for the break
    rule to judge, not one broken field.
    """
    ref, prev = pl.col("_ref_today"), pl.col("_prev_today")
    trusted = (prev / ref).is_between(1.0 / TRUSTED_PREVIOUS_FACTOR, TRUSTED_PREVIOUS_FACTOR)
    priced = ref >= MIN_RATIO_PRICE
    out: list[pl.Expr] = []
    level_close = _matched_factor(pl.col("close") / ref, DECIMAL_SHIFT_FACTORS, LEVEL_TOLERANCE)
    level_open = _matched_factor(pl.col("open") / ref, DECIMAL_SHIFT_FACTORS, LEVEL_TOLERANCE)
    one_field = (level_close != level_open).fill_null(True)
    for c, name in (("c", "close"), ("o", "open")):
        field = pl.col(name)
        out.append(
            pl.when(priced & one_field)
            .then(_matched_factor(field / ref, DECIMAL_SHIFT_FACTORS))
            .alias(f"_d{c}_ref")
        )
        out.append(
            pl.when(priced & trusted & one_field)
            .then(_matched_factor(field / prev, DECIMAL_SHIFT_FACTORS))
            .alias(f"_d{c}_prev")
        )
    return out


def _break_level() -> pl.Expr:
    """The bars the break rule reads: traded (a bar on no trade is a carried quote: ZERO_VOLUME) and
    consistent in itself (all four prices positive, high >= low, open and close inside it, no field
    FIELD_OUTLIER_FACTOR away), so that the previous close of a bar is a close someone traded at. A bar that
    fails them is quarantined by its own code; a split on it is found on the next good bar."""
    prices = [pl.col(c) for c in PRICE_COLUMNS]
    low, high = pl.col("low"), pl.col("high")
    sane = [p.is_finite() & (p > 0) for p in prices]
    sane += [high >= low, pl.col("close").is_between(low, high), pl.col("open").is_between(low, high)]
    sane += [~flag for flag, _ in _outlier_terms().values()]
    return (pl.col("volume") > 0) & pl.all_horizontal(sane).fill_null(False)


def _history_columns(
    window: pl.DataFrame,
    conflict: pl.Series,
    history: pl.DataFrame | None,
    actions: pl.DataFrame | None,
    expected_sessions: Sequence[dt.date],
) -> pl.DataFrame:
    """`_level` (_break_level), _HISTORY_COLUMNS and _BREAK_COLUMNS for each row of `window` (deduplicated,
    in its (date, symbol) order).

    The decimal reference of a row is the median of the previous REFERENCE_BARS usable closes of its symbol
    dated within REFERENCE_DAYS days before it (null with fewer than MIN_REFERENCE_BARS). Prices are
    compared in units of the symbol's original share (price x the product of its split ratios with
    ex_date <= the bar's date), so a split on file is not a jump. Each row's values depend only on rows
    dated in the BREAK_REACH_DAYS days before it, whether those come from `history` or from the window, so
    a range run equals day-by-day runs and nothing depends on a later session.

    Fast path: the factor matching runs only on the few rows whose ratios are far enough from 1 to match
    any factor; the result is scattered back into null columns.
    """
    n = window.height
    first = min(expected_sessions) if len(expected_sessions) else None
    usable = _usable_for_reference(window, conflict)
    level = window.select(_break_level().alias("_level")).to_series()
    w = (
        window.select("symbol", "date", "open", "close", "volume")
        .with_columns(level)
        .with_row_index("_row")
        .filter(usable)
    )
    parts = [w]
    if history is not None:
        h = _prepare_history(history, first)
        parts.insert(0, h.with_columns(pl.lit(None, dtype=pl.UInt32).alias("_row")).select(w.columns))
    rows = pl.concat(parts)  # in date order: history ends before the window, both are sorted by date
    has_actions = actions is not None and actions.height > 0
    if has_actions:
        rows = rows.with_columns(cumulative_factor(rows, actions, "date").alias("_factor"))  # type: ignore[arg-type]
    rows = (
        rows.with_columns(pl.col("symbol").cast(pl.Categorical).to_physical().alias("_sym"))
        # A stable sort on the symbol code keeps the date order inside each symbol: (symbol, date) order
        # without sorting strings, and without moving them: the few rows that need their symbol (a join with
        # the splits on file) take it from the window by `_row`. What is computed from the sorted columns
        # (a factor of 1 with no split on file, the close in units of the original share) is not moved.
        .drop("symbol")
        .sort("_sym", maintain_order=True)
    )
    if not has_actions:
        rows = rows.with_columns(pl.lit(1.0).alias("_factor"))
    rows = rows.with_columns((pl.col("close") * pl.col("_factor")).alias("_nc"))
    breaks = _break_columns(rows.filter("_level"))
    rows = pl.concat([rows, _median_of_previous(rows)], how="horizontal").filter(pl.col("_row").is_not_null())
    ref_today = pl.col("_ref") / pl.col("_factor")
    prev_today = pl.col("_p1") / pl.col("_factor")
    lo = max(k for k in DECIMAL_SHIFT_FACTORS if k < 1) * (1 + RATIO_TOLERANCE)
    hi = min(k for k in DECIMAL_SHIFT_FACTORS if k > 1) / (1 + RATIO_TOLERANCE)
    far = [
        ~(r.is_between(lo, hi))
        for r in (pl.col(c) / base for c in ("open", "close") for base in (ref_today, prev_today))
    ]
    candidates = rows.filter(pl.any_horizontal(far).fill_null(False)).with_columns(
        ref_today.alias("_ref_today"), prev_today.alias("_prev_today")
    )
    if has_actions and candidates.height:
        on_day = actions.select("symbol", pl.col("ex_date").alias("date"), pl.col("ratio").alias("_action"))
        candidates = candidates.with_columns(window["symbol"].gather(candidates["_row"]).alias("symbol")).join(
            on_day, on=["symbol", "date"], how="left", maintain_order="left"
        )
    else:
        candidates = candidates.with_columns(pl.lit(None, dtype=pl.Float64).alias("_action"))
    matched = candidates.with_columns(_match_columns())
    matched = matched.filter(
        pl.any_horizontal(pl.col("_dc_ref", "_dc_prev", "_do_ref", "_do_prev").is_not_null())
    )
    if has_actions and breaks.height:
        on_break = actions.select(
            "symbol", pl.col("ex_date").alias("_bdate"), pl.col("ratio").alias("_baction")
        )
        breaks = breaks.with_columns(window["symbol"].gather(breaks["_row"]).alias("symbol")).join(
            on_break, on=["symbol", "_bdate"], how="left", maintain_order="left"
        )
    else:
        breaks = breaks.with_columns(pl.lit(None, dtype=pl.Float64).alias("_baction"))
    out = [level]
    for frame, columns in ((matched, _HISTORY_COLUMNS), (breaks, _BREAK_COLUMNS)):
        index = frame["_row"]
        for name, dtype in columns.items():
            column = pl.Series(name, [], dtype=dtype).extend_constant(None, n)
            out.append(column.scatter(index, frame[name].cast(dtype)) if index.len() else column)
    return pl.DataFrame(out)


# The break rule looks for a break on rows whose close moved from the previous close by at least as much as
# the factors nearest 1 (x2/3, x3/2) less their band, with a small margin for rounding: a move inside
# (_MOVE_LO, _MOVE_HI) matches no factor and is no fall of 80%.
_MOVE_LO = (2.0 / 3.0) * (1.0 + BREAK_TOLERANCE) * 1.001
_MOVE_HI = 1.5 / (1.0 + BREAK_TOLERANCE) / 1.001
# The factors to find the nearest of: BREAK_FACTORS and 1 (no move), so that an open at the old level is
# never "nearest" a factor.
_NEAREST = np.array(sorted({*BREAK_FACTORS, 1.0}))
_LOG_FACTORS = np.log(_NEAREST)


def _log_band(price_factor: float) -> float:
    """The half-width in log of a break factor's band (see BREAK_BAND_SHARE); 1 (no move) has none."""
    if price_factor == 1.0:
        return -math.inf
    gap = min(abs(math.log(price_factor / other)) for other in _NEAREST if other != price_factor)
    band = BREAK_BAND_SHARE * gap / 2
    if 1.0 / COMMON_MOVES < price_factor < COMMON_MOVES:
        band = min(band, math.log1p(BREAK_TOLERANCE))
    return band


def break_tolerance(price_factor: float) -> float:
    """The band of a break factor as a relative tolerance: it matches ratios in [k / (1 + t), k * (1 + t)]."""
    return math.expm1(_log_band(price_factor))


_LOG_TOLERANCE = np.array([_log_band(k) for k in _NEAREST])


def _nearest_factor(ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per value: the nearest of _NEAREST (in log distance), that distance (inf where the ratio is not a
    positive number) and whether it lies within that factor's band (never for 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(np.log(ratio)[:, None] - _LOG_FACTORS[None, :])
    distance = np.where(np.isnan(distance), np.inf, distance)
    index = distance.argmin(axis=1)
    near = distance[np.arange(len(index)), index]
    return _NEAREST[index], near, near <= _LOG_TOLERANCE[index]


def _row_median(block: np.ndarray, minimum: int) -> np.ndarray:
    """The median of the non-NaN values of each row (NaN with fewer than `minimum` of them)."""
    count = (~np.isnan(block)).sum(axis=1)
    out = np.full(block.shape[0], np.nan)
    enough = count >= max(minimum, 1)
    if enough.any():
        out[enough] = np.nanmedian(block[enough], axis=1)
    return out


@dataclass(frozen=True)
class _BreakTest:
    """The break test of one bar offset (see _break_columns), per candidate row."""

    split: np.ndarray  # a whole-bar move by a factor, no real move's volume
    collapse: np.ndarray  # a fall of more than 80% that is no split
    k: np.ndarray  # the nearest factor of close / previous close
    ratio: np.ndarray  # close / previous close
    dollar_ratio: np.ndarray  # dollar volume / the median of the 5 bars before


def _break_test(
    b: int,
    days: np.ndarray,
    closes: np.ndarray,
    opens: np.ndarray,
    shares: np.ndarray,
    dollars: np.ndarray,
    factors: np.ndarray,
) -> _BreakTest:
    """Did the bar at offset `b` (columns of the gathered bars: 0 is the bar judged, 1 the one before, ...)
    break from its previous close? Arrays in units of the original share, NaN where there is no bar. Only
    the bars dated within BREAK_REFERENCE_DAYS before b count, so the answer is the same whichever later
    bar asks (b's own run, or a bar BREAK_CONFIRM_SESSIONS later)."""
    own = days[:, b : b + 1] - days[:, b + 1 : b + 1 + LONG_REFERENCE_BARS] <= BREAK_REFERENCE_DAYS

    def before(values: np.ndarray, n: int) -> np.ndarray:
        return np.where(own[:, :n], values[:, b + 1 : b + 1 + n], np.nan)

    close, prev = closes[:, b], before(closes, 1)[:, 0]
    old = _row_median(before(closes, LONG_REFERENCE_BARS), MIN_REFERENCE_BARS)
    ratio = close / prev
    k, _, at_factor = _nearest_factor(ratio)
    k_open, _, open_at_factor = _nearest_factor(opens[:, b] / prev)
    whole_bar = (k_open == k) & open_at_factor
    left = np.abs(np.log(close / old)) > math.log(OLD_LEVEL_BAND)
    # x1/3 .. x3 need both sides of the move priced (penny stocks make such moves); a farther factor one
    # side (a 1-for-20 reverse split of a 30-cent stock, the return from a glitch to 8 cents)
    common = (k > 1.0 / COMMON_MOVES) & (k < COMMON_MOVES)
    priced = np.where(common, np.fmin(prev, close), np.fmax(prev, close)) / factors[:, b] >= MIN_RATIO_PRICE
    share_median = _row_median(before(shares, 5), 1)
    dollar_median = _row_median(before(dollars, 5), 1)
    dollar_ratio = dollars[:, b] / dollar_median
    real = (shares[:, b] > REAL_MOVE_VOLUME * share_median) & (dollar_ratio > REAL_MOVE_VOLUME)
    real &= (share_median > 0) & (dollar_median > 0)
    split = priced & left & at_factor & whole_bar & ~real
    # a fall at no factor, or at one on a real move's volume, or in the close alone (an intraday collapse);
    # but the close alone at a decimal factor is a digit lost (DECIMAL_SHIFT)
    one_field_decimal = at_factor & ~whole_bar & np.isin(k, DECIMAL_SHIFT_FACTORS)
    collapse = priced & left & (ratio < COLLAPSE_RATIO) & ~split & ~one_field_decimal
    return _BreakTest(split=split, collapse=collapse, k=k, ratio=ratio, dollar_ratio=dollar_ratio)


def _break_columns(rows: pl.DataFrame) -> pl.DataFrame:
    """The break rule: `_row` and _BREAK_COLUMNS (but `_baction`) for the window rows in a break.

    `rows`: the usable bars (history and window) sorted by (symbol, date), with `_sym`, `_row` (null for
    history), `_nc` (the close in units of the original share) and `_factor`. For a bar t and each
    j = BREAK_CONFIRM_SESSIONS .. 0, the hypothesis "the bar j bars back (b = t - j, dated within
    BREAK_RUN_DAYS before t) broke, and the level has held since" is checked:

    * b broke (_break_test, on the bars within BREAK_REFERENCE_DAYS before b): its previous close R is
      priced (MIN_RATIO_PRICE), b's close / R lies in the band of the nearest of BREAK_FACTORS and its
      open / R in the band of the same factor (the whole bar moved), its close has left the old level
      (more than OLD_LEVEL_BAND from the median of the LONG_REFERENCE_BARS closes before b), and its
      volume is no real move's (REAL_MOVE_VOLUME). Or b fell below COLLAPSE_RATIO x R at no factor (or at
      one, on a real move's volume, or in its close alone) and left the old level: a collapse.
    * b is no return from a pending break: no break 1 .. BREAK_CONFIRM_SESSIONS bars before b (and within
      BREAK_RUN_DAYS) whose level held until b and that b left again (b ends a glitch).
    * held: every close from b + 1 to t is nearer (in log) to b's close than to R.

    The largest j that holds wins: j = BREAK_CONFIRM_SESSIONS is the confirming bar (_STATE_SPLIT or
    _STATE_COLLAPSE), a smaller j a pending one. A bar that returned to R's side ends the hypothesis: the
    move was a glitch, and that bar is clean. Everything is a function of the bars within BREAK_REACH_DAYS
    of t, and each bar's own test of its own reach, so range and day-by-day runs agree, and a bar is a
    break or not whichever later bar asks.

    Fast path: only bars with a move from the previous close that could match a factor or a fall, on
    themselves or on one of the BREAK_CONFIRM_SESSIONS bars before, are judged (a few thousand of 3.8M),
    on arrays gathered for them alone.
    """
    empty = pl.DataFrame(schema={"_row": pl.UInt32()} | {k: v for k, v in _BREAK_COLUMNS.items() if k != "_baction"})
    n = rows.height
    if n == 0:
        return empty
    sym = rows["_sym"].to_numpy()
    nc = rows["_nc"].to_numpy()
    same = np.zeros(n, dtype=bool)
    same[1:] = sym[1:] == sym[:-1]
    move = np.ones(n)
    move[1:] = nc[1:] / nc[:-1]
    possible = same & ((move <= _MOVE_LO) | (move >= _MOVE_HI))
    target = possible.copy()
    for j in range(1, BREAK_CONFIRM_SESSIONS + 1):
        target[j:] |= possible[:-j] & (sym[j:] == sym[:-j])
    target &= rows["_row"].is_not_null().to_numpy()
    at = np.flatnonzero(target)
    if at.size == 0:
        return empty

    day = rows["date"].cast(pl.Int32).to_numpy()
    factor = rows["_factor"].cast(pl.Float64).to_numpy()
    opens = (rows["open"] * rows["_factor"]).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    volume = rows["volume"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    shares = volume / factor  # in units of the original share
    dollars = rows["close"].to_numpy() * volume
    confirm = BREAK_CONFIRM_SESSIONS
    # offsets 0 .. confirm may be the break bar of the bar judged, confirm more the start of a run that one
    # of those ends, and each needs its previous close and the LONG_REFERENCE_BARS before that
    span = 2 * confirm + 1 + LONG_REFERENCE_BARS
    index = at[:, None] - np.arange(span + 1)[None, :]
    valid = index >= 0
    index = np.where(valid, index, 0)
    valid &= sym[index] == sym[at][:, None]

    def take(values: np.ndarray) -> np.ndarray:
        out = values[index].astype(np.float64)
        out[~valid] = np.nan
        return out

    days, closes, factors = take(day), take(nc), take(factor)
    # (the day of a missing bar is NaN, and every comparison with it is False: no bar, no reach)
    m = at.size
    with np.errstate(divide="ignore", invalid="ignore"):
        tests = [
            _break_test(b, days, closes, take(opens), take(shares), take(dollars), factors)
            for b in range(2 * confirm + 1)
        ]

        def within_run(late: int, early: int) -> np.ndarray:
            """Bar `early` is dated within BREAK_RUN_DAYS before bar `late`."""
            return days[:, late] - days[:, early] <= BREAK_RUN_DAYS

        def held(i: int, b: int) -> np.ndarray:
            """Bar i (after break bar b) is nearer (in log) to b's close than to the close before b."""
            after = closes[:, i]
            return np.abs(np.log(after / closes[:, b])) < np.abs(np.log(after / closes[:, b + 1]))

        def run_held(b: int, last: int) -> np.ndarray:
            """Bars b - 1 .. last all held the level of break bar b."""
            out = np.ones(m, dtype=bool)
            for i in range(last, b):
                out &= held(i, b)
            return out

        def breaks_at(b: int) -> tuple[np.ndarray, np.ndarray]:
            """(split, collapse) of bar b, unless it returned from a pending break 1..confirm bars before it:
            then it is the end of a glitch, not a break."""
            split, collapse = tests[b].split, tests[b].collapse
            reversion = np.zeros(m, dtype=bool)
            for i in range(1, confirm + 1):
                first = b + i
                if first > 2 * confirm:
                    break
                pending = (tests[first].split | tests[first].collapse) & within_run(b, first)
                pending &= run_held(first, b + 1)
                reversion |= pending & ~held(b, first)
            return split & ~reversion, collapse & ~reversion

        state = np.zeros(m, dtype=np.int8)
        out_k, out_j = np.full(m, np.nan), np.full(m, -1, dtype=np.int32)
        out_prev, out_ratio, out_dv = np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
        out_day = np.zeros(m, dtype=np.int32)
        for j in range(confirm, -1, -1):
            split, collapse = breaks_at(j)
            hit = (split | collapse) & within_run(0, j) & run_held(j, 0) & (state == 0)
            if not hit.any():
                continue
            test = tests[j]
            state[hit & split] = _STATE_SPLIT if j == confirm else _STATE_PENDING_BREAK
            state[hit & collapse] = _STATE_COLLAPSE if j == confirm else _STATE_PENDING_COLLAPSE
            out_k[hit & split] = test.k[hit & split]
            out_j[hit] = j
            out_day[hit] = days[hit, j]
            out_prev[hit] = closes[hit, j + 1] / factors[hit, 0]
            out_ratio[hit] = test.ratio[hit]
            out_dv[hit] = test.dollar_ratio[hit]
    keep = state > 0
    if not keep.any():
        return empty
    picked = at[keep]
    return pl.DataFrame(
        {
            "_row": rows["_row"].gather(picked),
            "_bstate": pl.Series(state[keep], dtype=pl.Int8),
            "_bk": pl.Series(out_k[keep], dtype=pl.Float64).fill_nan(None),
            "_bj": pl.Series(out_j[keep], dtype=pl.Int32),
            "_bdate": pl.Series(out_day[keep], dtype=pl.Int32).cast(pl.Date),
            "_bprev": pl.Series(out_prev[keep], dtype=pl.Float64),
            "_bratio": pl.Series(out_ratio[keep], dtype=pl.Float64),
            "_bdv": pl.Series(out_dv[keep], dtype=pl.Float64).fill_nan(None),
        }
    )


def _outlier_terms() -> dict[str, tuple[pl.Expr, pl.Expr]]:
    """FIELD_OUTLIER per field: (is it an outlier, the detail text), compared with the bar's open/close.

    Only between positive finite prices: a ratio to a missing, infinite or non-positive price means
    nothing, and those rows already have NULL_VALUE / NON_POSITIVE_PRICE.
    """
    f = FIELD_OUTLIER_FACTOR
    lo, hi = pl.min_horizontal("open", "close"), pl.max_horizontal("open", "close")

    def sane(*names: str) -> pl.Expr:
        return pl.all_horizontal([pl.col(c).is_finite() & (pl.col(c) > 0) for c in names])

    def text(name: str, ref: pl.Expr, ref_name: str) -> pl.Expr:
        ratio = (pl.col(name) / ref).round_sig_figs(4)
        return pl.format(f"{name}={{}} is x{{}} of {ref_name}={{}}", pl.col(name), ratio, ref)

    terms: dict[str, tuple[pl.Expr, pl.Expr]] = {}
    for name in ("high", "low"):
        above, below = pl.col(name) > hi * f, pl.col(name) * f < lo
        detail = pl.when(above).then(text(name, hi, "max(open, close)")).when(below)
        terms[name] = (
            sane(name, "open", "close") & (above | below),
            detail.then(text(name, lo, "min(open, close)")),
        )
    above, below = pl.col("open") > pl.col("close") * f, pl.col("open") * f < pl.col("close")
    terms["open"] = (sane("open", "close") & (above | below), text("open", pl.col("close"), "close"))
    return terms


def _near_zero(name: str) -> pl.Expr:
    return (pl.col(name) > 0) & (pl.col(name) < NEAR_ZERO_THRESHOLD)


def _flag_exprs() -> dict[str, pl.Expr]:
    """One boolean expression per SANITY_PRIORITY code; the history columns must be present."""
    prices = [pl.col(c) for c in PRICE_COLUMNS]
    missing = [pl.col("symbol").is_null(), pl.col("volume").is_null()]
    missing += [p.is_null() | ~p.is_finite() for p in prices]
    low, high = pl.col("low"), pl.col("high")
    decimal = [pl.col(f"_d{c}_{r}").is_not_null() for c in ("c", "o") for r in ("ref", "prev")]
    state = pl.col("_bstate")
    return {
        NULL_VALUE: pl.any_horizontal(missing),
        NON_POSITIVE_PRICE: pl.any_horizontal([p <= 0 for p in prices]),
        NEAR_ZERO_PRICE: pl.any_horizontal([_near_zero(c) for c in PRICE_COLUMNS]),
        HIGH_BELOW_LOW: high < low,
        DECIMAL_SHIFT: pl.any_horizontal(decimal),
        FIELD_OUTLIER: pl.any_horizontal([t[0] for t in _outlier_terms().values()]),
        CLOSE_OUTSIDE_RANGE: (pl.col("close") < low) | (pl.col("close") > high),
        OPEN_OUTSIDE_RANGE: (pl.col("open") < low) | (pl.col("open") > high),
        PRICE_COLLAPSE: state == _STATE_PENDING_COLLAPSE,
        UNCONFIRMED_BREAK: state == _STATE_PENDING_BREAK,
        UNEXPLAINED_SPLIT: state == _STATE_SPLIT,
        NEGATIVE_VOLUME: pl.col("volume") < 0,
        ZERO_VOLUME: pl.col("volume") == 0,
    }


def _rejected() -> pl.Expr:
    """Whether a row gets a reason (`_conflict`, or any of _flag_exprs fires), from `_level` (_break_level)
    and the few flags a bar the break rule reads can still raise, instead of every flag.

    A bar with `_level` false always has a flag: no volume or a price missing or not finite (NULL_VALUE),
    volume <= 0 (ZERO_VOLUME, NEGATIVE_VOLUME), a price <= 0 (NON_POSITIVE_PRICE), high < low
    (HIGH_BELOW_LOW), open or close outside [low, high] (OPEN_/CLOSE_OUTSIDE_RANGE), a field outlier
    (FIELD_OUTLIER). A bar with `_level` true has positive finite prices in order and a positive volume, so of
    the flags only a missing symbol (NULL_VALUE), NEAR_ZERO_PRICE, DECIMAL_SHIFT and the break states remain.
    """
    decimal = [pl.col(f"_d{c}_{r}").is_not_null() for c in ("c", "o") for r in ("ref", "prev")]
    return pl.any_horizontal(
        pl.col("_conflict"),
        ~pl.col("_level").fill_null(False),  # null where the volume is missing (and the prices sane)
        pl.col("symbol").is_null(),
        *(_near_zero(c) for c in PRICE_COLUMNS),
        *decimal,
        pl.col("_bstate").is_in([_STATE_PENDING_COLLAPSE, _STATE_PENDING_BREAK, _STATE_SPLIT]).fill_null(False),
    )


def _reason_expr(flags: Mapping[str, pl.Expr]) -> pl.Expr:
    expr: Any = pl
    for code in SANITY_PRIORITY:
        expr = expr.when(flags[code].fill_null(False)).then(pl.lit(code))
    return expr.otherwise(pl.lit(None, dtype=pl.Utf8))


def _fmt(name: str) -> pl.Expr:
    return pl.format(f"{name}={{}}", pl.col(name).cast(pl.Utf8).fill_null("null"))


def _sig(expr: pl.Expr) -> pl.Expr:
    return expr.round_sig_figs(4)


def _price(name: str) -> pl.Expr:
    """A price as the vendor would print it: 10 significant digits drop the binary noise of arithmetic on
    the way (5.1370000000000005 is 5.137) and keep every digit a real price has."""
    return pl.col(name).round_sig_figs(10)


def _factor_text(factor: pl.Expr) -> pl.Expr:
    """A matched decimal factor as text: "0.1", "10", "0.01", "100" (never "10.0" or float noise)."""
    return factor.replace_strict(
        list(DECIMAL_SHIFT_FACTORS),
        [f"{k:g}" for k in DECIMAL_SHIFT_FACTORS],
        default=None,
        return_dtype=pl.Utf8,
    )


def _reference_text() -> pl.Expr:
    return pl.format(
        "the reference {} (median of the {} previous closes)", _sig(pl.col("_ref_today")), pl.col("_nref")
    )


def _median_text() -> pl.Expr:
    return pl.format("median of the {} previous closes: {}", pl.col("_nref"), _sig(pl.col("_ref_today")))


def _decimal_detail() -> pl.Expr:
    """Which field is shifted, by how much, against which reference."""
    parts = []
    for c, name in (("c", "close"), ("o", "open")):
        by_ref = pl.format(
            f"{name}={{}} is x{{}} of {{}}, ~x{{}}",
            _price(name),
            _sig(pl.col(name) / pl.col("_ref_today")),
            _reference_text(),
            _factor_text(pl.col(f"_d{c}_ref")),
        )
        by_prev = pl.format(
            f"{name}={{}} is x{{}} of the previous close {{}}, ~x{{}} ({{}})",
            _price(name),
            _sig(pl.col(name) / pl.col("_prev_today")),
            _sig(pl.col("_prev_today")),
            _factor_text(pl.col(f"_d{c}_prev")),
            _median_text(),
        )
        parts.append(
            pl.when(pl.col(f"_d{c}_ref").is_not_null())
            .then(by_ref)
            .when(pl.col(f"_d{c}_prev").is_not_null())
            .then(by_prev)
        )
    text = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    action = pl.when(pl.col("_action").is_not_null()).then(
        pl.format("; the corporate action on this session (ratio {}) does not explain it", pl.col("_action"))
    )
    return pl.concat_str([text, action.otherwise(pl.lit(""))])


def _ratio_text(share_ratio: float) -> str:
    """A share ratio as a split's name: "2:1", "3:2", "1-for-20" (reverse), "2-for-3" (reverse of 3:2)."""
    for new, old in (
        (share_ratio, 1.0),
        (share_ratio * 2, 2.0),
        (1.0, 1.0 / share_ratio),
        (2.0, 2.0 / share_ratio),
    ):
        if abs(new - round(new)) < 1e-9 and abs(old - round(old)) < 1e-9:
            n, o = round(new), round(old)
            return f"{n}:{o}" if n > o else f"{n}-for-{o}"
    return f"{share_ratio:g}:1"  # pragma: no cover - every BREAK_FACTORS value has a name above


def _split_name(price_factor: pl.Expr) -> pl.Expr:
    """ "2:1 split" for a price factor of 1/2, "1-for-20 reverse split" for 20, "3:2 split" for 2/3."""
    names = [
        f"{_ratio_text(1.0 / k)} split" if k < 1 else f"{_ratio_text(1.0 / k)} reverse split"
        for k in BREAK_FACTORS
    ]
    return price_factor.replace_strict(list(BREAK_FACTORS), names, default="split", return_dtype=pl.Utf8)


def _k_text(price_factor: pl.Expr) -> pl.Expr:
    """A break factor as the price moved: "x0.5", "x0.3333", "x20"."""
    return pl.format("x{}", _sig(price_factor))


def _level_text(what: str) -> pl.Expr:
    """'close=41.92 is x0.3166 of 132.4, the close before the break on 2016-11-10'"""
    return pl.format(
        f"close={{}} is x{{}} of {{}}, the close before the {what} on {{}}",
        _price("close"),
        _sig(pl.col("close") / pl.col("_bprev")),
        _sig(pl.col("_bprev")),
        pl.col("_bdate"),
    )


def _break_action_text() -> pl.Expr:
    return (
        pl.when(pl.col("_baction").is_null())
        .then(pl.format("no corporate action on file for {} on {}", pl.col("symbol"), pl.col("_bdate")))
        .otherwise(
            pl.format("the corporate action on file then (ratio {}) does not match it", pl.col("_baction"))
        )
    )


def _pending_text() -> pl.Expr:
    """How far a pending break or fall has got, and what confirms it."""
    return pl.format(
        "close {} of {} at the new level (the next bar that holds it after the last confirms it); quarantined "
        "until then",
        pl.col("_bj") + 1,
        pl.lit(BREAK_CONFIRM_SESSIONS),
    )


def _break_detail() -> pl.Expr:
    """UNCONFIRMED_BREAK: the break day (`_bj` = 0) names the move, the bars after it the level held."""
    first = pl.format(
        "open={}, close={} are x{}, x{} of the previous close {} (dollar volume x{} of the 5 bars before): "
        "a whole-bar move by a {} ({}) or a glitch; {}",
        _price("open"),
        _price("close"),
        _sig(pl.col("open") / pl.col("_bprev")),
        _sig(pl.col("close") / pl.col("_bprev")),
        _sig(pl.col("_bprev")),
        _sig(pl.col("_bdv")).cast(pl.Utf8).fill_null("?"),
        _split_name(pl.col("_bk")),
        _k_text(pl.col("_bk")),
        _pending_text(),
    )
    later = pl.format(
        "{}: the {} level ({}) held, {}",
        _level_text("break"),
        _k_text(pl.col("_bk")),
        _split_name(pl.col("_bk")),
        _pending_text(),
    )
    return pl.when(pl.col("_bj") == 0).then(first).otherwise(later)


def _collapse_detail() -> pl.Expr:
    first = pl.format(
        "close={} is x{} of the previous close {}: a fall of more than {}% at no split ratio; {}",
        _price("close"),
        _sig(pl.col("close") / pl.col("_bprev")),
        _sig(pl.col("_bprev")),
        pl.lit(round((1 - COLLAPSE_RATIO) * 100)),
        _pending_text(),
    )
    later = pl.format("{}: the fall held, {}", _level_text("fall"), _pending_text())
    return pl.when(pl.col("_bj") == 0).then(first).otherwise(later)


def _confirmed_detail() -> pl.Expr:
    """UNEXPLAINED_SPLIT on the confirming bar (the breaks row says the same)."""
    return pl.format(
        "{}: the {} level has held for {} closes since {}: a {} on {} (share ratio {}), but {}",
        _level_text("break"),
        _k_text(pl.col("_bk")),
        pl.lit(BREAK_CONFIRM_SESSIONS),
        pl.col("_bdate"),
        _split_name(pl.col("_bk")),
        pl.col("_bdate"),
        _sig(1.0 / pl.col("_bk")),
        _break_action_text(),
    )


def _collapse_confirmed_detail() -> pl.Expr:
    return pl.format(
        "{}: the fall to x{} on {} has held for {} closes: a collapse, confirmed on {}",
        _level_text("fall"),
        _sig(pl.col("_bratio")),
        pl.col("_bdate"),
        pl.lit(BREAK_CONFIRM_SESSIONS),
        pl.col("session"),
    )


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
    near_zero = pl.concat_str(
        [pl.when(_near_zero(c)).then(pl.format(f"{c}={{}}", _price(c))) for c in PRICE_COLUMNS],
        separator=", ",
        ignore_nulls=True,
    )
    outliers = pl.concat_str(
        [pl.when(flag).then(text) for flag, text in _outlier_terms().values()],
        separator="; ",
        ignore_nulls=True,
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
        .when(reason == NEAR_ZERO_PRICE)
        .then(pl.format("price < {}: {}", pl.lit(f"{NEAR_ZERO_THRESHOLD:g}"), near_zero))
        .when(reason == HIGH_BELOW_LOW)
        .then(pl.format("high={} < low={}", pl.col("high"), pl.col("low")))
        .when(reason == DECIMAL_SHIFT)
        .then(_decimal_detail())
        .when(reason == FIELD_OUTLIER)
        .then(outliers)
        .when(reason == CLOSE_OUTSIDE_RANGE)
        .then(pl.format("close={} outside {}", pl.col("close"), range_))
        .when(reason == OPEN_OUTSIDE_RANGE)
        .then(pl.format("open={} outside {}", pl.col("open"), range_))
        .when(reason == PRICE_COLLAPSE)
        .then(_collapse_detail())
        .when(reason == UNCONFIRMED_BREAK)
        .then(_break_detail())
        .when(reason == UNEXPLAINED_SPLIT)
        .then(_confirmed_detail())
        .when(reason == NEGATIVE_VOLUME)
        .then(pl.format("volume={} < 0", pl.col("volume")))
        .when(reason == ZERO_VOLUME)
        .then(pl.lit("volume=0: no trade reported"))
    )
    others = pl.concat_str(
        [
            pl.when(pl.col(f"_flag_{code}") & (reason != code)).then(pl.lit(code))
            for code in SANITY_PRIORITY[1:]
        ],
        separator=", ",
        ignore_nulls=True,
    )
    also = pl.when((reason != DUPLICATE_CONFLICT) & (others != "")).then(pl.format(" (also {})", others))
    return pl.concat_str([main, also.otherwise(pl.lit(""))])


def _breaks_frame(window: pl.DataFrame) -> pl.DataFrame:
    """One BREAKS_SCHEMA row per confirming bar of the window (the bars are in (session, symbol) order, with
    _BREAK_COLUMNS)."""
    confirmed = window.filter(pl.col("_bstate").is_in([_STATE_SPLIT, _STATE_COLLAPSE]))
    split = pl.col("_bstate") == _STATE_SPLIT
    return confirmed.select(
        "symbol",
        "session",
        pl.col("_bdate").alias("break_date"),
        pl.when(split).then(1.0 / pl.col("_bk")).alias("share_ratio"),
        pl.when(split).then(pl.lit("split")).otherwise(pl.lit("collapse")).alias("kind"),
        pl.when(split).then(_confirmed_detail()).otherwise(_collapse_confirmed_detail()).alias("detail"),
    ).cast(BREAKS_SCHEMA)  # type: ignore[arg-type]


def clean_prices(
    raw: pl.DataFrame,
    expected_sessions: Sequence[dt.date],
    history: pl.DataFrame | None = None,
    actions: pl.DataFrame | None = None,
) -> CleanResult:
    """Type, de-duplicate and sanity-check raw bars: one trusted row per (symbol, session), the rest quarantined.

    * Exact duplicate rows collapse to one; rows that share (symbol, date) but disagree all go to
      quarantine as DUPLICATE_CONFLICT (we cannot know which bar is right).
    * Other rejected rows get the first code of SANITY_PRIORITY that applies (see its comment); the
      others that apply are named in `detail`.
    * The history rules (HISTORY_CODES) compare a bar with the raw bars of its symbol dated in the
      BREAK_REACH_DAYS before it. Pass `history`: the raw rows of the HISTORY_SESSIONS sessions immediately
      before `expected_sessions` (any vendor spelling; older rows are ignored, rows dated inside the window
      raise). Without it the first bars of the window have no reference and those rules skip them. With
      it, every row's verdict depends only on its own row and the rows dated in the BREAK_REACH_DAYS before
      it, so cleaning a range gives exactly the rows of cleaning its sessions one by one (the three
      frames), and no row depends on a later session.
    * A break (a whole-bar move by a split ratio or a decimal factor, or a fall of more than 80%) is
      quarantined until its level has held for BREAK_CONFIRM_SESSIONS closes; then the confirming bar of
      a split is UNEXPLAINED_SPLIT, a collapse is kept, and both are rows of `breaks` (BREAKS_SCHEMA). A
      move that reverts before is a glitch: its bars stay quarantined, the bars after it are clean.
    * `actions` (CORPORATE_ACTIONS_SCHEMA, or anything `normalize_corporate_actions` accepts): splits on
      file. A jump that a split on that session explains is not flagged (prices are compared in units of
      the original share). They must describe the raw data: for data that a vendor already adjusted, pass
      none.
    * A row dated outside `expected_sessions`, or with no date, raises PriceDataError: it belongs to another
      partition (or none), and cleaning it here would make re-runs of that partition disagree.
    """
    df = normalize_ohlcv(raw)
    _check_no_null_dates(df, "date")
    _check_expected_sessions(df, expected_sessions)
    acts = normalize_corporate_actions(actions) if actions is not None else None
    deduped, conflict = _deduplicate(df)
    refs = _history_columns(deduped, conflict, history, acts, expected_sessions)
    flags = _flag_exprs()
    frame = deduped.hstack([*refs.get_columns(), conflict.alias("_conflict")])
    # A row is rejected when it is a conflict or any flag fires (what gives it a reason); the flag columns,
    # the reason and the detail are built for the rejected rows alone.
    rejected_mask = frame.select(_rejected()).to_series()
    cleaned = deduped.filter(~rejected_mask).rename({"date": "session"}).select(CLEAN_COLUMNS)  # already sorted
    rejected = (
        frame.filter(rejected_mask)
        .with_columns([flags[code].fill_null(False).alias(f"_flag_{code}") for code in SANITY_PRIORITY])
        .with_columns(
            pl.when(pl.col("_conflict"))
            .then(pl.lit(DUPLICATE_CONFLICT))
            .otherwise(_reason_expr({c: pl.col(f"_flag_{c}") for c in SANITY_PRIORITY}))
            .alias("reason")
        )
        .rename({"date": "session"})
    )
    quarantine = (
        rejected.with_columns(pl.len().over("symbol", "session").alias("_key_rows"))
        .with_columns(_detail_expr().alias("detail"))
        .select(list(QUARANTINE_SCHEMA))
        .sort("session", "symbol", "reason", maintain_order=True)
    )
    _check_accounting(deduped.height, cleaned, quarantine)
    return CleanResult(cleaned=cleaned, quarantine=quarantine, breaks=_breaks_frame(frame.rename({"date": "session"})))


def _check_accounting(n_input: int, cleaned: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    """The invariant that makes quarantine trustworthy; an explicit raise so `python -O` cannot strip it."""
    if cleaned.height + quarantine.height != n_input:
        raise AssertionError(
            f"clean_prices lost rows: {cleaned.height} cleaned + {quarantine.height} quarantined "
            f"!= {n_input} de-duplicated input rows"
        )
    if cleaned.select(_same_key_as_previous("session").any()).item():  # a repeat has a row before it
        raise AssertionError("clean_prices produced more than one row for a (symbol, session)")
