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
from {{ source('trading', 'orders') }}
