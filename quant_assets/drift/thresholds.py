"""``DriftThresholds``: every knob of the drift monitor, with the reason for its default.

The defaults were calibrated by ``benchmarks/drift_calibration.py`` on the synthetic market,
reference = 15 quiet sessions, 60-minute windows evaluated every 10 minutes, in two universes.

Liquid (20 tickers trading every minute). With 3 seeds: on 2,340 evaluations of 60 quiet (never
seen) sessions the defaults gave 0 warn, 0 severe, 0 rollbacks (largest share of drifted
features 0.07, i.e. one feature; largest concept |z| 3.5), where the textbook settings alarm
almost always: KS at alpha 0.05 with n = rows against the whole-day reference flags 93 % of the
windows (Evidently's >= 50 % rule; 28-100 % per feature), PSI > 0.25 on one ticker's 60-row
window flags 78 % of the feature-windows. After a planted 3x volatility shift (12 shifts at 4
times of day, off the evaluation grid) the first severe evaluation came 17-27 minutes later
(mean 23), the rollback 37-47 minutes later (mean 43), exactly one rollback each, until the end
of the next session. Smaller shifts: x2 -> severe after 27 minutes; x1.5 and x1.25 -> warn
only, no rollback (severe is kept for large regime changes). These figures are unchanged by the
tie-aware test and the widened window (a liquid reference has no atoms, 20 tickers always fill
an hour): seeds 1-2 give the same delays to the minute.

Thin (6 tickers trading in 16-35 % of the minutes, 25 % on average, on a tick of 20 basis points
of the start price: 30-70 % of the 1-minute returns exactly 0, as on real thin ETFs). With 2
seeds, 1,560 evaluations of 40 quiet sessions (48 ticker-weeks): 0 warn, 0 severe, 0 rollbacks
(largest share drifted 0.07, concept |z| 3.1). Before the tie-aware test (KS on the tied values,
a format-1 reference): 345 warn, 7.2 per ticker-week (22 % of the evaluations), log_ret_1
drifted in 56 % and log_ret_5 in 30 % of the evaluations (real thin ETFs: log_ret_1 in 35 %),
and alarms in every quiet stretch before a planted shift; with the atoms tested by their shares
but ``tick_tolerance`` 0: 13 warn, 0.27 per ticker-week, log_ret_1 in 9 %, and a false rollback
in a quiet morning six weeks after the reference (the tick lattice of the non-zero returns moves
with the price level). After a planted 3x volatility shift (8 shifts) the first
severe evaluation came 75-197 minutes later (mean 113), exactly one rollback each, 95-223
minutes after the shift or, three times, the next morning (1,262-1,447 minutes);
x2 -> warn only. Detection is slower than in the liquid universe because a thin window holds
~75 rows (effective size ~20-50 per feature) and its newest 20 minutes rarely reach
``min_rows``; the slow bar-time features (realized_vol_30 spans 30 bars, ~2 hours) follow.

Caveat: the synthetic null has constant volatility (no clustering, no news days), so it is an
optimistic null; the margins below (one drifted feature on the null against four needed for
severe, K = 3, alpha 0.001) are deliberately wide for real markets. Re-run the calibration on
real quiet sessions before trusting the false-alarm figures there.

Every field can be set as ``QUANT_DRIFT_<FIELD>`` (e.g. ``QUANT_DRIFT_PERSISTENCE=3``).

Windows (``window_minutes`` 60, ``recent_minutes`` 20, ``step_minutes`` 10, ``min_rows`` 30)
    The last hour, as the plan suggests, tested as a whole *and* in its newest 20 minutes: a
    shift fills a 60-minute window only slowly (with the hour alone the first severe evaluation
    came 30-62 minutes after the shift; with the recent part 17-27). An hour with fewer than
    ``min_rows`` rows widens back within its session until it has them (``drift.window``); a
    session that has fewer so far is not evaluated ("not evaluated (n rows < 30)": no level; it
    neither extends nor breaks a streak). On the thin null, with the first 1 / 2 / 3 tickers
    alone, 100 / 94 / 39 % of the hours had fewer than 30 rows (real thin ETFs: 35 % skipped);
    widened, 46 / 11 / 4 % of the evaluations stay below the floor (the first minutes of a
    session). The recent part is tested only when it has ``min_rows`` rows itself.
Per feature (``feature_psi`` 0.25, ``ks_alpha`` 0.001)
    A feature *drifts* when its PSI >= 0.25 (the usual "major" band: an effect size) and its
    autocorrelation-aware (and tie-aware) KS p-value < 0.001 (the evidence), in the hour or in
    its recent part.
    PSI alone is noise on small or persistent windows; a p-value alone flags negligible
    differences in large windows. 0.001 ~ 0.05 / 28 is Bonferroni over 14 features x 2 windows
    (alibi-detect's correction). The usual PSI bands (``psi_moderate`` 0.1, ``psi_major`` 0.25)
    are reported per feature as stable / moderate / major. ``time_of_day_reference``,
    ``autocorrelation_correction`` and ``tie_aware`` exist to show the textbook test
    (``textbook()``); keep them on.
Ties (``tie_aware`` on, ``tick_tolerance`` 0.25; data_drift.py)
    A value holding >= 2 % of a feature's training values (the 0 of a return on a tick) is an
    atom, tested by its share (binomial, effective size); KS runs on the other values only, and
    for a feature with an atom at 0 it lets every value move by up to 25 % of its size (a price
    level 25 % away from the reference's moves the tick lattice that much). Figures above; 25 %
    covers the price moves of a few weeks (annual volatility 18-45 %) while a 3x volatility is
    three times outside it. The tolerance only applies to features with an atom at 0, so the
    liquid calibration does not see it.
Share of drifted features (``share_warn`` 0.1, ``share_severe`` 0.25 of the 14 monitored)
    Warn from 2 features, severe from 4. The 3x regime moves the ~10 features that scale with
    volatility; the null never moved more than one.
Concept (``concept_z_warn`` 5, ``concept_z_severe`` 8)
    |z| of the window's mean confidence (max probability) or mean entropy against the validation
    baseline at the same times of day (concept_drift.py). Two-sided: a model that suddenly
    becomes *more* confident is also outside what it was validated on (out-of-range inputs
    saturate a softmax). On the null the stand-in classifier's |z| stayed <= 3.5 (20 tickers)
    and <= 4 (3 tickers); with a real model, check the largest |z| on its validation period.
Decision (``persistence`` 3, ``cooldown_minutes`` 1440; severity.py)
    K = 3 consecutive severe evaluations (20 minutes at a 10-minute cadence) before a rollback:
    a single severe window, or a news spike shorter than 20 minutes, never rolls back. After a
    rollback no other for a day (the nightly retrain comes in between) and none at all until K
    consecutive evaluations without drift re-arm the monitor (the latch: rolling back further
    cannot fix a market that has changed; a retrain on the new regime can).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from quant_assets.settings import env_overrides, field_types

ENV_PREFIX = "QUANT_DRIFT_"

Level = Literal["none", "warn", "severe"]
LEVELS: tuple[Level, ...] = ("none", "warn", "severe")


@dataclass(frozen=True)
class DriftThresholds:
    """Thresholds and windowing of the drift monitor (see the module docstring for why)."""

    # --- windowing ---------------------------------------------------------------------------
    window_minutes: int = 60  # the live window: the last hour (the plan's "e.g. last hour")
    recent_minutes: int = 20  # also test its newest part (0: off); see the module docstring
    step_minutes: int = 10  # evaluation cadence (sensor / replay)
    min_rows: int = 30  # the floor: a thinner hour widens within its session (drift.window)

    # --- data drift per feature --------------------------------------------------------------
    psi_moderate: float = 0.1  # the usual PSI bands, reported per feature
    psi_major: float = 0.25
    feature_psi: float = 0.25  # effect size a drifted feature needs (PSI: the "major" band)
    ks_alpha: float = 0.001  # autocorrelation-aware KS p-value a drifted feature needs
    time_of_day_reference: bool = True  # compare with the same time-of-session buckets
    autocorrelation_correction: bool = True  # KS with the effective sample size
    tie_aware: bool = True  # atoms (e.g. zero returns) by their shares, KS off the atoms
    tick_tolerance: float = 0.25  # KS slack of a tick grid's lattice (atom at 0), relative

    # --- data drift level (share of monitored features drifted) ------------------------------
    share_warn: float = 0.1
    share_severe: float = 0.25

    # --- concept drift level (|z| of mean confidence or entropy) -----------------------------
    concept_z_warn: float = 5.0
    concept_z_severe: float = 8.0

    # --- decision ----------------------------------------------------------------------------
    persistence: int = 3  # K consecutive severe evaluations before a rollback
    cooldown_minutes: int = 24 * 60  # no second rollback within this time

    def __post_init__(self) -> None:
        if self.window_minutes < 1 or self.step_minutes < 1 or self.min_rows < 1:
            raise ValueError("window_minutes, step_minutes and min_rows must be >= 1")
        if not 0 <= self.recent_minutes <= self.window_minutes:
            raise ValueError("recent_minutes must be in [0, window_minutes]")
        if not 0 < self.ks_alpha < 1:
            raise ValueError("ks_alpha must be in (0, 1)")
        if not 0 <= self.tick_tolerance < 1:
            raise ValueError("tick_tolerance must be in [0, 1)")
        if not 0 <= self.psi_moderate <= self.psi_major:
            raise ValueError("need 0 <= psi_moderate <= psi_major")
        if not 0 < self.share_warn <= self.share_severe <= 1:
            raise ValueError("need 0 < share_warn <= share_severe <= 1")
        if not 0 < self.concept_z_warn <= self.concept_z_severe:
            raise ValueError("need 0 < concept_z_warn <= concept_z_severe")
        if self.persistence < 1 or self.cooldown_minutes < 0:
            raise ValueError("persistence must be >= 1 and cooldown_minutes >= 0")

    def psi_band(self, value: float) -> str:
        """'stable' (< psi_moderate), 'moderate' or 'major' (>= psi_major)."""
        if value >= self.psi_major:
            return "major"
        return "moderate" if value >= self.psi_moderate else "stable"

    def data_level(self, share_drifted: float) -> Level:
        if share_drifted >= self.share_severe:
            return "severe"
        return "warn" if share_drifted >= self.share_warn else "none"

    def concept_level(self, abs_z: float) -> Level:
        if abs_z >= self.concept_z_severe:
            return "severe"
        return "warn" if abs_z >= self.concept_z_warn else "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftThresholds:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_env(cls) -> DriftThresholds:
        """Defaults overridden by ``QUANT_DRIFT_<FIELD>`` settings (QUANT_DRIFT_PERSISTENCE=4).

        A value that does not parse as the field's type raises ValueError naming the variable.
        """
        return cls(**env_overrides(ENV_PREFIX, field_types(cls)))

    @classmethod
    def textbook(cls, **overrides: Any) -> DriftThresholds:
        """The uncorrected textbook test, for comparison only: raw KS at alpha 0.05 against
        the whole-day reference (ties and all), no effect-size floor, dataset drift at >= 50 %
        of features (Evidently's defaults), no persistence."""
        base: dict[str, Any] = {
            "ks_alpha": 0.05,
            "feature_psi": 0.0,
            "time_of_day_reference": False,
            "autocorrelation_correction": False,
            "tie_aware": False,
            "share_warn": 0.5,
            "share_severe": 0.5,
            "persistence": 1,
            "recent_minutes": 0,
        }
        base.update(overrides)
        return cls(**base)


def max_level(*levels: Level | None) -> Level:
    """The most severe of the given levels (None entries ignored; 'none' if all are None)."""
    rank = max((LEVELS.index(x) for x in levels if x is not None), default=0)
    return LEVELS[rank]
