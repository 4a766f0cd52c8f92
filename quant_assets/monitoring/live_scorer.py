"""Scoring every minute in a long-lived process, without re-reading the history each time.

A scoring of the newest minute needs each ticker's last ``min_bars`` adjusted bars before the
session (the feature warm-up plus a window: 450 of the 540 rows a ticker reads at 11:00) and
the session's raw bars so far. The history does not change while a session runs, unless the
adjusted bars are rebuilt (a corporate action): ``LiveScorer`` keeps it between calls, and
reads it again on a new session or when any ticker's ``adjusted_bars_state`` row changed (every
adjusted write stamps ``built_at``). It keeps the session's raw bars too: every write of raw
bars stamps its tickers (``storage.bar_writes``), and each call reads, per ticker, only what is
new — the bars after the last call's minute, from the first bar of the one write since when
there was one (the poller's newest minute), the whole session after more writes or none seen.
So the predictor sees exactly the bars a fresh ``read_live_bars`` returns (tested, with
writes between the calls), and a minute at 15:59 reads 20 rows, not the session's 7,800.

``ChampionScoring`` is the live poller's scoring step (``quant ingest --score``): after each
write of bars, the champion in model_config.json scores the newest minute of every ticker and
the predictions go to ``predictions`` (the rows ``live_predictions`` writes too: same bars,
same features, same numbers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from quant_assets.deployment.registry import ModelRegistry
from quant_assets.market import calendar
from quant_assets.market.frames import newest_positions
from quant_assets.models.inference import PREDICTION_COLUMNS, Predictor
from quant_assets.monitoring.drift_monitor import write_predictions
from quant_assets.monitoring.live_read import (
    Columns,
    bars_frame,
    read_history_columns,
    read_session_columns,
    ticker_names,
)
from quant_assets.storage.bar_writes import WriteStamp, read_write_stamps
from quant_assets.storage.schema import adjusted_bars_state

log = logging.getLogger(__name__)

MINUTE = pd.Timedelta(minutes=1)


class LatestPredictor(Protocol):
    """What ``LiveScorer`` needs of ``models.inference.Predictor``."""

    @property
    def min_bars(self) -> int: ...

    def predict_latest(self, bars: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class _KeptSession:
    """The session's raw bars before ``end`` as of each ticker's write stamp then."""

    day: pd.Timestamp
    end: pd.Timestamp
    write_ids: tuple[str | None, ...]  # per name; None: the ticker had no stamp
    columns: Columns


class LiveScorer:
    """Scores the newest bar of every ticker at each minute, the bars kept between calls."""

    def __init__(self, engine: Engine, predictor: LatestPredictor, tickers: Sequence[str]) -> None:
        self.engine = engine
        self.predictor = predictor
        self.tickers = tuple(dict.fromkeys(tickers))
        self.names = ticker_names(self.tickers)
        self.history_reads = 0
        self.session_rows_read = 0
        self._key: tuple[pd.Timestamp, tuple[tuple[object, ...], ...]] | None = None
        self._history: Columns = {}
        self._session: _KeptSession | None = None
        self._short: tuple[object, list[str]] | None = None

    def bars(self, end: pd.Timestamp) -> pd.DataFrame:
        """The bars a fresh ``read_live_bars`` returns for the minute before ``end``: the kept
        history (read again when stale) and the session's raw bars before ``end`` (only what
        changed since the last call read)."""
        return bars_frame(self._columns(end), self.names)

    def score(self, end: pd.Timestamp) -> pd.DataFrame:
        """The predictor's ``predict_latest`` on each ticker's newest ``min_bars`` bars of
        ``bars(end)`` (all it uses): one row per ticker, leaving out (and logging, once a
        session) the tickers with fewer than ``min_bars`` bars."""
        columns = self._columns(end)
        counts = np.bincount(columns["ticker"], minlength=len(self.names))
        enough = counts >= self.predictor.min_bars
        short = [name for name, ok in zip(self.names, enough, strict=True) if not ok]
        if short and self._short != (self._key, short):
            self._short = (self._key, short)
            log.info(
                "live scorer: %s left out (fewer than %d bars)", short, self.predictor.min_bars
            )
        if not enough.any():
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        # The newest min_bars of each ticker are all predict_latest uses: the rest is not built.
        ts_ns = columns["ts"].view("i8")
        keep = newest_positions(columns["ticker"], ts_ns, self.predictor.min_bars)
        keep = keep[enough[columns["ticker"][keep]]]
        columns = {name: values[keep] for name, values in columns.items()}
        return self.predictor.predict_latest(bars_frame(columns, self.names))

    def _columns(self, end: pd.Timestamp) -> Columns:
        """History and session bars for the minute before ``end``, as columns."""
        end = pd.Timestamp(end).tz_convert("UTC")
        start = end - MINUTE
        day = calendar.session_of(start)
        # One connection for the stamps and the reads (on PostgreSQL each checkout is pinged).
        with self.engine.connect() as conn:
            key = (day, self._build_stamps(conn))
            stamps = read_write_stamps(conn, self.names)
            if key != self._key:
                self._history = read_history_columns(
                    conn, self.names, start, self.predictor.min_bars
                )
                self._key = key
                self.history_reads += 1
                log.info(
                    "live scorer: read %d history bars of %d tickers for session %s",
                    len(self._history["ticker"]),
                    len(self.names),
                    day.date(),
                )
            session = self._session_columns(conn, day, start, end, stamps)
        return {c: np.concatenate([self._history[c], session[c]]) for c in session}

    def _session_columns(
        self,
        conn: Connection,
        day: pd.Timestamp,
        start: pd.Timestamp,
        end: pd.Timestamp,
        stamps: Mapping[str, WriteStamp],
    ) -> Columns:
        """The session's raw bars before ``end``: what was kept, less what a write replaced
        since, plus what is new (read from each ticker's own time on)."""
        kept = self._session if self._session is not None and self._session.day == day else None
        day_start = calendar.span_of_days(day, day)[0].tz_convert("UTC")
        since = [
            min(self._read_from(kept, k, stamps.get(name), day_start), end)
            for k, name in enumerate(self.names)
        ]
        fresh = read_session_columns(conn, self.names, start, end, since)
        self.session_rows_read += len(fresh["ticker"])
        if kept is not None:
            cut = np.array([t.value for t in since], dtype="datetime64[ns]")
            keep = kept.columns["ts"] < cut[kept.columns["ticker"]]
            fresh = {c: np.concatenate([kept.columns[c][keep], fresh[c]]) for c in fresh}
        ids = tuple(stamps[n].write_id if n in stamps else None for n in self.names)
        self._session = _KeptSession(day, end, ids, fresh)
        return fresh

    @staticmethod
    def _read_from(
        kept: _KeptSession | None, k: int, stamp: WriteStamp | None, day_start: pd.Timestamp
    ) -> pd.Timestamp:
        """From when ticker ``k``'s session bars must be read again (``bar_writes`` says why)."""
        kept_id = kept.write_ids[k] if kept is not None else None
        if kept is None or stamp is None or kept_id is None:
            return day_start
        if stamp.write_id == kept_id:
            return kept.end
        if stamp.previous_write_id == kept_id:
            return min(kept.end, stamp.first_ts.tz_convert("UTC"))
        return day_start

    def _build_stamps(self, conn: Connection) -> tuple[tuple[object, ...], ...]:
        """What each ticker's adjusted bars were last built from and when (every adjusted
        write stamps ``built_at``; the ledger hash and raw span move with a rebuild too),
        compared only with this backend's own answer a minute before."""
        if not self.names:
            return ()
        sql = _build_stamps_sql(len(self.names), conn.dialect.paramstyle == "qmark")
        return tuple(sorted(tuple(row) for row in conn.exec_driver_sql(sql, self.names)))


@lru_cache(maxsize=16)
def _build_stamps_sql(n_tickers: int, qmark: bool) -> str:
    t = adjusted_bars_state
    names = ", ".join(["?" if qmark else "%s"] * n_tickers)
    return (
        f"SELECT ticker, ledger_hash, as_of, raw_rows, raw_last_ts, built_at FROM {t.name} "
        f"WHERE ticker IN ({names})"
    )


class ChampionScoring:
    """After each write of bars: the champion scores the newest minute, predictions stored.

    Follows model_config.json (a promotion or a rollback loads the new bundle, and a new
    ``LiveScorer``). A failure is logged and never reaches the poller: scoring is a view of
    the data, ingesting it comes first.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        engine_factory: Callable[[], Engine],
        tickers: Sequence[str],
        load: Callable[[Path], LatestPredictor] = Predictor.load,
    ) -> None:
        self.registry = registry
        self.engine_factory = engine_factory
        self.tickers = tuple(tickers)
        self.load = load
        self._model: str | None = None
        self._scorer: LiveScorer | None = None
        self._warned: str | None = None

    def __call__(self, written: pd.DataFrame) -> int:
        """Score the minute after the newest bar of ``written``; the predictions stored."""
        if written.empty:
            return 0
        end = pd.Timestamp(written["ts"].max()).floor("min") + MINUTE
        try:
            return self._score(end)
        except Exception as err:
            self._warn(f"live scoring failed ({type(err).__name__}: {err}); retried next minute")
            return 0

    def _score(self, end: pd.Timestamp) -> int:
        champion = self.registry.champion()
        if champion is None:
            self._warn("live scoring: no champion in model_config.json yet; nothing scored")
            return 0
        name = champion.model.name
        if self._scorer is None or name != self._model:
            predictor = self.load(self.registry.bundle_path(champion.model))
            self._scorer = LiveScorer(self.engine_factory(), predictor, self.tickers)
            self._model = name
            log.info("live scoring with the champion %s", name)
        scored = self._scorer.score(end)
        written = write_predictions(scored, name, self._scorer.engine) if len(scored) else 0
        self._warned = None
        return written

    def _warn(self, message: str) -> None:
        """Log a failure once until scoring works again (the poller calls every minute)."""
        if message != self._warned:
            log.warning("%s", message)
            self._warned = message
