"""Data drift of one feature in one live window: smoothed PSI and an autocorrelation-aware KS test.

PSI
    ``sum_i (a_i - e_i) ln(a_i / e_i)`` over the training decile bins, with e the expected shares
    (the training shares of the time-of-session buckets the window covers, mixed by its rows per
    bucket) and a the live shares. Empty bins are smoothed with a pseudo-count of 0.5 per bin
    (Jeffreys: a = (count + 0.5) / (n + 0.5 B)) on both sides, so PSI is finite and an empty bin
    in a small window costs a bounded amount instead of infinity (or of being silently dropped).

KS, autocorrelation-aware (the effective-sample-size correction, not subsampling)
    The statistic D = sup |F_live - F_ref| is the one-sample KS statistic against the reference
    mixture CDF (the same number ``scipy.stats.ks_1samp`` gives, computed without its per-call
    overhead); its textbook p-value (``p_raw``: scipy's exact ``kstwo`` law at n = rows) is kept
    for comparison. The p-value used (``p_eff``) is Kolmogorov's asymptotic law with Stephens'
    small-sample correction, ``kstwobign.sf((sqrt(m) + 0.12 + 0.11 / sqrt(m)) D)``, evaluated
    at the combined effective size m = n_live n_ref / (n_live + n_ref), where

    * n_live = sum over tickers of ``effective_size(rows of that ticker, acf)`` divided by the
      design effect 1 + (k - 1) rho_x of k tickers with cross-correlation rho_x, and acf the
      training autocorrelation of the feature's ranks (``reference.effective_size``; for an
      AR(1) and long windows this is the n (1 - rho) / (1 + rho) of the textbook);
    * n_ref = the effective size of the reference mixture (training rows are autocorrelated too).

    Subsampling (keeping every tau-th row) was rejected: for the slow features tau is 20-60
    minutes, so a one-hour window would keep 1-3 rows per ticker and throw the rest away, and the
    result would depend on the phase of the subsample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from quant_assets.drift.reference import (
    SHARE_SMOOTHING,
    FeatureReference,
    effective_size,
)
from quant_assets.drift.thresholds import DriftThresholds


def smoothed_shares(counts: np.ndarray, alpha: float = SHARE_SMOOTHING) -> np.ndarray:
    """(count + alpha) / (n + alpha B): shares with no empty bin."""
    counts = np.asarray(counts, dtype=np.float64)
    return (counts + alpha) / (counts.sum() + alpha * counts.size)


def psi(expected: np.ndarray, actual_counts: np.ndarray, alpha: float = SHARE_SMOOTHING) -> float:
    """Population stability index of live bin counts against expected bin shares.

    ``expected`` are shares (they are floored at 1e-6 and renormalized); ``actual_counts`` are
    counts, smoothed with ``alpha`` per bin. Symmetric in the sense of Jeffreys' divergence.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), 1e-6)
    e = e / e.sum()
    a = smoothed_shares(actual_counts, alpha)
    if a.shape != e.shape:
        raise ValueError(f"expected has {e.size} bins, counts {a.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def psi_from_samples(reference: np.ndarray, live: np.ndarray, bins: int = 10) -> float:
    """PSI of two samples with the reference's quantile bins (the textbook recipe, smoothed)."""
    reference = np.asarray(reference, dtype=np.float64)
    live = np.asarray(live, dtype=np.float64)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    n_bins = edges.size + 1
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=n_bins)
    live_counts = np.bincount(np.searchsorted(edges, live, side="right"), minlength=n_bins)
    return psi(smoothed_shares(ref_counts), live_counts)


def ks_statistic(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """One-sample KS statistic sup |F_n - F| (as ``scipy.stats.ks_1samp``, without its overhead)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    if n == 0:
        return float("nan")
    f = cdf(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def ks_pvalue(d: float, n_eff: float) -> float:
    """Asymptotic KS p-value of statistic ``d`` at (effective) size ``n_eff`` (Stephens)."""
    if not (math.isfinite(d) and n_eff > 0):
        return 1.0
    root = math.sqrt(n_eff)
    return float(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * d))


def lag1_autocorrelation(x: np.ndarray) -> float:
    """Sample lag-1 autocorrelation (0 for fewer than 3 values or a constant series)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 3:
        return 0.0
    d = x - x.mean()
    den = float(d @ d)
    return float(d[:-1] @ d[1:] / den) if den > 0 else 0.0


def live_effective_size(ref: FeatureReference, rows_per_ticker: np.ndarray) -> float:
    """Effective size of a live window with ``rows_per_ticker`` consecutive rows per ticker."""
    counts = np.asarray(rows_per_ticker, dtype=np.float64)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    uniq, inv = np.unique(counts, return_inverse=True)
    per = np.asarray(effective_size(uniq, ref.acf))[inv]
    design = 1.0 + (counts.size - 1) * ref.cross_corr
    return float(per.sum() / design)


@dataclass(frozen=True)
class FeatureDrift:
    """Drift statistics of one feature in one window."""

    name: str
    n: int  # finite live values
    n_eff: float  # effective size the KS p-value used (live and reference combined)
    psi: float
    psi_band: str  # stable / moderate / major (thresholds.psi_band)
    ks_stat: float
    p_raw: float  # textbook KS p-value (n = rows, scipy)
    p_eff: float  # autocorrelation-aware KS p-value
    drifted: bool
    live_mean: float
    ref_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feature_drift(
    ref: FeatureReference,
    values: np.ndarray,
    ticker_codes: np.ndarray | None,
    weights: np.ndarray | None,
    thresholds: DriftThresholds,
) -> FeatureDrift:
    """PSI and KS of one feature's live ``values`` (one per row, NaN allowed) against ``ref``.

    ``ticker_codes`` (int per row) groups rows by ticker for the effective size (None: one
    series); ``weights`` are the window's rows per time-of-session bucket (None: compare with
    the pooled whole-day reference).
    """
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    x = values[ok]
    if x.size == 0:
        nan = float("nan")
        return FeatureDrift(ref.name, 0, 0.0, nan, "stable", nan, 1.0, 1.0, False, nan, ref.mean)
    counts = np.bincount(ref.bin_index(x), minlength=ref.bins)
    value = psi(ref.expected_shares(weights), counts)
    d = ks_statistic(x, lambda v: ref.cdf(v, weights))
    p_raw = float(stats.kstwo.sf(d, x.size))
    if thresholds.autocorrelation_correction:
        codes = np.zeros(x.size, np.int64) if ticker_codes is None else ticker_codes[ok]
        n_live = live_effective_size(ref, np.bincount(codes))
        n_ref = ref.reference_n_eff(weights)
    else:
        n_live, n_ref = float(x.size), float(ref.n)
    m = n_live * n_ref / (n_live + n_ref) if n_live + n_ref > 0 else 0.0
    p_eff = ks_pvalue(d, m)
    return FeatureDrift(
        name=ref.name,
        n=int(x.size),
        n_eff=float(m),
        psi=value,
        psi_band=thresholds.psi_band(value),
        ks_stat=d,
        p_raw=p_raw,
        p_eff=p_eff,
        drifted=bool(value >= thresholds.feature_psi and p_eff < thresholds.ks_alpha),
        live_mean=float(x.mean()),
        ref_mean=ref.mean,
    )
