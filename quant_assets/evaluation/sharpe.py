"""How sure a Sharpe ratio is: the probabilistic Sharpe ratio of a return series (pure).

``probabilistic_sharpe_ratio(returns, benchmark=0)`` is Bailey & López de Prado (2012), "The
Sharpe Ratio Efficient Frontier", Journal of Risk 15(2): the probability that the true Sharpe
ratio of the process behind n returns exceeds ``benchmark``,

    PSR = Φ( (SR̂ − SR*) · √(n − 1) / √(1 − γ̂₃·SR̂ + (γ̂₄ − 1)/4 · SR̂²) )

* SR̂ = mean / sd (ddof 1) in the returns' own frequency, not annualized — for daily P&L it is
  the backtest's annualized Sharpe ÷ √252, so both figures come from the same series;
* γ̂₃ the skewness and γ̂₄ the kurtosis (3 for a normal distribution, not the excess), both
  the plain sample moments (``scipy.stats.skew`` / ``kurtosis(fisher=False)``, biased). For
  those Pearson's inequality γ̂₄ ≥ 1 + γ̂₃² holds, so the square root's argument is at least
  (1 − γ̂₃·SR̂/2)² ≥ 0 for any series;
* Φ the standard normal CDF; SR* = ``benchmark``, in the same frequency as SR̂.

NaN when there is nothing to tell: fewer than 2 returns, or every return the same (a strategy
that never trades has an undefined Sharpe, as in ``evaluation.backtest``), or a zero
denominator.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """P(true Sharpe > ``benchmark``) from the returns (see the module docstring)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be 1-D, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns must be finite")
    n = r.size
    if n < 2:
        return math.nan
    if np.ptp(r) == 0:  # every return equal (e.g. never traded): no spread, no Sharpe
        return math.nan
    sr = float(r.mean()) / float(r.std(ddof=1))
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    variance = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if variance <= 0:
        return math.nan
    return float(stats.norm.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(variance)))
