"""TFLite ≈ Keras: the one parity measurement, on exported bytes or on a bundle's files.

``compare_probabilities`` is the comparison everyone uses: the export during training (the
Keras model in memory against the TFLite bytes, on scaled windows), the model assets'
``tflite_parity`` check and the champion's ``champion_file_valid`` check (``check_bundle``: a
bundle's files on disk, unscaled windows through ``Predictor`` against its ``.keras`` on the
same windows scaled by the bundle's scaler). Both files hold the calibrated model (the
temperature is in the output layer's weights), so parity compares calibrated probabilities
with calibrated probabilities. Keras' own export tests use atol = 1e-4 for float
models, hence ``DEFAULT_TOLERANCE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quant_assets.models.bundle import read_manifest, tflite_path
from quant_assets.models.dataset import FeatureScaler
from quant_assets.models.inference import Predictor

DEFAULT_TOLERANCE = 1e-4
KERAS_BATCH = 1024


class WindowPredictor(Protocol):
    """What parity and scoring need from ``Predictor``: probabilities of unscaled windows."""

    def predict_windows(self, windows: np.ndarray) -> np.ndarray: ...  # pragma: no cover


PredictorLoader = Callable[[Path], WindowPredictor]
ReferenceProbs = Callable[[Path, Mapping[str, Any], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Parity:
    """How far the TFLite probabilities are from the Keras ones on the same windows."""

    windows: int
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when no probability differs by more than the tolerance."""
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (bundle metrics, asset check metadata)."""
        return {
            "windows": self.windows,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def compare_probabilities(
    reference: np.ndarray, candidate: np.ndarray, tolerance: float = DEFAULT_TOLERANCE
) -> Parity:
    """Parity of two ``[n, 3]`` probability arrays of the same windows (n ≥ 1)."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if len(ref) == 0:
        raise ValueError("parity needs at least one window")
    if ref.shape != got.shape:
        raise ValueError(f"probability shapes differ: {ref.shape} vs {got.shape}")
    diff = np.abs(ref - got)
    return Parity(
        windows=len(ref),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        argmax_agreement=float(np.mean(ref.argmax(1) == got.argmax(1))),
        tolerance=float(tolerance),
    )


def keras_probabilities(model: Any, scaled_windows: np.ndarray) -> np.ndarray:
    """A Keras model's probabilities of already scaled windows."""
    return np.asarray(
        model.predict(scaled_windows, batch_size=KERAS_BATCH, verbose=0), dtype=np.float64
    )


def bundle_keras_probabilities(
    bundle_dir: Path, manifest: Mapping[str, Any], windows: np.ndarray
) -> np.ndarray:
    """The bundle's ``.keras`` model on unscaled windows (scaled with the bundle's scaler)."""
    import keras

    import quant_assets.models.architectures  # noqa: F401  (registers PositionalEncoding)

    bundle_dir = Path(bundle_dir)
    model = keras.saving.load_model(bundle_dir / f"{bundle_dir.name}.keras", compile=False)
    scaled = FeatureScaler.from_dict(manifest["scaler"]).transform(windows)
    return keras_probabilities(model, scaled)


def synthetic_windows(manifest: Mapping[str, Any], n: int = 32, seed: int = 0) -> np.ndarray:
    """Plausible unscaled inputs: center + scale · N(0, 1) per feature (from the scaler)."""
    scaler = manifest["scaler"]
    center = np.asarray(scaler["center"], dtype=np.float64)
    scale = np.asarray(scaler["scale"], dtype=np.float64)
    window = int(manifest["window"])
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, window, len(center)))
    return (center + scale * z).astype(np.float32)


def check_probs(probs: np.ndarray, n: int) -> np.ndarray:
    """Validate a model's output: ``[n, 3]``, finite, non-negative rows summing to ~1."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (n, 3):
        raise ValueError(f"model returned shape {p.shape}, expected ({n}, 3)")
    if not np.isfinite(p).all() or (p < -1e-6).any():
        raise ValueError("model returned non-finite or negative probabilities")
    if n and not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("model's probabilities do not sum to 1")
    return p


@dataclass(frozen=True)
class BundleCheck:
    """Whether a bundle's TFLite file exists, loads and matches its Keras model."""

    exists: bool
    loads: bool
    parity: Parity | None
    tolerance: float
    message: str

    @property
    def passed(self) -> bool:
        """True when the file loads and parity holds."""
        return self.parity is not None and self.parity.passed

    @property
    def parity_max_abs_diff(self) -> float | None:
        """The largest probability difference, when it was measured."""
        return None if self.parity is None else self.parity.max_abs_diff


def check_bundle(
    bundle_dir: Path,
    *,
    windows: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    loader: PredictorLoader | None = None,
    reference: ReferenceProbs | None = None,
) -> BundleCheck:
    """The bundle's TFLite file exists, loads, returns probabilities, and matches Keras.

    ``windows``: unscaled inputs (default: ``synthetic_windows`` of the bundle's scaler).
    """
    bundle_dir = Path(bundle_dir)
    tflite = tflite_path(bundle_dir)
    if not tflite.is_file():
        return BundleCheck(False, False, None, tolerance, f"{tflite} does not exist")
    try:
        manifest = read_manifest(bundle_dir)
        x = windows if windows is not None else synthetic_windows(manifest)
        predictor = (loader or Predictor.load)(bundle_dir)
        lite = check_probs(predictor.predict_windows(x), len(x))
    except Exception as e:
        message = f"does not load or predict: {type(e).__name__}: {e}"
        return BundleCheck(True, False, None, tolerance, message)
    try:
        keras_p = (reference or bundle_keras_probabilities)(bundle_dir, manifest, x)
        parity = compare_probabilities(check_probs(keras_p, len(x)), lite, tolerance)
    except Exception as e:
        message = f"parity reference failed: {type(e).__name__}: {e}"
        return BundleCheck(True, True, None, tolerance, message)
    sign = "≤" if parity.passed else ">"
    return BundleCheck(
        True,
        True,
        parity,
        tolerance,
        f"TFLite vs Keras max |Δp| = {parity.max_abs_diff:.2e} ({sign} {tolerance:.0e}) "
        f"on {parity.windows} windows",
    )
