"""The decision state machine: persistence (K), latch, cool-down, JSON state (hypothesis)."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quant_assets.drift.severity import DriftState, advance
from quant_assets.drift.thresholds import DriftThresholds

T0 = pd.Timestamp("2026-03-02 15:00", tz="UTC")
LEVEL = st.sampled_from(["none", "warn", "severe", "severe", "severe", None])


def run(levels, k=3, cooldown=60, step=10, state=None):
    """Feed levels at ``step``-minute intervals; return the decisions."""
    th = DriftThresholds(persistence=k, cooldown_minutes=cooldown)
    st_ = state or DriftState()
    out = []
    for i, level in enumerate(levels):
        d = advance(st_, level, T0 + pd.Timedelta(minutes=step * i), th)
        st_ = d.state
        out.append(d)
    return out


def test_single_severe_blip_never_rolls_back():
    levels = ["none", "severe", "none", "severe", "warn", "severe", "severe", "none"] * 5
    assert not any(d.rollback for d in run(levels, k=3))


def test_k_consecutive_severe_roll_back_once_and_latch():
    decisions = run(["none"] + ["severe"] * 200, k=3, cooldown=60)
    rolled = [i for i, d in enumerate(decisions) if d.rollback]
    assert rolled == [3]  # the third consecutive severe evaluation
    assert "latched" in decisions[-1].reason
    assert decisions[-1].state.rollbacks == 1


def test_dips_below_severe_do_not_rearm():
    # a persistent regime whose level dips to warn / none now and then (thin windows at the open)
    levels = (["severe"] * 5 + ["warn", "none"]) * 30
    decisions = run(levels, k=3, cooldown=60)
    assert sum(d.rollback for d in decisions) == 1


def test_cleared_drift_rearms_but_cooldown_still_applies():
    # rollback at index 2 (t = 20 min); K = 3 clear evaluations (3..5) re-arm; severe again from
    # 6: K is reached at 8 (t = 80), just when the 60-minute cool-down ends.
    levels = ["severe"] * 3 + ["none"] * 3 + ["severe"] * 10
    decisions = run(levels, k=3, cooldown=60)
    assert [i for i, d in enumerate(decisions) if d.rollback] == [2, 8]
    assert "latched" in decisions[4].reason
    assert "re-armed" in decisions[5].reason
    # a 100-minute cool-down (until t = 120) holds the second rollback back to index 12
    longer = run(levels, k=3, cooldown=100)
    assert [i for i, d in enumerate(longer) if d.rollback] == [2, 12]
    assert "cool-down" in longer[11].reason


def test_not_evaluated_windows_neither_extend_nor_break_the_streak():
    decisions = run(["severe", None, "severe", None, None, "severe"], k=3)
    assert [d.rollback for d in decisions] == [False] * 5 + [True]


def test_repeated_timestamp_is_ignored():
    th = DriftThresholds(persistence=2)
    d1 = advance(DriftState(), "severe", T0, th)
    d2 = advance(d1.state, "severe", T0, th)  # the same window read again by a sensor tick
    assert not d2.rollback and d2.state == d1.state and "ignored" in d2.reason
    d3 = advance(d2.state, "severe", T0 + pd.Timedelta(minutes=1), th)
    assert d3.rollback


def test_model_version_change_restarts_the_streak():
    th = DriftThresholds(persistence=2)
    d = advance(DriftState(), "severe", T0, th, model_version="v1")
    d = advance(d.state, "severe", T0 + pd.Timedelta(minutes=10), th, model_version="v2")
    assert not d.rollback and d.consecutive_severe == 1
    d = advance(d.state, "severe", T0 + pd.Timedelta(minutes=20), th, model_version="v2")
    assert d.rollback


def test_state_json_round_trip_and_empty_cursor():
    decisions = run(["severe"] * 4 + ["warn"], k=2)
    for d in decisions:
        assert DriftState.from_json(d.state.to_json()) == d.state
    assert DriftState.from_json(None) == DriftState() == DriftState.from_json("")
    with pytest.raises(ValueError, match="level"):
        advance(DriftState(), "bad", T0, DriftThresholds())  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    levels=st.lists(LEVEL, min_size=1, max_size=80),
    k=st.integers(1, 4),
    cooldown=st.integers(0, 240),
    step=st.integers(1, 30),
)
def test_decision_properties(levels, k, cooldown, step):
    th = DriftThresholds(persistence=k, cooldown_minutes=cooldown)
    state = DriftState()
    rollbacks: list[int] = []
    for i, level in enumerate(levels):
        at = T0 + pd.Timedelta(minutes=step * i)
        d = advance(state, level, at, th)
        # the JSON cursor carries everything: the same step from the parsed state agrees
        again = advance(DriftState.from_json(state.to_json()), level, at, th)
        assert again == d
        state = d.state
        if d.rollback:
            rollbacks.append(i)
            evaluated = [x for x in levels[: i + 1] if x is not None]
            assert evaluated[-k:] == ["severe"] * k  # K consecutive severe evaluations
    times = [step * i for i in rollbacks]
    # never more than one rollback per cool-down
    assert all(b - a >= cooldown for a, b in itertools.pairwise(times))
    # latch: between two rollbacks K consecutive evaluations without drift
    for a, b in itertools.pairwise(rollbacks):
        between = "".join("n" if x == "none" else "x" for x in levels[a + 1 : b] if x is not None)
        assert "n" * k in between
    # without K consecutive severe evaluations there is no rollback at all
    evaluated = [x for x in levels if x is not None]
    runs = "".join("s" if x == "severe" else "." for x in evaluated)
    if "s" * k not in runs:
        assert not rollbacks
    assert state.rollbacks == len(rollbacks)
