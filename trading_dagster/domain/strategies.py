"""Trading signals as configuration: a strategy is a kind plus parameters, evaluated on the indicators table.

Adding a strategy to the pipeline means adding a config entry, not code, as long as it is one of the known
kinds. Each kind is a small polars expression over the indicators of a session (and, for a cross, the
previous session), so the same function serves a one-day partition and a ten-year backfill, and a signal
for session D never reads a row after D.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import polars as pl

StrategyKind = Literal["sma_cross", "dip_52w", "rsi", "ml_filter"]
KINDS: tuple[str, ...] = get_args(StrategyKind)
PARAMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "sma_cross": ("fast", "slow"),
        "dip_52w": ("threshold_pct",),
        "rsi": ("lower", "upper"),
        "ml_filter": ("min_probability",),
    }
)
OPTIONAL_PARAMS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"sma_cross": MappingProxyType({"tie_band_pct": 0.0}), "ml_filter": MappingProxyType({"scale": 0.0})}
)
"""Params a kind may take, with their defaults (a spec keeps only those given: `spec.params.get(p, default)`)."""
SMA_PERIODS: tuple[int, ...] = (20, 50, 200)
"""The SMA periods the indicators table always carries (`sma_20`, `sma_50`, `sma_200`); a configured sma_cross
strategy adds its own (`sma_periods`): any whole number of sessions in [2, MAX_SMA_PERIOD]."""
MAX_SMA_PERIOD = 400
"""The longest SMA: the anchored computation's warm-up (`indicators.WARMUP` sessions before each block)."""

SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "symbol": pl.Utf8(),
    "strategy": pl.Utf8(),
    "side": pl.Utf8(),
    "strength": pl.Float64(),
    "reason": pl.Utf8(),
}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # names end up in client order ids: no spaces


APPROVALS = ("auto", "manual")
CADENCES = ("daily", "weekly")


@dataclass(frozen=True)
class StrategySpec:
    """One configured strategy. Validated on construction, so an invalid spec cannot exist.

    `params` is stored as a read-only mapping of floats: a spec is a value (hashable, comparable) and
    nothing downstream can mutate a running configuration.
    """

    name: str
    kind: StrategyKind
    params: Mapping[str, float]
    approval: str = "auto"  # "auto" | "manual": its live orders wait as pending_approval (decision 0005, section 5)
    cadence: str = "daily"  # "daily" | "weekly": a weekly strategy trades its scan session's signals only
    # ml_filter only: the strategy whose signals the model refines (decision 0007)
    refines: str | None = None
    # false: the strategy's signals only feed a refining strategy (an ml_filter), they are not traded
    trades: bool = True

    def __post_init__(self) -> None:
        if self.approval not in APPROVALS:
            raise ValueError(f"strategy {self.name!r}: approval must be one of {APPROVALS}, got {self.approval!r}")
        if self.cadence not in CADENCES:
            raise ValueError(f"strategy {self.name!r}: cadence must be one of {CADENCES}, got {self.cadence!r}")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"strategy name must match {_NAME.pattern!r}, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(
                f"strategy {self.name!r}: unknown kind {self.kind!r}; expected one of {list(KINDS)}"
            )
        if not isinstance(self.params, Mapping):
            raise ValueError(
                f"strategy {self.name!r}: params must be a mapping, got {type(self.params).__name__}"
            )
        expected = PARAMS[self.kind]
        optional = OPTIONAL_PARAMS.get(self.kind, {})
        unknown = sorted(set(self.params) - set(expected) - set(optional))
        missing = [p for p in expected if p not in self.params]
        if unknown:
            raise ValueError(
                f"strategy {self.name!r} ({self.kind}): unknown params {unknown}; expected {list(expected)}"
                + (f", optionally {list(optional)}" if optional else "")
            )
        if missing:
            raise ValueError(
                f"strategy {self.name!r} ({self.kind}): missing params {missing}; expected {list(expected)}"
            )
        if (self.kind == "ml_filter") != (self.refines is not None):
            raise ValueError(
                f"strategy {self.name!r}: "
                + ("an ml_filter needs refines = \"<the strategy it refines>\"" if self.kind == "ml_filter"
                   else f"refines is for ml_filter strategies only, not {self.kind}")
            )
        if self.refines is not None and (not isinstance(self.refines, str) or not _NAME.fullmatch(self.refines)):
            raise ValueError(f"strategy {self.name!r}: refines must be a strategy name, got {self.refines!r}")
        if not isinstance(self.trades, bool):
            raise ValueError(f"strategy {self.name!r}: trades must be true or false, got {self.trades!r}")
        values = {p: _number(self.name, p, self.params[p]) for p in expected}
        values |= {p: _number(self.name, p, self.params[p]) for p in optional if p in self.params}
        _check_ranges(self.name, self.kind, values)
        object.__setattr__(self, "params", MappingProxyType(values))

    def __hash__(self) -> int:
        return hash((self.name, self.kind, tuple(sorted(self.params.items())), self.refines, self.trades))


def _number(name: str, param: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"strategy {name!r}: param {param!r} must be a finite number, got {value!r}")
    return float(value)


def _check_ranges(name: str, kind: str, p: Mapping[str, float]) -> None:
    """The ranges that make each kind meaningful on the indicators table."""
    if kind == "sma_cross":
        for param in ("fast", "slow"):
            if p[param] != int(p[param]) or not 2 <= p[param] <= MAX_SMA_PERIOD:
                raise ValueError(
                    f"strategy {name!r}: {param}={p[param]:g} must be a whole number of sessions in "
                    f"[2, {MAX_SMA_PERIOD}]"
                )
        if p["fast"] >= p["slow"]:
            raise ValueError(f"strategy {name!r}: fast ({p['fast']:g}) must be < slow ({p['slow']:g})")
        if not 0 <= p.get("tie_band_pct", 0.0) < 10:
            raise ValueError(f"strategy {name!r}: tie_band_pct must be in [0, 10), got {p['tie_band_pct']:g}")
    elif kind == "dip_52w":
        if not 0 < p["threshold_pct"] < 100:
            raise ValueError(
                f"strategy {name!r}: threshold_pct must be in (0, 100), got {p['threshold_pct']:g}"
            )
    elif kind == "rsi" and not 0 < p["lower"] < p["upper"] < 100:
        raise ValueError(
            f"strategy {name!r}: rsi bounds need 0 < lower < upper < 100, got lower={p['lower']:g}, upper={p['upper']:g}"
        )
    elif kind == "ml_filter":
        if not 0 <= p["min_probability"] <= 1:
            raise ValueError(f"strategy {name!r}: min_probability must be in [0, 1], got {p['min_probability']:g}")
        if p.get("scale", 0.0) not in (0.0, 1.0):
            raise ValueError(f"strategy {name!r}: scale must be 0 (filter) or 1 (strength x probability)")


def parse_strategies(configs: Sequence[Mapping[str, Any]]) -> tuple[StrategySpec, ...]:
    """Strategy specs from plain config (YAML/JSON-shaped): `[{"name", "kind", "params": {...}}, ...]`.

    Names must be unique: they identify signals and orders downstream.
    """
    specs = []
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise ValueError(f"strategy #{i} must be a mapping with name, kind, params; got {config!r}")
        unknown = sorted(set(config) - {"name", "kind", "params", "approval", "cadence", "refines", "trades"})
        missing = [k for k in ("name", "kind", "params") if k not in config]
        if unknown or missing:
            raise ValueError(
                f"strategy #{i}: unknown keys {unknown}, missing keys {missing}; expected name, kind, params "
                "(and optionally approval, cadence, refines, trades)"
            )
        specs.append(
            StrategySpec(
                name=config["name"],
                kind=config["kind"],
                params=config["params"],
                approval=config.get("approval", "auto"),
                cadence=config.get("cadence", "daily"),
                refines=config.get("refines"),
                trades=config.get("trades", True),
            )
        )
    _check_unique_names(specs)
    _check_refines(specs)
    return tuple(specs)


def _check_refines(specs: Sequence[StrategySpec]) -> None:
    """Every ml_filter refines a configured strategy that is not itself an ml_filter."""
    kinds = {s.name: s.kind for s in specs}
    for s in specs:
        if s.refines is None:
            continue
        if s.refines not in kinds:
            raise ValueError(f"strategy {s.name!r} refines {s.refines!r}, which is not configured")
        if kinds[s.refines] == "ml_filter":
            raise ValueError(f"strategy {s.name!r} refines {s.refines!r}, another ml_filter: refine a signal strategy")


def _check_unique_names(specs: Sequence[StrategySpec]) -> None:
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"strategy names must be unique; repeated: {repeated}")


# The same three as the shipped trading_dagster.toml, so code and config defaults name signals alike.
DEFAULT_STRATEGIES: tuple[StrategySpec, ...] = parse_strategies(
    [
        {"name": "sma_20_50_cross", "kind": "sma_cross", "params": {"fast": 20, "slow": 50}},
        {"name": "dip_10pct_52w_high", "kind": "dip_52w", "params": {"threshold_pct": 10}},
        {"name": "rsi_30_70", "kind": "rsi", "params": {"lower": 30, "upper": 70}},
    ]
)


# ---------------------------------------------------------------- evaluation
# Scaling by a constant is written as a multiplication by its reciprocal, never `col / constant`: polars
# divides an n-row column by a scalar as `x * (1 / c)` but a 1-row column with a true division, so the
# same session would get a strength one ulp apart in a one-day run and in a range run.


_ROW = "_row"
"""`generate_signals`' row number of an indicators row in (session, symbol) order, carried through the
evaluators so the signals are put in (session, symbol, strategy) order by integers instead of strings."""


_PREV = "_prev"
"""`generate_signals`' row number in `indicators` of the same symbol's row on the previous session (null: none),
when `_previous_rows` can tell; a cross then reads its previous values by that number instead of a join."""


def _previous_rows(
    indicators: pl.DataFrame, first: int, height: int, sessions: Sequence[dt.date] | None
) -> pl.Series | None:
    """For rows `first` .. `first + height - 1` of `indicators` (strictly in (session, symbol) order), the row
    number of the same symbol on the previous session (the calendar's with `sessions`, else the previous session
    present in `indicators`), null where there is none: what a join on (symbol, previous session) finds. None
    when a session of `indicators` is off the calendar: then the join decides.

    In (symbol, session) order (the rows stably sorted by symbol) the only candidate is the row just before:
    no row lies between a session and the previous one."""
    days = indicators["session"].to_physical().to_numpy()
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])  # first row of each session
    distinct = days[starts]
    if sessions is None:
        previous_day = np.r_[np.iinfo(np.int32).min, distinct[:-1]]
    else:
        calendar = pl.Series(list(sessions), dtype=pl.Date).to_physical().to_numpy()
        at = np.searchsorted(calendar, distinct)
        if not np.array_equal(calendar[np.minimum(at, calendar.size - 1)], distinct):
            return None
        previous_day = np.where(at > 0, calendar[np.maximum(at - 1, 0)], np.iinfo(np.int32).min)
    previous_day = np.repeat(previous_day, np.diff(np.r_[starts, days.size]))
    symbols = indicators["symbol"]
    codes = symbols.cast(pl.Enum(symbols.unique())).to_physical().to_numpy()
    # a stable sort of small integers is a radix sort
    order = np.argsort(codes.astype(np.uint16) if codes.max(initial=0) < 2**16 else codes, kind="stable")
    before = np.empty(days.size, dtype=np.int64)  # the same symbol's row before, in (symbol, session) order
    before[order[1:]] = order[:-1]
    counts = np.bincount(codes)
    before[order[(np.cumsum(counts) - counts)[counts > 0]]] = -1  # a symbol's first row has none
    candidate = before[first : first + height]
    hit = (candidate >= 0) & (days[candidate] == previous_day[first : first + height])  # days[-1]: any day
    return pl.Series(_PREV, candidate).set(pl.Series(~hit), None)


def _row_of(frame: pl.DataFrame) -> list[str]:
    return [_ROW] if _ROW in frame.columns else []


def _in_order(frame: pl.DataFrame) -> bool:
    """True when `frame` is strictly increasing in (session, symbol): sorted as the indicators table is, and
    unique on the pair. One pass over neighbouring rows, no hashing of (symbol, session) keys."""
    if frame.height < 2:
        return True
    session, symbol = pl.col("session"), pl.col("symbol")
    later = (session > session.shift(1)) | ((session == session.shift(1)) & (symbol > symbol.shift(1)))
    return bool(frame.select(later.slice(1).all()).item())


def _fixed2(expr: pl.Expr) -> pl.Expr:
    """A number as text with exactly two decimals ("37.90"), in polars (no per-row Python): its whole cents
    (half-way cases as polars rounds them), signed, as a two-place decimal (which prints its two places, and
    "0.00" for a negative number that rounds to zero cents)."""
    cents = (expr.abs() * 100).round(0).cast(pl.Int64)
    signed = pl.when(expr < 0).then(-cents).otherwise(cents)
    return (signed.cast(pl.Decimal(38, 2)) / 100).cast(pl.Utf8)


def _with_previous_session(frame: pl.DataFrame, indicators: pl.DataFrame) -> pl.DataFrame:
    """Add `prev_session`: the session before each row's session among the sessions of `indicators`.

    The previous bar of a cross is the symbol's row on the previous *session*, not its previous row: a
    symbol that has no bar on the previous session gets no cross that day. That is what a one-session run
    (input = [previous session, D]) can see, so a range run must see the same.
    """
    if "prev_session" in frame.columns:  # from the exchange calendar (generate_signals' `sessions`)
        return frame
    days = indicators.select(pl.col("session").unique().sort())
    previous = days.with_columns(prev_session=pl.col("session").shift(1))
    return frame.join(previous, on="session", how="left")


def _sma_cross(spec: StrategySpec, current: pl.DataFrame, indicators: pl.DataFrame) -> pl.DataFrame:
    fast, slow = (f"sma_{int(spec.params[p])}" for p in ("fast", "slow"))
    if _PREV in current.columns:  # `_previous_rows`: the pair is a gather, and a row without one drops out below
        pairs = current.select(
            _ROW,
            "session",
            "symbol",
            fast,
            slow,
            fast_prev=indicators[fast].gather(current[_PREV]),
            slow_prev=indicators[slow].gather(current[_PREV]),
        )
    else:
        previous = indicators.select(
            "symbol",
            pl.col("session").alias("prev_session"),
            pl.col(fast).alias("fast_prev"),
            pl.col(slow).alias("slow_prev"),
        )
        # only the columns the cross reads go through the join (the table has ~25: most of the join's cost)
        wanted = [c for c in (_ROW, "session", "symbol", "prev_session", fast, slow) if c in current.columns]
        pairs = _with_previous_session(current.select(wanted), indicators).join(
            previous, on=["symbol", "prev_session"], how="inner"
        )
    # The tie band: a cross above needs fast > slow x (1 + band) after fast <= slow x (1 + band) the session
    # before; a cross below the mirror with (1 - band). Band 0 (the default): fast > slow after fast <= slow,
    # a tie counting as "not above". (vectorbt's crossed_above differs at the edges: an equal bar neither sets
    # nor clears its "was below", and the first bar after a gap never fires; trading_dagster_tests/reference.)
    # Two SMAs equal in decimals differ in their last float bit depending on how they were summed: on the full
    # shared dataset 93 such bars decide a cross by float noise (largest ~1e-13 relative) while the smallest
    # real gap is 1.2e-7, so a band of 1e-7 % makes the crosses independent of the arithmetic.
    band = spec.params.get("tie_band_pct", OPTIONAL_PARAMS["sma_cross"]["tie_band_pct"])
    up, down = (1.0, 1.0) if band == 0 else (1.0 + band / 100, 1.0 - band / 100)
    upper, upper_prev = pl.col(slow) * up, pl.col("slow_prev") * up
    lower, lower_prev = pl.col(slow) * down, pl.col("slow_prev") * down
    above = (pl.col("fast_prev") <= upper_prev) & (pl.col(fast) > upper)
    below = (pl.col("fast_prev") >= lower_prev) & (pl.col(fast) < lower)
    side = pl.when(above).then(pl.lit("buy")).when(below).then(pl.lit("sell"))
    direction = pl.when(above).then(pl.lit(" crossed above ")).otherwise(pl.lit(" crossed below "))
    return (
        pairs.with_columns(side=side)
        .filter(pl.col("side").is_not_null())
        .select(
            *_row_of(pairs),
            "session",
            "symbol",
            "side",
            # A cross is an event, not a degree: at the moment of crossing the gap is small by definition.
            strength=pl.lit(1.0),
            reason=pl.concat_str(
                [
                    pl.lit(f"{fast} "),
                    _fixed2(pl.col(fast)),
                    direction,
                    pl.lit(f"{slow} "),
                    _fixed2(pl.col(slow)),
                ]
            ),
        )
    )


def _dip_52w(spec: StrategySpec, current: pl.DataFrame, indicators: pl.DataFrame) -> pl.DataFrame:
    threshold = spec.params["threshold_pct"]
    pct = pl.col("pct_below_high_52w")
    read = [*_row_of(current), "session", "symbol", "close", "pct_below_high_52w", "high_52w"]
    return current.select(read).filter(pct >= threshold).select(
        *_row_of(current),
        "session",
        "symbol",
        side=pl.lit("buy"),
        strength=pl.min_horizontal(pl.lit(1.0), pct * (1 / (2 * threshold))),
        reason=pl.concat_str(
            [
                pl.lit("close "),
                _fixed2(pl.col("close")),
                pl.lit(" is "),
                _fixed2(pct),
                pl.lit("% below the 52-week high "),
                _fixed2(pl.col("high_52w")),
                pl.lit(f" (threshold {threshold:g}%)"),
            ]
        ),
    )


def _rsi(spec: StrategySpec, current: pl.DataFrame, indicators: pl.DataFrame) -> pl.DataFrame:
    lower, upper = spec.params["lower"], spec.params["upper"]
    rsi = pl.col("rsi_14")
    return (
        current.select(*_row_of(current), "session", "symbol", "rsi_14")
        .filter((rsi < lower) | (rsi > upper))
        .select(
            *_row_of(current),
            "session",
            "symbol",
            side=pl.when(rsi < lower).then(pl.lit("buy")).otherwise(pl.lit("sell")),
            # How far past the bound, as a share of the room beyond it: 1 at RSI 0 or 100.
            strength=pl.when(rsi < lower)
            .then((lower - rsi) * (1 / lower))
            .otherwise((rsi - upper) * (1 / (100 - upper))),
            reason=pl.concat_str(
                [
                    pl.lit("rsi_14 "),
                    _fixed2(rsi),
                    pl.when(rsi < lower)
                    .then(pl.lit(f" below {lower:g}"))
                    .otherwise(pl.lit(f" above {upper:g}")),
                ]
            ),
        )
        .with_columns(pl.col("strength").clip(0.0, 1.0))
    )


_EVALUATORS: Mapping[str, Callable[[StrategySpec, pl.DataFrame, pl.DataFrame], pl.DataFrame]] = (
    MappingProxyType({"sma_cross": _sma_cross, "dip_52w": _dip_52w, "rsi": _rsi})
)


def sma_periods(specs: Sequence[StrategySpec]) -> tuple[int, ...]:
    """Every SMA period the indicators table must carry for `specs`: `SMA_PERIODS` and the crosses' own, sorted."""
    periods = set(SMA_PERIODS)
    for spec in specs:
        if spec.kind == "sma_cross":
            periods |= {int(spec.params["fast"]), int(spec.params["slow"])}
    return tuple(sorted(periods))


def required_columns(spec: StrategySpec) -> tuple[str, ...]:
    """Indicator columns a strategy reads (beyond symbol and session); an ml_filter reads its base's."""
    if spec.kind == "sma_cross":
        return tuple(f"sma_{int(spec.params[p])}" for p in ("fast", "slow"))
    if spec.kind == "dip_52w":
        return ("close", "high_52w", "pct_below_high_52w")
    if spec.kind == "ml_filter":
        return ()
    return ("rsi_14",)


PROBABILITY_SCHEMA: dict[str, pl.DataType] = {"symbol": pl.Utf8(), "session": pl.Date(), "probability": pl.Float64()}


def refine_signals(base: pl.DataFrame, probabilities: pl.DataFrame, spec: StrategySpec) -> pl.DataFrame:
    """An ml_filter's signals from its base strategy's (`base`: session, symbol, side, strength, reason) and the
    model's probability that each (symbol, session) rises over the label horizon (`PROBABILITY_SCHEMA`).

    A buy is kept when its probability is at least `min_probability` (a buy the model could not score, no
    probability, is dropped); with `scale` = 1 its strength becomes strength x probability. Sells pass as they
    are: the model never keeps a position from being closed. The reason says the probability."""
    floor = spec.params["min_probability"]
    scaled = spec.params.get("scale", 0.0) == 1.0
    p = pl.col("probability")
    joined = base.join(probabilities.select("symbol", "session", "probability"), on=["symbol", "session"], how="left")
    is_buy = pl.col("side") == "buy"
    return (
        joined.filter(~is_buy | (p.is_not_null() & (p >= floor)))
        .with_columns(
            strength=pl.when(is_buy & scaled).then((pl.col("strength") * p).clip(0.0, 1.0)).otherwise("strength"),
            reason=pl.when(is_buy)
            .then(pl.concat_str([pl.col("reason"), pl.lit("; model p="), _fixed2(p), pl.lit(f" >= {floor:g}")]))
            .otherwise("reason"),
        )
        .drop("probability")
    )


def generate_signals(
    indicators: pl.DataFrame,
    strategies: Sequence[StrategySpec],
    out_start: dt.date,
    out_end: dt.date,
    sessions: Sequence[dt.date] | None = None,
    probabilities: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Signals of every traded strategy for the sessions in [out_start, out_end], sorted (session, symbol,
    strategy).

    `indicators` is the indicators table for [previous session of out_start, out_end] (more is allowed,
    and ignored). A signal for session D reads D's row and, for a cross, the symbol's row on the session
    before D, never a later row. A null indicator gives no signal.

    `sessions`: the exchange calendar. With it, "the session before D" is the calendar's, also when no row
    has it (a data outage: no indicators that day), so a cross never spans a missing session and a range
    run equals day-by-day runs across an outage; without it, the sessions present in `indicators`.

    `probabilities` (`PROBABILITY_SCHEMA`): the model's, for the ml_filter strategies (`refine_signals`);
    required when one is configured. A strategy with `trades = false` is evaluated (for its refiners) but its
    own signals are not in the result.
    """
    if out_start > out_end:
        raise ValueError(f"out_start {out_start} is after out_end {out_end}")
    _check_unique_names(strategies)
    _check_refines(strategies)
    needed = {"symbol", "session"}.union(*(required_columns(s) for s in strategies))
    missing = sorted(needed - set(indicators.columns))
    if missing:
        raise ValueError(f"indicators lack columns {missing} needed by the strategies")
    refiners = [s.name for s in strategies if s.kind == "ml_filter"]
    if refiners and probabilities is None:
        raise ValueError(f"strategies {refiners} (ml_filter) need the model's probabilities")
    # The indicators table's order: then unique, and the output order is free. A whole table in that order has
    # the window's rows as one slice of it (no copy), and a cross finds its previous session's rows by position.
    whole = _in_order(indicators)
    read = indicators.select([c for c in indicators.columns if c in needed])  # the table has ~25 columns
    if whole:
        first = int(indicators["session"].search_sorted(out_start, side="left"))
        current = read.slice(first, int(indicators["session"].search_sorted(out_end, side="right")) - first)
    else:
        current = read.filter(pl.col("session").is_between(out_start, out_end))
    ordered = whole or _in_order(current)
    if not ordered and current.height != current.n_unique(subset=["symbol", "session"]):
        raise ValueError("indicators are not unique on (symbol, session)")
    if ordered:
        current = current.with_row_index(_ROW)
    previous = None
    if whole and current.height and any(spec.kind == "sma_cross" for spec in strategies):
        previous = _previous_rows(indicators, first, current.height, sessions)
    if previous is not None:
        current = current.with_columns(previous)
    elif sessions is not None:
        days = pl.Series("session", list(sessions), dtype=pl.Date)
        calendar = pl.DataFrame({"session": days, "prev_session": days.shift(1)})
        current = current.join(calendar, on="session", how="left")
    fired = {
        spec.name: _EVALUATORS[spec.kind](spec, current, indicators)
        for spec in strategies
        if spec.kind != "ml_filter"
    }
    rank = {name: i for i, name in enumerate(sorted(spec.name for spec in strategies))}
    frames = [
        (
            refine_signals(fired[spec.refines], probabilities, spec)  # type: ignore[arg-type,index]
            if spec.kind == "ml_filter"
            else fired[spec.name]
        ).select(
            "session", "symbol", strategy=pl.lit(spec.name), side="side", strength="strength", reason="reason",
            **({"_strategy": pl.lit(rank[spec.name], pl.Int32), _ROW: _ROW} if ordered else {}),
        )
        for spec in strategies
        if spec.trades
    ]
    if not frames:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    signals = pl.concat(frames)
    if ordered:  # row number = (session, symbol) order; strategy ranks = name order: one integer key
        key = pl.col(_ROW).cast(pl.UInt64) * len(rank) + pl.col("_strategy").cast(pl.UInt64)
        return signals.sort(key).select(list(SIGNAL_SCHEMA)).cast(SIGNAL_SCHEMA)
    return signals.cast(SIGNAL_SCHEMA).sort("session", "symbol", "strategy")


def keep_cadence(
    signals: pl.DataFrame, specs: Sequence[StrategySpec], is_scan_session: Callable[[dt.date], bool]
) -> pl.DataFrame:
    """The signals each strategy trades: all of a daily strategy's, a weekly strategy's on its week's scan
    session only (`is_scan_session`, e.g. `TradingCalendar.scan_session("weekly", weekday, ...)`). The same
    rule in the backtest and the trading book, so a weekly strategy backtests as it trades."""
    weekly = [s.name for s in specs if s.cadence == "weekly"]
    if not weekly or signals.is_empty():
        return signals
    days = signals.filter(pl.col("strategy").is_in(weekly))["session"].unique().to_list()
    scans = [d for d in days if is_scan_session(d)]
    return signals.filter(~pl.col("strategy").is_in(weekly) | pl.col("session").is_in(scans))
