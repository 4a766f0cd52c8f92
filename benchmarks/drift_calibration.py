"""Drift-monitor calibration: false alarms on the null and detection delay after a planted shift.

Data: the synthetic market (no corporate actions), ``N_TICKERS`` tickers, per seed 47 sessions
from 2026-01-02: sessions 1-15 are the training reference (``reference_stats_from_frame``),
16-20 the validation period (concept baseline of the stand-in classifier, see
``quant_assets_tests/monitoring/helpers.py``: no trained model is needed), 21-40 the *null*
(quiet sessions never seen by the reference) and session 42+j carries a planted 3x volatility
regime shift at a minute that varies with j (and is not on the 10-minute evaluation grid).
Everything runs through ``replay``: 60-minute windows (plus their newest 20 minutes) evaluated
every 10 minutes, the same code the sensor runs live.

Printed, per setting:
* the null: share of evaluations at warn / severe, rollbacks, for the chosen defaults (data and
  concept, and data only) and for the textbook settings side by side: KS at alpha 0.05 against
  the whole-day reference with n = rows (Evidently's rule: dataset drift when >= 50 % of the
  features drift), and PSI > 0.25 on 60-row windows (one ticker, one hour);
* the shift: delay from the shift to the first warn, the first severe evaluation and the
  rollback, the number of rollbacks until the end of the next session (no flapping), and
  alarms in the quiet session before the shift;
* sensitivity: the same for smaller volatility multipliers (1.25, 1.5, 2).

Goals (exit status 1 if missed): no severe evaluation and no rollback on the null, the first
severe evaluation <= 30 minutes after every planted 3x shift, exactly one rollback per shift.
``--seeds N`` (default 2) sets the number of market seeds; ``--quick`` is one seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.drift import replay
from quant_assets.drift.reference import concept_baseline_from_probs, reference_stats_from_frame
from quant_assets.drift.replay import rolling_windows
from quant_assets.drift.report import evaluate_window
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.market import calendar
from quant_assets_tests.drift.helpers import market_features, sessions_slice, standin_probs

N_TICKERS = 20
TICKERS = tuple(f"T{k:02d}" for k in range(N_TICKERS))
FIRST = "2026-01-02"
N_SESSIONS = 47
REF = (1, 15)  # training reference sessions (inclusive)
VAL = (16, 20)  # validation sessions (concept baseline)
NULL = (21, 40)  # quiet sessions replayed for the false-alarm rate
SHIFT_SESSION = 42  # + j
SHIFT_MINUTES = (63, 127, 185, 248)  # minutes after the open, one per j (off the 10-min grid)
PSI60_TICKERS = 5  # tickers used for the one-ticker, 60-row PSI textbook check
SENSITIVITY = (1.25, 1.5, 2.0)
GOAL_DELAY = 30.0


def days() -> pd.DatetimeIndex:
    return calendar.sessions(FIRST, "2026-12-31")[:N_SESSIONS]


def setup(seed: int, shift_at: pd.Timestamp | None, mult: float = 3.0) -> dict[str, Any]:
    d = days()
    feats = market_features(TICKERS, FIRST, N_SESSIONS, seed, shift_at, mult)
    feats = feats.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    train = sessions_slice(feats, d[REF[0]], d[REF[1]])
    ref = reference_stats_from_frame(train, FEATURE_SPEC.columns)
    val = sessions_slice(feats, d[VAL[0]], d[VAL[1]]).sort_values(["ticker", "ts"])
    base = concept_baseline_from_probs(
        standin_probs(val, ref), window=60, groups=val["ticker"], ts=val["ts"]
    )
    return {"features": feats, "reference": ref, "baseline": base}


def levels(steps: list) -> dict[str, float]:
    ev = [s.report.level for s in steps if s.report.level is not None]
    data = [s.report.data_level for s in steps if s.report.data_level is not None]
    return {
        "evaluations": len(ev),
        "warn": float(np.mean([x == "warn" for x in ev])) if ev else 0.0,
        "severe": float(np.mean([x == "severe" for x in ev])) if ev else 0.0,
        "data_warn": float(np.mean([x == "warn" for x in data])) if data else 0.0,
        "data_severe": float(np.mean([x == "severe" for x in data])) if data else 0.0,
        "rollbacks": sum(s.decision.rollback for s in steps),
        "max_share": max((s.report.share_drifted for s in steps), default=0.0),
        "max_concept_z": max(
            (s.report.concept.score for s in steps if s.report.concept is not None), default=0.0
        ),
    }


def null_study(seed: int, env: dict[str, Any]) -> dict[str, Any]:
    d = days()
    feats, ref, base = env["features"], env["reference"], env["baseline"]
    null = sessions_slice(feats, d[NULL[0]], d[NULL[1]])
    probs = standin_probs(null, ref)
    out: dict[str, Any] = {"seed": seed}
    out["defaults"] = levels(replay(null, ref, DriftThresholds(), probs, base))
    text = replay(null, ref, DriftThresholds.textbook())
    out["textbook_ks"] = levels(text)
    raw = np.array([[f.p_raw < 0.05 for f in s.report.features] for s in text])
    out["textbook_ks_feature_rate"] = dict(zip(ref.columns, raw.mean(0).round(3), strict=True))
    # PSI > 0.25 on 60-row windows: one ticker's last hour, whole-day reference.
    th = DriftThresholds.textbook(min_rows=30)
    one = null[null["ticker"].isin(TICKERS[:PSI60_TICKERS])].reset_index(drop=True)
    hits, dataset = [], []
    for t, rows in rolling_windows(one, 60, 10):
        win = one.iloc[rows]
        for _, g in win.groupby("ticker"):
            if len(g) < 50:
                continue
            rep = evaluate_window(g, ref, th, evaluated_at=t)
            flags = [f.psi > 0.25 for f in rep.features]
            hits.append(np.mean(flags))
            dataset.append(np.mean(flags) >= 0.5)
    out["textbook_psi60"] = {
        "windows": len(hits),
        "feature_rate": float(np.mean(hits)),
        "dataset_rate": float(np.mean(dataset)),
    }
    return out


def shift_study(seed: int, j: int, minute: int, mult: float = 3.0) -> dict[str, Any]:
    d = days()
    shift = calendar.session_bounds(d[SHIFT_SESSION + j])[0] + pd.Timedelta(minutes=minute)
    env = setup(seed, shift, mult)
    feats, ref, base = env["features"], env["reference"], env["baseline"]
    part = sessions_slice(feats, d[SHIFT_SESSION + j - 1], d[SHIFT_SESSION + j + 1])
    steps = replay(part, ref, DriftThresholds(), standin_probs(part, ref), base)

    def first(pred: Any) -> float | None:
        for s in steps:
            if s.at > shift and pred(s):
                return (s.at - shift).total_seconds() / 60
        return None

    before = [s for s in steps if s.at <= shift]
    res = {
        "seed": seed,
        "j": j,
        "mult": mult,
        "shift": shift,
        "warn": first(lambda s: s.report.level in ("warn", "severe")),
        "severe": first(lambda s: s.report.level == "severe"),
        "data_severe": first(lambda s: s.report.data_level == "severe"),
        "concept_severe": first(
            lambda s: s.report.concept is not None and s.report.concept.level == "severe"
        ),
        "rollback": first(lambda s: s.decision.rollback),
        "rollbacks": sum(s.decision.rollback for s in steps),
        "alarms_before": sum(s.report.level in ("warn", "severe") for s in before),
        "evaluations_before": len(before),
    }
    if j == 0 and mult == 3.0:
        res["null"] = null_study(seed, env)
    return res


def fmt(v: float | None) -> str:
    return "  —" if v is None else f"{v:3.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one seed")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    jobs = [(s, j, m, 3.0) for s in seeds for j, m in enumerate(SHIFT_MINUTES)]
    jobs += [(seeds[0], 0, SHIFT_MINUTES[0], x) for x in SENSITIVITY]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(shift_study, *zip(*jobs, strict=True)))
    th = DriftThresholds()
    print(f"drift calibration: {N_TICKERS} tickers, seeds {seeds}, reference sessions "
          f"{REF}, null sessions {NULL} ({NULL[1] - NULL[0] + 1} per seed)")  # fmt: skip
    print(f"defaults: {th}")

    nulls = [r["null"] for r in results if "null" in r]
    print("\n== the null (quiet sessions): share of evaluations at each level")
    print(f"{'setting':58s} {'evals':>6s} {'warn':>7s} {'severe':>7s} {'rollbacks':>9s}")
    rows = [
        (f"defaults (data + concept; K = {th.persistence})", "defaults", "warn", "severe"),
        ("defaults, data only", "defaults", "data_warn", "data_severe"),
        ("textbook KS a=0.05, n = rows, whole-day ref, >= 50 % feats",
         "textbook_ks", None, "severe"),
    ]  # fmt: skip
    null_severe = 0.0
    null_rollbacks = 0
    for label, key, wk, sk in rows:
        ev = sum(n[key]["evaluations"] for n in nulls)
        warn = f"{np.mean([n[key][wk] for n in nulls]):7.2%}" if wk else f"{'—':>7s}"
        sev = np.mean([n[key][sk] for n in nulls])
        rb = sum(n[key]["rollbacks"] for n in nulls)
        print(f"{label:58s} {ev:6d} {warn} {sev:7.2%} {rb:9d}")
        if key == "defaults":
            null_severe = max(null_severe, sev)
            null_rollbacks = rb
    psi = [n["textbook_psi60"] for n in nulls]
    print(f"{'textbook PSI > 0.25 on 60 rows (one ticker): >= 50 % feats':58s} "
          f"{sum(p['windows'] for p in psi):6d} {'':7s} "
          f"{np.mean([p['dataset_rate'] for p in psi]):7.2%}   (per feature: "
          f"{np.mean([p['feature_rate'] for p in psi]):.1%} of feature-windows)")  # fmt: skip
    top_share = max(n["defaults"]["max_share"] for n in nulls)
    top_z = max(n["defaults"]["max_concept_z"] for n in nulls)
    print(f"max share drifted on the null: {top_share:.2f}; max concept |z|: {top_z:.1f}")
    rate = pd.DataFrame([n["textbook_ks_feature_rate"] for n in nulls]).mean()
    print("textbook KS (a = 0.05) alarm rate per feature on the null:")
    print("  " + ", ".join(f"{k} {v:.0%}" for k, v in rate.items()))

    print("\n== planted 3x regime shift: minutes from the shift to ...")
    print(
        f"{'seed':>4s} {'shift (NY)':>17s} {'warn':>5s} {'severe':>6s} {'data':>5s} "
        f"{'concept':>7s} {'rollback':>8s} {'#rollbacks':>10s} {'alarms before':>13s}"
    )
    shifts = [r for r in results if r["mult"] == 3.0]
    for r in shifts:
        ny = r["shift"].tz_convert(calendar.MARKET_TZ).strftime("%m-%d %H:%M")
        print(f"{r['seed']:4d} {ny:>17s} {fmt(r['warn']):>5s} {fmt(r['severe']):>6s} "
              f"{fmt(r['data_severe']):>5s} {fmt(r['concept_severe']):>7s} "
              f"{fmt(r['rollback']):>8s} {r['rollbacks']:10d} "
              f"{r['alarms_before']:>6d} of {r['evaluations_before']:<3d}")  # fmt: skip
    delays = [r["severe"] for r in shifts]
    worst = max((x if x is not None else np.inf) for x in delays)
    print(
        f"first severe: mean {np.mean([x for x in delays if x is not None]):.1f} min, "
        f"worst {worst:.0f} min (goal <= {GOAL_DELAY:.0f}); rollback: mean "
        f"{np.mean([r['rollback'] for r in shifts if r['rollback'] is not None]):.1f} min"
    )

    print(f"\n== sensitivity (seed {seeds[0]}, first shift time): volatility multiplier")
    for r in [r for r in results if r["mult"] != 3.0]:
        print(f"  x{r['mult']:<5g} first warn {fmt(r['warn'])}  first severe {fmt(r['severe'])}"
              f"  rollback {fmt(r['rollback'])}  rollbacks {r['rollbacks']}")  # fmt: skip
    print(f"\n{time.perf_counter() - t0:.0f} s")

    ok = (
        null_severe == 0.0
        and null_rollbacks == 0
        and worst <= GOAL_DELAY
        and all(r["rollbacks"] == 1 for r in shifts)
        and all(r["alarms_before"] == 0 for r in shifts)
    )
    print("goals met" if ok else "GOAL MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
