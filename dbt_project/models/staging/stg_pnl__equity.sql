select
    session,
    cash,
    market_value,
    equity,
    realized_pnl,
    unrealized_pnl,
    daily_return,
    n_positions,
    trades,
    benchmark_close,
    lag(session) over (order by session) as previous_session,
    lead(session) over (order by session) as next_session,
    lag(equity) over (order by session) as previous_equity
from {{ source('pnl', 'equity') }}
