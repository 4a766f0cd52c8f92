"""The two Keras direction classifiers: an LSTM and a Transformer encoder.

Both take a window (batch, window, n_features) of scaled features and end in
``Dense(3, softmax)`` over the classes (down, flat, up) = labels (−1, 0, +1).

* **LSTM**: LSTM(units) → Dropout → Dense(dense, relu) → Dropout → Dense(3, softmax).
* **Transformer encoder**: Dense(d_model) projection + fixed sinusoidal positional encoding →
  ``blocks`` × [multi-head self-attention → dropout → residual → LayerNorm; feed-forward
  (Dense(ff, relu) → Dense(d_model)) → dropout → residual → LayerNorm] (post-norm, as in
  Vaswani et al.) → the newest step's vector concatenated with the mean over steps → Dropout →
  Dense(3, softmax).

``with_temperature`` gives a copy whose output layer takes a prior shift s out of its logits
and divides them by a temperature T (``models.calibration``): softmax((W·h + b − s) / T) =
softmax((W / T)·h + (b − s) / T), so that kernel and bias *are* the calibration, exactly,
inside the model. The saved
.keras file and the TFLite exported from it then give calibrated probabilities by themselves.

Layers are stock Keras except ``PositionalEncoding`` (registered as serializable, so
``keras.models.load_model`` of a saved .keras file works once this module is imported).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from quant_assets.models.bundle import ARCHS
from quant_assets.models.config import TrainingConfig

OUTPUT_LAYER = "probs"  # the Dense(3, softmax) both architectures end in


@keras.saving.register_keras_serializable(package="quant_assets")
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal encoding of Vaswani et al. (2017) to (batch, steps, d)."""

    def __init__(self, max_steps: int, d_model: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.max_steps = int(max_steps)
        self.d_model = int(d_model)
        pos = np.arange(self.max_steps)[:, None]
        i = np.arange(self.d_model)[None, :]
        angle = pos / np.power(10000.0, (2 * (i // 2)) / self.d_model)
        table = np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype("float32")
        self._table = table[None, :, :]

    def call(self, inputs):
        steps = keras.ops.shape(inputs)[1]
        return inputs + keras.ops.convert_to_tensor(self._table)[:, :steps, :]

    def get_config(self) -> dict:
        return {**super().get_config(), "max_steps": self.max_steps, "d_model": self.d_model}


def build_lstm(
    window: int,
    n_features: int,
    units: int = 32,
    dense: int = 16,
    dropout: float = 0.2,
    unroll: bool = False,
) -> keras.Model:
    """LSTM classifier; ``unroll=True`` builds the same weights as a loop-free graph."""
    inputs = keras.Input((window, n_features), name="window")
    h = keras.layers.LSTM(units, unroll=unroll, name="lstm")(inputs)
    h = keras.layers.Dropout(dropout, name="dropout_lstm")(h)
    h = keras.layers.Dense(dense, activation="relu", name="dense")(h)
    h = keras.layers.Dropout(dropout, name="dropout_dense")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name=OUTPUT_LAYER)(h)
    return keras.Model(inputs, outputs, name="lstm")


def build_transformer(
    window: int,
    n_features: int,
    d_model: int = 32,
    heads: int = 4,
    ff: int = 64,
    blocks: int = 2,
    dropout: float = 0.1,
    patch: int = 1,
) -> keras.Model:
    """Transformer-encoder classifier (positional encoding, self-attention blocks, LayerNorm).

    ``patch`` > 1 embeds non-overlapping runs of ``patch`` bars as one token (PatchTST-style),
    so attention runs over window / patch tokens: ~patch² less attention work on a CPU.
    """
    if d_model % heads:
        raise ValueError("d_model must be a multiple of heads")
    if patch < 1 or window % patch:
        raise ValueError(f"patch ({patch}) must divide the window ({window})")
    steps = window // patch
    inputs = keras.Input((window, n_features), name="window")
    h = inputs
    if patch > 1:
        h = keras.layers.Reshape((steps, patch * n_features), name="patches")(h)
    h = keras.layers.Dense(d_model, name="embed")(h)
    h = PositionalEncoding(steps, d_model, name="positional_encoding")(h)
    h = keras.layers.Dropout(dropout, name="dropout_embed")(h)
    for b in range(blocks):
        attn = keras.layers.MultiHeadAttention(
            num_heads=heads, key_dim=d_model // heads, dropout=dropout, name=f"mha_{b}"
        )(h, h)
        attn = keras.layers.Dropout(dropout, name=f"dropout_attn_{b}")(attn)
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"norm_attn_{b}")(
            keras.layers.Add(name=f"residual_attn_{b}")([h, attn])
        )
        f = keras.layers.Dense(ff, activation="relu", name=f"ff_in_{b}")(h)
        f = keras.layers.Dense(d_model, name=f"ff_out_{b}")(f)
        f = keras.layers.Dropout(dropout, name=f"dropout_ff_{b}")(f)
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"norm_ff_{b}")(
            keras.layers.Add(name=f"residual_ff_{b}")([h, f])
        )
    last = keras.layers.Flatten(name="last_step")(
        keras.layers.Cropping1D((steps - 1, 0), name="newest")(h)
    )
    mean = keras.layers.GlobalAveragePooling1D(name="mean_step")(h)
    h = keras.layers.Concatenate(name="pool")([last, mean])
    h = keras.layers.Dropout(dropout, name="dropout_head")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name=OUTPUT_LAYER)(h)
    return keras.Model(inputs, outputs, name="transformer")


def build_model(
    arch: str, window: int, n_features: int, config: TrainingConfig, unroll: bool = False
) -> keras.Model:
    """The architecture ``arch`` ("lstm" | "transformer") sized by ``config``."""
    if arch == "lstm":
        return build_lstm(
            window,
            n_features,
            units=config.lstm_units,
            dense=config.lstm_dense,
            dropout=config.lstm_dropout,
            unroll=unroll,
        )
    if arch == "transformer":
        return build_transformer(
            window,
            n_features,
            d_model=config.transformer_d_model,
            heads=config.transformer_heads,
            ff=config.transformer_ff,
            blocks=config.transformer_blocks,
            dropout=config.transformer_dropout,
            patch=config.transformer_patch,
        )
    raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHS}")


def with_temperature(
    model: keras.Model, temperature: float, shift: np.ndarray | None = None
) -> keras.Model:
    """A copy of ``model`` whose probabilities are softmax((logits − ``shift``) / T)."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    tempered = keras.models.clone_model(model)
    tempered.set_weights(model.get_weights())
    output = tempered.get_layer(OUTPUT_LAYER)
    kernel, bias = output.get_weights()
    if shift is not None:
        bias = bias - np.asarray(shift, dtype=bias.dtype)
    t = np.float32(temperature)
    output.set_weights([kernel / t, bias / t])
    return tempered
