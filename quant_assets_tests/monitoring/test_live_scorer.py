"""LiveScorer keeps the history between minutes and still hands the predictor exactly what a
fresh read returns; ChampionScoring follows the champion and stores what it scores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import rebuild_adjusted_bars
from quant_assets.corporate_actions.ledger import record_corporate_actions
from quant_assets.deployment.registry import ModelRef, ModelRegistry
from quant_assets.market import calendar
from quant_assets.models.inference import prediction_frame
from quant_assets.monitoring import live_scorer
from quant_assets.monitoring.drift_monitor import read_predictions
from quant_assets.monitoring.live_read import read_live_bars
from quant_assets.monitoring.live_scorer import ChampionScoring, LiveScorer
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars, write_bars
from quant_assets_tests.monitoring.conftest import DAYS, TICKERS

MINUTE = pd.Timedelta(minutes=1)


class RecordingPredictor:
    """Keeps the bars it is given; predicts a fixed UP for each ticker's newest bar."""

    def __init__(self, min_bars: int = 300, name: str = "fake") -> None:
        self.min_bars = min_bars
        self.name = name
        self.seen: list[pd.DataFrame] = []

    def predict_latest(self, bars: pd.DataFrame) -> pd.DataFrame:
        self.seen.append(bars)
        index = bars.groupby("ticker", sort=True, observed=True).tail(1)[["ticker", "ts"]]
        proba = np.tile([0.1, 0.2, 0.7], (len(index), 1))
        return prediction_frame(index, proba)


def at(day: pd.Timestamp, clock: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day.date()} {clock}", tz=calendar.MARKET_TZ).tz_convert("UTC")


def fresh(engine: Engine, end: pd.Timestamp, history: int) -> pd.DataFrame:
    return read_live_bars(engine, list(TICKERS), end - MINUTE, end, history)


def test_minutes_of_a_session_read_the_history_once(market_db: Engine) -> None:
    scorer = LiveScorer(market_db, RecordingPredictor(), TICKERS)
    for clock in ("09:31", "11:00", "11:01", "15:59", "16:00"):
        end = at(DAYS[-1], clock)
        pd.testing.assert_frame_equal(scorer.bars(end), fresh(market_db, end, 300))
    assert scorer.history_reads == 1


def test_a_new_session_or_a_rebuild_reads_the_history_again(market_db: Engine) -> None:
    scorer = LiveScorer(market_db, RecordingPredictor(), TICKERS)
    scorer.bars(at(DAYS[-2], "12:00"))
    end = at(DAYS[-1], "12:00")
    pd.testing.assert_frame_equal(scorer.bars(end), fresh(market_db, end, 300))
    assert scorer.history_reads == 2
    before = fresh(market_db, end, 300)
    split = pd.DataFrame(
        {"ticker": ["AAA"], "ex_date": [DAYS[1]], "action": ["split"], "value": [2.0]}
    )
    record_corporate_actions(split, market_db, TICKERS, today=DAYS[-1])
    rebuild_adjusted_bars(market_db, ["AAA"])
    after = scorer.bars(end)
    assert scorer.history_reads == 3
    pd.testing.assert_frame_equal(after, fresh(market_db, end, 300))
    first = (after["ticker"] == "AAA") & (after["ts"] < calendar.session_bounds(DAYS[1])[0])
    np.testing.assert_allclose(
        after.loc[first, "close"].to_numpy() * 2, before.loc[first, "close"].to_numpy()
    )


def session_minute(day: pd.Timestamp, minute: int) -> pd.Timestamp:
    return calendar.session_bounds(day)[0] + minute * MINUTE


def revise(engine: Engine, ticker: str, first: pd.Timestamp, minutes: int) -> None:
    """Write the stored bars of [first, first + minutes) again with prices 0.1% higher."""
    stored = read_bars(engine, [ticker], first, first + minutes * MINUTE)
    prices = ["open", "high", "low", "close"]
    stored[prices] = stored[prices] * 1.001
    write_bars(stored, engine)


def add_bar(engine: Engine, ticker: str, ts: pd.Timestamp) -> None:
    """Store a bar at ``ts`` (a new row where the ticker had none, else a changed one)."""
    price = 10.0 + ts.minute / 100
    bar = {"open": price, "high": price, "low": price, "close": price, "volume": 7}
    write_bars(pd.DataFrame([{"ticker": ticker, "ts": ts, **bar}]), engine)


def test_a_minute_reads_only_the_bars_written_since(market_db: Engine) -> None:
    scorer = LiveScorer(market_db, RecordingPredictor(), TICKERS)
    end = at(DAYS[-1], "11:00")
    assert len(scorer.bars(end)) == len(fresh(market_db, end, 300))
    read = scorer.session_rows_read
    minute = read_bars(market_db, list(TICKERS), end, end + MINUTE)  # the poller's write
    write_bars(minute, market_db)
    pd.testing.assert_frame_equal(scorer.bars(end + MINUTE), fresh(market_db, end + MINUTE, 300))
    assert scorer.session_rows_read - read == len(minute) > 0
    read = scorer.session_rows_read
    pd.testing.assert_frame_equal(scorer.bars(end + MINUTE), fresh(market_db, end + MINUTE, 300))
    assert scorer.session_rows_read == read  # nothing written, the same minute: nothing read


def test_a_write_between_the_stamps_and_the_read_is_caught_next_minute(
    market_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = LiveScorer(market_db, RecordingPredictor(), TICKERS)
    end = at(DAYS[-1], "11:00")
    scorer.bars(end)
    read_session = live_scorer.read_session_columns

    def racing(*args: object, **kwargs: object) -> object:
        revise(market_db, "AAA", at(DAYS[-1], "10:00"), 5)  # commits after the stamps were read
        return read_session(*args, **kwargs)

    monkeypatch.setattr(live_scorer, "read_session_columns", racing)
    scorer.bars(end + MINUTE)
    monkeypatch.setattr(live_scorer, "read_session_columns", read_session)
    revise(market_db, "AAA", at(DAYS[-1], "10:30"), 5)  # and one more write after it
    pd.testing.assert_frame_equal(scorer.bars(end + MINUTE), fresh(market_db, end + MINUTE, 300))


WRITES = st.one_of(
    st.tuples(
        st.just("revise"),
        st.sampled_from(TICKERS),
        st.sampled_from([-2, -1]),  # the session scored, or the one before it
        st.integers(0, 389),
        st.integers(1, 30),
    ),
    st.tuples(st.just("add"), st.sampled_from(TICKERS), st.just(-1), st.integers(0, 389)),
    st.tuples(st.just("score"), st.integers(1, 390)),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(WRITES, min_size=1, max_size=10))
def test_kept_session_bars_are_what_a_fresh_read_returns_after_any_writes(
    market_db: Engine, steps: list[tuple]
) -> None:
    scorer = LiveScorer(market_db, RecordingPredictor(), TICKERS)
    end = session_minute(DAYS[-1], 90)
    scorer.bars(end)
    for step in steps:
        if step[0] == "score":
            end = session_minute(DAYS[-1], step[1])
            pd.testing.assert_frame_equal(scorer.bars(end), fresh(market_db, end, 300))
        elif step[0] == "revise":
            _, ticker, day, minute, length = step
            revise(market_db, ticker, session_minute(DAYS[day], minute), length)
        else:
            _, ticker, day, minute = step
            add_bar(market_db, ticker, session_minute(DAYS[day], minute))
    pd.testing.assert_frame_equal(scorer.bars(end), fresh(market_db, end, 300))


def test_tickers_short_of_history_are_left_out(market_db: Engine) -> None:
    end = at(DAYS[-1], "11:00")
    counts = fresh(market_db, end, 100_000)["ticker"].value_counts()
    need = int(counts["THIN"]) + 1  # more than THIN has, less than the others
    assert (counts.drop("THIN") >= need).all()
    predictor = RecordingPredictor(min_bars=need)
    scored = LiveScorer(market_db, predictor, TICKERS).score(end)
    assert sorted(scored["ticker"]) == ["AAA", "BBB"]
    assert set(predictor.seen[-1]["ticker"]) == {"AAA", "BBB"}
    alone = LiveScorer(market_db, RecordingPredictor(min_bars=need), ["THIN"])
    assert alone.score(end).empty


def promote(home: Path, name: str) -> ModelRegistry:
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.tflite").write_bytes(b"read by the fake loader only")
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    registry.promote(ModelRef.for_bundle(home, folder), reason="test")
    return registry


def test_champion_scoring_follows_the_champion_and_stores_predictions(
    market_db: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ModelRegistry.from_settings(Settings(home=tmp_path, _env_file=None))
    loaded: list[str] = []

    def load(folder: Path) -> RecordingPredictor:
        loaded.append(folder.name)
        return RecordingPredictor(min_bars=100, name=folder.name)

    scoring = ChampionScoring(registry, lambda: market_db, TICKERS, load=load)
    written = fresh(market_db, at(DAYS[-1], "11:00"), 1)
    written = written[written["ts"] >= at(DAYS[-1], "10:59")]
    with caplog.at_level(logging.WARNING):
        assert scoring(written) == 0 and scoring(written) == 0
    assert sum("no champion" in r.message for r in caplog.records) == 1  # once, not per minute

    promote(tmp_path, "lstm_v1")
    assert scoring(written) == 3 and loaded == ["lstm_v1"]
    first, last = at(DAYS[-1], "09:30"), at(DAYS[-1], "11:00")
    stored = read_predictions(market_db, "lstm_v1", first, last)
    assert len(stored) == 3 and (stored["label"] == 1).all()
    assert scoring(written) == 3 and loaded == ["lstm_v1"]  # the same minute again: no reload
    assert len(read_predictions(market_db, "lstm_v1", first, last)) == 3  # upserted, not added

    promote(tmp_path, "transformer_v1")
    assert scoring(written) == 3 and loaded == ["lstm_v1", "transformer_v1"]
    assert len(read_predictions(market_db, "transformer_v1", first, last)) == 3


def test_a_failing_scoring_is_logged_and_never_raises(
    market_db: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(folder: Path) -> RecordingPredictor:
        raise OSError(f"cannot read {folder.name}")

    registry = promote(tmp_path, "lstm_v1")
    scoring = ChampionScoring(registry, lambda: market_db, TICKERS, load=broken)
    written = fresh(market_db, at(DAYS[-1], "11:00"), 1).tail(3)
    with caplog.at_level(logging.WARNING):
        assert scoring(written) == 0
    assert "cannot read lstm_v1" in caplog.text
    assert scoring(written.iloc[:0]) == 0
