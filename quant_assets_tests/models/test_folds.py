"""Walk-forward folds: expanding spans, scored blocks that follow them and never overlap, and the
dataset builder's purge and embargo at each fold's boundaries."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.model_selection import TimeSeriesSplit

from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.models.dataset import SEGMENTS, build_dataset
from quant_assets.models.folds import MIN_SPAN_SESSIONS, expanding_folds
from quant_assets_tests.models.helpers import TINY

DAYS = calendar.sessions("2026-01-05", "2026-12-31")  # 250 sessions to draw from


def sessions_of(span: tuple[pd.Timestamp, pd.Timestamp]) -> set[pd.Timestamp]:
    return set(DAYS[(span[0] <= DAYS) & (span[1] >= DAYS)])


def test_three_folds_over_twenty_sessions() -> None:
    days = DAYS[:22]
    folds = expanding_folds(days, 3, val_fraction=0.2, test_fraction=0.2)
    # 22 // 4 = 5 sessions per block; the first span takes the remaining 7.
    assert [f.number for f in folds] == [1, 2, 3]
    assert [f.scored for f in folds] == [
        (days[7], days[11]),
        (days[12], days[16]),
        (days[17], days[21]),
    ]
    assert [f.trained for f in folds] == [
        (days[0], days[6]),
        (days[0], days[11]),
        (days[0], days[16]),
    ]
    first = folds[0].plan.sessions  # 7 sessions: 0.2 × 7 rounds to 1 validation, 1 test
    assert (first["train"], first["val"], first["test"]) == (
        (days[0], days[4]),
        (days[5], days[5]),
        (days[6], days[6]),
    )


@given(
    n=st.integers(min_value=3, max_value=120),
    folds=st.integers(min_value=1, max_value=8),
    block=st.one_of(st.none(), st.integers(min_value=1, max_value=15)),
)
def test_folds_expand_and_each_is_scored_after_what_it_learned(
    n: int, folds: int, block: int | None
) -> None:
    days = DAYS[:n]
    b = n // (folds + 1) if block is None else block
    if b < 1 or n - folds * b < MIN_SPAN_SESSIONS:
        with pytest.raises(ValueError, match="too few"):
            expanding_folds(days, folds, block)
        return
    plans = expanding_folds(days, folds, block)
    assert len(plans) == folds
    scored = [sessions_of(f.scored) for f in plans]
    trained = [sessions_of(f.trained) for f in plans]
    for k, fold in enumerate(plans):
        assert len(scored[k]) == b
        assert max(trained[k]) < min(scored[k])  # the block comes after everything it learned
        assert not scored[k] & trained[k]
        assert trained[k] == set(days[: n - (folds - k) * b])  # from the first session, expanding
        segments = [fold.plan.sessions[s] for s in SEGMENTS]
        assert all(a[1] < c[0] for a, c in itertools.pairwise(segments))
    assert all(not scored[j] & scored[k] for j in range(folds) for k in range(j))
    assert set().union(*scored) == set(days[n - folds * b :])  # the last block ends the data
    if folds > 1:  # the same blocks as scikit-learn's TimeSeriesSplit (which needs two)
        splitter = TimeSeriesSplit(n_splits=folds, test_size=b)
        assert [set(days[test]) for _, test in splitter.split(np.arange(n))] == scored


def test_fold_datasets_purge_and_embargo_at_the_scored_block(labelled_frame: pd.DataFrame) -> None:
    days = calendar.sessions("2026-03-03", "2026-03-20")
    config = TINY.replace(embargo_minutes=45)
    for fold in expanding_folds(days, 2):
        start, end = fold.plan.bounds("holdout")
        rows = labelled_frame[labelled_frame["ts"] < end]
        dataset = build_dataset(rows, config, label_spec=LabelSpec(), plan=fold.plan)
        test, block = dataset.sample_frame("test"), dataset.sample_frame("holdout")
        assert (test["t1"] < start).all()  # purged: no test label reaches into the block
        assert dataset.stats["holdout"]["embargoed"] > 0
        first_input = dataset.row_ts[dataset.samples["holdout"].end_row - dataset.window + 1]
        assert (first_input >= (start + pd.Timedelta(minutes=45)).value).all()
        assert block["ts"].between(start, end, inclusive="left").all()
        assert pd.Timestamp(dataset.stats["scaler_fit_last_ts"]) < start
