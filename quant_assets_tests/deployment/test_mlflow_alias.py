"""The MLflow alias 'champion' follows model_config.json and never blocks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from quant_assets.deployment import champion
from quant_assets.deployment.mlflow_alias import sync_champion_alias
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.settings import Settings
from quant_assets.tracking import CHAMPION_ALIAS, CHAMPION_MODEL, MODEL_TAG
from quant_assets_tests.deployment.helpers import make_model_file


def test_alias_follows_promote_and_rollback(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings = Settings(home=tmp_path / "home", _env_file=None)
    uri = settings.mlflow_tracking_uri
    home = settings.home
    home.mkdir(parents=True)
    a = make_model_file(home, "lstm", 1)
    b = make_model_file(home, "transformer", 1)
    registry = ModelRegistry.from_settings(settings)
    # What the lstm_model asset does: a run, and a version of quant-lstm tagged with the bundle.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(client.create_experiment("t", (tmp_path / "art").as_uri()))
    client.create_registered_model("quant-lstm")
    trained = client.create_model_version(
        "quant-lstm", f"runs:/{run.info.run_id}/bundle", run.info.run_id, tags={"bundle": "lstm_v1"}
    )

    r = champion.promote(
        registry, a, reason="first", mlflow_run_id=run.info.run_id, tracking_uri=uri
    )
    assert r.alias_sync.ok and r.alias_sync.action == "set"
    assert r.alias_sync.arch_model_version == "quant-lstm v1"
    v_a = client.get_model_version_by_alias(CHAMPION_MODEL, CHAMPION_ALIAS)
    assert v_a.tags[MODEL_TAG] == "lstm_v1"
    assert (v_a.source, v_a.run_id) == (trained.source, run.info.run_id)  # the trained artifacts
    assert (
        client.get_model_version_by_alias("quant-lstm", CHAMPION_ALIAS).version == trained.version
    )

    r = champion.promote(registry, b, reason="better", mlflow_run_id="not-a-run", tracking_uri=uri)
    assert r.alias_sync.action == "set" and r.alias_sync.arch_model_version is None
    v_b = client.get_model_version_by_alias(CHAMPION_MODEL, CHAMPION_ALIAS)
    assert v_b.tags[MODEL_TAG] == "transformer_v1"
    assert Path(v_b.source) == (home / "models" / "transformer_v1").resolve()  # no trained version
    with pytest.raises(MlflowException):  # quant-lstm is no longer the champion
        client.get_model_version_by_alias("quant-lstm", CHAMPION_ALIAS)

    r = champion.rollback(registry, "drift", tracking_uri=uri)
    assert r.current == "lstm_v1" and r.alias_sync.action == "set"
    back = client.get_model_version_by_alias(CHAMPION_MODEL, CHAMPION_ALIAS)
    assert back.version == v_a.version  # the existing version is reused, not re-registered
    assert (
        client.get_model_version_by_alias("quant-lstm", CHAMPION_ALIAS).version == trained.version
    )
    again = sync_champion_alias(registry, tracking_uri=uri)
    assert again.action == "unchanged"
    assert len(client.search_model_versions(f"name = '{CHAMPION_MODEL}'")) == 2
    rm = client.get_registered_model(CHAMPION_MODEL)
    assert rm.tags["config_revision"] == str(registry.load().revision)


def test_unreachable_mlflow_does_not_block_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    home = tmp_path / "home"
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    registry.promote(make_model_file(home, "lstm", 1), reason="first")
    before = registry.path.read_bytes()
    result = sync_champion_alias(registry, tracking_uri="http://127.0.0.1:9")
    assert not result.ok and result.action == "failed" and "127.0.0.1:9" in result.message
    assert "not synced" in caplog.text
    assert registry.path.read_bytes() == before


def test_unreadable_config_leaves_the_alias_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text("{")
    result = sync_champion_alias(registry, tracking_uri="sqlite:///unused.db")
    assert not result.ok and "config unreadable" in result.message
