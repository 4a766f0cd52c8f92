"""Replay a feature frame through the live monitoring path: rolling windows -> reports -> decisions.

An evaluation at time T (a multiple of ``step_minutes`` on the wall clock: 09:40, 09:50, ...)
sees the bars that have *completed* by T, i.e. rows with ts in [T - window_minutes, T) (a bar's
ts is the start of its minute), widened back within the session when that holds fewer than
``min_rows`` rows (``drift.window``: the same rule the live monitor applies). This is what the
sensor does live every ``step_minutes``; the replay lets tests and the calibration benchmark run
the identical code over history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.drift.reference import ConceptBaseline, ReferenceStats
from quant_assets.drift.report import DriftReport, evaluate_window
from quant_assets.drift.severity import DriftDecision, DriftState, advance
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.drift.window import NS_PER_MINUTE, session_opens, window_positions
from quant_assets.market.calendar import utc_index


def evaluation_times(ts: Any, step_minutes: int) -> pd.DatetimeIndex:
    """The evaluation times T that close a step containing at least one row of ``ts``."""
    idx = utc_index(ts).as_unit("ns")
    step = step_minutes * NS_PER_MINUTE
    ends = np.unique(idx.asi8 // step * step + step)
    return pd.DatetimeIndex(ends.astype("datetime64[ns]"), tz="UTC")


def rolling_windows(
    features: pd.DataFrame,
    window_minutes: int = 60,
    step_minutes: int = 10,
    times: Any = None,
    min_rows: int = 1,
) -> Iterator[tuple[pd.Timestamp, np.ndarray]]:
    """(T, positional row indices of ``features`` in the live window ending at T) for each T,
    in time order: [T - window, T), widened back within T's session to ``min_rows`` rows
    (``drift.window``; the default 1 never widens a window that has a row).

    ``times`` defaults to ``evaluation_times(features.ts, step_minutes)``.
    """
    ts = utc_index(features["ts"]).as_unit("ns").asi8
    order = np.argsort(ts, kind="stable")
    sorted_ts = ts[order]
    when = evaluation_times(features["ts"], step_minutes) if times is None else times
    when = utc_index(when).as_unit("ns")
    opens = session_opens(when)
    for t, t_ns, open_ns in zip(when, when.asi8, opens, strict=True):
        lo, hi = window_positions(sorted_ts, int(t_ns), int(open_ns), window_minutes, min_rows)
        yield t, order[lo:hi]


@dataclass(frozen=True)
class ReplayStep:
    """One evaluation of a replay."""

    at: pd.Timestamp
    report: DriftReport
    decision: DriftDecision


def replay(
    features: pd.DataFrame,
    reference: ReferenceStats,
    thresholds: DriftThresholds | None = None,
    probs: np.ndarray | None = None,
    baseline: ConceptBaseline | None = None,
    state: DriftState | None = None,
    times: Any = None,
) -> list[ReplayStep]:
    """Evaluate every window of ``features`` (and the aligned rows of ``probs``) in time order
    and run the decision state machine over the levels; ``state`` is the starting state."""
    th = thresholds or DriftThresholds()
    if probs is not None and len(probs) != len(features):
        raise ValueError("probs must have one row per feature row")
    st = state or DriftState()
    out: list[ReplayStep] = []
    windows = rolling_windows(features, th.window_minutes, th.step_minutes, times, th.min_rows)
    for t, rows in windows:
        window = features.iloc[rows]
        report = evaluate_window(
            window, reference, th, None if probs is None else probs[rows], baseline, t
        )
        decision = advance(st, report.level, t, th, note=report.reason)
        st = decision.state
        out.append(ReplayStep(t, report, decision))
    return out
