"""Small synthetic markets for the model tests (built once per test session)."""

from __future__ import annotations

import pandas as pd
import pytest

from quant_assets.labels import LabelSpec
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.dataset import TrainingDataset, build_dataset
from quant_assets_tests.models.helpers import TINY, market_bars


@pytest.fixture(scope="session")
def signal_market() -> tuple[SyntheticMarket, pd.DataFrame]:
    return market_bars(0.3)


@pytest.fixture(scope="session")
def labelled_frame(signal_market) -> pd.DataFrame:
    return labelled_features_from_bars(signal_market[1], LabelSpec())


@pytest.fixture(scope="session")
def small_dataset(labelled_frame: pd.DataFrame) -> TrainingDataset:
    return build_dataset(labelled_frame, TINY, label_spec=LabelSpec())
