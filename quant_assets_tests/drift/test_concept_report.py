"""Concept drift z-scores, window evaluation, the report's renderings and the replay windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quant_assets.drift import concept_drift, replay
from quant_assets.drift.reference import concept_baseline_from_probs, reference_stats_from_frame
from quant_assets.drift.replay import evaluation_times, rolling_windows
from quant_assets.drift.report import evaluate_window, plot_history
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets_tests.drift.helpers import minute_frame


def probs_with_confidence(rng, n, shift=0.0):
    logit = 0.5 + shift + 0.6 * rng.normal(size=n)
    p_up = 1 / (1 + np.exp(-logit))
    return np.stack([(1 - p_up) * 0.6, (1 - p_up) * 0.4, p_up], axis=1)


def test_concept_drift_z_scores_and_direction():
    rng = np.random.default_rng(0)
    th = DriftThresholds()
    base = concept_baseline_from_probs(probs_with_confidence(rng, 60 * 300), window=60)
    same = concept_drift(probs_with_confidence(rng, 600), base, th)
    assert (
        same is not None and same.level == "none" and same.score < 4 and same.direction == "stable"
    )
    sure = concept_drift(probs_with_confidence(rng, 600, shift=1.5), base, th)
    assert sure.level == "severe" and sure.direction == "more confident" and sure.z_max_prob > 0
    unsure = concept_drift(probs_with_confidence(rng, 600, shift=-1.0), base, th)
    assert unsure.level == "severe" and unsure.direction == "less confident"
    assert unsure.z_entropy > 0 > unsure.z_max_prob
    assert concept_drift(np.zeros((0, 3)), base, th) is None
    # more rows -> a smaller standard error -> a larger |z| for the same gap
    small = concept_drift(probs_with_confidence(rng, 60, shift=0.3), base, th)
    large = concept_drift(probs_with_confidence(rng, 6000, shift=0.3), base, th)
    assert abs(large.z_max_prob) > abs(small.z_max_prob)
    assert json.dumps(sure.to_dict())


@pytest.fixture(scope="module")
def reference_and_frame():
    frame = minute_frame(tickers=("A", "B", "C"), sessions=8, phi=0.8, seed=11)
    ref = reference_stats_from_frame(frame[frame.ts < frame.ts.unique()[390 * 6]], ["x", "y"])
    return ref, frame[frame.ts >= frame.ts.unique()[390 * 6]].reset_index(drop=True)


def test_evaluate_window_null_shift_and_too_small(reference_and_frame, tmp_path):
    ref, live = reference_and_frame
    th = DriftThresholds(share_warn=0.5, share_severe=1.0)
    window = live[(live.ts >= live.ts.iloc[0] + pd.Timedelta(minutes=120))]
    window = window[window.ts < window.ts.min() + pd.Timedelta(minutes=60)]
    quiet = evaluate_window(window, ref, th)
    assert quiet.level == "none" and quiet.share_drifted == 0.0 and quiet.n_tickers == 3
    assert len(quiet.features) == 2 and len(quiet.recent) == 2
    assert quiet.window_end - quiet.window_start == pd.Timedelta(minutes=59)

    moved = window.assign(x=window["x"] + 4.0, y=window["y"] + 2.0)
    rep = evaluate_window(moved, ref, th, evaluated_at=window.ts.max() + pd.Timedelta(minutes=1))
    assert rep.level == "severe" and set(rep.drifted_features) == {"x", "y"}
    fy = next(f for f in rep.features if f.name == "y")
    assert fy.psi_band == "major" and fy.p_eff < 1e-6 and fy.p_raw <= fy.p_eff

    md = rep.to_markdown()
    assert "| feature |" in md and "| y |" in md and "severe" in md
    data = rep.to_dict()
    assert json.loads(json.dumps(data))["level"] == "severe"
    png = rep.write_chart(tmp_path / "drift.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    tiny = evaluate_window(window.head(10), ref, th)
    assert tiny.level is None and not tiny.evaluated and "not evaluated" in tiny.reason
    with pytest.raises(ValueError, match="lacks"):
        evaluate_window(window.drop(columns="x"), ref, th)


def test_only_the_recent_part_moved(reference_and_frame):
    ref, live = reference_and_frame
    th = DriftThresholds(share_warn=0.5, share_severe=0.5)
    window = live[live.ts < live.ts.min() + pd.Timedelta(minutes=60)].copy()
    end = window.ts.max() + pd.Timedelta(minutes=1)
    late = window.ts >= end - pd.Timedelta(minutes=th.recent_minutes)
    window.loc[late, "y"] += 2.5
    rep = evaluate_window(window, ref, th, evaluated_at=end)
    recent_y = next(f for f in rep.recent if f.name == "y")
    assert recent_y.drifted and recent_y.n == late.sum()
    assert "y" in rep.drifted_features
    off = evaluate_window(window, ref, DriftThresholds(recent_minutes=0), evaluated_at=end)
    assert off.recent == ()


def test_rolling_windows_and_replay(reference_and_frame, tmp_path):
    ref, live = reference_and_frame
    times = evaluation_times(live["ts"], 10)
    assert (times.minute % 10 == 0).all() and times[0] == live.ts.min() + pd.Timedelta(minutes=10)
    t, rows = next(iter(rolling_windows(live, 60, 10, times=times[7:8])))
    sub = live.iloc[rows]
    assert (sub.ts >= t - pd.Timedelta(minutes=60)).all() and (sub.ts < t).all()
    assert len(sub) == 60 * 3
    day = live[live.ts < live.ts.min() + pd.Timedelta(hours=6, minutes=30)]
    steps = replay(day, ref, DriftThresholds())
    assert len(steps) == 39 and all(s.report.level == "none" for s in steps)
    assert not any(s.decision.rollback for s in steps)
    png = plot_history(
        [s.report for s in steps], tmp_path / "history.png", [s.decision for s in steps]
    )
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="probs"):
        replay(day, ref, probs=np.ones((3, 3)))
