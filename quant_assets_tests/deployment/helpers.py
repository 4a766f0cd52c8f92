"""Shared builders for the deployment tests: constructed predictions, fake bundles and
walk-forward results with given figures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.walk_forward import FoldOutcome, FoldScore, WalkForward
from quant_assets.evaluation.backtest import BacktestSpec
from quant_assets.labels import CLASS_ORDER
from quant_assets.market import calendar
from quant_assets.models.folds import expanding_folds


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


def walk_forward_of(
    figures: Mapping[str, Sequence[tuple[float, float, float]]], seed: int = 0
) -> WalkForward:
    """A walk-forward result with the given (macro-F1, net Sharpe, PSR) per model and fold, over
    folds of 4 sessions after 4 (the daily P&L is seeded noise: only the plot draws it)."""
    n_folds = len(next(iter(figures.values())))
    days = calendar.sessions("2026-03-02", "2026-12-31")[: 4 * (n_folds + 1)]
    rng = np.random.default_rng(seed)
    outcomes = []
    for k, fold in enumerate(expanding_folds(days, n_folds)):
        scored = days[(days >= fold.scored[0]) & (days <= fold.scored[1])]
        scores = {
            model: FoldScore(
                fold=fold.number,
                model=model,
                macro_f1=values[k][0],
                net_sharpe=values[k][1],
                psr=values[k][2],
                trades=10 * (k + 1),
                net_return=0.001 * (k + 1),
                daily_net=pd.Series(rng.normal(0, 1e-3, len(scored)), index=scored),
            )
            for model, values in figures.items()
        }
        outcomes.append(FoldOutcome(fold, samples=100, scores=scores, seconds=1.0))
    return WalkForward(tuple(outcomes), BacktestSpec(threshold=0.1))
