"""The walk-forward evaluation where people look: the table, the plot, the files, MLflow names.

* ``scores_table``: markdown, one row per fold × model (fold, scored sessions, training span,
  model, macro-F1, net Sharpe, PSR, trades), then a mean ± sd row per model.
* ``write_plot``: per-fold net Sharpe of each model (bars) and each model's out-of-sample net
  equity over the scored blocks one after the other.
* ``write_report_files``: the table, the plot, the scores and the summary as CSV, and a JSON of
  the folds, the policy and every figure, under fixed names (``REPORT_FILES``).
* MLflow names: every model gets the same per-fold metric names (``fold_metrics``: step = the
  fold number) and summary names (``summary_metrics``), so nested runs of the models line up in
  MLflow's Compare view; ``overview_metrics`` names each model's summary for the parent run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.deployment.walk_forward import FIGURES, WalkForward

METRIC_PREFIX = "wf_"
TABLE_MD = "walk_forward.md"
PLOT_PNG = "walk_forward.png"
SCORES_CSV = "scores.csv"
SUMMARY_CSV = "summary.csv"
RESULT_JSON = "walk_forward.json"
REPORT_FILES: tuple[str, ...] = (TABLE_MD, PLOT_PNG, SCORES_CSV, SUMMARY_CSV, RESULT_JSON)
_DIGITS = {"macro_f1": 4, "net_sharpe": 2, "psr": 3}


def fold_metrics(figures: dict[str, float]) -> dict[str, float]:
    """One model's figures on one fold under their MLflow names (``wf_macro_f1``, …)."""
    return {f"{METRIC_PREFIX}{k}": v for k, v in figures.items() if math.isfinite(v)}


def summary_metrics(wf: WalkForward, model: str) -> dict[str, float]:
    """One model's mean and sd over the folds (``wf_macro_f1_mean``, ``wf_psr_sd``, …)."""
    row = wf.summary().loc[model].drop("folds")
    return {f"{METRIC_PREFIX}{k}": float(v) for k, v in row.items() if math.isfinite(v)}


def overview_metrics(wf: WalkForward) -> dict[str, float]:
    """Every model's summary named by the model (``lstm_wf_net_sharpe_mean``), for one run."""
    return {f"{m}_{k}": v for m in wf.models for k, v in summary_metrics(wf, m).items()}


def scores_table(wf: WalkForward) -> str:
    """Markdown: each fold × model, then mean ± sd per model, and the policy."""
    if not wf.folds:
        return "no fold"
    lines = [
        "| fold | scored sessions | trained on | model | macro-F1 (UP/DOWN) | net Sharpe | "
        "PSR (SR > 0) | trades |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for outcome in wf.folds:
        scored, trained = outcome.fold.scored, outcome.fold.trained
        for s in outcome.scores.values():
            lines.append(
                f"| {outcome.fold.number} | {scored[0].date()} … {scored[1].date()} "
                f"({len(s.daily_net)}) | {trained[0].date()} … {trained[1].date()} | {s.model} | "
                + " | ".join(_number(getattr(s, f), _DIGITS[f]) for f in FIGURES)
                + f" | {s.trades} |"
            )
    summary = wf.summary()
    for model, row in summary.iterrows():
        cells = " | ".join(
            f"{_number(row[f'{f}_mean'], _DIGITS[f])} ± {_number(row[f'{f}_sd'], _DIGITS[f])}"
            for f in FIGURES
        )
        lines.append(f"| mean ± sd | {int(row['folds'])} folds | | {model} | {cells} | |")
    spec = wf.spec
    lines += [
        "",
        f"Net at {spec.default_cost_bps:g} bps per side; long when p_up − p_down ≥ "
        f"{spec.threshold:g}, short when ≤ −{spec.threshold:g}. Net Sharpe annualized from the "
        "block's daily net P&L; PSR = P(true Sharpe > 0) from the same days (Bailey & López de "
        "Prado 2012). Mean ± sd (ddof 1) over the folds where a figure is defined.",
    ]
    return "\n".join(lines)


def write_plot(wf: WalkForward, path: Path) -> Path:
    """PNG: per-fold net Sharpe of each model, and each model's out-of-sample net equity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = wf.scores()
    fig, (bars, equity) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    folds = [o.fold.number for o in wf.folds]
    width = 0.8 / max(len(wf.models), 1)
    for k, model in enumerate(wf.models):
        mine = scores[scores["model"] == model].set_index("fold").reindex(folds)
        offsets = np.arange(len(folds)) + (k - (len(wf.models) - 1) / 2) * width
        bars.bar(offsets, mine["net_sharpe"], width, label=model)  # NaN (no trade): no bar
        daily = pd.concat([o.scores[model].daily_net for o in wf.folds])
        equity.plot(daily.index, daily.cumsum().to_numpy(), label=model)
    bars.axhline(0.0, color="black", linewidth=0.8)
    bars.set_xticks(
        range(len(folds)),
        [
            f"fold {o.fold.number}\n{o.fold.scored[0]:%m-%d} … {o.fold.scored[1]:%m-%d}"
            for o in wf.folds
        ],
    )
    bars.set_ylabel(f"net Sharpe at {wf.spec.default_cost_bps:g} bps")
    bars.set_title("net Sharpe per fold (annualized)", fontsize=10)
    bars.legend(fontsize=8)
    for outcome in wf.folds[1:]:
        equity.axvline(outcome.fold.scored[0], color="grey", linestyle=":", linewidth=0.8)
    equity.axhline(0.0, color="black", linewidth=0.8)
    equity.set_ylabel("cumulative net return")
    equity.set_title("out-of-sample net equity over the scored blocks", fontsize=10)
    equity.legend(fontsize=8)
    equity.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report_files(wf: WalkForward, folder: Path) -> Path:
    """``REPORT_FILES`` in ``folder``: table, plot, scores and summary CSV, the JSON record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TABLE_MD).write_text(scores_table(wf) + "\n")
    write_plot(wf, folder / PLOT_PNG)
    wf.scores().to_csv(folder / SCORES_CSV, index=False)
    wf.summary().to_csv(folder / SUMMARY_CSV)
    (folder / RESULT_JSON).write_text(json.dumps(result_record(wf), indent=2) + "\n")
    return folder


def result_record(wf: WalkForward) -> dict[str, Any]:
    """JSON-ready: the policy, each fold's plan, samples and figures, the summary (NaN → None)."""
    return {
        "spec": wf.spec.to_dict(),
        "folds": [
            {
                **o.fold.to_dict(),
                "samples": o.samples,
                "seconds": round(o.seconds, 1),
                "scores": {m: _finite(s.figures()) for m, s in o.scores.items()},
            }
            for o in wf.folds
        ],
        "summary": {m: _finite(row.to_dict()) for m, row in wf.summary().iterrows()},
    }


def _finite(figures: dict[str, Any]) -> dict[str, float | None]:
    return {k: float(v) if math.isfinite(v) else None for k, v in figures.items()}


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
