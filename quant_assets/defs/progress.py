"""Progress lines for a run's loop over tickers: at most one run-log line every few seconds, and
always the last. Each line is an event Dagster stores (13–20 ms apiece on Dagster's own SQLite
and PostgreSQL storages, a few on ours), so a line per ticker would cost more than a short run's
work; what each ticker got is in the materialization's ``per_ticker`` metadata, and warnings
are logged as they happen."""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg

PROGRESS_EVERY_S = 10.0


class ProgressLog:
    """``step(i, message)`` after the i-th of ``total`` items logs ``[i/total] message`` when
    ``every_s`` seconds have passed since the last line, or when i is the last."""

    def __init__(
        self,
        log: dg.DagsterLogManager,
        total: int,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._total, self._every_s, self._clock = log, total, every_s, clock
        self._last = clock()

    def step(self, i: int, message: str) -> None:
        """Report item ``i`` (1-based) done, if it is time to."""
        now = self._clock()
        if i >= self._total or now - self._last >= self._every_s:
            self._log.info(f"[{i}/{self._total}] {message}")
            self._last = now
