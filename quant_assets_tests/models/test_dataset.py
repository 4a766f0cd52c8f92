"""Windows, chronological split, purge, embargo, train-only scaler, class weights."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd
import pytest

from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.labels import LabelSpec
from quant_assets.models.config import TrainingConfig
from quant_assets.models.dataset import (
    SEGMENTS,
    FeatureScaler,
    TrainingDataset,
    balanced_class_weights,
    build_dataset,
    latest_windows,
    plan_split,
)
from quant_assets_tests.models.helpers import TINY

COLS = list(FEATURE_SPEC.columns)


def segment_bounds(ds: TrainingDataset, name: str) -> tuple[int, int]:
    start, end = ds.plan.bounds(name)
    return start.value, end.value


def test_plan_split_is_chronological_and_keeps_the_newest_sessions_back() -> None:
    days = pd.bdate_range("2026-03-02", periods=20)
    plan = plan_split(days, holdout_sessions=3, val_fraction=0.15, test_fraction=0.15)
    spans = [plan.sessions[name] for name in SEGMENTS]
    assert spans[-1] == (days[-3], days[-1])
    for (_, last), (first, _) in itertools.pairwise(spans):
        assert last < first  # strictly after, no overlap
    assert spans[0][0] == days[0]
    with pytest.raises(ValueError, match="too few"):
        plan_split(days[:4], holdout_sessions=2, val_fraction=0.2, test_fraction=0.2)
    assert plan_split(days, 0, 0.15, 0.15).sessions["holdout"] is None


def test_segments_follow_each_other_in_time(small_dataset: TrainingDataset) -> None:
    ds = small_dataset
    last_ts = None
    for name in SEGMENTS:
        ts = ds.row_ts[ds.samples[name].end_row]
        assert len(ts) > 0, name
        if last_ts is not None:
            assert ts.min() > last_ts  # every sample of a segment is after the previous segment
        last_ts = ts.max()


def test_windows_are_consecutive_bars_of_one_ticker(
    small_dataset: TrainingDataset, labelled_frame: pd.DataFrame
) -> None:
    ds = small_dataset
    frame = labelled_frame.set_index(["ticker", "ts"])
    for name in SEGMENTS:
        end = ds.samples[name].end_row
        rows = end[:, None] + np.arange(-ds.window + 1, 1)[None, :]
        assert (ds.row_ticker[rows] == ds.row_ticker[end][:, None]).all()
        assert (np.diff(ds.row_ts[rows], axis=1) > 0).all()
    # The raw windows are the create_features values of those bars, in FEATURE_SPEC order.
    sample = ds.sample_frame("test").iloc[100]
    window = ds.windows("test", scaled=False)[100]
    expected = frame.loc[sample["ticker"]].loc[: sample["ts"]].iloc[-ds.window :][COLS]
    np.testing.assert_allclose(window, expected.to_numpy(np.float32), rtol=1e-6)


def test_no_label_window_crosses_into_the_next_segment(labelled_frame: pd.DataFrame) -> None:
    # Stretch the labels of the last train session's afternoon into the validation days: the
    # purge must drop exactly those samples and nothing may end in another segment.
    plain = build_dataset(labelled_frame, TINY, label_spec=LabelSpec())
    frame = labelled_frame.copy()
    last_train = plain.plan.sessions["train"][1]
    day = frame["ts"].dt.tz_convert("America/New_York").dt.tz_localize(None).dt.normalize()
    stretch = (day == last_train) & frame["label"].notna()
    stretch &= frame["ts"].dt.tz_convert("America/New_York").dt.hour >= 14
    frame.loc[stretch, "t1"] = frame.loc[stretch, "ts"] + pd.Timedelta(days=1)
    ds = build_dataset(frame, TINY.replace(train_stride=1), label_spec=LabelSpec())
    assert ds.plan == plain.plan
    assert ds.stats["train"]["purged"] == int(stretch.sum())
    for name in SEGMENTS:
        start, end = segment_bounds(ds, name)
        s = ds.samples[name]
        ts = ds.row_ts[s.end_row]
        assert (ts >= start).all() and (ts < end).all()
        assert (s.t1 > ts).all()
        assert (s.t1 < end).all(), f"{name}: a label ends in the next segment"


def test_embargo_keeps_inputs_of_later_segments_out_of_earlier_ones(
    small_dataset: TrainingDataset,
) -> None:
    ds = small_dataset
    embargo = TINY.embargo_minutes * 60_000_000_000
    for name in ("val", "test", "holdout"):
        start, _ = segment_bounds(ds, name)
        first_bar = ds.row_ts[ds.samples[name].end_row - ds.window + 1]
        assert (first_bar >= start + embargo).all()
        assert ds.stats[name]["embargoed"] > 0


def test_scaler_never_sees_validation_or_test_rows(labelled_frame: pd.DataFrame) -> None:
    plain = build_dataset(labelled_frame, TINY, label_spec=LabelSpec())
    train_end = plain.plan.bounds("train")[1]
    frame = labelled_frame.copy()
    later = frame["ts"] >= train_end
    rng = np.random.default_rng(0)
    frame.loc[later, COLS] = frame.loc[later, COLS] * 1000.0 + rng.normal(size=(later.sum(), 1))
    poisoned = build_dataset(frame, TINY, label_spec=LabelSpec(), plan=plain.plan)
    np.testing.assert_array_equal(poisoned.scaler.center, plain.scaler.center)
    np.testing.assert_array_equal(poisoned.scaler.scale, plain.scaler.scale)
    assert poisoned.reference_stats == plain.reference_stats
    np.testing.assert_array_equal(poisoned.windows("train"), plain.windows("train"))
    assert not np.array_equal(poisoned.windows("val"), plain.windows("val"))
    assert pd.Timestamp(plain.stats["scaler_fit_last_ts"]) < train_end


def test_windows_skip_rows_that_are_not_warm_or_not_finite(labelled_frame: pd.DataFrame) -> None:
    frame = labelled_frame.copy()
    bad = frame.index[(frame["ticker"] == "BBB")][1000]
    frame.loc[bad, COLS[0]] = np.nan
    cold = frame.index[(frame["ticker"] == "CCC")][2000]
    frame.loc[cold, "warm"] = False
    ds = build_dataset(frame, TINY.replace(train_stride=1), label_spec=LabelSpec())
    bad_ts = {("BBB", frame.loc[bad, "ts"].value), ("CCC", frame.loc[cold, "ts"].value)}
    for name in SEGMENTS:
        end = ds.samples[name].end_row
        rows = end[:, None] + np.arange(-ds.window + 1, 1)[None, :]
        tick = np.asarray(ds.tickers)[ds.row_ticker[rows]]
        used = set(zip(tick.ravel().tolist(), ds.row_ts[rows].ravel().tolist(), strict=True))
        assert not (used & bad_ts)
        assert np.isfinite(ds.windows(name)).all()


def test_class_weights_are_balanced_on_the_train_segment(small_dataset: TrainingDataset) -> None:
    y = small_dataset.y("train")
    counts = np.bincount(y, minlength=3)
    for k in range(3):
        assert small_dataset.class_weights[k] == pytest.approx(len(y) / (3 * counts[k]))
    assert balanced_class_weights(np.array([0, 0, 2])) == {0: 0.5, 1: 1.0, 2: 1.0}


def test_strides_and_cap_thin_the_train_windows(labelled_frame: pd.DataFrame) -> None:
    full = build_dataset(labelled_frame, TINY.replace(train_stride=1), label_spec=LabelSpec())
    thin = build_dataset(labelled_frame, TINY.replace(train_stride=3), label_spec=LabelSpec())
    assert abs(len(thin.samples["train"]) - len(full.samples["train"]) / 3) <= 3
    assert set(thin.samples["train"].end_row) <= set(full.samples["train"].end_row)
    capped = build_dataset(
        labelled_frame, TINY.replace(train_stride=1, max_train_windows=500), label_spec=LabelSpec()
    )
    assert len(capped.samples["train"]) == 500


def test_save_and_load_round_trip(small_dataset: TrainingDataset, tmp_path) -> None:
    path = small_dataset.save(tmp_path / "d" / "ds.npz")
    loaded = TrainingDataset.load(path)
    assert loaded.plan == small_dataset.plan
    assert loaded.label_spec == small_dataset.label_spec
    assert loaded.feature_spec == small_dataset.feature_spec
    assert loaded.class_weights == small_dataset.class_weights
    np.testing.assert_array_equal(loaded.windows("test"), small_dataset.windows("test"))
    pd.testing.assert_frame_equal(loaded.sample_frame("val"), small_dataset.sample_frame("val"))
    assert list((tmp_path / "d").iterdir()) == [path]  # no temp file left behind
    with pytest.raises(FileNotFoundError, match="materialize training_dataset"):
        TrainingDataset.load(tmp_path / "missing.npz")


def test_scaler_kinds_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    rows = np.c_[rng.standard_t(3, 5000), rng.normal(5, 2, 5000), np.full(5000, 7.0)]
    robust = FeatureScaler.fit(rows, ["a", "b", "c"], "robust", clip=4.0)
    out = robust.transform(rows)
    assert out.dtype == np.float32 and np.abs(out).max() <= 4.0
    assert np.median(out[:, :2], axis=0) == pytest.approx([0, 0], abs=1e-6)
    assert (out[:, 2] == 0).all()  # constant feature: scale falls back to 1, no division by 0
    again = FeatureScaler.from_dict(robust.to_dict())
    np.testing.assert_array_equal(again.transform(rows), out)
    minmax = FeatureScaler.fit(rows, ["a", "b", "c"], "minmax")
    scaled = minmax.transform(rows)
    assert scaled[:, :2].min() == pytest.approx(0) and scaled[:, :2].max() == pytest.approx(1)
    with pytest.raises(ValueError, match="scale > 0"):
        FeatureScaler.from_dict({**robust.to_dict(), "scale": [1, 0, 1]})


def test_latest_windows_takes_the_newest_bars_and_names_short_tickers(signal_market) -> None:
    _, bars = signal_market
    feats = create_features(bars)
    index, windows = latest_windows(feats, COLS, 60)
    assert list(index["ticker"]) == ["AAA", "BBB", "CCC"]
    assert windows.shape == (3, 60, len(COLS))
    newest = feats[feats["ticker"] == "BBB"].iloc[-60:][COLS].to_numpy(np.float32)
    np.testing.assert_array_equal(windows[1], newest)
    short = feats[(feats["ticker"] != "CCC") | (feats.groupby("ticker").cumcount() < 400)]
    with pytest.raises(ValueError, match=r"\['CCC'\]"):
        latest_windows(short, COLS, 60)


def test_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file

    def set_env(values: dict[str, str]) -> None:
        for name in [k for k in os.environ if k.startswith("QUANT_TRAIN_")]:
            monkeypatch.delenv(name)
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    set_env(
        {
            "QUANT_TRAIN_EPOCHS": "3",
            "QUANT_TRAIN_SCALER": "minmax",
            "QUANT_TRAIN_TRANSFORMER_EPOCHS": "none",
            "QUANT_TRAIN_CLASS_WEIGHTING": "false",
        }
    )
    cfg = TrainingConfig.from_env(window=30, seed=None)
    assert (cfg.epochs, cfg.scaler, cfg.window, cfg.seed) == (3, "minmax", 30, 42)
    assert cfg.transformer_epochs is None and cfg.class_weighting is False
    assert cfg.epochs_for("transformer") == 3
    with pytest.raises(ValueError, match="multiple of"):
        TrainingConfig(transformer_d_model=10, transformer_heads=4)
    assert TrainingConfig.gpu().lstm_units > TrainingConfig().lstm_units
    set_env({"QUANT_TRAIN_PRESET": "gpu", "QUANT_TRAIN_EPOCHS": "5"})
    gpu = TrainingConfig.from_env()
    assert gpu.lstm_units == TrainingConfig.gpu().lstm_units and gpu.epochs == 5
    set_env({"QUANT_TRAIN_PRESET": "tpu"})
    with pytest.raises(ValueError, match="PRESET"):
        TrainingConfig.from_env()
