"""Drift statistics (pure core): data drift, concept drift, severity and the rollback decision.

Modules
    ``reference``      training reference statistics and the validation prediction baseline
                       (what a model bundle stores; JSON round trip)
    ``data_drift``     PSI (smoothed) and an autocorrelation-aware, tie-aware KS test per feature
    ``concept_drift``  rolling confidence / entropy of live predictions against the baseline
    ``thresholds``     ``DriftThresholds``: every default, with the reason for it
    ``report``         evaluate one window -> ``DriftReport`` (markdown table, PNG charts)
    ``severity``       persistence (K consecutive severe), latch and cool-down -> ``DriftDecision``
    ``window``         the live window: the last hour, widened within the session to min_rows
    ``replay``         rolling windows over a feature frame, evaluated through the same path

No Dagster, database or model import anywhere in this package, so ``models`` can build a
bundle's reference statistics with it; ``monitoring.drift_monitor`` runs it on the live window
and keeps the decision state in the database.
"""

from quant_assets.drift.concept_drift import ConceptDrift, concept_drift
from quant_assets.drift.data_drift import FeatureDrift, feature_drift, ks_pvalue, psi
from quant_assets.drift.reference import (
    ConceptBaseline,
    FeatureReference,
    ReferenceStats,
    concept_baseline_from_probs,
    prediction_scores,
    reference_stats_from_frame,
)
from quant_assets.drift.replay import ReplayStep, replay, rolling_windows
from quant_assets.drift.report import DriftReport, evaluate_window, plot_history
from quant_assets.drift.severity import DriftDecision, DriftState, advance
from quant_assets.drift.thresholds import DriftThresholds, Level
from quant_assets.drift.window import live_window

__all__ = [
    "ConceptBaseline",
    "ConceptDrift",
    "DriftDecision",
    "DriftReport",
    "DriftState",
    "DriftThresholds",
    "FeatureDrift",
    "FeatureReference",
    "Level",
    "ReferenceStats",
    "ReplayStep",
    "advance",
    "concept_baseline_from_probs",
    "concept_drift",
    "evaluate_window",
    "feature_drift",
    "ks_pvalue",
    "live_window",
    "plot_history",
    "prediction_scores",
    "psi",
    "reference_stats_from_frame",
    "replay",
    "rolling_windows",
]
