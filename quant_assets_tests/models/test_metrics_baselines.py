"""Test metrics, the reference classifiers and the latent-signal oracle's inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.models import baselines
from quant_assets.models.dataset import TrainingDataset
from quant_assets.models.training import (
    classification_metrics,
    direction_auc,
    prediction_baseline,
    scalar_metrics,
)


def test_classification_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])  # down, down, flat, flat, up, up
    pred = np.array([0, 2, 1, 1, 2, 2])
    m = classification_metrics(y, pred)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["precision_down"] == 1.0 and m["recall_down"] == 0.5
    assert m["precision_up"] == pytest.approx(2 / 3) and m["recall_up"] == 1.0
    f1_down, f1_up = 2 / 3, 0.8
    assert m["macro_f1_updown"] == pytest.approx((f1_down + f1_up) / 2)
    assert m["confusion_matrix"] == [[1, 0, 1], [0, 2, 0], [0, 0, 2]]
    assert "log_loss" not in m
    proba = np.eye(3)[pred] * 0.9 + 0.1 / 3
    assert classification_metrics(y, proba)["macro_f1_updown"] == m["macro_f1_updown"]
    assert set(scalar_metrics(m)) >= {"accuracy", "macro_f1_updown", "kappa"}
    assert "confusion_matrix" not in scalar_metrics(m)


def test_direction_auc_ignores_the_flat_class() -> None:
    y = np.array([0, 2, 1, 1, 0, 2])
    perfect = np.array(
        [[0.9, 0, 0.1], [0.1, 0, 0.9], [0, 1, 0], [0, 1, 0], [0.6, 0, 0.4], [0.4, 0, 0.6]]
    )
    assert direction_auc(y, perfect) == 1.0
    assert direction_auc(y, perfect[:, ::-1]) == 0.0
    assert direction_auc(np.array([1, 1]), perfect[:2]) == 0.5


def test_prediction_baseline() -> None:
    p = np.array([[1 / 3] * 3, [1.0, 0.0, 0.0]])
    b = prediction_baseline(p)
    assert b["mean_max_prob"] == pytest.approx((1 / 3 + 1) / 2)
    assert b["mean_entropy"] == pytest.approx(np.log(3) / 2, rel=1e-6)


def test_majority_and_stratified() -> None:
    y = np.array([1] * 50 + [0] * 30 + [2] * 20)
    assert (baselines.majority(y, 7) == 1).all()
    draws = baselines.stratified(y, 100_000, seed=3)
    assert np.bincount(draws) / 100_000 == pytest.approx([0.3, 0.5, 0.2], abs=0.01)
    assert (baselines.stratified(y, 10, seed=3) == baselines.stratified(y, 10, seed=3)).all()


def test_chance_f1_of_unrelated_predictions_is_their_own_score() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    pred = rng.integers(0, 3, 3000)
    mean, sd = baselines.chance_f1(y, pred, blocks=np.repeat(np.arange(10), 300), n_perm=50)
    own = classification_metrics(y, pred)["macro_f1_updown"]
    assert abs(own - mean) < 4 * sd + 0.01


def test_oracle_inputs_read_the_latent_signal(signal_market, small_dataset) -> None:
    market, _ = signal_market
    samples = small_dataset.sample_frame("test").iloc[::97].reset_index(drop=True)
    inputs = baselines.oracle_inputs(market, samples)
    for i in range(0, len(samples), 5):
        ticker, ts = samples.loc[i, "ticker"], samples.loc[i, "ts"]
        m = market.latent_signal(ticker, ts, ts + pd.Timedelta(minutes=16))
        assert inputs[i, 0] == m.iloc[0]
        local = ts.tz_convert("America/New_York")
        assert inputs[i, 2] == local.hour * 60 + local.minute - 570
        same_day = m[m.index.tz_convert("America/New_York").date == local.date()]
        assert inputs[i, 1] == pytest.approx(same_day.mean())


def test_baselines_on_a_planted_signal(small_dataset: TrainingDataset, signal_market) -> None:
    preds = baselines.baseline_predictions(small_dataset, "test", market=signal_market[0])
    y = small_dataset.y("test")
    f1 = {k: classification_metrics(y, p)["macro_f1_updown"] for k, p in preds.items()}
    assert f1["majority"] == 0.0  # the majority class is flat
    assert f1["oracle"] > f1["stratified"] + 0.1
    assert f1["logistic"] > f1["stratified"] + 0.05
