{{ config(meta={'dagster': {'ref': {'name': 'fct_trade_journal'}}}) }}
-- Reconciliation: the journal's fills are exactly the executions' fills (same ids, sessions, qty, price).
with journal as (
    select client_order_id, session, qty, price from {{ ref('fct_trade_journal') }} where event = 'filled'
),
executions as (
    select client_order_id, session, qty, price from {{ ref('stg_trading__executions') }} where event = 'filled'
)
(select 'missing from the journal' as problem, * from (select * from executions except all select * from journal))
union all
(select 'not an execution' as problem, * from (select * from journal except all select * from executions))
