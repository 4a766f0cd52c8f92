"""Scoring with a model bundle: LiteRT (``ai_edge_litert``) only, no TensorFlow import.

``Predictor.load(bundle_dir)`` reads and validates the bundle and opens its .tflite with
``ai_edge_litert.interpreter.Interpreter``. ``predict_windows`` takes *unscaled*
``create_features`` windows and applies the bundle's scaler, so callers never scale by hand;
``predict_latest`` goes from raw bars to one prediction per ticker with the same
``create_features`` that built the training data (train/serve parity), with its numba
indicators (``LIVE_INDICATORS``: pandas-ta's numbers, all tickers in one compiled pass instead
of ~4 ms of pandas-ta calls per ticker). The probabilities are
the calibrated ones: a bundle's temperature is built into its TFLite file
(``Bundle.temperature``; ``models.calibration``), so live scoring, concept drift and holdout
scoring, which all get their probabilities here, never apply it themselves.

An interpreter is not thread-safe: use one ``Predictor`` per thread (an API server can keep a
small pool).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from quant_assets.features.indicators import feature_arrays
from quant_assets.labels import CLASS_ORDER
from quant_assets.market.frames import newest_positions
from quant_assets.models.bundle import Bundle, load_bundle
from quant_assets.models.dataset import latest_windows

PREDICTION_COLUMNS: tuple[str, ...] = ("ticker", "ts", "p_down", "p_flat", "p_up", "label")
MAX_DYNAMIC_BATCH = 1024
LIVE_INDICATORS = "numba"  # create_features' indicator engine on the live path


class TFLiteRunner:
    """A LiteRT interpreter over (n, T, F) float32 windows, whatever its batch dimension.

    A model exported with a fixed batch b (the LSTM's default route, b = 1) is invoked once per
    chunk of b windows (the last chunk zero-padded); a dynamic-batch model is resized to the
    chunk size (at most ``MAX_DYNAMIC_BATCH``) when that changes.
    """

    def __init__(self, model: bytes | str | Path, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, bytes | bytearray):
            self._interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
        else:
            self._interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input = int(inp["index"])
        self._output = int(out["index"])
        signature = inp.get("shape_signature", inp["shape"])
        self.input_shape = tuple(int(v) for v in inp["shape"])
        self.fixed_batch: int | None = None if int(signature[0]) == -1 else int(signature[0])
        self._batch = self.input_shape[0]
        self._lock = threading.Lock()

    @property
    def window(self) -> int:
        return self.input_shape[1]

    @property
    def n_features(self) -> int:
        return self.input_shape[2]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n, 3) of scaled windows ``x`` (n, T, F)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self.input_shape[1:]:
            raise ValueError(
                f"windows must have shape (n, {self.window}, {self.n_features}), got {x.shape}"
            )
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, 3), np.float32)
        out = np.empty((n, 3), np.float32)
        it = self._interpreter
        with self._lock:
            if self.fixed_batch is not None:
                b = self.fixed_batch
                for lo in range(0, n, b):
                    chunk = x[lo : lo + b]
                    if len(chunk) < b:
                        chunk = np.concatenate(
                            [chunk, np.zeros((b - len(chunk), *x.shape[1:]), np.float32)]
                        )
                    it.set_tensor(self._input, chunk)
                    it.invoke()
                    out[lo : lo + b] = it.get_tensor(self._output)[: min(b, n - lo)]
                return out
            for lo in range(0, n, MAX_DYNAMIC_BATCH):
                chunk = x[lo : lo + MAX_DYNAMIC_BATCH]
                if len(chunk) != self._batch:
                    it.resize_tensor_input(self._input, [len(chunk), *x.shape[1:]])
                    it.allocate_tensors()
                    self._batch = len(chunk)
                it.set_tensor(self._input, chunk)
                it.invoke()
                out[lo : lo + len(chunk)] = it.get_tensor(self._output)
        return out


class Predictor:
    """Class probabilities from a bundle's TFLite model, for the live path and the API."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        self.bundle = bundle
        self.runner = TFLiteRunner(bundle.tflite_path, num_threads=num_threads)
        expected = (bundle.window, len(bundle.feature_spec.columns))
        if self.runner.input_shape[1:] != expected:
            raise ValueError(
                f"{bundle.tflite_path.name} takes windows {self.runner.input_shape[1:]}, "
                f"bundle.json says {expected}"
            )

    @classmethod
    def load(cls, bundle_dir: str | Path, num_threads: int = 1) -> Predictor:
        """Open the bundle in ``bundle_dir`` (validated; see ``bundle.load_bundle``)."""
        return cls(load_bundle(bundle_dir), num_threads=num_threads)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def window(self) -> int:
        return self.bundle.window

    @property
    def columns(self) -> tuple[str, ...]:
        return self.bundle.feature_spec.columns

    @property
    def min_bars(self) -> int:
        """Bars of history per ticker ``predict_latest`` needs (feature warm-up + window)."""
        return self.bundle.feature_spec.warmup_bars + self.window

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 3) probabilities [p_down, p_flat, p_up] of UNSCALED feature windows (n, T, F)."""
        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1:] != (self.window, len(self.columns)):
            raise ValueError(
                f"windows must have shape (n, {self.window}, {len(self.columns)}) "
                f"in the order of bundle feature_spec.columns, got {windows.shape}"
            )
        if not np.isfinite(windows).all():
            raise ValueError("windows hold NaN or infinite feature values")
        return self.runner.predict(self.bundle.scaler.transform(windows))

    def predict_latest(self, bars: pd.DataFrame) -> pd.DataFrame:
        """One prediction per ticker for its newest bar, from raw 1-minute bars.

        ``bars``: ticker, ts, open, high, low, close, volume of one or many tickers, with at
        least ``min_bars`` bars per ticker (ValueError naming the short tickers otherwise).
        Features come from each ticker's newest ``min_bars`` bars (warm-up + window; more
        history moves them by less than ~1e-10, ``features.indicators`` says why), so the
        result does not depend on how much more is passed, and a minute at the close costs
        what one at the open does. Returns ``PREDICTION_COLUMNS``: ticker, ts (newest bar),
        p_down, p_flat, p_up and label (argmax as −1/0/+1).
        """
        if bars.empty:
            raise ValueError("no bars to predict from")
        counts = bars["ticker"].value_counts(sort=False)
        n = counts.to_numpy()
        short = sorted(str(t) for t in counts.index[(n > 0) & (n < self.min_bars)])
        if short:
            raise ValueError(
                f"tickers {short} have fewer than {self.min_bars} bars (feature warm-up "
                f"{self.bundle.feature_spec.warmup_bars} + window {self.window})"
            )
        if n.max() > self.min_bars:
            codes, _ = pd.factorize(bars["ticker"])
            ts_ns = pd.DatetimeIndex(bars["ts"]).asi8
            bars = bars.iloc[newest_positions(codes, ts_ns, self.min_bars)]
        features = feature_arrays(bars, self.bundle.feature_spec, indicators=LIVE_INDICATORS)
        index, windows = latest_windows(features, self.columns, self.window)
        return prediction_frame(index, self.predict_windows(windows))


def prediction_frame(index: pd.DataFrame, proba: np.ndarray) -> pd.DataFrame:
    """``PREDICTION_COLUMNS`` of the windows named by ``index`` (ticker, ts) and their
    probabilities in ``CLASS_ORDER``; label is the argmax as −1/0/+1."""
    columns = {
        "ticker": index["ticker"].array,
        "ts": index["ts"].array,
        "p_down": proba[:, 0],
        "p_flat": proba[:, 1],
        "p_up": proba[:, 2],
        "label": np.asarray(CLASS_ORDER)[proba.argmax(axis=1)],
    }
    return pd.DataFrame({name: columns[name] for name in PREDICTION_COLUMNS})
