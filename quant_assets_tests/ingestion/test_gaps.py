"""Gap detection (pure): session minutes between bars, split per session."""

from __future__ import annotations

import pandas as pd

from quant_assets.ingestion.gaps import (
    Gap,
    coalesce,
    find_gaps,
    ranges_of_minutes,
    session_ranges,
    span_per_session,
)
from quant_assets_tests.ingestion.helpers import ny


def test_nights_weekends_and_holidays_are_not_gaps() -> None:
    # Friday 2026-04-02 15:58 .. Monday 2026-04-06 09:32 (Good Friday 2026-04-03 is a holiday).
    gaps = session_ranges("AAPL", ny("2026-04-02", "15:58"), ny("2026-04-06", "09:32"))
    assert gaps == [
        Gap("AAPL", ny("2026-04-02", "15:58"), ny("2026-04-02", "16:00")),
        Gap("AAPL", ny("2026-04-06", "09:30"), ny("2026-04-06", "09:32")),
    ]
    assert [g.minutes for g in gaps] == [2, 2]
    assert [str(g.day.date()) for g in gaps] == ["2026-04-02", "2026-04-06"]
    assert session_ranges("AAPL", ny("2026-04-02", "16:00"), ny("2026-04-06", "09:30")) == []


def test_early_close_ends_the_session_at_13_00() -> None:
    gaps = session_ranges("KO", ny("2026-11-27", "12:58"), ny("2026-11-30", "09:30"))
    assert gaps == [Gap("KO", ny("2026-11-27", "12:58"), ny("2026-11-27", "13:00"))]


def test_find_gaps_between_bars_and_after_the_cursor() -> None:
    bars = [ny("2026-03-03", t) for t in ("10:00", "10:01", "10:05", "10:06")]
    assert find_gaps("A", None, bars) == [Gap("A", ny("2026-03-03", "10:02"), bars[2])]
    assert find_gaps("A", ny("2026-03-03", "09:58"), bars) == [
        Gap("A", ny("2026-03-03", "09:58"), bars[0]),
        Gap("A", ny("2026-03-03", "10:02"), bars[2]),
    ]
    assert find_gaps("A", bars[0], bars) == [Gap("A", ny("2026-03-03", "10:02"), bars[2])]
    assert find_gaps("A", ny("2026-03-03", "10:07"), []) == []


def test_ranges_coalesce_and_spans() -> None:
    minutes = pd.DatetimeIndex(
        [ny("2026-03-03", t) for t in ("10:00", "10:01", "10:03")] + [ny("2026-03-04", "09:30")]
    )
    ranges = ranges_of_minutes("A", minutes)
    assert [(g.start, g.minutes) for g in ranges] == [
        (minutes[0], 2),
        (minutes[2], 1),
        (minutes[3], 1),
    ]
    merged = coalesce([*ranges, Gap("A", minutes[0] + pd.Timedelta(minutes=1), minutes[2])])
    assert [(g.start, g.minutes) for g in merged] == [(minutes[0], 4), (minutes[3], 1)]
    spans = span_per_session(ranges)
    assert [(g.start, g.end) for g in spans] == [
        (minutes[0], minutes[2] + pd.Timedelta(minutes=1)),
        (minutes[3], minutes[3] + pd.Timedelta(minutes=1)),
    ]
