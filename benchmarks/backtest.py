"""``run_backtest`` vs the per-bar reference loop at all five cost levels, in one process.

Same data as ``benchmarks/features.py`` (20 tickers × 60 sessions of ``SyntheticMarket`` bars),
seeded Dirichlet(1, 1, 1) class probabilities, σ from ``barrier_volatility`` (span 100, horizon
30), ``BacktestSpec(threshold=0.3)`` (horizon 30 minutes, pt = sl = 1, close touch) and its cost
grid (0, 0.5, 1, 2, 5 bps per side). The baseline is the per-bar reference loop of the tests,
imported from ``quant_assets_tests/evaluation/helpers.py`` (``reference_backtest``): a plain
Python state machine over each ticker's bars that books the cost at every fill, so it runs once
per cost level; its time is the sum of the five runs. ``run_backtest`` runs the trade logic
once for the whole grid; it is timed as best of ``REPEATS`` with ``ic=False`` (what the loop
gives, trades and daily P&L, and every metric but the IC, which the loop does not compute): the
figure the goal is on; and with the IC as well.
Asserts identical trades and P&L at every cost (``assert_same``) and prints the ratio
(goal ≥ 200×); exit status 1 if the goal is missed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from quant_assets.evaluation import BacktestSpec, run_backtest, signal_score
from quant_assets.labels import barrier_volatility
from quant_assets_tests.evaluation.helpers import assert_same, reference_backtest

try:  # python -m benchmarks.backtest
    from benchmarks.features import N_SESSIONS, benchmark_bars
except ImportError:  # python benchmarks/backtest.py
    from features import N_SESSIONS, benchmark_bars  # type: ignore[no-redef]

REPEATS, GOAL, SEED = 5, 200.0, 0


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    bars, source = benchmark_bars()
    probs = np.random.default_rng(SEED).dirichlet([1.0, 1.0, 1.0], len(bars))
    sigma = barrier_volatility(bars, span=100, horizon=30).to_numpy()
    spec = BacktestSpec(threshold=0.3)
    result = run_backtest(bars, probs, sigma, spec)  # numba compile (or cache load)

    t_fast = best_of(lambda: run_backtest(bars, probs, sigma, spec, ic=False))
    t_full = best_of(lambda: run_backtest(bars, probs, sigma, spec))

    score = signal_score(probs)
    loop_times = {}
    for cost in spec.costs_bps:
        t0 = time.perf_counter()
        ref = reference_backtest(bars, score, sigma, spec, cost)
        loop_times[cost] = time.perf_counter() - t0
        assert_same(result, ref, cost)
    t_loop = sum(loop_times.values())
    ratio = t_loop / t_fast

    reasons = result.trades["exit_reason"].value_counts().to_dict()
    print(
        f"bars: {len(bars):,} ({bars['ticker'].nunique()} tickers × {N_SESSIONS} sessions, "
        f"{source}); trades: {len(result.trades):,} {reasons}"
    )
    print(
        f"run_backtest, 5 costs, ic=False : {t_fast * 1e3:8.1f} ms "
        f"({t_fast / len(bars) * 1e9:.0f} ns/bar)"
    )
    print(f"run_backtest, 5 costs, with IC  : {t_full * 1e3:8.1f} ms")
    per_cost = ", ".join(f"{c:g}: {t:.2f}" for c, t in loop_times.items())
    print(f"per-bar reference loop, 5 runs  : {t_loop:8.2f} s  (s per cost level: {per_cost})")
    print("identical trades, prices and gross returns; daily P&L equal to 1e-12 at every cost")
    print(
        f"ratio                           : {ratio:8.0f}x  (goal >= {GOAL:.0f}x); with IC "
        f"{t_loop / t_full:.0f}x; one cost level of the loop {t_loop / 5 / t_fast:.0f}x"
    )
    print(result.cost_grid_table().round(4).to_string())
    print(f"goals: {'met' if ratio >= GOAL else 'MISSED'}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
