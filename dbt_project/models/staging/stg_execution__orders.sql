-- The trading book's planned orders: session D's signals sized and risk-checked against the broker account.
select
    client_order_id,
    session as order_session,
    symbol,
    strategy,
    side,
    requested_qty,
    qty,
    ref_price,
    status,
    reason_code
from {{ source_or_empty('execution', 'orders', {
    'client_order_id': 'varchar', 'session': 'date', 'symbol': 'varchar', 'strategy': 'varchar',
    'side': 'varchar', 'requested_qty': 'double', 'qty': 'double', 'ref_price': 'double', 'status': 'varchar',
    'reason_code': 'varchar'}) }}
