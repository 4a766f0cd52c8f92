"""Small synthetic markets, tiny model settings and a table writer for the model tests."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from quant_assets.daily_tables import label_spec_json
from quant_assets.features.spec import FEATURE_SPEC, FEATURE_TABLE_COLUMNS
from quant_assets.labels import LabelSpec
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models.config import TrainingConfig
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
