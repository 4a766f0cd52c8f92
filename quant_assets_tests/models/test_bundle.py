"""Bundle layout, versions, atomic writes and clear errors (no TensorFlow needed)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from quant_assets.labels import LabelSpec
from quant_assets.models import bundle as bundle_mod
from quant_assets.models.bundle import (
    BundleError,
    list_bundles,
    load_bundle,
    next_version,
    write_bundle,
)
from quant_assets.models.dataset import TrainingDataset


def write(
    models: Path,
    ds: TrainingDataset,
    arch: str = "lstm",
    tmp: Path | None = None,
    calibration: dict | None = None,
):
    keras_file = (tmp or models.parent) / "model.keras"
    keras_file.write_bytes(b"not really a keras file")
    return write_bundle(
        models,
        arch,
        tflite=b"TFL3-fake",
        keras_model=keras_file,
        feature_spec=ds.feature_spec,
        window=ds.window,
        label_spec=LabelSpec(),
        scaler=ds.scaler,
        reference_stats=ds.reference_stats,
        validation_baseline={"mean_max_prob": 0.5, "mean_entropy": 1.0},
        metrics={"test": {"accuracy": 0.5, "macro_f1_updown": 0.4}},
        mlflow_run_id="abc",
        training_window=ds.training_window(),
        calibration=calibration,
        extra={"holdout_window": {"first_session": "2026-03-19", "last_session": "2026-03-20"}},
    )


def test_write_and_load_a_bundle(small_dataset: TrainingDataset, tmp_path: Path) -> None:
    models = tmp_path / "models"
    b = write(models, small_dataset)
    assert b.path == models / "lstm_v1" and b.name == "lstm_v1"
    assert sorted(p.name for p in b.path.iterdir()) == [
        "bundle.json",
        "lstm_v1.keras",
        "lstm_v1.tflite",
    ]
    manifest = json.loads((b.path / "bundle.json").read_text())
    for key in bundle_mod.REQUIRED_KEYS:
        assert key in manifest
    assert manifest["class_order"] == [-1, 0, 1]
    assert manifest["feature_spec"]["columns"] == list(small_dataset.columns)
    assert manifest["scaler"]["kind"] == "robust"
    stats = manifest["reference_stats"]["summary"]["rsi_14"]
    assert {"mean", "std", "bin_edges", "sample"} <= set(stats)
    assert len(stats["sample"]) <= 2000 and len(stats["bin_edges"]) == 11
    assert manifest["holdout_window"]["first_session"] == "2026-03-19"
    loaded = load_bundle(b.path)
    assert loaded.scaler.columns == small_dataset.columns
    assert loaded.label_spec == LabelSpec() and loaded.mlflow_run_id == "abc"
    assert loaded.tflite_path.read_bytes() == b"TFL3-fake"


def test_the_calibration_temperature_is_carried_and_old_bundles_have_none(
    small_dataset: TrainingDataset, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    old = write(models, small_dataset)  # written without calibration, as bundles used to be
    assert "calibration" not in json.loads((old.path / "bundle.json").read_text())
    assert load_bundle(old.path).temperature == 1.0
    calibrated = write(
        models, small_dataset, calibration={"method": "temperature", "temperature": 1.7}
    )
    assert load_bundle(calibrated.path).temperature == 1.7
    manifest = calibrated.path / "bundle.json"
    for bad in (0.0, -2.0, "warm"):
        data = json.loads(manifest.read_text())
        data["calibration"]["temperature"] = bad
        manifest.write_text(json.dumps(data))
        with pytest.raises(BundleError, match=r"temperature|invalid field"):
            load_bundle(calibrated.path)


def test_versions_increase_per_architecture(small_dataset: TrainingDataset, tmp_path) -> None:
    models = tmp_path / "models"
    assert next_version(models, "lstm") == 1
    write(models, small_dataset)
    write(models, small_dataset)
    write(models, small_dataset, "transformer")
    (models / "lstm_v7").mkdir()  # an unrelated or broken directory still reserves its number
    assert next_version(models, "lstm") == 8
    assert next_version(models, "transformer") == 2
    assert [p.name for p in list_bundles(models)] == ["lstm_v1", "lstm_v2", "transformer_v1"]
    assert write(models, small_dataset).version == 8


def test_concurrent_writers_get_distinct_versions(small_dataset, tmp_path: Path) -> None:
    models = tmp_path / "models"
    versions: list[int] = []

    def one(k: int) -> None:
        scratch = tmp_path / f"w{k}"
        scratch.mkdir()
        versions.append(write(models, small_dataset, tmp=scratch).version)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4]
    assert not [p for p in models.iterdir() if p.name.startswith(".tmp")]


def test_a_failed_write_leaves_nothing(small_dataset, tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_mod, "_write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        write(models, small_dataset)
    assert [p.name for p in models.iterdir()] == []
    with pytest.raises(BundleError, match="unknown architecture"):
        next_version(models, "gru")


def test_load_errors_are_clear(small_dataset: TrainingDataset, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundle directory"):
        load_bundle(tmp_path / "nope")
    b = write(tmp_path / "models", small_dataset)
    manifest = b.path / "bundle.json"
    text = manifest.read_text()
    manifest.write_text(text[:100])
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(b.path)
    data = json.loads(text)
    del data["scaler"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="lacks"):
        load_bundle(b.path)
    data = json.loads(text)
    data["class_order"] = [1, 0, -1]
    manifest.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="class_order"):
        load_bundle(b.path)
    manifest.write_text(text)
    b.tflite_path.unlink()
    with pytest.raises(BundleError, match="tflite"):
        load_bundle(b.path)
    manifest.unlink()
    with pytest.raises(BundleError, match=r"no bundle\.json"):
        load_bundle(b.path)
