"""``triple_barrier_labels`` vs a per-event pandas loop of the mlfinlab shape, in one process.

Same data as ``benchmarks/features.py`` (20 tickers × 60 sessions of ``SyntheticMarket`` bars),
``LabelSpec()`` defaults (horizon 30 bars, pt = sl = 1, span 100, close touch) and one σ column
(``barrier_volatility``) given to both. The loop does what mlfinlab's ``apply_pt_sl_on_t1``
does, with this project's semantics: vertical barriers computed vectorized first, then for each
event slice the ticker's close path with ``.loc``, find the first upper and lower touch with
boolean masks and take the earliest (stop first on a tie). It runs on ``LOOP_EVENTS`` evenly
spaced events only; its full time is that per-event time × the number of events. Asserts
identical label, t1 and ret on the shared events and prints the ratio (goal ≥ 1000×); exit
status 1 if the goal is missed.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from quant_assets.labels import LabelSpec, barrier_volatility, triple_barrier_labels

try:  # python -m benchmarks.labels
    from benchmarks.features import benchmark_bars
except ImportError:  # python benchmarks/labels.py
    from features import benchmark_bars  # type: ignore[no-redef]

LOOP_EVENTS, REPEATS, GOAL = 2_000, 5, 1000.0


def vertical_barriers(bars: pd.DataFrame, horizon: int) -> pd.Series:
    """ts of min(t + horizon, last bar of t's session) per bar (same ticker), vectorized."""
    day = bars["ts"].dt.tz_convert("America/New_York").dt.date
    seg = bars.groupby(["ticker", day], sort=False)
    pos = seg.cumcount().to_numpy()
    size = seg["ts"].transform("size").to_numpy()
    row = np.arange(len(bars)) + np.minimum(horizon, size - 1 - pos)
    return pd.Series(bars["ts"].to_numpy()[row], index=bars.index)


def loop_labels(
    bars: pd.DataFrame, sigma: pd.Series, spec: LabelSpec, events: np.ndarray
) -> pd.DataFrame:
    """The slow reference: one pandas slice and two boolean masks per event."""
    vertical = vertical_barriers(bars, spec.horizon)
    closes = {t: g.set_index("ts")["close"] for t, g in bars.groupby("ticker", sort=False)}
    out = []
    for i in events:
        t0, ticker, s = bars.at[i, "ts"], bars.at[i, "ticker"], sigma.at[i]
        close = closes[ticker]
        path = close.loc[t0 : vertical.at[i]].iloc[1:]  # bars after t0 up to the vertical
        if not (np.isfinite(s) and s > 0) or path.empty:
            continue
        p0 = close.at[t0]
        upper, lower = p0 * (1 + spec.profit_take * s), p0 * (1 - spec.stop_loss * s)
        t_sl = path.index[path.to_numpy() <= lower].min()
        t_pt = path.index[path.to_numpy() >= upper].min()
        if pd.notna(t_sl) and (pd.isna(t_pt) or t_sl <= t_pt):
            label, t1 = -1, t_sl
        elif pd.notna(t_pt):
            label, t1 = 1, t_pt
        else:
            label, t1 = 0, path.index[-1]
        out.append((i, label, t1, close.at[t1] / p0 - 1))
    frame = pd.DataFrame(out, columns=["row", "label", "t1", "ret"]).set_index("row")
    frame.index.name = None
    return frame


def main() -> int:
    bars, source = benchmark_bars()
    spec = LabelSpec()
    sigma = barrier_volatility(bars, spec.vol_span, spec.horizon)
    triple_barrier_labels(bars.iloc[:1000], spec, sigma=sigma.iloc[:1000])  # numba compile

    fast_times, full_times = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fast = triple_barrier_labels(bars, spec, sigma=sigma)
        fast_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        triple_barrier_labels(bars, spec)  # σ computed inside as well
        full_times.append(time.perf_counter() - t0)
    t_fast, t_full = min(fast_times), min(full_times)

    labelled = np.flatnonzero(fast["label"].notna().to_numpy())
    events = labelled[np.linspace(0, len(labelled) - 1, LOOP_EVENTS).astype(int)]
    t0 = time.perf_counter()
    slow = loop_labels(bars, sigma, spec, bars.index[events].to_numpy())
    t_loop = time.perf_counter() - t0
    per_event = t_loop / len(events)

    shared = fast.loc[slow.index]
    assert len(slow) == len(events), "the loop skipped events the labeller labelled"
    assert (shared["label"].astype(int).to_numpy() == slow["label"].to_numpy()).all()
    assert (shared["t1"].to_numpy() == pd.DatetimeIndex(slow["t1"]).to_numpy()).all()
    np.testing.assert_allclose(shared["ret"], slow["ret"], rtol=1e-12)

    n_events = len(labelled)
    extrapolated = per_event * n_events
    ratio = extrapolated / t_fast
    counts = {str(k): int(v) for k, v in fast["label"].value_counts(dropna=False).items()}
    print(f"bars: {len(bars):,} ({source}); labelled events: {n_events:,}; labels {counts}")
    print(
        f"triple_barrier_labels (σ given)    : {t_fast * 1e3:9.1f} ms "
        f"({t_fast / n_events * 1e9:.0f} ns/event)"
    )
    print(f"triple_barrier_labels (σ computed) : {t_full * 1e3:9.1f} ms")
    print(
        f"per-event pandas loop ({len(events):,} events): {t_loop:9.2f} s "
        f"= {per_event * 1e6:.0f} us/event -> {extrapolated:.0f} s extrapolated to all"
    )
    print(f"identical label/t1/ret on the {len(events):,} shared events")
    print(
        f"ratio (σ given)                    : {ratio:9.0f}x  (goal >= {GOAL:.0f}x: "
        f"{'met' if ratio >= GOAL else 'MISSED'}); σ computed: {extrapolated / t_full:.0f}x"
    )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
