-- The trading book's journal: the audit log a person reads. One row per signal, planned order, risk decision
-- (approved, denied with its reason code, waiting for a person), a person's approval or refusal, an approval
-- that expired, each cancel, submission (the broker's order id and status), broker rejection or buy held by the
-- kill switch, each fill (one per execution), an order the broker closed unfilled, and each kill-switch change
-- and flatten step; in the order they happened (`occurred_at`, then the step of an order's life, then the ledger's order).
-- The events are the trading ledger's (execution/audit_log); the planned orders and the broker's final word on
-- each order come from execution/orders and execution/fills. A whole-history table, rebuilt on every run: the
-- trading book is one session a day, and the account-wide events (kill switch, flatten) belong to no session.
with audit as (
    select * from {{ ref('stg_execution__audit_events') }}
),

planned as (
    select * from {{ ref('stg_execution__orders') }}
),

-- when each planned order was made: the time of its signal (the planning run's broker clock)
planned_at as (
    select client_order_id, min(occurred_at) as occurred_at, min(ledger_seq) as ledger_seq
    from audit
    where kind in ('signal', 'decision', 'denial', 'pending_approval')
    group by client_order_id
),

events as (
    select
        a.event_id as journal_id,
        a.occurred_at,
        a.recorded_at,
        a.ledger_seq,
        a.order_session,
        case a.kind
            when 'decision' then 'approved'
            when 'denial' then 'denied'
            when 'submission' then 'submitted'
            when 'rejection' then 'rejected'
            when 'fill' then 'filled'
            when 'cancel' then 'cancelled'
            else a.kind
        end as event,
        a.symbol,
        a.side,
        a.qty,
        a.price,
        coalesce(a.strategy, p.strategy) as strategy,
        a.order_status as status,
        a.reason_code,
        case a.kind
            when 'signal' then 'signal of ' || coalesce(a.strategy, p.strategy, '?') || ': ' || a.side || ' '
                || a.symbol || ' at the close of ' || strftime(a.order_session, '%Y-%m-%d')
            when 'decision' then 'approved by the risk engine: ' || {{ readable_number('a.qty') }} || ' shares'
                || coalesce(' at about ' || {{ readable_number('round(a.price, 2)') }}, '')
                || coalesce(', clipped: ' || a.reason_code, '')
            when 'denial' then 'denied by the risk engine: ' || coalesce(a.reason_code, 'no reason code')
            when 'pending_approval' then 'waiting for a person''s approval (manual strategy)'
            when 'approval' then 'approved by ' || a.actor || coalesce(': ' || a.reason, '')
            when 'refusal' then 'refused by ' || a.actor || coalesce(': ' || a.reason, '')
            when 'approval_expired' then 'not sent: nobody decided by the approval deadline'
            when 'submission' then
                case a.outcome when 'already_existed' then 'already at the broker' else 'sent to the broker' end
                || ': ' || a.side || ' ' || {{ readable_number('a.qty') }} || ' ' || a.symbol
                || coalesce(', limit ' || {{ readable_number('a.price') }}, '')
                || coalesce(', broker order ' || a.broker_order_id, '')
                || coalesce(', status ' || a.order_status, '')
            when 'rejection' then 'rejected by the broker: ' || concat_ws(': ', a.reason_code, a.reason)
            when 'fill' then 'filled ' || {{ readable_number('a.qty') }} || ' @ ' || {{ readable_number('a.price') }}
                || coalesce(' (broker order ' || a.broker_order_id || ', execution ' || a.ref || ')', '')
            when 'cancel' then
                case when a.reason_code is null or a.reason_code = 'CANCEL_REQUESTED'
                    then 'cancel requested' else 'cancel failed (' || a.reason_code || ')' end
                || ' for broker order ' || a.ref || coalesce(': ' || a.reason, '')
            when 'kill_switch' then
                'kill switch ' || case when a.engaged then 'ENGAGED' else 'released' end || ' by ' || a.actor
                || coalesce(': ' || a.reason, '') || ' (new buys ' || case when a.engaged then 'denied' else 'allowed' end || ')'
            when 'flatten' then 'flatten by ' || a.actor || ': ' || concat_ws(': ', a.reason_code, a.symbol, a.reason)
            else a.kind
        end as reason,
        a.client_order_id,
        a.broker_order_id,
        a.actor
    from audit as a
    left join planned as p on p.client_order_id = a.client_order_id
),

orders as (
    select
        'order|' || p.client_order_id as journal_id,
        coalesce(t.occurred_at, cast(p.order_session as timestamptz)) as occurred_at,
        cast(null as timestamptz) as recorded_at,
        t.ledger_seq,
        p.order_session,
        'order' as event,
        p.symbol,
        p.side,
        p.requested_qty as qty,
        p.ref_price as price,
        p.strategy,
        p.status,
        p.reason_code,
        'planned: ' || p.side || ' ' || {{ readable_number('p.requested_qty') }} || ' ' || p.symbol
            || ' at the close ' || {{ readable_number('round(p.ref_price, 2)') }} || ' for the next session''s open'
            as reason,
        p.client_order_id,
        cast(null as varchar) as broker_order_id,
        'pipeline' as actor
    from planned as p
    left join planned_at as t on t.client_order_id = p.client_order_id
),

-- the broker's last word on an order that ended without filling all of it (expired at the close, cancelled)
closed as (
    select
        'closed|' || f.client_order_id as journal_id,
        coalesce(acct.as_of, cast(f.order_session as timestamptz)) as occurred_at,
        cast(null as timestamptz) as recorded_at,
        cast(null as bigint) as ledger_seq,
        f.order_session,
        'closed' as event,
        f.symbol,
        f.side,
        f.qty - f.filled_qty as qty,
        cast(null as double) as price,
        p.strategy,
        f.status,
        cast(null as varchar) as reason_code,
        'closed at the broker (' || f.status || '): filled ' || {{ readable_number('f.filled_qty') }} || ' of '
            || {{ readable_number('f.qty') }} as reason,
        f.client_order_id,
        f.broker_order_id,
        'broker' as actor
    from {{ ref('stg_execution__fills') }} as f
    left join planned as p on p.client_order_id = f.client_order_id
    left join {{ ref('stg_execution__accounts') }} as acct on acct.order_session = f.order_session
    where f.final and f.filled_qty < f.qty
),

-- a buy the kill switch held back when the orders were sent (engaged after they were planned)
held as (
    select
        'held|' || s.client_order_id as journal_id,
        coalesce(sent.occurred_at, t.occurred_at, cast(s.order_session as timestamptz)) as occurred_at,
        cast(null as timestamptz) as recorded_at,
        cast(null as bigint) as ledger_seq,
        s.order_session,
        'held' as event,
        s.symbol,
        s.side,
        s.qty,
        cast(null as double) as price,
        s.strategy,
        s.status,
        s.code as reason_code,
        'not sent: the kill switch was engaged (new buys are held)' as reason,
        s.client_order_id,
        cast(null as varchar) as broker_order_id,
        'pipeline' as actor
    from {{ ref('stg_execution__submissions') }} as s
    left join planned_at as t on t.client_order_id = s.client_order_id
    left join (
        select order_session, max(occurred_at) as occurred_at from audit
        where kind in ('submission', 'rejection') group by order_session
    ) as sent on sent.order_session = s.order_session
    where s.outcome = 'held'
),

journal as (
    select * from events
    union all select * from orders
    union all select * from held
    union all select * from closed
)

select
    journal_id,
    row_number() over (
        order by occurred_at,
            case event
                when 'kill_switch' then 0 when 'flatten' then 1 when 'signal' then 2 when 'order' then 3
                when 'approved' then 4 when 'denied' then 4 when 'pending_approval' then 4
                when 'approval' then 5 when 'refusal' then 5 when 'approval_expired' then 6
                when 'cancelled' then 7 when 'submitted' then 8 when 'rejected' then 8 when 'held' then 8
                when 'filled' then 9
                else 10
            end,
            symbol nulls first, client_order_id nulls first, ledger_seq, journal_id
    ) as time_order,
    occurred_at,
    recorded_at,
    order_session as session,
    event,
    symbol,
    side,
    qty,
    price,
    case when event = 'filled' then qty * price end as notional,
    strategy,
    status,
    reason_code,
    reason,
    client_order_id,
    broker_order_id,
    actor,
    ledger_seq
from journal
