"""Promote a swept parameter set into the live strategy configuration, from the UI (issue 11, decision 0007).

`promote_job` (launchpad config: the strategy, the sweep, the rank or the params, your name, why) reads the
latest materialization of the sweep (`research/sma_sweep`, `rsi_sweep` or `dip_sweep`: its run and time, its
conventions) and the chosen row of its table, and appends one promotion to the journal
(`research/promotion.py`). Each promotion is also a materialization of `research/promotions`, so the asset's
history in the UI is the list of who promoted what from which sweep, and when.

The configuration file is not edited: the settings lay the latest promotion over it when they load, so every
run launched after the promotion trades the new params; the UI's own view of the configuration (the
launchpad's defaults, `portal/strategy_config`) shows them after the code location is reloaded
(Deployment > Reload, or restarting `trading-dagster ui`).
"""

import math
from typing import Any

import dagster as dg
from pydantic import Field

from trading_dagster.assets.portal import WarehouseReader
from trading_dagster.research.promotion import PROMOTABLE, Promotion, PromotionError, promote
from trading_dagster.resources.configured import TradingConfigResource
from trading_dagster.resources.promotions import PromotionJournalResource

PROMOTIONS_KEY = dg.AssetKey(["research", "promotions"])
PROMOTIONS_ASSET = dg.AssetSpec(
    PROMOTIONS_KEY,
    group_name="research",
    description="Promotions of researched parameters into the live strategy configuration: each "
    "materialization is one promotion made by promote_job (who, which strategy, from which params to which, "
    "from which sweep run and rank, why). The journal is $TRADING_DAGSTER_DATA_DIR/research/promotions.jsonl; "
    "the settings apply the latest promotion per strategy while trading_dagster.toml still holds the params it "
    "was made on.",
    kinds={"python"},
)


class PromoteConfig(dg.Config):
    strategy: str = Field(description="the configured strategy to change (its name in trading_dagster.toml)")
    sweep: str = Field(
        default="sma_sweep", description=f"the sweep to promote from: one of {', '.join(PROMOTABLE)}"
    )
    rank: int = Field(default=1, description="the row of the sweep's table by Sharpe rank (1 = the best)")
    params: dict[str, float] | None = Field(
        default=None,
        description="instead of a rank: the params to promote, e.g. {fast: 20, slow: 120}; they must be a row of "
        "the sweep's table",
    )
    promoted_by: str = Field(description="your name: recorded with the promotion")
    reason: str = Field(default="", description="why: recorded with the promotion")


def _fail(message: str) -> dg.Failure:
    return dg.Failure(description=message, allow_retries=False)


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x


def chosen_row(table: Any, columns: tuple[str, ...], rank: int, params: dict[str, float] | None) -> dict[str, Any]:
    """The sweep table's row with that rank, or whose param columns equal `params` (all of them named)."""
    if params is not None:
        if set(params) != set(columns):
            raise PromotionError(f"params must name exactly {list(columns)}, got {sorted(params)}")
        rows = [r for r in table.iter_rows(named=True) if all(float(r[c]) == float(params[c]) for c in columns)]
        if not rows:
            raise PromotionError(f"no row of the sweep has {params}: promote a swept set")
        return rows[0]
    rows = [r for r in table.iter_rows(named=True) if r["rank"] == rank]
    if not rows:
        raise PromotionError(f"the sweep has no rank {rank} (ranks 1..{table.height})")
    return rows[0]


EXIT_COLUMNS = ("take_profit_pct", "stop_loss_pct")


def check_promotable(row: dict[str, Any]) -> None:
    """A row swept with exits (the dip sweep's take-profit / stop-loss grid) cannot be promoted into a strategy:
    exits are `[risk]` settings of every strategy, not a strategy's params, so its figures would not be the
    promoted strategy's."""
    exits = {c: row[c] for c in EXIT_COLUMNS if row.get(c) is not None}
    if exits:
        raise PromotionError(
            f"this row was swept with exits {exits}; exits are [risk] settings (stop_loss_pct, take_profit_pct) "
            "of every strategy, not params of one: promote a row swept without exits, or set the exits in [risk]"
        )


@dg.op(description="Promote a sweep's parameter set into a strategy of the live configuration (journal + event).")
def promote_op(
    context: dg.OpExecutionContext,
    config: PromoteConfig,
    warehouse: WarehouseReader,
    trading_config: TradingConfigResource,
    promotions: PromotionJournalResource,
) -> None:
    if config.sweep not in PROMOTABLE:
        raise _fail(f"sweep must be one of {list(PROMOTABLE)}, not {config.sweep!r}")
    kind, columns = PROMOTABLE[config.sweep]
    sweep_key = dg.AssetKey(["research", config.sweep])
    event = context.instance.get_latest_materialization_event(sweep_key)
    if event is None or not warehouse.has_table("research", config.sweep):
        raise _fail(f"{sweep_key.to_user_string()} has not been materialized: launch its sweep first")
    table = warehouse.query(f"select * from research.{config.sweep}")  # noqa: S608 - a PROMOTABLE name
    try:
        row = chosen_row(table, columns, config.rank, config.params)
        check_promotable(row)
        figures = {k: _finite(row[k]) for k in ("sharpe", "total_return", "max_drawdown", "trades") if k in row}
        materialization = event.asset_materialization
        meta = materialization.metadata if materialization is not None else {}
        source = {
            "asset": sweep_key.to_user_string(),
            "run_id": event.run_id,
            "materialized_at": event.timestamp,
            "rank": int(row["rank"]),
            **figures,
            "conventions": getattr(meta.get("conventions"), "value", None),
        }
        promotion = promote(
            [s.model_dump() for s in trading_config.strategies],
            [s.model_dump() for s in promotions.config_strategies],
            config.strategy,
            kind,
            {c: float(row[c]) for c in columns},
            promoted_by=config.promoted_by,
            source=source,
            reason=config.reason,
            run_id=context.run_id,
        )
    except PromotionError as exc:
        raise _fail(str(exc)) from exc
    user = context.run.tags.get("dagster/user")
    if user and user != promotion.promoted_by:  # a deployment with logins says who pressed the button too
        promotion = Promotion(**{**promotion.__dict__, "promoted_by": f"{promotion.promoted_by} ({user})"})
    promotions.append(promotion)
    context.log.info(promotion.describe())
    context.log_event(
        dg.AssetMaterialization(
            asset_key=PROMOTIONS_KEY,
            description=promotion.describe(),
            metadata={
                "strategy": promotion.strategy,
                "kind": promotion.kind,
                "params": dg.MetadataValue.json(promotion.params),
                "previous_params": dg.MetadataValue.json(promotion.previous_params),
                "promoted_by": promotion.promoted_by,
                "reason": promotion.reason,
                "sweep": sweep_key.to_user_string(),
                "sweep_run": dg.MetadataValue.dagster_run(event.run_id),
                "rank": int(row["rank"]),
                "sharpe": dg.MetadataValue.float(float(row["sharpe"]) if row.get("sharpe") is not None else math.nan),
                "journal": dg.MetadataValue.path(promotions.path),
                "takes_effect": "for runs launched from now on; reload the code location to see it in the UI",
            },
        )
    )


@dg.job(
    description="Promote a parameter set from a research sweep into a strategy of the live configuration. "
    "Config: strategy, sweep (sma_sweep, rsi_sweep, dip_sweep), rank (1 = the best Sharpe) or params, "
    "promoted_by (your name), reason. Recorded in research/promotions and the promotions journal; runs "
    "launched afterwards trade the new params.",
    tags={"trading_dagster/control": "promotion"},
)
def promote_job() -> None:
    promote_op()
