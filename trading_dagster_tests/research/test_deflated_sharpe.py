"""The deflated Sharpe ratio (issue 11, decision 0007) against Bailey and Lopez de Prado's worked example, a
second implementation (vectorbt's), and its properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from trading_dagster.research.deflated_sharpe import (
    deflated_sharpe_from_moments,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    return_moments,
)

# the paper's example (section "A numerical example"): 5 years of daily returns at 250 a year
YEAR = 250
SR, T, N, V, SKEW, KURT = 2.5 / math.sqrt(YEAR), 1250, 100, 0.5 / YEAR, -3.0, 10.0


def test_the_papers_worked_example():
    # expected maximum of 100 unskilled trials with annualized Sharpe variance 0.5: 1.7894 annualized
    assert expected_max_sharpe(N, V) * math.sqrt(YEAR) == pytest.approx(1.7894, abs=1e-4)
    dsr = deflated_sharpe_from_moments(SR, T, SKEW, KURT, N, V)
    assert dsr == pytest.approx(0.9004, abs=1e-4)
    # non-normality matters: the same figures with normal returns give a higher probability
    assert deflated_sharpe_from_moments(SR, T, 0.0, 3.0, N, V) > dsr + 0.02


def test_equals_vectorbts_implementation():
    from vectorbt.returns.metrics import deflated_sharpe_ratio as vbt_dsr

    for sr, t, skew, kurt, n, v in [(SR, T, SKEW, KURT, N, V), (0.05, 500, 0.3, 4.0, 20, 0.001)]:
        ours = deflated_sharpe_from_moments(sr, t, skew, kurt, n, v)
        ref = vbt_dsr(est_sharpe=sr, var_sharpe=v, nb_trials=n, backtest_horizon=t, skew=skew, kurtosis=kurt)
        assert ours == pytest.approx(float(ref), rel=1e-12)


def test_more_trials_deflate_more():
    values = [deflated_sharpe_from_moments(SR, T, SKEW, KURT, n, V) for n in (2, 10, 100, 1_000, 10_000)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 0.5 < values[0]


def test_one_trial_is_the_psr_against_zero():
    assert expected_max_sharpe(1, V) == 0.0
    assert deflated_sharpe_from_moments(SR, T, SKEW, KURT, 1, V) == probabilistic_sharpe_ratio(
        SR, 0, T, SKEW, KURT
    )
    # and with normal returns the PSR is the textbook z-test: Z(sr sqrt(T - 1) / sqrt(1 + sr^2 / 2))
    assert probabilistic_sharpe_ratio(0.05, 0, 400) == pytest.approx(
        stats.norm.cdf(0.05 * math.sqrt(399) / math.sqrt(1 + 0.05**2 / 2)), rel=1e-12
    )


def test_from_returns_uses_their_moments_and_the_trials_variance():
    rng = np.random.default_rng(7)
    returns = rng.standard_t(5, size=750) * 0.01 + 0.001
    trials = rng.normal(0.02, 0.03, size=40)
    sr, t, skew, kurt = return_moments(returns)
    assert sr == pytest.approx(returns.mean() / returns.std(ddof=1), rel=1e-12) and t == 750
    assert skew == pytest.approx(stats.skew(returns), rel=1e-9)
    assert kurt == pytest.approx(stats.kurtosis(returns, fisher=False), rel=1e-9) and kurt > 3
    expected = deflated_sharpe_from_moments(sr, t, skew, kurt, 40, float(np.var(trials, ddof=1)))
    assert deflated_sharpe_ratio(returns, trials) == pytest.approx(expected, rel=1e-12)
    # an undefined trial Sharpe counts as a trial but not in the variance
    with_nan = np.append(trials, np.nan)
    assert deflated_sharpe_ratio(returns, with_nan) == pytest.approx(
        deflated_sharpe_from_moments(sr, t, skew, kurt, 41, float(np.var(trials, ddof=1))), rel=1e-12
    )
    assert math.isnan(deflated_sharpe_ratio(np.zeros(10), trials))  # flat: no Sharpe, no probability


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: probabilistic_sharpe_ratio(0.1, 0, 1), "n_obs"),
        (lambda: probabilistic_sharpe_ratio(0.1, 0, 100, 0, 0.5), "kurtosis"),
        (lambda: probabilistic_sharpe_ratio(0.1, math.nan, 100), "sr_benchmark"),
        (lambda: expected_max_sharpe(10, -0.1), "variance"),
        (lambda: expected_max_sharpe(0, 0.1), "n_trials"),
        (lambda: deflated_sharpe_from_moments(0.1, 1, 0, 3, 10, 0.01), "n_obs"),
        (lambda: deflated_sharpe_from_moments(0.1, 100, 0, 3, 10, -1.0), "variance"),
        (lambda: deflated_sharpe_ratio([0.01], [0.1, 0.2]), "returns"),
        (lambda: deflated_sharpe_ratio([0.01, 0.02, -0.01], [0.1, 0.2], n_trials=1), "n_trials"),
    ],
)
def test_invalid_inputs_are_refused_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_an_annualized_sharpe_is_caught():
    # an annualized 2.5 with a strongly positive skew makes the variance term negative: said, not a NaN
    with pytest.raises(ValueError, match="per period"):
        probabilistic_sharpe_ratio(2.5, 0, 1250, 3, 3)
