-- What became of each of session D's orders at the broker (submitted, already_existed, rejected, held, not_approved).
select
    client_order_id,
    session as order_session,
    symbol,
    strategy,
    side,
    qty,
    outcome,
    broker_order_id,
    status,
    code,
    message
from {{ source_or_empty('execution', 'submissions', {
    'client_order_id': 'varchar', 'session': 'date', 'symbol': 'varchar', 'strategy': 'varchar',
    'side': 'varchar', 'qty': 'double', 'outcome': 'varchar', 'broker_order_id': 'varchar', 'status': 'varchar',
    'code': 'varchar', 'message': 'varchar'}) }}
