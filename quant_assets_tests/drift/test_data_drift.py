"""PSI and the KS tests on known distributions; the AR(1) false-alarm example; ties and atoms."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from quant_assets.drift.data_drift import (
    feature_drift,
    ks_pvalue,
    ks_statistic,
    lag1_autocorrelation,
    proportion_pvalue,
    psi,
    psi_from_samples,
    smoothed_shares,
)
from quant_assets.drift.reference import (
    DEFAULT_BUCKET_EDGES,
    ReferenceStats,
    ar1_effective_size,
    effective_size,
    reference_stats_from_frame,
    time_bucket,
)
from quant_assets.drift.report import evaluate_window
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets_tests.drift.helpers import zero_inflated_frame


def exact_psi_normal_shift(delta: float, bins: int = 10) -> float:
    """PSI of N(delta, 1) against the deciles of N(0, 1), exactly."""
    edges = stats.norm.ppf(np.linspace(0, 1, bins + 1))
    expected = np.full(bins, 1 / bins)
    actual = np.diff(stats.norm.cdf(edges - delta))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@pytest.mark.parametrize("delta", [0.0, 0.25, 0.5, 1.0])
def test_psi_matches_the_exact_value_on_large_samples(delta):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=400_000)
    live = rng.normal(delta, 1.0, size=400_000)
    exact = exact_psi_normal_shift(delta)
    assert psi_from_samples(ref, live) == pytest.approx(exact, rel=0.03, abs=2e-3)


def test_psi_bands_on_known_shifts():
    # the usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major
    assert exact_psi_normal_shift(0.2) < 0.1
    assert 0.1 < exact_psi_normal_shift(0.4) < 0.25
    assert exact_psi_normal_shift(0.6) > 0.25


def test_psi_smoothing_keeps_empty_bins_finite():
    expected = np.full(10, 0.1)
    counts = np.zeros(10)
    counts[0] = 60  # every live value in one bin, nine empty bins
    value = psi(expected, counts)
    assert np.isfinite(value) and value > 1.0
    assert smoothed_shares(np.zeros(4)).tolist() == [0.25] * 4
    # an expected share of exactly 0 is floored, not a division by zero
    assert np.isfinite(psi(np.r_[0.0, np.full(9, 1 / 9)], np.full(10, 6)))
    assert psi(expected, np.full(10, 1000)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="bins"):
        psi(expected, np.ones(9))


def test_psi_on_small_windows_is_noisy_under_the_null():
    # STACK_NOTES: with 10 bins and n = 100 (both samples), PSI > 0.25 ~21 % of the time under
    # no drift; at n >= 500 it rarely exceeds 0.1. PSI ~ chi2_(B-1) (1/n + 1/m) for small drifts.
    rng = np.random.default_rng(2)
    small = [psi_from_samples(rng.normal(size=100), rng.normal(size=100)) for _ in range(400)]
    assert 0.1 < np.mean(np.array(small) > 0.25) < 0.35
    big = rng.normal(size=50_000)
    large = [psi_from_samples(big, rng.normal(size=1000)) > 0.1 for _ in range(100)]
    assert np.mean(large) == 0.0


def test_ks_statistic_and_pvalues_agree_with_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(0.1, 1.0, size=700)
    res = stats.ks_1samp(x, stats.norm.cdf, method="exact")
    assert ks_statistic(x, stats.norm.cdf) == pytest.approx(res.statistic, abs=1e-12)
    assert stats.kstwo.sf(res.statistic, x.size) == pytest.approx(res.pvalue, rel=1e-6)
    # Stephens' corrected asymptotic law is close to the exact one
    assert ks_pvalue(res.statistic, x.size) == pytest.approx(res.pvalue, rel=0.1)
    assert ks_pvalue(float("nan"), 10) == 1.0 and ks_pvalue(0.5, 0) == 1.0


def test_ks_on_known_distributions_iid():
    rng = np.random.default_rng(4)
    n = 300
    shifted = stats.kstest(rng.normal(0.5, 1, n), "norm").statistic
    assert ks_pvalue(shifted, n) < 1e-6
    null = [ks_pvalue(stats.kstest(rng.normal(size=n), "norm").statistic, n) for _ in range(600)]
    assert 0.025 < np.mean(np.array(null) < 0.05) < 0.08  # a calibrated test at alpha = 0.05


def test_effective_size():
    phi = 0.9
    acf = phi ** np.arange(1, 400)
    # long windows: the textbook AR(1) formula n (1 - rho) / (1 + rho)
    assert effective_size(5000, acf) == pytest.approx(ar1_effective_size(5000, phi), rel=0.01)
    # short windows: more than the formula (the finite-n correction), never below 1 or above n
    assert ar1_effective_size(60, phi) < effective_size(60, acf) < 60
    assert effective_size(1, acf) == 1.0 and effective_size(0, acf) == 0.0
    assert effective_size(100, np.zeros(5)) == 100.0
    assert effective_size(100, -0.4 * np.ones(1)) == 100.0  # anti-persistence is not credited
    assert np.allclose(effective_size(np.array([10, 10]), acf), effective_size(10, acf))


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_ar1_windows_naive_ks_alarms_often_corrected_ks_does_not():
    """Two consecutive 250-minute windows of one AR(1) series with phi = 0.9, no drift at all:
    scipy's two-sample KS at alpha 0.05 alarms most of the time; the same statistic judged at
    the effective sample size (from the lag-1 autocorrelation, n (1 - rho) / (1 + rho)) alarms
    at about the nominal rate or less."""
    rng = np.random.default_rng(5)
    n, runs = 250, 300
    naive = corrected = 0
    for _ in range(runs):
        x = ar1(rng, 2 * n, 0.9)
        a, b = x[:n], x[n:]
        res = stats.ks_2samp(a, b)
        naive += res.pvalue < 0.05
        rho = lag1_autocorrelation(x)
        m = ar1_effective_size(n, rho) / 2  # two samples of equal effective size
        corrected += ks_pvalue(res.statistic, m) < 0.05
    assert naive / runs > 0.6  # ~0.7 here; STACK_NOTES quotes ~79 %
    assert corrected / runs <= 0.07


def test_lag1_autocorrelation():
    rng = np.random.default_rng(6)
    assert lag1_autocorrelation(ar1(rng, 20_000, 0.9)) == pytest.approx(0.9, abs=0.02)
    assert lag1_autocorrelation(np.ones(10)) == 0.0
    assert lag1_autocorrelation(np.arange(2.0)) == 0.0


# --- ties and point masses ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tie_reference():
    frame = zero_inflated_frame(sessions=8)
    return reference_stats_from_frame(frame, ["x"]).features["x"]


def live_hour(zero_share=0.45, scale=1.0, seed=9):
    """One hour (10:00-11:00) of three tickers from a later session."""
    frame = zero_inflated_frame(sessions=1, zero_share=zero_share, scale=scale, seed=seed,
                                first="2026-04-01")  # fmt: skip
    local = frame["ts"].dt.tz_convert("America/New_York")
    hour = frame[local.dt.hour == 10].reset_index(drop=True)
    return hour


def drift_of(ref, hour, **overrides):
    th = DriftThresholds(feature_psi=0.0, **overrides)  # evidence only: no effect-size floor
    codes = pd.factorize(hour["ticker"])[0]
    buckets = time_bucket(hour["ts"], DEFAULT_BUCKET_EDGES)
    return feature_drift(ref, hour["x"].to_numpy(), codes, buckets, th)


def test_quiet_tie_heavy_window_plain_ks_flags_it_the_tie_aware_test_does_not(tie_reference):
    hour = live_hour()
    plain = drift_of(tie_reference, hour, tie_aware=False)
    aware = drift_of(tie_reference, hour)
    # the same window, the same alpha: KS assuming continuity measures the jump at 0 itself
    assert plain.drifted and plain.p_eff < 1e-6 and plain.ks_stat > 0.3
    assert not aware.drifted and aware.p_eff > 0.01
    assert aware.atom_share == pytest.approx(0.45, abs=0.1)
    assert aware.atom_share_ref == pytest.approx(0.45, abs=0.03)
    assert aware.p_raw < 1e-6  # the textbook column shows the broken test for comparison


def test_report_shows_the_atoms(tie_reference):
    hour = live_hour()
    reference = ReferenceStats(
        {"x": tie_reference}, DEFAULT_BUCKET_EDGES, tie_reference.levels, 1, 3
    )
    report = evaluate_window(hour, reference, DriftThresholds(), evaluated_at=hour["ts"].max())
    md = report.to_markdown()
    assert "| atoms live / ref | p atoms |" in md
    f = report.features[0]
    assert f"| {f.atom_share:.2f} / {f.atom_share_ref:.2f} | {f.p_atoms:.2g} |" in md
    assert json.loads(json.dumps(report.to_dict()))["features"][0]["atom_share"] == f.atom_share


def test_tie_aware_test_finds_a_shift_of_the_zero_share(tie_reference):
    drift = drift_of(tie_reference, live_hour(zero_share=0.1))
    assert drift.drifted and drift.p_atoms < 1e-6 and drift.p_ks > 1e-3
    assert drift.atom_share < 0.2 < drift.atom_share_ref


def test_tie_aware_test_finds_a_shift_of_the_continuous_part(tie_reference):
    drift = drift_of(tie_reference, live_hour(scale=3.0))
    assert drift.drifted and drift.p_ks < 1e-4 and drift.p_atoms > 1e-3
    # a 10 % rescaling (a tick lattice after a 10 % price move) is within the tick tolerance
    small = drift_of(tie_reference, live_hour(scale=1.1))
    assert not small.drifted


def test_discrete_feature_levels_are_atoms():
    frame = zero_inflated_frame(sessions=6)
    rng = np.random.default_rng(4)
    frame["x"] = rng.choice([-1.0, 0.0, 1.0], size=len(frame), p=[0.3, 0.4, 0.3])
    ref = reference_stats_from_frame(frame, ["x"]).features["x"]
    assert ref.atoms.tolist() == [-1.0, 0.0, 1.0] and not ref.has_continuous
    hour = live_hour()
    hour["x"] = rng.choice([-1.0, 0.0, 1.0], size=len(hour), p=[0.3, 0.4, 0.3])
    assert not drift_of(ref, hour).drifted
    hour["x"] = rng.choice([-1.0, 0.0, 1.0], size=len(hour), p=[0.1, 0.8, 0.1])
    moved = drift_of(ref, hour)
    assert moved.drifted and moved.p_atoms < 1e-6 and np.isnan(moved.ks_stat)


def test_proportion_pvalue_is_the_doubled_binomial_tail():
    for n, k, p in ((100, 30, 0.5), (60, 1, 0.2), (500, 260, 0.45), (40, 40, 0.9)):
        exact = min(1.0, 2 * min(stats.binom.cdf(k, n, p), stats.binom.sf(k - 1, n, p)))
        assert proportion_pvalue(k / n, p, n) == pytest.approx(exact, rel=1e-9)
    assert proportion_pvalue(0.3, 0.3, 0.0) == 1.0 and proportion_pvalue(0.3, 0.0, 50) == 1.0
    rng = np.random.default_rng(5)
    null = [proportion_pvalue(rng.binomial(80, 0.3) / 80, 0.3, 80) < 0.05 for _ in range(2000)]
    assert np.mean(null) <= 0.06  # calibrated (conservative: the tails of a discrete law)


def test_ks_statistic_with_a_relative_tolerance():
    rng = np.random.default_rng(6)
    x = rng.normal(size=20_000)
    noise = ks_statistic(x, stats.norm.cdf)
    assert ks_statistic(x, stats.norm.cdf, 0.0) == noise
    rescaled = 1.1 * x  # every value 10 % further from 0: within a 25 % tolerance
    assert ks_statistic(rescaled, stats.norm.cdf) > 0.02 > 2 * noise
    assert ks_statistic(rescaled, stats.norm.cdf, 0.25) <= noise  # only the sampling noise
    assert ks_statistic(3.0 * x, stats.norm.cdf, 0.25) > 0.15  # a 3x volatility is not
