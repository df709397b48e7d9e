-- Daily P&L per strategy (FIFO lot attribution: int_strategy_symbol_pnl) and in total ('total'), on every
-- session of the equity curve (a strategy's quiet day is a row with 0). `daily_return` is the P&L over the
-- portfolio's equity at the previous close: a strategy's contribution to the portfolio's return, so the
-- strategies' returns add up to the total's. Whole-history table: cheap, and cumulative columns need it all.
with equity as (
    select session, equity, previous_equity
    from {{ ref('stg_pnl__equity') }}
),

by_strategy as (
    select session, strategy, sum(pnl) as pnl, sum(realized_pnl) as realized_pnl,
           sum(market_value) as market_value, sum(traded_notional) as traded_notional, sum(fills) as fills
    from {{ ref('int_strategy_symbol_pnl') }}
    group by session, strategy
),

strategies as (
    select distinct strategy from {{ ref('stg_trading__orders') }}
    union
    select distinct strategy from by_strategy
),

grid as (
    select e.session, s.strategy from equity as e cross join strategies as s
),

per_strategy as (
    select g.session, g.strategy,
           coalesce(b.pnl, 0) as pnl, coalesce(b.realized_pnl, 0) as realized_pnl,
           coalesce(b.market_value, 0) as market_value, coalesce(b.traded_notional, 0) as traded_notional,
           coalesce(b.fills, 0) as fills
    from grid as g
    left join by_strategy as b using (session, strategy)
),

with_total as (
    select * from per_strategy
    union all
    select session, 'total', sum(pnl), sum(realized_pnl), sum(market_value), sum(traded_notional), sum(fills)
    from per_strategy
    group by session
)

select
    w.session || '|' || w.strategy as daily_pnl_id,
    w.session,
    w.strategy,
    w.pnl,
    w.realized_pnl,
    w.pnl - w.realized_pnl as unrealized_pnl_change,
    w.market_value,
    w.traded_notional,
    w.fills,
    e.equity as portfolio_equity,
    coalesce(e.previous_equity, e.equity - t.pnl) as previous_portfolio_equity,
    w.pnl / nullif(coalesce(e.previous_equity, e.equity - t.pnl), 0) as daily_return,
    sum(w.pnl) over (partition by w.strategy order by w.session) as cumulative_pnl
from with_total as w
inner join equity as e using (session)
inner join (select session, sum(pnl) as pnl from per_strategy group by session) as t using (session)
