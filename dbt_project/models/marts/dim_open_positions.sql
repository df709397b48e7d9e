-- The positions held at the last session's close, one row per (symbol, strategy that opened its open lots),
-- with the strategy's share of quantity and market value, its open lots' cost (FIFO, commissions included)
-- and unrealized P&L = market value - cost.
with last_session as (
    select max(session) as session from {{ ref('stg_pnl__equity') }}
),

closed as (
    select buy_order_id, sum(adj_qty) as closed_qty from {{ ref('int_lot_matches') }} group by buy_order_id
),

open_lots as (
    select b.strategy, b.symbol,
           sum(b.adj_qty - coalesce(c.closed_qty, 0)) as open_adj_qty,
           sum((b.adj_qty - coalesce(c.closed_qty, 0)) * (b.adj_price + b.commission / b.adj_qty)) as open_cost,
           min(b.session) as first_open_session
    from {{ ref('int_trades') }} as b
    left join closed as c on c.buy_order_id = b.client_order_id
    where b.side = 'buy'
    group by all
    having sum(b.adj_qty - coalesce(c.closed_qty, 0)) > 1e-9
)

select
    p.symbol || '|' || p.strategy as open_position_id,
    p.session,
    p.symbol,
    p.strategy,
    p.share,
    p.qty,
    p.close,
    p.market_value,
    o.open_cost as cost_basis,
    o.open_cost / nullif(p.qty, 0) as avg_cost,
    p.market_value - o.open_cost as unrealized_pnl,
    o.first_open_session
from {{ ref('int_strategy_positions') }} as p
inner join last_session using (session)
left join open_lots as o using (strategy, symbol)
