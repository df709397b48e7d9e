-- The trading ledger's audit events (copied from SQLite by execution/audit_log), the details' fields as columns.
select
    event_id,
    seq as ledger_seq,
    kind,
    occurred_at,
    recorded_at,
    session as order_session,
    actor,
    client_order_id,
    symbol,
    side,
    qty,
    price,
    reason_code,
    reason,
    ref,
    strategy,
    broker_order_id,
    order_status,
    outcome,
    engaged,
    details
from {{ source_or_empty('execution', 'audit_log', {
    'event_id': 'varchar', 'seq': 'bigint', 'kind': 'varchar', 'occurred_at': 'timestamptz',
    'recorded_at': 'timestamptz', 'session': 'date', 'actor': 'varchar', 'client_order_id': 'varchar',
    'symbol': 'varchar', 'side': 'varchar', 'qty': 'double', 'price': 'double', 'reason_code': 'varchar',
    'reason': 'varchar', 'ref': 'varchar', 'strategy': 'varchar', 'broker_order_id': 'varchar',
    'order_status': 'varchar', 'outcome': 'varchar', 'engaged': 'boolean', 'details': 'varchar'}) }}
