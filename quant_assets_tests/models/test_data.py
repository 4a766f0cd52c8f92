"""The database loader: features ⟕ labels, on SQLite and on real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.labels import LabelSpec
from quant_assets.models import data
from quant_assets.models.data import (
    label_spec_of,
    labelled_sessions,
    load_labelled_features,
)
from quant_assets.models.dataset import build_dataset
from quant_assets_tests.models.helpers import TINY, store


def test_loader_round_trips_and_builds_the_same_dataset(
    engine: Engine, labelled_frame: pd.DataFrame
) -> None:
    frame = labelled_frame[labelled_frame["ticker"] != "CCC"].reset_index(drop=True)
    store(frame, engine)
    sessions = labelled_sessions(engine, ["AAA", "BBB"])
    assert sessions[0] == pd.Timestamp("2026-03-03") and sessions[-1] == pd.Timestamp("2026-03-20")
    assert len(labelled_sessions(engine, ["ZZZ"])) == 0
    loaded = load_labelled_features(engine, ["AAA", "BBB", "ZZZ"], sessions[0], sessions[-1])
    assert len(loaded) == len(frame)
    assert label_spec_of(loaded) == LabelSpec()
    assert loaded["ts"].dtype == "datetime64[ns, UTC]" and loaded["t1"].dtype == loaded["ts"].dtype
    np.testing.assert_allclose(
        loaded[list(FEATURE_SPEC.columns)].to_numpy(),
        frame[list(FEATURE_SPEC.columns)].to_numpy(),
        rtol=1e-12,
    )
    assert (loaded["label"].isna() == frame["label"].isna()).all()
    a = build_dataset(loaded, TINY, label_spec=label_spec_of(loaded))
    b = build_dataset(frame, TINY, label_spec=LabelSpec())
    np.testing.assert_array_equal(a.windows("test"), b.windows("test"))
    np.testing.assert_array_equal(a.y("train"), b.y("train"))
    # A window of days loads only those days.
    part = load_labelled_features(engine, ["AAA"], "2026-03-10", "2026-03-11")
    days = part["ts"].dt.tz_convert("America/New_York").dt.day.unique()
    assert sorted(days) == [10, 11]


def test_reading_a_few_tickers_at_a_time_gives_the_same_frame(
    engine: Engine, labelled_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(labelled_frame, engine)
    tickers = ["CCC", "AAA", "ZZZ", "BBB", "AAA"]  # unordered, a repeat, one with no rows
    whole = load_labelled_features(engine, tickers, "2026-03-01", "2026-03-31", prices=True)
    monkeypatch.setattr(data, "TICKERS_PER_READ", 1)
    blocks = load_labelled_features(engine, tickers, "2026-03-01", "2026-03-31", prices=True)
    assert list(whole["ticker"].unique()) == ["AAA", "BBB", "CCC"]
    pd.testing.assert_frame_equal(blocks, whole)


def test_mixed_label_specs_are_refused(engine: Engine, labelled_frame: pd.DataFrame) -> None:
    frame = labelled_frame[labelled_frame["ticker"] == "AAA"].iloc[:2000]
    store(frame.iloc[:1000], engine)
    store(frame.iloc[1000:], engine, LabelSpec(horizon=15))
    loaded = load_labelled_features(engine, ["AAA"], "2026-03-01", "2026-03-31")
    with pytest.raises(ValueError, match="different label specs"):
        label_spec_of(loaded)
