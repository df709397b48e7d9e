-- Monthly P&L per strategy and in total; the month's return compounds the daily returns (for a strategy,
-- its compounded contribution to the portfolio's return).
select
    strftime(date_trunc('month', session), '%Y-%m') || '|' || strategy as monthly_pnl_id,
    cast(date_trunc('month', session) as date) as month,
    strategy,
    min(session) as first_session,
    max(session) as last_session,
    count(*) as sessions,
    sum(pnl) as pnl,
    sum(realized_pnl) as realized_pnl,
    sum(fills) as fills,
    sum(traded_notional) as traded_notional,
    exp(sum(ln(1 + daily_return))) - 1 as monthly_return,
    arg_max(portfolio_equity, session) as portfolio_equity_at_month_end
from {{ ref('fct_daily_pnl') }}
group by all
