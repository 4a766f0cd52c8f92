"""Train and evaluate the Keras models on a ``TrainingDataset`` (pure core, no MLflow/Dagster).

``train_model`` fixes the seeds (``keras.utils.set_random_seed``), compiles with Adam and
sparse categorical cross-entropy, weights the classes (balanced, from the train segment),
fits on the train windows with the validation windows for ``EarlyStopping(val_loss,
restore_best_weights=True)``, and returns the model with its per-epoch history. Callers add
their own callbacks (the Dagster asset logs each epoch to MLflow through one). Windows are
gathered from the rows batch by batch (``models.windows``), for fitting and predicting alike:
a segment's windows are never materialized whole.

``train_and_calibrate`` then calibrates: the class weights skew the probabilities, so their
log-prior shift ``ln w`` is taken out of the logits and a temperature T is fitted on the
validation predictions (never on test or holdout; ``models.calibration``); both are built into
the output layer (``architectures.with_temperature``). ``train_and_bundle`` adds the TFLite
export, the parity check and the bundle (the walk-forward evaluation needs none of them).
The bundle's .keras and .tflite, its metrics, its concept-drift baseline and the parity check
all see the calibrated probabilities; ``calibration`` reports log-loss and ECE before and after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from quant_assets.drift.reference import concept_baseline_from_probs
from quant_assets.labels import CLASS_NAMES
from quant_assets.models.architectures import build_model, with_temperature
from quant_assets.models.bundle import write_bundle
from quant_assets.models.calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    log_prior_shift,
)
from quant_assets.models.config import TrainingConfig
from quant_assets.models.dataset import TrainingDataset
from quant_assets.models.inference import TFLiteRunner
from quant_assets.models.parity import compare_probabilities, keras_probabilities
from quant_assets.models.tflite_export import export_tflite
from quant_assets.models.windows import PREDICT_BATCH, WindowIndex, window_dataset

UP, FLAT, DOWN = 2, 1, 0  # class indices
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained model and how it got there."""

    arch: str
    model: Any  # keras.Model
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int  # 1-based
    seconds: float
    params: int


def train_model(
    arch: str,
    dataset: TrainingDataset,
    config: TrainingConfig,
    *,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> TrainResult:
    """Build, compile and fit ``arch`` on the dataset's train windows (val for early stopping)."""
    import keras

    keras.utils.set_random_seed(config.seed)
    y_train = dataset.y("train").astype(np.int32)
    # Early stopping watches every ``val_stride``-th validation window (speed); the metrics
    # and the concept-drift baseline use all of them.
    y_val = dataset.y("val", step=config.val_stride).astype(np.int32)
    model = build_model(arch, dataset.window, len(dataset.columns), config)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate_for(arch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    epochs = config.epochs_for(arch)
    began = time.perf_counter()
    # With class weights, validation is weighted the same way: early stopping then watches
    # the objective being trained (an unweighted val_loss rises as soon as the weighted model
    # leans towards the rarer classes, and stopped the Transformer after one epoch).
    weights = dataset.class_weights if config.class_weighting else None
    per_class = None if weights is None else np.array([weights[k] for k in range(3)], np.float32)
    # The windows are gathered from the rows batch by batch (``models.windows``), in the
    # order Keras would draw them from materialized arrays.
    train = window_dataset(
        dataset.window_index("train"),
        y_train,
        None if per_class is None else per_class[y_train],
        batch_size=config.batch_size,
        shuffle=True,
    )
    validation = window_dataset(
        dataset.window_index("val", step=config.val_stride),
        y_val,
        None if per_class is None else per_class[y_val],
        batch_size=config.batch_size,
    )
    fit = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        callbacks=[stopper, *callbacks],
        shuffle=False,  # the dataset shuffles
        verbose=verbose,
    )
    seconds = time.perf_counter() - began
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    val_loss = history.get("val_loss", [0.0])
    return TrainResult(
        arch=arch,
        model=model,
        history=history,
        epochs_run=len(val_loss),
        best_epoch=int(np.argmin(val_loss)) + 1,
        seconds=seconds,
        params=int(model.count_params()),
    )


def predict_proba(
    model: Any, x: np.ndarray | WindowIndex, batch_size: int = PREDICT_BATCH
) -> np.ndarray:
    """Keras class probabilities (n, 3) in batches (``model.predict`` without progress bar);
    a ``WindowIndex`` is gathered batch by batch, never materialized."""
    if len(x) == 0:
        return np.zeros((0, 3), np.float32)
    if isinstance(x, WindowIndex):
        probs = model.predict(window_dataset(x, batch_size=batch_size), verbose=0)
    else:
        probs = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float32)


def classification_metrics(y_true: np.ndarray, proba_or_pred: np.ndarray) -> dict[str, Any]:
    """Test metrics on class indices: accuracy, macro-F1 over UP/DOWN, per-class P/R, κ, …

    ``proba_or_pred``: (n, 3) probabilities (argmax decides; log loss and top-label ECE
    reported, ``models.calibration``) or (n,) class predictions. ``macro_f1_updown`` is the
    mean of the UP and DOWN F1 scores (the flat class is not a trade); ``confusion_matrix``
    rows are true classes, columns predicted, both in the order down, flat, up.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    arr = np.asarray(proba_or_pred)
    pred = arr.argmax(axis=1) if arr.ndim == 2 else arr.astype(np.int64)
    labels = [DOWN, FLAT, UP]
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, pred, labels=labels, zero_division=0
    )
    out: dict[str, Any] = {
        "n": int(y_true.size),
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1_updown": float(
            f1_score(y_true, pred, labels=[DOWN, UP], average="macro", zero_division=0)
        ),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "precision_up": float(precision[UP]),
        "recall_up": float(recall[UP]),
        "precision_down": float(precision[DOWN]),
        "recall_down": float(recall[DOWN]),
        "f1_up": float(f1[UP]),
        "f1_down": float(f1[DOWN]),
        "kappa": float(cohen_kappa_score(y_true, pred, labels=labels)) if y_true.size else 0.0,
        "confusion_matrix": confusion_matrix(y_true, pred, labels=labels).tolist(),
        "predicted_share": {
            name: float(np.mean(pred == k)) if pred.size else 0.0
            for k, name in enumerate(CLASS_NAMES)
        },
    }
    if arr.ndim == 2 and y_true.size:
        out["direction_auc"] = direction_auc(y_true, arr)
        out["log_loss"] = log_loss(arr, y_true)
        out["ece"] = expected_calibration_error(arr, y_true)
    return out


def direction_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of p_up − p_down separating true UP from true DOWN samples (0.5 = no skill).

    The directional skill alone: the flat-vs-move part of the labels is predictable from time
    of day and volatility even on a martingale, the direction is not.
    """
    y_true = np.asarray(y_true)
    movers = (y_true == UP) | (y_true == DOWN)
    if movers.sum() == 0 or len(np.unique(y_true[movers])) < 2:
        return 0.5
    score = np.asarray(proba)[movers, UP] - np.asarray(proba)[movers, DOWN]
    return float(roc_auc_score(y_true[movers] == UP, score))


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric, non-nested entries (for MLflow metrics and Dagster metadata)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def prediction_baseline(proba: np.ndarray) -> dict[str, float]:
    """Mean max-probability and mean entropy (nats) of predictions: the concept-drift reference."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=1)
    return {
        "n": len(p),
        "mean_max_prob": float(p.max(axis=1).mean()) if len(p) else 0.0,
        "mean_entropy": float(entropy.mean()) if len(p) else 0.0,
        "std_max_prob": float(p.max(axis=1).std()) if len(p) else 0.0,
        "std_entropy": float(entropy.std()) if len(p) else 0.0,
        "class_share": {
            name: float(np.mean(p.argmax(1) == k)) if len(p) else 0.0
            for k, name in enumerate(CLASS_NAMES)
        },
    }


def validation_baseline(proba: np.ndarray, samples: Any, window: int = 60) -> dict[str, Any]:
    """The bundle's ``validation_baseline``: ``prediction_baseline`` plus the drift monitor's
    ``ConceptBaseline`` (per time-of-session bucket means and the spread of ``window``-row
    window means; ``drift.reference.concept_baseline_from_probs``).

    ``samples``: ticker and ts of each prediction (rows grouped by ticker, in time order, as
    ``TrainingDataset.sample_frame`` gives them). ``window`` = 60 rows, the drift monitor's
    one-hour live window.
    """
    concept = concept_baseline_from_probs(
        proba, window=window, groups=samples["ticker"].to_numpy(), ts=samples["ts"]
    )
    return {**prediction_baseline(proba), **concept.to_dict()}


# --- figures --------------------------------------------------------------------------------
def plot_confusion_matrix(cm: Sequence[Sequence[int]], path: str | Path, title: str) -> Path:
    """A labelled confusion-matrix PNG (rows true, columns predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    ax.imshow(arr, cmap="Blues")
    ticks = ["down (−1)", "flat (0)", "up (+1)"]
    ax.set_xticks(range(3), ticks)
    ax.set_yticks(range(3), ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    top = arr.max() if arr.size else 0
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                str(arr[i, j]),
                ha="center",
                va="center",
                color="white" if arr[i, j] > top / 2 else "black",
            )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curves(history: dict[str, list[float]], path: str | Path, title: str) -> Path:
    """Loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# --- the whole per-model job ----------------------------------------------------------------
@dataclass
class ModelReport:
    """What one training produced: the model, its metrics, the TFLite file and the bundle."""

    arch: str
    result: TrainResult  # result.model: as trained, before calibration
    model: Any  # keras.Model: the calibrated one, in the bundle and the TFLite file
    tflite: bytes
    metrics: dict[str, Any]  # {"test": …, "validation": …, "parity": …}, calibrated
    calibration: dict[str, Any]  # models.calibration.calibration_report
    validation_baseline: dict[str, Any]
    figures: dict[str, Path]
    bundle: Any = None  # bundle.Bundle once written
    seconds: dict[str, float] | None = None


@dataclass
class CalibratedModel:
    """A trained model with its calibration built in, and what it scores on val and test."""

    result: TrainResult  # result.model: as trained, before calibration
    model: Any  # keras.Model: calibrated
    metrics: dict[str, Any]  # {"test": …, "validation": …}, calibrated
    calibration: dict[str, Any]  # models.calibration.calibration_report
    validation_baseline: dict[str, Any]
    seconds: dict[str, float]


def train_and_calibrate(
    arch: str,
    dataset: TrainingDataset,
    config: TrainingConfig,
    *,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> CalibratedModel:
    """Train ``arch``, calibrate it on validation and evaluate it on validation and test."""
    seconds: dict[str, float] = {}
    result = train_model(arch, dataset, config, callbacks=callbacks, verbose=verbose)
    seconds["fit"] = result.seconds
    began = time.perf_counter()
    y_val, y_test = dataset.y("val"), dataset.y("test")
    raw_val = predict_proba(result.model, dataset.window_index("val"))
    raw_test = predict_proba(result.model, dataset.window_index("test"))
    shift = log_prior_shift(dataset.class_weights if config.class_weighting else None)
    temperature = fit_temperature(raw_val, y_val, shift)
    calibration = calibration_report(
        temperature, {"validation": (raw_val, y_val), "test": (raw_test, y_test)}, shift
    )
    model = with_temperature(result.model, temperature, shift)
    # The calibrated model's outputs, computed from the raw ones (the same numbers to float
    # precision, without a second pass of the network over both segments).
    val_p = apply_temperature(raw_val, temperature, shift)
    test_p = apply_temperature(raw_test, temperature, shift)
    metrics: dict[str, Any] = {
        "test": classification_metrics(y_test, test_p),
        "validation": classification_metrics(y_val, val_p),
    }
    baseline = validation_baseline(val_p, dataset.sample_frame("val"))
    seconds["evaluate"] = time.perf_counter() - began
    fitted = calibration["validation"]
    logger.info(
        "%s: temperature %.3f fitted on %d validation windows: log-loss %.4f → %.4f, "
        "ECE %.4f → %.4f",
        arch,
        temperature,
        fitted["n"],
        fitted["log_loss_before"],
        fitted["log_loss_after"],
        fitted["ece_before"],
        fitted["ece_after"],
    )
    return CalibratedModel(result, model, metrics, calibration, baseline, seconds)


def train_and_bundle(
    arch: str,
    dataset: TrainingDataset,
    config: TrainingConfig,
    models_dir: str | Path | None,
    *,
    mlflow_run_id: str | None = None,
    callbacks: Sequence[Any] = (),
    figures_dir: str | Path | None = None,
    verbose: int = 0,
) -> ModelReport:
    """``train_and_calibrate``, then export TFLite, measure parity, and (when ``models_dir`` is
    given) write the next bundle version.

    Parity is measured on the first ``config.parity_windows`` validation windows, the
    calibrated Keras model vs the TFLite bytes exported from it, and recorded in
    ``metrics["parity"]`` (with ``passed``).
    """
    fitted = train_and_calibrate(arch, dataset, config, callbacks=callbacks, verbose=verbose)
    result, model, metrics, seconds = fitted.result, fitted.model, fitted.metrics, fitted.seconds
    calibration, baseline = fitted.calibration, fitted.validation_baseline

    began = time.perf_counter()
    tflite = export_tflite(model, arch, config)
    x = dataset.windows("val", limit=config.parity_windows)
    check = compare_probabilities(
        keras_probabilities(model, x),
        TFLiteRunner(tflite).predict(x),
        config.parity_tolerance,
    )
    metrics["parity"] = check.to_dict()
    seconds["export"] = time.perf_counter() - began

    figures: dict[str, Path] = {}
    if figures_dir is not None:
        out = Path(figures_dir)
        out.mkdir(parents=True, exist_ok=True)
        figures["confusion_matrix"] = plot_confusion_matrix(
            metrics["test"]["confusion_matrix"],
            out / "confusion_matrix.png",  # the same name for every model (MLflow Compare)
            f"{arch}: test, macro-F1(up/down) {metrics['test']['macro_f1_updown']:.3f}",
        )
        figures["learning_curves"] = plot_learning_curves(
            result.history, out / "learning_curves.png", f"{arch}: learning curves"
        )

    report = ModelReport(
        arch, result, model, tflite, metrics, calibration, baseline, figures, seconds=seconds
    )
    if models_dir is not None:
        if dataset.label_spec is None:
            raise ValueError("the dataset has no label spec; a bundle needs one")
        holdout = dataset.plan.sessions.get("holdout")
        fixed = arch == "lstm" and config.lstm_export == "fixed_batch"
        report.bundle = write_bundle(
            models_dir,
            arch,
            tflite=tflite,
            keras_model=model,
            feature_spec=dataset.feature_spec,
            window=dataset.window,
            label_spec=dataset.label_spec,
            scaler=dataset.scaler,
            reference_stats=dataset.reference_stats,
            validation_baseline=baseline,
            metrics=metrics,
            mlflow_run_id=mlflow_run_id,
            training_window=dataset.training_window(),
            calibration=calibration,
            extra={
                "holdout_window": None
                if holdout is None
                else {
                    "first_session": holdout[0].date().isoformat(),
                    "last_session": holdout[1].date().isoformat(),
                },
                "split": dataset.plan.to_dict(),
                "tflite": {
                    "bytes": len(tflite),
                    "input_shape": [1 if fixed else None, dataset.window, len(dataset.columns)],
                    "route": "fixed_batch" if fixed else "dynamic_batch",
                },
                "training": {
                    "config": config.to_dict(),
                    "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch,
                    "params": result.params,
                    "seconds": seconds,
                    "class_weights": {str(k): v for k, v in dataset.class_weights.items()},
                    "samples": {k: len(v) for k, v in dataset.samples.items()},
                    "class_balance": {k: dataset.class_balance(k) for k in dataset.samples},
                },
            },
        )
    return report
