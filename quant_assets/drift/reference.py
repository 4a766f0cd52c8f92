"""What a model bundle remembers about its training data and its validation predictions.

``ReferenceStats`` (built by ``reference_stats_from_frame`` from the training rows of
``create_features``) holds, per monitored feature:

* ``mean``, ``std``, ``n`` of the pooled training values;
* ``edges``: the interior PSI bin edges, the training deciles (``bins`` = 10; tied edges of a
  discrete feature are merged, so a feature may have fewer bins), and ``shares``, the pooled
  training share of each bin;
* per *time-of-session bucket* (``bucket_edges``, minutes after 09:30; by default 10-minute
  buckets over the first and the last 30 minutes, 30-minute buckets in between, 17 in all; rows
  outside regular hours join the first / last bucket): ``bucket_shares`` (the bin shares of that
  bucket) and ``bucket_quantiles`` (``cdf_points`` = 51 quantiles at levels
  0, 0.02, ..., 1: the bucket's CDF for the KS test), ``bucket_n`` rows and ``bucket_n_eff``
  effective rows;
* ``acf``: the autocorrelation of the feature's probability-integral transform u = F_bucket(x) at
  lags 1..M along each ticker's rows (pooled over tickers, Sokal's automatic window M = the
  smallest lag with M >= 5 tau(M), at most ``max_lag``), and ``cross_corr``, the mean
  contemporaneous correlation of u between tickers (clipped to [0, 0.99]).

Why per time-of-session bucket: minute bars have a strong intraday seasonality (volatility and
volume are U-shaped; the first 30 minutes' lag returns and realized volatility contain the
overnight gap). A live window always covers one particular hour, so comparing it with the
whole-day training distribution flags every morning as drift. The live window is compared with
the *mixture* of the buckets it covers, weighted by its rows per bucket
(``FeatureReference.expected_shares`` / ``cdf``). The open and the close get finer buckets
because that is where the seasonality is steep (volume decays by 40 % over the first 10 minutes;
with a single 09:30-10:00 bucket, volume_rel_30 "drifted" in most 09:40 windows of the null).

Why the acf: minute features are strongly autocorrelated (lag-1 rho 0.87-0.997 for everything
except log_ret_1 and volume_rel_30), so a 60-minute window holds far fewer independent values
than rows. ``effective_size(n, acf) = n / (1 + 2 sum_{k<n} (1 - k/n) rho_k)`` is the variance
inflation of a mean of n consecutive values; for an AR(1) and n >> 1 it is n (1 - rho) / (1 + rho).
It is measured on the PIT values (ranks) because the KS statistic is a function of ranks, and
on the training data (long series) rather than on the live window (60 rows give a noisy,
downward-biased rho; under the null the live acf *is* the reference acf).

Calendar encodings (``CALENDAR_FEATURES``) are excluded: they are deterministic functions of the
clock, a one-hour window covers one hour of them whatever the market does, and they cannot drift.

``ConceptBaseline`` (``concept_baseline_from_probs``) is the mean max-probability and mean
entropy of the model's validation predictions, overall and per time-of-session bucket (a model
is more confident at the volatile open), and the standard deviation of their mean *across
windows* of ``window`` consecutive rows (NannyML's chunk-to-chunk idea: the autocorrelation of
predictions is inside that spread).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.features.spec import CALENDAR_FEATURES
from quant_assets.market.calendar import MARKET_TZ, SESSION_MINUTES, session_minute, utc_index

REFERENCE_FORMAT = 1
SOKAL_C = 5.0  # Sokal's window constant: stop summing the acf at M >= C * tau(M)
SHARE_SMOOTHING = 0.5  # pseudo-count per bin (Jeffreys) for reference and live bin shares
MAX_CROSS_CORR = 0.99

# --- time of session --------------------------------------------------------------------------
DEFAULT_BUCKET_EDGES: tuple[int, ...] = (
    0, 10, 20, *range(30, 361, 30), 370, 380, SESSION_MINUTES
)  # fmt: skip


def check_bucket_edges(edges: Sequence[int]) -> tuple[int, ...]:
    """Validate time-of-session bucket edges: 0 first, strictly increasing, >= 2 edges."""
    out = tuple(int(e) for e in edges)
    if len(out) < 2 or out[0] != 0 or any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"bucket edges must start at 0 and increase strictly, got {out}")
    return out


def time_bucket(ts: Any, edges: Sequence[int]) -> np.ndarray:
    """Bucket index of each timestamp (out-of-session rows join the first / last bucket)."""
    inner = np.asarray(edges[1:-1], dtype=np.int64)
    return np.searchsorted(inner, session_minute(ts), side="right").astype(np.int64)


def effective_size(n: int | np.ndarray, acf: np.ndarray) -> np.ndarray | float:
    """Effective number of independent values among ``n`` consecutive ones (1 <= n_eff <= n).

    ``n / (1 + 2 sum_{k=1}^{min(M, n-1)} (1 - k/n) rho_k)``: the variance of the mean of n
    consecutive values of a stationary series with autocorrelations ``acf`` = rho_1..rho_M,
    expressed as a number of independent values. Anti-persistence is not credited (cap at n).
    """
    acf = np.asarray(acf, dtype=np.float64)
    ns = np.atleast_1d(np.asarray(n, dtype=np.float64))
    out = np.zeros_like(ns)
    for i, m in enumerate(ns):
        if m <= 1:
            out[i] = max(m, 0.0)
            continue
        lags = min(acf.size, int(m) - 1)
        k = np.arange(1, lags + 1)
        denom = 1.0 + 2.0 * float(np.sum((1.0 - k / m) * acf[:lags]))
        out[i] = min(m, max(1.0, m / denom)) if denom > 0 else m
    return float(out[0]) if np.ndim(n) == 0 else out


def ar1_effective_size(n: int, rho: float) -> float:
    """The textbook AR(1) effective sample size n (1 - rho) / (1 + rho) (large n)."""
    return n * (1.0 - rho) / (1.0 + rho)


# --- per-feature reference ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FeatureReference:
    """Training statistics of one feature (see the module docstring)."""

    name: str
    n: int
    mean: float
    std: float
    edges: np.ndarray  # interior PSI bin edges, strictly increasing; bins = edges.size + 1
    shares: np.ndarray  # pooled bin shares (smoothed, sum 1)
    quantiles: np.ndarray  # pooled quantiles at ``levels``
    bucket_shares: np.ndarray  # (n_buckets, bins), rows sum to 1
    bucket_quantiles: np.ndarray  # (n_buckets, cdf_points) at ``levels``
    bucket_n: np.ndarray  # rows per bucket (int)
    bucket_n_eff: np.ndarray  # effective rows per bucket
    acf: np.ndarray  # rho_1..rho_M of the PIT values (Sokal-truncated)
    cross_corr: float  # mean contemporaneous correlation between tickers, in [0, 0.99]
    levels: np.ndarray = field(repr=False)  # the CDF levels of ``bucket_quantiles``

    @property
    def bins(self) -> int:
        return int(self.edges.size + 1)

    @property
    def tau(self) -> float:
        """Integrated autocorrelation time 1 + 2 sum rho_k (rows per independent value)."""
        return float(1.0 + 2.0 * self.acf.sum())

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """PSI bin of each value (a value equal to an edge goes to the upper bin)."""
        return np.searchsorted(self.edges, values, side="right")

    def expected_shares(self, weights: np.ndarray | None) -> np.ndarray:
        """Bin shares of the bucket mixture ``weights`` (None: the pooled shares)."""
        if weights is None:
            return self.shares
        return np.asarray(weights) @ self.bucket_shares

    def cdf(self, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """CDF of the bucket mixture at ``x`` (None: the pooled training CDF)."""
        x = np.asarray(x, dtype=np.float64)
        if weights is None:
            return np.interp(x, self.quantiles, self.levels, left=0.0, right=1.0)
        out = np.zeros_like(x)
        for b in np.flatnonzero(np.asarray(weights) > 0):
            q = self.bucket_quantiles[b]
            out += weights[b] * np.interp(x, q, self.levels, left=0.0, right=1.0)
        return out

    def reference_n_eff(self, weights: np.ndarray | None) -> float:
        """Effective size of the reference CDF of the mixture: 1 / sum w_b^2 / n_eff_b."""
        if weights is None:
            return float(self.bucket_n_eff.sum())
        w = np.asarray(weights)
        used = w > 0
        return float(1.0 / np.sum(w[used] ** 2 / np.maximum(self.bucket_n_eff[used], 1.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "edges": _floats(self.edges),
            "shares": _floats(self.shares),
            "quantiles": _floats(self.quantiles),
            "bucket_n": [int(v) for v in self.bucket_n],
            "bucket_n_eff": _floats(self.bucket_n_eff),
            "bucket_shares": [_floats(r) for r in self.bucket_shares],
            "bucket_quantiles": [_floats(r) for r in self.bucket_quantiles],
            "acf": _floats(self.acf),
            "tau": float(f"{self.tau:.4g}"),  # informational (derived from acf)
            "cross_corr": self.cross_corr,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], levels: np.ndarray) -> FeatureReference:
        ref = cls(
            name=name,
            n=int(data["n"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            edges=np.asarray(data["edges"], dtype=np.float64),
            shares=np.asarray(data["shares"], dtype=np.float64),
            quantiles=np.asarray(data["quantiles"], dtype=np.float64),
            bucket_shares=np.asarray(data["bucket_shares"], dtype=np.float64),
            bucket_quantiles=np.asarray(data["bucket_quantiles"], dtype=np.float64),
            bucket_n=np.asarray(data["bucket_n"], dtype=np.int64),
            bucket_n_eff=np.asarray(data["bucket_n_eff"], dtype=np.float64),
            acf=np.asarray(data["acf"], dtype=np.float64),
            cross_corr=float(data["cross_corr"]),
            levels=levels,
        )
        nb, bins = ref.bucket_shares.shape
        if ref.shares.shape != (bins,) or ref.edges.shape != (bins - 1,):
            raise ValueError(f"reference of {name!r}: edges/shares do not match the bins")
        if ref.bucket_quantiles.shape != (nb, levels.size) or ref.quantiles.shape != levels.shape:
            raise ValueError(f"reference of {name!r}: quantiles do not match the levels")
        if ref.bucket_n.shape != (nb,) or ref.bucket_n_eff.shape != (nb,):
            raise ValueError(f"reference of {name!r}: bucket arrays do not match")
        return ref


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Training reference of every monitored feature (``to_dict`` goes into ``bundle.json``)."""

    features: dict[str, FeatureReference]
    bucket_edges: tuple[int, ...]
    levels: np.ndarray
    n_rows: int
    n_tickers: int
    excluded: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The monitored features, in order."""
        return tuple(self.features)

    @property
    def n_buckets(self) -> int:
        return len(self.bucket_edges) - 1

    def bucket_of(self, ts: Any) -> np.ndarray:
        return time_bucket(ts, self.bucket_edges)

    def bucket_weights(self, ts: Any) -> np.ndarray:
        """Share of the rows ``ts`` in each time-of-session bucket."""
        counts = np.bincount(self.bucket_of(ts), minlength=self.n_buckets).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (plain lists and numbers); ``from_dict`` inverts it."""
        return {
            "format": REFERENCE_FORMAT,
            "bucket_edges": list(self.bucket_edges),
            "cdf_levels": _floats(self.levels),
            "n_rows": self.n_rows,
            "n_tickers": self.n_tickers,
            "excluded": list(self.excluded),
            "features": {name: ref.to_dict() for name, ref in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceStats:
        if int(data.get("format", -1)) != REFERENCE_FORMAT:
            raise ValueError(
                f"reference stats format {data.get('format')!r} is not {REFERENCE_FORMAT}"
            )
        levels = np.asarray(data["cdf_levels"], dtype=np.float64)
        feats = {
            str(name): FeatureReference.from_dict(str(name), f, levels)
            for name, f in data["features"].items()
        }
        stats = cls(
            features=feats,
            bucket_edges=check_bucket_edges(data["bucket_edges"]),
            levels=levels,
            n_rows=int(data["n_rows"]),
            n_tickers=int(data["n_tickers"]),
            excluded=tuple(data.get("excluded", ())),
        )
        for ref in feats.values():
            if ref.bucket_shares.shape[0] != stats.n_buckets:
                raise ValueError(f"reference of {ref.name!r} has the wrong number of buckets")
        return stats


def _floats(a: np.ndarray) -> list[float]:
    """Plain floats rounded to 8 significant digits (keeps bundle.json small; exact enough)."""
    return [float(f"{v:.8g}") for v in np.asarray(a, dtype=np.float64).ravel()]


# --- the builder -------------------------------------------------------------------------------
def reference_stats_from_frame(
    features: pd.DataFrame,
    columns: Sequence[str],
    bins: int = 10,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    cdf_points: int = 51,
    max_lag: int = SESSION_MINUTES,
    exclude: Sequence[str] = CALENDAR_FEATURES,
    min_bucket_rows: int = 50,
) -> ReferenceStats:
    """Reference statistics of the training rows ``features`` (a ``create_features`` frame).

    ``features`` needs ``ticker``, ``ts`` and ``columns``; pass exactly the rows the model was
    trained on (warm rows of the train segment). Non-finite values are dropped per feature.
    Columns in ``exclude`` (the calendar encodings) are not monitored. A bucket with fewer than
    ``min_bucket_rows`` values uses the pooled statistics. Deterministic (no sampling).
    """
    if bins < 2 or cdf_points < 3 or max_lag < 1:
        raise ValueError("need bins >= 2, cdf_points >= 3, max_lag >= 1")
    edges = check_bucket_edges(bucket_edges)
    need = ["ticker", "ts", *columns]
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise ValueError(f"features lack columns {missing}")
    cols = [c for c in columns if c not in set(exclude)]
    if not cols:
        raise ValueError("no monitored column left after the exclusions")
    codes, uniques = pd.factorize(features["ticker"].astype("string"))
    ts = utc_index(features["ts"])
    ts_ns = ts.as_unit("ns").asi8
    order = np.lexsort((ts_ns, codes))
    codes, ts_ns = codes[order], ts_ns[order]
    ts = ts[order]
    buckets = time_bucket(ts, edges)
    local = ts.tz_convert(MARKET_TZ)
    day = np.asarray(local.year * 400 + local.day_of_year, dtype=np.int64)
    levels = np.linspace(0.0, 1.0, cdf_points)
    nb = len(edges) - 1

    out: dict[str, FeatureReference] = {}
    for name in cols:
        x = features[name].to_numpy(dtype=np.float64)[order]
        ok = np.isfinite(x)
        if ok.sum() < max(2 * bins, 20):
            raise ValueError(f"too few finite training values for feature {name!r}")
        out[name] = _feature_reference(
            name, x[ok], buckets[ok], codes[ok], ts_ns[ok], day[ok], bins, levels, nb,
            max_lag, min_bucket_rows, len(uniques),
        )  # fmt: skip
    return ReferenceStats(
        features=out,
        bucket_edges=edges,
        levels=levels,
        n_rows=len(features),
        n_tickers=len(uniques),
        excluded=tuple(c for c in columns if c in set(exclude)),
    )


def _feature_reference(
    name: str,
    x: np.ndarray,
    bucket: np.ndarray,
    codes: np.ndarray,
    ts_ns: np.ndarray,
    day: np.ndarray,
    bins: int,
    levels: np.ndarray,
    nb: int,
    max_lag: int,
    min_bucket_rows: int,
    n_tickers: int,
) -> FeatureReference:
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    n_bins = edges.size + 1
    bin_idx = np.searchsorted(edges, x, side="right")
    pooled_counts = np.bincount(bin_idx, minlength=n_bins)
    pooled_shares = _smoothed(pooled_counts)
    pooled_q = np.quantile(x, levels)

    bucket_n = np.bincount(bucket, minlength=nb)
    bucket_shares = np.tile(pooled_shares, (nb, 1))
    bucket_q = np.tile(pooled_q, (nb, 1))
    own = bucket_n >= min_bucket_rows
    u = np.empty_like(x)
    for b in range(nb):
        sel = bucket == b
        if own[b]:
            bucket_shares[b] = _smoothed(np.bincount(bin_idx[sel], minlength=n_bins))
            bucket_q[b] = np.quantile(x[sel], levels)
        u[sel] = np.interp(x[sel], bucket_q[b], levels)

    acf = _pooled_acf(u, codes, max_lag)
    cross = _cross_correlation(u, codes, ts_ns, n_tickers)
    design = 1.0 + (n_tickers - 1) * cross
    # Effective rows per bucket: each (ticker, session, bucket) block is a run of consecutive rows.
    block = pd.DataFrame({"c": codes, "d": day, "b": bucket}).groupby(["b", "c", "d"]).size()
    lengths = block.to_numpy()
    uniq, inv = np.unique(lengths, return_inverse=True)
    block_eff = np.asarray(effective_size(uniq, acf))[inv]
    bucket_n_eff = (
        np.bincount(block.index.get_level_values("b").to_numpy(), weights=block_eff, minlength=nb)
        / design
    )
    bucket_n_eff = np.where(own, bucket_n_eff, bucket_n_eff.sum())
    return FeatureReference(
        name=name,
        n=int(x.size),
        mean=float(x.mean()),
        std=float(x.std()),
        edges=edges,
        shares=pooled_shares,
        quantiles=pooled_q,
        bucket_shares=bucket_shares,
        bucket_quantiles=bucket_q,
        bucket_n=bucket_n.astype(np.int64),
        bucket_n_eff=bucket_n_eff,
        acf=acf,
        cross_corr=cross,
        levels=levels,
    )


def _smoothed(counts: np.ndarray, alpha: float = SHARE_SMOOTHING) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return (counts + alpha) / (counts.sum() + alpha * counts.size)


def _segments(codes: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of equal codes (rows are sorted by ticker)."""
    if codes.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], codes.size]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _pooled_acf(u: np.ndarray, codes: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation of ``u`` along each ticker (demeaned per ticker), pooled; Sokal-truncated."""
    num = np.zeros(max_lag + 1)
    for lo, hi in _segments(codes):
        d = u[lo:hi] - u[lo:hi].mean()
        size = 1 << int(2 * d.size - 1).bit_length()
        f = np.fft.rfft(d, size)
        ac = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1]
        num[: ac.size] += ac
    if num[0] <= 0:
        return np.zeros(0)
    rho = num[1:] / num[0]
    tau = 1.0 + 2.0 * np.cumsum(rho)
    stop = np.flatnonzero(np.arange(1, max_lag + 1) >= SOKAL_C * tau)
    m = int(stop[0]) + 1 if stop.size else max_lag
    return rho[:m]


def _cross_correlation(u: np.ndarray, codes: np.ndarray, ts_ns: np.ndarray, k: int) -> float:
    """Mean pairwise contemporaneous correlation of ``u`` between tickers, clipped to [0, 0.99]."""
    if k < 2:
        return 0.0
    times, t_idx = np.unique(ts_ns, return_inverse=True)
    grid = np.full((times.size, k), np.nan)
    grid[t_idx, codes] = u
    corr = pd.DataFrame(grid).corr(min_periods=30).to_numpy()
    off = corr[~np.eye(k, dtype=bool)]
    off = off[np.isfinite(off)]
    if off.size == 0:
        return 0.0
    return float(np.clip(off.mean(), 0.0, MAX_CROSS_CORR))


# --- concept baseline ----------------------------------------------------------------------------
def prediction_scores(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (max probability) and entropy (nats) of each row of class probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (n, classes>=2), got shape {p.shape}")
    if p.size and not (np.isfinite(p).all() and (p >= 0).all()):
        raise ValueError("probs must be finite and >= 0")
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    safe = np.clip(p, 1e-12, 1.0)
    return p.max(axis=1), -(p * np.log(safe)).sum(axis=1)


@dataclass(frozen=True, eq=False)
class ConceptBaseline:
    """Validation predictions: mean confidence / entropy, per time-of-session bucket, and the
    spread of window means around them."""

    mean_max_prob: float
    mean_entropy: float
    sd_max_prob: float  # standard deviation of the residual mean over windows of ``window`` rows
    sd_entropy: float
    window: int
    n: int
    n_windows: int
    bucket_edges: tuple[int, ...] = (0, SESSION_MINUTES)
    bucket_max_prob: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bucket_entropy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cross_corr: float = 0.0  # correlation of window means between tickers at the same time

    def sd_of_mean(self, n: int, k: int = 1) -> tuple[float, float]:
        """Standard deviations of the mean confidence / entropy of a live window of ``n`` rows
        from ``k`` tickers: sd x sqrt(window / n x (1 + (k - 1) cross_corr))."""
        f = math.sqrt(self.window / max(n, 1) * (1.0 + (max(k, 1) - 1) * self.cross_corr))
        return self.sd_max_prob * f, self.sd_entropy * f

    def expected(self, ts: Any = None, n: int | None = None) -> tuple[float, float]:
        """Expected mean confidence and entropy of rows at times ``ts`` (None: pooled means)."""
        if ts is None or self.bucket_max_prob.size == 0:
            return self.mean_max_prob, self.mean_entropy
        b = time_bucket(ts, self.bucket_edges)
        if b.size == 0:
            return self.mean_max_prob, self.mean_entropy
        return float(self.bucket_max_prob[b].mean()), float(self.bucket_entropy[b].mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_max_prob": self.mean_max_prob,
            "mean_entropy": self.mean_entropy,
            "sd_max_prob": self.sd_max_prob,
            "sd_entropy": self.sd_entropy,
            "window": self.window,
            "n": self.n,
            "n_windows": self.n_windows,
            "bucket_edges": list(self.bucket_edges),
            "bucket_max_prob": _floats(self.bucket_max_prob),
            "bucket_entropy": _floats(self.bucket_entropy),
            "cross_corr": self.cross_corr,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConceptBaseline:
        base = cls(
            mean_max_prob=float(data["mean_max_prob"]),
            mean_entropy=float(data["mean_entropy"]),
            sd_max_prob=float(data["sd_max_prob"]),
            sd_entropy=float(data["sd_entropy"]),
            window=int(data["window"]),
            n=int(data["n"]),
            n_windows=int(data["n_windows"]),
            bucket_edges=check_bucket_edges(data.get("bucket_edges", (0, SESSION_MINUTES))),
            bucket_max_prob=np.asarray(data.get("bucket_max_prob", ()), dtype=np.float64),
            bucket_entropy=np.asarray(data.get("bucket_entropy", ()), dtype=np.float64),
            cross_corr=float(data.get("cross_corr", 0.0)),
        )
        nb = len(base.bucket_edges) - 1
        if base.bucket_max_prob.size not in (0, nb) or base.bucket_entropy.size not in (0, nb):
            raise ValueError("concept baseline bucket means do not match its bucket edges")
        return base


def concept_baseline_from_probs(
    probs: np.ndarray,
    window: int = 60,
    groups: np.ndarray | Sequence[Any] | None = None,
    ts: Any = None,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    min_bucket_rows: int = 50,
) -> ConceptBaseline:
    """Baseline of validation predictions ``probs`` (n, classes), rows in time order.

    ``groups`` (e.g. the ticker of each row; rows of a group contiguous and in time order) keeps
    windows inside one ticker; ``ts`` (the time of each prediction) gives per time-of-session
    bucket means (a model is more confident at the volatile open; without ``ts`` every live
    window is compared with the whole-day mean). Windows are consecutive, non-overlapping runs
    of ``window`` rows (a shorter remainder is dropped); the spread is that of the window means
    of the residuals (value minus its bucket mean), floored at the independent value
    sd_row / sqrt(window). With both ``groups`` and ``ts``, ``cross_corr`` is the mean
    correlation between tickers of their residual means over the same wall-clock windows (a live
    window pools the tickers; market-wide moves make them move together). Needs >= 3 windows.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    conf, ent = prediction_scores(probs)
    keys = (
        np.zeros(conf.size, dtype=np.int64)
        if groups is None
        else pd.factorize(np.asarray(groups))[0]
    )
    if keys.size != conf.size:
        raise ValueError("groups must have one entry per row of probs")
    edges = check_bucket_edges(bucket_edges)
    mc, me = float(conf.mean()) if conf.size else 0.0, float(ent.mean()) if ent.size else 0.0
    bucket_c, bucket_e = np.zeros(0), np.zeros(0)
    res_c, res_e = conf - mc, ent - me
    if ts is not None:
        b = time_bucket(ts, edges)
        if b.size != conf.size:
            raise ValueError("ts must have one entry per row of probs")
        nb = len(edges) - 1
        count = np.bincount(b, minlength=nb)
        own = count >= min_bucket_rows
        safe = np.maximum(count, 1)
        bucket_c = np.where(own, np.bincount(b, conf, nb) / safe, mc)
        bucket_e = np.where(own, np.bincount(b, ent, nb) / safe, me)
        res_c, res_e = conf - bucket_c[b], ent - bucket_e[b]
    means_c: list[float] = []
    means_e: list[float] = []
    for lo, hi in _segments(keys):
        for a in range(lo, hi - window + 1, window):
            means_c.append(float(res_c[a : a + window].mean()))
            means_e.append(float(res_e[a : a + window].mean()))
    if len(means_c) < 3:
        raise ValueError(f"need >= 3 windows of {window} rows, got {len(means_c)}")
    cross = 0.0
    if ts is not None and groups is not None and keys.max(initial=0) >= 1:
        slot = utc_index(ts).as_unit("ns").asi8 // (window * 60_000_000_000)
        frame = pd.DataFrame({"k": keys, "t": slot, "c": res_c, "e": res_e})
        for col in ("c", "e"):
            grid = frame.pivot_table(index="t", columns="k", values=col, aggfunc="mean")
            corr = grid.corr(min_periods=10).to_numpy()
            off = corr[~np.eye(corr.shape[0], dtype=bool)]
            off = off[np.isfinite(off)]
            if off.size:
                cross = max(cross, float(np.clip(off.mean(), 0.0, MAX_CROSS_CORR)))
    floor_c = float(res_c.std()) / math.sqrt(window)
    floor_e = float(res_e.std()) / math.sqrt(window)
    return ConceptBaseline(
        mean_max_prob=mc,
        mean_entropy=me,
        sd_max_prob=max(float(np.std(means_c, ddof=1)), floor_c, 1e-9),
        sd_entropy=max(float(np.std(means_e, ddof=1)), floor_e, 1e-9),
        window=window,
        n=int(conf.size),
        n_windows=len(means_c),
        bucket_edges=edges if ts is not None else (0, SESSION_MINUTES),
        bucket_max_prob=bucket_c,
        bucket_entropy=bucket_e,
        cross_corr=cross,
    )
