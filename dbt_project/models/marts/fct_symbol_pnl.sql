-- P&L per symbol and strategy over the whole history (FIFO attribution), with the realized part and the
-- round trips; `total` rows per symbol.
with per_strategy as (
    select
        symbol,
        strategy,
        sum(pnl) as total_pnl,
        sum(realized_pnl) as realized_pnl,
        sum(fills) as fills,
        sum(traded_notional) as traded_notional,
        min(session) as first_session,
        max(session) as last_session
    from {{ ref('int_strategy_symbol_pnl') }}
    group by symbol, strategy
),

trips as (
    select symbol, strategy, count(*) as round_trips, count(*) filter (where realized_pnl > 0) as winning_trips
    from {{ ref('int_lot_matches') }}
    group by symbol, strategy
),

joined as (
    select p.*, coalesce(t.round_trips, 0) as round_trips, coalesce(t.winning_trips, 0) as winning_trips
    from per_strategy as p
    left join trips as t using (symbol, strategy)
)

select symbol || '|' || strategy as symbol_pnl_id, *, total_pnl - realized_pnl as unrealized_pnl
from (
    select * from joined
    union all
    select symbol, 'total', sum(total_pnl), sum(realized_pnl), sum(fills), sum(traded_notional),
           min(first_session), max(last_session), sum(round_trips), sum(winning_trips)
    from joined
    group by symbol
)
