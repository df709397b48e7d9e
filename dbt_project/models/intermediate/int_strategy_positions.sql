-- Each held position split among the strategies whose open FIFO lots make it up, every session: `share` is
-- a strategy's open split-adjusted quantity over all strategies' open quantity in that symbol. A position
-- with no open lot on file (a renamed ticker after the rename, history before the warehouse's first fill)
-- is attributed to '(unattributed)', so the shares of a position always add up to one.
with flows as (
    select strategy, symbol, session, adj_qty as delta from {{ ref('int_trades') }} where side = 'buy'
    union all
    select strategy, symbol, close_session, -adj_qty from {{ ref('int_lot_matches') }}
),

held as (
    select
        strategy,
        symbol,
        session,
        sum(sum(delta)) over (partition by strategy, symbol order by session) as held
    from flows
    group by strategy, symbol, session
),

candidates as (
    select p.session, p.symbol, s.strategy
    from {{ ref('stg_pnl__positions') }} as p
    inner join (select distinct strategy, symbol from held) as s using (symbol)
),

open_lots as (
    select c.session, c.symbol, c.strategy, h.held
    from candidates as c
    asof inner join held as h
        on c.strategy = h.strategy and c.symbol = h.symbol and c.session >= h.session
    where h.held > 1e-9
),

shares as (
    select *, held / sum(held) over (partition by session, symbol) as share
    from open_lots
),

attributed as (
    select p.session, p.symbol, coalesce(s.strategy, '(unattributed)') as strategy,
           coalesce(s.held, 0) as adj_qty, coalesce(s.share, 1.0) as share,
           p.qty, p.close, p.market_value, p.unrealized_pnl
    from {{ ref('stg_pnl__positions') }} as p
    left join shares as s using (session, symbol)
)

select
    session,
    symbol,
    strategy,
    share,
    adj_qty,
    qty * share as qty,
    close,
    market_value * share as market_value
from attributed
