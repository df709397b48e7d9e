"""Promoting a researched parameter set into the live strategy configuration (issue 11, decision 0007).

A promotion is one line of an append-only journal (JSON lines, `$TRADING_DAGSTER_DATA_DIR/research/
promotions.jsonl`): who promoted which parameters into which strategy, from which sweep (its asset, run and
time, the row's rank and figures), what the strategy's params were before, and why. The user's TOML is never
edited (its comments and layout stay theirs); when the settings load, `apply_promotions` lays the latest
promotion of each strategy over its `[[strategies]]` entry, so every run launched afterwards trades it.

A promotion applies only while the TOML still says what it said when the promotion was made (the same kind
and params): edit the strategy's params in the TOML and the TOML wins again, the promotion being reported as
superseded, never silently mixed with the edit. Every earlier promotion stays in the journal: nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROMOTABLE: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "sma_sweep": ("sma_cross", ("fast", "slow")),
    "rsi_sweep": ("rsi", ("lower", "upper")),
    "dip_sweep": ("dip_52w", ("threshold_pct",)),
}
"""Sweep table -> (the strategy kind it sweeps, its param columns, named as the strategy's params)."""


class PromotionError(ValueError):
    """A promotion that cannot be made or a journal that cannot be read, with what and where."""


@dataclass(frozen=True)
class Promotion:
    promoted_at: str  # ISO time, UTC
    promoted_by: str
    strategy: str
    kind: str
    params: dict[str, float]  # the strategy's params after the promotion (all of them)
    previous_params: dict[str, float]  # its params in force just before
    config_params: dict[str, float]  # its params in the TOML at the time (the promotion applies while unchanged)
    source: dict[str, Any] = field(default_factory=dict)  # the sweep: asset, run_id, materialized_at, rank, figures
    reason: str = ""
    run_id: str = ""  # the promotion's own run

    def describe(self) -> str:
        def fmt(p: Mapping[str, float]) -> str:
            return ", ".join(f"{k} {v:g}" for k, v in p.items())

        where = self.source.get("asset", "?")
        rank = self.source.get("rank")
        return (
            f"{self.promoted_by} promoted {self.strategy} ({self.kind}) from {fmt(self.previous_params)} to "
            f"{fmt(self.params)}" + (f", rank {rank} of {where}" if rank is not None else f" from {where}")
            + f" (run {str(self.source.get('run_id', '?'))[:8]}) at {self.promoted_at}"
            + (f": {self.reason}" if self.reason else "")
        )


def _floats(params: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in params.items()}


def promote(
    strategies: Sequence[Mapping[str, Any]],
    config_strategies: Sequence[Mapping[str, Any]],
    strategy: str,
    kind: str,
    new_params: Mapping[str, Any],
    *,
    promoted_by: str,
    source: Mapping[str, Any],
    reason: str = "",
    run_id: str = "",
    now: dt.datetime | None = None,
) -> Promotion:
    """The promotion of `new_params` into `strategy` (a name among `strategies`, the configuration in force;
    `config_strategies`: the TOML's, before promotions). The new params replace those they name and keep the
    strategy's others (e.g. a cross's `tie_band_pct`); the result must be a valid strategy."""
    from trading_dagster.domain.strategies import StrategySpec

    who = (promoted_by or "").strip()
    if not who:
        raise PromotionError("promoted_by is required: the name of the person promoting (it is recorded)")
    current = {s["name"]: s for s in strategies}
    if strategy not in current:
        raise PromotionError(
            f"no strategy {strategy!r} in the configuration; configured: {sorted(current) or 'none'}"
        )
    if current[strategy]["kind"] != kind:
        raise PromotionError(
            f"strategy {strategy!r} is a {current[strategy]['kind']} strategy; these params are of {kind}"
        )
    previous = _floats(current[strategy].get("params", {}))
    params = previous | _floats(new_params)
    try:
        StrategySpec(name=strategy, kind=kind, params=params)  # type: ignore[arg-type]
    except ValueError as exc:
        raise PromotionError(f"the promoted params are not valid for {strategy!r}: {exc}") from exc
    config = {s["name"]: s for s in config_strategies}.get(strategy)
    if config is None or config["kind"] != kind:
        raise PromotionError(f"strategy {strategy!r} ({kind}) is not in the configuration file")
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return Promotion(
        promoted_at=when.isoformat(timespec="seconds"),
        promoted_by=who,
        strategy=strategy,
        kind=kind,
        params=params,
        previous_params=previous,
        config_params=_floats(config.get("params", {})),
        source=dict(source),
        reason=reason.strip(),
        run_id=run_id,
    )


def append_promotion(path: Path, promotion: Promotion) -> None:
    """Append one line to the journal (created with its folder), flushed to disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(promotion), sort_keys=True, default=str) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_promotions(path: Path | None) -> list[Promotion]:
    """Every promotion of the journal, oldest first ([] when there is no journal). A line that is not a
    promotion is an error naming the file and the line: a damaged journal must not silently drop one."""
    if path is None or not path.exists():
        return []
    out = []
    names = set(Promotion.__dataclass_fields__)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not {"strategy", "kind", "params"} <= set(record):
                raise ValueError("not a promotion record")
            unknown = sorted(set(record) - names)
            if unknown:
                raise ValueError(f"unknown fields {unknown}")
            out.append(Promotion(**record))
        except (ValueError, TypeError) as exc:
            raise PromotionError(f"{path}, line {number}: {exc}") from exc
    return out


@dataclass(frozen=True)
class AppliedPromotions:
    strategies: tuple[dict[str, Any], ...]  # the configuration in force
    applied: dict[str, Promotion]  # strategy -> the promotion in force
    superseded: dict[str, str]  # strategy -> why its latest promotion does not apply


def apply_promotions(
    config_strategies: Sequence[Mapping[str, Any]], promotions: Sequence[Promotion]
) -> AppliedPromotions:
    """The TOML's strategies with the latest promotion of each laid over it, while the TOML still holds the
    kind and params that promotion was made on (else the TOML wins and the reason is in `superseded`)."""
    latest: dict[str, Promotion] = {}
    for p in promotions:
        latest[p.strategy] = p
    strategies, applied, superseded = [], {}, {}
    for s in config_strategies:
        entry = dict(s)
        p = latest.get(entry["name"])
        if p is not None:
            now = _floats(entry.get("params", {}))
            if p.kind != entry["kind"]:
                superseded[p.strategy] = f"the configuration file made it a {entry['kind']} strategy since"
            elif now != p.config_params:
                superseded[p.strategy] = (
                    f"the configuration file changed its params since (then {p.config_params}, now {now})"
                )
            else:
                entry["params"] = dict(p.params)
                applied[p.strategy] = p
        strategies.append(entry)
    for name in latest:
        if name not in {s["name"] for s in config_strategies}:
            superseded[name] = "the strategy is no longer in the configuration file"
    return AppliedPromotions(tuple(strategies), applied, superseded)
