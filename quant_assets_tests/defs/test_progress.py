"""Progress lines: at most one per interval, and always the last."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from quant_assets.defs.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines:
    def __init__(self, clock: Clock) -> None:
        self.clock, self.at = clock, [0.0]
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)
        self.at.append(self.clock.now)


@given(st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=40))
def test_a_line_per_interval_and_always_the_last(gaps: list[float]) -> None:
    clock = Clock()
    log = Lines(clock)
    progress = ProgressLog(log, len(gaps), every_s=10.0, clock=clock)  # type: ignore[arg-type]
    for i, gap in enumerate(gaps, start=1):
        clock.now += gap
        progress.step(i, f"item {i}")
    n = len(gaps)
    assert log.lines[-1] == f"[{n}/{n}] item {n}"
    spacing = [b - a for a, b in itertools.pairwise(log.at[:-1])]
    assert all(s >= 10.0 for s in spacing)  # every line but the last waited its interval
    assert len(log.lines) <= 1 + sum(gaps) / 10.0
