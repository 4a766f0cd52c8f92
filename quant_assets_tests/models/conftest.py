"""Small synthetic markets for the model tests (built once per test session)."""

from __future__ import annotations

import pandas as pd
import pytest

from quant_assets.labels import LabelSpec
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models.config import TrainingConfig
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.dataset import TrainingDataset, build_dataset

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


@pytest.fixture(scope="session")
def signal_market() -> tuple[SyntheticMarket, pd.DataFrame]:
    return market_bars(0.3)


@pytest.fixture(scope="session")
def labelled_frame(signal_market) -> pd.DataFrame:
    return labelled_features_from_bars(signal_market[1], LabelSpec())


@pytest.fixture(scope="session")
def small_dataset(labelled_frame: pd.DataFrame) -> TrainingDataset:
    return build_dataset(labelled_frame, TINY, label_spec=LabelSpec())
