"""Input windows gathered from the rows array by index, only when a batch is drawn.

A sample's window is the ``window`` consecutive rows ending at its ``end_row`` (rows sorted by
ticker, then time; ``models.dataset`` only makes samples whose window lies within one ticker's
valid bars). A segment's windows, materialized, cost ``window`` times the rows they come from
(60×: ~33 GB per evaluation segment at 500 tickers × 250 sessions), so nothing holds them:
``WindowIndex`` keeps the rows and the end rows and gathers a chunk at a time, and
``window_dataset`` is the ``tf.data`` pipeline that gathers each training batch as it is drawn.

``window_dataset`` draws its batches as Keras' own array adapter
(``keras.src.trainers.data_adapters.array_data_adapter``, Keras 3.15) does for NumPy inputs:
one ``tf.random.shuffle`` permutation of the sample indices per epoch, full batches then the
partial one. Under the same ``keras.utils.set_random_seed`` a model therefore sees the same
batches in the same order as ``model.fit`` on the materialized arrays and trains to the same
weights (tested). Each batch's windows are gathered by NumPy from the rows in place
(``tf.numpy_function``): a TensorFlow constant of the rows would be a copy of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

PREDICT_BATCH = 2048  # windows per chunk when scoring (the old ``predict`` batch size)


@dataclass(frozen=True)
class WindowIndex:
    """The windows ``rows[end_row[i] − window + 1 : end_row[i] + 1, columns]``, gathered on
    demand. ``columns``: indices into the rows' feature axis (None: all of them)."""

    rows: np.ndarray  # (n_rows, F_rows)
    end_row: np.ndarray  # (n,) int64
    window: int
    columns: tuple[int, ...] | None = None

    @classmethod
    def of_array(cls, windows: np.ndarray) -> WindowIndex:
        """Materialized windows (n, T, F) as an index over their own rows (no copy when
        C-contiguous)."""
        windows = np.ascontiguousarray(windows)
        if windows.ndim != 3:
            raise ValueError(f"windows must have shape (n, T, F), got {windows.shape}")
        n, t, f = windows.shape
        end_row = np.arange(n, dtype=np.int64) * t + (t - 1)
        return cls(windows.reshape(n * t, f), end_row, t)

    def __len__(self) -> int:
        return len(self.end_row)

    @property
    def n_features(self) -> int:
        return self.rows.shape[1] if self.columns is None else len(self.columns)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self), self.window, self.n_features

    @property
    def offsets(self) -> np.ndarray:
        """Row offsets of a window's bars from its newest bar (−window + 1 … 0)."""
        return np.arange(-self.window + 1, 1, dtype=np.int64)

    def take(self, index: slice | np.ndarray) -> np.ndarray:
        """(k, window, F) windows of the samples ``index`` selects (a slice, ints or a mask)."""
        picked = self.rows[self.end_row[index][:, None] + self.offsets[None, :]]
        return picked if self.columns is None else picked[:, :, list(self.columns)]

    def materialize(self) -> np.ndarray:
        """All windows at once (n, window, F): for small sets only."""
        return self.take(slice(None))

    def chunks(self, size: int = PREDICT_BATCH) -> Iterator[np.ndarray]:
        """The windows in order, ``size`` at a time."""
        for lo in range(0, len(self), size):
            yield self.take(slice(lo, lo + size))

    def subset(self, index: slice | np.ndarray) -> WindowIndex:
        """The samples ``index`` selects, still unmaterialized."""
        return replace(self, end_row=self.end_row[index])

    def cut(self, window: int, columns: tuple[int, ...]) -> WindowIndex:
        """The newest ``window`` bars of each window and the features ``columns`` (indices
        into this index's features)."""
        if window > self.window:
            raise ValueError(f"window {window} > {self.window}")
        picked = tuple(columns) if self.columns is None else tuple(self.columns[c] for c in columns)
        return replace(self, window=window, columns=picked)

    def bar(self, lag: int = 0) -> np.ndarray:
        """(n, F) the bar ``lag`` steps before each window's newest one."""
        if not 0 <= lag < self.window:
            raise ValueError(f"lag {lag} is outside a window of {self.window} bars")
        picked = self.rows[self.end_row - lag]
        return picked if self.columns is None else picked[:, list(self.columns)]


def predict_chunked(predict: Any, windows: WindowIndex, size: int = PREDICT_BATCH) -> np.ndarray:
    """``predict`` ((k, T, F) → (k, C)) over the windows ``size`` at a time, concatenated."""
    parts = [np.asarray(predict(chunk)) for chunk in windows.chunks(size)]
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)


def window_dataset(
    windows: WindowIndex,
    y: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of batches ``x`` or ``(x, y[, sample_weight])``; x gathered from
    the rows inside the pipeline. ``shuffle``: a new permutation each epoch, drawn like
    Keras' array adapter draws it (see the module docstring)."""
    import tensorflow as tf

    n = len(windows)
    extras = tuple(
        tf.constant(a) for a in (y, sample_weight) if a is not None
    )  # sample_weight without y is meaningless; Keras never passes it
    full = n // batch_size

    def permutation(_: Any) -> Any:
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices) if shuffle else indices

    def batches(indices: Any) -> Any:
        head = tf.reshape(indices[: full * batch_size], [full, batch_size])
        out = tf.data.Dataset.from_tensor_slices(head)
        if n % batch_size:
            out = out.concatenate(tf.data.Dataset.from_tensors(indices[full * batch_size :]))
        return out

    def take(i: np.ndarray) -> np.ndarray:
        return windows.take(i).astype(np.float32, copy=False)

    def gather(i: Any) -> Any:
        x = tf.numpy_function(take, [i], tf.float32, stateful=False)
        x.set_shape([None, windows.window, windows.n_features])
        return (x, *(tf.gather(a, i) for a in extras)) if extras else x

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    if shuffle:
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return (
        tf.data.Dataset.range(1)
        .map(permutation)
        .prefetch(1)
        .flat_map(batches)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .with_options(options)
        .prefetch(tf.data.AUTOTUNE)
        # A known length: Keras then starts each epoch's iterator when the last one ends, as
        # it does for arrays (and the permutations follow the same sequence).
        .apply(tf.data.experimental.assert_cardinality(full + (n % batch_size > 0)))
    )
