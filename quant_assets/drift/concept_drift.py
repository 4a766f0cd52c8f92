"""Concept drift: the live window's mean confidence and entropy against the validation baseline.

For the live predictions of one window (n rows of class probabilities from k tickers) the mean
max-probability (confidence) and the mean entropy (nats) are compared with ``ConceptBaseline``:

    z = (live mean - expected mean) / (sd_window * sqrt(window / n * (1 + (k - 1) rho)))

* expected mean: the baseline's time-of-session bucket means averaged over the live rows' times
  (the pooled mean when no times are given): a model is more confident at the volatile open;
* sd_window: the spread of the mean across validation windows of ``window`` consecutive rows of
  one ticker, so the autocorrelation of predictions is already in it;
* sqrt(window / n): rescales it to the live window's row count (k tickers x ``window`` minutes
  have k times the rows), and the design effect 1 + (k - 1) rho puts back what the correlation
  rho between tickers (measured on the validation period) takes away.

The score is max(|z_confidence|, |z_entropy|). The plan's "confidence consistently drops" is
z_confidence < 0, but a jump in confidence is flagged too (saturated outputs on out-of-range
inputs); ``direction`` says which way it went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from quant_assets.drift.reference import ConceptBaseline, prediction_scores
from quant_assets.drift.thresholds import DriftThresholds, Level

__all__ = ["ConceptDrift", "concept_drift", "prediction_scores"]


@dataclass(frozen=True)
class ConceptDrift:
    """Concept-drift figures of one window."""

    n: int
    mean_max_prob: float
    mean_entropy: float
    baseline_max_prob: float  # expected for the window's times of day
    baseline_entropy: float
    z_max_prob: float
    z_entropy: float
    score: float  # max(|z_max_prob|, |z_entropy|)
    direction: str  # "less confident", "more confident" or "stable"
    level: Level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def concept_drift(
    probs: np.ndarray,
    baseline: ConceptBaseline,
    thresholds: DriftThresholds,
    ts: Any = None,
    n_tickers: int = 1,
) -> ConceptDrift | None:
    """Concept drift of live ``probs`` (n, classes) made at times ``ts`` by ``n_tickers``
    tickers; None without rows."""
    conf, ent = prediction_scores(probs)
    if conf.size == 0:
        return None
    exp_c, exp_e = baseline.expected(ts)
    sd_c, sd_e = baseline.sd_of_mean(conf.size, n_tickers)
    mc, me = float(conf.mean()), float(ent.mean())
    zc = (mc - exp_c) / sd_c
    ze = (me - exp_e) / sd_e
    score = max(abs(zc), abs(ze))
    level = thresholds.concept_level(score)
    if level == "none":
        direction = "stable"
    else:
        direction = "less confident" if zc - ze < 0 else "more confident"
    return ConceptDrift(
        n=int(conf.size),
        mean_max_prob=mc,
        mean_entropy=me,
        baseline_max_prob=exp_c,
        baseline_entropy=exp_e,
        z_max_prob=float(zc),
        z_entropy=float(ze),
        score=float(score),
        direction=direction,
        level=level,
    )
