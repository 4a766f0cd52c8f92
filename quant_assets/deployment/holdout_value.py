"""What a model's holdout probabilities earn: the cost-aware backtest on the holdout's own bars.

The validation set (``scoring.ValidationSet``) carries each sample's ticker and the holdout
segment's bars with prices and barrier σ (``TrainingDataset.holdout_bars``). A model's
probabilities are placed on the bars of their samples (every other bar has no prediction and
never trades) and ``evaluation.backtest.run_backtest`` applies the stated policy
(``BacktestSpec``: τ, the label's horizon and barriers, costs). ``net_value_of`` turns the
trades into the decision's ``NetValue``: each trade's net return at the default cost, divided
by the number of tickers (the equal-weight portfolio), at its signal sample, resampled with the
decision's block bootstrap over whole timestamps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.deployment.decision import DecisionRule, NetValue, net_value
from quant_assets.deployment.scoring import ValidationSet
from quant_assets.evaluation.backtest import BPS, BacktestResult, BacktestSpec, run_backtest
from quant_assets.labels import CLASS_ORDER

DEFAULT_THRESHOLD = 0.1  # τ on p_up − p_down


def can_backtest(vs: ValidationSet) -> bool:
    """The set carries its bars and each sample's ticker."""
    return vs.market is not None and vs.tickers is not None and len(vs.market) > 0


def holdout_backtest(vs: ValidationSet, probs: np.ndarray, spec: BacktestSpec) -> BacktestResult:
    """Backtest ``probs`` (one row per sample of ``vs``, ``CLASS_ORDER``) on the set's bars."""
    if not can_backtest(vs):
        raise ValueError("the validation set has no bars to backtest on (rebuild the dataset)")
    return backtest_samples(vs.market, vs.tickers, vs.time_keys, probs, spec)  # type: ignore[arg-type]


def backtest_samples(
    market: pd.DataFrame,
    tickers: np.ndarray,
    time_keys: np.ndarray,
    probs: np.ndarray,
    spec: BacktestSpec,
) -> BacktestResult:
    """Backtest per-sample probabilities (sample i: ``tickers[i]`` at ``time_keys[i]``, ns UTC)
    on ``market``'s bars (ticker, ts, open, high, low, close, sigma); bars without a sample
    have no prediction and never trade."""
    bars = market.reset_index(drop=True)
    on_bars = np.full((len(bars), len(CLASS_ORDER)), np.nan)
    position = _sample_positions(bars, tickers, time_keys)
    found = position >= 0
    on_bars[position[found]] = np.asarray(probs, dtype="float64")[found]
    return run_backtest(bars, on_bars, bars["sigma"].to_numpy(), spec)


def net_value_of(
    result: BacktestResult, vs: ValidationSet, rule: DecisionRule | None = None
) -> NetValue:
    """The decision's ``NetValue`` of a holdout backtest at its default cost."""
    cost = result.spec.default_cost_bps
    trades = result.trades
    per_trade = (trades["gross_return"].to_numpy(float) - 2 * cost / BPS) / len(result.tickers)
    keys = pd.DatetimeIndex(trades["signal_ts"]).as_unit("ns").asi8
    time_keys = np.concatenate([vs.time_keys, keys])
    values = np.concatenate([np.zeros(len(vs)), per_trade])  # minutes without a trade count 0
    return net_value(values, time_keys, trades=len(trades), cost_bps=cost, rule=rule)


def _sample_positions(bars: pd.DataFrame, tickers: np.ndarray, time_keys: np.ndarray) -> np.ndarray:
    """The row of ``bars`` of each sample (ticker, time), −1 when the bars lack it."""
    index = pd.MultiIndex.from_arrays(
        [bars["ticker"].astype(str).to_numpy(), pd.DatetimeIndex(bars["ts"]).as_unit("ns").asi8]
    )
    wanted = pd.MultiIndex.from_arrays([np.asarray(tickers).astype(str), np.asarray(time_keys)])
    return index.get_indexer(wanted)
