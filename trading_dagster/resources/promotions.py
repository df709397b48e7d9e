"""The promotions journal as a resource (research/promotion.py): promote_job appends, the portal reads."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from trading_dagster.research.promotion import Promotion, append_promotion, apply_promotions, read_promotions
from trading_dagster.resources.configured import StrategyConfig


class PromotionJournalResource(dg.ConfigurableResource):
    """The promotions journal and the configuration file's strategies (before promotions), from the settings."""

    path: str = Field(description="the journal (JSON lines, append-only)")
    config_strategies: list[StrategyConfig] = Field(
        default=[], description="[[strategies]] of the configuration file, before promotions"
    )

    def read(self) -> list[Promotion]:
        return read_promotions(Path(self.path))

    def append(self, promotion: Promotion) -> None:
        append_promotion(Path(self.path), promotion)

    def status(self) -> list[dict[str, str]]:
        """One row per strategy ever promoted (latest promotion): its params, who, when, from where, and
        whether it is in force or superseded by an edit of the configuration file (and why)."""
        promotions = self.read()
        applied = apply_promotions([s.model_dump() for s in self.config_strategies], promotions)
        latest = {p.strategy: p for p in promotions}
        return [
            {
                "strategy": p.strategy,
                "params": ", ".join(f"{k}={v:g}" for k, v in p.params.items()),
                "promoted_by": p.promoted_by,
                "promoted_at": p.promoted_at,
                "source": f"{p.source.get('asset', '?')} rank {p.source.get('rank', '?')} "
                f"(run {str(p.source.get('run_id', '?'))[:8]})",
                "status": "in force" if name in applied.applied else f"superseded: {applied.superseded.get(name, '')}",
            }
            for name, p in sorted(latest.items())
        ]
