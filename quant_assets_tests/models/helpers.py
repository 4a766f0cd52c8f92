"""Small synthetic markets, tiny model settings and a table writer for the model tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from quant_assets.daily_tables import label_spec_json
from quant_assets.features.spec import FEATURE_SPEC, FEATURE_TABLE_COLUMNS
from quant_assets.labels import LabelSpec
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models.config import TrainingConfig
from quant_assets.models.dataset import TrainingDataset
from quant_assets.storage.database import write_to_db

TICKERS = ("AAA", "BBB", "CCC")
FIRST, LAST = "2026-03-02", "2026-03-20"  # 15 sessions; the first one warms the features up

# Tiny models: 1-2 epochs in a few seconds on 2 cores.
TINY = TrainingConfig(
    holdout_sessions=2,
    val_fraction=0.17,
    test_fraction=0.17,
    epochs=2,
    lstm_units=8,
    lstm_dense=8,
    transformer_d_model=8,
    transformer_heads=2,
    transformer_ff=16,
    transformer_blocks=1,
    parity_windows=128,
)


def market_bars(
    signal: float, tickers: tuple[str, ...] = TICKERS, first: str = FIRST, last: str = LAST
) -> tuple[SyntheticMarket, pd.DataFrame]:
    market = SyntheticMarket(
        SyntheticConfig(tickers=tickers, start=first, end="2026-04-30", signal=signal)
    )
    start = pd.Timestamp(first, tz="America/New_York")
    end = pd.Timestamp(last, tz="America/New_York") + pd.Timedelta(days=1)
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    return market, bars


def store(frame: pd.DataFrame, engine: Engine, spec: LabelSpec | None = None) -> None:
    """Write labelled feature rows into the features and labels tables."""
    spec = spec or LabelSpec()
    write_to_db(
        frame[list(FEATURE_TABLE_COLUMNS)].assign(feature_version=FEATURE_SPEC.version),
        "features",
        engine,
    )
    labels = frame[["ticker", "ts", "label", "t1", "ret", "sigma"]].copy()
    labels["label"] = labels["label"].astype("Int16")
    write_to_db(labels.assign(label_spec=label_spec_json(spec)), "labels", engine)


def materialized_fit(
    arch: str, dataset: TrainingDataset, config: TrainingConfig, callbacks: Sequence[Any] = ()
) -> tuple[dict[str, list[float]], Any]:
    """``training.train_model`` as it was before windows were gathered by index: the whole
    train and validation windows materialized, Keras' own shuffling and class weights.
    The reference of the equality test and of ``benchmarks/training_memory.py``."""
    import keras

    from quant_assets.models.architectures import build_model

    keras.utils.set_random_seed(config.seed)
    y_val = dataset.y("val", step=config.val_stride)
    model = build_model(arch, dataset.window, len(dataset.columns), config)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate_for(arch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    weights = dataset.class_weights
    w_val = np.array([weights[k] for k in range(3)], dtype=np.float32)[y_val.astype(np.int64)]
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    fit = model.fit(
        dataset.windows("train"),
        dataset.y("train").astype(np.int32),
        validation_data=(
            dataset.windows("val", step=config.val_stride),
            y_val.astype(np.int32),
            w_val,
        ),
        epochs=config.epochs_for(arch),
        batch_size=config.batch_size,
        class_weight=weights,
        callbacks=[stopper, *callbacks],
        shuffle=True,
        verbose=0,
    )
    return fit.history, model
