"""Shared builders for the deployment tests: constructed predictions and fake bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quant_assets.deployment.model_config import ModelRef
from quant_assets.labels import CLASS_ORDER


def probs_from_classes(pred_idx: np.ndarray, confidence: float = 0.6) -> np.ndarray:
    """Probabilities whose argmax is ``pred_idx`` (0 down, 1 neutral, 2 up)."""
    n = len(pred_idx)
    p = np.full((n, 3), (1.0 - confidence) / 2)
    p[np.arange(n), pred_idx] = confidence
    return p


def labels(n: int, seed: int = 0, run: int = 1, p=(0.3, 0.4, 0.3)) -> np.ndarray:
    """Labels in runs of ``run`` equal values (autocorrelated like overlapping horizons)."""
    rng = np.random.default_rng(seed)
    return rng.choice(CLASS_ORDER, size=n // run + 1, p=p).repeat(run)[:n].astype(np.int8)


def model_with_accuracy(y: np.ndarray, accuracy: float, seed: int, run: int = 1) -> np.ndarray:
    """A model right on a share ``accuracy`` of the rows (decided per run of rows)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    y_idx = np.searchsorted(CLASS_ORDER, y)
    correct = (rng.random(n // run + 1) < accuracy).repeat(run)[:n]
    wrong = (y_idx + rng.integers(1, 3, size=n)) % 3
    return probs_from_classes(np.where(correct, y_idx, wrong))


def make_model_file(home: Path, arch: str, version: int, payload: bytes | None = None) -> ModelRef:
    """A bundle folder with a (fake) TFLite file and a minimal bundle.json; its ModelRef."""
    d = home / "models" / f"{arch}_v{version}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{arch}_v{version}.tflite").write_bytes(payload or f"{arch}{version}".encode())
    (d / "bundle.json").write_text(json.dumps({"arch": arch, "version": version}))
    return ModelRef.for_bundle(home, d)
