"""Model bundles: everything inference and monitoring need, in one versioned directory.

Layout: ``{models_dir}/{arch}_v{N}/`` with ``{arch}_v{N}.tflite``, ``{arch}_v{N}.keras`` and
``bundle.json``. ``bundle.json`` holds (``BUNDLE_SCHEMA`` = 1):

* ``arch`` ("lstm" | "transformer"), ``version`` N (int, increasing per arch), ``name``
  ("lstm_v3"), ``created_at`` (UTC ISO-8601), ``schema`` (1);
* ``files``: {"tflite": …, "keras": …} (names inside the directory);
* ``feature_spec`` {version, columns, warmup_bars}, ``window`` (bars), ``label_spec``
  (``LabelSpec`` fields), ``class_order`` [-1, 0, 1] (the softmax outputs' labels);
* ``scaler`` {kind, formula, clip, columns, center, scale}: model input =
  clip((x − center) / scale, −clip, clip) per feature, x = create_features values;
* ``reference_stats`` of the train segment's rows (``dataset.training_reference``):
  ``summary``: per feature (every input) {n, mean, std, min, max, quantiles (levels 0…1),
  bin_edges (the deciles at those levels, for PSI), sample (≤ 2000 sorted values, for KS)};
  plus the drift monitor's own format at the top level (``format``, ``bucket_edges``,
  ``cdf_levels``, ``n_rows``, ``n_tickers``, ``excluded``, ``features`` — per monitored
  feature and time-of-session bucket; ``drift.reference.ReferenceStats.from_dict``);
* ``validation_baseline`` of the model's predictions on the validation windows (concept
  drift): {n, mean_max_prob, mean_entropy, std_max_prob, std_entropy (per row), class_share}
  plus the monitor's ``ConceptBaseline`` fields (sd_max_prob, sd_entropy of 60-row window
  means, window, n_windows, bucket_edges, bucket_max_prob, bucket_entropy, cross_corr);
* ``metrics``: {"test": {accuracy, macro_f1_updown, precision_up, recall_up, precision_down,
  recall_down, confusion_matrix, kappa, direction_auc, …}, "validation": {…}, "parity": {…}};
* ``calibration`` (optional; a bundle without it is uncalibrated, temperature 1):
  {method, temperature T, log_prior_shift (ln of the class weights, per class), fitted_on
  "validation", ece_bins, and per segment ("validation", "test") {n, log_loss_before,
  log_loss_after, ece_before, ece_after}} (``models.calibration.calibration_report``). Both
  are already *in* the model files: the output layer computes (logits − shift) / T
  (``architectures.with_temperature``), so the .keras and the .tflite give calibrated
  probabilities and nobody applies them again. ``validation_baseline``
  and ``metrics`` describe those calibrated probabilities;
* ``mlflow_run_id`` (or null), ``training_window`` {first_session, last_session},
  ``holdout_window`` {first_session, last_session} (sessions kept back, never trained on),
  ``tflite`` {input_shape, fixed_batch}, ``training`` {config, epochs_run, …}.

Writes are atomic: files go into a temp directory in ``models_dir``, are fsynced, and the
directory is renamed into place under a lock (``.bundles.lock``), so a reader sees a whole
bundle or none, and two writers never get the same version.

This module owns the layout: the architectures (``ARCHS``), the folder name
(``bundle_name`` / ``parse_bundle_name``), the files inside it (``tflite_path``,
``BUNDLE_FILE``), and the scanners (``list_bundles``, ``latest_bundles``). Between the stages a
bundle travels as its folder (a ``Path``); ``load_bundle`` validates it into a ``Bundle``, and
``read_manifest`` reads ``bundle.json`` as it is (scoring tolerates older or partial manifests).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from quant_assets.features.spec import FeatureSpec
from quant_assets.labels import CLASS_ORDER, LabelSpec
from quant_assets.models.dataset import FeatureScaler

BUNDLE_FILE = "bundle.json"
BUNDLE_SCHEMA = 1
ARCHS: tuple[str, ...] = ("lstm", "transformer")
_NAME_RE = re.compile(r"^(?P<arch>[a-z][a-z0-9_]*)_v(?P<version>[0-9]+)$")
REQUIRED_KEYS: tuple[str, ...] = (
    "arch",
    "version",
    "created_at",
    "feature_spec",
    "window",
    "label_spec",
    "scaler",
    "class_order",
    "reference_stats",
    "validation_baseline",
    "metrics",
    "mlflow_run_id",
    "training_window",
)


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated bundle (``manifest`` is the whole bundle.json)."""

    path: Path
    arch: str
    version: int
    created_at: str
    feature_spec: FeatureSpec
    window: int
    label_spec: LabelSpec
    scaler: FeatureScaler
    class_order: tuple[int, ...]
    reference_stats: dict[str, Any]
    validation_baseline: dict[str, Any]
    metrics: dict[str, Any]
    mlflow_run_id: str | None
    training_window: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)
    temperature: float = 1.0  # the calibration built into the model files (1: none)

    @property
    def name(self) -> str:
        return f"{self.arch}_v{self.version}"

    @property
    def tflite_path(self) -> Path:
        return self.path / self.manifest.get("files", {}).get("tflite", f"{self.name}.tflite")

    @property
    def keras_path(self) -> Path:
        return self.path / self.manifest.get("files", {}).get("keras", f"{self.name}.keras")


def bundle_name(arch: str, version: int) -> str:
    """``{arch}_v{N}``: the name of a model, its bundle folder and its files."""
    return f"{arch}_v{int(version)}"


def parse_bundle_name(name: str) -> tuple[str, int] | None:
    """(arch, version) of a name ``{arch}_v{N}``; None for any other name."""
    m = _NAME_RE.match(name)
    return None if m is None else (m["arch"], int(m["version"]))


def tflite_path(bundle_dir: str | Path) -> Path:
    """``{bundle}/{bundle name}.tflite``: where the layout puts a bundle's TFLite file."""
    bundle_dir = Path(bundle_dir)
    return bundle_dir / f"{bundle_dir.name}.tflite"


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder, as written (no validation; see ``load_bundle``)."""
    path = Path(bundle_dir) / BUNDLE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _named_dirs(models_dir: str | Path) -> list[tuple[str, int, Path]]:
    root = Path(models_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        parsed = parse_bundle_name(child.name)
        if parsed is not None and child.is_dir():
            found.append((*parsed, child))
    return sorted(found)


def list_bundles(models_dir: str | Path, arch: str | None = None) -> list[Path]:
    """Bundle directories (``{arch}_v{N}`` with a bundle.json), oldest version first."""
    return [
        d
        for a, _, d in _named_dirs(models_dir)
        if (arch is None or a == arch) and (d / BUNDLE_FILE).is_file()
    ]


def latest_bundles(models_dir: str | Path, archs: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """The newest complete bundle (highest N with a .tflite and bundle.json) of each arch."""
    newest: dict[str, tuple[int, Path]] = {}
    for d in list_bundles(models_dir):
        arch, version = parse_bundle_name(d.name)  # type: ignore[misc]
        if arch in archs and tflite_path(d).is_file():
            newest[arch] = (version, d)
    return {bundle_name(arch, n): d for arch, (n, d) in sorted(newest.items())}


def next_version(models_dir: str | Path, arch: str) -> int:
    """1 + the highest N of any ``{arch}_v{N}`` directory (complete or not), or 1."""
    _check_arch(arch)
    versions = [v for a, v, _ in _named_dirs(models_dir) if a == arch]
    return max(versions, default=0) + 1


def write_bundle(
    models_dir: str | Path,
    arch: str,
    *,
    tflite: bytes,
    keras_model: Any,
    feature_spec: FeatureSpec,
    window: int,
    label_spec: LabelSpec,
    scaler: FeatureScaler,
    reference_stats: dict[str, Any],
    validation_baseline: dict[str, Any],
    metrics: dict[str, Any],
    mlflow_run_id: str | None,
    training_window: dict[str, Any],
    calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Bundle:
    """Write a new version of ``arch`` atomically and return it loaded.

    ``keras_model`` is a ``keras.Model`` (saved here) or the path of a saved ``.keras`` file;
    ``calibration`` says what temperature is built into it (None: none).
    ``extra`` entries are added to bundle.json (they may not replace the contract's keys).
    """
    _check_arch(arch)
    if tuple(scaler.columns) != tuple(feature_spec.columns):
        raise ValueError("scaler columns differ from the feature spec's columns")
    if not tflite:
        raise ValueError("empty TFLite model")
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{arch}-", dir=root))
    try:
        tflite_name, keras_name = f"{arch}.tflite", f"{arch}.keras"
        _write_bytes(tmp / tflite_name, tflite)
        if isinstance(keras_model, str | Path):
            shutil.copyfile(keras_model, tmp / keras_name)
        else:
            keras_model.save(tmp / keras_name)
        _fsync(tmp / keras_name)
        with FileLock(str(root / ".bundles.lock")):
            version = next_version(root, arch)
            name = bundle_name(arch, version)
            (tmp / tflite_name).rename(tmp / f"{name}.tflite")
            (tmp / keras_name).rename(tmp / f"{name}.keras")
            manifest = {
                **(extra or {}),
                "schema": BUNDLE_SCHEMA,
                "arch": arch,
                "version": version,
                "name": name,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": {"tflite": f"{name}.tflite", "keras": f"{name}.keras"},
                "feature_spec": feature_spec.to_dict(),
                "window": int(window),
                "label_spec": label_spec.to_dict(),
                "scaler": scaler.to_dict(),
                "class_order": list(CLASS_ORDER),
                "reference_stats": reference_stats,
                "validation_baseline": validation_baseline,
                "metrics": metrics,
                "mlflow_run_id": mlflow_run_id,
                "training_window": training_window,
            }
            if calibration is not None:
                manifest["calibration"] = calibration
            _write_bytes(
                tmp / BUNDLE_FILE, json.dumps(manifest, indent=1, allow_nan=False).encode()
            )
            os.chmod(tmp, 0o755)
            final = root / name
            os.rename(tmp, final)  # fails rather than merge if the name exists
            _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(final)


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle directory; ``BundleError`` says what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"no bundle directory at {path}")
    manifest_path = path / BUNDLE_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{path} has no {BUNDLE_FILE} (incomplete or not a bundle)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} does not hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{manifest_path} lacks {missing}")
    try:
        arch = str(manifest["arch"])
        _check_arch(arch)
        version = int(manifest["version"])
        feature_spec = FeatureSpec.from_dict(manifest["feature_spec"])
        label_spec = LabelSpec.from_dict(manifest["label_spec"])
        scaler = FeatureScaler.from_dict(manifest["scaler"])
        window = int(manifest["window"])
        class_order = tuple(int(c) for c in manifest["class_order"])
        temperature = float((manifest.get("calibration") or {}).get("temperature", 1.0))
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{manifest_path} has an invalid field: {err}") from None
    if scaler.columns != feature_spec.columns:
        raise BundleError(f"{manifest_path}: scaler columns differ from feature_spec columns")
    if class_order != CLASS_ORDER:
        raise BundleError(f"{manifest_path}: class_order {class_order} is not {CLASS_ORDER}")
    if window < 1:
        raise BundleError(f"{manifest_path}: window must be >= 1")
    if not math.isfinite(temperature) or temperature <= 0:
        raise BundleError(f"{manifest_path}: calibration temperature must be > 0")
    bundle = Bundle(
        path=path,
        arch=arch,
        version=version,
        created_at=str(manifest["created_at"]),
        feature_spec=feature_spec,
        window=window,
        label_spec=label_spec,
        scaler=scaler,
        class_order=class_order,
        reference_stats=dict(manifest["reference_stats"]),
        validation_baseline=dict(manifest["validation_baseline"]),
        metrics=dict(manifest["metrics"]),
        mlflow_run_id=manifest["mlflow_run_id"],
        training_window=dict(manifest["training_window"]),
        manifest=manifest,
        temperature=temperature,
    )
    for label, file in (("tflite", bundle.tflite_path), ("keras", bundle.keras_path)):
        if not file.is_file() or file.stat().st_size == 0:
            raise BundleError(f"bundle {path} lacks its {label} file {file.name}")
    return bundle


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise BundleError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
        _fsync(path)
