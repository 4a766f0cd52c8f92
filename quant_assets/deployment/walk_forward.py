"""Walk-forward evaluation: retrain on each expanding fold, score on the block after it.

For every fold of ``models.folds.expanding_folds``:

1. **The fold's dataset**: ``build_dataset`` on the rows up to the end of the fold's scored block
   (no later bar is in it) with the fold's ``SplitPlan``, so the builder's purge and embargo
   apply at every boundary, the scored block's included. The block is the dataset's
   ``holdout``: never used for fitting, early stopping, calibration or the scaler.
2. **What is retrained**: each architecture the way the nightly trains it
   (``models.training.train_and_calibrate``: fit on train, early stopping on val, prior shift +
   temperature fitted on val; no TFLite export, no bundle), and the ``logistic`` baseline
   (``models.baselines.logistic`` on the newest bar's scaled features, fitted on train) with the
   same calibration fitted on val — uncalibrated, its balanced class weights would inflate
   p_up − p_down and the comparison of net figures would measure calibration, not the model.
3. **The score on the block**, as ``champion_model`` scores the holdout: the block's samples as a
   ``ValidationSet`` (unscaled windows, the dataset's scaler applied as a bundle's Predictor
   does), macro-F1 over UP/DOWN (``decision.compute_metrics``, the promotion metric), the
   backtest on the block's own bars (``holdout_value.holdout_backtest``) and from its net daily
   P&L at the default cost the annualized net Sharpe and the probabilistic Sharpe ratio that
   the true Sharpe exceeds 0 (``evaluation.sharpe``).

``WalkForward.scores()`` has one row per fold × model, ``summary()`` the mean and sd (ddof 1)
over the folds of each figure, per model; folds where a figure is undefined (no trade: no
Sharpe) are left out of its mean and sd. TensorFlow loads only when a network is trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quant_assets.deployment.decision import compute_metrics
from quant_assets.deployment.holdout_value import can_backtest, holdout_backtest
from quant_assets.deployment.scoring import ValidationSet
from quant_assets.evaluation.backtest import BacktestSpec
from quant_assets.evaluation.sharpe import probabilistic_sharpe_ratio
from quant_assets.labels import LabelSpec
from quant_assets.models.baselines import lagged_features, logistic
from quant_assets.models.bundle import ARCHS
from quant_assets.models.calibration import apply_temperature, fit_temperature, log_prior_shift
from quant_assets.models.config import TrainingConfig
from quant_assets.models.dataset import TrainingDataset, build_dataset
from quant_assets.models.folds import Fold

LOGISTIC = "logistic"
FIGURES: tuple[str, ...] = ("macro_f1", "net_sharpe", "psr")
PREDICT_CHUNK = 16_384  # windows scaled and predicted at a time (bounds the copy's memory)


@dataclass(frozen=True)
class FoldScore:
    """One model on one fold's scored block."""

    fold: int
    model: str
    macro_f1: float  # UP/DOWN
    net_sharpe: float  # annualized, at the default cost
    psr: float  # P(true Sharpe > 0)
    trades: int
    net_return: float
    daily_net: pd.Series = field(repr=False)  # the block's net P&L per session

    def figures(self) -> dict[str, float]:
        """The per-fold figures by name (``FIGURES`` plus trades and net return)."""
        return {
            "macro_f1": self.macro_f1,
            "net_sharpe": self.net_sharpe,
            "psr": self.psr,
            "trades": float(self.trades),
            "net_return": self.net_return,
        }


@dataclass(frozen=True)
class FoldOutcome:
    """One fold: its plan, how many samples its block had, each model's score, its time."""

    fold: Fold
    samples: int
    scores: dict[str, FoldScore]
    seconds: float

    def describe(self) -> str:
        """The fold's block and figures in one line (for logs)."""
        first, last = self.fold.scored
        figures = ", ".join(
            f"{s.model} F1 {s.macro_f1:.3f} Sharpe {s.net_sharpe:.2f} PSR {s.psr:.2f}"
            for s in self.scores.values()
        )
        return (
            f"fold {self.fold.number} scored {first.date()} … {last.date()} "
            f"({self.samples} samples): {figures}; {self.seconds:.0f} s"
        )


@dataclass(frozen=True)
class WalkForward:
    """Every fold's outcome and the backtest policy they were scored with."""

    folds: tuple[FoldOutcome, ...]
    spec: BacktestSpec

    @property
    def models(self) -> tuple[str, ...]:
        """The models, in the order they were scored."""
        return tuple(self.folds[0].scores) if self.folds else ()

    def scores(self) -> pd.DataFrame:
        """One row per fold × model: fold, first/last scored and trained session, samples,
        model, macro_f1, net_sharpe, psr, trades, net_return."""
        rows = [
            {
                "fold": o.fold.number,
                "scored_first": o.fold.scored[0].date(),
                "scored_last": o.fold.scored[1].date(),
                "trained_first": o.fold.trained[0].date(),
                "trained_last": o.fold.trained[1].date(),
                "samples": o.samples,
                "model": s.model,
                **s.figures(),
            }
            for o in self.folds
            for s in o.scores.values()
        ]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per model (index, in scoring order): ``{figure}_mean`` and ``{figure}_sd`` over the
        folds where the figure is defined, and ``folds``."""
        grouped = self.scores().groupby("model", sort=False)
        out = pd.DataFrame(index=pd.Index(self.models, name="model"))
        for figure in FIGURES:
            out[f"{figure}_mean"] = grouped[figure].mean()
            out[f"{figure}_sd"] = grouped[figure].std(ddof=1)
        out["folds"] = grouped.size()
        return out


def run_walk_forward(
    frame: pd.DataFrame,
    folds: Sequence[Fold],
    config: TrainingConfig,
    spec: BacktestSpec,
    *,
    label_spec: LabelSpec,
    archs: Sequence[str] = ARCHS,
    on_fold: Callable[[FoldOutcome], None] | None = None,
) -> WalkForward:
    """Retrain and score every fold (see the module docstring); ``on_fold`` after each."""
    outcomes = []
    for fold in folds:
        outcome = evaluate_fold(frame, fold, config, spec, label_spec=label_spec, archs=archs)
        if on_fold is not None:
            on_fold(outcome)
        outcomes.append(outcome)
    return WalkForward(tuple(outcomes), spec)


def evaluate_fold(
    frame: pd.DataFrame,
    fold: Fold,
    config: TrainingConfig,
    spec: BacktestSpec,
    *,
    label_spec: LabelSpec,
    archs: Sequence[str] = ARCHS,
) -> FoldOutcome:
    """One fold: its dataset, the retrained models' probabilities on its block, their scores."""
    began = time.perf_counter()
    dataset = fold_dataset(frame, fold, config, label_spec)
    block = ValidationSet.from_dataset(dataset, "holdout")
    if not len(block):
        raise ValueError(f"fold {fold.number}: no samples in its scored block {fold.scored}")
    if not can_backtest(block):
        raise ValueError(
            "the labelled rows carry no prices to backtest on: they need open, high, low and "
            "close (load_labelled_features(..., prices=True))"
        )
    probs = {arch: network_probabilities(arch, dataset, block, config) for arch in archs}
    probs[LOGISTIC] = logistic_probabilities(dataset, block, config.seed)
    scores = {name: score(fold.number, name, block, p, spec) for name, p in probs.items()}
    seconds = time.perf_counter() - began
    return FoldOutcome(fold, len(block), scores, seconds)


def fold_dataset(
    frame: pd.DataFrame, fold: Fold, config: TrainingConfig, label_spec: LabelSpec
) -> TrainingDataset:
    """The fold's dataset from the rows before the end of its scored block."""
    end = fold.plan.bounds("holdout")[1]  # type: ignore[index]
    rows = frame[pd.to_datetime(frame["ts"], utc=True) < end]
    return build_dataset(rows, config, label_spec=label_spec, plan=fold.plan)


def network_probabilities(
    arch: str, dataset: TrainingDataset, block: ValidationSet, config: TrainingConfig
) -> np.ndarray:
    """Train and calibrate ``arch`` as the nightly does; its probabilities on the block."""
    from quant_assets.models.training import predict_proba, train_and_calibrate

    model = train_and_calibrate(arch, dataset, config).model
    return np.concatenate(
        [
            predict_proba(model, dataset.scaler.transform(chunk))
            for chunk in block.windows.chunks(PREDICT_CHUNK)
        ]
    )


def logistic_probabilities(
    dataset: TrainingDataset, block: ValidationSet, seed: int = 0
) -> np.ndarray:
    """The logistic baseline fitted on train, calibrated on val; its probabilities on the block."""
    n_val = len(dataset.samples["val"])
    # The block's windows are unscaled (as a bundle gets them): scale the newest bar.
    newest = dataset.scaler.transform(lagged_features(block.windows))
    evaluated = np.concatenate([lagged_features(dataset.window_index("val")), newest])
    train = lagged_features(dataset.window_index("train"))
    raw = logistic(train, dataset.y("train"), evaluated, seed)
    shift = log_prior_shift(dataset.class_weights)  # its class_weight="balanced" is the same
    temperature = fit_temperature(raw[:n_val], dataset.y("val"), shift)
    return apply_temperature(raw[n_val:], temperature, shift)


def score(
    fold: int, model: str, block: ValidationSet, probs: np.ndarray, spec: BacktestSpec
) -> FoldScore:
    """macro-F1, the backtest's net Sharpe and the PSR of one model's probabilities on a block."""
    result = holdout_backtest(block, probs, spec)
    daily = result.portfolio_daily()
    at = result.portfolio.at(spec.default_cost_bps)
    return FoldScore(
        fold=fold,
        model=model,
        macro_f1=compute_metrics(block.labels, probs).macro_f1_updown,
        net_sharpe=float(at.sharpe),
        psr=probabilistic_sharpe_ratio(daily.to_numpy()),
        trades=int(result.portfolio.n_trades),
        net_return=float(at.net_return),
        daily_net=daily,
    )
