"""Temperature scaling of class probabilities, and how well calibrated they are (pure numpy).

Training with balanced class weights on mostly-flat labels makes the softmax outputs
miscalibrated (it over-predicts the rare up/down classes), so a log-loss comparison with the
class-prior baseline refuses every model. Two steps undo it:

1. **Prior shift.** A model trained with class weights w_k estimates probabilities
   proportional to w_k · p_k, so its logits carry + ln w_k; subtracting ``ln w`` (the
   ``log_prior_shift``; zeros for a model trained without weights) restores the class priors
   of the data (logit adjustment, Menon et al., 2021). A single temperature cannot do this:
   it changes sharpness, not priors (on 75 %-flat labels the weighted model's log-loss stays
   0.99 after temperature scaling, 0.67 after the shift). The shift can change a row's argmax
   — toward the frequent class, as Bayes' rule says it should.
2. **Temperature** (Guo et al., 2017): the shifted logits divided by one scalar T fitted on
   held-out data, ``softmax((z − ln w) / T)``; it keeps each row's argmax.

The models end in a softmax, so ``ln p`` serves as the logits (``softmax(ln p)`` = p: they
differ from the true logits by a per-row constant, which softmax ignores).

* ``fit_temperature``: T minimising the mean negative log-likelihood of the labels, by scipy's
  bounded scalar minimiser over ln T in ``TEMPERATURE_BOUNDS`` (the NLL is convex in 1/T, so
  it has one minimum there); never worse than T = 1 on the data it is fitted on.
* ``expected_calibration_error``: top-label ECE over ``ECE_BINS`` = 15 equal-width confidence
  bins ((0, 1/15], …, (14/15, 1]): Σ_b (n_b / n) · |accuracy_b − mean confidence_b|.
* ``log_loss``: mean −ln p[true class], p clipped at ``PROB_FLOOR`` and renormalised.
* ``calibration_report``: T and the log-loss and ECE before and after, per segment;
  ``report_scalars`` names its figures flat for MLflow and Dagster metadata
  (``calibration_temperature``, ``calibration_test_ece_before``, …), the same for every model.

Class indices follow the models' outputs: 0, 1, 2 = down, flat, up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn.metrics import log_loss as sklearn_log_loss

ECE_BINS = 15
PROB_FLOOR = 1e-7
TEMPERATURE_BOUNDS = (0.05, 20.0)
CLASSES = (0, 1, 2)


def log_prior_shift(class_weights: Mapping[int, float] | None) -> np.ndarray:
    """``ln w`` per class index (zeros when the model was trained without class weights)."""
    if not class_weights:
        return np.zeros(len(CLASSES))
    return np.log(np.array([float(class_weights[k]) for k in CLASSES]))


def apply_temperature(
    probs: np.ndarray, temperature: float, shift: np.ndarray | None = None
) -> np.ndarray:
    """``softmax((ln p − shift) / T)`` row by row (float64); T = 1 without a shift returns the
    probabilities as given."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    p = np.asarray(probs, dtype=np.float64)
    # The smallest normal float64 keeps ln finite for a probability that underflowed to 0.
    logits = np.log(np.clip(p, np.finfo(np.float64).tiny, 1.0))
    if shift is not None:
        logits = logits - np.asarray(shift, dtype=np.float64)
    return softmax(logits / temperature, axis=1)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean −ln p[y] of class indices ``y`` (p clipped at ``PROB_FLOOR``, rows renormalised)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_FLOOR, 1.0)
    return float(sklearn_log_loss(y, p / p.sum(axis=1, keepdims=True), labels=list(CLASSES)))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE over ``bins`` equal-width confidence bins (right-closed); 0 for no rows."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(p) == 0:
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # Bin b holds confidences in (b / bins, (b + 1) / bins]; a confidence of 0 goes to bin 0.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.bincount(index, correct, bins) - np.bincount(index, confidence, bins)
    return float(np.abs(gap).sum() / count.sum())


def fit_temperature(probs: np.ndarray, y: np.ndarray, shift: np.ndarray | None = None) -> float:
    """The T in ``TEMPERATURE_BOUNDS`` minimising ``log_loss(apply_temperature(probs, T,
    shift), y)``.

    Fit it on the validation segment only: test and holdout stay unseen. Returns 1.0 when no
    T does better than 1 (the minimiser's tolerance could otherwise land a hair above it).
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0 or len(y) != len(probs):
        raise ValueError("fit_temperature needs one label per row of probabilities, n >= 1")

    def nll(log_t: float) -> float:
        return log_loss(apply_temperature(probs, float(np.exp(log_t)), shift), y)

    low, high = np.log(TEMPERATURE_BOUNDS)
    best = minimize_scalar(nll, bounds=(low, high), method="bounded")
    return float(np.exp(best.x)) if best.fun < nll(0.0) else 1.0


def calibration_report(
    temperature: float,
    segments: Mapping[str, tuple[np.ndarray, np.ndarray]],
    shift: np.ndarray | None = None,
) -> dict[str, Any]:
    """T, the prior shift and, per segment name → (uncalibrated probabilities, labels), the
    log-loss and ECE before and after: {"method", "temperature", "log_prior_shift",
    "fitted_on", "ece_bins", "<segment>": {"n", "log_loss_before", "log_loss_after",
    "ece_before", "ece_after"}}; a segment without rows is left out."""
    report: dict[str, Any] = {
        "method": "prior shift + temperature",
        "temperature": float(temperature),
        "log_prior_shift": [float(v) for v in (np.zeros(3) if shift is None else shift)],
        "fitted_on": "validation",
        "ece_bins": ECE_BINS,
    }
    for name, (probs, y) in segments.items():
        if len(y) == 0:
            continue
        calibrated = apply_temperature(probs, temperature, shift)
        report[name] = {
            "n": len(y),
            "log_loss_before": log_loss(probs, y),
            "log_loss_after": log_loss(calibrated, y),
            "ece_before": expected_calibration_error(probs, y),
            "ece_after": expected_calibration_error(calibrated, y),
        }
    return report


def report_scalars(report: Mapping[str, Any]) -> dict[str, float]:
    """``calibration_temperature`` and ``calibration_{segment}_{figure}`` of a report."""
    out = {"calibration_temperature": float(report["temperature"])}
    for segment, figures in report.items():
        if isinstance(figures, Mapping):
            out.update({f"calibration_{segment}_{k}": float(v) for k, v in figures.items()})
    return out
