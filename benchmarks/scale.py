"""How the nightly stages grow with the ticker universe: 20, 40 and 80 synthetic tickers.

Each configuration (``--tickers``, default 20 40 80; the same ``--sessions`` sessions from
``FIRST_SESSION``) gets its own throw-away directory with an SQLite database and runs the pure
functions the Dagster assets call, per ticker as the assets do, in this order:

* ``ingest``: ``ingestion.sessions.ingest_sessions`` from the synthetic market that
  ``market.factory.source_from_settings`` builds for these tickers (the ``raw_bars`` asset; the
  simulation is the source's work, as a vendor's download would be);
* ``adjusted_bars``: ``corporate_actions.adjusted_store.rebuild_ticker`` (a first build);
* ``features_labels``: ``daily_tables.build_features_and_labels`` + ``write_features`` +
  ``write_labels`` (the ``features_and_labels`` multi-asset);
* ``dataset``: ``load_labelled_features`` + ``build_dataset`` + ``save`` (``training_dataset``);
* ``training``: ``TrainingDataset.load`` + ``train_model`` for one epoch of a tiny LSTM (the fit
  and the validation pass of ``lstm_model``; calibration, TFLite export and MLflow left out).

Every stage runs in its own fresh subprocess (``--child``), one after the other, on the
configuration's database and dataset file, as Dagster's multiprocess executor runs each step
(``QUANT_STEP_EXECUTOR=multiprocess``): the peak RSS of a process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is a high-water mark, so in one process a
stage's peak could not be told apart from an earlier stage's. A child
imports what its stage needs (TensorFlow only for ``training``) and opens the database, notes
its RSS high-water mark then (``base``: the interpreter, the libraries, the engine), runs the
stage under a timer and reports the seconds and the peak RSS. Process start and imports are
outside the timer: they do not grow with the tickers. Each configuration runs ``--repeats``
times (interleaved); the figures are the fastest time and the highest peak of its runs.

Goals, as ratios to the first (smallest) configuration: the time of each stage and of all of
them at N tickers ≤ 1.1 × N / N0 of the time at N0 (linear + 10 %), and the peak RSS of each
stage at the largest configuration ≤ 1.5 × its peak at the smallest. Prints the figures, the
ratios, then ``goals: met`` or ``goals: MISSED`` (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

TIME_SLACK, RSS_GOAL = 1.1, 1.5
FIRST_SESSION = "2026-03-02"
STAGES = ("ingest", "adjusted_bars", "features_labels", "dataset", "training")


def tickers_of(n: int) -> tuple[str, ...]:
    """``n`` synthetic ticker names (the synthetic market draws each one's own path)."""
    return tuple(f"S{k:03d}" for k in range(n))


def days_of(sessions: int) -> list[pd.Timestamp]:
    from quant_assets.market import calendar

    every = calendar.sessions(FIRST_SESSION, pd.Timestamp(FIRST_SESSION) + pd.DateOffset(years=1))
    return list(every[:sessions])


def training_config(sessions: int) -> Any:
    """A tiny LSTM trained for one epoch; one holdout session, one validation, one test."""
    from quant_assets.models.config import TrainingConfig

    return TrainingConfig(
        sessions=sessions,
        holdout_sessions=1,
        val_fraction=0.17,
        test_fraction=0.17,
        epochs=1,
        lstm_units=8,
        lstm_dense=4,
    )


def settings_for(home: Path, n_tickers: int, sessions: int) -> Any:
    """The configuration's settings: its own SQLite file under ``home``, its synthetic tickers,
    a synthetic market that starts at the first session (no path simulated before it)."""
    from quant_assets.settings import Settings

    days = days_of(sessions)
    return Settings(
        home=home,
        tickers=tickers_of(n_tickers),
        source="synthetic",
        synthetic_start=days[0].date(),
        synthetic_end=(days[-1] + pd.Timedelta(days=7)).date(),
        _env_file=None,
    )


# --- the stages (run in a child process) --------------------------------------------------------
def ingest(settings: Any, engine: Any, days: list[pd.Timestamp]) -> dict[str, int]:
    from quant_assets.ingestion.sessions import ingest_sessions
    from quant_assets.market.factory import source_from_settings

    source = source_from_settings(settings)
    rows = sum(ingest_sessions(source, engine, t, days).rows_changed for t in settings.tickers)
    return {"rows": rows}


def adjusted_bars(settings: Any, engine: Any, days: list[pd.Timestamp]) -> dict[str, int]:
    from quant_assets.corporate_actions.adjusted_store import rebuild_ticker

    return {"rows": sum(rebuild_ticker(engine, t, days).rows_written for t in settings.tickers)}


def features_labels(settings: Any, engine: Any, days: list[pd.Timestamp]) -> dict[str, int]:
    from quant_assets.daily_tables import build_features_and_labels, write_features, write_labels
    from quant_assets.labels import LabelSpec

    spec, rows = LabelSpec(), 0
    for ticker in settings.tickers:  # every session is over: all of them get labels
        features, labels = build_features_and_labels(engine, ticker, days, days, spec)
        rows += write_features(features, engine) + write_labels(labels, spec, engine)
    return {"rows": rows}


def dataset(settings: Any, engine: Any, days: list[pd.Timestamp]) -> dict[str, int]:
    from quant_assets.models.data import label_spec_of, labelled_sessions, load_labelled_features
    from quant_assets.models.dataset import build_dataset

    cfg = training_config(len(days))
    sessions = labelled_sessions(engine, list(settings.tickers))[-cfg.sessions :]
    frame = load_labelled_features(
        engine, list(settings.tickers), sessions[0], sessions[-1], prices=True
    )
    built = build_dataset(frame, cfg, label_spec=label_spec_of(frame))
    built.save(settings.training_dataset_path)
    return {"rows": len(frame), **{k: len(v) for k, v in built.samples.items()}}


def training(settings: Any, engine: Any, days: list[pd.Timestamp]) -> dict[str, int]:
    from quant_assets.models.dataset import TrainingDataset
    from quant_assets.models.training import train_model

    loaded = TrainingDataset.load(settings.training_dataset_path)
    result = train_model("lstm", loaded, training_config(len(days)))
    return {"rows": len(loaded.samples["train"]), "epochs": result.epochs_run}


RUNNERS: dict[str, Callable[[Any, Any, list[pd.Timestamp]], dict[str, int]]] = {
    "ingest": ingest,
    "adjusted_bars": adjusted_bars,
    "features_labels": features_labels,
    "dataset": dataset,
    "training": training,
}
# What each stage imports before its base RSS is noted (the work's own modules are light).
STAGE_IMPORTS = {"training": ("keras", "quant_assets.models.training")}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(stage: str, home: Path, n_tickers: int, sessions: int) -> None:
    """One stage of one configuration in this fresh process: one JSON line of figures."""
    import importlib

    from quant_assets.storage.database import create_db_engine

    for module in ("quant_assets.ingestion.sessions", *STAGE_IMPORTS.get(stage, ())):
        importlib.import_module(module)
    settings = settings_for(home, n_tickers, sessions)
    engine = create_db_engine(settings)
    days = days_of(sessions)
    base = peak_mib()
    began = time.perf_counter()
    out = RUNNERS[stage](settings, engine, days)
    seconds = time.perf_counter() - began
    engine.dispose()
    print(json.dumps({**out, "seconds": seconds, "peak_mib": peak_mib(), "base_mib": base}))


def run_child(stage: str, home: Path, n_tickers: int, sessions: int) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        "-m",
        "benchmarks.scale",
        "--child",
        stage,
        str(home),
        "--tickers",
        str(n_tickers),
        "--sessions",
        str(sessions),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{stage} at {n_tickers} tickers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the parent ---------------------------------------------------------------------------------
def run_configuration(n_tickers: int, sessions: int) -> dict[str, dict[str, Any]]:
    """Every stage of one configuration, in order, on its own throw-away database."""
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{n_tickers}-") as home:
        return {s: run_child(s, Path(home), n_tickers, sessions) for s in STAGES}


def combined(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """A configuration's runs as one: per stage the fastest time and the highest peak RSS."""
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        found = [r[stage] for r in runs]
        out[stage] = {
            **found[0],
            "seconds": min(f["seconds"] for f in found),
            "peak_mib": max(f["peak_mib"] for f in found),
            "base_mib": max(f["base_mib"] for f in found),
        }
    return out


def report(figures: dict[int, dict[str, dict[str, Any]]], sessions: int) -> bool:
    """Print the table and the ratios; whether every goal is met."""
    sizes = sorted(figures)
    small, large = sizes[0], sizes[-1]
    print(
        f"{'stage':16}{'tickers':>8}{'rows':>10}{'seconds':>9}{'ms/ticker':>10}{'time x':>8}"
        f"{'limit':>7}{'peak MiB':>10}{'base MiB':>10}{'peak x':>8}{'above base x':>14}"
    )
    ok = True
    for stage in (*STAGES, "all"):
        for n in sizes:
            if stage == "all":
                f = {
                    "rows": None,
                    "seconds": sum(figures[n][s]["seconds"] for s in STAGES),
                    "peak_mib": max(figures[n][s]["peak_mib"] for s in STAGES),
                    "base_mib": max(figures[n][s]["base_mib"] for s in STAGES),
                }
                f0 = {
                    "seconds": sum(figures[small][s]["seconds"] for s in STAGES),
                    "peak_mib": max(figures[small][s]["peak_mib"] for s in STAGES),
                    "base_mib": max(figures[small][s]["base_mib"] for s in STAGES),
                }
            else:
                f, f0 = figures[n][stage], figures[small][stage]
            time_x = f["seconds"] / f0["seconds"]
            limit = TIME_SLACK * n / small
            peak_x = f["peak_mib"] / f0["peak_mib"]
            above_x = (f["peak_mib"] - f["base_mib"]) / max(f0["peak_mib"] - f0["base_mib"], 1.0)
            ok &= time_x <= limit
            rows = "" if f["rows"] is None else f"{f['rows']:,}"
            if n == large:
                ok &= peak_x <= RSS_GOAL
            print(
                f"{stage:16}{n:>8}{rows:>10}{f['seconds']:>9.2f}{1000 * f['seconds'] / n:>10.0f}"
                f"{time_x:>7.2f}x"
                f"{limit:>6.2f}x{f['peak_mib']:>10.0f}{f['base_mib']:>10.0f}{peak_x:>7.2f}x"
                f"{above_x:>13.2f}x"
            )
    print(
        f"goals (ratios to {small} tickers × {sessions} sessions): time at N tickers ≤ "
        f"{TIME_SLACK} × N/{small}; peak RSS at {large} tickers ≤ {RSS_GOAL}x "
        "('above base': the peak less the RSS after imports and engine, for information)"
    )
    return ok


def main(args: argparse.Namespace) -> int:
    sizes = sorted(args.tickers)
    print(
        f"nightly stages at {', '.join(map(str, sizes))} synthetic tickers × {args.sessions} "
        f"sessions from {FIRST_SESSION}, SQLite, each stage in its own process, best of "
        f"{args.repeats}"
    )
    runs: dict[int, list[dict[str, dict[str, Any]]]] = {n: [] for n in sizes}
    for _ in range(args.repeats):  # interleaved, so that a busy spell hits every size
        for n in sizes:
            began = time.perf_counter()
            runs[n].append(run_configuration(n, args.sessions))
            print(f"  {n} tickers: {time.perf_counter() - began:.0f} s with process starts")
    ok = report({n: combined(found) for n, found in runs.items()}, args.sessions)
    print(f"goals: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--sessions", type=int, default=7, help="sessions (the first is cold)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "HOME"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.tickers[0], args.sessions)
        sys.exit(0)
    sys.exit(main(args))
