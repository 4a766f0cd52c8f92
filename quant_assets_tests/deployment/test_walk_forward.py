"""Walk-forward evaluation: the summary over folds, the table, the files and MLflow names, and
that what a fold learns never depends on its scored block."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_assets.deployment.scoring import ValidationSet
from quant_assets.deployment.walk_forward import fold_dataset, logistic_probabilities
from quant_assets.deployment.walk_forward_report import (
    PLOT_PNG,
    REPORT_FILES,
    RESULT_JSON,
    SCORES_CSV,
    fold_metrics,
    overview_metrics,
    scores_table,
    summary_metrics,
    write_report_files,
)
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.folds import expanding_folds
from quant_assets_tests.deployment.helpers import walk_forward_of
from quant_assets_tests.models.helpers import TINY, market_bars

NAN = math.nan
FIGURES = {
    "lstm": [(0.50, 1.0, 0.70), (0.60, 3.0, 0.90), (0.40, NAN, NAN)],
    "logistic": [(0.52, -1.0, 0.30), (0.54, 0.5, 0.55), (0.56, 2.0, 0.80)],
}


def test_the_summary_is_mean_and_sd_over_the_folds_where_a_figure_is_defined() -> None:
    summary = walk_forward_of(FIGURES).summary()
    assert list(summary.index) == ["lstm", "logistic"]
    for model, rows in FIGURES.items():
        for k, figure in enumerate(("macro_f1", "net_sharpe", "psr")):
            values = np.array([row[k] for row in rows])
            defined = values[np.isfinite(values)]
            assert summary.loc[model, f"{figure}_mean"] == pytest.approx(defined.mean())
            assert summary.loc[model, f"{figure}_sd"] == pytest.approx(defined.std(ddof=1))
    assert summary["folds"].tolist() == [3, 3]


def test_the_table_has_every_fold_and_model_then_mean_and_sd() -> None:
    wf = walk_forward_of(FIGURES)
    lines = scores_table(wf).splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3 * 2 + 2
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[3]) for c in cells[:6]] == [
        (str(f), m) for f in (1, 2, 3) for m in ("lstm", "logistic")
    ]
    first = wf.folds[0].fold
    assert cells[0][1] == f"{first.scored[0].date()} … {first.scored[1].date()} (4)"
    assert cells[4][5:7] == ["n/a", "n/a"]  # fold 3, lstm: no Sharpe, no PSR
    assert cells[6][0] == "mean ± sd" and cells[6][3] == "lstm"
    assert cells[6][4:7] == ["0.5000 ± 0.1000", "2.00 ± 1.41", "0.800 ± 0.141"]
    assert "1 bps per side" in lines[-1]


def test_every_model_has_the_same_mlflow_metric_names() -> None:
    wf = walk_forward_of(FIGURES)
    first, third = wf.folds[0], wf.folds[2]
    names = {m: set(fold_metrics(s.figures())) for m, s in first.scores.items()}
    assert (
        names["lstm"]
        == names["logistic"]
        == {
            "wf_macro_f1",
            "wf_net_sharpe",
            "wf_psr",
            "wf_trades",
            "wf_net_return",
        }
    )
    assert "wf_net_sharpe" not in fold_metrics(third.scores["lstm"].figures())  # NaN: not logged
    assert set(summary_metrics(wf, "lstm")) == set(summary_metrics(wf, "logistic"))
    assert summary_metrics(wf, "lstm")["wf_net_sharpe_mean"] == pytest.approx(2.0)
    assert overview_metrics(wf)["logistic_wf_psr_mean"] == pytest.approx(0.55)


def test_report_files(tmp_path: Path) -> None:
    wf = walk_forward_of(FIGURES)
    folder = write_report_files(wf, tmp_path / "report")
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    assert (folder / PLOT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = pd.read_csv(folder / SCORES_CSV)
    assert len(scores) == 6 and set(scores["model"]) == {"lstm", "logistic"}
    record = json.loads((folder / RESULT_JSON).read_text())
    assert [f["fold"] for f in record["folds"]] == [1, 2, 3]
    assert record["folds"][2]["scores"]["lstm"]["net_sharpe"] is None
    assert record["folds"][0]["holdout"] == [str(d.date()) for d in wf.folds[0].fold.scored]


# --- what a fold learns -------------------------------------------------------------------
@pytest.fixture(scope="module")
def priced_frame() -> pd.DataFrame:
    """Labelled feature rows of two synthetic tickers with their prices (for backtests)."""
    _, bars = market_bars(0.3, tickers=("AAA", "BBB"))
    prices = bars[["ticker", "ts", "open", "high", "low", "close"]]
    return labelled_features_from_bars(bars, LabelSpec()).merge(prices, on=["ticker", "ts"])


def test_a_fold_learns_nothing_from_its_scored_block_or_after(priced_frame: pd.DataFrame) -> None:
    days = calendar.sessions("2026-03-03", "2026-03-20")
    fold = expanding_folds(days, 2)[0]
    start, end = fold.plan.bounds("holdout")
    ts = priced_frame["ts"]
    block = (ts >= start) & (ts < end) & priced_frame["label"].notna()
    changed = priced_frame.copy()
    rng = np.random.default_rng(0)
    changed.loc[block, "label"] = rng.permutation(changed.loc[block, "label"].to_numpy())
    changed.loc[ts >= end, "label"] = 1  # every later label rewritten too

    def outcome(frame: pd.DataFrame) -> tuple[ValidationSet, np.ndarray, np.ndarray]:
        dataset = fold_dataset(frame, fold, TINY, LabelSpec())
        assert dataset.row_ts.max() < end.value  # no row after the block is even loaded
        block_set = ValidationSet.from_dataset(dataset, "holdout")
        return block_set, logistic_probabilities(dataset, block_set), dataset.scaler.center

    before, after = outcome(priced_frame), outcome(changed)
    assert not np.array_equal(before[0].labels, after[0].labels)  # the block's labels changed
    np.testing.assert_array_equal(before[1], after[1])  # what the fold predicts did not
    np.testing.assert_array_equal(before[2], after[2])
    # The same change inside the training span does change the fit.
    train_start, train_end = fold.plan.bounds("train")
    in_train = (ts >= train_start) & (ts < train_end) & priced_frame["label"].notna()
    moved = priced_frame.copy()
    moved.loc[in_train, "label"] = rng.permutation(moved.loc[in_train, "label"].to_numpy())
    assert not np.allclose(before[1], outcome(moved)[1])
    np.testing.assert_allclose(before[1].sum(axis=1), 1.0, atol=1e-12)
