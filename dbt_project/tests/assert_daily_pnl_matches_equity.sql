{{ config(meta={'dagster': {'ref': {'name': 'fct_daily_pnl'}}}) }}
-- Reconciliation: each session's total P&L (and the sum of the strategies') is the equity curve's change
-- from the previous session (the first session of the curve has no previous one).
select d.session, d.pnl, s.strategies_pnl, e.equity - e.previous_equity as equity_change
from {{ ref('fct_daily_pnl') }} as d
inner join {{ ref('stg_pnl__equity') }} as e using (session)
inner join (
    select session, sum(pnl) as strategies_pnl from {{ ref('fct_daily_pnl') }} where strategy <> 'total' group by session
) as s using (session)
where d.strategy = 'total'
  and e.previous_equity is not null
  and (abs(d.pnl - (e.equity - e.previous_equity)) > 0.01 or abs(s.strategies_pnl - d.pnl) > 0.01)
