-- One row per strategy and one for the total: returns from fct_daily_pnl's daily returns (contributions to
-- the portfolio's return for a strategy; 252 sessions a year, risk-free rate 0), trade statistics from the
-- FIFO round trips (int_lot_matches: a sale closing a lot; commissions of both sides included).
with daily as (
    select
        *,
        exp(sum(ln(1 + daily_return)) over w) as wealth
    from {{ ref('fct_daily_pnl') }}
    window w as (partition by strategy order by session rows unbounded preceding)
),

drawdowns as (
    select
        *,
        wealth / greatest(max(wealth) over w, 1.0) - 1 as drawdown
    from daily
    window w as (partition by strategy order by session rows unbounded preceding)
),

underwater as (
    select
        *,
        sum(case when drawdown >= -1e-12 then 1 else 0 end) over (
            partition by strategy order by session rows unbounded preceding
        ) as recovery_group
    from drawdowns
),

returns as (
    select
        strategy,
        count(*) as sessions,
        min(session) as first_session,
        max(session) as last_session,
        sum(pnl) as total_pnl,
        exp(sum(ln(1 + daily_return))) - 1 as cumulative_return,
        avg(daily_return) as mean_daily_return,
        stddev_samp(daily_return) as daily_volatility,
        sqrt(avg(power(least(daily_return, 0), 2))) as downside_deviation,
        min(drawdown) as max_drawdown,
        sum(traded_notional) as traded_notional,
        avg(portfolio_equity) as average_equity,
        avg(market_value / nullif(portfolio_equity, 0)) as exposure
    from underwater
    group by strategy
),

durations as (
    select strategy, max(n) as max_drawdown_sessions
    from (
        select strategy, recovery_group, count(*) filter (where drawdown < -1e-12) as n
        from underwater
        group by strategy, recovery_group
    )
    group by strategy
),

round_trips as (
    select strategy, realized_pnl from {{ ref('int_lot_matches') }}
    union all
    select 'total', realized_pnl from {{ ref('int_lot_matches') }}
),

trades as (
    select
        strategy,
        count(*) as round_trips,
        count(*) filter (where realized_pnl > 0) as winning_trips,
        sum(realized_pnl) filter (where realized_pnl > 0) as gross_profit,
        -sum(realized_pnl) filter (where realized_pnl < 0) as gross_loss,
        avg(realized_pnl) filter (where realized_pnl > 0) as average_win,
        avg(realized_pnl) filter (where realized_pnl < 0) as average_loss
    from round_trips
    group by strategy
)

select
    r.strategy,
    r.first_session,
    r.last_session,
    r.sessions,
    r.total_pnl,
    r.cumulative_return,
    power(1 + r.cumulative_return, 252.0 / r.sessions) - 1 as annualized_return,
    r.daily_volatility * sqrt(252) as annualized_volatility,
    r.mean_daily_return / nullif(r.daily_volatility, 0) * sqrt(252) as sharpe_ratio,
    r.mean_daily_return / nullif(r.downside_deviation, 0) * sqrt(252) as sortino_ratio,
    (power(1 + r.cumulative_return, 252.0 / r.sessions) - 1) / nullif(-r.max_drawdown, 0) as calmar_ratio,
    r.max_drawdown,
    coalesce(d.max_drawdown_sessions, 0) as max_drawdown_sessions,
    coalesce(t.round_trips, 0) as round_trips,
    t.winning_trips::double / nullif(t.round_trips, 0) as win_rate,
    t.gross_profit / nullif(t.gross_loss, 0) as profit_factor,
    t.average_win,
    t.average_loss,
    r.traded_notional,
    -- one-way annualized turnover: half the traded notional over the average equity, per year
    r.traded_notional / 2 / nullif(r.average_equity, 0) * 252.0 / r.sessions as annual_turnover,
    -- the average share of the portfolio's equity held in the strategy's positions
    r.exposure
from returns as r
left join durations as d using (strategy)
left join trades as t using (strategy)
