select
    session,
    symbol,
    qty,
    avg_cost,
    close,
    market_value,
    unrealized_pnl,
    stale_price
from {{ source('pnl', 'positions') }}
