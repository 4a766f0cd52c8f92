"""The live window: widened back within the session to ``min_rows`` rows, never across its open."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.drift import replay
from quant_assets.drift.reference import reference_stats_from_frame
from quant_assets.drift.replay import rolling_windows
from quant_assets.drift.report import evaluate_window
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.drift.window import NO_SESSION, live_window, read_start, session_opens
from quant_assets.market import calendar
from quant_assets_tests.drift.helpers import minute_frame

DAYS = calendar.sessions("2026-03-02", "2026-03-31")[:2]
OPEN = calendar.session_bounds(DAYS[1])[0]


def ny(day: pd.Timestamp, clock: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day.date()} {clock}", tz=calendar.MARKET_TZ).tz_convert("UTC")


def thin_frame(tickers=("A",), every=5) -> pd.DataFrame:
    """A bar every ``every`` minutes from each open, two sessions, per ticker."""
    ts = np.concatenate([calendar.session_minutes(d)[::every] for d in DAYS])
    rng = np.random.default_rng(0)
    frames = [pd.DataFrame({"ticker": t, "ts": ts, "x": rng.normal(size=len(ts))}) for t in tickers]
    return pd.concat(frames, ignore_index=True)


def window_at(frame: pd.DataFrame, at: pd.Timestamp, th: DriftThresholds) -> pd.DataFrame:
    _, rows = next(rolling_windows(frame, th.window_minutes, th.step_minutes, [at], th.min_rows))
    return frame.iloc[rows]


def test_session_opens() -> None:
    times = [ny(DAYS[1], c) for c in ("09:30", "09:31", "12:00", "16:00", "16:01")]
    opens = session_opens(times)
    assert opens[0] == NO_SESSION  # nothing of the session has completed yet
    assert (opens[1:4] == OPEN.value).all()
    assert opens[4] == NO_SESSION  # after the close: the plain window
    saturday = pd.Timestamp("2026-03-07 12:00", tz=calendar.MARKET_TZ)
    assert session_opens([saturday])[0] == NO_SESSION
    th = DriftThresholds()
    assert read_start(ny(DAYS[1], "12:00"), th) == OPEN
    assert read_start(ny(DAYS[1], "16:01"), th) == ny(DAYS[1], "15:01")


def test_a_full_hour_is_not_widened() -> None:
    frame = minute_frame(tickers=("A", "B"), sessions=2, first="2026-03-02")
    th = DriftThresholds()
    at = ny(DAYS[1], "11:00")
    win = window_at(frame, at, th)
    assert len(win) == 120 and win["ts"].min() == ny(DAYS[1], "10:00")
    report = evaluate_window(win, reference_stats_from_frame(frame, ["x"]), th, evaluated_at=at)
    assert report.evaluated and not report.widened


def test_thin_hour_widens_back_to_the_floor_within_the_session() -> None:
    frame = thin_frame()  # 12 rows an hour: the plain hour is below the floor of 30
    th = DriftThresholds()
    at = ny(DAYS[1], "13:00")
    win = window_at(frame, at, th)
    assert len(win) == th.min_rows
    assert win["ts"].min() == ny(DAYS[1], "10:30") and win["ts"].max() < at
    # the newest stretch that meets the floor: one row less would not
    assert ((frame["ts"] >= ny(DAYS[1], "10:35")) & (frame["ts"] < at)).sum() < th.min_rows
    # the live path's function applies the same rule (and reports the start)
    start, rows = live_window(frame.sample(frac=1.0, random_state=1), at, th)
    assert start == ny(DAYS[1], "10:30") and len(rows) == th.min_rows
    report = evaluate_window(win, reference_stats_from_frame(frame, ["x"]), th, evaluated_at=at)
    assert report.evaluated and report.widened and report.to_dict()["widened"] is True
    assert "widened within the session beyond 60 min to reach 30 rows" in report.to_markdown()


def test_widening_keeps_every_ticker_of_the_oldest_minute() -> None:
    frame = thin_frame(tickers=("A", "B"))
    th = DriftThresholds(min_rows=31)
    win = window_at(frame, ny(DAYS[1], "13:00"), th)
    assert len(win) == 32 and (win["ts"] == win["ts"].min()).sum() == 2


def test_never_before_the_open_and_not_evaluated_below_the_floor() -> None:
    frame = thin_frame()
    th = DriftThresholds()
    at = ny(DAYS[1], "10:00")  # 6 rows so far today; yesterday's afternoon stays out
    win = window_at(frame, at, th)
    assert len(win) == 6 and win["ts"].min() == OPEN
    longer = DriftThresholds(window_minutes=24 * 60, recent_minutes=0)
    assert window_at(frame, at, longer)["ts"].min() == OPEN  # not even a day-long window
    report = evaluate_window(win, reference_stats_from_frame(frame, ["x"]), th, evaluated_at=at)
    assert report.level is None and report.reason == "not evaluated (6 rows < 30)"
    assert "not evaluated" in report.to_markdown() and report.to_dict()["level"] is None


def test_the_state_machine_ignores_windows_below_the_floor() -> None:
    frame = thin_frame(tickers=("A", "B"))
    reference = reference_stats_from_frame(frame[frame["ts"] < OPEN], ["x"])
    live = frame[frame["ts"] >= OPEN].reset_index(drop=True)
    live["x"] += 5.0  # drifted from the first bar on
    th = DriftThresholds(share_warn=0.5, share_severe=0.5, persistence=2, recent_minutes=0)
    steps = replay(live, reference, th)
    first = steps[0]  # 09:40: 4 rows since the open
    assert first.report.level is None and first.report.n_rows == 4
    assert first.decision.reason == "not evaluated (4 rows < 30); streak unchanged"
    assert first.decision.state.consecutive_severe == 0 and first.decision.state.evaluations == 0
    evaluated = [s for s in steps if s.report.level is not None]
    assert evaluated[0].at == ny(DAYS[1], "10:50")  # 16 bars x 2 tickers
    assert [s.decision.rollback for s in evaluated[:2]] == [False, True]
    assert any(s.report.widened for s in evaluated)


@pytest.mark.parametrize("clock", ["09:40", "11:00", "15:50"])
def test_live_and_replay_choose_the_same_rows(clock: str) -> None:
    frame = thin_frame(tickers=("A", "B", "C"), every=7)
    th = DriftThresholds()
    at = ny(DAYS[1], clock)
    _, rows = live_window(frame, at, th)
    pd.testing.assert_frame_equal(frame.iloc[rows], window_at(frame, at, th))
