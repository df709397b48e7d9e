-- FIFO per symbol: each sale (a sell fill or a delisted close) consumes the oldest open buy lots first. Buys
-- and sales are laid on one cumulative share axis per symbol (in split-adjusted units, ordered by session
-- then order id); a sale's slice of the axis overlaps the lots it closes. The realized P&L of a match
-- belongs to the strategy whose order opened the lot; each side's commission is shared pro rata by quantity.
with buys as (
    select
        *,
        sum(adj_qty) over w - adj_qty as lot_start,
        sum(adj_qty) over w as lot_end
    from {{ ref('int_trades') }}
    where side = 'buy'
    window w as (partition by symbol order by session, client_order_id rows unbounded preceding)
),

sales as (
    select
        *,
        sum(adj_qty) over w - adj_qty as sale_start,
        sum(adj_qty) over w as sale_end
    from {{ ref('int_trades') }}
    where side = 'sell'
    window w as (partition by symbol order by session, client_order_id rows unbounded preceding)
),

matched as (
    select
        s.client_order_id as sell_order_id,
        b.client_order_id as buy_order_id,
        b.symbol,
        b.strategy,
        b.session as open_session,
        s.session as close_session,
        s.event as close_event,
        least(b.lot_end, s.sale_end) - greatest(b.lot_start, s.sale_start) as adj_qty,
        b.adj_price as open_price,
        s.adj_price as close_price,
        b.commission * (least(b.lot_end, s.sale_end) - greatest(b.lot_start, s.sale_start)) / b.adj_qty
            as open_commission,
        s.commission * (least(b.lot_end, s.sale_end) - greatest(b.lot_start, s.sale_start)) / s.adj_qty
            as close_commission
    from sales as s
    inner join buys as b
        on b.symbol = s.symbol and b.lot_start < s.sale_end and s.sale_start < b.lot_end
)

select
    sell_order_id || '|' || buy_order_id as match_id,
    *,
    adj_qty * (close_price - open_price) - open_commission - close_commission as realized_pnl,
    date_diff('day', open_session, close_session) as holding_days
from matched
where adj_qty > 1e-9
