"""Reference classifiers the models must beat, and the oracle they are measured against.

* ``majority``: always the most frequent train class.
* ``stratified``: a random class drawn with the train class frequencies (seeded).
* ``logistic``: multinomial logistic regression (balanced class weights, like the networks) on
  the same scaled features of the window's newest bar; ``logistic_window`` adds the features of
  the bars 5, 15, 30 and 45 minutes earlier (a stronger linear reference).
* ``oracle``: knows the synthetic market's latent signal m (``SyntheticMarket.latent_signal``).
  Its inputs are what that latent path fixes at the sample's time t: m_t … m_{t+15} (m_{t+k}
  depends on bars up to t + k − 15 ≤ t, so all of them are known at t) summarised as m_t and
  their mean, plus the minute of the session. A gradient-boosted classifier (balanced class
  weights) turns them into class probabilities; like the networks it predicts the argmax.
  It is the reference for "how much of the planted signal did the model find".

The fitted baselines train with balanced class weights like the networks, and like theirs
their probabilities have the weights' log-prior shift taken out (``models.calibration``), so
every model's figures — argmax F1, log-loss, the backtest's p_up − p_down — are of calibrated
probabilities and compare like with like.

Leakage guard statistics. ``chance_f1``: the macro-F1 of the model's own predictions moved to
other sessions' labels (same prediction shares, no relation to the labels). ``sign_flip_null``:
the directional test the leakage guard uses (see its docstring): on a martingale the flat
class is still predictable from time of day and volatility (the oracle and the logistic
regression beat the stratified baseline there too), the direction is not. Both work on whole
(ticker, session) blocks, which keeps the dependence between overlapping labels that makes
naive standard errors too small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from quant_assets.market import calendar
from quant_assets.models.calibration import apply_temperature, log_prior_shift
from quant_assets.models.dataset import TrainingDataset
from quant_assets.models.windows import WindowIndex

UPDOWN = [0, 2]
LOGISTIC_LAGS: tuple[int, ...] = (0, 5, 15, 30, 45)
ORACLE_LOOKAHEAD = 15  # m_{t+k} for k ≤ 15 is fixed by bars ≤ t


def majority(y_train: np.ndarray, n: int) -> np.ndarray:
    """Predictions (class indices) that are all the most frequent train class."""
    return np.full(n, int(np.bincount(np.asarray(y_train, np.int64), minlength=3).argmax()))


def stratified(y_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Random predictions with the train class frequencies."""
    freq = np.bincount(np.asarray(y_train, np.int64), minlength=3).astype(float)
    return np.random.default_rng(seed).choice(3, size=n, p=freq / freq.sum())


def lagged_features(windows: WindowIndex, lags: Sequence[int] = (0,)) -> np.ndarray:
    """Features of the bars ``lags`` steps before each window's newest bar, side by side."""
    return np.concatenate([windows.bar(lag) for lag in lags if lag < windows.window], axis=1)


def logistic(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Class probabilities of a balanced multinomial logistic regression."""
    model = LogisticRegression(max_iter=500, class_weight="balanced", C=1.0, random_state=seed)
    model.fit(x_train, y_train)
    return _without_class_weights(_full_proba(model, x_eval), y_train)


def oracle_inputs(market: Any, samples: pd.DataFrame) -> np.ndarray:
    """(n, 3): m_t, mean of m_t … m_{t+15} (same session), minute of session; per sample.

    ``market`` is a ``SyntheticMarket``; ``samples`` has ticker and ts (UTC bar starts).
    """
    out = np.zeros((len(samples), 3))
    ts = pd.to_datetime(samples["ts"], utc=True)
    out[:, 2] = calendar.session_minute(ts)
    for ticker, pos in samples.groupby("ticker", sort=False).indices.items():
        t = ts.iloc[pos]
        start = t.min().tz_convert(calendar.MARKET_TZ).normalize().tz_convert("UTC")
        end = (
            t.max().tz_convert(calendar.MARKET_TZ).normalize() + pd.Timedelta(days=1)
        ).tz_convert("UTC")
        m = market.latent_signal(str(ticker), start, end)
        values = m.to_numpy(dtype=np.float64)
        day = calendar.session_labels(m.index.to_series()).to_numpy()
        at = m.index.get_indexer(pd.DatetimeIndex(t))
        if (at < 0).any():
            raise ValueError(f"{ticker}: sample times outside the latent signal's minutes")
        ahead = np.clip(at[:, None] + np.arange(ORACLE_LOOKAHEAD + 1)[None, :], 0, len(m) - 1)
        same = day[ahead] == day[at][:, None]
        path = np.where(same, values[ahead], np.nan)
        out[pos, 0] = values[at]
        out[pos, 1] = np.nanmean(path, axis=1)
    return out


def oracle(
    inputs_train: np.ndarray, y_train: np.ndarray, inputs_eval: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Class probabilities from the latent-signal inputs (gradient boosting, balanced)."""
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        class_weight="balanced",
        random_state=seed,
    )
    model.fit(inputs_train, y_train)
    return _without_class_weights(_full_proba(model, inputs_eval), y_train)


def _without_class_weights(probs: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Probabilities of a model fitted with balanced weights, the weights' prior shift undone."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=3).astype(float)
    weights = {k: len(y_train) / (3 * counts[k]) for k in range(3) if counts[k] > 0}
    if len(weights) < 3:  # a class absent in training has no weight to undo
        return probs
    return apply_temperature(probs, 1.0, log_prior_shift(weights))


def _full_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """predict_proba with a column for every class 0..2 (a class absent in training gets 0)."""
    proba = model.predict_proba(x)
    out = np.zeros((len(x), 3))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


def chance_f1(
    y_true: np.ndarray,
    pred: np.ndarray,
    blocks: np.ndarray,
    n_perm: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and sd of the UP/DOWN macro-F1 of ``pred`` shuffled by blocks (e.g. sessions).

    Whole blocks of predictions are moved onto other blocks' labels (cyclic shifts of the block
    order), so each block keeps its internal dependence but loses any relation to its labels.
    """
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    rng = np.random.default_rng(seed)
    ids, block = np.unique(np.asarray(blocks), return_inverse=True)
    scores = []
    if ids.size < 2:
        for _ in range(n_perm):
            scores.append(_f1(y_true, rng.permutation(pred)))
        return float(np.mean(scores)), float(np.std(scores))
    members = [np.flatnonzero(block == b) for b in range(ids.size)]
    for _ in range(n_perm):
        perm = rng.permutation(ids.size)
        shuffled = np.concatenate([pred[members[p]] for p in perm])
        target = np.concatenate([y_true[members[b]] for b in range(ids.size)])
        # Blocks differ in size: compare over the shorter of the two concatenations.
        m = min(len(shuffled), len(target))
        scores.append(_f1(target[:m], shuffled[:m]))
    return float(np.mean(scores)), float(np.std(scores))


def sign_flip_null(
    y_true: np.ndarray,
    proba: np.ndarray,
    blocks: np.ndarray,
    n_perm: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """Directional-skill null: UP and DOWN swapped in a random half of the blocks.

    Under "no directional skill" (a martingale) a model's up/down calls are as good as their
    mirror image, block by block, so its macro-F1(UP/DOWN) and direction AUC are draws from
    the distribution obtained by swapping p_up and p_down in randomly chosen blocks (e.g. one
    block per ticker × session, which keeps the dependence between overlapping labels). The
    flat-vs-move part of the predictions is kept: on the synthetic market it is predictable
    without lookahead (time of day, volatility), so it is not evidence of leakage.

    Returns the observed values and the null's mean and sd of both statistics.
    """
    from quant_assets.models.training import direction_auc

    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    _, block = np.unique(np.asarray(blocks), return_inverse=True)
    n_blocks = int(block.max()) + 1 if block.size else 0
    rng = np.random.default_rng(seed)
    f1s, aucs = [], []
    for _ in range(n_perm):
        flip = rng.random(n_blocks) < 0.5
        p = proba.copy()
        rows = flip[block]
        p[rows] = p[rows][:, ::-1]  # (down, flat, up) -> (up, flat, down)
        f1s.append(_f1(y_true, p.argmax(1)))
        aucs.append(direction_auc(y_true, p))
    return {
        "f1": _f1(y_true, proba.argmax(1)),
        "f1_null_mean": float(np.mean(f1s)),
        "f1_null_sd": float(np.std(f1s)),
        "auc": direction_auc(y_true, proba),
        "auc_null_mean": float(np.mean(aucs)),
        "auc_null_sd": float(np.std(aucs)),
        "blocks": n_blocks,
    }


def session_blocks(samples: pd.DataFrame) -> np.ndarray:
    """One block id per (ticker, New York session) of a sample frame (ticker, ts)."""
    day = calendar.session_labels(pd.to_datetime(samples["ts"], utc=True)).dt.strftime("%Y%m%d")
    return (samples["ticker"].astype(str) + "|" + day).to_numpy()


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    return float(f1_score(y, p, labels=UPDOWN, average="macro", zero_division=0))


def baseline_probabilities(
    dataset: TrainingDataset, segment: str = "test", seed: int = 0, market: Any = None
) -> dict[str, np.ndarray]:
    """Class probabilities of the fitted baselines on a segment (logistic, logistic_window;
    the oracle when ``market`` is given), one row per sample of the segment."""
    y_train = dataset.y("train")
    x_train = dataset.window_index("train")
    x_eval = dataset.window_index(segment)
    out = {
        "logistic": logistic(lagged_features(x_train), y_train, lagged_features(x_eval), seed),
        "logistic_window": logistic(
            lagged_features(x_train, LOGISTIC_LAGS),
            y_train,
            lagged_features(x_eval, LOGISTIC_LAGS),
            seed,
        ),
    }
    if market is not None:
        out["oracle"] = oracle(
            oracle_inputs(market, dataset.sample_frame("train")),
            y_train,
            oracle_inputs(market, dataset.sample_frame(segment)),
            seed,
        )
    return out


def baseline_predictions(
    dataset: TrainingDataset, segment: str = "test", seed: int = 0, market: Any = None
) -> dict[str, np.ndarray]:
    """Predictions (class indices) of every baseline on a segment; the oracle needs ``market``."""
    y_train = dataset.y("train")
    n = len(dataset.samples[segment])
    fitted = baseline_probabilities(dataset, segment, seed, market)
    return {
        "majority": majority(y_train, n),
        "stratified": stratified(y_train, n, seed),
        **{name: probs.argmax(1) for name, probs in fitted.items()},
    }
