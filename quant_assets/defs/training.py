"""Training in Dagster: ``training_dataset``, ``lstm_model``, ``transformer_model`` (with their
TFLite parity checks), and the ``nightly_retraining`` job and schedule.

The pure work lives in ``quant_assets.models``; these assets read the database, wire the
configuration, log to MLflow and report metadata. The dataset is one .npz file
(``Settings.training_dataset_path``; windows of ~40 sessions x 20 tickers are tens of MB: not
pickled through an IO manager, like the project's tables); each model asset writes a bundle
``$QUANT_HOME/models/{arch}_v{N}/`` and an MLflow run with a registered model version.

Run config: every ``TrainingConfig`` field, unset by default (then ``QUANT_TRAIN_*`` or the
default decides); the dataset's fields on ``training_dataset``, the others on the model assets
(which take the dataset's own values for its fields).
"""

import tempfile
import time
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from quant_assets import tracking
from quant_assets.defs.configs import config_class
from quant_assets.defs.images import linked_png_markdown, png_markdown
from quant_assets.defs.metadata import json_value
from quant_assets.defs.partitions import day_range_tags
from quant_assets.defs.resources import DatabaseResource, MlflowResource
from quant_assets.labels import CLASS_NAMES
from quant_assets.market import calendar
from quant_assets.models.config import DATASET_FIELDS, MODEL_FIELDS, TrainingConfig
from quant_assets.models.data import label_spec_of, labelled_sessions, load_labelled_features
from quant_assets.models.dataset import TrainingDataset, build_dataset
from quant_assets.models.parity import BundleCheck, Parity, check_bundle
from quant_assets.models.progress import epoch_logger
from quant_assets.settings import Settings

CHECK_PARITY = "tflite_parity"
MODEL_ASSETS = {"lstm": "lstm_model", "transformer": "transformer_model"}


class _DatasetConfigBase(dg.Config):
    tickers: list[str] | None = Field(None, description="None: the project's QUANT_TICKERS")

    def training_config(self) -> TrainingConfig:
        """QUANT_TRAIN_* (or the defaults), then this run config."""
        return TrainingConfig.from_env(**self.model_dump(exclude={"tickers"}))


class _ModelConfigBase(dg.Config):
    def training_config(self, dataset: TrainingDataset) -> TrainingConfig:
        """The dataset's own settings, then QUANT_TRAIN_*, then this run config."""
        from_dataset = {k: v for k, v in dataset.config.items() if k in DATASET_FIELDS}
        model = {k: v for k, v in self.model_dump().items() if v is not None}
        return TrainingConfig.from_env().replace(**from_dataset, **model)


DatasetConfig = config_class(
    "DatasetConfig", TrainingConfig, fields=DATASET_FIELDS, optional=True, base=_DatasetConfigBase
)
ModelRunConfig = config_class(
    "ModelRunConfig", TrainingConfig, fields=MODEL_FIELDS, optional=True, base=_ModelConfigBase
)


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
    settings = database.settings()
    engine = database.engine
    cfg = config.training_config()
    tickers = list(config.tickers or settings.tickers)
    sessions = labelled_sessions(engine, tickers)
    if len(sessions) == 0:
        raise dg.Failure("no labelled bars in table labels: materialize features and labels first")
    sessions = sessions[-cfg.sessions :]
    began = time.perf_counter()
    frame = load_labelled_features(engine, tickers, sessions[0], sessions[-1], prices=True)
    label_spec = label_spec_of(frame)
    if label_spec is None:
        raise dg.Failure("the labels table has no label_spec for the selected sessions")
    read_s = time.perf_counter() - began
    dataset = build_dataset(frame, cfg, label_spec=label_spec)
    path = dataset.save(settings.training_dataset_path)
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
        "split": json_value(dataset.plan.to_dict()),
        "holdout_window": json_value(dataset.plan.to_dict().get("holdout")),
        "samples": json_value({k: len(v) for k, v in dataset.samples.items()}),
        "class_balance": json_value({k: dataset.class_balance(k) for k in dataset.samples}),
        "purge_embargo": json_value(
            {k: v for k, v in dataset.stats.items() if isinstance(v, dict)}
        ),
        "class_weights": json_value(
            {name: dataset.class_weights[k] for k, name in enumerate(CLASS_NAMES)}
        ),
        "scaler": dg.MetadataValue.text(
            f"{dataset.scaler.kind} (clip ±{dataset.scaler.clip}), fit on "
            f"{dataset.stats['scaler_fit_rows']} train rows up to "
            f"{dataset.stats['scaler_fit_last_ts']}"
        ),
        "label_spec": json_value(label_spec.to_dict()),
        "feature_columns": json_value(list(dataset.columns)),
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
            "training_dataset with early stopping (best weights), temperature-calibrated on "
            "the validation segment (log-loss and ECE before/after), exported to TFLite and "
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
                    "(both calibrated) give probabilities within the tolerance (1e-4) on "
                    "validation windows."
                ),
            )
        ],
    )
    def _asset(
        context: dg.AssetExecutionContext, config: ModelRunConfig, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        return train_model_asset(context, arch, config, mlflow)

    return _asset


def train_model_asset(
    context: dg.AssetExecutionContext, arch: str, config: dg.Config, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """Train one architecture end to end and report it (shared by both model assets)."""
    # Imported here so that loading the definitions (sensors, schedules, every run) does not
    # load TensorFlow; only the model runs do.
    from quant_assets.models.calibration import report_scalars
    from quant_assets.models.training import scalar_metrics, train_and_bundle

    settings = Settings()
    dataset = TrainingDataset.load(settings.training_dataset_path)
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
            settings.models_dir,
            mlflow_run_id=run.run_id,
            callbacks=[
                run.keras_callback(),
                epoch_logger(context.log.info, arch, cfg.epochs_for(arch)),
            ],
            figures_dir=figures_dir,
        )
        bundle = report.bundle
        run.log_metrics({f"test_{k}": v for k, v in scalar_metrics(report.metrics["test"]).items()})
        run.log_metrics(
            {f"val_{k}": v for k, v in scalar_metrics(report.metrics["validation"]).items()}
        )
        calibration = report_scalars(report.calibration)
        run.log_metrics(calibration)
        parity_check = check_bundle(
            bundle.path,
            windows=dataset.windows("val", scaled=False, limit=cfg.parity_windows),
            tolerance=float(bundle.metrics.get("parity", {}).get("tolerance", 1e-4)),
        )
        parity = _parity_of(parity_check)
        run.log_metrics(
            {
                "parity_max_abs_diff": parity.max_abs_diff,
                "train_seconds": report.result.seconds,
                "best_epoch": report.result.best_epoch,
                "epochs_run": report.result.epochs_run,
                "params": report.result.params,
            }
        )
        run.log_dict(report.metrics, "metrics.json")
        for path in report.figures.values():
            run.log_artifact(path)  # at the root: MLflow's Compare view lists only those
        run.log_artifacts(bundle.path, "bundle")
        run.set_tags({tracking.BUNDLE_TAG: bundle.name, "parity_passed": parity.passed})
        registered = mlflow.registered_model_name(arch)
        model_version = run.register_model(
            registered, "bundle", tags={tracking.BUNDLE_TAG: bundle.name}
        )
        images = {k: png_markdown(v, k) for k, v in report.figures.items()}
    seconds = time.perf_counter() - began
    test = report.metrics["test"]
    context.log.info(
        f"{bundle.name}: test macro-F1(up/down) {test['macro_f1_updown']:.4f}, accuracy "
        f"{test['accuracy']:.4f}; temperature {report.calibration['temperature']:.3f}; "
        f"parity max|Δp| {parity.max_abs_diff:.2e}; "
        f"MLflow run {run.run_id}, {registered} v{model_version}; {seconds:.1f} s"
    )
    ui = settings.mlflow_ui_url.rstrip("/")
    served = {
        title.replace("_", " "): f"{ui}/{run.artifact_path_query(path.name)}"
        for title, path in report.figures.items()
    }
    metadata: dict[str, Any] = {
        # First, so the asset page opens on the plots (drawn in place while the MLflow UI runs).
        "plots": dg.MetadataValue.md(
            linked_png_markdown(
                served,
                f"Served by the MLflow UI at {ui} (`make mlflow-ui`); the same figures are "
                "embedded in learning_curves_png and confusion_matrix_png.",
            )
        ),
        "bundle": dg.MetadataValue.text(bundle.name),
        "bundle_path": dg.MetadataValue.path(str(bundle.path)),
        "version": dg.MetadataValue.int(bundle.version),
        "mlflow_run_id": dg.MetadataValue.text(run.run_id),
        "mlflow_tracking_uri": dg.MetadataValue.text(
            tracking.safe_uri(mlflow.resolved_tracking_uri())
        ),
        "mlflow_run": dg.MetadataValue.url(
            f"{settings.mlflow_ui_url.rstrip('/')}/{run.url_path()}"
        ),
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
                "ece",
            )
            if k in test
        },
        **{k: dg.MetadataValue.float(round(v, 6)) for k, v in calibration.items()},
        "calibration": json_value(report.calibration),
        "val_macro_f1_updown": dg.MetadataValue.float(
            round(report.metrics["validation"]["macro_f1_updown"], 6)
        ),
        "confusion_matrix": dg.MetadataValue.md(_confusion_markdown(test["confusion_matrix"])),
        "confusion_matrix_png": dg.MetadataValue.md(images.get("confusion_matrix", "")),
        "learning_curves_png": dg.MetadataValue.md(images.get("learning_curves", "")),
        "history": json_value(report.result.history),
        "epochs_run": dg.MetadataValue.int(report.result.epochs_run),
        "best_epoch": dg.MetadataValue.int(report.result.best_epoch),
        "params": dg.MetadataValue.int(report.result.params),
        "train_seconds": dg.MetadataValue.float(round(report.result.seconds, 1)),
        "total_seconds": dg.MetadataValue.float(round(seconds, 1)),
        "tflite_bytes": dg.MetadataValue.int(len(report.tflite)),
        "validation_baseline": json_value(report.validation_baseline),
        "training_window": json_value(bundle.training_window),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_PARITY,
                passed=parity.passed,
                metadata={
                    "max_abs_diff": dg.MetadataValue.float(parity.max_abs_diff),
                    "mean_abs_diff": dg.MetadataValue.float(parity.mean_abs_diff),
                    "windows": dg.MetadataValue.int(parity.windows),
                    "tolerance": dg.MetadataValue.float(parity.tolerance),
                    "argmax_agreement": dg.MetadataValue.float(parity.argmax_agreement),
                },
            )
        ],
    )


def _parity_of(check: BundleCheck) -> Parity:
    """The measured parity of a bundle check; a bundle that cannot even load fails the asset."""
    if check.parity is None:
        raise dg.Failure(f"the new bundle's TFLite file cannot be checked: {check.message}")
    return check.parity


def _confusion_markdown(cm: list[list[int]]) -> str:
    names = ("down (−1)", "flat (0)", "up (+1)")
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---|---|---|---|"]
    for name, row in zip(names, cm, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


lstm_model = _model_asset("lstm")
transformer_model = _model_asset("transformer")

training_assets = [training_dataset, lstm_model, transformer_model]


# --- the nightly retraining -------------------------------------------------------------------
NIGHTLY_ASSETS = (
    "corporate_actions",
    "adjusted_bars",
    "features",
    "labels",
    "training_dataset",
    "lstm_model",
    "transformer_model",
    "champion_model",
)

nightly_job = dg.define_asset_job(
    "nightly_retraining",
    selection=dg.AssetSelection.assets(*NIGHTLY_ASSETS),
    description=(
        "corporate actions → adjusted bars → features → labels → dataset → LSTM and "
        "Transformer → champion, over the last session's day partition (or any range of days)."
    ),
)


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="02:00 New York on weekdays: retrain on everything up to the last session.",
)
def nightly_retraining_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """One run over the last completed session (every ticker), then the unpartitioned assets."""
    now = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
    last = calendar.session_before(calendar.session_of(now), 0)
    if calendar.is_session(calendar.session_of(now)) and now < calendar.session_bounds(last)[1]:
        last = calendar.session_before(last, 1)
    return dg.RunRequest(run_key=f"nightly-{last.date()}", tags=day_range_tags(last, last))
