"""Walk-forward evaluation in Dagster: the ``walk_forward`` asset and the ``evaluate`` job.

Not part of the nightly (``nightly_retraining`` selects its assets by name): run it with
``quant evaluate --folds K`` or from the UI. The asset reads the newest ``sessions`` labelled
sessions (the window the nightly's dataset reads), cuts them into K expanding folds
(``models.folds``), retrains both networks and the logistic baseline on each fold and scores
the block after it (``deployment.walk_forward``). It reports the table and the plot in its
metadata, and in MLflow:

* a parent run ``walk_forward``: the run config as params, the report files under
  ``walk_forward/`` (table, plot, CSVs, JSON), and each model's mean and sd named by the model
  (``lstm_wf_net_sharpe_mean``), so the parent runs of several evaluations compare over time;
* one nested run per model, ``walk_forward/<model>``: the per-fold figures with the fold as
  step and their mean and sd, under the *same names for every model* (``wf_macro_f1``,
  ``wf_net_sharpe``, ``wf_psr``, …). Selecting the nested runs in MLflow's Compare view puts
  the models side by side, and its step charts draw each model's figure fold by fold —
  model-prefixed names in one run could not be compared as runs.

MLflow is not the system of record: a logging failure is a warning and a metadata note, the
evaluation's figures stay on the asset.
"""

import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from quant_assets import tracking
from quant_assets.defs.configs import config_class
from quant_assets.defs.deployment import backtest_spec
from quant_assets.defs.images import png_markdown
from quant_assets.defs.metadata import json_value
from quant_assets.defs.resources import DatabaseResource, MlflowResource
from quant_assets.deployment.holdout_value import DEFAULT_THRESHOLD
from quant_assets.deployment.walk_forward import WalkForward, run_walk_forward
from quant_assets.deployment.walk_forward_report import (
    PLOT_PNG,
    fold_metrics,
    overview_metrics,
    result_record,
    scores_table,
    summary_metrics,
    write_report_files,
)
from quant_assets.evaluation.backtest import DEFAULT_COST_BPS
from quant_assets.models.bundle import ARCHS
from quant_assets.models.config import TrainingConfig
from quant_assets.models.data import label_spec_of, labelled_sessions, load_labelled_features
from quant_assets.models.folds import expanding_folds

ASSET = "walk_forward"
EVALUATE_JOB = "evaluate"
RUN_NAME = "walk_forward"  # the parent MLflow run; nested runs are walk_forward/<model>
DEFAULT_FOLDS = 3
# The scored block replaces the holdout: every other training setting applies to each fold.
FOLD_FIELDS: tuple[str, ...] = tuple(
    name for name in TrainingConfig.field_names() if name != "holdout_sessions"
)


class _WalkForwardConfigBase(dg.Config):
    folds: int = Field(DEFAULT_FOLDS, description="K expanding folds")
    block_sessions: int | None = Field(
        None, description="sessions per scored block (None: sessions // (folds + 1))"
    )
    tickers: list[str] | None = Field(None, description="None: the project's QUANT_TICKERS")
    archs: list[str] = Field(default_factory=lambda: list(ARCHS))
    signal_threshold: float = Field(
        DEFAULT_THRESHOLD, description="backtest: long when p_up − p_down ≥ τ, short when ≤ −τ"
    )
    cost_bps: float = Field(DEFAULT_COST_BPS, description="backtest: the cost, bps per side")

    def training_config(self) -> TrainingConfig:
        """QUANT_TRAIN_* (or the defaults), then this run config."""
        return TrainingConfig.from_env(**self.model_dump(include=set(FOLD_FIELDS)))


WalkForwardConfig = config_class(
    "WalkForwardConfig",
    TrainingConfig,
    fields=FOLD_FIELDS,
    optional=True,
    base=_WalkForwardConfigBase,
)


def evaluate_run_config(
    folds: int,
    block_sessions: int | None = None,
    sessions: int | None = None,
    tickers: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The ``evaluate`` job's run config (unset values left to the defaults)."""
    values = {
        "folds": folds,
        "block_sessions": block_sessions,
        "sessions": sessions,
        "tickers": None if tickers is None else list(tickers),
    }
    return {"ops": {ASSET: {"config": {k: v for k, v in values.items() if v is not None}}}}


@dg.asset(
    name=ASSET,
    group_name="evaluation",
    kinds={"tensorflow", "mlflow"},
    deps=[dg.AssetKey("features"), dg.AssetKey("labels")],
    description=(
        "Walk-forward evaluation (not in the nightly): the newest `sessions` labelled sessions "
        "in K expanding folds, the dataset builder's purge and embargo at every boundary; on "
        "each, LSTM, Transformer and the logistic baseline retrained and calibrated as the "
        "nightly does, then scored on the block after it: macro-F1 (UP/DOWN), net Sharpe at "
        "the default cost and the probabilistic Sharpe ratio (true Sharpe > 0), per fold and "
        "as mean ± sd. Table and plot here and in MLflow (run `walk_forward`)."
    ),
)
def walk_forward(
    context: dg.AssetExecutionContext,
    config: WalkForwardConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Read the labelled sessions, run every fold, report the figures."""
    began = time.perf_counter()
    settings = database.settings()
    cfg = config.training_config()
    tickers = list(config.tickers or settings.tickers)
    sessions = labelled_sessions(database.engine, tickers)[-cfg.sessions :]
    if len(sessions) == 0:
        raise dg.Failure("no labelled bars in table labels: materialize features and labels first")
    try:
        folds = expanding_folds(
            sessions, config.folds, config.block_sessions, cfg.val_fraction, cfg.test_fraction
        )
    except ValueError as err:
        raise dg.Failure(str(err)) from err
    frame = load_labelled_features(database.engine, tickers, sessions[0], sessions[-1], prices=True)
    label_spec = label_spec_of(frame)
    if label_spec is None:
        raise dg.Failure("the labels table has no label_spec for the selected sessions")
    context.log.info(
        f"{len(folds)} folds over {len(sessions)} sessions of {len(tickers)} tickers: "
        + "; ".join(
            f"fold {f.number} learns {f.trained[0].date()} … {f.trained[1].date()}, "
            f"scored {f.scored[0].date()} … {f.scored[1].date()}"
            for f in folds
        )
    )
    result = run_walk_forward(
        frame,
        folds,
        cfg,
        backtest_spec(label_spec, config.signal_threshold, config.cost_bps),
        label_spec=label_spec,
        archs=config.archs,
        on_fold=lambda outcome: context.log.info(outcome.describe()),
    )
    params = {
        **config.model_dump(exclude=set(FOLD_FIELDS)),
        "training": cfg.to_dict(),
        "tickers": ",".join(tickers),
        "sessions": f"{sessions[0].date()} … {sessions[-1].date()} ({len(sessions)})",
    }
    with tempfile.TemporaryDirectory(prefix="walk-forward-") as tmp:
        folder = write_report_files(result, Path(tmp))
        plot = png_markdown(folder / PLOT_PNG, "walk-forward")
        logged = report_to_mlflow(context, mlflow, result, folder, params)
    seconds = time.perf_counter() - began
    record = result_record(result)
    metadata: dict[str, Any] = {
        "scores": dg.MetadataValue.md(scores_table(result)),
        "plot": dg.MetadataValue.md(plot),
        "summary": json_value(record["summary"]),
        "folds": json_value(record["folds"]),
        "sessions": dg.MetadataValue.int(len(sessions)),
        "tickers": dg.MetadataValue.int(len(tickers)),
        "mlflow": dg.MetadataValue.text(logged),
        "seconds": dg.MetadataValue.float(round(seconds, 1)),
        **{k: dg.MetadataValue.float(round(v, 6)) for k, v in overview_metrics(result).items()},
    }
    return dg.MaterializeResult(metadata=metadata)


def report_to_mlflow(
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    result: WalkForward,
    folder: Path,
    params: dict[str, Any],
) -> str:
    """Log the parent and nested runs; a description of where, or why not."""
    uri = mlflow.resolved_tracking_uri()
    where = tracking.safe_uri(uri)
    try:
        run_id = log_walk_forward(mlflow, result, folder, params, context.run_id)
    except Exception as err:  # MLflow down or misconfigured: the figures stay on the asset
        note = f"not logged to {where}: {str(err).replace(uri, where)}"  # no password shown
        context.log.warning(f"walk-forward {note}")
        return note
    return f"run {run_id} ({RUN_NAME}) in {where}"


def log_walk_forward(
    mlflow: MlflowResource,
    result: WalkForward,
    folder: Path,
    params: dict[str, Any],
    dagster_run_id: str,
) -> str:
    """The parent run ``walk_forward`` and one nested run per model; the parent's run id."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    tags = {"dagster_run_id": dagster_run_id, "asset": ASSET}
    with mlflow.start_run(RUN_NAME, tags=tags) as parent:
        parent.log_params(params)
        parent.log_artifacts(folder, RUN_NAME)
        parent.log_metrics(overview_metrics(result))
        for model in result.models:
            child_tags = {**tags, "model": model, MLFLOW_PARENT_RUN_ID: parent.run_id}
            with mlflow.start_run(f"{RUN_NAME}/{model}", tags=child_tags) as child:
                child.log_params({"model": model, "folds": len(result.folds)})
                for outcome in result.folds:
                    figures = outcome.scores[model].figures()
                    child.log_metrics(fold_metrics(figures), step=outcome.fold.number)
                child.log_metrics(summary_metrics(result, model))
    return parent.run_id


evaluate_job = dg.define_asset_job(
    EVALUATE_JOB,
    selection=dg.AssetSelection.assets(walk_forward),
    description=(
        "Walk-forward evaluation: both models and the logistic baseline retrained on K "
        "expanding folds, each scored on the block after it (not part of the nightly)."
    ),
)

evaluation_assets = [walk_forward]
