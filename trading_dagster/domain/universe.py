"""The trading universe: a list of symbols and/or a liquidity rule (median dollar volume), point in time.

Two parts, applied at two places:

* **Symbols** (`[universe] symbols`): which tickers enter the pipeline at all. They are applied where bars
  come in, by the market-data source (the file source and Alpaca alike), so nothing downstream sees the
  others.
* **Liquidity rule** (`[universe] min_median_dollar_volume`, `liquidity_window`): a symbol is tradeable on
  session D only if the median of close x volume over its last `liquidity_window` bars up to D is at least
  the minimum. The bars are the symbol's own cleaned rows (a quarantined or missing bar is skipped, never
  counted as zero), and they must all lie within the `2 x liquidity_window` sessions ending at D: a few
  missing bars (an outage day, a quarantined glitch) do not reset a symbol's history, but a symbol that has
  been absent for most of that span has none. Without that history the median is null and the symbol is
  not tradeable (never a guess). Nothing after D is read, so D's verdict never changes when later data
  arrives. A minimum of 0 turns the rule off. The rule gates entries: buy signals outside it are dropped,
  sells pass (`apply_liquidity_rule`), so a position in a stock that turned illiquid stays closable.

Where the median is computed: in the signals asset, from a lookback of cleaned prices, not as a column of
the indicators table. The rule is trading configuration, like the strategies that read the indicators. As
an indicators column its window would be baked into stored indicator rows: change `liquidity_window` and
signals would silently compare the new minimum with medians over the old window until someone
re-materialized ten years of indicators. Computed where it is applied, both the minimum and the window are
read from the same config in the same run, a config change needs only signals re-run, and the indicators
table stays a function of prices alone: its schema, GX suite and TA-Lib reference tests do not change. The
cost is one more lookback read of four cleaned-price columns (symbol, session, close, volume;
`LIQUIDITY_LOOKBACK_SESSIONS` sessions before the window), made even with the rule off because Dagster loads
every input: ~0.2 s and ~95 MB for 3.8 M rows (a ten-year range of 1,900 symbols), plus ~1 s for the rolling
median when the rule is on (measured on synthetic frames of that size on the 2-core development machine).

A one-day run equals a range run: D's median depends only on the bars in the `2 x window` sessions ending
at D, and the signals asset reads at least that much before its window (`required_input_start`).

No Dagster import here; polars only.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

MEDIAN_DOLLAR_VOLUME = "median_dollar_volume"
DEFAULT_LIQUIDITY_WINDOW = 60
MAX_LIQUIDITY_WINDOW = 252
"""A year of sessions: the longest window the rule takes."""
LIQUIDITY_LOOKBACK_SESSIONS = 2 * MAX_LIQUIDITY_WINDOW - 1
"""Sessions before a window's first session that the rule may read (503): the span of the longest window."""

LIQUIDITY_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.Utf8(),
    "session": pl.Date(),
    MEDIAN_DOLLAR_VOLUME: pl.Float64(),
}


@dataclass(frozen=True)
class UniverseRule:
    """The configured universe. Validated on construction, so an invalid rule cannot exist.

    `symbols`: upper-case tickers, () for every symbol the source has. `min_median_dollar_volume`: USD,
    0 = no liquidity rule. `liquidity_window`: bars in the median, 1..MAX_LIQUIDITY_WINDOW.
    """

    symbols: tuple[str, ...] = ()
    min_median_dollar_volume: float = 0.0
    liquidity_window: int = DEFAULT_LIQUIDITY_WINDOW

    def __post_init__(self) -> None:
        if isinstance(self.symbols, str) or not all(isinstance(s, str) for s in self.symbols):
            raise ValueError(f"symbols must be a sequence of tickers, got {self.symbols!r}")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        minimum = self.min_median_dollar_volume
        if isinstance(minimum, bool) or not isinstance(minimum, int | float) or not math.isfinite(minimum):
            raise ValueError(f"min_median_dollar_volume must be a number of USD, got {minimum!r}")
        if minimum < 0:
            raise ValueError(
                f"min_median_dollar_volume must be >= 0 (0 = no liquidity rule), got {minimum!r}"
            )
        object.__setattr__(self, "min_median_dollar_volume", float(minimum))
        window = self.liquidity_window
        if isinstance(window, bool) or not isinstance(window, int):
            raise ValueError(f"liquidity_window must be a whole number of sessions, got {window!r}")
        if not 1 <= window <= MAX_LIQUIDITY_WINDOW:
            raise ValueError(f"liquidity_window must be in 1..{MAX_LIQUIDITY_WINDOW} sessions, got {window}")

    @property
    def liquidity_rule_on(self) -> bool:
        return self.min_median_dollar_volume > 0


def span_sessions(window: int) -> int:
    """Sessions, ending at D, that the last `window` bars of a symbol must lie within (2 x window)."""
    return 2 * window


def required_input_start(sessions: Sequence[dt.date], out_start: dt.date, window: int) -> dt.date:
    """First session the input prices must cover for medians from `out_start` on (the calendar's first
    session when the span reaches before it). `sessions` is the full ordered session calendar."""
    i = bisect.bisect_left(sessions, out_start)
    if i == len(sessions):
        raise ValueError(f"{out_start} is after the last session of the calendar ({sessions[-1]})")
    return sessions[max(0, i - (span_sessions(window) - 1))]


def median_dollar_volume(
    prices: pl.DataFrame, window: int, sessions: Sequence[dt.date], out_start: dt.date, out_end: dt.date
) -> pl.DataFrame:
    """The rolling median of close x volume per symbol, for every bar of `prices` in [out_start, out_end].

    `prices` holds cleaned bars (at least symbol, session, close, volume; any order, one row per symbol and
    session) from `required_input_start(sessions, out_start, window)` on; `sessions` is the full ordered
    session calendar. The value on D is the median over the symbol's last `window` bars up to D, null when
    it has fewer than `window` bars within the `2 x window` sessions ending at D. Columns
    `LIQUIDITY_SCHEMA`, sorted by (session, symbol).
    """
    if out_start > out_end:
        raise ValueError(f"out_start {out_start} is after out_end {out_end}")
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_LIQUIDITY_WINDOW:
        raise ValueError(f"window must be an int in 1..{MAX_LIQUIDITY_WINDOW}, got {window!r}")
    missing = [c for c in ("symbol", "session", "close", "volume") if c not in prices.columns]
    if missing:
        raise ValueError(
            f"prices lack columns {missing}; expected cleaned prices (symbol, session, close, volume)"
        )
    bars = prices.select(
        pl.col("symbol").cast(pl.Utf8),
        pl.col("session").cast(pl.Date),
        (pl.col("close").cast(pl.Float64) * pl.col("volume").cast(pl.Float64)).alias("_dollar_volume"),
    )
    if bars.null_count().sum_horizontal().item():
        raise ValueError("cleaned prices must not hold nulls in symbol, session, close or volume")
    # the first session of the span ending at each calendar session (null: the span reaches before the
    # calendar's first session, so every bar the calendar can hold is inside it)
    span = pl.DataFrame({"session": list(sessions)}, schema={"session": pl.Date}).with_columns(
        pl.col("session").shift(span_sessions(window) - 1).fill_null(sessions[0]).alias("_span_start")
    )
    by_symbol = bars.sort("symbol", "session").join(span, on="session", how="left", maintain_order="left")
    repeated = by_symbol.select(
        (
            (pl.col("symbol") == pl.col("symbol").shift(1))
            & (pl.col("session") == pl.col("session").shift(1))
        ).any()
    ).item()
    if repeated:
        raise ValueError("prices are not unique on (symbol, session)")
    if by_symbol["_span_start"].null_count():
        off = by_symbol.filter(pl.col("_span_start").is_null()).row(0, named=True)
        raise ValueError(f"prices hold a bar off the session calendar: {off['symbol']} on {off['session']}")
    first_bar = pl.col("session").shift(window - 1).over("symbol")  # the oldest bar of the window
    median = pl.col("_dollar_volume").rolling_median(window_size=window, min_samples=window).over("symbol")
    return (
        by_symbol.with_columns(
            pl.when(first_bar >= pl.col("_span_start"))
            .then(median)
            .otherwise(None)
            .alias(MEDIAN_DOLLAR_VOLUME)
        )
        .filter(pl.col("session").is_between(out_start, out_end))
        .select(list(LIQUIDITY_SCHEMA))
        .sort("session", "symbol")
    )


def tradeable(liquidity: pl.DataFrame, rule: UniverseRule) -> pl.DataFrame:
    """`liquidity` (from `median_dollar_volume`) with a boolean `tradeable`: median >= the minimum; a null
    median is not tradeable. With the rule off every row is tradeable."""
    if not rule.liquidity_rule_on:
        return liquidity.with_columns(tradeable=pl.lit(True))
    ok = (pl.col(MEDIAN_DOLLAR_VOLUME) >= rule.min_median_dollar_volume).fill_null(False)
    return liquidity.with_columns(tradeable=ok)


def apply_liquidity_rule(
    signals: pl.DataFrame, liquidity: pl.DataFrame, rule: UniverseRule
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The signals the universe allows, and counts of what the rule excluded.

    The rule gates entries: a buy signal passes only where its (symbol, session) is tradeable, and a
    signal with no row in `liquidity` is not tradeable (no bar, no median). Every other signal (a sell)
    passes: a position in a stock that has become illiquid must stay closable. Counts, for metadata:
    `universe_symbol_sessions` (rows judged), `universe_excluded_symbol_sessions`, of which
    `universe_excluded_no_history` (null median: not `window` bars of history), `universe_excluded_symbols`
    (symbols excluded on at least one session) and `universe_excluded_signals`. With the rule off the
    signals come back unchanged and every count is 0.
    """
    if not rule.liquidity_rule_on:
        return signals, dict.fromkeys(
            (
                "universe_symbol_sessions",
                "universe_excluded_symbol_sessions",
                "universe_excluded_no_history",
                "universe_excluded_symbols",
                "universe_excluded_signals",
            ),
            0,
        )
    verdicts = tradeable(liquidity, rule)
    allowed = verdicts.filter("tradeable").select("symbol", "session")
    allowed_buy = pl.struct("session", "symbol").is_in(allowed.select(pl.struct("session", "symbol")).to_series().implode())
    kept = signals.filter((pl.col("side") != "buy") | allowed_buy)
    excluded = verdicts.filter(~pl.col("tradeable"))
    return kept, {
        "universe_symbol_sessions": verdicts.height,
        "universe_excluded_symbol_sessions": excluded.height,
        "universe_excluded_no_history": excluded[MEDIAN_DOLLAR_VOLUME].null_count(),
        "universe_excluded_symbols": excluded["symbol"].n_unique(),
        "universe_excluded_signals": signals.height - kept.height,
    }
