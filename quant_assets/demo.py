"""``quant demo``: the main job on the configured source, stage by stage, through Dagster.

Every stage is a Dagster run on the DAGSTER_HOME instance, so ``dagster dev`` afterwards shows
each materialization, check and run. Any source works (``QUANT_SOURCE``: the synthetic market by
default, a folder of files, a vendor): the raw bars reach back before the window as far as each
ticker needs for warm features and label volatility, counted in its bars at the source
(``ingestion.history``); the live stage replays the session after the window from the same
source, and is skipped, with the reason, when the source has no bar of it. The oracle baseline
reads the synthetic market's latent signal and is skipped on any other source. A summary —
per stage, table, model and ticker (a ticker with too little data is named with the reason) — is
printed and written to ``QUANT_HOME/demo_summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.ingestion.history import TickerHistory, earliest_start, history_before
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.sources import MarketSource, SourceRangeError
from quant_assets.market.synthetic import SyntheticMarket
from quant_assets.runner import execute_in_process, market_resources, run_partition_range
from quant_assets.settings import Settings
from quant_assets.tracking import safe_uri

if TYPE_CHECKING:
    from quant_assets.models.dataset import TrainingDataset

console = Console()

# Bars each ticker needs before the window: warm features and the labels' full-history σ.
HISTORY_BARS = max(FEATURE_SPEC.warmup_bars, LabelSpec().history_bars)


@dataclass(frozen=True)
class StageResult:
    """One stage of the demo: its Dagster run and how long it took."""

    stage: str
    run_id: str
    success: bool
    seconds: float
    skipped: str = ""  # why the stage did not run (it counts as a success)


def run_demo(settings: Settings, start: str | None, end: str | None, dagster_home: Path) -> int:
    """Run every stage over the demo window; return a process exit code."""
    from quant_assets.definitions import defs
    from quant_assets.market.factory import source_from_settings

    first = calendar.to_session_label(start or settings.demo_start)
    last = calendar.to_session_label(end or settings.demo_end)
    tickers = settings.tickers
    source = source_from_settings(settings)
    console.rule(
        f"quant demo: {first.date()} … {last.date()}, {len(tickers)} tickers from {source.name}"
    )
    histories = history_before(source, tickers, first, HISTORY_BARS, settings.partitions_start)
    history = earliest_start(histories, first)
    resources = market_resources(settings)

    def partitioned(job: str, begin: pd.Timestamp) -> Callable[[dg.DagsterInstance], object]:
        return lambda inst: run_partition_range(
            defs, job, begin, last, tickers, inst, resources=resources
        )

    live_day = calendar.next_session(last)

    def live(inst: dg.DagsterInstance) -> object:
        missing = _no_bars_on(source, tickers, live_day)
        if missing:
            return LiveOutcome("", True, missing)
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
            skipped = getattr(outcome, "skipped", "")
            seconds = time.monotonic() - began
            results.append(StageResult(name, outcome.run_id, outcome.success, seconds, skipped))
            if skipped:
                console.print(f"[yellow]skipped: {skipped}")
            if not outcome.success:
                break
    summary = _summary(settings, results, first, last, dagster_home)
    summary["models"] = model_summary(settings, source) if results[-1].success else {}
    trained = len(results) > 1 and results[1].success  # else the dataset file is not this run's
    summary["tickers"] = ticker_summary(settings, histories, first, last, trained)
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
        "source": settings.source,
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
        result = "[yellow]skipped" if s["skipped"] else result
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
        _print_models(models)
        for name, why in models["skipped"].items():
            console.print(f"{name}: skipped ({why})")
        console.print(f"drift levels of the live session: {models['drift_levels']}")
        for name, path in models["files"].items():
            console.print(f"{name}: {path}")
    _print_tickers(summary["tickers"])  # type: ignore[arg-type]
    console.print(f"database: {summary['database']}")
    console.print(
        f"Dagster instance: DAGSTER_HOME={summary['dagster_home']} — `make dagster-dev` to browse"
    )


@dataclass(frozen=True)
class LiveOutcome:
    """The live stage as one result (it is several Dagster runs)."""

    run_id: str
    success: bool
    skipped: str = ""


def _no_bars_on(source: MarketSource, tickers: tuple[str, ...], day: pd.Timestamp) -> str:
    """Why ``day`` cannot be replayed from ``source`` ("" when some ticker has bars there)."""
    open_, close = calendar.session_bounds(day)
    try:
        if any(len(source.get_bars(t, open_, close)) for t in tickers):
            return ""
    except SourceRangeError as err:
        return f"the source cannot serve {day.date()}: {err}"
    return f"the source has no bar of {day.date()}, the session after the window"


def replay_live_session(
    defs: dg.Definitions, settings: Settings, day: pd.Timestamp, instance: dg.DagsterInstance
) -> LiveOutcome:
    """Replay ``day`` through the live poller in 30-minute steps; after each step run the
    live_monitoring job (champion scoring + drift report) at that simulated time."""
    from quant_assets.defs.runless import runless_reporter
    from quant_assets.ingestion.poller import PollerConfig
    from quant_assets.ingestion.poller_replay import replay
    from quant_assets.market.factory import source_from_settings
    from quant_assets.storage.database import get_engine

    market = source_from_settings(settings)
    config = PollerConfig.from_settings(settings)
    reporter = runless_reporter(instance)  # the same trail in the UI as a real poller leaves
    open_, close = calendar.session_bounds(day)
    job = defs.resolve_job_def("live_monitoring")
    resources = market_resources(settings)
    step = pd.Timedelta(minutes=30)
    t, last_run = open_, ""
    while t < close:
        nxt = min(t + step, close)
        replay(market, t, nxt, lambda: get_engine(settings), config, reporter=reporter)
        ops = {
            name: {"config": {"as_of": nxt.isoformat()}}
            for name in ("live_predictions", "drift_report")
        }
        result = execute_in_process(
            job,
            instance,
            run_config={
                "ops": ops,
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            raise_on_error=False,
            resources=resources,
        )
        if not result.success:
            return LiveOutcome(result.run_id, False)
        console.print(f"  {nxt.tz_convert(calendar.MARKET_TZ):%H:%M} scored and checked")
        t, last_run = nxt, result.run_id
    return LiveOutcome(last_run, True)


def model_summary(settings: Settings, source: MarketSource) -> dict[str, object]:
    """Champion, test macro-F1 of both models and of every baseline, files; the oracle only on
    the synthetic market (it reads the latent signal), named as skipped on other sources."""
    from quant_assets.deployment.registry import ModelRegistry
    from quant_assets.models.baselines import baseline_predictions
    from quant_assets.models.bundle import ARCHS, list_bundles, load_bundle
    from quant_assets.models.dataset import TrainingDataset
    from quant_assets.models.training import classification_metrics
    from quant_assets.storage.database import get_engine, read_from_db

    registry = ModelRegistry.from_settings(settings)
    champion = registry.champion()
    dataset = TrainingDataset.load(settings.training_dataset_path)
    y = dataset.y("test")
    market = source if isinstance(source, SyntheticMarket) else None
    why = f"it reads the synthetic market's latent signal; the source is {source.name}"
    skipped = {} if market is not None else {"oracle": why}
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
        "champion_metrics": dict(champion.metrics) if champion else {},
        "macro_f1_updown": scores,
        "holdout": holdout_summary(settings, dataset, market),
        "skipped": skipped,
        "drift_levels": {str(k): int(v) for k, v in zip(levels["level"], levels["n"], strict=True)},
        "files": files,
    }


def holdout_summary(
    settings: Settings, dataset: TrainingDataset, market: SyntheticMarket | None
) -> dict[str, dict[str, float]]:
    """Per model and fitted baseline, on the holdout (the segment that decides promotion):
    macro-F1 and the backtest's figures at the default cost (``champion_model``'s policy)."""
    from quant_assets.defs.deployment import ChampionConfig
    from quant_assets.deployment.backtest_report import headline_metrics
    from quant_assets.deployment.decision import compute_metrics
    from quant_assets.deployment.holdout_value import backtest_samples, holdout_backtest
    from quant_assets.deployment.scoring import ValidationSet, score_bundles
    from quant_assets.models.baselines import baseline_probabilities
    from quant_assets.models.bundle import ARCHS, latest_bundles

    vs = ValidationSet.from_dataset(dataset, "holdout")
    if vs.market is None or not len(vs):
        return {}
    spec = ChampionConfig().backtest_spec(vs.label_spec)
    out: dict[str, dict[str, float]] = {}
    for name, scored in score_bundles(latest_bundles(settings.models_dir, ARCHS), vs).items():
        if scored.probs is not None:
            f1 = compute_metrics(vs.labels, scored.probs).macro_f1_updown
            result = holdout_backtest(vs, scored.probs, spec)
            out[name] = {"macro_f1_updown": f1, **headline_metrics(result)}
    frame = dataset.sample_frame("holdout")
    keys = pd.DatetimeIndex(frame["ts"]).as_unit("ns").asi8
    labels = frame["label"].to_numpy(dtype=np.int8)
    for name, probs in baseline_probabilities(dataset, "holdout", market=market).items():
        result = backtest_samples(vs.market, frame["ticker"].to_numpy(), keys, probs, spec)
        f1 = compute_metrics(labels, probs).macro_f1_updown
        out[name] = {"macro_f1_updown": f1, **headline_metrics(result)}
    return out


def ticker_summary(
    settings: Settings,
    histories: list[TickerHistory],
    first: pd.Timestamp,
    last: pd.Timestamp,
    trained: bool,
) -> dict[str, dict[str, object]]:
    """Per ticker: its coverage of the window, its history before it, its training windows
    (when this run built the dataset), and what fell short (a ticker with too little data is
    named with the reason)."""
    from quant_assets.market.coverage import summarize_sessions, ticker_coverage
    from quant_assets.storage.bars import read_bars
    from quant_assets.storage.database import get_engine

    tickers = list(settings.tickers)
    bars = read_bars(get_engine(settings), tickers, *calendar.span_of_days(first, last))
    summary = summarize_sessions(bars, tickers, list(calendar.sessions(first, last)))
    coverage = {c.ticker: c for c in ticker_coverage(summary)}
    windows = _training_windows(settings) if trained else {}
    out = {}
    for history in histories:
        cov, counts = coverage[history.ticker], windows.get(history.ticker, {})
        notes = []
        if cov.bars == 0:
            notes.append("no bar in the window")
        if history.short_because is not None:
            notes.append(
                f"history {history.bars} of {HISTORY_BARS} bars ({history.short_because}): "
                "its first sessions are cold"
            )
        if windows and not counts.get("train"):
            notes.append("no training window (too few warm, labelled bars)")
        out[history.ticker] = {
            "window": cov.to_dict(),
            "history_bars": history.bars,
            "history_from": None if history.start is None else str(history.start.date()),
            "training_windows": counts,
            "notes": notes,
        }
    return out


def _training_windows(settings: Settings) -> dict[str, dict[str, int]]:
    """Windows per ticker and segment of the training dataset."""
    from quant_assets.models.dataset import TrainingDataset

    dataset = TrainingDataset.load(settings.training_dataset_path)
    out: dict[str, dict[str, int]] = {}
    for segment in dataset.samples:
        for ticker, n in dataset.sample_frame(segment)["ticker"].value_counts().items():
            out.setdefault(str(ticker), {})[segment] = int(n)
    return out


def _print_models(models: dict[str, object]) -> None:
    """Both segments side by side: the test segment's macro-F1 (measured inside training) and
    the holdout's figures, the segment ``champion_model`` decides on."""
    test: dict[str, float] = models["macro_f1_updown"]  # type: ignore[assignment]
    holdout: dict[str, dict[str, float]] = models.get("holdout") or {}  # type: ignore[assignment]
    table = Table(
        title=f"models, macro-F1 UP/DOWN on test and holdout; the holdout decided the champion "
        f"({models['champion']}), net at the default cost"
    )
    columns = ("model", "test F1", "holdout F1", "net return", "net Sharpe", "trades", "b/e bps")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in [*test, *(n for n in holdout if n not in test)]:
        f = holdout.get(name, {})
        table.add_row(
            name,
            f"{test[name]:.4f}" if name in test else "",
            f"{f['macro_f1_updown']:.4f}" if f else "",
            f"{f.get('holdout_net_return', float('nan')):+.4%}" if f else "",
            f"{f.get('holdout_net_sharpe', float('nan')):.2f}" if f else "",
            f"{int(f.get('holdout_trades', 0)):,}" if f else "",
            f"{f.get('holdout_break_even_bps', float('nan')):.2f}" if f else "",
        )
    console.print(table)


def _print_tickers(tickers: dict[str, dict[str, object]]) -> None:
    table = Table(title=f"tickers (history: {HISTORY_BARS} bars needed before the window)")
    for col in ("ticker", "sessions", "share", "history", "train", "test", "notes"):
        table.add_column(col, justify="left" if col in ("ticker", "notes") else "right")
    for ticker, info in tickers.items():
        window, counts = info["window"], info["training_windows"]
        share = window["minute_share"]
        table.add_row(
            ticker,
            f"{window['sessions_with_bars']}/{window['sessions']}",
            "-" if share is None else f"{share:.0%}",
            f"{info['history_bars']:,}",
            f"{counts.get('train', 0):,}",
            f"{counts.get('test', 0):,}",
            "; ".join(info["notes"]) or "ok",
        )
    console.print(table)
