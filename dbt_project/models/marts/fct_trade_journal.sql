{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='session',
    on_schema_change='fail'
) }}
-- The audit trail a person reads: every signal, order, risk decision (approval or denial), acceptance, fill,
-- expiry or cancel and book event of the backtest, one row each, in the order they happened within a session:
-- book events before the open (1), the open's fills and expiries (2), then at the close the signals (3), the
-- orders (4), the risk decisions (5) and the broker's acceptances (6).
-- Incremental: a Dagster run rewrites exactly its session window (vars min_date / max_date), so a
-- one-session run does not rescan ten years; without vars dbt rebuilds the whole history.
with signals as (
    select session, 3 as seq, 'signal' as event, symbol, side, strategy,
           cast(null as bigint) as qty, cast(null as double) as price, cast(null as double) as commission,
           cast(null as varchar) as client_order_id, reason, cast(null as date) as order_session
    from {{ ref('stg_signals__signals') }}
    where {{ in_session_window('session') }}
),

orders as (
    select order_session as session, 4 as seq, 'order' as event, symbol, side, strategy,
           requested_qty as qty, ref_price as price, null as commission, client_order_id,
           'requested ' || requested_qty || ' at the close ' || round(ref_price, 2) as reason, order_session
    from {{ ref('stg_trading__orders') }}
    where {{ in_session_window('order_session') }}
),

decisions as (
    select order_session as session, 5 as seq,
           case status when 'approved' then 'approved' else 'denied' end as event,
           symbol, side, strategy, qty, ref_price as price, null as commission, client_order_id,
           coalesce(reason_code, case status when 'approved' then 'APPROVED' end) as reason, order_session
    from {{ ref('stg_trading__orders') }}
    where {{ in_session_window('order_session') }}
),

broker as (
    select e.session, e.seq, e.event, e.symbol, e.side, o.strategy, e.qty, e.price, e.commission,
           e.client_order_id,
           case e.event
               when 'filled' then 'filled at the open of ' || strftime(e.session, '%Y-%m-%d')
               when 'expired' then 'not filled at the open: expired'
               when 'accepted' then 'accepted by the broker'
               when 'split' then 'split ' || e.price || ' new shares per old'
               when 'cash_in_lieu' then 'cash in lieu of a fractional share'
               when 'delisted_close' then 'closed at the last close: delisted'
               when 'renamed' then 'position moved to a new ticker'
               else e.event
           end as reason,
           e.order_session
    from {{ ref('stg_trading__executions') }} as e
    left join {{ ref('stg_trading__orders') }} as o using (client_order_id)
    where {{ in_session_window('e.session') }}
),

events as (
    select * from signals
    union all select * from orders
    union all select * from decisions
    union all select * from broker
)

select
    session || '|' || seq || '|' || event || '|' || coalesce(client_order_id, symbol || '|' || strategy) as journal_id,
    session,
    row_number() over (partition by session order by seq, strategy nulls first, symbol, client_order_id)
        as time_order,
    event,
    symbol,
    side,
    qty,
    price,
    commission,
    case when event = 'filled' then qty * price end as notional,
    strategy,
    reason,
    client_order_id,
    order_session
from events
