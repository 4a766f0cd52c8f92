"""The probabilistic Sharpe ratio: a value worked by hand, its limits and where it is undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quant_assets.evaluation.sharpe import probabilistic_sharpe_ratio

DAILY = [0.004, -0.002, 0.006, 0.001, -0.003, 0.005, 0.002, 0.0]


def hand_psr(returns: list[float], benchmark: float = 0.0) -> float:
    """Bailey & López de Prado's formula with every moment written out (no numpy, no scipy)."""
    n = len(returns)
    mean = sum(returns) / n
    deviations = [r - mean for r in returns]
    m2, m3, m4 = (sum(d**k for d in deviations) / n for k in (2, 3, 4))
    sd = math.sqrt(sum(d * d for d in deviations) / (n - 1))
    sr = mean / sd
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    z = (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_psr_of_a_short_record_equals_the_hand_worked_formula() -> None:
    # mean 0.001625, sd 0.0032486 (ddof 1): SR̂ 0.50021 per day; skewness −0.06891, kurtosis
    # 1.70819; 1 + 0.06891·0.50021 + 0.70819/4·0.50021² = 1.07877; z = 0.50021·√7 / √1.07877
    # = 1.27420; Φ(z) = 0.8987 (a normal table).
    assert hand_psr(DAILY) == pytest.approx(0.8987, abs=1e-4)
    assert probabilistic_sharpe_ratio(np.array(DAILY)) == pytest.approx(hand_psr(DAILY), rel=1e-12)
    assert probabilistic_sharpe_ratio(np.array(DAILY), benchmark=0.2) == pytest.approx(
        hand_psr(DAILY, benchmark=0.2), rel=1e-12
    )


def test_a_gaussian_record_gives_lo_s_standard_error() -> None:
    """With skew 0 and kurtosis 3 the denominator is Lo's (2002) √(1 + SR²/2)."""
    rng = np.random.default_rng(3)
    r = rng.standard_normal(200_000) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    z = sr * math.sqrt(len(r) - 1) / math.sqrt(1 + sr**2 / 2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert probabilistic_sharpe_ratio(r) == pytest.approx(expected, abs=1e-3)


def test_the_limits() -> None:
    r = np.array(DAILY)
    centred = r - r.mean()
    assert probabilistic_sharpe_ratio(centred) == pytest.approx(0.5, abs=1e-12)  # SR̂ = SR*
    # Longer records of the same returns are more certain: the PSR rises towards 1.
    psrs = [probabilistic_sharpe_ratio(np.tile(r, k)) for k in (1, 4, 16, 64)]
    assert psrs == sorted(psrs) and psrs[-1] > 0.999999
    # Fat left tails (negative skew, high kurtosis) make the same Sharpe less certain.
    crash = np.r_[np.full(19, 0.002), -0.02]
    boom = -crash[::-1] + 2 * crash.mean()  # same mean and sd, the tail on the right
    assert crash.mean() == pytest.approx(boom.mean())
    assert probabilistic_sharpe_ratio(crash) < probabilistic_sharpe_ratio(boom)


@given(st.lists(st.integers(min_value=-500, max_value=500), min_size=3, max_size=60))
def test_mirrored_returns_give_the_complementary_probability(bps: list[int]) -> None:
    r = np.array(bps) / 10_000  # daily P&L in whole basis points
    p = probabilistic_sharpe_ratio(r)
    if math.isnan(p):
        assert len(set(bps)) == 1  # only when every day is the same
        return
    assert 0.0 <= p <= 1.0
    assert probabilistic_sharpe_ratio(-r) == pytest.approx(1.0 - p, abs=1e-9)


def test_undefined_without_spread_or_with_one_return() -> None:
    assert math.isnan(probabilistic_sharpe_ratio(np.zeros(10)))  # never traded
    assert math.isnan(probabilistic_sharpe_ratio(np.array([0.01])))
    assert math.isnan(probabilistic_sharpe_ratio(np.array([])))
    with pytest.raises(ValueError, match="finite"):
        probabilistic_sharpe_ratio(np.array([0.01, np.nan, 0.02]))
