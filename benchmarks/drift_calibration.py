"""Drift-monitor calibration: false alarms on quiet sessions and detection delay after a shift.

Two universes of the synthetic market (no corporate actions), each with its own reference:

* ``liquid``: 20 tickers trading every minute (today's market);
* ``thin``: 6 tickers trading in 16-35 % of the session minutes (25 % on average) on a price
  tick of 20 basis points of the start price, so 30-70 % of the 1-minute returns are exactly
  zero, as on real thin ETFs (``market.synthetic.Liquidity``).

Per seed and universe, 47 sessions from 2026-01-02: sessions 1-15 are the training reference
(``reference_stats_from_frame``), 16-20 the validation period (concept baseline of the stand-in
classifier, see ``quant_assets_tests/drift/helpers.py``: no trained model is needed), 21-40 the
*null* (quiet sessions never seen by the reference) and session 42+j carries a planted 3x
volatility regime shift at a minute that varies with j (off the 10-minute evaluation grid).
Everything runs through ``replay``: 60-minute windows (plus their newest 20 minutes) every 10
minutes, the same code the sensor runs live.

Printed, per universe:
* the null: evaluations, not evaluated, widened windows, warn (count, per ticker-week), severe
  (count, per ticker-week, share of the evaluations), rollbacks for the defaults (data and concept,
  and data only), for the defaults with the plain KS (``tie_aware`` off: atoms tested as if
  continuous), the share of evaluations in which each feature drifted, the same with
  ``tick_tolerance`` 0 (the tick lattice of the non-zero returns tested exactly), and the textbook
  settings side by side: KS at alpha 0.05 against the whole-day reference with n = rows (Evidently's
  rule: dataset drift when >= 50 % of the features drift), and PSI > 0.25 on 60-row windows (one
  ticker, one hour; liquid only: a thin ticker has no 60-row hour);
* the floor (thin only): with the first 1, 2, 3 tickers of the thin null, the share of
  evaluations whose last hour has fewer than ``min_rows`` rows (skipped without widening) and the
  share still below the floor after widening within the session (not evaluated);
* the shift: delay from the shift to the first warn, the first severe evaluation and the
  rollback, the number of rollbacks until the end of the next session (no flapping), and
  alarms in the quiet session before the shift;
* sensitivity: the same for smaller volatility multipliers (1.25, 1.5, 2).

Goals (each printed with met / MISSED; exit status 1 if one is missed), for both universes: at
most 1 warn per ticker-week, no severe evaluation and no rollback on the null; every planted 3x
shift reaches severe and rolls back exactly once, with no severe evaluation before it; liquid
only: the first severe evaluation <= 30 minutes after the shift. ``--seeds N`` (default 2) sets
the number of market seeds; ``--quick`` is one seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.drift import replay
from quant_assets.drift.reference import concept_baseline_from_probs, reference_stats_from_frame
from quant_assets.drift.replay import evaluation_times, rolling_windows
from quant_assets.drift.report import evaluate_window
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.market import calendar
from quant_assets.market.synthetic import Liquidity, LiquiditySetting
from quant_assets_tests.drift.helpers import market_features, sessions_slice, standin_probs

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
GOAL_WARN_PER_TICKER_WEEK = 1.0
SESSIONS_PER_WEEK = 5
FLOOR_TICKERS = (1, 2, 3)
THIN_TRADED = (0.16, 0.20, 0.25, 0.25, 0.30, 0.35)  # real thin ETFs: 16-35 % of minutes
THIN_TICK_BPS = 20.0


@dataclass(frozen=True)
class Universe:
    """A set of tickers and how they trade."""

    name: str
    tickers: tuple[str, ...]
    liquidity: LiquiditySetting
    delay_goal: bool  # hold it to the 30-minute detection goal


def _tickers(n: int) -> tuple[str, ...]:
    return tuple(f"T{k:02d}" for k in range(n))


THIN_TICKERS = _tickers(len(THIN_TRADED))
UNIVERSES = {
    "liquid": Universe("liquid", _tickers(20), Liquidity(), delay_goal=True),
    "thin": Universe(
        "thin",
        THIN_TICKERS,
        {t: Liquidity(s, THIN_TICK_BPS) for t, s in zip(THIN_TICKERS, THIN_TRADED, strict=True)},
        delay_goal=False,
    ),
}


def days() -> pd.DatetimeIndex:
    return calendar.sessions(FIRST, "2026-12-31")[:N_SESSIONS]


def setup(
    universe: Universe, seed: int, shift_at: pd.Timestamp | None, mult: float = 3.0
) -> dict[str, Any]:
    d = days()
    feats = market_features(
        universe.tickers, FIRST, N_SESSIONS, seed, shift_at, mult, universe.liquidity
    )
    feats = feats.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    train = sessions_slice(feats, d[REF[0]], d[REF[1]])
    ref = reference_stats_from_frame(train, FEATURE_SPEC.columns)
    val = sessions_slice(feats, d[VAL[0]], d[VAL[1]]).sort_values(["ticker", "ts"])
    base = concept_baseline_from_probs(
        standin_probs(val, ref), window=60, groups=val["ticker"], ts=val["ts"]
    )
    return {"features": feats, "reference": ref, "baseline": base}


def levels(steps: list, columns: tuple[str, ...]) -> dict[str, Any]:
    ev = [s.report.level for s in steps if s.report.level is not None]
    widened = sum(s.report.widened for s in steps)
    data = [s.report.data_level for s in steps if s.report.data_level is not None]
    drifted = np.array([[c in s.report.drifted_features for c in columns] for s in steps])
    return {
        "steps": len(steps),
        "evaluations": len(ev),
        "widened": widened,
        "warn": sum(x == "warn" for x in ev),
        "severe": sum(x == "severe" for x in ev),
        "data_warn": sum(x == "warn" for x in data),
        "data_severe": sum(x == "severe" for x in data),
        "rollbacks": sum(s.decision.rollback for s in steps),
        "max_share": max((s.report.share_drifted for s in steps), default=0.0),
        "max_concept_z": max(
            (s.report.concept.score for s in steps if s.report.concept is not None), default=0.0
        ),
        "feature_rate": dict(zip(columns, drifted.mean(0) if len(steps) else [], strict=True)),
    }


def null_study(universe: Universe, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    d = days()
    feats, ref, base = env["features"], env["reference"], env["baseline"]
    null = sessions_slice(feats, d[NULL[0]], d[NULL[1]])
    probs = standin_probs(null, ref)
    out: dict[str, Any] = {"seed": seed}
    out["defaults"] = levels(replay(null, ref, DriftThresholds(), probs, base), ref.columns)
    plain = DriftThresholds(tie_aware=False)
    out["plain_ks"] = levels(replay(null, ref, plain, probs, base), ref.columns)
    exact = DriftThresholds(tick_tolerance=0.0)
    out["no_tolerance"] = levels(replay(null, ref, exact, probs, base), ref.columns)
    out["textbook_ks"] = levels(replay(null, ref, DriftThresholds.textbook()), ref.columns)
    out["textbook_psi60"] = psi60_study(universe, null, ref)
    out["floor"] = floor_study(universe, null) if universe.name == "thin" else {}
    return out


def floor_study(universe: Universe, null: pd.DataFrame) -> dict[int, tuple[float, float]]:
    """k tickers -> (share of evaluations with < min_rows rows in the last hour, share with
    < min_rows rows after widening within the session)."""
    th = DriftThresholds()
    times = evaluation_times(null["ts"], th.step_minutes)
    out = {}
    for k in FLOOR_TICKERS:
        sub = null[null["ticker"].isin(universe.tickers[:k])].reset_index(drop=True)
        fixed = [
            len(r) < th.min_rows
            for _, r in rolling_windows(sub, th.window_minutes, th.step_minutes, times)
        ]
        wide = [len(r) < th.min_rows for _, r in rolling_windows(sub, th.window_minutes,
                                                                 th.step_minutes, times,
                                                                 th.min_rows)]  # fmt: skip
        out[k] = (float(np.mean(fixed)), float(np.mean(wide)))
    return out


def psi60_study(universe: Universe, null: pd.DataFrame, ref: Any) -> dict[str, float]:
    """PSI > 0.25 on 60-row windows: one ticker's last hour, whole-day reference."""
    th = DriftThresholds.textbook(min_rows=30)
    one = null[null["ticker"].isin(universe.tickers[:PSI60_TICKERS])].reset_index(drop=True)
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
    return {
        "windows": len(hits),
        "feature_rate": float(np.mean(hits)) if hits else float("nan"),
        "dataset_rate": float(np.mean(dataset)) if dataset else float("nan"),
    }


def shift_study(name: str, seed: int, j: int, minute: int, mult: float = 3.0) -> dict[str, Any]:
    universe = UNIVERSES[name]
    d = days()
    shift = calendar.session_bounds(d[SHIFT_SESSION + j])[0] + pd.Timedelta(minutes=minute)
    env = setup(universe, seed, shift, mult)
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
        "universe": name,
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
        "severe_before": sum(s.report.level == "severe" for s in before),
        "evaluations_before": len(before),
    }
    if j == 0 and mult == 3.0:
        res["null"] = null_study(universe, seed, env)
    return res


def fmt(v: float | None) -> str:
    return "  —" if v is None else f"{v:3.0f}"


def goal(label: str, ok: bool) -> bool:
    print(f"  goal {label}: {'met' if ok else 'MISSED'}")
    return ok


def report_null(universe: Universe, nulls: list[dict[str, Any]]) -> dict[str, float]:
    """Print the null figures of one universe; return what the goals need."""
    th = DriftThresholds()
    weeks = len(nulls) * (NULL[1] - NULL[0] + 1) / SESSIONS_PER_WEEK
    ticker_weeks = weeks * len(universe.tickers)
    print(f"\n== {universe.name}: the null ({len(nulls)} x {NULL[1] - NULL[0] + 1} quiet sessions, "
          f"{len(universe.tickers)} tickers, {ticker_weeks:.0f} ticker-weeks)")  # fmt: skip
    print(f"{'setting':52s} {'steps':>6s} {'not ev':>6s} {'wider':>6s} {'warn':>5s} "
          f"{'/tw':>5s} {'severe':>6s} {'/tw':>5s} {'share':>6s} {'rollbk':>6s}")  # fmt: skip
    rows = [
        (f"defaults (data + concept; K = {th.persistence})", "defaults", "warn", "severe"),
        ("defaults, data only", "defaults", "data_warn", "data_severe"),
        ("defaults with plain KS (tie_aware off)", "plain_ks", "warn", "severe"),
        ("defaults with tick_tolerance 0", "no_tolerance", "warn", "severe"),
        ("textbook KS a=0.05, n = rows, whole-day, >= 50 % feats", "textbook_ks", None, "severe"),
    ]
    for label, key, wk, sk in rows:
        steps = sum(n[key]["steps"] for n in nulls)
        ev = sum(n[key]["evaluations"] for n in nulls)
        wide = sum(n[key]["widened"] for n in nulls)
        warn = sum(n[key][wk] for n in nulls) if wk else None
        sev = sum(n[key][sk] for n in nulls)
        rb = sum(n[key]["rollbacks"] for n in nulls)
        w = f"{'—':>5s} {'—':>5s}" if warn is None else f"{warn:5d} {warn / ticker_weeks:5.2f}"
        print(f"{label:52s} {steps:6d} {steps - ev:6d} {wide:6d} {w} {sev:6d} "
              f"{sev / ticker_weeks:5.2f} {sev / max(ev, 1):6.1%} {rb:6d}")  # fmt: skip
    psi = [n["textbook_psi60"] for n in nulls]
    windows = sum(p["windows"] for p in psi)
    if windows:
        print(f"{'textbook PSI > 0.25 on 60 rows (one ticker), >= 50 % feats':58s} "
              f"{windows:6d} windows: {np.nanmean([p['dataset_rate'] for p in psi]):.1%} "
              f"(per feature {np.nanmean([p['feature_rate'] for p in psi]):.1%})")  # fmt: skip
    top_share = max(n["defaults"]["max_share"] for n in nulls)
    top_z = max(n["defaults"]["max_concept_z"] for n in nulls)
    print(f"max share drifted: {top_share:.2f}; max concept |z|: {top_z:.1f}")
    for key, label in (
        ("defaults", "defaults"),
        ("plain_ks", "plain KS"),
        ("no_tolerance", "tick_tolerance 0"),
        ("textbook_ks", "textbook KS"),
    ):
        rate = pd.DataFrame([n[key]["feature_rate"] for n in nulls]).mean()
        print(f"{label}: share of evaluations with the feature drifted")
        print("  " + ", ".join(f"{k} {v:.0%}" for k, v in rate.items()))
    floors = [n["floor"] for n in nulls if n["floor"]]
    for k in FLOOR_TICKERS if floors else ():
        fixed = np.mean([f[k][0] for f in floors])
        wide = np.mean([f[k][1] for f in floors])
        print(f"floor, first {k} ticker(s): {fixed:.1%} of the evaluations have < {th.min_rows} "
              f"rows in the last hour; {wide:.1%} after widening within the session")  # fmt: skip
    return {
        "warn_per_tw": sum(n["defaults"]["warn"] for n in nulls) / ticker_weeks,
        "severe": sum(n["defaults"]["severe"] for n in nulls),
        "rollbacks": sum(n["defaults"]["rollbacks"] for n in nulls),
    }


def report_shifts(universe: Universe, shifts: list[dict[str, Any]]) -> dict[str, Any]:
    print(f"\n== {universe.name}: planted 3x regime shift: minutes from the shift to ...")
    print(
        f"{'seed':>4s} {'shift (NY)':>17s} {'warn':>5s} {'severe':>6s} {'data':>5s} "
        f"{'concept':>7s} {'rollback':>8s} {'#rollbacks':>10s} {'alarms before':>13s}"
    )
    for r in shifts:
        ny = r["shift"].tz_convert(calendar.MARKET_TZ).strftime("%m-%d %H:%M")
        print(f"{r['seed']:4d} {ny:>17s} {fmt(r['warn']):>5s} {fmt(r['severe']):>6s} "
              f"{fmt(r['data_severe']):>5s} {fmt(r['concept_severe']):>7s} "
              f"{fmt(r['rollback']):>8s} {r['rollbacks']:10d} "
              f"{r['alarms_before']:>6d} of {r['evaluations_before']:<3d}")  # fmt: skip
    delays = [r["severe"] for r in shifts]
    found = [x for x in delays if x is not None]
    worst = max((x if x is not None else np.inf) for x in delays)
    rolled = [r["rollback"] for r in shifts if r["rollback"] is not None]
    print(f"first severe: mean {np.mean(found) if found else np.nan:.1f} min, worst {worst:.0f} "
          f"min; rollback: mean {np.mean(rolled) if rolled else np.nan:.1f} min")  # fmt: skip
    return {"worst": worst, "shifts": shifts}


def report_sensitivity(universe: Universe, results: list[dict[str, Any]], seed: int) -> None:
    print(f"\n== {universe.name}: sensitivity (seed {seed}, first shift time): vol multiplier")
    for r in results:
        print(f"  x{r['mult']:<5g} first warn {fmt(r['warn'])}  first severe {fmt(r['severe'])}"
              f"  rollback {fmt(r['rollback'])}  rollbacks {r['rollbacks']}")  # fmt: skip


def check_goals(universe: Universe, null: dict[str, float], shift: dict[str, Any]) -> bool:
    print(f"\n== {universe.name}: goals")
    shifts = shift["shifts"]
    ok = [
        goal(
            f"null: <= {GOAL_WARN_PER_TICKER_WEEK:g} warn per ticker-week "
            f"({null['warn_per_tw']:.2f})",
            null["warn_per_tw"] <= GOAL_WARN_PER_TICKER_WEEK,
        ),
        goal(f"null: no severe evaluation ({null['severe']})", null["severe"] == 0),
        goal(f"null: no rollback ({null['rollbacks']})", null["rollbacks"] == 0),
        goal(
            "every 3x shift detected: severe, exactly one rollback",
            all(r["severe"] is not None and r["rollbacks"] == 1 for r in shifts),
        ),
        goal("no severe evaluation before a shift", all(r["severe_before"] == 0 for r in shifts)),
    ]
    if universe.delay_goal:
        ok.append(
            goal(
                f"first severe <= {GOAL_DELAY:.0f} min after every shift ({shift['worst']:.0f})",
                shift["worst"] <= GOAL_DELAY,
            )
        )
    return all(ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one seed")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    t0 = time.perf_counter()
    jobs = [
        (u, s, j, m, 3.0) for u in UNIVERSES for s in seeds for j, m in enumerate(SHIFT_MINUTES)
    ]
    jobs += [(u, seeds[0], 0, SHIFT_MINUTES[0], x) for u in UNIVERSES for x in SENSITIVITY]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(shift_study, *zip(*jobs, strict=True)))
    th = DriftThresholds()
    print(f"drift calibration: seeds {seeds}, reference sessions {REF}, null sessions {NULL}")
    print(f"defaults: {th}")
    ok = True
    for universe in UNIVERSES.values():
        mine = [r for r in results if r["universe"] == universe.name]
        null = report_null(universe, [r["null"] for r in mine if "null" in r])
        shift = report_shifts(universe, [r for r in mine if r["mult"] == 3.0])
        report_sensitivity(universe, [r for r in mine if r["mult"] != 3.0], seeds[0])
        ok &= check_goals(universe, null, shift)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    print("goals: met" if ok else "goals: MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
