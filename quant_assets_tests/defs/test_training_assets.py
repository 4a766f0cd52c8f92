"""training_dataset → lstm_model / transformer_model through Dagster, with MLflow on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.resources import DatabaseResource, MlflowResource
from quant_assets.defs.training import (
    CHECK_PARITY,
    lstm_model,
    training_dataset,
    transformer_model,
)
from quant_assets.labels import LabelSpec
from quant_assets.models.bundle import list_bundles, load_bundle
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine
from quant_assets_tests.helpers import TINY_NETWORKS
from quant_assets_tests.models.helpers import TICKERS, market_bars, store

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TINY_MODEL = {**TINY_NETWORKS, "parity_windows": 64}


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the loader itself is tested on PostgreSQL in models/test_data.py


def run_config(**model: object) -> dict:
    dataset = {
        "holdout_sessions": 2,
        "val_fraction": 0.17,
        "test_fraction": 0.17,
        "tickers": list(TICKERS),
        "sessions": 30,
    }
    return {
        "ops": {
            "training_dataset": {"config": dataset},
            "lstm_model": {"config": {**TINY_MODEL, **model}},
            "transformer_model": {"config": {**TINY_MODEL, **model}},
        }
    }


def test_training_assets_write_bundles_and_mlflow_runs(quant_env: Settings) -> None:
    from mlflow import MlflowClient

    _, bars = market_bars(0.3)
    store(labelled_features_from_bars(bars, LabelSpec()), get_engine(quant_env))
    resources = {"database": DatabaseResource(), "mlflow": MlflowResource()}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [training_dataset, lstm_model, transformer_model],
            instance=instance,
            resources=resources,
            run_config=run_config(),
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {(c.asset_key.path[-1], c.check_name) for c in checks} == {
            ("lstm_model", CHECK_PARITY),
            ("transformer_model", CHECK_PARITY),
        }
        assert all(c.passed for c in checks)
        assert all(c.metadata["max_abs_diff"].value <= 1e-4 for c in checks)

        ds_meta = result.asset_materializations_for_node("training_dataset")[0].metadata
        assert ds_meta["holdout_window"].value == ["2026-03-19", "2026-03-20"]
        assert ds_meta["tickers"].value == 3

        models = quant_env.home / "models"
        assert [p.name for p in list_bundles(models)] == ["lstm_v1", "transformer_v1"]
        client = MlflowClient(tracking_uri=quant_env.mlflow_tracking_uri)
        experiment = client.get_experiment_by_name("quant_assets")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        for arch in ("lstm", "transformer"):
            meta = result.asset_materializations_for_node(f"{arch}_model")[0].metadata
            run_id = meta["mlflow_run_id"].value
            link = meta["mlflow_run"].value  # a link into the MLflow UI
            assert link.startswith("http://127.0.0.1:5000/#/experiments/")
            assert link.endswith(f"/runs/{run_id}?workflowType=machine_learning")
            bundle = load_bundle(models / f"{arch}_v1")
            assert bundle.mlflow_run_id == run_id
            assert bundle.training_window["first_session"] == "2026-03-03"
            assert meta["test_macro_f1_updown"].value == pytest.approx(
                bundle.metrics["test"]["macro_f1_updown"], abs=1e-6
            )
            assert meta["confusion_matrix_png"].value.startswith("![confusion_matrix](data:image")
            run = client.get_run(run_id)
            assert run.info.status == "FINISHED"
            assert run.data.params["arch"] == arch
            expected = {"test_accuracy", "test_macro_f1_updown", "test_precision_up"}
            expected |= {"test_recall_down", "epoch_loss", "epoch_val_loss"}
            # Calibration figures, under the same names for both architectures.
            expected |= {"calibration_temperature", "test_ece", "test_log_loss"}
            expected |= {
                f"calibration_{segment}_{figure}_{when}"
                for segment in ("validation", "test")
                for figure in ("ece", "log_loss")
                for when in ("before", "after")
            }
            assert expected <= set(run.data.metrics)
            assert run.data.metrics["calibration_temperature"] == pytest.approx(bundle.temperature)
            assert meta["calibration_test_ece_after"].value == pytest.approx(
                bundle.manifest["calibration"]["test"]["ece_after"], abs=1e-6
            )
            # The asset page opens on the plots, served by the MLflow UI, short enough for the
            # UI to draw in place (markdown of 1,000 characters or more hides behind a button).
            assert next(iter(meta)) == "plots"
            assert f"get-artifact?path=learning_curves.png&run_uuid={run_id}" in meta["plots"].value
            assert len(meta["plots"].value) < 1000
            artifacts = {a.path for a in client.list_artifacts(run_id)}
            # The figures at the root, the same names for every model (Compare lists those).
            assert {"bundle", "metrics.json", "confusion_matrix.png", "learning_curves.png"} <= (
                artifacts
            )
            bundle_files = {Path(a.path).name for a in client.list_artifacts(run_id, "bundle")}
            assert bundle_files == {"bundle.json", f"{arch}_v1.tflite", f"{arch}_v1.keras"}
            versions = client.search_model_versions(f"name='quant-{arch}'")
            assert [v.run_id for v in versions] == [run_id]

        # The next night: a new version of the bundle and of the registered model.
        again = dg.materialize(
            [lstm_model],
            instance=instance,
            resources=resources,
            run_config={"ops": {"lstm_model": {"config": TINY_MODEL}}},
        )
        assert again.success
        assert load_bundle(models / "lstm_v2").version == 2
        assert len(client.search_model_versions("name='quant-lstm'")) == 2
        manifest = json.loads((models / "lstm_v2" / "bundle.json").read_text())
        assert manifest["training"]["config"]["holdout_sessions"] == 2  # the dataset's settings


def test_training_dataset_fails_clearly_without_labels(quant_env: Settings) -> None:
    get_engine(quant_env)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [training_dataset],
            instance=instance,
            resources={"database": DatabaseResource()},
            run_config={"ops": {"training_dataset": {"config": {"tickers": ["AAA"]}}}},
            raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "materialize features and labels first" in failure.message
