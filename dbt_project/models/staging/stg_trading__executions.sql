-- broker events (accepted, filled, expired) and the book's ledger events (split, cash_in_lieu, delisted_close,
-- renamed); `seq` orders a session's events as they took effect: ledger events before the open's fills
select
    session,
    client_order_id,
    symbol,
    side,
    event,
    order_session,
    qty,
    price,
    coalesce(commission, 0) as commission,
    case event
        when 'split' then 1 when 'renamed' then 1 when 'delisted_close' then 1 when 'cash_in_lieu' then 1
        when 'filled' then 2 when 'expired' then 2 when 'cancelled' then 2 when 'canceled' then 2
        else 6
    end as seq
from {{ source('trading', 'executions') }}
