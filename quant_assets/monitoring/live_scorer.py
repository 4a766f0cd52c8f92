"""Scoring every minute in a long-lived process, without re-reading the history each time.

A scoring of the newest minute needs each ticker's last ``min_bars`` adjusted bars before the
session (the feature warm-up plus a window: 450 of the 540 rows a ticker reads at 11:00) and
the session's raw bars so far. The history does not change while a session runs, unless the
adjusted bars are rebuilt (a corporate action): ``LiveScorer`` keeps it between calls, and
reads it again on a new session or when any ticker's ``adjusted_bars_state`` row changed (every
adjusted write stamps ``built_at``). Each call then reads only the session's raw bars, so the
predictor sees exactly the bars a fresh ``read_live_bars`` returns (tested).

``ChampionScoring`` is the live poller's scoring step (``quant ingest --score``): after each
write of bars, the champion in model_config.json scores the newest minute of every ticker and
the predictions go to ``predictions`` (the rows ``live_predictions`` writes too: same bars,
same features, same numbers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from quant_assets.deployment.registry import ModelRegistry
from quant_assets.market import calendar
from quant_assets.models.inference import PREDICTION_COLUMNS, Predictor
from quant_assets.monitoring.drift_monitor import write_predictions
from quant_assets.monitoring.live_read import read_history_bars, read_session_bars
from quant_assets.storage.schema import adjusted_bars_state

log = logging.getLogger(__name__)

MINUTE = pd.Timedelta(minutes=1)


class LatestPredictor(Protocol):
    """What ``LiveScorer`` needs of ``models.inference.Predictor``."""

    @property
    def min_bars(self) -> int: ...

    def predict_latest(self, bars: pd.DataFrame) -> pd.DataFrame: ...


class LiveScorer:
    """Scores the newest bar of every ticker at each minute, history kept between calls."""

    def __init__(self, engine: Engine, predictor: LatestPredictor, tickers: Sequence[str]) -> None:
        self.engine = engine
        self.predictor = predictor
        self.tickers = tuple(dict.fromkeys(tickers))
        self.history_reads = 0
        self._key: tuple[pd.Timestamp, tuple[tuple[str, ...], ...]] | None = None
        self._history = pd.DataFrame()
        self._short: tuple[object, list[str]] | None = None

    def bars(self, end: pd.Timestamp) -> pd.DataFrame:
        """The bars a fresh ``read_live_bars`` returns for the minute before ``end``: the kept
        history (read again when stale) and the session's raw bars before ``end``."""
        start = pd.Timestamp(end) - MINUTE
        key = (calendar.session_of(start), self._build_stamps())
        if key != self._key:
            self._history = read_history_bars(
                self.engine, self.tickers, start, self.predictor.min_bars
            )
            self._key = key
            self.history_reads += 1
            log.info(
                "live scorer: read %d history bars of %d tickers for session %s",
                len(self._history),
                len(self.tickers),
                key[0].date(),
            )
        session = read_session_bars(self.engine, self.tickers, start, end)
        frames = [f for f in (self._history, session) if len(f)]
        if not frames:
            return session
        both = pd.concat(frames, ignore_index=True)
        # Each part is sorted and every history bar precedes the session's: a stable sort by
        # ticker (integer codes) is the (ticker, ts) order, without a string sort.
        codes = pd.Categorical(both["ticker"], categories=sorted(self.tickers)).codes
        return both.take(np.argsort(codes, kind="stable")).reset_index(drop=True)

    def score(self, end: pd.Timestamp) -> pd.DataFrame:
        """The predictor's ``predict_latest`` on ``bars(end)``: one row per ticker, leaving out
        (and logging, once a session) the tickers with fewer than ``min_bars`` bars."""
        bars = self.bars(end)
        counts = bars["ticker"].value_counts()
        short = sorted(set(self.tickers) - set(counts[counts >= self.predictor.min_bars].index))
        if short and self._short != (self._key, short):
            self._short = (self._key, short)
            log.info(
                "live scorer: %s left out (fewer than %d bars)", short, self.predictor.min_bars
            )
        if len(short) == len(self.tickers):
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        if short:
            bars = bars[~bars["ticker"].isin(short)].reset_index(drop=True)
        return self.predictor.predict_latest(bars)

    def _build_stamps(self) -> tuple[tuple[str, ...], ...]:
        """What each ticker's adjusted bars were last built from and when (every adjusted
        write stamps ``built_at``; the ledger hash and raw span move with a rebuild too)."""
        t = adjusted_bars_state
        columns = (t.c.ticker, t.c.ledger_hash, t.c.as_of, t.c.raw_rows, t.c.raw_last_ts)
        query = select(*columns, t.c.built_at).where(t.c.ticker.in_(self.tickers))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return tuple(sorted(tuple(str(v) for v in row) for row in rows))


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
