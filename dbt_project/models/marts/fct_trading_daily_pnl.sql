-- The trading book's P&L per trading day, in total: the broker account after each signal session D's orders
-- traded (on D+1, the last poll: after the close once trading_pnl_after_close_schedule ran). `trade_date` is
-- the as-of instant's date (UTC; the New York trading day for polls between 13:30Z and 24:00Z). `day_pnl` is
-- the broker's: equity against the previous close's equity (fees, dividends and transfers included).
-- (Per-strategy attribution of the trading book is not modelled yet; the backtest's is fct_daily_pnl.)
with accounts as (
    select * from {{ ref('stg_execution__accounts') }}
)

select
    order_session || '|total' as trading_pnl_id,
    order_session as session,
    cast(as_of as date) as trade_date,
    as_of,
    'total' as strategy,
    equity,
    cash,
    long_market_value,
    last_equity,
    day_pnl,
    case when last_equity > 0 then day_pnl / last_equity end as daily_return,
    sum(coalesce(day_pnl, 0)) over (order by order_session rows unbounded preceding) as cumulative_pnl,
    positions,
    bought,
    sold,
    executions,
    all_final
from accounts
