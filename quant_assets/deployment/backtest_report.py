"""The nightly holdout backtests where people look: files, headline figures and MLflow.

Every model gets the same files (``EQUITY_PNG``, ``COST_GRID_CSV``, ``SUMMARY_JSON``) at the
root of its training run's artifacts in MLflow (the Compare view lists only root-level files)
and the same metric names (``headline_metrics``, ``cost_grid_metrics``), so MLflow's Compare
view lines the models up. A metric's step is the
holdout's last session as ``yyyymmdd``: a champion backtested again on a later night adds a
point instead of overwriting the last.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from quant_assets.evaluation.backtest import BacktestResult, write_equity_curve
from quant_assets.tracking import MlflowRun, safe_uri, tracking_client

log = logging.getLogger(__name__)

EQUITY_PNG = "holdout_equity_curve.png"
COST_GRID_CSV = "holdout_cost_grid.csv"
SUMMARY_JSON = "holdout_backtest.json"


def headline_metrics(result: BacktestResult | None) -> dict[str, float]:
    """The portfolio's holdout figures at the default cost (finite ones only)."""
    if result is None:
        return {}
    book = result.portfolio
    at = book.at(result.spec.default_cost_bps)
    figures = {
        "holdout_net_return": at.net_return,
        "holdout_net_sharpe": at.sharpe,
        "holdout_max_drawdown": at.max_drawdown,
        "holdout_hit_rate": at.hit_rate,
        "holdout_gross_return": book.gross_return,
        "holdout_trades": float(book.n_trades),
        "holdout_turnover": book.turnover,
        "holdout_exposure": book.exposure,
        "holdout_ic": book.ic,
        "holdout_break_even_bps": book.break_even_bps,
    }
    return {k: float(v) for k, v in figures.items() if np.isfinite(v)}


def cost_grid_metrics(result: BacktestResult) -> dict[str, float]:
    """Net return and Sharpe at every cost of the grid: ``holdout_net_return_at_1bps``, …"""
    out: dict[str, float] = {}
    for c in result.portfolio.costs:
        for name, value in (("net_return", c.net_return), ("net_sharpe", c.sharpe)):
            if np.isfinite(value):
                out[f"holdout_{name}_at_{c.cost_bps:g}bps"] = float(value)
    return out


def write_backtest_files(result: BacktestResult, folder: Path) -> Path:
    """The equity curve, the cost grid and a JSON summary of one model's backtest."""
    folder.mkdir(parents=True, exist_ok=True)
    write_equity_curve(result, folder / EQUITY_PNG)
    result.cost_grid_table().to_csv(folder / COST_GRID_CSV)
    (folder / SUMMARY_JSON).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return folder


def backtest_table(results: Mapping[str, BacktestResult]) -> str:
    """Markdown: one row per model at the default cost, and each model's cost grid."""
    if not results:
        return "no holdout backtest"
    lines = [
        "| model | trades | gross | net | net Sharpe | max drawdown | hit rate | IC | "
        "break-even (bps/side) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        book = result.portfolio
        at = book.at(result.spec.default_cost_bps)
        lines.append(
            f"| {name} | {book.n_trades} | {book.gross_return:+.4%} | {at.net_return:+.4%} | "
            f"{at.sharpe:.2f} | {at.max_drawdown:.4%} | {at.hit_rate:.1%} | {book.ic:+.3f} | "
            f"{book.break_even_bps:.2f} |"
        )
    spec = next(iter(results.values())).spec
    lines += [
        "",
        f"Policy: long when p_up − p_down ≥ {spec.threshold:g}, short when ≤ −{spec.threshold:g}; "
        f"enter at the next bar's open, exit at the barriers or {spec.horizon_minutes} minutes, "
        f"flat at the close; default cost {spec.default_cost_bps:g} bps per side.",
        "",
        "| model | " + " | ".join(f"net at {c:g} bps" for c in spec.costs_bps) + " |",
        "|---|" + "---|" * len(spec.costs_bps),
    ]
    for name, result in results.items():
        nets = " | ".join(f"{c.net_return:+.4%}" for c in result.portfolio.costs)
        lines.append(f"| {name} | {nets} |")
    return "\n".join(lines)


def log_backtests(
    tracking_uri: str,
    results: Mapping[str, BacktestResult],
    run_ids: Mapping[str, str | None],
    folder: Path,
) -> list[str]:
    """Log each model's backtest to its training run (same names for every model); what could
    not be logged comes back as notes, never raised (MLflow is not the system of record)."""
    notes: list[str] = []
    try:
        client = tracking_client(tracking_uri)
    except Exception as e:  # MLflow down or misconfigured
        return [f"MLflow at {safe_uri(tracking_uri)}: backtests not logged ({e})"]
    for name, result in results.items():
        run_id = run_ids.get(name)
        if not run_id:
            notes.append(f"{name}: no MLflow run to log its backtest to")
            continue
        try:
            run = MlflowRun(client, run_id, client.get_run(run_id).info.experiment_id)
            step = _step(result)
            run.log_metrics(headline_metrics(result) | cost_grid_metrics(result), step=step)
            run.log_artifacts(write_backtest_files(result, folder / name))
        except Exception as e:  # one run's failure must not hide the others
            notes.append(f"{name}: backtest not logged to MLflow run {run_id} ({e})")
    for note in notes:
        log.warning(note)
    return notes


def _step(result: BacktestResult) -> int:
    if result.sessions.empty:
        return 0
    return int(result.sessions[-1].strftime("%Y%m%d"))
