"""``quant demo``: the main job on the embedded defaults, stage by stage, through Dagster.

Every stage is a Dagster run on the DAGSTER_HOME instance, so ``dagster dev`` afterwards shows
each materialization, check and run. A summary is printed and written to
``QUANT_HOME/demo_summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
from rich.console import Console
from rich.table import Table

from quant_assets.market import calendar
from quant_assets.runner import run_partition_range
from quant_assets.settings import Settings
from quant_assets.tracking import safe_uri

console = Console()

HISTORY_SESSIONS = 2  # raw bars before the window, so its first sessions' features are warm


@dataclass(frozen=True)
class StageResult:
    """One stage of the demo: its Dagster run and how long it took."""

    stage: str
    run_id: str
    success: bool
    seconds: float


def run_demo(settings: Settings, start: str | None, end: str | None, dagster_home: Path) -> int:
    """Run every stage over the demo window; return a process exit code."""
    from quant_assets.definitions import defs

    first = calendar.to_session_label(start or settings.demo_start)
    last = calendar.to_session_label(end or settings.demo_end)
    history = calendar.session_before(first, HISTORY_SESSIONS)
    tickers = settings.tickers
    console.rule(f"quant demo: {first.date()} … {last.date()}, {len(tickers)} tickers")

    def partitioned(job: str, begin: pd.Timestamp) -> Callable[[dg.DagsterInstance], object]:
        return lambda inst: run_partition_range(defs, job, begin, last, tickers, inst)

    def unpartitioned(job: str) -> Callable[[dg.DagsterInstance], object]:
        run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        return lambda inst: defs.resolve_job_def(job).execute_in_process(
            run_config=run_config, instance=inst
        )

    live_day = calendar.next_session(last)

    def live(inst: dg.DagsterInstance) -> object:
        return replay_live_session(defs, settings, live_day, inst)

    stages: list[tuple[str, Callable[[dg.DagsterInstance], object]]] = [
        ("raw bars", partitioned("ingest_raw_bars", history)),
        (
            "nightly: corporate actions → adjusted bars → features → labels → dataset → "
            "LSTM + Transformer → champion",
            partitioned("nightly_retraining", history),
        ),
        (f"live session {live_day.date()}: poller replay, scoring, drift", live),
    ]
    results: list[StageResult] = []
    with dg.DagsterInstance.get() as instance:
        for name, run in stages:
            console.rule(f"[bold]{name}")
            began = time.monotonic()
            outcome = run(instance)
            results.append(
                StageResult(name, outcome.run_id, outcome.success, time.monotonic() - began)
            )
            if not outcome.success:
                break
    summary = _summary(settings, results, first, last, dagster_home)
    summary["models"] = model_summary(settings) if results[-1].success else {}
    _print_summary(summary)
    path = settings.demo_summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"summary written to {path}")
    return 0 if all(r.success for r in results) and len(results) == len(stages) else 1


def _summary(
    settings: Settings,
    results: list[StageResult],
    first: pd.Timestamp,
    last: pd.Timestamp,
    dagster_home: Path,
) -> dict[str, object]:
    from quant_assets.storage.database import get_engine, read_from_db

    engine = get_engine(settings)
    counts = {
        table: int(read_from_db(f"SELECT COUNT(*) AS n FROM {table}", engine)["n"].iloc[0])
        for table in (
            "price_data",
            "corporate_actions",
            "adjusted_bars",
            "features",
            "labels",
            "predictions",
            "drift_reports",
        )
    }
    balance = read_from_db(
        "SELECT label, COUNT(*) AS n FROM labels GROUP BY label ORDER BY label", engine
    )
    return {
        "window": {"first": str(first.date()), "last": str(last.date())},
        "tickers": list(settings.tickers),
        "stages": [asdict(r) for r in results],
        "rows": counts,
        "label_balance": {
            "none" if pd.isna(k) else str(int(k)): int(v)
            for k, v in zip(balance["label"], balance["n"], strict=True)
        },
        "database": settings.safe_url(),
        "dagster_home": str(dagster_home),
    }


def _print_summary(summary: dict[str, object]) -> None:
    stages = Table(title="stages (one Dagster run each)")
    for col in ("stage", "run id", "result", "seconds"):
        stages.add_column(col)
    for s in summary["stages"]:  # type: ignore[attr-defined]
        result = "[green]ok" if s["success"] else "[red]FAILED"
        stages.add_row(s["stage"], s["run_id"][:8], result, f"{s['seconds']:.1f}")
    console.print(stages)
    rows = Table(title="tables")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for table, n in summary["rows"].items():  # type: ignore[union-attr]
        rows.add_row(table, f"{n:,}")
    console.print(rows)
    console.print(f"label balance (-1 / 0 / +1 / none): {summary['label_balance']}")
    models = summary.get("models") or {}
    if models:
        table = Table(title=f"test segment, macro-F1 UP/DOWN (champion: {models['champion']})")
        table.add_column("model")
        table.add_column("macro-F1", justify="right")
        for name, value in models["macro_f1_updown"].items():
            table.add_row(name, f"{value:.4f}")
        console.print(table)
        console.print(f"drift levels of the live session: {models['drift_levels']}")
        for name, path in models["files"].items():
            console.print(f"{name}: {path}")
    console.print(f"database: {summary['database']}")
    console.print(
        f"Dagster instance: DAGSTER_HOME={summary['dagster_home']} — `make dagster-dev` to browse"
    )


@dataclass(frozen=True)
class LiveOutcome:
    """The live stage as one result (it is several Dagster runs)."""

    run_id: str
    success: bool


def replay_live_session(
    defs: dg.Definitions, settings: Settings, day: pd.Timestamp, instance: dg.DagsterInstance
) -> LiveOutcome:
    """Replay ``day`` through the live poller in 30-minute steps; after each step run the
    live_monitoring job (champion scoring + drift report) at that simulated time."""
    from quant_assets.ingestion.poller import PollerConfig
    from quant_assets.ingestion.poller_replay import replay
    from quant_assets.market.factory import source_from_settings
    from quant_assets.storage.database import get_engine

    market = source_from_settings(settings)
    config = PollerConfig.from_settings(settings)
    open_, close = calendar.session_bounds(day)
    job = defs.resolve_job_def("live_monitoring")
    step = pd.Timedelta(minutes=30)
    t, last_run = open_, ""
    while t < close:
        nxt = min(t + step, close)
        replay(market, t, nxt, lambda: get_engine(settings), config)
        ops = {
            name: {"config": {"as_of": nxt.isoformat()}}
            for name in ("live_predictions", "drift_report")
        }
        result = job.execute_in_process(
            run_config={
                "ops": ops,
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            instance=instance,
            raise_on_error=False,
        )
        if not result.success:
            return LiveOutcome(result.run_id, False)
        console.print(f"  {nxt.tz_convert(calendar.MARKET_TZ):%H:%M} scored and checked")
        t, last_run = nxt, result.run_id
    return LiveOutcome(last_run, True)


def model_summary(settings: Settings) -> dict[str, object]:
    """Champion, test macro-F1 of both models and of every baseline and the oracle, files."""
    from quant_assets.deployment.registry import ModelRegistry
    from quant_assets.market.factory import source_from_settings
    from quant_assets.models.baselines import baseline_predictions
    from quant_assets.models.bundle import ARCHS, list_bundles, load_bundle
    from quant_assets.models.dataset import TrainingDataset
    from quant_assets.models.training import classification_metrics
    from quant_assets.storage.database import get_engine, read_from_db

    registry = ModelRegistry.from_settings(settings)
    champion = registry.champion()
    dataset = TrainingDataset.load(settings.training_dataset_path)
    y = dataset.y("test")
    market = source_from_settings(settings)
    scores: dict[str, float] = {}
    files: dict[str, str] = {}
    for arch in ARCHS:
        bundles = list_bundles(settings.models_dir, arch)
        if bundles:
            bundle = load_bundle(bundles[-1])
            scores[bundle.name] = float(bundle.metrics["test"]["macro_f1_updown"])
            files[bundle.name] = str(bundle.tflite_path)
    for name, pred in baseline_predictions(dataset, "test", market=market).items():
        scores[name] = float(classification_metrics(y, pred)["macro_f1_updown"])
    levels = read_from_db(
        "SELECT level, COUNT(*) AS n FROM drift_reports GROUP BY level", get_engine(settings)
    )
    files["model_config.json"] = str(settings.model_config_path)
    files["mlflow"] = safe_uri(settings.mlflow_tracking_uri)
    return {
        "champion": champion.model.name if champion else "none",
        "macro_f1_updown": scores,
        "drift_levels": {str(k): int(v) for k, v in zip(levels["level"], levels["n"], strict=True)},
        "files": files,
    }
