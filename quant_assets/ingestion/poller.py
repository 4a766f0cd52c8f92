"""The live poller service (the plan's ``price_ingestor.py``): ``quant ingest``.

Every poll interval (30 s ± jitter by default) during market hours it asks the source for the
newest bars of every ticker, validates them and upserts them into ``price_data``. It keeps, per
ticker, a *cursor*: the end of the last bar accounted for (stored, buffered, or queued as a gap),
restored from the database on start. Only complete minutes are asked for (``end`` = the current
minute), so a stored bar is final.

Fetch window
    ``[max(cursor, now - lookback), now)``: small, polite requests. On first contact with a
    ticker that has no stored bar the window starts at the current session's open.

Gaps
    A jump of more than one *session* minute between the cursor and the next bar (nights and
    holidays are not gaps) goes to the persistent backfill queue as one entry per session
    (``gaps.find_gaps``). Minutes older than the lookback that were never fetched (the source
    was failing, the poller was down) surface this way. When a session closes, minutes after
    the cursor up to the close are queued too (the end-of-session sweep). The queue does not
    know whether a minute was *missed* or simply had *no trade*: the backfill sensor settles
    that against the source (``backfill_queue.assess``).

Errors
    A failing ticker is logged and skipped (the next poll's window covers it again). When every
    ticker of a round fails the source is taken to be down and the poller backs off
    exponentially (tenacity's ``wait_exponential``: interval × 2^(n-1), capped). No error is
    retried in a tight loop: the next attempt is always the next scheduled poll.

Database outages
    Bars go through a bounded in-memory buffer: written in one upsert per round when the
    database answers, held (and retried with exponential backoff) while it does not. When the
    buffer is full the oldest bars are dropped and their minutes become gaps, so nothing is lost
    silently. Gaps found while the database is down wait in memory too (coalesced per session
    beyond ``max_pending_gaps``). Nothing the database raises stops the loop.

Outside market hours it sleeps until the next session opens (waking earlier only to retry a
pending database write). SIGINT / SIGTERM stop it after the current step, with a last flush.
Time and sleep are injected, so ``replay`` runs the same loop on a simulated clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from tenacity import RetryCallState, Retrying, wait_exponential

from quant_assets.ingestion.backfill_queue import enqueue_gaps
from quant_assets.ingestion.gaps import (
    MINUTE,
    Gap,
    find_gaps,
    ranges_of_minutes,
    session_ranges,
    span_per_session,
)
from quant_assets.market import calendar
from quant_assets.market.bar_validation import BarValidationError, validate_bars
from quant_assets.market.frames import BAR_COLUMNS, empty_bars
from quant_assets.market.sources import MarketSource
from quant_assets.settings import Settings
from quant_assets.storage.bars import last_bar_times, write_bars, write_quarantine
from quant_assets.storage.database import DatabaseUnavailableError, is_outage, safe_url

log = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]
Sleep = Callable[[float], None]
# Told about every frame of bars just written (and the source's name); returns events reported.
# The Dagster layer passes one that records runless raw_bars materializations.
BarsReporter = Callable[[pd.DataFrame, str], int]
EngineFactory = Callable[[], Engine]

# Errors that say "the network or the service", not "this ticker's data": no traceback needed.
_TRANSIENT = (OSError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class PollerConfig:
    """How the poller polls; the defaults are the polite production values."""

    tickers: tuple[str, ...]
    poll_interval_s: float = 30.0
    poll_jitter_s: float = 3.0
    lookback_minutes: int = 5
    close_grace_s: float = 120.0  # keep polling this long after the close for the last bars
    source_backoff_max_s: float = 900.0
    db_backoff_max_s: float = 300.0
    buffer_max_rows: int = 200_000  # ~25 sessions of 20 tickers
    max_quarantine_rows: int = 10_000
    max_pending_gaps: int = 10_000
    # After a longer outage only this many sessions before the current one are queued as gaps
    # (backfilling months minute-gap by minute-gap would hold the big-tables pool for hours);
    # the warning names the `quant import` that loads the older ones in one run.
    max_backfill_sessions: int = 10
    summary_every_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.tickers:
            raise ValueError("the poller needs at least one ticker")
        if self.poll_interval_s <= 0 or self.lookback_minutes < 1 or self.buffer_max_rows < 1:
            raise ValueError(
                "poll_interval_s must be > 0, lookback_minutes >= 1 and buffer_max_rows >= 1"
            )
        if not 0 <= self.poll_jitter_s < self.poll_interval_s:
            raise ValueError("poll_jitter_s must be in [0, poll_interval_s)")
        if self.max_backfill_sessions < 0:
            raise ValueError("max_backfill_sessions must be >= 0")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> PollerConfig:
        """The configuration from QUANT_* settings (tickers, poll interval and jitter)."""
        values: dict[str, object] = {
            "tickers": tuple(settings.tickers),
            "poll_interval_s": settings.poll_interval_s,
            "max_backfill_sessions": settings.poller_max_backfill_sessions,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "poll_jitter_s" not in values:  # jitter stays below half the (overridden) interval
            interval = float(values["poll_interval_s"])  # type: ignore[arg-type]
            values["poll_jitter_s"] = min(settings.poll_jitter_s, interval / 2)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class PollerStats:
    """Counters of one poller run (also logged in the periodic summary)."""

    rounds: int = 0
    source_calls: int = 0
    source_errors: int = 0
    source_timeouts: int = 0
    source_backoffs: int = 0
    bars_received: int = 0
    bars_quarantined: int = 0
    bars_written: int = 0
    bars_buffered: int = 0  # bars whose first write failed: they waited in the buffer
    buffer_peak: int = 0
    bars_dropped: int = 0  # pushed out of a full buffer (their minutes were queued as gaps)
    bars_lost_at_exit: int = 0
    db_errors: int = 0
    gaps_found: int = 0
    gap_minutes: int = 0
    gaps_queued: int = 0  # new backfill_queue rows
    events_reported: int = 0
    event_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class Backoff:
    """Exponential delays for consecutive failures, computed by tenacity's ``wait_exponential``.

    ``delay(n)`` = base × 2^(n-1), capped at ``max_s``. The loop sleeps it with its own (possibly
    simulated) sleep, which is why tenacity's strategy is used without its retry loop.
    """

    def __init__(self, base_s: float, max_s: float) -> None:
        self._wait = wait_exponential(multiplier=base_s, max=max_s)
        self._state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        self._state.attempt_number = max(1, failures)
        return float(self._wait(self._state))


class BarBuffer:
    """Validated bars waiting to be written, at most ``max_rows``; the oldest are dropped first."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._frames: deque[pd.DataFrame] = deque()
        self.rows = 0
        self.unattempted = 0  # rows added since the last write attempt

    def add(self, bars: pd.DataFrame) -> pd.DataFrame | None:
        """Append bars; return the rows dropped to stay within ``max_rows`` (None if none)."""
        if bars.empty:
            return None
        self._frames.append(bars)
        self.rows += len(bars)
        self.unattempted += len(bars)
        dropped: list[pd.DataFrame] = []
        while self.rows > self.max_rows:
            excess = self.rows - self.max_rows
            oldest = self._frames[0]
            if len(oldest) <= excess:
                dropped.append(self._frames.popleft())
                self.rows -= len(oldest)
            else:
                dropped.append(oldest.iloc[:excess])
                self._frames[0] = oldest.iloc[excess:]
                self.rows -= excess
        self.unattempted = min(self.unattempted, self.rows)
        return pd.concat(dropped, ignore_index=True) if dropped else None

    def snapshot(self) -> pd.DataFrame:
        """Everything buffered, one row per (ticker, ts) (the newest copy wins)."""
        if not self._frames:
            return empty_bars()
        frame = pd.concat(list(self._frames), ignore_index=True)
        return frame.drop_duplicates(["ticker", "ts"], keep="last").reset_index(drop=True)

    def clear(self) -> None:
        """Forget everything (after a successful write)."""
        self._frames.clear()
        self.rows = 0
        self.unattempted = 0


@dataclass
class _DbState:
    engine: Engine | None = None
    failures: int = 0
    retry_at: pd.Timestamp | None = None
    restored: bool = False


@dataclass
class _Pending:
    gaps: list[Gap] = field(default_factory=list)
    quarantine: list[pd.DataFrame] = field(default_factory=list)
    quarantine_rows: int = 0


class Poller:
    """The polling service; see the module docstring. ``run()`` blocks until stopped."""

    def __init__(
        self,
        config: PollerConfig,
        source: MarketSource,
        engine_factory: EngineFactory,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        reporter: BarsReporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.stats = PollerStats()
        self._engine_factory = engine_factory
        self._clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._reporter = reporter
        self._rng = rng or random.Random()
        self._source_backoff = Backoff(config.poll_interval_s, config.source_backoff_max_s)
        self._db_backoff = Backoff(config.poll_interval_s, config.db_backoff_max_s)
        self._buffer = BarBuffer(config.buffer_max_rows)
        self._pending = _Pending()
        self._db = _DbState()
        self._cursor: dict[str, pd.Timestamp] = {}
        self._first_start: dict[str, pd.Timestamp] = {}  # where tracking began (see _restore)
        self._polled_sessions: set[pd.Timestamp] = set()
        self._swept: set[pd.Timestamp] = set()
        self._source_failures = 0
        self._unexpected_errors = 0
        self._last_summary: pd.Timestamp | None = None
        self._sleeping_until: pd.Timestamp | None = None

    # --- control ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current step, flush, and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    @contextlib.contextmanager
    def handle_signals(self) -> Iterator[None]:
        """Within the block SIGINT / SIGTERM stop the poller cleanly (main thread only).

        After the first signal the previous handlers are back, so a second Ctrl-C interrupts
        at once.
        """
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.getsignal(sig) for sig in signals}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        def on_signal(signum: int, _frame: object) -> None:
            log.info("received %s: stopping after the current step", signal.Signals(signum).name)
            self.stop()
            restore()

        for sig in signals:
            signal.signal(sig, on_signal)
        try:
            yield
        finally:
            restore()

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, until: pd.Timestamp | None = None) -> PollerStats:
        """Poll until stopped (or until the clock reaches ``until``); return the counters."""
        log.info(
            "poller started: %d tickers, every %.0f s ± %.0f s, lookback %d min, source %s",
            len(self.config.tickers),
            self.config.poll_interval_s,
            self.config.poll_jitter_s,
            self.config.lookback_minutes,
            getattr(self.source, "name", type(self.source).__name__),
        )
        while not self._stop.is_set():
            now = self._clock()
            if until is not None and now >= until:
                break
            try:
                delay = self._step(now)
            except Exception:  # a bug must not end a service meant to run for days
                self._unexpected_errors += 1
                delay = self._source_backoff.delay(self._unexpected_errors)
                log.exception("unexpected error in a poll round; continuing in %.0f s", delay)
            else:
                self._unexpected_errors = 0
            if until is not None:
                delay = min(delay, (until - now).total_seconds())
            self._sleep(max(delay, 0.0))
        self._shutdown()
        return self.stats

    def _step(self, now: pd.Timestamp) -> float:
        """One round (or one closed-market check); return the seconds to sleep after it."""
        if self._active(now):
            self._sleeping_until = None
            answered = self._poll(now)
            self._flush(self._clock())
            self._maybe_summary(now)
            if answered:
                self._source_failures = 0
                jitter = self._rng.uniform(-self.config.poll_jitter_s, self.config.poll_jitter_s)
                return self.config.poll_interval_s + jitter
            self._source_failures += 1
            delay = self._source_backoff.delay(self._source_failures)
            if self._source_failures > 1:  # one failed round is the normal interval
                self.stats.source_backoffs += 1
                log.warning(
                    "source failed for every ticker %d rounds in a row: backing off %.0f s",
                    self._source_failures,
                    delay,
                )
            return delay
        self._sweep_closed_session(now)
        self._flush(now)
        wake = calendar.next_open(now)
        if self._sleeping_until != wake:
            self._sleeping_until = wake
            log.info("market closed at %s; sleeping until the next open %s", now, wake)
        delay = (wake - now).total_seconds()
        if self._buffer.rows or self._pending.gaps:
            retry = self._db.retry_at or now
            delay = min(delay, max((retry - now).total_seconds(), self.config.poll_interval_s))
        return delay

    def _active(self, now: pd.Timestamp) -> bool:
        grace = pd.Timedelta(seconds=self.config.close_grace_s)
        return calendar.is_open(now) or calendar.is_open(now - grace)

    # --- polling ----------------------------------------------------------------------------------
    def _poll(self, now: pd.Timestamp) -> bool:
        """Fetch every ticker once; return False when every request failed."""
        self.stats.rounds += 1
        end = now.floor("min")
        session = self._current_session(now)
        self._polled_sessions.add(session)
        self._try_restore(now)
        asked = 0
        answers: list[tuple[str, pd.DataFrame, pd.Timestamp, pd.Timestamp]] = []
        for ticker in self.config.tickers:
            if self._stop.is_set():
                break
            start = self._window_start(ticker, end, session)
            if start >= end or len(calendar.trading_minutes(start, end)) == 0:
                continue
            asked += 1
            self.stats.source_calls += 1
            try:
                bars = self.source.get_bars(ticker, start, end)
                _check_shape(bars)
            except Exception as err:
                self._source_error(ticker, start, end, err)
                continue
            answers.append((ticker, bars, start, end))
        self._accept(answers)
        return asked == 0 or bool(answers)

    def _window_start(self, ticker: str, end: pd.Timestamp, session: pd.Timestamp) -> pd.Timestamp:
        cursor = self._cursor.get(ticker)
        if cursor is None:
            return calendar.session_bounds(session)[0]  # first contact: the session so far
        return max(cursor, end - self.config.lookback_minutes * MINUTE)

    def _current_session(self, now: pd.Timestamp) -> pd.Timestamp:
        """The session being polled: open now, or closed less than ``close_grace_s`` ago."""
        grace = pd.Timedelta(seconds=self.config.close_grace_s)
        minute = (now - grace).floor("min")
        return calendar.exchange_calendar().minute_to_session(minute, direction="next")

    @staticmethod
    def _session_of_minute(minute: pd.Timestamp) -> pd.Timestamp:
        return calendar.exchange_calendar().minute_to_session(minute, direction="previous")

    def _source_error(
        self, ticker: str, start: pd.Timestamp, end: pd.Timestamp, err: Exception
    ) -> None:
        self.stats.source_errors += 1
        timeout = isinstance(err, TimeoutError) or "timeout" in type(err).__name__.lower()
        self.stats.source_timeouts += int(timeout)
        log.warning(
            "%s: fetching %s..%s failed (%s: %s); skipped this round",
            ticker,
            start,
            end,
            type(err).__name__,
            _short(err),
            exc_info=not isinstance(err, _TRANSIENT),
        )

    def _accept(self, answers: list[tuple[str, pd.DataFrame, pd.Timestamp, pd.Timestamp]]) -> None:
        """Validate a round's answers (one validation for all tickers), then per ticker queue
        its gaps, buffer its new bars and move its cursor."""
        if not answers:
            return
        received = [bars for _, bars, _, _ in answers if not bars.empty]
        self.stats.bars_received += sum(len(b) for b in received)
        clean = empty_bars()
        if received:
            try:
                clean = self._validated(pd.concat(received, ignore_index=True))
            except BarValidationError:
                # One answer is not a bar frame at all: find it, skip it, keep the others.
                answers, clean = self._validated_one_by_one(answers)
        by_ticker = dict(tuple(clean.groupby("ticker", sort=False))) if not clean.empty else {}
        for ticker, _, start, end in answers:
            bars = by_ticker.get(ticker, clean.iloc[:0])
            self._accept_ticker(ticker, bars, start, end)

    def _validated(self, bars: pd.DataFrame) -> pd.DataFrame:
        checked = validate_bars(bars, self.config.tickers, allow_empty=True)
        if not checked.quarantined.empty:
            self.stats.bars_quarantined += len(checked.quarantined)
            log.warning(
                "quarantined %d bad rows %s", len(checked.quarantined), checked.reason_counts
            )
            self._hold_quarantine(checked.quarantined)
        return checked.clean

    def _validated_one_by_one(
        self, answers: list[tuple[str, pd.DataFrame, pd.Timestamp, pd.Timestamp]]
    ) -> tuple[list[tuple[str, pd.DataFrame, pd.Timestamp, pd.Timestamp]], pd.DataFrame]:
        kept, frames = [], []
        for answer in answers:
            ticker, bars, start, end = answer
            try:
                frames.append(self._validated(bars))
            except BarValidationError as err:
                self._source_error(ticker, start, end, err)
                continue
            kept.append(answer)
        return kept, pd.concat(frames, ignore_index=True) if frames else empty_bars()

    def _accept_ticker(
        self, ticker: str, clean: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
    ) -> None:
        cursor = self._cursor.get(ticker)
        if cursor is None:
            cursor = start
            self._first_start.setdefault(ticker, start)
        ts = pd.DatetimeIndex(clean["ts"])
        keep = (ts >= max(start, cursor)) & (ts < end)
        if not keep.all():
            clean, ts = clean[keep], ts[keep]
        self._add_gaps(find_gaps(ticker, cursor, ts))
        if len(ts) == 0:
            self._cursor[ticker] = cursor
            return
        self._cursor[ticker] = ts[-1] + MINUTE
        dropped = self._buffer.add(clean)
        self.stats.buffer_peak = max(self.stats.buffer_peak, self._buffer.rows)
        if dropped is not None:
            self._dropped(dropped)

    def _dropped(self, dropped: pd.DataFrame) -> None:
        self.stats.bars_dropped += len(dropped)
        gaps = []
        for ticker, part in dropped.groupby("ticker"):
            gaps += span_per_session(ranges_of_minutes(str(ticker), part["ts"]))  # one per day
        log.error(
            "buffer full (%d bars) while the database is unavailable: dropped the %d oldest "
            "bars; their minutes are queued for backfill",
            self.config.buffer_max_rows,
            len(dropped),
        )
        self._add_gaps(gaps)

    def _add_gaps(self, gaps: list[Gap]) -> None:
        if not gaps:
            return
        self.stats.gaps_found += len(gaps)
        self.stats.gap_minutes += sum(g.minutes for g in gaps)
        for gap in gaps:
            log.info("%s: gap of %d minute(s) from %s queued", gap.ticker, gap.minutes, gap.start)
        self._pending.gaps += gaps
        if len(self._pending.gaps) > self.config.max_pending_gaps:
            self._pending.gaps = span_per_session(self._pending.gaps)
            log.warning(
                "more than %d gaps waiting for the database: merged to one per ticker and session",
                self.config.max_pending_gaps,
            )

    def _hold_quarantine(self, rows: pd.DataFrame) -> None:
        pending = self._pending
        if pending.quarantine_rows + len(rows) > self.config.max_quarantine_rows:
            log.warning("quarantine buffer full: %d refused rows not kept", len(rows))
            return
        pending.quarantine.append(rows)
        pending.quarantine_rows += len(rows)

    def _sweep_closed_session(self, now: pd.Timestamp) -> None:
        """After a polled session closes, queue the minutes after each cursor up to the close."""
        close = calendar.exchange_calendar().previous_close(now)
        session = self._session_of_minute(close - MINUTE)
        if session in self._swept or session not in self._polled_sessions:
            return
        self._swept.add(session)
        open_, close = calendar.session_bounds(session)
        for ticker in self.config.tickers:
            cursor = self._cursor.get(ticker)
            if cursor is None:
                cursor = open_
                self._first_start.setdefault(ticker, open_)
            if cursor < close:
                self._add_gaps(session_ranges(ticker, cursor, close))
                self._cursor[ticker] = close

    # --- database ---------------------------------------------------------------------------------
    def _database(self, now: pd.Timestamp, force: bool = False) -> Engine | None:
        """The engine, or None while the database is down and its next retry is not due."""
        if not force and self._db.retry_at is not None and now < self._db.retry_at:
            return None
        if self._db.engine is None:
            try:
                self._db.engine = self._engine_factory()
            except Exception as err:
                self._db_failed(now, err, "connecting")
                return None
        return self._db.engine

    def _db_failed(self, now: pd.Timestamp, err: Exception, what: str) -> None:
        self._db.failures += 1
        self.stats.db_errors += 1
        delay = self._db_backoff.delay(self._db.failures)
        self._db.retry_at = now + pd.Timedelta(seconds=delay)
        self.stats.bars_buffered += self._buffer.unattempted
        self._buffer.unattempted = 0
        url = safe_url(self._db.engine.url) if self._db.engine is not None else "(not connected)"
        log.warning(
            "database %s unavailable while %s (%s: %s); holding %d bars and %d gaps, "
            "next try in %.0f s",
            url,
            what,
            type(err).__name__,
            _short(err),
            self._buffer.rows,
            len(self._pending.gaps),
            delay,
            exc_info=not isinstance(err, SQLAlchemyError | DatabaseUnavailableError | OSError),
        )

    def _db_ok(self) -> None:
        if self._db.failures:
            log.info("database is back after %d failed attempt(s)", self._db.failures)
        self._db.failures = 0
        self._db.retry_at = None
        self._buffer.unattempted = 0

    def _try_restore(self, now: pd.Timestamp) -> None:
        if self._db.restored:
            return
        engine = self._database(now)
        if engine is None:
            return
        try:
            self._restore(engine, now)
        except Exception as err:
            self._db_failed(now, err, "restoring the last bar times")

    def _restore(self, engine: Engine, now: pd.Timestamp) -> None:
        """Set each cursor from the newest stored bar (and queue what lies before our tracking)."""
        last = last_bar_times(engine, self.config.tickers)
        oldest = self._oldest_backfilled(now)
        for ticker, ts in last.items():
            stored_end = ts + MINUTE
            if stored_end > now.floor("min"):
                log.warning(
                    "%s: the newest stored bar %s is after the clock %s; ignored", ticker, ts, now
                )
                continue
            if stored_end < oldest:
                log.warning(
                    "%s: the newest stored bar is %s, more than %d sessions ago: only the gaps "
                    "since %s are queued; load the sessions between with `quant import "
                    "--tickers %s --start %s --end %s`",
                    ticker,
                    ts,
                    self.config.max_backfill_sessions,
                    oldest,
                    ticker,
                    calendar.session_of(ts).date(),
                    calendar.session_before(calendar.session_of(oldest), 1).date(),
                )
                stored_end = oldest
            first = self._first_start.get(ticker)
            if ticker in self._cursor and first is not None and stored_end < first:
                self._add_gaps(session_ranges(ticker, stored_end, first))
            self._cursor[ticker] = max(self._cursor.get(ticker, stored_end), stored_end)
        self._db.restored = True
        log.info(
            "restored the last bar times of %d of %d tickers", len(last), len(self.config.tickers)
        )

    def _oldest_backfilled(self, now: pd.Timestamp) -> pd.Timestamp:
        """The open of the oldest session a restart still queues gaps for."""
        session = self._current_session(now)
        return calendar.session_bounds(
            calendar.session_before(session, self.config.max_backfill_sessions)
        )[0]

    def _flush(self, now: pd.Timestamp, force: bool = False) -> None:
        """Write buffered bars, then gaps, then quarantined rows (each its own transaction).

        An outage (the database does not answer) stops the flush and backs off; everything stays
        pending. Refused rows the database will not take (a data error, not an outage) are
        logged and let go: they must never hold back bars or gaps.
        """
        pending = self._pending
        if not (self._buffer.rows or pending.gaps or pending.quarantine or not self._db.restored):
            return
        engine = self._database(now, force)
        if engine is None:
            return
        what = "restoring the last bar times"
        try:
            if not self._db.restored:
                self._restore(engine, now)
            if self._buffer.rows:
                what = "writing bars"
                frame = self._buffer.snapshot()
                write_bars(frame, engine)
                self._buffer.clear()
                self.stats.bars_written += len(frame)
                self._report(frame)
        except Exception as err:
            self._db_failed(now, err, what)
            return
        if pending.gaps and not self._queue_gaps(engine, now):
            return
        if pending.quarantine and not self._write_quarantine(engine, now):
            return
        self._db_ok()

    def _queue_gaps(self, engine: Engine, now: pd.Timestamp) -> bool:
        """Queue the held gaps; False when the database is unavailable. Gaps it refuses (a data
        error: retrying the same rows would fail the same way) are logged and let go."""
        pending = self._pending
        try:
            self.stats.gaps_queued += enqueue_gaps(engine, pending.gaps, merge=True)
        except Exception as err:
            if is_outage(err):
                self._db_failed(now, err, "queueing gaps")
                return False
            log.error(
                "could not queue %d gaps (%s: %s); they are let go: %s",
                len(pending.gaps),
                type(err).__name__,
                _short(err),
                "; ".join(f"{g.ticker} {g.start}..{g.end}" for g in pending.gaps[:10]),
                exc_info=True,
            )
        pending.gaps = []
        return True

    def _write_quarantine(self, engine: Engine, now: pd.Timestamp) -> bool:
        """Store the held refused rows; False when the database is unavailable."""
        pending = self._pending
        rows = pd.concat(pending.quarantine, ignore_index=True)
        try:
            write_quarantine(rows, engine)
        except Exception as err:
            if is_outage(err):
                self._db_failed(now, err, "writing quarantined rows")
                return False
            log.error(
                "could not keep %d refused rows in bar_quarantine (%s: %s); they are let go",
                len(rows),
                type(err).__name__,
                _short(err),
            )
        pending.quarantine, pending.quarantine_rows = [], 0
        return True

    # --- reporting ------------------------------------------------------------------------------
    def _report(self, frame: pd.DataFrame) -> None:
        """Tell the reporter (the Dagster instance, in practice) about the bars just written."""
        if self._reporter is None or frame.empty:
            return
        try:
            self.stats.events_reported += self._reporter(
                frame, getattr(self.source, "name", "source")
            )
        except Exception as err:  # reporting is a view of the data; never stop ingesting for it
            self.stats.event_errors += 1
            log.warning(
                "could not report the written bars (%s: %s)", type(err).__name__, _short(err)
            )

    # --- end --------------------------------------------------------------------------------------
    def _maybe_summary(self, now: pd.Timestamp) -> None:
        if self._last_summary is None:
            self._last_summary = now
        elif (now - self._last_summary).total_seconds() >= self.config.summary_every_s:
            self._last_summary = now
            log.info("poller at %s: %s", now, self.stats.as_dict())

    def _shutdown(self) -> None:
        now = self._clock()
        self._flush(now, force=True)
        pending = self._pending
        if self._buffer.rows or pending.gaps or pending.quarantine:
            self.stats.bars_lost_at_exit = self._buffer.rows
            log.error(
                "stopping with the database unavailable: %d buffered bars, %d gaps and %d "
                "refused rows not written; on the next start the gap from the last stored bar "
                "is queued again, the refused rows are lost",
                self._buffer.rows,
                len(pending.gaps),
                pending.quarantine_rows,
            )
        log.info("poller stopped at %s: %s", now, self.stats.as_dict())


def _check_shape(bars: object) -> None:
    """Refuse an answer that is not a bar frame before it is mixed with the others' answers."""
    if not isinstance(bars, pd.DataFrame):
        raise BarValidationError(f"the source answered {type(bars).__name__}, not a DataFrame")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise BarValidationError(f"bar frame lacks columns {missing}")
    if not isinstance(bars["ts"].dtype, pd.DatetimeTZDtype):
        raise BarValidationError(f"ts must be tz-aware, got dtype {bars['ts'].dtype}")


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
