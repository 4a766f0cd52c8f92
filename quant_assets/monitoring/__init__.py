"""Drift monitoring (pure core): data drift, concept drift, severity and the rollback decision.

Modules
    ``reference``      training reference statistics and the validation prediction baseline
                       (what a model bundle stores; JSON round trip)
    ``data_drift``     PSI (smoothed) and an autocorrelation-aware KS test per feature
    ``concept_drift``  rolling confidence / entropy of live predictions against the baseline
    ``thresholds``     ``DriftThresholds``: every default, with the reason for it
    ``report``         evaluate one window -> ``DriftReport`` (markdown table, PNG charts)
    ``severity``       persistence (K consecutive severe), latch and cool-down -> ``DriftDecision``
    ``replay``         rolling windows over a feature frame, evaluated through the same path

No Dagster import anywhere in this package; the Dagster layer wires it (sensor cursor = the
``DriftState`` JSON, ``drift_report`` asset = ``DriftReport`` metadata).
"""

from quant_assets.monitoring.concept_drift import ConceptDrift, concept_drift, prediction_scores
from quant_assets.monitoring.data_drift import FeatureDrift, feature_drift, ks_pvalue, psi
from quant_assets.monitoring.reference import (
    CALENDAR_FEATURES,
    ConceptBaseline,
    FeatureReference,
    ReferenceStats,
    concept_baseline_from_probs,
    reference_stats_from_frame,
)
from quant_assets.monitoring.replay import ReplayStep, replay, rolling_windows
from quant_assets.monitoring.report import DriftReport, evaluate_window, plot_history
from quant_assets.monitoring.severity import (
    DriftDecision,
    DriftState,
    Level,
    advance,
)
from quant_assets.monitoring.thresholds import DriftThresholds

__all__ = [
    "CALENDAR_FEATURES",
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
    "plot_history",
    "prediction_scores",
    "psi",
    "reference_stats_from_frame",
    "replay",
    "rolling_windows",
]
