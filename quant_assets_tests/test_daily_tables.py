"""daily_tables: history counted in bars per ticker, warm rows never replaced by cold ones, and a
ticker without bars gives empty tables rather than an error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import (
    history_start,
    read_adjusted_bars,
    rebuild_adjusted_bars,
)
from quant_assets.daily_tables import build_features, build_labels, write_features
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.labels import LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.storage.bars import write_bars
from quant_assets.storage.database import read_from_db

THIN, EMPTY = "THIN", "EMPTY"
SESSIONS = ("2026-08-24", "2026-09-04")
DAY = pd.Timestamp("2026-09-04")
SHARE_TRADED = 0.16  # the thinnest real ticker seen


@pytest.fixture
def thin_bars(engine: Engine) -> pd.DataFrame:
    """A ticker trading in 16 % of the minutes over two weeks, in raw and adjusted bars."""
    market = SyntheticMarket(SyntheticConfig(tickers=("AAPL",), start="2026-08-03", end=DAY))
    start, end = calendar.span_of_days(*SESSIONS)
    bars = market.get_bars("AAPL", start, end)
    keep = np.random.default_rng(7).random(len(bars)) < SHARE_TRADED
    bars = bars[keep].assign(ticker=THIN).reset_index(drop=True)
    write_bars(bars, engine)
    rebuild_adjusted_bars(engine, [THIN])
    return read_adjusted_bars(engine, [THIN], start, end)


def test_history_is_counted_in_bars(engine: Engine, thin_bars: pd.DataFrame) -> None:
    day_start, _ = calendar.span_of_days(DAY, DAY)
    first = history_start(engine, THIN, day_start, FEATURE_SPEC.warmup_bars)
    before = thin_bars[thin_bars["ts"] < day_start]
    assert first == before["ts"].iloc[-FEATURE_SPEC.warmup_bars]
    assert calendar.session_of(first) < calendar.session_before(DAY, 2)  # > 2 sessions back
    everything = history_start(engine, THIN, day_start, 10**9)
    assert everything == thin_bars["ts"].iloc[0]
    assert history_start(engine, EMPTY, day_start, 10) == day_start


def test_a_thin_ticker_warms_up_in_a_one_session_run(
    engine: Engine, thin_bars: pd.DataFrame
) -> None:
    frame = build_features(engine, THIN, [DAY])
    assert len(frame) == int((calendar.session_labels(thin_bars["ts"]) == DAY).sum()) > 0
    assert frame["warm"].all()
    full = create_features(thin_bars[_COLS])
    expected = full[calendar.session_labels(full["ts"]) == DAY]
    cols = list(FEATURE_SPEC.columns)
    np.testing.assert_allclose(
        frame[cols].to_numpy(float), expected[cols].to_numpy(float), rtol=1e-9, atol=1e-9
    )


def test_labels_read_enough_history_for_sigma(engine: Engine, thin_bars: pd.DataFrame) -> None:
    spec = LabelSpec()
    frame = build_labels(engine, THIN, [DAY], spec)
    full = triple_barrier_labels(thin_bars[_COLS], spec)
    expected = full[calendar.session_labels(full["ts"]) == DAY].reset_index(drop=True)
    np.testing.assert_allclose(frame["sigma"], expected["sigma"], rtol=1e-8)
    assert frame["label"].tolist() == expected["label"].tolist()


def test_a_cold_row_never_replaces_a_warm_one(engine: Engine, thin_bars: pd.DataFrame) -> None:
    warm = build_features(engine, THIN, [DAY])
    assert write_features(warm, engine) == len(warm)
    cold = create_features(thin_bars[calendar.session_labels(thin_bars["ts"]) == DAY][_COLS])
    assert not cold["warm"].any()
    write_features(cold, engine)
    stored = read_from_db("SELECT warm, rsi_14 FROM features ORDER BY ts", engine)
    assert stored["warm"].astype(bool).all()
    np.testing.assert_allclose(stored["rsi_14"], warm["rsi_14"])


def test_a_ticker_without_bars_gives_empty_tables(engine: Engine, thin_bars: pd.DataFrame) -> None:
    features = build_features(engine, EMPTY, [DAY])
    labels = build_labels(engine, EMPTY, [DAY], LabelSpec())
    assert features.empty and labels.empty
    assert write_features(features, engine) == 0


_BAR = ["open", "high", "low", "close", "volume"]
_COLS = ["ticker", "ts", *_BAR]
