"""Holdout backtests: probabilities land on their own bars, the planted signal earns after costs
and noise does not, and the gate refuses a first champion that does not earn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant_assets.deployment.decision import DecisionRule
from quant_assets.deployment.holdout_value import holdout_backtest, net_value_of
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.deployment.scoring import ValidationSet
from quant_assets.deployment.validate_model import validate_and_deploy
from quant_assets.evaluation.backtest import BacktestSpec, run_backtest
from quant_assets.labels import CLASS_ORDER, LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.settings import Settings

TICKERS = ("AAA", "BBB", "CCC")
SESSIONS = ("2026-05-04", "2026-05-15")
SPEC = BacktestSpec(threshold=0.2, horizon_minutes=30)
RULE = DecisionRule(n_boot=500, min_samples=100)
COLUMNS = ("score",)


def holdout(signal: float = 0.3) -> ValidationSet:
    """Ten sessions of three tickers: every labelled bar is a sample whose one-bar window
    holds the market's latent signal m (what an oracle knows at the bar's close)."""
    market = SyntheticMarket(
        SyntheticConfig(tickers=TICKERS, start="2026-04-01", end="2026-05-29", signal=signal)
    )
    start, end = calendar.span_of_days(*SESSIONS)
    bars = pd.concat([market.get_bars(t, start, end) for t in TICKERS], ignore_index=True)
    labels = triple_barrier_labels(bars, LabelSpec())
    m = np.concatenate(
        [
            market.latent_signal(t, start, end).reindex(pd.DatetimeIndex(g["ts"])).to_numpy()
            for t, g in bars.groupby("ticker", sort=False)
        ]
    )
    keep = labels["label"].notna().to_numpy()
    market_frame = bars.assign(sigma=labels["sigma"].to_numpy())
    return ValidationSet.from_arrays(
        m[keep, None, None].astype(np.float32),
        labels["label"].to_numpy(dtype="float64")[keep].astype(np.int8),
        pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8[keep],
        COLUMNS,
        feature_version="1",
        tickers=bars["ticker"].to_numpy(dtype=object)[keep],
        market=market_frame,
        label_spec=LabelSpec(),
    )


def oracle_probs(scores: np.ndarray) -> np.ndarray:
    """The class priors, tilted toward the latent drift's side: p_up − p_down = 0.3 tanh(2 m)."""
    tilt = 0.15 * np.tanh(2 * np.asarray(scores, dtype="float64"))
    return np.stack([0.3 - tilt, np.full_like(tilt, 0.4), 0.3 + tilt], axis=1)


def test_probabilities_land_on_their_own_bars() -> None:
    vs = holdout()
    probs = oracle_probs(vs.windows.bar()[:, 0])
    result = holdout_backtest(vs, probs, SPEC)
    bars = vs.market.reset_index(drop=True)
    on_bars = np.full((len(bars), 3), np.nan)
    key = pd.MultiIndex.from_arrays(
        [bars["ticker"], pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8]
    )
    rows = key.get_indexer(pd.MultiIndex.from_arrays([vs.tickers, vs.time_keys]))
    on_bars[rows] = probs
    direct = run_backtest(bars, on_bars, bars["sigma"].to_numpy(), SPEC)
    pd.testing.assert_frame_equal(result.trades, direct.trades)
    assert len(result.trades) > 50


def test_the_planted_signal_earns_with_confidence_and_noise_does_not() -> None:
    vs = holdout()
    oracle = net_value_of(
        holdout_backtest(vs, oracle_probs(vs.windows.bar()[:, 0]), SPEC), vs, RULE
    )
    assert oracle.net_pnl > 0 and oracle.confidence_positive >= 0.95 and oracle.cost_bps == 1.0
    noise = oracle_probs(np.random.default_rng(0).normal(size=len(vs)))
    value = net_value_of(holdout_backtest(vs, noise, SPEC), vs, RULE)
    assert value.trades > 0 and value.net_pnl < oracle.net_pnl
    assert value.confidence_positive < 0.95


def test_net_value_counts_each_trade_once_net_of_both_sides() -> None:
    vs = holdout()
    result = holdout_backtest(vs, oracle_probs(vs.windows.bar()[:, 0]), SPEC)
    value = net_value_of(result, vs, RULE)
    assert value.trades == len(result.trades)
    assert value.net_pnl == pytest.approx(result.portfolio.at(1.0).net_return, abs=1e-12)


# --- the gate with backtests -----------------------------------------------------------------
class ScorePredictor:
    """Probabilities from the window's score: the oracle's, or a fixed-seed coin's."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.mode = meta["fake_mode"]

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        score = windows[:, -1, 0].astype("float64")
        if self.mode == "noise":
            score = np.random.default_rng(1).normal(size=len(score))
        return oracle_probs(score)


def score_bundle(home: Path, arch: str, mode: str) -> Path:
    d = home / "models" / f"{arch}_v1"
    d.mkdir(parents=True)
    (d / f"{arch}_v1.tflite").write_bytes(b"fake")
    meta = {
        "arch": arch,
        "version": 1,
        "fake_mode": mode,
        "window": 1,
        "feature_spec": {"version": "1", "columns": list(COLUMNS), "warmup_bars": 0},
        "class_order": list(CLASS_ORDER),
        "training_window": {"first_session": "2026-04-01", "last_session": "2026-04-30"},
    }
    (d / "bundle.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize(("mode", "outcome"), [("oracle", "promoted"), ("noise", "no_champion")])
def test_a_first_champion_must_earn_after_costs(tmp_path: Path, mode: str, outcome: str) -> None:
    home = tmp_path / "home"
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    bundles = {"lstm_v1": score_bundle(home, "lstm", mode)}

    def loader(path: Path) -> ScorePredictor:
        return ScorePredictor(json.loads((Path(path) / "bundle.json").read_text()))

    run = validate_and_deploy(registry, holdout(), bundles, RULE, loader=loader, backtest=SPEC)
    assert run.action == outcome
    assert set(run.backtests) == {"lstm_v1"}
    verdict = "pass" if mode == "oracle" else "FAIL"
    assert f"net value {verdict} (net P&L" in run.decision.reason
    if outcome == "promoted":
        metrics = registry.load().champion.metrics
        assert metrics["holdout_net_return"] > 0 and metrics["holdout_trades"] > 0
