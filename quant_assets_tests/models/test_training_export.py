"""Train tiny models, export TFLite, check parity, write bundles, predict with LiteRT."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quant_assets.models.bundle import load_bundle
from quant_assets.models.dataset import TrainingDataset
from quant_assets.models.inference import PREDICTION_COLUMNS, Predictor, TFLiteRunner
from quant_assets_tests.models.helpers import TINY

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def trained(small_dataset: TrainingDataset, tmp_path_factory):
    from quant_assets.models.training import train_and_bundle

    models = tmp_path_factory.mktemp("models")
    figures = tmp_path_factory.mktemp("figures")
    return {
        arch: train_and_bundle(
            arch, small_dataset, TINY, models, mlflow_run_id="run-1", figures_dir=figures
        )
        for arch in ("lstm", "transformer")
    }


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_architecture_and_training(trained, arch: str) -> None:
    import keras

    report = trained[arch]
    model = report.result.model
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.units == 3
    assert last.activation.__name__ == "softmax"
    assert any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    if arch == "transformer":
        kinds = {type(layer).__name__ for layer in model.layers}
        assert {"MultiHeadAttention", "LayerNormalization", "PositionalEncoding"} <= kinds
    assert set(report.result.history) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert 1 <= report.result.best_epoch <= report.result.epochs_run <= TINY.epochs
    test = report.metrics["test"]
    assert sum(map(sum, test["confusion_matrix"])) == test["n"]
    assert set(report.figures) == {"confusion_matrix", "learning_curves"}
    assert all(p.stat().st_size > 1000 for p in report.figures.values())


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_tflite_parity_and_bundle(trained, small_dataset: TrainingDataset, arch: str) -> None:
    report = trained[arch]
    parity = report.metrics["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert parity["windows"] == TINY.parity_windows
    bundle = load_bundle(report.bundle.path)
    assert bundle.name == f"{arch}_v1" and bundle.mlflow_run_id == "run-1"
    manifest = json.loads((bundle.path / "bundle.json").read_text())
    assert manifest["validation_baseline"]["n"] == len(small_dataset.samples["val"])
    assert (
        manifest["metrics"]["test"]["macro_f1_updown"] == report.metrics["test"]["macro_f1_updown"]
    )
    assert manifest["training_window"] == small_dataset.training_window()
    # The drift monitor reads its references straight from the bundle.
    from quant_assets.drift.reference import ConceptBaseline, ReferenceStats

    reference = ReferenceStats.from_dict(bundle.reference_stats)
    assert "rsi_14" in reference.columns and "day_of_week_sin" not in reference.columns
    assert set(bundle.reference_stats["summary"]) == set(small_dataset.columns)
    concept = ConceptBaseline.from_dict(bundle.validation_baseline)
    assert concept.mean_max_prob == pytest.approx(bundle.validation_baseline["mean_max_prob"])
    runner = TFLiteRunner(bundle.tflite_path)
    assert runner.fixed_batch is None  # both take any batch: one invoke per scoring


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_predictor_matches_keras_from_unscaled_windows(
    trained, small_dataset: TrainingDataset, arch: str
) -> None:
    import keras

    import quant_assets.models.architectures  # noqa: F401

    bundle = trained[arch].bundle
    predictor = Predictor.load(bundle.path)
    raw = small_dataset.windows("test", scaled=False, limit=37)  # odd size: chunking
    reloaded = keras.models.load_model(bundle.keras_path, compile=False)
    expected = reloaded.predict(small_dataset.windows("test", limit=37), verbose=0)
    got = predictor.predict_windows(raw)
    assert got.shape == (37, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_windows(raw[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_windows(np.full_like(raw[:1], np.nan))


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_calibration_is_fitted_on_validation_and_built_into_the_files(
    trained, small_dataset: TrainingDataset, arch: str
) -> None:
    from quant_assets.models.calibration import (
        apply_temperature,
        fit_temperature,
        log_prior_shift,
    )
    from quant_assets.models.parity import check_bundle
    from quant_assets.models.training import (
        classification_metrics,
        predict_proba,
        prediction_baseline,
    )

    report = trained[arch]
    bundle = load_bundle(report.bundle.path)
    t = bundle.temperature
    assert t == report.calibration["temperature"] and t != 1.0
    assert bundle.manifest["calibration"] == report.calibration
    raw = report.result.model  # as trained, before calibration
    raw_val = predict_proba(raw, small_dataset.windows("val"))
    shift = log_prior_shift(small_dataset.class_weights)  # trained with class weights
    assert report.calibration["log_prior_shift"] == pytest.approx(list(shift))
    assert fit_temperature(raw_val, small_dataset.y("val"), shift) == pytest.approx(t, rel=1e-9)

    # The TFLite file itself gives the calibrated probabilities, and parity still holds.
    predictor = Predictor.load(bundle.path)
    raw_test = predict_proba(raw, small_dataset.windows("test"))
    lite_test = predictor.predict_windows(small_dataset.windows("test", scaled=False))
    np.testing.assert_allclose(lite_test, apply_temperature(raw_test, t, shift), atol=1e-4)
    check = check_bundle(bundle.path, windows=small_dataset.windows("val", scaled=False, limit=64))
    assert check.passed and check.parity_max_abs_diff <= 1e-4

    # Calibration lowers the test segment's ECE and log-loss; the temperature alone keeps
    # every argmax figure (the prior shift may move calls toward the frequent class).
    y_test = small_dataset.y("test")
    figures = report.calibration["test"]
    assert figures["ece_after"] < figures["ece_before"]
    assert figures["log_loss_after"] < figures["log_loss_before"]
    before, after = classification_metrics(y_test, raw_test), bundle.metrics["test"]
    shifted = classification_metrics(y_test, apply_temperature(raw_test, 1.0, shift))
    for key in ("macro_f1_updown", "accuracy", "confusion_matrix"):
        assert after[key] == shifted[key]
    assert before["ece"] == pytest.approx(report.calibration["test"]["ece_before"])
    assert after["ece"] == pytest.approx(report.calibration["test"]["ece_after"], abs=1e-6)
    assert after["log_loss"] == pytest.approx(report.calibration["test"]["log_loss_after"])

    # Concept drift's baseline is what live scoring (this Predictor) gives on validation.
    lite_val = predictor.predict_windows(small_dataset.windows("val", scaled=False))
    live = prediction_baseline(lite_val)
    for key in ("mean_max_prob", "mean_entropy"):
        assert bundle.validation_baseline[key] == pytest.approx(live[key], abs=1e-5)


def test_predict_latest_from_raw_bars(trained, signal_market) -> None:
    _, bars = signal_market
    predictor = Predictor.load(trained["lstm"].bundle.path)
    tail = bars.groupby("ticker").tail(predictor.min_bars)
    out = predictor.predict_latest(tail.sample(frac=1.0, random_state=0))  # any row order
    # Only each ticker's newest min_bars bars count: more history gives the same numbers.
    pd.testing.assert_frame_equal(predictor.predict_latest(bars), out)
    assert list(out.columns) == list(PREDICTION_COLUMNS)
    assert list(out["ticker"]) == ["AAA", "BBB", "CCC"]
    assert (out["ts"] == bars.groupby("ticker")["ts"].max().to_numpy()).all()
    np.testing.assert_allclose(out[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, atol=1e-5)
    assert set(out["label"]) <= {-1, 0, 1}
    # Train/serve parity: the newest window built from raw bars = the dataset's own window.
    from quant_assets.features.indicators import create_features
    from quant_assets.models.dataset import latest_windows

    _, windows = latest_windows(create_features(bars), predictor.columns, predictor.window)
    full = predictor.predict_windows(windows)
    np.testing.assert_allclose(out[["p_down", "p_flat", "p_up"]].to_numpy(), full, atol=1e-6)
    short = bars[bars["ticker"] != "BBB"].groupby("ticker").tail(100)
    with pytest.raises(ValueError, match=r"\['AAA', 'CCC'\] have fewer than 450 bars"):
        predictor.predict_latest(short)
    with pytest.raises(ValueError, match="no bars"):
        predictor.predict_latest(bars.iloc[:0])


def test_fixed_batch_lstm_route_still_exports(trained, small_dataset) -> None:
    """The route older LSTM bundles were written with (batch fixed at 1, looped by the
    runner) still converts and matches Keras; such bundles keep loading and scoring."""
    from quant_assets.models.parity import compare_probabilities, keras_probabilities
    from quant_assets.models.tflite_export import export_tflite

    model = trained["lstm"].result.model
    tflite = export_tflite(model, "lstm", TINY.replace(lstm_export="fixed_batch"))
    fixed = TFLiteRunner(tflite)
    assert fixed.fixed_batch == 1
    x = small_dataset.windows("val", limit=64)
    check = compare_probabilities(keras_probabilities(model, x), fixed.predict(x))
    assert check.max_abs_diff <= 1e-4
    dynamic = TFLiteRunner(export_tflite(model, "lstm", TINY.replace(lstm_export="unrolled")))
    assert dynamic.fixed_batch is None
    np.testing.assert_allclose(dynamic.predict(x), fixed.predict(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_one_batched_invoke_equals_per_ticker_invokes(trained, small_dataset, arch) -> None:
    """20 windows in one invoke give what 20 single-window invokes give (the batch-1 path),
    whatever batch size came before (the runner resizes its input)."""
    runner = TFLiteRunner(trained[arch].bundle.tflite_path)
    x = small_dataset.windows("val", limit=20)
    singles = np.concatenate([runner.predict(x[i : i + 1]) for i in range(len(x))])
    batched = runner.predict(x)
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(runner.predict(x[:1]), singles[:1])  # back to batch 1
    np.testing.assert_array_equal(runner.predict(x), batched)


def test_training_is_reproducible_with_fixed_seeds(small_dataset: TrainingDataset) -> None:
    from quant_assets.models.training import train_model

    cfg = TINY.replace(epochs=1)
    a = train_model("lstm", small_dataset, cfg)
    b = train_model("lstm", small_dataset, cfg)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    assert pd.Series(a.history["loss"]).equals(pd.Series(b.history["loss"]))
