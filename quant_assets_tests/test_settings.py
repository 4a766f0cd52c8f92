"""Settings read from the environment: the MLflow tracking URI and the completeness rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from quant_assets.defs.resources import MlflowResource
from quant_assets.settings import Settings
from quant_assets.tracking import safe_uri


def test_mlflow_defaults_to_the_sqlite_file_under_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path, _env_file=None)
    assert settings.mlflow_tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"


def test_mlflow_tracking_uri_is_honoured(tmp_path: Path, monkeypatch) -> None:
    server = "postgresql://mlflow:s3cret@db.internal:5432/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("QUANT_HOME", str(tmp_path))
    assert Settings(_env_file=None).mlflow_tracking_uri == server
    assert MlflowResource().resolved_tracking_uri() == server
    assert "s3cret" not in safe_uri(server)


@pytest.mark.parametrize("uri", ["./mlruns", "file:///tmp/mlruns", "ftp://x"])
def test_a_file_store_is_refused_in_one_line(uri: str, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ValidationError, match="must be a tracking server or database URI"):
        Settings(_env_file=None)


def test_completeness_floor_is_a_share(monkeypatch) -> None:
    monkeypatch.setenv("QUANT_COMPLETENESS_FLOOR", "0.98")
    assert Settings(_env_file=None).completeness_floor == 0.98
    monkeypatch.setenv("QUANT_COMPLETENESS_FLOOR", "98")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
