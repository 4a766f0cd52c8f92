"""The live window of an evaluation: the one rule the monitor and the replay share.

An evaluation at time T (exclusive: the bars that have completed by T) looks at the rows with
ts in [start, T) of the *session of T*, the session whose regular hours hold the minute before
T (``session_open``):

1. start = T - ``window_minutes``, but never before the session's open;
2. when [start, T) holds fewer than ``min_rows`` rows, start moves back to the ts of the
   ``min_rows``-th newest row of the session (all rows of that minute included), again never
   before the open: the newest stretch of the session that meets the floor;
3. when the whole session so far holds fewer than ``min_rows`` rows, the window is the session
   so far and the report says "not evaluated (n rows < min_rows)" (``report.evaluate_window``);
   the decision state machine ignores it.

Why widen instead of skipping: a thin ticker (real thin ETFs trade in 16-35 % of the minutes)
often has fewer than 30 rows in an hour, and a fixed hour skipped 35 % of the evaluations on
real data, all of them in the quietest part of the day. A longer stretch of the same session is
still compared with the right reference, because the reference is the mixture of the
time-of-session buckets the window's rows fall in, whatever the window's length.

Why never before the open: the window would mix two sessions across the overnight gap, and an
evaluation at 09:40 would re-test the previous afternoon, which the previous session's
evaluations have already judged (a drift there would count twice towards a rollback). When
the minute before T is not in a regular session (an evaluation outside market hours), the
window is the plain [T - window_minutes, T), as before this rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.market import calendar

NS_PER_MINUTE = 60_000_000_000
NO_SESSION = np.iinfo(np.int64).min  # the session open of an evaluation outside regular hours


def session_opens(ends: Any) -> np.ndarray:
    """For each evaluation time T, the open (UTC ns) of the session holding the minute before
    T, or ``NO_SESSION`` when that minute is outside regular hours."""
    idx = calendar.utc_index(ends).as_unit("ns")
    last = pd.Series(idx - pd.Timedelta(minutes=1))
    out = np.full(len(idx), NO_SESSION, dtype=np.int64)
    labels = calendar.session_labels(last)
    for day in labels.unique():
        if not calendar.is_session(day):
            continue
        open_, close = calendar.session_bounds(day)
        inside = ((labels == day) & (last >= open_) & (last < close)).to_numpy()
        out[inside] = open_.as_unit("ns").value
    return out


def window_positions(
    sorted_ns: np.ndarray, end_ns: int, open_ns: int, window_minutes: int, min_rows: int
) -> tuple[int, int]:
    """[lo, hi) in ``sorted_ns`` (the rows' ts, sorted) of the window ending at ``end_ns`` of
    the session that opened at ``open_ns`` (the module docstring's rule)."""
    hi = int(np.searchsorted(sorted_ns, end_ns, side="left"))
    base = end_ns - window_minutes * NS_PER_MINUTE
    if open_ns == NO_SESSION:
        return int(np.searchsorted(sorted_ns, base, side="left")), hi
    first = int(np.searchsorted(sorted_ns, open_ns, side="left"))
    lo = max(first, int(np.searchsorted(sorted_ns, base, side="left")))
    if hi - lo >= min_rows:
        return lo, hi
    lo = max(first, hi - min_rows)
    if lo < hi:  # every row of the oldest minute kept (all tickers of that minute)
        lo = int(np.searchsorted(sorted_ns, sorted_ns[lo], side="left"))
    return lo, hi


def live_window(
    features: pd.DataFrame, end: pd.Timestamp, thresholds: DriftThresholds
) -> tuple[pd.Timestamp, np.ndarray]:
    """(start, positional indices in time order) of the rows of ``features`` (any order) in the
    live window [start, end); ``features`` should hold the session's rows from its open."""
    ts = calendar.utc_index(features["ts"]).as_unit("ns").asi8
    order = np.argsort(ts, kind="stable")
    sorted_ns = ts[order]
    end_ns = int(calendar.utc_index([end]).as_unit("ns").asi8[0])
    open_ns = int(session_opens([end])[0])
    lo, hi = window_positions(
        sorted_ns, end_ns, open_ns, thresholds.window_minutes, thresholds.min_rows
    )
    start_ns = max(end_ns - thresholds.window_minutes * NS_PER_MINUTE, open_ns)
    if lo < hi:
        start_ns = min(start_ns, int(sorted_ns[lo]))
    return pd.Timestamp(start_ns, tz="UTC"), order[lo:hi]


def read_start(end: pd.Timestamp, thresholds: DriftThresholds) -> pd.Timestamp:
    """The earliest ts the window ending at ``end`` may reach: the session's open (or the plain
    window's start outside regular hours); read the rows from there."""
    open_ns = int(session_opens([end])[0])
    if open_ns == NO_SESSION:
        return calendar.utc_index([end])[0] - pd.Timedelta(minutes=thresholds.window_minutes)
    return pd.Timestamp(open_ns, tz="UTC")
