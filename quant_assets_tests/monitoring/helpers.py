"""Synthetic-market feature frames and a stand-in classifier for the drift tests and benchmark.

No trained model is available to the monitoring tests, so concept drift is exercised with a
*stand-in* probability stream: a fixed 3-class softmax of two standardized trend features
(``standin_probs``). It is not a model of anything; it only has to react to its inputs the way a
classifier does (more extreme inputs -> more confident outputs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.features import create_features
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.monitoring import ReferenceStats

STANDIN_INPUTS = (("log_ret_15", 1.0), ("close_ema_26_rel", 0.6))


def market_features(
    tickers: tuple[str, ...],
    first_session: str,
    n_sessions: int,
    seed: int = 7,
    shift_at: pd.Timestamp | None = None,
    vol_multiplier: float = 3.0,
) -> pd.DataFrame:
    """``create_features`` of ``n_sessions`` sessions of the synthetic market (no corporate
    actions: the monitor sees adjusted features), sorted by (ticker, ts)."""
    days = calendar.sessions(first_session, pd.Timestamp(first_session) + pd.Timedelta(days=400))
    days = days[:n_sessions]
    cfg = SyntheticConfig(
        seed=seed,
        tickers=tickers,
        start=str(days[0].date()),
        end=str(days[-1].date()),
        corporate_actions=False,
        regime_shift_at=shift_at,
        regime_vol_multiplier=vol_multiplier,
    )
    market = SyntheticMarket(cfg)
    start, end = calendar.session_bounds(days[0])[0], calendar.session_bounds(days[-1])[1]
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    return create_features(bars)


def sessions_slice(features: pd.DataFrame, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
    """Rows of the sessions ``first`` .. ``last`` (inclusive), index reset."""
    lo = calendar.session_bounds(first)[0]
    hi = calendar.session_bounds(last)[1]
    return features[(features["ts"] >= lo) & (features["ts"] < hi)].reset_index(drop=True)


def standin_probs(features: pd.DataFrame, reference: ReferenceStats) -> np.ndarray:
    """(n, 3) probabilities (down, flat, up) of a fixed softmax of standardized trend features.

    Each input is centred on its training median and scaled by its training IQR / 1.349 (robust
    to the overnight-gap tails); the trend score s gives logits (-s, 0.5, s).
    """
    score = np.zeros(len(features))
    for name, weight in STANDIN_INPUTS:
        ref = reference.features[name]
        lo, mid, hi = np.interp([0.25, 0.5, 0.75], ref.levels, ref.quantiles)
        scale = (hi - lo) / 1.349 or 1.0
        z = (features[name].to_numpy(dtype=np.float64) - mid) / scale
        score += weight * np.clip(np.nan_to_num(z), -20.0, 20.0)
    logits = np.stack([-score, np.full_like(score, 0.5), score], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
