"""``MlflowResource``: MLflow tracking and registry through plain ``mlflow`` (no dagster-mlflow).

dagster-mlflow is a beta, old-style resource whose rewrite stalled (STACK_NOTES.md); this one
is a ``ConfigurableResource`` around ``MlflowClient`` with explicit run ids, so no global
"active run" state is shared between assets running in one process.

Defaults (principle 6, embedded): tracking store ``sqlite:///$QUANT_HOME/mlflow.db``
(``Settings.mlflow_tracking_uri``; MLflow 3 refuses the ./mlruns file store), artifacts under
``$QUANT_HOME/mlflow-artifacts``, experiment ``quant_assets``, registered models
``quant-lstm`` and ``quant-transformer``. Set ``tracking_uri`` (e.g. ``http://mlflow:5000``) to
use a server. ``make mlflow-ui`` opens the embedded store.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from filelock import FileLock

from quant_assets.settings import Settings

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value is 6000 characters


class MlflowRun:
    """One MLflow run, addressed by id (thin helpers over ``MlflowClient``)."""

    def __init__(self, client: Any, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in sorted(_flatten(params).items())]
        for lo in range(0, len(items), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[lo : lo + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        for lo in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[lo : lo + 1000])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def register_model(
        self, name: str, artifact_path: str, tags: Mapping[str, Any] | None = None
    ) -> str:
        """Register ``runs:/<run>/<artifact_path>`` as a new version of ``name``; its number."""
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):  # already registered
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name,
            source=f"runs:/{self.run_id}/{artifact_path}",
            run_id=self.run_id,
            tags={k: str(v) for k, v in (tags or {}).items()},
        )
        return str(version.version)

    def keras_callback(self) -> Any:
        """A Keras callback that logs every epoch's logs (loss, accuracy, val_…) to this run."""
        import keras

        run = self

        class _EpochLogger(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                run.log_metrics({f"epoch_{k}": v for k, v in (logs or {}).items()}, step=epoch)

        return _EpochLogger()

    def url_path(self) -> str:
        """The run's path in the MLflow UI (append to the server's base URL)."""
        return f"#/experiments/{self.experiment_id}/runs/{self.run_id}"


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (defaults: SQLite store under QUANT_HOME)."""

    tracking_uri: str | None = None  # None: Settings().mlflow_tracking_uri
    artifact_root: str | None = None  # None: $QUANT_HOME/mlflow-artifacts (new experiments)
    experiment_name: str = "quant_assets"
    registered_model_prefix: str = "quant"

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or Settings().mlflow_tracking_uri

    def registered_model_name(self, arch: str) -> str:
        return f"{self.registered_model_prefix}-{arch}"

    def client(self) -> Any:
        """An ``MlflowClient`` on the configured store (the SQLite file is created on first use)."""
        from mlflow import MlflowClient

        uri = self.resolved_tracking_uri()
        with self._store_lock():
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # creates / migrates the schema now
        return client

    def experiment_id(self, client: Any) -> str:
        """The experiment's id, created (with its artifact root) when missing."""
        from mlflow.exceptions import MlflowException

        with self._store_lock():
            found = client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                return str(found.experiment_id)
            try:
                return str(
                    client.create_experiment(
                        self.experiment_name, artifact_location=self._artifact_location()
                    )
                )
            except MlflowException:  # created meanwhile by another process
                return str(client.get_experiment_by_name(self.experiment_name).experiment_id)

    @contextlib.contextmanager
    def start_run(
        self, run_name: str, tags: Mapping[str, Any] | None = None
    ) -> Iterator[MlflowRun]:
        """A run that ends FINISHED, or FAILED when the block raises."""
        client = self.client()
        experiment = self.experiment_id(client)
        run = client.create_run(
            experiment, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
        )
        handle = MlflowRun(client, run.info.run_id, experiment)
        try:
            yield handle
        except BaseException:
            client.set_terminated(handle.run_id, "FAILED")
            raise
        client.set_terminated(handle.run_id, "FINISHED")

    def _artifact_location(self) -> str:
        default = Settings().home / "mlflow-artifacts"
        root = (Path(self.artifact_root) if self.artifact_root else default).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root.as_uri()

    def _store_lock(self) -> contextlib.AbstractContextManager:
        """Serialize schema creation of a local SQLite store between processes."""
        uri = self.resolved_tracking_uri()
        if not uri.startswith("sqlite:///"):
            return contextlib.nullcontext()
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(db) + ".lock")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_CHARS]
