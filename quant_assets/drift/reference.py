"""What a model bundle remembers about its training data and its validation predictions.

``ReferenceStats`` (built by ``reference_stats_from_frame`` from the training rows of
``create_features``) holds, per monitored feature:

* ``mean``, ``std``, ``n`` of the pooled training values;
* ``atoms``: the values that hold at least ``atom_share`` (2 %) of the training values each, at
  most ``max_atoms`` (8) of them: the point mass at 0 of a return on a price tick, the levels of
  a discrete feature (none for a continuous feature). Everything below except the atoms' own
  statistics describes the *continuous part*, the values that are not atoms;
* ``edges``: the interior PSI bin edges, the deciles of the continuous part (``bins`` = 10; tied
  edges are merged, so a feature may have fewer bins), and ``shares``, the pooled training share
  of each category: one per atom first, then one per continuous bin (they sum to 1);
* per *time-of-session bucket* (``bucket_edges``, minutes after 09:30; by default 10-minute
  buckets over the first and the last 30 minutes, 30-minute buckets in between, 17 in all; rows
  outside regular hours join the first / last bucket): ``bucket_shares`` (the bin shares of that
  bucket) and ``bucket_quantiles`` (``cdf_points`` = 51 quantiles at levels
  0, 0.02, ..., 1: the bucket's CDF for the KS test), ``bucket_n`` rows and ``bucket_n_eff``
  effective rows;
* ``acf``: the autocorrelation of the feature's probability-integral transform u = F_bucket(x) at
  lags 1..M along each ticker's rows (pooled over tickers, Sokal's automatic window M = the
  smallest lag with M >= 5 tau(M), at most ``max_lag``), and ``cross_corr``, the mean
  contemporaneous correlation of u between tickers (clipped to [0, 0.99]);
* for the atoms: ``atom_acf`` and ``atom_cross_corr``, the same two measured on the indicator
  "the value is an atom" minus its bucket's atom share, and ``bucket_atom_n_eff``, the effective
  rows of that indicator per bucket.

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

Why atoms: the KS test assumes a continuous distribution. On a thin ticker quoted on a tick,
15-62 % of the 1-minute returns are exactly 0, and the reference CDF jumps there; the KS
statistic of a sample with such ties against such a CDF (computed as for a continuous law)
measures the jump itself, so log_ret_1 "drifted" in half of the quiet windows. Splitting the
distribution into its atoms and a continuous part lets each be tested by what it is (the atoms
by their shares, the rest by KS against the conditional CDF of the non-atom values; see
``data_drift``). The continuous part's acf is measured along each ticker's non-atom values (what a
live window's continuous values are), the atoms' on the indicator along all rows. Bundles of
format 1 (before atoms) load as references without atoms.

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

REFERENCE_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: written before atoms; read as "no atoms"
ATOM_SHARE = 0.02  # a value holding this share of the training values is an atom (one CDF step)
MAX_ATOMS = 8
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


def mixture_weights(buckets: np.ndarray, n_buckets: int) -> np.ndarray:
    """Share of the rows in each time-of-session bucket (``buckets``: one index per row)."""
    counts = np.bincount(buckets, minlength=n_buckets).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def mixture_n_eff(bucket_n_eff: np.ndarray, weights: np.ndarray | None) -> float:
    """Effective size of a bucket mixture's reference: 1 / sum w_b^2 / n_eff_b (None: pooled)."""
    if weights is None:
        return float(bucket_n_eff.sum())
    w = np.asarray(weights)
    used = w > 0
    return float(1.0 / np.sum(w[used] ** 2 / np.maximum(bucket_n_eff[used], 1.0)))


# --- per-feature reference ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FeatureReference:
    """Training statistics of one feature (see the module docstring)."""

    name: str
    n: int
    mean: float
    std: float
    edges: np.ndarray  # interior PSI bin edges of the continuous part, strictly increasing
    shares: np.ndarray  # pooled shares of the categories: atoms, then continuous bins (sum 1)
    quantiles: np.ndarray  # pooled quantiles of the continuous part at ``levels``
    bucket_shares: np.ndarray  # (n_buckets, categories), rows sum to 1
    bucket_quantiles: np.ndarray  # (n_buckets, cdf_points) of the continuous part at ``levels``
    bucket_n: np.ndarray  # rows per bucket (int), atoms included
    bucket_n_eff: np.ndarray  # effective rows of the continuous part per bucket
    acf: np.ndarray  # rho_1..rho_M of the continuous part's PIT values (Sokal-truncated)
    cross_corr: float  # mean contemporaneous correlation between tickers, in [0, 0.99]
    levels: np.ndarray = field(repr=False)  # the CDF levels of ``bucket_quantiles``
    atoms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sorted atom values
    atom_acf: np.ndarray = field(default_factory=lambda: np.zeros(0))  # of the atom indicator
    atom_cross_corr: float = 0.0
    bucket_atom_n_eff: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def bins(self) -> int:
        """Number of PSI categories: one per atom, then the continuous bins."""
        return int(self.atoms.size + self.edges.size + 1)

    @property
    def has_continuous(self) -> bool:
        """Whether the training data had values off the atoms to build a CDF from."""
        return bool(self.bucket_n_eff.sum() > 0)

    @property
    def tau(self) -> float:
        """Integrated autocorrelation time 1 + 2 sum rho_k (rows per independent value)."""
        return float(1.0 + 2.0 * self.acf.sum())

    def atom_of(self, values: np.ndarray) -> np.ndarray:
        """Index of the atom each value equals exactly; -1 for a value of the continuous part."""
        return atom_index(self.atoms, values)

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """PSI category of each value: its atom, else atoms + its continuous bin (a value equal
        to an edge goes to the upper bin)."""
        atom = self.atom_of(values)
        binned = self.atoms.size + np.searchsorted(self.edges, values, side="right")
        return np.where(atom >= 0, atom, binned)

    def expected_shares(self, weights: np.ndarray | None) -> np.ndarray:
        """Category shares of the bucket mixture ``weights`` (None: the pooled shares)."""
        if weights is None:
            return self.shares
        return np.asarray(weights) @ self.bucket_shares

    def cdf(self, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """CDF of the continuous part of the bucket mixture at ``x`` (None: pooled); without
        atoms, the feature's CDF."""
        x = np.asarray(x, dtype=np.float64)
        if weights is None:
            return np.interp(x, self.quantiles, self.levels, left=0.0, right=1.0)
        out = np.zeros_like(x)
        for b in np.flatnonzero(np.asarray(weights) > 0):
            q = self.bucket_quantiles[b]
            out += weights[b] * np.interp(x, q, self.levels, left=0.0, right=1.0)
        return out

    def full_cdf(self, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """CDF of the whole feature (atoms and continuous part) of the bucket mixture at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        j = self.atoms.size
        if j == 0:
            return self.cdf(x, weights)
        below = (self.atoms[None, :] <= x[:, None]).astype(np.float64)  # (values, atoms)
        if weights is None:
            mass = self.shares[:j]
            return below @ mass + (1.0 - mass.sum()) * self.cdf(x, None)
        out = np.zeros_like(x)
        for b in np.flatnonzero(np.asarray(weights) > 0):
            mass = self.bucket_shares[b, :j]
            cont = np.interp(x, self.bucket_quantiles[b], self.levels, left=0.0, right=1.0)
            out += weights[b] * (below @ mass + (1.0 - mass.sum()) * cont)
        return out

    def reference_n_eff(self, weights: np.ndarray | None) -> float:
        """Effective size of the continuous part's reference CDF of the mixture ``weights``."""
        return mixture_n_eff(self.bucket_n_eff, weights)

    def atom_reference_n_eff(self, weights: np.ndarray | None) -> float:
        """Effective size of the reference atom shares of the mixture ``weights``."""
        return mixture_n_eff(self.bucket_atom_n_eff, weights)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "atoms": [float(v) for v in self.atoms],  # exact: live values are matched to them
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
            "atom_acf": _floats(self.atom_acf),
            "atom_cross_corr": self.atom_cross_corr,
            "bucket_atom_n_eff": _floats(self.bucket_atom_n_eff),
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], levels: np.ndarray) -> FeatureReference:
        """Inverse of ``to_dict``; a format-1 entry (no atom fields) has no atoms."""
        atoms = np.asarray(data.get("atoms", ()), dtype=np.float64)
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
            atoms=atoms,
            atom_acf=np.asarray(data.get("atom_acf", ()), dtype=np.float64),
            atom_cross_corr=float(data.get("atom_cross_corr", 0.0)),
            bucket_atom_n_eff=np.asarray(
                data.get("bucket_atom_n_eff", np.zeros(len(data["bucket_n"]))), dtype=np.float64
            ),
        )
        ref.check()
        return ref

    def check(self) -> None:
        """Raise ValueError when the arrays do not fit together."""
        name = self.name
        nb, cats = self.bucket_shares.shape
        if self.shares.shape != (cats,) or cats != self.bins:
            raise ValueError(f"reference of {name!r}: edges/atoms/shares do not match the bins")
        if np.any(np.diff(self.atoms) <= 0):
            raise ValueError(f"reference of {name!r}: atoms must increase strictly")
        shape = (nb, self.levels.size)
        if self.bucket_quantiles.shape != shape or self.quantiles.shape != self.levels.shape:
            raise ValueError(f"reference of {name!r}: quantiles do not match the levels")
        arrays = (self.bucket_n, self.bucket_n_eff, self.bucket_atom_n_eff)
        if any(a.shape != (nb,) for a in arrays):
            raise ValueError(f"reference of {name!r}: bucket arrays do not match")


def atom_index(atoms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index into the sorted ``atoms`` of each value equal to one; -1 for the others."""
    values = np.asarray(values, dtype=np.float64)
    if atoms.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    j = np.minimum(np.searchsorted(atoms, values), atoms.size - 1)
    return np.where(atoms[j] == values, j, -1).astype(np.int64)


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
        return mixture_weights(self.bucket_of(ts), self.n_buckets)

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
        if int(data.get("format", -1)) not in READABLE_FORMATS:
            raise ValueError(
                f"reference stats format {data.get('format')!r} is not one of {READABLE_FORMATS}"
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
@dataclass(frozen=True)
class _Build:
    """The options of one reference build, shared by its features."""

    bins: int
    levels: np.ndarray
    n_buckets: int
    max_lag: int
    min_bucket_rows: int
    n_tickers: int
    atom_share: float | None
    max_atoms: int


@dataclass(frozen=True)
class _Rows:
    """One feature's finite training values with their bucket, ticker, time and session,
    sorted by (ticker, ts)."""

    x: np.ndarray
    bucket: np.ndarray
    codes: np.ndarray
    ts_ns: np.ndarray
    day: np.ndarray

    def subset(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.x[keep], self.bucket[keep], self.codes[keep], self.ts_ns[keep],
                     self.day[keep])  # fmt: skip


def reference_stats_from_frame(
    features: pd.DataFrame,
    columns: Sequence[str],
    bins: int = 10,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    cdf_points: int = 51,
    max_lag: int = SESSION_MINUTES,
    exclude: Sequence[str] = CALENDAR_FEATURES,
    min_bucket_rows: int = 50,
    atom_share: float | None = ATOM_SHARE,
    max_atoms: int = MAX_ATOMS,
) -> ReferenceStats:
    """Reference statistics of the training rows ``features`` (a ``create_features`` frame).

    ``features`` needs ``ticker``, ``ts`` and ``columns``; pass exactly the rows the model was
    trained on (warm rows of the train segment). Non-finite values are dropped per feature.
    Columns in ``exclude`` (the calendar encodings) are not monitored. A bucket with fewer than
    ``min_bucket_rows`` values uses the pooled statistics. A value holding at least
    ``atom_share`` of a feature's values is an atom (the heaviest ``max_atoms``; None: no atoms,
    as in format 1). Deterministic (no sampling).
    """
    if bins < 2 or cdf_points < 3 or max_lag < 1:
        raise ValueError("need bins >= 2, cdf_points >= 3, max_lag >= 1")
    if (atom_share is not None and not 0 < atom_share <= 1) or max_atoms < 0:
        raise ValueError("need atom_share in (0, 1] (or None) and max_atoms >= 0")
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
    build = _Build(
        bins=bins,
        levels=np.linspace(0.0, 1.0, cdf_points),
        n_buckets=len(edges) - 1,
        max_lag=max_lag,
        min_bucket_rows=min_bucket_rows,
        n_tickers=len(uniques),
        atom_share=atom_share,
        max_atoms=max_atoms,
    )

    out: dict[str, FeatureReference] = {}
    for name in cols:
        x = features[name].to_numpy(dtype=np.float64)[order]
        ok = np.isfinite(x)
        if ok.sum() < max(2 * bins, 20):
            raise ValueError(f"too few finite training values for feature {name!r}")
        rows = _Rows(x, buckets, codes, ts_ns, day).subset(ok)
        out[name] = _feature_reference(name, rows, build)
    return ReferenceStats(
        features=out,
        bucket_edges=edges,
        levels=build.levels,
        n_rows=len(features),
        n_tickers=len(uniques),
        excluded=tuple(c for c in columns if c in set(exclude)),
    )


def find_atoms(x: np.ndarray, share: float | None, max_atoms: int) -> np.ndarray:
    """The values holding at least ``share`` of ``x`` each (the heaviest ``max_atoms``), sorted."""
    if share is None or x.size == 0 or max_atoms == 0:
        return np.zeros(0)
    values, counts = np.unique(x, return_counts=True)
    heavy = np.flatnonzero(counts >= share * x.size)
    heaviest = heavy[np.argsort(-counts[heavy], kind="stable")[:max_atoms]]
    return np.sort(values[heaviest])


def _feature_reference(name: str, rows: _Rows, build: _Build) -> FeatureReference:
    atoms = find_atoms(rows.x, build.atom_share, build.max_atoms)
    atom = atom_index(atoms, rows.x)
    cont = rows.subset(atom < 0)
    nb = build.n_buckets
    bucket_n = np.bincount(rows.bucket, minlength=nb)
    own = bucket_n >= build.min_bucket_rows
    edges = (
        np.unique(np.quantile(cont.x, np.linspace(0.0, 1.0, build.bins + 1)[1:-1]))
        if cont.x.size
        else np.zeros(0)
    )
    category = np.where(atom >= 0, atom, atoms.size + np.searchsorted(edges, rows.x, "right"))
    shares, bucket_shares = _category_shares(category, rows.bucket, atoms.size + edges.size + 1,
                                             own)  # fmt: skip
    quantiles, bucket_q, acf, cross, bucket_n_eff = _continuous_part(cont, build)
    atom_acf, atom_cross, atom_n_eff = _atom_part(atom >= 0, rows, own, build)
    ref = FeatureReference(
        name=name,
        n=int(rows.x.size),
        mean=float(rows.x.mean()),
        std=float(rows.x.std()),
        edges=edges,
        shares=shares,
        quantiles=quantiles,
        bucket_shares=bucket_shares,
        bucket_quantiles=bucket_q,
        bucket_n=bucket_n.astype(np.int64),
        bucket_n_eff=bucket_n_eff,
        acf=acf,
        cross_corr=cross,
        levels=build.levels,
        atoms=atoms,
        atom_acf=atom_acf,
        atom_cross_corr=atom_cross,
        bucket_atom_n_eff=atom_n_eff,
    )
    ref.check()
    return ref


def _category_shares(
    category: np.ndarray, bucket: np.ndarray, n_categories: int, own: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed pooled and per-bucket shares of the PSI categories (pooled where not ``own``)."""
    pooled = _smoothed(np.bincount(category, minlength=n_categories))
    per_bucket = np.tile(pooled, (own.size, 1))
    for b in np.flatnonzero(own):
        per_bucket[b] = _smoothed(np.bincount(category[bucket == b], minlength=n_categories))
    return pooled, per_bucket


def _continuous_part(
    rows: _Rows, build: _Build
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Quantiles (pooled, per bucket), acf, cross-correlation and effective rows per bucket of
    the values off the atoms; all zero when there are none."""
    levels, nb = build.levels, build.n_buckets
    if rows.x.size == 0:
        return np.zeros(levels.size), np.zeros((nb, levels.size)), np.zeros(0), 0.0, np.zeros(nb)
    pooled_q = np.quantile(rows.x, levels)
    bucket_q = np.tile(pooled_q, (nb, 1))
    own = np.bincount(rows.bucket, minlength=nb) >= build.min_bucket_rows
    u = np.empty_like(rows.x)
    for b in range(nb):
        sel = rows.bucket == b
        if own[b]:
            bucket_q[b] = np.quantile(rows.x[sel], levels)
        u[sel] = np.interp(rows.x[sel], bucket_q[b], levels)
    acf = _pooled_acf(u, rows.codes, build.max_lag)
    cross = _cross_correlation(u, rows.codes, rows.ts_ns, build.n_tickers)
    return pooled_q, bucket_q, acf, cross, _bucket_n_eff(rows, acf, cross, own, build)


def _atom_part(
    is_atom: np.ndarray, rows: _Rows, own: np.ndarray, build: _Build
) -> tuple[np.ndarray, float, np.ndarray]:
    """acf, cross-correlation and effective rows per bucket of the indicator "is an atom"
    minus its bucket's rate (the intraday pattern of the rate is not persistence)."""
    nb = build.n_buckets
    if not is_atom.any():
        return np.zeros(0), 0.0, np.zeros(nb)
    hit = is_atom.astype(np.float64)
    count = np.bincount(rows.bucket, minlength=nb)
    rate = np.where(own, np.bincount(rows.bucket, hit, nb) / np.maximum(count, 1), hit.mean())
    resid = hit - rate[rows.bucket]
    acf = _pooled_acf(resid, rows.codes, build.max_lag)
    cross = _cross_correlation(resid, rows.codes, rows.ts_ns, build.n_tickers)
    return acf, cross, _bucket_n_eff(rows, acf, cross, own, build)


def _bucket_n_eff(
    rows: _Rows, acf: np.ndarray, cross: float, own: np.ndarray, build: _Build
) -> np.ndarray:
    """Effective rows per bucket: each (ticker, session, bucket) block is a run of consecutive
    rows, deflated by the design effect of the cross-correlation; pooled where not ``own``."""
    design = 1.0 + (build.n_tickers - 1) * cross
    block = pd.DataFrame({"c": rows.codes, "d": rows.day, "b": rows.bucket})
    block = block.groupby(["b", "c", "d"]).size()
    uniq, inv = np.unique(block.to_numpy(), return_inverse=True)
    block_eff = np.asarray(effective_size(uniq, acf))[inv]
    b = block.index.get_level_values("b").to_numpy()
    n_eff = np.bincount(b, weights=block_eff, minlength=build.n_buckets) / design
    return np.where(own, n_eff, n_eff.sum())


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
