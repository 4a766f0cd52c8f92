"""Temperature scaling and calibration error: invariants and planted miscalibration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax

from quant_assets.models.calibration import (
    ECE_BINS,
    TEMPERATURE_BOUNDS,
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    log_prior_shift,
    report_scalars,
)

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
logits = arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=st.floats(-8, 8))
temperatures = st.floats(*TEMPERATURE_BOUNDS)


def planted(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities; the predictions are those sharpened (T < 1) or
    softened (T > 1) by ``temperature``: T = 1 is a perfectly calibrated sample."""
    rng = np.random.default_rng(seed)
    truth = softmax(rng.normal(scale=1.5, size=(n, 3)), axis=1)
    y = (rng.random((n, 1)) > truth.cumsum(axis=1)).sum(axis=1)
    return apply_temperature(truth, temperature), y


@HYPOTHESIS
@given(logits)
def test_temperature_one_is_the_identity(z: np.ndarray) -> None:
    p = softmax(z, axis=1)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, rtol=1e-9, atol=1e-15)


@HYPOTHESIS
@given(logits, temperatures)
def test_temperature_keeps_each_rows_argmax_and_sums_to_one(z: np.ndarray, t: float) -> None:
    top2 = np.sort(z, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-6  # (near-)ties may round either way
    p = softmax(z, axis=1)
    out = apply_temperature(p, t)
    assert (out.argmax(axis=1) == p.argmax(axis=1))[clear].all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


@HYPOTHESIS
@given(logits, st.data())
def test_the_fitted_temperature_never_raises_the_log_loss(z: np.ndarray, data) -> None:
    p = softmax(z, axis=1)
    y = np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=len(p), max_size=len(p))))
    t = fit_temperature(p, y)
    assert TEMPERATURE_BOUNDS[0] <= t <= TEMPERATURE_BOUNDS[1]
    assert log_loss(apply_temperature(p, t), y) <= log_loss(p, y) + 1e-12


def test_a_calibrated_sample_has_near_zero_ece_and_keeps_its_temperature() -> None:
    p, y = planted(100_000, 1.0)
    assert expected_calibration_error(p, y) < 0.01
    assert fit_temperature(p, y) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("planted_t", [0.4, 2.5])  # over- and under-confident
def test_fitting_recovers_a_planted_temperature_and_lowers_ece(planted_t: float) -> None:
    p, y = planted(50_000, planted_t, seed=1)
    calibrated_p, _ = planted(50_000, 1.0, seed=1)
    ece = expected_calibration_error(p, y)
    assert ece > 5 * expected_calibration_error(calibrated_p, y)
    t = fit_temperature(p, y)
    assert t == pytest.approx(1 / planted_t, rel=0.05)
    assert expected_calibration_error(apply_temperature(p, t), y) < ece / 5


def test_ece_follows_its_definition() -> None:
    # Confidence 0.9, right, and 0.6, wrong, in different bins: 0.5·0.1 + 0.5·0.6.
    p = np.array([[0.05, 0.05, 0.9], [0.6, 0.3, 0.1]])
    assert expected_calibration_error(p, np.array([2, 1])) == pytest.approx(0.35)
    # In one bin, (11/15, 12/15], the gaps offset: mean confidence 0.76, accuracy 0.5.
    p = np.array([[0.11, 0.11, 0.78], [0.74, 0.13, 0.13]])
    assert expected_calibration_error(p, np.array([2, 1])) == pytest.approx(0.26)
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0)) == 0.0
    assert ECE_BINS == 15


def test_report_and_its_flat_names() -> None:
    p, y = planted(5_000, 0.5, seed=2)
    t = fit_temperature(p, y)
    report = calibration_report(
        t, {"validation": (p, y), "test": (p[:100], y[:100]), "holdout": (p[:0], y[:0])}
    )
    assert report["temperature"] == t and report["fitted_on"] == "validation"
    assert "holdout" not in report  # no rows, no figures
    val = report["validation"]
    assert val["n"] == 5_000
    assert val["log_loss_after"] < val["log_loss_before"]
    assert val["ece_after"] < val["ece_before"]
    flat = report_scalars(report)
    assert flat["calibration_temperature"] == t
    assert flat["calibration_test_ece_after"] == report["test"]["ece_after"]
    assert {f"calibration_validation_{k}" for k in val} <= set(flat)


def test_bad_inputs_are_refused() -> None:
    p = softmax(np.zeros((2, 3)), axis=1)
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(p, t)
    with pytest.raises(ValueError, match="one label per row"):
        fit_temperature(p, np.array([0]))


def test_the_prior_shift_undoes_class_weights_where_a_temperature_cannot() -> None:
    """75 %-flat labels; a model trained with balanced class weights estimates w_k · p_k
    (renormalised). The temperature alone stays far above the class-prior baseline's log-loss;
    the shift ln w brings it back to the true model's."""
    rng = np.random.default_rng(1)
    n = 20_000
    truth = softmax(rng.normal(scale=0.5, size=(n, 3)) + np.log([0.125, 0.75, 0.125]), axis=1)
    y = (rng.random((n, 1)) > truth.cumsum(axis=1)).sum(axis=1)
    counts = np.bincount(y, minlength=3)
    weights = {k: n / (3 * counts[k]) for k in range(3)}
    weighted = truth * np.array([weights[k] for k in range(3)])
    weighted /= weighted.sum(axis=1, keepdims=True)
    prior = log_loss(np.tile(counts / n, (n, 1)), y)
    shift = log_prior_shift(weights)
    temperature_only = apply_temperature(weighted, fit_temperature(weighted, y))
    both = apply_temperature(weighted, fit_temperature(weighted, y, shift), shift)
    assert log_loss(temperature_only, y) > prior
    assert log_loss(both, y) < prior
    assert log_loss(both, y) == pytest.approx(log_loss(truth, y), abs=0.005)
    np.testing.assert_allclose(log_prior_shift(None), 0.0)
