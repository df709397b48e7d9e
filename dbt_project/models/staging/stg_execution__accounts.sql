-- The broker account after session D's orders traded (on D+1; the last poll, after the close once
-- trading_pnl_after_close_schedule ran): cash, equity, the day's P&L against the previous close's equity.
select
    session as order_session,
    as_of,
    cash,
    equity,
    last_equity,
    day_pnl,
    long_market_value,
    positions,
    bought,
    sold,
    executions,
    all_final
from {{ source_or_empty('execution', 'account', {
    'session': 'date', 'as_of': 'timestamptz', 'cash': 'double', 'equity': 'double', 'last_equity': 'double',
    'day_pnl': 'double', 'long_market_value': 'double', 'positions': 'bigint', 'bought': 'double',
    'sold': 'double', 'executions': 'bigint', 'all_final': 'boolean'}) }}
