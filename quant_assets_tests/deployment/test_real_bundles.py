"""End to end with real bundles: models.training writes them, the gate scores their TFLite files
through models.inference.Predictor, and the champion check compares TFLite with Keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_assets.deployment.champion import promote_manually
from quant_assets.deployment.decision import DecisionRule
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.deployment.scoring import ValidationSet
from quant_assets.deployment.validate_model import validate_and_deploy
from quant_assets.models.bundle import latest_bundles
from quant_assets.models.parity import check_bundle
from quant_assets.settings import Settings


@pytest.mark.slow
def test_gate_on_real_tflite_bundles(tmp_path: Path) -> None:
    from quant_assets.features.spec import FEATURE_SPEC
    from quant_assets.labels import LabelSpec
    from quant_assets.market import calendar
    from quant_assets.models.config import TrainingConfig
    from quant_assets.models.dataset import build_dataset
    from quant_assets.models.training import train_and_bundle

    minutes = calendar.trading_minutes("2026-09-01", "2026-09-18")
    rng = np.random.default_rng(0)
    frames = []
    for ticker in ("AAA", "BBB"):
        f = pd.DataFrame({"ticker": ticker, "ts": minutes})
        for c in FEATURE_SPEC.columns:
            f[c] = rng.normal(size=len(f))
        label = rng.choice([-1, 0, 1], size=len(f))
        f["label"] = pd.array(label, dtype="Int64")
        f[FEATURE_SPEC.columns[0]] = label + 0.5 * rng.normal(size=len(f))  # a planted signal
        f["t1"] = f["ts"] + pd.Timedelta(minutes=5)
        f["warm"] = True
        frames.append(f)
    config = TrainingConfig(
        window=12,
        sessions=14,
        holdout_sessions=2,
        epochs=2,
        lstm_units=8,
        lstm_dense=8,
        transformer_d_model=8,
        transformer_heads=2,
        transformer_ff=16,
        transformer_blocks=1,
        parity_windows=32,
    )
    ds = build_dataset(pd.concat(frames, ignore_index=True), config, label_spec=LabelSpec())
    home = tmp_path / "home"
    for arch in ("lstm", "transformer"):
        train_and_bundle(arch, ds, config, home / "models")

    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    challengers = latest_bundles(home / "models", ("lstm", "transformer"))
    assert sorted(challengers) == ["lstm_v1", "transformer_v1"]
    run = validate_and_deploy(
        registry, ValidationSet.from_dataset(ds), challengers, DecisionRule(n_boot=500)
    )
    assert run.notes == []  # both bundles scored on every holdout sample
    assert all(s.ok for s in run.scored.values())
    assert run.n_samples == len(ds.samples["holdout"])
    assert run.action == "promoted"  # the planted signal beats the majority baseline
    champion = registry.load(check_files=True).champion
    assert champion is not None and champion.model.name == run.decision.winner
    check = check_bundle(registry.bundle_path(champion.model))
    assert check.passed and check.parity_max_abs_diff < 1e-4

    # A person promotes the other bundle by hand: recorded as manual, metrics from its bundle.
    other = ({"lstm_v1", "transformer_v1"} - {champion.model.name}).pop()
    manual = promote_manually(registry, home / "models" / other, reason="desk review")
    assert manual.outcome == "promoted"
    cfg = registry.load()
    assert cfg.champion.model.name == other and cfg.changes[-1].action == "manual_promote"
    assert cfg.changes[-1].reason == "desk review"
    assert cfg.champion.metrics["macro_f1_updown"] > 0
