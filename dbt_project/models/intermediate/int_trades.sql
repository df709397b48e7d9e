-- The trades that move shares, in split-adjusted units: the fills (with the strategy of their order) and the
-- book's delisted closes (a sale without an order). `split_factor` is the product of the symbol's split
-- ratios effective on or before the trade's session (ledger events apply before the session's fills), so
-- `adj_qty` (qty / factor) and `adj_price` (price x factor) count the same shares before and after a split.
with splits as (
    select symbol, session, price as ratio
    from {{ ref('stg_trading__executions') }}
    where event = 'split' and price > 0
),

trades as (
    select
        e.session,
        e.client_order_id,
        e.symbol,
        e.side,
        e.event,
        o.strategy,
        e.qty,
        e.price,
        e.commission
    from {{ ref('stg_trading__executions') }} as e
    left join {{ ref('stg_trading__orders') }} as o using (client_order_id)
    where (e.event = 'filled' or e.event = 'delisted_close') and e.qty > 0
),

factors as (
    select t.client_order_id, coalesce(exp(sum(ln(s.ratio))), 1.0) as split_factor
    from trades as t
    left join splits as s on s.symbol = t.symbol and s.session <= t.session
    group by t.client_order_id
)

select
    t.*,
    f.split_factor,
    t.qty / f.split_factor as adj_qty,
    t.price * f.split_factor as adj_price,
    t.qty * t.price as notional
from trades as t
inner join factors as f using (client_order_id)
