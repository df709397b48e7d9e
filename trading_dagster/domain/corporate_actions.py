"""Corporate actions (splits): read a user's list, and back-adjust raw bars point in time.

A split is one row: `symbol`, `ex_date` (the first session that trades on the new share count), `ratio`
(new shares per old share: a 7:1 forward split is 7.0, a 1-for-10 reverse split is 0.1) and `source`
(where the row came from, for the audit trail).

Two uses:

* `clean_prices` takes the actions so that a price jump that a split explains is not quarantined as
  DECIMAL_SHIFT or UNEXPLAINED_SPLIT (its reference is adjusted by the action; see prices.py).
* `back_adjust(bars, actions, as_of)` turns raw (unadjusted) bars into a continuous series **as known on
  `as_of`**: only actions with `ex_date <= as_of` apply, so a series adjusted as of D never uses a split
  announced or effective later. Prices of bars dated before an ex_date are divided by its ratio and their
  volume multiplied by it (rounded to whole shares).

Dividends are not handled here: the project's raw data is price-only and no rule needs them yet.
Pure polars; no Dagster import.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl

CORPORATE_ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "ex_date": pl.Date(),
    "ratio": pl.Float64(),
    "source": pl.Utf8(),
}
_PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

# Accepted column spellings (compared lower-case with spaces/dashes as underscores).
_ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker"),
    "ex_date": ("ex_date", "exdate", "effective_date", "date"),
    "ratio": ("ratio", "split_ratio", "split_factor", "factor"),
    "source": ("source",),
}
# "7:1", "7/1", "7-for-1", "7 for 1": new shares first, old shares second.
_RATIO_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?::|/|-?\s*for\s*-?)\s*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE)
_MAX_LISTED = 10


class CorporateActionError(ValueError):
    """A corporate-action list that cannot be trusted: missing columns, bad ratios, contradictions."""


def empty_actions() -> pl.DataFrame:
    return pl.DataFrame(schema=CORPORATE_ACTIONS_SCHEMA)


def _canonical(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _resolve(columns: list[str]) -> dict[str, str]:
    by_alias = {alias: canon for canon, aliases in _ALIASES.items() for alias in aliases}
    found: dict[str, list[str]] = {}
    for col in columns:
        canon = by_alias.get(_canonical(col))
        if canon is not None:
            found.setdefault(canon, []).append(col)
    ambiguous = {c: cols for c, cols in found.items() if len(cols) > 1}
    if ambiguous:
        raise CorporateActionError(f"ambiguous corporate-action columns: {ambiguous}; keep one per field")
    missing = [c for c in ("symbol", "ex_date", "ratio") if c not in found]
    if missing:
        accepted = "; ".join(f"{c}: {'|'.join(_ALIASES[c])}" for c in missing)
        raise CorporateActionError(
            f"missing corporate-action column(s) {missing}. Found columns: {columns}. "
            f"Expected symbol, ex_date, ratio and optionally source (accepted spellings: {accepted})."
        )
    return {c: cols[0] for c, cols in found.items()}


def _parse_ratio(s: pl.Series) -> pl.Series:
    """Numbers, or text "7:1" / "1:10" / "7/1" / "7-for-1" (new:old), or plain numeric text."""
    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if s.dtype == pl.Null:
        return s.cast(pl.Float64)
    text = s.cast(pl.Utf8).str.strip_chars()
    parts = text.str.extract_groups(_RATIO_TEXT.pattern)
    new, old = parts.struct.field("1").cast(pl.Float64), parts.struct.field("2").cast(pl.Float64)
    as_pair = pl.select(pl.when(old > 0).then(new / old).otherwise(None)).to_series()
    plain = text.cast(pl.Float64, strict=False)
    out = as_pair.fill_null(plain)
    bad = text.is_not_null() & out.is_null()
    if bad.any():
        examples = text.filter(bad).unique(maintain_order=True).head(_MAX_LISTED).to_list()
        raise CorporateActionError(
            f"column 'ratio': {int(bad.sum())} value(s) are neither a number nor 'new:old' text "
            f"(e.g. '7:1' for a 7-for-1 split, '1:10' for a 1-for-10 reverse split): {examples}"
        )
    return out.alias("ratio")


def _parse_ex_date(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Date:
        return s
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.date()
    text = s.cast(pl.Utf8).str.strip_chars()
    out = text.str.to_date("%Y-%m-%d", strict=False).fill_null(text.str.to_date("%Y%m%d", strict=False))
    bad = text.is_not_null() & out.is_null()
    if bad.any():
        examples = text.filter(bad).head(_MAX_LISTED).to_list()
        raise CorporateActionError(
            f"column 'ex_date': {int(bad.sum())} value(s) are not dates (YYYY-MM-DD or YYYYMMDD): {examples}"
        )
    return out.alias("ex_date")


def normalize_corporate_actions(df: pl.DataFrame, default_source: str = "user") -> pl.DataFrame:
    """Map columns, parse, validate and de-duplicate a corporate-action frame; raise CorporateActionError.

    * symbol, ex_date and ratio are required and must not be blank; ratio must be a finite number > 0
      (or "new:old" text). A missing `source` column becomes `default_source`.
    * Exact repeats of (symbol, ex_date, ratio) collapse to one row; two rows for one (symbol, ex_date)
      with different ratios are an error: we cannot know which is right.
    Output: CORPORATE_ACTIONS_SCHEMA, sorted by (symbol, ex_date).
    """
    if set(df.columns) == set(CORPORATE_ACTIONS_SCHEMA) and df.schema == pl.Schema(CORPORATE_ACTIONS_SCHEMA):
        out = df.select(list(CORPORATE_ACTIONS_SCHEMA))
    else:
        mapping = _resolve(df.columns)
        source = (
            df[mapping["source"]].cast(pl.Utf8)
            if "source" in mapping
            else pl.Series("source", [default_source] * df.height, dtype=pl.Utf8)
        )
        out = pl.DataFrame(
            [
                df[mapping["symbol"]].cast(pl.Utf8).str.strip_chars().str.to_uppercase().alias("symbol"),
                _parse_ex_date(df[mapping["ex_date"]]),
                _parse_ratio(df[mapping["ratio"]]),
                source.fill_null(default_source).alias("source"),
            ]
        )
    out = out.with_columns(
        pl.when(pl.col("symbol") == "").then(None).otherwise(pl.col("symbol")).alias("symbol")
    )
    incomplete = out.filter(pl.any_horizontal(pl.col("symbol", "ex_date", "ratio").is_null()))
    if incomplete.height:
        raise CorporateActionError(
            f"{incomplete.height} corporate action(s) lack a symbol, ex_date or ratio, e.g. {incomplete.row(0)}"
        )
    bad = out.filter(~pl.col("ratio").is_finite() | (pl.col("ratio") <= 0))
    if bad.height:
        raise CorporateActionError(
            f"{bad.height} corporate action(s) have ratio <= 0 or not finite (ratio is new shares per old "
            f"share: 7.0 for 7:1, 0.1 for 1:10): {bad.head(_MAX_LISTED).rows()}"
        )
    out = out.unique(["symbol", "ex_date", "ratio"], keep="first", maintain_order=True)
    clash = out.filter(pl.len().over("symbol", "ex_date") > 1)
    if clash.height:
        listed = clash.group_by("symbol", "ex_date").agg(pl.col("ratio")).sort("symbol", "ex_date")
        raise CorporateActionError(
            f"{listed.height} (symbol, ex_date) have disagreeing ratios; fix the list: "
            + "; ".join(f"{s} {d}: {r}" for s, d, r in listed.head(_MAX_LISTED).iter_rows())
        )
    return out.sort("symbol", "ex_date").cast(CORPORATE_ACTIONS_SCHEMA)  # type: ignore[arg-type]


def read_corporate_actions(path: str | Path) -> pl.DataFrame:
    """Read a user's corporate-action CSV or Parquet file (format from its content) and normalize it.

    Errors name the file. A missing `source` column becomes the file name.
    """
    path = Path(path)
    if not path.is_file():
        raise CorporateActionError(f"{path}: no such file")
    with path.open("rb") as fh:
        head = fh.read(4)
    try:
        if head == b"PAR1":
            df = pl.read_parquet(path)
        else:
            df = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CorporateActionError(f"{path}: cannot be read as CSV or Parquet: {exc}") from exc
    try:
        return normalize_corporate_actions(df, default_source=path.name)
    except CorporateActionError as exc:
        raise CorporateActionError(f"{path}: {exc}") from exc


def cumulative_factor(keys: pl.DataFrame, actions: pl.DataFrame, date_column: str) -> pl.Series:
    """Per row of `keys` (symbol + date_column): the product of the symbol's ratios with ex_date <= date.

    Multiplying a raw price by it expresses every bar in units of the symbol's original share, so prices
    on both sides of a split compare directly (a 7:1 split: 700 before, 100 * 7 after). Uses only actions
    dated on or before the row, so it is causal. Row order of `keys` is preserved.
    """
    if actions.height == 0 or keys.height == 0:
        return pl.Series("factor", [1.0] * keys.height, dtype=pl.Float64)
    table = (
        actions.sort("symbol", "ex_date")
        .select(
            "symbol",
            pl.col("ex_date").alias("_on"),
            pl.col("ratio").cum_prod().over("symbol").alias("factor"),
        )
        .sort("_on")
    )
    left = keys.select("symbol", pl.col(date_column).alias("_on")).with_row_index("_row").sort("_on")
    joined = left.join_asof(table, on="_on", by="symbol", strategy="backward", check_sortedness=False)
    return joined.sort("_row")["factor"].fill_null(1.0)


def back_adjust(bars: pl.DataFrame, actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Split-adjust `bars` as known on `as_of`: continuous prices in units of the share on `as_of`.

    `bars` has `symbol`, a `date` or `session` column, open/high/low/close and `volume`; `actions` is
    anything `normalize_corporate_actions` accepts. Only actions with `ex_date <= as_of` apply: a bar dated
    before such an ex_date has its prices divided by the ratio (all later applicable ratios compound) and
    its volume multiplied by it, rounded to whole shares. Bars on or after an ex_date are unchanged.
    Bars dated after `as_of` raise: a series "as of D" must not contain D+1 (point in time).
    Row order and all other columns are preserved.
    """
    date_column = "session" if "session" in bars.columns else "date"
    if date_column not in bars.columns:
        raise ValueError(f"bars need a 'date' or 'session' column; found {bars.columns}")
    late = bars.filter(pl.col(date_column) > as_of)
    if late.height:
        raise ValueError(
            f"{late.height} bar(s) dated after as_of={as_of} (latest {late[date_column].max()}): a series "
            "adjusted as of a day must not contain later bars"
        )
    known = normalize_corporate_actions(actions).filter(pl.col("ex_date") <= as_of)
    if known.height == 0 or bars.height == 0:
        return bars
    # factor(bar) = product of ratios with bar_date < ex_date <= as_of = total(symbol) / cumulative(bar_date).
    total = known.group_by("symbol").agg(pl.col("ratio").product().alias("_total"))
    cum = cumulative_factor(bars, known, date_column)
    adjusted = (
        bars.with_columns(cum.alias("_cum"))
        .join(total, on="symbol", how="left", maintain_order="left")
        .with_columns((pl.col("_total").fill_null(1.0) / pl.col("_cum")).alias("_factor"))
    )
    prices = [(pl.col(c) / pl.col("_factor")).alias(c) for c in _PRICE_COLUMNS if c in bars.columns]
    volume = []
    if "volume" in bars.columns:
        volume = [(pl.col("volume") * pl.col("_factor")).round(0).cast(bars.schema["volume"]).alias("volume")]
    return adjusted.with_columns(*prices, *volume).select(bars.columns)
