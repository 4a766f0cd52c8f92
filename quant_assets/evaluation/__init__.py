"""Evaluation of a model's probabilities as a trading policy (pure core).

Modules
    ``backtest``  the cost-aware backtest: next-open entries, triple-barrier exits, costs per
                  side at a grid, per-ticker and equal-weight portfolio metrics, daily P&L
    ``sharpe``    the probabilistic Sharpe ratio of a return series

No Dagster, database or TensorFlow import anywhere in this package.
"""

from quant_assets.evaluation.backtest import (
    DEFAULT_COSTS_BPS,
    BacktestResult,
    BacktestSpec,
    BookMetrics,
    CostMetrics,
    run_backtest,
    signal_score,
    write_equity_curve,
)

__all__ = [
    "DEFAULT_COSTS_BPS",
    "BacktestResult",
    "BacktestSpec",
    "BookMetrics",
    "CostMetrics",
    "run_backtest",
    "signal_score",
    "write_equity_curve",
]
