{{ config(meta={'dagster': {'ref': {'name': 'fct_daily_pnl'}}}) }}
-- depends_on: {{ ref('fct_daily_pnl') }}  (a check on that mart in Dagster; the equity curve feeds it)
-- Reconciliation: every session, equity = cash + market value, and market value = the positions' sum.
select e.session, e.equity, e.cash, e.market_value, coalesce(p.market_value, 0) as positions_market_value
from {{ ref('stg_pnl__equity') }} as e
left join (
    select session, sum(market_value) as market_value from {{ ref('stg_pnl__positions') }} group by session
) as p using (session)
where abs(e.equity - (e.cash + e.market_value)) > 0.01
   or abs(e.market_value - coalesce(p.market_value, 0)) > 0.01
