"""Gap detection: which regular-session minutes lie between two bars (pure, no I/O).

A *gap* is a half-open UTC range ``[start, end)`` of regular-session minutes of one ticker with
no bar stored. Gaps never cross a session boundary: a range that spans the night (or days) is
split into one gap per session, so every gap belongs to exactly one ``raw_bars`` day × ticker
partition. Minutes outside regular sessions (nights, weekends, holidays) are never gaps.

Whether a gap is a *missed* minute (the source has a bar we do not) or a *no-trade* minute (the
source has no bar either) is not decided here: the backfill queue confirms each gap against the
source later (``backfill_queue.assess``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from quant_assets.market import calendar

MINUTE = pd.Timedelta(minutes=1)


class Gap(NamedTuple):
    """Session minutes ``[start, end)`` (UTC bar starts) of one ticker with no bar."""

    ticker: str
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def minutes(self) -> int:
        """How many one-minute bars the gap spans."""
        return int((self.end - self.start) / MINUTE)

    @property
    def day(self) -> pd.Timestamp:
        """The session (New York date label) the gap belongs to."""
        return calendar.session_of(self.start)


def session_ranges(ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> list[Gap]:
    """The trading minutes in ``[start, end)`` as contiguous per-session gaps (maybe none)."""
    minutes = calendar.trading_minutes(start, end)
    return ranges_of_minutes(ticker, minutes)


def ranges_of_minutes(ticker: str, minutes: Sequence[pd.Timestamp] | pd.DatetimeIndex) -> list[Gap]:
    """Group sorted UTC minute starts into runs of consecutive minutes, split per session."""
    index = pd.DatetimeIndex(minutes)
    if len(index) == 0:
        return []
    index = index.sort_values().unique()
    values = index.as_unit("ns").asi8
    days = calendar.session_labels(pd.Series(index)).to_numpy()
    breaks = np.flatnonzero((np.diff(values) != MINUTE.value) | (days[1:] != days[:-1])) + 1
    bounds = zip(np.r_[0, breaks], np.r_[breaks, len(index)], strict=True)
    return [Gap(ticker, index[a], index[b - 1] + MINUTE) for a, b in bounds]


def find_gaps(
    ticker: str, after: pd.Timestamp | None, bar_starts: Iterable[pd.Timestamp]
) -> list[Gap]:
    """Gaps before and between sorted new bars, given that every minute before ``after`` is known.

    ``after`` is the poller's cursor: the end of the last bar accounted for (its start + 1 min),
    or ``None`` when nothing is known yet (then only gaps *between* the new bars are found). A
    jump of more than one session minute between consecutive bars is a gap; nights are not.
    """
    gaps: list[Gap] = []
    expected = after
    for ts in bar_starts:
        if expected is not None and ts > expected:
            gaps += session_ranges(ticker, expected, ts)
        expected = ts + MINUTE if expected is None else max(expected, ts + MINUTE)
    return gaps


def coalesce(gaps: Iterable[Gap]) -> list[Gap]:
    """Merge overlapping or touching gaps of the same ticker and session; sorted."""
    out: list[Gap] = []
    for gap in sorted(gaps, key=lambda g: (g.ticker, g.start)):
        last = out[-1] if out else None
        if (
            last is not None
            and last.ticker == gap.ticker
            and gap.start <= last.end
            and gap.day == last.day
        ):
            out[-1] = Gap(last.ticker, last.start, max(last.end, gap.end))
        else:
            out.append(gap)
    return out


def span_per_session(gaps: Iterable[Gap]) -> list[Gap]:
    """One gap per (ticker, session) spanning all given gaps there (a coarser, bounded list)."""
    spans: dict[tuple[str, pd.Timestamp], Gap] = {}
    for gap in gaps:
        key = (gap.ticker, gap.day)
        old = spans.get(key)
        spans[key] = (
            gap
            if old is None
            else Gap(gap.ticker, min(old.start, gap.start), max(old.end, gap.end))
        )
    return sorted(spans.values(), key=lambda g: (g.ticker, g.start))
