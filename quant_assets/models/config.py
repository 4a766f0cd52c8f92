"""Training configuration: one frozen dataclass, demo-sized defaults, overridable from the env.

Every field can be set with ``QUANT_TRAIN_<FIELD>`` (e.g. ``QUANT_TRAIN_EPOCHS=20``,
``QUANT_TRAIN_TRANSFORMER_BLOCKS=4``); the Dagster assets take the same fields as run config.
The defaults train both models on 2 CPU cores in about a minute on the demo window
(20 tickers x 40 sessions); ``QUANT_TRAIN_PRESET=gpu`` (``TrainingConfig.gpu()``) is the larger
setting for a GPU machine (every window, bigger models, more epochs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from quant_assets.settings import env_overrides, field_types

ENV_PREFIX = "QUANT_TRAIN_"
Preset = Literal["demo", "gpu"]
ScalerKind = Literal["robust", "minmax"]
LstmExport = Literal["fixed_batch", "unrolled"]


@dataclass(frozen=True)
class TrainingConfig:
    """Dataset, architecture and optimisation settings (demo defaults: 2 CPU cores)."""

    # --- dataset -----------------------------------------------------------------------------
    window: int = 60  # bars per sample (the last 60 one-minute bars of one ticker)
    sessions: int = 40  # sessions read from the database (the newest ones, holdout included)
    holdout_sessions: int = 5  # newest sessions kept back for champion/challenger validation
    val_fraction: float = 0.15  # of the non-holdout sessions, chronological
    test_fraction: float = 0.15
    embargo_minutes: int = 30  # gap after each segment start, on top of the window rule
    train_stride: int = 4  # keep every n-th training sample of a ticker (overlap is high)
    eval_stride: int = 1  # validation / test / holdout samples: every n-th
    max_train_windows: int = 40_000  # cap (evenly thinned) to bound epoch time and memory
    scaler: ScalerKind = "robust"
    scaler_clip: float = 10.0  # scaled values are clipped to [-clip, clip]
    reference_sample: int = 2000  # values per feature kept in the bundle for KS drift tests

    # --- optimisation ------------------------------------------------------------------------
    seed: int = 42
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 2e-3
    patience: int = 2  # EarlyStopping on val_loss, best weights restored
    val_stride: int = 3  # early stopping watches every n-th validation window (speed)
    class_weighting: bool = True  # balanced class weights from the train segment

    # --- LSTM --------------------------------------------------------------------------------
    lstm_units: int = 32
    lstm_dense: int = 16
    lstm_dropout: float = 0.2
    # unrolled: a dynamic batch, so live scoring invokes once for all tickers (tflite_export)
    lstm_export: LstmExport = "unrolled"

    # --- Transformer encoder -----------------------------------------------------------------
    transformer_d_model: int = 32
    transformer_heads: int = 4
    transformer_ff: int = 64
    transformer_blocks: int = 2
    transformer_dropout: float = 0.1
    transformer_patch: int = 4  # bars per token (1: one token per bar)
    transformer_epochs: int | None = None  # None: same as ``epochs``
    transformer_learning_rate: float | None = 1e-3  # None: same as ``learning_rate``

    # --- export / checks ---------------------------------------------------------------------
    parity_windows: int = 256
    parity_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be >= 2 bars, got {self.window}")
        if self.holdout_sessions < 0:
            raise ValueError("holdout_sessions must be >= 0")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in (0, 1)")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction leaves too little to train on")
        for name in (
            "train_stride",
            "val_stride",
            "eval_stride",
            "epochs",
            "batch_size",
            "max_train_windows",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.embargo_minutes < 0:
            raise ValueError("embargo_minutes must be >= 0")
        if self.scaler not in ("robust", "minmax"):
            raise ValueError(f"scaler must be 'robust' or 'minmax', got {self.scaler!r}")
        if self.lstm_export not in ("fixed_batch", "unrolled"):
            raise ValueError(
                f"lstm_export must be 'fixed_batch' or 'unrolled', got {self.lstm_export!r}"
            )
        if self.transformer_d_model % self.transformer_heads:
            raise ValueError("transformer_d_model must be a multiple of transformer_heads")

    def epochs_for(self, arch: str) -> int:
        """Maximum epochs of an architecture."""
        if arch == "transformer" and self.transformer_epochs is not None:
            return self.transformer_epochs
        return self.epochs

    def learning_rate_for(self, arch: str) -> float:
        """Adam learning rate of an architecture."""
        if arch == "transformer" and self.transformer_learning_rate is not None:
            return self.transformer_learning_rate
        return self.learning_rate

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (MLflow params, bundle, metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_env(cls, **overrides: Any) -> TrainingConfig:
        """Preset defaults, then ``QUANT_TRAIN_*`` settings, then explicit overrides (not None).

        ``QUANT_TRAIN_PRESET``: ``demo`` (default, 2 CPU cores) or ``gpu`` (``gpu()``).
        """
        values = env_overrides(ENV_PREFIX, {"preset": Preset, **field_types(cls)})
        base = cls.gpu() if values.pop("preset", "demo") == "gpu" else cls()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return base.replace(**values)

    @classmethod
    def gpu(cls, **overrides: Any) -> TrainingConfig:
        """A larger setting for a GPU machine (all sessions' windows, bigger models)."""
        base = dict(
            sessions=120,
            train_stride=1,
            max_train_windows=2_000_000,
            epochs=40,
            patience=5,
            batch_size=512,
            lstm_units=128,
            lstm_dense=64,
            transformer_d_model=128,
            transformer_heads=8,
            transformer_ff=256,
            transformer_blocks=4,
            transformer_patch=1,
        )
        base.update(overrides)
        return cls(**base)


# Which fields shape the dataset (the training_dataset asset) and which the models.
DATASET_FIELDS: tuple[str, ...] = (
    "window",
    "sessions",
    "holdout_sessions",
    "val_fraction",
    "test_fraction",
    "embargo_minutes",
    "train_stride",
    "eval_stride",
    "max_train_windows",
    "scaler",
    "scaler_clip",
    "reference_sample",
)
MODEL_FIELDS: tuple[str, ...] = tuple(
    name for name in TrainingConfig.field_names() if name not in DATASET_FIELDS
)
