"""The synthetic market through the live monitoring path: quiet sessions, then a planted shift.

Reference: 10 quiet sessions of features (the "training" rows); concept baseline: the stand-in
classifier's probabilities on the next 2 sessions (no trained model here, see helpers.py).
Replayed: 5 more quiet sessions, then a session with a 3x volatility regime shift planted at
12:07 New York (157 minutes after the open, off the 10-minute evaluation grid), then one more
session of the new regime. 60-minute windows (+ their newest 20 minutes) every 10 minutes.

Detection power grows with the tickers pooled in a window: with the default 20 tickers the
first severe evaluation comes ~25 minutes after the shift; with 3 tickers the same defaults
need ~70 minutes (second test) — still no false alarm and still exactly one rollback.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from quant_assets.drift import replay
from quant_assets.drift.reference import concept_baseline_from_probs, reference_stats_from_frame
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.market import calendar
from quant_assets_tests.drift.helpers import market_features, sessions_slice, standin_probs

log = logging.getLogger(__name__)

FIRST = "2026-03-02"
SHIFT_MINUTE = 157  # after the open of the shift session


def run_scenario(n_tickers: int, seed: int = 7):
    tickers = tuple(f"T{k:02d}" for k in range(n_tickers))
    days = calendar.sessions(FIRST, "2026-12-31")[:20]
    shift = calendar.session_bounds(days[18])[0] + pd.Timedelta(minutes=SHIFT_MINUTE)
    feats = market_features(tickers, FIRST, 20, seed=seed, shift_at=shift)
    ref = reference_stats_from_frame(sessions_slice(feats, days[1], days[10]), FEATURE_SPEC.columns)
    val = sessions_slice(feats, days[11], days[12]).sort_values(["ticker", "ts"])
    base = concept_baseline_from_probs(
        standin_probs(val, ref), window=60, groups=val["ticker"], ts=val["ts"]
    )
    live = sessions_slice(feats, days[13], days[19])
    th = DriftThresholds()
    steps = replay(live, ref, th, standin_probs(live, ref), base)
    before = [s for s in steps if s.at <= shift]
    after = [s for s in steps if s.at > shift]
    quiet_sessions = {calendar.session_of(s.at - pd.Timedelta(minutes=1)) for s in before}
    return th, shift, before, after, quiet_sessions


def minutes_after(shift, steps, pred):
    hit = next((s for s in steps if pred(s)), None)
    return None if hit is None else (hit.at - shift).total_seconds() / 60


@pytest.mark.slow
def test_quiet_sessions_then_planted_shift_20_tickers():
    th, shift, before, after, quiet = run_scenario(20)
    assert len(quiet) >= 6  # five quiet sessions and the shift session's morning
    levels = pd.Series([s.report.level for s in before])
    warn_rate = float((levels == "warn").mean())
    severe_rate = float((levels == "severe").mean())
    log.info(f"null: {len(levels)} evaluations, warn {warn_rate:.1%}, severe {severe_rate:.1%}")
    assert severe_rate == 0.0 and warn_rate <= 0.02
    assert not any(s.decision.rollback for s in before)

    first_severe = minutes_after(shift, after, lambda s: s.report.level == "severe")
    rollback = minutes_after(shift, after, lambda s: s.decision.rollback)
    log.info(f"shift: first severe after {first_severe} min, rollback after {rollback} min")
    assert first_severe is not None and first_severe <= 30
    assert rollback is not None and rollback >= first_severe + (th.persistence - 1) * 10
    # exactly one rollback over the rest of the shift session and the whole next session
    assert sum(s.decision.rollback for s in after) == 1
    assert after[-1].at - shift > pd.Timedelta(hours=20)
    assert "latched" in after[-1].decision.reason or after[-1].report.level != "severe"
    # the concept stand-in sees it too (more confident on 3x larger inputs)
    concept = minutes_after(
        shift, after, lambda s: s.report.concept is not None and s.report.concept.level != "none"
    )
    assert concept is not None and concept <= 60


@pytest.mark.slow
def test_few_tickers_detect_later_but_never_flap():
    _, shift, before, after, _ = run_scenario(3, seed=3)
    assert all(s.report.level != "severe" for s in before)
    rollback = minutes_after(shift, after, lambda s: s.decision.rollback)
    assert rollback is not None and rollback <= 6.5 * 60
    assert sum(s.decision.rollback for s in after) == 1
