"""Score model bundles with their TFLite files on one unseen validation set.

The validation set is the ``holdout`` segment of the training dataset (``models.dataset``):
the newest sessions, never used for fitting, early stopping or model selection inside
training. Every model — the challengers just trained and the champion — is scored on exactly
the same samples, in time order, with its own TFLite file through
``models.inference.Predictor`` (unscaled windows in, the bundle's scaler applied inside).

Bundles are folders in the layout of ``models.bundle`` (``bundle.json``: feature_spec, window,
scaler, class_order, training_window, mlflow_run_id, …), read as written (``read_manifest``).

Compatibility: a bundle whose feature columns are a subset of the set's (any order) and whose
window is not longer gets the matching slice of the same windows (same samples, same end
bar); a different ``feature_spec.version`` or a missing column makes it *incompatible*
(reported, not scored). Leakage guard: samples on or before the newest ``last_session`` of
any scored bundle's training window are dropped, so no model is scored on data it learned from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.labels import CLASS_ORDER, LabelSpec
from quant_assets.market.calendar import MARKET_TZ
from quant_assets.models.bundle import read_manifest
from quant_assets.models.dataset import TrainingDataset
from quant_assets.models.inference import Predictor
from quant_assets.models.parity import PredictorLoader, check_probs
from quant_assets.models.windows import WindowIndex, predict_chunked


class IncompatibleBundleError(ValueError):
    """The bundle cannot be scored on this validation set."""


@dataclass(frozen=True)
class ValidationSet:
    """Unscaled windows ``[n, T, F]``, labels (−1/0/+1) and the time of each window's last bar.

    ``windows`` is a ``models.windows.WindowIndex``: gathered from the dataset's rows a chunk at
    a time when a bundle is scored, never held whole. Rows are in time order; ``time_keys``
    (int64 ns UTC) make the bootstrap resample whole minutes across tickers. ``tickers``
    (each sample's) and ``market`` (the segment's bars with prices and σ,
    ``TrainingDataset.holdout_bars``) let the holdout be backtested; None when the dataset did
    not keep them.
    """

    windows: WindowIndex
    labels: np.ndarray
    time_keys: np.ndarray
    columns: tuple[str, ...]
    feature_version: str | None
    description: str
    tickers: np.ndarray | None = None
    market: pd.DataFrame | None = None
    label_spec: LabelSpec | None = None  # what made the labels (the backtest's barriers)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.windows) != n or len(self.time_keys) != n:
            raise ValueError("windows [n, T, F], labels [n] and time_keys [n] must agree")
        if self.windows.n_features != len(self.columns):
            raise ValueError("windows' last axis must match columns")
        if self.tickers is not None and len(self.tickers) != n:
            raise ValueError("tickers [n] must agree with labels [n]")

    @property
    def window(self) -> int:
        """Bars per window."""
        return self.windows.window

    def __len__(self) -> int:
        return len(self.labels)

    def span(self) -> tuple[str, str] | None:
        """First and last sample time (ISO), None when empty."""
        if not len(self):
            return None
        ts = pd.to_datetime(self.time_keys[[0, -1]], utc=True)
        return ts[0].isoformat(), ts[1].isoformat()

    def after(self, ts: pd.Timestamp) -> ValidationSet:
        """Only the samples strictly after ``ts``."""
        keep = self.time_keys > pd.Timestamp(ts).value
        return replace(
            self,
            windows=self.windows.subset(keep),
            labels=self.labels[keep],
            time_keys=self.time_keys[keep],
            tickers=None if self.tickers is None else self.tickers[keep],
            description=f"{self.description}, after {pd.Timestamp(ts).isoformat()}",
        )

    @classmethod
    def from_arrays(
        cls,
        windows: np.ndarray | WindowIndex,
        labels: np.ndarray,
        time_keys: np.ndarray,
        columns: tuple[str, ...],
        *,
        feature_version: str | None = None,
        description: str = "validation set",
        tickers: np.ndarray | None = None,
        market: pd.DataFrame | None = None,
        label_spec: LabelSpec | None = None,
    ) -> ValidationSet:
        """Build from arrays (``windows``: materialized or a ``WindowIndex``), stably sorted by
        time."""
        keys = np.asarray(time_keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        if not isinstance(windows, WindowIndex):
            windows = WindowIndex.of_array(np.asarray(windows, dtype=np.float32))
        return cls(
            windows.subset(order),
            np.asarray(labels, dtype=np.int8)[order],
            keys[order],
            tuple(columns),
            feature_version,
            description,
            None if tickers is None else np.asarray(tickers, dtype=object)[order],
            market,
            label_spec,
        )

    @classmethod
    def from_dataset(cls, dataset: TrainingDataset, segment: str = "holdout") -> ValidationSet:
        """The ``holdout`` segment of a ``models.dataset.TrainingDataset`` (unscaled)."""
        frame = dataset.sample_frame(segment)
        ts = frame["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return cls.from_arrays(
            dataset.window_index(segment, scaled=False),
            frame["label"].to_numpy(dtype=np.int8),
            ts,
            tuple(dataset.columns),
            feature_version=str(dataset.feature_spec.version),
            description=f"training dataset '{segment}' segment ({len(frame)} samples, "
            f"{frame['ticker'].nunique()} tickers)",
            tickers=frame["ticker"].to_numpy(dtype=object),
            market=dataset.holdout_bars() if segment == "holdout" else None,
            label_spec=dataset.label_spec,
        )


def load_validation_set(dataset_path: Path, segment: str = "holdout") -> ValidationSet:
    """The unseen validation set from a saved training dataset (.npz)."""
    return ValidationSet.from_dataset(TrainingDataset.load(dataset_path), segment)


def windows_for_bundle(vs: ValidationSet, meta: Mapping[str, Any]) -> WindowIndex:
    """The set's windows cut to the bundle's feature columns and window length (unmaterialized)."""
    spec = meta.get("feature_spec") or {}
    columns = tuple(spec.get("columns") or vs.columns)
    version = spec.get("version")
    window = int(meta.get("window") or vs.window)
    if (
        version is not None
        and vs.feature_version is not None
        and str(version) != str(vs.feature_version)
    ):
        raise IncompatibleBundleError(
            f"feature_spec version {version} != validation set's {vs.feature_version}"
        )
    missing = [c for c in columns if c not in vs.columns]
    if missing:
        raise IncompatibleBundleError(f"features {missing} are not in the validation set")
    if window > vs.window:
        raise IncompatibleBundleError(f"window {window} > validation windows {vs.window}")
    if columns == vs.columns and window == vs.window:
        return vs.windows
    return vs.windows.cut(window, tuple(vs.columns.index(c) for c in columns))


def reorder_classes(probs: np.ndarray, class_order: Any) -> np.ndarray:
    """Columns of ``probs`` put in ``CLASS_ORDER`` (−1, 0, +1) from the bundle's order."""
    order = tuple(int(c) for c in (class_order or CLASS_ORDER))
    if sorted(order) != sorted(CLASS_ORDER):
        raise IncompatibleBundleError(f"class_order {order} is not a permutation of {CLASS_ORDER}")
    if order == CLASS_ORDER:
        return probs
    return probs[:, [order.index(c) for c in CLASS_ORDER]]


def last_training_session(meta: Mapping[str, Any]) -> pd.Timestamp | None:
    """The last session a bundle learned from (``training_window.last_session``), if known."""
    tw = meta.get("training_window") or {}
    last = tw.get("last_session") if isinstance(tw, Mapping) else None
    return None if last is None else pd.Timestamp(last)


@dataclass(frozen=True)
class ScoredBundle:
    """One bundle's probabilities on the validation set, or why it could not be scored."""

    name: str
    bundle_dir: Path
    meta: dict[str, Any]
    probs: np.ndarray | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when scored."""
        return self.probs is not None


def unseen_part(vs: ValidationSet, metas: Mapping[str, Mapping[str, Any]]) -> ValidationSet:
    """Drop samples up to the end of the last session any of the bundles trained on."""
    lasts = [t for t in (last_training_session(m) for m in metas.values()) if t is not None]
    if not lasts:
        return vs
    # Sessions are named by their date; everything before the next calendar day is "seen".
    last = max(lasts)
    if last.tzinfo is not None:
        last = last.tz_convert(MARKET_TZ).tz_localize(None)
    cutoff = (last.normalize() + pd.Timedelta(days=1)).tz_localize(MARKET_TZ)
    if not len(vs) or vs.time_keys[0] >= cutoff.value:
        return vs
    return vs.after(cutoff - pd.Timedelta(1, "ns"))


def score_bundles(
    bundles: Mapping[str, Path],
    vs: ValidationSet,
    *,
    loader: PredictorLoader | None = None,
) -> dict[str, ScoredBundle]:
    """Score each bundle's TFLite file on ``vs``; a failing bundle is reported, not raised."""
    loader = loader or Predictor.load
    out: dict[str, ScoredBundle] = {}
    for name, bundle_dir in bundles.items():
        meta: dict[str, Any] = {}
        try:
            meta = read_manifest(bundle_dir)
            windows = windows_for_bundle(vs, meta)
            # Chunks of PREDICT_BATCH, a multiple of the TFLite runner's batch: the same
            # interpreter calls as one call on all windows would make.
            raw = predict_chunked(loader(Path(bundle_dir)).predict_windows, windows)
            probs = reorder_classes(check_probs(raw, len(vs)), meta.get("class_order"))
            out[name] = ScoredBundle(name, Path(bundle_dir), meta, probs)
        except Exception as e:  # one broken bundle must not stop the decision
            out[name] = ScoredBundle(name, Path(bundle_dir), meta, None, f"{type(e).__name__}: {e}")
    return out
