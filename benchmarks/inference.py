"""TFLite (LiteRT) latency per window vs ``keras.Model.predict``, for both architectures.

Builds demo-size models (``TrainingConfig()`` defaults: LSTM-32, Transformer d=32 / 4 heads /
2 blocks / patches of 4 bars), trains each for one epoch on a small synthetic dataset (latency
does not depend on the weights), exports and bundles them in a temp dir, then times in one
process, single-threaded LiteRT (``num_threads=1``):

* ``Predictor.predict_windows`` on one unscaled window (scaler + interpreter) — the figure
  with goal p50 ≤ 200 µs;
* the same on a batch of 20 windows (one per ticker) — goal p50 ≤ 2 ms;
* ``keras.Model.predict`` on one window (the baseline the goal is stated against) and the
  direct ``model(x, training=False)`` call (Keras without predict's per-call set-up);
* ``Predictor.predict_latest`` from raw bars of 20 tickers (create_features included).

``--bundle DIR`` (repeatable) times existing bundles instead of training new ones.
Exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd

GOAL_WINDOW_US, GOAL_BATCH_MS = 200.0, 2.0
N_TICKERS = 20


def percentiles(fn: Callable[[], object], repeats: int, warmup: int = 20) -> tuple[float, float]:
    """(p50, p90) in seconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def build_bundles(models_dir: Path) -> list[Path]:
    from quant_assets.labels import LabelSpec
    from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
    from quant_assets.models.config import TrainingConfig
    from quant_assets.models.data import labelled_features_from_bars
    from quant_assets.models.dataset import build_dataset
    from quant_assets.models.training import train_and_bundle

    tickers = ("AAA", "BBB", "CCC")
    market = SyntheticMarket(SyntheticConfig(tickers=tickers, start="2026-03-02", end="2026-03-31"))
    start = pd.Timestamp("2026-03-02", tz="America/New_York")
    end = pd.Timestamp("2026-03-21", tz="America/New_York")
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    config = TrainingConfig.from_env(epochs=1, holdout_sessions=2)
    ds = build_dataset(labelled_features_from_bars(bars), config, label_spec=LabelSpec())
    return [
        train_and_bundle(arch, ds, config, models_dir).bundle.path
        for arch in ("lstm", "transformer")
    ]


def raw_bars_for(predictor, n_tickers: int) -> pd.DataFrame:
    from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket

    tickers = tuple(f"T{k:02d}" for k in range(n_tickers))
    market = SyntheticMarket(SyntheticConfig(tickers=tickers, start="2026-04-01", end="2026-04-10"))
    start = pd.Timestamp("2026-04-01", tz="America/New_York")
    end = pd.Timestamp("2026-04-04", tz="America/New_York")
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    return bars.groupby("ticker").tail(predictor.min_bars).reset_index(drop=True)


def bench(bundle_dir: Path) -> bool:
    import keras

    import quant_assets.models.architectures  # noqa: F401  (custom layer registration)
    from quant_assets.models.inference import Predictor

    predictor = Predictor.load(bundle_dir, num_threads=1)
    bundle = predictor.bundle
    model = keras.models.load_model(bundle.keras_path, compile=False)
    rng = np.random.default_rng(0)
    ref = bundle.reference_stats["summary"]
    # Plausible unscaled windows: per-feature draws from the training reference sample.
    samples = [np.asarray(ref[c]["sample"]) for c in bundle.feature_spec.columns]
    raw = np.stack(
        [rng.choice(s, size=(N_TICKERS, bundle.window)) for s in samples], axis=-1
    ).astype(np.float32)
    one, batch = raw[:1], raw
    scaled_one = bundle.scaler.transform(one)

    lite_1 = percentiles(lambda: predictor.predict_windows(one), 2000)
    invoke_1 = percentiles(lambda: predictor.runner.predict(scaled_one), 2000)
    lite_20 = percentiles(lambda: predictor.predict_windows(batch), 500)
    keras_predict = percentiles(lambda: model.predict(scaled_one, verbose=0), 30, warmup=3)
    keras_call = percentiles(lambda: model(scaled_one, training=False), 200, warmup=5)
    bars = raw_bars_for(predictor, N_TICKERS)
    latest = percentiles(lambda: predictor.predict_latest(bars), 20, warmup=2)

    size_kb = bundle.tflite_path.stat().st_size / 1024
    route = "fixed batch 1 (looped)" if predictor.runner.fixed_batch == 1 else "dynamic batch"
    print(
        f"== {bundle.name}: {size_kb:.0f} KB .tflite, {route}, window {bundle.window} × "
        f"{len(bundle.feature_spec.columns)} features"
    )
    print(
        f"  TFLite  1 window  (scaler + invoke)  p50 {lite_1[0] * 1e6:8.1f} µs  "
        f"p90 {lite_1[1] * 1e6:8.1f} µs  (goal p50 <= {GOAL_WINDOW_US:.0f} µs)"
    )
    print(f"  TFLite  1 window  (invoke only)      p50 {invoke_1[0] * 1e6:8.1f} µs")
    print(
        f"  TFLite 20 windows (one per ticker)   p50 {lite_20[0] * 1e3:8.3f} ms  "
        f"p90 {lite_20[1] * 1e3:8.3f} ms  (goal p50 <= {GOAL_BATCH_MS:.0f} ms)"
    )
    print(
        f"  keras.Model.predict, 1 window        p50 {keras_predict[0] * 1e3:8.2f} ms  "
        f"→ TFLite is {keras_predict[0] / lite_1[0]:,.0f}x faster"
    )
    print(
        f"  keras model(x) direct call, 1 window p50 {keras_call[0] * 1e3:8.2f} ms  "
        f"→ TFLite is {keras_call[0] / lite_1[0]:,.0f}x faster"
    )
    print(
        f"  predict_latest, {N_TICKERS} tickers × {predictor.min_bars} raw bars "
        f"(create_features + windows + TFLite) p50 {latest[0] * 1e3:.1f} ms"
    )
    ok = lite_1[0] * 1e6 <= GOAL_WINDOW_US and lite_20[0] * 1e3 <= GOAL_BATCH_MS
    print(f"  goals: {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", type=Path, help="existing bundle dir(s)")
    args = parser.parse_args()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    print(f"CPU cores: {os.cpu_count()}; LiteRT num_threads=1")
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        began = time.perf_counter()
        bundles = args.bundle or build_bundles(Path(tmp))
        if not args.bundle:
            print(f"built demo-size bundles in {time.perf_counter() - began:.1f} s")
        results = [bench(b) for b in bundles]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
