"""MLflow: the tracking client, the experiment, one run's helpers, and the registry's names.

Used by the Dagster ``MlflowResource`` (training runs) and by ``deployment.mlflow_alias`` (the
``champion`` alias), so both open the store the same way: plain ``mlflow`` (dagster-mlflow is a
beta, old-style resource whose rewrite stalled), explicit run ids (no global "active run" shared
between assets in one process), and a file lock around the creation of a local SQLite store,
which several processes may otherwise try to create and migrate at once.

Names: experiment ``quant_assets``; registered models ``quant-lstm`` / ``quant-transformer``
(one version per training run, tagged ``bundle = {arch}_v{N}``) and ``quant-champion`` (one
version per champion, tagged ``quant_model = {arch}_v{N}``); alias ``champion``.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "quant_assets"
MODEL_PREFIX = "quant"
CHAMPION_MODEL = "quant-champion"
CHAMPION_ALIAS = "champion"
BUNDLE_TAG = "bundle"  # on a training run's registered version: the bundle it holds
MODEL_TAG = "quant_model"  # on a quant-champion version: the model it is
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value is 6000 characters
# MLflow 3 opens an experiment in its GenAI view (traces, an assistant) unless it is marked as
# model training.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

# The MLflow UI (3.x) shows GenAI pages unless the link names the model training workflow.
ML_WORKFLOW_QUERY = "workflowType=machine_learning"


def registered_model_name(arch: str, prefix: str = MODEL_PREFIX) -> str:
    """``quant-lstm``: the registered model of one architecture's training runs."""
    return f"{prefix}-{arch}"


def store_lock(tracking_uri: str) -> contextlib.AbstractContextManager[Any]:
    """Serialize the creation of a local SQLite store between processes (no-op otherwise)."""
    if not tracking_uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock")


def tracking_client(tracking_uri: str) -> MlflowClient:
    """A client on the store (tracking and registry), its schema created or migrated now."""
    from mlflow import MlflowClient

    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.search_experiments(max_results=1)
    return client


def experiment_id(client: MlflowClient, name: str, artifact_root: Path, tracking_uri: str) -> str:
    """The experiment's id, created (with its artifact root) when missing."""
    from mlflow.exceptions import MlflowException

    with store_lock(tracking_uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            for key, value in EXPERIMENT_TAGS.items():  # an experiment made before the tag
                if found.tags.get(key) != value:
                    client.set_experiment_tag(found.experiment_id, key, value)
            return str(found.experiment_id)
        root = artifact_root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        try:
            return str(
                client.create_experiment(
                    name, artifact_location=root.as_uri(), tags=EXPERIMENT_TAGS
                )
            )
        except MlflowException:  # created meanwhile by another process
            return str(client.get_experiment_by_name(name).experiment_id)


def safe_uri(uri: str) -> str:
    """A tracking URI fit for logs and metadata (a password in it is masked)."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri.rsplit("@", maxsplit=1)[-1]


class MlflowRun:
    """One MLflow run, addressed by id (thin helpers over ``MlflowClient``)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params, flattened to dotted names and cut to MLflow's length limit."""
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in sorted(_flatten(params).items())]
        for lo in range(0, len(items), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=items[lo : lo + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log the numeric entries of ``metrics`` (others are skipped)."""
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
        """Upload one file."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Upload a folder."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Upload a JSON document."""
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values as text)."""
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
        """The run's path in the MLflow UI (append to the server's base URL), in its model
        training view (the UI opens in its GenAI view unless told otherwise)."""
        return f"#/experiments/{self.experiment_id}/runs/{self.run_id}?{ML_WORKFLOW_QUERY}"

    def artifact_path_query(self, artifact_path: str) -> str:
        """The MLflow server's route that serves one of the run's artifacts (append to the
        server's base URL): what the MLflow UI itself fetches to show an image."""
        query = urllib.parse.urlencode({"path": artifact_path, "run_uuid": self.run_id})
        return f"get-artifact?{query}"


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
