"""Evaluate one live window -> ``DriftReport``: per-feature PSI / KS, share drifted, concept, level.

``evaluate_window(features, reference, thresholds, probs, baseline)`` takes the window's rows of
a ``create_features`` frame (``ticker``, ``ts`` and the monitored columns; any tickers; chosen by
``drift.window``) and, optionally, the class probabilities the champion gave in that window.
Fewer than ``min_rows`` rows: level None, "not evaluated (n rows < min_rows)". Each feature is
tested on the whole window (the last hour) and on its newest ``recent_minutes`` (20); it counts
as drifted if either test says so. The hour gives power for slow changes, the recent part a
detection delay of ~20 minutes instead of ~50 (a shift fills a 60-minute window only slowly).

The report renders as a markdown table (``to_markdown``), a JSON-ready dict (``to_dict``) and a
PNG (``write_chart``); ``plot_history`` draws a sequence of reports and decisions (the chart
of the ``drift_report`` asset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quant_assets.drift.concept_drift import ConceptDrift, concept_drift
from quant_assets.drift.data_drift import FeatureDrift, feature_drift
from quant_assets.drift.reference import ConceptBaseline, ReferenceStats
from quant_assets.drift.thresholds import DriftThresholds, Level, max_level
from quant_assets.market.calendar import MARKET_TZ, utc_index

if TYPE_CHECKING:
    from quant_assets.drift.severity import DriftDecision


@dataclass(frozen=True)
class DriftReport:
    """Drift of one window; ``level`` is None when the window was too small to evaluate."""

    evaluated_at: pd.Timestamp | None
    window_start: pd.Timestamp | None  # first row's ts
    window_end: pd.Timestamp | None  # last row's ts
    n_rows: int
    n_tickers: int
    features: tuple[FeatureDrift, ...]  # the whole window
    recent: tuple[FeatureDrift, ...]  # its newest ``recent_minutes`` (empty if off / too few)
    share_drifted: float
    data_level: Level | None
    concept: ConceptDrift | None
    level: Level | None
    reason: str
    thresholds: DriftThresholds = field(repr=False)

    @property
    def evaluated(self) -> bool:
        return self.level is not None

    @property
    def widened(self) -> bool:
        """Whether the window reaches further back than ``window_minutes`` before evaluated_at
        (widened within the session to meet ``min_rows``, ``drift.window``)."""
        if self.evaluated_at is None or self.window_start is None:
            return False
        span = pd.Timedelta(minutes=self.thresholds.window_minutes)
        return bool(self.window_start < self.evaluated_at - span)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Features drifted in the whole window or in its recent part."""
        recent = {f.name for f in self.recent if f.drifted}
        return tuple(f.name for f in self.features if f.drifted or f.name in recent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None) for Dagster metadata or a table."""
        return _clean(
            {
                "evaluated_at": _iso(self.evaluated_at),
                "window_start": _iso(self.window_start),
                "window_end": _iso(self.window_end),
                "n_rows": self.n_rows,
                "n_tickers": self.n_tickers,
                "widened": self.widened,
                "share_drifted": self.share_drifted,
                "drifted_features": list(self.drifted_features),
                "data_level": self.data_level,
                "level": self.level,
                "reason": self.reason,
                "concept": None if self.concept is None else self.concept.to_dict(),
                "features": [f.to_dict() for f in self.features],
                "recent": [f.to_dict() for f in self.recent],
                "thresholds": self.thresholds.to_dict(),
            }
        )

    def to_markdown(self) -> str:
        """A summary line and one table row per feature (PSI, band, KS D, p raw / p eff, the
        atoms' live / expected share and p)."""
        th = self.thresholds
        widened = (
            f" (widened within the session beyond {th.window_minutes} min to reach "
            f"{th.min_rows} rows)"
            if self.widened
            else ""
        )
        lines = [
            f"**Drift level: {self.level or 'not evaluated'}** — {self.reason}",
            "",
            f"Window {_iso(self.window_start)} .. {_iso(self.window_end)}{widened}: "
            f"{self.n_rows} rows, {self.n_tickers} tickers; share of features drifted "
            f"{self.share_drifted:.2f} (warn ≥ {th.share_warn:.2f}, severe ≥ "
            f"{th.share_severe:.2f}).",
            "",
            f"| feature | n | n_eff | PSI | band | KS D | p (textbook) | p (effective) | "
            f"atoms live / ref | p atoms | PSI {th.recent_minutes} min | "
            f"p eff {th.recent_minutes} min | drifted |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        recent = {f.name: f for f in self.recent}
        drifted = set(self.drifted_features)
        for f in self.features:
            r = recent.get(f.name)
            tail = "| |" if r is None else f"| {r.psi:.3f} | {r.p_eff:.2g} |"
            atoms = (
                "| |"
                if not np.isfinite(f.atom_share_ref)
                else f"| {f.atom_share:.2f} / {f.atom_share_ref:.2f} | {f.p_atoms:.2g} |"
            )
            lines.append(
                f"| {f.name} | {f.n} | {f.n_eff:.1f} | {f.psi:.3f} | {f.psi_band} | "
                f"{f.ks_stat:.3f} | {f.p_raw:.2g} | {f.p_eff:.2g} {atoms} {tail} "
                f"{'yes' if f.name in drifted else ''} |"
            )
        if self.concept is not None:
            c = self.concept
            lines += [
                "",
                "| concept | live | baseline | z |",
                "|---|---:|---:|---:|",
                f"| mean max probability | {c.mean_max_prob:.4f} | {c.baseline_max_prob:.4f} | "
                f"{c.z_max_prob:+.2f} |",
                f"| mean entropy (nats) | {c.mean_entropy:.4f} | {c.baseline_entropy:.4f} | "
                f"{c.z_entropy:+.2f} |",
                "",
                f"Concept level: {c.level} ({c.direction}, |z| = {c.score:.2f}; warn ≥ "
                f"{self.thresholds.concept_z_warn:g}, severe ≥ "
                f"{self.thresholds.concept_z_severe:g}).",
            ]
        return "\n".join(lines)

    def write_chart(self, path: str | Path) -> Path:
        """PNG: PSI per feature with the 0.1 / 0.25 bands, and -log10 p (effective vs textbook)."""
        plt = _pyplot()
        path = Path(path)
        names = [f.name for f in self.features]
        y = np.arange(len(names))
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.32 * len(names) + 1.6), dpi=100)
        drifted = set(self.drifted_features)
        colors = [
            "tab:red"
            if f.name in drifted
            else ("tab:orange" if f.psi_band != "stable" else "tab:gray")
            for f in self.features
        ]
        a1.barh(y, [_nz(f.psi) for f in self.features], color=colors)
        for v, style in ((self.thresholds.psi_moderate, ":"), (self.thresholds.psi_major, "--")):
            a1.axvline(v, color="k", linestyle=style, linewidth=0.8)
        a1.set_yticks(y, names, fontsize=8)
        a1.invert_yaxis()
        if self.recent:
            a1.scatter([_nz(f.psi) for f in self.recent], y, marker="x", color="k", s=14)
        a1.set_xlabel(
            f"PSI of the window (bars) and of its last {self.thresholds.recent_minutes} min (x); "
            "red = drifted, orange = PSI band moved (not drifted), gray = stable"
        )
        eff = [-np.log10(max(f.p_eff, 1e-300)) for f in self.features]
        raw = [-np.log10(max(f.p_raw, 1e-300)) for f in self.features]
        a2.barh(y, np.minimum(eff, 50), color=colors, label="effective (used)")
        a2.scatter(np.minimum(raw, 50), y, marker="|", color="k", label="textbook (n = rows)")
        a2.axvline(-np.log10(self.thresholds.ks_alpha), color="k", linestyle="--", linewidth=0.8)
        a2.set_yticks(y, [])
        a2.invert_yaxis()
        a2.set_xlabel("KS -log10 p (capped at 50)")
        a2.legend(fontsize=7, loc="lower right")
        title = f"drift {self.level or 'not evaluated'}: share {self.share_drifted:.2f}"
        if self.concept is not None:
            title += f"; concept |z| {self.concept.score:.1f} ({self.concept.level})"
        fig.suptitle(f"{title} — window ending {_iso(self.window_end)}", fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
        return path


def evaluate_window(
    features: pd.DataFrame,
    reference: ReferenceStats,
    thresholds: DriftThresholds | None = None,
    probs: np.ndarray | None = None,
    baseline: ConceptBaseline | None = None,
    evaluated_at: Any = None,
) -> DriftReport:
    """Drift of the live rows ``features`` (and predictions ``probs``) against the bundle.

    Features with fewer than ``min_rows`` finite values are reported but left out of the share;
    concept drift needs ``probs`` with at least ``min_rows`` rows and a ``baseline``. With
    neither, the level is None and the reason "not evaluated (n rows < min_rows)".
    """
    th = thresholds or DriftThresholds()
    missing = [c for c in ("ticker", "ts", *reference.columns) if c not in features.columns]
    if missing:
        raise ValueError(f"window lacks columns {missing}")
    ts = utc_index(features["ts"])
    codes, tickers = pd.factorize(features["ticker"].astype("string"))
    values = {n: features[n].to_numpy(dtype=np.float64) for n in reference.columns}

    buckets = reference.bucket_of(ts) if th.time_of_day_reference else None

    def test(rows: np.ndarray | slice) -> tuple[FeatureDrift, ...]:
        b = None if buckets is None else buckets[rows]
        return tuple(
            feature_drift(ref, values[name][rows], codes[rows], b, th)
            for name, ref in reference.features.items()
        )

    drifts = test(slice(None))
    recent: tuple[FeatureDrift, ...] = ()
    recent_rows: np.ndarray | None = None
    if th.recent_minutes and len(ts):
        end = _utc(evaluated_at) if evaluated_at is not None else ts.max() + pd.Timedelta(minutes=1)
        rows = np.flatnonzero(ts >= end - pd.Timedelta(minutes=th.recent_minutes))
        if rows.size >= th.min_rows:
            recent, recent_rows = test(rows), rows
    recent_drifted = {f.name for f in recent if f.drifted and f.n >= th.min_rows}
    counted = [f for f in drifts if f.n >= th.min_rows]
    flags = [f.drifted or f.name in recent_drifted for f in counted]
    share = float(np.mean(flags)) if counted else 0.0
    data_level: Level | None = th.data_level(share) if counted else None
    concept = None
    if probs is not None and baseline is not None and len(probs) >= th.min_rows:
        if len(probs) != len(features):
            raise ValueError("probs must have one row per window row")
        concept = concept_drift(probs, baseline, th, ts, len(tickers))
        if recent_rows is not None:  # the recent part too; keep the stronger signal
            k = len(np.unique(codes[recent_rows]))
            late = concept_drift(probs[recent_rows], baseline, th, ts[recent_rows], k)
            if late is not None and late.score > concept.score:
                concept = late
    concept_level = None if concept is None else concept.level
    level = (
        None
        if data_level is None and concept_level is None
        else max_level(data_level, concept_level)
    )
    why = _not_evaluated(len(features), max((f.n for f in drifts), default=0), th.min_rows)
    parts = []
    if data_level is None:
        parts.append(f"data {why}")
    else:
        n_drift = sum(flags)
        parts.append(
            f"data {data_level}: {n_drift}/{len(counted)} features drifted (share {share:.2f})"
        )
    if concept is not None:
        parts.append(f"concept {concept.level}: |z| {concept.score:.1f} ({concept.direction})")
    reason = why if level is None else "; ".join(parts)
    end = None if len(ts) == 0 else ts.max()
    return DriftReport(
        evaluated_at=None if evaluated_at is None else _utc(evaluated_at),
        window_start=None if len(ts) == 0 else ts.min(),
        window_end=end,
        n_rows=len(features),
        n_tickers=len(tickers),
        features=drifts,
        recent=recent,
        share_drifted=share,
        data_level=data_level,
        concept=concept,
        level=level,
        reason=reason,
        thresholds=th,
    )


def _not_evaluated(rows: int, finite: int, min_rows: int) -> str:
    """Why a window's data was not evaluated: too few rows, or too few finite values."""
    if rows < min_rows:
        return f"not evaluated ({rows} rows < {min_rows})"
    return f"not evaluated ({finite} finite values per feature at most < {min_rows})"


def plot_history(
    reports: Sequence[DriftReport],
    path: str | Path,
    decisions: Sequence[DriftDecision] | None = None,
    title: str = "drift monitor",
) -> Path:
    """PNG timeline: share of drifted features (warn / severe lines), concept |z|, rollbacks."""
    plt = _pyplot()
    path = Path(path)
    th = reports[0].thresholds if reports else DriftThresholds()
    times = [r.evaluated_at or r.window_end for r in reports]
    x = np.arange(len(reports))
    fig, ax = plt.subplots(figsize=(10, 3.4), dpi=100)
    share = [r.share_drifted if r.data_level is not None else np.nan for r in reports]
    colors = {"none": "tab:green", "warn": "tab:orange", "severe": "tab:red", None: "tab:gray"}
    ax.plot(x, share, color="tab:blue", linewidth=1, label="share drifted")
    ax.scatter(x, share, c=[colors[r.level] for r in reports], s=10, zorder=3)
    ax.axhline(th.share_warn, color="tab:orange", linestyle=":", linewidth=0.8)
    ax.axhline(th.share_severe, color="tab:red", linestyle="--", linewidth=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share of features drifted")
    if any(r.concept is not None for r in reports):
        ax2 = ax.twinx()
        z = [r.concept.score if r.concept is not None else np.nan for r in reports]
        ax2.plot(x, z, color="tab:purple", linewidth=0.8, alpha=0.7, label="concept |z|")
        ax2.axhline(th.concept_z_severe, color="tab:purple", linestyle="--", linewidth=0.6)
        ax2.set_ylabel("concept |z|", color="tab:purple")
    for i, d in enumerate(decisions or ()):
        if d.rollback:
            ax.axvline(i, color="k", linewidth=1.5)
            ax.annotate("rollback", (i, 1.0), fontsize=8, rotation=90, va="top")
    if times:
        ticks = np.linspace(0, len(times) - 1, min(8, len(times))).astype(int)
        ax.set_xticks(ticks, [_short(times[i]) for i in ticks], fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat()


def _short(value: pd.Timestamp | None) -> str:
    return "" if value is None else value.tz_convert(MARKET_TZ).strftime("%m-%d %H:%M")


def _nz(value: float) -> float:
    return 0.0 if not np.isfinite(value) else value


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
