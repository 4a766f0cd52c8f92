"""Leakage guard: on a martingale the models find no direction; with a planted signal they do.

The same synthetic market (same noise draws) is simulated with signal 0 and with signal 0.3;
a tiny LSTM is trained on each with the production dataset code. On the martingale its
macro-F1(UP/DOWN) and direction AUC must stay inside the noise of the sign-flip null
(``baselines.sign_flip_null``: UP and DOWN swapped in random ticker-sessions); with the signal
they must be far outside it (the guard has power). Beating the *plain* stratified baseline's
macro-F1 is not evidence of leakage here: flat-vs-move is predictable from time of day and
volatility on a martingale (the oracle and the logistic regression do it as well), so the
test isolates the direction, which only leaks through lookahead.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from quant_assets.labels import LabelSpec
from quant_assets.models import baselines
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.dataset import build_dataset
from quant_assets.models.training import classification_metrics, predict_proba, train_model
from quant_assets_tests.models.helpers import TINY, market_bars

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TICKERS = ("AAA", "BBB", "CCC", "DDD")
CONFIG = TINY.replace(epochs=3, lstm_units=16, train_stride=2)


def evaluate(signal: float) -> dict[str, float]:
    _, bars = market_bars(signal, TICKERS)
    ds = build_dataset(labelled_features_from_bars(bars), CONFIG, label_spec=LabelSpec())
    model = train_model("lstm", ds, CONFIG).model
    # Both unseen segments: more samples, more blocks.
    x = np.concatenate([ds.windows("test"), ds.windows("holdout")])
    y = np.concatenate([ds.y("test"), ds.y("holdout")])
    samples = [ds.sample_frame("test"), ds.sample_frame("holdout")]
    blocks = np.concatenate([baselines.session_blocks(s) for s in samples])
    proba = predict_proba(model, x)
    out = baselines.sign_flip_null(y, proba, blocks, n_perm=300)
    strat = baselines.stratified(ds.y("train"), len(y), seed=1)
    out["stratified_f1"] = classification_metrics(y, strat)["macro_f1_updown"]
    return out


def test_martingale_gives_no_direction_and_a_planted_signal_does() -> None:
    null = evaluate(0.0)
    planted = evaluate(0.3)
    log.info(f"martingale {null}\nplanted {planted}")
    # Martingale: not better than the directional null beyond noise (3 sd, one-sided).
    assert null["f1"] <= null["f1_null_mean"] + 3 * null["f1_null_sd"], null
    assert null["auc"] <= 0.5 + 3 * null["auc_null_sd"], null
    # Same code, same noise draws, planted signal: far outside the martingale's noise band
    # (the guard can fail), and outside its own sign-flip null too.
    assert planted["f1"] > null["f1_null_mean"] + 6 * null["f1_null_sd"], planted
    assert planted["auc"] > 0.5 + 6 * null["auc_null_sd"], planted
    assert planted["auc"] > 0.5 + 3 * planted["auc_null_sd"], planted
    assert planted["f1"] > planted["stratified_f1"] + 0.1, planted
