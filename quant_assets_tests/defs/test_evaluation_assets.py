"""The ``evaluate`` job: walk-forward folds on a populated database, the table and plot on the
``walk_forward`` asset, and one MLflow parent run with a nested run per model."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.evaluation import (
    ASSET,
    EVALUATE_JOB,
    RUN_NAME,
    evaluate_run_config,
    log_walk_forward,
    report_to_mlflow,
)
from quant_assets.defs.resources import MlflowResource
from quant_assets.deployment.walk_forward_report import REPORT_FILES, write_report_files
from quant_assets.market import calendar
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine
from quant_assets_tests.deployment.helpers import walk_forward_of
from quant_assets_tests.helpers import TINY_NETWORKS, populate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NAN = math.nan
FIGURES = {
    "lstm": [(0.50, 1.0, 0.70), (0.60, NAN, NAN), (0.55, 3.0, 0.90)],
    "logistic": [(0.52, -1.0, 0.30), (0.54, 0.5, 0.55), (0.56, 0.0, 0.50)],
}
TICKERS = ("AAPL", "MSFT")
HISTORY = ("2026-08-27", "2026-09-16")  # 15 sessions of bars
DAYS = tuple(str(d.date()) for d in calendar.sessions("2026-08-31", "2026-09-16"))
# Tiny networks; every other setting is the default.
TINY = {"tickers": list(TICKERS), "window": 20, **TINY_NETWORKS}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def populated(quant_env: Settings) -> Settings:
    """Bars, adjusted bars, features and labels of two tickers over 12 sessions."""
    populate(get_engine(quant_env), TICKERS, HISTORY, DAYS, DAYS)
    return quant_env


def mlflow_at(tmp_path: Path) -> MlflowResource:
    return MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=str(tmp_path / "artifacts"),
    )


def test_evaluate_is_its_own_job_not_part_of_the_nightly() -> None:
    from quant_assets.definitions import defs

    assert [n.name for n in defs.resolve_job_def(EVALUATE_JOB).nodes] == [ASSET]
    assert ASSET not in {n.name for n in defs.resolve_job_def("nightly_retraining").nodes}


def test_mlflow_gets_a_parent_run_and_one_nested_run_per_model(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    wf = walk_forward_of(FIGURES)
    resource = mlflow_at(tmp_path)
    folder = write_report_files(wf, tmp_path / "files")
    parent_id = log_walk_forward(resource, wf, folder, {"folds": 3}, "dagster-run-1")
    client = MlflowClient(tracking_uri=resource.tracking_uri)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == RUN_NAME and parent.info.status == "FINISHED"
    assert parent.data.params["folds"] == "3"
    assert parent.data.metrics["lstm_wf_macro_f1_mean"] == pytest.approx(0.55)
    files = {Path(a.path).name for a in client.list_artifacts(parent_id, RUN_NAME)}
    assert files == set(REPORT_FILES)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    by_model = {c.data.tags["model"]: c for c in children}
    assert {c.info.run_name for c in children} == {f"{RUN_NAME}/lstm", f"{RUN_NAME}/logistic"}
    assert set(by_model["lstm"].data.metrics) == set(by_model["logistic"].data.metrics)
    for model, rows in FIGURES.items():
        history = client.get_metric_history(by_model[model].info.run_id, "wf_macro_f1")
        assert [(m.step, m.value) for m in history] == [(k + 1, r[0]) for k, r in enumerate(rows)]
    sharpe = client.get_metric_history(by_model["lstm"].info.run_id, "wf_net_sharpe")
    assert [m.step for m in sharpe] == [1, 3]  # fold 2 had no Sharpe: nothing logged there


def test_an_mlflow_failure_is_a_note_and_the_evaluation_stands(tmp_path: Path) -> None:
    wf = walk_forward_of(FIGURES)
    folder = write_report_files(wf, tmp_path / "files")
    broken = MlflowResource(tracking_uri="nosuchscheme://quant:hunter2@nowhere")
    note = report_to_mlflow(dg.build_asset_context(), broken, wf, folder, {})
    assert note.startswith("not logged to nosuchscheme://quant:***@nowhere")
    assert "hunter2" not in note


@pytest.mark.slow
def test_the_evaluate_job_retrains_every_fold_and_reports_it(populated: Settings) -> None:
    from mlflow import MlflowClient

    from quant_assets.definitions import defs

    run_config = evaluate_run_config(2)
    run_config["ops"][ASSET]["config"].update(TINY)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(EVALUATE_JOB).execute_in_process(
            run_config=run_config, instance=instance
        )
    assert result.success
    metadata = {
        k: v.value for k, v in result.asset_materializations_for_node(ASSET)[0].metadata.items()
    }
    rows = [line for line in metadata["scores"].splitlines() if line.startswith("| ")][1:]
    models = ("lstm", "transformer", "logistic")
    assert [r.split("|")[4].strip() for r in rows] == [*models, *models, *models]
    assert all(r.startswith("| mean ± sd | 2 folds") for r in rows[6:])
    assert metadata["plot"].startswith("![walk-forward](data:image/png;base64,")
    folds = metadata["folds"]
    # 12 labelled sessions: blocks of 12 // 3 = 4 after a first span of 4; the second fold
    # learns from the first fold's block too.
    assert len(DAYS) == 12
    assert [f["holdout"] for f in folds] == [[DAYS[4], DAYS[7]], [DAYS[8], DAYS[11]]]
    assert folds[0]["train"][0] == folds[1]["train"][0] == DAYS[0]
    assert folds[1]["test"][1] == DAYS[7]
    for fold in folds:
        for model in models:
            figures = fold["scores"][model]
            assert 0.0 <= figures["macro_f1"] <= 1.0
            if figures["net_sharpe"] is not None:  # the PSR and the Sharpe read the same days
                assert (figures["psr"] > 0.5) == (figures["net_sharpe"] > 0)

    client = MlflowClient(tracking_uri=populated.mlflow_tracking_uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("quant_assets").experiment_id],
        f"attributes.run_name = '{RUN_NAME}'",
    )
    assert metadata["mlflow"].startswith(f"run {parent.info.run_id}")
    assert parent.data.tags["dagster_run_id"] == result.run_id
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["model"] for c in children) == sorted(models)
    for child in children:
        history = client.get_metric_history(child.info.run_id, "wf_macro_f1")
        model = child.data.tags["model"]
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx(
            [f["scores"][model]["macro_f1"] for f in folds], rel=1e-5
        )  # the metadata's JSON to six significant digits
