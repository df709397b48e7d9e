-- Mark-to-market P&L per (strategy, symbol, session): the strategy's share of the position's market value
-- at the close, less its share at the previous session's close, plus the cash its trades moved that
-- session (a buy's cost and commission; a sale's proceeds less commission, split over the lots it closed;
-- cash in lieu of a split's fraction, by the shares held the session before). Summed over strategies and
-- symbols it is exactly the change of equity (cash + market value): tests/assert_daily_pnl_matches_equity.
with sessions as (
    select session, previous_session, next_session from {{ ref('stg_pnl__equity') }}
),

sale_remainders as (
    select t.client_order_id, t.symbol, t.session, t.adj_qty - coalesce(m.matched, 0) as left_qty,
           t.adj_qty, t.adj_price, t.commission
    from {{ ref('int_trades') }} as t
    left join (
        select sell_order_id, sum(adj_qty) as matched from {{ ref('int_lot_matches') }} group by sell_order_id
    ) as m on m.sell_order_id = t.client_order_id
    where t.side = 'sell'
),

components as (
    select strategy, symbol, session, market_value as mv_change, 0.0 as cash_flow, 0.0 as realized_pnl,
           0.0 as traded_notional, 0 as fills, market_value
    from {{ ref('int_strategy_positions') }}
    union all
    select p.strategy, p.symbol, s.next_session, -p.market_value, 0.0, 0.0, 0.0, 0, 0.0
    from {{ ref('int_strategy_positions') }} as p
    inner join sessions as s using (session)
    where s.next_session is not null
    union all
    select coalesce(strategy, '(unattributed)'), symbol, session, 0.0, -notional - commission, -commission,
           notional, 1, 0.0
    from {{ ref('int_trades') }}
    where side = 'buy'
    union all
    select strategy, symbol, close_session, 0.0, adj_qty * close_price - close_commission,
           realized_pnl + open_commission, adj_qty * close_price, 0, 0.0
    from {{ ref('int_lot_matches') }}
    union all
    select '(unattributed)', symbol, session, 0.0,
           left_qty * adj_price - commission * left_qty / adj_qty, 0.0, left_qty * adj_price, 0, 0.0
    from sale_remainders
    where left_qty > 1e-9
    union all
    select coalesce(p.strategy, '(unattributed)'), e.symbol, e.session, 0.0, e.price * coalesce(p.share, 1.0),
           e.price * coalesce(p.share, 1.0), 0.0, 0, 0.0
    from {{ ref('stg_trading__executions') }} as e
    inner join sessions as s using (session)
    left join {{ ref('int_strategy_positions') }} as p on p.symbol = e.symbol and p.session = s.previous_session
    where e.event = 'cash_in_lieu'
),

fill_counts as (
    select coalesce(m.strategy, '(unattributed)') as strategy, t.symbol, t.session, count(distinct t.client_order_id) as n
    from {{ ref('int_trades') }} as t
    left join {{ ref('int_lot_matches') }} as m on m.sell_order_id = t.client_order_id
    where t.side = 'sell'
    group by all
)

select
    c.session,
    c.strategy,
    c.symbol,
    sum(c.mv_change) + sum(c.cash_flow) as pnl,
    sum(c.realized_pnl) as realized_pnl,
    sum(c.cash_flow) as cash_flow,
    sum(c.market_value) as market_value,
    sum(c.traded_notional) as traded_notional,
    sum(c.fills) + coalesce(max(f.n), 0) as fills
from components as c
left join fill_counts as f using (strategy, symbol, session)
where c.session is not null
group by c.session, c.strategy, c.symbol
