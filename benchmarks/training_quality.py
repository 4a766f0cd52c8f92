"""Model quality on the synthetic market: LSTM and Transformer vs baselines and the oracle.

The demo configuration end to end, without the database: 20 tickers over the demo window
(``QUANT_DEMO_START`` … ``QUANT_DEMO_END``, 2026-09-01 … 2026-10-30, plus one warm-up
session), ``create_features`` + triple-barrier labels, the newest ``TrainingConfig.sessions``
sessions, ``build_dataset`` (chronological split, purge, embargo, holdout), then
``train_and_bundle`` for both architectures (training, evaluation, TFLite export, parity) with
the default ``TrainingConfig`` (the demo sizes). Test-segment figures:

1. planted signal (default 0.2): macro-F1 over UP/DOWN of both models, the majority and
   stratified baselines, logistic regression on the newest bar's features (and on 5 lagged
   bars), and the oracle on the latent signal; goals: both models beat majority, stratified
   and logistic regression, and reach ≥ 0.9 × the oracle's macro-F1.
2. leakage guard, signal 0 (a martingale, same noise draws): both models' macro-F1 and
   direction AUC against the sign-flip null (``baselines.sign_flip_null``; UP/DOWN swapped in
   random ticker-sessions); goal: inside mean + 3 sd. The stratified baseline is printed too
   (on a martingale flat-vs-move is predictable from time of day, so every learned model,
   the oracle included, beats it without any leakage).

Each model's figures are those of the calibrated model it ships (``report.model``); its
temperature and the validation and test log-loss and ECE before and after calibration are
printed under the table.

Prints the table, training wall time per model and the total; exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models import baselines
from quant_assets.models.config import TrainingConfig
from quant_assets.models.data import labelled_features_from_bars
from quant_assets.models.dataset import TrainingDataset, build_dataset
from quant_assets.models.training import (
    classification_metrics,
    predict_proba,
    train_and_bundle,
)
from quant_assets.settings import DEFAULT_TICKERS, Settings

ORACLE_SHARE = 0.9


def demo_dataset(
    signal: float, config: TrainingConfig, first: pd.Timestamp, last: pd.Timestamp
) -> tuple[SyntheticMarket, TrainingDataset]:
    warm_first = calendar.session_before(first, 1)
    market = SyntheticMarket(
        SyntheticConfig(
            tickers=DEFAULT_TICKERS,
            start=str(warm_first.date()),
            end=str((last + pd.Timedelta(days=7)).date()),
            signal=signal,
        )
    )
    start, end = calendar.span_of_days(warm_first, last)
    bars = pd.concat([market.get_bars(t, start, end) for t in DEFAULT_TICKERS], ignore_index=True)
    frame = labelled_features_from_bars(bars, LabelSpec())
    days = calendar.session_labels(frame["ts"])
    keep = sorted(days.unique())[-config.sessions :]
    frame = frame[days.isin(keep)].reset_index(drop=True)
    return market, build_dataset(frame, config, label_spec=LabelSpec())


def run(signal: float, config: TrainingConfig, first, last, models_dir: Path) -> dict:
    began = time.perf_counter()
    market, ds = demo_dataset(signal, config, first, last)
    data_s = time.perf_counter() - began
    sizes = {k: len(v) for k, v in ds.samples.items()}
    print(f"\n## signal {signal}: {len(ds.tickers)} tickers, split {ds.plan.to_dict()}")
    print(
        f"   windows {sizes} (window {ds.window}, train stride {config.train_stride}); "
        f"data {data_s:.1f} s"
    )
    y = ds.y("test")
    blocks = baselines.session_blocks(ds.sample_frame("test"))
    rows: dict[str, dict] = {}
    train_s: dict[str, float] = {}
    for arch in ("lstm", "transformer"):
        t0 = time.perf_counter()
        report = train_and_bundle(arch, ds, config, models_dir / f"s{signal}")
        train_s[arch] = time.perf_counter() - t0
        import keras

        proba = predict_proba(report.model, ds.window_index("test"))
        keras.backend.clear_session()
        m = classification_metrics(y, proba)
        m["null"] = baselines.sign_flip_null(y, proba, blocks, n_perm=300)
        m["parity"] = report.metrics["parity"]["max_abs_diff"]
        m["epochs"] = f"{report.result.best_epoch}/{report.result.epochs_run}"
        m["fit_s"] = report.result.seconds
        m["calibration"] = report.calibration
        rows[arch] = m
    t0 = time.perf_counter()
    for name, pred in baselines.baseline_predictions(ds, "test", market=market).items():
        rows[name] = classification_metrics(y, pred)
    baseline_s = time.perf_counter() - t0
    print(
        f"   {'model':<16}{'macro-F1 UP/DOWN':>17}{'accuracy':>10}{'kappa':>8}"
        f"{'dir. AUC':>10}{'/oracle':>9}"
    )
    oracle_f1 = rows["oracle"]["macro_f1_updown"]
    for name, m in rows.items():
        auc = f"{m['direction_auc']:.3f}" if "direction_auc" in m else "-"
        print(
            f"   {name:<16}{m['macro_f1_updown']:>17.4f}{m['accuracy']:>10.4f}"
            f"{m['kappa']:>8.3f}{auc:>10}{m['macro_f1_updown'] / oracle_f1:>9.3f}"
        )
    for arch in ("lstm", "transformer"):
        m = rows[arch]
        print(
            f"   {arch}: train+export {train_s[arch]:.1f} s (fit {m['fit_s']:.1f} s, best/ran "
            f"epochs {m['epochs']}), TFLite parity max|Δp| {m['parity']:.1e}"
        )
        cal = m["calibration"]
        for segment in ("validation", "test"):
            s = cal[segment]
            print(
                f"   {arch} {segment}: temperature {cal['temperature']:.3f}, log-loss "
                f"{s['log_loss_before']:.4f} → {s['log_loss_after']:.4f}, ECE "
                f"{s['ece_before']:.4f} → {s['ece_after']:.4f}"
            )
    print(f"   baselines + oracle: {baseline_s:.1f} s")
    return {"rows": rows, "train_s": train_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", type=float, default=0.2)
    parser.add_argument("--skip-martingale", action="store_true")
    args = parser.parse_args()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    settings = Settings(_env_file=None)
    first, last = pd.Timestamp(settings.demo_start), pd.Timestamp(settings.demo_end)
    config = TrainingConfig.from_env()
    print(
        f"demo window {first.date()} … {last.date()}, {os.cpu_count()} CPU cores; config: "
        f"{config.to_dict()}"
    )
    began = time.perf_counter()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        planted = run(args.signal, config, first, last, Path(tmp))
        rows = planted["rows"]
        oracle_f1 = rows["oracle"]["macro_f1_updown"]
        print("\n   goals (planted signal):")
        for arch in ("lstm", "transformer"):
            f1 = rows[arch]["macro_f1_updown"]
            checks = {
                "> majority": f1 > rows["majority"]["macro_f1_updown"],
                "> stratified": f1 > rows["stratified"]["macro_f1_updown"],
                "> logistic": f1 > rows["logistic"]["macro_f1_updown"],
                f">= {ORACLE_SHARE} x oracle": f1 >= ORACLE_SHARE * oracle_f1,
            }
            extra = f1 > rows["logistic_window"]["macro_f1_updown"]
            ok &= all(checks.values())
            print(
                f"   {arch}: "
                + ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in checks.items())
                + f"; (> logistic on 5 lagged bars: {'yes' if extra else 'no'})"
            )
        print(f"   training both models: {sum(planted['train_s'].values()):.1f} s")
        if not args.skip_martingale:
            null = run(0.0, config, first, last, Path(tmp))["rows"]
            print("\n   leakage guard (martingale):")
            for arch in ("lstm", "transformer"):
                n = null[arch]["null"]
                f1_ok = n["f1"] <= n["f1_null_mean"] + 3 * n["f1_null_sd"]
                auc_ok = n["auc"] <= 0.5 + 3 * n["auc_null_sd"]
                ok &= f1_ok and auc_ok
                print(
                    f"   {arch}: macro-F1 {n['f1']:.4f} vs sign-flip null "
                    f"{n['f1_null_mean']:.4f} ± {n['f1_null_sd']:.4f} "
                    f"({'ok' if f1_ok else 'LEAK?'}); direction AUC {n['auc']:.4f} vs 0.5 ± "
                    f"{n['auc_null_sd']:.4f} ({'ok' if auc_ok else 'LEAK?'}); stratified "
                    f"macro-F1 {null['stratified']['macro_f1_updown']:.4f}, oracle "
                    f"{null['oracle']['macro_f1_updown']:.4f}"
                )
    print(f"\nwall time {time.perf_counter() - began:.1f} s; goals {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
