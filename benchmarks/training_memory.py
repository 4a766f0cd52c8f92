"""Peak memory and epoch time of the training stage: windows materialized vs gathered by index.

Two synthetic datasets (``SyntheticMarket``, 10 and 40 tickers × ``SESSIONS`` sessions,
``CONFIG``: 60-bar windows, a small LSTM) are built and saved once, as the nightly's
``training_dataset`` asset saves its .npz. Each configuration then runs in a fresh subprocess
(``--child``) that does what the training stage and the holdout scoring do with the windows,
and reports its own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the time of
each epoch (fit + validation pass, from a callback):

* ``materialized`` (the code before): the train and validation windows materialized for
  ``model.fit`` (``quant_assets_tests.models.helpers.materialized_fit``), the validation and
  test windows materialized for ``predict``, the holdout's unscaled windows materialized,
  scaled and predicted (what ``ValidationSet`` held);
* ``gathered`` (now): ``training.train_and_calibrate`` (windows gathered batch by batch,
  ``models.windows``) and ``ValidationSet.from_dataset`` scored chunk by chunk.

Both start by loading the dataset from the .npz, as the stage does; the TFLite export and the
parity check (128 windows) are left out: their memory does not grow with the tickers. A third
child per dataset, ``baseline``, loads it and builds the model without training: the memory
every stage holds anyway (TensorFlow alone is most of it), so the growth above it is shown too.
Every configuration runs ``REPEATS`` times, interleaved with the others; its figures are the
highest peak RSS and the fastest epoch after the first (which traces the graph) of its runs,
the time least disturbed by whatever else shares the cores. Goals: gathered peak RSS at 40
tickers ≤ 1.3 × at 10 tickers; gathered time per epoch ≤ 1.1 × materialized, at 40 tickers.
Exit status 1 if a goal is missed.
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models.config import TrainingConfig
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.dataset import TrainingDataset, build_dataset

TICKERS = (10, 40)
SESSIONS = 12
FIRST = pd.Timestamp("2026-03-02")
MODES = ("materialized", "gathered")
RSS_GOAL, EPOCH_GOAL = 1.3, 1.1
REPEATS = 2
CONFIG = TrainingConfig(
    sessions=SESSIONS,
    holdout_sessions=2,
    val_fraction=0.17,
    test_fraction=0.17,
    epochs=3,
    patience=3,
    lstm_units=16,
    lstm_dense=8,
)


def build(n_tickers: int, path: Path) -> dict[str, int]:
    """The dataset of ``n_tickers`` synthetic tickers, saved to ``path``; its sample counts."""
    tickers = tuple(f"T{i:03d}" for i in range(n_tickers))
    warm = calendar.session_before(FIRST, 1)
    last = calendar.sessions(FIRST, FIRST + pd.Timedelta(days=40))[SESSIONS - 1]
    market = SyntheticMarket(
        SyntheticConfig(
            tickers=tickers,
            start=str(warm.date()),
            end=str((last + pd.Timedelta(days=7)).date()),
            signal=0.3,
        )
    )
    start, end = calendar.span_of_days(warm, last)
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    frame = labelled_features_from_bars(bars, LabelSpec())
    frame = frame[calendar.session_labels(frame["ts"]) >= FIRST].reset_index(drop=True)
    dataset = build_dataset(frame, CONFIG, label_spec=LabelSpec())
    dataset.save(path)
    return {"rows": len(dataset.row_ts), **{k: len(v) for k, v in dataset.samples.items()}}


def epoch_timer() -> Any:
    """A Keras callback that records the seconds of each epoch (fit and validation)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.began = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self.began)

    return EpochTimer()


def materialized_stage(dataset: TrainingDataset, timer: Any) -> dict[str, Any]:
    """The windows as the code before handled them: every segment materialized."""
    from quant_assets.models.training import predict_proba
    from quant_assets_tests.models.helpers import materialized_fit

    history, model = materialized_fit("lstm", dataset, CONFIG, [timer])
    val = predict_proba(model, dataset.windows("val"))
    test = predict_proba(model, dataset.windows("test"))
    holdout = dataset.windows("holdout", scaled=False)
    scored = predict_proba(model, dataset.scaler.transform(holdout))
    return {"val_loss": history["val_loss"], "n": [len(val), len(test), len(scored)]}


def gathered_stage(dataset: TrainingDataset, timer: Any) -> dict[str, Any]:
    """The windows as the code now handles them: gathered by index, batch by batch."""
    from quant_assets.deployment.scoring import ValidationSet
    from quant_assets.models.training import predict_proba, train_and_calibrate
    from quant_assets.models.windows import predict_chunked

    fitted = train_and_calibrate("lstm", dataset, CONFIG, callbacks=[timer])
    model = fitted.result.model
    vs = ValidationSet.from_dataset(dataset)
    scored = predict_chunked(
        lambda w: predict_proba(model, dataset.scaler.transform(w)), vs.windows
    )
    n = [fitted.metrics["validation"]["n"], fitted.metrics["test"]["n"], len(scored)]
    return {"val_loss": fitted.result.history["val_loss"], "n": n}


def baseline_stage(dataset: TrainingDataset, timer: Any) -> dict[str, Any]:
    """What every stage holds before any segment's windows: TensorFlow, the dataset and a
    model that has predicted one batch."""
    from quant_assets.models.architectures import build_model
    from quant_assets.models.training import predict_proba

    model = build_model("lstm", dataset.window, len(dataset.columns), CONFIG)
    predict_proba(model, dataset.windows("val", limit=CONFIG.batch_size))
    return {"val_loss": [], "n": []}


STAGES = {
    "baseline": baseline_stage,
    "materialized": materialized_stage,
    "gathered": gathered_stage,
}


def child(mode: str, path: Path) -> None:
    """One configuration, in this fresh process: print its figures as one JSON line."""
    timer = epoch_timer()
    dataset = TrainingDataset.load(path)
    out = STAGES[mode](dataset, timer)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({**out, "epochs": timer.seconds, "peak_mib": peak_kib / 1024}))


def run_child(mode: str, path: Path) -> dict[str, Any]:
    """Run ``child`` in a subprocess; its JSON figures."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "benchmarks.training_memory", "--child", mode, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's runs as one: the highest peak RSS, the fastest epoch after the
    first (which traces the graph) of any run, the first run's losses."""
    return {
        "peak_mib": max(r["peak_mib"] for r in runs),
        "epoch_s": min(min(r["epochs"][1:] or r["epochs"] or [np.nan]) for r in runs),
        "val_loss": runs[0]["val_loss"],
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="training-memory-") as tmp:
        paths: dict[int, Path] = {}
        for n in TICKERS:
            paths[n] = Path(tmp) / f"dataset-{n}.npz"
            t0 = time.perf_counter()
            counts = build(n, paths[n])
            size = paths[n].stat().st_size / 2**20
            print(
                f"{n} tickers × {SESSIONS} sessions: {counts} "
                f"({size:.0f} MiB .npz, built in {time.perf_counter() - t0:.0f} s)"
            )
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(REPEATS):  # interleaved, so that a busy spell hits both modes
            for n in TICKERS:
                for mode in MODES:
                    runs.setdefault((mode, n), []).append(run_child(mode, paths[n]))
        for n in TICKERS:
            runs["baseline", n] = [run_child("baseline", paths[n])]
    figures = {key: combined(found) for key, found in runs.items()}

    print(f"{'mode':<13}{'tickers':>8}{'peak RSS MiB':>14}{'s/epoch':>9}  val_loss")
    for (mode, n), f in sorted(figures.items(), key=lambda item: item[0][1]):
        losses = ", ".join(f"{v:.4f}" for v in f["val_loss"])
        print(f"{mode:<13}{n:>8}{f['peak_mib']:>14.0f}{f['epoch_s']:>9.2f}  {losses}")
    above = {
        key: f["peak_mib"] - figures["baseline", key[1]]["peak_mib"]
        for key, f in figures.items()
        if key[0] != "baseline"
    }
    print(
        "above the baseline (TensorFlow, the dataset, a built model), MiB: "
        + ", ".join(f"{mode} {n}: {v:.0f}" for (mode, n), v in above.items())
    )
    small, large = TICKERS
    rss = {m: figures[m, large]["peak_mib"] / figures[m, small]["peak_mib"] for m in MODES}
    saved = 1 - figures["gathered", large]["peak_mib"] / figures["materialized", large]["peak_mib"]
    epoch = {
        n: figures["gathered", n]["epoch_s"] / figures["materialized", n]["epoch_s"]
        for n in TICKERS
    }
    same = all(
        figures["gathered", n]["val_loss"] == figures["materialized", n]["val_loss"]
        for n in TICKERS
    )
    print(
        f"peak RSS {large} vs {small} tickers: gathered {rss['gathered']:.2f}x "
        f"(goal <= {RSS_GOAL}x), materialized {rss['materialized']:.2f}x; "
        f"gathered vs materialized at {large} tickers: {-saved:+.0%}"
    )
    print(
        f"time per epoch, gathered / materialized: {epoch[large]:.2f}x at {large} tickers "
        f"(goal <= {EPOCH_GOAL}x), {epoch[small]:.2f}x at {small}"
    )
    print(f"validation losses identical in both modes: {same}")
    met = rss["gathered"] <= RSS_GOAL and epoch[large] <= EPOCH_GOAL
    print(f"goals: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DATASET"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        sys.exit(0)
    sys.exit(main())
