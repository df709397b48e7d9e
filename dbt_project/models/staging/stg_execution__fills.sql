-- Session D's orders as the broker last reported them (status, cumulative filled quantity, average price).
select
    client_order_id,
    session as order_session,
    broker_order_id,
    symbol,
    side,
    status,
    qty,
    filled_qty,
    filled_avg_price,
    final
from {{ source_or_empty('execution', 'fills', {
    'client_order_id': 'varchar', 'session': 'date', 'broker_order_id': 'varchar', 'symbol': 'varchar',
    'side': 'varchar', 'status': 'varchar', 'qty': 'double', 'filled_qty': 'double', 'filled_avg_price': 'double',
    'final': 'boolean'}) }}
