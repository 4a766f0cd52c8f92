"""Scoring bundles on one validation set, the whole gate, and the champion_model asset.

The TFLite side is replaced by a fake predictor (the label is planted in the windows and each
fake bundle reads it with a given skill), so these tests need no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from quant_assets.deployment.decision import DecisionRule
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.deployment.scoring import (
    IncompatibleBundleError,
    ValidationSet,
    reorder_classes,
    score_bundles,
    unseen_part,
    windows_for_bundle,
)
from quant_assets.deployment.validate_model import validate_and_deploy
from quant_assets.labels import CLASS_ORDER
from quant_assets.models import parity
from quant_assets.models.bundle import latest_bundles
from quant_assets.models.inference import Predictor
from quant_assets.models.parity import check_bundle
from quant_assets.settings import Settings
from quant_assets_tests.deployment.helpers import labels, probs_from_classes

COLUMNS = ("label_hint", "noise_a", "noise_b")
WINDOW = 8
RULE = DecisionRule(n_boot=400, block_length=10)
FIRST_TS = pd.Timestamp("2026-10-05 13:30", tz="UTC")  # 09:30 New York


def validation_set(
    n_minutes: int = 800, tickers: int = 2, seed: int = 0, step_min: int = 1
) -> ValidationSet:
    """Two tickers per minute; the true label sits in the last bar of feature 0."""
    y = labels(n_minutes * tickers, seed=seed, run=10 * tickers)
    rng = np.random.default_rng(seed)
    windows = rng.normal(size=(len(y), WINDOW, len(COLUMNS))).astype(np.float32)
    windows[:, -1, 0] = y
    steps = np.repeat(np.arange(n_minutes) * step_min, tickers)
    minutes = FIRST_TS + pd.to_timedelta(steps, unit="min")
    keys = minutes.as_unit("ns").asi8
    return ValidationSet.from_arrays(
        windows, y, keys, COLUMNS, feature_version="1", description="constructed"
    )


class FakePredictor:
    """Reads the planted label with probability ``skill`` (errors in runs of 20 rows)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.skill = float(meta["fake_skill"])
        self.seed = int(meta["version"]) * 7 + len(meta["arch"])
        self.order = tuple(meta.get("class_order", CLASS_ORDER))
        self.columns = tuple(meta["feature_spec"]["columns"])

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        y = np.clip(windows[:, -1, self.columns.index("label_hint")].round(), -1, 1).astype(int)
        rng = np.random.default_rng(self.seed)
        n = len(y)
        right = (rng.random(n // 20 + 1) < self.skill).repeat(20)[:n]
        idx = np.searchsorted(CLASS_ORDER, y)
        pred = np.where(right, idx, (idx + rng.integers(1, 3, size=n)) % 3)
        p = probs_from_classes(pred, confidence=0.7)
        return p[:, [CLASS_ORDER.index(c) for c in self.order]]


def fake_loader(bundle_dir: Path) -> FakePredictor:
    return FakePredictor(json.loads((Path(bundle_dir) / "bundle.json").read_text()))


def fake_reference(bundle_dir: Path, meta: Any, windows: np.ndarray) -> np.ndarray:
    """The "Keras" side: the same probabilities, with ``fake_drift`` moved from UP to DOWN."""
    p = fake_loader(bundle_dir).predict_windows(windows)
    drift = float(meta.get("fake_drift", 0))
    p[:, 0] += drift
    p[:, 2] -= drift
    return p


def make_bundle(home: Path, arch: str, version: int, skill: float, **meta: Any) -> Path:
    d = home / "models" / f"{arch}_v{version}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{arch}_v{version}.tflite").write_bytes(f"tflite {arch} {version}".encode())
    body = {
        "arch": arch,
        "version": version,
        "fake_skill": skill,
        "window": WINDOW,
        "feature_spec": {"version": "1", "columns": list(COLUMNS), "warmup_bars": 0},
        "class_order": list(CLASS_ORDER),
        "mlflow_run_id": f"run-{arch}-{version}",
        "scaler": {"center": [0.0] * len(COLUMNS), "scale": [1.0] * len(COLUMNS)},
        "training_window": {"first_session": "2026-08-01", "last_session": "2026-10-02"},
    }
    body.update(meta)
    (d / "bundle.json").write_text(json.dumps(body))
    return d


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> ModelRegistry:
    return ModelRegistry.from_settings(Settings(home=home, _env_file=None))


# --- scoring pieces --------------------------------------------------------------------------
def test_windows_are_cut_to_each_bundles_columns_and_window() -> None:
    vs = validation_set(50)
    same = windows_for_bundle(
        vs, {"feature_spec": {"version": "1", "columns": list(COLUMNS)}, "window": WINDOW}
    )
    assert same is vs.windows
    cut = windows_for_bundle(
        vs, {"feature_spec": {"version": "1", "columns": ["noise_b", "label_hint"]}, "window": 3}
    )
    np.testing.assert_array_equal(cut.materialize(), vs.windows.materialize()[:, -3:, [2, 0]])
    with pytest.raises(IncompatibleBundleError, match="version"):
        windows_for_bundle(vs, {"feature_spec": {"version": "2", "columns": list(COLUMNS)}})
    with pytest.raises(IncompatibleBundleError, match="not in the validation set"):
        windows_for_bundle(vs, {"feature_spec": {"version": "1", "columns": ["rsi_99"]}})
    with pytest.raises(IncompatibleBundleError, match="window"):
        windows_for_bundle(vs, {"window": WINDOW + 1})


def test_class_order_is_normalised() -> None:
    p = probs_from_classes(np.array([0, 1, 2]))
    np.testing.assert_array_equal(reorder_classes(p[:, ::-1], [1, 0, -1]), p)
    with pytest.raises(IncompatibleBundleError):
        reorder_classes(p, [0, 1, 2])


def test_latest_bundles_takes_the_newest_complete_one(home: Path) -> None:
    make_bundle(home, "lstm", 1, 0.5)
    make_bundle(home, "lstm", 3, 0.5)
    make_bundle(home, "transformer", 2, 0.5)
    incomplete = home / "models" / "lstm_v4"
    incomplete.mkdir()
    (incomplete / "bundle.json").write_text("{}")  # still being written: no .tflite yet
    (home / "models" / "notes").mkdir()
    found = latest_bundles(home / "models", ("lstm", "transformer"))
    assert {k: v.name for k, v in found.items()} == {
        "lstm_v3": "lstm_v3",
        "transformer_v2": "transformer_v2",
    }
    assert latest_bundles(home / "nothing", ("lstm",)) == {}


def test_samples_a_model_trained_on_are_dropped() -> None:
    vs = validation_set(800, step_min=3)  # 2026-10-05 09:30 New York onwards, 40 hours
    assert len(unseen_part(vs, {"a": {"training_window": {"last_session": "2026-10-02"}}})) == (
        len(vs)
    )
    cut = unseen_part(vs, {"a": {"training_window": {"last_session": "2026-10-05"}}, "b": {}})
    first = pd.Timestamp(cut.time_keys[0], tz="UTC").tz_convert("America/New_York")
    assert first >= pd.Timestamp("2026-10-06", tz="America/New_York")
    assert 0 < len(cut) < len(vs)


def test_a_broken_bundle_is_reported_not_raised(home: Path) -> None:
    vs = validation_set(300)
    good = make_bundle(home, "lstm", 1, 0.6)
    bad = make_bundle(home, "transformer", 1, 0.6)
    (bad / "bundle.json").write_text("{not json")
    scored = score_bundles({"lstm_v1": good, "transformer_v1": bad}, vs, loader=fake_loader)
    assert scored["lstm_v1"].ok and scored["lstm_v1"].probs.shape == (len(vs), 3)
    assert not scored["transformer_v1"].ok and "not valid JSON" in scored["transformer_v1"].error


def test_check_bundle(home: Path) -> None:
    d = make_bundle(home, "lstm", 1, 0.6)
    ok = check_bundle(d, loader=fake_loader, reference=fake_reference)
    assert ok.passed and ok.parity_max_abs_diff == 0.0
    drift = make_bundle(home, "lstm", 2, 0.6, fake_drift=1e-3)
    bad = check_bundle(drift, loader=fake_loader, reference=fake_reference)
    assert not bad.passed and bad.loads and bad.parity_max_abs_diff == pytest.approx(1e-3)
    (d / "lstm_v1.tflite").unlink()
    gone = check_bundle(d, loader=fake_loader, reference=fake_reference)
    assert not gone.passed and not gone.exists


# --- the whole gate --------------------------------------------------------------------------
def test_gate_first_run_then_better_then_worse(home: Path, registry: ModelRegistry) -> None:
    vs = validation_set()
    lstm1 = make_bundle(home, "lstm", 1, 0.55)
    run = validate_and_deploy(registry, vs, {"lstm_v1": lstm1}, RULE, loader=fake_loader)
    assert run.action == "promoted" and run.champion_after == "lstm_v1"
    cfg = registry.load(check_files=True)
    assert cfg.champion.mlflow_run_id == "run-lstm-1"
    assert cfg.champion.metrics["macro_f1_updown"] > 0.4

    tr2 = make_bundle(home, "transformer", 2, 0.85)
    lstm2 = make_bundle(home, "lstm", 2, 0.30)
    run = validate_and_deploy(
        registry, vs, {"lstm_v2": lstm2, "transformer_v2": tr2}, RULE, loader=fake_loader
    )
    assert run.action == "promoted" and run.champion_after == "transformer_v2"
    assert "| transformer_v2 | challenger |" in run.decision.comparison_table()

    lstm3 = make_bundle(home, "lstm", 3, 0.5)
    run = validate_and_deploy(registry, vs, {"lstm_v3": lstm3}, RULE, loader=fake_loader)
    assert run.action == "kept" and run.champion_after == "transformer_v2"
    assert registry.load().revision == 2


def test_a_rolled_back_model_is_not_a_challenger_again(home: Path, registry: ModelRegistry) -> None:
    vs = validation_set()
    lstm1 = make_bundle(home, "lstm", 1, 0.55)
    tr1 = make_bundle(home, "transformer", 1, 0.85)
    validate_and_deploy(registry, vs, {"lstm_v1": lstm1}, RULE, loader=fake_loader)
    validate_and_deploy(registry, vs, {"transformer_v1": tr1}, RULE, loader=fake_loader)
    assert registry.rollback("drift").current == "lstm_v1"
    # No new transformer bundle tonight: the newest one is the rolled-back transformer_v1.
    run = validate_and_deploy(registry, vs, {"transformer_v1": tr1}, RULE, loader=fake_loader)
    assert run.action == "kept" and run.champion_after == "lstm_v1"
    assert any("rolled back before" in n for n in run.notes)


def test_gate_recovers_a_corrupt_registry_first(home: Path, registry: ModelRegistry) -> None:
    vs = validation_set()
    validate_and_deploy(
        registry, vs, {"lstm_v1": make_bundle(home, "lstm", 1, 0.6)}, RULE, loader=fake_loader
    )
    registry.path.write_text('{"schema_version": 1, "rev')
    run = validate_and_deploy(
        registry, vs, {"lstm_v2": make_bundle(home, "lstm", 2, 0.6)}, RULE, loader=fake_loader
    )
    assert run.recovery is not None and run.recovery.outcome == "restored"
    assert run.champion_before == "lstm_v1" and run.action == "kept"
    assert registry.status().ok


def test_gate_does_not_overwrite_a_concurrent_change(home: Path, registry: ModelRegistry) -> None:
    vs = validation_set()
    validate_and_deploy(
        registry, vs, {"lstm_v1": make_bundle(home, "lstm", 1, 0.55)}, RULE, loader=fake_loader
    )
    other = make_bundle(home, "lstm", 5, 0.5)

    def racing_loader(bundle_dir: Path) -> FakePredictor:
        if registry.champion().model.name == "lstm_v1":  # someone else promotes meanwhile
            from quant_assets.deployment.model_config import ModelRef

            registry.promote(ModelRef.for_bundle(home, other), reason="operator")
        return fake_loader(bundle_dir)

    run = validate_and_deploy(
        registry,
        vs,
        {"transformer_v1": make_bundle(home, "transformer", 1, 0.9)},
        RULE,
        loader=racing_loader,
    )
    assert run.decision.outcome == "promote" and run.action == "champion_changed"
    assert registry.champion().model.name == "lstm_v5"


def test_gate_with_an_unscorable_champion_uses_the_baseline(
    home: Path, registry: ModelRegistry
) -> None:
    vs = validation_set()
    validate_and_deploy(
        registry, vs, {"lstm_v1": make_bundle(home, "lstm", 1, 0.55)}, RULE, loader=fake_loader
    )
    meta_path = home / "models" / "lstm_v1" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_spec"]["version"] = "0"  # trained on an older feature pipeline
    meta_path.write_text(json.dumps(meta))
    run = validate_and_deploy(
        registry,
        vs,
        {"transformer_v1": make_bundle(home, "transformer", 1, 0.7)},
        RULE,
        loader=fake_loader,
    )
    assert any("could not be scored" in n for n in run.notes)
    assert run.decision.comparisons[0].reference == "majority_baseline"
    assert run.action == "promoted" and run.champion_after == "transformer_v1"


# --- Dagster ---------------------------------------------------------------------------------
def test_champion_model_asset_and_check(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quant_assets.defs import deployment as champion_module

    monkeypatch.setenv("QUANT_HOME", str(home))
    vs = validation_set()
    monkeypatch.setattr(champion_module, "load_validation_set", lambda path, segment: vs)
    monkeypatch.setattr(Predictor, "load", staticmethod(fake_loader))
    monkeypatch.setattr(parity, "bundle_keras_probabilities", fake_reference)
    make_bundle(home, "lstm", 1, 0.6)
    make_bundle(home, "transformer", 1, 0.8)
    run_config = dg.RunConfig(
        ops={"champion_model": champion_module.ChampionConfig(sync_mlflow=False, n_boot=400)}
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [champion_module.champion_model, champion_module.champion_file_valid],
            instance=instance,
            run_config=run_config,
        )
        assert result.success
        mat = result.asset_materializations_for_node("champion_model")[0]
        md = mat.metadata
        assert md["decision"].value == "promoted"
        assert md["champion_after"].value == "transformer_v1"
        assert "| transformer_v1 | challenger |" in md["comparison"].value
        assert "transformer_v1 first champion" in md["reason"].value
        (check,) = result.get_asset_check_evaluations()
        assert check.passed and check.metadata["champion"].value == "transformer_v1"

        # Overwrite the champion's file: the check (run on its own) fails on the sha256.
        (home / "models" / "transformer_v1" / "transformer_v1.tflite").write_bytes(b"changed")
        result = dg.materialize(
            [champion_module.champion_model, champion_module.champion_file_valid],
            instance=instance,
            selection=dg.AssetSelection.checks_for_assets(champion_module.champion_model),
        )
        (check,) = result.get_asset_check_evaluations()
        assert not check.passed and check.metadata["sha256_matches"].value is False


def test_validation_set_from_a_real_training_dataset(tmp_path: Path) -> None:
    from quant_assets.deployment.scoring import load_validation_set
    from quant_assets.features.spec import FEATURE_SPEC
    from quant_assets.market import calendar
    from quant_assets.models.config import TrainingConfig
    from quant_assets.models.dataset import build_dataset

    minutes = calendar.trading_minutes("2026-09-01", "2026-09-18")
    rng = np.random.default_rng(0)
    frames = []
    for ticker in ("AAA", "BBB"):
        f = pd.DataFrame({"ticker": ticker, "ts": minutes})
        for c in FEATURE_SPEC.columns:
            f[c] = rng.normal(size=len(f))
        f["label"] = pd.array(rng.choice([-1, 0, 1], size=len(f)), dtype="Int64")
        f["t1"] = f["ts"] + pd.Timedelta(minutes=5)
        f["warm"] = True
        frames.append(f)
    ds = build_dataset(
        pd.concat(frames, ignore_index=True),
        TrainingConfig(window=10, sessions=14, holdout_sessions=2),
    )
    path = ds.save(tmp_path / "training_dataset.npz")
    vs = load_validation_set(path)
    frame = ds.sample_frame("holdout")
    assert len(vs) == len(frame) > 0 and vs.window == 10 and vs.columns == FEATURE_SPEC.columns
    assert (np.diff(vs.time_keys) >= 0).all()  # time order across tickers
    order = np.argsort(frame["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64), kind="stable")
    np.testing.assert_array_equal(vs.labels, frame["label"].to_numpy(dtype=np.int8)[order])
    np.testing.assert_array_equal(
        vs.windows.materialize(), ds.windows("holdout", scaled=False)[order]
    )
    # A model trained on this dataset learned nothing from its holdout: nothing is dropped.
    meta = {"training_window": ds.training_window()}
    assert len(unseen_part(vs, {"m": meta})) == len(vs)
