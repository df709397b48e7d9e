{{ config(meta={'dagster': {'ref': {'name': 'fct_trading_journal'}}}) }}
-- Reconciliation of the trading book: for every order in execution/fills, the journal's fills (the ledger's
-- executions) add up to the broker's filled quantity at its average price; and no journal fill of such an
-- order is missing from the broker's.
with broker as (
    select client_order_id, filled_qty, filled_avg_price
    from {{ ref('stg_execution__fills') }}
    where filled_qty > 0
),
journal as (
    select client_order_id, sum(qty) as filled_qty, sum(qty * price) / sum(qty) as filled_avg_price
    from {{ ref('fct_trading_journal') }}
    where event = 'filled'
      and client_order_id in (select client_order_id from {{ ref('stg_execution__fills') }})
    group by client_order_id
)
select
    coalesce(b.client_order_id, j.client_order_id) as client_order_id,
    case
        when j.client_order_id is null then 'filled at the broker, missing from the journal'
        when b.client_order_id is null then 'in the journal, not filled at the broker'
        when abs(b.filled_qty - j.filled_qty) > 1e-9 then 'filled quantity differs'
        else 'average price differs'
    end as problem,
    b.filled_qty as broker_qty,
    j.filled_qty as journal_qty,
    b.filled_avg_price as broker_price,
    j.filled_avg_price as journal_price
from broker as b
full outer join journal as j using (client_order_id)
where j.client_order_id is null
   or b.client_order_id is null
   or abs(b.filled_qty - j.filled_qty) > 1e-9
   or abs(b.filled_avg_price - j.filled_avg_price) > 1e-6 * greatest(1, abs(b.filled_avg_price))
