"""drift_rollback_sensor, champion_reload_sensor and rollback_job on an ephemeral instance.

The planted-shift replay (test_monitoring_assets.py) runs them on real bundles; these cover the
request / skip / cursor contract and the error paths (no, missing or bad champion bundle).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.deployment import (
    champion_reload_sensor,
    drift_rollback_sensor,
    rollback_champion,
    rollback_job,
)
from quant_assets.deployment.champion import NO_CHAMPION
from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.settings import Settings

DRIFT = dg.AssetKey("drift_report")
CHAMPION = dg.AssetKey("champion_model")


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("QUANT_HOME", str(path))
    return path


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return sensor.evaluate_tick(context)


def report(instance: dg.DagsterInstance, key: dg.AssetKey, **metadata: object) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))


def test_drift_sensor_requests_one_rollback_per_decision() -> None:
    with dg.instance_for_test() as instance:
        first = tick(drift_rollback_sensor, instance)
        assert not first.run_requests and "No new materialization" in (first.skip_message or "")

        report(instance, DRIFT, rollback=False, level="warn", model="lstm_v2",
               evaluated_at="2026-03-25T16:20:00+00:00")  # fmt: skip
        quiet = tick(drift_rollback_sensor, instance, first.cursor)
        assert not quiet.run_requests and "no rollback" in (quiet.skip_message or "")
        assert quiet.cursor is not None

        at = "2026-03-25T17:20:00+00:00"
        report(instance, DRIFT, rollback=True, level="severe", model="lstm_v2", evaluated_at=at,
               decision="severe drift for 3 consecutive evaluations")  # fmt: skip
        data = tick(drift_rollback_sensor, instance, quiet.cursor)
        assert data.run_requests and len(data.run_requests) == 1
        request = data.run_requests[0]
        assert request.run_key == f"drift-rollback-lstm_v2-{at}"
        assert request.tags["quant/trigger"] == "drift"
        cfg = request.run_config["ops"]["rollback_champion"]["config"]
        assert cfg["expected_champion"] == "lstm_v2" and "3 consecutive" in cfg["reason"]
        assert int(data.cursor) > int(quiet.cursor)

        # the same event is not re-read with the new cursor; the run key dedupes it anyway
        again = tick(drift_rollback_sensor, instance, data.cursor)
        assert not again.run_requests and again.cursor == data.cursor
        replayed = tick(drift_rollback_sensor, instance, quiet.cursor)
        assert replayed.run_requests[0].run_key == request.run_key


def test_drift_sensor_reports_malformed_metadata_without_raising() -> None:
    with dg.instance_for_test() as instance:
        report(instance, DRIFT, rollback=True, level="severe")  # no model / evaluated_at
        data = tick(drift_rollback_sensor, instance)
        assert not data.run_requests and (data.skip_message or "").startswith("error:")


def fake_bundle(home: Path, name: str = "lstm_v1") -> ModelRef:
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.tflite").write_bytes(b"not a model")
    return ModelRef.for_bundle(home, folder)


def test_reload_sensor_without_a_champion_skips_with_the_reason(home: Path) -> None:
    with dg.instance_for_test() as instance:
        report(instance, CHAMPION, champion="lstm_v1")
        data = tick(champion_reload_sensor, instance)
    assert not data.run_requests and data.skip_message == NO_CHAMPION


@pytest.mark.parametrize("case", ["bad_bundle", "missing_bundle", "corrupt_config"])
def test_reload_sensor_reports_a_bad_champion_as_an_error(home: Path, case: str) -> None:
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    ref = fake_bundle(home)
    registry.promote(ref, reason="test")
    if case == "missing_bundle":
        (home / ref.path).unlink()
    if case == "corrupt_config":
        registry.path.write_text("{ truncated")
    with dg.instance_for_test() as instance:
        report(instance, CHAMPION, champion="lstm_v1")
        data = tick(champion_reload_sensor, instance)  # must not raise
    assert not data.run_requests
    assert (data.skip_message or "").startswith("error: the champion bundle cannot be loaded")
    assert data.cursor is not None  # the event is consumed: no retry storm on every tick


def test_rollback_job_without_previous_champion_keeps_it(home: Path) -> None:
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    registry.promote(fake_bundle(home), reason="test")
    config = {"ops": {"rollback_champion": {"config": {
        "reason": "drift", "expected_champion": "lstm_v1"}}}}  # fmt: skip
    with dg.instance_for_test() as instance:
        result = rollback_job.execute_in_process(run_config=config, instance=instance)
        assert result.success
        assert not result.asset_materializations_for_node(rollback_champion.name)
    assert registry.champion().model.name == "lstm_v1"
