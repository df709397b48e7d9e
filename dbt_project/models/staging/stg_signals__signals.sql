select
    session,
    symbol,
    strategy,
    side,
    strength,
    reason
from {{ source('signals', 'signals') }}
