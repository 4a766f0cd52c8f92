"""``training_dataset``, ``lstm_model``, ``transformer_model`` and their TFLite parity checks.

The pure work lives in ``quant_assets.models``; these assets read the database, wire the
configuration, log to MLflow and report metadata. The dataset is one .npz file under
``$QUANT_HOME/datasets`` (windows of ~40 sessions x 20 tickers are tens of MB: not pickled
through an IO manager, like the project's tables); each model asset writes a bundle
``$QUANT_HOME/models/{arch}_v{N}/`` and an MLflow run with a registered model version.
"""

import base64
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from quant_assets.defs.mlflow_resource import MlflowResource
from quant_assets.defs.resources import DatabaseResource
from quant_assets.models.config import TrainingConfig
from quant_assets.models.dataset import TrainingDataset
from quant_assets.settings import Settings

CHECK_PARITY = "tflite_parity"
DATASET_FILE = "training_dataset.npz"
MODEL_ASSETS = {"lstm": "lstm_model", "transformer": "transformer_model"}


def datasets_dir(settings: Settings | None = None) -> Path:
    return (settings or Settings()).home / "datasets"


def models_dir(settings: Settings | None = None) -> Path:
    return (settings or Settings()).home / "models"


class DatasetConfig(dg.Config):
    """Dataset settings; unset (None) fields come from QUANT_TRAIN_* or TrainingConfig."""

    window: int | None = None
    sessions: int | None = None
    holdout_sessions: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    embargo_minutes: int | None = None
    train_stride: int | None = None
    eval_stride: int | None = None
    max_train_windows: int | None = None
    scaler: str | None = None
    tickers: list[str] | None = None  # None: the project's tickers (QUANT_TICKERS)

    def training_config(self) -> TrainingConfig:
        return TrainingConfig.from_env(**self.model_dump(exclude={"tickers"}))


class ModelConfig(dg.Config):
    """Model settings; unset (None) fields come from QUANT_TRAIN_* or TrainingConfig."""

    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    val_stride: int | None = None
    class_weighting: bool | None = None
    lstm_units: int | None = None
    lstm_dense: int | None = None
    lstm_dropout: float | None = None
    lstm_export: str | None = None
    transformer_d_model: int | None = None
    transformer_heads: int | None = None
    transformer_ff: int | None = None
    transformer_blocks: int | None = None
    transformer_dropout: float | None = None
    transformer_patch: int | None = None
    transformer_epochs: int | None = None
    transformer_learning_rate: float | None = None
    parity_windows: int | None = None

    def training_config(self, dataset: TrainingDataset) -> TrainingConfig:
        """The dataset's own settings, then QUANT_TRAIN_*, then this run config."""
        base = TrainingConfig.from_env()
        names = set(TrainingConfig.field_names())
        from_dataset = {k: v for k, v in dataset.config.items() if k in DATASET_FIELDS}
        model = {k: v for k, v in self.model_dump().items() if v is not None and k in names}
        return base.replace(**from_dataset, **model)


DATASET_FIELDS = frozenset(
    (*DatasetConfig.model_fields.keys(), "reference_sample", "scaler_clip")
) - {"tickers"}


@dg.asset(
    group_name="training",
    kinds={"numpy", "sql"},
    deps=[dg.AssetKey("features"), dg.AssetKey("labels")],
    description=(
        "Windows of the last `window` bars of features per sample (one ticker), labels from the "
        "triple barrier; chronological train/val/test split by session with purge and embargo; "
        "robust scaler fit on the train segment only; balanced class weights. The newest "
        "`holdout_sessions` are kept back for champion/challenger validation. Written to "
        "$QUANT_HOME/datasets/training_dataset.npz."
    ),
)
def training_dataset(
    context: dg.AssetExecutionContext, config: DatasetConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """Read the newest sessions of features ⟕ labels and build the dataset file."""
    from quant_assets.models.data import label_spec_of, labelled_sessions, load_labelled_features
    from quant_assets.models.dataset import build_dataset

    settings = database.settings()
    engine = database.engine
    cfg = config.training_config()
    tickers = list(config.tickers or settings.tickers)
    sessions = labelled_sessions(engine, tickers)
    if len(sessions) == 0:
        raise dg.Failure("no labelled bars in table labels: materialize features and labels first")
    sessions = sessions[-cfg.sessions :]
    began = time.perf_counter()
    frame = load_labelled_features(engine, tickers, sessions[0], sessions[-1])
    label_spec = label_spec_of(frame)
    if label_spec is None:
        raise dg.Failure("the labels table has no label_spec for the selected sessions")
    read_s = time.perf_counter() - began
    dataset = build_dataset(frame, cfg, label_spec=label_spec)
    path = dataset.save(datasets_dir(settings) / DATASET_FILE)
    context.log.info(
        f"{len(frame)} rows of {len(tickers)} tickers over {len(sessions)} sessions → "
        + ", ".join(f"{k} {len(v)}" for k, v in dataset.samples.items())
        + f" windows; {path}"
    )
    md = {
        "path": dg.MetadataValue.path(str(path)),
        "rows": dg.MetadataValue.int(len(frame)),
        "tickers": dg.MetadataValue.int(len(dataset.tickers)),
        "sessions": dg.MetadataValue.int(len(sessions)),
        "window": dg.MetadataValue.int(dataset.window),
        "split": dg.MetadataValue.json(dataset.plan.to_dict()),
        "holdout_window": dg.MetadataValue.json(dataset.plan.to_dict().get("holdout")),
        "samples": dg.MetadataValue.json({k: len(v) for k, v in dataset.samples.items()}),
        "class_balance": dg.MetadataValue.json(
            {k: dataset.class_balance(k) for k in dataset.samples}
        ),
        "purge_embargo": dg.MetadataValue.json(
            {k: v for k, v in dataset.stats.items() if isinstance(v, dict)}
        ),
        "class_weights": dg.MetadataValue.json(
            {name: dataset.class_weights[k] for k, name in enumerate(("down", "flat", "up"))}
        ),
        "scaler": dg.MetadataValue.text(
            f"{dataset.scaler.kind} (clip ±{dataset.scaler.clip}), fit on "
            f"{dataset.stats['scaler_fit_rows']} train rows up to "
            f"{dataset.stats['scaler_fit_last_ts']}"
        ),
        "label_spec": dg.MetadataValue.json(label_spec.to_dict()),
        "feature_columns": dg.MetadataValue.json(list(dataset.columns)),
        "read_seconds": dg.MetadataValue.float(round(read_s, 2)),
    }
    return dg.MaterializeResult(metadata=md)


def _model_asset(arch: str):
    name = MODEL_ASSETS[arch]
    title = {"lstm": "LSTM", "transformer": "Transformer encoder"}[arch]

    @dg.asset(
        name=name,
        group_name="training",
        kinds={"tensorflow", "mlflow"},
        deps=[training_dataset],
        description=(
            f"{title} direction classifier (softmax over down/flat/up) trained on "
            "training_dataset with early stopping (best weights), exported to TFLite and "
            f"written as bundle $QUANT_HOME/models/{arch}_vN/; one MLflow run with params, "
            "per-epoch metrics, test metrics, figures, the bundle and a registered version."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_PARITY,
                asset=name,
                blocking=True,
                description=(
                    "The bundle's .tflite (through Predictor, scaler included) and its .keras "
                    "give probabilities within the tolerance (1e-4) on validation windows."
                ),
            )
        ],
    )
    def _asset(
        context: dg.AssetExecutionContext, config: ModelConfig, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        return train_model_asset(context, arch, config, mlflow)

    return _asset


def train_model_asset(
    context: dg.AssetExecutionContext, arch: str, config: ModelConfig, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Train one architecture end to end and report it (shared by both model assets)."""
    from quant_assets.models.training import scalar_metrics, train_and_bundle

    settings = Settings()
    dataset = TrainingDataset.load(datasets_dir(settings) / DATASET_FILE)
    cfg = config.training_config(dataset)
    began = time.perf_counter()
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    with (
        mlflow.start_run(
            f"{arch}-{stamp}",
            tags={"arch": arch, "dagster_run_id": context.run_id, "asset": MODEL_ASSETS[arch]},
        ) as run,
        tempfile.TemporaryDirectory(prefix=f"{arch}-figures-") as figures_dir,
    ):
        run.log_params(
            {
                "arch": arch,
                **cfg.to_dict(),
                "tickers": ",".join(dataset.tickers),
                "split": dataset.plan.to_dict(),
                "samples": {k: len(v) for k, v in dataset.samples.items()},
                "feature_version": dataset.feature_spec.version,
                "label_spec": None if dataset.label_spec is None else dataset.label_spec.to_dict(),
            }
        )
        report = train_and_bundle(
            arch,
            dataset,
            cfg,
            models_dir(settings),
            mlflow_run_id=run.run_id,
            callbacks=[run.keras_callback()],
            figures_dir=figures_dir,
        )
        bundle = report.bundle
        run.log_metrics({f"test_{k}": v for k, v in scalar_metrics(report.metrics["test"]).items()})
        run.log_metrics(
            {f"val_{k}": v for k, v in scalar_metrics(report.metrics["validation"]).items()}
        )
        parity_check = verify_parity(bundle, dataset, cfg.parity_windows)
        run.log_metrics(
            {
                "parity_max_abs_diff": parity_check["max_abs_diff"],
                "train_seconds": report.result.seconds,
                "best_epoch": report.result.best_epoch,
                "epochs_run": report.result.epochs_run,
                "params": report.result.params,
            }
        )
        run.log_dict(report.metrics, "metrics.json")
        for path in report.figures.values():
            run.log_artifact(path, "figures")
        run.log_artifacts(bundle.path, "bundle")
        run.set_tags({"bundle": bundle.name, "parity_passed": parity_check["passed"]})
        registered = mlflow.registered_model_name(arch)
        model_version = run.register_model(registered, "bundle", tags={"bundle": bundle.name})
        images = {k: _png_markdown(v, k) for k, v in report.figures.items()}
    seconds = time.perf_counter() - began
    test = report.metrics["test"]
    context.log.info(
        f"{bundle.name}: test macro-F1(up/down) {test['macro_f1_updown']:.4f}, accuracy "
        f"{test['accuracy']:.4f}; parity max|Δp| {parity_check['max_abs_diff']:.2e}; "
        f"MLflow run {run.run_id}, {registered} v{model_version}; {seconds:.1f} s"
    )
    metadata: dict[str, Any] = {
        "bundle": dg.MetadataValue.text(bundle.name),
        "bundle_path": dg.MetadataValue.path(str(bundle.path)),
        "version": dg.MetadataValue.int(bundle.version),
        "mlflow_run_id": dg.MetadataValue.text(run.run_id),
        "mlflow_tracking_uri": dg.MetadataValue.text(_safe_uri(mlflow.resolved_tracking_uri())),
        "mlflow_run": dg.MetadataValue.text(run.url_path()),
        "mlflow_registered_model": dg.MetadataValue.text(f"{registered} v{model_version}"),
        **{
            f"test_{k}": dg.MetadataValue.float(round(float(test[k]), 6))
            for k in (
                "accuracy",
                "macro_f1_updown",
                "precision_up",
                "recall_up",
                "precision_down",
                "recall_down",
                "kappa",
                "direction_auc",
                "log_loss",
            )
            if k in test
        },
        "val_macro_f1_updown": dg.MetadataValue.float(
            round(report.metrics["validation"]["macro_f1_updown"], 6)
        ),
        "confusion_matrix": dg.MetadataValue.md(_confusion_markdown(test["confusion_matrix"])),
        "confusion_matrix_png": dg.MetadataValue.md(images.get("confusion_matrix", "")),
        "learning_curves_png": dg.MetadataValue.md(images.get("learning_curves", "")),
        "history": dg.MetadataValue.json(report.result.history),
        "epochs_run": dg.MetadataValue.int(report.result.epochs_run),
        "best_epoch": dg.MetadataValue.int(report.result.best_epoch),
        "params": dg.MetadataValue.int(report.result.params),
        "train_seconds": dg.MetadataValue.float(round(report.result.seconds, 1)),
        "total_seconds": dg.MetadataValue.float(round(seconds, 1)),
        "tflite_bytes": dg.MetadataValue.int(len(report.tflite)),
        "validation_baseline": dg.MetadataValue.json(report.validation_baseline),
        "training_window": dg.MetadataValue.json(bundle.training_window),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_PARITY,
                passed=parity_check["passed"],
                metadata={
                    "max_abs_diff": dg.MetadataValue.float(parity_check["max_abs_diff"]),
                    "mean_abs_diff": dg.MetadataValue.float(parity_check["mean_abs_diff"]),
                    "windows": dg.MetadataValue.int(parity_check["windows"]),
                    "tolerance": dg.MetadataValue.float(parity_check["tolerance"]),
                    "argmax_agreement": dg.MetadataValue.float(parity_check["argmax_agreement"]),
                },
            )
        ],
    )


def verify_parity(bundle: Any, dataset: TrainingDataset, windows: int) -> dict[str, Any]:
    """Parity of the files on disk: Predictor(.tflite, raw windows) vs .keras (scaled windows)."""
    import keras

    import quant_assets.models.architectures  # noqa: F401  (registers PositionalEncoding)
    from quant_assets.models.inference import Predictor

    raw = dataset.windows("val", scaled=False, limit=windows)
    model = keras.models.load_model(bundle.keras_path, compile=False)
    keras_p = np.asarray(
        model.predict(bundle.scaler.transform(raw), batch_size=1024, verbose=0), np.float64
    )
    lite_p = Predictor(bundle).predict_windows(raw).astype(np.float64)
    diff = np.abs(keras_p - lite_p)
    tolerance = float(bundle.metrics.get("parity", {}).get("tolerance", 1e-4))
    return {
        "windows": len(raw),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "argmax_agreement": float(np.mean(keras_p.argmax(1) == lite_p.argmax(1))),
        "tolerance": tolerance,
        "passed": bool(diff.max() <= tolerance),
    }


def _png_markdown(path: Path, title: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{title}](data:image/png;base64,{data})"


def _confusion_markdown(cm: list[list[int]]) -> str:
    names = ("down (−1)", "flat (0)", "up (+1)")
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---|---|---|---|"]
    for name, row in zip(names, cm, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _safe_uri(uri: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri.rsplit("@", maxsplit=1)[-1]


lstm_model = _model_asset("lstm")
transformer_model = _model_asset("transformer")

training_assets = [training_dataset, lstm_model, transformer_model]
