"""Keras → TFLite (float32, builtin ops only); ``models.parity`` measures the result.

Routes (docs/architecture.md, library facts: an LSTM with a dynamic batch dimension does not
convert; SELECT_TF_OPS converts but the pip LiteRT has no Flex delegate, so it is never used):

* **LSTM, ``unrolled``** (default): the same weights in an ``LSTM(unroll=True)`` clone
  (training stays on the faster loop kernel), exported with a dynamic batch: the runner resizes
  the input, so the 20 tickers of a minute are scored in one invoke (~0.36 ms for 20 windows
  here, ~70 µs for one) at ~5x the file size (~185 KB for LSTM-32). Chosen because live scoring
  scores every ticker each minute, and the looped fixed batch cost ~1.4 ms for 20.
* **LSTM, ``fixed_batch``** (bundles written before the unrolled default; still selectable):
  ``model.export(dir, format="tf_saved_model", input_signature=[TensorSpec([1, T, F])])`` then
  ``TFLiteConverter.from_saved_model``. The LSTM becomes one fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op: the smallest file (~40 KB) and ~70 µs per window, but
  batch 1 only (resizing its input fails in XNNPACK), so the runner loops over windows.
* **Transformer**: exported with a dynamic batch (MultiHeadAttention and LayerNormalization
  convert on every route).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from quant_assets.models.architectures import build_model
from quant_assets.models.config import TrainingConfig


def export_tflite(model: Any, arch: str, config: TrainingConfig) -> bytes:
    """The TFLite flatbuffer of a trained Keras model (float32, builtin ops)."""
    import tensorflow as tf

    _, window, n_features = model.input_shape
    batch: int | None = None
    source = model
    if arch == "lstm":
        if config.lstm_export == "fixed_batch":
            batch = 1
        else:
            source = build_model("lstm", window, n_features, config, unroll=True)
            source.set_weights(model.get_weights())
    signature = [tf.TensorSpec([batch, window, n_features], tf.float32, name="window")]
    with tempfile.TemporaryDirectory(prefix="tflite-export-") as tmp:
        saved = os.path.join(tmp, "saved_model")
        source.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
