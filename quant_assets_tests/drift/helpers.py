"""Synthetic-market feature frames and a stand-in classifier for the drift tests and benchmark.

No trained model is available to the monitoring tests, so concept drift is exercised with a
*stand-in* probability stream: a fixed 3-class softmax of two standardized trend features
(``standin_probs``). It is not a model of anything; it only has to react to its inputs the way a
classifier does (more extreme inputs -> more confident outputs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.drift.reference import ReferenceStats
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import CALENDAR_FEATURES
from quant_assets.market import calendar
from quant_assets.market.synthetic import (
    Liquidity,
    LiquiditySetting,
    SyntheticConfig,
    SyntheticMarket,
)

STANDIN_INPUTS = (("log_ret_15", 1.0), ("close_ema_26_rel", 0.6))


def market_features(
    tickers: tuple[str, ...],
    first_session: str,
    n_sessions: int,
    seed: int = 7,
    shift_at: pd.Timestamp | None = None,
    vol_multiplier: float = 3.0,
    liquidity: LiquiditySetting | None = None,
) -> pd.DataFrame:
    """``create_features`` of ``n_sessions`` sessions of the synthetic market (no corporate
    actions: the monitor sees adjusted features), sorted by (ticker, ts); ``liquidity`` as in
    ``SyntheticConfig`` (None: the liquid market)."""
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
        liquidity=Liquidity() if liquidity is None else liquidity,
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


def minute_frame(
    tickers=("A", "B"), sessions=8, phi=0.9, seed=0, common=0.0, first="2026-03-02"
) -> pd.DataFrame:
    """AR(1) feature ``x`` (and iid ``y``) on every session minute of each ticker; ``common``
    mixes in a shared series (cross-ticker correlation)."""
    days = calendar.sessions(first, "2026-12-31")[:sessions]
    ts = pd.DatetimeIndex(np.concatenate([calendar.session_minutes(d) for d in days]))
    rng = np.random.default_rng(seed)

    def ar(n):
        e = rng.normal(size=n)
        out = np.empty(n)
        out[0] = e[0] / np.sqrt(1 - phi**2)
        for i in range(1, n):
            out[i] = phi * out[i - 1] + e[i]
        return out

    shared = ar(len(ts))
    frames = []
    for t in tickers:
        x = np.sqrt(1 - common) * ar(len(ts)) + np.sqrt(common) * shared
        frames.append(pd.DataFrame({"ticker": t, "ts": ts, "x": x, "y": rng.normal(size=len(ts))}))
    out = pd.concat(frames, ignore_index=True)
    for c in CALENDAR_FEATURES:
        out[c] = 0.0
    return out


def zero_inflated_frame(
    tickers=("A", "B", "C"),
    sessions=8,
    zero_share=0.45,
    scale=1.0,
    seed=0,
    first="2026-03-02",
) -> pd.DataFrame:
    """A return-like feature ``x`` on every session minute: exactly 0 with probability
    ``zero_share`` (a price that did not move a tick), else N(0, ``scale``); iid."""
    frame = minute_frame(tickers=tickers, sessions=sessions, phi=0.0, seed=seed, first=first)
    rng = np.random.default_rng(seed + 1)
    moved = rng.random(len(frame)) >= zero_share
    frame["x"] = np.where(moved, scale * rng.normal(size=len(frame)), 0.0)
    return frame
