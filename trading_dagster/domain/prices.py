"""Cleaning raw bars: one trusted row per (symbol, session), every other row quarantined with a reason.

Reading vendor files lives in `vendor_files`, the shared schemas and the split by session in `bars`.
Everything here is pure polars (no Dagster, no I/O), so the cleaned-price asset stays thin and every rule
below is unit-tested on tiny frames.

**Never lose a row silently.** A row dated outside its partition raises `PriceDataError`; a row that
parses but is not a believable bar goes to the quarantine frame with a reason code. `clean_prices` checks
that cleaned + quarantine account for every de-duplicated input row.

Quarantine: the raw columns renamed as in cleaned (`date` is `session`), plus `reason` and `detail`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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

# Quarantine reason codes. A row with several problems gets the FIRST of SANITY_PRIORITY: a missing value
# makes every comparison meaningless, a non-positive price is the most basic impossibility, high < low makes
# the [low, high] range empty (so close/open "outside" it is a consequence, not a separate fault). A decimal
# shift comes next because it names the broken field (a close of 0.8997 in a 90-dollar stock also puts the
# close outside the range and makes the open look 100x the close, which are consequences); FIELD_OUTLIER
# (one field absurdly far from the rest of the bar) comes before the plain range checks for the same reason.
# The open is checked after the close because the close is what every indicator consumes. An unexplained
# split is a whole-bar move, so it comes after the checks inside the bar; volume problems come last.
# The other codes that also apply are named in `detail`. DUPLICATE_CONFLICT is decided per (symbol,
# session) before any of these: when a vendor sends two different bars for one key we cannot tell which
# one is right, so none is kept.
NULL_VALUE = "NULL_VALUE"
NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
DECIMAL_SHIFT = "DECIMAL_SHIFT"
FIELD_OUTLIER = "FIELD_OUTLIER"
CLOSE_OUTSIDE_RANGE = "CLOSE_OUTSIDE_RANGE"
OPEN_OUTSIDE_RANGE = "OPEN_OUTSIDE_RANGE"
UNEXPLAINED_SPLIT = "UNEXPLAINED_SPLIT"
NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
ZERO_VOLUME = "ZERO_VOLUME"
DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"
SANITY_PRIORITY: tuple[str, ...] = (
    NULL_VALUE,
    NON_POSITIVE_PRICE,
    HIGH_BELOW_LOW,
    DECIMAL_SHIFT,
    FIELD_OUTLIER,
    CLOSE_OUTSIDE_RANGE,
    OPEN_OUTSIDE_RANGE,
    UNEXPLAINED_SPLIT,
    NEGATIVE_VOLUME,
    ZERO_VOLUME,
)
REASON_CODES: tuple[str, ...] = (DUPLICATE_CONFLICT, *SANITY_PRIORITY)
# Codes whose verdict needs earlier bars (the `history` argument of clean_prices); the others look at
# one row only.
HISTORY_CODES: tuple[str, ...] = (DECIMAL_SHIFT, UNEXPLAINED_SPLIT)

# Thresholds of the history rules, measured on the shared 2008-2017 dataset (the counts are asserted in
# trading_dagster_tests/domain/test_real_glitches.py).
# The reference of a bar is the median close of its symbol's previous REFERENCE_BARS usable raw bars
# (close > 0; duplicate conflicts excluded) dated within REFERENCE_DAYS calendar days before it; with
# fewer than MIN_REFERENCE_BARS of them there is no reference and the history rules do not apply. A median
# of 5 is not moved by one or two glitches among them.
# The reach is in calendar days, not in sessions, so that it is a function of the dates alone: a session
# with no rows at all (an outage, a tiny universe) cannot shift it, and a range run equals day-by-day runs
# whatever sessions the history happens to contain. 14 days are 10 sessions in a week without holidays.
REFERENCE_DAYS = 14
# What the caller passes as `history`: the raw rows of this many sessions before the window. Ten sessions
# always reach back at least REFERENCE_DAYS (ten weekdays are two weeks, holidays only push them further).
HISTORY_SESSIONS = 10
REFERENCE_BARS = 5
MIN_REFERENCE_BARS = 3
# A ratio "matches" factor k when it lies in [k / (1 + tol), k * (1 + tol)].
RATIO_TOLERANCE = 0.03
# Price factors of a decimal-point error (x0.1 = a digit lost, x10 = one gained).
DECIMAL_SHIFT_FACTORS: tuple[float, ...] = (0.01, 0.1, 10.0, 100.0)
# Share ratios (new per old) of splits we recognise; both directions are checked (a 4:1 split moves the
# price x1/4, a 1-for-4 reverse split x4). 10 and 100 are DECIMAL_SHIFT_FACTORS. 3:2 is left out on
# purpose: it would catch ordinary -33%/+50% days (3 of them on real crashes and rallies in 2008-2017).
SPLIT_SHARE_RATIOS: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
# Prices so low that one cent is a big step (0.01 -> 0.02 is "x2") say nothing about splits or decimal
# points: the ratio rules need a reference (in today's share units) of at least this many dollars. Only
# the reference: a 30-dollar stock printed at 0.30 is still a decimal shift.
MIN_RATIO_PRICE = 0.5
# The previous close may stand in for the median reference (it reacts at once to a real move that the
# median of 5 has not caught up with) only if it is itself within this factor of the median: otherwise
# it is the glitch, or a crash, and not a reference.
TRUSTED_PREVIOUS_FACTOR = 2.0
# FIELD_OUTLIER: high, low or open more than this factor away from the open/close of the same bar.
FIELD_OUTLIER_FACTOR = 5.0
# A decimal-factor move that does not revert is a split, not a glitch (an unadjusted 10:1 or 100:1 split, or a
# 1-for-10 or 1-for-100 reverse split, with no action on file). On the break day the two look the same, and
# a causal rule cannot wait for the next session, so: the median reference keeps the old level on the break
# day and the BREAK_CONFIRM_SESSIONS - 1 sessions after it (a median of REFERENCE_BARS moves once more than
# half of its closes are at the new level), and those bars are DECIMAL_SHIFT whether the move reverts or
# not: quarantined, nothing trades on them. On the next session, when the new level has held for
# BREAK_CONFIRM_SESSIONS closes, that bar is UNEXPLAINED_SPLIT (its detail names the break day), which holds
# the symbol's signals out like any unexplained split (quality.hold_out_unexplained_breaks); the bars after it
# are kept, on the new basis. A move that reverts within BREAK_CONFIRM_SESSIONS sessions stays DECIMAL_SHIFT.
BREAK_CONFIRM_SESSIONS = REFERENCE_BARS // 2 + 1
# A price is "at the level" of a decimal factor k of a reference when it lies in [k / (1 + LEVEL_TOLERANCE),
# k * (1 + LEVEL_TOLERANCE)] of it. Wider than RATIO_TOLERANCE because a level is held over several days of
# ordinary moves (a split day can also be a +5% day), and safe because the decimal factors lie far from each
# other and from every split factor (x0.1 +-15% is 0.087..0.115; 1:8 and 1:15 splits are x0.125 and x0.067).
# Used for whole bars (open and close at the level) and for the level a break holds.
LEVEL_TOLERANCE = 0.15


@dataclass(frozen=True)
class CleanResult:
    """The output of `clean_prices`: usable bars and the rejected rows with their reason."""

    cleaned: pl.DataFrame
    quarantine: pl.DataFrame


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


SPLIT_PRICE_FACTORS: tuple[float, ...] = tuple(
    sorted({1.0 / r for r in SPLIT_SHARE_RATIOS} | set(SPLIT_SHARE_RATIOS))
)
# Columns the history rules add to each window row (null where the rule does not fire).
_HISTORY_COLUMNS: dict[str, pl.DataType] = {
    "_ref_today": pl.Float64(),  # the median reference in units of today's share
    "_prev_today": pl.Float64(),  # the previous usable close, same units
    "_nref": pl.Int32(),  # how many closes the median used
    "_action": pl.Float64(),  # the ratio of a split on file on exactly this session
    "_dc_ref": pl.Float64(),  # decimal factor the close matches against the median reference
    "_dc_prev": pl.Float64(),  # ... against the trusted previous close
    "_do_ref": pl.Float64(),  # the same two for the open
    "_do_prev": pl.Float64(),
    "_split": pl.Float64(),  # split price factor the whole bar matches (see _match_columns)
    "_break": pl.Float64(),  # decimal factor of a level held BREAK_CONFIRM_SESSIONS closes (see _match_columns)
    "_old_today": pl.Float64(),  # the level before that break: median of the closes before it, today's units
    "_nold": pl.Int32(),  # how many closes that median used
    "_break_date": pl.Date(),  # the session of the break (BREAK_CONFIRM_SESSIONS usable bars back)
    "_break_action": pl.Float64(),  # the ratio of a split on file on that session
}
# The previous closes a row looks at (all dated within REFERENCE_DAYS before it): `_p1` (the previous one)
# to `_p{PREVIOUS_BARS}`. The first REFERENCE_BARS make the median reference; for the break rule the first
# BREAK_CONFIRM_SESSIONS are the run since a possible break and the REFERENCE_BARS after them the level
# before it.
PREVIOUS_BARS = BREAK_CONFIRM_SESSIONS + REFERENCE_BARS
_PREVIOUS = tuple(f"_p{k}" for k in range(1, PREVIOUS_BARS + 1))
_RUN = _PREVIOUS[:BREAK_CONFIRM_SESSIONS]
_BEFORE_RUN = _PREVIOUS[BREAK_CONFIRM_SESSIONS:]
# A 5-input sorting network (9 compare-exchanges), checked against all 5^5 inputs: the median of up to 5
# columns with elementwise min/max is far faster than building a list per row.
_SORT5: tuple[tuple[int, int], ...] = ((0, 1), (3, 4), (2, 4), (2, 3), (1, 4), (0, 3), (0, 2), (1, 3), (1, 2))


def _usable_for_reference(df: pl.DataFrame, conflict: pl.Series) -> pl.Series:
    """Raw rows whose close may enter a reference: keyed, not a duplicate conflict, close a positive number."""
    close = df["close"]
    return (~conflict & df["symbol"].is_not_null() & close.is_finite() & (close > 0)).fill_null(False)


def _prepare_history(history: pl.DataFrame, first_session: dt.date | None) -> pl.DataFrame:
    """Usable (symbol, date, open, close) rows of `history` dated within REFERENCE_DAYS before the window.

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
        h = h.filter(pl.col("date") >= first_session - dt.timedelta(days=REFERENCE_DAYS))
    h, conflict = _deduplicate(h)
    return h.filter(_usable_for_reference(h, conflict)).select("symbol", "date", "open", "close")


def _median(frame: pl.DataFrame, names: Sequence[str]) -> tuple[pl.Series, pl.Series]:
    """The median of the non-null values of the REFERENCE_BARS columns `names` of each row (null with fewer
    than MIN_REFERENCE_BARS of them), and how many there were."""
    names = list(names)
    n = frame.select(pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int32) for c in names])).to_series()
    if len(names) != 5:  # pragma: no cover - the sorting network below is for 5 values
        median = frame.select(pl.concat_list(names).list.median()).to_series()
    else:
        s = frame.select([pl.col(c).fill_null(float("inf")) for c in names])
        for i, j in _SORT5:
            a, b = names[i], names[j]
            s = s.with_columns(pl.min_horizontal(a, b).alias(a), pl.max_horizontal(a, b).alias(b))
        median = s.select(
            pl.when(n == 5)
            .then(pl.col(names[2]))
            .when(n == 4)
            .then((pl.col(names[1]) + pl.col(names[2])) / 2)
            .when(n == 3)
            .then(pl.col(names[1]))
        ).to_series()
    return pl.select(pl.when(n >= MIN_REFERENCE_BARS).then(median)).to_series(), n


def _median_of_previous(rows: pl.DataFrame) -> pl.DataFrame:
    """`_ref`, `_nref`, the previous closes `_p1`.. `_p{PREVIOUS_BARS}` and `_break_date` (the date of
    `_p{BREAK_CONFIRM_SESSIONS}`) for `rows` sorted by (symbol, date) with `_sym` and `_nc`.

    The previous k-th bar counts when it is the same symbol and at most REFERENCE_DAYS days older.
    """
    day = pl.col("date").cast(pl.Int32)

    def reachable(k: int) -> pl.Expr:
        return (pl.col("_sym") == pl.col("_sym").shift(k)) & (day - day.shift(k) <= REFERENCE_DAYS)

    prev = rows.select(
        [
            pl.when(reachable(k)).then(pl.col("_nc").shift(k)).alias(name)
            for k, name in enumerate(_PREVIOUS, start=1)
        ]
        + [
            pl.when(reachable(BREAK_CONFIRM_SESSIONS))
            .then(pl.col("date").shift(BREAK_CONFIRM_SESSIONS))
            .alias("_break_date")
        ]
    )
    ref, nref = _median(prev, _PREVIOUS[:REFERENCE_BARS])
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
    """The history rules' matched factors (null = no match), from `_ref_today`, `_prev_today`,
    `_old_today` and the previous closes `_p*`, and the bar.

    `_d{c,o}_ref`: the decimal factor the close/open matches against the median reference, within
    RATIO_TOLERANCE, or, when open and close are both at one decimal level of it, within LEVEL_TOLERANCE
    (the whole bar moved: a split day or a whole-bar glitch that also moved a few percent);
    `_d{c,o}_prev`: the same against the previous close, used only when that close is trusted (within
    TRUSTED_PREVIOUS_FACTOR of the median: otherwise it is itself the glitch, or a crash) - it catches a
    glitch right after a real move that the median of 5 has not caught up with (PXD 2013-08-05);
    `_split`: the split price factor that open AND close match against the median AND the close matches
    against the previous close. The whole bar moved (a one-field glitch or an intraday crash does not),
    and moved on this session: the days after a real crash, which still differ from the median, do not.
    `_break`: the decimal factor k of a break that has not reverted (see BREAK_CONFIRM_SESSIONS): the bar's
    open and close and the BREAK_CONFIRM_SESSIONS closes before it are all at level k of the median of the
    REFERENCE_BARS closes before those (`_old_today`), and none of those is at that level itself (the level is
    new, so the bar is the first to confirm it, and a return from an earlier glitch does not count).
    """
    ref, prev = pl.col("_ref_today"), pl.col("_prev_today")
    trusted = (prev / ref).is_between(1.0 / TRUSTED_PREVIOUS_FACTOR, TRUSTED_PREVIOUS_FACTOR)
    out: list[pl.Expr] = []
    level_close = _matched_factor(pl.col("close") / ref, DECIMAL_SHIFT_FACTORS, LEVEL_TOLERANCE)
    level_open = _matched_factor(pl.col("open") / ref, DECIMAL_SHIFT_FACTORS, LEVEL_TOLERANCE)
    whole_bar = pl.when(level_close == level_open).then(level_close)
    for c, name in (("c", "close"), ("o", "open")):
        field = pl.col(name)
        priced = ref >= MIN_RATIO_PRICE
        out.append(
            pl.when(priced)
            .then(pl.coalesce(_matched_factor(field / ref, DECIMAL_SHIFT_FACTORS), whole_bar))
            .alias(f"_d{c}_ref")
        )
        out.append(
            pl.when(priced & trusted)
            .then(_matched_factor(field / prev, DECIMAL_SHIFT_FACTORS))
            .alias(f"_d{c}_prev")
        )
    rc, ro, pc = pl.col("close") / ref, pl.col("open") / ref, pl.col("close") / prev
    split: Any = pl
    for k in SPLIT_PRICE_FACTORS:
        split = split.when(_near(rc, k) & _near(ro, k) & _near(pc, k)).then(pl.lit(k))
    priced = ref >= MIN_RATIO_PRICE
    out.append(pl.when(priced).then(split.otherwise(pl.lit(None, dtype=pl.Float64))).alias("_split"))

    old_today, old = pl.col("_old_today"), pl.col("_old")
    held: Any = pl
    for k in DECIMAL_SHIFT_FACTORS:
        at_level = [_near(pl.col(name) / old_today, k, LEVEL_TOLERANCE) for name in ("open", "close")]
        at_level += [_near(pl.col(p) / old, k, LEVEL_TOLERANCE) for p in _RUN]
        new_level = [~_near(pl.col(p) / old, k, LEVEL_TOLERANCE).fill_null(False) for p in _BEFORE_RUN]
        held = held.when(pl.all_horizontal(*at_level, *new_level)).then(pl.lit(k))
    out.append(
        pl.when(old_today >= MIN_RATIO_PRICE)
        .then(held.otherwise(pl.lit(None, dtype=pl.Float64)))
        .alias("_break")
    )
    return out


def _history_columns(
    window: pl.DataFrame,
    conflict: pl.Series,
    history: pl.DataFrame | None,
    actions: pl.DataFrame | None,
    expected_sessions: Sequence[dt.date],
) -> pl.DataFrame:
    """_HISTORY_COLUMNS for each row of `window` (deduplicated, in its (date, symbol) order).

    The reference of a row is the median of the previous REFERENCE_BARS usable closes of its symbol dated
    within REFERENCE_DAYS days before it (null with fewer than MIN_REFERENCE_BARS). Prices are
    compared in units of the symbol's original share (price x the product of its split ratios with
    ex_date <= the bar's date), so a split on file is not a jump. Each row's values depend only on rows
    dated in the REFERENCE_DAYS days before it, whether those come from `history` or from the
    window, so a range run equals day-by-day runs and nothing depends on a later session.

    The break rule (`_break`) compares a row with the REFERENCE_BARS closes before its previous
    BREAK_CONFIRM_SESSIONS closes, all within the same REFERENCE_DAYS, so the same holds for it.

    Fast path: the factor matching runs only on the few rows whose ratios are far enough from 1 to match
    any factor; the result is scattered back into null columns.
    """
    n = window.height
    first = min(expected_sessions) if len(expected_sessions) else None
    usable = _usable_for_reference(window, conflict)
    w = window.select("symbol", "date", "open", "close").with_row_index("_row").filter(usable)
    parts = [w]
    if history is not None:
        h = _prepare_history(history, first)
        parts.insert(0, h.with_columns(pl.lit(None, dtype=pl.UInt32).alias("_row")).select(w.columns))
    rows = pl.concat(parts)  # in date order: history ends before the window, both are sorted by date
    has_actions = actions is not None and actions.height > 0
    factor = cumulative_factor(rows, actions, "date") if has_actions else pl.lit(1.0)  # type: ignore[arg-type]
    rows = (
        rows.with_columns(
            pl.col("symbol").cast(pl.Categorical).to_physical().alias("_sym"),
            factor.alias("_factor"),
        )
        .with_columns((pl.col("close") * pl.col("_factor")).alias("_nc"))
        # A stable sort on the symbol code keeps the date order inside each symbol: (symbol, date) order
        # without sorting strings.
        .sort("_sym", maintain_order=True)
    )
    rows = pl.concat([rows, _median_of_previous(rows)], how="horizontal").filter(pl.col("_row").is_not_null())
    ref_today = pl.col("_ref") / pl.col("_factor")
    prev_today = pl.col("_p1") / pl.col("_factor")
    factors = (*DECIMAL_SHIFT_FACTORS, *SPLIT_PRICE_FACTORS)
    # (the decimal levels of a whole bar, within LEVEL_TOLERANCE, lie far outside [lo, hi] too)
    lo = max(k for k in factors if k < 1) * (1 + RATIO_TOLERANCE)
    hi = min(k for k in factors if k > 1) / (1 + RATIO_TOLERANCE)
    far = [
        ~(r.is_between(lo, hi))
        for r in (pl.col(c) / base for c in ("open", "close") for base in (ref_today, prev_today))
    ]
    # a break: the close against the closes before the run (their median lies between their min and max)
    level_lo = max(k for k in DECIMAL_SHIFT_FACTORS if k < 1) * (1 + LEVEL_TOLERANCE)
    level_hi = min(k for k in DECIMAL_SHIFT_FACTORS if k > 1) / (1 + LEVEL_TOLERANCE)
    far += [
        pl.col("_nc") / pl.max_horizontal(_BEFORE_RUN) < level_lo,
        pl.col("_nc") / pl.min_horizontal(_BEFORE_RUN) > level_hi,
    ]
    candidates = rows.filter(pl.any_horizontal(far).fill_null(False))
    old, nold = _median(candidates, _BEFORE_RUN)
    candidates = candidates.with_columns(
        ref_today.alias("_ref_today"),
        prev_today.alias("_prev_today"),
        old.alias("_old"),
        nold.alias("_nold"),
        (old / candidates["_factor"]).alias("_old_today"),
    )
    if has_actions and candidates.height:
        ratio = pl.col("ratio")
        on_day = actions.select("symbol", pl.col("ex_date").alias("date"), ratio.alias("_action"))
        on_break = actions.select(
            "symbol", pl.col("ex_date").alias("_break_date"), ratio.alias("_break_action")
        )
        candidates = candidates.join(on_day, on=["symbol", "date"], how="left", maintain_order="left").join(
            on_break, on=["symbol", "_break_date"], how="left", maintain_order="left"
        )
    else:
        none = pl.lit(None, dtype=pl.Float64)
        candidates = candidates.with_columns(none.alias("_action"), none.alias("_break_action"))
    matched = candidates.with_columns(_match_columns())
    matched = matched.filter(
        pl.any_horizontal(
            pl.col("_dc_ref", "_dc_prev", "_do_ref", "_do_prev", "_split", "_break").is_not_null()
        )
    )
    index = matched["_row"]
    out = []
    for name, dtype in _HISTORY_COLUMNS.items():
        column = pl.Series(name, [], dtype=dtype).extend_constant(None, n)
        out.append(column.scatter(index, matched[name].cast(dtype)) if index.len() else column)
    return pl.DataFrame(out)


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


def _flag_exprs() -> dict[str, pl.Expr]:
    """One boolean expression per SANITY_PRIORITY code; the reference columns must be present."""
    prices = [pl.col(c) for c in PRICE_COLUMNS]
    missing = [pl.col("symbol").is_null(), pl.col("volume").is_null()]
    missing += [p.is_null() | ~p.is_finite() for p in prices]
    low, high = pl.col("low"), pl.col("high")
    decimal = [pl.col(f"_d{c}_{r}").is_not_null() for c in ("c", "o") for r in ("ref", "prev")]
    return {
        NULL_VALUE: pl.any_horizontal(missing),
        NON_POSITIVE_PRICE: pl.any_horizontal([p <= 0 for p in prices]),
        HIGH_BELOW_LOW: high < low,
        DECIMAL_SHIFT: pl.any_horizontal(decimal),
        FIELD_OUTLIER: pl.any_horizontal([t[0] for t in _outlier_terms().values()]),
        CLOSE_OUTSIDE_RANGE: (pl.col("close") < low) | (pl.col("close") > high),
        OPEN_OUTSIDE_RANGE: (pl.col("open") < low) | (pl.col("open") > high),
        UNEXPLAINED_SPLIT: pl.col("_split").is_not_null() | pl.col("_break").is_not_null(),
        NEGATIVE_VOLUME: pl.col("volume") < 0,
        ZERO_VOLUME: pl.col("volume") == 0,
    }


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


def _split_name(price_factor: pl.Expr) -> pl.Expr:
    """ "4:1 split" for a price factor of 1/4, "1-for-4 reverse split" for 4 (10 and 100 too)."""
    expr: Any = pl
    for r in (*SPLIT_SHARE_RATIOS, *(k for k in DECIMAL_SHIFT_FACTORS if k > 1)):
        n = f"{r:g}"
        expr = expr.when(price_factor == 1.0 / r).then(pl.lit(f"{n}:1 split"))
        expr = expr.when(price_factor == r).then(pl.lit(f"1-for-{n} reverse split"))
    return expr.otherwise(pl.lit("split"))


def _action_text(action: str, day: str, when: str) -> pl.Expr:
    """Why a split-like break is unexplained: no corporate action on file for the symbol on `day`, or the
    one on file (ratio in column `action`) does not match the break."""
    return (
        pl.when(pl.col(action).is_null())
        .then(pl.format("no corporate action on file for {} on {}", pl.col("symbol"), pl.col(day)))
        .otherwise(pl.format(f"the corporate action on file{when} (ratio {{}}) does not match it", pl.col(action)))
    )


def _split_detail() -> pl.Expr:
    missing_action = _action_text("_action", "session", "")
    return pl.format(
        "open={}, close={} are x{}, x{} of {} and the close is x{} of the previous close {}: looks like a {}, "
        "but {}",
        _price("open"),
        _price("close"),
        _sig(pl.col("open") / pl.col("_ref_today")),
        _sig(pl.col("close") / pl.col("_ref_today")),
        _reference_text(),
        _sig(pl.col("close") / pl.col("_prev_today")),
        _sig(pl.col("_prev_today")),
        _split_name(pl.col("_split")),
        missing_action,
    )


def _break_detail() -> pl.Expr:
    """UNEXPLAINED_SPLIT from a decimal-factor level that has held since its break (`_break`)."""
    missing_action = _action_text("_break_action", "_break_date", " then")
    return pl.format(
        "open={}, close={} are x{}, x{} of the level before {} ({}, median of the {} closes before it), as were "
        "the {} closes from {} on: a x{} move that has not reverted looks like a {} on {}, but {}",
        _price("open"),
        _price("close"),
        _sig(pl.col("open") / pl.col("_old_today")),
        _sig(pl.col("close") / pl.col("_old_today")),
        pl.col("_break_date"),
        _sig(pl.col("_old_today")),
        pl.col("_nold"),
        pl.lit(BREAK_CONFIRM_SESSIONS),
        pl.col("_break_date"),
        _factor_text(pl.col("_break")),
        _split_name(pl.col("_break")),
        pl.col("_break_date"),
        missing_action,
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
        .when(reason == UNEXPLAINED_SPLIT)
        .then(pl.when(pl.col("_break").is_not_null()).then(_break_detail()).otherwise(_split_detail()))
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
    * DECIMAL_SHIFT and UNEXPLAINED_SPLIT compare a bar with the median close of its symbol's previous
      REFERENCE_BARS raw bars dated within REFERENCE_DAYS calendar days. Pass `history`: the raw rows of
      the HISTORY_SESSIONS sessions immediately before `expected_sessions` (any vendor spelling; rows
      older than REFERENCE_DAYS before the window are ignored, rows dated inside the window raise).
      Without it the first bars of the window have no reference and those two rules skip them. With it,
      every row's verdict depends only on its own row and the rows dated in the REFERENCE_DAYS before it,
      so cleaning a range gives exactly the rows of cleaning its sessions one by one, and no row depends on
      a later session.
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
    labelled = (
        deduped.hstack(refs)
        .with_columns([flags[code].fill_null(False).alias(f"_flag_{code}") for code in SANITY_PRIORITY])
        .with_columns(
            pl.when(conflict)
            .then(pl.lit(DUPLICATE_CONFLICT))
            .otherwise(_reason_expr({c: pl.col(f"_flag_{c}") for c in SANITY_PRIORITY}))
            .alias("reason")
        )
        .rename({"date": "session"})
    )

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
