"""The probabilistic and the deflated Sharpe ratio (Bailey and Lopez de Prado, 2014), decision 0007.

"The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and Non-Normality" (Journal of
Portfolio Management 40 (5), 2014):

* PSR(SR*) = Z[(SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)]: the probability that the true
  Sharpe ratio exceeds SR*, given the estimate SR over T returns of skewness g3 and kurtosis g4 (non-excess:
  a normal distribution has g4 = 3).
* SR0 = sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))): the expected maximum Sharpe ratio of N
  unskilled trials whose Sharpe ratios have variance V (g: the Euler-Mascheroni constant).
* DSR = PSR(SR0): the probability that the selected strategy's true Sharpe exceeds what selection alone buys.

Every Sharpe ratio here is per period (mean / standard deviation of the periods' returns, not annualized):
divide an annualized Sharpe by sqrt(periods per year), and its variance by the periods per year.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EULER_GAMMA = 0.5772156649015329


def _check_moments(n_obs: int, skew: float, kurtosis: float) -> None:
    if isinstance(n_obs, bool) or int(n_obs) != n_obs or n_obs < 2:
        raise ValueError(f"n_obs must be an integer >= 2 (the number of returns), got {n_obs!r}")
    if not math.isfinite(skew):
        raise ValueError(f"skew must be finite, got {skew!r}")
    if not math.isfinite(kurtosis) or kurtosis < 1:
        raise ValueError(f"kurtosis must be finite and >= 1 (non-excess: a normal is 3), got {kurtosis!r}")


def probabilistic_sharpe_ratio(
    sr: float, sr_benchmark: float, n_obs: int, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """P(true Sharpe > `sr_benchmark`) given the per-period estimate `sr` over `n_obs` returns of skewness `skew`
    and non-excess `kurtosis`. NaN when `sr` is NaN (an undefined Sharpe: no variance)."""
    _check_moments(n_obs, skew, kurtosis)
    if not math.isfinite(sr_benchmark):
        raise ValueError(f"sr_benchmark must be finite, got {sr_benchmark!r}")
    if math.isnan(sr):
        return math.nan
    variance = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not variance > 0:
        raise ValueError(
            f"the Sharpe estimate's variance term 1 - skew sr + (kurtosis - 1) / 4 sr^2 is {variance:.3g} <= 0 "
            f"(sr {sr:.4g}, skew {skew:.4g}, kurtosis {kurtosis:.4g}): is sr per period, not annualized?"
        )
    # imported here: scipy was ~10% of a daily run's start when imported with the definitions
    from scipy.stats import norm

    return float(norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe of `n_trials` unskilled trials (true Sharpe 0) whose Sharpe
    ratios have `variance` (per period). 0 for one trial (no selection)."""
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"variance (of the trials' Sharpe ratios) must be finite and >= 0, got {variance!r}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    from scipy.stats import norm

    z = (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n) + EULER_GAMMA * norm.ppf(1 - 1 / (n * math.e))
    return float(math.sqrt(variance) * z)


def deflated_sharpe_from_moments(
    sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, variance: float
) -> float:
    """DSR = PSR(SR0) for a per-period Sharpe `sr` chosen among `n_trials` whose Sharpes have `variance`."""
    return probabilistic_sharpe_ratio(sr, expected_max_sharpe(n_trials, variance), n_obs, skew, kurtosis)


def return_moments(returns: Sequence[float] | np.ndarray) -> tuple[float, int, float, float]:
    """(per-period Sharpe, T, skewness, non-excess kurtosis) of a return series: Sharpe = mean / standard
    deviation (ddof 1, as `metrics.series_stats`), skewness and kurtosis the sample moments (biased, as
    `scipy.stats.skew` / `kurtosis(fisher=False)`). NaN Sharpe, skew 0 and kurtosis 3 when the returns do not
    vary."""
    r = np.asarray(returns, dtype=float)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"returns must be one series of at least 2 returns, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"returns hold {int(np.sum(~np.isfinite(r)))} non-finite values")
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    if m2 == 0 or float(np.std(r, ddof=1)) == 0:
        return math.nan, int(r.size), 0.0, 3.0
    sr = float(r.mean()) / float(np.std(r, ddof=1))
    return sr, int(r.size), float(np.mean(centred**3)) / m2**1.5, float(np.mean(centred**4)) / m2**2


def deflated_sharpe_ratio(
    returns_of_winner: Sequence[float] | np.ndarray,
    trial_sharpes: Sequence[float] | np.ndarray,
    n_trials: int | None = None,
) -> float:
    """The deflated Sharpe ratio of the selected strategy: its per-period `returns_of_winner` (T, skewness and
    kurtosis are theirs) and the per-period Sharpe ratios of every trial of the selection, the winner's
    included (their variance is V). `n_trials` defaults to the number of trials given; trials with an
    undefined (NaN) Sharpe count as trials but not in V. NaN when the winner's returns do not vary."""
    sharpes = np.asarray(trial_sharpes, dtype=float)
    if sharpes.ndim != 1 or sharpes.size == 0:
        raise ValueError(f"trial_sharpes must be one non-empty series, got shape {sharpes.shape}")
    n = int(sharpes.size) if n_trials is None else n_trials
    if n < sharpes.size:
        raise ValueError(f"n_trials ({n}) is below the number of trial Sharpe ratios given ({sharpes.size})")
    finite = sharpes[np.isfinite(sharpes)]
    variance = float(np.var(finite, ddof=1)) if finite.size >= 2 else 0.0
    sr, t, skew, kurtosis = return_moments(returns_of_winner)
    if math.isnan(sr):
        return math.nan
    return deflated_sharpe_from_moments(sr, t, skew, kurtosis, n, variance)
